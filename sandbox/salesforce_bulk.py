"""Salesforce's Bulk API 2.0 and ``/limits``, as routes the Salesforce imitation inherits (see ``salesforce.py``).

Routes (``{v}`` is any ``vNN.0``; each call counts against the ``DAILY`` window and answers ``Sforce-Limit-Info``,
since the allowance covers the REST API "and any other API built on" it, as Bulk API 2.0 is):

==========================================================  ==============================  ==========================
``POST   /services/data/{v}/jobs/query``                     ``jobs.query.create``           ``{operation: query|
                                                                                             queryAll, query, ...}``
``GET    /services/data/{v}/jobs/query/{id}``                ``jobs.query.get``              UploadComplete, then
                                                                                             InProgress, JobComplete
``GET    /services/data/{v}/jobs/query/{id}/results``        ``jobs.query.results``          ``?locator=&maxRecords=``
``PATCH  /services/data/{v}/jobs/query/{id}``                ``jobs.query.abort``            ``{state: Aborted}``
``DELETE /services/data/{v}/jobs/query/{id}``                ``jobs.query.delete``           204
``POST   /services/data/{v}/jobs/ingest``                    ``jobs.ingest.create``          insert and update
``PUT    /services/data/{v}/jobs/ingest/{id}/batches``       ``jobs.ingest.upload``          CSV, once; 201
``PATCH  /services/data/{v}/jobs/ingest/{id}``               ``jobs.ingest.state``           UploadComplete, Aborted
``GET    /services/data/{v}/jobs/ingest/{id}``               ``jobs.ingest.get``             numberRecordsProcessed,
                                                                                             numberRecordsFailed
``GET    .../jobs/ingest/{id}/successfulResults``            ``jobs.ingest.successful``      ``sf__Id,sf__Created,...``
``GET    .../jobs/ingest/{id}/failedResults``                ``jobs.ingest.failed``          ``sf__Id,sf__Error,...``
``GET    .../jobs/ingest/{id}/unprocessedrecords``           ``jobs.ingest.unprocessed``     also ``unprocessedRecords``
``DELETE /services/data/{v}/jobs/ingest/{id}``               ``jobs.ingest.delete``          204
``GET    /services/data/{v}/limits``                         ``limits``                      counted like any call
``GET    /services/data/{v}/limits/recordCount``             ``limits.recordCount``          ``?sObjects=Lead,Task``
==========================================================  ==============================  ==========================

Query jobs run their SOQL through the REST ``query``/``queryAll`` engine when created, so bad SOQL is a 400 with
the REST errorCode (``MALFORMED_QUERY``, ``INVALID_FIELD``...); ``COUNT()`` and ``OFFSET``, which Bulk API 2.0
does not take, are a 400 ``API_ERROR``. A job is ``InProgress`` on its first status read and ``JobComplete`` on the
next, so a client must poll. Results before that: 412 ``JOB_NOT_COMPLETE``; in another API version than the job's:
409. Every page repeats the header row; ``Sforce-NumberOfRecords`` counts its rows; ``Sforce-Locator`` names the
next page, the string ``null`` on the last. Past 10,000 query jobs in 24 hours (``bulk_query_jobs_per_day``, checked
while limits are enabled): 400 ``LIMIT_EXCEEDED``.

Ingest jobs write at the first status read after ``UploadComplete``, each row through the sObject Collections
write path of the REST API (injected record faults, read-only fields and bad values fail as they do there), 200 rows
a call. Before that, the job fails whole (``Failed`` with ``errorMessage``) on a header naming no field of the object
(``InvalidBatch : Field name not found : X``) or on a line ending other than the job's; a row fails alone on a wrong
number of cells or a value its field's type cannot read (``INVALID_FIELD:Failed to deserialize field at col N...``,
counted from 0). Empty cells leave a field as it is and ``#N/A`` empties it. A second upload is refused.

CSV as Salesforce writes it: the job's delimiter and line ending; query pages quote every header and every value and
leave nulls as empty unquoted cells; datetimes are ``2021-05-27T13:59:29.000Z`` (not the REST ``+0000``), booleans
``true``/``false``, doubles and currencies as Java prints them (``2676.0``, ``9.12260031E8``); relationship
columns are named by their path (``Account.Industry``). Ingest results quote their ``sf__`` headers and every value
but give the uploaded column names as uploaded; ``sf__Error`` is ``CODE:message:Field1,Field2 --`` (``CODE:message:--``
without fields) and ``sf__Id`` is empty when the row named no live record. Answers are gzipped when asked.

``/limits`` gives ``DailyApiRequests`` from the ``DAILY`` window (this call included, as its ``Sforce-Limit-Info``
says), and rolling 24-hour tallies for ``DailyBulkApiBatches`` (one per 10,000 uploaded rows),
``DailyBulkV2QueryFileStorageMB`` (result pages, counted once each) and ``DailyBulkV2QueryJobs``.

``/limits/recordCount`` (REST API 40.0 and later; 404 before) answers ``{"sObjects": [{"count", "name"}, ...]}`` for
the objects ``sObjects`` names (comma-separated, in the order given, names Salesforce does not know left out) or,
without it, for every object the sandbox serves, by name. Salesforce's counts are a cached snapshot, refreshed at no
fixed interval and so approximate, that leaves out deleted and archived records; the sandbox's are exact counts of
the rows ``query`` returns (``SELECT COUNT() FROM X``), so they leave out the same rows. Each count runs the query
engine over every row of its object: fast on test tenants, minutes for the Tasks of a million people.

References: Salesforce's "Bulk API 2.0 and Bulk API Developer Guide" (v66.0: query and ingest walkthroughs, Create,
Get Information, Get Results, Abort, Delete, Upload, Prepare CSV Files, compression, errors), its Japanese v222.0
page for the 412 body, "Bulk API and Bulk API 2.0 Limits and Allocations", "API Request Limits and Allocations",
the REST API Developer Guide's "Record Count"; simple-salesforce 1.12.10 ``bulk2.py``. From clients' fixtures and
notes on real orgs, not from Salesforce's pages: query nulls as empty unquoted cells and datetimes with ``Z``
(airbyte, estuary), ``sf__Error`` without fields (``ENTITY_IS_DELETED:entity is deleted:--``), the deserialize
message and its column count, the whole-job failures above, the second-upload refusal, and ``LIMIT_EXCEEDED`` for
query jobs. Not confirmed, so this module's choice: the codes and wording of the ``COUNT()``/``OFFSET``, 409,
bad-locator, bad-option, unknown-object and wrong-state answers; the default page of 100,000 rows; that ``/limits``
counts itself; ingest results in the job's delimiter; doubles in query pages printed as Java does (the guide shows
it in ingest results only); the order of ``recordCount``'s answer, that an empty ``sObjects`` lists every object,
and its 404 before 40.0.
Not served: upsert, delete and hardDelete (400 naming the sandbox), relationship columns in an upload, the job
lists (``GET /jobs/query``, ``/jobs/ingest``), ``resultPages``, multipart job creation.
"""
from __future__ import annotations

