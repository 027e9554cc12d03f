"""API v2 persons and deals (``/api/v2/...``), as the v2 OpenAPI description documents them."""
from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from .pipedrive_base import PAGING, PipedriveBase
from .pipedrive_records import PIPELINE_ID, STAGES, Deal, deal_of
from .pipedrive_wire import ListQuery, day, page_of, rfc3339
from .server import Request, route
from .synth import DAY_MS, YEAR_MS

HOUR_MS = 3_600_000
READ_OPTIONS = frozenset({"include_fields", "custom_fields", "include_option_labels", "include_labels"})
PERSON_INCLUDES = ("next_activity_id", "last_activity_id", "open_deals_count", "related_open_deals_count",
                   "closed_deals_count", "related_closed_deals_count", "participant_open_deals_count",
                   "participant_closed_deals_count", "email_messages_count", "activities_count",
                   "done_activities_count", "undone_activities_count", "files_count", "notes_count", "followers_count",
                   "won_deals_count", "related_won_deals_count", "lost_deals_count", "related_lost_deals_count",
                   "last_incoming_mail_time", "last_outgoing_mail_time", "marketing_status", "doi_status",
                   "smart_bcc_email")
DEAL_INCLUDES = ("next_activity_id", "last_activity_id", "first_won_time", "products_count", "files_count",
                 "notes_count", "followers_count", "email_messages_count", "activities_count", "done_activities_count",
                 "undone_activities_count", "participants_count", "last_incoming_mail_time", "last_outgoing_mail_time",
                 "smart_bcc_email", "source_lead_id")
PERSON_WRITABLE = frozenset({"name", "first_name", "last_name", "owner_id", "org_id", "emails", "phones", "label_ids",
                             "visible_to", "custom_fields", "marketing_status"})
MARKETING_STATUSES = frozenset({"no_consent", "unsubscribed", "subscribed", "archived"})
#: the person ``include_fields`` the sandbox fills
PERSON_SERVED = ("marketing_status",)
DEAL_STATUSES = ("open", "won", "lost", "deleted")
Keyed = Iterator[tuple[tuple[int, int], Any]]


