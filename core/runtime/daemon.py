"""The long-running service: every tenant file in a directory synced on its own schedule.

One APScheduler 3 job per tenant (interval or cron trigger, with jitter; an interval tenant at its own place of
the interval, see `leadpulse.core.schedule.trigger_for`). A run spends most of its time waiting on its CRM's rate
limits, not on a core, so runs are sized by that waiting: up to ``max_parallel`` of them are in flight at once
(threads, which wait without holding the interpreter), while the part that needs a core, scoring and deciding, is
held to ``max_scoring`` runs at a time by a semaphore each run takes around it. A tenant's own budget keeps it
under its CRM's limits however many others run beside it, and a slow or stuck tenant holds one thread, never
the others' turns.

A tenant never runs twice at once: the job has ``max_instances=1`` and the daemon holds a per-tenant lock around
the run (the store's own run lock covers other processes); a refused overlap is logged and counted in
``leadpulse_overlaps_refused_total``.

Signals (taken synchronously by the main thread, never in a handler):

- SIGHUP re-reads the directory: new tenants are scheduled, removed ones unscheduled, changed ones
  rescheduled with their new config. A file that no longer loads is reported and its tenant keeps running on
  its last good config; the other tenants never notice. A tenant named by two files runs on neither (see
  `leadpulse.core.errors.DuplicateTenant`) until one of them is renamed or moved out.
- SIGTERM / SIGINT stop new runs and set the stop event every run checks between batches, so a running
  tenant finishes its current batch, checkpoints and returns. The daemon exits 0 once every run has ended
  within ``grace_seconds``, else 1 (the store loses nothing either way: each page is its own transaction).

``leadpulse daemon`` runs it (`run`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from apscheduler.events import EVENT_JOB_MAX_INSTANCES, JobEvent
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

from leadpulse.core.config.files import load_config_dir
from leadpulse.core.config.tenant import TenantConfig
from leadpulse.core.errors import ConfigError, DaemonError, DuplicateTenant, LeadpulseError, RunLocked, StoreError
from leadpulse.core.runtime import logs, metrics
from leadpulse.core.runtime.health import HealthServer, Probe
from leadpulse.core.runtime.pipeline import sync_tenant
from leadpulse.core.runtime.run import RunSummary
from leadpulse.core.runtime.status import read_backlog
from leadpulse.core.runtime.workers import usable_cores
from leadpulse.core.schedule import trigger_for
from leadpulse.core.store.runs import RunOutcome

log = logging.getLogger("leadpulse.daemon")


class SyncFn(Protocol):
    """What runs one sync: `sync_tenant` unless a test passes its own. It holds `scoring` while it scores, so
    no more runs than the daemon's cores do that part at once."""

    def __call__(self, tenant: TenantConfig, *, state_dir: Path, stop: threading.Event,
                 scoring: AbstractContextManager[object]) -> RunSummary: ...


#: load(config_dir) -> (tenants, errors): `load_config_dir` unless a test passes its own
LoadFn = Callable[[Path], tuple[Sequence[TenantConfig], Sequence[Exception]]]

#: test and benchmark hook: intervals run this many times faster (tenant files refuse intervals under 1m)
SCHEDULE_SCALE_ENV = "LEADPULSE_TEST_SCHEDULE_SCALE"

SIGNALS = (signal.SIGHUP, signal.SIGTERM, signal.SIGINT)

#: tenant runs in flight at once unless the operator says otherwise (``--max-parallel``); see deploy/README.md
RUNS_IN_FLIGHT = 32


@dataclass(frozen=True)
class DaemonSettings:
    config_dir: Path
    state_dir: Path
    #: tenant runs in flight at once, most of them waiting on their CRMs
    max_parallel: int = RUNS_IN_FLIGHT
    #: runs scoring at once: the part of a run that needs a core
    max_scoring: int = field(default_factory=usable_cores)
    grace_seconds: float = 30.0
    host: str = "127.0.0.1"
    #: port of /healthz, /readyz and /metrics; None serves nothing
    port: int | None = 9464
    #: intervals run this many times faster; only tests and benchmarks change it (`SCHEDULE_SCALE_ENV`)
    schedule_scale: float = 1.0


