"""One tenant's sync, as named steps over any `Connector`:

    pull      each stream from its cursor; every page stored with its cursor in one transaction
    score     the contacts whose inputs changed (all of them with ``full``, or when the rules changed, or when
              a score's `valid_until` passed): a scoring pass (`leadpulse.core.runtime.scoring_pass`)
    push      the outbox drained in the connector's batch sizes; rows settled with the CRM's ids or errors; when
              the CRM's budget cannot afford it all, what matters most first and the rest deferred to the next
              run (`leadpulse.core.runtime.push_plan`): a deferral leaves the run's outcome as it is

Every run holds the tenant's run lock and leaves a row in the store's ``runs`` table, however it ends.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from leadpulse.core.clock import SYSTEM_CLOCK, Clock
from leadpulse.core.config.tenant import TenantConfig
from leadpulse.core.contract import (
    CallJournal,
    Connector,
    ConnectorContext,
    ConnectorFactory,
    PropertyWrite,
    PushCapacity,
    TaskRequest,
    WriteResult,
    connector_class,
)
from leadpulse.core.engine.rules import ScoringConfig
from leadpulse.core.engine.scoring import Engine
from leadpulse.core.errors import ConnectorError, QuotaExhausted, UnknownConnector
from leadpulse.core.runtime import logs, metrics
from leadpulse.core.runtime.push_plan import at_most, plan_push
from leadpulse.core.runtime.run import NO_PROGRESS, Progress, Run, RunSummary, recorded_run, stopping
from leadpulse.core.runtime.scoring_pass import score_contacts, scoring_workers
from leadpulse.core.store.outbox import Due
from leadpulse.core.store.runs import RunCounts, RunOutcome
from leadpulse.core.store.store import Store

log = logging.getLogger("leadpulse.pipeline")

#: the scoring slot of a run with no other runs beside it (the command line's): always free
UNCAPPED: AbstractContextManager[object] = nullcontext()


def sync_tenant(
    tenant: TenantConfig,
    *,
    state_dir: Path,
    dry_run: bool = False,
    full: bool = False,
    clock: Clock = SYSTEM_CLOCK,
    stop: threading.Event | None = None,
    environ: Mapping[str, str] = os.environ,
    progress: Progress = NO_PROGRESS,
    connectors: Callable[[str], ConnectorFactory] = connector_class,
    scoring: AbstractContextManager[object] = UNCAPPED,
) -> RunSummary:
    """Pull, score and push one tenant, holding its run lock.

    With `dry_run`, nothing is sent to the CRM: what would be written stays in the outbox. With `full`, every
    stream is pulled from the beginning and every contact rescored. `connectors` finds the connector of the
    tenant's CRM kind: the one its entry point registers, unless a caller (a test) passes its own. `scoring` is
    held while the contacts are scored and decided, the part of a run that needs a core rather than the CRM (the
    daemon passes a semaphore of its cores).

    :raises RunLocked: if another run of the tenant holds the lock.
    :raises StoreError: if the store cannot be opened or SQLite finds it damaged; nothing is pulled then.
    :raises ConfigError: if a secret the tenant references is missing.
    """
    secrets = tenant.resolve_secrets(environ)
    logs.register_secrets(secrets.values())
    with Store.open(tenant.store_path(state_dir)) as store, store.lock(tenant.name):
        store.require_sound()  # before anything is pulled into it
        with recorded_run(store, tenant, clock, full=full, dry_run=dry_run) as run:
            store.calls.forget_before(clock.now() - CALLS_KEPT)
            connector = open_connector(tenant, secrets, clock, call_allowance=daily_allowance(tenant, store, run),
                                       journal=store.calls, connectors=connectors)
            try:
                with run.step("pull"):
                    pull(connector, store, run, full=full, stop=stop, progress=progress)
                if not stopping(stop):
                    with run.step("score"):
                        engine = Engine(scoring_in_crm_order(tenant, crm_status_order(connector, store, full=full)))
                        with scoring:
                            score_contacts(store, tenant, engine, run_id=run.id, as_of=run.started_at,
                                           full=full, stop=stop, on_chunk=run.count, progress=progress)
                if not (dry_run or stopping(stop)):
                    with run.step("push"):
                        push(connector, store, tenant, run, stop=stop, progress=progress)
            finally:
                stats = connector.context.stats
                run.count(RunCounts(api_calls=stats.total, rate_limited=stats.rate_limited))
                connector.close()
            if stopping(stop):
                run.outcome = RunOutcome.STOPPED
            elif run.outcome is RunOutcome.SUCCEEDED and beyond_tolerance(run.counts, tenant.tolerance):
                run.outcome = RunOutcome.PARTIAL
    return run.summary()


def beyond_tolerance(counts: RunCounts, tolerance: float) -> bool:
    """Whether a run skipped more than `tolerance` of the records it read, or had more than `tolerance` of the writes
    and tasks it sent refused."""
    read, sent = counts.pulled + counts.skipped, counts.written + counts.tasks + counts.refused
    return counts.skipped > tolerance * read or counts.refused > tolerance * sent


#: how long the store keeps the API calls it noted (see `leadpulse.core.store.calls`)
CALLS_KEPT = timedelta(hours=1)

#: the names of the facts a CRM account tells about itself, kept in the store (see `Store.crm_fact`)
STATUS_ORDER = "status_order"
OWNERS = "owners"


def crm_status_order(connector: Connector, store: Store, *, full: bool) -> Sequence[str] | None:
    """The CRM account's own lifecycle values in order (and its owners, kept alongside): asked again on a `full`
    run and when what this run pulled changed what scoring reads (some contact is due), else kept from before, so
    a run that pulled nothing new, or only the echoes of leadpulse's own writes, makes no call for them. The owners
    are the mark of having asked: a CRM with no lifecycle order of its own keeps none."""
    if full or store.inputs_changed() or store.crm_fact(OWNERS) is None:
        order = connector.status_order()
        if order:
            store.set_crm_fact(STATUS_ORDER, list(order))
        store.set_crm_fact(OWNERS, dict(connector.owners()))
    known: Sequence[str] | None = store.crm_fact(STATUS_ORDER)
    return known


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
    if not order or tenant.scoring.lifecycle is None:
        return tenant.scoring
    lifecycle = tenant.scoring.lifecycle.model_copy(update={"status_order": tuple(order)})
    return tenant.scoring.model_copy(update={"lifecycle": lifecycle})


def rescore_tenant(
    tenant: TenantConfig, *, state_dir: Path, clock: Clock = SYSTEM_CLOCK, full: bool = True
) -> RunSummary:
    """Score the stored contacts again with the tenant's current rules, offline; the outbox gets what changed."""
    with Store.open(tenant.store_path(state_dir)) as store, store.lock(tenant.name):
        store.require_sound()
        # The CRM's status order as the last sync read it: the same rules, so the same fingerprint, as a sync.
        engine = Engine(scoring_in_crm_order(tenant, store.crm_fact(STATUS_ORDER)))
        with recorded_run(store, tenant, clock, full=full, dry_run=True) as run:
            score_contacts(store, tenant, engine, run_id=run.id, as_of=run.started_at, full=full,
                           on_chunk=run.count, workers=scoring_workers())
    return run.summary()