class V2Records(PipedriveBase):
    """``/api/v2/persons`` and ``/api/v2/deals``."""

    # -- persons ---------------------------------------------------------------------------------------

    @route("GET", "/api/v2/persons", name="persons.list")
    def list_persons(self, request: Request):
        self.check_params(request, PAGING | READ_OPTIONS | {"ids", "owner_id", "org_id", "deal_id"})
        query = self.list_query(request, ("id", "update_time", "add_time"))
        keys, labels = self.custom_keys_arg(request, self.fields), self.labels_args(request)
        included = self.include_arg(request, PERSON_SERVED, PERSON_INCLUDES)
        owner, org, deal = (self.int_arg(request, name) for name in ("owner_id", "org_id", "deal_id"))
        ids = self.ids_arg(request)
        if ids is not None or org is not None or deal is not None:
            candidates = self._person_candidates(ids, org, deal)
            keyed: Keyed = iter(query.ordered([(self._person_key(query, i), i) for i in candidates
                                               if query.in_window(self.crm.updated_ms(i))]))
        else:
            keyed = self._person_keys(query)
        wanted = (lambda i: not self.fates.gone(i)) if owner is None else \
            (lambda i: not self.fates.gone(i) and self.crm.record(i)["owner_id"] == owner)
        indexes, last = page_of(((key, i) for key, i in keyed if wanted(i)), query)
        return self.listing([self.person(i, keys, labels, included) for i in indexes], query, last)

    @route("GET", "/api/v2/persons/{id}", name="persons.get")
    def get_person(self, request: Request):
        self.check_params(request, READ_OPTIONS)
        keys, labels = self.custom_keys_arg(request, self.fields), self.labels_args(request)
        included = self.include_arg(request, PERSON_SERVED, PERSON_INCLUDES)
        return {"success": True, "data": self.person(self._person_id(request), keys, labels, included)}

    @route("PATCH", "/api/v2/persons/{id}", name="persons.update")
    def update_person(self, request: Request):
        index = self._person_id(request)
        if self.fates.gone(index):
            raise self.error(404, "Person not found")
        fault = self.faults.record_fault(request.params["id"])
        if fault:
            raise self.error(fault.status, fault.message, **({"code": fault.code} if fault.code else {}))
        self.crm.write(index, self._person_write(request.json()))
        return {"success": True, "data": self.person(index)}

    def _person_id(self, request: Request) -> int:
        if not request.params["id"].isdigit():
            raise self.error(400, f"id must be an integer, got {request.params['id']!r}")
        return self.contact_index(request.params["id"])

    def person(self, index: int, keys: list[str] | None = None, labels: bool = False,
               included: Iterable[str] = ()) -> dict:
        """One person in the v2 shape, with the `included` fields (``include_fields``) the sandbox serves: a
        person's ``marketing_status`` is what a client set, else subscribed or, for those who opted out,
        unsubscribed."""
        record = self.crm.record(index)
        extra = {"marketing_status": record.get("pipedrive_marketing_status")
                 or ("unsubscribed" if record.get("opted_out") else "subscribed")} if "marketing_status" in included \
            else {}
        person_id = int(self.crm.id_of(index))
        gone = self.fates.gone(index)
        return {
            "id": person_id, "name": f"{record['first_name']} {record['last_name']}".strip(),
            "first_name": record["first_name"], "last_name": record["last_name"],
            "owner_id": record["owner_id"] or self.crm.tenant.owners[0].id, "org_id": self.org_id_of(index),
            "add_time": rfc3339(record["created_ms"]),
            "update_time": rfc3339(self.fates.gone_ms(index) if gone else record["updated_ms"]),
            "emails": record.get("pipedrive_emails") or [{"value": record["email"], "primary": True, "label": "work"}],
            "phones": record.get("pipedrive_phones")
            or [{"value": f"+1 555 {person_id % 10_000_000:07d}", "primary": True, "label": "work"}],
            "is_deleted": gone, "visible_to": record.get("pipedrive_visible_to", 3), "picture_id": None,
            "label_ids": record.get("pipedrive_label_ids", []),
            "custom_fields": self.custom_values(self.fields, record, list(self.fields.custom) if keys is None
                                                else keys, labels),
            **extra,
        }

    def _person_key(self, query: ListQuery, index: int) -> tuple[int, int]:
        value = {"id": index, "update_time": self.crm.updated_ms(index), "add_time": self.crm.created_ms(index)}
        return value[query.sort_by], index

    def _person_candidates(self, ids: list[int] | None, org: int | None, deal: int | None) -> list[int]:
        found: Iterable[int] = range(self.crm.size)
        if ids is not None:
            found = {i for i in map(self.crm.ids.to_index, map(str, ids)) if i is not None and i < self.crm.size}
        if deal is not None:
            owner = self._deal(deal)
            mine = {self.fates.survivor(owner.person_index)} if owner else set()
            found = mine if ids is None else mine & set(found)
        if org is not None:
            found = (i for i in found if self.org_id_of(i) == org)
        return sorted(found)

    def _person_keys(self, query: ListQuery) -> Keyed:
        if query.walks_ids:
            return (((index, index), index) for index in self._walk(query, range(self.crm.size)))
        if query.sort_by == "update_time":
            return self._persons_by_update_time(query)
        found = self.crm.updated_between(*self._time_bounds(query))  # ascending by index, so by id
        if query.sort_by == "id":
            return (((index, index), index) for index in self._walk(query, found))
        return iter(query.ordered([((self.crm.created_ms(i), i), i) for i in found]))

    def _time_bounds(self, query: ListQuery) -> tuple[int, int]:
        """The update times a list covers, inclusive; open ends close where the tenant's data can be."""
        tenant = self.crm.tenant
        low = query.since_ms if query.since_ms is not None else tenant.anchor_ms - 2 * YEAR_MS - DAY_MS
        high = (query.until_ms - 1 if query.until_ms is not None
                else max(self.crm.clock_ms(), tenant.anchor_ms) + DAY_MS)
        return low, high

    def _persons_by_update_time(self, query: ListQuery) -> Keyed:
        """Persons in update-time order, read one time slice at a time so a page costs about its own size."""
        low, high = self._time_bounds(query)
        desc = query.direction == "desc"
        if query.after:
            low, high = (low, min(high, query.after[0])) if desc else (max(low, query.after[0]), high)
        span = HOUR_MS
        while low <= high:
            lo, hi = (max(low, high - span), high) if desc else (low, min(high, low + span))
            found = self.crm.updated_between(lo, hi)
            if len(found) > 8 * query.limit and span > 1000:
                span //= 4
                continue
            yield from query.ordered([((self.crm.updated_ms(i), i), i) for i in found])
            low, high = (low, lo - 1) if desc else (hi + 1, high)
            span *= 2 if len(found) < query.limit else 1

    @staticmethod
    def _walk(query: ListQuery, indexes: Sequence[int]) -> Iterator[int]:
        """Ascending ``indexes`` from the cursor on, in the query's direction."""
        if query.direction == "asc":
            start = bisect.bisect_right(indexes, query.after[1]) if query.after else 0
            return (indexes[k] for k in range(start, len(indexes)))
        stop = bisect.bisect_left(indexes, query.after[1]) if query.after else len(indexes)
        return (indexes[k] for k in range(stop - 1, -1, -1))

    def _person_write(self, body: Any) -> dict:
        """Neutral and vendor fields to store for a PATCH body; 400 naming the first bad field."""
        body = self.write_body(body, PERSON_WRITABLE)
        write = {**self._name_write(body), **self._owner_write(body), **self._contact_write(body)}
        if "custom_fields" in body:
            write.update(self.write_custom(self.fields, body["custom_fields"]))
        return write

    def _name_write(self, body: dict) -> dict:
        if "name" in body:
            first, _, last = self.checked_name(body["name"]).partition(" ")
            return {"first_name": first, "last_name": last}
        if "first_name" in body or "last_name" in body:
            first, last = body.get("first_name"), body.get("last_name")
            if not isinstance(first, str) or not isinstance(last, str) or not (first or last):
                raise self.error(400, "Give name, or both first_name and last_name (not both empty)")
            return {"first_name": first, "last_name": last}
        return {}

    def _owner_write(self, body: dict) -> dict:
        write: dict = {}
        if "owner_id" in body:
            write["owner_id"] = self.checked_owner(body["owner_id"])
        if "org_id" in body:
            self.check_org(body["org_id"])
            write["pipedrive_org_id"] = body["org_id"]
        if "visible_to" in body:
            write["pipedrive_visible_to"] = self.checked_visibility(body["visible_to"])
        if "marketing_status" in body:
            if body["marketing_status"] not in MARKETING_STATUSES:
                raise self.error(400, f"marketing_status must be one of {', '.join(sorted(MARKETING_STATUSES))}")
            write["pipedrive_marketing_status"] = body["marketing_status"]
        return write

    def _contact_write(self, body: dict) -> dict:
        write: dict = {}
        for name in ("emails", "phones"):
            if name in body:
                write[f"pipedrive_{name}"] = items = self._contact_items(name, body[name])
                if name == "emails":
                    write["email"] = next((e["value"] for e in items if e["primary"]), None)
        if "label_ids" in body:
            write["pipedrive_label_ids"] = self.checked_label_ids(body["label_ids"])
        return write

    def _contact_items(self, name: str, items: Any) -> list[dict]:
        """Emails or phones: ``value`` required, ``label`` defaults to work, one primary (the first if none is)."""
        if not isinstance(items, list) or not all(isinstance(i, dict) and isinstance(i.get("value"), str)
                                                  and set(i) <= {"value", "label", "primary"} for i in items):
            raise self.error(400, f"{name} must be an array of {{value, label, primary}} objects")
        if any("primary" in i and not isinstance(i["primary"], bool) for i in items) \
                or sum(bool(i.get("primary")) for i in items) > 1:
            raise self.error(400, f"{name}: primary must be true or false, and at most one may be true")
        checked = [{"value": i["value"], "primary": bool(i.get("primary")), "label": i.get("label") or "work"}
                   for i in items]
        if checked and not any(i["primary"] for i in checked):
            checked[0]["primary"] = True
        return checked

    # -- deals -------------------------------------------------------------------------------------------------

    @route("GET", "/api/v2/deals", name="deals.list")
    def list_deals(self, request: Request):
        self.check_params(request, PAGING | READ_OPTIONS | {"ids", "owner_id", "person_id", "org_id", "pipeline_id",
                                                            "stage_id", "status"})
        query = self.list_query(request, ("id", "update_time", "add_time"))
        if request.args("custom_fields"):
            raise self.error(400, "custom_fields: this company has no deal custom fields")
        self.labels_args(request)
        self.include_arg(request, (), DEAL_INCLUDES)
        wanted = self._deal_filter(request)
        deals = (d for d in self._deals(request, query) if wanted(d) and query.in_window(self._deal_update_ms(d)))
        if query.sort_by == "id":
            keyed: Keyed = (((d.id, d.id), d) for d in deals)
            keyed = keyed if query.direction == "asc" else iter(query.ordered(list(keyed)))
        else:
            keyed = iter(query.ordered([((self._deal_update_ms(d) if query.sort_by == "update_time" else d.add_ms,
                                          d.id), d) for d in deals]))
        found, last = page_of(keyed, query)
        return self.listing([self.deal(d) for d in found], query, last)

    @route("GET", "/api/v2/deals/{id}", name="deals.get")
    def get_deal(self, request: Request):
        self.check_params(request, READ_OPTIONS)
        self.labels_args(request)
        self.include_arg(request, (), DEAL_INCLUDES)
        found = self._deal(int(request.params["id"])) if request.params["id"].isdigit() else None
        if found is None:
            raise self.error(404, "Deal not found")
        return {"success": True, "data": self.deal(found)}

    def _deal(self, deal_id: int) -> Deal | None:
        return deal_of(self.crm, deal_id - 1)

    def _deals(self, request: Request, query: ListQuery) -> Iterator[Deal]:
        """Candidate deals in id order: by ``ids`` or ``person_id`` when given, else over the persons whose
        deals can lie in the time window (a deal changes no later than its person's last touch or merge)."""
        ids, person = self.ids_arg(request), self.int_arg(request, "person_id")
        if ids is not None or person is not None:
            chosen = set(ids) if ids is not None else None
            if person is not None:
                index = self.crm.ids.to_index(str(person))
                mine = set() if index is None else {i + 1 for i in [index, *self.fates.merged_into(index)]}
                chosen = mine if chosen is None else chosen & mine
            found = (self._deal(deal_id) for deal_id in sorted(chosen))
            yield from (d for d in found if d is not None)
            return
        after = query.after[1] if query.after and query.sort_by == "id" and query.direction == "asc" else -1
        for index in self.persons_in_window(query.since_ms):
            if index > after:
                deal = deal_of(self.crm, index)
                if deal is not None:
                    yield deal

    def persons_in_window(self, since_ms: int | None) -> Sequence[int]:
        """Generated persons whose records can have changed at or after ``since_ms``, ascending (all without it):
        those touched, deleted or merged since, and those merged into them."""
        if since_ms is None:
            return range(self.crm.tenant.size)
        generated = self.crm.tenant.size  # a person added later has no generated records
        changed = [*self.crm.touched_since(since_ms), *(i for i in self.fates.changed_since(since_ms) if i < generated)]
        return sorted({*changed, *(m for s in changed for m in self.fates.merged_into(s))})

    def _deal_filter(self, request: Request) -> Callable[[Deal], bool]:
        statuses = set(request.args("status"))
        if not statuses <= set(DEAL_STATUSES):
            raise self.error(400, f"status must be a comma-separated list of {', '.join(DEAL_STATUSES)}")
        owner, org, pipeline, stage = (self.int_arg(request, n) for n in ("owner_id", "org_id", "pipeline_id",
                                                                          "stage_id"))

        def wanted(deal: Deal) -> bool:
            status = "deleted" if self.fates.records_deleted(deal.person_index) else deal.status
            shown = self.deal(deal)
            return ((status in statuses) if statuses else status != "deleted") \
                and (owner is None or shown["owner_id"] == owner) and (org is None or shown["org_id"] == org) \
                and pipeline in (None, PIPELINE_ID) and stage in (None, shown["stage_id"])
        return wanted

    def _deal_update_ms(self, deal: Deal) -> int:
        settled = self.fates.settled_ms(deal.person_index)
        return deal.update_ms if settled is None else max(deal.update_ms, settled)

    def deal(self, deal: Deal) -> dict:
        """One deal in the v2 shape."""
        survivor = self.fates.survivor(deal.person_index)
        record = self.crm.record(survivor)
        owner = record["owner_id"] or self.crm.tenant.owners[0].id
        closed = {"won_time": deal.close_ms if deal.status == "won" else None,
                  "lost_time": deal.close_ms if deal.status == "lost" else None}
        return {
            "id": deal.id, "title": f"{record['company']} deal", "creator_user_id": owner, "owner_id": owner,
            "value": deal.value, "person_id": survivor + 1, "org_id": self.org_id_of(survivor),
            "stage_id": STAGES[deal.status], "pipeline_id": PIPELINE_ID, "currency": "USD",
            "add_time": rfc3339(deal.add_ms), "update_time": rfc3339(self._deal_update_ms(deal)),
            "stage_change_time": rfc3339(deal.update_ms), "status": deal.status, "is_archived": False,
            "is_deleted": self.fates.records_deleted(deal.person_index), "probability": None,
            "lost_reason": deal.lost_reason, "visible_to": 3, "close_time": rfc3339(deal.close_ms),
            "won_time": rfc3339(closed["won_time"]), "lost_time": rfc3339(closed["lost_time"]),
            "local_won_date": day(closed["won_time"]), "local_lost_date": day(closed["lost_time"]),
            "local_close_date": day(deal.close_ms), "expected_close_date": day(deal.add_ms + 60 * DAY_MS),
            "label_ids": [], "origin": "ManuallyCreated", "origin_id": None, "channel": None, "channel_id": None,
            "acv": None, "arr": None, "mrr": None, "custom_fields": {},
        }
