"""HubSpot behind the connector contract, through hubspot-api-client.

Reads: the first run lists every record (``GET /crm/v3/objects/{type}``, engagements with their contact ids
inline); later runs search on the last-modified property from the stored cursor minus a look-back overlap, up
to the run's start, keyset-paged by ``hs_object_id`` so no window ever reaches the 10,000-result search cap.
Search results carry no associations, so each engagement page found by search is followed by one associations
v4 batch read.

A search answers at most four calls a second where a list page goes under the general limit (19 a second on
Professional), so when the first search page's ``total`` says many records changed (the run after a large
write-back re-reads every record it touched), the type's size is asked (a search with no filter) and, when
listing the whole type takes less time at those limits than searching on, the window is read by listing it
instead (`cheaper_door`). The list reads every record as it stands, so a change anyone else made in the
window comes with it; the cursor then moves as after a first run.

The SDK builds and sends every request; answers are read as plain JSON (``_preload_content=False``) rather
than through the SDK's models, because those refuse a whole page when one record lacks a field, and a
malformed record must be skipped and recorded, not fail the page.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any, TypeVar

import urllib3
from hubspot import HubSpot
from hubspot.crm.associations.v4 import (
    BatchInputPublicFetchAssociationsBatchRequest,
    PublicFetchAssociationsBatchRequest,
)
from hubspot.crm.objects import (
    AssociationSpec,
    BatchInputSimplePublicObjectBatchInput,
    BatchInputSimplePublicObjectBatchInputForCreate,
    BatchReadInputSimplePublicObjectId,
    Filter,
    FilterGroup,
    PublicAssociationsForObject,
    PublicObjectId,
    PublicObjectSearchRequest,
    SimplePublicObjectBatchInput,
    SimplePublicObjectId,
    SimplePublicObjectInputForCreate,
)
from hubspot.crm.properties import OptionInput, PropertyCreate, PropertyGroupCreate, PropertyUpdate
from urllib3.util.retry import Retry

from leadpulse.connectors.budget import Window, account_key, shared_budget
from leadpulse.connectors.idempotency import task_token
from leadpulse.connectors.paging import Batch, chunked, dump_cursor, follow, load_cursor
from leadpulse.connectors.retry import ApiCaller, Failure, FailureKind, refusal, retry_after_seconds
from leadpulse.connectors.settings import HubSpotSettings
from leadpulse.core.contract import (
    Connector,
    ConnectorContext,
    Page,
    PropertySpec,
    PropertyWrite,
    SkippedRecord,
    TaskRequest,
    WriteResult,
)
from leadpulse.core.errors import ConnectorError, OutcomeUnknown, QuotaExhausted, SchemaError
from leadpulse.core.model import Activity, ActivityKind, Contact, ContactKind, Outcome

PAGE_SIZE = 100
SEARCH_PER_SECOND = 4  # the docs say four or five a second; the stricter figure is kept
CALLS_PER_10S = {"free": 100, "starter": 100, "professional": 190, "enterprise": 190}
CAPACITY_PACK_CALLS_PER_10S = 250
TASK_TO_CONTACT = 204
#: the task property holding each task's idempotency key (as `task_token` spells it), unique across tasks
TASK_KEY = "leadpulse_task_key"
#: CONTAINS_TOKEN filters one search may OR together (five filter groups)
TOKENS_PER_SEARCH = 5
PROPERTY_GROUP = "leadpulse"
#: search results by id, ascending: the keyset paging of incremental pulls rests on it. HubSpot documents a sort as
#: this object (the SDK's model types it as a string, a form reported as not applied); the SDK sends it as given.
ID_ORDER: Any = {"propertyName": "hs_object_id", "direction": "ASCENDING"}
#: what to do about a request HubSpot refuses as sent (a 4xx other than auth, quota and rate limits)
REFUSED_ADVICE = ("retrying will not help; check crm.connection.base_url and the fields map in the tenant file, "
                  "then run again; if it keeps happening, report it with this message")
#: ... and when what it refuses is a property or group leadpulse writes to
SCHEMA_ADVICE = ("nothing is written until HubSpot takes it: fix what HubSpot names (in its Settings > Properties, or "
                 "in the tenant file's bands and grades), then run again")

T = TypeVar("T")
log = logging.getLogger("leadpulse.hubspot")

CONTACT_PROPERTIES = (
    "email", "firstname", "lastname", "hubspot_owner_id", "lifecyclestage", "hs_lead_status",
    "hs_email_optout", "lastmodifieddate", "createdate", "hs_lifecyclestage_customer_date",
)
DEFAULT_FIELDS = {
    "title": "jobtitle", "company": "company", "industry": "industry", "employees": "numberofemployees",
    "revenue": "annualrevenue", "country": "country", "source": "hs_analytics_source",
    "email_opens": "hs_email_open", "email_clicks": "hs_email_click",
    "page_views": "hs_analytics_num_page_views", "conversions": "num_conversion_events",
}
_NUMBER = re.compile(r"-?\d+(\.\d+)?")
#: moved by every write, leadpulse's own included; kept as `updated_at`, never compared as an input
VOLATILE = frozenset({"lastmodifieddate", "hs_lastmodifieddate"})


@dataclass(frozen=True, slots=True)
class StreamSpec:
    """One object type read as a stream: what to ask for and which property says it changed."""

    name: str
    modified_property: str
    properties: tuple[str, ...]
    engagement: bool


ENGAGEMENT_PROPERTIES = {
    "calls": ("hs_call_direction", "hs_call_status", "hs_call_duration", "hs_call_disposition"),
    "emails": ("hs_email_direction", "hs_email_status", "hs_email_subject"),
    "meetings": ("hs_meeting_outcome", "hs_meeting_title"),
    "notes": (),
    "tasks": ("hs_task_subject", "hs_task_status", "hs_task_priority", "hs_task_type"),
}
ENGAGEMENT_KINDS = {
    "calls": ActivityKind.CALL,
    "meetings": ActivityKind.MEETING,
    "notes": ActivityKind.NOTE,
    "tasks": ActivityKind.TASK,
}
EMAIL_KINDS = {"EMAIL": ActivityKind.EMAIL_SENT, "INCOMING_EMAIL": ActivityKind.EMAIL_REPLY}


class Door(Enum):
    """Where an incremental read finds a type's changed records."""

    #: a search on the last-modified property: the changed records only, under the search limit
    SEARCH = "search"
    #: the list endpoint: every record of the type, under the general limit only
    LIST = "list"


