"""The scoring engine: a tenant's rules, compiled once, applied to one contact and its activities at a moment.

A score is a pure function of (rules, contact, activities, as_of): nothing reads the clock or the store. Every
rule that fires leaves a `Contribution`, so each score can be explained; `ScoreCard.valid_until` says when time
alone could next change the score, so the pipeline only rescores contacts whose inputs changed or whose card
expired.

Rounding: each contribution is rounded to 2 decimals, an axis is the sum of its rounded contributions (then its
floor and cap, if the tenant set any), and the total is the weighted sum of the axes, rounded again.
"""

from __future__ import annotations

import hashlib
import json
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from core.conditions import Predicate, activity_getter, compile_condition, contact_getter
from core.model import Activity, Contact, Lifecycle, utc
from core.rules import (
    AllOf,
    AnyOf,
    EngagementRule,
    FitRule,
    InactivityRule,
    Leaf,
    LifecycleConfig,
    NotOf,
    Quadrant,
    ScoringConfig,
    Step,
    Transition,
)

__all__ = ["Contribution", "Engine", "Quadrant", "ScoreCard", "StatusChange"]

#: bump when the meaning of a rule changes, so every stored score is recomputed
_SEMANTICS = "1"


@dataclass(frozen=True, slots=True)
class Contribution:
    """What one rule added to one contact's score (negative points take away)."""

    rule_id: str
    axis: str
    points: float
    occurrences: int
    detail: str


@dataclass(frozen=True, slots=True)
class ScoreCard:
    """One contact's score at `as_of`, with the contribution of every rule that fired, in rule order."""

    contact_id: str
    as_of: datetime
    total: float
    axes: Mapping[str, float]
    band: str
    grade: str | None
    quadrant: Quadrant
    contributions: tuple[Contribution, ...]
    valid_until: datetime | None

    def reasons(self, n: int = 3) -> list[str]:
        """The `n` largest contributions as short text, e.g. ``"+10 visited pricing page x2"``."""
        ranked = sorted((c for c in self.contributions if c.points), key=lambda c: -abs(c.points))
        return [_reason(c) for c in ranked[:n]]


@dataclass(frozen=True, slots=True)
class StatusChange:
    """A lifecycle move the engine asks for: from the contact's current stage (None if unset or unmapped)."""

    frm: Lifecycle | None
    to: Lifecycle
    crm_value: str


def _reason(contribution: Contribution) -> str:
    times = f" x{contribution.occurrences}" if contribution.occurrences > 1 else ""
    return f"{contribution.points:+g} {contribution.detail}{times}"


