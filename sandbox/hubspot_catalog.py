"""HubSpot's property catalogue and the mapping between its property values and the neutral tenant.

HubSpot sends every property value as a string. Datetimes are ISO 8601 in UTC with
milliseconds (``2024-05-01T10:00:00.000Z``), as the v3 API answers them; filters and writes
accept epoch milliseconds or ISO strings alike.
"""
from __future__ import annotations

import functools
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from .synth import ActivityKind

LIFECYCLE_STAGES = [  # (HubSpot value, neutral value, label)
    ("subscriber", "subscriber", "Subscriber"), ("lead", "lead", "Lead"),
    ("marketingqualifiedlead", "mql", "Marketing Qualified Lead"),
    ("salesqualifiedlead", "sql", "Sales Qualified Lead"), ("opportunity", "opportunity", "Opportunity"),
    ("customer", "customer", "Customer"), ("evangelist", "evangelist", "Evangelist"), ("other", "other", "Other"),
]
STAGE_TO_HUBSPOT = {neutral: value for value, neutral, _ in LIFECYCLE_STAGES}
STAGE_FROM_HUBSPOT = {value: neutral for value, neutral, _ in LIFECYCLE_STAGES}
ENGAGEMENT_TYPES = {"calls": ActivityKind.CALL, "emails": ActivityKind.EMAIL, "meetings": ActivityKind.MEETING,
                    "notes": ActivityKind.NOTE, "tasks": ActivityKind.TASK}
OBJECT_OF_KIND = {kind: name for name, kind in ENGAGEMENT_TYPES.items()}
ASSOCIATION_TO_CONTACT = {ActivityKind.CALL: 194, ActivityKind.EMAIL: 198, ActivityKind.MEETING: 200,
                          ActivityKind.NOTE: 202, ActivityKind.TASK: 204}
ASSOCIATION_FROM_CONTACT = {ActivityKind.CALL: 193, ActivityKind.EMAIL: 197, ActivityKind.MEETING: 199,
                            ActivityKind.NOTE: 201, ActivityKind.TASK: 203}
EMAIL_DIRECTIONS = {"outbound": "EMAIL", "inbound": "INCOMING_EMAIL", "forwarded": "FORWARDED_EMAIL"}
DATETIME_PROPERTIES = {"createdate", "lastmodifieddate", "hs_lifecyclestage_customer_date", "recent_conversion_date",
                       "hs_timestamp", "hs_createdate", "hs_lastmodifieddate", "hs_meeting_start_time",
                       "hs_meeting_end_time"}
NUMBER_PROPERTIES = {"hs_object_id", "numberofemployees", "annualrevenue", "hs_email_open", "hs_email_click",
                     "hs_analytics_num_page_views", "num_conversion_events", "hs_call_duration", "hubspot_owner_id"}


def iso(ms: int | None) -> str | None:
    """``2024-05-01T10:00:00.000Z``. Every record on a page carries two or three, so it is built from tables:
    string formatting took a tenth of a page's time."""
    if ms is None:
        return None
    day, rest = divmod(ms, 86_400_000)
    minute, rest = divmod(rest, 60_000)
    second, milli = divmod(rest, 1000)
    return _date(day) + _MINUTES[minute] + _SECONDS[second] + _MILLIS[milli]


@functools.lru_cache(maxsize=4096)  # timestamps crowd into the last two years: a few hundred days
def _date(day: int) -> str:
    t = time.gmtime(day * 86_400)
    return f"{t[0]:04d}-{t[1]:02d}-{t[2]:02d}T"


_MINUTES = tuple(f"{hour:02d}:{minute:02d}:" for hour in range(24) for minute in range(60))
_SECONDS = tuple(f"{second:02d}." for second in range(60))
_MILLIS = tuple(f"{milli:03d}Z" for milli in range(1000))


def to_ms(value: str | int) -> int:
    """Epoch ms from epoch-ms digits or an ISO 8601 string; ValueError otherwise."""
    text = str(value).strip()
    if text.lstrip("-").isdigit():
        return int(text)
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1000)


def text(value) -> str | None:
    """A neutral value as HubSpot spells it: always a string (or null when unset)."""
    if value is None or value.__class__ is str:
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# -- contacts --------------------------------------------------------------------------------

CONTACT_PLAIN = {  # HubSpot property -> neutral field, values copied as text
    "email": "email", "firstname": "first_name", "lastname": "last_name", "jobtitle": "title",
    "company": "company", "industry": "industry", "numberofemployees": "employees",
    "annualrevenue": "annual_revenue", "country": "country", "hubspot_owner_id": "owner_id",
    "hs_email_optout": "opted_out", "hs_email_open": "email_opens", "hs_email_click": "email_clicks",
    "hs_analytics_num_page_views": "page_views", "num_conversion_events": "form_submissions",
}
NEUTRAL_OF = {**CONTACT_PLAIN, "lifecyclestage": "lifecycle", "hs_lead_status": "lead_status",
              "hs_analytics_source": "source"}
