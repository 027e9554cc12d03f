"""Client-side rate budgets: keep a tenant under its CRM's limits so steady-state sync never sees a 429.

A `RateBudget` holds one or more rolling windows (HubSpot's 190 calls / 10 s, its search limit, Pipedrive's
burst window ...). `acquire` blocks on the injected clock until every window the call counts against has room.

One budget serves one CRM account (one token at one API) for the life of the process: `shared_budget` hands
every run of a tenant the same one, so back-to-back runs, or tenants sharing a token, count against the same
windows as the CRM does.

A slot is held from the moment a call is sent until the window has passed since its answer came back. The
server counts a call when it arrives, which is after it was sent and before it was answered, so measuring from
the answer is always on the safe side of the server's own window, whatever the latency.

A process knows only its own calls; `recall` tells a fresh budget those of the process before it (killed
mid-run, say), as the tenant's `CallJournal` kept them, so a rerun does not find the window already spent.
"""

from __future__ import annotations

import hashlib
import threading
from collections import deque
from collections.abc import Hashable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from leadpulse.core.clock import Clock, SystemClock
from leadpulse.core.contract import JournaledCall


@dataclass(frozen=True, slots=True)
class Window:
    """At most `calls` calls per rolling `seconds`, for the calls tagged `scope` (``"*"`` counts every call)."""

    calls: int
    seconds: float
    scope: str = "*"

    def __post_init__(self) -> None:
        if self.calls < 1 or self.seconds <= 0:
            raise ValueError(f"a rate window needs calls >= 1 and seconds > 0, got {self.calls}/{self.seconds}s")


class _Slots:
    def __init__(self, window: Window) -> None:
        self.window = window
        self.done: deque[float] = deque()
        self.in_flight = 0

    def wait_needed(self, now: float) -> float:
        while self.done and self.done[0] + self.window.seconds <= now:
            self.done.popleft()
        if len(self.done) + self.in_flight < self.window.calls:
            return 0.0
        if not self.done:
            return self.window.seconds  # every slot is in flight: wait for one to finish
        return self.done[0] + self.window.seconds - now


class RateBudget:
    """Rolling windows shared by every call a connector makes for one tenant."""

    def __init__(self, windows: Sequence[Window], *, clock: Clock | None = None) -> None:
        self.clock = clock or SystemClock()
        self._slots = [_Slots(w) for w in windows]
        self._lock = threading.Condition()
        self._paused_until = float("-inf")
        #: no call made or recalled yet: what another process made may still be told (`recall`)
        self._fresh = True

    @property
    def windows(self) -> list[Window]:
        return [s.window for s in self._slots]

    def longest(self, scope: str = "default") -> float:
        """The longest window that counts `scope`: the most a wait for room can take."""
        return max((s.window.seconds for s in self._matching(scope)), default=0.0)

    def recall(self, calls: Iterable[JournaledCall]) -> None:
        """Count `calls`, made by another process, in the windows they still weigh on, as if answered when they
        were (a call with no answer noted, now). Only a budget that has neither made nor recalled a call listens:
        one that has knows its process's calls already."""
        with self._lock:
            if not self._fresh:
                return
            self._fresh = False
            for call in calls:
                # the call's age first, then the moment it is counted back from: a pause between the two (a busy
                # machine, thousands of calls) makes the call look younger, so its slot is held longer, never freed
                # before the CRM frees it
                ago = max(0.0, self.clock.since(call.answered_at)) if call.answered_at else 0.0
                now = self.clock.monotonic()
                done = now - ago
                for s in self._matching(call.scope):
                    if done + s.window.seconds > now:
                        s.done.append(done)
            for s in self._slots:
                s.done = deque(sorted(s.done))

    def _matching(self, scope: str) -> list[_Slots]:
        return [s for s in self._slots if s.window.scope in ("*", scope)]

    @contextmanager
    def call(self, scope: str = "default") -> Iterator[None]:
        """Hold one slot in every window that counts `scope` for the duration of a call."""
        slots = self._matching(scope)
        self._acquire(slots)
        try:
            yield
        finally:
            self._release(slots)

    def _acquire(self, slots: list[_Slots]) -> None:
        with self._lock:
            self._fresh = False
            while True:
                now = self.clock.monotonic()
                wait = max([self._paused_until - now, *(s.wait_needed(now) for s in slots)])
                if wait <= 0:
                    for s in slots:
                        s.in_flight += 1
                    return
                self._lock.release()
                try:
                    self.clock.sleep(wait)
                finally:
                    self._lock.acquire()

    def _release(self, slots: list[_Slots]) -> None:
        with self._lock:
            now = self.clock.monotonic()
            for s in slots:
                s.in_flight -= 1
                s.done.append(now)
            self._lock.notify_all()

    def pause(self, seconds: float) -> None:
        """Hold every window for `seconds` (the server said so: Retry-After or remaining 0)."""
        with self._lock:
            self._paused_until = max(self._paused_until, self.clock.monotonic() + seconds)


_SHARED: dict[Hashable, RateBudget] = {}
_SHARED_LOCK = threading.Lock()


def account_key(crm: str, base_url: str, credential: str) -> tuple[str, str, str]:
    """What a CRM counts calls against: the API and the credential (kept only as a digest)."""
    return crm, base_url.rstrip("/"), hashlib.sha256(credential.encode()).hexdigest()[:16]


def shared_budget(key: Hashable, windows: Sequence[Window], clock: Clock) -> RateBudget:
    """The process's budget for `key` (see `account_key`); a new one when the windows or the clock differ."""
    with _SHARED_LOCK:
        budget = _SHARED.get(key)
        if budget is None or budget.clock is not clock or budget.windows != list(windows):
            budget = _SHARED[key] = RateBudget(windows, clock=clock)
        return budget
