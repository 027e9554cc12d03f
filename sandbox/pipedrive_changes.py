"""Persons deleted and merged while a sync runs, and the v1 recents feed through which a client sees them go.

- ``DELETE /api/v2/persons/{id}`` answers ``{success: true, data: {id}}``; an unknown or gone person answers
  404, as the other person routes do.
- ``PUT /v1/persons/{id}/merge`` with ``{"merge_with_id": N}`` merges person ``{id}`` into person N, as
  Pipedrive's tutorial "Merging two persons" describes it: N survives and keeps its values, taking only the
  fields it has empty from the other, and ``{id}`` is removed. The answer is the survivor in the v1 shape
  plus ``merge_what_id``, the id merged away. Pipedrive's reference prices the merge at 40 tokens.

From then on the person is gone as :mod:`.pipedrive_records` describes a drawn fate: not listed, read by id
with ``is_deleted: true``, refused by PATCH; activities and deal deleted with it, or moved to the survivor
with their update time moved to the merge. Tests do the same with :meth:`PersonChanges.delete_person` and
:meth:`PersonChanges.merge_persons`.

``GET /v1/recents?since_timestamp=YYYY-MM-DD HH:MM:SS&items=person&start=0&limit=100`` lists every person
changed at or after ``since_timestamp`` (written, deleted, merged away, or the survivor of a merge) once, in
their current state, by change time then id: ``{item: "person", id, data: <v1 person>}``. Its
``additional_data`` holds ``since_timestamp`` (the one served), ``last_timestamp_on_page`` (null on an empty
page) and the offset ``pagination``. Since 2024-12-01 Pipedrive gives API clients "a maximum of 1 month of
past data, even if they request data from a date further in the past" (its changelog): a month is
``recents_days`` here, and an older ``since_timestamp`` is served from the start of that window, which the
answer's ``since_timestamp`` names. ``items`` takes Pipedrive's item types; only ``person`` is served here,
another documented type answers 400 rather than being left out, and without ``items`` persons are served.
``limit`` goes up to 500 (Pipedrive's pagination guide); what Pipedrive does above that is not documented, so
``recents_over_limit`` picks: refuse with 400 (the default) or serve 500.

The v1 person, as Pipedrive's v1 answers give it (the merge answer in Pipedrive's reference, and the person
items sync tools read from recents), kept to what a client reads: ``id``, ``name``, ``first_name``,
``last_name``, ``active_flag`` (false once deleted or merged away), ``owner_id`` and ``org_id`` (ids, not
objects), ``email`` and ``phone`` (``[{value, primary, label}]``), ``add_time`` and ``update_time``
(``YYYY-MM-DD HH:MM:SS``, UTC), ``visible_to`` (text, as v1 writes it), ``label_ids``, and each custom field
at the root under its key: text, numbers and dates as they are, an option as its id in text, a set as its
option ids comma-separated, and a field with parts as its ``value`` under the key and each other part under
``{key}_{part}`` (``{key}_currency`` for a monetary field, as the personFields reference says).
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

from .pipedrive_field_routes import FieldRoutes
from .pipedrive_fields import SUBFIELDS
from .pipedrive_wire import LIST_DEFAULT, LIST_MAX, is_int, parse_rfc3339, parse_v1_time, v1_time
from .server import Request, route
from .synth import DAY_MS

RECENT_TYPES = ("activity", "activityType", "deal", "file", "filter", "note", "person", "organization", "pipeline",
                "product", "stage", "user")
"""The item types Pipedrive's recents documents."""
SERVED_TYPES = ("person",)
RECENTS_PARAMS = frozenset({"since_timestamp", "items", "start", "limit"})
LATEST_MS = 2**62


class OverLimit(str, Enum):
    """What a recents call asking for more than 500 items a page gets."""

    REFUSE = "refuse"
    CAP = "cap"


@dataclass(frozen=True)
class RecentsQuery:
    """A recents call's window and page, checked once."""

    since_ms: int
    start: int
    limit: int


