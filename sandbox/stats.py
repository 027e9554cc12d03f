"""What the sandbox was asked: calls per route and status, and how many it throttled."""
from __future__ import annotations

import threading
from collections import Counter


class Stats:
    """Counts of answered calls. Thread-safe; admin calls are not counted."""

    def __init__(self):
        self._lock = threading.Lock()
        self._calls: Counter[tuple[str, int]] = Counter()
        self._throttled: Counter[str] = Counter()

    def record(self, route: str, status: int, throttled: bool = False) -> None:
        with self._lock:
            self._calls[(route, status)] += 1
            if throttled:
                self._throttled[route] += 1

    def count(self, route: str | None = None, status: int | None = None) -> int:
        """Calls answered, optionally only those to ``route`` and/or with ``status``."""
        with self._lock:
            return sum(n for (r, s), n in self._calls.items()
                       if (route is None or r == route) and (status is None or s == status))

    @property
    def throttled(self) -> int:
        """Calls refused by a rate limit (HubSpot and Pipedrive answer 429, Salesforce 403)."""
        with self._lock:
            return sum(self._throttled.values())

    @property
    def rate_limited(self) -> int:
        """429 answers sent, whatever caused them (a rate limit or an injected fault)."""
        return self.count(status=429)

    def by_route(self) -> dict[str, dict[int, int]]:
        """``{route: {status: calls}}``."""
        table: dict[str, dict[int, int]] = {}
        with self._lock:
            for (route, status), n in sorted(self._calls.items()):
                table.setdefault(route, {})[status] = n
        return table

    def snapshot(self) -> dict:
        """A JSON-able summary (the admin route serves it)."""
        return {"total": self.count(), "throttled": self.throttled, "rate_limited": self.rate_limited,
                "routes": {route: {str(s): n for s, n in by.items()} for route, by in self.by_route().items()}}

    def reset(self) -> None:
        with self._lock:
            self._calls.clear()
            self._throttled.clear()
