"""One tenant's sync, as named steps over any `Connector`:

    pull      each stream from its cursor; every page stored with its cursor in one transaction
    score     the contacts whose inputs changed (all of them with ``full``, or when the rules changed, or when
              a score's `valid_until` passed); each chunk's scores, history and outbox rows in one transaction
    push      the outbox drained in the connector's batch sizes; rows settled with the CRM's ids or errors

Every run holds the tenant's run lock and leaves a row in the store's ``runs`` table, however it ends.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
import time
import traceback
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from itertools import islice
from pathlib import Path
from types import MappingProxyType
from typing import Any, Protocol

from connectors.base import (
    Connector,
    ConnectorContext,
    ConnectorError,
    PropertyWrite,
    QuotaExhausted,
    TaskRequest,
    UnknownConnector,
    WriteResult,
    load_connector,
)
from core import logs
from core.clock import Clock, SystemClock
from core.config import TenantConfig
from core.model import Contact, ContactKind, Lifecycle
from core.rules import ScoringConfig
from core.scoring import ActivityRow, Engine, ScoreCard, StatusChange, fingerprint_of
from core.store import PriorScore, Store, history_row, iso, score_rows

SCORE_CHUNK = 1000

log = logging.getLogger("leadpulse.pipeline")


class RunOutcome(StrEnum):
    SUCCEEDED = "succeeded"
    #: asked to stop (SIGTERM): the current batch finished, everything done so far is checkpointed
    STOPPED = "stopped"
    #: the CRM's daily allowance ran out: checkpointed, the next run carries on
    QUOTA_EXHAUSTED = "quota_exhausted"
    FAILED = "failed"


@dataclass(frozen=True)
class RunSummary:
    """What one run did."""

    tenant: str
    run_id: int
    outcome: RunOutcome
    pulled: int = 0
    scored: int = 0
    changed: int = 0
    written: int = 0
    tasks: int = 0
    api_calls: int = 0
    rate_limited: int = 0
    seconds: float = 0.0
    error: str | None = None
    #: real seconds per step (pull, score, push)
    steps: Mapping[str, float] = field(default_factory=dict)


@dataclass
class RunCounts:
    """The counts a run accumulates step by step (mutable: it is filled in as the run goes)."""

    pulled: int = 0
    scored: int = 0
    changed: int = 0
    written: int = 0
    tasks: int = 0
    api_calls: int = 0
    rate_limited: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(vars(self))


@dataclass(frozen=True, slots=True)
class Decision:
    """What scoring one contact decided: its card, a status move, the CRM values that changed, a task."""

    card: ScoreCard
    status: StatusChange | None
    changed: Mapping[str, Any]
    written: Mapping[str, Any]
    task_event: str | None
    #: the card equals the saved score and nothing new is owed to the CRM
    unchanged: bool = False


def batched(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


def _stopping(stop: threading.Event | None) -> bool:
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


# the run ---------------------------------------------------------------------------------------------


def sync_tenant(
    tenant: TenantConfig,
    *,
    state_dir: Path,
    dry_run: bool = False,
    full: bool = False,
    clock: Clock = SystemClock(),
    stop: threading.Event | None = None,
    environ: Mapping[str, str] = os.environ,
    progress: Progress | None = None,
) -> RunSummary:
    """Pull, score and push one tenant, holding its run lock.

    With `dry_run`, nothing is sent to the CRM: what would be written stays in the outbox. With `full`, every
    stream is pulled from the beginning and every contact rescored.

    :raises RunLocked: if another run of the tenant holds the lock.
    :raises ConfigError: if a secret the tenant references is missing.
    """
    secrets = tenant.resolve_secrets(environ)
    logs.register_secrets(secrets.values())
    with Store.open(tenant.store_path(state_dir)) as store, store.lock(tenant.name):
        with recorded_run(store, tenant, clock, full=full, dry_run=dry_run) as run:
            connector = open_connector(tenant, secrets, clock, call_allowance=daily_allowance(tenant, store, run))
            try:
                with run.step("pull"):
                    pull(connector, store, run, full=full, stop=stop, progress=progress)
                if not _stopping(stop):
                    with run.step("score"):
                        engine = Engine(scoring_in_crm_order(tenant, crm_status_order(connector, store, run)))
                        score_contacts(store, tenant, engine, run_id=run.id, as_of=run.started_at,
                                       full=full, stop=stop, counts=run.counts, progress=progress)
                if not (dry_run or _stopping(stop)):
                    with run.step("push"):
                        push(connector, store, tenant, run, stop=stop, progress=progress)
            finally:
                run.counts.api_calls = connector.context.stats.total
                run.counts.rate_limited = connector.context.stats.rate_limited
                connector.close()
            if _stopping(stop):
                run.outcome = RunOutcome.STOPPED
    return run.summary()


STATUS_ORDER = "status_order"
OWNERS = "owners"


def crm_status_order(connector: Connector, store: Store, run: Run) -> Sequence[str] | None:
    """The CRM account's own lifecycle values in order (and its owners, kept alongside): asked again when this run
    pulled anything, else kept from before, so a run with nothing new makes no call for them."""
    if run.counts.pulled or store.crm_fact(STATUS_ORDER) is None:
        order = connector.status_order()
        if order:
            store.set_crm_fact(STATUS_ORDER, list(order))
        store.set_crm_fact(OWNERS, dict(connector.owners()))
    return store.crm_fact(STATUS_ORDER)


def with_known_owners(tasks: Sequence[TaskRequest], owners: Mapping[str, str] | None) -> list[TaskRequest]:
    """The tasks, those for an owner the CRM no longer has left unassigned (the CRM would refuse them forever)."""
    if not owners:
        return list(tasks)
    unknown = [t for t in tasks if t.owner_id and t.owner_id not in owners]
    for task in unknown:
        log.warning("contact %s: owner %s is not among the CRM's owners; its task is created unassigned",
                    task.contact_id, task.owner_id)
    return [replace(t, owner_id=None) if t in unknown else t for t in tasks]


def scoring_in_crm_order(tenant: TenantConfig, order: Sequence[str] | None) -> ScoringConfig:
    """The tenant's scoring rules, ranking lifecycle values as the CRM account orders them (read, not assumed)."""
    if not order:
        return tenant.scoring
    lifecycle = tenant.scoring.lifecycle.model_copy(update={"status_order": tuple(order)})
    return tenant.scoring.model_copy(update={"lifecycle": lifecycle})