def cheaper_door(changed: int, held: int, *, calls_per_second: float, linked: bool) -> Door:
    """The door that reads `changed` records of a type holding `held` in less time at the portal's limits.

    A search page counts against the search limit and the general one, and on an engagement type (`linked`) it
    is followed by an associations read; a list page counts against the general limit only and carries its
    associations inline. Equal times go to the search, which reads less.
    """
    pages = math.ceil(changed / PAGE_SIZE)
    by_search = max(pages / SEARCH_PER_SECOND, pages * (2 if linked else 1) / calls_per_second)
    by_list = math.ceil(held / PAGE_SIZE) / calls_per_second
    return Door.LIST if by_list < by_search else Door.SEARCH


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _parse_time(value: Any) -> datetime:
    """HubSpot answers ISO-8601 in record envelopes and epoch milliseconds inside properties."""
    if value is None or value == "":
        raise ValueError("missing timestamp")
    text = str(value)
    if text.isdigit():
        return datetime.fromtimestamp(int(text) / 1000, tz=UTC)
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def _coerce(value: Any) -> Any:
    """Property values are all strings on the wire; numbers become numbers so range rules can use them."""
    if value is None or value == "":
        return None
    if isinstance(value, str) and _NUMBER.fullmatch(value):
        return float(value) if "." in value else int(value)
    return value


def classify(exc: Exception) -> Failure:
    """Sort an SDK or transport failure into retry, stop-the-tenant, or the record's own fault."""
    status = getattr(exc, "status", None)
    if status is None or status == 0:
        if isinstance(exc, (urllib3.exceptions.HTTPError, json.JSONDecodeError, OSError)) or status == 0:
            return Failure(FailureKind.RETRY, 0, f"no complete answer from HubSpot ({type(exc).__name__})")
        return Failure(FailureKind.RECORD, -1, f"{type(exc).__name__}: {exc}")
    body = _error_body(getattr(exc, "body", None))
    what = f"HubSpot answered {status} {body.get('category') or body.get('policyName') or ''}".rstrip()
    if status == 401:
        return Failure(FailureKind.AUTH, status, f"{what}: the access token was refused; check that "
                       "crm.secrets.access_token names a valid private-app token")
    if status == 403:
        return Failure(FailureKind.AUTH, status, f"{what}: the private app lacks a scope; grant it "
                       "crm.objects.contacts read/write, crm.schemas.contacts write and the engagement scopes")
    if status == 429 and body.get("policyName") == "DAILY":
        return Failure(FailureKind.QUOTA, status, f"{what}: the daily API allowance is spent; the next run "
                       "resumes from the checkpoint once it refills")
    if status == 429 or status >= 500 or status == 408:
        return Failure(FailureKind.RETRY, status, what, retry_after_seconds(_headers(exc)))
    return Failure(FailureKind.RECORD, status, f"{what}: {body.get('message', '')}".rstrip(": "))


