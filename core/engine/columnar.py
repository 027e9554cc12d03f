"""The scoring rules applied column-wise: many contacts at many moments, agreeing exactly with the per-contact
engine (`leadpulse.core.engine.scoring.Engine`).

`ColumnEngine.batch` does, once, everything that does not depend on the moment scored: each fit condition tested
per contact and each activity row matched against every rule (with the engine's own compiled conditions, so every
rule has one meaning), times as integer microseconds. `ColumnEngine.score` then scores every contact of the batch
at a moment with numpy, a loop per rule and none per contact or row: windows, expiry, follow-ups, distinct days and
sessions, thresholds, caps, decay, inactivity, dates against the moment, axes, bands, grades, quadrants,
lifecycle events, what bent each contribution (matched, cap, decay) and when time alone next changes each score
(`valid_until`). `Scores.cards` turns the columns into the engine's own `ScoreCard`s, equal to its cards field by
field.

Agreement is to the bit, not merely to the cent: each rule's points are rounded as the engine rounds them, an
axis adds its rules' points in the very order the engine adds them for that contact, and decay is summed in the
engine's order. Where numpy's arithmetic can differ from Python's in the last bit (rounding at a tie, ``0.5 ** x``,
a sum of many terms), see `leadpulse.core.engine.columnar_numeric`: the few values too close to call are worked out
one by one as the engine does. No rule or contact falls back to the per-contact engine.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import pairwise, repeat
from operator import itemgetter
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from leadpulse.core.engine.columnar_batch import (
    EPOCH,
    NEVER,
    Batch,
    BatchPlan,
    Matches,
    RowTest,
    build_batch,
    build_flat_batch,
    collector_paused,
    contact_ids,
    micros,
    span_micros,
)
from leadpulse.core.engine.columnar_numeric import (
    Bools,
    Floats,
    Ints,
    halvings,
    ordered_by,
    ordered_sums,
    round_half_up,
)
from leadpulse.core.engine.conditions import is_timed
from leadpulse.core.engine.rules import (
    Counting,
    EngagementRule,
    FitRule,
    InactivityRule,
    ScoringConfig,
    Step,
)
from leadpulse.core.engine.scoring import ActivityRow, Contribution, Engine, Quadrant, ScoreCard
from leadpulse.core.model import Contact, utc

__all__ = ["EXPIRY_SOURCES", "NEVER", "Batch", "CardFields", "ColumnEngine", "RuleFacts", "Scores", "collector_paused"]

Texts = npt.NDArray[np.str_]

#: what each source of `ColumnEngine.expiries` stands for
EXPIRY_SOURCES = {
    "dates": "a date a fit rule reads crosses one of the rule's bounds",
    "occurrences": "an activity an engagement rule matches is still to come",
    "windows": "a counted occurrence leaves its rule's window",
    "follow-ups": "a follow-up of a counted occurrence is still to come",
    "decay": "decaying points are due a recheck",
    "activities": "an activity an inactivity rule watches for is still to come",
    "inactivity": "the time since the last activity reaches an inactivity rule's threshold",
    "event dates": "a date a lifecycle transition's `when` reads crosses one of its bounds",
    "events": "a lifecycle transition's event is still to come",
    "event windows": "the latest of a lifecycle transition's events leaves the transition's window",
}


_CONTACT_ID = itemgetter(0)


@dataclass(frozen=True)
class RuleFacts:
    """What a card tells of each rule, in the tenant's rule order: its id, axis and `Contribution.detail`; for an
    engagement rule its ``max_points`` and half-life in days (None without); for a fit or inactivity rule, the one
    contribution it leaves whenever it fires (None for an engagement rule)."""

    ids: tuple[str, ...]
    axes: tuple[str, ...]
    details: tuple[str, ...]
    caps: tuple[float | None, ...]
    half_lives: tuple[float | None, ...]
    fixed: tuple[Contribution | None, ...]

    @classmethod
    def of(cls, config: ScoringConfig) -> RuleFacts:
        ids, details = config.rule_ids(), Engine(config).details
        axes = tuple(config.rule_axis(rule) for rule in config.rules)
        caps: list[float | None] = []
        half_lives: list[float | None] = []
        fixed: list[Contribution | None] = []
        for i, rule in enumerate(config.rules):
            if isinstance(rule, EngagementRule):
                caps.append(rule.max_points)
                # as the engine keeps it: in seconds, then back in days
                half_lives.append(rule.half_life_days * 86400.0 / 86400 if rule.half_life_days else None)
                fixed.append(None)
            else:
                caps.append(None)
                half_lives.append(None)
                fixed.append(Contribution(ids[i], axes[i], rule.points, 1, details[i]))
        return cls(ids, axes, details, tuple(caps), tuple(half_lives), tuple(fixed))


@dataclass(frozen=True)
class CardFields:
    """The cards of a scored batch (see `Scores.fields`), field by field as lists, element i of each being card
    i's: what a caller that needs only some of the cards, or only some of their fields, reads without building
    every card. `card` builds one card."""

    contact_ids: Sequence[str]
    as_of: datetime
    totals: list[float]
    #: axis name -> each card's value on it
    axes: dict[str, list[float]]
    bands: list[str]
    grades: list[str | None]
    #: each card's quadrant, by its value
    quadrants: list[str | None]
    #: every card's contributions, card by card, each card's in rule order: element k is
    #: ``contributions[codes[k]]`` (one object for many cards where they are alike), card i's elements are those
    #: from ``bounds[i]`` to ``bounds[i + 1]``
    contributions: list[Contribution]
    codes: Ints
    bounds: list[int]
    #: when time alone could next change each card (`datetime64[us]` in UTC, NaT for never)
    valid_until: npt.NDArray[np.datetime64]
    events: list[frozenset[int]]

    def card(self, i: int) -> ScoreCard:
        """Card `i`."""
        quadrant = self.quadrants[i]
        return ScoreCard(
            self.contact_ids[i], self.as_of, self.totals[i], {name: values[i] for name, values in self.axes.items()},
            self.bands[i], self.grades[i], _QUADRANTS[quadrant] if quadrant is not None else None,
            tuple([self.contributions[code] for code in self._codes[self.bounds[i]:self.bounds[i + 1]]]),
            self._moment(i), self.events[i])

    def reasons(self, places: Sequence[int], n: int) -> list[list[str]]:
        """`ScoreCard.reasons` of the cards at `places`, without the cards: their contributions ranked for all of
        them at once, by weight, then by place in the card (as `leadpulse.core.engine.cards.top_reasons` ranks)."""
        at = np.asarray(places, dtype=np.int64)
        bounds = self._bounds
        lengths = bounds[at + 1] - bounds[at]
        owner = np.repeat(np.arange(len(at), dtype=np.int64), lengths)  # each element's place among `places`
        first = np.cumsum(lengths) - lengths  # where each place's elements start among them
        element = bounds[at][owner] + np.arange(len(owner), dtype=np.int64) - first[owner]
        codes = self.codes[element]
        order = np.lexsort((element, -self._weights[codes], owner))
        rank = np.arange(len(order), dtype=np.int64) - first[owner[order]]
        kept = order[(rank < n) & self._counts[codes[order]]]
        found: list[list[str]] = [[] for _ in range(len(at))]
        objects = self.contributions
        for place, code in zip(owner[kept].tolist(), codes[kept].tolist(), strict=True):
            found[place].append(objects[code].text())
        return found

    @functools.cached_property
    def _bounds(self) -> Ints:
        return np.asarray(self.bounds, dtype=np.int64)

    @functools.cached_property
    def _weights(self) -> Floats:
        """Each contribution's weight among a card's reasons, its points' size."""
        return np.array([abs(c.points) for c in self.contributions], dtype=np.float64)

    @functools.cached_property
    def _counts(self) -> Bools:
        """Whether each contribution is told among the reasons: whether it has points."""
        return np.array([bool(c.points) for c in self.contributions], dtype=np.bool_)

    @functools.cached_property
    def _codes(self) -> list[int]:
        found: list[int] = self.codes.tolist()
        return found

    def _moment(self, i: int) -> datetime | None:
        """Card i's valid_until, each distinct one made once."""
        value = self._micros[i]
        if value == _NAT:
            return None
        found = self._made.get(value)
        if found is None:
            found = self._made[value] = EPOCH + timedelta(microseconds=value)
        return found

    @functools.cached_property
    def _micros(self) -> list[int]:
        found: list[int] = self.valid_until.view(np.int64).tolist()
        return found

    @functools.cached_property
    def _made(self) -> dict[int, datetime]:
        return {}

    def cards(self) -> list[ScoreCard]:
        """Every card, in order."""
        size = len(self.contact_ids)
        names = list(self.axes)
        # the columns are of one length; checking it, zip would add a tenth to the time cards() takes
        axes = [dict(zip(names, values, strict=False)) for values in zip(*self.axes.values(), strict=False)] \
            if size else []
        quadrants = [_QUADRANTS[q] if q is not None else None for q in self.quadrants]
        objects = self.contributions
        flat = [objects[code] for code in self._codes]
        contributions = [tuple(flat[start:end]) for start, end in pairwise(self.bounds)]
        return list(map(ScoreCard, self.contact_ids, repeat(self.as_of, size), self.totals, axes, self.bands,
                        self.grades, quadrants, contributions, _moments(self.valid_until), self.events))


