"""Conditions compiled once into plain predicates, so scoring a contact costs a few function calls per rule.

Values are compared the way CRMs store them: HubSpot sends every property as a string, so ``"250"`` matches a
range and ``"true"`` equals true. Text compares case-insensitively unless the condition says otherwise. A list
value (a multi-select) matches when any of its items does.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from operator import attrgetter
from typing import Any

from leadpulse.core.engine.rules import (
    ACTIVITY_ATTRIBUTES,
    CONTACT_ATTRIBUTES,
    AllOf,
    AnyOf,
    Leaf,
    NotOf,
    Range,
    leaves,
)
from leadpulse.core.model import utc

Predicate = Callable[[Any], bool]
Getter = Callable[[Any], Any]


def contact_getter(name: str) -> Getter:
    """How a rule reads field `name` off a `Contact`."""
    if name.startswith("raw."):
        key = name[4:]
        return lambda contact: contact.raw.get(key)
    if name in CONTACT_ATTRIBUTES:
        return attrgetter(name)
    field = name.removeprefix("fields.")
    return lambda contact: contact.fields.get(field)


def contact_field_key(name: str) -> str | None:
    """The key of `Contact.fields` that field `name` reads, or None if it reads the contact or its raw properties."""
    if name.startswith("raw.") or name in CONTACT_ATTRIBUTES:
        return None
    return name.removeprefix("fields.")


#: Where an activity row (see `leadpulse.core.engine.scoring.ActivityRow`) keeps the attributes a ``where``
#: condition may name.
_ROW_POSITIONS = {"id": 1, "kind": 2, "vendor_type": 4}


def activity_row_getter(name: str) -> Getter:
    """How a ``where`` condition reads field `name` off ``(activity row, parsed attributes)``."""
    key = attribute_key(name)
    if key is None:
        position = _ROW_POSITIONS[name]
        return lambda view: view[0][position]
    return lambda view: view[1].get(key)


def attribute_key(name: str) -> str | None:
    """The key of an activity's attributes that field `name` reads, or None if it reads the activity itself."""
    return None if name in ACTIVITY_ATTRIBUTES else name.removeprefix("attributes.")


def keyed_test(condition: Any, key_of: Callable[[str], str | None]) -> tuple[str, Predicate] | None:
    """For a condition whose fields all read one value by key from a mapping (``key_of`` says which key a field
    name reads, if any): that key and the condition as a test of the value, so a hot loop reads it itself. None
    for any other condition."""
    if is_timed(condition):
        return None
    keys = {key_of(name) for name in _fields(condition)}
    key = keys.pop() if len(keys) == 1 else None
    return None if key is None else (key, compile_condition(condition, None))


def _fields(condition: Any) -> Iterator[str]:
    if isinstance(condition, AllOf | AnyOf):
        for child in condition.all if isinstance(condition, AllOf) else condition.any:
            yield from _fields(child)
    elif isinstance(condition, NotOf):
        yield from _fields(condition.not_)
    else:
        yield condition.field


def is_timed(condition: Any) -> bool:
    """Whether `condition` reads a date against the moment scored (``age``, ``ahead``) anywhere in it."""
    return any(leaf.timed for leaf in leaves(condition))


def compile_condition(condition: Any, getter: Callable[[str], Getter] | None, *, timed: bool = False) -> Predicate:
    """`condition` as a predicate of what `getter` reads fields off, or (no getter) of the one value its fields
    all read. A `timed` one is a predicate of ``(item, moment)``, the moment a date's age is taken at."""
    if isinstance(condition, AllOf | AnyOf):
        every = isinstance(condition, AllOf)
        children = condition.all if isinstance(condition, AllOf) else condition.any
        parts = [compile_condition(child, getter, timed=timed) for child in children]
        if len(parts) == 2:  # the usual size, without a generator per call
            first, second = parts
            if every:
                return lambda item: first(item) and second(item)
            return lambda item: first(item) or second(item)
        if every:
            return lambda item: all(part(item) for part in parts)
        return lambda item: any(part(item) for part in parts)
    if isinstance(condition, NotOf):
        inner = compile_condition(condition.not_, getter, timed=timed)
        return lambda item: not inner(item)
    if condition.timed:
        if not timed or getter is None:
            raise ValueError(f"{condition.operator()} reads a date against the moment scored: compile it timed")
        at_moment, read_at = moment_test(condition), getter(condition.field)
        return lambda pair: at_moment(read_at(pair[0]), pair[1])
    test = value_test(condition)
    if getter is None:
        return (lambda pair: test(pair[0])) if timed else test
    read = getter(condition.field)
    if timed:
        return lambda pair: test(read(pair[0]))
    return lambda item: test(read(item))


def moment_test(leaf: Leaf) -> Callable[[Any, datetime], bool]:
    """What an ``age`` or ``ahead`` leaf asks of the date it reads, at a moment: how long before the moment the
    date is (age), or how long after (ahead), within the leaf's bounds. A value that is no date matches neither."""
    span = leaf.age if leaf.age is not None else leaf.ahead
    assert span is not None
    inside = _range_test(Range(**span.bounds()))
    forward = leaf.ahead is not None

    def test(value: Any, moment: datetime) -> bool:
        when = as_moment(value)
        if when is None:
            return False
        days = ((when - moment) if forward else (moment - when)).total_seconds() / 86400
        return days >= 0 and inside(days)

    return test


