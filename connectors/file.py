"""A CRM kept in local files: score an export with no API access.

Contacts, activities and outcomes are read from CSV (a header row) or JSONL (one object a line) files named in
the tenant's ``crm.connection``; results go to a CSV file with one row per contact, and tasks to a CSV file
beside it (``<results>-tasks.csv``).

Columns (JSONL keys) understood:

- contacts: ``id`` (required), ``kind`` (lead/contact/person, default contact), ``email``, ``name``, ``owner_id``,
  ``status``, ``opted_out``, ``updated_at`` and ``created_at`` (ISO 8601). Every column is kept as a raw property;
  the tenant's ``fields`` map names the columns that feed the neutral fields.
- activities: ``id``, ``contact_id``, ``kind`` (the neutral vocabulary; any other value becomes ``other`` with
  the value kept as its vendor type), ``occurred_at`` (required), ``vendor_type``; other columns (or a JSONL
  ``attributes`` object) become the activity's attributes.
- outcomes: ``contact_id``, ``converted`` (true/false), ``converted_at``.

Files are UTF-8 (a byte-order mark is allowed): a file that is not stops the run, naming its first bad line. A
record with a value of the wrong type (an object where text belongs, a CSV row with more cells than the header) is
skipped and recorded with its file, line and column, and the rest of the file is read.

A stream's cursor is the file's content digest and the number of records already stored, so an unchanged file
is not read again and an interrupted import resumes where it stopped.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from itertools import islice
from pathlib import Path
from typing import Any, TextIO

from leadpulse.connectors.settings import FileSettings
from leadpulse.core.contract import (
    Connector,
    Page,
    PropertySpec,
    PropertyWrite,
    SkippedRecord,
    TaskRequest,
    WriteResult,
)
from leadpulse.core.errors import ConnectorError
from leadpulse.core.model import Activity, ActivityKind, Contact, ContactKind, Outcome, utc
from leadpulse.core.textfiles import first_undecodable

PAGE_SIZE = 500
_ACTIVITY_COLUMNS = ("id", "contact_id", "kind", "occurred_at", "vendor_type", "attributes")
#: the columns a CSV header must have, for each stream (contacts also need every column the tenant's fields map)
_REQUIRED = {"contacts": ("id",), "activities": ("id", "contact_id", "occurred_at"), "outcomes": ("contact_id",)}
_KINDS = {kind.value: kind for kind in ActivityKind}
_CONTACT_KINDS = {kind.value for kind in ContactKind}
_TASK_COLUMNS = ("key", "contact_id", "contact_kind", "owner_id", "subject", "body", "priority", "due_at")


class BadRecord(ValueError):
    """A record in an export file that cannot be read as what its stream holds."""


class FileConnector(Connector):
    """Reads CSV/JSONL exports; writes one results row per contact and one tasks row per task."""

    name = "file"
    settings_model = FileSettings
    write_batch_size = 1000
    task_batch_size = 1000

    @property
    def settings(self) -> FileSettings:
        return self.context.settings_of(FileSettings)

    def streams(self) -> Sequence[str]:
        files = {"contacts": self.settings.contacts, "activities": self.settings.activities,
                 "outcomes": self.settings.outcomes}
        return [stream for stream, path in files.items() if path is not None]

    def _path(self, stream: str) -> Path:
        path: Path | None = getattr(self.settings, stream, None)
        if stream not in self.streams() or path is None:
            streams = ", ".join(self.streams())
            raise ConnectorError(self.context.tenant, f"no {stream} file in crm.connection (streams: {streams})")
        if not path.is_file():
            raise ConnectorError(self.context.tenant,
                                 f"{stream} file {path} does not exist; check crm.connection.{stream}")
        return path

    def pull(self, stream: str, cursor: str | None, *, started_at: datetime) -> Iterator[Page]:
        path = self._path(stream)
        digest = _digest(path)
        done = _resume_point(cursor, digest)
        if done is None:
            return
        parse = _PARSERS[stream]
        required = [*_REQUIRED[stream], *(self.context.field_map.values() if stream == "contacts" else ())]
        records = islice(_records(path, self.context.tenant, stream, required), done, None)
        while batch := list(islice(records, PAGE_SIZE)):
            done += len(batch)
            yield self._page(stream, f"{digest}:{done}", batch, parse, started_at)
        yield Page(stream, f"{digest}:end")

    def _page(self, stream: str, cursor: str, batch: list[tuple[str, dict[str, Any]]], parse: Parser,
              started_at: datetime) -> Page:
        items, skipped = [], []
        for where, record in batch:
            try:
                items.append(parse(record, self.context.field_map, started_at))
            except BadRecord as exc:
                record_id = record.get("id") if isinstance(record, dict) else None
                skipped.append(SkippedRecord(stream, _id_text(record_id) or where, f"{where}: {exc}"))
        # the parser of `stream` makes the records of the Page field of that name
        return Page(stream, cursor, **{stream: items}, skipped=skipped)  # type: ignore[arg-type]  # see above

    def ensure_properties(self, specs: Sequence[PropertySpec]) -> None:
        """A results file takes any column: nothing to create."""

    def write_properties(self, writes: Sequence[PropertyWrite]) -> list[WriteResult]:
        path = self.settings.results
        rows = _read_results(path)
        for write in writes:
            row = rows.setdefault(write.contact_id, {"contact_id": write.contact_id})
            row["contact_kind"] = write.contact_kind.value
            row.update({name: _cell(value) for name, value in write.values.items()})
        _write_csv(path, list(rows.values()))
        return [WriteResult(write.key, True, remote_id=write.contact_id) for write in writes]

    def create_tasks(self, tasks: Sequence[TaskRequest]) -> list[WriteResult]:
        path = self.tasks_path
        path.parent.mkdir(parents=True, exist_ok=True)
        new = not path.exists()
        with open(path, "a", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=_TASK_COLUMNS)
            if new:
                writer.writeheader()
            for task in tasks:
                writer.writerow({
                    "key": task.key, "contact_id": task.contact_id, "contact_kind": task.contact_kind.value,
                    "owner_id": task.owner_id or "", "subject": task.subject, "body": task.body,
                    "priority": task.priority.value, "due_at": task.due_at.isoformat(),
                })
        return [WriteResult(task.key, True, remote_id=task.key) for task in tasks]

    def find_tasks(self, tasks: Sequence[TaskRequest]) -> dict[str, str]:
        if not self.tasks_path.exists():
            return {}
        wanted = {task.key for task in tasks}
        with open(self.tasks_path, newline="", encoding="utf-8") as handle:
            return {row["key"]: row["key"] for row in csv.DictReader(handle) if row["key"] in wanted}

    @property
    def tasks_path(self) -> Path:
        results = self.settings.results
        return results.with_name(f"{results.stem}-tasks.csv")


# reading ---------------------------------------------------------------------------------------------


def _digest(path: Path) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()[:16]


def _resume_point(cursor: str | None, digest: str) -> int | None:
    """Records already stored from this exact file, or None when all of it was."""
    if cursor is None or not cursor.startswith(digest + ":"):
        return 0
    position = cursor.removeprefix(digest + ":")
    return None if position == "end" else int(position)


def _records(path: Path, tenant: str, stream: str, required: Sequence[str]) -> Iterator[tuple[str, Any]]:
    """(``file:line``, record) for each record; a JSONL line that is not an object comes as its text.

    :raises ConnectorError: naming the file, if a CSV header lacks one of the `required` columns (before any row is
        read); naming the line, if the file is not UTF-8 there, or a CSV record there cannot be read (a quote
        opened and never closed, which would swallow every line after it, or a field past the size limit).
    """
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            if path.suffix.lower() == ".csv":
                yield from _csv_records(path, handle, tenant, stream, required)
                return
            for number, line in enumerate(handle, start=1):
                if line.strip():
                    yield f"{path.name}:{number}", _json_line(line)
    except UnicodeDecodeError:
        raise ConnectorError(tenant, f"{stream} file {path}: {first_undecodable(path)} is not UTF-8; re-export the "
                             "file as UTF-8 (or convert it, e.g. `iconv -f latin1 -t utf-8`) and sync again") from None


def _csv_records(path: Path, handle: TextIO, tenant: str, stream: str,
                 required: Sequence[str]) -> Iterator[tuple[str, Any]]:
    reader = csv.DictReader(handle, strict=True)
    columns = reader.fieldnames or []
    wanted = list(dict.fromkeys(required))
    if missing := [column for column in wanted if column not in columns]:
        raise ConnectorError(tenant, f"{stream} file {path}: the header has no {', '.join(missing)} column (expected "
                             f"{', '.join(wanted)}; found {', '.join(columns) or 'no header at all'}); export the "
                             "file with those columns, or map the tenant's fields to columns it has")
    while True:
        line = reader.line_num + 1  # where the next record starts
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise ConnectorError(tenant, f"{stream} file {path}: the record starting on line {line} cannot be read "
                                 f"as CSV ({exc}): a quote opened and never closed takes every line after it, and a "
                                 f"field may hold at most {csv.field_size_limit():,} characters; fix the export there "
                                 "and sync again") from None
        yield f"{path.name}:{line}", row


def _json_line(line: str) -> Any:
    try:
        return json.loads(line)
    except json.JSONDecodeError as exc:
        return f"not JSON ({exc.msg})"


def _object(record: Any) -> dict[str, Any]:
    if not isinstance(record, dict):
        raise BadRecord(record if isinstance(record, str) else f"expected an object, found {_found(record)}")
    if extra := record.get(None):  # csv.DictReader's key for cells beyond the header's columns
        columns = len(record) - 1
        raise BadRecord(f"expected {columns} cells as the header has columns, found {columns + len(extra)}")
    return {key: value for key, value in record.items() if value not in (None, "")}


def _found(value: Any) -> str:
    """A value as an error message shows what it found: its JSON type and the start of its text."""
    kind = {dict: "an object", list: "a list", bool: "true/false", str: "text"}.get(type(value), "a number")
    shown = json.dumps(value, ensure_ascii=False, default=str)
    return f"{kind} {shown if len(shown) <= 60 else shown[:57] + '...'}"


def _id_text(value: Any) -> str | None:
    """A value as text when it can be an id, a name or a code: text, or a number (JSON exports write ids as numbers)."""
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


def _text(row: Mapping[str, Any], key: str) -> str | None:
    """The column's value as text, None when it is absent; an object, a list or true/false is a bad record."""
    value = row.get(key)
    if value is None:
        return None
    text = _id_text(value)
    if text is None:
        raise BadRecord(f"{key}: expected text, found {_found(value)}")
    return text


