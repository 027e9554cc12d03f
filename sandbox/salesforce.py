"""The Salesforce imitation: REST API v59+ over HTTPS, as simple-salesforce expects it.

Routes (``{v}`` is any ``vNN.N``):

====================================================  ===================  =============================
``POST /services/oauth2/token``                       ``oauth.token``      password, client_credentials
                                                                           and refresh_token grants
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
====================================================  ===================  =============================

The tenant's people are split by a hash of their index into Leads (00Q, about 60%) and Contacts
(003, with the firmographics on their Account, 001). Emails, calls, tasks and notes are Tasks
(00T, ``TaskSubtype`` Email, Call or Task), meetings are Events (00U), form submissions and
campaign sends are CampaignMembers (00v) of five fixed Campaigns (701), owners are Users (005).
About 1% of people (and everything hanging off them) are deleted: only ``queryAll`` shows them.

SOQL is a subset read by a small recursive-descent parser: a field list (with parent fields
such as ``Account.Industry`` or ``Owner.Email``) or ``COUNT()``; ``WHERE`` with ``= != < <= > >=
IN NOT IN LIKE``, ``AND``/``OR``/``NOT`` and parentheses (mixing AND and OR needs parentheses, as
in Salesforce); ``ORDER BY`` fields with ``ASC|DESC`` and ``NULLS FIRST|LAST``; ``LIMIT`` and
``OFFSET``. Datetime literals are ``YYYY-MM-DDThh:mm:ss[.SSS](Z|+hh:mm)`` (the ``+0000`` that
Salesforce prints is refused in a query, as the SOQL reference lists no such form), plus ``TODAY``,
``YESTERDAY`` and ``LAST_N_DAYS:n``. Records are never materialised in bulk: a query keeps the
matching keys (ints), narrowed first by ``Id``, ``LastModifiedDate``/``SystemModstamp``/
``CreatedDate`` and ``WhoId``/``LeadId``/``ContactId`` conditions, and renders a page at a time.
A ``WHERE`` on any other field scans every candidate, which is slow past ~100k people. On a
million people a keyset page (``Id > '...' ORDER BY Id LIMIT 2000``) answers in ~0.15 s, a
``SystemModstamp >=`` one-week window of Leads in ~3 s for its first page (later pages in
milliseconds), and a one-day window of Tasks in ~25 s, since activities are regenerated per person.

Creates are served for Task and Event only, and need a ``WhoId`` (the sandbox keeps activities per
person); Leads and Contacts come from the synthetic tenant (``sb.crm.add_contact``).

Custom fields (``Lead_Score__c``) cannot be created over REST in Salesforce, so here they exist
only once a test or the demo calls :meth:`Salesforce.add_custom_field`. Writes naming a field
the object lacks fail that record with ``INVALID_FIELD``.

Limits: one rolling 24-hour ``DAILY`` window (enterprise, professional, unlimited and performance
100,000 without the per-licence extras; developer 15,000); ``Sforce-Limit-Info: api-usage=USED/MAX``
on every counted answer (the 401 of an invalid session is answered before counting, so it has
none); over the allowance 403 ``REQUEST_LIMIT_EXCEEDED``. Open query cursors are
capped at ten, the oldest dropped first (``INVALID_QUERY_LOCATOR`` afterwards), as in Salesforce.
"""
from __future__ import annotations

import base64
import calendar
import hashlib
import re
import threading
import time
from array import array
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator
from urllib.parse import parse_qs

from .limits import Verdict, Window
from .server import Request, Response, Vendor, VendorError, route
from .state import ADDED_ACTIVITY_BASE, IdScheme
from .synth import ACTIVITY_SLOTS, DAY_MS, Activity, ActivityKind, mix

API_VERSIONS = ("59.0", "60.0", "61.0", "62.0")

# -- ids ----------------------------------------------------------------------------------------

_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_SUFFIX = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
_POD = "5g0"  # the instance and reserved characters every id of one org shares


def sf_id(prefix: str, number: int) -> str:
    """An 18-character id: key prefix, pod, a fixed-width base-62 number (so ids sort by number), checksum."""
    digits = ""
    while number:
        number, rest = divmod(number, 62)
        digits = _BASE62[rest] + digits
    core = prefix + _POD + digits.rjust(9, "0")
    return core + _checksum(core)


def _checksum(core: str) -> str:
    # Salesforce's case-safe suffix: one character per five, flagging which are upper case.
    return "".join(_SUFFIX[sum(1 << i for i, c in enumerate(core[k:k + 5]) if "A" <= c <= "Z")]
                   for k in (0, 5, 10))


def parse_id(text: Any) -> tuple[str, int] | None:
    """(key prefix, number) of a 15- or 18-character id of this org; None when it is not one."""
    if not isinstance(text, str) or len(text) not in (15, 18):
        return None
    core = text[:15]
    if core[3:6] != _POD or any(c not in _BASE62 for c in core):
        return None
    if len(text) == 18 and text[15:].upper() != _checksum(core):
        return None
    number = 0
    for c in core[6:]:
        number = number * 62 + _BASE62.index(c)
    return core[:3], number


def full_id(text: str) -> str:
    """The 18-character form of a 15- or 18-character id; anything else unchanged."""
    return text[:15] + _checksum(text[:15]) if re.fullmatch(r"[0-9A-Za-z]{15}(?:[0-9A-Za-z]{3})?", text) else text


def is_lead(index: int) -> bool:
    """Whether person ``index`` is a Lead (else a Contact): a seed-free hash, so ids stay stable."""
    return mix(index, 0x1EAD) % 100 < 60


def is_deleted(index: int, generated: int) -> bool:
    return index < generated and mix(index, 0xDE1E7E) % 100 == 0


def _person_id(index: int) -> str:
    return sf_id("00Q" if is_lead(index) else "003", index + 1)


def _person_index(contact_id: str) -> int | None:
    parsed = parse_id(str(contact_id))
    if parsed is None or parsed[0] not in ("00Q", "003") or parsed[1] < 1:
        return None
    index = parsed[1] - 1
    return index if is_lead(index) == (parsed[0] == "00Q") else None


# -- time -----------------------------------------------------------------------------------------

def fmt_datetime(ms: int | None) -> str | None:
    """Salesforce's wire datetime: ``2021-05-27T13:59:29.000+0000``."""
    if ms is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}+0000"


def fmt_date(ms: int | None) -> str | None:
    return None if ms is None else time.strftime("%Y-%m-%d", time.gmtime(ms // 1000))


_DATETIME = re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,3}))?(Z|[+-]\d\d:?\d\d)$")


def parse_datetime(text: str, colon_offset: bool = True) -> int | None:
    """Milliseconds of an ISO datetime; SOQL wants ``+hh:mm`` offsets, REST bodies also take ``+hhmm``."""
    hit = _DATETIME.match(text or "")
    if not hit or (colon_offset and hit[8] != "Z" and ":" not in hit[8]):
        return None
    year, month, day, hour, minute, second = (int(hit[k]) for k in range(1, 7))
    seconds = calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))
    if hit[8] != "Z":
        offset = hit[8].replace(":", "")
        seconds -= (1 if offset[0] == "+" else -1) * (int(offset[1:3]) * 3600 + int(offset[3:5]) * 60)
    return seconds * 1000 + int((hit[7] or "0").ljust(3, "0"))


# -- neutral values in Salesforce's spelling --------------------------------------------------------

LEAD_STATUSES = ("Open - Not Contacted", "Working - Contacted", "Closed - Converted", "Closed - Not Converted")
_LEAD_STATUS = {"new": 0, "open": 0, "in_progress": 1, "attempted_to_contact": 1, "connected": 1,
                "unqualified": 3, "bad_timing": 3}
_RATING = {"mql": "Warm", "sql": "Hot", "opportunity": "Hot", "customer": "Hot", "lead": "Cold"}
_LEAD_SOURCE = {"organic_search": "Web", "paid_search": "Advertisement", "social_media": "Social Media",
                "email_marketing": "Email", "referrals": "Partner Referral", "direct_traffic": "Web",
                "offline": "Trade Show", "other_campaigns": "Other"}
_INDUSTRY = {"Software": "Technology", "Financial Services": "Finance", "Logistics": "Transportation",
             "Non-profit": "Not For Profit"}
INDUSTRIES = ("Consulting", "Education", "Finance", "Government", "Healthcare", "Manufacturing", "Media",
              "Not For Profit", "Retail", "Technology", "Telecommunications", "Transportation", "Other")