class Engine:
    """A tenant's scoring rules, compiled. Build one per rule set and reuse it for every contact."""

    def __init__(self, config: ScoringConfig) -> None:
        self.config = config
        self.fingerprint = _fingerprint(config)
        ids = config.rule_ids()
        self._rules = [_compile(rule, ids[i], config) for i, rule in enumerate(config.rules)]
        self._fit = [(i, rule) for i, rule in enumerate(self._rules) if isinstance(rule, _Fit)]
        self._engagement = [(i, rule) for i, rule in enumerate(self._rules) if isinstance(rule, _Engagement)]
        self._inactivity = [(i, rule) for i, rule in enumerate(self._rules) if isinstance(rule, _Inactivity)]
        self._by_kind: dict[str, list[tuple[int, _Engagement]]] = {}
        self._by_vendor: dict[str, list[tuple[int, _Engagement]]] = {}
        for index, rule in self._engagement:
            for kind in rule.kinds:
                self._by_kind.setdefault(kind, []).append((index, rule))
            for vendor_type in rule.vendor_types:
                self._by_vendor.setdefault(vendor_type, []).append((index, rule))
        self._axes = {name: (axis.weight, axis.min, axis.max) for name, axis in config.axes.items()}
        self._bands = _Ladder(config.bands)
        self._grades = _Ladder(config.grades) if config.grades else None
        self._quadrant = (config.quadrant.fit, config.quadrant.engagement)
        self._lifecycle = _Lifecycle(config.lifecycle, self._bands) if config.lifecycle else None

    @property
    def band_names(self) -> list[str]:
        """Band names from lowest to highest."""
        return list(self._bands.names)

    def score(self, contact: Contact, activities: Sequence[Activity], as_of: datetime) -> ScoreCard:
        """Score `contact` at `as_of` from its `activities` (any order; those after `as_of` do not count yet)."""
        as_of = utc(as_of)
        fired: list[tuple[int, Contribution]] = []
        sums = dict.fromkeys(self._axes, 0.0)
        valid_until: datetime | None = None
        for index, rule in self._fit:
            if rule.test(contact):
                fired.append((index, Contribution(rule.id, rule.axis, rule.points, 1, rule.detail)))
                sums[rule.axis] += rule.points
        timed = [(i, self._rules[i], times) for i, times in self._match(activities).items()]
        timed += [(i, rule, activities) for i, rule in self._inactivity]
        for index, rule, inputs in timed:
            points, occurrences, changes_at = rule.apply(inputs, as_of)
            if occurrences:
                fired.append((index, Contribution(rule.id, rule.axis, points, occurrences, rule.detail)))
                sums[rule.axis] += points
            if changes_at is not None and (valid_until is None or changes_at < valid_until):
                valid_until = changes_at
        fired.sort(key=_first)
        axes = {name: _bounded(sums[name], low, high) for name, (_, low, high) in self._axes.items()}
        total = round(sum(axes[name] * weight for name, (weight, _, _) in self._axes.items()), 2)
        return ScoreCard(
            contact.id, as_of, total, axes, self._bands.place(total),
            self._grades.place(axes["fit"]) if self._grades else None,
            self._place_quadrant(axes["fit"], axes["engagement"]), tuple(c for _, c in fired), valid_until,
        )

    def decide_status(self, contact: Contact, card: ScoreCard, last_set: Lifecycle | None) -> StatusChange | None:
        """The lifecycle move this score calls for, or None.

        Moves only forward, unless the tenant allows demotion and the CRM still holds the status leadpulse set
        last (`last_set`): a status a person set in the CRM is never replaced by a lower one. A CRM value the
        tenant's map and status order cannot rank is left alone.
        """
        return self._lifecycle.decide(contact.status, card, last_set) if self._lifecycle else None

    def _match(self, activities: Sequence[Activity]) -> dict[int, list[datetime]]:
        matched: dict[int, list[datetime]] = {}
        by_kind, by_vendor = self._by_kind, self._by_vendor
        for activity in activities:
            candidates = by_kind.get(activity.kind, ())
            if by_vendor and activity.vendor_type in by_vendor:
                extra = [(i, r) for i, r in by_vendor[activity.vendor_type] if activity.kind not in r.kinds]
                candidates = [*candidates, *extra]
            for index, rule in candidates:
                if rule.where is None or rule.where(activity):
                    matched.setdefault(index, []).append(activity.occurred_at)
        return matched

    def _place_quadrant(self, fit: float, engagement: float) -> Quadrant:
        fits, interested = fit >= self._quadrant[0], engagement >= self._quadrant[1]
        if fits:
            return Quadrant.FOLLOW_UP_NOW if interested else Quadrant.NURTURE
        return Quadrant.QUALIFY if interested else Quadrant.LEAVE


def _first(pair: tuple[int, Any]) -> int:
    return pair[0]


def _bounded(value: float, low: float | None, high: float | None) -> float:
    if low is not None and value < low:
        value = low
    if high is not None and value > high:
        value = high
    return round(value, 2)


def _fingerprint(config: ScoringConfig) -> str:
    document = {"semantics": _SEMANTICS, "ids": config.rule_ids(), "config": config.model_dump(mode="json", by_alias=True)}
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()[:16]


# ---------------------------------------------------------------- compiled rules

Applied = tuple[float, int, "datetime | None"]


class _Fit:
    __slots__ = ("id", "axis", "points", "detail", "test")

    def __init__(self, rule: FitRule, rule_id: str, axis: str) -> None:
        self.id, self.axis, self.points = rule_id, axis, rule.points
        self.detail = rule.label or describe(rule.when)
        self.test: Predicate = compile_condition(rule.when, contact_getter)


