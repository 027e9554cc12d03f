"""The scoring engine: a tenant's rules, compiled once, applied to one contact and its activities at a moment.

A score is a pure function of (rules, contact, activities, as_of): nothing reads the clock or the store. Every
rule that fires leaves a `Contribution`, so each score can be explained; `ScoreCard.valid_until` says when time
alone could next change the score, so the pipeline only rescores contacts whose inputs changed or whose card
expired.

Rounding: each contribution is rounded to 2 decimals, half up (0.625 is 0.63, as the decimal text reads), an axis
is the sum of its rounded contributions (then its floor and cap, if the tenant set any), and the total is the
weighted sum of the axes, rounded again: what is shown is what was summed and stored.
"""

from __future__ import annotations

import hashlib
import json
import re
from bisect import bisect_right
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any

import orjson

from leadpulse.core.engine.conditions import (
    Predicate,
    activity_row_getter,
    attribute_key,
    compile_condition,
    contact_field_key,
    contact_getter,
    crossings,
    is_timed,
    keyed_test,
)
from leadpulse.core.engine.rules import (
    AllOf,
    AnyOf,
    Counting,
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
    leaves,
)
from leadpulse.core.model import Activity, ActivityKind, Contact, Lifecycle, utc

__all__ = ["Contribution", "Engine", "Quadrant", "ScoreCard", "StatusChange"]

#: bump when the meaning of a rule changes, so every stored score is recomputed
_SEMANTICS = "2"


@dataclass(frozen=True, slots=True)
class Contribution:
    """What one rule added to one contact's score (negative points take away).

    For an engagement rule, what bent its count or its points: `matched`, the occurrences (or days, or sessions)
    that matched when fewer counted (a cap on occurrences, a threshold, ``once``); `cap`, the rule's
    ``max_points`` when it bound; `full`, `age_days` and `half_life_days` when its points decayed: what they were
    worth undecayed, how old its newest counted occurrence is, and the half-life.
    """

    rule_id: str
    axis: str
    points: float
    occurrences: int
    detail: str
    matched: int | None = None
    cap: float | None = None
    full: float | None = None
    age_days: float | None = None
    half_life_days: float | None = None

    def text(self) -> str:
        """The contribution as a reason reads it: ``+5 clicked a link (5 of 7 counted, capped at 5)``, ``+0.6 of 5,
        form filled 135 days ago, half-life 45 days``."""
        return _reason(self)


@dataclass(frozen=True, slots=True)
class ScoreCard:
    """One contact's score at `as_of`, with the contribution of every rule that fired, in rule order."""

    contact_id: str
    as_of: datetime
    total: float
    axes: Mapping[str, float]
    band: str
    grade: str | None
    #: None for a tenant scoring on a single axis
    quadrant: Quadrant | None
    contributions: tuple[Contribution, ...]
    valid_until: datetime | None
    #: the lifecycle transitions (by their place in the tenant's list) whose conditions on the contact's fields
    #: (``when``) and on an event (``after``) hold at `as_of`
    events: frozenset[int] = frozenset()

    def reasons(self, n: int = 3) -> list[str]:
        """The `n` largest contributions as short text, e.g. ``"+10 visited pricing page x2"``."""
        # reverse keeps equal weights in rule order, as a stable sort does; a zero ranks last, so it can only be
        # among the first `n` when fewer than `n` count
        ranked = sorted(self.contributions, key=_weight, reverse=True)
        return [_reason(c) for c in ranked[:n] if c.points]


@dataclass(frozen=True, slots=True)
class StatusChange:
    """A lifecycle move the engine asks for: from the contact's current stage (None if unset or unmapped)."""

    frm: Lifecycle | None
    to: Lifecycle
    crm_value: str


def _weight(contribution: Contribution) -> float:
    return abs(contribution.points)


def _reason(contribution: Contribution) -> str:
    # Only as the engine makes them: equal points or counts of other types (2 and 2.0, 1.5 and Decimal("1.50"))
    # read otherwise.
    plain = contribution.points.__class__ is float and contribution.occurrences.__class__ is int
    text = _REASONS.get(contribution) if plain else None
    if text is None:
        text = _reason_text(contribution)
        if plain and len(_REASONS) < _REASONS_LIMIT:
            _REASONS[contribution] = text
    return text


def _reason_text(c: Contribution) -> str:
    points = shown_points(c.points)
    if c.full is not None and c.age_days is not None:
        times = f" {c.occurrences} times, the last" if c.occurrences > 1 else ""
        text = (f"{points} of {shown_points(c.full, sign=False)}, {c.detail}{times} {_days(round(c.age_days))} ago, "
                f"half-life {_days(c.half_life_days or 0)}")
    else:
        text = f"{points} {c.detail}"
    notes = bent_notes(c.occurrences, c.matched, c.cap)
    if c.occurrences > 1 and c.full is None and not (c.matched is not None and c.matched != c.occurrences):
        notes.insert(0, f"{c.occurrences} times")
    return f"{text} ({', '.join(notes)})" if notes else text


def bent_notes(occurrences: int, matched: int | None, cap: float | None) -> list[str]:
    """What bent a row's count or points, as words: occurrences a cap or threshold left out, and a cap on points."""
    notes = []
    if matched is not None and matched != occurrences:
        notes.append(f"{occurrences} of {matched} counted")
    if cap is not None:
        notes.append(f"capped at {shown_points(cap, sign=False)}")
    return notes


