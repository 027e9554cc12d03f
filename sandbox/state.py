"""The living CRM: a synthetic tenant plus everything that happened to it since.

The base data is :class:`leadpulse.sandbox.synth.Tenant` (computed, never stored). On top of it this
module keeps only what changed: field overrides per contact, moved ``updated_ms`` stamps,
contacts and activities added later. Vendor routes apply their writes here, and tests use the
same methods between two syncs, as a real tenant's users would.

Contacts are addressed two ways:

- ``index`` (int, 0-based): what vendor modules use internally;
- ``contact_id`` (str): the vendor's id on the wire, translated by the vendor's :class:`IdScheme`.

The public methods (``edit_contact``, ``add_activity``, ``touch``, ``contact``, ``tasks``...)
take and give wire ids, so a test can use whatever the SDK showed it.

A contact record is a flat dict of vendor-neutral fields (see :data:`CONTACT_FIELDS`) plus any
vendor property written to it under the vendor's own name (``leadpulse_score``...).
"""
from __future__ import annotations

import bisect
import random
import threading
import time
from array import array
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace

from .synth import ACTIVITY_SLOTS, Activity, ActivityKind, Tenant

CONTACT_FIELDS = (
    "first_name", "last_name", "email", "title", "company", "industry", "employees", "annual_revenue",
    "country", "source", "lifecycle", "lead_status", "owner_id", "opted_out", "created_ms", "updated_ms",
    "converted", "converted_ms", "email_opens", "email_clicks", "page_views", "form_submissions",
)
ADDED_ACTIVITY_BASE = 10**12
"""Activities added after generation get ids from here up, far above any synthetic id."""


def wall_clock_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True)
class IdScheme:
    """How a vendor spells contact ids on the wire. The default is ``str(index + 1)``."""

    to_id: Callable[[int], str] = lambda index: str(index + 1)
    to_index: Callable[[str], int | None] = lambda contact_id: (
        int(contact_id) - 1 if str(contact_id).isdigit() and int(contact_id) > 0 else None)


class UnknownContact(KeyError):
    """The contact id names no contact of this tenant."""