def _headers(exc: Exception) -> Mapping[str, str] | None:
    headers = getattr(exc, "headers", None)
    return dict(headers) if headers else None


def _error_body(raw: Any) -> dict[str, Any]:
    try:
        parsed = json.loads(raw) if raw else {}
    except (TypeError, ValueError):
        return {}
    return parsed if isinstance(parsed, dict) else {}


class HubSpotConnector(Connector):
    name = "hubspot"
    settings_model = HubSpotSettings
    write_batch_size = 100
    task_batch_size = 100

    def __init__(self, context: ConnectorContext) -> None:
        super().__init__(context)
        self.settings = settings = context.settings_of(HubSpotSettings)
        client = HubSpot(
            access_token=context.secrets["access_token"], host=settings.base_url.rstrip("/"), retry=Retry(total=False)
        )
        # Each attribute access builds a fresh urllib3 pool: take every API object once, keep the connections.
        self._objects = client.crm.objects
        self._basic, self._search, self._batch = (
            self._objects.basic_api, self._objects.search_api, self._objects.batch_api)
        self._props = client.crm.properties.core_api
        self._groups = client.crm.properties.groups_api
        self._owners = client.crm.owners.owners_api
        self._assoc = client.crm.associations.v4.batch_api
        calls = CAPACITY_PACK_CALLS_PER_10S if settings.capacity_pack else CALLS_PER_10S[settings.tier]
        self._calls_per_second = calls / 10.0
        self.budget = shared_budget(
            account_key(self.name, settings.base_url, context.secrets["access_token"]),
            [Window(calls, 10.0), Window(SEARCH_PER_SECOND, 1.0, scope="search")], context.clock)
        self.caller = ApiCaller(context.tenant, classify, self.budget, context.stats,
                                allowance=context.call_allowance)
        self.daily_remaining: int | None = None
        #: whether tasks carry their keys in `TASK_KEY` (None until `ensure_properties` found out)
        self._keyed: bool | None = None
        self._timeout = (min(5.0, settings.timeout_seconds), settings.timeout_seconds)
        self._fields = {**DEFAULT_FIELDS, **context.field_map}
        self._specs = self._stream_specs()

    # -- plumbing -------------------------------------------------------------------------------------------

    def _call(self, send: Callable[..., Any], *, scope: str = "default", idempotent: bool = True) -> Any:
        """One call through budget and retries; the answer parsed as JSON (a cut-off body is retried).

        :raises Exception: the SDK's own exception when HubSpot refuses the request as sent (see `classify`).
        """
        if self.daily_remaining is not None and self.daily_remaining <= 0:
            raise QuotaExhausted(self.context.tenant, "HubSpot's daily API allowance is spent; the next run "
                                 "resumes from the checkpoint once it refills")

        def attempt() -> tuple[int, Any]:
            response = send(_preload_content=False, _request_timeout=self._timeout)
            self._note_headers(response.headers)
            data = response.data
            return response.status, json.loads(data) if data else {}

        return self.caller.call(attempt, scope=scope, ok_status=lambda answer: answer[0], idempotent=idempotent)[1]

    def _json(self, what: str, send: Callable[..., Any], *, scope: str = "default") -> Any:
        """A call whose refusal is no one record's fault (a read, a lookup): it ends the run, saying what was asked.

        :raises ConnectorError: HubSpot refused the request as sent (a 4xx other than auth and limits).
        """
        return self._or_refused(what, send, ConnectorError, REFUSED_ADVICE, scope=scope)

    def _or_refused(self, what: str, send: Callable[..., Any], error: type[ConnectorError], advice: str,
                    **call: Any) -> Any:
        """`_call`, a refusal of the request as sent raised as `error`, saying what was asked, why and `advice`."""
        try:
            return self._call(send, **call)
        except Exception as exc:
            reason = refusal(classify(exc))
            if reason is None:
                raise
            raise error(self.context.tenant, f"HubSpot refused {what}: {reason}; {advice}") from exc

    def _note_headers(self, headers: Mapping[str, str]) -> None:
        daily = headers.get("X-HubSpot-RateLimit-Daily-Remaining")
        if daily is not None and daily.isdigit():
            self.daily_remaining = int(daily)

    def _stream_specs(self) -> dict[str, StreamSpec]:
        contact_props = tuple(dict.fromkeys([*CONTACT_PROPERTIES, *self._fields.values()]))
        specs = {"contacts": StreamSpec("contacts", "lastmodifieddate", contact_props, engagement=False)}
        for name, extra in ENGAGEMENT_PROPERTIES.items():
            props = ("hs_timestamp", "hubspot_owner_id", "hs_lastmodifieddate", *extra)
            specs[name] = StreamSpec(name, "hs_lastmodifieddate", props, engagement=True)
        return specs

    # -- pull -----------------------------------------------------------------------------------------------

    def streams(self) -> Sequence[str]:
        return tuple(self._specs)

    def pull(self, stream: str, cursor: str | None, *, started_at: datetime) -> Iterator[Page]:
        spec = self._specs[stream]
        state = load_cursor(cursor)
        if state.get("phase") == "search":
            yield from self._search_pages(spec, state, _ms(started_at))
        else:
            yield from self._list_pages(spec, state, _ms(started_at))

    def _list_pages(self, spec: StreamSpec, state: dict[str, Any], started_ms: int) -> Iterator[Page]:
        until = state.get("until", started_ms)
        associations = ["contacts"] if spec.engagement else None

        def fetch(after: str | None) -> Batch[dict[str, Any]]:
            data = self._json(f"the {spec.name} list", lambda **kw: self._basic.get_page(
                spec.name, limit=PAGE_SIZE, after=after, properties=list(spec.properties),
                associations=associations, archived=False, **kw))
            return Batch(data.get("results", []), data.get("paging", {}).get("next", {}).get("after"))

        for batch in follow(self.context.tenant, f"{spec.name} list", fetch, start=state.get("after")):
            nxt = {"phase": "list", "after": batch.next_token, "until": until} if batch.next_token else None
            yield self._page(spec, batch.items, dump_cursor(nxt or {"phase": "search", "since": until}))

    def _search_pages(self, spec: StreamSpec, state: dict[str, Any], started_ms: int) -> Iterator[Page]:
        since, until = state["since"], state.get("until", started_ms)
        low = since - self.settings.lookback_seconds * 1000
        fresh = "last_id" not in state  # the window's first page, where its door is chosen
        last_id = state.get("last_id", 0)
        while True:
            records, total = self._search_after(spec, low, until, last_id)
            if fresh and self._door(spec, total, len(records)) is Door.LIST:
                yield from self._list_pages(spec, {"until": until}, started_ms)
                return
            fresh = False
            # the total counts the window's records past `last_id`: a full page holding all of them is the last
            more = len(records) == PAGE_SIZE and (total is None or total > PAGE_SIZE)
            if records:
                last_id = max(int(record["id"]) for record in records)
            nxt = {"phase": "search", "since": since, "until": until, "last_id": last_id} if more else None
            if spec.engagement and records:
                records = self._with_contacts(spec.name, records)
            yield self._page(spec, records, dump_cursor(nxt or {"phase": "search", "since": until}))
            if not more:
                return

    def _door(self, spec: StreamSpec, changed: int | None, read: int) -> Door:
        """How to read the `changed` records (None: HubSpot did not say) of a window whose first search page held
        `read` of them. The type's size is asked only when more than one search page is left: up to one, the
        search is done no later than that question would be answered."""
        left = 0 if changed is None else changed - read
        if left <= PAGE_SIZE:
            return Door.SEARCH
        door = cheaper_door(left, self._held(spec), calls_per_second=self._calls_per_second,
                            linked=spec.engagement)
        log.info("tenant %r: %d %s changed since the cursor; read by %s", self.context.tenant, changed,
                 spec.name, door.value)
        return door

    def _held(self, spec: StreamSpec) -> int:
        """How many records of the type the portal holds: the total of a search with no filter."""
        request = PublicObjectSearchRequest(filter_groups=[], properties=["hs_object_id"], limit=1)
        data = self._json(f"the count of {spec.name}",
                          lambda **kw: self._search.do_search(spec.name, request, **kw), scope="search")
        return int(data.get("total") or 0)

    def _search_after(self, spec: StreamSpec, low: int, until: int,
                      last_id: int) -> tuple[list[dict[str, Any]], int | None]:
        """A page of the records changed in [low, until] with ids past `last_id`, and how many there are in all."""
        filters = [
            Filter(property_name=spec.modified_property, operator="GTE", value=str(low)),
            Filter(property_name=spec.modified_property, operator="LTE", value=str(until)),
            Filter(property_name="hs_object_id", operator="GT", value=str(last_id)),
        ]
        request = PublicObjectSearchRequest(
            filter_groups=[FilterGroup(filters=filters)], properties=list(spec.properties),
            sorts=[ID_ORDER], limit=PAGE_SIZE)  # keyset paging: every page restarts below the cap
        data = self._json(f"the {spec.name} search", lambda **kw: self._search.do_search(spec.name, request, **kw),
                          scope="search")
        results: list[dict[str, Any]] = data.get("results", [])
        total = data.get("total")
        return results, total if isinstance(total, int) else None

    def _with_contacts(self, object_type: str, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        request = BatchInputPublicFetchAssociationsBatchRequest(
            inputs=[PublicFetchAssociationsBatchRequest(id=r["id"]) for r in records])
        data = self._json(f"the contacts of {object_type}",
                          lambda **kw: self._assoc.get_page(object_type, "contacts", request, **kw))
        linked: dict[str, list[dict[str, str]]] = {}
        for row in data.get("results", []):
            linked[str(row["from"]["id"])] = [{"id": str(to["toObjectId"])} for to in row.get("to", [])]
        return [{**r, "associations": {"contacts": {"results": linked.get(str(r["id"]), [])}}} for r in records]

    def _page(self, spec: StreamSpec, records: list[dict[str, Any]], cursor: str) -> Page:
        contacts: list[Contact] = []
        activities: list[Activity] = []
        outcomes: list[Outcome] = []
        skipped: list[SkippedRecord] = []
        for record in records:
            try:
                if spec.engagement:
                    activities.extend(self._activities(spec.name, record))
                else:
                    contact = self._contact(record)
                    contacts.append(contact)
                    outcomes.append(self._outcome(contact))
            except (KeyError, TypeError, ValueError) as exc:
                skipped.append(SkippedRecord(spec.name, str(record.get("id")) if isinstance(record, dict) else None,
                                             f"malformed {spec.name} record: {type(exc).__name__}: {exc}"))
        return Page(spec.name, cursor, contacts, activities, outcomes, skipped)

    def _contact(self, record: dict[str, Any]) -> Contact:
        props: dict[str, Any] = record["properties"]
        name = " ".join(p for p in (props.get("firstname"), props.get("lastname")) if p) or None
        created = record.get("createdAt") or props.get("createdate")
        return Contact(
            id=str(record["id"]),
            kind=ContactKind.CONTACT,
            updated_at=_parse_time(record.get("updatedAt") or props.get("lastmodifieddate")),
            email=props.get("email") or None,
            name=name,
            owner_id=props.get("hubspot_owner_id") or None,
            status=props.get("lifecyclestage") or None,
            opted_out=str(props.get("hs_email_optout", "")).lower() == "true",
            fields={field: _coerce(props.get(prop)) for field, prop in self._fields.items()},
            raw={k: v for k, v in props.items() if k not in VOLATILE},
            created_at=_parse_time(created) if created else None,
        )

    def _outcome(self, contact: Contact) -> Outcome:
        if contact.status != "customer":
            return Outcome(contact.id, converted=False)
        when = contact.raw.get("hs_lifecyclestage_customer_date")
        return Outcome(contact.id, converted=True, converted_at=_parse_time(when) if when else contact.updated_at)

    def _activities(self, object_type: str, record: dict[str, Any]) -> list[Activity]:
        props: dict[str, Any] = record["properties"]
        occurred = _parse_time(props.get("hs_timestamp"))
        kind = self._activity_kind(object_type, props)
        attributes = {k: _coerce(v) for k, v in props.items() if v not in (None, "") and k not in VOLATILE}
        contacts = record.get("associations", {}).get("contacts", {}).get("results", [])
        return [
            Activity(id=f"{object_type}-{record['id']}-{c['id']}", contact_id=str(c["id"]), kind=kind,
                     occurred_at=occurred, vendor_type=object_type, attributes=attributes)
            for c in {str(c["id"]): c for c in contacts}.values()
        ]

    @staticmethod
    def _activity_kind(object_type: str, props: Mapping[str, Any]) -> ActivityKind:
        if object_type != "emails":
            return ENGAGEMENT_KINDS[object_type]
        if props.get("hs_email_status") == "BOUNCED":
            return ActivityKind.EMAIL_BOUNCE
        return EMAIL_KINDS.get(props.get("hs_email_direction") or "", ActivityKind.OTHER)

    def status_order(self) -> Sequence[str] | None:
        data = self._json("the lifecyclestage property",
                          lambda **kw: self._props.get_by_name("contacts", "lifecyclestage", **kw))
        options = sorted(data.get("options", []), key=lambda o: o.get("displayOrder", 0))
        return [o["value"] for o in options] or None

    def owners(self) -> Mapping[str, str]:
        def fetch(after: str | None) -> Batch[dict[str, Any]]:
            data = self._json("the owners list", lambda **kw: self._owners.get_page(limit=PAGE_SIZE, after=after, **kw))
            return Batch(data.get("results", []), data.get("paging", {}).get("next", {}).get("after"))

        found: dict[str, str] = {}
        for batch in follow(self.context.tenant, "owners", fetch):
            for owner in batch.items:
                name = " ".join(p for p in (owner.get("firstName"), owner.get("lastName")) if p)
                found[str(owner["id"])] = name or owner.get("email") or str(owner["id"])
        return found

    # -- push -----------------------------------------------------------------------------------------------

    def ensure_properties(self, specs: Sequence[PropertySpec]) -> None:
        existing = self._properties_of("contacts")
        for spec in specs:
            if spec.name not in existing:
                self._create_property(spec)
            else:
                self._add_options(spec, existing[spec.name])
        self._ensure_task_key()

    def _properties_of(self, object_type: str) -> dict[str, dict[str, Any]]:
        """The object type's properties by name, its leadpulse property group made first if it has none."""
        groups = self._json(f"the {object_type} property groups",
                            lambda **kw: self._groups.get_all(object_type, **kw)).get("results", [])
        if PROPERTY_GROUP not in {g.get("name") for g in groups}:
            group = PropertyGroupCreate(name=PROPERTY_GROUP, label="leadpulse", display_order=-1)
            self._create_schema(f"{object_type} property group {PROPERTY_GROUP!r}",
                                lambda **kw: self._groups.create(object_type, group, **kw))
        found = self._json(f"the {object_type} properties", lambda **kw: self._props.get_all(object_type, **kw))
        return {p.get("name"): p for p in found.get("results", [])}

    def _ensure_task_key(self) -> None:
        """Give tasks a property whose values HubSpot keeps unique (`TASK_KEY`), holding each task's key: looking
        tasks up by it reads the records themselves (no search lag, one call per 100 keys), and HubSpot refuses a
        second task with the same key. A portal that refuses the property leaves the keys in the task bodies
        alone, where a search finds them, five a call and only once indexed."""
        create = PropertyCreate(name=TASK_KEY, label="leadpulse task key", type="string", field_type="text",
                                group_name=PROPERTY_GROUP, has_unique_value=True,
                                description="Set by leadpulse: the follow-up's idempotency key. Do not edit.")
        try:
            prop = self._properties_of("tasks").get(TASK_KEY)
            if prop is None:
                self._create_schema(f"task property {TASK_KEY!r}",
                                    lambda **kw: self._props.create("tasks", create, **kw))
                # made now, or (409) by another run meanwhile, one killed with its create in flight say: as it is
                prop = self._properties_of("tasks").get(TASK_KEY) or {}
        except SchemaError as exc:
            log.info("HubSpot refused a unique task property (%s); tasks are looked up by searching their bodies",
                     exc)
            self._keyed = False
            return
        self._keyed = bool(prop.get("hasUniqueValue"))

    def _create_property(self, spec: PropertySpec) -> None:
        field_type = {"number": "number", "enumeration": "select"}.get(spec.type, "text")
        options = [OptionInput(label=o, value=o, display_order=i, hidden=False) for i, o in enumerate(spec.options)]
        create = PropertyCreate(name=spec.name, label=spec.label, type=spec.type, field_type=field_type,
                                group_name=PROPERTY_GROUP, options=options or None)
        self._create_schema(f"contact property {spec.name!r}",
                            lambda **kw: self._props.create("contacts", create, **kw))

    def _add_options(self, spec: PropertySpec, prop: Mapping[str, Any]) -> None:
        """Give an existing enumeration the options leadpulse will write that it lacks (a band or grade added or
        renamed in the rules): HubSpot refuses a whole batch naming an unknown option. Its own options are kept,
        as HubSpot replaces the list on update, so values written before stay valid."""
        if prop.get("type") != "enumeration" or prop.get("externalOptions"):
            return
        have = list(prop.get("options") or [])
        known = {o.get("value") for o in have}
        missing = [value for value in spec.options if value not in known]
        if not missing:
            return
        first = max((o.get("displayOrder", -1) for o in have), default=-1) + 1
        options = [OptionInput(label=o.get("label") or o["value"], value=o["value"], hidden=bool(o.get("hidden")),
                               display_order=o.get("displayOrder"), description=o.get("description"))
                   for o in have]
        options += [OptionInput(label=v, value=v, hidden=False, display_order=first + n) for n, v in enumerate(missing)]
        update = PropertyUpdate(options=options)
        self._schema_call(f"adding options {missing} to contact property {spec.name!r}",
                          lambda **kw: self._props.update("contacts", spec.name, update, **kw))

    def _create_schema(self, what: str, send: Callable[..., Any]) -> None:
        """Create a property or group; a 409 means a try whose answer was lost created it already."""
        try:
            self._schema_call(what, send)
        except SchemaError as exc:
            if getattr(exc.__cause__, "status", None) != 409:
                raise

    def _schema_call(self, what: str, send: Callable[..., Any]) -> None:
        self._or_refused(what, send, SchemaError, SCHEMA_ADVICE)

    def write_properties(self, writes: Sequence[PropertyWrite]) -> list[WriteResult]:
        return self._in_halves(writes, self._update_contacts, key=lambda w: w.key)

    def _update_contacts(self, writes: Sequence[PropertyWrite]) -> list[WriteResult]:
        batch = BatchInputSimplePublicObjectBatchInput(inputs=[
            SimplePublicObjectBatchInput(id=w.contact_id, properties={k: wire_value(v) for k, v in w.values.items()})
            for w in writes])
        data = self._call(lambda **kw: self._batch.update("contacts", batch, **kw))
        failed = _failed_ids(data.get("errors", []))
        done = {str(r.get("id")) for r in data.get("results", [])}
        return [
            WriteResult(w.key, ok=False, error=failed[w.contact_id]) if w.contact_id in failed
            else WriteResult(w.key, ok=True, remote_id=w.contact_id) if w.contact_id in done
            else WriteResult(w.key, ok=False, error="HubSpot's answer did not mention this contact")
            for w in writes
        ]

    def _in_halves(self, items: Sequence[T], send: Callable[[Sequence[T]], list[WriteResult]],
                   key: Callable[[T], str]) -> list[WriteResult]:
        """Send `items` as one batch. HubSpot answers 400 for a whole batch when one input is bad, and applies none
        of it; so the halves are sent again, down to single inputs, and only those it refuses fail, with its reason."""
        try:
            return send(items)
        except Exception as exc:
            failure = classify(exc)
            if failure.kind is not FailureKind.RECORD or failure.status < 0:
                raise
            if failure.status != 400 or len(items) == 1:
                return [WriteResult(key(item), ok=False, error=failure.message) for item in items]
        half = len(items) // 2
        return self._in_halves(items[:half], send, key) + self._in_halves(items[half:], send, key)

    def create_tasks(self, tasks: Sequence[TaskRequest]) -> list[WriteResult]:
        try:
            results = self._in_halves(tasks, self._create_task_batch, key=lambda t: t.key)
        except OutcomeUnknown as exc:  # a 5xx or a lost answer: looked up before anything is sent again
            return [WriteResult(t.key, ok=False, error=str(exc), outcome_unknown=True) for t in tasks]
        # HubSpot refuses a task whose key another task holds (`TASK_KEY` is unique): it is there, so it is found
        return [replace(r, outcome_unknown=True) if not r.ok and TASK_KEY in (r.error or "") else r for r in results]

    def _create_task_batch(self, tasks: Sequence[TaskRequest]) -> list[WriteResult]:
        batch = BatchInputSimplePublicObjectBatchInputForCreate(inputs=[self._task_input(t) for t in tasks])
        data = self._call(lambda **kw: self._batch.create("tasks", batch, **kw), idempotent=False)
        by_token = {}
        for row in data.get("results", []):
            for token in re.findall(r"lpk[0-9a-f]{24}", row.get("properties", {}).get("hs_task_body") or ""):
                by_token[token] = str(row["id"])
        return [
            WriteResult(t.key, ok=True, remote_id=by_token[task_token(t.key)]) if task_token(t.key) in by_token
            else WriteResult(t.key, ok=False, error="HubSpot's answer did not confirm this task; it is looked up by "
                             "its key before it is sent again", outcome_unknown=True)
            for t in tasks
        ]

    def _task_input(self, task: TaskRequest) -> SimplePublicObjectInputForCreate:
        properties = {
            "hs_task_subject": task.subject,
            "hs_task_body": f"{task.body}\n\nleadpulse: {task_token(task.key)}",
            "hs_task_status": "NOT_STARTED",
            "hs_task_priority": task.priority.value.upper(),
            "hs_task_type": "TODO",
            "hs_timestamp": str(_ms(task.due_at)),
        }
        if self._keyed:
            properties[TASK_KEY] = task_token(task.key)
        if task.owner_id:
            properties["hubspot_owner_id"] = task.owner_id
        link = PublicAssociationsForObject(
            to=PublicObjectId(id=task.contact_id),
            types=[AssociationSpec(association_category="HUBSPOT_DEFINED", association_type_id=TASK_TO_CONTACT)])
        return SimplePublicObjectInputForCreate(properties=properties, associations=[link])

    def lookup_lag(self) -> timedelta:
        # keyed tasks are read themselves; a search trails the writes by as much as the pull's look-back covers
        return timedelta(0) if self._keyed else timedelta(seconds=self.settings.lookback_seconds)

    def find_tasks(self, tasks: Sequence[TaskRequest]) -> dict[str, str]:
        """One batch read by `TASK_KEY` per 100 keys; without it, one search per five keys."""
        tokens = {task_token(task.key): task.key for task in tasks}
        found: dict[str, str] = {}
        if self._keyed:
            for chunk in chunked(list(tokens), self.task_batch_size):
                request = BatchReadInputSimplePublicObjectId(
                    id_property=TASK_KEY, inputs=[SimplePublicObjectId(id=token) for token in chunk],
                    properties=[TASK_KEY], properties_with_history=[])
                data = self._json("the look-up of tasks by key",
                                  lambda request=request, **kw: self._batch.read("tasks", request, **kw))
                for row in data.get("results", []):
                    token = (row.get("properties") or {}).get(TASK_KEY)
                    if token in tokens:
                        found[tokens[token]] = str(row["id"])
            return found
        for chunk in chunked(list(tokens), TOKENS_PER_SEARCH):
            request = PublicObjectSearchRequest(
                filter_groups=[FilterGroup(filters=[Filter(property_name="hs_task_body", operator="CONTAINS_TOKEN",
                                                           value=token)]) for token in chunk],
                properties=["hs_task_body"], limit=100)
            data = self._json("the search for tasks by key",
                              lambda request=request, **kw: self._search.do_search("tasks", request, **kw),
                              scope="search")
            for row in data.get("results", []):
                body = (row.get("properties") or {}).get("hs_task_body") or ""
                for token in chunk:
                    if token in body:
                        found[tokens[token]] = str(row["id"])
        return found


def wire_value(value: Any) -> str:
    """HubSpot takes every property value as a string."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return "" if value is None else str(value)


def _failed_ids(errors: list[dict[str, Any]]) -> dict[str, str]:
    """Contact id -> reason, from a 207's per-item errors (their ids sit in ``context.ids``)."""
    failed: dict[str, str] = {}
    for error in errors:
        reason = f"{error.get('category', 'ERROR')}: {error.get('message', '')}".strip()
        context = error.get("context") or {}
        for record_id in context.get("ids") or context.get("id") or []:
            failed[str(record_id)] = reason
    return failed