TASK_STATUSES = ("Not Started", "In Progress", "Completed", "Waiting on someone else", "Deferred")
_TASK_STATUS = {"not_started": "Not Started", "completed": "Completed"}
_PRIORITY = {"low": "Low", "medium": "Normal", "high": "High"}
_CALL_RESULT = {"completed": "Connected", "no_answer": "No Answer", "busy": "Busy", "failed": "Failed"}
_EMAIL_NOTE = {"outbound": "Sent", "inbound": "Reply received", "forwarded": "Forwarded"}
_MEETING_NOTE = {"completed": "Completed", "scheduled": "Scheduled", "rescheduled": "Rescheduled",
                 "no_show": "No show", "canceled": "Canceled"}
CAMPAIGNS = (  # (name, type, member statuses a responding member may have)
    ("Webinar: Lead scoring that works", "Webinar", ("Registered", "Attended")),
    ("Ebook: The buyer's journey", "Content", ("Responded",)),
    ("Product demo request", "Web", ("Responded",)),
    ("Trade show booth", "Trade Show", ("Attended",)),
    ("Monthly newsletter", "Email", ("Sent",)),
)
_MEMBER_SLOTS = 8  # CampaignMember numbers are index * 8 + j + 1


# -- rows: one record, expensive values computed on first use ---------------------------------------

class Row:
    """A record as the query engine and the renderer see it."""

    __slots__ = ("vendor", "key", "_cache")
    prefix = ""

    def __init__(self, vendor: "Salesforce", key: int):
        self.vendor, self.key, self._cache = vendor, key, None

    @property
    def id(self) -> str:
        return sf_id(self.prefix, self.key)

    def value(self, spec: "Field") -> Any:
        if spec.updateable or spec.custom:
            edits = self.edits()
            if spec.name in edits:
                return edits[spec.name]
            if spec.custom:
                return None
        return spec.read(self)

    def edits(self) -> dict:
        return self.vendor.edits_of(self.id)

    @property
    def modified_ms(self) -> int:
        return max(self.base_modified_ms, self.vendor.edited_ms(self.id))

    @property
    def deleted(self) -> bool:
        return False


class PersonRow(Row):
    """A Lead or a Contact: key is the person's index + 1."""

    __slots__ = ("_company",)

    def __init__(self, vendor: "Salesforce", key: int):
        super().__init__(vendor, key)
        self._company = None

    @property
    def index(self) -> int:
        return self.key - 1

    @property
    def id(self) -> str:
        return _person_id(self.index)

    @property
    def record(self) -> dict:
        if self._cache is None:
            self._cache = self.vendor.crm.record(self.index)
        return self._cache

    def edits(self) -> dict:
        return self.record  # written Salesforce names land on the record itself

    @property
    def modified_ms(self) -> int:
        return self.vendor.crm.updated_ms(self.index)

    @property
    def created_ms(self) -> int:
        return self.vendor.crm.created_ms(self.index)

    @property
    def deleted(self) -> bool:
        return is_deleted(self.index, self.vendor.crm.tenant.size)

    @property
    def account_id(self) -> str:
        # The flat record keeps the company's name only; its index comes from the person once more.
        if self._company is None:
            self._company = self.vendor.crm.tenant.person(self.index).company.index
        return sf_id("001", self._company + 1)


class ActivityRow(Row):
    """A Task or an Event: key is the activity id."""

    __slots__ = ("activity",)

    def __init__(self, vendor: "Salesforce", activity: Activity):
        super().__init__(vendor, activity.id)
        self.activity = activity

    def edits(self) -> dict:
        created = self.activity.attributes.get("sobject_fields") or {}
        return {**created, **self.vendor.edits_of(self.id)} if created else self.vendor.edits_of(self.id)

    @property
    def base_modified_ms(self) -> int:
        return self.activity.updated_ms

    @property
    def deleted(self) -> bool:
        return is_deleted(self.activity.contact_index, self.vendor.crm.tenant.size)

    @property
    def who(self) -> str:
        return _person_id(self.activity.contact_index)

    @property
    def attrs(self) -> dict:
        return self.activity.attributes


class TaskRow(ActivityRow):
    __slots__ = ()
    prefix = "00T"


class EventRow(ActivityRow):
    __slots__ = ()
    prefix = "00U"


class AccountRow(Row):
    """An Account: key is the company index + 1."""

    __slots__ = ()
    prefix = "001"

    @property
    def company(self):
        if self._cache is None:
            self._cache = self.vendor.crm.tenant.company(self.key - 1)
        return self._cache

    @property
    def created_ms(self) -> int:
        tenant = self.vendor.crm.tenant
        return tenant.anchor_ms - int(3 * 365 * DAY_MS * (mix(tenant.seed, self.key, 0xACC) / 2.0**64)) - DAY_MS

    @property
    def base_modified_ms(self) -> int:
        created = self.created_ms
        span = self.vendor.crm.tenant.anchor_ms - created
        return created + int(span * (mix(self.vendor.crm.tenant.seed, self.key, 0xACD) / 2.0**64))