DEFAULT_CONTACT_PROPERTIES = ("createdate", "email", "firstname", "hs_object_id", "lastmodifieddate", "lastname")


def contact_properties(index: int, record: dict, names=None) -> dict[str, str | None]:
    """The contact's HubSpot properties as strings: all of them, or only ``names`` (those that exist)."""
    wanted = _CONTACT_GETTERS if names is None else names
    props = {}
    for name in wanted:
        getter = _CONTACT_GETTERS.get(name)
        if getter is not None:
            props[name] = getter(index, record)
        elif name in record and name not in _NEUTRAL_FIELDS:
            props[name] = text(record[name])
    if names is None:
        props.update({k: text(v) for k, v in record.items() if k not in _NEUTRAL_FIELDS})
    return props


@functools.lru_cache(maxsize=64)  # clients ask for the same few property lists page after page
def contact_renderer(names: tuple[str, ...]):
    """``render(index, record, known)``: the contact's ``names`` as the API shows them, in one pass.

    Standard properties always appear; a custom one appears with its value when the record holds
    it, as null when ``known`` (the catalogue) defines it, and not at all otherwise.
    """
    plan = [(name, CONTACT_PLAIN.get(name), _CONTACT_GETTERS.get(name)) for name in dict.fromkeys(names)]

    def render(index: int, record: dict, known) -> dict[str, str | None]:
        props = {}
        for name, field, getter in plan:
            if field is not None:  # a copied field, most often a string already: no call at all
                value = record.get(field)
                props[name] = value if value.__class__ is str else text(value)
            elif getter is not None:
                props[name] = getter(index, record)
            elif name in record and name not in _NEUTRAL_FIELDS:
                props[name] = text(record[name])
            elif name in known:
                props[name] = None
        return props

    return render


def _plain(field: str):
    return lambda index, record: text(record.get(field))


def _upper(field: str):
    return lambda index, record: text(record[field]).upper() if record.get(field) else None


_CONTACT_GETTERS = {
    **{name: _plain(field) for name, field in CONTACT_PLAIN.items()},
    "hs_object_id": lambda index, record: str(index + 1),
    "createdate": lambda index, record: iso(record["created_ms"]),
    "lastmodifieddate": lambda index, record: iso(record["updated_ms"]),
    "lifecyclestage": lambda index, record: STAGE_TO_HUBSPOT.get(record["lifecycle"], record["lifecycle"]),
    "hs_lead_status": _upper("lead_status"),
    "hs_analytics_source": _upper("source"),
    "hs_lifecyclestage_customer_date":
        lambda index, record: iso(record["converted_ms"]) if record.get("converted") else None,
    "recent_conversion_date":
        lambda index, record: iso(record["updated_ms"]) if record.get("form_submissions") else None,
}


def contact_write(properties: dict[str, str]) -> dict:
    """A HubSpot write as neutral fields (custom properties keep their HubSpot names)."""
    values = {}
    for name, value in properties.items():
        field = NEUTRAL_OF.get(name)
        if field == "lifecycle":
            value = STAGE_FROM_HUBSPOT.get(value, value)
        elif field in ("lead_status", "source") and value:
            value = value.lower()
        values[field or name] = value
    return values


_NEUTRAL_FIELDS = {"first_name", "last_name", "email", "title", "company", "industry", "employees", "annual_revenue",
                   "country", "source", "lifecycle", "lead_status", "owner_id", "opted_out", "created_ms",
                   "updated_ms", "converted", "converted_ms", "email_opens", "email_clicks", "page_views",
                   "form_submissions"}


# -- engagements -----------------------------------------------------------------------------

@dataclass(frozen=True)
class EngagementField:
    """One engagement property and the neutral attribute behind it."""

    prop: str
    attribute: str
    upper: bool = False  # HubSpot spells enumerations in capitals, the tenant in lowercase


