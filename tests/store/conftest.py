import pytest

from leadpulse.core.store.store import Store


@pytest.fixture
def store(tmp_path):
    """A fresh checkpoint store, closed after the test."""
    with Store.open(tmp_path / "acme.sqlite") as opened:
        yield opened
