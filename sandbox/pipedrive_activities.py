"""API v2 activities: list, get, create and PATCH (``/api/v2/activities``).

Activities are the tenant's calls, emails, meetings and tasks (notes are a separate object in Pipedrive and
are not served); a call's or meeting's outcome and direction are in its ``note``. A generated activity is
linked to its person's organization. An activity is its primary participant's: those of a deleted person
are deleted with it (not listed, read by id with ``is_deleted: true``); those of a merged person belong to
the survivor from the merge on (every participant reads as the survivor, and the update time moves to the
merge, so an incremental read by update time finds them again).

Writes are checked as v2 checks them: booleans only ``true``/``false``, ids as numbers, dates
``YYYY-MM-DD``, times and durations ``HH:MM[:SS]``; ``person_id`` is read-only (the primary participant sets
it), so it answers 400. Every participant is kept. An activity must have a participant here: the sandbox
keeps activities on persons (Pipedrive allows activities without one).
"""
from __future__ import annotations

import bisect
import heapq
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from .pipedrive_activity_times import ActivityTimes
from .pipedrive_base import PAGING
from .pipedrive_fields import ADDRESS_PARTS
from .pipedrive_v2 import V2Records
from .pipedrive_wire import ListQuery, check_date, check_time, duration, is_int, page_of, parse_rfc3339, rfc3339
from .server import Request, route
from .state import ADDED_ACTIVITY_BASE
from .synth import Activity, ActivityKind

ACTIVITY_TYPES = (("call", "Call"), ("meeting", "Meeting"), ("task", "Task"), ("deadline", "Deadline"),
                  ("email", "Email"), ("lunch", "Lunch"))
KIND_OF_TYPE = {"call": ActivityKind.CALL, "meeting": ActivityKind.MEETING, "lunch": ActivityKind.MEETING,
                "task": ActivityKind.TASK, "deadline": ActivityKind.TASK, "email": ActivityKind.EMAIL}
TYPE_OF_KIND = {ActivityKind.CALL: "call", ActivityKind.MEETING: "meeting", ActivityKind.TASK: "task",
                ActivityKind.EMAIL: "email"}
WRITABLE = frozenset({"subject", "type", "owner_id", "deal_id", "org_id", "due_date", "due_time", "duration", "busy",
                      "done", "location", "participants", "attendees", "public_description", "priority", "note"})
READ_ONLY = frozenset({"person_id"})
NOT_SERVED = frozenset({"lead_id", "project_id"})
ATTENDEE_KEYS = {"email": str, "name": str, "status": str, "is_organizer": bool, "person_id": int, "user_id": int}