ENGAGEMENT_FIELDS = {
    ActivityKind.CALL: [EngagementField("hs_call_title", "title"),
                        EngagementField("hs_call_direction", "direction", True),
                        EngagementField("hs_call_status", "status", True),
                        EngagementField("hs_call_duration", "duration_ms")],
    ActivityKind.EMAIL: [EngagementField("hs_email_subject", "subject"),
                         EngagementField("hs_email_status", "status", True)],
    ActivityKind.MEETING: [EngagementField("hs_meeting_title", "title"),
                           EngagementField("hs_meeting_outcome", "outcome", True)],
    ActivityKind.NOTE: [EngagementField("hs_note_body", "body")],
    ActivityKind.TASK: [EngagementField("hs_task_subject", "subject"), EngagementField("hs_task_body", "body"),
                        EngagementField("hs_task_status", "status", True),
                        EngagementField("hs_task_priority", "priority", True),
                        EngagementField("hs_task_type", "type", True)],
}
DEFAULT_ENGAGEMENT_PROPERTIES = ("hs_createdate", "hs_lastmodifieddate", "hs_object_id")
#: the neutral attributes behind each engagement kind's standard properties; anything else an engagement
#: holds is a custom property under its HubSpot name, so a custom property may not take one of these names
NEUTRAL_ATTRIBUTES = {kind: frozenset({f.attribute for f in fields} | {"direction", "duration_ms"})
                      for kind, fields in ENGAGEMENT_FIELDS.items()}


def engagement_properties(activity) -> dict[str, str | None]:
    """Every property HubSpot would hold for this engagement, as strings."""
    attributes = activity.attributes
    props = {"hs_object_id": str(activity.id), "hs_timestamp": iso(activity.occurred_ms),
             "hs_createdate": iso(activity.occurred_ms), "hs_lastmodifieddate": iso(activity.updated_ms),
             "hubspot_owner_id": text(activity.owner_id)}
    for field in ENGAGEMENT_FIELDS[activity.kind]:
        value = attributes.get(field.attribute)
        props[field.prop] = text(value).upper() if field.upper and value is not None else text(value)
    if activity.kind is ActivityKind.EMAIL:
        direction = attributes.get("direction")
        props["hs_email_direction"] = EMAIL_DIRECTIONS.get(direction, text(direction))
    if activity.kind is ActivityKind.MEETING:
        props["hs_meeting_start_time"] = iso(activity.occurred_ms)
        props["hs_meeting_end_time"] = iso(activity.occurred_ms + int(attributes.get("duration_ms") or 0))
    known = NEUTRAL_ATTRIBUTES[activity.kind]
    props.update({k: text(v) for k, v in attributes.items() if k not in known})
    return props


def engagement_write(kind: ActivityKind, properties: dict[str, str]) -> tuple[dict, int | None, int | None]:
    """(neutral attributes, occurred_ms, owner_id) of an engagement written through the API."""
    by_prop = {f.prop: f for f in ENGAGEMENT_FIELDS[kind]}
    attributes, occurred, owner = {}, None, None
    for name, value in properties.items():
        if name == "hs_timestamp":
            occurred = to_ms(value)
        elif name == "hubspot_owner_id":
            owner = int(value) if value else None
        elif name == "hs_email_direction":
            attributes["direction"] = {v: k for k, v in EMAIL_DIRECTIONS.items()}.get(value, value)
        elif name in by_prop:
            field = by_prop[name]
            attributes[field.attribute] = value.lower() if field.upper and value else value
        else:
            attributes[name] = value
    return attributes, occurred, owner


# -- the property catalogue ------------------------------------------------------------------

_T = "2019-08-06T02:43:01.000Z"


def definition(name: str, label: str, type_: str, field_type: str, group: str, options=(), **extra) -> dict:
    return {"name": name, "label": label, "type": type_, "fieldType": field_type, "groupName": group,
            "description": extra.pop("description", ""), "options": list(options), "displayOrder": -1,
            "calculated": False, "externalOptions": False, "hasUniqueValue": False, "hidden": False,
            "hubspotDefined": extra.pop("hubspotDefined", True), "formField": True,
            "modificationMetadata": {"archivable": True, "readOnlyDefinition": True, "readOnlyValue": False},
            "createdAt": _T, "updatedAt": _T, "archived": False, **extra}


def option(value: str, label: str, order: int) -> dict:
    return {"value": value, "label": label, "displayOrder": order, "hidden": False, "description": ""}


