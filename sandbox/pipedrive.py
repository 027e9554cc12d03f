"""Pipedrive's API as pipedrive-python-lib (v1) and a plain HTTP client (v2) see it.

Point the SDK here with ``Client(domain=sb.base_url + "/")`` (its base becomes ``domain + "v1/"``)
and ``client.set_api_token(sb.credentials["api_token"])``; call v2 on ``sb.base_url + "/api/v2/..."``
with the same token in an ``x-api-token`` header, an ``api_token`` query parameter, or as an OAuth
``Authorization: Bearer``. OAuth codes are exchanged at ``POST /oauth/token`` (set the SDK's
``OAUTH_BASE_URL`` to ``sb.base_url + "/oauth/"``; ``client_id``/``client_secret`` are in
``sb.credentials``).

Served:

- v2 persons: list (``cursor``, ``limit`` <= 500, ``updated_since``, ``updated_until``,
  ``owner_id``, ``sort_by`` id|update_time|add_time, ``sort_direction``), get, PATCH;
- v2 activities: list (the same paging and time filters, ``person_id``, ``owner_id``, ``done``,
  ``sort_by`` id|update_time|add_time|due_date) and create;
- v1 personFields (list, create), activityTypes, users and users/me.

Data: person ``id`` is ``index + 1``; firmographics and engagement counts live in person custom
fields whose 40-character keys are derived from the seed (``Pipedrive.field_key(name)``); enum
fields carry option ids, as v2 does. Activities are the tenant's calls, emails, meetings and tasks
(notes are a separate object in Pipedrive and are not served); a call's or meeting's outcome and
direction are in its ``note`` (``"outcome: no_answer, direction: outbound"``). Activities created
here are listed by ``crm.added_activities()`` (tasks also by ``crm.tasks()``).

Timestamps: v2 RFC 3339 (``2025-01-01T10:20:00Z``), v1 ``YYYY-MM-DD HH:MM:SS`` (UTC). Errors:
``{success: false, error, error_info, data: null, additional_data: null}`` (plus ``errorCode`` on
401 and 429). PATCH checks every field and option id and answers 400 for the whole call;
``faults.fail_records`` makes chosen person ids fail alone.

Rate limits per ``tier`` (lite, growth, premium, ultimate; default lite) and ``Pipedrive.seats``
(default 1; ``sb.limits.tune("DAILY", limit=...)`` sets any budget):

- BURST: requests per rolling 2 s, the api-token figures (20/40/100/120; OAuth apps get four
  times as many in reality, but the windows here are shared, so the stricter figure applies);
- DAILY: the token budget, 30,000 x plan multiplier (1/2/5/7) x seats, charged by route cost
  (v2 list 10, v2 get 1, PATCH and POST 5, v1 list 20, v1 create 10);
- WRITES: the 10,000 POST/PUT/PATCH calls a day that ``x-daily-requests-left`` reports.

Headers ``x-ratelimit-limit``, ``x-ratelimit-remaining``, ``x-ratelimit-reset`` (whole CRM
seconds), ``x-daily-requests-left`` on every limited answer. Over a limit: 429
``{success: false, error: "Request over limit", errorCode: 429, ...}`` (the exact text is
unconfirmed). A client that keeps calling after refusals (``HAMMER_REFUSALS`` within
``HAMMER_SECONDS``) is blocked by the edge for ``BLOCK_SECONDS`` with a 403 HTML page, which the
SDK returns as a plain string, not an exception.
"""
from __future__ import annotations

import base64
import bisect
import hashlib
import json
import math
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import Any
from urllib.parse import parse_qs

from .limits import Verdict, Window
from .server import Request, Response, Vendor, VendorError, route
from .state import ADDED_ACTIVITY_BASE
from .synth import COUNTRIES, DAY_MS, INDUSTRIES, LEAD_STATUSES, SOURCES, YEAR_MS, Activity, ActivityKind

BURST, DAILY, WRITES = "BURST", "DAILY", "WRITES"
PLANS = {"lite": (20, 1), "growth": (40, 2), "premium": (100, 5), "ultimate": (120, 7)}
"""plan: (api-token requests per 2 s, daily budget multiplier)."""
BASE_DAILY_TOKENS = 30_000
DAILY_WRITES = 10_000
COSTS = {"persons.list": 10, "persons.get": 1, "persons.update": 5, "activities.list": 10,
         "activities.create": 5, "personFields.list": 20, "personFields.create": 10,
         "activityTypes.list": 20, "users.list": 20, "users.me": 2}
WRITE_ROUTES = frozenset({"persons.update", "activities.create", "personFields.create"})
LIST_DEFAULT, LIST_MAX = 100, 500
ERROR_INFO = "Please check developers.pipedrive.com for more information about Pipedrive API."
FIELD_TYPES = frozenset({"varchar", "varchar_auto", "text", "double", "monetary", "date", "set", "enum", "user",
                         "org", "people", "phone", "time", "timerange", "daterange", "address"})
