"""A tenant's rules compiled for the per-contact engine (see `leadpulse.core.engine.scoring`): each fit, engagement
and inactivity rule and each lifecycle event as an object that tests a contact or applies to its matched
activities at a moment, and what the rules derive from the moment itself."""

from __future__ import annotations

import json
from bisect import bisect_right
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any

import orjson

from leadpulse.core.engine.cards import Contribution, round_half_up
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
    Counting,
    EngagementRule,
    FitRule,
    InactivityRule,
    ScoringConfig,
    Transition,
    leaves,
)
from leadpulse.core.engine.wording import describe
from leadpulse.core.model import Contact

__all__ = ["NO_TIMES", "SESSION", "ActivityRow", "Engagement", "Event", "Fit", "Inactivity", "Matcher", "Moment",
           "activity_attributes", "compile_rule", "earliest"]

#: An activity as the store holds it: (contact_id, id, kind, occurred_at, vendor_type, attributes), where
#: `occurred_at` is a datetime or the store's ISO text and `attributes` a mapping or JSON text.
ActivityRow = tuple[str, str, str, "datetime | str", "str | None", "Mapping[str, Any] | str"]

#: the activity attribute naming the session (a visit) an activity belongs to
SESSION = "session_id"
NO_TIMES: tuple[Any, ...] = ()


def activity_attributes(value: Mapping[str, Any] | str) -> Mapping[str, Any]:
    """An activity row's attributes as rules read them: the mapping itself, or parsed from the store's JSON text."""
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



class Moment:
    """What the rules derive from one as-of: when each windowed rule's occurrences stop counting."""

    __slots__ = ("as_of", "cutoffs", "given", "recheck_at")

    def __init__(self, as_of: datetime, recheck: timedelta, engagement: list[tuple[int, Engagement]]) -> None:
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


Applied = tuple[float, int, "datetime | None"]


class Fit:
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


class Matcher:
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
        attributes = activity_attributes(row[5])
        if self.keyed is not None:
            key, test = self.keyed
            return test(attributes.get(key)), attributes.get(key)
        if self.where is not None and not self.where((row, attributes)):
            return False, None
        return True, row[4] or row[2]


class Engagement(Matcher):
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
        self.follower = Matcher(follow.kinds(), follow.vendor_types(), follow.where) if follow else None
        self.follow_within = timedelta(days=follow.within_days) if follow and follow.within_days else None

    def apply(self, found: list[Any], moment: Moment, followers: Sequence[datetime] = NO_TIMES
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
            changes_at = earliest(changes_at, followed_at)
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
            changes_at = earliest(changes_at, moment.recheck_at)
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
                changes_at = earliest(changes_at, moment)
                continue
            if horizon is not None:
                if cutoff is not None and moment <= cutoff:
                    continue
                changes_at = earliest(changes_at, moment + horizon)
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


class Event:
    """A lifecycle transition's conditions on the contact's fields (`when`) and on an activity (`after`)."""

    __slots__ = ("after", "index", "timed", "when", "when_test", "within")

    def __init__(self, transition: Transition, index: int) -> None:
        self.index = index
        self.when = transition.when
        self.timed = transition.when is not None and is_timed(transition.when)
        self.when_test = compile_condition(transition.when, contact_getter, timed=self.timed) \
            if transition.when is not None else None
        after = transition.after
        self.after = Matcher(after.kinds(), after.vendor_types(), after.where) if after is not None else None
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
            changes_at = earliest(changes_at, min((m for m in times if m > as_of), default=None))
            if within is not None and recent:
                changes_at = earliest(changes_at, max(recent) + within)
        return holds, changes_at


class Inactivity:
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
        changes_at = upcoming if applies else earliest(upcoming, last + self.after if last else None)
        return (self.points, 1, changes_at) if applies else (0.0, 0, changes_at)


def earliest(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None:
        return b
    if b is None:
        return a
    return a if a <= b else b


def compile_rule(rule: Any, index: int, rule_id: str, config: ScoringConfig) -> Fit | Engagement | Inactivity:
    axis = config.rule_axis(rule)
    if isinstance(rule, FitRule):
        return Fit(rule, rule_id, axis)
    if isinstance(rule, EngagementRule):
        return Engagement(rule, index, rule_id, axis)
    return Inactivity(rule, rule_id, axis)