def crossings(leaf: Leaf, value: Any) -> list[datetime]:
    """The moments at which an ``age`` or ``ahead`` leaf's answer for `value` may change: one per bound (a hair
    after it, so a bound that excludes its moment has been crossed then)."""
    span = leaf.age if leaf.age is not None else leaf.ahead
    when = as_moment(value)
    if span is None or when is None:
        return []
    sign = -1 if leaf.ahead is not None else 1
    return [when + _HAIR, *(when + sign * timedelta(days=days) + _HAIR for days in span.bounds().values())]


_HAIR = timedelta(microseconds=1)


def as_moment(value: Any) -> datetime | None:
    """A date field's value as a UTC moment: a datetime or date, ISO text (``2025-03-01``,
    ``2025-03-01T09:30:00Z``), or epoch milliseconds (HubSpot's date properties); None for anything else."""
    if isinstance(value, datetime):
        return utc(value)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit() and len(text) >= 11:
            return datetime.fromtimestamp(int(text) / 1000, UTC)
        try:
            return utc(datetime.fromisoformat(text.replace("Z", "+00:00")))
        except ValueError:
            return None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 10**11:
        return datetime.fromtimestamp(value / 1000, UTC)
    return None


def value_test(leaf: Leaf) -> Callable[[Any], bool]:
    """What `leaf` asks of the value it reads."""
    op = leaf.operator()
    if op == "exists":
        return _present
    if op == "missing":
        return lambda value: not _present(value)
    if leaf.range is not None:
        return _text_memo(_range_test(leaf.range))
    if leaf.regex is not None:
        pattern = re.compile(leaf.regex, 0 if leaf.case_sensitive else re.IGNORECASE)
        return _each(lambda item: pattern.search(item) is not None)
    if leaf.contains is not None:
        needle = leaf.contains
        if leaf.case_sensitive:
            return _each(lambda item: needle in item)
        folded = _fold(needle, False)
        return _each(lambda item: folded in item.casefold())
    wanted = (leaf.equals,) if op == "equals" else leaf.in_
    return _each(_member_test(wanted or (), leaf.case_sensitive))


#: Distinct texts remembered per condition: a rescore meets the same titles and countries again and again.
_MEMO_LIMIT = 50_000


def _each(test: Callable[[str], bool]) -> Callable[[Any], bool]:
    """`test` of a text applied to a value: a list (a multi-select) matches when any item does, None never."""

    def each(value: Any) -> bool:
        if value is None:
            return False
        if isinstance(value, list | tuple | set | frozenset):
            return any(test(_text(item)) for item in value)
        return test(_text(value))

    return _text_memo(each)


def _text_memo(test: Callable[[Any], bool]) -> Callable[[Any], bool]:
    """`test`, remembering its answer per text (it must be a pure function of the value)."""
    memo: dict[str, bool] = {}

    def check(value: Any) -> bool:
        if value.__class__ is not str:
            return test(value)
        known = memo.get(value)
        if known is None:
            known = test(value)
            if len(memo) < _MEMO_LIMIT:
                memo[value] = known
        return known

    return check


def _member_test(wanted: tuple[Any, ...], case_sensitive: bool) -> Callable[[Any], bool]:
    texts = {_fold(value, case_sensitive) for value in wanted if isinstance(value, str)}
    flags = {value for value in wanted if isinstance(value, bool)}
    numbers = {float(value) for value in wanted if isinstance(value, int | float) and not isinstance(value, bool)}

    def test(item: str) -> bool:
        if (item if case_sensitive else item.casefold()) in texts:
            return True
        if flags and _flag(item) in flags:
            return True
        return bool(numbers) and _number(item) in numbers

    return test


def _range_test(bounds: Range) -> Callable[[Any], bool]:
    low, above, below, high = bounds.min, bounds.above, bounds.below, bounds.max
    read: Callable[[Any], Any] = as_moment if bounds.dated else _number

    def test(value: Any) -> bool:
        number = read(value)
        if number is None:
            return False
        if low is not None and number < low:
            return False
        if above is not None and number <= above:
            return False
        if below is not None and number >= below:
            return False
        return high is None or number <= high

    return test


def _present(value: Any) -> bool:
    if value is None:
        return False
    if isinstance(value, str):
        return value.strip() != ""
    if isinstance(value, list | tuple | set | frozenset | dict):
        return len(value) > 0
    return True


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _fold(text: str | None, case_sensitive: bool) -> str:
    return (text or "") if case_sensitive else (text or "").casefold()


def _flag(text: str) -> bool | None:
    return {"true": True, "false": False, "1": True, "0": False, "yes": True, "no": False}.get(text.strip().lower())


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(str(value).strip().replace(",", ""))
    except ValueError:
        return None