def rescore_tenant(tenant: TenantConfig, *, state_dir: Path, clock: Clock = SystemClock(), full: bool = True) -> RunSummary:
    """Score the stored contacts again with the tenant's current rules, offline; the outbox gets what changed."""
    with Store.open(tenant.store_path(state_dir)) as store, store.lock(tenant.name):
        # The CRM's status order as the last sync read it: the same rules, so the same fingerprint, as a sync.
        engine = Engine(scoring_in_crm_order(tenant, store.crm_fact(STATUS_ORDER)))
        with recorded_run(store, tenant, clock, full=full, dry_run=True) as run:
            score_contacts(store, tenant, engine, run_id=run.id, as_of=run.started_at, full=full,
                           counts=run.counts, workers=scoring_workers())
    return run.summary()


def scoring_workers() -> int:
    """How many processes a rescore from the command line shares its work among: one per core, up to four."""
    return min(os.cpu_count() or 1, 4)


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
        return RunSummary(self.tenant, self.id, self.outcome, **self.counts.as_dict(), seconds=seconds, error=self.error,
                          steps=dict(self.steps))


@contextlib.contextmanager
def recorded_run(store: Store, tenant: TenantConfig, clock: Clock, *, full: bool, dry_run: bool) -> Iterator[Run]:
    """A row in ``runs`` from start to end, whatever happens in between.

    A connector failure ends the run with its outcome (quota exhausted, failed) and no exception; anything else
    is recorded as failed and raised again.
    """
    started = clock.now()
    run = Run(tenant.name, store.start_run(tenant.name, started, full=full, dry_run=dry_run), started, time.perf_counter())
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
            store.finish_run(run.id, clock.now(), run.outcome.value, run.counts.as_dict(), run.error)
            level = logging.INFO if run.outcome is not RunOutcome.FAILED else logging.ERROR
            log.log(level, "run %s: %s%s", run.outcome.value,
                    ", ".join(f"{name} {n}" for name, n in run.counts.as_dict().items()),
                    f"; {run.error}" if run.error else "")


