"""Rate limits: rolling windows on an injectable, scalable clock.

A vendor declares its policy as a list of :class:`Window` (name, limit, length, which routes it
covers, what each route costs). :class:`Limits` counts every call against the windows that
cover its route and answers a :class:`Verdict`; the vendor module turns the verdict into its
own headers and its own refusal (HubSpot's 429 body, Salesforce's 403 ``REQUEST_LIMIT_EXCEEDED``...).

Time scale: windows run on a :class:`Clock` in *CRM seconds*. :class:`ScaledClock` moves
``time_scale`` times faster than the wall clock, so with ``time_scale=100`` HubSpot's
10-second window lasts 0.1 s of real time and a daily allowance lasts 14.4 minutes. A client
budget that wants to match must use the same scaled clock. :class:`ManualClock` is for tests:
it moves only when told to, so no test sleeps through a window.

A window may be *scoped* (only calls admitted under that scope count against it: Pipedrive's API
tokens and OAuth apps have burst windows of their own) and *fixed* (``resets_at``: its count empties
at set clock times instead of rolling: a daily budget that renews at midnight).

When limits are disabled, calls are still counted (the headers stay truthful) but never refused.
"""
from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds on the CRM's clock (any origin; only differences matter)."""


class ScaledClock:
    """The wall clock (monotonic), sped up ``time_scale`` times."""

    def __init__(self, time_scale: float = 1.0):
        if time_scale <= 0:
            raise ValueError(f"time_scale must be positive, got {time_scale}")
        self.time_scale = time_scale
        self._origin = time.monotonic()

    def now(self) -> float:
        return (time.monotonic() - self._origin) * self.time_scale


class ManualClock:
    """A clock that moves only when a test calls :meth:`advance`."""

    time_scale = 1.0

    def __init__(self, start: float = 0.0):
        self._now = start

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += seconds


@dataclass(frozen=True)
class Window:
    """At most ``limit`` cost units per rolling ``seconds``, over ``routes`` (None: every route)."""

    name: str
    limit: int
    seconds: float
    routes: frozenset[str] | None = None
    costs: Mapping[str, int] = field(default_factory=dict)
    scope: str | None = None
    """Only calls admitted under this scope count against the window; None: every call."""
    resets_at: float | None = None
    """None: a rolling window. A clock time: a fixed window whose count empties at ``resets_at + k * seconds``."""

    def covers(self, route: str) -> bool:
        return self.routes is None or route in self.routes

    def applies(self, route: str, scope: str | None) -> bool:
        return self.covers(route) and (self.scope is None or self.scope == scope)

    def cost(self, route: str) -> int:
        return self.costs.get(route, 1)


@dataclass(frozen=True)
class WindowState:
    """A window as seen by one call: how much is used and left, and when a unit frees up."""

    window: Window
    used: int
    remaining: int
    reset_seconds: float


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    states: tuple[WindowState, ...]
    refused_by: Window | None = None
    retry_after: float | None = None
    """CRM seconds until the refusing window frees enough room."""

    def state(self, name: str) -> WindowState | None:
        return next((s for s in self.states if s.window.name == name), None)