@dataclass(frozen=True)
class Scores:
    """A batch scored at `as_of`: one row per contact, in the batch's order.

    `points`, `occurrences` and `fired` are contacts x rules (in the tenant's rule order): the points and count a
    rule's contribution carries where it `fired` (left a contribution, possibly of 0 points), 0 elsewhere. So are
    what bent an engagement rule's contribution, as `Contribution` tells it: `matched` where fewer counted (else
    0), `capped` where its ``max_points`` bound, and where its points `decayed`, what they were worth undecayed
    (`full`) and the age in days of the newest occurrence counted (`age_days`), 0 elsewhere.
    `events` is contacts x lifecycle transitions: whether the transition's conditions on fields and events hold.
    `valid_until` is when time alone could next change each score, in microseconds since the epoch (`NEVER` for
    never).
    """

    as_of: datetime
    contact_ids: tuple[str, ...]
    rules: RuleFacts
    total: Floats
    axes: dict[str, Floats]
    band: Texts
    grade: Texts | None
    quadrant: Texts | None
    events: Bools
    points: Floats
    occurrences: Ints
    fired: Bools
    matched: Ints
    capped: Bools
    decayed: Bools
    full: Floats
    age_days: Floats
    valid_until: Ints

    @property
    def rule_ids(self) -> tuple[str, ...]:
        return self.rules.ids

    def cards(self) -> list[ScoreCard]:
        """Every contact's `ScoreCard`, in the batch's order, each equal to the per-contact engine's."""
        with collector_paused():
            return self._fields(None).cards()

    def card(self, i: int) -> ScoreCard:
        """Contact `i`'s `ScoreCard`, equal to the per-contact engine's."""
        return self._fields(np.array([i], dtype=np.int64)).card(0)

    def fields(self) -> CardFields:
        """The fields of every contact's card, as lists. Build the cards needed from them under
        `collector_paused` (see there)."""
        with collector_paused():
            return self._fields(None)

    def _fields(self, which: Ints | None) -> CardFields:
        def picked(values: npt.NDArray[Any]) -> list[Any]:
            found: list[Any] = (values if which is None else values[which]).tolist()
            return found

        size = len(self.contact_ids) if which is None else len(which)
        ids = self.contact_ids if which is None else [self.contact_ids[i] for i in which.tolist()]
        objects, codes, bounds = self._contributions(which)
        until = self.valid_until if which is None else self.valid_until[which]
        return CardFields(
            ids, self.as_of, picked(self.total), {name: picked(values) for name, values in self.axes.items()},
            picked(self.band), picked(self.grade) if self.grade is not None else [None] * size,
            picked(self.quadrant) if self.quadrant is not None else [None] * size, objects, codes, bounds,
            np.where(until == NEVER, _NAT, until).view("datetime64[us]"), self._events(which))

    def _contributions(self, which: Ints | None) -> tuple[list[Contribution], Ints, list[int]]:
        """Every contact's contributions, contact by contact, each in rule order (the order of the engine's cards),
        made rule by rule: the objects, each element's (see `CardFields.codes`), and where each contact's elements
        start (and the last one's end)."""
        fired = self.fired if which is None else self.fired[which]
        if not fired.shape[0]:
            return [], np.zeros(0, dtype=np.int64), [0]
        who, rule = np.nonzero(fired)  # contact by contact, each in rule order
        by_rule = np.argsort(rule, kind="stable")
        bounds = np.searchsorted(rule[by_rule], np.arange(fired.shape[1] + 1)).tolist()
        contacts = who if which is None else which[who]
        objects: list[Contribution] = []
        codes = np.empty(len(by_rule), dtype=np.int64)
        for r in range(fired.shape[1]):
            start, end = bounds[r], bounds[r + 1]
            if start < end:
                made, theirs = self._rule_contributions(r, contacts[by_rule[start:end]])
                codes[by_rule[start:end]] = theirs + len(objects)
                objects += made
        ends = np.cumsum(np.bincount(who, minlength=fired.shape[0])).tolist()
        return objects, codes, [0, *ends]

    def _rule_contributions(self, r: int, contacts: Ints) -> tuple[list[Contribution], Ints]:
        """Rule `r`'s contributions to `contacts` (where it fired): the objects, and each contact's."""
        facts = self.rules
        fixed = facts.fixed[r]
        if fixed is not None:
            return [fixed], np.zeros(len(contacts), dtype=np.int64)
        rule_id, axis, detail = facts.ids[r], facts.axes[r], facts.details[r]
        points, counts = self.points[contacts, r], self.occurrences[contacts, r]
        bent = (self.matched[contacts, r] != 0) | self.capped[contacts, r] | self.decayed[contacts, r]
        codes = np.empty(len(contacts), dtype=np.int64)
        made: list[Contribution] = []
        usual = np.flatnonzero(~bent)
        if len(usual):  # nothing bent: one object per (points, count), the points told apart by their bits
            found: dict[tuple[int, int], int] = {}
            keys = zip(points[usual].view(np.int64).tolist(), counts[usual].tolist(), strict=True)
            codes[usual] = np.fromiter([found.setdefault(key, len(found)) for key in keys], dtype=np.int64,
                                       count=len(usual))
            alike = np.array(list(found), dtype=np.int64).reshape(-1, 2)
            made = [Contribution(rule_id, axis, p, c, detail)
                    for p, c in zip(alike[:, 0].view(np.float64).tolist(), alike[:, 1].tolist(), strict=True)]
        at_bent = np.flatnonzero(bent)
        if len(at_bent):
            at = contacts[at_bent]
            matched, capped = self.matched[at, r].tolist(), self.capped[at, r].tolist()
            decayed, full, age = self.decayed[at, r].tolist(), self.full[at, r].tolist(), self.age_days[at, r].tolist()
            half_life = facts.half_lives[r]
            codes[at_bent] = np.arange(len(made), len(made) + len(at_bent))
            made += [
                Contribution(rule_id, axis, p, c, detail, matched[k] or None, facts.caps[r] if capped[k] else None,
                             full[k] if decayed[k] else None, age[k] if decayed[k] else None,
                             half_life if decayed[k] else None)
                for k, (p, c) in enumerate(zip(points[at_bent].tolist(), counts[at_bent].tolist(), strict=True))
            ]
        return made, codes

    def _events(self, which: Ints | None) -> list[frozenset[int]]:
        held = self.events if which is None else self.events[which]
        size, transitions = held.shape
        if not held.any():
            return [_NO_EVENTS] * size
        if transitions > 62:
            return [frozenset(np.flatnonzero(row).tolist()) for row in held]
        codes = (held.astype(np.int64) << np.arange(transitions, dtype=np.int64)).sum(axis=1).tolist()
        sets: dict[int, frozenset[int]] = {}
        found = []
        for code in codes:
            events = sets.get(code)
            if events is None:
                events = sets[code] = frozenset(t for t in range(transitions) if code >> t & 1)
            found.append(events)
        return found


