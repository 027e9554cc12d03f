"""HubSpot's CRM v3/v4 API as hubspot-api-client sees it.

Point the SDK here with ``HubSpot(access_token=sb.credentials["access_token"], host=sb.base_url)``.

Served: contacts (list and get, both with ``associations=`` of the engagement types; update, search, batch
read, batch update), the five engagement objects (calls, emails, meetings, notes, tasks: list with
``associations=contacts``, get, create, batch create, search, and batch read by id or by a unique value
property, route ``{object_type}.batch_read``), properties (list, get, create, update: ``options`` replaces the
whole list, as HubSpot does; ``hasUniqueValue`` on create) and property groups (list, get, create),
associations v4 (batch read, list), and owners. Custom properties defined on an engagement object are kept on
the records created with them and read back like any other (one named like a neutral field the sandbox keeps,
``status``, ``subject``..., answers 400: a sandbox limit). Contact ids are ``index + 1``; engagement ids are
those of :mod:`leadpulse.sandbox.synth` (derivable from the contact, so listing pages without storing).

Behaviour worth knowing:

- ``limit`` above 100 on lists, above 200 on search, or more than 100 batch inputs answer 400.
- ``paging.next.link`` is the request's URL with its query parameters kept and ``after`` replaced (put last),
  as HubSpot's links are seen on the wire: ``.../crm/v3/objects/contacts?limit=100&properties=listId%2Cname&after=394``
  (amp-labs/connectors, providers/hubspot/internal/core/parse.go), and ``...?portalId=...&after=...`` in an answer
  quoted in HubSpot/hubspot-api-python#135. The spec's example is a bare ``?after=``. A search's parameters are
  in its body, so its link names the search path and ``after`` only (absolute, as the lists'; unconfirmed).
- ``associations=`` on a contact list or get gives, per engagement type asked, ``{results: [{id, type}]}`` with
  ``type`` ``contact_to_call``, ``contact_to_email``... (the spec's ``CollectionResponseAssociatedId``); a type
  the contact has none of is left out, and so are types the spec says are ignored and types this sandbox holds no
  records of (companies, deals, tickets). Not paged: HubSpot pages an association list past 100
  (HubSpot/hubspot-api-nodejs#29); no synthetic contact comes near that.
- v4 batch read of associations (any pair of contacts, engagements, companies, deals, tickets): an input with
  none of the type asked, or an id that does not exist, is not a result but an error of a 207, category
  ``OBJECT_NOT_FOUND``, ``subCategory`` ``crm.associations.NO_ASSOCIATIONS_FOUND``, "No company is associated
  with call 12.", ``context`` ``{fromObjectId, fromObjectType, toObjectType}``. From HubSpot's answers as
  several public clients record them (the spec shows only the shape, and types ``subCategory`` as an object:
  HubSpot sends a string); that an id which does not exist is answered the same way rests on one of them.
  Other object types answer 400.
- Search refuses body keys it does not apply (a top-level ``filters`` among them) and full-text ``query``:
  see :mod:`leadpulse.sandbox.hubspot_search`.
- Search pages past 10,000 results answer 400 (``offset + limit > 10000``), one sort only,
  5 filter groups of 6 filters; its own SECONDLY window of 4 calls/s (the stricter published figure).
- Batch writes name unknown or read-only properties, or invalid options, with a 400 for the whole
  batch, as HubSpot does; ids that do not exist or that ``faults.fail_records`` chose fail alone:
  the answer is 207 with ``numErrors`` and ``errors``.
- Engagement creation needs ``hs_timestamp`` and valid contact associations (type ids 194, 198,
  200, 202, 204); tasks created here are listed by ``crm.tasks()`` and by :meth:`HubSpot.created_tasks`
  (with their custom properties).
- Unique value properties (``hasUniqueValue: true``) can be created on the engagement objects
  (:attr:`HubSpot.unique_value_objects`; a test may narrow it). Unconfirmed: HubSpot's changelog names
  companies, deals, tickets, custom objects and (since 2023) contacts as supporting them; no source
  seen says tasks do or do not. Contacts are refused here with a 400, because this imitation does
  not enforce unique values on them. Only at creation (the spec: "Once set, this can't be changed";
  a PATCH naming ``hasUniqueValue`` answers 400, picked), at most 10 per object type (HubSpot's
  changelog), and (picked, the stricter reading) only on single-line text or number properties.
- A create (single or batch) whose unique value another record of that type already holds, or
  that two inputs of one batch share, answers **400 VALIDATION_ERROR for the whole batch**, naming
  the property and the value, and creates nothing. Picked, not confirmed: no primary source says
  whether HubSpot answers 400 or 409 CONFLICT here (one third-party client expects a 400 saying
  "already has that value"); 400 for the whole batch is the stricter form. Values compare as exact
  strings; empty values are not unique. A unique value is checked and claimed in one step.
- Batch read (``POST /crm/v3/objects/{type}/batch/read``): at most 100 inputs; with ``idProperty``
  the ids are values of that unique property (a property that is not a unique value property of
  the type: 400 naming it), without it they are record ids. All found: 200; some not: 207 with one
  ``OBJECT_NOT_FOUND`` error whose ``context.ids`` lists the missing ids as given. Results come
  once per record and in id order, not in input order: match them by id or by the unique value.
  It reads the records themselves, so a fresh create is found at once, and it counts against
  the ordinary rate limits, not search's. ``propertiesWithHistory`` gives each property's one version;
  ``archived=true`` finds nothing (nothing is archived here).
- Rate limits per ``tier``: free/starter 100 per 10 s, professional/enterprise 190 (capacity: 250);
  daily 250k / 650k / 1M. Headers ``X-HubSpot-RateLimit-*``; 429 bodies with ``policyName``
  TEN_SECONDLY_ROLLING, SECONDLY or DAILY. ``Retry-After`` (whole wall-clock seconds) is sent
  only when the clock is not scaled, since it cannot say "0.1 s".
"""
from __future__ import annotations

