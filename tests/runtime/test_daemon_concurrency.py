"""How many runs the daemon keeps going: as many as their waiting on the CRMs allows, up to ``max_parallel``, with
no more than ``max_scoring`` of them scoring at once, and a stuck or failing tenant holding up nobody else."""

from __future__ import annotations

import io
import json
import logging
import threading
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from file_tenant import NOW, contact, file_tenant, page_view, results
from support import Schedule, wait_for

from leadpulse.core.clock import ManualClock
from leadpulse.core.runtime import logs
from leadpulse.core.runtime.daemon import Daemon, DaemonSettings
from leadpulse.core.runtime.pipeline import sync_tenant
from leadpulse.core.runtime.run import RunSummary
from leadpulse.core.store.runs import RunOutcome
from leadpulse.core.store.store import Store


@dataclass(frozen=True)
class Tenant:
    name: str
    source_path: Path
    schedule: Schedule

    def resolve_secrets(self) -> dict[str, str]:
        return {}

    def store_path(self, state_dir: Path) -> Path:
        return state_dir / f"{self.name}.sqlite"


def tenant(tmp_path: Path, name: str, every: float = 0.1) -> Tenant:
    return Tenant(name=name, source_path=tmp_path / f"{name}.yaml", schedule=Schedule(every=timedelta(seconds=every)))


@dataclass
class WaitThenScore:
    """A stand-in run: `waiting` seconds on its CRM, then `scoring_seconds` inside the daemon's scoring slot.

    Tenants named in `stuck` wait until `release` is set instead (a CRM that stopped answering); tenants in
    `failing` raise at once.
    """

    waiting: float = 0.1
    scoring_seconds: float = 0.0
    stuck: frozenset[str] = frozenset()
    failing: frozenset[str] = frozenset()
    release: threading.Event = field(default_factory=threading.Event)
    runs: dict[str, int] = field(default_factory=dict)
    in_flight: int = 0
    scoring: int = 0
    most_in_flight: int = 0
    most_scoring: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, tenant: Any, *, state_dir: Path, stop: threading.Event,
                 scoring: AbstractContextManager[object]) -> RunSummary:
        if tenant.name in self.failing:
            raise RuntimeError("the CRM answered 500")
        with self._counted("in_flight"):
            if tenant.name in self.stuck:
                self.release.wait(30)
            stop.wait(self.waiting)
            with scoring, self._counted("scoring"):
                stop.wait(self.scoring_seconds)
        with self.lock:
            self.runs[tenant.name] = self.runs.get(tenant.name, 0) + 1
        return RunSummary(tenant.name, 1, RunOutcome.SUCCEEDED)

    def _counted(self, what: str) -> _Counted:
        return _Counted(self, what)

    def ran(self, names: list[str], times: int) -> bool:
        with self.lock:
            return all(self.runs.get(name, 0) >= times for name in names)


class _Counted:
    def __init__(self, sync: WaitThenScore, what: str) -> None:
        self.sync, self.what = sync, what

    def __enter__(self) -> None:
        with self.sync.lock:
            now = getattr(self.sync, self.what) + 1
            setattr(self.sync, self.what, now)
            most = f"most_{self.what}"
            setattr(self.sync, most, max(getattr(self.sync, most), now))

    def __exit__(self, *exc: object) -> None:
        with self.sync.lock:
            setattr(self.sync, self.what, getattr(self.sync, self.what) - 1)


@pytest.fixture
def make_daemon(tmp_path: Path):
    made: list[tuple[Daemon, WaitThenScore]] = []

    def make(tenants: list[Tenant], sync: WaitThenScore, **settings: Any) -> Daemon:
        options: dict[str, Any] = {"config_dir": tmp_path, "state_dir": tmp_path / "state", "port": None,
                                   "grace_seconds": 5.0}
        daemon = Daemon(DaemonSettings(**(options | settings)), sync=sync,
                        load=lambda _dir: (list(tenants), []))  # type: ignore[arg-type]  # stand-in tenants
        made.append((daemon, sync))
        return daemon

    yield make
    for daemon, sync in made:
        sync.release.set()
        daemon.drain()