def shown_points(points: float, *, sign: bool = True) -> str:
    """Points as shown to people: at most 2 decimals, half up (0.625 shows as 0.63), no trailing zeros."""
    return format(round_half_up(points), "+g" if sign else "g")


def round_half_up(value: float) -> float:
    """`value` to 2 decimals, a tie in its decimal text rounding away from zero (round() rounds 0.625 to 0.62, the
    even neighbour); as fast as round() when there is no tie."""
    rounded = round(value, 2)
    if rounded == value:  # no more than 2 decimals already: most sums of points
        return rounded
    text = repr(value)
    point = text.find(".")
    if point >= 0 and len(text) - point == 4 and text[-1] == "5" and "e" not in text:
        rounded = round(value + (0.001 if value > 0 else -0.001), 2)
    return rounded


#: Reasons as text, remembered per contribution: writing back reasons for every card a rescore changes meets the
#: same few contributions over and over.
_REASONS: dict[Contribution, str] = {}
_REASONS_LIMIT = 100_000


class Engine:
    """A tenant's scoring rules, compiled. Build one per rule set and reuse it for every contact."""

    def __init__(self, config: ScoringConfig) -> None:
        self.config = config
        self.fingerprint = _fingerprint(config)
        ids = config.rule_ids()
        self._rules = [_compile(rule, i, ids[i], config) for i, rule in enumerate(config.rules)]
        # In rule order (points add up in it): (index, field key, test of its value, rule) for a rule testing one of
        # the contact's fields, read in the scoring loop; (index, None, test of the contact, rule) for any other.
        self._fit = [(i, *(rule.keyed or (None, rule.test)), rule) for i, rule in enumerate(self._rules)
                     if isinstance(rule, _Fit) and not rule.timed]
        #: fit rules reading a date against the moment scored (``age``, ``ahead``)
        self._timed_fit = [(i, rule) for i, rule in enumerate(self._rules) if isinstance(rule, _Fit) and rule.timed]
        self._engagement = [(i, rule) for i, rule in enumerate(self._rules) if isinstance(rule, _Engagement)]
        self._engagement_at = dict(self._engagement)
        self._inactivity = [(i, rule) for i, rule in enumerate(self._rules) if isinstance(rule, _Inactivity)]
        # what the activity rows are matched against: each engagement rule, and each rule's follow-up under the
        # rule's index as a negative number (see `_follower_index`)
        transitions = config.lifecycle.transitions if config.lifecycle else ()
        #: the transitions with conditions on fields or events, evaluated with every score (see `ScoreCard.events`)
        self._events = [(t, _Event(transition, _event_index(t, len(self._rules))))
                        for t, transition in enumerate(transitions) if transition.when or transition.after]
        matchers: list[tuple[int, _Matcher]] = [*self._engagement, *(
            (_follower_index(i), rule.follower) for i, rule in self._engagement if rule.follower is not None), *(
            (event.index, event.after) for _, event in self._events if event.after is not None)]
        self._by_vendor: dict[str, list[tuple[int, _Matcher]]] = {}
        for index, matcher in matchers:
            for vendor_type in matcher.vendor_types:
                self._by_vendor.setdefault(vendor_type, []).append((index, matcher))
        self._plans, self._any_kind = _plans(matchers, self._inactivity)
        self._last_moment: _Moment | None = None
        self._no_points = dict.fromkeys(config.axes, 0.0)
        self._weights = [(name, axis.weight) for name, axis in config.axes.items()]
        #: the axes with a floor or cap, if any has one (each axis is rounded either way)
        bounded = any(axis.min is not None or axis.max is not None for axis in config.axes.values())
        self._bounds = [(name, axis.min, axis.max) for name, axis in config.axes.items()] if bounded else []
        self._bands = _Ladder(config.bands)
        self._grades = _Ladder(config.grades) if config.grades else None
        self._quadrant = (config.quadrant.fit, config.quadrant.engagement) if config.quadrant else None
        self._grade_axis = config.grade_axis
        self._lifecycle = _Lifecycle(config.lifecycle, self._bands) if config.lifecycle else None

    @property
    def band_names(self) -> list[str]:
        """Band names from lowest to highest."""
        return list(self._bands.names)

    @property
    def details(self) -> tuple[str, ...]:
        """Each rule's `Contribution.detail`, in rule order: its label, or its conditions in words."""
        return tuple(rule.detail for rule in self._rules)

    def score(self, contact: Contact, activities: Sequence[Activity], as_of: datetime) -> ScoreCard:
        """Score `contact` at `as_of` from its `activities` (any order; those after `as_of` do not count yet)."""
        rows = [(a.contact_id, a.id, a.kind, a.occurred_at, a.vendor_type, a.attributes) for a in activities]
        return self.score_rows(contact, rows, as_of)

    def score_rows(self, contact: Contact, rows: Sequence[ActivityRow], as_of: datetime) -> ScoreCard:
        """`score` from activity rows as the store holds them, so a rescore builds no `Activity` per row."""
        moment = self._last_moment
        if moment is None or moment.given is not as_of:
            moment = self._moment(as_of)
        as_of = moment.as_of
        fired: list[tuple[int, Contribution]] = []
        sums = self._no_points.copy()
        fields = contact.fields
        for index, key, test, rule in self._fit:
            if test(fields.get(key)) if key is not None else test(contact):
                fired.append((index, rule.contribution))
                sums[rule.axis] += rule.points
        valid_until: datetime | None = None
        timed = False
        for index, rule in self._timed_fit:
            if rule.test((contact, as_of)):
                fired.append((index, rule.contribution))
                sums[rule.axis] += rule.points
                timed = True
            valid_until = _earliest(valid_until, rule.next_change(contact, as_of))
        matched, last, upcoming = self._match(rows, as_of)
        for index, times in matched.items():
            if index < 0:  # a follow-up's matches, read by its rule
                continue
            rule = self._engagement_at[index]
            contribution, changes_at = rule.apply(
                times, moment, matched.get(_follower_index(index), _NONE) if rule.follower else _NONE)
            if contribution is not None:
                fired.append((index, contribution))
                sums[rule.axis] += contribution.points
                timed = True
            if changes_at is not None and (valid_until is None or changes_at < valid_until):
                valid_until = changes_at
        for n, (index, rule) in enumerate(self._inactivity):
            points, occurrences, changes_at = rule.apply(last[n], upcoming[n], as_of)
            if occurrences:
                fired.append((index, rule.contribution))
                sums[rule.axis] += points
                timed = True
            if changes_at is not None and (valid_until is None or changes_at < valid_until):
                valid_until = changes_at
        if timed:
            fired.sort(key=_first)
        events: frozenset[int] = frozenset()
        if self._events:
            held = []
            for t, event in self._events:
                holds, changes_at = event.holds(contact, matched, as_of)
                if holds:
                    held.append(t)
                valid_until = _earliest(valid_until, changes_at)
            events = frozenset(held)
        axes = {name: _bounded(sums[name], low, high) for name, low, high in self._bounds} if self._bounds else {
            name: round_half_up(points) for name, points in sums.items()}
        total = 0.0
        for name, weight in self._weights:
            total += axes[name] * weight
        total = round_half_up(total)
        quadrant: Quadrant | None = None
        if self._quadrant is not None:
            fit, engagement = axes["fit"], axes["engagement"]
            if fit >= self._quadrant[0]:
                quadrant = Quadrant.FOLLOW_UP_NOW if engagement >= self._quadrant[1] else Quadrant.NURTURE
            else:
                quadrant = Quadrant.QUALIFY if engagement >= self._quadrant[1] else Quadrant.LEAVE
        graded = self._grades.place(axes[self._grade_axis]) if self._grades else None
        return ScoreCard(
            contact.id, as_of, total, axes, self._bands.place(total), graded,
            quadrant, tuple([contribution for _, contribution in fired]), valid_until, events,
        )

    def matched_values(self, contact: Contact, rows: Sequence[ActivityRow], as_of: datetime) -> dict[str, str]:
        """What each rule matched on for `contact` at `as_of`, by rule id, for an explanation: a fit rule's field
        value, an engagement rule's newest matching activity's value (the attribute its ``where`` reads: the URL,
        the title), through the same compiled conditions as the score."""
        found: dict[str, str] = {}
        for rule in self._rules:
            if isinstance(rule, _Fit):
                values = [contact_getter(leaf.field)(contact) for leaf in leaves(rule.when)]
                shown = [value for value in values if value not in (None, "")]
                if shown:
                    found[rule.id] = ", ".join(map(str, shown))
        ordered = sorted(rows, key=lambda row: str(row[3]), reverse=True)
        for _, rule in self._engagement:
            for row in ordered:
                at = row[3] if isinstance(row[3], datetime) else _fromiso(row[3])
                if at > as_of:
                    continue
                hit, value = rule.matches(row)
                if hit:
                    if value not in (None, ""):
                        found[rule.id] = str(value)
                    break
        return found

    def lifecycle_standing(self, card: ScoreCard) -> str | None:
        """Where `card` stands against the lifecycle transitions, in words: the one that holds, the next one up and
        what it lacks (None without a lifecycle)."""
        return self._lifecycle.standing(card) if self._lifecycle else None

    def decide_status(self, contact: Contact, card: ScoreCard, last_set: Lifecycle | None) -> StatusChange | None:
        """The lifecycle move this score calls for, or None.

        Moves only forward, past both the CRM's status and the one leadpulse set last (`last_set`), unless the
        tenant allows demotion and the CRM still holds `last_set`: a status a person set in the CRM is never
        replaced by a lower one, and a move leadpulse made is not made again. A CRM value the tenant's map and
        status order cannot rank is left alone.
        """
        return self._lifecycle.decide(contact.status, card, last_set) if self._lifecycle else None

    def _moment(self, as_of: datetime) -> _Moment:
        # A run scores every contact at one as-of: what the rules derive from it is worked out once.
        moment = self._last_moment
        if moment is None or moment.as_of != as_of or moment.as_of.tzinfo is not utc(as_of).tzinfo:
            moment = _Moment(utc(as_of), self.config.decay_recheck, self._engagement)
        moment.given = as_of  # the next call with this very object needs no comparison
        self._last_moment = moment
        return moment

    def _match(
        self, rows: Sequence[ActivityRow], as_of: datetime
    ) -> tuple[dict[int, list[datetime]], list[datetime | None], list[datetime | None]]:
        """Each engagement rule's matching moments (in row order), and each inactivity rule's last and next one."""
        matched: dict[int, list[datetime]] = {}
        last: list[datetime | None] = [None] * len(self._inactivity)
        upcoming: list[datetime | None] = [None] * len(self._inactivity)
        plans, any_kind, by_vendor = self._plans, self._any_kind, self._by_vendor
        for row in rows:
            plan = plans.get(row[2], any_kind)
            if by_vendor and row[4] in by_vendor:
                plan = _with_vendor_rules(plan, row, by_vendor[row[4]])
            if plan is None:
                continue
            engagement, inactivity = plan
            at: Any = row[3]  # a datetime, or the store's text of one
            if at.__class__ is str:
                at = _fromiso(at)
            attributes = None
            for index, key, test, session in engagement:
                if test is not None:
                    if attributes is None:
                        attributes = _attributes(row[5])
                    if not (test(attributes.get(key)) if key is not None else test((row, attributes))):
                        continue
                if session:
                    if attributes is None:
                        attributes = _attributes(row[5])
                    hit: Any = (at, attributes.get(SESSION))
                else:
                    hit = at
                found = matched.get(index)
                if found is None:
                    matched[index] = [hit]
                else:
                    found.append(hit)
            if inactivity:
                if at > as_of:
                    for n in inactivity:
                        seen = upcoming[n]
                        if seen is None or at < seen:
                            upcoming[n] = at
                else:
                    for n in inactivity:
                        seen = last[n]
                        if seen is None or at > seen:
                            last[n] = at
        return matched, last, upcoming


