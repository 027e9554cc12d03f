"""A batch: everything about a set of contacts that does not depend on the moment scored, worked out once.

Each contact field a fit rule reads is tested once per contact (once per distinct text); the activity rows are
matched against every engagement rule, every rule's follow-up and every lifecycle event column by column: by kind
as integer codes, then a rule's ``where`` through the same compiled conditions as the per-contact engine, only on
the rows of its kinds (once per distinct attributes text). Times become integer microseconds since the epoch (the
resolution of a `datetime`, so every comparison and every span stays exact), the store's text of them parsed by
numpy. What matched is kept per rule as columns, contact by contact in row order.
"""

from __future__ import annotations

import contextlib
import functools
import gc
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from operator import itemgetter
from typing import Any

import numpy as np

from leadpulse.core.engine.columnar_numeric import Bools, Ints, ordered_by
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
    flat: list[ActivityRow] = []
    owners: list[int] = []
    for index, contact in enumerate(contacts):
        found = rows.get(contact.id, ())
        flat += found
        owners += [index] * len(found)
    return build_flat_batch(plan, contacts, flat, np.array(owners, dtype=np.int64))


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Python's cyclic collector off while a batch or its cards are made: hundreds of thousands of new objects,
    none of which can be part of a cycle. The collector would walk them (and the caller's rows and contacts) over
    and over while they are made, for half the time it takes, and find nothing."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


def build_flat_batch(plan: BatchPlan, contacts: Sequence[Contact], rows: Sequence[ActivityRow], owners: Ints) -> Batch:
    """`build_batch` from one list of `rows`, each the activity of the contact at its place in `owners` (positions
    in `contacts`), each contact's rows together and in the order the engine reads them (the store's: by contact
    and activity id)."""
    with collector_paused():  # lists and dicts of plain values
        matched = _MatchedRows(plan, rows, owners, len(contacts))
        fields = _FieldValues(contacts)
        conditions = tuple(column_condition(condition, contacts, fields) for condition in plan.conditions)
    crossings = tuple(_crossings(condition, len(contacts)) for condition in conditions)
    return Batch(tuple(contact_ids(contacts)), matched.matches(), matched.quiet(), conditions,
                 matched.first_matched(), crossings)


def contact_ids(contacts: Sequence[Contact]) -> Sequence[str]:
    """Each contact's id; those of a chunk the store read, without making its contacts (see
    `leadpulse.core.store.store.ContactRows`)."""
    ids: Sequence[str] | None = getattr(contacts, "ids", None)
    return ids if ids is not None else [contact.id for contact in contacts]


def _contact_fields(contacts: Sequence[Contact]) -> Sequence[Mapping[str, Any]]:
    """Each contact's fields, as `contact_ids` gives ids."""
    fields: Sequence[Mapping[str, Any]] | None = getattr(contacts, "fields", None)
    return fields if fields is not None else [contact.fields for contact in contacts]


def _crossings(condition: ColumnCondition, size: int) -> Ints:
    columns = condition.crossings()
    return np.stack(columns, axis=1) if columns else np.empty((size, 0), dtype=np.int64)


#: `date.toordinal()` of the epoch's day, and a day in microseconds: a UTC time's day number from its microseconds
_EPOCH_DAY = EPOCH.date().toordinal()
_DAY = 86_400_000_000
#: occasion keys of sessions start here, above every day number
_SESSIONS_FROM = 10**8
#: the store's text of a time, ``2025-06-02T00:00:00.000+00:00``: parsed column-wise (see `_times`)
_STORE_TEXT = len("2025-06-02T00:00:00.000+00:00")
_UTC_SUFFIX = "+00:00"
_KIND_AND_VENDOR = itemgetter(2, 4)
_KIND = itemgetter(2)
_TIME = itemgetter(3)
_ATTRIBUTES = itemgetter(5)
#: the values a test is worked out once per distinct value for (see `_tested`)
_TEXTS = frozenset({str, type(None)})


class _MatchedRows:
    """Every activity row of a batch matched against the plan column by column: one pass per row test over the
    rows of the kinds it reads, the ``where`` tests (the engine's compiled conditions) only on those rows, each
    row's attributes parsed once."""

    def __init__(self, plan: BatchPlan, rows: Sequence[ActivityRow], owners: Ints, size: int) -> None:
        self.plan, self.rows, self.size = plan, rows, size
        if len(owners) > 1 and bool((owners[1:] < owners[:-1]).any()):
            raise ValueError("a batch's activity rows must come contact by contact, in the contacts' order")
        self.owner = owners
        # each row's (kind, vendor type) as a code; per code, the row tests it may match (and where in the
        # engine's order for the row: those naming the kind, then those naming only the vendor type) and the
        # inactivity rules it keeps awake
        tests = plan.tests
        vendors = any(test.vendor_types for test in tests)
        # the vendor type only where a test names one: a code per kind is found without a tuple per row
        keys = list(map(_KIND_AND_VENDOR if vendors else _KIND, rows))
        codes = {key: code for code, key in enumerate(dict.fromkeys(keys))}
        self.code = np.fromiter(map(codes.__getitem__, keys), dtype=np.int64, count=len(keys))
        self.place = np.full((len(codes), len(tests)), -1, dtype=np.int64)
        self.awake = np.zeros((len(codes), len(plan.inactivity)), dtype=np.bool_)
        for key, code in codes.items():
            kind, vendor_type = key if vendors else (key, None)
            by_kind = [n for n, test in enumerate(tests) if kind in test.kinds]
            by_vendor = [n for n, test in enumerate(tests) if kind not in test.kinds and vendor_type is not None
                         and vendor_type in test.vendor_types]
            for place, n in enumerate([*by_kind, *by_vendor]):
                self.place[code, n] = place
            for n, kinds in enumerate(plan.inactivity):
                self.awake[code, n] = kinds is None or kind in kinds
        feeds: Bools = np.logical_or((self.place >= 0).any(axis=1), self.awake.any(axis=1))
        live = feeds[self.code]
        self.at, self.day = _times(rows, np.flatnonzero(live))
        self._attributes: dict[int, Mapping[str, Any]] = {}
        self.slots = [self._slot(n, test) for n, test in enumerate(tests)]

    def attributes(self, i: int) -> Mapping[str, Any]:
        found = self._attributes.get(i)
        if found is None:
            found = self._attributes[i] = activity_attributes(self.rows[i][5])
        return found

    def _slot(self, n: int, test: RowTest) -> Ints:
        """The rows row test `n` matches, in row order."""
        found = np.flatnonzero(self.place[self.code, n] >= 0)
        where, key, rows = test.where, test.key, self.rows
        if where is None or not len(found):
            return found
        if key is None:  # the test reads the row itself
            kept = np.array([bool(where((rows[i], self.attributes(i)))) for i in found.tolist()], dtype=np.bool_)
            return found[kept]
        # as the store keeps them, JSON text: each distinct one parsed and tested once
        attributes = list(map(_ATTRIBUTES, map(rows.__getitem__, found.tolist())))
        return found[_tested(lambda value: where(activity_attributes(value).get(key)), attributes)]

    def _occasions(self, test: RowTest, found: Ints) -> tuple[Ints, int]:
        """Each match's occasion, numbered densely, and how many there are: its day, or for a rule counting
        sessions its session (its day when it has none)."""
        keys = self.day[found]
        if test.occasions is Counting.SESSIONS:
            sessions: dict[str, int] = {}
            keys = keys.copy()
            for place, i in enumerate(found.tolist()):
                session = self.attributes(i).get(SESSION)
                if session not in (None, ""):
                    keys[place] = _SESSIONS_FROM + sessions.setdefault(str(session), len(sessions))
        unique, dense = np.unique(keys, return_inverse=True)
        return dense.astype(np.int64).reshape(-1), len(unique)

    def matches(self) -> tuple[Matches, ...]:
        found = []
        for n, test in enumerate(self.plan.tests):
            rows = self.slots[n]
            occasion, occasions = self._occasions(test, rows) if test.occasions else (None, 0)
            follower = self.plan.followers.get(n)
            followed = self._followed_at(rows, self.slots[follower]) if follower is not None else None
            found.append(Matches(self.owner[rows], self.at[rows], occasion, occasions, followed))
        return tuple(found)

    def _followed_at(self, rows: Ints, followers: Ints) -> Ints:
        """For each of `rows`, its contact's first follower row strictly after it in time (its time), or `NEVER`."""
        if not len(followers):
            return np.full(len(rows), NEVER, dtype=np.int64)
        # times as ranks among both sets keep (contact, time) one exact integer key
        times = np.unique(np.concatenate([self.at[rows], self.at[followers]]))
        span = len(times) + 1
        theirs = self.owner[followers] * span + np.searchsorted(times, self.at[followers])
        order = np.argsort(theirs, kind="stable")
        theirs = theirs[order]
        ours = self.owner[rows] * span + np.searchsorted(times, self.at[rows])
        at = np.searchsorted(theirs, ours, side="right")
        inside = at < len(theirs)
        nearest = np.minimum(at, len(theirs) - 1)
        same = inside & (theirs[nearest] // span == self.owner[rows])
        return np.where(same, self.at[followers][order][nearest], NEVER).astype(np.int64)

    def quiet(self) -> tuple[Matches, ...]:
        found = []
        for n in range(len(self.plan.inactivity)):
            rows = np.flatnonzero(self.awake[self.code, n])
            owner, at = self.owner[rows], self.at[rows]
            order = ordered_by(owner, at)
            found.append(Matches(owner[order], at[order]))
        return tuple(found)

    def first_matched(self) -> Ints:
        """Contacts x engagement rules: the rules in the order each contact's rows first matched them (a row
        matching several, in the engine's order for the row), the rules never matched last, in rule order."""
        engagement = self.plan.engagement
        width = len(self.plan.tests) + 1
        never = (len(self.rows) + 1) * width
        first = np.full((self.size, engagement), never, dtype=np.int64) + np.arange(engagement, dtype=np.int64)
        for n in range(engagement):
            rows = self.slots[n]
            if not len(rows):
                continue
            owners, at = np.unique(self.owner[rows], return_index=True)
            row = rows[at]
            first[owners, n] = row * width + self.place[self.code[row], n]
        return np.argsort(first, axis=1, kind="stable").astype(np.int64)


def _times(rows: Sequence[ActivityRow], live: Ints) -> tuple[Ints, Ints]:
    """The times of the `live` rows as microseconds since the epoch, and their days (`date.toordinal`, the day
    where the time was written, as the engine reads it); zero for the other rows.

    The store's text of a UTC time is parsed column-wise; any other row (a datetime, another offset or
    precision) as the engine parses it."""
    at = np.zeros(len(rows), dtype=np.int64)
    day = np.zeros(len(rows), dtype=np.int64)
    if not len(live):
        return at, day
    places = live.tolist()
    texts = list(map(_TIME, rows if len(places) == len(rows) else map(rows.__getitem__, places)))
    stored = np.zeros(len(texts), dtype=np.bool_)
    if set(map(type, texts)) == {str}:
        try:
            raw = np.array(texts, dtype=f"S{_STORE_TEXT + 1}")  # one byte more: a longer text is not cut to size
            lengths = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
            stored = (lengths == _STORE_TEXT) & np.char.endswith(raw, _UTC_SUFFIX.encode())
            picked = np.flatnonzero(stored)
            micros_ = (raw[picked].astype(f"S{_STORE_TEXT - len(_UTC_SUFFIX)}").astype("datetime64[us]")
                       .astype(np.int64))
        except (UnicodeEncodeError, ValueError):  # not ASCII, or not a date numpy reads: one by one below
            stored[:] = False
        else:
            at[live[picked]] = micros_
            day[live[picked]] = micros_ // _DAY + _EPOCH_DAY
    for place in np.flatnonzero(~stored).tolist():
        moment: Any = texts[place]
        if moment.__class__ is str:
            moment = datetime.fromisoformat(moment)
        at[places[place]] = (moment - EPOCH) // _MICRO
        day[places[place]] = moment.date().toordinal()
    return at, day


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


def column_condition(condition: Any, contacts: Sequence[Contact], fields: _FieldValues | None = None
                     ) -> ColumnCondition:
    """`condition` over `contacts`: the parts that do not read a date against the moment, tested once per contact
    with the engine's compiled predicate; ``age`` and ``ahead`` leaves as each contact's date. `fields` keeps the
    contacts' values of each field read, for the next condition that reads it."""
    if fields is None:
        fields = _FieldValues(contacts)
    if not is_timed(condition):
        keyed = keyed_test(condition, contact_field_key)
        if keyed is not None:  # one of the contact's fields, read as the engine reads it
            key, test = keyed
            return _Fixed(fields.tested(key, test))
        test = compile_condition(condition, contact_getter)
        return _Fixed(np.array([bool(test(contact)) for contact in contacts], dtype=np.bool_))
    if isinstance(condition, AllOf | AnyOf):
        children = condition.all if isinstance(condition, AllOf) else condition.any
        return _Combined(tuple(column_condition(child, contacts, fields) for child in children),
                         isinstance(condition, AllOf))
    if isinstance(condition, NotOf):
        return _Negated(column_condition(condition.not_, contacts, fields))
    return _dated(condition, contacts)


class _FieldValues:
    """Each contact's value of a field (from `Contact.fields`), read once per field for all the conditions that
    read it, with its distinct values when they are all text (see `_tested`)."""

    def __init__(self, contacts: Sequence[Contact]) -> None:
        self.contacts = contacts
        self._read: dict[str, tuple[list[Any], set[Any] | None]] = {}

    def tested(self, key: str, test: Callable[[Any], Any]) -> Bools:
        found = self._read.get(key)
        if found is None:
            values = [fields.get(key) for fields in self._fields]
            found = self._read[key] = (values, set(values) if set(map(type, values)) <= _TEXTS else None)
        return _tested(test, *found)

    @functools.cached_property
    def _fields(self) -> Sequence[Mapping[str, Any]]:
        return _contact_fields(self.contacts)


def _tested(test: Callable[[Any], Any], values: list[Any], distinct: set[Any] | None = None) -> Bools:
    """`test` of each of `values`; when they are all text (or missing), each distinct one is tested once (given
    as `distinct` when known)."""
    if distinct is None and set(map(type, values)) <= _TEXTS:
        distinct = set(values)
    if distinct is not None:
        held = {value: bool(test(value)) for value in distinct}
        return np.fromiter(map(held.__getitem__, values), dtype=np.bool_, count=len(values))
    return np.array([bool(test(value)) for value in values], dtype=np.bool_)


def _dated(leaf: Leaf, contacts: Sequence[Contact]) -> _Dated:
    span = leaf.age if leaf.age is not None else leaf.ahead
    assert span is not None
    read = contact_getter(leaf.field)
    moments = [as_moment(read(contact)) for contact in contacts]
    when = np.array([micros(moment) if moment is not None else 0 for moment in moments], dtype=np.int64)
    dated = np.array([moment is not None for moment in moments], dtype=np.bool_)
    return _Dated(when, dated, leaf.ahead is not None, span.bounds())