def _moments(values: npt.NDArray[np.datetime64]) -> list[datetime | None]:
    """Each of `values` (`datetime64[us]`, NaT for none) as a `datetime` in UTC, each distinct one made once."""
    found = values.view(np.int64).tolist()
    moments: dict[int, datetime | None] = {_NAT: None}
    for value in set(found) - moments.keys():
        moments[value] = EPOCH + timedelta(microseconds=value)
    return [moments[value] for value in found]


#: numpy's "not a time", as its int64 view
_NAT = int(np.datetime64("NaT").view(np.int64))
_QUADRANTS = {quadrant.value: quadrant for quadrant in Quadrant}
_NO_EVENTS: frozenset[int] = frozenset()


@dataclass(frozen=True)
class _Engagement:
    """An engagement rule as the columns need it: spans in microseconds, the half-life in seconds."""

    rule: int
    axis: int
    points: float
    count: Counting
    horizon: int | None
    follow_within: int | None
    half_life: float | None
    max_points: float | None
    max_occurrences: int | None
    min_occurrences: int | None
    once: bool

    @classmethod
    def of(cls, rule: EngagementRule, index: int, axis: int) -> _Engagement:
        horizon = rule.horizon_days()
        follow = rule.unless_followed_by
        return cls(
            index, axis, rule.points, rule.count, span_micros(horizon) if horizon is not None else None,
            span_micros(follow.within_days) if follow is not None and follow.within_days else None,
            rule.half_life_days * 86400.0 if rule.half_life_days else None, rule.max_points, rule.max_occurrences,
            rule.min_occurrences, rule.once)


