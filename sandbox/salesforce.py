"""The Salesforce imitation: REST API v59+ over HTTPS, as simple-salesforce expects it.

Routes (``{v}`` is any ``vNN.N``):

====================================================  ===================  =============================
``POST /services/oauth2/token``                       ``oauth.token``      password, refresh_token,
                                                                           client_credentials, JWT bearer
                                                                           (``salesforce_auth.py``)
``POST /services/Soap/u/{version}``                   ``soap.login``       SOAP API login(): username,
                                                                           password + security token,
                                                                           31.0-64.0 (``salesforce_soap.py``)
``GET  /services/data/{v}/query?q=SOQL``              ``query``            2,000 a page by default
``GET  /services/data/{v}/query/{locator}``           ``query.more``       nextRecordsUrl
``GET  /services/data/{v}/queryAll?q=SOQL``           ``queryAll``         deleted rows too
``GET  /services/data/{v}/queryAll/{locator}``        ``queryAll.more``
``GET  /services/data/{v}/sobjects``                  ``describe.global``
``GET  /services/data/{v}/sobjects/{type}/describe``  ``describe``
``POST /services/data/{v}/sobjects/{type}``           ``sobjects.create``  201 ``{id, success, errors}``
``GET|PATCH /services/data/{v}/sobjects/{type}/{id}`` ``sobjects.get|update``
``PATCH|POST /services/data/{v}/composite/sobjects``  ``composite.update|create``  200 records at most,
                                                                           per-record results in order
``PATCH /services/data/{v}/sobjects/{type}/{field}/{value}``  ``sobjects.upsert``  by External ID: 201/200
                                                                           with ``created``, 300, 404
``PATCH /services/data/{v}/composite/sobjects/{type}/{field}``  ``composite.upsert``  per-record ``created``
====================================================  ===================  =============================

Writes, collections and upserts are served by :mod:`leadpulse.sandbox.salesforce_writes`, OAuth by
:mod:`leadpulse.sandbox.salesforce_auth`, the SOAP API login() by :mod:`leadpulse.sandbox.salesforce_soap`, the Bulk
API 2.0, ``/limits`` and ``/limits/recordCount`` by :mod:`leadpulse.sandbox.salesforce_bulk`.

The tenant's people are split by a hash of their index into Leads (00Q, about 60%) and Contacts
(003, with the firmographics on their Account, 001). Emails, calls, tasks and notes are Tasks
(00T, ``TaskSubtype`` Email, Call or Task), meetings are Events (00U), form submissions and
campaign sends are CampaignMembers (00v) of five fixed Campaigns (701), owners are Users (005).
About 1% of people (and everything hanging off them) are deleted: only ``queryAll`` shows them.

A Lead whose person converted (synth's ``converted``: about a quarter of Leads) is converted as
lead conversion leaves one: ``IsConverted``, Status ``Closed - Converted``, ``ConvertedDate``, and
``ConvertedContactId`` (the same person as a Contact, 003 with the Lead's number, created when it
converted), ``ConvertedAccountId`` (its company) and ``ConvertedOpportunityId`` (006, won). The Lead
keeps its generated values and its conversion as ``SystemModstamp``; writes and touches since land
on its Contact, its activities name the Contact (``WhoId``) and its memberships gain the ContactId.
Updating it (REST or collections) and creating a Task or Event that names it fail with
``CANNOT_UPDATE_CONVERTED_LEAD`` / "cannot reference converted lead". Opportunities and their
OpportunityContactRoles (00K) are described in :mod:`leadpulse.sandbox.salesforce_deals`. Every
record says who made and last changed it (``CreatedById``, ``LastModifiedById``): its owner, or the
admin (the first owner), unless a client's write through the API is its latest change, which names
the integration user whose tokens every client holds (``Integration User``, Username
``integration@leadpulse.sandbox``).

Activities reach back over each person's whole life (up to two years); as Salesforce's nightly job
archives them (SOAP API guide, "Archived Activities"), Events and closed Tasks dated 365 days or
more before the tenant's anchor carry ``IsArchived = true`` and only ``queryAll`` shows them; what
clients create waits for the next run, so it is never archived here.

SOQL is a subset read by a small recursive-descent parser: a field list (with parent fields
such as ``Account.Industry`` or ``Owner.Email``) or ``COUNT()``; ``WHERE`` with ``= != < <= > >=
IN NOT IN LIKE``, ``AND``/``OR``/``NOT`` and parentheses (mixing AND and OR needs parentheses, as
in Salesforce); ``ORDER BY`` fields with ``ASC|DESC`` and ``NULLS FIRST|LAST``; ``LIMIT`` and
``OFFSET``. Datetime literals are ``YYYY-MM-DDThh:mm:ss[.SSS](Z|+hh:mm)`` (the ``+0000`` that
Salesforce prints is refused in a query, as the SOQL reference lists no such form), plus ``TODAY``,
``YESTERDAY`` and ``LAST_N_DAYS:n``. Records are never materialised in bulk: a query keeps the
matching keys (ints), narrowed first by ``Id``, ``LastModifiedDate``/``SystemModstamp``/
``CreatedDate`` and ``WhoId``/``LeadId``/``ContactId``/``OpportunityId`` conditions, and renders a
page at a time.
A ``WHERE`` on any other field scans every candidate, which is slow past ~100k people. On a million
people a keyset page (``Id > '...' ORDER BY Id LIMIT 2000``) answers in ~0.15 s, a
``SystemModstamp >=`` one-week window of Leads in ~3 s for its first page (later pages in
milliseconds; the first time window over Leads also indexes every conversion, ~6 s once), and a
one-day window of Tasks in ~25 s, since activities are regenerated per person. The terms an OR joins
on one field read its value once per row, and its LIKE patterns are matched as one regex: 200
``Subject LIKE '%[...]'`` terms over the ~900k Tasks of 100k people take about as long as one (~10 s).

Creates are served for Task and Event only, and need a ``WhoId`` (the sandbox keeps activities per
person); Leads and Contacts come from the synthetic tenant (``sb.crm.add_contact``).

Custom fields (``Lead_Score__c``) cannot be created over REST in Salesforce, so here they exist
only once a test or the demo calls ``add_custom_field`` (``external_id=True`` makes an External ID,
which upserts match on). Writes naming a field the object lacks fail that record with
``INVALID_FIELD``.

Faults: besides the server's, ``faults.fail_records(ids, code="UNABLE_TO_LOCK_ROW", times=N)`` makes the next
N writes of those records (REST or collections) fail as a row another transaction holds does, with Salesforce's
"unable to obtain exclusive access to this record or 1 records: <id>" (``ROW_LOCK``; give ``message`` to
word it otherwise), and ``faults.fail_batches("composite.*", code="UNABLE_TO_LOCK_ROW", times=N)`` makes every
record of the next N collections calls fail so. Any other ``code`` fails the record with that code.

Limits: one rolling 24-hour ``DAILY`` window (enterprise, professional, unlimited and performance
100,000 without the per-licence extras; developer 15,000); ``Sforce-Limit-Info: api-usage=USED/MAX``
on every counted answer (the 401 of an invalid session is answered before counting, so it has
none, and logins, OAuth or SOAP, are not counted, as in Salesforce); over the allowance 403
``REQUEST_LIMIT_EXCEEDED``. Open query cursors are
capped at ten, the oldest dropped first (``INVALID_QUERY_LOCATOR`` afterwards), as in Salesforce.
"""
from __future__ import annotations