import base64
import binascii
import csv
import gzip
import io
import math
import re
import threading
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from enum import Enum
from typing import Any, TypeVar

from .salesforce_records import NUMBERS, Field, Row, SObject, fmt_datetime, parse_datetime, sf_id, user_id
from .salesforce_soql import Accessor, SoqlError, parse_soql
from .server import Request, Response, Vendor, VendorError, encode_json, route

DELIMITERS = {"BACKQUOTE": "`", "CARET": "^", "COMMA": ",", "PIPE": "|", "SEMICOLON": ";", "TAB": "\t"}
LINE_ENDINGS = {"LF": "\n", "CRLF": "\r\n"}
QUERY_JOBS_PER_DAY = 10_000
QUERY_STORAGE_MB = 976_562  # 1 TB, as /limits spells it
BATCHES_PER_DAY = 15_000
ROWS_PER_BATCH = 10_000
RECORD_COUNT_SINCE = 40  # the API version that brought /limits/recordCount
DEFAULT_MAX_RECORDS = 100_000  # Salesforce uses "a default value based on the service"; this one is the sandbox's
INGEST_OPERATIONS = ("insert", "update", "upsert", "delete", "hardDelete")
SERVED_INGEST_OPERATIONS = ("insert", "update")
_COLLECTION_SLICE = 200  # the sObject Collections write path takes 200 records a call
_DAY_SECONDS = 86_400
_MB = 1024 * 1024


class JobState(str, Enum):
    """A Bulk API 2.0 job's state; the member names are how Salesforce's error messages spell them."""

    OPEN = "Open"
    UPLOAD_COMPLETE = "UploadComplete"
    IN_PROGRESS = "InProgress"
    JOB_COMPLETE = "JobComplete"
    FAILED = "Failed"
    ABORTED = "Aborted"


TERMINAL = frozenset({JobState.JOB_COMPLETE, JobState.FAILED, JobState.ABORTED})
_PAST = {JobState.JOB_COMPLETE: "Completed", JobState.FAILED: "Failed", JobState.ABORTED: "Aborted"}


