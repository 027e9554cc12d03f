"""Salesforce's records as the imitation keeps them: ids, the Lead/Contact split, datetimes, values in
Salesforce's spelling, the row classes, and the catalogue of sObjects with their field definitions."""
from __future__ import annotations

import calendar
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from .state import ADDED_ACTIVITY_BASE, Crm
from .synth import DAY_MS, Activity, ActivityKind, Owner, mix

ARCHIVE_DAYS = 365
"""Tasks and Events this many days old or older are archived (SOAP API guide, "Archived Activities")."""


class Records(Protocol):
    """What a row reads of the imitation behind it (the `Salesforce` vendor): the synthetic CRM, and the values
    written over REST since."""

    crm: Crm

    def edits_of(self, record_id: str) -> dict: ...

    def edited_ms(self, record_id: str) -> int: ...

    def row_by_id(self, sobject: SObject, record_id: str) -> Row | None: ...

    def conversion_ms(self, index: int) -> int | None:
        """When generated person ``index`` converted (became a customer); None for those who did not."""

    def api_write_ms(self, record_id: str) -> int | None:
        """When a client last wrote the record through the API, if it ever did."""


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


def person_id(index: int) -> str:
    return sf_id("00Q" if is_lead(index) else "003", index + 1)


def person_number(record_id: Any) -> int | None:
    """The person index behind a Lead, Contact, Opportunity or OpportunityContactRole id of this org, whatever the
    person is now (a converted Lead's person is also its Contact); None for any other id."""
    parsed = parse_id(record_id)
    return parsed[1] - 1 if parsed is not None and parsed[0] in PERSON_KEYED and parsed[1] >= 1 else None


PERSON_KEYED = ("00Q", "003", "006", "00K")
"""Key prefixes of the records numbered by their person: Lead, Contact, Opportunity, OpportunityContactRole."""


def person_index(contact_id: str) -> int | None:
    parsed = parse_id(str(contact_id))
    if parsed is None or parsed[0] not in ("00Q", "003") or parsed[1] < 1:
        return None
    index = parsed[1] - 1
    return index if is_lead(index) == (parsed[0] == "00Q") else None


def person_behind(record_id: str) -> int | None:
    """The person a Lead or Contact id names, whatever they are now: a Contact id may name a converted Lead's
    person (the id scheme tests and ``Crm`` use; the vendor checks the row exists)."""
    parsed = parse_id(str(record_id))
    if parsed is None or parsed[0] not in ("00Q", "003") or parsed[1] < 1:
        return None
    index = parsed[1] - 1
    return index if parsed[0] == "003" or is_lead(index) else None


def who_id(vendor: Records, index: int) -> str:
    """The id a person's activities and campaign memberships name: their Lead, or their Contact once they are one
    (converting a Lead moves its open and closed activities to the Contact)."""
    if is_lead(index) and vendor.conversion_ms(index) is None:
        return sf_id("00Q", index + 1)
    return sf_id("003", index + 1)


INTEGRATION_OWNER = Owner(id=9_999, first_name="Integration", last_name="User", email="integration@leadpulse.sandbox")
"""The User every client of the sandbox works as (owner ids start at 10,000): LastModifiedById of what it writes."""
INTEGRATION_USER = sf_id("005", INTEGRATION_OWNER.id)


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
LEAD_SOURCES = tuple(sorted(set(_LEAD_SOURCE.values())))


def lead_source(source: str) -> str:
    """A neutral source (``organic_search``) as a LeadSource picklist value."""
    return _LEAD_SOURCE.get(source, "Other")


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
MEMBER_SLOTS = 8  # CampaignMember numbers are index * 8 + j + 1


# -- rows: one record, expensive values computed on first use ---------------------------------------

