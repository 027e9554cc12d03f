"""Writes to the Salesforce imitation: validating records, carrying them out, and the routes that take them.

``POST /sobjects/{type}`` creates (Task and Event: the sandbox keeps people generated),
``PATCH /sobjects/{type}/{id}`` updates, ``PATCH|POST /composite/sobjects`` update or create 200
records at most with per-record results in order, and upsert by an External ID field:
``PATCH /sobjects/{type}/{field}/{value}`` (201 ``created: true``, 200 ``created: false``, 300 with
the matching records' URLs when the value matches more than one, 404 ``NOT_FOUND`` when ``field`` is
no External ID field) and ``PATCH /composite/sobjects/{type}/{field}`` (per-record ``UpsertResult``
with ``created``; a value matching several records fails that record with ``DUPLICATE_EXTERNAL_ID``,
one given twice in a call fails both with ``DUPLICATE_VALUE``; a record without the value is
created). External ID values match case-insensitively, over what clients wrote through the API
(the generated records carry no custom values).
"""
from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from .faults import DEFAULT_RECORD_MESSAGE, RecordFault
from .salesforce_records import NUMBERS, Field, LeadRow, PersonRow, Row, SObject, label, parse_datetime, parse_id, sf_id
from .salesforce_soql import SoqlError
from .server import Request, Response, Vendor, route
from .synth import ActivityKind

COLLECTION_MAX = 200
ROW_LOCK = "UNABLE_TO_LOCK_ROW"
"""The code of a write that found its record locked by another transaction; retrying later succeeds."""
EXTERNAL_ID_TYPES = ("string", "email", "int", "double")


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