@dataclass(frozen=True)
class CsvFormat:
    """A job's CSV dialect, by the names Bulk API 2.0 gives its column delimiters and line endings."""

    delimiter: str = "COMMA"
    line_ending: str = "LF"

    @property
    def separator(self) -> str:
        return DELIMITERS[self.delimiter]

    @property
    def newline(self) -> str:
        return LINE_ENDINGS[self.line_ending]

    def line(self, cells: Iterable[str]) -> str:
        return self.separator.join(cells)

    def document(self, lines: Iterable[str]) -> str:
        return "".join(line + self.newline for line in lines)

    def minimal(self, text: str) -> str:
        """A cell quoted only when it must be, as a column name is echoed."""
        return quoted(text) if any(c in text for c in (self.separator, '"', "\r", "\n")) else text

    def rows(self, text: str) -> tuple[list[str], list[list[str]]]:
        """The header and the rows of an upload."""
        table = [row for row in csv.reader(io.StringIO(text, newline=""), delimiter=self.separator) if row]
        return (table[0], table[1:]) if table else ([], [])

    def line_ending_fault(self, text: str) -> str | None:
        wrong = "\r\n" in text if self.line_ending == "LF" else re.search(r"(?<!\r)\n", text) is not None
        if not wrong:
            return None
        return ("ClientInputError : LineEnding is invalid on user data. "
                f"Current LineEnding setting is {self.line_ending}")


def quoted(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


@dataclass
class Job:
    """What query and ingest jobs share: who made it when, in which API version and dialect, and where it stands."""

    id: str
    operation: str
    sobject: SObject
    version: str  # "59.0"
    created_by: str
    created_ms: int
    csv: CsvFormat
    state: JobState
    modified_ms: int
    error: str | None = None

    def head(self) -> dict:
        return {"id": self.id, "operation": self.operation, "object": self.sobject.name,
                "createdById": self.created_by, "createdDate": fmt_datetime(self.created_ms),
                "systemModstamp": fmt_datetime(self.modified_ms), "state": self.state.value}

    def kind(self) -> dict:
        return {"concurrencyMode": "Parallel", "contentType": "CSV", "apiVersion": float(self.version)}

    def dialect(self) -> dict:
        return {"lineEnding": self.csv.line_ending, "columnDelimiter": self.csv.delimiter}

    def brief(self) -> dict:
        """The job as a state change (abort, close) answers it."""
        return {**self.head(), **self.kind()}


@dataclass
class QueryJob(Job):
    cursor: Any = None  # the Salesforce imitation's query cursor: the matching keys, and how to read each column
    stored: set[int] = field(default_factory=set)  # result pages already counted against the file storage

    @property
    def total(self) -> int:
        return len(self.cursor.keys)

    def created(self) -> dict:
        return {**self.brief(), **self.dialect()}

    def info(self) -> dict:
        done = self.state is JobState.JOB_COMPLETE
        answer = {**self.brief(), "jobType": "V2Query", **self.dialect(),
                  "numberRecordsProcessed": self.total if done else 0, "retries": 0,
                  "totalProcessingTime": self.modified_ms - self.created_ms if done else 0,
                  "isPkChunkingSupported": True}
        return {**answer, "errorMessage": self.error} if self.error else answer


@dataclass(frozen=True)
class Outcome:
    """How one uploaded row ended: its cells as the results echo them, the record it wrote, or why it failed."""

    cells: tuple[str, ...]
    record_id: str = ""
    created: bool = False
    error: str | None = None


@dataclass
class IngestJob(Job):
    data: bytes | None = None
    header: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)

    def accept(self, data: bytes) -> None:
        self.data = data
        self.header, self.rows = self.csv.rows(data.decode("utf-8", "replace"))

    def created(self) -> dict:
        return {**self.brief(), "contentUrl": self.content_url(), **self.dialect()}

    def content_url(self) -> str:
        return f"services/data/v{self.version}/jobs/ingest/{self.id}/batches"

    def info(self) -> dict:
        failed = sum(1 for o in self.outcomes if o.error is not None)
        opened = {"contentUrl": self.content_url()} if self.state is JobState.OPEN else {}
        answer = {**self.brief(), "jobType": "V2Ingest", **opened, **self.dialect(),
                  "numberRecordsProcessed": len(self.outcomes), "numberRecordsFailed": failed, "retries": 0,
                  "totalProcessingTime": max(0, self.modified_ms - self.created_ms) if self.state in TERMINAL else 0,
                  "apiActiveProcessingTime": 0, "apexProcessingTime": 0}
        return {**answer, "errorMessage": self.error} if self.error else answer


AnyJob = TypeVar("AnyJob", bound=Job)


class RowFault(Exception):
    """One uploaded row cannot be read as a record of the job's object."""

    def __init__(self, code: str, message: str, fields: tuple[str, ...] = ()):
        super().__init__(message)
        self.text = bulk_error(code, message, fields)


def bulk_error(code: str, message: str, fields: Iterable[str] = ()) -> str:
    """An ``sf__Error`` cell: ``CODE:message:Field --``, or ``CODE:message:--`` when no field is at fault."""
    named = ",".join(fields)
    return f"{code}:{message}:{named} --" if named else f"{code}:{message}:--"