def daily_allowance(tenant: TenantConfig, store: Store, run: Run) -> int | None:
    """The calls this run may make under the tenant's ``daily_limit``: what the runs of the last 24 hours left."""
    limit = getattr(tenant.crm.connection, "daily_limit", None)
    if limit is None:
        return None
    return max(0, limit - store.api_calls_since(run.started_at - timedelta(days=1)))


def open_connector(
    tenant: TenantConfig, secrets: Mapping[str, str], clock: Clock, *, call_allowance: int | None = None
) -> Connector:
    """The tenant's connector, found by its CRM kind in the connector registry."""
    try:
        connector_class = load_connector(tenant.crm.kind)
    except UnknownConnector as exc:
        raise ConnectorError(tenant.name, f"{tenant.source_path}: crm.kind {tenant.crm.kind!r} has no connector "
                             f"installed here ({exc}); install a package that registers one under that name in the "
                             "'leadpulse.connectors' entry points, or sync this tenant elsewhere") from None
    context = ConnectorContext(
        tenant=tenant.name, settings=tenant.crm.connection, secrets=secrets, field_map=dict(tenant.fields), clock=clock,
        call_allowance=call_allowance,
    )
    return connector_class(context)


# pull ------------------------------------------------------------------------------------------------


def pull(
    connector: Connector,
    store: Store,
    run: Run,
    *,
    full: bool = False,
    stop: threading.Event | None = None,
    progress: Progress | None = None,
) -> None:
    """Pull every stream from its cursor (from the start with `full`), storing each page with its cursor."""
    progress = progress or NO_PROGRESS
    for stream in connector.streams():
        cursor = None if full else store.cursor(stream)
        progress.step(f"pull {stream}")
        for page in connector.pull(stream, cursor, started_at=run.started_at):
            store.apply_page(page, run.id)
            records = len(page.contacts) + len(page.activities)
            run.counts.pulled += records
            progress.advance(records)
            if _stopping(stop):
                return


# score -----------------------------------------------------------------------------------------------


def score_contacts(
    store: Store,
    tenant: TenantConfig,
    engine: Engine,
    *,
    run_id: int | None,
    as_of: datetime,
    full: bool = False,
    stop: threading.Event | None = None,
    counts: RunCounts | None = None,
    chunk_size: int = SCORE_CHUNK,
    progress: Progress | None = None,
    workers: int = 1,
) -> RunCounts:
    """Score the contacts that are due (all with `full`), queue what changed, and return the counts.

    With more than one of `workers`, a large selection is read, scored and decided in that many forked processes,
    a chunk each at a time, while this one saves the chunks in id order: the same result, sooner. Only for a
    process with no other threads at work (a fork copies none of them).
    """
    counts = counts or RunCounts()
    progress = progress or NO_PROGRESS
    progress.step("score")
    job = ScoringJob(tenant, engine, run_id, as_of, full, chunk_size)
    for verdict in job.verdicts(store, workers):
        job.save(store, verdict)
        counts.scored += verdict.scored
        counts.changed += len(verdict.writes)
        progress.advance(verdict.scored)
        if _stopping(stop):
            break
    return counts


#: Fewer chunks than this are scored in the calling process: starting workers would cost more than they save.
PARALLEL_MIN_CHUNKS = 8


@dataclass(frozen=True, slots=True)
class ChunkVerdict:
    """What scoring one chunk decided, as saving needs it, mostly plain tuples (cheap to pass between processes)."""

    scored: int
    #: the new scores, as `Store.save_scored` takes them
    scores: list[tuple]
    #: the contacts scored again to the very result saved before (left out with a `span`, which implies them)
    unchanged: list[str]
    #: (contact id, contact kind, the CRM values that changed)
    writes: list[tuple[str, ContactKind, Mapping[str, Any]]]
    #: the decisions that call for a task, with their contacts
    tasks: list[tuple[Contact, Decision]]
    #: ``(after, through)`` when the chunk is every contact with an id in that range (a full rescore)
    span: tuple[str, str] | None = None
    #: the history rows the new scores add, as `Store.save_scored` takes them
    history: list[tuple] | None = None