#: An activity as the store holds it: (contact_id, id, kind, occurred_at, vendor_type, attributes), where
#: `occurred_at` is a datetime or the store's ISO text and `attributes` a mapping or JSON text.
ActivityRow = tuple[str, str, str, "datetime | str", "str | None", "Mapping[str, Any] | str"]

#: Per activity kind: the engagement rules (and follow-ups) it may count for and the inactivity rules it keeps
#: awake (positions in the engine's inactivity list). An engagement rule is (index, attribute key, test, session):
#: with a key, the test is of that attribute's value; without, of ``(row, attributes)``; no test, no ``where``;
#: `session` keeps the activity's session with its time, for a rule counting sessions.
_Plan = tuple[list[tuple[int, "str | None", "Predicate | None", bool]], list[int]]
#: the activity attribute naming the session (a visit) an activity belongs to
SESSION = "session_id"
_NONE: tuple[Any, ...] = ()


def _follower_index(index: int) -> int:
    """Where the matches of rule `index`'s follow-up are kept: below zero, apart from every rule's."""
    return -1 - index


def _event_index(transition: int, rules: int) -> int:
    """Where the matches of lifecycle transition `transition`'s event are kept: below every follow-up's."""
    return -1 - rules - transition

_fromiso = datetime.fromisoformat