@dataclass(frozen=True)
class ReloadReport:
    """What a (re)load of the config directory changed; `kept` tenants run on their last good config."""

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    kept: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()


class _DueTimeExecutor(ThreadPoolExecutor):  # type: ignore[misc]  # APScheduler 3 ships no type hints
    """A thread pool that remembers when each submitted run was due, so the run can measure its lateness."""

    def __init__(self, max_workers: int) -> None:
        super().__init__(max_workers)
        self.due: dict[str, datetime] = {}

    def _do_submit_job(self, job: Any, run_times: list[datetime]) -> None:
        self.due[job.id] = run_times[-1]
        super()._do_submit_job(job, run_times)


class Daemon:
    """Schedules every tenant of a config directory and runs their syncs. See the module docstring."""

    def __init__(self, settings: DaemonSettings, *, sync: SyncFn | None = None, load: LoadFn | None = None) -> None:
        self.settings = settings
        self._sync: SyncFn = sync or sync_tenant
        self._load: LoadFn = load or load_config_dir
        self._executor = _DueTimeExecutor(settings.max_parallel)
        self._scoring = threading.BoundedSemaphore(settings.max_scoring)
        self._scheduler = BackgroundScheduler(
            executors={"default": self._executor},
            job_defaults={"max_instances": 1, "coalesce": True, "misfire_grace_time": None},
            timezone=UTC,
        )
        self._scheduler.add_listener(self._on_overlap, EVENT_JOB_MAX_INSTANCES)
        self._tenants: dict[str, TenantConfig] = {}
        #: held while the tenants change and while a run reports, so a removed tenant's gauges stay removed
        self._roster = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}
        self._active: set[str] = set()
        self._idle = threading.Condition()
        self.stop_event = threading.Event()
        self._draining = threading.Event()
        self._loaded = threading.Event()
        #: the tenant files the last (re)load refused, each with why
        self._refused: tuple[str, ...] = ()
        self._health: HealthServer | None = None

    # -- lifecycle ---------------------------------------------------------------------------------------

    def start(self) -> ReloadReport:
        """Load the config directory, start the scheduler and the health server."""
        folder = self.settings.config_dir
        if not folder.is_dir():
            raise DaemonError(
                f"config directory {folder} does not exist: create it and put tenant files (*.yaml) in it, or pass "
                "--config-dir"
            )
        self.settings.state_dir.mkdir(parents=True, exist_ok=True)
        report = self.reload()
        if not self._tenants and not report.errors:
            raise DaemonError(f"config directory {folder} holds no tenant files (*.yaml, *.yml): put them there, or "
                              "pass the folder that holds them with --config-dir")
        if self.settings.port is not None:
            self._health = self._start_health(self.settings.port)
        self._scheduler.start()
        self._loaded.set()
        log.info("daemon started: %d tenants, up to %d runs in flight, %d scoring at once", len(self._tenants),
                 self.settings.max_parallel, self.settings.max_scoring)
        return report

    def _start_health(self, port: int) -> HealthServer:
        try:
            server = HealthServer(Probe(self._alive, self._ready), host=self.settings.host, port=port)
        except OSError as exc:
            raise DaemonError(
                f"cannot serve health and metrics on {self.settings.host}:{self.settings.port}: {exc}; "
                "pick another --port"
            ) from exc
        server.start()
        log.info("health and metrics on http://%s:%d (/healthz /readyz /metrics)", self.settings.host, server.port,
                 extra={"port": server.port})
        return server

    @property
    def health_port(self) -> int | None:
        return self._health.port if self._health else None

    def drain(self) -> bool:
        """Stop new runs, ask running ones to stop after their batch, wait up to the grace period.

        :returns: True if every run ended within the grace period.
        """
        self._draining.set()
        self.stop_event.set()
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)
        deadline = time.monotonic() + self.settings.grace_seconds
        with self._idle:
            while self._active and time.monotonic() < deadline:
                self._idle.wait(max(0.0, deadline - time.monotonic()))
            left = sorted(self._active)
        if left:
            log.error("grace period of %ss ended with runs still going: %s", self.settings.grace_seconds, left)
        if self._health:
            self._health.stop()
        return not left

    def serve(self) -> int:
        """Run until SIGTERM or SIGINT; SIGHUP reloads. Returns the process exit code."""
        # Blocked before any thread starts, so every thread inherits the mask and only sigtimedwait sees them.
        signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
        try:
            self.start()
        except DaemonError as exc:
            log.error("%s", exc)
            return 2
        while True:
            info = signal.sigtimedwait(SIGNALS, 1.0)
            if info is None:
                continue
            if info.si_signo == signal.SIGHUP:
                log.info("SIGHUP: reloading %s", self.settings.config_dir)
                self.reload()
                continue
            log.info("%s: no new runs; waiting up to %ss for running ones", signal.Signals(info.si_signo).name,
                     self.settings.grace_seconds)
            return 0 if self.drain() else 1

    # -- config ------------------------------------------------------------------------------------------

    def reload(self) -> ReloadReport:
        """Re-read the config directory and bring the schedule in line with it."""
        try:
            tenants, errors = self._load(self.settings.config_dir)
        except Exception as exc:  # an unreadable directory must not take the running tenants down
            log.error("cannot read config directory %s: %s; keeping the current tenants", self.settings.config_dir, exc)
            return ReloadReport(errors=(str(exc),))
        report = self._plan(tenants, errors)
        self._apply(report, {t.name: t for t in tenants})
        self._refused = report.errors
        for error in report.errors:
            log.error("tenant file refused: %s", error)
        for name in report.kept:
            log.warning("tenant %s keeps running on its last good config until its file loads again", name)
        if report.added or report.removed or report.changed:
            log.info("tenants added %s, removed %s, changed %s", list(report.added), list(report.removed),
                     list(report.changed))
        metrics.set_tenants(len(self._tenants), _count_files(errors))
        return report

    def _plan(self, tenants: Sequence[TenantConfig], errors: Sequence[Exception]) -> ReloadReport:
        fresh = {t.name: t for t in tenants}
        broken = {str(p) for p in _error_paths(errors)}
        # A tenant named by two files runs on neither, not even on its last good config: which is live is unknown.
        doubled = {error.tenant for error in errors if isinstance(error, DuplicateTenant)}
        kept = tuple(n for n, t in self._tenants.items()
                     if n not in fresh and n not in doubled and str(t.source_path) in broken)
        current = set(self._tenants) - set(kept)
        return ReloadReport(
            added=tuple(sorted(set(fresh) - current)),
            removed=tuple(sorted(current - set(fresh))),
            changed=tuple(sorted(n for n in current & set(fresh) if fresh[n] != self._tenants[n])),
            kept=tuple(sorted(kept)),
            errors=tuple(_error_lines(errors)),
        )

    def _apply(self, report: ReloadReport, fresh: dict[str, TenantConfig]) -> None:
        for name in report.removed:
            with self._roster:
                self._tenants.pop(name, None)
                metrics.forget_tenant(name)
            if self._scheduler.get_job(name):
                self._scheduler.remove_job(name)
        for name in report.added + report.changed:
            try:
                self._schedule(fresh[name])
            except ValueError as exc:
                log.error("tenant %s not scheduled: %s; fix its schedule in %s", name, exc, fresh[name].source_path)
                continue
            with self._roster:
                self._tenants[name] = fresh[name]

    def _schedule(self, tenant: TenantConfig) -> None:
        trigger = trigger_for(tenant.schedule, tenant=tenant.name, scale=self.settings.schedule_scale)
        self._scheduler.add_job(
            self._run_tenant,
            trigger,
            args=(tenant.name,),
            id=tenant.name,
            name=f"sync {tenant.name}",
            replace_existing=True,
        )

    # -- runs --------------------------------------------------------------------------------------------

    def _run_tenant(self, name: str) -> None:
        due = self._executor.due.pop(name, None)
        late = (datetime.now(UTC) - due).total_seconds() if due is not None else None
        if late is not None:
            metrics.record_schedule_delay(late)
        tenant = self._tenants.get(name)
        if tenant is None or self._draining.is_set():
            return
        lock = self._locks.setdefault(name, threading.Lock())
        if not lock.acquire(blocking=False):
            self._refuse(name, "its previous run is still going")
            return
        try:
            with self._tracking(name) as in_flight, logs.run_context(tenant=name):
                start = _Start(due, late, in_flight)
                log.debug("run starts", extra=start.fields())
                self._sync_and_report(tenant, start)
        finally:
            lock.release()

    def sync_once(self, tenant: TenantConfig) -> RunSummary | None:
        """Run one sync of `tenant` now, count it, and return its summary (None if it raised)."""
        with logs.run_context(tenant=tenant.name):
            return self._sync_and_report(tenant, None)

    def _sync_and_report(self, tenant: TenantConfig, start: _Start | None) -> RunSummary | None:
        """Run `tenant`'s sync and report it; `start` is None for a run not on the schedule (`sync_once`)."""
        # a missing secret fails the run inside the pipeline, with its own message
        with contextlib.suppress(ConfigError):
            logs.register_secrets(tenant.resolve_secrets().values())
        try:
            summary = self._sync(tenant, state_dir=self.settings.state_dir, stop=self.stop_event,
                                 scoring=self._scoring)
        except RunLocked as exc:
            self._refuse(tenant.name, str(exc))
            return None
        except Exception as exc:
            # leadpulse's own errors already say what went wrong and what to do: a traceback adds only noise
            log.error("run failed: %s", exc, exc_info=not isinstance(exc, LeadpulseError),
                      extra=start.fields() if start else {})
            metrics.RUNS.labels(tenant.name, "error").inc()
            return None
        self._report(tenant, summary, start)
        return summary

    def _report(self, tenant: TenantConfig, summary: RunSummary, start: _Start | None) -> None:
        backlog = self._backlog(tenant)
        with self._roster:
            # A SIGHUP may have removed or replaced a scheduled tenant while it ran: its gauges were dropped (or
            # now belong to the new config) and must not come back from a run of the config that is gone.
            current = start is None or self._tenants.get(tenant.name) is tenant
            metrics.record_run(summary, gauges=current)
            if current and backlog is not None:
                metrics.record_backlog(tenant.name, backlog)
        note = "" if current else "; its tenant was removed or changed meanwhile: its gauges are left alone"
        self._log_run(summary, note, start)

    def _log_run(self, summary: RunSummary, note: str, start: _Start | None) -> None:
        outcome = summary.outcome.value
        counts = ", ".join(f"{name} {n}" for name, n in summary.as_dict().items() if n) or "nothing to do"
        details = f"; error: {summary.error}" if summary.error else ""
        if summary.notes:
            details += "; first skipped or refused: " + " | ".join(summary.notes)
        if summary.deferral:
            details += f"; {summary.deferral}"
        log.log(
            logging.WARNING if summary.error or summary.outcome is RunOutcome.PARTIAL else logging.INFO,
            "run %s: %s in %.2fs%s", outcome, counts, summary.seconds, details + note,
            extra={"run_id": summary.run_id, "outcome": outcome} | (start.fields() if start else {}),
        )

    def _backlog(self, tenant: TenantConfig) -> int | None:
        try:
            return read_backlog(tenant, self.settings.state_dir)
        except StoreError as exc:  # a store being migrated or locked: the next run reports it
            log.warning("cannot read the outbox backlog: %s", exc)
            return None

    def _refuse(self, name: str, why: str) -> None:
        metrics.record_overlap(name)
        log.warning("run refused: %s", why, extra={"tenant": name})

    def _on_overlap(self, event: JobEvent) -> None:
        self._refuse(event.job_id, "its previous run is still going (scheduler)")

    def _tracking(self, name: str) -> _Tracking:
        return _Tracking(self, name)

    # -- probes ------------------------------------------------------------------------------------------

    def _alive(self) -> tuple[bool, str]:
        if self._loaded.is_set() and not self._scheduler.running and not self._draining.is_set():
            return False, "scheduler stopped"
        return True, f"{len(self._active)} runs going"

    def _ready(self) -> tuple[bool, str]:
        """Ready once the folder is loaded, unless every tenant file in it was refused; the refused files are named
        either way, so an operator sees a tenant that does not run."""
        if self._draining.is_set():
            return False, "draining: no new runs"
        if not self._loaded.is_set():
            return False, "loading config"
        detail = f"{len(self._tenants)} tenants scheduled"
        if self._refused:
            detail += f"; {len(self._refused)} tenant file problems: " + "; ".join(self._refused)
        return bool(self._tenants) or not self._refused, detail