@dataclass(frozen=True)
class ScoringJob:
    """One scoring pass: what to score with, at what moment, and which contacts (all, or those due)."""

    tenant: TenantConfig
    engine: Engine
    run_id: int | None
    as_of: datetime
    full: bool
    chunk_size: int

    @functools.cached_property
    def values_for(self) -> Callable[[ScoreCard], dict[str, Any]]:
        """The tenant's write-back values of a card (see `WritebackConfig.reader`)."""
        return self.tenant.writeback.reader()

    @functools.cached_property
    def decisions(self) -> str:
        """The fingerprint of what turns these scores into writes, statuses and tasks (see `PriorScore.settled`)."""
        return decisions_fingerprint(self.tenant, self.engine)

    def verdicts(self, store: Store, workers: int = 1) -> Iterator[ChunkVerdict]:
        """Each chunk's verdict, in id order; with several `workers` for a large selection (see `score_contacts`)."""
        if workers > 1:
            bounds = list(store.scoring_bounds(self.full, as_of=self.as_of, fingerprint=self.engine.fingerprint,
                                               decisions=self.decisions, chunk_size=self.chunk_size))
            if len(bounds) >= PARALLEL_MIN_CHUNKS:
                yield from self._in_workers(store.path, bounds, workers)
                return
        yield from self.read(store)

    def read(self, store: Store, after: str = "", through: str | None = None) -> Iterator[ChunkVerdict]:
        """Score and decide the due contacts with ids in ``(after, through]``, a chunk at a time."""
        due = store.scoring_chunks(self.full, as_of=self.as_of, fingerprint=self.engine.fingerprint,
                                   decisions=self.decisions, chunk_size=self.chunk_size, after=after, through=through)
        for chunk in due:
            decided = [
                (contact, decide(self.tenant, self.engine, contact, activities, before, self.as_of, self.decisions,
                                 self.values_for), before)
                for contact, activities, before in chunk
            ]
            last = decided[-1][0].id
            yield self._verdict(decided, (after, last) if self.full else None)
            after = last

    def _verdict(self, decided: list[tuple[Contact, Decision, PriorScore | None]],
                 span: tuple[str, str] | None) -> ChunkVerdict:
        cards: list[ScoreCard] = []
        statuses: dict[str, str] = {}
        written: dict[str, Mapping[str, Any]] = {}
        unchanged: list[str] = []
        writes: list[tuple[str, ContactKind, Mapping[str, Any]]] = []
        tasks: list[tuple[Contact, Decision]] = []
        history: list[tuple] = []
        as_of = iso(self.as_of)
        for contact, decision, before in decided:
            if decision.changed:
                writes.append((contact.id, contact.kind, decision.changed))
            if decision.task_event:
                tasks.append((contact, decision))
            if decision.unchanged:
                if span is None:
                    unchanged.append(contact.id)
                continue
            card = decision.card
            cards.append(card)
            status = decision.status.to.value if decision.status else None
            if status:
                statuses[contact.id] = status
            if decision.changed:
                written[contact.id] = decision.written
            # Against `before`, the saved score as this pass read it: no other writer touches it (the run lock).
            entry = history_row(contact.id, self.run_id, as_of, card.total, card.band, status,
                                (before.total, before.band, before.status) if before is not None else None)
            if entry is not None:
                history.append(entry)
        scores = score_rows(cards, self.run_id, self.engine.fingerprint, statuses=statuses, written=written,
                            decided_under=self.decisions)
        return ChunkVerdict(len(decided), scores, unchanged, writes, tasks, span, history)

    def save(self, store: Store, verdict: ChunkVerdict) -> None:
        """Save a chunk's cards and queue the writes and tasks they call for, in one transaction.

        A card equal to the saved one is not written again: its score only records this run, rules, as-of and
        decisions.
        """
        with store.transaction():
            store.save_scored(verdict.scores, verdict.unchanged, run_id=self.run_id, fingerprint=self.engine.fingerprint,
                              as_of=self.as_of, decided_under=self.decisions, span=verdict.span,
                              history=verdict.history)
            store.outbox.put_writes([property_write(self.tenant, *write) for write in verdict.writes], self.run_id)
            tasks = [task_request(store, self.tenant, contact, decision) for contact, decision in verdict.tasks]
            store.outbox.put_tasks(tasks, self.run_id)

    def _in_workers(self, path: Path, bounds: Sequence[tuple[str, str]], workers: int) -> Iterator[ChunkVerdict]:
        # Each worker gets chunks over its own pipe and answers over it; this process waits on the pipes and the
        # workers' exits at once, so a worker that dies (killed, out of memory) ends the pass with an error
        # instead of a wait for an answer that never comes. No helper thread competes here with saving.
        # A few chunks in flight per worker keep them busy while saving catches up, and memory flat when it lags.
        context = multiprocessing.get_context("fork")
        started: list[_Worker] = []
        done = False
        try:
            for _ in range(workers):
                ours, theirs = context.Pipe()
                process = context.Process(target=_serve, args=(self, path, theirs), daemon=True)
                process.start()
                theirs.close()
                started.append(_Worker(process, ours))
            yield from _shared_out(started, bounds, in_flight=2)
            done = True
        finally:
            for worker in started:
                if done:  # idle, waiting for the next chunk: told to stop
                    with contextlib.suppress(OSError):
                        worker.pipe.send(None)
                else:  # stopped early or failed: what the workers are scoring is not wanted (they only read)
                    worker.process.kill()
                worker.process.join()
                worker.pipe.close()


