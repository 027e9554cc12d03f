"""Clocks the pipeline, budgets and retries read time from, so tests and benchmarks can move time themselves."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """Wall time for timestamps, monotonic seconds for intervals, and a sleep that follows the same clock."""

    def now(self) -> datetime: ...

    def monotonic(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...

    def since(self, moment: datetime) -> float:
        """Monotonic seconds since the wall-clock `moment`: how a process reads a time another process stored."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)

    def since(self, moment: datetime) -> float:
        return (self.now() - moment).total_seconds()


#: the wall clock, for defaults
SYSTEM_CLOCK: Clock = SystemClock()


class ScaledClock:
    """Intervals that run `scale` times faster than real ones: 10 s of rate-limit window pass in 1 s at scale 10.

    Only intervals are scaled (`monotonic`, `sleep`), so a client-side budget and a sandbox started with the
    same time scale agree on what a window is. `now` stays the real wall time: cursors and as-of times are
    compared with the CRM's own timestamps, which a time scale must never run ahead of.
    """

    def __init__(self, scale: float) -> None:
        if scale <= 0:
            raise ValueError(f"time scale must be positive, got {scale}")
        self.scale = scale
        self._real0 = time.monotonic()

    def monotonic(self) -> float:
        return (time.monotonic() - self._real0) * self.scale

    def now(self) -> datetime:
        return datetime.now(UTC)

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds / self.scale)

    def since(self, moment: datetime) -> float:
        return (self.now() - moment).total_seconds() * self.scale


class ManualClock:
    """A clock that moves only when told; `sleep` advances it at once. For tests."""

    def __init__(self, start: datetime) -> None:
        self._now = start
        self._mono = 0.0
        self._lock = threading.Lock()
        self.slept: list[float] = []

    def now(self) -> datetime:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._mono += seconds
            self._now += timedelta(seconds=seconds)

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        if seconds > 0:
            self.advance(seconds)

    def since(self, moment: datetime) -> float:
        return (self._now - moment).total_seconds()
