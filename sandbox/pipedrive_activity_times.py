"""Generated activities in update-time order, so the v2 activities list pages by update time without a sort.

Neither the generated activities nor the fates drawn with the tenant ever change, so the update times they give
(an activity's own, or the drawn merge that moved it to a survivor, if later) are sorted once, on the first read
that needs them: a second and a half for the 165,000 activities of 20,000 persons, after which a page costs a
bisection and its own activities. What happens while the sandbox runs (an activity edited or added through the
API, a person deleted or merged) touches few activities: the list reads those itself and merges them into this
order (``V2Activities._by_update_time``).
"""
from __future__ import annotations

import bisect
import threading
from array import array
from collections.abc import Collection, Iterator

from .pipedrive_records import Fates
from .pipedrive_wire import ListQuery
from .state import Crm
from .synth import Activity, ActivityKind

Keyed = Iterator[tuple[tuple[int, int], Activity]]


class ActivityTimes:
    """``(update ms, id)`` of every generated activity of a served kind whose records the drawn fates keep."""

    def __init__(self, crm: Crm, served: Collection[ActivityKind]):
        self._crm = crm
        self._served = frozenset(served)
        self._lock = threading.Lock()
        self._sorted: tuple[array, array] | None = None

    def walk(self, query: ListQuery, persons: Collection[int], edited: Collection[int]) -> Keyed:
        """The generated activities in the query's time window that follow its cursor, in its direction, but
        for those ``edited`` and those of ``persons``: their keys may have moved since the index was made."""
        tenant = self._crm.tenant
        for update_ms, activity_id in self._keys_in(query):
            index, slot = tenant.activity_index(activity_id)
            if activity_id not in edited and index not in persons:
                yield (update_ms, activity_id), tenant.activities(index)[slot]

    def _keys_in(self, query: ListQuery) -> Iterator[tuple[int, int]]:
        times, ids = self._index()
        low = 0 if query.since_ms is None else bisect.bisect_left(times, query.since_ms)
        high = len(times) if query.until_ms is None else bisect.bisect_left(times, query.until_ms)
        if query.direction == "asc":
            start = max(low, self._after(times, ids, query.after)) if query.after else low
            return ((times[k], ids[k]) for k in range(start, high))
        stop = min(high, self._before(times, ids, query.after)) if query.after else high
        return ((times[k], ids[k]) for k in range(stop - 1, low - 1, -1))

    @staticmethod
    def _after(times: array, ids: array, key: tuple[int, int]) -> int:
        """The first position whose key is above ``key``."""
        position = bisect.bisect_left(times, key[0])
        while position < len(times) and times[position] == key[0] and ids[position] <= key[1]:
            position += 1
        return position

    @staticmethod
    def _before(times: array, ids: array, key: tuple[int, int]) -> int:
        """One past the last position whose key is below ``key``."""
        position = bisect.bisect_right(times, key[0])
        while position > 0 and times[position - 1] == key[0] and ids[position - 1] >= key[1]:
            position -= 1
        return position

    def _index(self) -> tuple[array, array]:
        with self._lock:
            if self._sorted is None:
                keys = sorted(self._keys())
                self._sorted = array("q", (t for t, _ in keys)), array("q", (i for _, i in keys))
            return self._sorted

    def _keys(self) -> Iterator[tuple[int, int]]:
        tenant = self._crm.tenant
        drawn = Fates(self._crm)  # a fresh Fates knows only the fates drawn with the tenant, never a later one
        for index in range(tenant.size):
            if drawn.records_deleted(index):
                continue
            moved = drawn.moved_ms(index) or 0
            yield from ((max(a.updated_ms, moved), a.id) for a in tenant.activities(index) if a.kind in self._served)