def daily_allowance(tenant: TenantConfig, store: Store, run: Run) -> int | None:
    """The calls this run may make under the tenant's ``daily_limit``: what the runs of the last 24 hours left."""
    limit: int | None = getattr(tenant.crm.connection, "daily_limit", None)
    if limit is None:
        return None
    return max(0, limit - store.api_calls_since(run.started_at - timedelta(days=1)))


def open_connector(
    tenant: TenantConfig, secrets: Mapping[str, str], clock: Clock, *, call_allowance: int | None = None,
    journal: CallJournal | None = None, connectors: Callable[[str], ConnectorFactory] = connector_class,
) -> Connector:
    """The tenant's connector, found by its CRM kind with `connectors` (the entry points, by default); its API
    calls are counted in the run's stats and the process's metrics, and noted in `journal` (the store's)."""
    try:
        factory = connectors(tenant.crm.kind)
    except UnknownConnector as exc:
        raise ConnectorError(tenant.name, f"{tenant.source_path}: crm.kind {tenant.crm.kind!r} has no connector "
                             f"installed here ({exc}); install a package that registers one under that name in the "
                             "'leadpulse.connectors' entry points, or sync this tenant elsewhere") from None
    context = ConnectorContext(
        tenant=tenant.name, settings=tenant.crm.connection, secrets=secrets, field_map=dict(tenant.fields), clock=clock,
        stats=metrics.call_stats(tenant.crm.kind, tenant.name, journal), call_allowance=call_allowance,
        status_property=tenant.writeback.status_property,
    )
    return factory(context)


def pull(
    connector: Connector,
    store: Store,
    run: Run,
    *,
    full: bool = False,
    stop: threading.Event | None = None,
    progress: Progress = NO_PROGRESS,
) -> None:
    """Pull every stream from its cursor (from the start with `full`), storing each page with its cursor."""
    for stream in connector.streams():
        cursor = None if full else store.cursor(stream)
        progress.step(f"pull {stream}")
        for page in connector.pull(stream, cursor, started_at=run.started_at):
            store.apply_page(page, run.id)
            records = len(page.contacts) + len(page.activities)
            run.count(RunCounts(pulled=records, skipped=len(page.skipped)))
            run.note(f"skipped {s.stream} record {s.record_id or '?'}: {s.reason}" for s in page.skipped)
            progress.advance(records)
            if stopping(stop):
                return