class V2Activities(V2Records):
    """``/api/v2/activities`` on top of the persons, deals and organizations of :class:`V2Records`."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._activity_times = ActivityTimes(self.crm, TYPE_OF_KIND)

    @route("GET", "/api/v2/activities", name="activities.list")
    def list_activities(self, request: Request):
        self.check_params(request, PAGING | {"ids", "owner_id", "deal_id", "person_id", "org_id", "done",
                                             "include_fields"})
        query = self.list_query(request, ("id", "update_time", "add_time", "due_date"))
        attendees = bool(self.include_arg(request, ("attendees",), ("attendees",)))
        wanted = self._activity_filter(request)
        keys = ((key, a) for key, a in self._activity_keys(request, query) if wanted(a))
        activities, last = page_of(keys, query)
        return self.listing([self.activity(a, attendees) for a in activities], query, last)

    @route("GET", "/api/v2/activities/{id}", name="activities.get")
    def get_activity(self, request: Request):
        self.check_params(request, {"include_fields"})
        attendees = bool(self.include_arg(request, ("attendees",), ("attendees",)))
        return {"success": True, "data": self.activity(self._activity_by_id(request.params["id"]), attendees)}

    @route("POST", "/api/v2/activities", name="activities.create")
    def create_activity(self, request: Request):
        write = self._activity_write(request.json(), creating=True)
        primary = next(p for p in write["participants"] if p["primary"])
        index = self.live_index(primary["person_id"])
        type_key = write.get("pipedrive_type", "task")
        now = self.crm.clock_ms()
        attributes = {"subject": type_key.capitalize(), "done": False, "pipedrive_type": type_key, "add_ms": now,
                      **write}
        attributes["body"] = attributes.get("note") or ""
        if KIND_OF_TYPE[type_key] is ActivityKind.TASK:
            attributes["status"] = "completed" if attributes["done"] else "not_started"
        owner = write.get("pipedrive_owner_id") or self.crm.record(index)["owner_id"]
        due = attributes.pop("pipedrive_due_ms", now)
        created = self.crm.log_activity(index, KIND_OF_TYPE[type_key], due, owner, attributes, by_api=True)
        return {"success": True, "data": self.activity(created)}

    @route("PATCH", "/api/v2/activities/{id}", name="activities.update")
    def update_activity(self, request: Request):
        current = self._activity_by_id(request.params["id"])
        if self._deleted(current):
            raise self.error(404, "Activity not found")
        write = self._activity_write(request.json(), creating=False)
        if "participants" in write:
            self.live_index(next(p for p in write["participants"] if p["primary"])["person_id"])
        if "done" in write and current.kind is ActivityKind.TASK:
            write["status"] = "completed" if write["done"] else "not_started"
        if "note" in write:
            write["body"] = write["note"] or ""
        if current.id >= ADDED_ACTIVITY_BASE:
            updated = self.crm.update_activity(current.id, **write)
        else:
            with self._lock:
                updated = self._edited[current.id] = replace(
                    current, attributes={**current.attributes, **write},
                    updated_ms=max(self.crm.clock_ms(), current.updated_ms + 1))
        return {"success": True, "data": self.activity(updated)}

    def activity_update_ms(self, activity_id: int) -> int:
        """When an activity last changed as the lists order it, to the millisecond (``update_time`` shows
        seconds): for tests. :raises VendorError: 404 when there is no such activity."""
        return self._updated_ms(self._activity_by_id(str(activity_id)))

    # -- reading -----------------------------------------------------------------------------------------

    def _activity_by_id(self, raw: str) -> Activity:
        found = self._effective(self.crm.activity(int(raw))) if raw.isdigit() else None
        if found is None or found.kind not in TYPE_OF_KIND:
            raise self.error(404, "Activity not found")
        return found

    def _effective(self, activity: Activity | None) -> Activity | None:
        return None if activity is None else self._edited.get(activity.id, activity)

    def _holder(self, activity: Activity) -> int:
        """The person whose activity it was made: its primary participant as written, else its generated person."""
        stored = activity.attributes.get("participants")
        if not stored:
            return activity.contact_index
        primary = next((p["person_id"] for p in stored if p["primary"]), stored[0]["person_id"])
        return self.crm.index_of(str(primary))

    def _deleted(self, activity: Activity) -> bool:
        return self.fates.records_deleted(self._holder(activity))

    def _updated_ms(self, activity: Activity) -> int:
        moved = self.fates.moved_ms(self._holder(activity))
        return activity.updated_ms if moved is None else max(activity.updated_ms, moved)

    def _participants(self, activity: Activity) -> list[dict]:
        """Participants as they read now: a merged person's place is taken by the survivor, once."""
        stored = activity.attributes.get("participants") \
            or [{"person_id": int(self.crm.id_of(activity.contact_index)), "primary": True}]
        shown: dict[int, bool] = {}
        for participant in stored:
            person = self.survivor_id(participant["person_id"])
            shown[person] = shown.get(person, False) or participant["primary"]
        return [{"person_id": person, "primary": primary} for person, primary in shown.items()]

    def _primary_person(self, activity: Activity) -> int:
        return next(p["person_id"] for p in self._participants(activity) if p["primary"])

    def _owner_id(self, activity: Activity) -> int | None:
        return activity.attributes.get("pipedrive_owner_id", activity.owner_id)

    def _org_id(self, activity: Activity) -> int | None:
        if "org_id" in activity.attributes:
            return activity.attributes["org_id"]
        return self.org_id_of(self.fates.survivor(activity.contact_index))

    def _due_ms(self, activity: Activity) -> int:
        return activity.attributes.get("pipedrive_due_ms", activity.occurred_ms)

    def activity(self, activity: Activity, attendees: bool = False) -> dict:
        """One activity in the v2 shape."""
        attributes = activity.attributes
        due = datetime.fromtimestamp(self._due_ms(activity) / 1000, UTC)
        done = activity_done(activity)
        return {
            "id": activity.id, "subject": activity_subject(activity),
            "type": attributes.get("pipedrive_type") or TYPE_OF_KIND[activity.kind],
            "owner_id": self._owner_id(activity), "creator_user_id": activity.owner_id,
            "is_deleted": self._deleted(activity), "add_time": rfc3339(attributes.get("add_ms", activity.occurred_ms)),
            "update_time": rfc3339(self._updated_ms(activity)), "deal_id": attributes.get("deal_id"), "lead_id": None,
            "person_id": self._primary_person(activity), "org_id": self._org_id(activity), "project_id": None,
            "due_date": due.strftime("%Y-%m-%d"), "due_time": due.strftime("%H:%M:%S"),
            "duration": attributes.get("pipedrive_duration") or duration(attributes.get("duration_ms")),
            "busy": attributes.get("busy", False), "done": done,
            "marked_as_done_time": rfc3339(activity.updated_ms) if done else None,
            "location": attributes.get("location"), "participants": self._participants(activity),
            **({"attendees": attributes.get("attendees", [])} if attendees else {}),
            "conference_meeting_client": None, "conference_meeting_url": None, "conference_meeting_id": None,
            "public_description": attributes.get("public_description"), "priority": attributes.get("priority"),
            "note": activity_note(activity),
        }

    def _activity_keys(self, request: Request, query: ListQuery) -> Iterator[tuple[tuple[int, int], Activity]]:
        person, ids = self.int_arg(request, "person_id"), self.ids_arg(request)
        if person is None and ids is None and query.sort_by == "id" and query.direction == "asc":
            after = query.after[1] if query.after else 0
            return (((a.id, a.id), a) for a in self._activities_from(query, after))
        if ids is not None:
            candidates: Iterable[Activity] = (a for a in map(self._effective, map(self.crm.activity, ids)) if a)
        elif person is not None:
            candidates = self._activities_of_person(person)
        elif query.sort_by == "update_time":
            return self._by_update_time(query)
        else:
            candidates = self._activities_from(query, 0)
        value: Callable[[Activity], int] = {
            "id": lambda a: a.id, "update_time": self._updated_ms, "due_date": self._due_ms,
            "add_time": lambda a: a.attributes.get("add_ms", a.occurred_ms)}[query.sort_by]
        return iter(query.ordered([((value(a), a.id), a) for a in candidates if self._served(a, query)]))

    def _by_update_time(self, query: ListQuery) -> Iterator[tuple[tuple[int, int], Activity]]:
        """Served activities in update-time order: the generated ones in the order :class:`ActivityTimes` keeps,
        merged with those whose update time that order cannot know (added or edited through the API, or of a
        person a later deletion or merge changed), read now."""
        persons, edited = self.fates.changed_later(), dict(self._edited)
        generated = self._activity_times.walk(query, persons, edited.keys())
        late = [((self._updated_ms(a), a.id), a) for a in self._late_activities(persons, edited)
                if self._served(a, query)]
        late = query.ordered([(key, a) for key, a in late if query.follows(key)])
        return heapq.merge(generated, late, key=lambda item: item[0], reverse=query.direction == "desc")

    def _late_activities(self, persons: Iterable[int], edited: dict[int, Activity]) -> Iterator[Activity]:
        yield from edited.values()
        yield from self.crm.added_activities()
        for index in persons:
            if index < self.crm.tenant.size:
                yield from (a for a in self.crm.tenant.activities(index) if a.id not in edited)

    def _activities_of_person(self, person_id: int) -> Iterator[Activity]:
        """Activities whose primary participant may be this person: theirs, those of persons merged into them,
        and every activity added or changed through the API."""
        index = self.crm.ids.to_index(str(person_id))
        if index is None or not 0 <= index < self.crm.size or self.fates.gone(index):
            return
        owners = [index, *self.fates.merged_into(index)]
        for owner in owners:
            for activity in self.crm.tenant.activities(owner) if owner < self.crm.tenant.size else ():
                yield self._edited.get(activity.id, activity)
        yield from self.crm.added_activities()
        yield from (a for a in list(self._edited.values()) if a.contact_index not in owners)

    def _activities_from(self, query: ListQuery, after: int) -> Iterator[Activity]:
        """Served activities in the time window with ids above ``after``, in id order: generated ones person by
        person (only persons touched, merged or edited since the window opens can have any), then added ones."""
        tenant = self.crm.tenant
        persons = self.persons_in_window(query.since_ms)
        if query.since_ms is not None:
            edited = {a.contact_index for a in list(self._edited.values())}
            persons = sorted({*persons, *edited})
        if after < ADDED_ACTIVITY_BASE:
            start = bisect.bisect_left(persons, tenant.activity_index(after + 1)[0]) if after else 0
            for index in persons[start:]:
                for activity in tenant.activities(index):
                    activity = self._edited.get(activity.id, activity)
                    if activity.id > after and self._served(activity, query):
                        yield activity
        yield from (a for a in self.crm.added_activities() if a.id > after and self._served(a, query))

    def _served(self, activity: Activity, query: ListQuery) -> bool:
        """Whether an activity is one Pipedrive lists (notes are not activities, deleted ones are not listed)
        and falls in the time window."""
        return activity.kind in TYPE_OF_KIND and not self._deleted(activity) \
            and query.in_window(self._updated_ms(activity))

    def _activity_filter(self, request: Request) -> Callable[[Activity], bool]:
        owner, deal, org, person = (self.int_arg(request, n) for n in ("owner_id", "deal_id", "org_id", "person_id"))
        done = self.bool_arg(request, "done")

        def wanted(a: Activity) -> bool:
            return (owner is None or self._owner_id(a) == owner) and (done is None or activity_done(a) is done) \
                and (deal is None or a.attributes.get("deal_id") == deal) and (org is None or self._org_id(a) == org) \
                and (person is None or self._primary_person(a) == person)
        return wanted

    # -- writing -------------------------------------------------------------------------------------------

    def _activity_write(self, body: Any, creating: bool) -> dict:
        """Attributes to store for a create or PATCH body; 400 naming the first bad field."""
        if not isinstance(body, dict):
            raise self.error(400, "Request body must be a JSON object")
        for names, why in ((READ_ONLY, "is read-only: set a primary participant instead"),
                           (NOT_SERVED, "is not served by this sandbox (no leads or projects)"),
                           (set(body) - WRITABLE - READ_ONLY - NOT_SERVED, "is not an activity field")):
            bad = sorted(set(body) & set(names))
            if bad:
                raise self.error(400, f"{', '.join(bad)} {why}")
        write = {**self._link_write(body), **self._time_write(body), **self._text_write(body)}
        if "participants" in body or creating:
            write["participants"] = self._participants_write(body.get("participants"))
        return write

    def _link_write(self, body: dict) -> dict:
        write: dict = {}
        if "type" in body:
            if body["type"] not in KIND_OF_TYPE:
                raise self.error(400, f"Invalid activity type {body['type']!r}; expected a key_string from "
                                      "/v1/activityTypes")
            write["pipedrive_type"] = body["type"]
        if "owner_id" in body:
            if not is_int(body["owner_id"]) or not self.refs().user(body["owner_id"]):
                raise self.error(400, f"owner_id {body['owner_id']!r} is not a user of this company")
            write["pipedrive_owner_id"] = body["owner_id"]
        if "deal_id" in body:
            if body["deal_id"] is not None and (not is_int(body["deal_id"]) or self._deal(body["deal_id"]) is None):
                raise self.error(400, f"deal_id {body['deal_id']!r} is not a deal of this company")
            write["deal_id"] = body["deal_id"]
        if "org_id" in body:
            self.check_org(body["org_id"])
            write["org_id"] = body["org_id"]
        for name in ("busy", "done"):
            if name in body:
                if not isinstance(body[name], bool):
                    raise self.error(400, f"{name} must be true or false, got {body[name]!r}")
                write[name] = body[name]
        if "priority" in body:
            if body["priority"] is not None and not is_int(body["priority"]):
                raise self.error(400, "priority must be a number (an option id of activityFields)")
            write["priority"] = body["priority"]
        return write

    def _time_write(self, body: dict) -> dict:
        write: dict = {}
        try:
            if "due_date" in body or "due_time" in body:
                due_date = check_date(body["due_date"]) if body.get("due_date") is not None else None
                due_time = check_time(body["due_time"]) if body.get("due_time") is not None else "00:00:00"
                if due_date is not None:
                    write["pipedrive_due_ms"] = parse_rfc3339(f"{due_date}T{due_time}Z")
            if "duration" in body:
                write["pipedrive_duration"] = None if body["duration"] is None else check_time(body["duration"])
        except ValueError as exc:
            raise self.error(400, f"Invalid due_date, due_time or duration: {exc}") from None
        return write

    def _text_write(self, body: dict) -> dict:
        write: dict = {}
        for name in ("subject", "note", "public_description"):
            if name in body:
                if body[name] is not None and not isinstance(body[name], str):
                    raise self.error(400, f"{name} must be a string")
                write[name] = body[name]
        if "location" in body:
            location = body["location"]
            if location is not None and (not isinstance(location, dict) or set(location) - set(ADDRESS_PARTS)
                                         or not all(isinstance(v, str) for v in location.values())):
                raise self.error(400, f"location must be an object of {', '.join(ADDRESS_PARTS)} strings")
            write["location"] = None if location is None else {p: location.get(p) for p in ADDRESS_PARTS}
        if "attendees" in body:
            attendees = body["attendees"]
            if not isinstance(attendees, list) or not all(
                    isinstance(a, dict) and all(k in ATTENDEE_KEYS and isinstance(v, ATTENDEE_KEYS[k])
                                                and not (ATTENDEE_KEYS[k] is int and isinstance(v, bool))
                                                for k, v in a.items()) for a in attendees):
                raise self.error(400, "attendees must be an array of {email, name, status, is_organizer, person_id, "
                                      "user_id} objects")
            write["attendees"] = [dict(a) for a in attendees]
        return write

    def _participants_write(self, participants: Any) -> list[dict]:
        if not isinstance(participants, list) or not participants:
            raise self.error(400, "An activity needs participants [{person_id, primary: true}] here (this sandbox "
                                  "keeps activities on persons)")
        if not all(isinstance(p, dict) and set(p) <= {"person_id", "primary"} and is_int(p.get("person_id"))
                   and isinstance(p.get("primary", False), bool) for p in participants):
            raise self.error(400, "participants must be an array of {person_id: number, primary: boolean}")
        if sum(bool(p.get("primary")) for p in participants) > 1:
            raise self.error(400, "At most one participant can be primary")
        refs = self.refs()
        missing = [p["person_id"] for p in participants if not refs.person(p["person_id"])]
        if missing:
            raise self.error(400, f"participants: no person with id {missing[0]}")
        checked = [{"person_id": p["person_id"], "primary": bool(p.get("primary"))} for p in participants]
        if not any(p["primary"] for p in checked):
            checked[0]["primary"] = True
        return checked


# -- activity rendering ------------------------------------------------------------------------------------

def activity_done(activity: Activity) -> bool:
    attributes = activity.attributes
    if "done" in attributes:
        return bool(attributes["done"])
    if activity.kind is ActivityKind.EMAIL:
        return True
    return (attributes.get("status") or attributes.get("outcome")) == "completed"


def activity_subject(activity: Activity) -> str:
    attributes = activity.attributes
    return attributes.get("subject") or attributes.get("title") or activity.kind.value.capitalize()


def activity_note(activity: Activity) -> str | None:
    """Call and meeting outcomes have no field of their own in Pipedrive: reps note them (generated ones carry
    them; one a client created without a note has none)."""
    attributes = activity.attributes
    if "note" in attributes:
        return attributes["note"]
    if activity.kind is ActivityKind.CALL and {"status", "direction"} <= attributes.keys():
        return f"outcome: {attributes['status']}, direction: {attributes['direction']}"
    if activity.kind is ActivityKind.MEETING and "outcome" in attributes:
        return f"outcome: {attributes['outcome']}"
    if activity.kind is ActivityKind.EMAIL and {"status", "direction"} <= attributes.keys():
        return f"direction: {attributes['direction']}, status: {attributes['status']}"
    return attributes.get("body") or None
