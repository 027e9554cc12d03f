"""Custom fields of persons and organizations: their 40-character keys, their options and their v2 values.

Values as API v2 reads and writes them (the migration guide and the v2 OpenAPI description):

========================  ===============================================================================
varchar, text, phone      a string
double                    a number (a numeric string is refused)
monetary                  ``{value, currency}``
enum                      one option id (a number)
set                       a non-empty list of option ids; ``null`` clears it, ``[]`` is refused
date                      ``YYYY-MM-DD``
daterange                 ``{value, until}``, both dates
time                      ``{value, timezone_id?, timezone_name?}``
timerange                 ``{value, until, timezone_id?, timezone_name?}``
address                   ``{value, country?, locality?, ...}``, the missing parts null
user, org, people         the id of a user, organization or person
========================  ===============================================================================

``null`` clears any field. A field made from the tenant's data (``neutral`` names its field) keeps the
tenant's neutral value, so a client's write changes what the tenant holds.
"""
from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

from .pipedrive_wire import check_date, check_time, day, is_int, is_number, parse_rfc3339, v1_time
from .synth import COUNTRIES, INDUSTRIES, LEAD_STATUSES, SOURCES

CREATABLE_TYPES = ("varchar", "varchar_auto", "text", "double", "monetary", "date", "set", "enum", "user", "org",
                   "people", "phone", "time", "timerange", "daterange", "address")
"""The ``field_type`` values ``POST /personFields`` takes (v1 and v2)."""
OPTION_TYPES = frozenset({"enum", "set"})
ADDRESS_PARTS = ("value", "country", "admin_area_level_1", "admin_area_level_2", "locality", "sublocality", "route",
                 "street_number", "subpremise", "postal_code", "formatted_address")
SUBFIELDS: dict[str, list[tuple[str, str, str]]] = {
    "monetary": [("value", "Value", "double"), ("currency", "Currency", "varchar")],
    "daterange": [("value", "Start date", "date"), ("until", "End date", "date")],
    "timerange": [("value", "Start time", "time"), ("until", "End time", "time"),
                  ("timezone_id", "Time zone id", "int"), ("timezone_name", "Time zone", "varchar")],
    "time": [("value", "Time", "time"), ("timezone_id", "Time zone id", "int"),
             ("timezone_name", "Time zone", "varchar")],
    "address": [(part, part.replace("_", " ").capitalize(), "varchar") for part in ADDRESS_PARTS],
}
INCLUDE_NAMESPACES = ("ui_visibility", "important_fields", "required_fields")
TEXT_LIMITS = {"varchar": 255, "varchar_auto": 255, "phone": 255, "text": 65_535}


class Option(NamedTuple):
    id: int
    label: str
    value: Any
    """The tenant's neutral value the option stands for (its label for options clients add)."""


@dataclass(frozen=True)
class References:
    """What id-valued fields may point at: the company's users, organizations and persons."""

    user: Callable[[int], bool]
    org: Callable[[int], bool]
    person: Callable[[int], bool]


@dataclass(frozen=True)
class CustomField:
    """A custom field; ``neutral`` names the tenant field it shows, None for fields made by clients."""

    id: int
    key: str
    name: str
    field_type: str
    neutral: str | None = None
    options: tuple[Option, ...] = ()
    add_ms: int = 0
    ui: dict = field(default_factory=dict, compare=False)

    @property
    def store_key(self) -> str:
        """Where a contact record keeps the value."""
        return self.neutral or self.key

    def to_wire(self, stored: Any, labels: bool = False) -> Any:
        """The v2 value of a stored one; ``labels`` gives options as ``{id, label}``."""
        if stored is None:
            return None
        if self.field_type == "enum":
            return self._option_out(stored, labels)
        if self.field_type == "set":
            return [self._option_out(item, labels) for item in stored]
        if self.field_type == "date" and isinstance(stored, int):
            return day(stored)
        return stored

    def from_wire(self, value: Any, refs: References) -> Any:
        """The value to store for a written v2 value; ValueError says what was expected."""
        if value is None:
            return None
        if self.field_type == "enum":
            return self._option_in(value)
        if self.field_type == "set":
            if not isinstance(value, list) or not value:
                raise ValueError("expected a non-empty array of option ids (clear the field with null, not [])")
            return [self._option_in(item) for item in value]
        if self.field_type == "date":
            text = check_date(value)
            return parse_rfc3339(f"{text}T00:00:00Z") if self.neutral else text
        return check_value(self.field_type, value, refs)

    def describe_v1(self, order: int) -> dict:
        """The field as ``GET /v1/personFields`` lists it."""
        options = [{"id": option.id, "label": option.label} for option in self.options]
        return {"id": self.id, "key": self.key, "name": self.name, "order_nr": order, "field_type": self.field_type,
                "add_time": v1_time(self.add_ms), "update_time": v1_time(self.add_ms), "last_updated_by_user_id": None,
                "edit_flag": True, "details_visible_flag": self.ui.get("details_visible_flag", True),
                "add_visible_flag": self.ui.get("add_visible_flag", True), "important_flag": False,
                "bulk_edit_allowed": True, "filtering_allowed": True, "sortable_flag": True, "searchable_flag": False,
                "active_flag": True, "mandatory_flag": False, "json_column_flag": False,
                **({"options": options} if self.field_type in OPTION_TYPES else {})}

    def describe_v2(self, include: Iterable[str] = ()) -> dict:
        """The field as ``GET /api/v2/personFields`` gives it."""
        return describe_v2(self.key, self.name, self.field_type, True, self.options, include, self.ui)

    def _option_out(self, stored: Any, labels: bool) -> Any:
        option = self._by_value.get(stored) if self.neutral else self._by_id.get(stored)
        if option is None:
            return None
        return {"id": option.id, "label": option.label} if labels else option.id

    def _option_in(self, value: Any) -> Any:
        option = self._by_id.get(value) if is_int(value) else None
        if option is None:
            raise ValueError(f"expected one of the option ids {[o.id for o in self.options]}, got {value!r}")
        return option.value if self.neutral else option.id

    @property
    def _by_id(self) -> dict[int, Option]:
        return {option.id: option for option in self.options}

    @property
    def _by_value(self) -> dict[Any, Option]:
        return {option.value: option for option in self.options}