def push(
    connector: Connector,
    store: Store,
    tenant: TenantConfig,
    run: Run,
    *,
    stop: threading.Event | None = None,
    progress: Progress = NO_PROGRESS,
) -> None:
    """Send the outbox: make sure properties exist, settle tasks whose outcome is unknown, then drain it: all of
    it, writes then tasks, oldest first, unless the connector's `push_capacity` says the CRM's budget cannot
    afford that (see `push_within`)."""
    outbox = store.outbox
    if outbox.pending_writes(1, run.id) or outbox.pending_tasks(1, run.id) or outbox.sending_tasks():
        connector.ensure_properties(tenant.property_specs())
    settle_unknown_tasks(connector, store, run)
    due = outbox.due(run.id)
    capacity = connector.push_capacity() if due.total else None
    if capacity is not None:
        push_within(capacity, due, connector, store, run, stop=stop, progress=progress)
        return
    batch = connector.write_batch(due.writes)
    send_writes(connector, store, run, lambda n: outbox.pending_writes(n, run.id), batch, stop, progress)
    send_tasks(connector, store, run, lambda n: outbox.pending_tasks(n, run.id), stop, progress)


def push_within(
    capacity: PushCapacity,
    due: Due,
    connector: Connector,
    store: Store,
    run: Run,
    *,
    stop: threading.Event | None = None,
    progress: Progress = NO_PROGRESS,
) -> None:
    """Send what `capacity` affords of what is `due`: the writes that carry a status change, then the tasks, then
    the other writes, largest score move first (see `plan_push`). What it cannot afford stays pending, untried, for
    the next run: counted in the run as deferred, and said why in its summary and its log."""
    plan = plan_push(capacity, due)
    if plan.deferred:
        run.count(RunCounts(deferred=plan.deferred))
        run.deferral = plan.note(capacity)
        log.info("%s", run.deferral)
    outbox = store.outbox
    batch = connector.write_batch(plan.status_writes + plan.other_writes)
    send_writes(connector, store, run,
                at_most(plan.status_writes, lambda n: outbox.ranked_writes(n, run.id, status_change=True)),
                batch, stop, progress, step="push status changes")
    send_tasks(connector, store, run, at_most(plan.tasks, lambda n: outbox.pending_tasks(n, run.id)), stop, progress)
    send_writes(connector, store, run,
                at_most(plan.other_writes, lambda n: outbox.ranked_writes(n, run.id, status_change=False)),
                batch, stop, progress, step="push score changes")


def send_writes(
    connector: Connector, store: Store, run: Run, fetch: Callable[[int], Sequence[PropertyWrite]], batch_size: int,
    stop: threading.Event | None, progress: Progress, *, step: str = "push writes",
) -> None:
    """Drain the writes `fetch` hands out, `batch_size` a call."""
    progress.step(step)
    drain(fetch, connector.write_properties, batch_size, store, run, stop,
          counts=lambda accepted, refused: RunCounts(written=accepted, refused=refused), progress=progress)


def send_tasks(
    connector: Connector, store: Store, run: Run, fetch: Callable[[int], Sequence[TaskRequest]],
    stop: threading.Event | None, progress: Progress,
) -> None:
    """Drain the tasks `fetch` hands out, each batch looked up by key before it is created."""
    progress.step("push tasks")
    drain(
        lambda n: with_known_owners(fetch(n), store.crm_fact(OWNERS)),
        lambda tasks: create_missing_tasks(connector, tasks), connector.task_batch_size,
        store, run, stop, counts=lambda accepted, refused: RunCounts(tasks=accepted, refused=refused),
        mark_sending=True, progress=progress,
    )


def settle_unknown_tasks(connector: Connector, store: Store, run: Run) -> None:
    """Tasks handed over in a run that never heard back: done if the CRM has them (found by key), else pending.

    One handed over within the connector's `lookup_lag` of this run and not found stays unsettled: the CRM may not
    show it yet, so it is looked up again by a later run rather than created a second time.
    """
    found: list[WriteResult] = []
    missing: list[str] = []
    settled_before = run.started_at - connector.lookup_lag()
    sending = store.outbox.sending_tasks()
    for start in range(0, len(sending), connector.task_batch_size):
        batch = sending[start:start + connector.task_batch_size]
        held = connector.find_tasks(batch)
        for key in (task.key for task in batch):
            if key in held:
                found.append(WriteResult(key, True, remote_id=held[key]))
            elif _handed_over_before(store, key, settled_before):
                missing.append(key)
            else:
                log.info("task %s is not in the CRM yet; handed over moments ago, it is looked up again next run", key)
    with store.transaction():
        store.outbox.settle(found, run.id)
        store.outbox.release(missing)


