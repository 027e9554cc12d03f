"""HubSpot's CRM search: request parsing, filter semantics, sorting and the 10,000-result cap.

A body key this module does not apply is refused, never ignored: a search whose filter is silently dropped
returns every record, which is what an incremental sync must never be shown. ``filterGroups``, ``sorts``,
``properties``, ``limit`` and ``after`` are applied. Refused with a 400:

- any key outside HubSpot's ``PublicObjectSearchRequest`` (the published spec lists ``after``, ``filterGroups``,
  ``limit``, ``properties``, ``query`` and ``sorts``), and any key but ``filters`` in a filter group. A top-level
  ``filters`` array among them: one user reports that HubSpot ANDs such filters when ``filterGroups`` is absent
  (HubSpot/hubspot-api-nodejs#491), but neither the spec nor the search guide defines it, nor how it would
  combine with ``filterGroups``, so it is not applied here. Put the filters in ``filterGroups: [{filters}]``.
- ``query`` (HubSpot's full-text search over each object's default searchable properties), since this
  sandbox does not imitate it; an empty ``query`` asks for nothing and is accepted.
"""
from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from .hubspot_catalog import DATETIME_PROPERTIES, NUMBER_PROPERTIES, to_ms

OPERATORS = {"EQ", "NEQ", "LT", "LTE", "GT", "GTE", "BETWEEN", "IN", "NOT_IN", "HAS_PROPERTY", "NOT_HAS_PROPERTY",
             "CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN"}
MAX_GROUPS, MAX_FILTERS_PER_GROUP = 5, 6  # the stricter of the published figures
RESULT_CAP = 10_000
"""Paging past this many results answers 400, as HubSpot does."""
MAX_LIMIT = 200
#: the body keys of HubSpot's PublicObjectSearchRequest, and of its FilterGroup
SEARCH_KEYS = frozenset({"after", "filterGroups", "limit", "properties", "query", "sorts"})
GROUP_KEYS = frozenset({"filters"})