class ScoringFailed(Exception):
    """A scoring worker process died or failed; the chunks saved before stay saved."""


def _shared_out(workers: Sequence[_Worker], bounds: Sequence[tuple[str, str]],
                in_flight: int) -> Iterator[ChunkVerdict]:
    """Hand `bounds` out to `workers`, up to `in_flight` each, and yield the verdicts in the order of `bounds`."""
    by_pipe = {worker.pipe: worker for worker in workers}
    exits = {worker.process.sentinel: worker for worker in workers}
    answered: dict[int, list[ChunkVerdict] | _WorkerError] = {}
    sent = first = 0

    def feed(worker: _Worker) -> None:
        nonlocal sent
        # bounded by what is still unsaved, so a slow worker cannot make the others' verdicts pile up here
        most = first + in_flight * len(workers) + 1
        while len(worker.chunks) < in_flight and sent < min(len(bounds), most):
            worker.chunks.append(sent)
            try:
                worker.pipe.send((sent, *bounds[sent]))
            except OSError:
                raise ScoringFailed(worker.died(bounds)) from None
            sent += 1

    for worker in workers:
        feed(worker)
    while first < len(bounds):
        while first not in answered:
            for ready in multiprocessing.connection.wait([*by_pipe, *exits]):
                if ready in exits:  # a worker stops only when told to, after the last chunk
                    raise ScoringFailed(exits[ready].died(bounds))
                worker = by_pipe[ready]
                try:
                    number, outcome = ready.recv()
                except (EOFError, OSError):
                    raise ScoringFailed(worker.died(bounds)) from None
                worker.chunks.popleft()
                answered[number] = outcome
        outcome = answered.pop(first)
        if isinstance(outcome, _WorkerError):  # in order, so the chunks before it are saved
            log.error("a scoring worker failed:\n%s", outcome.trace)
            raise ScoringFailed(f"a scoring worker failed on contacts after id {bounds[first][0]!r}: {outcome.error}")
        yield from outcome
        first += 1
        for worker in workers:
            feed(worker)


@dataclass
class _Worker:
    """A scoring worker process, its pipe, and the chunks (positions in the pass's bounds) it was given and has
    not answered yet, oldest first."""

    process: Any
    pipe: Any
    chunks: deque[int] = field(default_factory=deque)

    def died(self, bounds: Sequence[tuple[str, str]]) -> str:
        """What to say of this worker, gone without a word."""
        self.process.join(timeout=1)
        code = self.process.exitcode
        if code is None:
            how = "stopped answering"
        else:
            how = f"was killed by signal {-code}" if code < 0 else f"exited with {code}"
        doing = f"while scoring contacts after id {bounds[self.chunks[0]][0]!r}" if self.chunks else "while idle"
        return (
            f"a scoring worker (pid {self.process.pid}) {how} {doing}, perhaps out of memory; the scores saved before "
            "stay saved and the rest stay due: run again"
        )


@dataclass(frozen=True)
class _WorkerError:
    """An exception in a scoring worker, as text: any exception's text crosses between processes, not every
    exception does."""

    error: str
    trace: str

    @classmethod
    def of(cls, exc: BaseException) -> _WorkerError:
        return cls(f"{type(exc).__name__}: {exc}", "".join(traceback.format_exception(exc)))