def _plans(
    engagement: Sequence[tuple[int, _Matcher]], inactivity: list[tuple[int, _Inactivity]]
) -> tuple[dict[str, _Plan | None], _Plan | None]:
    """Rules grouped by the activity kind that feeds them, so each activity row is looked at once; None for a kind
    that feeds none, and as the plan of a kind outside the vocabulary when no rule takes every kind."""
    everyone = [n for n, (_, rule) in enumerate(inactivity) if rule.kinds is None]
    plans: dict[str, _Plan | None] = {}
    for kind in ActivityKind:
        plan = (
            [rule.matcher(i) for i, rule in engagement if kind in rule.kinds],
            [n for n, (_, rule) in enumerate(inactivity) if rule.kinds is None or kind in rule.kinds],
        )
        plans[kind.value] = plan if plan[0] or plan[1] else None
    return plans, (([], everyone) if everyone else None)


def _with_vendor_rules(plan: _Plan | None, row: ActivityRow, rules: list[tuple[int, _Matcher]]) -> _Plan | None:
    """`plan` plus the engagement rules that name the row's vendor type and not already its kind."""
    extra = [rule.matcher(i) for i, rule in rules if row[2] not in rule.kinds]
    if not extra:
        return plan
    return ([*plan[0], *extra], plan[1]) if plan is not None else (extra, [])


def _attributes(value: Mapping[str, Any] | str) -> Mapping[str, Any]:
    if not isinstance(value, str):
        return value
    if value == "{}":
        return _NO_ATTRIBUTES
    parsed: Mapping[str, Any]
    try:
        parsed = orjson.loads(value)
    except orjson.JSONDecodeError:  # what orjson refuses and json accepts (NaN, lone surrogates)
        parsed = json.loads(value)
    return parsed


_NO_ATTRIBUTES: Mapping[str, Any] = MappingProxyType({})


def activity_attributes(value: Mapping[str, Any] | str) -> Mapping[str, Any]:
    """An activity row's attributes as rules read them: the mapping itself, or parsed from the store's JSON text."""
    return _attributes(value)


class _Moment:
    """What the rules derive from one as-of: when each windowed rule's occurrences stop counting."""

    __slots__ = ("as_of", "cutoffs", "given", "recheck_at")

    def __init__(self, as_of: datetime, recheck: timedelta, engagement: list[tuple[int, _Engagement]]) -> None:
        self.as_of = as_of
        #: the as-of object last asked for, which this moment is
        self.given: datetime | None = None
        self.recheck_at = as_of + recheck
        self.cutoffs: dict[int, datetime | None] = {}
        for index, rule in engagement:
            if rule.horizon is not None:
                try:
                    self.cutoffs[index] = as_of - rule.horizon
                except OverflowError:  # a horizon reaching before year 1: nothing has aged out
                    self.cutoffs[index] = None