import math
import threading
import uuid
from datetime import UTC, datetime
from itertools import islice
from typing import Any
from urllib.parse import urlencode

from .hubspot_catalog import (
    ASSOCIATION_FROM_CONTACT,
    ASSOCIATION_TO_CONTACT,
    DEFAULT_CONTACT_PROPERTIES,
    DEFAULT_ENGAGEMENT_PROPERTIES,
    ENGAGEMENT_TYPES,
    NEUTRAL_ATTRIBUTES,
    OBJECT_OF_KIND,
    PROPERTY_TYPES,
    Catalogue,
    contact_properties,
    contact_renderer,
    contact_write,
    definition,
    engagement_properties,
    engagement_write,
    iso,
)
from .hubspot_search import RESULT_CAP, CapReached, Search, SearchError, bounds, holds, parse_search, run
from .limits import Verdict, Window
from .server import Request, Response, Vendor, VendorError, route
from .state import UnknownContact
from .synth import Activity, ActivityKind

TEN_SECONDLY, SECONDLY, DAILY = "TEN_SECONDLY_ROLLING", "SECONDLY", "DAILY"
TIERS = {"professional": (190, 650_000), "enterprise": (190, 1_000_000), "capacity": (250, 1_000_000),
         "starter": (100, 250_000), "free": (100, 250_000)}
SEARCH_ROUTES = frozenset({"contacts.search", *(f"{name}.search" for name in ENGAGEMENT_TYPES)})
CATEGORIES = {400: "VALIDATION_ERROR", 401: "INVALID_AUTHENTICATION", 403: "MISSING_SCOPES",
              404: "OBJECT_NOT_FOUND", 409: "CONFLICT", 429: "RATE_LIMITS", 500: "INTERNAL_ERROR",
              502: "INTERNAL_ERROR", 503: "SERVICE_UNAVAILABLE", 504: "TIMEOUT"}
READ_ONLY = {"hs_object_id", "createdate", "lastmodifieddate", "hs_createdate", "hs_lastmodifieddate"}
#: what a property PATCH may change (the spec's PropertyUpdate)
UPDATABLE = frozenset({"label", "description", "groupName", "type", "fieldType", "options", "displayOrder", "hidden",
                       "formField", "calculationFormula"})
LIST_LIMIT, BATCH_LIMIT, ASSOCIATION_BATCH_LIMIT = 100, 100, 1000
#: unique value properties an object type may hold (HubSpot's changelog, "Unique Properties support for contacts")
UNIQUE_PROPERTIES_PER_OBJECT = 10
#: (type, fieldType) a unique value property may have: single-line text and numbers (picked: see the docstring)
UNIQUE_FIELD_TYPES = frozenset({("string", "text"), ("number", "number")})
#: HubSpot object types that associations may name but this sandbox holds no records of
UNHELD_OBJECT_TYPES = frozenset({"companies", "deals", "tickets"})
ASSOCIABLE_TYPES = frozenset({"contacts", *ENGAGEMENT_TYPES, *UNHELD_OBJECT_TYPES})
#: the singular HubSpot uses in association type names and association error messages
SINGULAR = {name: name[:-1] for name in ASSOCIABLE_TYPES} | {"companies": "company"}


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def standard_error(record_ids: str | list[str], status: int, message: str, category: str) -> dict:
    """One per-item error of a 207 (about one id or several), with every field the SDK insists on."""
    ids = [record_ids] if isinstance(record_ids, str) else list(record_ids)
    return {"status": "error", "category": category, "message": message, "context": {"ids": ids},
            "errors": [{"message": message, "code": str(status)}], "links": {}}


def no_associations_error(from_type: str, object_id: str, to_type: str) -> dict:
    """A v4 batch read's per-input error for an object with no associations of the type asked, as HubSpot words it."""
    source, target = SINGULAR[from_type], SINGULAR[to_type]
    return {"status": "error", "category": "OBJECT_NOT_FOUND", "subCategory": "crm.associations.NO_ASSOCIATIONS_FOUND",
            "message": f"No {target} is associated with {source} {object_id}.",
            "context": {"fromObjectId": [object_id], "fromObjectType": [source], "toObjectType": [target]},
            "errors": [], "links": {}}