class DailyTally:
    """A rolling 24-hour sum on the sandbox's clock (CRM seconds), for the allowances ``/limits`` reports."""

    def __init__(self) -> None:
        self._events: deque[tuple[float, int]] = deque()
        self._sum = 0

    def total(self, now: float) -> int:
        while self._events and self._events[0][0] <= now - _DAY_SECONDS:
            self._sum -= self._events.popleft()[1]
        return self._sum

    def add(self, now: float, amount: int) -> None:
        self._events.append((now, amount))
        self._sum += amount


# -- values as the CSV shows them -------------------------------------------------------------------------------

def java_double(number: float) -> str:
    """A double as Java's ``Double.toString`` writes it, as Salesforce's CSV does: ``2676.0``, ``9.12260031E8``."""
    if math.isnan(number) or math.isinf(number):
        return "NaN" if math.isnan(number) else ("-" if number < 0 else "") + "Infinity"
    if number == 0 or 1e-3 <= abs(number) < 1e7:
        return repr(float(number))
    exact = Decimal(repr(float(number))).normalize()
    sign, digits, _ = exact.as_tuple()
    text = "".join(map(str, digits))
    return f"{'-' if sign else ''}{text[0]}.{text[1:] or '0'}E{exact.adjusted()}"


def bulk_text(spec: Field, value: Any) -> str:
    """A non-null value as Bulk API CSV writes it."""
    if spec.type == "boolean":
        return "true" if value else "false"
    if spec.type == "datetime" and isinstance(value, int):
        return fmt_datetime(value).removesuffix("+0000") + "Z"
    if spec.type in NUMBERS and spec.type != "int" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return java_double(float(value))
    return str(value)


def query_cell(spec: Field, value: Any) -> str:
    return "" if value is None else quoted(bulk_text(spec, value))


def column_name(accessor: Accessor) -> str:
    return ".".join([hop[0] for hop in accessor.hops] + [accessor.field.name])


def _boolean(raw: str) -> bool:
    return {"true": True, "false": False, "1": True, "0": False}[raw.lower()]


def _integer(raw: str) -> int:
    if not re.fullmatch(r"[+-]?\d+", raw):
        raise ValueError(raw)
    return int(raw)


def _date(raw: str) -> str:
    if not re.fullmatch(r"\d{4}-\d\d-\d\dZ?", raw):
        raise ValueError(raw)
    return raw.removesuffix("Z")


def _datetime(raw: str) -> str:
    if parse_datetime(raw, colon_offset=False) is None:
        raise ValueError(raw)
    return raw


_READERS: dict[str, Callable[[str], Any]] = {"boolean": _boolean, "int": _integer, "double": float,
                                             "currency": float, "percent": float, "date": _date,
                                             "datetime": _datetime}


def upload_value(spec: Field, raw: str, column: int) -> Any:
    """A non-empty uploaded cell as the write path takes it: ``#N/A`` is null, the rest read by the field's type."""
    if raw == "#N/A":
        return None
    try:
        return _READERS.get(spec.type, str)(raw)
    except (KeyError, ValueError):
        raise RowFault("INVALID_FIELD", f"Failed to deserialize field at col {column}. Due to, '{raw}' is not a "
                       f"valid value for the type {spec.describe()['soapType']}", (spec.name,)) from None


def echo(spec: Field, raw: str) -> str:
    """An uploaded cell as successful results give it back: numbers and booleans as Salesforce read them."""
    if raw in ("", "#N/A") or spec.type not in (*NUMBERS, "boolean"):
        return raw
    return bulk_text(spec, upload_value(spec, raw, 0))


def encode_locator(offset: int) -> str:
    return base64.b64encode(str(offset).encode()).decode().rstrip("=")