def _contact_catalogue() -> list[dict]:
    stages = [option(value, label, order) for order, (value, _, label) in enumerate(LIFECYCLE_STAGES)]
    statuses = [option(s, s.replace("_", " ").title(), order) for order, s in enumerate(
        ["NEW", "OPEN", "IN_PROGRESS", "OPEN_DEAL", "UNQUALIFIED", "ATTEMPTED_TO_CONTACT", "CONNECTED", "BAD_TIMING"])]
    sources = [option(s, s.replace("_", " ").title(), order) for order, s in enumerate(
        ["ORGANIC_SEARCH", "PAID_SEARCH", "EMAIL_MARKETING", "SOCIAL_MEDIA", "REFERRALS", "OTHER_CAMPAIGNS",
         "DIRECT_TRAFFIC", "OFFLINE", "PAID_SOCIAL"])]
    info, analytics = "contactinformation", "analyticsinformation"
    return [
        definition("email", "Email", "string", "text", info),
        definition("firstname", "First Name", "string", "text", info),
        definition("lastname", "Last Name", "string", "text", info),
        definition("jobtitle", "Job Title", "string", "text", info),
        definition("company", "Company Name", "string", "text", info),
        definition("industry", "Industry", "string", "text", info),
        definition("numberofemployees", "Number of Employees", "number", "number", info),
        definition("annualrevenue", "Annual Revenue", "number", "number", info),
        definition("country", "Country/Region", "string", "text", info),
        definition("hubspot_owner_id", "Contact owner", "enumeration", "select", info, externalOptions=True),
        definition("lifecyclestage", "Lifecycle Stage", "enumeration", "radio", info, stages),
        definition("hs_lead_status", "Lead Status", "enumeration", "radio", "sales_properties", statuses),
        definition("hs_email_optout", "Unsubscribed from all email", "bool", "booleancheckbox", "emailinformation",
                   [option("true", "Yes", 0), option("false", "No", 1)]),
        definition("hs_analytics_source", "Original Source", "enumeration", "select", analytics, sources),
        definition("hs_analytics_num_page_views", "Number of Pageviews", "number", "number", analytics),
        definition("hs_email_open", "Marketing emails opened", "number", "number", "emailinformation"),
        definition("hs_email_click", "Marketing emails clicked", "number", "number", "emailinformation"),
        definition("num_conversion_events", "Number of Form Submissions", "number", "number", "conversioninformation"),
        definition("recent_conversion_date", "Recent Conversion Date", "datetime", "date", "conversioninformation"),
        definition("hs_lifecyclestage_customer_date", "Became a Customer Date", "datetime", "date", info),
        definition("createdate", "Create Date", "datetime", "date", info),
        definition("lastmodifieddate", "Last Modified Date", "datetime", "date", info),
        definition("hs_object_id", "Record ID", "number", "number", info),
    ]


def _engagement_catalogue(kind: ActivityKind) -> list[dict]:
    group = f"{OBJECT_OF_KIND[kind][:-1]}information"
    common = [definition("hs_timestamp", "Activity date", "datetime", "date", group),
              definition("hubspot_owner_id", "Activity assigned to", "enumeration", "select", group),
              definition("hs_createdate", "Create date", "datetime", "date", group),
              definition("hs_lastmodifieddate", "Last modified date", "datetime", "date", group),
              definition("hs_object_id", "Record ID", "number", "number", group)]
    own = [definition(f.prop, f.prop.replace("_", " ").title(), "string", "text", group)
           for f in ENGAGEMENT_FIELDS[kind]]
    if kind is ActivityKind.EMAIL:
        own.append(definition("hs_email_direction", "Email direction", "enumeration", "select", group,
                              [option(v, v.title(), n) for n, v in enumerate(EMAIL_DIRECTIONS.values())]))
    return common + own


_GROUP_LABELS = {"contactinformation": "Contact information", "emailinformation": "Email information",
                 "analyticsinformation": "Web analytics history", "sales_properties": "Sales properties",
                 "conversioninformation": "Conversion information"}
PROPERTY_TYPES = {"string", "number", "date", "datetime", "enumeration", "bool"}


class Catalogue:
    """Property definitions and groups per object type; clients may add their own. Thread-safe."""

    def __init__(self):
        self._lock = threading.Lock()
        self.properties: dict[str, dict[str, dict]] = {"contacts": {p["name"]: p for p in _contact_catalogue()}}
        for name, kind in ENGAGEMENT_TYPES.items():
            self.properties[name] = {p["name"]: p for p in _engagement_catalogue(kind)}
        self.groups: dict[str, dict[str, dict]] = {}
        for object_type, props in self.properties.items():
            names = sorted({p["groupName"] for p in props.values()})
            self.groups[object_type] = {g: self._group(g, _GROUP_LABELS.get(g, g.title()), n)
                                        for n, g in enumerate(names)}

    @staticmethod
    def _group(name: str, label: str, order: int) -> dict:
        return {"name": name, "label": label, "displayOrder": order, "archived": False}

    def add_property(self, object_type: str, prop: dict) -> dict:
        with self._lock:
            self.properties[object_type][prop["name"]] = prop
        return prop

    def update_property(self, object_type: str, name: str, changes: dict) -> dict:
        with self._lock:
            prop = self.properties[object_type][name] = {**self.properties[object_type][name], **changes}
        return prop

    def add_group(self, object_type: str, name: str, label: str, order: int = -1) -> dict:
        group = self._group(name, label, order)
        with self._lock:
            self.groups[object_type][name] = group
        return group
