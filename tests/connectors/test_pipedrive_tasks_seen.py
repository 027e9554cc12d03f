"""Pipedrive follow-ups are looked up in what the run's activities read brought back, not one call a person: that
read covers every activity leadpulse made before the run, a store restored from an older copy included."""

from __future__ import annotations

import shutil
import sqlite3
import time
from collections import Counter
from contextlib import closing
from datetime import UTC, datetime, timedelta

import pytest
from crms import PipedriveDriver, sync

from leadpulse.connectors.pipedrive import PipedriveConnector
from leadpulse.core.clock import ManualClock
from leadpulse.core.store.runs import RunOutcome

PIPEDRIVE = PipedriveDriver()


def now() -> ManualClock:
    """A run starting now, after whatever came before it: in the next whole second (Pipedrive stamps to it)."""
    time.sleep(1 - time.time() % 1)
    return ManualClock(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture
def looked_up(monkeypatch) -> list[int]:
    """The sizes of the batches looked up in Pipedrive (`find_tasks`), call by call."""
    calls: list[int] = []
    original = PipedriveConnector.find_tasks

    def recorded(self, tasks):
        calls.append(len(tasks))
        return original(self, tasks)

    monkeypatch.setattr(PipedriveConnector, "find_tasks", recorded)
    return calls


def test_fresh_follow_ups_are_created_with_no_look_up_in_pipedrive(sandbox_factory, tmp_path, looked_up):
    sb = sandbox_factory("pipedrive", contacts=300, seed=21, **PIPEDRIVE.sandbox_options)
    summary = sync(PIPEDRIVE, sb, tmp_path, now())
    assert summary.outcome is RunOutcome.SUCCEEDED and summary.tasks > 0
    assert looked_up == []
    assert sb.stats.count("activities.list") < summary.tasks  # the stream's pages only, no list a person


def test_a_store_restored_from_before_its_follow_ups_finds_them_in_the_activities_it_reads_again(
        sandbox_factory, tmp_path, looked_up):
    sb = sandbox_factory("pipedrive", contacts=300, seed=21, **PIPEDRIVE.sandbox_options)
    state = tmp_path / "state"
    sync(PIPEDRIVE, sb, state, now(), dry_run=True)
    path = PIPEDRIVE.tenant(sb).store_path(state)
    with closing(sqlite3.connect(path)) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    shutil.copy(path, tmp_path / "backup.sqlite")
    made = sync(PIPEDRIVE, sb, state, now()).tasks
    assert made > 0
    for sidecar in (path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        sidecar.unlink(missing_ok=True)
    shutil.copy(tmp_path / "backup.sqlite", path)

    again = sync(PIPEDRIVE, sb, state, now())

    assert again.outcome is RunOutcome.SUCCEEDED and again.tasks == made  # found, settled
    assert looked_up == []
    assert max(Counter(PIPEDRIVE.tasks(sb)).values()) == 1 and len(PIPEDRIVE.tasks(sb)) == made


def test_a_run_whose_start_is_behind_pipedrives_clock_looks_its_follow_ups_up_in_pipedrive(
        sandbox_factory, tmp_path, looked_up):
    sb = sandbox_factory("pipedrive", contacts=300, seed=21, **PIPEDRIVE.sandbox_options)
    behind = ManualClock(datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5))
    summary = sync(PIPEDRIVE, sb, tmp_path, behind)
    assert summary.outcome is RunOutcome.SUCCEEDED and summary.tasks > 0
    assert sum(looked_up) == summary.tasks  # every batch looked up before it was created
