"""``leadpulse score`` changes no CRM and says so: what the new scores change waits for the next sync."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from file_tenant import contact, file_tenant, page_view, results

from leadpulse.core.cli.main import main
from leadpulse.core.cli.tenants import CONFIG_DIR_ENV, STATE_DIR_ENV


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Tenant acme, synced: c1 scores 13, c2 scores 3 (3 points a pricing view)."""
    folder = tmp_path / "config"
    views = [page_view(f"a{i}", "c1") for i in range(3)] + [page_view("b1", "c2")]
    file_tenant(folder, [contact("c1", "VP Sales"), contact("c2")], views)
    monkeypatch.setenv(CONFIG_DIR_ENV, str(folder))
    monkeypatch.setenv(STATE_DIR_ENV, str(tmp_path / "state"))
    assert run("sync").exit_code == 0
    return folder


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_score_under_the_same_rules_says_the_next_sync_has_nothing_new_to_write(config):
    result = run("score")
    assert result.exit_code == 0
    assert result.output.endswith(
        "note no CRM was changed, and no value that leadpulse writes to it changed: the next `leadpulse sync --tenant "
        "acme` has nothing new to write from this rescore (nothing waits in the tenant's outbox)\n")


def test_score_under_new_rules_changes_no_crm_and_counts_the_contacts_the_next_sync_writes(config):
    written = results(config)
    (config / "acme.yaml").write_text((config / "acme.yaml").read_text().replace("points: 3", "points: 5"))
    result = run("score")
    assert result.exit_code == 0
    assert result.output.endswith(
        "note no CRM was changed: the next `leadpulse sync --tenant acme` writes the new values of 2 contacts (2 writes "
        "and 0 tasks wait in the tenant's outbox)\n")
    assert results(config) == written
    assert run("sync").exit_code == 0
    assert {cid: row["lp_score"] for cid, row in results(config).items()} == {"c1": "19", "c2": "5"}