import bisect
import re
import threading
from array import array
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from .limits import Verdict, Window
from .salesforce_auth import OAuth
from .salesforce_bulk import BulkApi
from .salesforce_deals import DealRow, deal_objects, deal_of
from .salesforce_records import (
    CAMPAIGNS,
    INTEGRATION_OWNER,
    MEMBER_SLOTS,
    PERSON_KEYED,
    AccountRow,
    ActivityRow,
    ContactRow,
    LeadRow,
    MemberRow,
    PersonRow,
    Row,
    SObject,
    TaskRow,
    UserRow,
    catalogue,
    is_lead,
    members_of,
    parse_id,
    person_behind,
    person_id,
    person_index,
    person_number,
    sf_id,
    wire,
)
from .salesforce_soap import SoapLogin
from .salesforce_soql import (
    Accessor,
    Narrowing,
    Query,
    SoqlError,
    comparable,
    compile_condition,
    parse_soql,
    resolve,
    sort_rows,
)
from .salesforce_writes import COLLECTION_MAX, Writes
from .server import Request, Vendor, VendorError, route
from .state import ADDED_ACTIVITY_BASE, IdScheme
from .synth import YEAR_MS, Activity, ActivityKind

API_VERSIONS = ("59.0", "60.0", "61.0", "62.0")


