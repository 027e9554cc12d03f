"""A scoring pass: the contacts that are due (or all of them) scored and decided a chunk at a time, each chunk's
scores, history, writes and tasks saved in one transaction; in id order, or shared out among scoring workers when
the pass is large (see `leadpulse.core.runtime.workers`), each saving its own chunks, one at a time."""

from __future__ import annotations

import functools
import multiprocessing
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import groupby
from operator import itemgetter
from typing import Any, NamedTuple

from leadpulse.core.config.tenant import TenantConfig
from leadpulse.core.engine.columnar import ColumnEngine, collector_paused
from leadpulse.core.engine.scoring import Engine, ScoreCard, StatusChange
from leadpulse.core.model import Contact, ContactKind
from leadpulse.core.runtime.decisions import (
    Call,
    Decision,
    called_for,
    decisions_fingerprint,
    last_set,
    property_write,
    task_request,
    write_priority,
)
from leadpulse.core.runtime.run import NO_PROGRESS, Progress, stopping
from leadpulse.core.runtime.workers import in_workers, usable_cores
from leadpulse.core.store.outbox import WritePriority
from leadpulse.core.store.runs import RunCounts
from leadpulse.core.store.store import (
    ActivitiesRead,
    SavedCard,
    ScoringBatch,
    Store,
    history_row,
    iso,
    saved_card,
    saved_cards,
    score_row,
)

SCORE_CHUNK = 1000
#: From this many contacts in a chunk on, it is scored column by column (`ScoringJob._scored`): below, the fixed cost
#: of working on columns (about 1.3 ms a chunk for the demo rules) outweighs what they save. Measured per contact on
#: the demo rules: 25 us column by column against 18 us one by one at 100 contacts, even at 200, 14 against 19 at 500.
COLUMN_WISE_FROM = 250
_CONTACT_ID = itemgetter(0)


def scoring_workers() -> int:
    """How many processes a rescore from the command line shares its work among: one per core, up to four."""
    return min(usable_cores(), 4)


def score_contacts(
    store: Store,
    tenant: TenantConfig,
    engine: Engine,
    *,
    run_id: int | None,
    as_of: datetime,
    full: bool = False,
    stop: threading.Event | None = None,
    on_chunk: Callable[[RunCounts], None] = lambda counts: None,
    chunk_size: int = SCORE_CHUNK,
    progress: Progress = NO_PROGRESS,
    workers: int = 1,
) -> RunCounts:
    """Score the contacts that are due (all with `full`), queue what changed, and return the counts.

    `on_chunk` hears the counts of each chunk as it is saved (a run counts them as it goes, so a pass that breaks
    off still leaves what it did in the run's record). `stop` ends the pass after the chunk in hand.

    With more than one of `workers`, a large selection is read, scored, decided and saved in that many forked
    processes, a chunk each at a time, one saving at a time: the same result, sooner, though not saved in id order
    (each chunk is whole or not saved; what is not saved stays due). Stopped, they finish the chunks they hold. Only
    for a process with no other threads at work (a fork copies none of them).
    """
    total = RunCounts()
    progress.step("score")
    job = ScoringJob(tenant, engine, run_id, as_of, full, chunk_size)
    saved = 0
    # a pass of many chunks lets the write-ahead log grow between copies into the store (see `Store.long_write`)
    with store.long_write(checkpoint=lambda: saved >= PARALLEL_MIN_CHUNKS):
        for counts in job.saved(store, workers, stop):
            saved += 1
            on_chunk(counts)
            total += counts
            progress.advance(counts.scored)
    return total


#: Fewer chunks than this are scored in the calling process: starting workers would cost more than they save.
PARALLEL_MIN_CHUNKS = 8
#: While workers score and save, the pass (otherwise idle, waiting for them) copies the write-ahead log into the
#: store file after every this many chunks they saved; they never copy it themselves, which a worker would do
#: while holding the lock the others wait on to save.
LOG_COPY_EVERY = 8


@dataclass(frozen=True, slots=True)
class ChunkVerdict:
    """What scoring one chunk decided, as saving needs it."""

    scored: int
    #: the new scores, as `Store.save_scored` takes them
    scores: list[tuple[Any, ...]]
    #: the contacts scored again to the very result saved before (left out with a `span`, which implies them)
    unchanged: list[str]
    #: (contact id, contact kind, the CRM values that changed, how much the write matters)
    writes: list[tuple[str, ContactKind, Mapping[str, Any], WritePriority]]
    #: the decisions that call for a task, with their contacts
    tasks: list[tuple[Contact, Decision]]
    #: ``(after, through)`` when the chunk is every contact with an id in that range (a full rescore)
    span: tuple[str, str] | None = None
    #: the history rows the new scores add, as `Store.save_scored` takes them
    history: list[tuple[Any, ...]] | None = None
    #: the new scores that keep their contact's saved `valid_until` (see `Store.save_scored`)
    same_until: Sequence[tuple[Any, ...]] = ()

    def counts(self) -> RunCounts:
        """What the chunk adds to its run's counts."""
        return RunCounts(scored=self.scored, changed=len(self.writes))