def test_runs_waiting_on_their_crms_fill_max_parallel_not_the_cores(make_daemon, tmp_path):
    sync = WaitThenScore(waiting=0.3)
    names = [f"u-w{i}" for i in range(12)]
    daemon = make_daemon([tenant(tmp_path, name) for name in names], sync, max_parallel=8, max_scoring=1)
    daemon.start()
    assert wait_for(lambda: sync.ran(names, 2))
    assert sync.most_in_flight == 8


def test_no_more_runs_than_max_scoring_score_at_once(make_daemon, tmp_path):
    # Eight runs in flight would each score two thirds of the time: unchecked, several would score at once.
    sync = WaitThenScore(waiting=0.05, scoring_seconds=0.1)
    names = [f"u-s{i}" for i in range(8)]
    daemon = make_daemon([tenant(tmp_path, name) for name in names], sync, max_parallel=8, max_scoring=2)
    daemon.start()
    assert wait_for(lambda: sync.ran(names, 3))
    assert sync.most_scoring == 2
    assert sync.most_in_flight > 2


def test_stuck_and_failing_tenants_do_not_hold_up_the_others_at_the_default_settings(make_daemon, tmp_path):
    stuck = frozenset(f"u-stuck{i}" for i in range(10))
    failing = frozenset({"u-fails"})
    healthy = ["u-ok1", "u-ok2"]
    sync = WaitThenScore(waiting=0.0, stuck=stuck, failing=failing)
    everyone = sorted(stuck | failing) + healthy
    daemon = make_daemon([tenant(tmp_path, name) for name in everyone], sync)
    daemon.start()
    assert wait_for(lambda: sync.in_flight >= len(stuck))
    assert wait_for(lambda: sync.ran(healthy, 5))
    assert not any(sync.runs.get(name) for name in stuck)  # still stuck all along


class Gate:
    """A scoring slot that notes what the tenant's store held when the run took it and when it gave it back."""

    def __init__(self, store_path: Path, folder: Path) -> None:
        self.store_path, self.folder = store_path, folder
        self.seen: list[tuple[str, int, int, int, bool]] = []

    def __enter__(self) -> None:
        self._note("taken")

    def __exit__(self, *exc: object) -> None:
        self._note("given back")

    def _note(self, what: str) -> None:
        with Store.reading(self.store_path) as store:
            counts = store.counts()
        self.seen.append((what, counts["contacts"], counts["scores"], counts["outbox"], bool(results(self.folder))))


def test_a_sync_holds_the_scoring_slot_around_scoring_only(tmp_path):
    acme = file_tenant(tmp_path, [contact("c1", "VP Sales"), contact("c2")], [page_view("a1", "c1")])
    gate = Gate(acme.store_path(tmp_path / "state"), tmp_path)
    summary = sync_tenant(acme, state_dir=tmp_path / "state", clock=ManualClock(NOW), scoring=gate)
    assert summary.outcome is RunOutcome.SUCCEEDED and summary.written == 2
    # taken after the pull stored both contacts, given back once both are scored and queued, before the push
    assert gate.seen == [("taken", 2, 0, 0, False), ("given back", 2, 2, gate.seen[1][3], False)]
    assert gate.seen[1][3] > 0 and len(results(tmp_path)) == 2


def test_each_scheduled_run_says_when_it_was_due_how_late_it_started_and_how_many_ran_with_it(make_daemon, tmp_path):
    stream = io.StringIO()
    handler = logs.configure(stream=stream, json_lines=True, level=logging.INFO)
    try:
        sync = WaitThenScore(waiting=0.05)
        daemon = make_daemon([tenant(tmp_path, "u-l1"), tenant(tmp_path, "u-l2")], sync)
        daemon.start()
        assert wait_for(lambda: sync.ran(["u-l1", "u-l2"], 2))
        daemon.drain()
    finally:
        logging.getLogger().removeHandler(handler)
        logging.getLogger().setLevel(logging.WARNING)
    runs = [line for line in map(json.loads, stream.getvalue().splitlines()) if line.get("outcome") == "succeeded"]
    assert len(runs) >= 4
    for line in runs:
        assert datetime.fromisoformat(line["due"]) <= datetime.fromisoformat(line["time"])
        assert 0 <= line["schedule_delay"] < 5 and line["in_flight"] in (1, 2)