def check_value(field_type: str, value: Any, refs: References) -> Any:
    """A v2 value of a field without options, checked and normalised; ValueError says what was expected."""
    if field_type in TEXT_LIMITS:
        if not isinstance(value, str) or len(value) > TEXT_LIMITS[field_type]:
            raise ValueError(f"expected a string of at most {TEXT_LIMITS[field_type]} characters")
        return value
    if field_type == "double":
        if not is_number(value):
            raise ValueError("expected a number")
        return value
    if field_type in ("user", "org", "people"):
        exists = {"user": refs.user, "org": refs.org, "people": refs.person}[field_type]
        if not is_int(value) or not exists(value):
            raise ValueError(f"expected the id of an existing {'person' if field_type == 'people' else field_type}")
        return value
    return _check_object(field_type, value)


def _check_object(field_type: str, value: Any) -> dict:
    parts = {name for name, _, _ in SUBFIELDS[field_type]}
    if not isinstance(value, dict) or "value" not in value or set(value) - parts:
        raise ValueError(f"expected an object with {', '.join(sorted(parts))} (value required)")
    checked = dict(value)
    if field_type == "monetary":
        if not is_number(value["value"]) or not isinstance(value.get("currency"), str) or len(value["currency"]) != 3:
            raise ValueError("expected {value: number, currency: three-letter code}")
    elif field_type == "daterange":
        if "until" not in value or check_date(value["value"]) > check_date(value["until"]):
            raise ValueError("expected {value, until}: two dates YYYY-MM-DD, value not after until")
    elif field_type in ("time", "timerange"):
        checked["value"] = check_time(value["value"])
        if field_type == "timerange":
            if "until" not in value:
                raise ValueError("expected {value, until}: two times HH:MM:SS")
            checked["until"] = check_time(value["until"])
        if "timezone_id" in value and not is_int(value["timezone_id"]):
            raise ValueError("timezone_id must be a number")
        if "timezone_name" in value and not isinstance(value["timezone_name"], str):
            raise ValueError("timezone_name must be an IANA time zone name")
    elif field_type == "address":
        if not all(part is None or isinstance(part, str) for part in value.values()) or not value["value"]:
            raise ValueError("expected address parts as strings, value required")
        checked = {part: value.get(part) for part in ADDRESS_PARTS}
    return checked


def describe_v2(key: str, name: str, field_type: str, custom: bool, options: Iterable[Option] | None,
                include: Iterable[str] = (), ui: dict | None = None) -> dict:
    """A field as the v2 field endpoints give it (``include``: the namespaces asked for)."""
    ui = ui or {}
    subfields = SUBFIELDS.get(field_type)
    described = {
        "field_name": name, "field_code": key, "field_type": field_type,
        "options": [{"id": o.id, "label": o.label} for o in options or ()] if field_type in OPTION_TYPES else None,
        "subfields": [{"field_code": code, "field_name": f"{label} of {name}", "field_type": kind}
                      for code, label, kind in subfields] if subfields else None,
        "is_custom_field": custom, "is_optional_response_field": False,
    }
    namespaces = {"ui_visibility": {"add_visible_flag": ui.get("add_visible_flag", True),
                                    "details_visible_flag": ui.get("details_visible_flag", True)},
                  "important_fields": {"enabled": False}, "required_fields": {"enabled": key == "name"}}
    return {**described, **{name: namespaces[name] for name in include}}


def _words(values: Iterable[str]) -> list[tuple[str, Any]]:
    return [(value.replace("_", " ").capitalize(), value) for value in values]