class MemberRow(Row):
    """A CampaignMember: key is index * 8 + j + 1 (j-th membership of person ``index``)."""

    __slots__ = ()
    prefix = "00v"

    @property
    def person(self) -> PersonRow:
        if self._cache is None:
            self._cache = PersonRow(self.vendor, (self.key - 1) // _MEMBER_SLOTS + 1)
        return self._cache

    @property
    def slot(self) -> int:
        return (self.key - 1) % _MEMBER_SLOTS

    @property
    def campaign(self) -> int:
        """Index into CAMPAIGNS: the last slot of a person is the newsletter send."""
        if self.slot == _MEMBER_SLOTS - 1:
            return len(CAMPAIGNS) - 1
        return mix(self.vendor.crm.tenant.seed, self.key, 0xCA) % (len(CAMPAIGNS) - 1)

    @property
    def status(self) -> str:
        statuses = CAMPAIGNS[self.campaign][2]
        return statuses[mix(self.vendor.crm.tenant.seed, self.key, 0xCB) % len(statuses)]

    @property
    def created_ms(self) -> int:
        # Between the person's creation and their generated last touch, so a time search finds it.
        index, tenant = self.person.index, self.vendor.crm.tenant
        created = self.person.created_ms
        span = max(0, tenant.last_touch_ms(index) - created) if index < tenant.size else 0
        return created + int(span * (mix(tenant.seed, self.key, 0xCC) / 2.0**64))

    @property
    def base_modified_ms(self) -> int:
        return self.created_ms

    @property
    def deleted(self) -> bool:
        return self.person.deleted


def members_of(vendor: "Salesforce", index: int) -> list[int]:
    """CampaignMember keys of one person: one per form submission (up to 7), and a newsletter send for some."""
    record = vendor.crm.record(index)
    slots = list(range(min(record["form_submissions"], _MEMBER_SLOTS - 1)))
    if record["email_opens"] and not record["opted_out"]:
        slots.append(_MEMBER_SLOTS - 1)
    return [index * _MEMBER_SLOTS + j + 1 for j in slots]


class CampaignRow(Row):
    __slots__ = ()
    prefix = "701"

    @property
    def base_modified_ms(self) -> int:
        return self.vendor.crm.tenant.anchor_ms - 400 * DAY_MS


class UserRow(Row):
    """A User: key is the owner's id."""

    __slots__ = ()
    prefix = "005"

    @property
    def owner(self):
        return next(o for o in self.vendor.crm.tenant.owners if o.id == self.key)

    @property
    def base_modified_ms(self) -> int:
        return self.vendor.crm.tenant.anchor_ms - 400 * DAY_MS


# -- objects and their fields -------------------------------------------------------------------------

@dataclass(frozen=True)
class Field:
    """One field of an sObject: its describe facts and how a row yields its value."""

    name: str
    type: str
    read: Callable[[Row], Any] = lambda row: None
    updateable: bool = False
    createable: bool | None = None
    picklist: tuple[str, ...] = ()
    restricted: bool = False
    reference_to: tuple[str, ...] = ()
    relationship: str | None = None
    neutral: str | None = None
    custom: bool = False
    label: str = ""

    def describe(self) -> dict:
        createable = self.updateable if self.createable is None else self.createable
        return {
            "name": self.name, "label": self.label or _label(self.name), "type": self.type,
            "soapType": _SOAP_TYPES.get(self.type, "xsd:string"), "custom": self.custom,
            "updateable": self.updateable, "createable": createable, "nillable": self.type not in ("id", "boolean"),
            "filterable": True, "sortable": self.type != "textarea", "length": 255 if self.type in _TEXT else 0,
            "picklistValues": [{"active": True, "defaultValue": False, "label": v, "validFor": None, "value": v}
                               for v in self.picklist],
            "restrictedPicklist": self.restricted, "referenceTo": list(self.reference_to),
            "relationshipName": self.relationship, "calculated": False, "defaultedOnCreate": self.type == "boolean",
        }


_TEXT = ("string", "email", "picklist", "textarea", "phone", "url")
_NUMBERS = ("int", "double", "currency", "percent")
_SOAP_TYPES = {"id": "tns:ID", "reference": "tns:ID", "boolean": "xsd:boolean", "int": "xsd:int",
               "double": "xsd:double", "currency": "xsd:double", "percent": "xsd:double",
               "datetime": "xsd:dateTime", "date": "xsd:date"}


def _label(name: str) -> str:
    return re.sub(r"(?<=[a-z])(?=[A-Z])", " ", name.removesuffix("__c").replace("_", " "))


@dataclass
class SObject:
    """An sObject type: its key prefix, fields, parents and how rows are found."""

    name: str
    prefix: str
    row: type[Row]
    fields: dict[str, Field]
    parents: dict[str, tuple[str, str, str]] = field(default_factory=dict)  # name -> (Name, id field, object)
    createable: bool = False
    plural: str = ""

    def field(self, name: str) -> Field | None:
        return self.fields.get(name.lower())

    def describe(self, version: str) -> dict:
        base = f"/services/data/{version}/sobjects/{self.name}"
        return {**self.summary(version), "fields": [f.describe() for f in self.fields.values()],
                "childRelationships": [], "recordTypeInfos": [], "urls": {
                    "sobject": base, "describe": f"{base}/describe", "rowTemplate": f"{base}/{{ID}}"}}

    def summary(self, version: str) -> dict:
        base = f"/services/data/{version}/sobjects/{self.name}"
        return {"name": self.name, "label": _label(self.name), "labelPlural": self.plural or self.name + "s",
                "keyPrefix": self.prefix, "custom": False, "queryable": True, "retrieveable": True,
                "searchable": True, "createable": self.createable, "updateable": True, "deletable": False,
                "urls": {"sobject": base, "describe": f"{base}/describe", "rowTemplate": f"{base}/{{ID}}"}}


def _fields(*specs: Field) -> dict[str, Field]:
    return {spec.name.lower(): spec for spec in specs}


def _system_fields() -> list[Field]:
    return [
        Field("Id", "id", lambda r: r.id, label="Record ID"),
        Field("IsDeleted", "boolean", lambda r: r.deleted, label="Deleted"),
        Field("CreatedDate", "datetime", lambda r: r.created_ms),
        Field("LastModifiedDate", "datetime", lambda r: r.modified_ms),
        Field("SystemModstamp", "datetime", lambda r: r.modified_ms, label="System Modstamp"),
    ]


def _owner_field() -> Field:
    return Field("OwnerId", "reference", lambda r: _user_id(r.record["owner_id"]), updateable=True,
                 reference_to=("User",), relationship="Owner", neutral="owner_id", label="Owner ID")


def _user_id(owner_id: int | None) -> str | None:
    return None if owner_id is None else sf_id("005", owner_id)


def _person_fields() -> list[Field]:
    rec = lambda name: (lambda r: r.record[name])  # noqa: E731
    return _system_fields() + [
        Field("FirstName", "string", rec("first_name"), updateable=True, neutral="first_name"),
        Field("LastName", "string", rec("last_name"), updateable=True, neutral="last_name"),
        Field("Name", "string", lambda r: f"{r.record['first_name']} {r.record['last_name']}".strip(),
              label="Full Name"),
        Field("Email", "email", rec("email"), updateable=True, neutral="email"),
        Field("Title", "string", rec("title"), updateable=True, neutral="title"),
        Field("LeadSource", "picklist", lambda r: _LEAD_SOURCE.get(r.record["source"], "Other"), updateable=True,
              picklist=tuple(sorted(set(_LEAD_SOURCE.values())))),
        _owner_field(),
        Field("HasOptedOutOfEmail", "boolean", rec("opted_out"), updateable=True, neutral="opted_out",
              label="Email Opt Out"),
    ]


def _lead_status(row: PersonRow) -> str:
    if row.record["converted"]:
        return LEAD_STATUSES[2]
    return LEAD_STATUSES[_LEAD_STATUS.get(row.record["lead_status"], 0)]


def _lead() -> SObject:
    rec = lambda name: (lambda r: r.record[name])  # noqa: E731
    return SObject("Lead", "00Q", PersonRow, _fields(*_person_fields(), *[
        Field("Company", "string", rec("company"), updateable=True, neutral="company"),
        Field("Industry", "picklist", lambda r: _INDUSTRY.get(r.record["industry"], r.record["industry"]),
              updateable=True, picklist=INDUSTRIES),
        Field("NumberOfEmployees", "int", rec("employees"), updateable=True, neutral="employees",
              label="Employees"),
        Field("AnnualRevenue", "currency", rec("annual_revenue"), updateable=True, neutral="annual_revenue"),
        Field("Country", "string", rec("country"), updateable=True, neutral="country"),
        Field("Status", "picklist", _lead_status, updateable=True, picklist=LEAD_STATUSES, restricted=True),
        Field("Rating", "picklist", lambda r: _RATING.get(r.record["lifecycle"]), updateable=True,
              picklist=("Hot", "Warm", "Cold")),
        Field("IsConverted", "boolean", rec("converted"), label="Converted"),
        Field("ConvertedDate", "date", lambda r: fmt_date(r.record["converted_ms"])),
    ]), parents={"owner": ("Owner", "OwnerId", "User")}, plural="Leads")


def _contact() -> SObject:
    return SObject("Contact", "003", PersonRow, _fields(*_person_fields(), *[
        Field("AccountId", "reference", lambda r: r.account_id,
              updateable=True, reference_to=("Account",), relationship="Account", label="Account ID"),
        Field("MailingCountry", "string", lambda r: r.record["country"], updateable=True, neutral="country"),
    ]), parents={"account": ("Account", "AccountId", "Account"), "owner": ("Owner", "OwnerId", "User")}, plural="Contacts")


def _account() -> SObject:
    company = lambda name: (lambda r: getattr(r.company, name))  # noqa: E731
    return SObject("Account", "001", AccountRow, _fields(*_system_fields(), *[
        Field("Name", "string", company("name"), updateable=True, label="Account Name"),
        Field("Industry", "picklist", lambda r: _INDUSTRY.get(r.company.industry, r.company.industry),
              updateable=True, picklist=INDUSTRIES),
        Field("NumberOfEmployees", "int", company("employees"), updateable=True, label="Employees"),
        Field("AnnualRevenue", "currency", company("annual_revenue"), updateable=True),
        Field("BillingCountry", "string", company("country"), updateable=True),
        Field("Website", "url", lambda r: "https://" + r.company.domain, updateable=True),
    ]), plural="Accounts")


def _activity_fields() -> list[Field]:
    return [
        Field("Id", "id", lambda r: r.id, label="Activity ID"),
        Field("IsDeleted", "boolean", lambda r: r.deleted, label="Deleted"),
        Field("CreatedDate", "datetime", lambda r: r.activity.occurred_ms),
        Field("LastModifiedDate", "datetime", lambda r: r.modified_ms),
        Field("SystemModstamp", "datetime", lambda r: r.modified_ms, label="System Modstamp"),
        Field("WhoId", "reference", lambda r: r.who, updateable=True, reference_to=("Contact", "Lead"),
              relationship="Who", label="Name ID"),
        Field("WhatId", "reference", lambda r: None, updateable=True, reference_to=("Account",),
              relationship="What", label="Related To ID"),
        Field("OwnerId", "reference", lambda r: _user_id(r.activity.owner_id), updateable=True,
              reference_to=("User",), relationship="Owner", label="Assigned To ID"),
        Field("ActivityDate", "date", lambda r: fmt_date(r.activity.occurred_ms), updateable=True, label="Due Date"),
        Field("Description", "textarea", _description, updateable=True, label="Comments"),
    ]


def _description(row: ActivityRow) -> str | None:
    a, kind = row.attrs, row.activity.kind
    if kind is ActivityKind.EMAIL:
        return _EMAIL_NOTE.get(a.get("direction"), "Sent") + (" (bounced)" if a.get("status") == "bounced" else "")
    if kind is ActivityKind.MEETING:
        return _MEETING_NOTE.get(a.get("outcome"), "")
    return a.get("body") or None


def _task_subject(row: ActivityRow) -> str:
    a, kind = row.attrs, row.activity.kind
    return {ActivityKind.EMAIL: lambda: f"Email: {a.get('subject', '')}", ActivityKind.CALL: lambda: a.get("title"),
            ActivityKind.NOTE: lambda: "Note"}.get(kind, lambda: a.get("subject"))()


def _task_subtype(row: ActivityRow) -> str:
    return {ActivityKind.EMAIL: "Email", ActivityKind.CALL: "Call"}.get(row.activity.kind, "Task")


def _task_type(row: ActivityRow) -> str:
    kind = row.activity.kind
    if kind is ActivityKind.TASK:
        return {"email": "Email", "call": "Call"}.get(row.attrs.get("type"), "Other")
    return {ActivityKind.EMAIL: "Email", ActivityKind.CALL: "Call"}.get(kind, "Other")


def _task_status(row: ActivityRow) -> str:
    if row.activity.kind is ActivityKind.TASK:
        return _TASK_STATUS.get(row.attrs.get("status"), "Not Started")
    return "Completed"


def _task() -> SObject:
    call = lambda fn: (lambda r: fn(r.attrs) if r.activity.kind is ActivityKind.CALL else None)  # noqa: E731
    return SObject("Task", "00T", TaskRow, _fields(*_activity_fields(), *[
        Field("Subject", "string", _task_subject, updateable=True),
        Field("Status", "picklist", _task_status, updateable=True, picklist=TASK_STATUSES),
        Field("IsClosed", "boolean", lambda r: _task_status(r) == "Completed", label="Closed"),
        Field("Priority", "picklist", lambda r: _PRIORITY.get(r.attrs.get("priority"), "Normal"), updateable=True,
              picklist=("High", "Normal", "Low")),
        Field("Type", "picklist", _task_type, updateable=True, picklist=("Call", "Email", "Meeting", "Other")),
        Field("TaskSubtype", "picklist", _task_subtype, createable=True, picklist=("Task", "Email", "Call")),
        Field("CallType", "picklist", call(lambda a: a["direction"].capitalize()), updateable=True,
              picklist=("Inbound", "Outbound", "Internal")),
        Field("CallDurationInSeconds", "int", call(lambda a: a["duration_ms"] // 1000), updateable=True),
        Field("CallDisposition", "string", call(lambda a: _CALL_RESULT.get(a["status"])), updateable=True,
              label="Call Result"),
    ]), parents={"owner": ("Owner", "OwnerId", "User")}, createable=True, plural="Tasks")


def _event() -> SObject:
    minutes = lambda r: r.attrs.get("duration_ms", 0) // 60_000  # noqa: E731
    return SObject("Event", "00U", EventRow, _fields(*_activity_fields(), *[
        Field("Subject", "string", lambda r: r.attrs.get("title"), updateable=True),
        Field("Type", "picklist", lambda r: "Meeting", updateable=True, picklist=("Call", "Email", "Meeting", "Other")),
        Field("StartDateTime", "datetime", lambda r: r.activity.occurred_ms, updateable=True, label="Start"),
        Field("ActivityDateTime", "datetime", lambda r: r.activity.occurred_ms, updateable=True,
              label="Due Date Time"),
        Field("EndDateTime", "datetime", lambda r: r.activity.occurred_ms + minutes(r) * 60_000, updateable=True,
              label="End"),
        Field("DurationInMinutes", "int", minutes, updateable=True, label="Duration"),
    ]), parents={"owner": ("Owner", "OwnerId", "User")}, createable=True, plural="Events")


def _member() -> SObject:
    person = lambda lead: (lambda r: r.person.id if is_lead(r.person.index) == lead else None)  # noqa: E731
    return SObject("CampaignMember", "00v", MemberRow, _fields(*_system_fields(), *[
        Field("CampaignId", "reference", lambda r: sf_id("701", r.campaign + 1), reference_to=("Campaign",),
              relationship="Campaign", createable=True, label="Campaign ID"),
        Field("LeadId", "reference", person(True), reference_to=("Lead",), relationship="Lead", createable=True),
        Field("ContactId", "reference", person(False), reference_to=("Contact",), relationship="Contact",
              createable=True),
        Field("Status", "picklist", lambda r: r.status, updateable=True,
              picklist=("Sent", "Responded", "Registered", "Attended")),
        Field("HasResponded", "boolean", lambda r: r.status != "Sent", label="Responded"),
        Field("FirstRespondedDate", "date", lambda r: fmt_date(r.created_ms) if r.status != "Sent" else None),
    ]), parents={"campaign": ("Campaign", "CampaignId", "Campaign"), "lead": ("Lead", "LeadId", "Lead"),
                 "contact": ("Contact", "ContactId", "Contact")}, plural="Campaign Members")


def _campaign() -> SObject:
    return SObject("Campaign", "701", CampaignRow, _fields(
        Field("Id", "id", lambda r: r.id), Field("IsDeleted", "boolean", lambda r: False),
        Field("Name", "string", lambda r: CAMPAIGNS[r.key - 1][0], updateable=True),
        Field("Type", "picklist", lambda r: CAMPAIGNS[r.key - 1][1], updateable=True,
              picklist=tuple(sorted({c[1] for c in CAMPAIGNS}))),
        Field("IsActive", "boolean", lambda r: True, updateable=True),
        Field("LastModifiedDate", "datetime", lambda r: r.modified_ms),
        Field("SystemModstamp", "datetime", lambda r: r.modified_ms),
    ), plural="Campaigns")


def _user() -> SObject:
    owner = lambda name: (lambda r: getattr(r.owner, name))  # noqa: E731
    return SObject("User", "005", UserRow, _fields(
        Field("Id", "id", lambda r: r.id), Field("IsActive", "boolean", lambda r: True, updateable=True),
        Field("FirstName", "string", owner("first_name"), updateable=True),
        Field("LastName", "string", owner("last_name"), updateable=True),
        Field("Name", "string", lambda r: f"{r.owner.first_name} {r.owner.last_name}", label="Full Name"),
        Field("Email", "email", owner("email"), updateable=True),
        Field("Username", "string", owner("email"), updateable=True),
        Field("LastModifiedDate", "datetime", lambda r: r.modified_ms),
        Field("SystemModstamp", "datetime", lambda r: r.modified_ms),
    ), plural="Users")


def catalogue() -> dict[str, SObject]:
    """Every sObject served, by lower-case name (SOQL names are case-insensitive)."""
    objects = [_lead(), _contact(), _account(), _task(), _event(), _member(), _campaign(), _user()]
    return {o.name.lower(): o for o in objects}


# -- SOQL: tokens, syntax tree, parser ---------------------------------------------------------------

class SoqlError(Exception):
    """A query Salesforce would refuse: ``code`` is its errorCode (MALFORMED_QUERY, INVALID_FIELD...)."""

    def __init__(self, message: str, code: str = "MALFORMED_QUERY"):
        super().__init__(message)
        self.code = code


_TOKEN = re.compile(r"""\s*(?:
    (?P<string>'(?:[^'\\]|\\.)*')
  | (?P<datetime>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,3})?(?:Z|[+-]\d\d:\d\d))(?![\d:])
  | (?P<date>\d{4}-\d\d-\d\d)(?![\dT:])
  | (?P<number>-?\d+(?:\.\d+)?)(?![\w:-])
  | (?P<name>[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*(?::\d+)?)
  | (?P<op><=|>=|!=|<>|=|<|>)
  | (?P<punct>[(),])
)""", re.X)
_KEYWORDS = {"select", "from", "where", "and", "or", "not", "in", "like", "order", "by", "asc", "desc",
             "nulls", "first", "last", "limit", "offset", "true", "false", "null", "count"}


@dataclass(frozen=True)
class Token:
    kind: str
    text: str
    at: int

    @property
    def word(self) -> str:
        return self.text.lower() if self.kind == "name" else ""


def tokenize(soql: str) -> list[Token]:
    tokens, at = [], 0
    while at < len(soql):
        hit = _TOKEN.match(soql, at)
        if hit is None or hit.end() == at:
            if soql[at:].strip():
                raise SoqlError(_at(soql, at, f"unexpected token: '{soql[at:].split()[0]}'"))
            break
        kind = hit.lastgroup
        tokens.append(Token(kind, hit[kind], hit.start(kind)))
        at = hit.end()
    return tokens


def _at(soql: str, at: int, message: str) -> str:
    # Salesforce echoes the query with a caret under the offending token.
    return f"\n{soql}\n{' ' * at}^\nERROR at Row:1:Column:{at + 1}\n{message}"


@dataclass(frozen=True)
class Literal:
    kind: str  # string, number, boolean, null, datetime, date, range
    value: Any


@dataclass(frozen=True)
class Comparison:
    path: str
    op: str  # = != < <= > >= IN NOT IN LIKE
    value: Literal | tuple[Literal, ...]


@dataclass(frozen=True)
class Logical:
    op: str  # AND, OR
    parts: tuple


@dataclass(frozen=True)
class Negation:
    part: Any


@dataclass(frozen=True)
class Ordering:
    path: str
    descending: bool
    nulls_last: bool


@dataclass(frozen=True)
class Query:
    sobject: str
    fields: tuple[str, ...]
    where: Any = None
    order: tuple[Ordering, ...] = ()
    limit: int | None = None
    offset: int = 0
    count_only: bool = False


class Parser:
    """Recursive descent over the SOQL subset described in the module docstring."""

    def __init__(self, soql: str, now_ms: int):
        self.soql, self.now_ms = soql, now_ms
        self.tokens, self.pos = tokenize(soql), 0

    def parse(self) -> Query:
        self.expect("select")
        count_only, fields = self.select_list()
        self.expect("from")
        sobject = self.take_name("an object name")
        where = self.condition() if self.accept("where") else None
        order = self.order_by() if self.accept("order") else ()
        limit = self.integer() if self.accept("limit") else None
        offset = self.integer() if self.accept("offset") else 0
        if self.peek():
            self.fail(f"unexpected token: '{self.peek().text}'")
        return Query(sobject, fields, where, order, limit, offset, count_only)

    # -- token helpers --

    def peek(self) -> Token | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def accept(self, word: str) -> bool:
        token = self.peek()
        if token and (token.word == word or (token.kind in ("punct", "op") and token.text == word)):
            self.pos += 1
            return True
        return False

    def expect(self, word: str) -> None:
        if not self.accept(word):
            token = self.peek()
            self.fail(f"unexpected token: '{token.text}'" if token else f"expecting '{word.upper()}', found end")

    def fail(self, message: str):
        token = self.peek()
        raise SoqlError(_at(self.soql, token.at if token else len(self.soql), message))

    def take_name(self, what: str) -> str:
        token = self.peek()
        if token is None or token.kind != "name" or token.word in _KEYWORDS:
            self.fail(f"expecting {what}, found '{token.text if token else 'end'}'")
        self.pos += 1
        return token.text

    def integer(self) -> int:
        token = self.peek()
        if token is None or token.kind != "number" or not token.text.isdigit():
            self.fail("expecting a non-negative integer")
        self.pos += 1
        return int(token.text)

    # -- clauses --

    def select_list(self) -> tuple[bool, tuple[str, ...]]:
        if self.accept("count"):
            self.expect("(")
            self.expect(")")
            return True, ()
        fields = [self.take_name("a field name")]
        while self.accept(","):
            fields.append(self.take_name("a field name"))
        return False, tuple(fields)

    def order_by(self) -> tuple[Ordering, ...]:
        self.expect("by")
        items = [self.ordering()]
        while self.accept(","):
            items.append(self.ordering())
        return tuple(items)

    def ordering(self) -> Ordering:
        path = self.take_name("a field name")
        descending = self.accept("desc")
        if not descending:
            self.accept("asc")
        nulls_last = descending  # Salesforce's defaults: NULLS FIRST ascending, NULLS LAST descending
        if self.accept("nulls"):
            nulls_last = self.accept("last")
            if not nulls_last:
                self.expect("first")
        return Ordering(path, descending, nulls_last)

    def condition(self):
        parts, joiner = [self.factor()], None
        while (token := self.peek()) and token.word in ("and", "or"):
            if joiner and token.word != joiner:
                self.fail(f"unexpected token: '{token.text}' (use parentheses to mix AND and OR)")
            joiner = token.word
            self.pos += 1
            parts.append(self.factor())
        return parts[0] if joiner is None else Logical(joiner.upper(), tuple(parts))

    def factor(self):
        if self.accept("not"):
            return Negation(self.factor())
        if self.accept("("):
            inner = self.condition()
            self.expect(")")
            return inner
        return self.comparison()

    def comparison(self) -> Comparison:
        path = self.take_name("a field name")
        token = self.peek()
        if token and token.kind == "op":
            self.pos += 1
            return Comparison(path, "!=" if token.text == "<>" else token.text, self.literal())
        if self.accept("like"):
            return Comparison(path, "LIKE", self.literal())
        negated = self.accept("not")
        if self.accept("in"):
            return Comparison(path, "NOT IN" if negated else "IN", self.literal_list())
        self.fail(f"unexpected token: '{token.text}'" if token else "expecting an operator, found end")

    def literal_list(self) -> tuple[Literal, ...]:
        self.expect("(")
        values = [self.literal()]
        while self.accept(","):
            values.append(self.literal())
        self.expect(")")
        return tuple(values)

    def literal(self) -> Literal:
        token = self.peek()
        if token is None:
            self.fail("expecting a value, found end")
        self.pos += 1
        if token.kind == "string":
            return Literal("string", re.sub(r"\\(.)", r"\1", token.text[1:-1]))
        if token.kind == "number":
            return Literal("number", float(token.text) if "." in token.text else int(token.text))
        if token.kind == "datetime":
            return Literal("datetime", parse_datetime(token.text))
        if token.kind == "date":
            return Literal("date", token.text)
        if token.kind == "name":
            return self.word_literal(token)
        self.pos -= 1
        self.fail(f"unexpected token: '{token.text}'")

    def word_literal(self, token: Token) -> Literal:
        word = token.word
        if word in ("true", "false"):
            return Literal("boolean", word == "true")
        if word == "null":
            return Literal("null", None)
        today = self.now_ms - self.now_ms % DAY_MS
        ranges = {"today": (today, today + DAY_MS), "yesterday": (today - DAY_MS, today)}
        if word in ranges:
            return Literal("range", ranges[word])
        days = re.fullmatch(r"last_n_days:(\d+)", word)
        if days:
            return Literal("range", (today - int(days[1]) * DAY_MS, today + DAY_MS))
        self.pos -= 1
        self.fail(f"unexpected token: '{token.text}'")


def parse_soql(soql: str, now_ms: int) -> Query:
    """The syntax tree of a query, or :class:`SoqlError` (MALFORMED_QUERY)."""
    if not (soql or "").strip():
        raise SoqlError("A query must be given in the q parameter", "MALFORMED_QUERY")
    return Parser(soql, now_ms).parse()


# -- SOQL: binding a query to the objects, and evaluating it ---------------------------------------

@dataclass(frozen=True)
class Accessor:
    """A field path resolved against an sObject: the parents to walk through, then the field."""

    hops: tuple[tuple[str, Field, SObject], ...]  # (relationship name, its id field, the parent object)
    field: Field

    def get(self, row: Row | None) -> Any:
        for _, id_field, parent in self.hops:
            row = row.vendor.row_by_id(parent, row.value(id_field)) if row is not None else None
        return None if row is None else row.value(self.field)


def resolve(objects: dict[str, SObject], sobject: SObject, path: str) -> Accessor:
    """The accessor of ``Email`` or ``Account.Industry`` on ``sobject``; INVALID_FIELD when there is none."""
    *relations, name = path.split(".")
    hops, current = [], sobject
    for relation in relations:
        parent = current.parents.get(relation.lower())
        if parent is None:
            raise SoqlError(f"Didn't understand relationship '{relation}' in field path. If you are attempting to "
                            "use a custom relationship, be sure to append the '__r' after the custom relationship "
                            "name. Please reference your WSDL or the describe call for the appropriate names.",
                            "INVALID_FIELD")
        relationship, id_field, target = parent
        hops.append((relationship, current.field(id_field), objects[target.lower()]))
        current = objects[target.lower()]
    spec = current.field(name)
    if spec is None:
        raise SoqlError(f"No such column '{name}' on entity '{current.name}'. If you are attempting to use a custom "
                        "field, be sure to append the '__c' after the custom field name. Please reference your WSDL "
                        "or the describe call for the appropriate names.", "INVALID_FIELD")
    return Accessor(tuple(hops), spec)


def _criterion_error(spec: Field, wanted: str) -> SoqlError:
    quoted = "be enclosed in quotes" if wanted in ("string", "id") else "not be enclosed in quotes"
    return SoqlError(f"value of filter criterion for field '{spec.name}' must be of type {wanted} and should "
                     f"{quoted}", "INVALID_FIELD")


def coerce(spec: Field, literal: Literal) -> Any:
    """A literal in the field's own terms (ms for datetimes, folded case for text); INVALID_FIELD on a mismatch."""
    if literal.kind == "null":
        return None
    kind = spec.type
    if kind == "datetime":
        if literal.kind in ("datetime", "range"):
            return literal.value
        raise _criterion_error(spec, "dateTime")
    if kind == "date":
        if literal.kind == "range":
            return tuple(fmt_date(ms) for ms in literal.value)
        if literal.kind == "date":
            return literal.value
        raise _criterion_error(spec, "date")
    if kind == "boolean":
        if literal.kind == "boolean":
            return literal.value
        raise _criterion_error(spec, "boolean")
    if kind in _NUMBERS:
        if literal.kind == "number":
            return literal.value
        raise _criterion_error(spec, "number")
    if literal.kind != "string":
        raise _criterion_error(spec, "id" if kind in ("id", "reference") else "string")
    if kind in ("id", "reference"):
        if not re.fullmatch(r"[0-9A-Za-z]{15}(?:[0-9A-Za-z]{3})?", literal.value):
            raise SoqlError(f"invalid ID field: {literal.value}", "INVALID_QUERY_FILTER_OPERATOR")
        return full_id(literal.value)
    return literal.value.casefold()


def comparable(spec: Field, value: Any) -> Any:
    """A row's value in the same terms as :func:`coerce` gives literals."""
    if isinstance(value, str) and spec.type not in ("id", "reference", "date"):
        return value.casefold()
    return value


_ORDER_OPS = {"<": lambda a, b: a < b, "<=": lambda a, b: a <= b, ">": lambda a, b: a > b,
              ">=": lambda a, b: a >= b}


def satisfies(op: str, value: Any, target: Any) -> bool:
    """Whether a row's (comparable) value satisfies ``op target``; nulls only ever equal null."""
    if isinstance(target, tuple) and op not in ("IN", "NOT IN"):
        return _in_range(op, value, target)
    if op == "=":
        return value == target
    if op == "!=":
        return value != target
    if op == "IN":
        return value in target
    if op == "NOT IN":
        return value is not None and value not in target
    if value is None or target is None:
        return False
    try:
        return _ORDER_OPS[op](value, target)
    except TypeError:
        return False


def _in_range(op: str, value: Any, span: tuple) -> bool:
    # Date literals such as TODAY are ranges: "=" means inside, ">" after its end, "<" before its start.
    if value is None:
        return op == "!="
    start, end = span
    inside = start <= value < end
    return {"=": inside, "!=": not inside, ">": value >= end, ">=": value >= start,
            "<": value < start, "<=": value < end}[op]


def compile_condition(objects: dict[str, SObject], sobject: SObject, node) -> Callable[[Row], bool]:
    """A predicate over rows for a WHERE tree; type errors surface here, before any row is read."""
    if isinstance(node, Logical):
        parts = [compile_condition(objects, sobject, part) for part in node.parts]
        combine = all if node.op == "AND" else any
        return lambda row: combine(part(row) for part in parts)
    if isinstance(node, Negation):
        inner = compile_condition(objects, sobject, node.part)
        return lambda row: not inner(row)
    accessor = resolve(objects, sobject, node.path)
    spec = accessor.field
    if node.op == "LIKE":
        return _like(accessor, node.value)
    if node.op in ("IN", "NOT IN"):
        target = frozenset(coerce(spec, literal) for literal in node.value)
    else:
        target = coerce(spec, node.value)
        if target is None and node.op not in ("=", "!="):
            raise SoqlError(f"invalid operator on null for field '{spec.name}'", "MALFORMED_QUERY")
    return lambda row: satisfies(node.op, comparable(spec, accessor.get(row)), target)


def _like(accessor: Accessor, literal: Literal) -> Callable[[Row], bool]:
    if accessor.field.type not in _TEXT or literal.kind != "string":
        raise SoqlError(f"invalid operator on field '{accessor.field.name}': LIKE works on text fields",
                        "INVALID_FIELD")
    pattern = re.compile("".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in literal.value),
                         re.I | re.S)
    return lambda row: (lambda v: v is not None and pattern.fullmatch(v) is not None)(accessor.get(row))


def hints(where) -> list[Comparison]:
    """The comparisons every matching row must satisfy (top-level AND terms): used to narrow candidates."""
    if isinstance(where, Comparison):
        return [where]
    if isinstance(where, Logical) and where.op == "AND":
        return [part for part in where.parts if isinstance(part, Comparison)]
    return []


@dataclass(frozen=True)
class Narrowing:
    """What the hints of a query promise about its rows, in index terms."""

    ids: tuple[str, ...] | None = None  # the rows' Id is one of these
    refs: tuple[str, ...] | None = None  # the rows' WhoId / LeadId / ContactId is one of these
    after: str | None = None  # the rows' Id is at least this
    since_ms: int | None = None  # modified (or created) at or after
    until_ms: int | None = None  # modified at or before

    @classmethod
    def of(cls, where, ref_fields: tuple[str, ...] = ()) -> "Narrowing":
        found: dict[str, Any] = {}
        for term in hints(where):
            name, op, value = term.path.lower(), term.op, term.value
            values = value if isinstance(value, tuple) else (value,)
            if any(v.kind != "string" for v in values) and name in ("id", *ref_fields):
                continue
            if name == "id" and op in ("=", "IN"):
                found["ids"] = tuple(full_id(v.value) for v in values)
            elif name == "id" and op in (">", ">="):
                found["after"] = full_id(value.value)
            elif name in ref_fields and op in ("=", "IN"):
                found["refs"] = tuple(full_id(v.value) for v in values)
            elif name in ("lastmodifieddate", "systemmodstamp", "createddate") and isinstance(value, Literal):
                found.update(_time_bounds(name, op, value))
        return cls(**found)


def _time_bounds(name: str, op: str, literal: Literal) -> dict:
    if literal.kind == "datetime":
        start = end = literal.value
    elif literal.kind == "range":
        start, end = literal.value
    else:
        return {}
    bounds = {}
    if op in (">", ">=", "="):
        bounds["since_ms"] = start
    if op in ("<", "<=", "=") and name != "createddate":
        bounds["until_ms"] = end
    return bounds


def sort_rows(pairs: list[tuple[list, int]], order: tuple[Ordering, ...]) -> list[int]:
    """Keys ordered by ORDER BY: stable sorts from the last term to the first."""
    for position in range(len(order) - 1, -1, -1):
        term = order[position]
        null_rank = 1 if term.nulls_last != term.descending else 0

        def key(pair, position=position, null_rank=null_rank):
            value = pair[0][position]
            return (null_rank,) if value is None else (1 - null_rank, value)
        pairs.sort(key=key, reverse=term.descending)
    return [k for _, k in pairs]


# -- the vendor: routes, cursors, writes ----------------------------------------------------------

DAILY_ALLOWANCE = {"enterprise": 100_000, "developer": 15_000, "professional": 100_000, "unlimited": 100_000,
                   "performance": 100_000}
TASK_KINDS = frozenset({ActivityKind.EMAIL, ActivityKind.CALL, ActivityKind.TASK, ActivityKind.NOTE})
_BATCH_DEFAULT, _BATCH_MIN, _BATCH_MAX = 2000, 200, 2000
_COLLECTION_MAX = 200
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


@dataclass(frozen=True)
class RecordError(Exception):
    """One record of a write failed: Salesforce's per-record error."""

    code: str
    message: str
    fields: tuple[str, ...] = ()

    def wire(self) -> dict:
        return {"statusCode": self.code, "message": self.message, "fields": list(self.fields)}


@dataclass(frozen=True)
class Prepared:
    """A record write that passed validation: the row it lands on (None for a create) and its values."""

    sobject: SObject
    row: Row | None
    values: dict


class Salesforce(Vendor):
    """Salesforce's REST API; see the module docstring for what is served."""

    name = "salesforce"
    tls = True
    ids = IdScheme(to_id=_person_id, to_index=_person_index)
    tiers = tuple(DAILY_ALLOWANCE)
    max_cursors = 10

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.objects = catalogue()
        self._lock = threading.RLock()
        self._cursors: OrderedDict[str, Cursor] = OrderedDict()
        self._cursor_count = 0
        self._edits: dict[str, dict] = {}
        self._edited: dict[str, int] = {}
        self.client_id = "3MVG9sandbox" + hashlib.sha256(self.tokens.prefix.encode()).hexdigest()[:24]
        self.client_secret = f"sandbox-secret-{self.crm.tenant.seed}"
        self.username, self.password = "integration@leadpulse.sandbox", "sandbox-password"
        self.refresh_token = f"5Aep861sandbox{self.crm.tenant.seed}"

    # -- the framework's hooks --

    def windows(self) -> list[Window]:
        return [Window("DAILY", DAILY_ALLOWANCE[self.tier], 86_400)]

    def credentials(self) -> dict:
        return {"access_token": self.tokens.current, "client_id": self.client_id,
                "client_secret": self.client_secret, "username": self.username, "password": self.password,
                "refresh_token": self.refresh_token}

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
        index = _person_index(contact_id)
        if index is None or not 0 <= index < self.crm.size:
            raise self.error(404, "The requested resource does not exist")
        return index

    # -- the Python API for tests and the demo --

    def add_custom_field(self, sobject: str, name: str, type: str = "double", label: str = "",
                         picklist: Iterable[str] = ()) -> None:
        """Define a custom field (``Lead_Score__c``), as an admin would in Setup; describe lists it from now on."""
        if not name.endswith("__c"):
            raise ValueError(f"custom field {name!r} on {sobject}: Salesforce custom field names end in '__c'")
        target = self.sobject(sobject)
        target.fields[name.lower()] = Field(name, type, updateable=True, custom=True, label=label,
                                            picklist=tuple(picklist))

    def sobject(self, name: str) -> SObject:
        found = self.objects.get(str(name).lower())
        if found is None:
            raise SoqlError(f"sObject type '{name}' is not supported. If you are attempting to use a custom object, "
                            "be sure to append the '__c' after the entity name.", "INVALID_TYPE")
        return found

    def edits_of(self, record_id: str) -> dict:
        return self._edits.get(record_id) or {}

    def edited_ms(self, record_id: str) -> int:
        return self._edited.get(record_id, 0)

    # -- rows --

    def row_by_id(self, sobject: SObject, record_id: Any) -> Row | None:
        """The row an id names, if it exists (deleted rows included)."""
        parsed = parse_id(record_id)
        if parsed is None or parsed[0] != sobject.prefix:
            return None
        return self.row_by_key(sobject, parsed[1])

    def row_by_key(self, sobject: SObject, key: int, cache: dict | None = None) -> Row | None:
        cls = sobject.row
        if cls is PersonRow:
            index = key - 1
            ok = 0 <= index < self.crm.size and is_lead(index) == (sobject.prefix == "00Q")
            return PersonRow(self, key) if ok else None
        if issubclass(cls, ActivityRow):
            activity = self._activity(key, cache)
            kinds = TASK_KINDS if cls is TaskRow else {ActivityKind.MEETING}
            return cls(self, activity) if activity is not None and activity.kind in kinds else None
        if cls is MemberRow:
            index = (key - 1) // _MEMBER_SLOTS
            return MemberRow(self, key) if 0 <= index < self.crm.size and key in members_of(self, index) else None
        limits = {AccountRow: range(1, self.crm.tenant.companies + 1), CampaignRow: range(1, len(CAMPAIGNS) + 1),
                  UserRow: {o.id for o in self.crm.tenant.owners}}
        return cls(self, key) if key in limits[cls] else None

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
        if cls is PersonRow:
            return self._people(sobject, Narrowing.of(where))
        if issubclass(cls, ActivityRow):
            kinds = TASK_KINDS if cls is TaskRow else frozenset({ActivityKind.MEETING})
            return self._activities(cls, kinds, Narrowing.of(where, ("whoid",)))
        if cls is MemberRow:
            return self._members(Narrowing.of(where, ("leadid", "contactid")))
        keys = {AccountRow: range(1, self.crm.tenant.companies + 1), CampaignRow: range(1, len(CAMPAIGNS) + 1),
                UserRow: sorted(o.id for o in self.crm.tenant.owners)}[cls]
        return (cls(self, key) for key in keys)

    def _people(self, sobject: SObject, narrow: Narrowing) -> Iterator[Row]:
        want_lead = sobject.prefix == "00Q"
        if narrow.ids is not None:
            indexes = sorted({i for i in map(_person_index, narrow.ids) if i is not None})
        elif narrow.since_ms is not None or narrow.until_ms is not None:
            indexes = self.crm.updated_between(narrow.since_ms or 0, narrow.until_ms or 2**62)
        else:
            indexes = range(self._start_key(narrow.after, sobject.prefix) - 1, self.crm.size)
        for index in indexes:
            if 0 <= index < self.crm.size and is_lead(index) == want_lead:
                yield PersonRow(self, index + 1)

    def _start_key(self, after: str | None, prefix: str) -> int:
        parsed = parse_id(after) if after else None
        if parsed is None:
            return 1 if after is None or after < prefix else 2**62
        return parsed[1] if parsed[0] == prefix else (1 if parsed[0] < prefix else 2**62)

    def _persons_for(self, narrow: Narrowing, start: int, prefix: str) -> Iterable[int]:
        """People whose records of kind ``prefix`` may match: named ones, recently touched ones, or all."""
        if narrow.refs is not None:
            return sorted({i for i in map(_person_index, narrow.refs) if i is not None})
        if narrow.since_ms is not None:
            return sorted(set(self.crm.touched_since(narrow.since_ms)) | self._edited_people(prefix))
        return range(max(0, start), self.crm.tenant.size)

    def _edited_people(self, prefix: str) -> set[int]:
        # An edit moves a generated record's stamp past its person's last touch: search must still find it.
        with self._lock:
            numbers = [parsed[1] for parsed in map(parse_id, self._edited) if parsed[0] == prefix]
        if prefix == "00v":
            return {(n - 1) // _MEMBER_SLOTS for n in numbers}
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
        start = (self._start_key(narrow.after, "00v") - 1) // _MEMBER_SLOTS
        for index in self._persons_for(narrow, start, "00v"):
            if index < self.crm.size:
                yield from (MemberRow(self, key) for key in members_of(self, index))

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
            if (row.deleted and not all_rows) or (test is not None and not test(row)):
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
        if isinstance(row, PersonRow):
            return self.objects["lead" if is_lead(row.index) else "contact"]
        return next(o for o in self.objects.values() if o.row is type(row))


    # -- writes --

    def prepare_update(self, sobject_name: str | None, record: Any) -> Prepared:
        """Validate one record of an update; :class:`RecordError` says why it cannot be written."""
        if not isinstance(record, dict):
            raise RecordError("JSON_PARSER_ERROR", "each record must be a JSON object")
        sobject = self._write_object(sobject_name, record)
        record_id = record.get("id") or record.get("Id")
        if parse_id(record_id) is None:
            raise RecordError("MALFORMED_ID", f"malformed id {record_id}", ("Id",))
        row = self.row_by_id(sobject, record_id)
        if row is None:
            raise RecordError("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", ("Id",))
        if row.deleted:
            raise RecordError("ENTITY_IS_DELETED", "entity is deleted", ())
        self._injected_failure(row.id)
        values = {k: v for k, v in record.items() if k not in ("attributes", "id", "Id")}
        return Prepared(sobject, row, self._checked(sobject, values, creating=False))

    def prepare_create(self, sobject_name: str | None, record: Any) -> Prepared:
        """Validate one record of a create (Task and Event only: the sandbox keeps people generated)."""
        if not isinstance(record, dict):
            raise RecordError("JSON_PARSER_ERROR", "each record must be a JSON object")
        sobject = self._write_object(sobject_name, record)
        if not sobject.createable:
            raise RecordError("CANNOT_INSERT_UPDATE_ACTIVATE_ENTITY",
                              f"this sandbox creates Task and Event records only, not {sobject.name}")
        values = self._checked(sobject, {k: v for k, v in record.items() if k != "attributes"}, creating=True)
        required = ["WhoId"] + (["StartDateTime", "DurationInMinutes"] if sobject.name == "Event" else [])
        missing = [name for name in required if values.get(name) is None]
        if missing:
            raise RecordError("REQUIRED_FIELD_MISSING", f"Required fields are missing: [{', '.join(missing)}]",
                              tuple(missing))
        if _person_index(values["WhoId"]) is None or _person_index(values["WhoId"]) >= self.crm.size:
            raise RecordError("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", ("WhoId",))
        return Prepared(sobject, None, values)

    def _write_object(self, sobject_name: str | None, record: dict) -> SObject:
        name = sobject_name or (record.get("attributes") or {}).get("type")
        if not name:
            raise RecordError("INVALID_TYPE", "Must send a concrete entity type.")
        try:
            return self.sobject(name)
        except SoqlError as exc:
            raise RecordError("INVALID_TYPE", str(exc)) from None

    def _injected_failure(self, record_id: str) -> None:
        fault = self.faults.record_fault(record_id) or self.faults.record_fault(record_id[:15])
        if fault is not None:
            raise RecordError(fault.code or "FIELD_CUSTOM_VALIDATION_EXCEPTION", fault.message)

    def _checked(self, sobject: SObject, values: dict, creating: bool) -> dict:
        checked = {}
        for name, value in values.items():
            spec = sobject.field(name)
            if spec is None:
                raise RecordError("INVALID_FIELD", f"No such column '{name}' on sobject of type {sobject.name}",
                                  (name,))
            writable = spec.updateable or spec.custom or (creating and spec.createable)
            if not writable:
                raise RecordError("INVALID_FIELD_FOR_INSERT_UPDATE",
                                  f"Unable to create/update fields: {spec.name}. Please check the security settings "
                                  "of this field and verify that it is read/write for your profile or permission set.",
                                  (spec.name,))
            checked[spec.name] = self._typed(sobject, spec, value)
        return checked

    def _typed(self, sobject: SObject, spec: Field, value: Any) -> Any:
        if value is None:
            return None
        ok = {"boolean": isinstance(value, bool), "int": isinstance(value, int) and not isinstance(value, bool),
              "datetime": isinstance(value, str) and parse_datetime(value, colon_offset=False) is not None,
              "date": isinstance(value, str) and re.fullmatch(r"\d{4}-\d\d-\d\d", value) is not None}
        numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
        valid = ok.get(spec.type, numeric if spec.type in _NUMBERS else isinstance(value, str))
        if not valid:
            raise RecordError("INVALID_TYPE_ON_FIELD_IN_RECORD", f"{spec.name}: value not of required type: {value}",
                              (spec.name,))
        if spec.restricted and value not in spec.picklist:
            raise RecordError("INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                              f"{spec.label or _label(spec.name)}: bad value for restricted picklist field: {value}",
                              (spec.name,))
        if spec.type == "reference" and spec.reference_to == ("User",) and self._owner_of(value) is None:
            raise RecordError("INVALID_CROSS_REFERENCE_KEY", f"{spec.name}: id value of incorrect type: {value}",
                              (spec.name,))
        return parse_datetime(value, colon_offset=False) if spec.type == "datetime" else value

    def _owner_of(self, user_id: str) -> int | None:
        parsed = parse_id(user_id)
        owners = {o.id for o in self.crm.tenant.owners}
        return parsed[1] if parsed and parsed[0] == "005" and parsed[1] in owners else None

    def apply(self, prepared: Prepared) -> str:
        """Carry out a validated write; returns the record's id."""
        if prepared.row is None:
            return self._create(prepared)
        row, values = prepared.row, prepared.values
        if isinstance(row, PersonRow):
            neutral = {}
            for name, value in values.items():
                spec = prepared.sobject.field(name)
                key = spec.neutral or spec.name
                neutral[key] = self._owner_of(value) if key == "owner_id" and value else value
            self.crm.write(row.index, neutral)
        else:
            with self._lock:
                self._edits.setdefault(row.id, {}).update(values)
                self._edited[row.id] = max(self.crm.clock_ms(), row.modified_ms + 1)
        return row.id

    def _create(self, prepared: Prepared) -> str:
        values = prepared.values
        index = _person_index(values["WhoId"])
        owner = self._owner_of(values["OwnerId"]) if values.get("OwnerId") else self.crm.record(index)["owner_id"]
        stored = dict(values)
        if prepared.sobject.name == "Event":
            attributes = {"title": values.get("Subject"), "outcome": "scheduled",
                          "duration_ms": int(values["DurationInMinutes"]) * 60_000, "sobject_fields": stored}
            activity = self.crm.log_activity(index, ActivityKind.MEETING, values["StartDateTime"], owner,
                                             attributes, by_api=True)
            return sf_id("00U", activity.id)
        attributes = {"subject": values.get("Subject") or "", "body": values.get("Description") or "",
                      "status": "completed" if values.get("Status") == "Completed" else "not_started",
                      "priority": {"High": "high", "Low": "low"}.get(values.get("Priority"), "medium"),
                      "type": {"Call": "call", "Email": "email"}.get(values.get("TaskSubtype") or values.get("Type"),
                                                                    "todo"),
                      "sobject_fields": stored}
        activity = self.crm.log_activity(index, ActivityKind.TASK, None, owner, attributes, by_api=True)
        return sf_id("00T", activity.id)

    def collection(self, request: Request, prepare: Callable[[None, Any], Prepared]) -> list[dict]:
        """An sObject Collections call: every record validated, then all written (or none with allOrNone)."""
        body = request.json()
        records = body.get("records") if isinstance(body, dict) else None
        if not isinstance(records, list):
            raise self.error(400, "Expected a JSON object with a 'records' array", code="JSON_PARSER_ERROR")
        if len(records) > _COLLECTION_MAX:
            raise self.error(400, f"record limit reached. cannot submit more than {_COLLECTION_MAX} records into "
                             "this call", code="EXCEEDED_ID_LIMIT")
        outcomes = []
        for record in records:
            try:
                outcomes.append(prepare(None, record))
            except RecordError as exc:
                outcomes.append(exc)
        failed = any(isinstance(o, RecordError) for o in outcomes)
        if failed and body.get("allOrNone"):
            return [_failure(o if isinstance(o, RecordError) else _ROLLED_BACK) for o in outcomes]
        return [_failure(o) if isinstance(o, RecordError) else _success(self.apply(o)) for o in outcomes]

    # -- routes: auth --

    @route("POST", "/services/oauth2/token", name="oauth.token", auth=False, limited=False)
    def token(self, request: Request):
        form = {k: v[0] for k, v in parse_qs(request.body.decode("utf-8", "replace")).items()}
        form.update({k: v[0] for k, v in request.query.items() if k not in form})
        grant = form.get("grant_type")
        if grant not in ("password", "client_credentials", "refresh_token"):
            raise VendorError(400, {"error": "unsupported_grant_type", "error_description": "grant type not supported"})
        if form.get("client_id") != self.client_id:
            raise VendorError(400, {"error": "invalid_client_id", "error_description": "client identifier invalid"})
        if grant != "refresh_token" and form.get("client_secret") != self.client_secret:
            raise VendorError(400, {"error": "invalid_client", "error_description": "invalid client credentials"})
        accepted = {"password": (form.get("username"), form.get("password")) == (self.username, self.password),
                    "refresh_token": form.get("refresh_token") == self.refresh_token,
                    "client_credentials": True}[grant]
        if not accepted:
            raise VendorError(400, {"error": "invalid_grant", "error_description": "authentication failure"})
        return self._token_answer(request)

    def _token_answer(self, request: Request) -> dict:
        issued = str(self.crm.clock_ms())
        identity = f"https://login.salesforce.com/id/00D5g0000000001AAA/{_user_id(self.crm.tenant.owners[0].id)}"
        digest = hashlib.sha256((identity + issued + self.client_secret).encode()).digest()
        return {"access_token": self.tokens.issue(), "instance_url": f"https://{request.headers.get('Host')}",
                "id": identity, "token_type": "Bearer", "issued_at": issued,
                "signature": base64.b64encode(digest).decode()}

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
        return {"encoding": "UTF-8", "maxBatchSize": _COLLECTION_MAX,
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

    @route("POST", "/services/data/{version}/sobjects/{type}/", name="sobjects.create")
    def create(self, request: Request):
        self._version(request)
        sobject = self._path_object(request)
        try:
            record_id = self.apply(self.prepare_create(sobject.name, request.json()))
        except RecordError as exc:
            raise self.error(400, exc.message, code=exc.code, fields=exc.fields) from None
        return Response(201, _success(record_id))

    @route("POST", "/services/data/{version}/sobjects/{type}", name="sobjects.create")
    def create_bare(self, request: Request):
        return self.create(request)

    @route("GET", "/services/data/{version}/sobjects/{type}/{id}", name="sobjects.get")
    def get_record(self, request: Request):
        version = self._version(request)
        sobject = self._path_object(request)
        row = self.row_by_id(sobject, request.params["id"])
        if row is None or row.deleted:
            raise self.error(404, "The requested resource does not exist")
        accessors = [Accessor((), spec) for spec in sobject.fields.values()]
        return self.render(row, accessors, version)

    @route("PATCH", "/services/data/{version}/sobjects/{type}/{id}", name="sobjects.update")
    def update_record(self, request: Request):
        self._version(request)
        sobject = self._path_object(request)
        body = request.json()
        record = {**(body if isinstance(body, dict) else {}), "id": request.params["id"]}
        try:
            self.apply(self.prepare_update(sobject.name, record))
        except RecordError as exc:
            status = 404 if exc.code in ("MALFORMED_ID", "INVALID_CROSS_REFERENCE_KEY") else 400
            raise self.error(status, exc.message, code=exc.code, fields=exc.fields) from None
        return Response(204, None)

    @route("PATCH", "/services/data/{version}/composite/sobjects", name="composite.update")
    def composite_update(self, request: Request):
        self._version(request)
        return self.collection(request, self.prepare_update)

    @route("POST", "/services/data/{version}/composite/sobjects", name="composite.create")
    def composite_create(self, request: Request):
        self._version(request)
        return self.collection(request, self.prepare_create)


_ROLLED_BACK = RecordError("ALL_OR_NONE_OPERATION_ROLLED_BACK", "Record rolled back because not all records were "
                           "valid and the request was using AllOrNone header")


def _success(record_id: str) -> dict:
    return {"id": record_id, "success": True, "errors": []}


def _failure(error: RecordError) -> dict:
    return {"success": False, "errors": [error.wire()]}


_DEFAULT_CODES = {400: "INVALID_REQUEST", 401: "INVALID_SESSION_ID", 403: "REQUEST_LIMIT_EXCEEDED",
                  404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED", 429: "REQUEST_LIMIT_EXCEEDED",
                  500: "UNKNOWN_EXCEPTION", 502: "SERVER_UNAVAILABLE", 503: "SERVER_UNAVAILABLE"}


def wire(spec: Field, value: Any) -> Any:
    """A value as JSON shows it: datetimes formatted, currency and doubles as floats."""
    if value is None:
        return None
    if spec.type == "datetime" and isinstance(value, int):
        return fmt_datetime(value)
    if spec.type in ("double", "currency", "percent") and isinstance(value, (int, float)) \
            and not isinstance(value, bool):
        return float(value)
    return value


VENDOR = Salesforce