class Writes(Vendor):
    """Record writes and the routes that take them; mixed into :class:`leadpulse.sandbox.salesforce.Salesforce`."""

    # What the mixin uses of the Salesforce imitation it is mixed into, which defines each of them.
    objects: dict[str, SObject]
    sobject: Callable[[str], SObject]
    row_by_id: Callable[[SObject, Any], Row | None]
    _version: Callable[[Request], str]
    _path_object: Callable[[Request], SObject]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._writes_lock = threading.RLock()
        self._edits: dict[str, dict] = {}
        self._edited: dict[str, int] = {}
        self._api_writes: dict[str, int] = {}
        self._external: dict[tuple[str, str], dict[str, list[str]]] = {}

    # -- the Python API for tests and the demo --

    def add_custom_field(self, sobject: str, name: str, type: str = "double", label: str = "",
                         picklist: Iterable[str] = (), external_id: bool = False) -> None:
        """Define a custom field (``Lead_Score__c``), as an admin would in Setup; describe lists it from now on.

        ``external_id`` marks it an External ID (a text, email or number field), which describe shows as
        ``externalId: true`` and upserts match on.
        """
        if not name.endswith("__c"):
            raise ValueError(f"custom field {name!r} on {sobject}: Salesforce custom field names end in '__c'")
        if external_id and type not in EXTERNAL_ID_TYPES:
            raise ValueError(f"custom field {name!r} on {sobject}: an External ID is a text, email or number field, "
                             f"not {type}")
        target = self.sobject(sobject)
        target.fields[name.lower()] = Field(name, type, updateable=True, custom=True, label=label,
                                            picklist=tuple(picklist), external_id=external_id)

    def edits_of(self, record_id: str) -> dict:
        return self._edits.get(record_id) or {}

    def edited_ms(self, record_id: str) -> int:
        return self._edited.get(record_id, 0)

    def edited_numbers(self, prefix: str) -> list[int]:
        """The numbers of the records of key prefix ``prefix`` that updates wrote over REST."""
        with self._writes_lock:
            return [parsed[1] for parsed in map(parse_id, self._edited) if parsed and parsed[0] == prefix]

    def api_write_ms(self, record_id: str) -> int | None:
        return self._api_writes.get(record_id)

    # -- validating and carrying out writes --

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
        if isinstance(row, LeadRow) and row.converted:
            raise _CONVERTED_LEAD
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
            raise _injected(fault, record_id)

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
        if checked.get("WhoId") is not None:
            self._who(checked["WhoId"])
        return checked

    def _who(self, who_id: str) -> int:
        """The person a WhoId names: a live Lead or Contact, and no converted Lead (Salesforce refuses new
        references to one)."""
        parsed = parse_id(who_id)
        name = {"00Q": "lead", "003": "contact"}.get(parsed[0]) if parsed else None
        row = self.row_by_id(self.objects[name], who_id) if name else None
        if not isinstance(row, PersonRow) or row.deleted:
            raise RecordError("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", ("WhoId",))
        if isinstance(row, LeadRow) and row.converted:
            raise _CONVERTED_LEAD
        return row.index

    def _typed(self, sobject: SObject, spec: Field, value: Any) -> Any:
        if value is None or value == "":  # Salesforce keeps no empty text: an empty string is stored as null
            return None
        ok = {"boolean": isinstance(value, bool), "int": isinstance(value, int) and not isinstance(value, bool),
              "datetime": isinstance(value, str) and parse_datetime(value, colon_offset=False) is not None,
              "date": isinstance(value, str) and re.fullmatch(r"\d{4}-\d\d-\d\d", value) is not None}
        numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
        valid = ok.get(spec.type, numeric if spec.type in NUMBERS else isinstance(value, str))
        if not valid:
            raise RecordError("INVALID_TYPE_ON_FIELD_IN_RECORD", f"{spec.name}: value not of required type: {value}",
                              (spec.name,))
        if spec.restricted and value not in spec.picklist:
            raise RecordError("INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                              f"{spec.label or label(spec.name)}: bad value for restricted picklist field: {value}",
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
        row, sobject = prepared.row, prepared.sobject
        external = [spec for spec in map(sobject.field, prepared.values) if spec is not None and spec.external_id]
        before = {spec.name: row.value(spec) for spec in external} if row is not None else {}
        record_id = self._create(prepared) if row is None else self._update(row, prepared)
        for spec in external:
            self._index_external(sobject, spec, record_id, before.get(spec.name), prepared.values[spec.name])
        return record_id

    def _update(self, row: Row, prepared: Prepared) -> str:
        values = prepared.values
        if isinstance(row, PersonRow):
            neutral = {}
            for name, value in values.items():
                spec = prepared.sobject.field(name)
                key = spec.neutral or spec.name
                neutral[key] = self._owner_of(value) if key == "owner_id" and value else value
            written = self.crm.write(row.index, neutral)
            with self._writes_lock:
                self._api_writes[row.id] = written
        else:
            with self._writes_lock:
                self._edits.setdefault(row.id, {}).update(values)
                self._edited[row.id] = self._api_writes[row.id] = max(self.crm.clock_ms(), row.modified_ms + 1)
        return row.id

    def _create(self, prepared: Prepared) -> str:
        values = prepared.values
        index = self._who(values["WhoId"])
        owner = self._owner_of(values["OwnerId"]) if values.get("OwnerId") else self.crm.record(index)["owner_id"]
        stored = dict(values)
        if prepared.sobject.name == "Event":
            attributes = {"title": values.get("Subject"), "outcome": "scheduled",
                          "duration_ms": int(values["DurationInMinutes"]) * 60_000, "sobject_fields": stored}
            activity = self.crm.log_activity(index, ActivityKind.MEETING, values["StartDateTime"], owner,
                                             attributes, by_api=True)
            return self._created(sf_id("00U", activity.id), activity.updated_ms)
        attributes = {"subject": values.get("Subject") or "", "body": values.get("Description") or "",
                      "status": "completed" if values.get("Status") == "Completed" else "not_started",
                      "priority": {"High": "high", "Low": "low"}.get(values.get("Priority"), "medium"),
                      "type": {"Call": "call", "Email": "email"}.get(values.get("TaskSubtype") or values.get("Type"),
                                                                    "todo"),
                      "sobject_fields": stored}
        activity = self.crm.log_activity(index, ActivityKind.TASK, None, owner, attributes, by_api=True)
        return self._created(sf_id("00T", activity.id), activity.updated_ms)

    def _created(self, record_id: str, at_ms: int) -> str:
        with self._writes_lock:
            self._api_writes[record_id] = at_ms
        return record_id

    def collection(self, request: Request, prepare: Callable[[None, Any], Prepared],
                   upsert: bool = False) -> list[dict]:
        """An sObject Collections call: every record validated, then all written (or none with allOrNone); an
        upsert's results say whether each record was ``created``."""
        body = request.json()
        records = body.get("records") if isinstance(body, dict) else None
        if not isinstance(records, list):
            raise self.error(400, "Expected a JSON object with a 'records' array", code="JSON_PARSER_ERROR")
        if len(records) > COLLECTION_MAX:
            raise self.error(400, f"record limit reached. cannot submit more than {COLLECTION_MAX} records into "
                             "this call", code="EXCEEDED_ID_LIMIT")
        outcomes: list[Prepared | RecordError] = []
        locked = self.faults.batch_fault(request.route)
        for record in records:
            if locked is not None:
                outcomes.append(_injected(locked, _locked_id(record)))
                continue
            try:
                outcomes.append(prepare(None, record))
            except RecordError as exc:
                outcomes.append(exc)
        failed = any(isinstance(o, RecordError) for o in outcomes)
        if failed and body.get("allOrNone"):
            outcomes = [o if isinstance(o, RecordError) else _ROLLED_BACK for o in outcomes]
        results = [_failure(o) if isinstance(o, RecordError) else _success(self.apply(o)) for o in outcomes]
        if upsert:
            for result, outcome in zip(results, outcomes, strict=True):
                result["created"] = isinstance(outcome, Prepared) and outcome.row is None
        return results

    # -- upsert by External ID --

    def external_matches(self, sobject: SObject, spec: Field, value: Any) -> list[str]:
        """Ids of the records whose External ID ``spec`` holds ``value`` (case-insensitively), oldest first."""
        with self._writes_lock:
            return list(self._external.get((sobject.name, spec.name), {}).get(_external_key(spec, value), ()))

    def _index_external(self, sobject: SObject, spec: Field, record_id: str, old: Any, new: Any) -> None:
        with self._writes_lock:
            index = self._external.setdefault((sobject.name, spec.name), {})
            if old is not None and record_id in index.get(_external_key(spec, old), ()):
                index[_external_key(spec, old)].remove(record_id)
            if new is not None and record_id not in index.setdefault(_external_key(spec, new), []):
                index[_external_key(spec, new)].append(record_id)

    def _external_field(self, sobject: SObject, name: str) -> Field:
        spec = sobject.field(name)
        if spec is None or not spec.external_id:  # Salesforce answers so for a field that is no External ID
            raise self.error(404, "The requested resource does not exist", code="NOT_FOUND")
        return spec

    def prepare_upsert(self, sobject: SObject, spec: Field, record: Any, clashing: frozenset[str]) -> Prepared:
        """Validate one record of a collections upsert: an update of the one record its value matches, else a
        create; ``clashing`` are the values given more than once in the call."""
        if not isinstance(record, dict):
            raise RecordError("JSON_PARSER_ERROR", "each record must be a JSON object")
        kind = (record.get("attributes") or {}).get("type")
        if not kind or str(kind).lower() != sobject.name.lower():
            raise RecordError("INVALID_TYPE", f"Must send a concrete entity type: records of a {sobject.name} upsert "
                                              f"must be {sobject.name} records, not {kind}")
        if "id" in record or "Id" in record:
            raise RecordError("INVALID_FIELD", "Only external ids are supported in an upsert: don't send Id", ("Id",))
        value = record.get(spec.name)
        if value is not None and _external_key(spec, value) in clashing:
            raise RecordError("DUPLICATE_VALUE", f"Duplicate external id specified: {value}", (spec.name,))
        matches = self.external_matches(sobject, spec, value) if value is not None else []
        if len(matches) > 1:
            raise RecordError("DUPLICATE_EXTERNAL_ID", f"{spec.label or label(spec.name)}: more than one record "
                              f"found for external id field: [{', '.join(matches)}]", (spec.name,))
        fields = {k: v for k, v in record.items() if k != "attributes"}
        return self.prepare_update(sobject.name, {**fields, "id": matches[0]}) if matches else (
            self.prepare_create(sobject.name, fields))

    # -- routes --

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

    @route("PATCH", "/services/data/{version}/sobjects/{type}/{field}/{value}", name="sobjects.upsert")
    def upsert_record(self, request: Request):
        version = self._version(request)
        sobject = self._path_object(request)
        spec = self._external_field(sobject, request.params["field"])
        value = _external_value(spec, unquote(request.params["value"]))
        body = request.json()
        if not isinstance(body, dict):
            raise self.error(400, "Expected a JSON object of field values", code="JSON_PARSER_ERROR")
        named = [key for key in body if key.lower() in ("id", spec.name.lower())]
        if named:  # the REST API Developer Guide: "Do not specify Id or an external ID field in the request body"
            raise self.error(400, f"The URL names the record: do not specify {named[0]} in the request body",
                             code="INVALID_FIELD", fields=named)
        matches = self.external_matches(sobject, spec, value)
        if len(matches) > 1:
            return Response(300, [f"/services/data/{version}/sobjects/{sobject.name}/{m}" for m in matches])
        try:
            prepared = (self.prepare_update(sobject.name, {**body, "id": matches[0]}) if matches
                        else self.prepare_create(sobject.name, {**body, spec.name: value}))
            record_id = self.apply(prepared)
        except RecordError as exc:
            raise self.error(400, exc.message, code=exc.code, fields=exc.fields) from None
        return Response(200 if matches else 201, {**_success(record_id), "created": not matches})

    @route("PATCH", "/services/data/{version}/composite/sobjects/{type}/{field}", name="composite.upsert")
    def composite_upsert(self, request: Request):
        self._version(request)
        sobject = self._path_object(request)
        spec = self._external_field(sobject, request.params["field"])
        body = request.json()
        records = body.get("records") if isinstance(body, dict) else None
        given = Counter(_external_key(spec, r[spec.name]) for r in records or ()
                        if isinstance(r, dict) and r.get(spec.name) is not None)
        clashing = frozenset(key for key, count in given.items() if count > 1)
        return self.collection(request, lambda _, record: self.prepare_upsert(sobject, spec, record, clashing),
                               upsert=True)

    @route("PATCH", "/services/data/{version}/composite/sobjects", name="composite.update")
    def composite_update(self, request: Request):
        self._version(request)
        return self.collection(request, self.prepare_update)

    @route("POST", "/services/data/{version}/composite/sobjects", name="composite.create")
    def composite_create(self, request: Request):
        self._version(request)
        return self.collection(request, self.prepare_create)


_CONVERTED_LEAD = RecordError("CANNOT_UPDATE_CONVERTED_LEAD", "cannot reference converted lead")
_ROLLED_BACK = RecordError("ALL_OR_NONE_OPERATION_ROLLED_BACK", "Record rolled back because not all records were "
                           "valid and the request was using AllOrNone header")


def _injected(fault: RecordFault, record_id: str) -> RecordError:
    """An injected record fault in Salesforce's words: a row lock without a message of its own reads as Salesforce
    words it (simple-salesforce and jsforce users quote "unable to obtain exclusive access to this record or 1
    records: 001...")."""
    message = fault.message
    if fault.code == ROW_LOCK and message == DEFAULT_RECORD_MESSAGE:
        message = f"unable to obtain exclusive access to this record or 1 records: {record_id}"
    return RecordError(fault.code or "FIELD_CUSTOM_VALIDATION_EXCEPTION", message)


def _locked_id(record: Any) -> str:
    """The row a write locks: the record itself, or for a new activity the person it names."""
    if not isinstance(record, dict):
        return ""
    return str(record.get("id") or record.get("Id") or record.get("WhoId") or "")


def _external_key(spec: Field, value: Any) -> str:
    """How External ID values compare: text without regard to case, numbers by value."""
    if spec.type in NUMBERS:
        try:
            return repr(float(value))
        except (TypeError, ValueError):
            return str(value)
    return str(value).casefold()


def _external_value(spec: Field, text: str) -> Any:
    """A value named in an upsert's URL, as the field holds it."""
    if spec.type in NUMBERS:
        try:
            return int(text) if spec.type == "int" else float(text)
        except ValueError:
            return text
    return text


def _success(record_id: str) -> dict:
    return {"id": record_id, "success": True, "errors": []}


def _failure(error: RecordError) -> dict:
    return {"success": False, "errors": [error.wire()]}