YES_NO = [("Yes", True), ("No", False)]
PERSON_FIELDS: list[tuple[str, str, str, list[tuple[str, Any]]]] = [
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
ORGANIZATION_FIELDS: list[tuple[str, str, str, list[tuple[str, Any]]]] = [
    ("Industry", "enum", "industry", [(name, name) for name, *_ in INDUSTRIES]),
    ("Number of employees", "double", "employees", []),
    ("Annual revenue", "monetary", "annual_revenue", []),
]
PERSON_STANDARD = [("id", "ID", "int"), ("name", "Name", "varchar"), ("first_name", "First name", "varchar"),
                   ("last_name", "Last name", "varchar"), ("email", "Email", "varchar"), ("phone", "Phone", "phone"),
                   ("owner_id", "Owner", "user"), ("org_id", "Organization", "org"), ("label_ids", "Labels", "set"),
                   ("add_time", "Person created", "date"), ("update_time", "Update time", "date"),
                   ("visible_to", "Visible to", "visible_to")]
ORGANIZATION_STANDARD = [("id", "ID", "int"), ("name", "Name", "varchar"), ("owner_id", "Owner", "user"),
                         ("address", "Address", "address"), ("label_ids", "Labels", "set"),
                         ("add_time", "Organization created", "date"), ("update_time", "Update time", "date"),
                         ("visible_to", "Visible to", "visible_to")]


class FieldCatalogue:
    """One entity's fields: standard ones, those made from the tenant's data, and those clients create."""

    def __init__(self, entity: str, seed: int, anchor_ms: int, first_id: int, first_option: int,
                 definitions: list[tuple[str, str, str, list[tuple[str, Any]]]], standard: list[tuple[str, str, str]]):
        self._lock = threading.Lock()
        self.entity, self._seed, self._anchor_ms, self.standard = entity, seed, anchor_ms, standard
        self._next_id, self._next_option = first_id, first_option
        self.custom: dict[str, CustomField] = {}
        for name, field_type, neutral, options in definitions:
            self._add(name, field_type, neutral, options, anchor_ms - 400 * 86_400_000)

    def _add(self, name: str, field_type: str, neutral: str | None, options: list, add_ms: int) -> CustomField:
        with self._lock:
            digest = hashlib.sha1(f"pipedrive:{self._seed}:{self.entity}:{self._next_id}:{name}".encode()).hexdigest()
            field_ = CustomField(self._next_id, digest, name, field_type, neutral, self._options(options), add_ms)
            self._next_id += 1
            self.custom[field_.key] = field_
            return field_

    def _options(self, options: list[tuple[str, Any]]) -> tuple[Option, ...]:
        numbered = tuple(Option(self._next_option + i, label, value) for i, (label, value) in enumerate(options))
        self._next_option += len(options)
        return numbered

    def create(self, name: str, field_type: str, labels: list[str], now_ms: int, ui: dict | None = None) -> CustomField:
        """A client-made field; its values are stored on the record under its key."""
        made = self._add(name, field_type, None, [(label, label) for label in labels], now_ms)
        return self._replace(made.key, ui=dict(ui or {})) if ui else made

    def key_of(self, name: str) -> str:
        """The key of the first custom field called ``name``; KeyError when there is none."""
        return next(field_.key for field_ in list(self.custom.values()) if field_.name == name)

    def by_id(self, field_id: int) -> CustomField | None:
        return next((f for f in list(self.custom.values()) if f.id == field_id), None)

    def update(self, key: str, name: str | None = None, ui: dict | None = None) -> CustomField:
        current = self.custom[key]
        return self._replace(key, name=name or current.name, ui={**current.ui, **(ui or {})})

    def add_options(self, key: str, labels: list[str]) -> list[Option]:
        """New options at the end (atomic: the caller has checked them all)."""
        with self._lock:
            added = self._options([(label, label) for label in labels])
        self._replace(key, options=self.custom[key].options + added)
        return list(added)

    def relabel_options(self, key: str, labels: dict[int, str]) -> list[Option]:
        options = tuple(o._replace(label=labels.get(o.id, o.label)) for o in self.custom[key].options)
        self._replace(key, options=options)
        return [o for o in options if o.id in labels]

    def delete_options(self, key: str, ids: set[int]) -> list[Option]:
        options = self.custom[key].options
        self._replace(key, options=tuple(o for o in options if o.id not in ids))
        return [o for o in options if o.id in ids]

    def _replace(self, key: str, **changes: Any) -> CustomField:
        with self._lock:
            self.custom[key] = replace(self.custom[key], **changes)
            return self.custom[key]

    def describe_v1(self) -> list[dict]:
        standard = [{"id": i + 1, "key": key, "name": name, "order_nr": i, "field_type": field_type,
                     "edit_flag": False, "active_flag": True, "mandatory_flag": key == "name",
                     "add_time": v1_time(self._anchor_ms - 800 * 86_400_000), "update_time": None}
                    for i, (key, name, field_type) in enumerate(self.standard)]
        custom = [f.describe_v1(len(standard) + i) for i, f in enumerate(list(self.custom.values()))]
        return standard + custom

    def describe_v2(self, include: Iterable[str] = ()) -> list[dict]:
        include = list(include)
        standard = [describe_v2(key, name, kind, False, None, include) for key, name, kind in self.standard]
        return standard + [f.describe_v2(include) for f in list(self.custom.values())]
