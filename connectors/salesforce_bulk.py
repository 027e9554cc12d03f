"""Salesforce's Bulk API 2.0 through simple-salesforce's bulk2 client, on the connector's own session and calls.

simple-salesforce covers the job calls (create, state, upload, results) but waits for a job by sleeping on the wall
clock and reads results into one string; the connector wants every call through its retries and call counting, and
its waits on the tenant's clock. So this module drives the SDK's job client call by call: query jobs read page by
page (``Sforce-Locator``) into records shaped as the REST API shapes them, and ingest jobs update records by Id and
hand back each record's success or error.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from simple_salesforce import Salesforce
from simple_salesforce.bulk2 import Operation

from leadpulse.core.clock import Clock

T = TypeVar("T")
Call = Callable[[Callable[[Salesforce], T]], T]

#: rows a results page asks for: fewer calls than smaller pages, and a page of ~25 MB of CSV at most
QUERY_PAGE = 50_000
#: first wait for a job, doubled after each status read up to the longest
FIRST_WAIT, LONGEST_WAIT = 1.0, 30.0
#: how long a job may run before the run stops waiting (its work is picked up again by the next run)
JOB_DEADLINE = 2 * 3600.0
DONE_STATES = ("JobComplete", "Failed", "Aborted")
#: a Bulk datetime (``...000Z``) as the REST API prints it (``...000+0000``), so both reads store the same text
_BULK_DATETIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
#: what a cell of each describe type reads as
_READERS: dict[str, Callable[[str], Any]] = {
    "boolean": lambda text: text == "true",
    "int": lambda text: int(float(text)),
    "double": float, "currency": float, "percent": float,
}
#: in an ingest upload, a cell that empties the field (an empty cell leaves it as it is)
NULL_CELL = "#N/A"


class JobNotDone(Exception):
    """A Bulk API job that failed, was aborted, or outran the deadline."""


@dataclass(frozen=True, slots=True)
class IngestResult:
    """One uploaded row's fate: ``error`` is Salesforce's ``CODE:message:fields`` when it failed."""

    record_id: str
    ok: bool
    error: str | None = None


class BulkJobs:
    """Bulk API 2.0 jobs for one tenant; `call` runs one SDK call with the connector's retries and counting."""

    def __init__(self, call: Call[Any], clock: Clock) -> None:
        self._call = call
        self._clock = clock

    @staticmethod
    def _client(sf: Salesforce, sobject: str) -> Any:
        # the SDK's per-object job client, made anew from the current session (a re-login changes its token)
        return getattr(sf.bulk2, sobject)._client

    # -- query ------------------------------------------------------------------------------------------------

    def start_query(self, sobject: str, soql: str, *, query_all: bool) -> str:
        operation = Operation.query_all if query_all else Operation.query
        job = self._call(lambda sf: self._client(sf, sobject).create_job(operation, query=soql))
        return str(job["id"])

    def query_pages(self, sobject: str, job_id: str, locator: str,
                    types: Mapping[str, str]) -> Iterator[tuple[list[dict[str, Any]], str]]:
        """Each page of a finished query job (see `wait`) from `locator` ("" for the first): its records, and the
        locator of the page after it ("" after the last)."""
        def results(at: str) -> Callable[[Salesforce], Any]:
            return lambda sf: self._client(sf, sobject).get_query_results(job_id, locator=at, max_records=QUERY_PAGE)

        while True:
            page = self._call(results(locator))
            locator = page["locator"] or ""
            yield [rest_record(row, types) for row in csv.DictReader(io.StringIO(page["records"]))], locator
            if not locator:
                return

    # -- ingest -----------------------------------------------------------------------------------------------

    def update(self, sobject: str, rows: Sequence[Mapping[str, Any]]) -> list[IngestResult]:
        """Update records by Id in one ingest job: each row's result, in no particular order."""
        client_job = self._call(lambda sf: self._client(sf, sobject).create_job(Operation.update))
        job_id = str(client_job["id"])
        data = ingest_csv(rows)
        self._call(lambda sf: self._client(sf, sobject).upload_job_data(job_id, data))
        self._call(lambda sf: self._client(sf, sobject).close_job(job_id))
        self.wait(sobject, job_id, query=False)
        def rows_of(kind: str) -> Callable[[Salesforce], str]:
            return lambda sf: str(self._client(sf, sobject).get_ingest_results(job_id, kind))

        results = []
        for kind, ok in (("successfulResults", True), ("failedResults", False)):
            for row in csv.DictReader(io.StringIO(self._call(rows_of(kind)))):
                results.append(IngestResult(row.get("Id") or row.get("sf__Id") or "", ok,
                                            None if ok else row.get("sf__Error") or "failed without a reason"))
        return results

    # -- waiting ----------------------------------------------------------------------------------------------

    def wait(self, sobject: str, job_id: str, *, query: bool) -> dict[str, Any]:
        """Read the job's state on a widening interval of the tenant's clock until it is done.

        :raises JobNotDone: if it failed or was aborted (with Salesforce's message), or outran `JOB_DEADLINE`.
        """
        waited, pause = 0.0, FIRST_WAIT
        while True:
            self._clock.sleep(pause)
            waited += pause
            info: dict[str, Any] = self._call(lambda sf: self._client(sf, sobject).get_job(job_id, query))
            state = info.get("state")
            if state == "JobComplete":
                return info
            if state in DONE_STATES:
                raise JobNotDone(f"Bulk API job {job_id} ended {state}: {info.get('errorMessage') or 'no reason'}")
            if waited >= JOB_DEADLINE:
                raise JobNotDone(f"Bulk API job {job_id} is still {state} after {waited:.0f} s")
            pause = min(LONGEST_WAIT, pause * 2)


def rest_record(row: Mapping[str, str], types: Mapping[str, str]) -> dict[str, Any]:
    """A Bulk CSV row as the REST API gives the record: typed values by the fields' describe `types`, None for an
    empty cell, relationship columns (``Account.Industry``) nested, datetimes printed as REST prints them."""
    record: dict[str, Any] = {}
    for column, text in row.items():
        *parents, name = column.split(".")
        holder = record
        for part in parents:
            holder = holder.setdefault(part, {})
        holder[name] = _cell(text, types.get(column))
    return _nulled(record)


def _cell(text: str | None, kind: str | None) -> Any:
    if text is None or text == "":
        return None
    reader = _READERS.get(kind or "")
    if reader:
        return reader(text)
    return text[:-1] + "+0000" if _BULK_DATETIME.match(text) else text


def _nulled(record: dict[str, Any]) -> dict[str, Any]:
    """A related record whose every field is empty is absent (null), as the REST API answers it."""
    for name, value in record.items():
        if isinstance(value, dict):
            inner = _nulled(value)
            record[name] = inner if any(v is not None for v in inner.values()) else None
    return record


def ingest_csv(rows: Sequence[Mapping[str, Any]]) -> str:
    """Rows as an ingest job's CSV: a header of every field named, None and "" as `NULL_CELL`, a field a row
    leaves out as an empty cell (left as it is)."""
    columns = list(dict.fromkeys(name for row in rows for name in row))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_upload_text(row[name]) if name in row else "" for name in columns])
    return out.getvalue()


def _upload_text(value: Any) -> str:
    if value is None or value == "":  # an empty cell would leave the old value; Salesforce keeps no empty text
        return NULL_CELL
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