def _required(row: Mapping[str, Any], key: str) -> str:
    text = _text(row, key)
    if not text:
        raise BadRecord(f"{key}: expected a value, found none")
    return text


def _time(row: Mapping[str, Any], key: str) -> datetime | None:
    text = _text(row, key)
    return None if text is None else _parsed_time(text, key)


def _required_time(row: Mapping[str, Any], key: str) -> datetime:
    return _parsed_time(_required(row, key), key)


def _parsed_time(text: str, key: str) -> datetime:
    try:
        return utc(datetime.fromisoformat(text.replace("Z", "+00:00")))
    except ValueError:
        raise BadRecord(f"{key}: expected an ISO 8601 time, found {_found(text)}") from None


def _flag(row: Mapping[str, Any], key: str) -> bool:
    value = row.get(key, False)
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower() if isinstance(value, str | int) else None
    if text in ("true", "1", "yes", "y"):
        return True
    if text in ("false", "0", "no", "n", ""):
        return False
    raise BadRecord(f"{key}: expected true or false, found {_found(value)}")


def parse_contact(record: Any, field_map: Mapping[str, str], started_at: datetime) -> Contact:
    row = _object(record)
    kind = _text(row, "kind") or "contact"
    if kind not in _CONTACT_KINDS:
        raise BadRecord(f"kind: expected one of {', '.join(ContactKind)}, found {_found(kind)}")
    return Contact(
        id=_required(row, "id"),
        kind=ContactKind(kind),
        updated_at=_time(row, "updated_at") or started_at,
        email=_text(row, "email"),
        name=_text(row, "name"),
        owner_id=_text(row, "owner_id"),
        status=_text(row, "status"),
        opted_out=_flag(row, "opted_out"),
        fields={name: row[column] for name, column in field_map.items() if column in row},
        raw=row,
        created_at=_time(row, "created_at"),
    )


