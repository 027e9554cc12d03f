import logging
from collections.abc import Iterator

import pytest

pytest_plugins = ["leadpulse.sandbox.pytest_plugin"]


@pytest.fixture(autouse=True)
def _logging_as_it_was() -> Iterator[None]:
    """The root logger's handlers and level as before the test: a command a test runs in-process (`sync`
    configures logging) must not leave its handler writing into the next test's output."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in [h for h in root.handlers if h not in handlers]:
        root.removeHandler(handler)
    root.setLevel(level)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The install test first: under xdist it keeps one worker longest (a fresh venv, then a run of the suite in it),
    so it starts at once and the other worker takes the rest, rather than starting last and running on alone."""
    items.sort(key=lambda item: item.path.name != "test_install.py")