class _Engagement:
    __slots__ = ("id", "axis", "points", "detail", "kinds", "vendor_types", "where", "horizon", "half_life",
                 "max_points", "max_occurrences", "recheck")

    def __init__(self, rule: EngagementRule, rule_id: str, axis: str, recheck: timedelta) -> None:
        self.id, self.axis, self.points, self.recheck = rule_id, axis, rule.points, recheck
        self.kinds = frozenset(rule.kinds())
        self.vendor_types = frozenset(rule.vendor_types())
        self.detail = rule.label or " or ".join([*rule.kinds(), *rule.vendor_types()])
        self.where = compile_condition(rule.where, activity_getter) if rule.where is not None else None
        horizon = rule.horizon_days()
        self.horizon = timedelta(days=horizon) if horizon is not None else None
        self.half_life = rule.half_life_days * 86400.0 if rule.half_life_days else None
        self.max_points, self.max_occurrences = rule.max_points, rule.max_occurrences

    def apply(self, times: list[datetime], as_of: datetime) -> Applied:
        counted, changes_at = self._in_window(times, as_of)
        if not counted:
            return 0.0, 0, changes_at
        if self.max_occurrences is not None and len(counted) > self.max_occurrences:
            counted = sorted(counted, reverse=True)[: self.max_occurrences]
        if self.half_life is None:
            points = self.points * len(counted)
        else:
            points = self.points * sum(0.5 ** ((as_of - t).total_seconds() / self.half_life) for t in counted)
        if self.max_points is not None and abs(points) > self.max_points:
            points = self.max_points if points > 0 else -self.max_points
        points = round(points, 2)
        if self.half_life is not None and points:
            changes_at = _earliest(changes_at, as_of + self.recheck)
        return points, len(counted), changes_at

    def _in_window(self, times: list[datetime], as_of: datetime) -> tuple[list[datetime], datetime | None]:
        """The occurrences that count at `as_of`, and the next moment one starts or stops counting."""
        counted: list[datetime] = []
        changes_at: datetime | None = None
        horizon = self.horizon
        for moment in times:
            if moment > as_of:
                changes_at = _earliest(changes_at, moment)
                continue
            if horizon is not None:
                ends = moment + horizon
                if ends <= as_of:
                    continue
                changes_at = _earliest(changes_at, ends)
            counted.append(moment)
        return counted, changes_at


class _Inactivity:
    __slots__ = ("id", "axis", "points", "detail", "kinds", "after", "count_never_active")

    def __init__(self, rule: InactivityRule, rule_id: str, axis: str) -> None:
        self.id, self.axis, self.points = rule_id, axis, rule.points
        self.kinds = frozenset(rule.kinds()) or None
        self.after = timedelta(days=rule.inactive_days)
        self.count_never_active = rule.count_never_active
        what = " or ".join(rule.kinds()) or "activity"
        self.detail = rule.label or f"no {what} for {rule.inactive_days:g} days"

    def apply(self, activities: Sequence[Activity], as_of: datetime) -> Applied:
        last, upcoming = self._last_and_next(activities, as_of)
        if last is None:
            applies = self.count_never_active
        else:
            applies = as_of - last >= self.after
        changes_at = upcoming if applies else _earliest(upcoming, last + self.after if last else None)
        return (self.points, 1, changes_at) if applies else (0.0, 0, changes_at)

    def _last_and_next(self, activities: Sequence[Activity], as_of: datetime) -> tuple[datetime | None, datetime | None]:
        last: datetime | None = None
        upcoming: datetime | None = None
        kinds = self.kinds
        for activity in activities:
            if kinds is not None and activity.kind not in kinds:
                continue
            moment = activity.occurred_at
            if moment > as_of:
                upcoming = _earliest(upcoming, moment)
            elif last is None or moment > last:
                last = moment
        return last, upcoming


