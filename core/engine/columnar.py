"""The scoring rules applied column-wise: many contacts at many moments, agreeing exactly with the per-contact
engine (`leadpulse.core.engine.scoring.Engine`).

`ColumnEngine.batch` does, once, everything that does not depend on the moment scored: each fit condition tested
per contact and each activity row matched against every rule (with the engine's own compiled conditions, so every
rule has one meaning), times as integer microseconds. `ColumnEngine.score` then scores every contact of the batch
at a moment with numpy, a loop per rule and none per contact or row: windows, expiry, follow-ups, distinct days and
sessions, thresholds, caps, decay, inactivity, dates against the moment, axes, bands, grades, quadrants and
lifecycle events.

Agreement is to the bit, not merely to the cent: each rule's points are rounded as the engine rounds them, an
axis adds its rules' points in the very order the engine adds them for that contact, and decay is summed in the
engine's order. Where numpy's arithmetic can differ from Python's in the last bit (rounding at a tie, ``0.5 ** x``,
a sum of many terms), see `leadpulse.core.engine.columnar_numeric`: the few values too close to call are worked out
one by one as the engine does. No rule or contact falls back to the per-contact engine.

What a `Scores` leaves out of a `ScoreCard`: `valid_until` and the contributions' explanations (matched, cap, full,
age); ask the per-contact engine to explain one contact.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from leadpulse.core.engine.columnar_batch import (
    Batch,
    BatchPlan,
    Matches,
    RowTest,
    build_batch,
    micros,
    span_micros,
)
from leadpulse.core.engine.columnar_numeric import Bools, Floats, Ints, halvings, ordered_sums, round_half_up
from leadpulse.core.engine.conditions import is_timed
from leadpulse.core.engine.rules import (
    Counting,
    EngagementRule,
    FitRule,
    InactivityRule,
    ScoringConfig,
    Step,
)
from leadpulse.core.engine.scoring import ActivityRow, ScoreCard
from leadpulse.core.model import Contact, utc

__all__ = ["Batch", "CardSummary", "ColumnEngine", "Scores", "summarize"]

Texts = npt.NDArray[np.str_]


class CardSummary(NamedTuple):
    """What a score card says, as plain values that compare exactly: the contributions as (rule id, axis, points,
    occurrences) in rule order, the axes in the tenant's order, the quadrant as its text."""

    contact_id: str
    total: float
    axes: tuple[tuple[str, float], ...]
    band: str
    grade: str | None
    quadrant: str | None
    contributions: tuple[tuple[str, str, float, int], ...]
    events: frozenset[int]


def summarize(card: ScoreCard) -> CardSummary:
    """A per-contact engine's card as a `CardSummary`."""
    return CardSummary(
        card.contact_id, card.total, tuple(card.axes.items()), card.band, card.grade,
        card.quadrant.value if card.quadrant is not None else None,
        tuple((c.rule_id, c.axis, c.points, c.occurrences) for c in card.contributions), frozenset(card.events))