ACTIVITY_TYPES = (("call", "Call"), ("meeting", "Meeting"), ("task", "Task"), ("deadline", "Deadline"),
                  ("email", "Email"), ("lunch", "Lunch"))
KIND_OF_TYPE = {"call": ActivityKind.CALL, "meeting": ActivityKind.MEETING, "lunch": ActivityKind.MEETING,
                "task": ActivityKind.TASK, "deadline": ActivityKind.TASK, "email": ActivityKind.EMAIL}
TYPE_OF_KIND = {ActivityKind.CALL: "call", ActivityKind.MEETING: "meeting", ActivityKind.TASK: "task",
                ActivityKind.EMAIL: "email"}
HOUR_MS = 3_600_000
PERSON_WRITABLE = frozenset({"name", "owner_id", "org_id", "emails", "phones", "label_ids", "visible_to",
                             "custom_fields"})
BLOCK_PAGE = """<!DOCTYPE html>
<html lang="en-US"><head><title>Access denied | api.pipedrive.com used Cloudflare to restrict access</title></head>
<body><div id="cf-wrapper"><h1>Error 1020</h1><h2>Access denied</h2>
<p>This website is using a security service to protect itself from online attacks.</p>
<p>This error is produced by Cloudflare. See troubleshooting guide
<a href="https://support.cloudflare.com/hc/en-us/articles/360029779472">here</a>.</p></div></body></html>
"""


# -- wire formats ------------------------------------------------------------------------------------

