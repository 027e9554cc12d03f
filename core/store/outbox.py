"""The write-back outbox: what leadpulse still owes the CRM, kept in the tenant's store until the CRM confirms it.

A row is queued in the same transaction as the scores it comes from, so a crash never loses a write nor
queues one twice. Property writes are keyed per contact: a newer write for a contact whose previous one is
still pending is merged into it, so the CRM gets the latest values once. Tasks are keyed by their idempotency
key and queued at most once. A row that keeps failing is parked after `max_attempts` and left for an operator.

A write also keeps its `WritePriority`, by which a push that cannot afford every write ranks it (see
`Outbox.ranked_writes`); a write merged into an undelivered one keeps the higher priority of the two.

States::

    pending  --push ok-->  done (with the CRM's id)
       |  \\--push failed--> pending (attempts + 1, error kept) --max_attempts--> parked
       \\--task handed to the CRM, answer lost or unconfirmed--> sending --found by key / not found--> done / pending
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, NamedTuple

import orjson
import sqlite_utils

from leadpulse.core.contract import PropertyWrite, TaskPriority, TaskRequest, WriteResult
from leadpulse.core.model import ContactKind


class OutboxKind(StrEnum):
    WRITE = "write"
    TASK = "task"


class OutboxState(StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    DONE = "done"
    PARKED = "parked"


DEFAULT_MAX_ATTEMPTS = 5


@dataclass(frozen=True, slots=True)
class WritePriority:
    """How much a queued write matters when a push cannot afford them all: whether it carries a lifecycle status
    change, and how far the contact's score moved from the score last queued for the CRM."""

    status_change: bool = False
    score_move: float = 0.0


#: the priority of a write queued without one: it ranks after every status change and every score move
LOWEST = WritePriority()


@dataclass(frozen=True, slots=True)
class Due:
    """The pending rows a run has not tried yet, as a ranked push plans them."""

    status_writes: int = 0
    tasks: int = 0
    other_writes: int = 0

    @property
    def writes(self) -> int:
        return self.status_writes + self.other_writes

    @property
    def total(self) -> int:
        return self.writes + self.tasks


def _encode(payload: dict[str, Any]) -> str:
    """A row's payload as JSON text with sorted keys (a full rescore queues a row per contact: orjson, not json)."""
    return orjson.dumps(payload, option=orjson.OPT_SORT_KEYS).decode()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class _Owed(NamedTuple):
    """A row never delivered, as queueing a write into it reads it."""

    payload: str
    state: str
    status_change: int
    score_move: float