def create_missing_tasks(connector: Connector, tasks: Sequence[TaskRequest]) -> list[WriteResult]:
    """Create the tasks the CRM does not hold yet, one result each.

    The batch's keys are looked up first, so a task whose creation the store forgot (a store restored from an older
    copy) is found, not made twice: in what this run's pull read back, when the connector can tell from it
    (`Connector.tasks_seen`), else in the CRM. An answer lost while creating is settled by a second look-up at
    once, and what that does not find stays unknown, to be looked up again by the next run. A connector that
    `creates_tasks_once` needs no look-up first: the CRM itself keeps a key to one task.
    """
    results: dict[str, WriteResult] = {}
    with carrying(results):
        held: Mapping[str, str] | None = {} if connector.creates_tasks_once() else connector.tasks_seen(tasks)
        if held is None:
            held = connector.find_tasks(tasks)
        results.update({key: WriteResult(key, True, remote_id=remote_id) for key, remote_id in held.items()})
        fresh = [task for task in tasks if task.key not in held]
        if fresh:
            results.update((r.key, r) for r in complete([task.key for task in fresh], connector.create_tasks(fresh)))
            unknown = [task for task in fresh if results[task.key].outcome_unknown]
            found = connector.find_tasks(unknown) if unknown else {}
            results.update({key: WriteResult(key, True, remote_id=remote_id) for key, remote_id in found.items()})
    return [results[task.key] for task in tasks]


@contextmanager
def carrying(results: Mapping[str, WriteResult]) -> Iterator[None]:
    """When the allowance runs out inside, the `QuotaExhausted` carries `results` (what the batch settled so far)
    besides what the connector's call settled, so the run keeps them."""
    try:
        yield
    except QuotaExhausted as exc:
        exc.settled = (*results.values(), *exc.settled)
        raise


def _handed_over_before(store: Store, key: str, moment: datetime) -> bool:
    run_id = store.outbox.handed_over_in(key)
    ended = store.run_ended_at(run_id) if run_id is not None else None
    return ended is None or ended <= moment


def drain(
    fetch: Callable[[int], Sequence[Any]],
    send: Callable[[Sequence[Any]], list[WriteResult]],
    batch_size: int,
    store: Store,
    run: Run,
    stop: threading.Event | None,
    *,
    counts: Callable[[int, int], RunCounts],
    mark_sending: bool = False,
    progress: Progress = NO_PROGRESS,
) -> None:
    """Send batches until nothing is due this run, counting in the run, batch by batch as each is settled, how
    many the CRM accepted and how many it refused (`counts` says which counts those are); those whose outcome is
    unknown are neither. A run that ends mid-push (the allowance spent, a crash) has counted what it settled."""
    while not stopping(stop):
        batch = fetch(batch_size)
        if not batch:
            break
        keys = [item.key for item in batch]
        if mark_sending:
            with store.transaction():
                store.outbox.mark_sending(keys, run.id)
        try:
            results = complete(keys, send(batch))
        except QuotaExhausted as exc:
            # what was carried out before the allowance ran out is settled; the rest was never sent
            settled = {result.key: result for result in exc.settled}
            with store.transaction():
                store.outbox.release([key for key in keys if key not in settled] if mark_sending else [])
            _settle(store, run, [item for item in batch if item.key in settled], list(settled.values()), counts)
            raise
        _settle(store, run, batch, results, counts)
        progress.advance(len(batch))


def _settle(store: Store, run: Run, batch: Sequence[Any], results: Sequence[WriteResult],
            counts: Callable[[int, int], RunCounts]) -> None:
    """Store the results of `batch` (in its order) and count them in the run, noting each refusal."""
    ordered = {result.key: result for result in results}
    results = [ordered[item.key] for item in batch]
    with store.transaction():
        store.outbox.settle(results, run.id)
    refusals = [(item, result) for item, result in zip(batch, results, strict=True)
                if not (result.ok or result.outcome_unknown)]
    run.count(counts(sum(1 for result in results if result.ok), len(refusals)))
    run.note(f"refused {item.key} for contact {item.contact_id}: {result.error}" for item, result in refusals)


def complete(keys: Sequence[str], results: Sequence[WriteResult]) -> list[WriteResult]:
    """One result per key: a key the connector gave no result for counts as failed, so it is never lost, with
    its outcome unknown, since the CRM may have carried it out (a task is then looked up before it is resent)."""
    by_key = {result.key: result for result in results}
    return [by_key.get(key) or WriteResult(key, False, error="the connector returned no result for it",
                                           outcome_unknown=True) for key in keys]