@dataclass(frozen=True)
class _Ladder:
    """Bands or grades: each step's start above the first, and whether the start itself is excluded."""

    names: tuple[str, ...]
    starts: tuple[tuple[float, bool], ...]

    @classmethod
    def of(cls, steps: Sequence[Step]) -> _Ladder:
        return cls(tuple(step.name for step in steps),
                   tuple((step.lower or 0.0, step.above is not None) for step in steps[1:]))

    def place(self, values: Floats) -> Texts:
        rung = np.zeros(len(values), dtype=np.int64)
        for start, excluded in self.starts:
            rung += (values > start) if excluded else (values >= start)
        return np.array(self.names)[rung]


class ColumnEngine:
    """A tenant's rules compiled for columns: a batch of contacts is matched once (`batch`), then scored at any
    number of moments (`score`), each giving what `leadpulse.core.engine.scoring.Engine` gives contact by
    contact."""

    def __init__(self, config: ScoringConfig) -> None:
        self.config = config
        self.rules = RuleFacts.of(config)
        self.rule_ids = self.rules.ids
        self.axis_names = tuple(config.axes)
        self.rule_axes = self.rules.axes
        axis_of = {name: n for n, name in enumerate(self.axis_names)}
        rules = list(enumerate(config.rules))
        self._engagement = [_Engagement.of(rule, i, axis_of[self.rule_axes[i]]) for i, rule in rules
                            if isinstance(rule, EngagementRule)]
        self._inactivity = [i for i, rule in rules if isinstance(rule, InactivityRule)]
        fit = [i for i, rule in rules if isinstance(rule, FitRule)]
        transitions = config.lifecycle.transitions if config.lifecycle else ()
        self._events = [(t, transition) for t, transition in enumerate(transitions)
                        if transition.when is not None or transition.after is not None]
        self._transitions = len(transitions)
        self._plan, self._fit, self._event_slots = self._batch_plan(config, fit)
        self._bands = _Ladder.of(config.bands)
        self._grades = _Ladder.of(config.grades) if config.grades else None

    def _batch_plan(self, config: ScoringConfig, fit: list[int]
                    ) -> tuple[BatchPlan, list[tuple[int, int, bool]], list[tuple[int | None, int | None]]]:
        tests: list[RowTest] = []
        for spec in self._engagement:
            rule = config.rules[spec.rule]
            assert isinstance(rule, EngagementRule)
            occasions = rule.count if rule.count is not Counting.OCCURRENCES else None
            tests.append(RowTest.of(rule.kinds(), rule.vendor_types(), rule.where, occasions))
        followers: dict[int, int] = {}
        for slot, spec in enumerate(self._engagement):
            follow = config.rules[spec.rule].unless_followed_by  # type: ignore[union-attr]  # engagement rules
            if follow is not None:
                followers[slot] = len(tests)
                tests.append(RowTest.of(follow.kinds(), follow.vendor_types(), follow.where))
        conditions: list[object] = []
        fit_plan = []
        for i in fit:
            rule = config.rules[i]
            assert isinstance(rule, FitRule)
            fit_plan.append((i, len(conditions), is_timed(rule.when)))
            conditions.append(rule.when)
        event_slots: list[tuple[int | None, int | None]] = []
        for _, transition in self._events:
            when_slot = after_slot = None
            if transition.when is not None:
                when_slot = len(conditions)
                conditions.append(transition.when)
            if transition.after is not None:
                after_slot = len(tests)
                after = transition.after
                tests.append(RowTest.of(after.kinds(), after.vendor_types(), after.where))
            event_slots.append((when_slot, after_slot))
        inactivity = []
        for i in self._inactivity:
            rule = config.rules[i]
            assert isinstance(rule, InactivityRule)
            inactivity.append(frozenset(rule.kinds()) or None)
        plan = BatchPlan(tuple(tests), len(self._engagement), followers, tuple(inactivity), tuple(conditions))
        return plan, fit_plan, event_slots

    def batch(self, contacts: Sequence[Contact], rows: Mapping[str, Sequence[ActivityRow]]) -> Batch:
        """Everything about these contacts that does not depend on the moment, done once: each fit condition
        tested, each activity row (`rows` by contact id) matched against every rule, follow-up and lifecycle
        event, times as integer microseconds, matches grouped by contact."""
        return build_batch(self._plan, contacts, rows)

    def activities_read(self) -> tuple[frozenset[str], frozenset[str]] | None:
        """The activity kinds and vendor types whose rows the rules read (engagement rules, their follow-ups,
        lifecycle events and inactivity rules), or None when every row counts (an inactivity rule that any
        activity keeps awake). Both engines leave any other row out of every card; a batch need not hold it."""
        plan = self._plan
        if any(kinds is None for kinds in plan.inactivity):
            return None
        kinds = frozenset[str]().union(*(test.kinds for test in plan.tests), *(k for k in plan.inactivity if k))
        return kinds, frozenset[str]().union(*(test.vendor_types for test in plan.tests))

    def flat_batch(self, contacts: Sequence[Contact], rows: Sequence[ActivityRow]) -> Batch:
        """`batch` from one list of activity `rows`, by contact (as `contacts` are ordered), then id, as the store
        reads a chunk (see `leadpulse.core.store.store.Store.scoring_batches`); rows of other contacts are left
        out."""
        place = {contact_id: n for n, contact_id in enumerate(contact_ids(contacts))}
        owners = np.fromiter(map(place.get, map(_CONTACT_ID, rows), repeat(-1)), dtype=np.int64, count=len(rows))
        if len(owners) and owners.min() < 0:
            kept = np.flatnonzero(owners >= 0)
            rows, owners = [rows[i] for i in kept.tolist()], owners[kept]
        return build_flat_batch(self._plan, contacts, rows, owners)

    def score(self, batch: Batch, as_of: datetime) -> Scores:
        """Every contact of `batch` scored at `as_of`, column by column; activities after `as_of` do not count."""
        as_of = utc(as_of)
        now = micros(as_of)
        table = _Table(batch.size, len(self.config.rules))
        for rule, slot, _ in self._fit:
            table.put(rule, _Applied.fixed(batch.conditions[slot].at(now), self.config.rules[rule].points))
        for slot, spec in enumerate(self._engagement):
            table.put(spec.rule, _engagement_at(spec, batch.matches[slot], now, batch.size))
        quiet = [self._inactive(rule, batch.quiet[n_rule], now, batch.size)
                 for n_rule, rule in enumerate(self._inactivity)]
        for rule, (applies, _, _) in zip(self._inactivity, quiet, strict=True):
            table.put(rule, _Applied.fixed(applies, self.config.rules[rule].points))
        axes = self._axes(batch, table.points)
        total = np.zeros(batch.size, dtype=np.float64)
        for name, axis in self.config.axes.items():
            total = total + axes[name] * axis.weight
        total = round_half_up(total)
        expiries = self._expiries(batch, now, table.points, quiet).values()
        valid_until = np.minimum.reduce([*expiries, np.full(batch.size, NEVER, dtype=np.int64)])
        return Scores(
            as_of, batch.contact_ids, self.rules, total, axes, self._bands.place(total),
            self._grades.place(axes[self.config.grade_axis]) if self._grades else None, self._quadrants(axes),
            self._held_events(batch, now), table.points, table.occurrences, table.fired, table.matched,
            table.capped, table.decayed, table.full, table.age_days, valid_until)

    def expiries(self, batch: Batch, scores: Scores) -> dict[str, Ints]:
        """When time alone could next change each contact's score at `scores.as_of` (`scores` being `batch`
        scored), by source (see `EXPIRY_SOURCES`), in microseconds since the epoch, `NEVER` for never:
        `Scores.valid_until` is the earliest of them."""
        now = micros(scores.as_of)
        quiet = [self._inactive(rule, batch.quiet[n_rule], now, batch.size)
                 for n_rule, rule in enumerate(self._inactivity)]
        return self._expiries(batch, now, scores.points, quiet)

    def _expiries(self, batch: Batch, now: int, points: Floats, quiet: list[tuple[Bools, Ints, Ints]]
                  ) -> dict[str, Ints]:
        """`expiries`, given what `_inactive` found of each inactivity rule."""
        n = batch.size
        found = {source: np.full(n, NEVER, dtype=np.int64) for source in EXPIRY_SOURCES}
        for _, slot, timed in self._fit:
            if timed:
                found["dates"] = np.minimum(found["dates"], _next_crossing(batch.crossings[slot], now))
        recheck = self.config.decay_recheck // timedelta(microseconds=1)
        for slot, spec in enumerate(self._engagement):
            follower = self._plan.followers.get(slot)
            moments = _engagement_expiries(spec, batch.matches[slot], batch.matches[follower] if follower is not None
                                           else None, points[:, spec.rule], now, recheck)
            for source, column in moments.items():
                found[source] = np.minimum(found[source], column)
        for _, upcoming, threshold in quiet:
            found["activities"] = np.minimum(found["activities"], upcoming)
            found["inactivity"] = np.minimum(found["inactivity"], threshold)
        for source, column in self._lifecycle_expiries(batch, now).items():
            found[source] = np.minimum(found[source], column)
        return found

    def _inactive(self, rule: int, quiet: Matches, now: int, n: int) -> tuple[Bools, Ints, Ints]:
        """Whether the inactivity rule applies to each contact, and when time alone next changes that: at its next
        activity, and (where it does not apply) when its quiet reaches the threshold."""
        config = self.config.rules[rule]
        assert isinstance(config, InactivityRule)
        every = np.bincount(quiet.owner, minlength=n)
        before = np.bincount(quiet.owner[quiet.at <= now], minlength=n)
        starts = np.cumsum(every) - every
        seen, ahead = before > 0, before < every
        last = np.zeros(n, dtype=np.int64)
        last[seen] = quiet.at[starts[seen] + before[seen] - 1]
        upcoming = np.full(n, NEVER, dtype=np.int64)
        upcoming[ahead] = quiet.at[starts[ahead] + before[ahead]]
        after = span_micros(config.inactive_days)
        applies = np.where(seen, (now - last) >= after, config.count_never_active)
        return applies, upcoming, np.where(seen & ~applies, last + after, NEVER)

    def _axes(self, batch: Batch, points: Floats) -> dict[str, Floats]:
        """Each axis: its rules' points added in the order the engine adds them (fit rules reading no date, fit
        rules reading one, engagement rules in the order each contact's rows first matched them, inactivity
        rules), then its floor and cap, then rounded."""
        n = batch.size
        sums = np.zeros((len(self.axis_names), n), dtype=np.float64)
        axis_of = {name: k for k, name in enumerate(self.axis_names)}
        ordered = [rule for rule, _, timed in self._fit if not timed] + [rule for rule, _, timed in self._fit if timed]
        for rule in ordered:
            sums[axis_of[self.rule_axes[rule]]] += points[:, rule]
        if self._engagement:
            columns = np.array([spec.rule for spec in self._engagement], dtype=np.int64)
            axes = np.array([spec.axis for spec in self._engagement], dtype=np.int64)
            everyone = np.arange(n)
            for place in range(len(self._engagement)):
                slot = batch.first_matched[:, place]
                got = points[everyone, columns[slot]]
                for k in range(len(self.axis_names)):
                    sums[k] += np.where(axes[slot] == k, got, 0.0)
        for rule in self._inactivity:
            sums[axis_of[self.rule_axes[rule]]] += points[:, rule]
        found = {}
        for k, (name, axis) in enumerate(self.config.axes.items()):
            value = sums[k]
            if axis.min is not None:
                value = np.where(value < axis.min, axis.min, value)
            if axis.max is not None:
                value = np.where(value > axis.max, axis.max, value)
            found[name] = round_half_up(value)
        return found

    def _quadrants(self, axes: Mapping[str, Floats]) -> Texts | None:
        if self.config.quadrant is None:
            return None
        fits = axes["fit"] >= self.config.quadrant.fit
        interested = axes["engagement"] >= self.config.quadrant.engagement
        names = np.array(["leave", "qualify", "nurture", "follow_up_now"])
        return names[fits.astype(np.int64) * 2 + interested.astype(np.int64)]

    def _held_events(self, batch: Batch, now: int) -> Bools:
        held = np.zeros((batch.size, self._transitions), dtype=np.bool_)
        for (t, transition), (when_slot, after_slot) in zip(self._events, self._event_slots, strict=True):
            holds = batch.conditions[when_slot].at(now) if when_slot is not None else np.ones(batch.size, np.bool_)
            if after_slot is not None:
                assert transition.after is not None
                found = batch.matches[after_slot]
                recent = found.at <= now
                if transition.after.within_days:
                    recent &= (now - found.at) < span_micros(transition.after.within_days)
                holds = holds & (np.bincount(found.owner[recent], minlength=batch.size) > 0)
            held[:, t] = holds
        return held

    def _lifecycle_expiries(self, batch: Batch, now: int) -> dict[str, Ints]:
        """When time alone next changes whether a transition's conditions hold, as `Engine`'s events tell it: a
        date its ``when`` reads crossing a bound, its event still to come, or the latest one leaving its window."""
        found = {source: np.full(batch.size, NEVER, dtype=np.int64) for source in ("event dates", "events",
                                                                                   "event windows")}
        for (_, transition), (when_slot, after_slot) in zip(self._events, self._event_slots, strict=True):
            if when_slot is not None:
                found["event dates"] = np.minimum(found["event dates"],
                                                  _next_crossing(batch.crossings[when_slot], now))
            if after_slot is None:
                continue
            assert transition.after is not None
            matches = batch.matches[after_slot]
            later = matches.at > now
            found["events"] = np.minimum(found["events"], _least(matches.owner[later], matches.at[later], batch.size))
            if transition.after.within_days:
                within = span_micros(transition.after.within_days)
                recent = ~later & ((now - matches.at) < within)
                latest = _latest(matches.owner[recent], matches.at[recent], batch.size)
                found["event windows"] = np.minimum(found["event windows"],
                                                    np.where(latest != _NONE, latest + within, NEVER))
        return found