class SearchError(ValueError):
    """The search request is one HubSpot would refuse with a 400 (``field``: the body key at fault, if one is)."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Filter:
    prop: str
    operator: str
    value: object = None
    values: tuple = ()
    high_value: object = None


@dataclass(frozen=True)
class Search:
    groups: tuple[tuple[Filter, ...], ...]
    sort: tuple[str, bool] | None  # (property, descending)
    properties: tuple[str, ...]
    limit: int
    offset: int


def parse_search(body: dict) -> Search:
    _check_keys(body, SEARCH_KEYS, "a search body")
    if body.get("query"):
        raise SearchError("A full-text 'query' is not served by this sandbox: filter with CONTAINS_TOKEN in "
                          "filterGroups instead", field="query")
    groups = [_group(g) for g in body.get("filterGroups") or []]
    if len(groups) > MAX_GROUPS or any(len(g) > MAX_FILTERS_PER_GROUP for g in groups):
        raise SearchError(f"Too many filters: at most {MAX_GROUPS} filterGroups of {MAX_FILTERS_PER_GROUP} filters")
    parsed = tuple(tuple(_filter(f) for f in g) for g in groups)
    sorts = body.get("sorts") or []
    if len(sorts) > 1:
        raise SearchError("Only one sort is allowed")
    limit = int(body.get("limit") or 10)
    if not 0 < limit <= MAX_LIMIT:
        raise SearchError(f"limit must be between 1 and {MAX_LIMIT}, got {limit}")
    return Search(parsed, _sort(sorts[0]) if sorts else None, tuple(body.get("properties") or ()),
                  limit, int(body.get("after") or 0))


def _check_keys(raw: dict, known: frozenset[str], what: str) -> None:
    unknown = [key for key in raw if key not in known]
    if unknown:
        hint = " (put top-level filters in filterGroups: [{filters: [...]}])" if unknown[0] == "filters" else ""
        raise SearchError(f"Unknown field '{unknown[0]}' in {what}: expected only {sorted(known)}; this sandbox "
                          f"refuses what it would not apply{hint}", field=unknown[0])


def _group(raw: dict) -> list:
    _check_keys(raw, GROUP_KEYS, "a filter group")
    if not isinstance(raw.get("filters"), list):
        raise SearchError("A filter group needs a 'filters' list", field="filters")
    return raw["filters"]


def _filter(raw: dict) -> Filter:
    operator = raw.get("operator", "EQ")
    if operator not in OPERATORS or not raw.get("propertyName"):
        raise SearchError(f"Invalid filter {raw}: operator must be one of {sorted(OPERATORS)}")
    return Filter(raw["propertyName"], operator, raw.get("value"), tuple(raw.get("values") or ()),
                  raw.get("highValue"))


def _sort(raw) -> tuple[str, bool]:
    # HubSpot documents a sort as {propertyName, direction}; a bare property name, though the SDK's model types it
    # so, is reported as not applied. Refusing it here keeps a client from relying on an order it may not get.
    if not isinstance(raw, dict) or not raw.get("propertyName"):
        raise SearchError(f"Invalid sort {raw!r}: expected an object {{propertyName, direction}}")
    direction = str(raw.get("direction", "ASCENDING")).upper()
    if direction not in ("ASCENDING", "DESCENDING"):
        raise SearchError(f"Invalid sort direction {direction!r}: expected ASCENDING or DESCENDING")
    return raw["propertyName"], direction == "DESCENDING"


def comparable(prop: str, value):
    """A property value in the form filters compare: epoch ms, a number or lowercase text."""
    if value is None or value == "":
        return None
    if prop in DATETIME_PROPERTIES:
        return value if isinstance(value, int) else to_ms(value)
    if prop in NUMBER_PROPERTIES:
        number = float(value)
        return int(number) if number.is_integer() else number
    return str(value).lower()


def _tokens(text: str) -> list[str]:
    return [t.strip(".,;:!?()[]{}\"'") for t in re.split(r"\s+", text)]


def _contains_token(text, needle) -> bool:
    if text is None:
        return False
    needle = str(needle).lower()
    tokens = _tokens(str(text).lower())
    return any(fnmatch.fnmatchcase(t, needle) for t in tokens) if "*" in needle else needle in tokens


def holds(f: Filter, raw_value) -> bool:
    """Whether one filter holds for a property value (raw HubSpot string, or epoch ms/int)."""
    op = f.operator
    if op == "HAS_PROPERTY":
        return raw_value not in (None, "")
    if op == "NOT_HAS_PROPERTY":
        return raw_value in (None, "")
    if op in ("CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN"):
        return _contains_token(raw_value, f.value) == (op == "CONTAINS_TOKEN")
    value = comparable(f.prop, raw_value)
    if op in ("IN", "NOT_IN"):
        return (value in {comparable(f.prop, v) for v in f.values}) == (op == "IN")
    target = comparable(f.prop, f.value)
    if op == "NEQ":
        return value != target
    if value is None:
        return False
    if op == "BETWEEN":
        return target <= value <= comparable(f.prop, f.high_value)
    return _COMPARE[op](value, target)


_COMPARE = {"EQ": lambda a, b: a == b, "LT": lambda a, b: a < b, "LTE": lambda a, b: a <= b,
            "GT": lambda a, b: a > b, "GTE": lambda a, b: a >= b}


def bounds(filters: Iterable[Filter], prop: str) -> tuple[int | float | None, int | float | None]:
    """The closed [low, high] range the filters on ``prop`` allow (None: unbounded)."""
    low = high = None
    for f in filters:
        if f.prop != prop or f.operator not in ("EQ", "GT", "GTE", "LT", "LTE", "BETWEEN"):
            continue
        value = comparable(prop, f.value)
        step = 1 if isinstance(value, int) else 0
        if f.operator in ("GT", "GTE", "EQ", "BETWEEN"):
            edge = value + step if f.operator == "GT" else value
            low = edge if low is None else max(low, edge)
        if f.operator in ("LT", "LTE", "EQ", "BETWEEN"):
            edge = comparable(prop, f.high_value) if f.operator == "BETWEEN" else value
            edge = edge - step if f.operator == "LT" else edge
            high = edge if high is None else min(high, edge)
    return low, high


def run(search: Search, matches: Sequence, value: Callable[[object, str], object]) -> tuple[int, list]:
    """(total, this page) of already-matched keys (in id order), sorted as asked."""
    if search.offset + search.limit > RESULT_CAP:
        raise CapReached()
    ordered = matches
    if search.sort and search.sort[0] != "hs_object_id":
        prop, descending = search.sort
        ordered = sorted(matches, key=lambda k: _sort_key(comparable(prop, value(k, prop))), reverse=descending)
    elif search.sort and search.sort[1]:
        ordered = list(reversed(matches))
    return len(matches), list(ordered[search.offset:search.offset + search.limit])


def _sort_key(value):
    return (value is None, 0 if value is None else value)


class CapReached(Exception):
    """The page asked for lies past the 10,000-result cap."""
