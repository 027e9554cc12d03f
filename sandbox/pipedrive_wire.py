"""Pipedrive's wire formats: timestamps, cursors, list paging and the strict value checks of API v2.

v2 is strict (the migration guide): booleans are only ``true``/``false``, numbers are never read from
strings, timestamps are RFC 3339. v1 answers carry ``YYYY-MM-DD HH:MM:SS`` in UTC.
"""
from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

ERROR_INFO = "Please check developers.pipedrive.com for more information about Pipedrive API."
LIST_DEFAULT, LIST_MAX = 100, 500
IDS_MAX = 100
"""``ids`` on a v2 list takes at most 100 ids."""
CUSTOM_FIELDS_MAX = 15
"""``custom_fields`` on a v2 read names at most 15 keys."""
_TIME = re.compile(r"^([01]\d|2[0-3]):[0-5]\d(:[0-5]\d)?$")
_V1_TIME = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")


def rfc3339(ms: int | None) -> str | None:
    """v2 timestamps: whole seconds, UTC, ``Z``."""
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def v1_time(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


def parse_v1_time(text: str) -> int:
    """Milliseconds since the epoch of a v1 ``YYYY-MM-DD HH:MM:SS`` (UTC); ValueError when malformed."""
    if not _V1_TIME.fullmatch(text):
        raise ValueError(f"expected YYYY-MM-DD HH:MM:SS, got {text!r}")
    return int(datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC).timestamp() * 1000)


def day(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d")


def parse_rfc3339(text: str) -> int:
    """Milliseconds since the epoch; a time without a zone is UTC. ValueError when malformed."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def is_int(value: Any) -> bool:
    """An integer as v2 reads one: never a bool, never a numeric string."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_date(value: Any) -> str:
    """``YYYY-MM-DD``; ValueError otherwise."""
    if not isinstance(value, str) or not re.fullmatch(r"\d{4}-\d\d-\d\d", value):
        raise ValueError(f"expected a date YYYY-MM-DD, got {value!r}")
    date.fromisoformat(value)
    return value


def check_time(value: Any) -> str:
    """``HH:MM`` or ``HH:MM:SS``, given back as ``HH:MM:SS``; ValueError otherwise."""
    if not isinstance(value, str) or not _TIME.match(value):
        raise ValueError(f"expected a time HH:MM[:SS], got {value!r}")
    return value if len(value) == 8 else value + ":00"


def encode_cursor(field: str, direction: str, key: tuple[int, int], record_id: int) -> str:
    """Opaque like Pipedrive's: base64url of the last item's sort value and id."""
    raw = json.dumps({"field": field, "fieldValue": key[0], "sortDirection": direction, "id": record_id,
                      "index": key[1]}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, field: str, direction: str) -> tuple[int, int]:
    """The sort key after which the next page starts; ValueError when it is not one of ours."""
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if data["field"] != field or data["sortDirection"] != direction:
            raise ValueError("cursor made for another sort")
        return int(data["fieldValue"]), int(data["index"])
    except (KeyError, TypeError, ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"invalid cursor: {exc}") from None


@dataclass(frozen=True)
class ListQuery:
    """A v2 list call's paging, order and time window, checked once."""

    limit: int
    sort_by: str
    direction: str
    after: tuple[int, int] | None
    since_ms: int | None
    until_ms: int | None

    @property
    def walks_ids(self) -> bool:
        """Paging by id without a time filter needs no index: the ids themselves are the order."""
        return self.sort_by == "id" and self.since_ms is None and self.until_ms is None

    def follows(self, key: tuple[int, int]) -> bool:
        if self.after is None:
            return True
        return key > self.after if self.direction == "asc" else key < self.after

    def in_window(self, ms: int) -> bool:
        return (self.since_ms is None or ms >= self.since_ms) and (self.until_ms is None or ms < self.until_ms)

    def ordered(self, keys: list[tuple[tuple[int, int], Any]]) -> list[tuple[tuple[int, int], Any]]:
        keys.sort(key=lambda item: item[0])
        return keys[::-1] if self.direction == "desc" else keys


def page_of(keys: Iterable[tuple[tuple[int, int], Any]], query: ListQuery) -> tuple[list, tuple[int, int] | None]:
    """The first ``limit`` items after the cursor, and the key to continue from (None on the last page)."""
    taken: list = []
    for key, item in keys:
        if not query.follows(key):
            continue
        if len(taken) == query.limit:
            return [item for _, item in taken], taken[-1][0]
        taken.append((key, item))
    return [item for _, item in taken], None


def duration(ms: int | None) -> str | None:
    if not ms:
        return None
    seconds = ms // 1000
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