class _Applied(NamedTuple):
    """One rule's contribution to each contact, as columns (see `Scores`); what bent it, for an engagement rule."""

    points: Floats
    occurrences: Ints
    fires: Bools
    matched: Ints | None = None
    capped: Bools | None = None
    decayed: Bools | None = None
    full: Floats | None = None
    age_days: Floats | None = None

    @classmethod
    def fixed(cls, held: Bools, points: float) -> _Applied:
        """A fit or inactivity rule: its points, once, where it holds."""
        return cls(np.where(held, points, 0.0), held.astype(np.int64), held)


class _Table:
    """Contacts x rules columns, filled rule by rule."""

    def __init__(self, size: int, rules: int) -> None:
        # each rule's column kept together in memory (a transposed view of rules x contacts), as it is written
        shape = (rules, size)
        self.points, self.full, self.age_days = (np.zeros(shape, dtype=np.float64).T for _ in range(3))
        self.occurrences, self.matched = np.zeros(shape, dtype=np.int64).T, np.zeros(shape, dtype=np.int64).T
        self.fired, self.capped, self.decayed = (np.zeros(shape, dtype=np.bool_).T for _ in range(3))

    def put(self, rule: int, applied: _Applied) -> None:
        self.points[:, rule], self.occurrences[:, rule], self.fired[:, rule] = applied[:3]
        for name, column in zip(_Applied._fields[3:], applied[3:], strict=True):
            if column is not None:
                getattr(self, name)[:, rule] = column


