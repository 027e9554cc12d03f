"""Time as tenant files write it, and the schedules the daemon runs tenants on.

One duration grammar (``90s``, ``15m``, ``2h``, ``7d``, ``6w``, ``3mo``, ``1y`` or a number of seconds; a month is
30 days and a year 365) for every span a tenant file holds: rule windows, half-lives and expiries, task due times,
sync intervals and jitter. Where a rule asks for days (``within_days``, ``inactive_days``...), a plain number is
days and text is read with this grammar. A tenant's
``schedule`` block is an interval (``every``) or a five-field cron line, read as crontab(5) and Kubernetes read
it. `trigger_for` turns it into the APScheduler trigger the daemon runs, and the tenant file's cron line is
checked by the very reading the daemon uses, so a file loads exactly when the daemon can run its schedule.
An interval tenant runs at a fixed place of its interval derived from its name (`name_offset`), the same after
every restart, so many tenants on one interval spread over it instead of falling due at once.
"""

from __future__ import annotations

import hashlib
import random
import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.combining import OrTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from pydantic import BeforeValidator, model_validator

from leadpulse.core.strict import Strict, refuse, show

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(mo|s|m|h|d|w|y)\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "mo": 30 * 86400, "y": 365 * 86400}
DURATION_FORMS = "a duration like 90s, 15m, 2h, 7d, 6w or 3mo"


def parse_duration(value: Any) -> timedelta:
    """``"90s"``, ``"15m"``, ``"2h"``, ``"7d"``, ``"1w"``, ``"3mo"``, ``"1y"``, a number of seconds, or a timedelta
    as it is.

    :raises ValueError: for anything else, a negative number included.
    """
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return timedelta(seconds=value)
    match = _DURATION.match(value) if isinstance(value, str) else None
    if not match:
        raise ValueError(f"expected {DURATION_FORMS}, found {show(value)}")
    return timedelta(seconds=float(match.group(1)) * _UNIT_SECONDS[match.group(2)])


def _duration_in_file(value: Any) -> timedelta:
    try:
        return parse_duration(value)
    except ValueError:
        raise refuse(DURATION_FORMS, show(value)) from None


#: a span in a tenant file, read with `parse_duration`
Duration = Annotated[timedelta, BeforeValidator(_duration_in_file)]


def _days_in_file(value: Any) -> Any:
    """A span where days are asked: a number is days, text a duration (``6w``, ``3mo``), as days."""
    if isinstance(value, str):
        try:
            return parse_duration(value).total_seconds() / 86400
        except ValueError:
            raise refuse(f"a number of days or {DURATION_FORMS}", show(value)) from None
    return value


#: a number of days in a tenant file, given as a number or as a duration (``6w`` is 42)
Days = Annotated[float, BeforeValidator(_days_in_file)]


def format_duration(span: timedelta | None) -> str:
    """A span the way a tenant file writes it, in its largest whole unit: ``2d``, ``36h``, ``45m``, ``90s``."""
    seconds = int(span.total_seconds()) if span else 0
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


class Schedule(Strict):
    """How often the daemon syncs the tenant: `every` (``15m``) or a five-field `cron`, plus random `jitter`."""

    every: Duration | None = None
    cron: str | None = None
    jitter: Duration = timedelta(0)

    @model_validator(mode="after")
    def _one_kind(self) -> Schedule:
        if (self.every is None) == (self.cron is None):
            raise refuse("exactly one of every or cron", "both" if self.every else "neither")
        if self.every is not None and self.every < timedelta(minutes=1):
            raise refuse("an interval of at least 1m", f"{self.every.total_seconds():g}s", ("every",))
        if self.cron is not None:
            _check_cron(self.cron)
        return self

    def describe(self) -> str:
        when = f"every {format_duration(self.every)}" if self.every else f"cron {self.cron!r}"
        return f"{when}, jitter {format_duration(self.jitter)}" if self.jitter else when


def _check_cron(line: str) -> None:
    expected = "a cron line with five fields (minute hour day month weekday)"
    if len(line.split()) != 5:
        raise refuse(expected, show(line), ("cron",))
    try:
        cron_trigger(line)
    except ValueError as exc:
        raise refuse(expected, f"{show(line)} ({exc})", ("cron",)) from None


def trigger_for(schedule: Schedule, *, tenant: str, scale: float = 1.0) -> BaseTrigger:
    """The APScheduler trigger of `tenant`'s ``schedule`` block (``every`` or ``cron``, and ``jitter``).

    An interval runs on a grid fixed by the tenant's name: ``epoch + name_offset + n * every``, so its first run
    after a start comes at its own place of the interval (never all tenants at once) and a restart keeps that
    place. `scale` divides intervals and jitter (a test and benchmark hook); cron lines keep their times.
    """
    jitter = schedule.jitter.total_seconds() / scale or None
    if schedule.cron:
        return cron_trigger(schedule.cron, jitter)
    every = schedule.every.total_seconds() / scale if schedule.every else 0.0
    if every <= 0:
        raise ValueError(f"schedule needs an interval or a cron expression, found {schedule!r}")
    micros = max(1, round(every * 1_000_000))
    start = EPOCH + timedelta(microseconds=name_offset(tenant, micros))
    jitter = min(jitter, every) if jitter else None  # more would let a run pass the next one's grid point
    return GridIntervalTrigger(seconds=every, jitter=jitter, start_date=start, timezone=UTC)


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def name_offset(name: str, span: int) -> int:
    """A whole number in ``[0, span)`` that `name` always gets and that names spread evenly over: where a tenant
    of that name starts within a span of time (a minute of the hour, a microsecond of its interval)."""
    return int(hashlib.sha256(name.encode()).hexdigest(), 16) % span


