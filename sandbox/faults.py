"""Faults on demand: what the next calls to a route should suffer.

Routes are named by their vendor module (``contacts.list``, ``tasks.create``...); a fault's
``route`` is a shell-style pattern over those names (``"contacts.*"``, ``"*"``). Faults queue in
the order given; each call takes the first matching fault that still has calls left.

Kinds of fault (:class:`FaultKind`):

- ``STATUS``: answer ``status`` with ``body`` (None: the vendor's own error body for that status);
- ``HANG``: wait ``seconds`` before answering normally (a client with a shorter timeout gives up);
- ``DROP``: close the connection without answering (after carrying the call out, unless told not to);
- ``TRUNCATE``: send the headers and half of the real body, then close.

Beside those: :meth:`Faults.fail_records` makes chosen record ids fail inside batches, on every
write until :meth:`Faults.clear` or on their next ``times`` writes only (vendor modules ask
:meth:`Faults.record_fault` per record); :meth:`Faults.fail_batches` makes every record of the next
``times`` batch writes to a route fail (vendor modules ask :meth:`Faults.batch_fault` once per
batch); and :meth:`Faults.expire_token_after` revokes every issued token after N more
authenticated calls. A record fault's ``code`` is the vendor's error code; a vendor may word a code
it knows in its own way when no ``message`` is given (Salesforce's ``UNABLE_TO_LOCK_ROW``: "unable to
obtain exclusive access to this record or 1 records: <id>").
"""
from __future__ import annotations

import fnmatch
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum

from .auth import Tokens


class FaultKind(str, Enum):
    STATUS = "status"
    HANG = "hang"
    DROP = "drop"
    TRUNCATE = "truncate"


@dataclass(frozen=True)
class Fault:
    kind: FaultKind
    status: int = 500
    seconds: float = 0.0
    body: object | None = None
    headers: dict = field(default_factory=dict)
    applied: bool = True
    """For DROP: whether the call is carried out before the connection closes (a lost answer)."""


DEFAULT_RECORD_MESSAGE = "Property values were not valid"


@dataclass(frozen=True)
class RecordFault:
    """How one record fails inside a batch: HTTP-like status, message and the vendor's error code."""

    status: int = 400
    message: str = DEFAULT_RECORD_MESSAGE
    code: str | None = None


@dataclass
class _Queued:
    route: str
    fault: Fault
    left: int


@dataclass
class _Armed:
    """A record fault and how many more writes it fails (None: every one until cleared)."""

    fault: RecordFault
    left: int | None


@dataclass
class _Batch:
    route: str
    fault: RecordFault
    left: int


class Faults:
    """The faults waiting to happen. Thread-safe."""

    def __init__(self, tokens: Tokens):
        self._tokens = tokens
        self._lock = threading.Lock()
        self._queue: list[_Queued] = []
        self._records: dict[str, _Armed] = {}
        self._batches: list[_Batch] = []
        self._token_calls_left: int | None = None

    # -- arming (tests, the admin route) ---------------------------------------------------------

    def inject(self, route: str, fault: Fault, times: int = 1) -> None:
        with self._lock:
            self._queue.append(_Queued(route, fault, times))

    def fail_next(self, route: str, status: int = 500, times: int = 1, body: object | None = None,
                  headers: dict | None = None) -> None:
        """The next ``times`` calls to ``route`` answer ``status``."""
        self.inject(route, Fault(FaultKind.STATUS, status=status, body=body, headers=headers or {}), times)

    def hang_next(self, route: str, seconds: float, times: int = 1) -> None:
        """The next ``times`` calls to ``route`` wait ``seconds`` before answering."""
        self.inject(route, Fault(FaultKind.HANG, seconds=seconds), times)

    def drop_next(self, route: str, times: int = 1, applied: bool = True) -> None:
        """The next ``times`` calls to ``route`` lose their connection without an answer.

        With ``applied`` (the default) the call is carried out first, so a write happens but its
        answer is lost: the case an idempotency key exists for.
        """
        self.inject(route, Fault(FaultKind.DROP, applied=applied), times)

    def truncate_next(self, route: str, times: int = 1) -> None:
        """The next ``times`` calls to ``route`` get half a body, then the connection closes."""
        self.inject(route, Fault(FaultKind.TRUNCATE), times)

    def fail_records(self, record_ids: Iterable[str], status: int = 400, message: str | None = None,
                     code: str | None = None, times: int | None = None) -> None:
        """These record ids fail inside every batch write until :meth:`clear`, or on their next ``times`` writes
        only (a row lock that clears, say)."""
        fault = RecordFault(status, message or DEFAULT_RECORD_MESSAGE, code)
        with self._lock:
            self._records.update({str(record_id): _Armed(fault, times) for record_id in record_ids})

    def fail_batches(self, route: str, times: int = 1, status: int = 400, message: str | None = None,
                     code: str | None = None) -> None:
        """Every record of the next ``times`` batch writes to ``route`` (a pattern, ``"composite.*"``) fails."""
        fault = RecordFault(status, message or DEFAULT_RECORD_MESSAGE, code)
        with self._lock:
            self._batches.append(_Batch(route, fault, times))

    def expire_token_after(self, calls: int) -> None:
        """The next ``calls`` authenticated calls succeed; then every issued token is revoked."""
        with self._lock:
            self._token_calls_left = calls
        if calls <= 0:
            self._expire()

    def clear(self) -> None:
        """Disarm everything."""
        with self._lock:
            self._queue.clear()
            self._records.clear()
            self._batches.clear()
            self._token_calls_left = None

    # -- consulted by the server and vendor modules ----------------------------------------------

    def take(self, route: str) -> Fault | None:
        """The fault this call to ``route`` suffers, if any (consumes one use of it)."""
        if not self._queue:
            return None
        with self._lock:
            for queued in self._queue:
                if fnmatch.fnmatchcase(route, queued.route):
                    queued.left -= 1
                    if queued.left <= 0:
                        self._queue.remove(queued)
                    return queued.fault
        return None

    def record_fault(self, record_id: str) -> RecordFault | None:
        """How this record fails in a batch, or None when it goes through (consumes one of its counted writes)."""
        if not self._records:
            return None
        with self._lock:
            armed = self._records.get(str(record_id))
            if armed is None:
                return None
            if armed.left is not None:
                armed.left -= 1
                if armed.left <= 0:
                    del self._records[str(record_id)]
            return armed.fault

    def batch_fault(self, route: str) -> RecordFault | None:
        """How every record of this batch write to ``route`` fails, or None (consumes one use of it)."""
        if not self._batches:
            return None
        with self._lock:
            for batch in self._batches:
                if fnmatch.fnmatchcase(route, batch.route):
                    batch.left -= 1
                    if batch.left <= 0:
                        self._batches.remove(batch)
                    return batch.fault
        return None

    def authenticated_call(self) -> None:
        """Count one authenticated call towards an armed token expiry."""
        if self._token_calls_left is None:
            return
        with self._lock:
            self._token_calls_left -= 1
            expired = self._token_calls_left <= 0
            if expired:
                self._token_calls_left = None
        if expired:
            self._expire()

    def _expire(self) -> None:
        with self._lock:
            self._token_calls_left = None
        self._tokens.revoke_all()
