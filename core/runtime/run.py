"""A run in progress, as the pipeline drives it: its row in the store from start to end, its counts and steps,
where it reports progress, and the summary it leaves."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from itertools import islice
from typing import Protocol

from leadpulse.core.clock import Clock
from leadpulse.core.config.tenant import TenantConfig
from leadpulse.core.errors import ConnectorError, QuotaExhausted
from leadpulse.core.runtime import logs
from leadpulse.core.store.runs import RunCounts, RunOutcome
from leadpulse.core.store.store import Store

log = logging.getLogger("leadpulse.pipeline")

#: how many skipped and refused records a run keeps in its summary, to show where to look
NOTES_KEPT = 5


@dataclass(frozen=True)
class RunSummary(RunCounts):
    """What one run did: its counts (keywords), and which run of which tenant it was, how it ended and how long
    it took."""

    tenant: str
    run_id: int
    outcome: RunOutcome
    seconds: float = 0.0
    error: str | None = None
    #: real seconds per step (pull, score, push)
    steps: Mapping[str, float] = field(default_factory=dict)
    #: the first records the run skipped and the first writes the CRM refused, each with its place and reason
    notes: tuple[str, ...] = ()
    #: how many writes and tasks the push deferred to the next run and why (see `RunCounts.deferred`), if it did
    deferral: str | None = None


def stopping(stop: threading.Event | None) -> bool:
    """Whether the run was asked to stop (SIGTERM) after its current batch."""
    return stop is not None and stop.is_set()


class Progress(Protocol):
    """Where a run reports how far it got: a progress bar on a terminal, nothing elsewhere."""

    def step(self, name: str) -> None:
        """A new step begins (``pull contacts``, ``score``, ``push writes`` ...)."""

    def advance(self, n: int) -> None:
        """`n` more records or rows done in the current step."""


class _NoProgress:
    def step(self, name: str) -> None:
        pass

    def advance(self, n: int) -> None:
        pass


NO_PROGRESS: Progress = _NoProgress()


@dataclass
class Run:
    """A run in progress: its id, start, counts so far and outcome."""

    tenant: str
    id: int
    started_at: datetime
    #: time.perf_counter() at the start: a run's duration is real time, whatever clock the run reads
    started_real: float
    counts: RunCounts = field(default_factory=RunCounts)
    outcome: RunOutcome = RunOutcome.SUCCEEDED
    error: str | None = None
    #: real seconds spent in each step, in the order the steps ran
    steps: dict[str, float] = field(default_factory=dict)
    #: see `RunSummary.notes`
    notes: list[str] = field(default_factory=list)
    #: see `RunSummary.deferral`
    deferral: str | None = None

    def count(self, counts: RunCounts) -> None:
        """Add `counts` to what the run did so far."""
        self.counts += counts

    def note(self, lines: Iterable[str]) -> None:
        """Keep the first `NOTES_KEPT` lines about skipped and refused records."""
        self.notes += islice(lines, max(0, NOTES_KEPT - len(self.notes)))

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.steps[name] = round(self.steps.get(name, 0.0) + time.perf_counter() - started, 3)
            log.info("%s took %.2fs", name, self.steps[name])

    def summary(self) -> RunSummary:
        seconds = round(time.perf_counter() - self.started_real, 3)
        return RunSummary(self.tenant, self.id, self.outcome, seconds, self.error, dict(self.steps),
                          tuple(self.notes), self.deferral, **self.counts.as_dict())


@contextlib.contextmanager
def recorded_run(store: Store, tenant: TenantConfig, clock: Clock, *, full: bool, dry_run: bool) -> Iterator[Run]:
    """A row in ``runs`` from start to end, whatever happens in between.

    A connector failure ends the run with its outcome (quota exhausted, failed) and no exception; anything else
    is recorded as failed and raised again.
    """
    started = clock.now()
    run_id = store.start_run(tenant.name, started, full=full, dry_run=dry_run)
    run = Run(tenant.name, run_id, started, time.perf_counter())
    with logs.run_context(tenant=tenant.name, run_id=str(run.id)):
        log.info("run started%s%s", " (full)" if full else "", " (dry run: nothing is sent)" if dry_run else "")
        try:
            yield run
        # An error's text may quote what a library saw (a header, a URL): it is kept and shown only redacted.
        except QuotaExhausted as exc:
            run.outcome, run.error = RunOutcome.QUOTA_EXHAUSTED, logs.redact(str(exc))
        except ConnectorError as exc:
            run.outcome, run.error = RunOutcome.FAILED, logs.redact(str(exc))
        except BaseException as exc:
            run.outcome, run.error = RunOutcome.FAILED, logs.redact(f"{type(exc).__name__}: {exc}")
            raise
        finally:
            store.finish_run(run.id, clock.now(), run.outcome, run.counts, run.error)
            level = logging.INFO if run.outcome is not RunOutcome.FAILED else logging.ERROR
            log.log(level, "run %s: %s%s", run.outcome.value,
                    ", ".join(f"{name} {n}" for name, n in run.counts.as_dict().items()),
                    f"; {run.error}" if run.error else "")