def _first(pair: tuple[int, Any]) -> int:
    return pair[0]


def _bounded(value: float, low: float | None, high: float | None) -> float:
    if low is not None and value < low:
        value = low
    if high is not None and value > high:
        value = high
    return round_half_up(value)


def _fingerprint(config: ScoringConfig) -> str:
    document = {"semantics": _SEMANTICS, "ids": config.rule_ids(),
                "config": config.model_dump(mode="json", by_alias=True)}
    return fingerprint_of(document)


def fingerprint_of(document: Any) -> str:
    """A short digest of a JSON-able `document`, the same for equal documents whatever their key order."""
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()[:16]


# ---------------------------------------------------------------- compiled rules

Applied = tuple[float, int, "datetime | None"]


class _Fit:
    __slots__ = ("axis", "contribution", "detail", "id", "keyed", "points", "test", "timed", "when")

    def __init__(self, rule: FitRule, rule_id: str, axis: str) -> None:
        self.id, self.axis, self.points = rule_id, axis, rule.points
        named = rule.id.replace("-", " ").replace("_", " ") if rule.id else None  # an id the file gave, in words
        self.detail = rule.label or describe(rule.when, named)
        self.when = rule.when
        #: whether the rule reads a date against the moment scored: then `test` takes ``(contact, as_of)``
        self.timed = is_timed(rule.when)
        self.test: Predicate = compile_condition(rule.when, contact_getter, timed=self.timed)
        #: (field key, test of its value) when the rule tests one of the contact's fields
        self.keyed = keyed_test(rule.when, contact_field_key)
        self.contribution = Contribution(rule_id, axis, rule.points, 1, self.detail)

    def next_change(self, contact: Contact, as_of: datetime) -> datetime | None:
        """The first moment after `as_of` at which a date the rule reads crosses one of its bounds."""
        return _next_crossing(self.when, contact, as_of)


def _next_crossing(condition: Any, contact: Contact, as_of: datetime) -> datetime | None:
    """The first moment after `as_of` at which a date `condition` reads of `contact` crosses one of its bounds."""
    upcoming = [moment for leaf in leaves(condition) if leaf.timed
                for moment in crossings(leaf, contact_getter(leaf.field)(contact)) if moment > as_of]
    return min(upcoming) if upcoming else None


class _Matcher:
    """What an activity row is matched against: kinds or vendor types, and a ``where`` condition."""

    __slots__ = ("keyed", "kinds", "session", "vendor_types", "where")

    def __init__(self, kinds: Sequence[str], vendor_types: Sequence[str], where: Any, session: bool = False) -> None:
        self.kinds = frozenset(kinds)
        self.vendor_types = frozenset(vendor_types)
        self.where = compile_condition(where, activity_row_getter) if where is not None else None
        self.keyed = keyed_test(where, attribute_key) if where is not None else None
        self.session = session

    def matcher(self, index: int) -> tuple[int, str | None, Predicate | None, bool]:
        """This rule as a plan lists it (see `_Plan`)."""
        return (index, *self.keyed, self.session) if self.keyed else (index, None, self.where, self.session)

    def matches(self, row: ActivityRow) -> tuple[bool, Any]:
        """Whether one activity row matches, and the value it matched on (the attribute ``where`` reads, else
        its vendor type or kind)."""
        if row[2] not in self.kinds and row[4] not in self.vendor_types:
            return False, None
        attributes = _attributes(row[5])
        if self.keyed is not None:
            key, test = self.keyed
            return test(attributes.get(key)), attributes.get(key)
        if self.where is not None and not self.where((row, attributes)):
            return False, None
        return True, row[4] or row[2]


