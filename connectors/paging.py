"""Cursor pagination shared by the connectors, and the JSON cursors they hand the store."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from leadpulse.core.errors import TransientError

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Batch(Generic[T]):
    """One page as the CRM returned it, and the token for the next one (None on the last page)."""

    items: list[T]
    next_token: str | None


def follow(
    tenant: str, what: str, fetch: Callable[[str | None], Batch[T]], start: str | None = None
) -> Iterator[Batch[T]]:
    """Yield pages from `fetch(token)` until the CRM stops giving a next token.

    A token that comes back twice would loop forever on a misbehaving API; it is refused instead.
    """
    seen: set[str] = set()
    token = start
    while True:
        batch = fetch(token)
        yield batch
        token = batch.next_token
        if token is None:
            return
        if token in seen:
            raise TransientError(tenant, f"{what}: the CRM repeated page token {token!r}; stopped to avoid a loop")
        seen.add(token)


def chunked(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """`items` in runs of at most `size`, in order: one API call's worth each."""
    for start in range(0, len(items), size):
        yield items[start:start + size]


def dump_cursor(state: dict[str, Any]) -> str:
    return json.dumps(state, sort_keys=True, separators=(",", ":"))


def load_cursor(cursor: str | None) -> dict[str, Any]:
    return json.loads(cursor) if cursor else {}