def _earliest(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None:
        return b
    if b is None:
        return a
    return a if a <= b else b


def _compile(rule: Any, rule_id: str, config: ScoringConfig) -> _Fit | _Engagement | _Inactivity:
    axis = config.rule_axis(rule)
    if isinstance(rule, FitRule):
        return _Fit(rule, rule_id, axis)
    if isinstance(rule, EngagementRule):
        return _Engagement(rule, rule_id, axis, config.decay_recheck)
    return _Inactivity(rule, rule_id, axis)


def describe(condition: Any) -> str:
    """A condition as short text for reasons: ``title contains 'student'``."""
    if isinstance(condition, AllOf | AnyOf):
        parts = condition.all if isinstance(condition, AllOf) else condition.any
        text = (" and " if isinstance(condition, AllOf) else " or ").join(describe(part) for part in parts)
    elif isinstance(condition, NotOf):
        text = f"not ({describe(condition.not_)})"
    else:
        text = _describe_leaf(condition)
    return text if len(text) <= 80 else text[:77] + "..."


def _describe_leaf(leaf: Leaf) -> str:
    op = leaf.operator()
    if op == "range":
        bounds = leaf.range
        upper = f"<{bounds.below:g}" if bounds.below is not None else (f"<={bounds.max:g}" if bounds.max is not None else "")
        lower = f">={bounds.min:g}" if bounds.min is not None else ""
        return f"{leaf.field} {' '.join(filter(None, [lower, upper]))}"
    words = {"equals": "is", "in": "in", "contains": "contains", "regex": "matches"}
    if op in ("exists", "missing"):
        return f"{leaf.field} {'present' if op == 'exists' else 'missing'}"
    value = {"equals": leaf.equals, "in": leaf.in_, "contains": leaf.contains, "regex": leaf.regex}[op]
    shown = ", ".join(map(str, value)) if isinstance(value, tuple) else str(value)
    return f"{leaf.field} {words[op]} {shown}"


# ---------------------------------------------------------------- bands, grades, lifecycle


class _Ladder:
    """Steps with inclusive lower bounds (validated at load: sorted, no gap, no overlap)."""

    def __init__(self, steps: Sequence[Step]) -> None:
        self.names = tuple(step.name for step in steps)
        self._mins = [float("-inf"), *(step.min for step in steps[1:])]

    def place(self, value: float) -> str:
        return self.names[bisect_right(self._mins, value) - 1]

    def rank(self, name: str) -> int:
        return self.names.index(name)


class _Lifecycle:
    def __init__(self, config: LifecycleConfig, bands: _Ladder) -> None:
        self.config, self.bands = config, bands
        self._ranks: dict[str, tuple[float, Lifecycle | None]] = {
            value: (float(stage.rank), stage) for stage, value in config.values.items()
        }
        mapped_positions: list[tuple[int, float]] = []
        order = config.status_order or ()
        for value, (rank, _) in self._ranks.items():
            if value in order:
                mapped_positions.append((order.index(value), rank))
        for position, value in enumerate(order):
            if value not in self._ranks:
                below = [rank for at, rank in mapped_positions if at < position]
                # between two mapped stages: above the lower one, below the next
                self._ranks[value] = ((max(below) if below else -1.0) + 0.5, None)

    def decide(self, status: str | None, card: ScoreCard, last_set: Lifecycle | None) -> StatusChange | None:
        target = self._target(card)
        if target is None:
            return None
        if not status:
            return StatusChange(None, target, self.config.values[target])
        if status not in self._ranks:
            return None
        rank, current = self._ranks[status]
        if target.rank == rank:
            return None
        if target.rank < rank and not (self.config.allow_demotion and current is not None and current == last_set):
            return None
        return StatusChange(current, target, self.config.values[target])

    def _target(self, card: ScoreCard) -> Lifecycle | None:
        reached = [t.to for t in self.config.transitions if self._holds(t, card)]
        return max(reached, key=lambda stage: stage.rank) if reached else None

    def _holds(self, transition: Transition, card: ScoreCard) -> bool:
        if transition.min_total is not None and card.total < transition.min_total:
            return False
        if transition.min_band is not None and self.bands.rank(card.band) < self.bands.rank(transition.min_band):
            return False
        if transition.bands is not None and card.band not in transition.bands:
            return False
        if transition.grades is not None and card.grade not in transition.grades:
            return False
        if transition.quadrants is not None and card.quadrant not in transition.quadrants:
            return False
        return all(card.axes[axis] >= least for axis, least in (transition.min_axis or {}).items())