class Outbox:
    """The outbox table of one store. Callers group several calls in one `Store.transaction()`."""

    def __init__(self, db: sqlite_utils.Database, *, max_attempts: int = DEFAULT_MAX_ATTEMPTS) -> None:
        self.db = db
        self.max_attempts = max_attempts

    # queueing -------------------------------------------------------------------------------------------

    def put_writes(self, writes: Sequence[PropertyWrite], run_id: int | None,
                   priorities: Mapping[str, WritePriority] | None = None) -> None:
        """Queue property writes, merging each into its key's row if that one was never delivered (pending or
        parked): the values it still owes the CRM go out with the new ones, and the row keeps the higher of the
        two priorities (a status change still owed stays owed; the larger score move counts). `priorities` gives
        each write's by key; a write without one gets `LOWEST`."""
        if not writes:
            return
        owed = self._undelivered([w.key for w in writes])
        rows, kept = [], []
        now = _now()
        for write in writes:
            priority = (priorities or {}).get(write.key, LOWEST)
            status_change, score_move = int(priority.status_change), priority.score_move
            before = owed.get(write.key)
            if before is None:
                values = dict(write.values)
            else:
                values = {**orjson.loads(before.payload).get("values", {}), **write.values}
            payload = _encode({"contact_kind": write.contact_kind.value, "values": values})
            if before is not None and before.state == "pending" and before.status_change >= status_change \
                    and before.score_move >= score_move:
                # merged into a pending row whose priority stands: only its payload changes (leaving the indexed
                # columns out of the statement spares rewriting their index entries)
                kept.append((payload, now, write.key))
            else:
                rows.append((write.key, write.contact_id, payload, run_id, now, status_change, score_move))
        self.db.conn.executemany("UPDATE outbox SET payload = ?, updated_at = ? WHERE key = ?", kept)
        # A merged pending row keeps its attempts (the CRM refused part of it already); a done or parked row starts
        # over, its values and priority merged all the same when it was parked (never delivered).
        self.db.conn.executemany(
            """INSERT INTO outbox (key, kind, contact_id, payload, state, attempts, created_run, updated_at,
                                   status_change, score_move)
               VALUES (?, 'write', ?, ?, 'pending', 0, ?, ?, ?, ?)
               ON CONFLICT (key) DO UPDATE SET
                 payload = excluded.payload, updated_at = excluded.updated_at,
                 attempts = CASE WHEN outbox.state = 'pending' THEN outbox.attempts ELSE 0 END,
                 status_change = CASE WHEN outbox.state IN ('pending', 'parked')
                   THEN max(outbox.status_change, excluded.status_change) ELSE excluded.status_change END,
                 score_move = CASE WHEN outbox.state IN ('pending', 'parked')
                   THEN max(outbox.score_move, excluded.score_move) ELSE excluded.score_move END,
                 state = 'pending', error = CASE WHEN outbox.state = 'pending' THEN outbox.error END,
                 last_run = CASE WHEN outbox.state = 'pending' THEN outbox.last_run END""",
            rows,
        )

    def put_tasks(self, tasks: Sequence[TaskRequest], run_id: int | None) -> None:
        """Queue tasks; a task whose idempotency key is already queued (in any state) is not queued again."""
        now = _now()
        self.db.conn.executemany(
            """INSERT OR IGNORE INTO outbox (key, kind, contact_id, payload, state, created_run, updated_at)
               VALUES (?, 'task', ?, ?, 'pending', ?, ?)""",
            [(t.key, t.contact_id, _encode(_task_payload(t)), run_id, now) for t in tasks],
        )

    def task_count(self, key_prefix: str) -> int:
        """How many tasks were ever queued under keys starting with `key_prefix` (for numbering events)."""
        # `+kind` keeps SQLite on the primary key's range instead of walking every task row through the kind index.
        row = self.db.execute(
            "SELECT count(*) FROM outbox WHERE key >= ? AND key < ? AND +kind = 'task'",
            (key_prefix, key_prefix + "\U0010ffff"),
        ).fetchone()
        count: int = row[0]
        return count

    def _undelivered(self, keys: Sequence[str]) -> dict[str, _Owed]:
        """The rows of `keys` never delivered (pending or parked): their payload as stored, state and priority."""
        found: dict[str, _Owed] = {}
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for key, *owed in self.db.execute(
                "SELECT key, payload, state, status_change, score_move FROM outbox "
                f"WHERE state IN ('pending', 'parked') AND key IN ({marks})", chunk
            ):
                found[key] = _Owed(*owed)
        return found

    # draining -------------------------------------------------------------------------------------------

    def pending_writes(self, limit: int, run_id: int | None) -> list[PropertyWrite]:
        """Up to `limit` pending writes not yet tried in run `run_id`, oldest first."""
        return [_write(*row) for row in self._due(OutboxKind.WRITE, OutboxState.PENDING, limit, run_id)]

    def ranked_writes(self, limit: int, run_id: int | None, *, status_change: bool) -> list[PropertyWrite]:
        """Up to `limit` pending writes not yet tried in run `run_id` that carry a lifecycle status change (or, with
        `status_change` false, that do not), largest score move first, then oldest."""
        # The literal kind and state let SQLite walk the partial index `outbox_pending_rank` in its order.
        rows = self.db.execute(
            """SELECT key, contact_id, payload FROM outbox
               WHERE kind = 'write' AND state = 'pending' AND status_change = ? AND last_run IS NOT ?
               ORDER BY score_move DESC, rowid LIMIT ?""",
            (int(status_change), run_id, limit),
        ).fetchall()
        return [_write(*row) for row in rows]

    def due(self, run_id: int | None) -> Due:
        """How many pending writes (with a status change, and without) and tasks run `run_id` has not tried yet."""
        rows = self.db.execute(
            """SELECT kind, status_change, count(*) FROM outbox
               WHERE kind IN ('write', 'task') AND state = 'pending' AND last_run IS NOT ?
               GROUP BY kind, status_change""",
            (run_id,),
        )
        counts = Counter({(kind, bool(status)): n for kind, status, n in rows})  # a task carries no status change
        return Due(status_writes=counts["write", True], tasks=counts["task", False],
                   other_writes=counts["write", False])

    def pending_tasks(self, limit: int, run_id: int | None) -> list[TaskRequest]:
        """Up to `limit` pending tasks not yet tried in run `run_id`, oldest first."""
        return [_task(*row) for row in self._due(OutboxKind.TASK, OutboxState.PENDING, limit, run_id)]

    def handed_over_in(self, key: str) -> int | None:
        """The run that last handed the row with `key` to the CRM (or tried to), if any."""
        row = self.db.execute("SELECT last_run FROM outbox WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def sending_tasks(self) -> list[TaskRequest]:
        """Tasks handed to the CRM whose outcome never came back: look each up by key before creating it again."""
        rows = self.db.execute(
            "SELECT key, contact_id, payload FROM outbox WHERE kind = 'task' AND state = 'sending' ORDER BY rowid"
        )
        return [_task(*row) for row in rows]

    def _due(self, kind: OutboxKind, state: OutboxState, limit: int, run_id: int | None) -> Iterable[tuple[Any, ...]]:
        return self.db.execute(
            """SELECT key, contact_id, payload FROM outbox
               WHERE kind = ? AND state = ? AND last_run IS NOT ? ORDER BY rowid LIMIT ?""",
            (kind.value, state.value, run_id, limit),
        ).fetchall()

    def mark_sending(self, keys: Sequence[str], run_id: int | None) -> None:
        """Record that these rows are being handed to the CRM now, before the call whose answer may be lost."""
        self.db.conn.executemany(
            "UPDATE outbox SET state = 'sending', last_run = ?, updated_at = ? WHERE key = ?",
            [(run_id, _now(), key) for key in keys],
        )

    def settle(self, results: Sequence[WriteResult], run_id: int | None) -> None:
        """Mark each result's row done with the CRM's id, or count the failure and park it at the limit (at once
        when the refusal is `permanent`).

        A task handed to the CRM (`sending`) whose result says its outcome is unknown stays `sending`, so the next
        run looks it up by key instead of creating it again.
        """
        now = _now()
        self.db.conn.executemany(
            """UPDATE outbox SET state = 'done', remote_id = ?, error = NULL, attempts = attempts + 1,
                 last_run = ?, updated_at = ? WHERE key = ?""",
            [(r.remote_id, run_id, now, r.key) for r in results if r.ok],
        )
        self.db.conn.executemany(
            """UPDATE outbox SET error = ?, attempts = attempts + 1, last_run = ?, updated_at = ?,
                 state = CASE WHEN ? OR attempts + 1 >= ? THEN 'parked'
                              WHEN ? AND state = 'sending' THEN 'sending' ELSE 'pending' END WHERE key = ?""",
            [(r.error or "refused without a reason", run_id, now, r.permanent and not r.outcome_unknown,
              self.max_attempts, r.outcome_unknown, r.key) for r in results if not r.ok],
        )

    def park_owed_to(self, reasons: Mapping[str, str]) -> None:
        """Park what is still pending for these contacts, with the reason each is gone from the CRM (a task being
        handed over stays `sending`: whether the CRM made it is still looked up)."""
        now = _now()
        self.db.conn.executemany(
            "UPDATE outbox SET state = 'parked', error = ?, updated_at = ? WHERE contact_id = ? AND state = 'pending'",
            [(f"the contact is gone from the CRM: {reason}", now, contact) for contact, reason in reasons.items()],
        )

    def release(self, keys: Sequence[str]) -> None:
        """Put rows back to pending without counting an attempt (a task the CRM turned out not to have)."""
        self.db.conn.executemany(
            "UPDATE outbox SET state = 'pending', updated_at = ? WHERE key = ?", [(_now(), key) for key in keys]
        )

    # reading --------------------------------------------------------------------------------------------

    def counts(self) -> Counter[tuple[str, str]]:
        """Rows by (kind, state)."""
        rows = self.db.execute("SELECT kind, state, count(*) FROM outbox GROUP BY kind, state")
        return Counter({(kind, state): n for kind, state, n in rows})

    def failures(self, limit: int = 20) -> list[Refusal]:
        """The most recent rows that failed at least once and are not done."""
        return self._refusals("state != 'done'", (), limit)

    def refused_in(self, run_id: int, limit: int) -> list[Refusal]:
        """The first rows run `run_id` sent and the CRM refused (outcomes unknown aside: those are looked up)."""
        return self._refusals("last_run = ? AND state IN ('pending', 'parked')", (run_id,), limit, newest=False)

    def parked(self, limit: int) -> list[Refusal]:
        """Rows given up on after `max_attempts` refusals, newest first: they wait for an operator."""
        return self._refusals("state = 'parked'", (), limit)

    def _refusals(self, where: str, params: tuple[Any, ...], limit: int, *, newest: bool = True) -> list[Refusal]:
        order = "updated_at DESC, rowid DESC" if newest else "rowid"
        rows = self.db.execute(
            f"""SELECT key, kind, contact_id, state, attempts, error FROM outbox
                WHERE error IS NOT NULL AND {where} ORDER BY {order} LIMIT ?""",
            (*params, limit),
        )
        return [Refusal(*row) for row in rows]


@dataclass(frozen=True, slots=True)
class Refusal:
    """An outbox row the CRM refused: what it was, how often it was tried, where it stands and the CRM's reason."""

    key: str
    kind: str
    contact_id: str
    state: str
    attempts: int
    error: str


def _task_payload(task: TaskRequest) -> dict[str, Any]:
    return {
        "contact_kind": task.contact_kind.value,
        "owner_id": task.owner_id,
        "subject": task.subject,
        "body": task.body,
        "priority": task.priority.value,
        "due_at": task.due_at.isoformat(),
    }


def _write(key: str, contact_id: str, payload: str) -> PropertyWrite:
    data = json.loads(payload)
    return PropertyWrite(key, contact_id, ContactKind(data["contact_kind"]), data["values"])


def _task(key: str, contact_id: str, payload: str) -> TaskRequest:
    data = json.loads(payload)
    return TaskRequest(
        key=key,
        contact_id=contact_id,
        contact_kind=ContactKind(data["contact_kind"]),
        owner_id=data["owner_id"],
        subject=data["subject"],
        body=data["body"],
        priority=TaskPriority(data["priority"]),
        due_at=datetime.fromisoformat(data["due_at"]),
    )