class _RollingCount:
    """A rolling sum kept as at most ~200 time buckets, so a daily window costs no more than a 10 s one."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.resolution = seconds / 200
        self.buckets: deque[list] = deque()
        self.total = 0

    def used(self, now: float) -> int:
        while self.buckets and self.buckets[0][0] <= now - self.seconds:
            self.total -= self.buckets.popleft()[1]
        return self.total

    def add(self, now: float, cost: int) -> None:
        if self.buckets and now - self.buckets[-1][0] < self.resolution:
            self.buckets[-1][1] += cost
        else:
            self.buckets.append([now, cost])
        self.total += cost

    def frees_in(self, now: float, needed: int) -> float:
        """Seconds until ``needed`` units have left the window."""
        freed = 0
        for at, cost in self.buckets:
            freed += cost
            if freed >= needed:
                return max(0.0, at + self.seconds - now)
        return 0.0


class _FixedCount:
    """A count that empties at every ``resets_at + k * seconds``: a budget renewed at set times, not a rolling one."""

    def __init__(self, seconds: float, resets_at: float):
        self.seconds, self.resets_at = seconds, resets_at
        self.period: int | None = None
        self.total = 0

    def _period(self, now: float) -> int:
        return math.floor((now - self.resets_at) / self.seconds)

    def used(self, now: float) -> int:
        period = self._period(now)
        if period != self.period:
            self.period, self.total = period, 0
        return self.total

    def add(self, now: float, cost: int) -> None:
        self.used(now)
        self.total += cost

    def frees_in(self, now: float, needed: int) -> float:
        """Seconds until the next reset, which frees every unit at once."""
        return self.resets_at + (self._period(now) + 1) * self.seconds - now


class Limits:
    """Counts calls against a vendor's windows; refuses when one is full and limits are enabled."""

    def __init__(self, windows: list[Window], clock: Clock | None = None, enabled: bool = True):
        self.clock = clock or ScaledClock()
        self.enabled = enabled
        self._lock = threading.Lock()
        self._windows: dict[str, Window] = {}
        self._counts: dict[str, _RollingCount | _FixedCount] = {}
        for window in windows:
            self._install(window)

    @property
    def time_scale(self) -> float:
        return getattr(self.clock, "time_scale", 1.0)

    @property
    def windows(self) -> list[Window]:
        return list(self._windows.values())

    def enable(self) -> None:
        self.enabled = True

    def disable(self) -> None:
        self.enabled = False

    def tune(self, name: str, limit: int | None = None, seconds: float | None = None) -> Window:
        """Change one window's limit or length (its count starts afresh)."""
        with self._lock:
            window = self._windows[name]
            window = replace(window, limit=window.limit if limit is None else limit,
                             seconds=window.seconds if seconds is None else seconds)
            self._install(window)
            return window

    def reset(self) -> None:
        """Forget every call counted so far."""
        with self._lock:
            for window in self._windows.values():
                self._install(window)

    def spend(self, name: str, units: int | None = None) -> None:
        """Count `units` (all that is left when None) against window ``name`` as if another client of the same
        account had used them: the window renews as it would anyway."""
        with self._lock:
            window, count = self._windows[name], self._counts[name]
            now = self.clock.now()
            left = max(0, window.limit - count.used(now))
            count.add(now, left if units is None else units)

    def admit(self, route: str, scope: str | None = None) -> Verdict:
        """Count one call to ``route`` made under ``scope``; refused calls count against nothing."""
        with self._lock:
            now = self.clock.now()
            states, refusal = [], None
            for window in self._windows.values():
                if not window.applies(route, scope):
                    continue
                count, cost = self._counts[window.name], window.cost(route)
                used = count.used(now)
                if self.enabled and refusal is None and used + cost > window.limit:
                    refusal = (window, count.frees_in(now, used + cost - window.limit))
                states.append((window, count, used, cost))
            if refusal is None:
                for _, count, _, cost in states:
                    count.add(now, cost)
            return self._verdict(now, states, refusal)

    def _verdict(self, now: float, states: list, refusal) -> Verdict:
        charged = 0 if refusal else 1
        views = tuple(
            WindowState(window, used + cost * charged, max(0, window.limit - used - cost * charged),
                        count.frees_in(now, 1) or window.seconds)
            for window, count, used, cost in states)
        if refusal is None:
            return Verdict(True, views)
        return Verdict(False, views, refused_by=refusal[0], retry_after=refusal[1])

    def usage(self, name: str) -> WindowState | None:
        """How window ``name`` stands now, without counting a call; None when there is no such window."""
        with self._lock:
            window = self._windows.get(name)
            if window is None:
                return None
            now, count = self.clock.now(), self._counts[name]
            used = count.used(now)
            return WindowState(window, used, max(0, window.limit - used), count.frees_in(now, 1) or window.seconds)

    def to_wall_seconds(self, crm_seconds: float) -> float:
        """Real seconds that ``crm_seconds`` on the scaled clock take."""
        return crm_seconds / self.time_scale

    def _install(self, window: Window) -> None:
        self._windows[window.name] = window
        self._counts[window.name] = (_RollingCount(window.seconds) if window.resets_at is None
                                     else _FixedCount(window.seconds, window.resets_at))