class GridIntervalTrigger(IntervalTrigger):  # type: ignore[misc]  # APScheduler 3 ships no type hints
    """Runs at ``start_date + n * interval``, each run moved later by a random part of `jitter` (no more than
    the interval), so runs come once an interval on average.

    APScheduler 3's own interval trigger adds the jitter to the previous, already moved, run time, so the
    runs drift: every 1m with 30s of jitter ran every 75s on average.
    """

    def get_next_fire_time(self, previous_fire_time: datetime | None, now: datetime) -> datetime | None:
        # In whole microseconds, not the float seconds APScheduler uses: a first run a microsecond short of its
        # grid point would be followed by a second one at that point.
        if previous_fire_time is None:
            ahead = max(0, -((self.start_date - now) // self.interval))  # grid points up to now, rounded up
            grid: datetime = self.start_date + self.interval * ahead
        else:
            # the scheduler hands back the moved time: step on from the grid point it was moved from
            passed = (previous_fire_time - self.start_date) // self.interval
            grid = self.start_date + self.interval * (passed + 1)
        if self.end_date and grid > self.end_date:
            return None
        return grid + timedelta(seconds=random.uniform(0, self.jitter or 0))


def cron_trigger(expression: str, jitter: float | None = None) -> BaseTrigger:
    """The trigger of a standard five-field cron line, as crontab(5) and Kubernetes CronJobs read it.

    APScheduler 3 counts weekdays from Monday (0) and needs day of month AND day of week to match; cron counts
    from Sunday (0 and 7) and runs when either matches if both are restricted.

    :raises ValueError: if the line is not five fields of numbers, ranges, lists and steps (month and weekday
        names too) within each field's bounds.
    """
    fields = expression.split()
    if len(fields) != 5:
        raise ValueError(f"expected a 5-field cron expression like '*/15 * * * *', found {expression!r}")
    for field, pattern in zip(fields, _CRON_FIELDS, strict=True):
        if not re.fullmatch(rf"{pattern}(,{pattern})*", field.lower()):
            raise ValueError(f"expected numbers, ranges, lists and steps in each field, found {field!r}")
    minute, hour, day, month, weekday = fields
    days = weekday_names(weekday)

    def on(day: str, day_of_week: str, jitter: float | None = None) -> CronTrigger:
        return CronTrigger(minute=minute, hour=hour, day=day, month=month, day_of_week=day_of_week,
                           jitter=jitter, timezone=UTC)

    if day in _ANY or weekday in _ANY:
        return on(day, days, jitter)
    return OrTrigger([on(day, "*"), on("*", days)], jitter=jitter)


#: a field counts as unrestricted only as "*" (a step over it restricts it, as in Kubernetes)
_ANY = frozenset({"*", "*/1"})
_NUMBERS = r"(\*|\d+(-\d+)?)(/\d+)?"
_NAMES = r"(\*|\w+(-\w+)?)(/\d+)?"
_CRON_FIELDS = (_NUMBERS, _NUMBERS, _NUMBERS, _NAMES, _NAMES)
_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


def weekday_names(field: str) -> str:
    """A cron weekday field as APScheduler's day names: cron's 0 and 7 are Sunday, APScheduler's 0 is Monday."""
    if field in _ANY:
        return "*"
    days: set[int] = set()
    for item in field.lower().split(","):
        days |= _weekday_item(item)
    return ",".join(_WEEKDAYS[d] for d in sorted(days))


def _weekday_item(item: str) -> set[int]:
    span, _, step = item.partition("/")
    if span == "*":
        first, last = 0, 6
    else:
        low, _, high = span.partition("-")
        first = _weekday(low)
        # "N/step" runs from N to the end of the week, as Kubernetes reads it
        last = _weekday(high) if high else (6 if step else first)
    if first > last or (step and int(step) < 1):
        raise ValueError(f"expected a weekday range low-high with a step of 1 or more, found {item!r}")
    return {day % 7 for day in range(first, last + 1, int(step or 1))}


def _weekday(token: str) -> int:
    if token.isdigit() and int(token) <= 7:
        return int(token)
    if token in _WEEKDAYS:
        return _WEEKDAYS.index(token)
    raise ValueError(f"expected a weekday 0-7 (0 and 7 are Sunday) or sun-sat, found {token!r}")