class PersonChanges(FieldRoutes):
    """Deleting and merging persons, and ``/v1/recents``, on top of the records, activities and fields."""

    recents_days = 30
    """How far back recents reach (Pipedrive: "a maximum of 1 month of past data" for API clients)."""
    recents_over_limit = OverLimit.REFUSE

    # -- deleting and merging ----------------------------------------------------------------------------

    @route("DELETE", "/api/v2/persons/{id}", name="persons.delete")
    def serve_person_delete(self, request: Request):
        self._person_id(request)
        self.delete_person(request.params["id"])
        return {"success": True, "data": {"id": int(request.params["id"])}}

    @route("PUT", "/v1/persons/{id}/merge", name="v1.persons.merge")
    def serve_person_merge(self, request: Request):
        self._person_id(request)
        body = request.json()
        target = body.get("merge_with_id") if isinstance(body, dict) else None
        if isinstance(target, str) and target.isdigit():
            target = int(target)  # v1 reads numbers written as text
        if not isinstance(body, dict) or set(body) != {"merge_with_id"} or not is_int(target):
            raise self.error(400, "Give merge_with_id: the id (a number) of the person to merge this one into")
        self.merge_persons(request.params["id"], target)
        survivor = self.crm.index_of(str(target))
        return {"success": True, "data": {**self.person_v1(survivor), "merge_what_id": int(request.params["id"])}}

    def delete_person(self, person_id: str) -> int:
        """Delete a live person now, as a user would in the app; returns when (ms).

        :raises VendorError: 404 when no live person has that id.
        """
        with self._lock:
            index = self.live_index(person_id)
            deleted_ms = self.crm.write(index, {})
            self.fates.delete(index, deleted_ms)
        return deleted_ms

    def merge_persons(self, gone_id: str, into_id: str) -> int:
        """Merge person ``gone_id`` into person ``into_id`` now, as a user would in the app; returns when (ms).

        ``into_id`` survives: its values win, its empty fields take ``gone_id``'s, and its update time moves
        to the merge.

        :raises VendorError: 404 when ``gone_id`` is not a live person; 400 when ``into_id`` is not one, or is
            ``gone_id`` itself.
        """
        with self._lock:
            gone = self.live_index(gone_id)
            into = self.crm.ids.to_index(str(into_id))
            if into is None or not 0 <= into < self.crm.size or self.fates.gone(into):
                raise self.error(400, f"merge_with_id {into_id}: no live person has this id (deleted and merged "
                                      "persons cannot be merged into)")
            if into == gone:
                raise self.error(400, f"Person {gone_id} cannot be merged with itself")
            merged_ms = self.crm.write(into, self._fills(gone, into))
            self.fates.merge(gone, into, max(merged_ms, self.crm.updated_ms(gone)))
        return merged_ms

    def _fills(self, gone: int, into: int) -> dict:
        """The survivor's empty custom fields, filled from the merged person's."""
        kept, merged = self.crm.record(into), self.crm.record(gone)
        keys = [field_.store_key for field_ in list(self.fields.custom.values())]
        return {key: merged[key] for key in keys if kept.get(key) is None and merged.get(key) is not None}

    # -- recents -----------------------------------------------------------------------------------------

    @route("GET", "/v1/recents", name="v1.recents.list")
    def list_recents(self, request: Request):
        self.check_params(request, RECENTS_PARAMS)
        self._check_items(request)
        query = self._recents_query(request)
        changes = self._changes_since(query.since_ms)
        page = changes[query.start:query.start + query.limit]
        more = query.start + query.limit < len(changes)
        pagination = {"start": query.start, "limit": query.limit, "more_items_in_collection": more,
                      **({"next_start": query.start + query.limit} if more else {})}
        data = [{"item": "person", "id": int(self.crm.id_of(index)), "data": self.person_v1(index)}
                for _, index in page]
        return {"success": True, "data": data,
                "additional_data": {"since_timestamp": v1_time(query.since_ms),
                                    "last_timestamp_on_page": v1_time(page[-1][0]) if page else None,
                                    "pagination": pagination}}

    def _check_items(self, request: Request) -> None:
        asked = [name.strip() for name in request.args("items")]
        unknown = [name for name in asked if name not in RECENT_TYPES]
        if unknown:
            raise self.error(400, f"items: unknown item type(s) {', '.join(unknown)}; Pipedrive's are "
                                  f"{', '.join(RECENT_TYPES)}")
        not_served = [name for name in asked if name not in SERVED_TYPES]
        if not_served:
            raise self.error(400, f"items: {', '.join(not_served)} not served by this sandbox's recents (it serves "
                                  f"{', '.join(SERVED_TYPES)}); ask for those through their own v2 lists")

    def _recents_query(self, request: Request) -> RecentsQuery:
        raw = request.arg("since_timestamp")
        if not raw:
            raise self.error(400, "since_timestamp is required: a UTC time YYYY-MM-DD HH:MM:SS")
        try:
            asked = parse_v1_time(raw)
        except ValueError:
            raise self.error(400, f"since_timestamp must be a UTC time YYYY-MM-DD HH:MM:SS, got {raw!r}") from None
        limit = self.int_arg(request, "limit")
        limit = LIST_DEFAULT if limit is None else limit
        if limit < 1 or (limit > LIST_MAX and self.recents_over_limit is OverLimit.REFUSE):
            raise self.error(400, f"limit must be between 1 and {LIST_MAX}, got {limit}")
        now = max(self.crm.clock_ms(), self.crm.tenant.anchor_ms)
        earliest = now - self.recents_days * DAY_MS
        earliest -= earliest % 1000  # served and shown in whole seconds
        return RecentsQuery(max(asked, earliest), self.int_arg(request, "start") or 0, min(limit, LIST_MAX))

    def _changes_since(self, since_ms: int) -> list[tuple[int, int]]:
        """(change time, index) of every person changed at or after ``since_ms``, by time then index: written
        ones, those deleted or merged since, and those a drawn merge took into a person last touched since."""
        touched = self.crm.touched_since(since_ms)
        candidates = {*self.crm.updated_between(since_ms, LATEST_MS), *self.fates.changed_since(since_ms),
                      *(merged for survivor in touched for merged in self.fates.merged_into(survivor))}
        changes = ((self._changed_ms(index), index) for index in candidates)
        return sorted(change for change in changes if change[0] >= since_ms)

    def _changed_ms(self, index: int) -> int:
        return self.fates.gone_ms(index) if self.fates.gone(index) else self.crm.updated_ms(index)

    # -- the v1 person -----------------------------------------------------------------------------------

    def person_v1(self, index: int) -> dict:
        """One person in the v1 shape (see the module docstring)."""
        shown = self.person(index)
        custom: dict[str, Any] = {}
        for key, value in shown["custom_fields"].items():
            custom.update(v1_custom(key, self.fields.custom[key].field_type, value))
        return {"id": shown["id"], "name": shown["name"], "first_name": shown["first_name"],
                "last_name": shown["last_name"], "active_flag": not shown["is_deleted"],
                "owner_id": shown["owner_id"], "org_id": shown["org_id"], "email": shown["emails"],
                "phone": shown["phones"], "add_time": v1_time(parse_rfc3339(shown["add_time"])),
                "update_time": v1_time(parse_rfc3339(shown["update_time"])), "visible_to": str(shown["visible_to"]),
                "label_ids": shown["label_ids"], **custom}


def v1_custom(key: str, field_type: str, value: Any) -> dict[str, Any]:
    """A custom field's keys and values in v1, from its v2 value."""
    if field_type in SUBFIELDS:
        parts = value or {}
        return {key: parts.get("value"), **{f"{key}_{code}": parts.get(code)
                                            for code, _, _ in SUBFIELDS[field_type] if code != "value"}}
    if value is None:
        return {key: None}
    if field_type == "enum":
        return {key: str(value)}
    if field_type == "set":
        return {key: ",".join(map(str, value))}
    return {key: value}
