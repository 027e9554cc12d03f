"""A batch: everything about a set of contacts that does not depend on the moment scored, worked out once.

Each contact field a fit rule reads is tested once per contact; each activity row is matched once against every
engagement rule, every rule's follow-up and every lifecycle event, through the same compiled conditions as the
per-contact engine. Times become integer microseconds since the epoch (the resolution of a `datetime`, so every
comparison and every span stays exact). What matched is kept per rule as columns, contact by contact in row order.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np

from leadpulse.core.engine.columnar_numeric import Bools, Ints
from leadpulse.core.engine.conditions import (
    Predicate,
    activity_row_getter,
    as_moment,
    attribute_key,
    compile_condition,
    contact_field_key,
    contact_getter,
    is_timed,
    keyed_test,
)
from leadpulse.core.engine.rules import AllOf, AnyOf, Counting, Leaf, NotOf
from leadpulse.core.engine.scoring import SESSION, ActivityRow, activity_attributes
from leadpulse.core.model import Contact

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO = timedelta(microseconds=1)
#: a time after every real one: "no such activity"
NEVER = 2**62


def micros(moment: datetime) -> int:
    """`moment` as microseconds since the epoch."""
    return (moment - EPOCH) // _MICRO


def span_micros(days: float) -> int:
    """A span of `days` in microseconds, as `timedelta` rounds it (kept far from int64's end)."""
    try:
        return min(timedelta(days=days) // _MICRO, NEVER)
    except OverflowError:
        return NEVER


# ---------------------------------------------------------------- what rows are matched against


@dataclass(frozen=True)
class RowTest:
    """What an activity row is matched against (an engagement rule, a follow-up, a lifecycle event): its kinds or
    vendor types, and its ``where`` compiled as the engine compiles it: with a `key`, a test of that attribute's
    value (a ``where`` reading one attribute); without, of ``(row, attributes)``. `occasions` keeps each match's
    day (``days``) or session (``sessions``; the day of one without a session), for a rule counting those."""

    kinds: frozenset[str]
    vendor_types: frozenset[str]
    where: Predicate | None
    occasions: Counting | None = None
    key: str | None = None

    @classmethod
    def of(cls, kinds: Sequence[str], vendor_types: Sequence[str], where: Any,
           occasions: Counting | None = None) -> RowTest:
        if where is None:
            return cls(frozenset(kinds), frozenset(vendor_types), None, occasions)
        keyed = keyed_test(where, attribute_key)
        if keyed is not None:
            return cls(frozenset(kinds), frozenset(vendor_types), keyed[1], occasions, keyed[0])
        return cls(frozenset(kinds), frozenset(vendor_types), compile_condition(where, activity_row_getter), occasions)


@dataclass(frozen=True)
class BatchPlan:
    """What a batch is built for, from the rules: the row tests (engagement rules first, in rule order), which of
    them is each engagement rule's follow-up, the inactivity rules' kinds (None: every kind) and the conditions on
    contact fields (fit rules' and lifecycle transitions' ``when``)."""

    tests: tuple[RowTest, ...]
    engagement: int
    followers: Mapping[int, int]
    inactivity: tuple[frozenset[str] | None, ...]
    conditions: tuple[Any, ...]


# ---------------------------------------------------------------- the batch


@dataclass(frozen=True)
class Matches:
    """The rows one row test matched: contact by contact (batch order), in row order within each contact.

    `occasion` is a dense key of the match's day or session (its day for one without a session), for a test that
    keeps them; `followed_at` the first time after each match at which the rule's follow-up matched (`NEVER` if
    none), for an engagement rule with one.
    """

    owner: Ints
    at: Ints
    occasion: Ints | None = None
    occasions: int = 0
    followed_at: Ints | None = None


@dataclass(frozen=True)
class Batch:
    """Contacts and their activities, matched against a tenant's rules once, ready to score at any moment."""

    contact_ids: tuple[str, ...]
    #: per row test of the plan, what it matched
    matches: tuple[Matches, ...]
    #: per inactivity rule, its rows' times, sorted within each contact
    quiet: tuple[Matches, ...]
    #: per condition of the plan, the condition as columns
    conditions: tuple[ColumnCondition, ...]
    #: contacts x engagement rules: the rules in the order each contact's rows first matched them (the order the
    #: engine adds their points in), the rules never matched last
    first_matched: Ints = field(repr=False)
    #: per condition of the plan, contacts x its crossings: the moments at which a date it reads against the
    #: moment scored crosses one of its bounds (`NEVER` where the contact has no such date)
    crossings: tuple[Ints, ...] = field(default=(), repr=False)

    @property
    def size(self) -> int:
        return len(self.contact_ids)


def build_batch(plan: BatchPlan, contacts: Sequence[Contact], rows: Mapping[str, Sequence[ActivityRow]]) -> Batch:
    """Match `rows` (by contact id) against `plan` for `contacts`, in that order."""
    matcher = _RowMatcher(plan)
    for index, contact in enumerate(contacts):
        matcher.contact(index, rows.get(contact.id, ()))
    conditions = tuple(column_condition(condition, contacts) for condition in plan.conditions)
    crossings = tuple(_crossings(condition, len(contacts)) for condition in conditions)
    return Batch(tuple(contact.id for contact in contacts), matcher.matches(), matcher.quiet(), conditions,
                 np.array(matcher.first_matched, dtype=np.int64).reshape(len(contacts), plan.engagement), crossings)


def _crossings(condition: ColumnCondition, size: int) -> Ints:
    columns = condition.crossings()
    return np.stack(columns, axis=1) if columns else np.empty((size, 0), dtype=np.int64)


#: a row test as a plan lists it: (slot, attribute key, test, occasions), see `RowTest`
_Slot = tuple[int, "str | None", "Predicate | None", "Counting | None"]
#: a kind and vendor type not yet planned for
_UNPLANNED: Any = object()


class _RowMatcher:
    """Matches rows contact by contact, collecting columns."""

    def __init__(self, plan: BatchPlan) -> None:
        self.plan = plan
        slots = len(plan.tests)
        self.owner: list[list[int]] = [[] for _ in range(slots)]
        self.at: list[list[int]] = [[] for _ in range(slots)]
        self.occasion: list[list[int]] = [[] for _ in range(slots)]
        self.followed: dict[int, list[int]] = {slot: [] for slot in plan.followers}
        self.quiet_owner: list[list[int]] = [[] for _ in plan.inactivity]
        self.quiet_at: list[list[int]] = [[] for _ in plan.inactivity]
        self.first_matched: list[int] = []
        self.keys: dict[Any, int] = {}
        self._plans: dict[tuple[Any, Any], tuple[list[_Slot], list[int]] | None] = {}

    def _plan(self, kind: Any, vendor_type: Any) -> tuple[list[_Slot], list[int]] | None:
        """The row tests a row of this kind and vendor type may match, as the engine orders them (those naming
        the kind, then those naming only the vendor type), and the inactivity rules it keeps awake."""
        key = (kind, vendor_type)
        if key not in self._plans:
            tests = self.plan.tests
            by_kind = [n for n, test in enumerate(tests) if kind in test.kinds]
            by_vendor = [n for n, test in enumerate(tests) if kind not in test.kinds and vendor_type is not None
                         and vendor_type in test.vendor_types]
            slots = [(n, tests[n].key, tests[n].where, tests[n].occasions) for n in [*by_kind, *by_vendor]]
            quiet = [n for n, kinds in enumerate(self.plan.inactivity) if kinds is None or kind in kinds]
            self._plans[key] = (slots, quiet) if slots or quiet else None
        return self._plans[key]

    def contact(self, index: int, rows: Sequence[ActivityRow]) -> None:
        found: dict[int, list[tuple[int, int]]] = {}
        plans = self._plans
        for row in rows:
            plan = plans.get((row[2], row[4]), _UNPLANNED)
            if plan is _UNPLANNED:
                plan = self._plan(row[2], row[4])
            if plan is None:
                continue
            at: Any = row[3]
            if at.__class__ is str:
                at = datetime.fromisoformat(at)
            when = (at - EPOCH) // _MICRO
            attributes = None
            for slot, key, where, occasions in plan[0]:
                if where is not None or occasions is Counting.SESSIONS:
                    if attributes is None:
                        attributes = activity_attributes(row[5])
                    if where is not None and not (where(attributes.get(key)) if key is not None
                                                  else where((row, attributes))):
                        continue
                key = self._occasion(at, attributes if occasions is Counting.SESSIONS else None) if occasions else 0
                hits = found.get(slot)
                if hits is None:
                    found[slot] = [(when, key)]
                else:
                    hits.append((when, key))
            for n in plan[1]:
                self.quiet_owner[n].append(index)
                self.quiet_at[n].append(when)
        self._keep(index, found)

    def _occasion(self, at: datetime, attributes: Mapping[str, Any] | None) -> int:
        session = attributes.get(SESSION) if attributes is not None else None
        key: tuple[str, str | date] = ("session", str(session)) if session not in (None, "") else ("day", at.date())
        return self.keys.setdefault(key, len(self.keys))

    def _keep(self, index: int, found: dict[int, list[tuple[int, int]]]) -> None:
        engagement = self.plan.engagement
        order = [slot for slot in found if slot < engagement]
        self.first_matched += order
        if len(order) < engagement:
            self.first_matched += [slot for slot in range(engagement) if slot not in found]
        for slot, hits in found.items():
            self.owner[slot] += [index] * len(hits)
            self.at[slot] += [when for when, _ in hits]
            if self.plan.tests[slot].occasions:
                self.occasion[slot] += [key for _, key in hits]
        for slot, follower in self.plan.followers.items():
            matched = found.get(slot)
            if matched:
                self.followed[slot] += _followed_at([when for when, _ in matched],
                                                    sorted(when for when, _ in found.get(follower, ())))

    def matches(self) -> tuple[Matches, ...]:
        found = []
        for slot, test in enumerate(self.plan.tests):
            occasion = occasions = None
            if test.occasions:
                keys, dense = np.unique(np.array(self.occasion[slot], dtype=np.int64), return_inverse=True)
                occasion, occasions = dense.astype(np.int64), len(keys)
            followed = np.array(self.followed[slot], dtype=np.int64) if slot in self.followed else None
            found.append(Matches(np.array(self.owner[slot], dtype=np.int64), np.array(self.at[slot], dtype=np.int64),
                                 occasion, occasions or 0, followed))
        return tuple(found)

    def quiet(self) -> tuple[Matches, ...]:
        found = []
        for owners, times in zip(self.quiet_owner, self.quiet_at, strict=True):
            owner, at = np.array(owners, dtype=np.int64), np.array(times, dtype=np.int64)
            order = np.lexsort((at, owner))
            found.append(Matches(owner[order], at[order]))
        return tuple(found)


def _followed_at(times: list[int], followers: list[int]) -> list[int]:
    """For each time, the first follower strictly after it, or `NEVER`."""
    if not followers:
        return [NEVER] * len(times)
    last = len(followers)
    found = []
    for when in times:
        at = bisect_right(followers, when)
        found.append(followers[at] if at < last else NEVER)
    return found


# ---------------------------------------------------------------- conditions on contact fields, as columns


class ColumnCondition:
    """A condition on contact fields over a batch's contacts, evaluated at a moment."""

    def at(self, now: int) -> Bools:
        raise NotImplementedError

    def crossings(self) -> list[Ints]:
        """Per date the condition reads against the moment, each contact's moments at which its answer may change
        (`leadpulse.core.engine.conditions.crossings`), `NEVER` where the contact has no such date."""
        return []


@dataclass(frozen=True)
class _Fixed(ColumnCondition):
    """A condition whose answer does not depend on the moment: worked out once."""

    held: Bools

    def at(self, now: int) -> Bools:
        return self.held


@dataclass(frozen=True)
class _Combined(ColumnCondition):
    parts: tuple[ColumnCondition, ...]
    every: bool

    def at(self, now: int) -> Bools:
        combine: Callable[[Bools, Bools], Bools] = np.logical_and if self.every else np.logical_or
        held = self.parts[0].at(now)
        for part in self.parts[1:]:
            held = combine(held, part.at(now))
        return held

    def crossings(self) -> list[Ints]:
        return [moments for part in self.parts for moments in part.crossings()]


@dataclass(frozen=True)
class _Negated(ColumnCondition):
    inner: ColumnCondition

    def at(self, now: int) -> Bools:
        return ~self.inner.at(now)

    def crossings(self) -> list[Ints]:
        return self.inner.crossings()


@dataclass(frozen=True)
class _Dated(ColumnCondition):
    """An ``age`` or ``ahead`` leaf: each contact's date (microseconds, `dated` where it is one), how many days
    before (age) or after (ahead) the moment it lies, within the leaf's bounds."""

    when: Ints
    dated: Bools
    forward: bool
    bounds: Mapping[str, float]

    def at(self, now: int) -> Bools:
        apart = (self.when - now) if self.forward else (now - self.when)
        days = apart.astype(np.float64) / 1e6 / 86400
        held = self.dated & (days >= 0)
        for name, bound in self.bounds.items():
            if name == "min":
                held &= days >= bound
            elif name == "above":
                held &= days > bound
            elif name == "below":
                held &= days < bound
            else:
                held &= days <= bound
        return held

    def crossings(self) -> list[Ints]:
        # as `conditions.crossings` places them: a microsecond past the date and past each bound from it
        sign = -1 if self.forward else 1
        moments = [self.when + 1, *(self.when + sign * span_micros(days) + 1 for days in self.bounds.values())]
        return [np.where(self.dated, moment, NEVER) for moment in moments]


def column_condition(condition: Any, contacts: Sequence[Contact]) -> ColumnCondition:
    """`condition` over `contacts`: the parts that do not read a date against the moment, tested once per contact
    with the engine's compiled predicate; ``age`` and ``ahead`` leaves as each contact's date."""
    if not is_timed(condition):
        keyed = keyed_test(condition, contact_field_key)
        if keyed is not None:  # one of the contact's fields, read as the engine reads it
            key, test = keyed
            return _Fixed(np.array([bool(test(contact.fields.get(key))) for contact in contacts], dtype=np.bool_))
        test = compile_condition(condition, contact_getter)
        return _Fixed(np.array([bool(test(contact)) for contact in contacts], dtype=np.bool_))
    if isinstance(condition, AllOf | AnyOf):
        children = condition.all if isinstance(condition, AllOf) else condition.any
        return _Combined(tuple(column_condition(child, contacts) for child in children), isinstance(condition, AllOf))
    if isinstance(condition, NotOf):
        return _Negated(column_condition(condition.not_, contacts))
    return _dated(condition, contacts)


def _dated(leaf: Leaf, contacts: Sequence[Contact]) -> _Dated:
    span = leaf.age if leaf.age is not None else leaf.ahead
    assert span is not None
    read = contact_getter(leaf.field)
    moments = [as_moment(read(contact)) for contact in contacts]
    when = np.array([micros(moment) if moment is not None else 0 for moment in moments], dtype=np.int64)
    dated = np.array([moment is not None for moment in moments], dtype=np.bool_)
    return _Dated(when, dated, leaf.ahead is not None, span.bounds())