class Row:
    """A record as the query engine and the renderer see it."""

    __slots__ = ("_cache", "key", "vendor")
    prefix = ""

    def __init__(self, vendor: Records, key: int):
        self.vendor, self.key = vendor, key
        self._cache: Any = None  # what the row computes on first use, if it needs anything

    @property
    def id(self) -> str:
        return sf_id(self.prefix, self.key)

    def value(self, spec: Field) -> Any:
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
    def base_modified_ms(self) -> int:
        """When the record last changed before the edits written over REST; each kind of row knows."""
        raise NotImplementedError

    @property
    def modified_ms(self) -> int:
        return max(self.base_modified_ms, self.vendor.edited_ms(self.id))

    @property
    def deleted(self) -> bool:
        return False

    @property
    def archived(self) -> bool:
        """Whether ``query`` leaves the row out as ``queryAll`` does not (archived activities)."""
        return False

    @property
    def owner_key(self) -> int | None:
        """The owning User's key (an owner id), for rows that have one."""
        return None

    @property
    def created_by(self) -> str:
        """CreatedById: the owner, or the org's first user (its admin) for rows without one."""
        return sf_id("005", self.owner_key or self.vendor.crm.tenant.owners[0].id)

    @property
    def modified_by(self) -> str:
        """LastModifiedById: the integration user when a client's write is the latest change, else the creator."""
        written = self.vendor.api_write_ms(self.id)
        return INTEGRATION_USER if written is not None and written >= self.modified_ms else self.created_by


_UNKNOWN = -1  # a conversion not looked up yet


class PersonRow(Row):
    """A Lead or a Contact: key is the person's index + 1. One person is a Lead (``LeadRow``) or a Contact
    (``ContactRow``) as :func:`is_lead` says, and a Lead that converted is both: a frozen Lead and its Contact."""

    __slots__ = ("_company", "_conversion")

    def __init__(self, vendor: Records, key: int, conversion_ms: int | None = _UNKNOWN):
        super().__init__(vendor, key)
        self._company: int | None = None
        self._conversion = conversion_ms

    @property
    def index(self) -> int:
        return self.key - 1

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
    def owner_key(self) -> int | None:
        return self.record["owner_id"]

    @property
    def conversion_ms(self) -> int | None:
        """When the person converted (the generated history says), or None."""
        if self._conversion == _UNKNOWN:
            self._conversion = self.vendor.conversion_ms(self.index)
        return self._conversion

    @property
    def account_id(self) -> str:
        # The flat record keeps the company's name only; its index comes from the person once more.
        if self._company is None:
            self._company = self.vendor.crm.tenant.person(self.index).company.index
        return sf_id("001", self._company + 1)


class LeadRow(PersonRow):
    """A Lead. Once converted it is read-only: it shows the person as generated and was last modified when it
    converted, while later writes and touches land on its Contact."""

    __slots__ = ()
    prefix = "00Q"

    @property
    def converted(self) -> bool:
        return self.conversion_ms is not None

    @property
    def record(self) -> dict:
        if self._cache is None:
            frozen = self.converted
            self._cache = self.vendor.crm.tenant.fields(self.index) if frozen else self.vendor.crm.record(self.index)
        return self._cache

    @property
    def modified_ms(self) -> int:
        return self.conversion_ms if self.conversion_ms is not None else self.vendor.crm.updated_ms(self.index)

    def converted_to(self, prefix: str) -> str | None:
        """The id of the Contact (003), Account (001) or Opportunity (006) the Lead converted into."""
        if not self.converted:
            return None
        return self.account_id if prefix == "001" else sf_id(prefix, self.key)


class ContactRow(PersonRow):
    """A Contact: a person who is no Lead, or the Contact a converted Lead became (created when it converted)."""

    __slots__ = ()
    prefix = "003"

    @property
    def created_ms(self) -> int:
        if is_lead(self.index) and self.conversion_ms is not None:
            return self.conversion_ms
        return self.vendor.crm.created_ms(self.index)