class HubSpot(Vendor):
    name = "hubspot"
    tiers = tuple(TIERS)
    #: object types on which ``hasUniqueValue: true`` may be created (and is enforced); a test may narrow it
    unique_value_objects: frozenset[str] = frozenset(ENGAGEMENT_TYPES)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.catalogue = Catalogue()
        # a unique value is checked and claimed in one step: two concurrent creates cannot both take it
        self._creating = threading.Lock()

    # -- the Vendor contract ---------------------------------------------------------------------

    def windows(self) -> list[Window]:
        per_ten, per_day = TIERS[self.tier]
        return [Window(TEN_SECONDLY, per_ten, 10), Window(SECONDLY, 4, 1, routes=SEARCH_ROUTES),
                Window(DAILY, per_day, 86_400)]

    def error(self, status: int, message: str, category: str | None = None, **extra) -> VendorError:
        return VendorError(status, {"status": "error", "message": message, "correlationId": str(uuid.uuid4()),
                                    "category": category or CATEGORIES.get(status, "ERROR"), **extra})

    def unauthorized(self) -> VendorError:
        return self.error(401, "Authentication credentials not found. This API supports OAuth 2.0 authentication "
                               "and you can find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview",
                          category="INVALID_AUTHENTICATION")

    def throttled(self, verdict: Verdict) -> VendorError:
        policy = verdict.refused_by.name
        body = {"status": "error", "message": f"You have reached your {policy.lower()} limit.",
                "errorType": "RATE_LIMIT", "correlationId": str(uuid.uuid4()), "policyName": policy}
        headers = {}
        wall = self.limits.to_wall_seconds(verdict.retry_after or 0)
        if self.limits.time_scale == 1:
            headers["Retry-After"] = str(max(1, math.ceil(wall)))
        return VendorError(429, body, headers)

    def limit_headers(self, verdict: Verdict) -> dict[str, str]:
        headers = {}
        ten, day, second = verdict.state(TEN_SECONDLY), verdict.state(DAILY), verdict.state(SECONDLY)
        if ten:
            headers.update({"X-HubSpot-RateLimit-Max": str(ten.window.limit),
                            "X-HubSpot-RateLimit-Remaining": str(ten.remaining),
                            "X-HubSpot-RateLimit-Interval-Milliseconds": str(int(ten.window.seconds * 1000))})
        if day:
            headers.update({"X-HubSpot-RateLimit-Daily": str(day.window.limit),
                            "X-HubSpot-RateLimit-Daily-Remaining": str(day.remaining)})
        if second:
            headers.update({"X-HubSpot-RateLimit-Secondly": str(second.window.limit),
                            "X-HubSpot-RateLimit-Secondly-Remaining": str(second.remaining)})
        return headers

    # -- helpers ---------------------------------------------------------------------------------

    def _limit(self, request: Request, most: int, default: int = 10) -> int:
        try:
            limit = int(request.arg("limit") or default)
        except ValueError:
            raise self.error(400, f"limit must be a number, got {request.arg('limit')!r}") from None
        if not 0 < limit <= most:
            raise self.error(400, f"limit must be between 1 and {most}, got {limit}")
        return limit

    def _after(self, request: Request) -> int:
        after = request.arg("after") or "0"
        if not after.isdigit():
            raise self.error(400, f"Invalid after token {after!r}")
        return int(after)

    def _next(self, request: Request, after: str) -> dict:
        """``paging`` naming the next page: the link repeats the request's query parameters, ``after`` replaced."""
        host = request.headers.get("Host", "127.0.0.1")
        scheme = "https" if self.tls else "http"
        kept = [(name, value) for name, values in request.query.items() if name != "after" for value in values]
        query = urlencode([*kept, ("after", after)])
        return {"next": {"after": after, "link": f"{scheme}://{host}{request.path}?{query}"}}

    def _kind(self, object_type: str) -> ActivityKind:
        if object_type not in ENGAGEMENT_TYPES:
            raise self.error(400, f"Unable to infer object type from: {object_type}")
        return ENGAGEMENT_TYPES[object_type]

    def _inputs(self, request: Request, most: int) -> list[dict]:
        inputs = request.json().get("inputs") if isinstance(request.json(), dict) else None
        if not isinstance(inputs, list):
            raise self.error(400, "Invalid input JSON: 'inputs' must be a list")
        if len(inputs) > most:
            raise self.error(400, f"Batch input has {len(inputs)} inputs; the limit is {most}")
        return inputs

    def _contact(self, index: int, names, render=None, associations=()) -> dict:
        """One contact as the API shows it; a list passes ``render`` (its names' renderer) so it is looked up once."""
        record = self.crm.record(index)
        props = (render or contact_renderer(tuple(names)))(index, record, self.catalogue.properties["contacts"])
        body: dict[str, Any] = {"id": str(index + 1), "properties": props, "createdAt": iso(record["created_ms"]),
                                "updatedAt": iso(record["updated_ms"]), "archived": False}
        linked = self._contact_associations(index, associations)
        if linked:
            body["associations"] = linked
        return body

    def _contact_associations(self, index: int, object_types) -> dict:
        """The v3 ``associations`` of a contact: each engagement type asked for that it has any of. HubSpot leaves
        out a type with none; this sandbox holds no companies, deals or tickets, so those are always left out."""
        kinds = [ENGAGEMENT_TYPES[name] for name in dict.fromkeys(object_types) if name in ENGAGEMENT_TYPES]
        if not kinds:
            return {}
        activities = self.crm.activities(index)
        linked = {}
        for kind in kinds:
            name = OBJECT_OF_KIND[kind]
            results = [{"id": str(a.id), "type": f"contact_to_{SINGULAR[name]}"} for a in activities if a.kind is kind]
            if results:
                linked[name] = {"results": results}
        return linked

    def _engagement(self, activity: Activity, names, with_contacts: bool = False, history=()) -> dict:
        props = engagement_properties(activity)
        known = self.catalogue.properties[OBJECT_OF_KIND[activity.kind]]
        body: dict[str, Any] = {
            "id": str(activity.id), "properties": {n: props.get(n) for n in names if n in props or n in known},
            "createdAt": iso(activity.occurred_ms), "updatedAt": iso(activity.updated_ms), "archived": False}
        if history:
            # nothing here changes an engagement's properties after it is written, so each has one version
            stamp = iso(activity.updated_ms)
            body["propertiesWithHistory"] = {
                n: [] if props.get(n) is None else [{"value": props[n], "timestamp": stamp, "sourceType": "API"}]
                for n in history if n in props or n in known}
        if with_contacts and activity.contact_index >= 0:
            kind = SINGULAR[OBJECT_OF_KIND[activity.kind]]
            body["associations"] = {"contacts": {"results": [
                {"id": self.crm.id_of(activity.contact_index), "type": f"{kind}_to_contact"}]}}
        return body

    def _batch(self, results: list, errors: list, status: int = 200) -> Response:
        started = now_iso()
        body: dict[str, Any] = {"status": "COMPLETE", "results": results, "startedAt": started,
                                "completedAt": now_iso()}
        if errors:
            body.update({"numErrors": len(errors), "errors": errors})
        return Response(207 if errors else status, body)

    # -- contacts --------------------------------------------------------------------------------

    @route("GET", "/crm/v3/objects/contacts", name="contacts.list")
    def list_contacts(self, request: Request):
        limit, start = self._limit(request, LIST_LIMIT), max(0, self._after(request) - 1)
        if request.arg("archived") == "true":
            return {"results": []}
        names = request.args("properties") or DEFAULT_CONTACT_PROPERTIES
        stop = min(start + limit, self.crm.size)
        render, associations = contact_renderer(tuple(names)), request.args("associations")
        body: dict[str, Any] = {"results": [self._contact(i, names, render, associations) for i in range(start, stop)]}
        if stop < self.crm.size:
            body["paging"] = self._next(request, str(stop + 1))
        return body

    @route("GET", "/crm/v3/objects/contacts/{contact_id}", name="contacts.get")
    def get_contact(self, request: Request):
        index = self.contact_index(request.params["contact_id"])
        return self._contact(index, request.args("properties") or DEFAULT_CONTACT_PROPERTIES,
                             associations=request.args("associations"))

    @route("PATCH", "/crm/v3/objects/contacts/{contact_id}", name="contacts.update")
    def update_contact(self, request: Request):
        index = self.contact_index(request.params["contact_id"])
        properties = (request.json() or {}).get("properties") or {}
        self._check_write("contacts", [properties])
        self.crm.write(index, contact_write(properties))
        return self._contact(index, [*properties, "hs_object_id", "lastmodifieddate"])

    @route("POST", "/crm/v3/objects/contacts/batch/read", name="contacts.batch_read")
    def batch_read_contacts(self, request: Request):
        inputs = self._inputs(request, BATCH_LIMIT)
        names = request.json().get("properties") or DEFAULT_CONTACT_PROPERTIES
        results, errors = [], []
        for item in inputs:
            contact_id = str(item.get("id"))
            try:
                results.append(self._contact(self.crm.index_of(contact_id), names))
            except UnknownContact:
                errors.append(standard_error(contact_id, 404, "Could not get some CONTACT objects, they may be "
                                                              "deleted or not exist. Check that ids are valid.",
                                             "OBJECT_NOT_FOUND"))
        return self._batch(results, errors)

    @route("POST", "/crm/v3/objects/contacts/batch/update", name="contacts.batch_update")
    def batch_update_contacts(self, request: Request):
        inputs = self._inputs(request, BATCH_LIMIT)
        ids = [str(item.get("id")) for item in inputs]
        if len(set(ids)) != len(ids):
            raise self.error(400, "Duplicate IDs found in batch input: each id may appear once")
        self._check_write("contacts", [item.get("properties") or {} for item in inputs])
        results, errors = [], []
        for contact_id, item in zip(ids, inputs, strict=True):
            failure = self._write_failure(contact_id)
            if failure:
                errors.append(failure)
                continue
            index = self.crm.index_of(contact_id)
            self.crm.write(index, contact_write(item["properties"]))
            results.append(self._contact(index, [*item["properties"], "hs_object_id", "lastmodifieddate"]))
        return self._batch(results, errors)

    def _write_failure(self, contact_id: str) -> dict | None:
        fault = self.faults.record_fault(contact_id)
        if fault:
            code = fault.code or CATEGORIES.get(fault.status, "ERROR")
            return standard_error(contact_id, fault.status, fault.message, code)
        try:
            self.crm.index_of(contact_id)
        except UnknownContact:
            return standard_error(contact_id, 404, f"Object not found. objectId are usually numeric. ({contact_id})",
                                  "OBJECT_NOT_FOUND")
        return None

    def _check_write(self, object_type: str, writes: list[dict]) -> None:
        """HubSpot refuses the whole call when any property is unknown, read-only or off its options."""
        known, problems = self.catalogue.properties[object_type], []
        for properties in writes:
            for name, value in properties.items():
                prop = known.get(name)
                if prop is None:
                    problems.append({"message": f'Property "{name}" does not exist', "code": "PROPERTY_DOESNT_EXIST",
                                     "context": {"propertyName": [name]}})
                elif name in READ_ONLY:
                    problems.append({"message": f'"{name}" is a read only property; its value cannot be set.',
                                     "code": "READ_ONLY_VALUE", "context": {"propertyName": [name]}})
                elif prop["options"] and not prop["externalOptions"] and value not in ("", None) \
                        and value not in {o["value"] for o in prop["options"]}:
                    problems.append({"message": f'{value} was not one of the allowed options for "{name}"',
                                     "code": "INVALID_OPTION", "context": {"propertyName": [name]}})
        if problems:
            raise self.error(400, f"Property values were not valid: {problems}", errors=problems)

    @route("POST", "/crm/v3/objects/contacts/search", name="contacts.search")
    def search_contacts(self, request: Request):
        search = self._search(request)
        indexes = self._contact_matches(search)
        cache: dict[int, dict] = {}

        def value(index: int, prop: str):
            if index not in cache:
                cache[index] = contact_properties(index, self.crm.record(index))
            return cache[index].get(prop)

        total, page = self._run(search, indexes, value)
        names = search.properties or DEFAULT_CONTACT_PROPERTIES
        return self._search_answer(request, search, total, [self._contact(i, names) for i in page])

    def _search(self, request: Request) -> Search:
        try:
            return parse_search(request.json() or {})
        except SearchError as exc:
            message = f"There was a problem with the request: {exc}"
            if exc.field is None:
                raise self.error(400, message) from None
            raise self.error(400, message, errors=[{"message": str(exc), "in": exc.field}]) from None
        except (ValueError, TypeError, AttributeError) as exc:
            raise self.error(400, f"There was a problem with the request: {exc}") from None

    def _run(self, search: Search, matches, value) -> tuple[int, list]:
        try:
            return run(search, matches, value)
        except CapReached:
            raise self.error(400, f"There was a problem with the request. Paging past {RESULT_CAP:,} results is not "
                                  f"allowed: narrow the filters and page again.",
                             subCategory="crm-search.PAGING_LIMIT_EXCEEDED") from None

    def _search_answer(self, request: Request, search: Search, total: int, results: list) -> dict:
        body = {"total": total, "results": results}
        if search.offset + len(results) < total:
            body["paging"] = self._next(request, str(search.offset + search.limit))
        return body

    def _contact_matches(self, search: Search) -> list[int] | range:
        """Indexes matching the search, in id order; id and modified-date ranges come from indexes, not scans."""
        groups = search.groups or ((),)
        found: set[int] = set()
        for group in groups:
            candidates = self._contact_candidates(group)
            rest = [f for f in group if f.prop not in ("hs_object_id", "lastmodifieddate")
                    or f.operator not in ("GT", "GTE", "LT", "LTE", "EQ", "BETWEEN")]
            if not rest and len(groups) == 1:
                return candidates
            found.update(i for i in candidates if all(holds(f, self._contact_value(i, f.prop)) for f in rest))
        return sorted(found)

    def _contact_candidates(self, group) -> list[int] | range:
        first, last = bounds(group, "hs_object_id")
        start = max(0, math.ceil(first) - 1) if first is not None else 0
        stop = min(self.crm.size, math.floor(last)) if last is not None else self.crm.size
        low, high = bounds(group, "lastmodifieddate")
        if low is None and high is None:
            return range(start, stop)
        moved = self.crm.updated_between(int(low if low is not None else -2**62),
                                         int(high if high is not None else 2**62))
        return [i for i in moved if start <= i < stop]

    def _contact_value(self, index: int, prop: str):
        return contact_properties(index, self.crm.record(index), (prop,)).get(prop)

    # -- engagements -----------------------------------------------------------------------------

    @route("GET", "/crm/v3/objects/{object_type}", name="{object_type}.list")
    def list_engagements(self, request: Request):
        kind = self._kind(request.params["object_type"])
        limit, after = self._limit(request, LIST_LIMIT), self._after(request)
        if request.arg("archived") == "true":
            return {"results": []}
        names = request.args("properties") or DEFAULT_ENGAGEMENT_PROPERTIES
        with_contacts = "contacts" in request.args("associations")
        page = list(islice(self.crm.iter_activities(kind, after_id=max(0, after - 1)), limit + 1))
        body: dict[str, Any] = {"results": [self._engagement(a, names, with_contacts) for a in page[:limit]]}
        if len(page) > limit:
            body["paging"] = self._next(request, str(page[limit].id))
        return body

    @route("GET", "/crm/v3/objects/{object_type}/{object_id}", name="{object_type}.get")
    def get_engagement(self, request: Request):
        kind = self._kind(request.params["object_type"])
        activity = self._activity(request.params["object_id"], kind)
        names = request.args("properties") or DEFAULT_ENGAGEMENT_PROPERTIES
        return self._engagement(activity, names, "contacts" in request.args("associations"))

    def _activity(self, object_id: str, kind: ActivityKind) -> Activity:
        activity = self.crm.activity(int(object_id)) if object_id.isdigit() else None
        if activity is None or activity.kind is not kind:
            raise self.error(404, f"Object not found. objectId are usually numeric. ({object_id})")
        return activity

    @route("POST", "/crm/v3/objects/{object_type}", name="{object_type}.create")
    def create_engagement(self, request: Request):
        kind = self._kind(request.params["object_type"])
        activity = self._create(kind, [request.json() or {}])[0]
        return Response(201, self._engagement(activity, engagement_properties(activity)))

    @route("POST", "/crm/v3/objects/{object_type}/batch/create", name="{object_type}.batch_create")
    def batch_create_engagements(self, request: Request):
        kind = self._kind(request.params["object_type"])
        created = self._create(kind, self._inputs(request, BATCH_LIMIT))
        return self._batch([self._engagement(a, engagement_properties(a)) for a in created], [], status=201)

    def _unique_properties(self, object_type: str) -> list[str]:
        return [name for name, prop in self.catalogue.properties[object_type].items() if prop.get("hasUniqueValue")]

    def _check_unique(self, kind: ActivityKind, writes: list[dict]) -> None:
        """400 for the whole call when a unique property's value is held by another record, or given twice in it.

        Whether HubSpot answers this with 400 or 409 was not confirmed: 400 for the whole batch is the stricter form.
        """
        object_type = OBJECT_OF_KIND[kind]
        problems: list[dict[str, Any]] = []
        for name in self._unique_properties(object_type):
            given: set[str] = set()
            for properties in writes:
                if properties.get(name) in (None, ""):  # no value: any number of records may lack one
                    continue
                value = str(properties[name])
                if value in given:
                    where = "is given to more than one input of this batch"
                elif self.crm.added_with(kind, name, value):
                    where = f"is already held by another {kind.value}"
                else:
                    given.add(value)
                    continue
                problems.append({"message": f'The value "{value}" of the unique value property "{name}" {where}',
                                 "in": name, "context": {"propertyName": [name], "value": [value]}})
        if problems:
            raise self.error(400, "Property values were not valid: " + "; ".join(p["message"] for p in problems),
                             errors=problems, context={"propertyName": sorted({p["in"] for p in problems})})

    @route("POST", "/crm/v3/objects/{object_type}/batch/read", name="{object_type}.batch_read")
    def batch_read_engagements(self, request: Request):
        """By record id, or with ``idProperty`` by the values of a unique value property; 207 names the missing."""
        object_type = request.params["object_type"]
        kind = self._kind(object_type)
        inputs = self._inputs(request, BATCH_LIMIT)
        body = request.json()
        names = self._names(body, "properties") or DEFAULT_ENGAGEMENT_PROPERTIES
        history = self._names(body, "propertiesWithHistory")
        id_property = body.get("idProperty")
        if id_property is not None and id_property not in self._unique_properties(object_type):
            raise self.error(400, f"Unable to perform read by non-unique {object_type} property {id_property}: "
                                  f"idProperty must name a property with hasUniqueValue",
                             context={"propertyName": [str(id_property)]})
        found: dict[int, Activity] = {}
        missing: dict[str, None] = {}
        for n, item in enumerate(inputs):
            given = item.get("id") if isinstance(item, dict) else None
            if given is None or isinstance(given, (bool, dict, list)):
                raise self.error(400, f"Invalid input JSON: inputs[{n}] needs an id")
            given = str(given)
            activity = None if request.arg("archived") == "true" else self._read_one(kind, given, id_property)
            if activity is None:
                missing[given] = None
            else:
                found[activity.id] = activity
        results = [self._engagement(found[key], names, history=history) for key in sorted(found)]
        errors = [standard_error(list(missing), 404, f"Could not get some {kind.value.upper()} objects, they may be "
                                                     f"deleted or not exist. Check that ids are valid.",
                                 "OBJECT_NOT_FOUND")] if missing else []
        return self._batch(results, errors)

    def _names(self, body: dict, key: str) -> list[str]:
        names = body.get(key) or []
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise self.error(400, f"Invalid input JSON: '{key}' must be a list of property names")
        return names

    def _read_one(self, kind: ActivityKind, given: str, id_property: str | None) -> Activity | None:
        if id_property is not None:
            holders = self.crm.added_with(kind, id_property, given)
            return holders[0] if holders else None
        activity = self.crm.activity(int(given)) if given.isdigit() else None
        return activity if activity is not None and activity.kind is kind else None

    def _create(self, kind: ActivityKind, inputs: list[dict]) -> list[Activity]:
        """Every input checked, then all created: nothing of a call is created when any input is refused."""
        with self._creating:  # unique values are checked and claimed in one step
            contacts = [self._check_engagement(kind, item) for item in inputs]
            self._check_unique(kind, [item.get("properties") or {} for item in inputs])
            created = []
            for contact_index, item in zip(contacts, inputs, strict=True):
                attributes, occurred, owner = engagement_write(kind, item.get("properties") or {})
                created.append(self.crm.log_activity(contact_index, kind, occurred, owner, attributes, by_api=True))
            return created

    def _check_engagement(self, kind: ActivityKind, item: dict) -> int:
        """The associated contact's index (-1: none); 400 for what HubSpot would refuse."""
        properties = item.get("properties") or {}
        object_type = OBJECT_OF_KIND[kind]
        if not properties.get("hs_timestamp"):
            raise self.error(400, f"Property values were not valid: hs_timestamp is required for {object_type}")
        self._check_write(object_type, [{k: v for k, v in properties.items() if k != "hs_timestamp"}])
        contacts = []
        for association in item.get("associations") or []:
            type_ids = {t.get("associationTypeId") for t in association.get("types") or []}
            to_id = str((association.get("to") or {}).get("id"))
            try:
                index = self.crm.index_of(to_id)
            except UnknownContact:
                index = None
            if index is None or type_ids != {ASSOCIATION_TO_CONTACT[kind]}:
                raise self.error(400, f"One or more associations are invalid: {object_type} to {to_id} with "
                                      f"type ids {sorted(map(str, type_ids))} "
                                      f"(expected {ASSOCIATION_TO_CONTACT[kind]})")
            contacts.append(index)
        return contacts[0] if contacts else -1

    @route("POST", "/crm/v3/objects/{object_type}/search", name="{object_type}.search")
    def search_engagements(self, request: Request):
        kind = self._kind(request.params["object_type"])
        search = self._search(request)
        cache: dict[int, dict] = {}

        def value(activity: Activity, prop: str):
            if activity.id not in cache:
                cache[activity.id] = engagement_properties(activity)
            return cache[activity.id].get(prop)

        groups = search.groups or ((),)
        found = {a.id: a for group in groups for a in self._engagement_candidates(kind, group)
                 if all(holds(f, value(a, f.prop)) for f in group)}
        total, page = self._run(search, [found[k] for k in sorted(found)], value)
        names = search.properties or DEFAULT_ENGAGEMENT_PROPERTIES
        return self._search_answer(request, search, total, [self._engagement(a, names) for a in page])

    def _engagement_candidates(self, kind: ActivityKind, group):
        low = bounds(group, "hs_lastmodifieddate")[0]
        if low is not None:
            return self.crm.activities_touched_since(kind, int(low))
        if any(f.operator == "CONTAINS_TOKEN" and f.prop in ("hs_task_body", "hs_note_body") for f in group):
            return self.crm.added_activities(kind)  # generated bodies hold no tokens a client could look for
        return self.crm.iter_activities(kind)

    # -- properties ------------------------------------------------------------------------------

    def _catalogue(self, object_type: str) -> dict[str, dict]:
        if object_type not in self.catalogue.properties:
            raise self.error(400, f"Unable to infer object type from: {object_type}")
        return self.catalogue.properties[object_type]

    @route("GET", "/crm/v3/properties/{object_type}", name="properties.list")
    def list_properties(self, request: Request):
        return {"results": list(self._catalogue(request.params["object_type"]).values())}

    @route("GET", "/crm/v3/properties/{object_type}/{property_name}", name="properties.get")
    def get_property(self, request: Request):
        prop = self._catalogue(request.params["object_type"]).get(request.params["property_name"])
        if prop is None:
            raise self.error(404, f"Unable to find property {request.params['property_name']}")
        return prop

    @route("POST", "/crm/v3/properties/{object_type}", name="properties.create")
    def create_property(self, request: Request):
        object_type, body = request.params["object_type"], request.json() or {}
        existing = self._catalogue(object_type)
        missing = [k for k in ("name", "label", "type", "fieldType", "groupName") if not body.get(k)]
        if missing:
            raise self.error(400, f"Property definition is missing {', '.join(missing)}")
        if body["type"] not in PROPERTY_TYPES or (body["type"] == "enumeration" and not body.get("options")):
            raise self.error(400, f"Invalid type {body['type']!r} (enumerations need options)")
        if body["groupName"] not in self.catalogue.groups[object_type]:
            raise self.error(400, f"Property group {body['groupName']} does not exist")
        if body["name"] in existing:
            raise self.error(409, f"Property named '{body['name']}' already exists.", category="OBJECT_ALREADY_EXISTS")
        if object_type in ENGAGEMENT_TYPES and body["name"] in NEUTRAL_ATTRIBUTES[ENGAGEMENT_TYPES[object_type]]:
            raise self.error(400, f"A custom {object_type} property named {body['name']!r} is not served by this "
                                  f"sandbox: it keeps a standard field under that name")
        unique = body.get("hasUniqueValue", False)
        if not isinstance(unique, bool):
            raise self.error(400, f"Invalid input JSON: hasUniqueValue must be true or false, got {unique!r}")
        if unique:
            self._check_unique_definition(object_type, body)
        options = [{"hidden": False, "description": "", "displayOrder": n, **o}
                   for n, o in enumerate(body.get("options") or [])]
        prop = definition(body["name"], body["label"], body["type"], body["fieldType"], body["groupName"], options,
                          description=body.get("description", ""), hubspotDefined=False, hasUniqueValue=unique)
        return Response(201, self.catalogue.add_property(object_type, prop))

    def _check_unique_definition(self, object_type: str, body: dict) -> None:
        """What a new unique value property must satisfy: an object type this sandbox enforces it on, a
        single-line text or number field, and fewer than 10 such properties on the object type already."""
        if object_type not in self.unique_value_objects:
            raise self.error(400, f"Unique value properties on {object_type} are not served by this sandbox "
                                  f"(served on: {', '.join(sorted(self.unique_value_objects)) or 'none'})")
        if (body["type"], body["fieldType"]) not in UNIQUE_FIELD_TYPES:
            raise self.error(400, f"Property {body['name']} cannot require unique values: only single-line text "
                                  f"(string/text) and number (number/number) properties can")
        if len(self._unique_properties(object_type)) >= UNIQUE_PROPERTIES_PER_OBJECT:
            raise self.error(400, f"{object_type} already has {UNIQUE_PROPERTIES_PER_OBJECT} unique value "
                                  f"properties, the most an object type may have")

    @route("PATCH", "/crm/v3/properties/{object_type}/{property_name}", name="properties.update")
    def update_property(self, request: Request):
        """A partial update: the fields given replace the stored ones; ``options`` replaces the whole list."""
        object_type, name, body = request.params["object_type"], request.params["property_name"], request.json() or {}
        if name not in self._catalogue(object_type):
            raise self.error(404, f"Unable to find property {name}")
        if "hasUniqueValue" in body:
            raise self.error(400, f"hasUniqueValue of {name} cannot be changed: a property requires unique values "
                                  f"only when it is created so")
        changes = {k: v for k, v in body.items() if k in UPDATABLE}
        if "options" in changes:
            changes["options"] = [{"hidden": False, "description": "", "displayOrder": n, **o}
                                  for n, o in enumerate(changes["options"] or [])]
        return self.catalogue.update_property(object_type, name, changes)

    @route("GET", "/crm/v3/properties/{object_type}/groups", name="groups.list")
    def list_groups(self, request: Request):
        self._catalogue(request.params["object_type"])
        return {"results": list(self.catalogue.groups[request.params["object_type"]].values())}

    @route("GET", "/crm/v3/properties/{object_type}/groups/{group_name}", name="groups.get")
    def get_group(self, request: Request):
        self._catalogue(request.params["object_type"])
        group = self.catalogue.groups[request.params["object_type"]].get(request.params["group_name"])
        if group is None:
            raise self.error(404, f"Unable to find property group {request.params['group_name']}")
        return group

    @route("POST", "/crm/v3/properties/{object_type}/groups", name="groups.create")
    def create_group(self, request: Request):
        object_type, body = request.params["object_type"], request.json() or {}
        self._catalogue(object_type)
        if not body.get("name") or not body.get("label"):
            raise self.error(400, "Property group needs a name and a label")
        if body["name"] in self.catalogue.groups[object_type]:
            raise self.error(409, f"Property group '{body['name']}' already exists.", category="OBJECT_ALREADY_EXISTS")
        group = self.catalogue.add_group(object_type, body["name"], body["label"], int(body.get("displayOrder", -1)))
        return Response(201, group)

    # -- associations and owners -----------------------------------------------------------------

    @route("POST", "/crm/v4/associations/{from_type}/{to_type}/batch/read", name="associations.batch_read")
    def batch_read_associations(self, request: Request):
        """An input with no associations of the type asked (or no such object) is an error of a 207, not an
        empty result: HubSpot names it ``crm.associations.NO_ASSOCIATIONS_FOUND``."""
        from_type, to_type = request.params["from_type"], request.params["to_type"]
        inputs = self._inputs(request, ASSOCIATION_BATCH_LIMIT)
        results, errors = [], []
        for item in inputs:
            object_id = str(item.get("id"))
            targets = self._associated(from_type, object_id, to_type)
            if targets:
                results.append({"from": {"id": object_id}, "to": targets})
            else:
                errors.append(no_associations_error(from_type, object_id, to_type))
        return self._batch(results, errors)

    @route("GET", "/crm/v4/objects/{from_type}/{object_id}/associations/{to_type}", name="associations.list")
    def list_associations(self, request: Request):
        p = request.params
        targets = self._associated(p["from_type"], p["object_id"], p["to_type"])
        if targets is None:
            raise self.error(404, f"No {p['from_type']} with id {p['object_id']}")
        return {"results": targets}

    def _associated(self, from_type: str, object_id: str, to_type: str) -> list[dict] | None:
        """v4 association targets of one object, or None when the object does not exist. The sandbox's only
        associations are between contacts and engagements: any other pair of object types has none."""
        for object_type in (from_type, to_type):
            if object_type not in ASSOCIABLE_TYPES:
                raise self.error(400, f"Unable to infer object type from: {object_type}")
        if from_type == "contacts":
            try:
                index = self.crm.index_of(object_id)
            except UnknownContact:
                return None
            kind = ENGAGEMENT_TYPES.get(to_type)
            return [self._link(str(a.id), ASSOCIATION_FROM_CONTACT[kind])
                    for a in self.crm.activities(index) if a.kind is kind] if kind else []
        if from_type in UNHELD_OBJECT_TYPES:
            return None
        kind = ENGAGEMENT_TYPES[from_type]
        activity = self.crm.activity(int(object_id)) if object_id.isdigit() else None
        if activity is None or activity.kind is not kind:
            return None
        linked = to_type == "contacts" and activity.contact_index >= 0
        return [self._link(self.crm.id_of(activity.contact_index), ASSOCIATION_TO_CONTACT[kind])] if linked else []

    @staticmethod
    def _link(to_id: str, type_id: int) -> dict:
        return {"toObjectId": to_id, "associationTypes": [{"category": "HUBSPOT_DEFINED", "typeId": type_id}]}

    @route("GET", "/crm/v3/owners", name="owners.list")
    def list_owners(self, request: Request):
        owners = self.crm.tenant.owners
        if request.arg("email"):
            owners = [o for o in owners if o.email == request.arg("email").lower()]
        limit, start = self._limit(request, 500, default=100), self._after(request)
        body: dict[str, Any] = {"results": [self._owner(o) for o in owners[start:start + limit]]}
        if start + limit < len(owners):
            body["paging"] = self._next(request, str(start + limit))
        return body

    @route("GET", "/crm/v3/owners/{owner_id}", name="owners.get")
    def get_owner(self, request: Request):
        owner = next((o for o in self.crm.tenant.owners if str(o.id) == request.params["owner_id"]), None)
        if owner is None:
            raise self.error(404, f"Owner {request.params['owner_id']} not found")
        return self._owner(owner)

    def _owner(self, owner) -> dict:
        stamp = iso(self.crm.tenant.anchor_ms - 400 * 86_400_000)
        return {"id": str(owner.id), "email": owner.email, "firstName": owner.first_name, "lastName": owner.last_name,
                "userId": owner.id + 90_000, "type": "PERSON", "createdAt": stamp, "updatedAt": stamp,
                "archived": False}

    # -- what the tenant holds, in HubSpot's words (for tests) -------------------------------------

    def properties_of(self, contact_id: str) -> dict[str, str | None]:
        """Every property value of a contact now, as the API would give it."""
        index = self.crm.index_of(contact_id)
        return contact_properties(index, self.crm.record(index))

    def created_tasks(self) -> list[dict]:
        """Tasks created through the API: their HubSpot properties and associated contact ids."""
        return [{"id": str(task.id), "properties": engagement_properties(task),
                 "contacts": [self.crm.id_of(task.contact_index)] if task.contact_index >= 0 else []}
                for task in self.crm.tasks()]


VENDOR = HubSpot