def parse_activity(record: Any, field_map: Mapping[str, str], started_at: datetime) -> Activity:
    row = _object(record)
    kind_text = _text(row, "kind") or "other"
    kind = _KINDS.get(kind_text, ActivityKind.OTHER)
    vendor_type = _text(row, "vendor_type") or (None if kind_text in _KINDS else kind_text)
    attributes = row.get("attributes")
    if not isinstance(attributes, dict):
        attributes = {key: value for key, value in row.items() if key not in _ACTIVITY_COLUMNS}
    return Activity(
        id=_required(row, "id"),
        contact_id=_required(row, "contact_id"),
        kind=kind,
        occurred_at=_required_time(row, "occurred_at"),
        vendor_type=vendor_type,
        attributes=attributes,
    )


def parse_outcome(record: Any, field_map: Mapping[str, str], started_at: datetime) -> Outcome:
    row = _object(record)
    return Outcome(
        contact_id=_required(row, "contact_id"),
        converted=_flag(row, "converted"),
        converted_at=_time(row, "converted_at"),
    )


#: reads one record of a stream (a CSV row or a JSON object) into the model, or raises BadRecord
Parser = Callable[[Any, Mapping[str, str], datetime], Contact | Activity | Outcome]
_PARSERS: dict[str, Parser] = {"contacts": parse_contact, "activities": parse_activity, "outcomes": parse_outcome}


# writing ---------------------------------------------------------------------------------------------


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _read_results(path: Path) -> dict[str, dict[str, str]]:
    if not path.exists():
        return {}
    with open(path, newline="", encoding="utf-8") as handle:
        return {row["contact_id"]: row for row in csv.DictReader(handle)}


def _write_csv(path: Path, rows: list[dict[str, str]]) -> None:
    # Written beside the target and renamed over it, so a crash never leaves half a results file.
    first = ["contact_id", "contact_kind"]
    columns = [*first, *sorted({key for row in rows for key in row} - set(first))]
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    with open(partial, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(sorted(rows, key=lambda row: row["contact_id"]))
    os.replace(partial, path)