def _serve(job: ScoringJob, path: Path, pipe: Any) -> None:
    """A scoring worker: score each chunk asked for over `pipe` and send back its verdicts, until told to stop."""
    # A chunk makes and drops some 100,000 objects with no cycles among them; at the default threshold the cycle
    # collector walks them over and over (8% of a worker's time). What the fork inherited is never collected.
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the parent, which then stops the workers
    store: Store | None = None
    failure: _WorkerError | None = None
    try:
        store = Store.open(path)
    except Exception as exc:  # the answer to every chunk asked for
        failure = _WorkerError.of(exc)
    try:
        while (task := _next_task(pipe)) is not None:
            number, after, through = task
            outcome: Any = failure
            if store is not None:
                try:
                    outcome = list(job.read(store, after, through))
                except Exception as exc:  # raised where the pass was asked for
                    outcome = _WorkerError.of(exc)
            try:
                pipe.send((number, outcome))
            except OSError:  # the parent is gone
                return
            except Exception as exc:  # a verdict that cannot cross to the parent
                pipe.send((number, _WorkerError.of(exc)))
    finally:
        if store is not None:
            store.close()


def _next_task(pipe: Any) -> tuple[int, str, str] | None:
    """The next chunk asked for, or None when told to stop or the parent is gone."""
    try:
        return pipe.recv()
    except EOFError:
        return None


_UNSET = object()


def decide(
    tenant: TenantConfig,
    engine: Engine,
    contact: Contact,
    activities: Sequence[ActivityRow],
    before: PriorScore | None,
    as_of: datetime,
    decisions: str,
    values_for: Callable[[ScoreCard], dict[str, Any]] | None = None,
) -> Decision:
    """Score one contact and decide, against what was saved and last written, what the CRM must be told.

    A contact whose inputs, card and `decisions` fingerprint (see `decisions_fingerprint`) are all as when its
    score was saved is known to call for nothing new, without deciding again.
    """
    card = engine.score_rows(contact, activities, as_of)
    if before is not None and before.settled(decisions) and before.same_card(card):
        return Decision(card, None, _NOTHING, _NOTHING, None, unchanged=True)
    last_set = Lifecycle(before.status) if before is not None and before.status else None
    status = engine.decide_status(contact, card, last_set)
    values = values_for(card) if values_for is not None else tenant.writeback.values_for(card)
    if status is not None and tenant.writeback.write_status:
        values[tenant.writeback.status_property] = status.crm_value
    written = before.written_values() if before is not None else {}
    changed = {name: value for name, value in values.items() if written.get(name, _UNSET) != value}
    event = tenant.tasks.trigger(engine.band_names, before.band if before else None, card, status,
                                 before.status if before else None)
    same = (
        before is not None and not changed and (status is None or status.to.value == before.status)
        and before.same_card(card)
    )
    return Decision(card, status, changed, {**written, **values} if changed else written, event, same)


_NOTHING: Mapping[str, Any] = MappingProxyType({})


def decisions_fingerprint(tenant: TenantConfig, engine: Engine) -> str:
    """A digest of everything that turns a score card into CRM writes, a status move and a task: the lifecycle
    and bands the engine ranks with, the tenant's write-back mapping and task policy."""
    document = {
        "lifecycle": engine.config.lifecycle.model_dump(mode="json") if engine.config.lifecycle else None,
        "bands": engine.band_names,
        "writeback": tenant.writeback.model_dump(mode="json"),
        # what a task says and when it is due are set when it is queued: they call for no new decision
        "tasks": tenant.tasks.model_dump(mode="json", include={"enabled", "on_bands", "on_statuses"}),
    }
    return fingerprint_of(document)


def property_write(tenant: TenantConfig, contact_id: str, kind: ContactKind, values: Mapping[str, Any]) -> PropertyWrite:
    """The write of a contact's changed values, keyed per contact so a newer write merges into a pending one."""
    return PropertyWrite(f"lp-{tenant.name}-{contact_id}-props", contact_id, kind, dict(values))


def task_request(store: Store, tenant: TenantConfig, contact: Contact, decision: Decision) -> TaskRequest:
    """The task for a decision's event, keyed ``lp-<tenant>-<contact>-<event>-<n>`` (n counts the contact's entries)."""
    event = (decision.task_event or "").replace(":", "-")
    prefix = f"lp-{tenant.name}-{contact.id}-{event}-"
    key = f"{prefix}{store.outbox.task_count(prefix) + 1}"
    status = decision.status.crm_value if decision.status else None
    subject, body = tenant.tasks.render(contact, decision.card, status)
    return TaskRequest(
        key=key,
        contact_id=contact.id,
        contact_kind=contact.kind,
        owner_id=contact.owner_id,
        subject=subject,
        body=body,
        priority=tenant.tasks.priority,
        due_at=decision.card.as_of + tenant.tasks.due_in,
    )