@dataclass(frozen=True)
class Scores:
    """A batch scored at `as_of`: one row per contact, in the batch's order.

    `points`, `occurrences` and `fired` are contacts x rules (in the tenant's rule order): the points and count a
    rule's contribution carries where it `fired` (left a contribution, possibly of 0 points), 0 elsewhere.
    `events` is contacts x lifecycle transitions: whether the transition's conditions on fields and events hold.
    """

    as_of: datetime
    contact_ids: tuple[str, ...]
    rule_ids: tuple[str, ...]
    rule_axes: tuple[str, ...]
    total: Floats
    axes: dict[str, Floats]
    band: Texts
    grade: Texts | None
    quadrant: Texts | None
    events: Bools
    points: Floats
    occurrences: Ints
    fired: Bools

    def summary(self, i: int) -> CardSummary:
        """Contact `i` as a `CardSummary`, to compare with the engine's card."""
        contributions = tuple(
            (self.rule_ids[r], self.rule_axes[r], float(self.points[i, r]), int(self.occurrences[i, r]))
            for r in np.flatnonzero(self.fired[i]).tolist())
        return CardSummary(
            self.contact_ids[i], float(self.total[i]), tuple((name, float(values[i])) for name, values in
                                                            self.axes.items()),
            str(self.band[i]), str(self.grade[i]) if self.grade is not None else None,
            str(self.quadrant[i]) if self.quadrant is not None else None, contributions,
            frozenset(np.flatnonzero(self.events[i]).tolist()))


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
        self.rule_ids = config.rule_ids()
        self.axis_names = tuple(config.axes)
        self.rule_axes = tuple(config.rule_axis(rule) for rule in config.rules)
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

    def score(self, batch: Batch, as_of: datetime) -> Scores:
        """Every contact of `batch` scored at `as_of`, column by column; activities after `as_of` do not count."""
        as_of = utc(as_of)
        now = micros(as_of)
        n, rules = batch.size, len(self.config.rules)
        points = np.zeros((n, rules), dtype=np.float64)
        occurrences = np.zeros((n, rules), dtype=np.int64)
        fired = np.zeros((n, rules), dtype=np.bool_)
        for rule, slot, _ in self._fit:
            held = batch.conditions[slot].at(now)
            fired[:, rule] = held
            occurrences[:, rule] = held
            points[:, rule] = np.where(held, self.config.rules[rule].points, 0.0)
        for slot, spec in enumerate(self._engagement):
            got, count, fires = _engagement_at(spec, batch.matches[slot], now, n)
            points[:, spec.rule], occurrences[:, spec.rule], fired[:, spec.rule] = got, count, fires
        for n_rule, rule in enumerate(self._inactivity):
            applies = self._inactive(rule, batch.quiet[n_rule], now, n)
            fired[:, rule] = applies
            occurrences[:, rule] = applies
            points[:, rule] = np.where(applies, self.config.rules[rule].points, 0.0)
        axes = self._axes(batch, points)
        total = np.zeros(n, dtype=np.float64)
        for name, axis in self.config.axes.items():
            total = total + axes[name] * axis.weight
        total = round_half_up(total)
        return Scores(
            as_of, batch.contact_ids, self.rule_ids, self.rule_axes, total, axes, self._bands.place(total),
            self._grades.place(axes[self.config.grade_axis]) if self._grades else None, self._quadrants(axes),
            self._held_events(batch, now), points, occurrences, fired)

    def _inactive(self, rule: int, quiet: Matches, now: int, n: int) -> Bools:
        config = self.config.rules[rule]
        assert isinstance(config, InactivityRule)
        every = np.bincount(quiet.owner, minlength=n)
        before = np.bincount(quiet.owner[quiet.at <= now], minlength=n)
        seen = before > 0
        last = np.zeros(n, dtype=np.int64)
        last[seen] = quiet.at[(np.cumsum(every) - every)[seen] + before[seen] - 1]
        quiet_long = (now - last) >= span_micros(config.inactive_days)
        return np.where(seen, quiet_long, config.count_never_active)

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


# ---------------------------------------------------------------- one engagement rule at a moment


def _engagement_at(spec: _Engagement, found: Matches, now: int, n: int) -> tuple[Floats, Ints, Bools]:
    """One engagement rule's points, counted occurrences and whether it fired, per contact, at `now`."""
    owner, at = _counted(spec, found, now)
    matched = np.bincount(owner, minlength=n)
    starts = np.cumsum(matched) - matched
    newest_first = np.lexsort((-at, owner))
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
    if spec.max_points is not None:
        got = np.where(np.abs(got) > spec.max_points, np.where(got > 0, spec.max_points, -spec.max_points), got)
    got = np.where(fires, round_half_up(got), 0.0)
    return got, np.where(fires, final, 0), fires


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
    order = np.lexsort((at, group))
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
    order = np.lexsort((place, owner))
    order = order[keep[order]]
    assert spec.half_life is not None
    ages = (now - at[order]).astype(np.float64) / 1e6 / spec.half_life
    return ordered_sums(owner[order], halvings(ages), n)
