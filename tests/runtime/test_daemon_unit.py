"""The daemon in-process, with stand-in tenants and a stand-in sync: scheduling, overlaps, reloads, drain."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from support import Schedule, metric, readyz, wait_for

from leadpulse.core.errors import DaemonError
from leadpulse.core.runtime import metrics
from leadpulse.core.runtime.daemon import Daemon, DaemonSettings
from leadpulse.core.runtime.run import RunSummary
from leadpulse.core.schedule import parse_duration, trigger_for
from leadpulse.core.store.runs import RunOutcome


@dataclass(frozen=True)
class Tenant:
    name: str
    source_path: Path
    schedule: Schedule
    secrets: tuple[str, ...] = ()

    def resolve_secrets(self) -> dict[str, str]:
        return {f"s{i}": s for i, s in enumerate(self.secrets)}

    def store_path(self, state_dir: Path) -> Path:
        return state_dir / f"{self.name}.sqlite"




@dataclass
class FakeSync:
    """Counts runs per tenant and the most runs ever going at once, in total and per tenant."""

    duration: float = 0.0
    runs: dict[str, int] = field(default_factory=dict)
    going: dict[str, int] = field(default_factory=dict)
    most_per_tenant: int = 0
    most_at_once: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, tenant: Any, *, state_dir: Path, stop: threading.Event,  # a stand-in Tenant
                 scoring: AbstractContextManager[object]) -> RunSummary:
        with self.lock:
            self.going[tenant.name] = self.going.get(tenant.name, 0) + 1
            self.most_per_tenant = max(self.most_per_tenant, self.going[tenant.name])
            self.most_at_once = max(self.most_at_once, sum(self.going.values()))
        stop.wait(self.duration)
        with self.lock:
            self.going[tenant.name] -= 1
            self.runs[tenant.name] = self.runs.get(tenant.name, 0) + 1
        return RunSummary(tenant.name, 1, RunOutcome.SUCCEEDED, pulled=2, written=1, seconds=self.duration)


def tenant(tmp_path: Path, name: str, every: float = 0.2) -> Tenant:
    return Tenant(name=name, source_path=tmp_path / f"{name}.yaml", schedule=Schedule(every=timedelta(seconds=every)))


@pytest.fixture
def make_daemon(tmp_path: Path):
    made: list[Daemon] = []

    def make(tenants: list[Tenant], sync: FakeSync, errors: list[Exception] | None = None, **settings: Any) -> Any:
        state: dict[str, Any] = {"tenants": tenants, "errors": errors or []}
        options: dict[str, Any] = {"config_dir": tmp_path, "state_dir": tmp_path / "state", "port": 0,
                                   "grace_seconds": 5.0}
        daemon: Any = Daemon(DaemonSettings(**(options | settings)), sync=sync,  # stand-in tenants and sync
                             load=lambda _dir: (list(state["tenants"]), list(state["errors"])))
        daemon.config = state  # the test edits what the next reload sees
        made.append(daemon)
        return daemon

    yield make
    for daemon in made:
        daemon.drain()


def test_every_tenant_runs_repeatedly_on_its_interval(make_daemon, tmp_path):
    sync = FakeSync()
    daemon = make_daemon([tenant(tmp_path, n) for n in ("u-a", "u-b", "u-c")], sync)
    daemon.start()
    assert wait_for(lambda: all(sync.runs.get(n, 0) >= 3 for n in ("u-a", "u-b", "u-c")))


def test_a_tenant_never_runs_twice_at_once_and_the_refusal_is_counted(make_daemon, tmp_path):
    before = metric("leadpulse_overlaps_refused_total", tenant="u-slow")
    sync = FakeSync(duration=0.5)
    daemon = make_daemon([tenant(tmp_path, "u-slow", every=0.1)], sync)
    daemon.start()
    assert wait_for(lambda: metric("leadpulse_overlaps_refused_total", tenant="u-slow") > before)
    assert sync.most_per_tenant == 1


def test_runs_in_parallel_never_exceed_max_parallel(make_daemon, tmp_path):
    sync = FakeSync(duration=0.15)
    daemon = make_daemon([tenant(tmp_path, f"u-p{i}", every=0.1) for i in range(6)], sync, max_parallel=2)
    daemon.start()
    assert wait_for(lambda: sum(sync.runs.values()) >= 8)
    assert sync.most_at_once == 2


def test_a_finished_run_is_counted_by_tenant_and_outcome(make_daemon, tmp_path):
    before = metric("leadpulse_runs_total", tenant="u-count", outcome="succeeded")
    pulled = metric("leadpulse_records_pulled_total", tenant="u-count")
    sync = FakeSync()
    daemon = make_daemon([tenant(tmp_path, "u-count", every=60)], sync)
    daemon.sync_once(tenant(tmp_path, "u-count"))
    assert metric("leadpulse_runs_total", tenant="u-count", outcome="succeeded") == before + 1
    assert metric("leadpulse_records_pulled_total", tenant="u-count") == pulled + 2
    assert metric("leadpulse_last_success_timestamp_seconds", tenant="u-count") > time.time() - 60


def test_reload_schedules_a_new_tenant_and_unschedules_a_removed_one(make_daemon, tmp_path):
    sync = FakeSync()
    daemon = make_daemon([tenant(tmp_path, "u-old", every=60)], sync)
    daemon.start()
    daemon.config["tenants"] = [tenant(tmp_path, "u-new", every=0.1)]
    report = daemon.reload()
    assert (report.added, report.removed) == (("u-new",), ("u-old",))
    assert wait_for(lambda: sync.runs.get("u-new", 0) >= 1)


def test_reload_reports_a_broken_file_and_keeps_its_tenant_on_the_last_good_config(make_daemon, tmp_path):
    sync = FakeSync()
    good = tenant(tmp_path, "u-keep", every=0.1)
    daemon = make_daemon([good, tenant(tmp_path, "u-other", every=60)], sync)
    daemon.start()
    broken = ValueError(f"{good.source_path}: schedule.interval: expected a duration, found 'soon'")
    broken.path = good.source_path
    daemon.config.update(tenants=[tenant(tmp_path, "u-other", every=60)], errors=[broken])
    report = daemon.reload()
    assert report.kept == ("u-keep",) and report.removed == ()
    assert "expected a duration" in report.errors[0]
    runs = sync.runs.get("u-keep", 0)
    assert wait_for(lambda: sync.runs.get("u-keep", 0) > runs)


def test_reload_reschedules_a_changed_tenant(make_daemon, tmp_path):
    daemon = make_daemon([tenant(tmp_path, "u-change", every=60)], FakeSync())
    daemon.start()
    daemon.config["tenants"] = [tenant(tmp_path, "u-change", every=30)]
    assert daemon.reload().changed == ("u-change",)


def test_drain_lets_a_running_sync_stop_at_its_batch_and_reports_success(make_daemon, tmp_path):
    sync = FakeSync(duration=30)  # ends early only because drain sets the stop event
    daemon = make_daemon([tenant(tmp_path, "u-drain", every=0.05)], sync)
    daemon.start()
    assert wait_for(lambda: sync.going.get("u-drain"))
    started = time.monotonic()
    assert daemon.drain() is True
    assert time.monotonic() - started < 2
    assert sync.runs["u-drain"] == 1


def test_drain_past_the_grace_period_reports_failure(make_daemon, tmp_path):
    class Stubborn(FakeSync):
        def __call__(self, tenant, *, state_dir, stop, scoring):
            self.going[tenant.name] = 1
            time.sleep(1.0)  # ignores the stop event
            return RunSummary(tenant.name, 1, RunOutcome.SUCCEEDED)

    sync = Stubborn()
    daemon = make_daemon([tenant(tmp_path, "u-stubborn", every=0.05)], sync, grace_seconds=0.2)
    daemon.start()
    assert wait_for(lambda: sync.going.get("u-stubborn"))
    assert daemon.drain() is False


def test_a_failing_sync_is_counted_as_an_error_and_the_tenant_keeps_its_schedule(make_daemon, tmp_path):
    calls = []

    def failing(tenant, *, state_dir, stop, scoring):
        calls.append(1)
        raise RuntimeError("boom")

    before = metric("leadpulse_runs_total", tenant="u-fail", outcome="error")
    daemon = make_daemon([tenant(tmp_path, "u-fail", every=0.1)], failing)
    daemon.start()
    assert wait_for(lambda: len(calls) >= 2)
    assert metric("leadpulse_runs_total", tenant="u-fail", outcome="error") >= before + 1


def test_a_missing_config_dir_stops_the_start_with_a_message_saying_what_to_do(tmp_path):
    daemon = Daemon(DaemonSettings(config_dir=tmp_path / "nope", state_dir=tmp_path, port=None),
                    sync=FakeSync(), load=lambda d: ([], []))
    with pytest.raises(Exception, match="does not exist: create it"):
        daemon.start()


def test_an_interval_schedule_becomes_an_interval_trigger_with_jitter():
    trigger = trigger_for(Schedule(every=timedelta(minutes=15), jitter=timedelta(seconds=30)), tenant="u-t")
    assert isinstance(trigger, IntervalTrigger)
    assert (trigger.interval_length, trigger.jitter) == (900, 30)


def test_a_cron_schedule_becomes_a_cron_trigger():
    trigger = trigger_for(Schedule(cron="*/5 9-17 * * mon-fri"), tenant="u-t")
    assert isinstance(trigger, CronTrigger)
    assert str(trigger.fields[6]) == "*/5"  # minute


def test_durations_read_as_numbers_strings_or_timedeltas():
    assert [parse_duration(text).total_seconds() for text in ("90s", "15m", "2h", 5, timedelta(minutes=1))] == [
        90, 900, 7200, 5, 60]


def test_a_run_that_used_secrets_leaves_none_of_them_in_the_logs(make_daemon, tmp_path):
    import io
    import logging

    from leadpulse.core.runtime import logs

    token, password = "hs-live-token-7a9c2e", "pa55w0rd!xyz"

    def leaky(tenant, *, state_dir, stop, scoring):
        sdk = logging.getLogger("urllib3.connectionpool")
        sdk.debug("GET /crm/v3/objects/contacts headers={'Authorization': 'Bearer %s'}", token)
        logging.getLogger("leadpulse.pipeline").info("logging in as bot with %s", password)
        raise RuntimeError(f"login refused for password {password} and token {token}")

    stream = io.StringIO()
    handler = logs.configure(stream=stream, json_lines=True, level=logging.DEBUG)
    try:
        secretive = Tenant("u-secret", tmp_path / "s.yaml", Schedule(every=timedelta(minutes=1)),
                           secrets=(token, password))
        make_daemon([secretive], leaky).sync_once(secretive)
    finally:
        logging.getLogger().removeHandler(handler)
        logging.getLogger().setLevel(logging.WARNING)
        logs.forget_secrets()
    text = stream.getvalue()
    assert "login refused" in text and "logging in as bot" in text
    assert token not in text and password not in text
    assert all(json.loads(line)["tenant"] == "u-secret" for line in text.splitlines())


def test_a_tenant_removed_during_its_run_gets_no_gauges_back_when_the_run_ends(make_daemon, tmp_path):
    started, finish = threading.Event(), threading.Event()

    def slow(tenant, *, state_dir, stop, scoring):
        started.set()
        finish.wait(5)
        return RunSummary(tenant.name, 1, RunOutcome.SUCCEEDED, pulled=1)

    daemon = make_daemon([tenant(tmp_path, "u-gone", every=0.05)], slow)
    daemon.start()
    assert started.wait(5)
    daemon.config["tenants"] = []
    assert daemon.reload().removed == ("u-gone",)
    finish.set()
    assert wait_for(lambda: not daemon._active)
    assert metrics.REGISTRY.get_sample_value("leadpulse_last_success_timestamp_seconds", {"tenant": "u-gone"}) is None
    assert metrics.REGISTRY.get_sample_value("leadpulse_outbox_backlog", {"tenant": "u-gone"}) is None
    # the run happened, so it is counted
    assert metrics.REGISTRY.get_sample_value("leadpulse_runs_total", {"tenant": "u-gone", "outcome": "succeeded"}) >= 1


def fire_days(line: str, start: datetime, end: datetime) -> list[int]:
    """Days of the month on which the cron `line` fires from `start` (included) to `end` (excluded)."""
    trigger, days, previous, now = trigger_for(Schedule(cron=line), tenant="u-t"), [], None, start  # type: ignore[arg-type]  # a stand-in schedule
    while (fire := trigger.get_next_fire_time(previous, now)) is not None and fire < end:
        days.append(fire.day)
        previous, now = fire, fire + timedelta(seconds=1)
    return days


# Sunday 1 June 2025 to Sunday 15 June 2025 (excluded): Mondays are the 2nd and 9th, Saturdays the 7th and 14th
FORTNIGHT = (datetime(2025, 6, 1, tzinfo=UTC), datetime(2025, 6, 15, tzinfo=UTC))


@pytest.mark.parametrize(
    ("line", "days"),
    [
        ("0 9 * * 1-5", [2, 3, 4, 5, 6, 9, 10, 11, 12, 13]),
        ("0 9 * * mon-fri", [2, 3, 4, 5, 6, 9, 10, 11, 12, 13]),
        ("0 9 * * 0", [1, 8]),
        ("0 9 * * 7", [1, 8]),
        ("0 9 * * 0,6", [1, 7, 8, 14]),
        ("0 9 * * 5-7", [1, 6, 7, 8, 13, 14]),
        ("0 9 * * */2", [1, 3, 5, 7, 8, 10, 12, 14]),
        ("0 9 * * 1-5/2", [2, 4, 6, 9, 11, 13]),
    ],
)
def test_cron_weekdays_count_from_sunday_as_standard_cron_does(line, days):
    assert fire_days(line, *FORTNIGHT) == days


def test_a_cron_line_restricting_day_of_month_and_weekday_fires_when_either_matches():
    assert fire_days("0 9 1,10 * 1", *FORTNIGHT) == [1, 2, 9, 10]


def test_a_cron_line_restricting_only_one_of_the_two_day_fields_fires_on_that_one():
    assert fire_days("0 9 * 6 1", *FORTNIGHT) == [2, 9]
    assert fire_days("0 9 10 * *", *FORTNIGHT) == [10]


@pytest.mark.parametrize("line", ["0 9 * * 8", "0 9 * * fri-mon", "0 9 L * *", "0 9 * * 1#2", "0 9 last * *"])
def test_a_cron_line_standard_cron_would_not_read_the_same_is_refused(line):
    with pytest.raises(ValueError, match="expected"):
        trigger_for(Schedule(cron=line), tenant="u-t")


def test_jittered_interval_runs_stay_on_their_grid_so_they_come_once_an_interval_on_average():
    trigger = trigger_for(Schedule(every=timedelta(minutes=1), jitter=timedelta(seconds=30)), tenant="u-t")
    first = previous = trigger.get_next_fire_time(None, datetime.now(UTC))
    late = []
    for _ in range(600):
        previous = trigger.get_next_fire_time(previous, previous)
        late.append(((previous - trigger.start_date) % timedelta(minutes=1)).total_seconds())
    assert all(0 <= seconds_late <= 30 for seconds_late in late)
    assert (previous - first).total_seconds() / 600 == pytest.approx(60, abs=0.1)


def first_runs(names: list[str], now: datetime, every: timedelta = timedelta(minutes=15)) -> dict[str, datetime]:
    schedule: Any = Schedule(every=every)  # a stand-in schedule
    return {name: trigger_for(schedule, tenant=name).get_next_fire_time(None, now) for name in names}


def test_interval_tenants_first_run_spread_evenly_over_their_first_interval():
    now = datetime(2025, 6, 2, 9, 7, 13, tzinfo=UTC)
    firsts = first_runs([f"tenant-{n}" for n in range(1000)], now)
    assert all(now <= first < now + timedelta(minutes=15) for first in firsts.values())
    # 1000 runs over 15 minutes: each minute gets about 67 of them, never all at once
    per_minute = Counter(int((first - now).total_seconds() // 60) for first in firsts.values())
    assert len(per_minute) == 15 and all(40 <= count <= 95 for count in per_minute.values())


def test_a_restart_keeps_each_tenant_at_its_place_of_the_interval():
    names = [f"tenant-{n}" for n in range(50)]
    before = first_runs(names, datetime(2025, 6, 2, 9, 0, tzinfo=UTC))
    after = first_runs(names, datetime(2025, 6, 2, 9, 0, tzinfo=UTC) + timedelta(hours=5, seconds=41.5))
    assert all((after[name] - before[name]) % timedelta(minutes=15) == timedelta(0) for name in names)
    assert len(set(before.values())) == len(names)


def test_a_first_run_falling_on_now_is_followed_by_the_next_one_a_whole_interval_later():
    trigger = trigger_for(Schedule(every=timedelta(minutes=15)), tenant="u-t")
    first = trigger.get_next_fire_time(None, datetime(2025, 6, 2, tzinfo=UTC))
    assert trigger.get_next_fire_time(None, first) == first
    assert trigger.get_next_fire_time(first, first) - first == timedelta(minutes=15)


def test_a_tenant_file_that_is_not_utf8_is_refused_and_the_good_tenant_beside_it_runs(tmp_path):
    from file_tenant import contact, file_tenant

    config = tmp_path / "config"
    file_tenant(config, [contact("c1")], [])
    (config / "broken.yaml").write_bytes((config / "acme.yaml").read_text().replace("tenant: acme", "tenant: b\n# caf\xe9")
                                         .encode("latin-1"))
    sync = FakeSync()
    daemon = Daemon(DaemonSettings(config_dir=config, state_dir=tmp_path / "state", port=0), sync=sync)
    try:
        report = daemon.start()
        assert report.added == ("acme",) and "broken.yaml: (file): expected a UTF-8 text file" in report.errors[0]
        assert daemon.sync_once(daemon._tenants["acme"]) is not None and sync.runs == {"acme": 1}
        status, body = readyz(daemon)
        assert status == 200 and "1 tenants scheduled" in body["detail"] and "broken.yaml" in body["detail"]
    finally:
        daemon.drain()


def test_readyz_fails_when_every_tenant_file_was_refused(tmp_path):
    config = tmp_path / "config"
    config.mkdir()
    (config / "broken.yaml").write_bytes(b"tenant: b\n# caf\xe9\n")
    daemon = Daemon(DaemonSettings(config_dir=config, state_dir=tmp_path / "state", port=0), sync=FakeSync())
    try:
        daemon.start()
        status, body = readyz(daemon)
        assert status == 503 and "0 tenants scheduled" in body["detail"] and "broken.yaml" in body["detail"]
    finally:
        daemon.drain()


def test_an_empty_config_dir_stops_the_start_with_a_message_saying_what_to_do(tmp_path):
    (tmp_path / "config").mkdir()
    daemon = Daemon(DaemonSettings(config_dir=tmp_path / "config", state_dir=tmp_path / "state", port=None),
                    sync=FakeSync())
    with pytest.raises(DaemonError, match="holds no tenant files"):
        daemon.start()