# -- the vendor: routes, cursors, writes ----------------------------------------------------------

DAILY_ALLOWANCE = {"enterprise": 100_000, "developer": 15_000, "professional": 100_000, "unlimited": 100_000,
                   "performance": 100_000}
TASK_KINDS = frozenset({ActivityKind.EMAIL, ActivityKind.CALL, ActivityKind.TASK, ActivityKind.NOTE})
_BATCH_DEFAULT, _BATCH_MIN, _BATCH_MAX = 2000, 200, 2000
_VERSION = re.compile(r"v\d{2}\.0$")


@dataclass
class Cursor:
    """An open query: the matching keys in order, and how to render them."""

    sobject: SObject
    accessors: tuple[Accessor, ...]
    keys: array
    batch: int
    all_rows: bool
    count_only: bool = False


class Salesforce(Writes, OAuth, SoapLogin, BulkApi, Vendor):
    """Salesforce's REST API; see the module docstring for what is served."""

    name = "salesforce"
    tls = True
    ids = IdScheme(to_id=person_id, to_index=person_behind)
    tiers = tuple(DAILY_ALLOWANCE)
    max_cursors = 10
    activity_history_ms = 3 * YEAR_MS  # every person's whole life, so archived activities (a year old) exist

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.objects = {**catalogue(), **{o.name.lower(): o for o in deal_objects()}}
        self._lock = threading.RLock()
        self._cursors: OrderedDict[str, Cursor] = OrderedDict()
        self._cursor_count = 0
        self._conversions: tuple[array, array] | None = None
        self._converted_leads: dict[int, int] | None = None  # index -> conversion, once the index is built

    # -- the framework's hooks --

    def windows(self) -> list[Window]:
        return [Window("DAILY", DAILY_ALLOWANCE[self.tier], 86_400)]

    def credentials(self) -> dict:
        return {"access_token": self.tokens.current, **self.oauth_credentials(), "security_token": self.security_token}

    def error(self, status: int, message: str, **context) -> VendorError:
        code = context.get("code") or _DEFAULT_CODES.get(status, "UNKNOWN_EXCEPTION")
        if status == 400 and message.startswith("Invalid input JSON"):
            code = "JSON_PARSER_ERROR"
        body = {"message": message, "errorCode": code}
        if context.get("fields"):
            body["fields"] = list(context["fields"])
        return VendorError(status, [body])

    def unauthorized(self) -> VendorError:
        return VendorError(401, [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}],
                           {"WWW-Authenticate": 'Token'})

    def throttled(self, verdict: Verdict) -> VendorError:
        return VendorError(403, [{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}])

    def limit_headers(self, verdict: Verdict) -> dict[str, str]:
        state = verdict.state("DAILY")
        return {"Sforce-Limit-Info": f"api-usage={state.used}/{state.window.limit}"} if state else {}

    def contact_index(self, contact_id: str) -> int:
        index = person_index(contact_id)
        if index is None or not 0 <= index < self.crm.size:
            raise self.error(404, "The requested resource does not exist")
        return index

    # -- the Python API for tests and the demo --

    def sobject(self, name: str) -> SObject:
        found = self.objects.get(str(name).lower())
        if found is None:
            raise SoqlError(f"sObject type '{name}' is not supported. If you are attempting to use a custom object, "
                            "be sure to append the '__c' after the entity name.", "INVALID_TYPE")
        return found

    def conversion_ms(self, index: int) -> int | None:
        """When generated person ``index`` converted, or None: a converted Lead stays a Lead, frozen, and its
        person is a Contact as well (people added since have not converted)."""
        if not 0 <= index < self.crm.tenant.size:
            return None
        if self._converted_leads is not None and is_lead(index):
            return self._converted_leads.get(index)
        person = self.crm.tenant.fields(index)
        return person["converted_ms"] if person["converted"] else None

    def convert_lead(self, lead_id: str) -> str:
        """Convert a live Lead now, as a user would in Setup's Convert dialog: it becomes read-only with its
        ``Converted*Id`` fields set and ``SystemModstamp`` moved, its person is a Contact from now on, and its
        activities name that Contact (their own stamps unmoved). Returns the Contact's id."""
        index = self.contact_index(lead_id)
        if not is_lead(index) or self.conversion_ms(index) is not None:
            raise ValueError(f"{lead_id} is no unconverted Lead")
        self._conversion_index()
        with self._lock:
            assert self._converted_leads is not None
            self._converted_leads[index] = self.crm.clock_ms()
            found = sorted((at, i) for i, at in self._converted_leads.items())
            self._conversions = (array("q", (at for at, _ in found)), array("q", (i for _, i in found)))
        return sf_id("003", index + 1)

    def converted_leads_between(self, low_ms: int, high_ms: int) -> list[int]:
        """Indexes of converted Leads whose conversion lies in [low_ms, high_ms], ascending."""
        times, order = self._conversion_index()
        return sorted(order[bisect.bisect_left(times, low_ms):bisect.bisect_right(times, high_ms)])

    def _conversion_index(self) -> tuple[array, array]:
        # Built on the first time window over Leads: every Lead drawn once, about 5 s for a million people.
        with self._lock:
            if self._conversions is None:
                tenant = self.crm.tenant
                found = sorted((at, index) for index in range(tenant.size)
                               if is_lead(index) and (at := self.conversion_ms(index)) is not None)
                self._conversions = (array("q", (at for at, _ in found)), array("q", (i for _, i in found)))
                self._converted_leads = {index: at for at, index in found}
            return self._conversions

    # -- rows --

    def row_by_id(self, sobject: SObject, record_id: Any) -> Row | None:
        """The row an id names, if it exists (deleted rows included)."""
        parsed = parse_id(record_id)
        if parsed is None or parsed[0] != sobject.prefix:
            return None
        return self.row_by_key(sobject, parsed[1])

    def row_by_key(self, sobject: SObject, key: int, cache: dict | None = None) -> Row | None:
        cls = sobject.row
        if issubclass(cls, PersonRow):
            return self._person_row(cls, key)
        if issubclass(cls, ActivityRow):
            activity = self._activity(key, cache)
            kinds = TASK_KINDS if cls is TaskRow else {ActivityKind.MEETING}
            return cls(self, activity) if activity is not None and activity.kind in kinds else None
        if cls is MemberRow:
            index = (key - 1) // MEMBER_SLOTS
            return MemberRow(self, key) if 0 <= index < self.crm.size and key in members_of(self, index) else None
        if issubclass(cls, DealRow):
            deal = deal_of(self, key - 1)
            return cls(self, key, deal) if deal is not None else None
        return cls(self, key) if key in self._numbered(cls) else None

    def _person_row(self, cls: type[Row], key: int) -> PersonRow | None:
        # Every person is a Lead or a Contact; a converted Lead's person is its Contact as well.
        index = key - 1
        if not 0 <= index < self.crm.size:
            return None
        lead = is_lead(index)
        if cls is LeadRow:
            return LeadRow(self, key) if lead else None
        if not lead:
            return ContactRow(self, key)
        converted = self.conversion_ms(index)
        return None if converted is None else ContactRow(self, key, converted)

    def _numbered(self, cls: type[Row]) -> Iterable[int]:
        """The keys of the small fixed tables (Account, Campaign, User), ascending."""
        if cls is UserRow:
            return sorted([INTEGRATION_OWNER.id, *(o.id for o in self.crm.tenant.owners)])
        return range(1, (self.crm.tenant.companies if cls is AccountRow else len(CAMPAIGNS)) + 1)

    def _activity(self, activity_id: int, cache: dict | None) -> Activity | None:
        # Generated activities are rebuilt per person; a page reuses one person's list.
        if activity_id >= ADDED_ACTIVITY_BASE or cache is None:
            return self.crm.activity(activity_id)
        index, slot = self.crm.tenant.activity_index(activity_id)
        if index not in cache:
            cache.clear()
            cache[index] = self.crm.tenant.activities(index) if 0 <= index < self.crm.tenant.size else []
        generated = cache[index]
        return generated[slot] if slot < len(generated) else None

    def candidates(self, sobject: SObject, where) -> Iterator[Row]:
        """Rows that may match ``where``, ascending by Id, narrowed by its top-level AND terms."""
        cls = sobject.row
        if issubclass(cls, PersonRow):
            return self._people(sobject, Narrowing.of(where))
        if issubclass(cls, ActivityRow):
            kinds = TASK_KINDS if cls is TaskRow else frozenset({ActivityKind.MEETING})
            return self._activities(cls, kinds, Narrowing.of(where, ("whoid",)))
        if cls is MemberRow:
            return self._members(Narrowing.of(where, ("leadid", "contactid")))
        if issubclass(cls, DealRow):
            return self._deals(sobject, Narrowing.of(where, ("contactid", "opportunityid")))
        return (cls(self, key) for key in self._numbered(cls))

    def _people(self, sobject: SObject, narrow: Narrowing) -> Iterator[Row]:
        indexes: Iterable[int]
        if narrow.ids is not None:
            indexes = sorted({i for i in map(person_number, narrow.ids) if i is not None})
        elif narrow.since_ms is not None or narrow.until_ms is not None:
            low, high = narrow.since_ms or 0, narrow.until_ms or 2**62
            found = set(self.crm.updated_between(low, high))
            if sobject.row is LeadRow:  # a converted Lead keeps the stamp of its conversion
                found.update(self.converted_leads_between(low, high))
            indexes = sorted(found)
        else:
            indexes = range(self._start_key(narrow.after, sobject.prefix) - 1, self.crm.size)
        for index in indexes:
            row = self._person_row(sobject.row, index + 1)
            if row is not None:
                yield row

    def _start_key(self, after: str | None, prefix: str) -> int:
        parsed = parse_id(after) if after else None
        if parsed is None:
            return 1 if after is None or after < prefix else 2**62
        return parsed[1] if parsed[0] == prefix else (1 if parsed[0] < prefix else 2**62)

    def _persons_for(self, narrow: Narrowing, start: int, prefix: str) -> Iterable[int]:
        """People whose records of kind ``prefix`` may match: named ones, recently touched ones, or all."""
        if narrow.refs is not None:
            return sorted({i for i in map(person_number, narrow.refs) if i is not None})
        if narrow.since_ms is not None:
            return sorted(set(self.crm.touched_since(narrow.since_ms)) | self._edited_people(prefix))
        return range(max(0, start), self.crm.tenant.size)

    def _edited_people(self, prefix: str) -> set[int]:
        # An edit moves a generated record's stamp past its person's last touch: search must still find it.
        numbers = self.edited_numbers(prefix)
        if prefix == "00v":
            return {(n - 1) // MEMBER_SLOTS for n in numbers}
        if prefix in PERSON_KEYED:
            return {n - 1 for n in numbers}
        return {self.crm.tenant.activity_index(n)[0] for n in numbers if n < ADDED_ACTIVITY_BASE}

    def _activities(self, cls: type[ActivityRow], kinds: frozenset, narrow: Narrowing) -> Iterator[Row]:
        if narrow.ids is not None:
            for record_id in sorted(set(narrow.ids)):
                row = self.row_by_id(self.objects["task" if cls is TaskRow else "event"], record_id)
                if row is not None:
                    yield row
            return
        start = self._start_key(narrow.after, cls.prefix)
        first_person = self.crm.tenant.activity_index(min(start, ADDED_ACTIVITY_BASE))[0]
        persons = set(self._persons_for(narrow, first_person, cls.prefix))
        for index in sorted(persons):
            if index < self.crm.tenant.size:
                yield from (cls(self, a) for a in self.crm.tenant.activities(index) if a.kind in kinds)
        refs = None if narrow.refs is None else persons
        for activity in self.crm.added_activities():
            if activity.kind in kinds and (refs is None or activity.contact_index in refs):
                yield cls(self, activity)

    def _members(self, narrow: Narrowing) -> Iterator[Row]:
        if narrow.ids is not None:
            rows = (self.row_by_id(self.objects["campaignmember"], i) for i in sorted(set(narrow.ids)))
            yield from (row for row in rows if row is not None)
            return
        start = (self._start_key(narrow.after, "00v") - 1) // MEMBER_SLOTS
        for index in self._persons_for(narrow, start, "00v"):
            if index < self.crm.size:
                yield from (MemberRow(self, key) for key in members_of(self, index))

    def _deals(self, sobject: SObject, narrow: Narrowing) -> Iterator[Row]:
        keys: Iterable[int]
        if narrow.ids is not None:
            keys = sorted({parsed[1] for parsed in map(parse_id, narrow.ids) if parsed and parsed[0] == sobject.prefix})
        else:
            keys = (index + 1 for index in self._persons_for(narrow, self._start_key(narrow.after, sobject.prefix) - 1,
                                                             sobject.prefix))
        for key in keys:
            row = self.row_by_key(sobject, key)
            if row is not None:
                yield row

    # -- queries --

    def run(self, soql: str, all_rows: bool, batch: int) -> tuple[Cursor, int]:
        """Evaluate a query: the cursor over its matching keys and the total size."""
        query = parse_soql(soql, self.crm.clock_ms())
        sobject = self.sobject(query.sobject)
        accessors = tuple(resolve(self.objects, sobject, path) for path in query.fields)
        test = compile_condition(self.objects, sobject, query.where) if query.where is not None else None
        order = tuple(resolve(self.objects, sobject, term.path) for term in query.order)
        if query.offset > 2000:
            raise SoqlError("Maximum SOQL offset allowed is 2000", "NUMBER_OUTSIDE_VALID_RANGE")
        keys = self._matching(sobject, query, test, order, all_rows)
        return Cursor(sobject, accessors, keys, batch, all_rows, query.count_only), len(keys)

    def _matching(self, sobject: SObject, query: Query, test, order: tuple[Accessor, ...], all_rows: bool) -> array:
        natural = not order or (len(order) == 1 and order[0].field.name == "Id" and not query.order[0].descending)
        wanted = None if query.limit is None else query.limit + query.offset
        keys, pairs = array("q"), []
        for row in self.candidates(sobject, query.where):
            if (not all_rows and (row.deleted or row.archived)) or (test is not None and not test(row)):
                continue
            if natural:
                keys.append(row.key)
                if wanted is not None and len(keys) >= wanted:
                    break
            else:
                pairs.append(([comparable(a.field, a.get(row)) for a in order], row.key))
        if not natural:
            ordered = sort_rows(pairs, query.order)
            keys = array("q", ordered[:wanted] if wanted is not None else ordered)
        return keys[query.offset:]

    def open_cursor(self, cursor: Cursor) -> str:
        with self._lock:
            self._cursor_count += 1
            locator = sf_id("01g", self._cursor_count)
            self._cursors[locator] = cursor
            while len(self._cursors) > self.max_cursors:
                self._cursors.popitem(last=False)
            return locator

    def page(self, cursor: Cursor, start: int, version: str, locator: str | None, total: int) -> dict:
        end = min(start + cursor.batch, len(cursor.keys))
        cache: dict = {}
        rows = (self.row_by_key(cursor.sobject, key, cache) for key in cursor.keys[start:end])
        records = [self.render(row, cursor.accessors, version) for row in rows if row is not None]
        answer = {"totalSize": total, "done": end >= len(cursor.keys), "records": records}
        if end < len(cursor.keys):
            locator = locator or self.open_cursor(cursor)
            endpoint = "queryAll" if cursor.all_rows else "query"
            answer["nextRecordsUrl"] = f"/services/data/{version}/{endpoint}/{locator}-{end}"
        elif locator is not None:
            with self._lock:
                self._cursors.pop(locator, None)
        return answer

    def render(self, row: Row, accessors: Iterable[Accessor], version: str) -> dict:
        """A record as the query API shows it: ``attributes`` first, then each selected field."""
        out = self._attributes(row, version)
        for accessor in accessors:
            node, current = out, row
            for relationship, id_field, parent in accessor.hops:
                if relationship not in node:
                    found = self.row_by_id(parent, current.value(id_field))
                    node[relationship] = None if found is None else self._attributes(found, version)
                current = self.row_by_id(parent, current.value(id_field))
                node = node[relationship]
                if node is None:
                    break
            else:
                node[accessor.field.name] = wire(accessor.field, current.value(accessor.field))
        return out

    def _attributes(self, row: Row, version: str) -> dict:
        name = self._object_of(row).name
        return {"attributes": {"type": name, "url": f"/services/data/{version}/sobjects/{name}/{row.id}"}}

    def _object_of(self, row: Row) -> SObject:
        return next(o for o in self.objects.values() if o.row is type(row))


    # -- routes: query --

    @route("GET", "/services/data/{version}/query", name="query")
    def query(self, request: Request):
        return self._query(request, all_rows=False)

    @route("GET", "/services/data/{version}/query/", name="query")
    def query_slash(self, request: Request):
        return self._query(request, all_rows=False)

    @route("GET", "/services/data/{version}/queryAll", name="queryAll")
    def query_all(self, request: Request):
        return self._query(request, all_rows=True)

    @route("GET", "/services/data/{version}/queryAll/", name="queryAll")
    def query_all_slash(self, request: Request):
        return self._query(request, all_rows=True)

    @route("GET", "/services/data/{version}/query/{locator}", name="query.more")
    def query_more(self, request: Request):
        return self._more(request)

    @route("GET", "/services/data/{version}/queryAll/{locator}", name="queryAll.more")
    def query_all_more(self, request: Request):
        return self._more(request)

    def _query(self, request: Request, all_rows: bool) -> dict:
        version = self._version(request)
        try:
            cursor, total = self.run(request.arg("q") or "", all_rows, self._batch_size(request))
        except SoqlError as exc:
            raise self.error(400, str(exc), code=exc.code) from None
        if cursor.count_only:
            return {"totalSize": total, "done": True, "records": []}
        return self.page(cursor, 0, version, None, total)

    def _more(self, request: Request) -> dict:
        version = self._version(request)
        locator, _, start = request.params["locator"].rpartition("-")
        with self._lock:
            cursor = self._cursors.get(locator)
            if cursor is not None:
                self._cursors.move_to_end(locator)
        if cursor is None or not start.isdigit() or int(start) > len(cursor.keys):
            raise self.error(400, "invalid query locator", code="INVALID_QUERY_LOCATOR")
        return self.page(cursor, int(start), version, locator, len(cursor.keys))

    def _batch_size(self, request: Request) -> int:
        options = request.headers.get("Sforce-Query-Options") or ""
        hit = re.search(r"batchSize\s*=\s*(\d+)", options)
        return min(_BATCH_MAX, max(_BATCH_MIN, int(hit[1]))) if hit else _BATCH_DEFAULT

    def _version(self, request: Request) -> str:
        version = request.params.get("version", "")
        if not _VERSION.match(version):
            raise self.error(404, "The requested resource does not exist")
        return version

    # -- routes: describe --

    @route("GET", "/services/data/{version}/sobjects", name="describe.global")
    def describe_global(self, request: Request):
        version = self._version(request)
        return {"encoding": "UTF-8", "maxBatchSize": COLLECTION_MAX,
                "sobjects": [o.summary(version) for o in self.objects.values()]}

    @route("GET", "/services/data/{version}/sobjects/{type}/describe", name="describe")
    def describe(self, request: Request):
        version = self._version(request)
        return self._path_object(request).describe(version)

    def _path_object(self, request: Request) -> SObject:
        try:
            return self.sobject(request.params["type"])
        except SoqlError as exc:
            raise self.error(404, str(exc), code="NOT_FOUND") from None

    # -- routes: records --

    @route("GET", "/services/data/{version}/sobjects/{type}/{id}", name="sobjects.get")
    def get_record(self, request: Request):
        version = self._version(request)
        sobject = self._path_object(request)
        row = self.row_by_id(sobject, request.params["id"])
        if row is None or row.deleted:
            raise self.error(404, "The requested resource does not exist")
        accessors = [Accessor((), spec) for spec in sobject.fields.values()]
        return self.render(row, accessors, version)



_DEFAULT_CODES = {400: "INVALID_REQUEST", 401: "INVALID_SESSION_ID", 403: "REQUEST_LIMIT_EXCEEDED",
                  404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED", 429: "REQUEST_LIMIT_EXCEEDED",
                  500: "UNKNOWN_EXCEPTION", 502: "SERVER_UNAVAILABLE", 503: "SERVER_UNAVAILABLE"}


VENDOR = Salesforce