class _Engagement(_Matcher):
    __slots__ = (
        "axis",
        "count",
        "detail",
        "follow_within",
        "follower",
        "half_life",
        "horizon",
        "id",
        "index",
        "max_occurrences",
        "max_points",
        "min_occurrences",
        "once",
        "points",
    )

    def __init__(self, rule: EngagementRule, index: int, rule_id: str, axis: str) -> None:
        super().__init__(rule.kinds(), rule.vendor_types(), rule.where, rule.count is Counting.SESSIONS)
        self.index, self.id, self.axis, self.points = index, rule_id, axis, rule.points
        self.detail = rule.label or " or ".join([*rule.kinds(), *rule.vendor_types()])
        horizon = rule.horizon_days()
        self.horizon = timedelta(days=horizon) if horizon is not None else None
        self.half_life = rule.half_life_days * 86400.0 if rule.half_life_days else None
        self.max_points, self.max_occurrences = rule.max_points, rule.max_occurrences
        self.count, self.min_occurrences, self.once = rule.count, rule.min_occurrences, rule.once
        follow = rule.unless_followed_by
        self.follower = _Matcher(follow.kinds(), follow.vendor_types(), follow.where) if follow else None
        self.follow_within = timedelta(days=follow.within_days) if follow and follow.within_days else None

    def apply(self, found: list[Any], moment: _Moment, followers: Sequence[datetime] = _NONE
              ) -> tuple[Contribution | None, datetime | None]:
        """The rule's contribution from its matching moments (with their sessions when it counts sessions) and, for
        a rule with a follow-up, the follow-up's; and when time alone next changes it."""
        as_of = moment.as_of
        sessions = self.count is Counting.SESSIONS
        times: list[datetime] = [pair[0] for pair in found] if sessions else found
        if self.horizon is None and max(times) <= as_of:  # the common case: all count, for good
            counted: list[datetime] = times
            changes_at: datetime | None = None
        else:
            counted, changes_at = self._in_window(times, as_of, moment.cutoffs.get(self.index))
        if self.follower is not None and counted:
            counted, followed_at = self._not_followed(counted, followers, as_of)
            changes_at = _earliest(changes_at, followed_at)
        if self.count is not Counting.OCCURRENCES and counted:
            counted = _occasions(counted, found if sessions else None)
        if not counted:
            return None, changes_at
        matched = len(counted)
        if self.max_occurrences is not None and len(counted) > self.max_occurrences:
            counted = sorted(counted, reverse=True)[: self.max_occurrences]
        if self.min_occurrences is not None:
            if len(counted) < self.min_occurrences:
                return None, changes_at
            counted = sorted(counted)[self.min_occurrences - 1:]  # from the one that reached the threshold on
        if self.once:
            counted = [max(counted)]
        full = self.points * len(counted)
        if self.half_life is None:
            points = full
        else:
            half_life = self.half_life
            points = self.points * sum([0.5 ** ((as_of - t).total_seconds() / half_life) for t in counted])
        cap = None
        if self.max_points is not None and abs(points) > self.max_points:
            points, cap = (self.max_points if points > 0 else -self.max_points), self.max_points
        points = round_half_up(points)
        if self.half_life is not None and points:
            changes_at = _earliest(changes_at, moment.recheck_at)
        decayed = self.half_life is not None and cap is None and points != round_half_up(full)
        if not decayed and cap is None and matched == len(counted):  # the usual row: nothing bent it
            return Contribution(self.id, self.axis, points, matched, self.detail), changes_at
        return Contribution(
            self.id, self.axis, points, len(counted), self.detail,
            matched if matched != len(counted) else None, cap,
            round_half_up(full) if decayed else None,
            (as_of - max(counted)).total_seconds() / 86400 if decayed else None,
            self.half_life / 86400 if decayed and self.half_life else None,
        ), changes_at

    def _not_followed(self, counted: list[datetime], followers: Sequence[datetime], as_of: datetime
                      ) -> tuple[list[datetime], datetime | None]:
        """The occurrences no follow-up came after by `as_of` (within the follow-up's window, if it has one), and
        the first follow-up still to come, when time alone will bring it."""
        if not followers:
            return counted, None
        ordered = sorted(followers)
        kept: list[datetime] = []
        for moment in counted:
            at = bisect_right(ordered, moment)  # the first follow-up strictly after it
            if at < len(ordered) and ordered[at] <= as_of and (
                    self.follow_within is None or ordered[at] - moment <= self.follow_within):
                continue
            kept.append(moment)
        upcoming = [moment for moment in ordered if moment > as_of]
        return kept, upcoming[0] if upcoming else None

    def _in_window(
        self, times: list[datetime], as_of: datetime, cutoff: datetime | None
    ) -> tuple[list[datetime], datetime | None]:
        """The occurrences that count at `as_of`, and the next moment one starts or stops counting.

        `cutoff` is ``as_of - horizon``: an occurrence at or before it has aged out.
        """
        counted: list[datetime] = []
        changes_at: datetime | None = None
        horizon = self.horizon
        for moment in times:
            if moment > as_of:
                changes_at = _earliest(changes_at, moment)
                continue
            if horizon is not None:
                if cutoff is not None and moment <= cutoff:
                    continue
                changes_at = _earliest(changes_at, moment + horizon)
            counted.append(moment)
        return counted, changes_at


def _occasions(times: list[datetime], found: list[tuple[datetime, Any]] | None) -> list[datetime]:
    """`times` as distinct occasions, each at its latest time: a session's (`found` pairs every matching time with
    its session; those of `times` are the ones that count) or else a day's (UTC)."""
    left = Counter(times)
    pairs = [(at, None) for at in times] if found is None else [pair for pair in found if left[pair[0]] > 0]
    latest: dict[Any, datetime] = {}
    for at, session in pairs:
        if found is not None:
            if left[at] == 0:
                continue
            left[at] -= 1
        key = ("session", str(session)) if session not in (None, "") else ("day", at.date())
        if key not in latest or at > latest[key]:
            latest[key] = at
    return list(latest.values())


class _Event:
    """A lifecycle transition's conditions on the contact's fields (`when`) and on an activity (`after`)."""

    __slots__ = ("after", "index", "timed", "when", "when_test", "within")

    def __init__(self, transition: Transition, index: int) -> None:
        self.index = index
        self.when = transition.when
        self.timed = transition.when is not None and is_timed(transition.when)
        self.when_test = compile_condition(transition.when, contact_getter, timed=self.timed) \
            if transition.when is not None else None
        after = transition.after
        self.after = _Matcher(after.kinds(), after.vendor_types(), after.where) if after is not None else None
        self.within = timedelta(days=after.within_days) if after is not None and after.within_days else None

    def holds(self, contact: Contact, matched: Mapping[int, list[Any]], as_of: datetime
              ) -> tuple[bool, datetime | None]:
        """Whether both conditions hold at `as_of`, and the next moment time alone may change that."""
        changes_at: datetime | None = None
        holds = True
        if self.when_test is not None:
            holds = bool(self.when_test((contact, as_of)) if self.timed else self.when_test(contact))
            if self.timed:
                changes_at = _next_crossing(self.when, contact, as_of)
        if self.after is not None:
            times = matched.get(self.index, ())
            past = [moment for moment in times if moment <= as_of]
            within = self.within
            recent = [moment for moment in past if within is None or as_of - moment < within]
            holds = holds and bool(recent)
            changes_at = _earliest(changes_at, min((m for m in times if m > as_of), default=None))
            if within is not None and recent:
                changes_at = _earliest(changes_at, max(recent) + within)
        return holds, changes_at


