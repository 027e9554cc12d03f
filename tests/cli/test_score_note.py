"""``leadpulse score`` changes no CRM and says so: what the new scores change waits for the next sync."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from file_tenant import results

from leadpulse.core.cli.main import main


@pytest.fixture
def config(synced_acme: Path) -> Path:
    return synced_acme


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