# ---------------------------------------------------------------- one engagement rule at a moment


def _engagement_at(spec: _Engagement, found: Matches, now: int, n: int) -> _Applied:
    """One engagement rule's points, counted occurrences, whether it fired and what bent it, per contact, at
    `now`."""
    owner, at = _counted(spec, found, now)
    matched = np.bincount(owner, minlength=n)
    starts = np.cumsum(matched) - matched
    newest_first = ordered_by(owner, -at)
    rank = np.empty(len(at), dtype=np.int64)  # within its contact, 0 for the newest
    rank[newest_first] = np.arange(len(at)) - starts[owner[newest_first]]
    keep = np.ones(len(at), dtype=np.bool_)
    counted = matched
    if spec.max_occurrences is not None:
        keep &= rank < spec.max_occurrences
        counted = np.minimum(matched, spec.max_occurrences)
    fires = counted > 0
    final = counted
    if spec.min_occurrences is not None:
        fires = counted >= spec.min_occurrences
        keep &= fires[owner] & (counted[owner] - 1 - rank >= spec.min_occurrences - 1)
        final = np.where(fires, counted - (spec.min_occurrences - 1), 0)
    if spec.once:
        keep &= rank == 0
        final = fires.astype(np.int64)
    if spec.half_life is None:
        got = spec.points * final.astype(np.float64)
    else:
        got = spec.points * _decayed(spec, owner, at, rank, matched, starts, keep, now, n)
    capped = None
    if spec.max_points is not None:
        capped = fires & (np.abs(got) > spec.max_points)
        got = np.where(capped, np.where(got > 0, spec.max_points, -spec.max_points), got)
    got = np.where(fires, round_half_up(got), 0.0)
    final = np.where(fires, final, 0)
    fewer = np.where(fires & (matched != final), matched, 0)
    if spec.half_life is None:
        return _Applied(got, final, fires, fewer, capped)
    full = round_half_up(spec.points * final.astype(np.float64))
    decayed = fires & (got != full) if capped is None else fires & ~capped & (got != full)
    newest = np.zeros(n, dtype=np.int64)
    newest[owner[rank == 0]] = at[rank == 0]
    age_days = (now - newest).astype(np.float64) / 1e6 / 86400
    return _Applied(got, final, fires, fewer, capped, decayed, np.where(decayed, full, 0.0),
                    np.where(decayed, age_days, 0.0))