# push ------------------------------------------------------------------------------------------------


def push(
    connector: Connector,
    store: Store,
    tenant: TenantConfig,
    run: Run,
    *,
    stop: threading.Event | None = None,
    progress: Progress | None = None,
) -> None:
    """Send the outbox: settle tasks whose outcome is unknown, make sure properties exist, then drain."""
    progress = progress or NO_PROGRESS
    settle_unknown_tasks(connector, store, run)
    if store.outbox.pending_writes(1, run.id):
        connector.ensure_properties(tenant.property_specs())
    progress.step("push writes")
    run.counts.written += drain(
        lambda n: store.outbox.pending_writes(n, run.id), connector.write_properties, connector.write_batch_size,
        store, run.id, stop, progress=progress,
    )
    progress.step("push tasks")
    run.counts.tasks += drain(
        lambda n: with_known_owners(store.outbox.pending_tasks(n, run.id), store.crm_fact(OWNERS)),
        connector.create_tasks, connector.task_batch_size,
        store, run.id, stop, mark_sending=True, progress=progress,
    )


def settle_unknown_tasks(connector: Connector, store: Store, run: Run) -> None:
    """Tasks handed over in a run that never heard back: done if the CRM has them (found by key), else pending.

    One handed over within the connector's `lookup_lag` of this run and not found stays unsettled: the CRM may not
    show it yet, so it is looked up again by a later run rather than created a second time.
    """
    found, missing = [], []
    settled_before = run.started_at - connector.lookup_lag()
    for task in store.outbox.sending_tasks():
        remote_id = connector.find_task(task.key)
        if remote_id:
            found.append(WriteResult(task.key, True, remote_id=remote_id))
        elif _handed_over_before(store, task.key, settled_before):
            missing.append(task.key)
        else:
            log.info("task %s is not in the CRM yet; handed over moments ago, it is looked up again next run", task.key)
    with store.transaction():
        store.outbox.settle(found, run.id)
        store.outbox.release(missing)


def _handed_over_before(store: Store, key: str, moment: datetime) -> bool:
    run_id = store.outbox.handed_over_in(key)
    ended = store.run_ended_at(run_id) if run_id is not None else None
    return ended is None or ended <= moment


def drain(
    fetch: Callable[[int], Sequence[Any]],
    send: Callable[[Sequence[Any]], list[WriteResult]],
    batch_size: int,
    store: Store,
    run_id: int | None,
    stop: threading.Event | None,
    *,
    mark_sending: bool = False,
    progress: Progress = NO_PROGRESS,
) -> int:
    """Send batches until nothing is due this run; return how many the CRM accepted."""
    accepted = 0
    while not _stopping(stop):
        batch = fetch(batch_size)
        if not batch:
            break
        keys = [item.key for item in batch]
        if mark_sending:
            with store.transaction():
                store.outbox.mark_sending(keys, run_id)
        results = complete(keys, send(batch))
        with store.transaction():
            store.outbox.settle(results, run_id)
        accepted += sum(1 for result in results if result.ok)
        progress.advance(len(batch))
    return accepted


def complete(keys: Sequence[str], results: Sequence[WriteResult]) -> list[WriteResult]:
    """One result per key: a key the connector gave no result for counts as failed, so it is never lost, with
    its outcome unknown, since the CRM may have carried it out (a task is then looked up before it is resent)."""
    by_key = {result.key: result for result in results}
    return [by_key.get(key) or WriteResult(key, False, error="the connector returned no result for it",
                                           outcome_unknown=True) for key in keys]


# reports ---------------------------------------------------------------------------------------------


def compare_bands(store: Store, current: ScoringConfig, proposed: ScoringConfig, as_of: datetime) -> Counter[tuple[str, str]]:
    """How many stored contacts would move from each band (current rules) to each band (proposed rules)."""
    now, new = Engine(current), Engine(proposed)
    moves: Counter[tuple[str, str]] = Counter()
    for contact, activities in store.contacts_to_score(all=True):
        moves[now.score(contact, activities, as_of).band, new.score(contact, activities, as_of).band] += 1
    return moves