def decode_locator(locator: str) -> int | None:
    try:
        text = base64.b64decode(locator + "=" * (-len(locator) % 4), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None


def accepts_gzip(request: Request) -> bool:
    for part in (request.headers.get("Accept-Encoding") or "").split(","):
        coding, _, params = part.partition(";")
        if coding.strip().lower() == "gzip" and not re.fullmatch(r"\s*q\s*=\s*0(\.0*)?\s*", params):
            return True
    return False


# -- the routes -------------------------------------------------------------------------------------------------

class BulkApi(Vendor):
    """The Bulk API 2.0 query and ingest jobs and the ``/limits`` resource; mixed into :class:`Salesforce`."""

    bulk_query_jobs_per_day = QUERY_JOBS_PER_DAY

    # What the mixin uses of the Salesforce imitation it is mixed into, which defines each of them.
    run: Callable[[str, bool, int], tuple[Any, int]]
    sobject: Callable[[str], SObject]
    row_by_key: Callable[..., Row | None]
    row_by_id: Callable[[SObject, Any], Row | None]
    collection: Callable[[Request, Callable[[None, Any], Any]], list[dict]]
    prepare_update: Callable[[str | None, Any], Any]
    prepare_create: Callable[[str | None, Any], Any]
    _version: Callable[[Request], str]
    objects: dict[str, SObject]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._bulk_lock = threading.RLock()
        self._jobs: dict[str, Job] = {}
        self._job_count = 0
        self._query_jobs, self._query_storage, self._batches = DailyTally(), DailyTally(), DailyTally()

    # -- query jobs --

    @route("POST", "/services/data/{version}/jobs/query", name="jobs.query.create")
    def create_query_job(self, request: Request):
        version = self._version(request)
        body = self._job_body(request)
        operation, soql = body.get("operation"), body.get("query")
        if operation not in ("query", "queryAll"):
            raise self._bad_option("operation", operation)
        if not isinstance(soql, str):
            raise self._bad_option("query", soql)
        csv_format = self._csv_format(body)
        cursor, _ = self._bulk_query(soql, all_rows=operation == "queryAll")
        with self._bulk_lock:
            self._count_query_job()
            job = QueryJob(**self._new_job(operation, cursor.sobject, version, csv_format), cursor=cursor)
            self._jobs[job.id] = job
        return job.created()

    def _bulk_query(self, soql: str, all_rows: bool) -> tuple[Any, int]:
        try:
            query = parse_soql(soql, self.crm.clock_ms())
            if query.count_only:
                raise self.error(400, "Aggregate queries are not supported in Bulk V2 Query", code="API_ERROR")
            if query.offset:
                raise self.error(400, "OFFSET is not supported in Bulk V2 Query", code="API_ERROR")
            return self.run(soql, all_rows, _COLLECTION_SLICE)
        except SoqlError as exc:
            raise self.error(400, str(exc), code=exc.code) from None

    def _count_query_job(self) -> None:
        now, allowed = self.limits.clock.now(), self.bulk_query_jobs_per_day
        made = self._query_jobs.total(now)
        if self.limits.enabled and made >= allowed:
            raise self.error(400, f"Max bulk v2 query jobs ({allowed}) per 24 hrs has been reached ({made + 1})",
                             code="LIMIT_EXCEEDED")
        self._query_jobs.add(now, 1)

    @route("GET", "/services/data/{version}/jobs/query/{id}", name="jobs.query.get")
    def get_query_job(self, request: Request):
        self._version(request)
        job = self._job(request, QueryJob)
        with self._bulk_lock:
            if job.state in (JobState.UPLOAD_COMPLETE, JobState.IN_PROGRESS):
                self._move(job, JobState.IN_PROGRESS if job.state is JobState.UPLOAD_COMPLETE else
                           JobState.JOB_COMPLETE)
        return job.info()

    @route("GET", "/services/data/{version}/jobs/query/{id}/results", name="jobs.query.results")
    def query_results(self, request: Request):
        version = self._version(request)
        job = self._job(request, QueryJob)
        if version != f"v{job.version}":
            raise self.error(409, f"Query job {job.id} was created in API version {job.version}: ask for its "
                             "results in the same version", code="API_ERROR")
        if job.state is not JobState.JOB_COMPLETE:
            raise self.error(412, "can only download query results of successfully completed bulk job with status: "
                             f"JOB_COMPLETE. Current status: {job.state.name}", code="JOB_NOT_COMPLETE")
        start, size = self._locator(request, job), self._max_records(request)
        text, count, end = self._query_page(job, start, size)
        self._count_storage(job, start, len(text.encode()))
        locator = encode_locator(end) if end < job.total else "null"
        return self._csv(request, text, {"Sforce-Locator": locator, "Sforce-NumberOfRecords": str(count)})

    def _query_page(self, job: QueryJob, start: int, size: int) -> tuple[str, int, int]:
        """A page of results from ``start``: its CSV, how many rows it holds, and where the next page starts."""
        accessors, keys, cache = job.cursor.accessors, job.cursor.keys[start:start + size], dict[int, Any]()
        rows = (self.row_by_key(job.cursor.sobject, key, cache) for key in keys)
        body = [job.csv.line(query_cell(a.field, a.get(row)) for a in accessors) for row in rows if row is not None]
        header = job.csv.line(quoted(column_name(a)) for a in accessors)
        return job.csv.document([header, *body]), len(body), start + len(keys)

    def _locator(self, request: Request, job: QueryJob) -> int:
        locator = request.arg("locator")
        if not locator:
            return 0
        start = decode_locator(locator)
        if start is None or start > job.total:
            raise self.error(400, f"Invalid locator: {locator}", code="API_ERROR")
        return start

    def _max_records(self, request: Request) -> int:
        text = request.arg("maxRecords")
        if text is None:
            return DEFAULT_MAX_RECORDS
        if not text.isdigit() or int(text) < 1:
            raise self.error(400, f"maxRecords must be a positive integer, not {text!r}", code="API_ERROR")
        return int(text)

    def _count_storage(self, job: QueryJob, start: int, size: int) -> None:
        with self._bulk_lock:
            if start not in job.stored:
                job.stored.add(start)
                self._query_storage.add(self.limits.clock.now(), size)

    @route("PATCH", "/services/data/{version}/jobs/query/{id}", name="jobs.query.abort")
    def abort_query_job(self, request: Request):
        self._version(request)
        job = self._job(request, QueryJob)
        state = self._wanted_state(request)
        if state != JobState.ABORTED.value:
            raise self.error(400, f"Invalid state for a query job: {state}", code="INVALIDJOBSTATE")
        self._abort(job, (JobState.UPLOAD_COMPLETE, JobState.IN_PROGRESS))
        return job.brief()

    @route("DELETE", "/services/data/{version}/jobs/query/{id}", name="jobs.query.delete")
    def delete_query_job(self, request: Request):
        self._version(request)
        return self._delete(self._job(request, QueryJob), TERMINAL)

    # -- ingest jobs --

    @route("POST", "/services/data/{version}/jobs/ingest", name="jobs.ingest.create")
    def create_ingest_job(self, request: Request):
        version = self._version(request)
        body = self._job_body(request)
        operation = body.get("operation")
        if operation not in INGEST_OPERATIONS:
            raise self._bad_option("operation", operation)
        if operation not in SERVED_INGEST_OPERATIONS:
            raise self.error(400, f"The sandbox serves Bulk API 2.0 ingest operations "
                             f"{' and '.join(SERVED_INGEST_OPERATIONS)} only, not {operation}", code="API_ERROR")
        sobject, csv_format = self._ingest_object(body.get("object")), self._csv_format(body)
        with self._bulk_lock:
            job = IngestJob(**self._new_job(operation, sobject, version, csv_format, JobState.OPEN))
            self._jobs[job.id] = job
        return job.created()

    def _ingest_object(self, name: Any) -> SObject:
        try:
            return self.sobject(str(name))
        except SoqlError:
            raise self.error(400, f"Entity '{name}' is not supported by the Bulk API.", code="INVALIDENTITY") from None

    @route("PUT", "/services/data/{version}/jobs/ingest/{id}/batches", name="jobs.ingest.upload")
    def upload_job_data(self, request: Request):
        self._version(request)
        job = self._job(request, IngestJob)
        with self._bulk_lock:
            if job.state is not JobState.OPEN:
                raise self.error(400, f"Job {job.id} is {job.state.value}: data can only be uploaded to an Open job",
                                 code="INVALIDJOBSTATE")
            if job.data is not None:
                raise self.error(400, f"Found multiple contents for job: <{job.id}>, please 'Close' / 'Abort' / "
                                 "'Delete' the current Job then create a new Job and make sure you only do 'PUT' "
                                 "once on a given Job.", code="INVALIDJOBSTATE")
            job.accept(request.body)
        return Response(201, b"")

    @route("PATCH", "/services/data/{version}/jobs/ingest/{id}", name="jobs.ingest.state")
    def set_ingest_state(self, request: Request):
        self._version(request)
        job = self._job(request, IngestJob)
        state = self._wanted_state(request)
        if state == JobState.ABORTED.value:
            self._abort(job, (JobState.OPEN, JobState.UPLOAD_COMPLETE, JobState.IN_PROGRESS))
        elif state == JobState.UPLOAD_COMPLETE.value:
            self._close(job)
        else:
            raise self.error(400, f"Invalid state for an ingest job: {state}", code="INVALIDJOBSTATE")
        return job.brief()

    def _close(self, job: IngestJob) -> None:
        with self._bulk_lock:
            if job.state is not JobState.OPEN:
                raise self.error(400, f"Job {job.id} is {job.state.value}, not Open", code="INVALIDJOBSTATE")
            self._move(job, JobState.UPLOAD_COMPLETE)

    @route("GET", "/services/data/{version}/jobs/ingest/{id}", name="jobs.ingest.get")
    def get_ingest_job(self, request: Request):
        self._version(request)
        job = self._job(request, IngestJob)
        with self._bulk_lock:
            if job.state is JobState.UPLOAD_COMPLETE:
                self._process(job)
                self._move(job, JobState.IN_PROGRESS)
            elif job.state is JobState.IN_PROGRESS:
                self._move(job, JobState.FAILED if job.error else JobState.JOB_COMPLETE)
        return job.info()

    def _process(self, job: IngestJob) -> None:
        """Carry out an uploaded job: refuse it whole (it will fail) or write its rows, each succeeding or failing."""
        text = (job.data or b"").decode("utf-8", "replace")
        job.error = job.csv.line_ending_fault(text) or self._header_fault(job)
        if job.error is None:
            job.outcomes = self._write_rows(job)
            batches = max(1, math.ceil(len(job.rows) / ROWS_PER_BATCH))
            self._batches.add(self.limits.clock.now(), batches)

    def _header_fault(self, job: IngestJob) -> str | None:
        unknown = next((name for name in job.header if job.sobject.field(name) is None), None)
        return None if unknown is None else f"InvalidBatch : Field name not found : {unknown}"

    def _write_rows(self, job: IngestJob) -> list[Outcome]:
        outcomes: dict[int, Outcome] = {}
        pending: list[tuple[int, dict]] = []
        for index, cells in enumerate(job.rows):
            try:
                pending.append((index, self._record(job, cells)))
            except RowFault as fault:
                outcomes[index] = Outcome(tuple(cells), error=fault.text)
        prepare = self.prepare_update if job.operation == "update" else self.prepare_create
        for start in range(0, len(pending), _COLLECTION_SLICE):
            chunk = pending[start:start + _COLLECTION_SLICE]
            results = self.collection(self._collection_call(job, [record for _, record in chunk]), prepare)
            for (index, record), result in zip(chunk, results, strict=True):
                outcomes[index] = self._outcome(job, job.rows[index], record, result)
        return [outcomes[index] for index in range(len(job.rows))]

    def _record(self, job: IngestJob, cells: list[str]) -> dict:
        """A row as a record of the REST write path; empty cells leave their fields alone."""
        if len(cells) != len(job.header):
            raise RowFault("INVALID_FIELD", "Number of fields in header is different from the row. "
                           f"header = {len(job.header)} row = {len(cells)}")
        record: dict[str, Any] = {"attributes": {"type": job.sobject.name}}
        for column, (name, raw) in enumerate(zip(job.header, cells, strict=True)):
            spec = job.sobject.field(name)
            if raw != "":
                record[spec.name] = upload_value(spec, raw, column)
        if job.operation == "update" and not record.get("Id"):
            raise RowFault("MISSING_ARGUMENT", "Id not specified in an update call")
        return record

    def _collection_call(self, job: IngestJob, records: list[dict]) -> Request:
        method = "PATCH" if job.operation == "update" else "POST"
        body = encode_json({"allOrNone": False, "records": records})
        return Request(method, f"/services/data/v{job.version}/composite/sobjects", {}, {}, body)

    def _outcome(self, job: IngestJob, cells: list[str], record: dict, result: dict) -> Outcome:
        if result["success"]:
            echoed = tuple(echo(job.sobject.field(name), raw) for name, raw in zip(job.header, cells, strict=True))
            return Outcome(echoed, result["id"], created=job.operation == "insert")
        error = result["errors"][0]
        row = self.row_by_id(job.sobject, record.get("Id")) if job.operation == "update" else None
        named = row.id if row is not None and not row.deleted else ""
        return Outcome(tuple(cells), named, error=bulk_error(error["statusCode"], error["message"], error["fields"]))

    @route("GET", "/services/data/{version}/jobs/ingest/{id}/successfulResults", name="jobs.ingest.successful")
    def successful_results(self, request: Request):
        self._version(request)
        job = self._job(request, IngestJob)
        lines = [job.csv.line([quoted("sf__Id"), quoted("sf__Created"), *map(job.csv.minimal, job.header)])]
        lines += [job.csv.line([quoted(o.record_id), quoted("true" if o.created else "false"), *map(quoted, o.cells)])
                  for o in job.outcomes if o.error is None]
        return self._csv(request, job.csv.document(lines))

    @route("GET", "/services/data/{version}/jobs/ingest/{id}/failedResults", name="jobs.ingest.failed")
    def failed_results(self, request: Request):
        self._version(request)
        job = self._job(request, IngestJob)
        lines = [job.csv.line([quoted("sf__Id"), quoted("sf__Error"), *map(job.csv.minimal, job.header)])]
        lines += [job.csv.line([quoted(o.record_id), quoted(o.error), *map(quoted, o.cells)])
                  for o in job.outcomes if o.error is not None]
        return self._csv(request, job.csv.document(lines))

    @route("GET", "/services/data/{version}/jobs/ingest/{id}/unprocessedrecords", name="jobs.ingest.unprocessed")
    def unprocessed_records(self, request: Request):
        self._version(request)
        job = self._job(request, IngestJob)
        if not job.header:
            return self._csv(request, "")
        stopped = job.state in (JobState.FAILED, JobState.ABORTED) and not job.outcomes
        lines = [job.csv.line(map(job.csv.minimal, job.header))]
        lines += [job.csv.line(map(quoted, cells)) for cells in (job.rows if stopped else [])]
        return self._csv(request, job.csv.document(lines))

    @route("GET", "/services/data/{version}/jobs/ingest/{id}/unprocessedRecords", name="jobs.ingest.unprocessed")
    def unprocessed_records_camel(self, request: Request):
        return self.unprocessed_records(request)

    @route("DELETE", "/services/data/{version}/jobs/ingest/{id}", name="jobs.ingest.delete")
    def delete_ingest_job(self, request: Request):
        self._version(request)
        return self._delete(self._job(request, IngestJob), TERMINAL | {JobState.UPLOAD_COMPLETE})

    # -- /limits --

    @route("GET", "/services/data/{version}/limits", name="limits")
    def org_limits(self, request: Request):
        self._version(request)
        now, daily = self.limits.clock.now(), self.limits.usage("DAILY")
        with self._bulk_lock:
            batches, jobs = self._batches.total(now), self._query_jobs.total(now)
            stored_mb = math.ceil(self._query_storage.total(now) / _MB)
        return {"DailyApiRequests": {"Max": daily.window.limit, "Remaining": daily.remaining},
                "DailyBulkApiBatches": {"Max": BATCHES_PER_DAY, "Remaining": max(0, BATCHES_PER_DAY - batches)},
                "DailyBulkV2QueryFileStorageMB": {"Max": QUERY_STORAGE_MB,
                                                  "Remaining": max(0, QUERY_STORAGE_MB - stored_mb)},
                "DailyBulkV2QueryJobs": {"Max": self.bulk_query_jobs_per_day,
                                         "Remaining": max(0, self.bulk_query_jobs_per_day - jobs)}}

    @route("GET", "/services/data/{version}/limits/recordCount", name="limits.recordCount")
    def record_count(self, request: Request):
        version = self._version(request)
        if int(version[1:].split(".")[0]) < RECORD_COUNT_SINCE:
            raise self.error(404, "The requested resource does not exist", code="NOT_FOUND")
        asked = request.args("sObjects")
        if asked:
            counted = [self.objects[name] for name in dict.fromkeys(n.lower() for n in asked) if name in self.objects]
        else:
            counted = sorted(self.objects.values(), key=lambda sobject: sobject.name)
        return {"sObjects": [{"count": self.run(f"SELECT COUNT() FROM {sobject.name}", False, _COLLECTION_SLICE)[1],
                              "name": sobject.name} for sobject in counted]}

    # -- jobs: making, finding, moving, ending --

    def _new_job(self, operation: str, sobject: SObject, version: str, csv_format: CsvFormat,
                 state: JobState = JobState.UPLOAD_COMPLETE) -> dict:
        self._job_count += 1
        now = self.crm.clock_ms()
        return {"id": sf_id("750", self._job_count), "operation": operation, "sobject": sobject,
                "version": version.removeprefix("v"), "created_by": user_id(self.crm.tenant.owners[0].id),
                "created_ms": now, "csv": csv_format, "state": state, "modified_ms": now}

    def _job(self, request: Request, kind: type[AnyJob]) -> AnyJob:
        with self._bulk_lock:
            job = self._jobs.get(request.params["id"])
        if not isinstance(job, kind):
            raise self.error(404, "The requested resource does not exist", code="NOT_FOUND")
        return job

    def _move(self, job: Job, state: JobState) -> None:
        job.state, job.modified_ms = state, self.crm.clock_ms()

    def _abort(self, job: Job, abortable: tuple[JobState, ...]) -> None:
        with self._bulk_lock:
            if job.state not in abortable:
                raise self.error(400, f"Aborting already {_PAST.get(job.state, job.state.value)} Job not allowed",
                                 code="INVALIDJOBSTATE")
            self._move(job, JobState.ABORTED)

    def _delete(self, job: Job, deletable: frozenset[JobState]) -> Response:
        with self._bulk_lock:
            if job.state not in deletable:
                raise self.error(400, "Error encountered when deleting the job because the job is not terminated",
                                 code="API_ERROR")
            del self._jobs[job.id]
        return Response(204, None)

    # -- request bodies and CSV answers --

    def _job_body(self, request: Request) -> dict:
        body = request.json()
        if not isinstance(body, dict):
            raise self.error(400, "Expected a JSON object describing the job", code="API_ERROR")
        return body

    def _csv_format(self, body: dict) -> CsvFormat:
        delimiter, ending = body.get("columnDelimiter") or "COMMA", body.get("lineEnding") or "LF"
        if delimiter not in DELIMITERS:
            raise self._bad_option("columnDelimiter", delimiter)
        if ending not in LINE_ENDINGS:
            raise self._bad_option("lineEnding", ending)
        if (body.get("contentType") or "CSV") != "CSV":
            raise self._bad_option("contentType", body.get("contentType"))
        return CsvFormat(delimiter, ending)

    def _bad_option(self, name: str, value: Any) -> VendorError:
        return self.error(400, f"Invalid value for {name}: {value!r}", code="API_ERROR")

    def _wanted_state(self, request: Request) -> Any:
        body = request.json()
        return body.get("state") if isinstance(body, dict) else None

    def _csv(self, request: Request, text: str, headers: dict[str, str] | None = None) -> Response:
        body, headers = text.encode("utf-8"), dict(headers or {})
        if accepts_gzip(request):
            body, headers["Content-Encoding"] = gzip.compress(body, compresslevel=6, mtime=0), "gzip"
        return Response(200, body, headers, content_type="text/csv; charset=UTF-8")