def _engagement_expiries(spec: _Engagement, found: Matches, followers: Matches | None, points: Floats, now: int,
                         recheck: int) -> dict[str, Ints]:
    """When time alone next changes one engagement rule's contribution to each contact, as `Engine` tells it, by
    source: a match still to come, a counted one leaving the window, a follow-up still to come (of a contact with
    occurrences in the window), the recheck of points that decay."""
    n = len(points)
    later = found.at > now
    found_at = {"occurrences": _least(found.owner[later], found.at[later], n)}
    inside = ~later
    if spec.horizon is not None:
        inside &= found.at > now - spec.horizon
        found_at["windows"] = _least(found.owner[inside], found.at[inside] + spec.horizon, n)
    if followers is not None:
        coming = followers.at > now
        first = _least(followers.owner[coming], followers.at[coming], n)
        found_at["follow-ups"] = np.where(np.bincount(found.owner[inside], minlength=n) > 0, first, NEVER)
    if spec.half_life is not None:
        found_at["decay"] = np.where(points != 0, now + recheck, NEVER)
    return found_at


def _next_crossing(crossings: Ints, now: int) -> Ints:
    """Per contact, the first of its crossings after `now` (`NEVER` if none)."""
    return np.where(crossings > now, crossings, NEVER).min(axis=1, initial=NEVER)  # type: ignore[no-any-return]