def rfc3339(ms: int | None) -> str | None:
    """v2 timestamps: whole seconds, UTC, ``Z``."""
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def v1_time(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


def parse_rfc3339(text: str) -> int:
    """Milliseconds since the epoch; a time without a zone is UTC. ValueError when malformed."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def encode_cursor(field: str, direction: str, key: tuple[int, int], record_id: int) -> str:
    """Opaque like Pipedrive's: base64 of the last item's sort value and id."""
    raw = json.dumps({"field": field, "fieldValue": key[0], "sortDirection": direction, "id": record_id,
                      "index": key[1]}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, field: str, direction: str) -> tuple[int, int]:
    """The sort key after which the next page starts; ValueError when it is not one of ours."""
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if data["field"] != field or data["sortDirection"] != direction:
            raise ValueError("cursor made for another sort")
        return int(data["fieldValue"]), int(data["index"])
    except (KeyError, TypeError, ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"invalid cursor: {exc}") from None


# -- person custom fields ------------------------------------------------------------------------------

@dataclass(frozen=True)
class CustomField:
    """A person custom field; ``neutral`` names the tenant field it shows, None for fields made by clients."""

    id: int
    key: str
    name: str
    field_type: str
    neutral: str | None = None
    options: tuple[tuple[int, str, Any], ...] = ()
    """(option id, label, neutral value) for enum and set fields."""
    add_ms: int = 0

    def to_wire(self, value: Any) -> Any:
        if value is None:
            return None
        if self.field_type in ("enum", "set"):
            if self.field_type == "set":
                return [self._option_id(item) for item in value]
            return self._option_id(value)
        if self.field_type == "date" and isinstance(value, int):
            return rfc3339(value)[:10]
        return value

    def from_wire(self, value: Any) -> Any:
        """The value to store for a written wire value; ValueError says what was expected."""
        if value is None:
            return None
        if self.field_type == "enum":
            return self._option(value)
        if self.field_type == "set":
            if not isinstance(value, list):
                raise ValueError("expected a list of option ids")
            return [self._option(item) for item in value]
        if self.field_type in ("double", "monetary"):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError("expected a number")
            return value
        if self.field_type == "date":
            return self._date(value)
        if not isinstance(value, str):
            raise ValueError("expected a string")
        return value

    @cached_property
    def _ids(self) -> dict[Any, int]:
        return {neutral: option_id for option_id, _, neutral in self.options}

    @cached_property
    def _values(self) -> dict[int, Any]:
        return {option_id: neutral for option_id, _, neutral in self.options}

    def _option_id(self, value: Any) -> int | None:
        return self._ids.get(value)

    def _option(self, value: Any) -> Any:
        if isinstance(value, bool) or value not in self._values:
            raise ValueError(f"expected one of the option ids {list(self._values)}")
        return self._values[value]

    def _date(self, value: Any) -> Any:
        try:
            ms = parse_rfc3339(f"{value}T00:00:00Z")
        except (TypeError, ValueError):
            raise ValueError("expected a date YYYY-MM-DD") from None
        return ms if self.neutral else value

    def describe(self, order: int) -> dict:
        """The field as ``GET /v1/personFields`` lists it."""
        options = [{"id": option_id, "label": label} for option_id, label, _ in self.options]
        return {"id": self.id, "key": self.key, "name": self.name, "order_nr": order, "field_type": self.field_type,
                "add_time": v1_time(self.add_ms), "update_time": v1_time(self.add_ms), "last_updated_by_user_id": None,
                "edit_flag": True, "details_visible_flag": True, "add_visible_flag": True, "important_flag": False,
                "bulk_edit_allowed": True, "filtering_allowed": True, "sortable_flag": True, "searchable_flag": False,
                "active_flag": True, "mandatory_flag": False, "json_column_flag": False,
                **({"options": options} if options else {})}


def _words(values: Iterable[str]) -> list[tuple[str, Any]]:
    return [(value.replace("_", " ").capitalize(), value) for value in values]


YES_NO = [("Yes", True), ("No", False)]
TENANT_FIELDS: list[tuple[str, str, str, list[tuple[str, Any]]]] = [
    # (name, field_type, neutral field, [(option label, neutral value)])
    ("Job title", "varchar", "title", []), ("Company", "varchar", "company", []),
    ("Industry", "enum", "industry", [(name, name) for name, *_ in INDUSTRIES]),
    ("Employees", "double", "employees", []), ("Annual revenue", "double", "annual_revenue", []),
    ("Country", "enum", "country", [(name, name) for name, *_ in COUNTRIES]),
    ("Lead source", "enum", "source", _words(name for name, _ in SOURCES)),
    ("Lifecycle stage", "enum", "lifecycle", [("Subscriber", "subscriber"), ("Lead", "lead"), ("MQL", "mql"),
                                              ("SQL", "sql"), ("Opportunity", "opportunity"),
                                              ("Customer", "customer")]),
    ("Lead status", "enum", "lead_status", _words(LEAD_STATUSES)),
    ("Marketing opt-out", "enum", "opted_out", YES_NO), ("Converted", "enum", "converted", YES_NO),
    ("Converted on", "date", "converted_ms", []),
    ("Email opens", "double", "email_opens", []), ("Email clicks", "double", "email_clicks", []),
    ("Page views", "double", "page_views", []), ("Form submissions", "double", "form_submissions", []),
]
STANDARD_FIELDS = [("id", "ID", "int"), ("name", "Name", "varchar"), ("first_name", "First name", "varchar"),
                   ("last_name", "Last name", "varchar"), ("email", "Email", "varchar"), ("phone", "Phone", "phone"),
                   ("owner_id", "Owner", "user"), ("org_id", "Organization", "org"), ("label_ids", "Labels", "set"),
                   ("add_time", "Person created", "date"), ("update_time", "Update time", "date"),
                   ("visible_to", "Visible to", "visible_to")]


class FieldCatalogue:
    """The tenant's person fields: standard ones, the synthetic custom ones, and those clients create."""

    def __init__(self, seed: int, anchor_ms: int):
        self._lock = threading.Lock()
        self._seed, self._anchor_ms = seed, anchor_ms
        self._next_id, self._next_option = 9000, 1000
        self.custom: dict[str, CustomField] = {}
        for name, field_type, neutral, options in TENANT_FIELDS:
            self._add(name, field_type, neutral, options, anchor_ms - 400 * 86_400_000)

    def _add(self, name: str, field_type: str, neutral: str | None, options: list, add_ms: int) -> CustomField:
        with self._lock:
            digest = hashlib.sha1(f"pipedrive:{self._seed}:{self._next_id}:{name}".encode()).hexdigest()
            numbered = tuple((self._next_option + i, label, value) for i, (label, value) in enumerate(options))
            field = CustomField(self._next_id, digest, name, field_type, neutral, numbered, add_ms)
            self._next_id += 1
            self._next_option += len(options)
            self.custom[field.key] = field
            return field

    def create(self, name: str, field_type: str, labels: list[str], now_ms: int) -> CustomField:
        """A client-made field; its values are stored on the contact under its key."""
        return self._add(name, field_type, None, [(label, label) for label in labels], now_ms)

    def key_of(self, name: str) -> str:
        """The key of the first custom field called ``name``; KeyError when there is none."""
        return next(field.key for field in list(self.custom.values()) if field.name == name)

    def describe(self) -> list[dict]:
        standard = [{"id": i + 1, "key": key, "name": name, "order_nr": i, "field_type": field_type,
                     "edit_flag": False, "active_flag": True, "mandatory_flag": key == "name",
                     "add_time": v1_time(self._anchor_ms - 800 * 86_400_000), "update_time": None}
                    for i, (key, name, field_type) in enumerate(STANDARD_FIELDS)]
        custom = [field.describe(len(standard) + i) for i, field in enumerate(list(self.custom.values()))]
        return standard + custom


# -- list queries ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ListQuery:
    """A v2 list call's paging, order and time window, checked once."""

    limit: int
    sort_by: str
    direction: str
    after: tuple[int, int] | None
    since_ms: int | None
    until_ms: int | None

    @property
    def walks_ids(self) -> bool:
        """Paging by id without a time filter needs no index: the ids themselves are the order."""
        return self.sort_by == "id" and self.since_ms is None and self.until_ms is None

    def follows(self, key: tuple[int, int]) -> bool:
        if self.after is None:
            return True
        return key > self.after if self.direction == "asc" else key < self.after

    def in_window(self, ms: int) -> bool:
        return (self.since_ms is None or ms >= self.since_ms) and (self.until_ms is None or ms < self.until_ms)


def page_of(keys: Iterable[tuple[tuple[int, int], Any]], query: ListQuery) -> tuple[list, tuple[int, int] | None]:
    """The first ``limit`` items after the cursor, and the key to continue from (None on the last page)."""
    taken: list = []
    for key, item in keys:
        if not query.follows(key):
            continue
        if len(taken) == query.limit:
            return [item for _, item in taken], taken[-1][0]
        taken.append((key, item))
    return [item for _, item in taken], None


class Pipedrive(Vendor):
    name = "pipedrive"
    tiers = tuple(PLANS)
    seats = 1
    hammer_refusals = 10
    hammer_seconds = 10.0
    block_seconds = 60.0
    client_id = "sandbox-client"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        tenant = self.crm.tenant
        self.fields = FieldCatalogue(tenant.seed, tenant.anchor_ms)
        self.client_secret = hashlib.sha1(f"secret:{tenant.seed}".encode()).hexdigest()
        self._refresh_tokens: set[str] = set()
        self._refusals: deque[float] = deque()
        self._blocked_until = -math.inf
        self._call = threading.local()
        self._lock = threading.Lock()

    # -- the Vendor contract ---------------------------------------------------------------------------

    def windows(self) -> list[Window]:
        burst, multiplier = PLANS[self.tier]
        write_costs = {name: 0 for name in COSTS if name not in WRITE_ROUTES}
        return [Window(BURST, burst, 2),
                Window(DAILY, BASE_DAILY_TOKENS * multiplier * self.seats, 86_400, costs=COSTS),
                Window(WRITES, DAILY_WRITES, 86_400, costs=write_costs)]

    def credentials(self) -> dict:
        return {"api_token": self.tokens.current, "access_token": self.tokens.current,
                "client_id": self.client_id, "client_secret": self.client_secret}

    def error(self, status: int, message: str, **context) -> VendorError:
        body = {"success": False, "error": message, "error_info": ERROR_INFO, "data": None, "additional_data": None}
        if status in (401, 429):
            body["errorCode"] = status
        return VendorError(status, {**body, **context})

    def unauthorized(self) -> VendorError:
        return self.error(401, "unauthorized access")

    def authenticate(self, request: Request) -> None:
        token, method = self._token(request)
        self._call.method = method
        if method == "api_token" and self._blocked():
            raise self._block_page()
        if not self.tokens.is_valid(token):
            raise self.unauthorized()

    @staticmethod
    def _token(request: Request) -> tuple[str | None, str]:
        if request.bearer:
            return request.bearer, "oauth"
        return request.headers.get("x-api-token") or request.arg("api_token"), "api_token"

    def throttled(self, verdict: Verdict) -> VendorError:
        if getattr(self._call, "method", None) == "api_token" and self._hammering():
            return self._block_page()
        return self.error(429, "Request over limit")

    def limit_headers(self, verdict: Verdict) -> dict[str, str]:
        burst, writes = verdict.state(BURST), verdict.state(WRITES)
        return {"x-ratelimit-limit": str(burst.window.limit), "x-ratelimit-remaining": str(burst.remaining),
                "x-ratelimit-reset": str(math.ceil(burst.reset_seconds)),
                "x-daily-requests-left": str(writes.remaining)}

    def contact_index(self, contact_id: str) -> int:
        index = self.crm.ids.to_index(str(contact_id))
        if index is None or not 0 <= index < self.crm.size:
            raise self.error(404, "Person not found")
        return index

    def field_key(self, name: str) -> str:
        """The 40-character key of the person custom field called ``name`` (tests and demos)."""
        return self.fields.key_of(name)

    # -- the edge's block on clients that ignore 429 ---------------------------------------------------

    def _hammering(self) -> bool:
        now = self.limits.clock.now()
        with self._lock:
            self._refusals.append(now)
            while self._refusals and self._refusals[0] < now - self.hammer_seconds:
                self._refusals.popleft()
            if len(self._refusals) > self.hammer_refusals:
                self._blocked_until = now + self.block_seconds
                self._refusals.clear()
        return self._blocked()

    def _blocked(self) -> bool:
        return self.limits is not None and self.limits.clock.now() < self._blocked_until

    @staticmethod
    def _block_page() -> VendorError:
        refusal = VendorError(403, BLOCK_PAGE)
        refusal.response.content_type = "text/html; charset=UTF-8"
        return refusal

    # -- OAuth ------------------------------------------------------------------------------------------

    @route("POST", "/oauth/token", name="oauth.token", auth=False, limited=False)
    def oauth_token(self, request: Request):
        """Authorization-code and refresh-token grants with HTTP Basic client credentials."""
        form = {key: values[0] for key, values in parse_qs(request.body.decode(errors="replace")).items()}
        if not self._client_authenticated(request):
            return Response(401, {"success": False, "message": "Invalid client credentials"})
        grant = form.get("grant_type")
        if grant == "authorization_code" and form.get("code"):
            return self._grant()
        if grant == "refresh_token" and form.get("refresh_token") in self._refresh_tokens:
            return self._grant()
        message = "Missing parameter: grant_type" if not grant else f"Invalid grant: {grant}"
        return Response(400, {"success": False, "message": message})

    def _client_authenticated(self, request: Request) -> bool:
        header = request.headers.get("Authorization") or ""
        if not header.startswith("Basic "):
            return False
        try:
            client_id, _, secret = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            return False
        return client_id == self.client_id and secret == self.client_secret

    def _grant(self) -> dict:
        access = self.tokens.issue()
        refresh = hashlib.sha1(access.encode()).hexdigest()
        with self._lock:
            self._refresh_tokens.add(refresh)
        return {"access_token": access, "token_type": "Bearer", "refresh_token": refresh,
                "scope": "base,contacts:full,activities:full,admin", "expires_in": 3599,
                "api_domain": "https://sandbox.pipedrive.com"}

    # -- v2 persons -------------------------------------------------------------------------------------

    @route("GET", "/api/v2/persons", name="persons.list")
    def list_persons(self, request: Request):
        query = self._list_query(request, ("id", "update_time", "add_time"))
        owner = self._int_arg(request, "owner_id")
        keys = self._person_keys(query)
        if owner is not None:
            keys = ((key, index) for key, index in keys if self.crm.record(index)["owner_id"] == owner)
        indexes, last = page_of(keys, query)
        return self._listing([self.person(index) for index in indexes], query, last)

    @route("GET", "/api/v2/persons/{id}", name="persons.get")
    def get_person(self, request: Request):
        return {"success": True, "data": self.person(self.contact_index(request.params["id"]))}

    @route("PATCH", "/api/v2/persons/{id}", name="persons.update")
    def update_person(self, request: Request):
        person_id = request.params["id"]
        index = self.contact_index(person_id)
        fault = self.faults.record_fault(person_id)
        if fault:
            raise self.error(fault.status, fault.message, **({"code": fault.code} if fault.code else {}))
        self.crm.write(index, self._person_write(request.json()))
        return {"success": True, "data": self.person(index)}

    def person(self, index: int) -> dict:
        """One person in the v2 shape."""
        record = self.crm.record(index)
        person_id = int(self.crm.id_of(index))
        return {
            "id": person_id, "name": f"{record['first_name']} {record['last_name']}",
            "first_name": record["first_name"], "last_name": record["last_name"],
            "owner_id": record["owner_id"] or self.crm.tenant.owners[0].id, "org_id": None,
            "add_time": rfc3339(record["created_ms"]), "update_time": rfc3339(record["updated_ms"]),
            "emails": [{"value": record["email"], "primary": True, "label": "work"}],
            "phones": [{"value": f"+1 555 {person_id % 10_000_000:07d}", "primary": True, "label": "work"}],
            "is_deleted": False, "visible_to": 3, "picture_id": None,
            "label_ids": record.get("pipedrive_label_ids", []),
            "custom_fields": {key: field.to_wire(record.get(field.neutral or key))
                              for key, field in list(self.fields.custom.items())},
        }

    def _person_keys(self, query: ListQuery) -> Iterator[tuple[tuple[int, int], int]]:
        if query.walks_ids:
            return (((index, index), index) for index in self._walk(query, range(self.crm.size)))
        if query.sort_by == "update_time":
            return self._persons_by_update_time(query)
        found = self.crm.updated_between(*self._time_bounds(query))  # ascending by index, so by id
        if query.sort_by == "id":
            return (((index, index), index) for index in self._walk(query, found))
        keys = sorted(((self.crm.created_ms(i), i), i) for i in found)
        return iter(reversed(keys) if query.direction == "desc" else keys)

    def _time_bounds(self, query: ListQuery) -> tuple[int, int]:
        """The update times a list covers, inclusive; open ends close where the tenant's data can be."""
        tenant = self.crm.tenant
        low = query.since_ms if query.since_ms is not None else tenant.anchor_ms - 2 * YEAR_MS - DAY_MS
        high = (query.until_ms - 1 if query.until_ms is not None
                else max(self.crm.clock_ms(), tenant.anchor_ms) + DAY_MS)
        return low, high

    def _persons_by_update_time(self, query: ListQuery) -> Iterator[tuple[tuple[int, int], int]]:
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
            keys = sorted(((self.crm.updated_ms(i), i), i) for i in found)
            yield from reversed(keys) if desc else keys
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
        if not isinstance(body, dict):
            raise self.error(400, "Request body must be a JSON object")
        unknown = sorted(set(body) - PERSON_WRITABLE)
        if unknown:
            raise self.error(400, f"Unknown or read-only fields: {', '.join(unknown)}")
        write = self._standard_write(body)
        custom = body.get("custom_fields") or {}
        if not isinstance(custom, dict):
            raise self.error(400, "custom_fields must be an object of field key to value")
        for key, value in custom.items():
            write.update(self._custom_write(key, value))
        return write

    def _standard_write(self, body: dict) -> dict:
        write: dict = {}
        if "name" in body:
            first, _, last = str(body["name"]).partition(" ")
            write.update(first_name=first, last_name=last)
        if "owner_id" in body:
            if body["owner_id"] not in {owner.id for owner in self.crm.tenant.owners}:
                raise self.error(400, f"owner_id {body['owner_id']!r} is not a user of this company")
            write["owner_id"] = body["owner_id"]
        if body.get("emails"):
            emails = body["emails"]
            if not isinstance(emails, list) or not all(isinstance(e, dict) and e.get("value") for e in emails):
                raise self.error(400, "emails must be a list of {value, primary, label}")
            write["email"] = next((e for e in emails if e.get("primary")), emails[0])["value"]
        if "label_ids" in body:
            write["pipedrive_label_ids"] = list(body["label_ids"] or [])
        return write

    def _custom_write(self, key: str, value: Any) -> dict:
        field = self.fields.custom.get(key)
        if field is None:
            raise self.error(400, f"Custom field {key!r} does not exist; create it with POST /v1/personFields")
        try:
            stored = field.from_wire(value)
        except ValueError as exc:
            raise self.error(400, f"Invalid value for custom field {field.name!r} ({key}): {exc}") from None
        return {field.neutral or key: stored}

    # -- v2 activities ----------------------------------------------------------------------------------

    @route("GET", "/api/v2/activities", name="activities.list")
    def list_activities(self, request: Request):
        query = self._list_query(request, ("id", "update_time", "add_time", "due_date"))
        wanted = self._activity_filter(request)
        keys = ((key, activity) for key, activity in self._activity_keys(request, query) if wanted(activity))
        activities, last = page_of(keys, query)
        return self._listing([self.activity(a) for a in activities], query, last)

    @route("POST", "/api/v2/activities", name="activities.create")
    def create_activity(self, request: Request):
        body = request.json()
        if not isinstance(body, dict):
            raise self.error(400, "Request body must be a JSON object")
        type_key = body.get("type") or "task"
        if type_key not in KIND_OF_TYPE:
            raise self.error(400, f"Invalid activity type {type_key!r}; expected a key_string from /v1/activityTypes")
        index = self.contact_index(self._primary_participant(body))
        due_ms = self._due_ms(body)
        owner = body.get("owner_id") or self.crm.record(index)["owner_id"]
        attributes = {"subject": body.get("subject") or type_key.capitalize(), "note": body.get("note"),
                      "done": bool(body.get("done", False)), "pipedrive_type": type_key,
                      "add_ms": self.crm.clock_ms(), "body": body.get("note") or ""}
        if KIND_OF_TYPE[type_key] is ActivityKind.TASK:
            attributes["status"] = "completed" if attributes["done"] else "not_started"
        created = self.crm.log_activity(index, KIND_OF_TYPE[type_key], due_ms, owner, attributes, by_api=True)
        return {"success": True, "data": self.activity(created)}

    def _primary_participant(self, body: dict) -> str:
        participants = body.get("participants") or []
        primary = next((p for p in participants if p.get("primary")), participants[0] if participants else None)
        person_id = primary.get("person_id") if primary else body.get("person_id")
        if person_id is None:
            raise self.error(400, "An activity needs a participant: participants [{person_id, primary: true}]")
        return str(person_id)

    def _due_ms(self, body: dict) -> int:
        due_date, due_time = body.get("due_date"), str(body.get("due_time") or "00:00:00")
        if not due_date:
            return self.crm.clock_ms()
        try:
            return parse_rfc3339(f"{due_date}T{due_time}{':00' if len(due_time) == 5 else ''}Z")
        except ValueError:
            raise self.error(400, f"Invalid due_date/due_time {due_date!r} {due_time!r}; "
                                  "expected YYYY-MM-DD and HH:MM[:SS]") from None

    def activity(self, activity: Activity) -> dict:
        """One activity in the v2 shape."""
        attributes = activity.attributes
        person_id = int(self.crm.id_of(activity.contact_index))
        due = datetime.fromtimestamp(activity.occurred_ms / 1000, UTC)
        done = activity_done(activity)
        return {
            "id": activity.id, "subject": activity_subject(activity),
            "type": attributes.get("pipedrive_type") or TYPE_OF_KIND[activity.kind],
            "owner_id": activity.owner_id, "creator_user_id": activity.owner_id, "is_deleted": False,
            "add_time": rfc3339(attributes.get("add_ms", activity.occurred_ms)),
            "update_time": rfc3339(activity.updated_ms), "deal_id": None, "lead_id": None, "person_id": person_id,
            "org_id": None, "project_id": None, "due_date": due.strftime("%Y-%m-%d"),
            "due_time": due.strftime("%H:%M:%S"),
            "duration": duration(attributes.get("duration_ms")), "busy": False, "done": done,
            "marked_as_done_time": rfc3339(activity.updated_ms) if done else None, "location": None,
            "participants": [{"person_id": person_id, "primary": True}], "public_description": None,
            "priority": None, "note": activity_note(activity),
        }

    def _activity_keys(self, request: Request, query: ListQuery) -> Iterator[tuple[tuple[int, int], Activity]]:
        person = request.arg("person_id")
        if person is None and query.sort_by == "id" and query.direction == "asc":
            after = query.after[1] if query.after else 0
            return (((a.id, a.id), a) for a in self._activities_from(query, after))
        if person is not None:
            candidates: Iterable[Activity] = self.crm.activities(self.contact_index(person))
        else:
            candidates = self._activities_from(query, 0)
        value = {"id": lambda a: a.id, "update_time": lambda a: a.updated_ms, "due_date": lambda a: a.occurred_ms,
                 "add_time": lambda a: a.attributes.get("add_ms", a.occurred_ms)}[query.sort_by]
        keys = sorted(((value(a), a.id), a) for a in candidates if served(a, query))
        return iter(reversed(keys) if query.direction == "desc" else keys)

    def _activities_from(self, query: ListQuery, after: int) -> Iterator[Activity]:
        """Served activities in the time window with ids above ``after``, in id order: generated ones
        person by person (only persons touched since the window opens can have any), then added ones."""
        tenant = self.crm.tenant
        persons = range(tenant.size) if query.since_ms is None else self.crm.touched_since(query.since_ms)
        if after < ADDED_ACTIVITY_BASE:
            start = bisect.bisect_left(persons, tenant.activity_index(after + 1)[0]) if after else 0
            for index in persons[start:]:
                yield from (a for a in tenant.activities(index) if a.id > after and served(a, query))
        yield from (a for a in self.crm.added_activities() if a.id > after and served(a, query))

    def _activity_filter(self, request: Request) -> Callable[[Activity], bool]:
        owner = self._int_arg(request, "owner_id")
        done = request.arg("done")
        if done not in (None, "true", "false", "1", "0"):
            raise self.error(400, f"done must be true or false, got {done!r}")
        want_done = None if done is None else done in ("true", "1")
        return lambda a: ((owner is None or a.owner_id == owner)
                          and (want_done is None or activity_done(a) is want_done))

    # -- v1: person fields, activity types, users --------------------------------------------------------

    @route("GET", "/v1/personFields", name="personFields.list")
    def list_person_fields(self, request: Request):
        return self._v1_listing(request, self.fields.describe())

    @route("POST", "/v1/personFields", name="personFields.create")
    def create_person_field(self, request: Request):
        body = request.json()
        if not isinstance(body, dict) or not str(body.get("name") or "").strip():
            raise self.error(400, "Field name is required")
        field_type = body.get("field_type")
        if field_type not in FIELD_TYPES:
            raise self.error(400, f"field_type {field_type!r} is not one of {', '.join(sorted(FIELD_TYPES))}")
        labels = [str(option.get("label") if isinstance(option, dict) else option)
                  for option in body.get("options") or []]
        if field_type in ("enum", "set") and not labels:
            raise self.error(400, f"A {field_type} field needs options")
        field = self.fields.create(body["name"].strip(), field_type, labels, self.crm.clock_ms())
        return {"success": True, "data": field.describe(len(self.fields.custom) + len(STANDARD_FIELDS) - 1)}

    @route("GET", "/v1/activityTypes", name="activityTypes.list")
    def list_activity_types(self, request: Request):
        created = v1_time(self.crm.tenant.anchor_ms - 800 * 86_400_000)
        return {"success": True, "data": [
            {"id": i + 1, "order_nr": i + 1, "name": name, "key_string": key, "icon_key": key, "active_flag": True,
             "color": None, "is_custom_flag": False, "add_time": created, "update_time": None}
            for i, (key, name) in enumerate(ACTIVITY_TYPES)]}

    @route("GET", "/v1/users", name="users.list")
    def list_users(self, request: Request):
        return {"success": True, "data": [self._user(k) for k in range(len(self.crm.tenant.owners))]}

    @route("GET", "/v1/users/me", name="users.me")
    def get_me(self, request: Request):
        me = self._user(0)
        return {"success": True, "data": {**me, "company_id": 1, "company_name": "Sandbox Company",
                                          "company_domain": "sandbox", "company_country": "US"}}

    def _user(self, k: int) -> dict:
        owner, anchor = self.crm.tenant.owners[k], self.crm.tenant.anchor_ms
        return {"id": owner.id, "name": f"{owner.first_name} {owner.last_name}", "email": owner.email,
                "default_currency": "USD", "locale": "en_US", "lang": 1, "phone": None, "activated": True,
                "last_login": v1_time(anchor - 3_600_000 * (k + 1)), "created": v1_time(anchor - 800 * 86_400_000),
                "modified": v1_time(anchor - 86_400_000), "has_created_company": k == 0,
                "access": [{"app": "sales", "admin": k == 0, "permission_set_id": f"ps-{k}"}],
                "active_flag": True, "timezone_name": "UTC", "timezone_offset": "+00:00", "role_id": 1,
                "icon_url": None, "is_you": k == 0, "is_deleted": False}

    # -- shared answers ---------------------------------------------------------------------------------

    def _list_query(self, request: Request, sortable: tuple[str, ...]) -> ListQuery:
        limit = self._int_arg(request, "limit")
        if limit is not None and not 1 <= limit <= LIST_MAX:
            raise self.error(400, f"limit must be between 1 and {LIST_MAX}, got {limit}")
        sort_by, direction = request.arg("sort_by") or "id", request.arg("sort_direction") or "asc"
        if sort_by not in sortable or direction not in ("asc", "desc"):
            raise self.error(400, f"sort_by must be one of {', '.join(sortable)} and sort_direction asc or desc")
        cursor = request.arg("cursor")
        try:
            after = decode_cursor(cursor, sort_by, direction) if cursor else None
            since, until = (parse_rfc3339(request.arg(name)) if request.arg(name) else None
                            for name in ("updated_since", "updated_until"))
        except ValueError as exc:
            raise self.error(400, f"Invalid parameter: {exc}. Times are RFC 3339, e.g. 2025-01-01T10:20:00Z") from None
        return ListQuery(limit or LIST_DEFAULT, sort_by, direction, after, since, until)

    def _int_arg(self, request: Request, name: str) -> int | None:
        value = request.arg(name)
        if value in (None, ""):
            return None
        try:
            return int(value)
        except ValueError:
            raise self.error(400, f"{name} must be an integer, got {value!r}") from None

    @staticmethod
    def _listing(data: list[dict], query: ListQuery, last: tuple[int, int] | None) -> dict:
        cursor = None
        if last is not None:
            cursor = encode_cursor(query.sort_by, query.direction, last, data[-1]["id"])
        return {"success": True, "data": data, "additional_data": {"next_cursor": cursor}}

    def _v1_listing(self, request: Request, items: list[dict]) -> dict:
        start, limit = self._int_arg(request, "start") or 0, self._int_arg(request, "limit") or 100
        page = items[start:start + limit]
        more = start + limit < len(items)
        pagination = {"start": start, "limit": limit, "more_items_in_collection": more,
                      **({"next_start": start + limit} if more else {})}
        return {"success": True, "data": page, "additional_data": {"pagination": pagination}}


# -- activity rendering ------------------------------------------------------------------------------------

def served(activity: Activity, query: ListQuery) -> bool:
    """Whether an activity is one Pipedrive lists (notes are not activities) and falls in the time window."""
    return activity.kind in TYPE_OF_KIND and query.in_window(activity.updated_ms)


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
    """Call and meeting outcomes have no field of their own in Pipedrive: reps note them."""
    attributes = activity.attributes
    if "note" in attributes:
        return attributes["note"]
    if activity.kind is ActivityKind.CALL:
        return f"outcome: {attributes['status']}, direction: {attributes['direction']}"
    if activity.kind is ActivityKind.MEETING:
        return f"outcome: {attributes['outcome']}"
    if activity.kind is ActivityKind.EMAIL:
        return f"direction: {attributes['direction']}, status: {attributes['status']}"
    return attributes.get("body") or None


def duration(ms: int | None) -> str | None:
    if not ms:
        return None
    seconds = ms // 1000
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


VENDOR = Pipedrive