class Crm:
    """A tenant that changes: writes are applied and move ``updated_ms``.

    Thread-safe: the server's request threads and the test thread share one instance.
    """

    def __init__(self, tenant: Tenant, ids: IdScheme | None = None, clock_ms: Callable[[], int] = wall_clock_ms):
        self.tenant = tenant
        self.ids = ids or IdScheme()
        self.clock_ms = clock_ms
        self._lock = threading.RLock()
        self._size = tenant.size
        self._changes: dict[int, dict] = {}
        self._updated: dict[int, int] = {}
        self._created: dict[int, int] = {}
        self._activities: dict[int, Activity] = {}
        self._activities_of: dict[int, list[int]] = {}
        self._api_tasks: list[int] = []
        self._by_attribute: dict[tuple[ActivityKind, str], dict[str, list[int]]] = {}
        self._next_activity_id = ADDED_ACTIVITY_BASE
        self._by_touch: tuple[array, array] | None = None

    # -- contacts: reads ------------------------------------------------------------------------

    @property
    def size(self) -> int:
        """How many contacts the tenant holds now (generated plus added)."""
        return self._size

    def record(self, index: int) -> dict:
        """The contact's current fields: the generated ones with every write laid over them."""
        values = self.tenant.fields(index)
        changes = self._changes.get(index)
        if changes:
            values.update(changes)
        values["created_ms"] = self._created.get(index, values["created_ms"])
        values["updated_ms"] = self._updated.get(index, values["updated_ms"])
        return values

    def updated_ms(self, index: int) -> int:
        return self._updated.get(index) or self.tenant.last_touch_ms(index)

    def created_ms(self, index: int) -> int:
        return self._created.get(index) or self.tenant.created_ms(index)

    def index_of(self, contact_id: str) -> int:
        """The contact's index, or :class:`UnknownContact`."""
        index = self.ids.to_index(str(contact_id))
        if index is None or not 0 <= index < self._size:
            raise UnknownContact(contact_id)
        return index

    def id_of(self, index: int) -> str:
        return self.ids.to_id(index)

    def contact(self, contact_id: str) -> dict:
        """Current field values of one contact, by wire id (for assertions in tests)."""
        return self.record(self.index_of(contact_id))

    # -- contacts: writes ------------------------------------------------------------------------

    def write(self, index: int, values: dict) -> int:
        """Apply a write to a contact; returns its new ``updated_ms``."""
        with self._lock:
            if not 0 <= index < self._size:
                raise UnknownContact(self.id_of(index))
            self._changes.setdefault(index, {}).update(values)
            return self._stamp(index)

    def _stamp(self, index: int) -> int:
        # Strictly increasing per contact, so a write is always visible to a ">" cursor.
        now = max(self.clock_ms(), self.updated_ms(index) + 1)
        self._updated[index] = now
        return now

    def edit_contact(self, contact_id: str, **fields) -> int:
        """Change fields of a contact as a CRM user would; returns the new ``updated_ms``."""
        return self.write(self.index_of(contact_id), fields)

    def add_contact(self, **fields) -> str:
        """Add a new contact (generated from the seed, then ``fields`` applied); returns its wire id."""
        with self._lock:
            index = self._size
            self._size += 1
            self._created[index] = self.clock_ms()
            self._activities_of[index] = []  # a new contact has no history
            self.write(index, fields)
            return self.id_of(index)

    def touch(self, count: int, seed: int = 0) -> list[str]:
        """Record a page view on ``count`` random contacts so an incremental sync has work; returns their ids."""
        rng = random.Random(seed)
        indexes = rng.sample(range(self._size), min(count, self._size))
        for index in indexes:
            self.write(index, {"page_views": self.record(index)["page_views"] + 1})
        return [self.id_of(index) for index in indexes]

    # -- contacts: time queries for search ---------------------------------------------------------

    def updated_between(self, low_ms: int, high_ms: int) -> list[int]:
        """Indexes of contacts whose ``updated_ms`` lies in [low_ms, high_ms], ascending."""
        times, order = self._touch_index()
        start, stop = bisect.bisect_left(times, low_ms), bisect.bisect_right(times, high_ms)
        moved = self._updated
        found = [i for i in order[start:stop] if i not in moved]
        found += [i for i, at in list(moved.items()) if low_ms <= at <= high_ms]
        return sorted(found)

    def touched_since(self, low_ms: int) -> list[int]:
        """Indexes whose generated activities may be at or after ``low_ms``: those end at the person's last touch
        or, for a person last touched before the history starts, at that start (``Tenant.history_start_ms``)."""
        if low_ms <= self.tenant.history_start_ms:
            return list(range(self.tenant.size))
        times, order = self._touch_index()
        return sorted(order[bisect.bisect_left(times, low_ms):])

    def _touch_index(self) -> tuple[array, array]:
        # Built once, lazily: a million people take a few seconds and most runs never search.
        with self._lock:
            if self._by_touch is None:
                times = array("q", map(self.tenant.last_touch_ms, range(self.tenant.size)))
                order = array("q", sorted(range(self.tenant.size), key=times.__getitem__))  # no million tuples
                self._by_touch = (array("q", (times[i] for i in order)), order)
            return self._by_touch

    # -- activities ------------------------------------------------------------------------------

    def activities(self, index: int) -> list[Activity]:
        """The contact's activities now, oldest first."""
        added = [self._activities[a] for a in self._activities_of.get(index, ())]
        if index >= self.tenant.size:
            return added
        base = self.tenant.activities(index)
        return sorted(base + added, key=lambda a: a.occurred_ms) if added else base

    def activity(self, activity_id: int) -> Activity | None:
        """One activity by id, generated or added; None when there is none."""
        if activity_id >= ADDED_ACTIVITY_BASE:
            return self._activities.get(activity_id)
        index, slot = self.tenant.activity_index(activity_id)
        if not 0 <= index < self.tenant.size:
            return None
        generated = self.tenant.activities(index)
        return generated[slot] if slot < len(generated) else None

    def add_activity(self, contact_id: str, kind: ActivityKind | str, occurred_ms: int | None = None,
                     owner_id: int | None = None, **attributes) -> Activity:
        """Log an activity on a contact as a CRM user would; moves the contact's ``updated_ms``."""
        return self.log_activity(self.index_of(contact_id), ActivityKind(kind), occurred_ms, owner_id, attributes)

    def log_activity(self, index: int, kind: ActivityKind, occurred_ms: int | None, owner_id: int | None,
                     attributes: dict, by_api: bool = False) -> Activity:
        """Vendor-side twin of :meth:`add_activity` taking an index; ``by_api`` marks tasks created by a client."""
        with self._lock:
            now = self.clock_ms()
            activity = Activity(id=self._next_activity_id, contact_index=index, kind=kind,
                                occurred_ms=now if occurred_ms is None else occurred_ms, updated_ms=now,
                                owner_id=owner_id, attributes=dict(attributes))
            self._next_activity_id += 1
            self._activities[activity.id] = activity
            self._activities_of.setdefault(index, []).append(activity.id)
            self._reindex(None, activity)
            if by_api and kind is ActivityKind.TASK:
                self._api_tasks.append(activity.id)
            if not by_api:
                self._stamp(index)
            return activity

    def update_activity(self, activity_id: int, **attributes) -> Activity:
        """Change an added activity's attributes and move its ``updated_ms``."""
        with self._lock:
            old = self._activities[activity_id]
            new = replace(old, attributes={**old.attributes, **attributes},
                          updated_ms=max(self.clock_ms(), old.updated_ms + 1))
            self._activities[activity_id] = new
            self._reindex(old, new)
            return new

    def added_activities(self, kind: ActivityKind | None = None) -> list[Activity]:
        """Activities added since generation, oldest id first."""
        with self._lock:
            return [a for a in self._activities.values() if kind is None or a.kind is kind]

    def added_with(self, kind: ActivityKind, attribute: str, value: object) -> list[Activity]:
        """Added activities of one kind whose ``attribute`` equals ``value`` (compared as text), oldest first.

        Generated activities hold only the neutral attributes, so a vendor's own property (a unique key)
        can only be on added ones. The index of an attribute is built on its first lookup, then kept.
        """
        with self._lock:
            key = (kind, attribute)
            index = self._by_attribute.get(key)
            if index is None:
                index = self._by_attribute[key] = {}
                for activity in self._activities.values():
                    if activity.kind is kind and activity.attributes.get(attribute) is not None:
                        index.setdefault(str(activity.attributes[attribute]), []).append(activity.id)
            return [self._activities[a] for a in sorted(index.get(str(value), ()))]

    def _reindex(self, old: Activity | None, new: Activity) -> None:
        # Only the attributes some lookup asked for are indexed; the caller holds the lock.
        for (kind, attribute), index in self._by_attribute.items():
            if kind is not new.kind:
                continue
            before = None if old is None else old.attributes.get(attribute)
            after = new.attributes.get(attribute)
            if old is not None and before is not None and before != after:
                holders = index[str(before)]
                holders.remove(new.id)
                if not holders:
                    del index[str(before)]
            if after is not None and (old is None or before != after):
                index.setdefault(str(after), []).append(new.id)

    def tasks(self) -> list[Activity]:
        """Tasks that clients created through the API, in creation order."""
        with self._lock:
            return [self._activities[a] for a in self._api_tasks]

    def iter_activities(self, kind: ActivityKind, after_id: int = 0) -> Iterator[Activity]:
        """Every activity of one kind with an id above ``after_id``, ascending by id (paging order)."""
        if after_id < ADDED_ACTIVITY_BASE:
            start = max(0, self.tenant.activity_index(after_id + 1)[0]) if after_id > 0 else 0
            for index in range(start, self.tenant.size):
                for activity in self.tenant.activities(index, kind):
                    if activity.id > after_id:
                        yield activity
        for activity in self.added_activities(kind):
            if activity.id > after_id:
                yield activity

    def activities_touched_since(self, kind: ActivityKind, low_ms: int) -> Iterable[Activity]:
        """Activities of one kind with ``updated_ms >= low_ms``, for search (unsorted)."""
        for index in self.touched_since(low_ms):
            for activity in self.tenant.activities(index, kind):
                if activity.updated_ms >= low_ms:
                    yield activity
        for activity in self.added_activities(kind):
            if activity.updated_ms >= low_ms:
                yield activity


__all__ = ["ACTIVITY_SLOTS", "ADDED_ACTIVITY_BASE", "CONTACT_FIELDS", "Crm", "IdScheme", "UnknownContact"]