@dataclass(frozen=True)
class _Start:
    """How a scheduled run started: when it was due, how many seconds late, and the runs in flight with it
    (itself included). Its summary line carries them, for an operator and bench/daemon.py to read."""

    due: datetime | None
    late: float | None
    in_flight: int

    def fields(self) -> dict[str, object]:
        return {"due": self.due.isoformat() if self.due else None, "schedule_delay": self.late,
                "in_flight": self.in_flight}


class _Tracking:
    """Marks a tenant's run active for the drain to wait on, and counts the runs in flight."""

    def __init__(self, daemon: Daemon, name: str) -> None:
        self.daemon, self.name = daemon, name

    def __enter__(self) -> int:
        """:returns: the runs in flight, this one included."""
        with self.daemon._idle:
            self.daemon._active.add(self.name)
            metrics.set_runs_in_flight(len(self.daemon._active))
            return len(self.daemon._active)

    def __exit__(self, *exc: object) -> None:
        with self.daemon._idle:
            self.daemon._active.discard(self.name)
            metrics.set_runs_in_flight(len(self.daemon._active))
            self.daemon._idle.notify_all()


# -- reading what went wrong ---------------------------------------------------------------------------------


def _error_paths(errors: Iterable[Exception]) -> Iterable[Path]:
    for error in errors:
        if isinstance(error, DuplicateTenant):
            yield from error.paths
            continue
        path = getattr(error, "path", None)
        if path is None:
            inner = getattr(error, "errors", None) or []
            path = next((getattr(e, "path", None) for e in inner if getattr(e, "path", None)), None)
        if path is not None:
            yield Path(path)


def _count_files(errors: Sequence[Exception]) -> int:
    """Tenant files that did not load: a file with several errors counts once."""
    paths = {str(path) for path in _error_paths(e for e in errors if getattr(e, "path", None))}
    return len(paths) + sum(1 for e in errors if not getattr(e, "path", None))


def _error_lines(errors: Iterable[Exception]) -> Iterable[str]:
    for error in errors:
        yield str(error).replace("\n", "; ")


def run(settings: DaemonSettings, *, log_level: str = "INFO") -> int:
    """Configure logging and serve until a stop signal; returns the exit code."""
    logs.configure(level=log_level)
    # the scheduler's own lines repeat ours ("run refused") or narrate every job start
    logging.getLogger("apscheduler").setLevel(logging.ERROR)
    scale = float(os.environ.get(SCHEDULE_SCALE_ENV, "1") or 1)
    if scale != 1:
        settings = dataclasses.replace(settings, schedule_scale=scale)
        logging.getLogger("leadpulse.daemon").warning("test hook: schedules run %gx faster", scale)
    code = Daemon(settings).serve()
    logging.shutdown()
    if code != 0:
        # threads of runs past their grace period would keep the interpreter alive
        sys.stderr.flush()
        os._exit(code)
    return code