class ActivityRow(Row):
    """A Task or an Event: key is the activity id."""

    __slots__ = ("activity",)

    def __init__(self, vendor: Records, activity: Activity):
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
    def owner_key(self) -> int | None:
        return self.activity.owner_id

    @property
    def created_by(self) -> str:
        return INTEGRATION_USER if "sobject_fields" in self.activity.attributes else super().created_by

    @property
    def archived(self) -> bool:
        # Salesforce's nightly archiving, last run at the tenant's anchor: activities a year old or older, tasks
        # only once closed. What clients created since waits for the next run.
        open_task = self.activity.kind is ActivityKind.TASK and self.attrs.get("status") != "completed"
        if self.activity.id >= ADDED_ACTIVITY_BASE or open_task:
            return False
        anchor_day = self.vendor.crm.tenant.anchor_ms // DAY_MS
        return self.activity.occurred_ms // DAY_MS <= anchor_day - ARCHIVE_DAYS

    @property
    def who(self) -> str:
        return who_id(self.vendor, self.activity.contact_index)

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
            self._cache = PersonRow(self.vendor, (self.key - 1) // MEMBER_SLOTS + 1)
        return self._cache

    @property
    def owner_key(self) -> int | None:
        return self.person.owner_key

    @property
    def lead_id(self) -> str | None:
        """A converted Lead's memberships keep its LeadId and gain its ContactId, as lead conversion leaves them."""
        return sf_id("00Q", self.person.key) if is_lead(self.person.index) else None

    @property
    def contact_id(self) -> str | None:
        index = self.person.index
        return sf_id("003", self.person.key) if not is_lead(index) or self.person.conversion_ms is not None else None

    @property
    def slot(self) -> int:
        return (self.key - 1) % MEMBER_SLOTS

    @property
    def campaign(self) -> int:
        """Index into CAMPAIGNS: the last slot of a person is the newsletter send."""
        if self.slot == MEMBER_SLOTS - 1:
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


def members_of(vendor: Records, index: int) -> list[int]:
    """CampaignMember keys of one person: one per form submission (up to 7), and a newsletter send for some."""
    record = vendor.crm.record(index)
    slots = list(range(min(record["form_submissions"], MEMBER_SLOTS - 1)))
    if record["email_opens"] and not record["opted_out"]:
        slots.append(MEMBER_SLOTS - 1)
    return [index * MEMBER_SLOTS + j + 1 for j in slots]


class SetupRow(Row):
    """A record an admin keeps (a Campaign, a User): made up to three years before the anchor, changed since."""

    __slots__ = ()

    def _fraction(self, salt: int) -> float:
        return mix(self.vendor.crm.tenant.seed, self.key, salt) / 2.0**64

    @property
    def created_ms(self) -> int:
        anchor = self.vendor.crm.tenant.anchor_ms
        return anchor - 400 * DAY_MS - int(700 * DAY_MS * self._fraction(0x5E7))

    @property
    def base_modified_ms(self) -> int:
        created = self.created_ms
        return created + int((self.vendor.crm.tenant.anchor_ms - created) * self._fraction(0x5E8) ** 2)


class CampaignRow(SetupRow):
    __slots__ = ()
    prefix = "701"


class UserRow(SetupRow):
    """A User: key is the owner's id, or the integration user's."""

    __slots__ = ()
    prefix = "005"

    @property
    def owner(self) -> Owner:
        if self.key == INTEGRATION_OWNER.id:
            return INTEGRATION_OWNER
        return next(o for o in self.vendor.crm.tenant.owners if o.id == self.key)

    @property
    def created_ms(self) -> int:
        # The admin (the first owner) came first; everyone else, the integration user too, joined after.
        admin = self.key == self.vendor.crm.tenant.owners[0].id
        return self.vendor.crm.tenant.anchor_ms - 1100 * DAY_MS if admin else super().created_ms


# -- objects and their fields -------------------------------------------------------------------------

@dataclass(frozen=True)
class Field:
    """One field of an sObject: its describe facts and how a row yields its value."""

    name: str
    type: str
    read: Callable[[Any], Any] = lambda row: None  # takes the row class of its sObject
    updateable: bool = False
    createable: bool | None = None
    picklist: tuple[str, ...] = ()
    restricted: bool = False
    reference_to: tuple[str, ...] = ()
    relationship: str | None = None
    neutral: str | None = None
    custom: bool = False
    label: str = ""
    external_id: bool = False

    def describe(self) -> dict:
        createable = self.updateable if self.createable is None else self.createable
        return {
            "name": self.name, "label": self.label or label(self.name), "type": self.type,
            "soapType": _SOAP_TYPES.get(self.type, "xsd:string"), "custom": self.custom,
            "updateable": self.updateable, "createable": createable, "nillable": self.type not in ("id", "boolean"),
            "filterable": True, "sortable": self.type != "textarea", "length": 255 if self.type in TEXT else 0,
            "picklistValues": [{"active": True, "defaultValue": False, "label": v, "validFor": None, "value": v}
                               for v in self.picklist],
            "restrictedPicklist": self.restricted, "referenceTo": list(self.reference_to),
            "relationshipName": self.relationship, "calculated": False, "defaultedOnCreate": self.type == "boolean",
            "externalId": self.external_id, "idLookup": self.type == "id" or self.external_id,
        }


TEXT = ("string", "email", "picklist", "textarea", "phone", "url")
NUMBERS = ("int", "double", "currency", "percent")
_SOAP_TYPES = {"id": "tns:ID", "reference": "tns:ID", "boolean": "xsd:boolean", "int": "xsd:int",
               "double": "xsd:double", "currency": "xsd:double", "percent": "xsd:double",
               "datetime": "xsd:dateTime", "date": "xsd:date"}


def label(name: str) -> str:
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
        return {"name": self.name, "label": label(self.name), "labelPlural": self.plural or self.name + "s",
                "keyPrefix": self.prefix, "custom": False, "queryable": True, "retrieveable": True,
                "searchable": True, "createable": self.createable, "updateable": True, "deletable": False,
                "urls": {"sobject": base, "describe": f"{base}/describe", "rowTemplate": f"{base}/{{ID}}"}}


def _fields(*specs: Field) -> dict[str, Field]:
    return {spec.name.lower(): spec for spec in specs}


def _system_fields(id_label: str = "Record ID") -> list[Field]:
    return [
        Field("Id", "id", lambda r: r.id, label=id_label),
        Field("IsDeleted", "boolean", lambda r: r.deleted, label="Deleted"),
        *audit_fields(lambda r: r.created_ms),
    ]


def audit_fields(created: Callable[[Any], int]) -> list[Field]:
    """Who made the record and when, who changed it last and when: every sObject has these."""
    return [
        Field("CreatedDate", "datetime", created),
        Field("CreatedById", "reference", lambda r: r.created_by, reference_to=("User",), relationship="CreatedBy",
              label="Created By ID"),
        Field("LastModifiedDate", "datetime", lambda r: r.modified_ms),
        Field("LastModifiedById", "reference", lambda r: r.modified_by, reference_to=("User",),
              relationship="LastModifiedBy", label="Last Modified By ID"),
        Field("SystemModstamp", "datetime", lambda r: r.modified_ms, label="System Modstamp"),
    ]


AUDIT_PARENTS = {"createdby": ("CreatedBy", "CreatedById", "User"),
                 "lastmodifiedby": ("LastModifiedBy", "LastModifiedById", "User")}


def _owner_field() -> Field:
    return Field("OwnerId", "reference", lambda r: user_id(r.record["owner_id"]), updateable=True,
                 reference_to=("User",), relationship="Owner", neutral="owner_id", label="Owner ID")


def user_id(owner_id: int | None) -> str | None:
    return None if owner_id is None else sf_id("005", owner_id)


def _person_fields() -> list[Field]:
    rec = lambda name: (lambda r: r.record[name])  # noqa: E731 - a field-reader factory beside the table it serves
    return [
        *_system_fields(),
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
    rec = lambda name: (lambda r: r.record[name])  # noqa: E731 - a field-reader factory beside the table it serves
    return SObject("Lead", "00Q", LeadRow, _fields(*_person_fields(), *[
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
        Field("IsConverted", "boolean", lambda r: r.converted, label="Converted"),
        Field("ConvertedDate", "date", lambda r: fmt_date(r.conversion_ms) if r.converted else None),
        Field("ConvertedContactId", "reference", lambda r: r.converted_to("003"), reference_to=("Contact",),
              relationship="ConvertedContact", label="Converted Contact ID"),
        Field("ConvertedAccountId", "reference", lambda r: r.converted_to("001"), reference_to=("Account",),
              relationship="ConvertedAccount", label="Converted Account ID"),
        Field("ConvertedOpportunityId", "reference", lambda r: r.converted_to("006"), reference_to=("Opportunity",),
              relationship="ConvertedOpportunity", label="Converted Opportunity ID"),
    ]), parents={"owner": ("Owner", "OwnerId", "User"), **AUDIT_PARENTS,
                 "convertedcontact": ("ConvertedContact", "ConvertedContactId", "Contact"),
                 "convertedaccount": ("ConvertedAccount", "ConvertedAccountId", "Account"),
                 "convertedopportunity": ("ConvertedOpportunity", "ConvertedOpportunityId", "Opportunity")},
        plural="Leads")


def _contact() -> SObject:
    return SObject("Contact", "003", ContactRow, _fields(*_person_fields(), *[
        Field("AccountId", "reference", lambda r: r.account_id,
              updateable=True, reference_to=("Account",), relationship="Account", label="Account ID"),
        Field("MailingCountry", "string", lambda r: r.record["country"], updateable=True, neutral="country"),
    ]), parents={"account": ("Account", "AccountId", "Account"), "owner": ("Owner", "OwnerId", "User"),
                 **AUDIT_PARENTS}, plural="Contacts")


def _account() -> SObject:
    company = lambda name: (lambda r: getattr(r.company, name))  # noqa: E731 - a field-reader factory beside the table it serves
    return SObject("Account", "001", AccountRow, _fields(*_system_fields(), *[
        Field("Name", "string", company("name"), updateable=True, label="Account Name"),
        Field("Industry", "picklist", lambda r: _INDUSTRY.get(r.company.industry, r.company.industry),
              updateable=True, picklist=INDUSTRIES),
        Field("NumberOfEmployees", "int", company("employees"), updateable=True, label="Employees"),
        Field("AnnualRevenue", "currency", company("annual_revenue"), updateable=True),
        Field("BillingCountry", "string", company("country"), updateable=True),
        Field("Website", "url", lambda r: "https://" + r.company.domain, updateable=True),
    ]), parents=dict(AUDIT_PARENTS), plural="Accounts")


def _activity_fields() -> list[Field]:
    return [
        Field("Id", "id", lambda r: r.id, label="Activity ID"),
        Field("IsDeleted", "boolean", lambda r: r.deleted, label="Deleted"),
        Field("IsArchived", "boolean", lambda r: r.archived, label="Archived"),
        *audit_fields(lambda r: r.activity.occurred_ms),
        Field("WhoId", "reference", lambda r: r.who, updateable=True, reference_to=("Contact", "Lead"),
              relationship="Who", label="Name ID"),
        Field("WhatId", "reference", lambda r: None, updateable=True, reference_to=("Account",),
              relationship="What", label="Related To ID"),
        Field("OwnerId", "reference", lambda r: user_id(r.activity.owner_id), updateable=True,
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
    call = lambda fn: (lambda r: fn(r.attrs) if r.activity.kind is ActivityKind.CALL else None)  # noqa: E731 - a field-reader factory beside the table it serves
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
    ]), parents={"owner": ("Owner", "OwnerId", "User"), **AUDIT_PARENTS}, createable=True, plural="Tasks")


def _event() -> SObject:
    minutes = lambda r: r.attrs.get("duration_ms", 0) // 60_000  # noqa: E731 - a field-reader factory beside the table it serves
    return SObject("Event", "00U", EventRow, _fields(*_activity_fields(), *[
        Field("Subject", "string", lambda r: r.attrs.get("title"), updateable=True),
        Field("Type", "picklist", lambda r: "Meeting", updateable=True, picklist=("Call", "Email", "Meeting", "Other")),
        Field("StartDateTime", "datetime", lambda r: r.activity.occurred_ms, updateable=True, label="Start"),
        Field("ActivityDateTime", "datetime", lambda r: r.activity.occurred_ms, updateable=True,
              label="Due Date Time"),
        Field("EndDateTime", "datetime", lambda r: r.activity.occurred_ms + minutes(r) * 60_000, updateable=True,
              label="End"),
        Field("DurationInMinutes", "int", minutes, updateable=True, label="Duration"),
    ]), parents={"owner": ("Owner", "OwnerId", "User"), **AUDIT_PARENTS}, createable=True, plural="Events")


def _member() -> SObject:
    return SObject("CampaignMember", "00v", MemberRow, _fields(*_system_fields(), *[
        Field("CampaignId", "reference", lambda r: sf_id("701", r.campaign + 1), reference_to=("Campaign",),
              relationship="Campaign", createable=True, label="Campaign ID"),
        Field("LeadId", "reference", lambda r: r.lead_id, reference_to=("Lead",), relationship="Lead",
              createable=True),
        Field("ContactId", "reference", lambda r: r.contact_id, reference_to=("Contact",), relationship="Contact",
              createable=True),
        Field("Status", "picklist", lambda r: r.status, updateable=True,
              picklist=("Sent", "Responded", "Registered", "Attended")),
        Field("HasResponded", "boolean", lambda r: r.status != "Sent", label="Responded"),
        Field("FirstRespondedDate", "date", lambda r: fmt_date(r.created_ms) if r.status != "Sent" else None),
    ]), parents={"campaign": ("Campaign", "CampaignId", "Campaign"), "lead": ("Lead", "LeadId", "Lead"),
                 "contact": ("Contact", "ContactId", "Contact"), **AUDIT_PARENTS}, plural="Campaign Members")


def _campaign() -> SObject:
    return SObject("Campaign", "701", CampaignRow, _fields(
        *_system_fields("Campaign ID"),
        Field("Name", "string", lambda r: CAMPAIGNS[r.key - 1][0], updateable=True),
        Field("Type", "picklist", lambda r: CAMPAIGNS[r.key - 1][1], updateable=True,
              picklist=tuple(sorted({c[1] for c in CAMPAIGNS}))),
        Field("IsActive", "boolean", lambda r: True, updateable=True),
    ), parents=dict(AUDIT_PARENTS), plural="Campaigns")


def _user() -> SObject:
    owner = lambda name: (lambda r: getattr(r.owner, name))  # noqa: E731 - a field-reader factory beside the table it serves
    return SObject("User", "005", UserRow, _fields(
        Field("Id", "id", lambda r: r.id, label="User ID"),
        *audit_fields(lambda r: r.created_ms),
        Field("IsActive", "boolean", lambda r: True, updateable=True),
        Field("FirstName", "string", owner("first_name"), updateable=True),
        Field("LastName", "string", owner("last_name"), updateable=True),
        Field("Name", "string", lambda r: f"{r.owner.first_name} {r.owner.last_name}", label="Full Name"),
        Field("Email", "email", owner("email"), updateable=True),
        Field("Username", "string", owner("email"), updateable=True),
    ), parents=dict(AUDIT_PARENTS), plural="Users")


def catalogue() -> dict[str, SObject]:
    """Every sObject served, by lower-case name (SOQL names are case-insensitive)."""
    objects = [_lead(), _contact(), _account(), _task(), _event(), _member(), _campaign(), _user()]
    return {o.name.lower(): o for o in objects}


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