#: no time at all, below every real one
_NONE = np.iinfo(np.int64).min


def _least(owner: Ints, moments: Ints, n: int) -> Ints:
    """Per contact (0 .. n-1), the earliest of its `moments`, `NEVER` for one with none."""
    found = np.full(n, NEVER, dtype=np.int64)
    np.minimum.at(found, owner, moments)
    return found


def _latest(owner: Ints, moments: Ints, n: int) -> Ints:
    """Per contact (0 .. n-1), the latest of its `moments`, `_NONE` for one with none."""
    found = np.full(n, _NONE, dtype=np.int64)
    np.maximum.at(found, owner, moments)
    return found


def _counted(spec: _Engagement, found: Matches, now: int) -> tuple[Ints, Ints]:
    """The matches that count at `now` (at or before it, inside the window, not followed up), as occasions when
    the rule counts days or sessions: each contact's in row order (occasions in order of first appearance)."""
    at = found.at
    keep = at <= now
    if spec.horizon is not None:
        keep &= at > now - spec.horizon
    if found.followed_at is not None:
        followed = found.followed_at <= now
        if spec.follow_within is not None:
            followed &= (found.followed_at - at) <= spec.follow_within
        keep &= ~followed
    owner, at = found.owner[keep], at[keep]
    if found.occasion is None or not len(at):
        return owner, at
    group = owner * found.occasions + found.occasion[keep]
    order = ordered_by(group, at)
    grouped = group[order]
    last = np.flatnonzero(np.append(grouped[1:] != grouped[:-1], True))
    first = np.append(0, last[:-1] + 1)
    appears = np.argsort(np.minimum.reduceat(order, first), kind="stable")
    return owner[order][last][appears], at[order][last][appears]


def _decayed(spec: _Engagement, owner: Ints, at: Ints, rank: Ints, matched: Ints, starts: Ints, keep: Bools,
             now: int, n: int) -> Floats:
    """Per contact, the sum of the counted occurrences' halvings, added in the order the engine adds them:
    oldest first after a threshold, newest first after a cap on occurrences, else as matched."""
    natural = np.arange(len(at)) - starts[owner]
    if spec.min_occurrences is not None:
        place = -rank
    elif spec.max_occurrences is not None:
        place = np.where(matched[owner] > spec.max_occurrences, rank, natural)
    else:
        place = natural
    order = ordered_by(owner, place)
    order = order[keep[order]]
    assert spec.half_life is not None
    ages = (now - at[order]).astype(np.float64) / 1e6 / spec.half_life
    return ordered_sums(owner[order], halvings(ages), n)