class _Inactivity:
    __slots__ = ("after", "axis", "contribution", "count_never_active", "detail", "id", "kinds", "points")

    def __init__(self, rule: InactivityRule, rule_id: str, axis: str) -> None:
        self.id, self.axis, self.points = rule_id, axis, rule.points
        self.kinds = frozenset(rule.kinds()) or None
        self.after = timedelta(days=rule.inactive_days)
        self.count_never_active = rule.count_never_active
        what = " or ".join(rule.kinds()) or "activity"
        self.detail = rule.label or f"no {what} for {rule.inactive_days:g} days"
        self.contribution = Contribution(rule_id, axis, rule.points, 1, self.detail)

    def apply(self, last: datetime | None, upcoming: datetime | None, as_of: datetime) -> Applied:
        """Given the last matching activity at or before `as_of` and the first one after it."""
        applies = self.count_never_active if last is None else as_of - last >= self.after
        changes_at = upcoming if applies else _earliest(upcoming, last + self.after if last else None)
        return (self.points, 1, changes_at) if applies else (0.0, 0, changes_at)


def _earliest(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None:
        return b
    if b is None:
        return a
    return a if a <= b else b


def _compile(rule: Any, index: int, rule_id: str, config: ScoringConfig) -> _Fit | _Engagement | _Inactivity:
    axis = config.rule_axis(rule)
    if isinstance(rule, FitRule):
        return _Fit(rule, rule_id, axis)
    if isinstance(rule, EngagementRule):
        return _Engagement(rule, index, rule_id, axis)
    return _Inactivity(rule, rule_id, axis)


def describe(condition: Any, name: str | None = None) -> str:
    """A condition as short text a salesperson reads in a reason: ``title with vp, head of or chief``. A regular
    expression that is no plain list of words is told by `name` (the rule's id, in words) rather than shown."""
    if isinstance(condition, AllOf | AnyOf):
        parts = condition.all if isinstance(condition, AllOf) else condition.any
        text = (" and " if isinstance(condition, AllOf) else " or ").join(describe(part, name) for part in parts)
    elif isinstance(condition, NotOf):
        text = f"not ({describe(condition.not_, name)})"
    else:
        text = _describe_leaf(condition, name)
    return text if len(text) <= 80 else text[:77] + "..."


def _describe_leaf(leaf: Leaf, name: str | None = None) -> str:
    op = leaf.operator()
    bounds = leaf.range
    if bounds is not None:
        signs = {"min": ">=", "above": ">", "below": "<", "max": "<="}
        return f"{leaf.field} " + " ".join(f"{signs[name]}{_shown(bound)}" for name, bound in bounds.bounds().items())
    span = leaf.age if leaf.age is not None else leaf.ahead
    if span is not None:
        words = {"min": "at least", "above": "more than", "below": "less than", "max": "at most"}
        told = " and ".join(f"{words[name]} {_days(days)}" for name, days in span.bounds().items())
        return f"{leaf.field} {told} ago" if leaf.age is not None else f"{leaf.field} in {told}"
    if op in ("exists", "missing"):
        return f"{leaf.field} {'present' if op == 'exists' else 'missing'}"
    if leaf.regex is not None:
        found = _words_of(leaf.regex)
        if found:
            return f"{leaf.field} with {_one_of(found)}"
        return f"{leaf.field} fits {name}" if name else f"{leaf.field} matching the rule's pattern"
    if leaf.in_ is not None:
        return f"{leaf.field} is {_one_of([str(value) for value in leaf.in_])}"
    value = leaf.equals if op == "equals" else leaf.contains
    return f"{leaf.field} {'is' if op == 'equals' else 'contains'} {value}"


_WORDS = re.compile(r"^[\w .&'/+-]+$")


def _words_of(pattern: str) -> list[str]:
    """The words a regular expression looks for, when it is a plain alternation of them (``\\b(vp|head of)\\b``,
    ``^ceo$``); none for anything cleverer, which no salesperson should have to read."""
    plain = re.sub(r"\\b|\^|\$|\(\?i\)|\(\?:", "", pattern).strip("()")
    parts = [part.strip().replace("\\s+", " ").replace("\\s", " ").replace("\\", "") for part in plain.split("|")]
    return parts if parts and all(part and _WORDS.match(part) for part in parts) else []


def _one_of(values: Sequence[str]) -> str:
    if len(values) == 1:
        return values[0]
    return f"{', '.join(values[:-1])} or {values[-1]}"


def _shown(bound: float | datetime) -> str:
    if isinstance(bound, datetime):
        return bound.date().isoformat() if bound == bound.replace(hour=0, minute=0, second=0, microsecond=0) \
            else bound.isoformat()
    return f"{bound:g}"


def _days(days: float) -> str:
    return "1 day" if days == 1 else f"{days:g} days"


# ---------------------------------------------------------------- bands, grades, lifecycle


class _Ladder:
    """Steps with inclusive (`min`) or exclusive (`above`) lower bounds (validated at load: sorted, no gap, no
    overlap)."""

    def __init__(self, steps: Sequence[Step]) -> None:
        self.names = tuple(step.name for step in steps)
        # every step above the first has a lower bound (validated at load); a value v sorts as (v, 0.5), so it
        # reaches a step starting at v inclusively, (v, 0), and not one starting there exclusively, (v, 1)
        self._starts = [(float("-inf"), 0.0), *((step.lower or 0.0, 1.0 if step.above is not None else 0.0)
                                                 for step in steps[1:])]
        self._ranks = {name: rank for rank, name in enumerate(self.names)}

    def place(self, value: float) -> str:
        return self.names[bisect_right(self._starts, (value, 0.5)) - 1]

    def rank(self, name: str) -> int:
        return self._ranks[name]


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
        # Highest stage first, so the first transition that holds is the target; among equal ranks the first
        # listed wins (a stable sort), as max() over the transitions would keep.
        self._transitions = sorted((_Gate(t, n, bands) for n, t in enumerate(config.transitions)),
                                   key=_by_rank_descending)

    def decide(self, status: str | None, card: ScoreCard, last_set: Lifecycle | None) -> StatusChange | None:
        target = self._target(card)
        if target is None:
            return None
        if last_set is not None and target.rank <= last_set.rank and not self.config.allow_demotion:
            # Forward only, from where leadpulse itself last moved the contact, whatever the CRM shows now: the
            # write may not have landed yet (or is off), or a person set the contact back, which is theirs to do.
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

    def standing(self, card: ScoreCard) -> str:
        """Where the card stands against the transitions: the highest that holds, and the next one up with what it
        lacks."""
        band = self.bands.rank(card.band)
        holding = next((gate for gate in self._transitions if gate.holds(card, band)), None)
        above = [gate for gate in reversed(self._transitions) if holding is None or gate.rank > holding.rank]
        told = f"the transition to {holding.to.value} holds" if holding else "no transition holds"
        upcoming = next((gate for gate in above if not gate.holds(card, band)), None)
        if upcoming is not None:
            told += f"; next, {upcoming.to.value} needs {'; '.join(upcoming.lacks(card, band))}"
        return told

    def _target(self, card: ScoreCard) -> Lifecycle | None:
        band = self.bands.rank(card.band)
        for gate in self._transitions:
            if gate.holds(card, band):
                return gate.to
        return None


class _Gate:
    """A lifecycle transition compiled once, its lowest band as a rank."""

    __slots__ = ("band_names", "bands", "event", "grades", "min_axis", "min_band", "min_total", "quadrants", "rank",
                 "to", "transition")

    def __init__(self, transition: Transition, index: int, bands: _Ladder) -> None:
        self.to, self.rank, self.transition = transition.to, transition.to.rank, transition
        self.band_names = bands.names
        #: the transition's place in the tenant's list, when it has conditions on fields or an event: they hold
        #: when the card's `events` name it
        self.event = index if transition.when is not None or transition.after is not None else None
        self.min_total = transition.min_total
        self.min_band = bands.rank(transition.min_band) if transition.min_band is not None else None
        self.bands, self.grades, self.quadrants = transition.bands, transition.grades, transition.quadrants
        self.min_axis = tuple((transition.min_axis or {}).items())

    def holds(self, card: ScoreCard, band: int) -> bool:
        if self.event is not None and self.event not in card.events:
            return False
        if self.min_total is not None and card.total < self.min_total:
            return False
        if self.min_band is not None and band < self.min_band:
            return False
        if self.bands is not None and card.band not in self.bands:
            return False
        if self.grades is not None and card.grade not in self.grades:
            return False
        if self.quadrants is not None and card.quadrant not in self.quadrants:
            return False
        return all(card.axes[axis] >= least for axis, least in self.min_axis)

    def lacks(self, card: ScoreCard, band: int) -> list[str]:
        """What `card` lacks for this transition, each condition that fails as words."""
        missing = []
        if self.event is not None and self.event not in card.events:
            if self.transition.when is not None:
                missing.append(f"the contact's fields: {describe(self.transition.when)}")
            if self.transition.after is not None:
                after = self.transition.after
                what = " or ".join([*after.kinds(), *after.vendor_types()])
                window = f" within {_days(after.within_days)}" if after.within_days else ""
                missing.append(f"a {what}{window}")
        if self.min_total is not None and card.total < self.min_total:
            missing.append(f"a score of {self.min_total:g} (now {shown_points(card.total, sign=False)})")
        if self.min_band is not None and band < self.min_band:
            missing.append(f"band {self.band_names[self.min_band]} or above (now {card.band})")
        if self.bands is not None and card.band not in self.bands:
            missing.append(f"band {_one_of(list(self.bands))} (now {card.band})")
        if self.grades is not None and card.grade not in self.grades:
            missing.append(f"grade {_one_of(list(self.grades))} (now {card.grade or 'none'})")
        if self.quadrants is not None and card.quadrant not in self.quadrants:
            now = card.quadrant.value if card.quadrant else "none"
            missing.append(f"quadrant {_one_of([q.value for q in self.quadrants])} (now {now})")
        missing += [f"{axis} {least:g} (now {shown_points(card.axes[axis], sign=False)})"
                    for axis, least in self.min_axis if card.axes[axis] < least]
        return missing


def _by_rank_descending(gate: _Gate) -> int:
    return -gate.rank
