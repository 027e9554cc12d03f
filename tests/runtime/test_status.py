"""`leadpulse status`: what each tenant's store says about its runs, read without writing."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from file_tenant import contact, file_tenant

from leadpulse.core.cli.main import main
from leadpulse.core.runtime.status import read_status
from leadpulse.core.store.runs import RunCounts, RunOutcome
from leadpulse.core.store.store import Store

STARTED = datetime(2025, 6, 2, 9, tzinfo=UTC)


@pytest.fixture
def tenant(tmp_path):
    return file_tenant(tmp_path / "config", [contact("c1")], [])


@pytest.fixture
def state(tmp_path) -> Path:
    return tmp_path / "state"


def record_run(store: Store, tenant_name: str, minute: int, *, outcome: str | None = "succeeded",
               dry_run: bool = False, pulled: int = 0) -> int:
    """A runs row started `minute` minutes after STARTED; `outcome` None leaves it unfinished, as a killed run does."""
    run_id = store.start_run(tenant_name, STARTED + timedelta(minutes=minute), dry_run=dry_run)
    if outcome is not None:
        store.finish_run(run_id, STARTED + timedelta(minutes=minute, seconds=30), RunOutcome(outcome),
                         RunCounts(pulled=pulled))
    return run_id


def status_rows(config: Path, state: Path, *extra: str) -> list[list[str]]:
    result = CliRunner().invoke(main, ["status", "--config-dir", str(config), "--state-dir", str(state), *extra],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return [[cell.strip() for cell in line.split("│")[1:-1]] for line in result.output.splitlines()
            if line.startswith("│")]


def test_a_run_in_progress_leaves_the_last_finished_run_as_the_last_run(tenant, state):
    with Store.open(tenant.store_path(state)) as store:
        finished = record_run(store, tenant.name, 0, pulled=4400)
        going = record_run(store, tenant.name, 60, outcome=None)
    status = read_status(tenant, state).as_dict()
    assert (status["last_run_id"], status["outcome"], status["pulled"]) == (finished, "succeeded", 4400)
    assert (status["unfinished_run_id"], status["unfinished_since"]) == (going, "2025-06-02T10:00:00.000+00:00")


def test_an_unfinished_run_older_than_the_last_finished_one_is_not_shown(tenant, state):
    with Store.open(tenant.store_path(state)) as store:
        record_run(store, tenant.name, 0, outcome=None)
        record_run(store, tenant.name, 60)
    assert read_status(tenant, state).as_dict()["unfinished_run_id"] is None


def test_status_table_shows_the_last_finished_run_and_the_unfinished_one_apart(tenant, state):
    with Store.open(tenant.store_path(state)) as store:
        record_run(store, tenant.name, 0, pulled=4400)
        going = record_run(store, tenant.name, 60, outcome=None)
    [row] = status_rows(tenant.source_path.parent, state)
    assert row[:4] == ["acme", "2025-06-02 09:00:00 UTC", "succeeded", "4400"]
    assert row[9] == f"run {going} started at 2025-06-02 10:00:00 UTC, not finished"


def test_status_table_of_a_first_run_still_going_says_none_finished(tenant, state):
    with Store.open(tenant.store_path(state)) as store:
        record_run(store, tenant.name, 0, outcome=None)
    [row] = status_rows(tenant.source_path.parent, state)
    assert row[1:3] == ["-", "none finished"]
    assert row[9].endswith("not finished")


def test_an_offline_rescore_is_not_taken_for_the_last_sync(tenant, state):
    from leadpulse.core.runtime.pipeline import rescore_tenant, sync_tenant

    synced = sync_tenant(tenant, state_dir=state)
    rescore_tenant(tenant, state_dir=state)
    status = read_status(tenant, state).as_dict()
    assert (status["last_run_id"], status["pulled"]) == (synced.run_id, synced.pulled)


def test_a_dry_run_sync_is_not_taken_for_the_last_sync(tenant, state):
    with Store.open(tenant.store_path(state)) as store:
        synced = record_run(store, tenant.name, 0, pulled=4400)
        record_run(store, tenant.name, 60, dry_run=True, pulled=7)
    assert read_status(tenant, state).as_dict()["last_run_id"] == synced


def test_status_table_of_a_tenant_with_only_dry_runs_says_never_synced(tenant, state):
    with Store.open(tenant.store_path(state)) as store:
        record_run(store, tenant.name, 0, dry_run=True)
    [row] = status_rows(tenant.source_path.parent, state)
    assert row[1:3] == ["-", "never synced"]


def test_status_reads_the_config_folder_in_the_working_directory_by_default(tenant, state, monkeypatch):
    monkeypatch.chdir(tenant.source_path.parent.parent)
    result = CliRunner().invoke(main, ["status", "--state-dir", str(state), "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["tenant"] for line in result.output.splitlines()] == ["acme"]


def test_status_reports_a_damaged_store_in_its_row_and_still_shows_the_other_tenants(tenant, state, tmp_path):
    other = file_tenant(tmp_path / "config", [contact("c1")], [], name="beta")
    with Store.open(other.store_path(state)) as store:
        record_run(store, other.name, 0, pulled=7)
    tenant.store_path(state).write_bytes(b"not a database\n" * 100)
    result = CliRunner().invoke(main, ["status", "--config-dir", str(tmp_path / "config"),
                                           "--state-dir", str(state)])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.exception
    assert "store unreadable" in result.output and "beta" in result.output
    assert f"error: tenant 'acme': {tenant.store_path(state)} is damaged" in result.output


def test_status_of_an_emptied_store_says_it_is_not_a_leadpulse_store(tenant, state):
    state.mkdir()
    tenant.store_path(state).write_bytes(b"")
    assert "is not a leadpulse checkpoint store: it is empty" in read_status(tenant, state).store_error