class _Scored(NamedTuple):
    """A chunk's contacts scored at a pass's moment (see `ScoringJob._scored`), each by its place in the chunk."""

    #: the card at a place, built when asked for
    card: Callable[[int], ScoreCard]
    #: each card's lifecycle events (see `ScoreCard.events`)
    events: Sequence[frozenset[int]]
    #: each card as the store saves it
    saved: list[SavedCard]
    #: the CRM values of the cards at the places given (see `WritebackConfig.values_for`)
    values: Callable[[list[int]], list[dict[str, Any]]]
    #: the lifecycle move the card at each place given calls for (see `Engine.decide_status`)
    statuses: Callable[[list[int]], list[StatusChange | None]]


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

    def saved(self, store: Store, workers: int = 1, stop: threading.Event | None = None) -> Iterator[RunCounts]:
        """Each chunk's counts once it is saved; in id order, or with several `workers` for a large selection, saved
        by them (see `score_contacts`). After `stop` is set, no further chunk is begun."""
        if workers > 1:
            bounds = list(store.scoring_bounds(self.full, as_of=self.as_of, fingerprint=self.engine.fingerprint,
                                               decisions=self.decisions, chunk_size=self.chunk_size))
            if len(bounds) >= PARALLEL_MIN_CHUNKS:
                saving = _SavingWorker(self, multiprocessing.get_context("fork").Lock())
                for n, counts in enumerate(in_workers(saving, store.path, bounds, workers, stop=stop), 1):
                    if n % LOG_COPY_EVERY == 0:
                        store.copy_log()
                    yield counts
                return
        for verdict in self.read(store):
            self.save(store, verdict)
            yield verdict.counts()
            if stopping(stop):
                return

    @functools.cached_property
    def activities_read(self) -> ActivitiesRead | None:
        """The activity rows the rules read, all a chunk reads (None: every row)."""
        found = self.columns.activities_read()
        return ActivitiesRead(*found) if found is not None else None

    @functools.cached_property
    def columns(self) -> ColumnEngine:
        """The same rules compiled for scoring a chunk column by column (see `_scored`)."""
        return ColumnEngine(self.engine.config)

    def read(self, store: Store, after: str = "", through: str | None = None) -> Iterator[ChunkVerdict]:
        """Score and decide the due contacts with ids in ``(after, through]``, a chunk at a time."""
        due = store.scoring_batches(self.full, as_of=self.as_of, fingerprint=self.engine.fingerprint,
                                    decisions=self.decisions, chunk_size=self.chunk_size, after=after, through=through,
                                    read=self.activities_read)
        while True:
            # the chunk's rows as read, its cards, decisions and what it saves: many objects, no cycles
            with collector_paused():
                batch = next(due, None)
                if batch is None:
                    return
                scored, last = self._scored(batch), batch.contacts.ids[-1]
                verdict = self._verdict(batch, scored, self.decided(batch, scored),
                                        (after, last) if self.full else None)
            yield verdict
            after = last

    def decided(self, batch: ScoringBatch, scored: _Scored) -> list[Call | None]:
        """What each contact of the batch, `scored` at the pass's moment, calls for against its saved score.

        A contact whose card would be saved exactly as its score is, and whose score is settled (see
        `PriorScore.settled`), calls for nothing new (None): it is not decided again, and its card is not built
        when the batch is scored column by column. The others are decided as `decide` decides, their values and
        lifecycle moves worked out for all of them at once.
        """
        priors, saved, events = batch.priors, scored.saved, scored.events
        same = [before is not None and before.saved_as(card) for before, card in zip(priors, saved, strict=True)]
        places = [i for i, before in enumerate(priors)
                  if before is None or not same[i] or events[i] or not before.settled(self.decisions)]
        calls: list[Call | None] = [None] * len(priors)
        band_names = self.engine.band_names
        for i, values, status in zip(places, scored.values(places), scored.statuses(places), strict=True):
            total, band = saved[i][0], saved[i][1]  # a saved card starts with its total and band
            calls[i] = called_for(self.tenant, band_names, priors[i], total, band, status, values, same[i])
        return calls

    def _scored(self, batch: ScoringBatch) -> _Scored:
        """The batch's contacts scored at the pass's moment. Column by column when there are enough of them for that
        to be faster (no card is built until asked for), else contact by contact. The two give equal cards (see
        tests/engine/test_columnar_agreement.py), values and moves (see tests/engine/test_decisions_agreement.py).
        """
        contacts, priors = batch.contacts, batch.priors
        if len(contacts) >= COLUMN_WISE_FROM:
            fields = self.columns.score(self.columns.flat_batch(contacts, batch.activities), self.as_of).fields()
            saved = saved_cards(fields.totals, fields.bands, fields.grades, fields.quadrants, fields.axes,
                                fields.contributions, fields.codes, fields.bounds, fields.valid_until)

            def statuses(places: list[int]) -> list[StatusChange | None]:
                targets = self.engine.status_targets(fields) if places else None
                if targets is None:
                    return [None] * len(places)
                move = self.engine.move_status
                return [move(contacts.status(i), targets[i], last_set(priors[i])) for i in places]

            return _Scored(fields.card, fields.events, saved,
                           functools.partial(self.tenant.writeback.values_of, fields), statuses)
        by_contact = {cid: list(rows) for cid, rows in groupby(batch.activities, _CONTACT_ID)}
        score, as_of, values_for = self.engine.score_rows, self.as_of, self.values_for
        cards = [score(contact, by_contact.get(contact.id, ()), as_of) for contact in contacts]
        return _Scored(
            cards.__getitem__, [card.events for card in cards], [saved_card(card) for card in cards],
            lambda places: [values_for(cards[i]) for i in places],
            lambda places: [self.engine.decide_status(contacts[i], cards[i], last_set(priors[i])) for i in places])

    def _verdict(self, batch: ScoringBatch, scored: _Scored, calls: list[Call | None],
                 span: tuple[str, str] | None) -> ChunkVerdict:
        scores: list[tuple[Any, ...]] = []
        same_until: list[tuple[Any, ...]] = []
        unchanged: list[str] = []
        writes: list[tuple[str, ContactKind, Mapping[str, Any], WritePriority]] = []
        tasks: list[tuple[Contact, Decision]] = []
        history: list[tuple[Any, ...]] = []
        as_of = iso(self.as_of)
        fingerprint = self.engine.fingerprint
        contacts, ids = batch.contacts, batch.contacts.ids  # a contact is made only for its task
        for i, call in enumerate(calls):
            if call is None or call.unchanged:
                if span is None:
                    unchanged.append(ids[i])
                if call is None:
                    continue
            if call.changed:
                writes.append((ids[i], contacts.kind(i), call.changed, write_priority(self.tenant, call)))
            if call.task_event:
                tasks.append((contacts[i], Decision(scored.card(i), *call)))
            if call.unchanged:
                continue
            before, saved = batch.priors[i], scored.saved[i]
            status = call.status.to.value if call.status else None
            row = score_row(ids[i], self.run_id, fingerprint, as_of, saved, status,
                            call.written if call.changed else None, self.decisions)
            (same_until if before is not None and before.same_until(saved) else scores).append(row)
            # Against `before`, the saved score as this pass read it: no other writer touches it (the run lock).
            entry = history_row(ids[i], self.run_id, as_of, saved[0], saved[1], status,
                                (before.total, before.band, before.status) if before is not None else None)
            if entry is not None:
                history.append(entry)
        return ChunkVerdict(len(calls), scores, unchanged, writes, tasks, span, history, same_until)

    def save(self, store: Store, verdict: ChunkVerdict) -> None:
        """Save a chunk's cards and queue the writes and tasks they call for, in one transaction.

        A card equal to the saved one is not written again: its score only records this run, rules, as-of and
        decisions.
        """
        with store.transaction(), collector_paused():
            store.save_scored(verdict.scores, verdict.unchanged, run_id=self.run_id,
                              fingerprint=self.engine.fingerprint,
                              as_of=self.as_of, decided_under=self.decisions, span=verdict.span,
                              history=verdict.history, same_until=verdict.same_until)
            queued = [(property_write(self.tenant, contact_id, kind, values), priority)
                      for contact_id, kind, values, priority in verdict.writes]
            store.outbox.put_writes([write for write, _ in queued], self.run_id,
                                    {write.key: priority for write, priority in queued})
            tasks = [task_request(store, self.tenant, contact, decision) for contact, decision in verdict.tasks]
            store.outbox.put_tasks(tasks, self.run_id)


@dataclass(frozen=True)
class _SavingWorker:
    """What a scoring worker runs (see `leadpulse.core.runtime.workers.in_workers`): a chunk read, scored and decided
    (`ScoringJob.read`), then saved while holding `lock`, which the workers of a pass share: one saves at a time,
    without waiting on SQLite's busy retries. Only the chunk's counts go back to the pass."""

    job: ScoringJob
    lock: Any

    def read(self, store: Store, after: str = "", through: str | None = None) -> Iterator[RunCounts]:
        # the pass copies the write-ahead log into the store (see `ScoringJob.saved` and `score_contacts`)
        with store.long_write(checkpoint=lambda: False, copies=False):
            for verdict in self.job.read(store, after, through):
                with self.lock:
                    self.job.save(store, verdict)
                yield verdict.counts()
