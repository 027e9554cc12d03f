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
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from leadpulse.core.engine.cards import (
    CardColumns,
    Contribution,
    ScoreCard,
    StatusChange,
    bent_notes,
    round_half_up,
    shown_points,
)
from leadpulse.core.engine.compiled import (
    NO_TIMES,
    SESSION,
    ActivityRow,
    Engagement,
    Event,
    Fit,
    Inactivity,
    Matcher,
    Moment,
    activity_attributes,
    compile_rule,
    earliest,
)
from leadpulse.core.engine.conditions import (
    Predicate,
    contact_getter,
)
from leadpulse.core.engine.lifecycle import Ladder, LifecycleRules
from leadpulse.core.engine.rules import (
    Quadrant,
    ScoringConfig,
    leaves,
)
from leadpulse.core.model import Activity, ActivityKind, Contact, Lifecycle, utc

__all__ = [
    "SESSION", "ActivityRow", "Contribution", "Engine", "Quadrant", "ScoreCard", "StatusChange", "activity_attributes",
    "bent_notes", "fingerprint_of", "round_half_up", "shown_points",
]

#: bump when the meaning of a rule changes, so every stored score is recomputed
_SEMANTICS = "2"


class Engine:
    """A tenant's scoring rules, compiled. Build one per rule set and reuse it for every contact."""

    def __init__(self, config: ScoringConfig) -> None:
        self.config = config
        self.fingerprint = _fingerprint(config)
        ids = config.rule_ids()
        self._rules = [compile_rule(rule, i, ids[i], config) for i, rule in enumerate(config.rules)]
        # In rule order (points add up in it): (index, field key, test of its value, rule) for a rule testing one of
        # the contact's fields, read in the scoring loop; (index, None, test of the contact, rule) for any other.
        self._fit = [(i, *(rule.keyed or (None, rule.test)), rule) for i, rule in enumerate(self._rules)
                     if isinstance(rule, Fit) and not rule.timed]
        #: fit rules reading a date against the moment scored (``age``, ``ahead``)
        self._timed_fit = [(i, rule) for i, rule in enumerate(self._rules) if isinstance(rule, Fit) and rule.timed]
        self._engagement = [(i, rule) for i, rule in enumerate(self._rules) if isinstance(rule, Engagement)]
        self._engagement_at = dict(self._engagement)
        self._inactivity = [(i, rule) for i, rule in enumerate(self._rules) if isinstance(rule, Inactivity)]
        # what the activity rows are matched against: each engagement rule, and each rule's follow-up under the
        # rule's index as a negative number (see `_follower_index`)
        transitions = config.lifecycle.transitions if config.lifecycle else ()
        #: the transitions with conditions on fields or events, evaluated with every score (see `ScoreCard.events`)
        self._events = [(t, Event(transition, _event_index(t, len(self._rules))))
                        for t, transition in enumerate(transitions) if transition.when or transition.after]
        matchers: list[tuple[int, Matcher]] = [*self._engagement, *(
            (_follower_index(i), rule.follower) for i, rule in self._engagement if rule.follower is not None), *(
            (event.index, event.after) for _, event in self._events if event.after is not None)]
        self._by_vendor: dict[str, list[tuple[int, Matcher]]] = {}
        for index, matcher in matchers:
            for vendor_type in matcher.vendor_types:
                self._by_vendor.setdefault(vendor_type, []).append((index, matcher))
        self._plans, self._any_kind = _plans(matchers, self._inactivity)
        self._last_moment: Moment | None = None
        self._no_points = dict.fromkeys(config.axes, 0.0)
        self._weights = [(name, axis.weight) for name, axis in config.axes.items()]
        #: the axes with a floor or cap, if any has one (each axis is rounded either way)
        bounded = any(axis.min is not None or axis.max is not None for axis in config.axes.values())
        self._bounds = [(name, axis.min, axis.max) for name, axis in config.axes.items()] if bounded else []
        self._bands = Ladder(config.bands)
        self._grades = Ladder(config.grades) if config.grades else None
        self._quadrant = (config.quadrant.fit, config.quadrant.engagement) if config.quadrant else None
        self._grade_axis = config.grade_axis
        self._lifecycle = LifecycleRules(config.lifecycle, self._bands) if config.lifecycle else None

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
            valid_until = earliest(valid_until, rule.next_change(contact, as_of))
        matched, last, upcoming = self._match(rows, as_of)
        for index, times in matched.items():
            if index < 0:  # a follow-up's matches, read by its rule
                continue
            rule = self._engagement_at[index]
            contribution, changes_at = rule.apply(
                times, moment, matched.get(_follower_index(index), NO_TIMES) if rule.follower else NO_TIMES)
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
                valid_until = earliest(valid_until, changes_at)
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
            if isinstance(rule, Fit):
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

    def status_targets(self, cards: CardColumns) -> list[Lifecycle | None] | None:
        """The stage each of `cards` reaches by the lifecycle transitions (None without lifecycle rules): what
        `move_status` takes instead of the card."""
        return self._lifecycle.targets(cards) if self._lifecycle else None

    def move_status(self, status: str | None, target: Lifecycle | None, last_set: Lifecycle | None
                    ) -> StatusChange | None:
        """`decide_status` for a contact whose lifecycle value in the CRM is `status` and whose card's stage
        reached (see `status_targets`) is known."""
        return self._lifecycle.move(status, target, last_set) if self._lifecycle else None

    def _moment(self, as_of: datetime) -> Moment:
        # A run scores every contact at one as-of: what the rules derive from it is worked out once.
        moment = self._last_moment
        if moment is None or moment.as_of != as_of or moment.as_of.tzinfo is not utc(as_of).tzinfo:
            moment = Moment(utc(as_of), self.config.decay_recheck, self._engagement)
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
                        attributes = activity_attributes(row[5])
                    if not (test(attributes.get(key)) if key is not None else test((row, attributes))):
                        continue
                if session:
                    if attributes is None:
                        attributes = activity_attributes(row[5])
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


#: Per activity kind: the engagement rules (and follow-ups) it may count for and the inactivity rules it keeps
#: awake (positions in the engine's inactivity list). An engagement rule is (index, attribute key, test, session):
#: with a key, the test is of that attribute's value; without, of ``(row, attributes)``; no test, no ``where``;
#: `session` keeps the activity's session with its time, for a rule counting sessions.
_Plan = tuple[list[tuple[int, "str | None", "Predicate | None", bool]], list[int]]


def _follower_index(index: int) -> int:
    """Where the matches of rule `index`'s follow-up are kept: below zero, apart from every rule's."""
    return -1 - index


def _event_index(transition: int, rules: int) -> int:
    """Where the matches of lifecycle transition `transition`'s event are kept: below every follow-up's."""
    return -1 - rules - transition

_fromiso = datetime.fromisoformat


def _plans(
    engagement: Sequence[tuple[int, Matcher]], inactivity: list[tuple[int, Inactivity]]
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


def _with_vendor_rules(plan: _Plan | None, row: ActivityRow, rules: list[tuple[int, Matcher]]) -> _Plan | None:
    """`plan` plus the engagement rules that name the row's vendor type and not already its kind."""
    extra = [rule.matcher(i) for i, rule in rules if row[2] not in rule.kinds]
    if not extra:
        return plan
    return ([*plan[0], *extra], plan[1]) if plan is not None else (extra, [])


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
