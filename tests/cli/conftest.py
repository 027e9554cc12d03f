"""Fixtures the command tests share."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from file_tenant import contact, file_tenant, page_view
from support import invoke

from leadpulse.core.cli.main import main
from leadpulse.core.cli.tenants import CONFIG_DIR_ENV, STATE_DIR_ENV


@pytest.fixture
def synced_acme(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Tenant acme (tests/file_tenant.py) in a config folder the environment names, synced once: c1 (a VP, three
    pricing views, 3 points each) scores 13, hot and mql; c2 (one view) 3, cold and lead."""
    folder = tmp_path / "config"
    views = [page_view(f"a{i}", "c1") for i in range(3)] + [page_view("b1", "c2")]
    file_tenant(folder, [contact("c1", "VP Sales"), contact("c2")], views)
    monkeypatch.setenv(CONFIG_DIR_ENV, str(folder))
    monkeypatch.setenv(STATE_DIR_ENV, str(tmp_path / "state"))
    assert CliRunner().invoke(main, ["sync"], catch_exceptions=False).exit_code == 0
    return folder


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample export synced into a store by the demo, once a module: 400 contacts, 101 of whom converted, 65
    tasks."""
    folder = tmp_path_factory.mktemp("sample") / "demo"
    code, output = invoke("demo", "--from-export", "--folder", str(folder))
    assert code == 0, output
    return folder
