"""The API calls of the last minutes, as the tenant's store keeps them (see `leadpulse.core.contract.CallJournal`).

Each call is noted before it is sent and again when it is answered, each in its own commit, so a process killed
with calls in flight leaves them noted as unanswered: the next process counts them as just answered, the safe side
of any rate window. Rows older than the longest window any CRM has are of no use and are forgotten.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlite_utils

from leadpulse.core.contract import JournaledCall


def _moment(seconds: float | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC)


class CallLog:
    """The ``api_calls`` table of one store; a `CallJournal`."""

    def __init__(self, db: sqlite_utils.Database) -> None:
        self.db = db

    def sent(self, scope: str, at: datetime) -> int:
        with self.db.atomic():
            cursor = self.db.execute("INSERT INTO api_calls (scope, sent_at) VALUES (?, ?)", (scope, at.timestamp()))
        mark: int = cursor.lastrowid or 0
        return mark

    def answered(self, mark: int, at: datetime) -> None:
        with self.db.atomic():
            self.db.execute("UPDATE api_calls SET answered_at = ? WHERE id = ?", (at.timestamp(), mark))

    def since(self, moment: datetime) -> Sequence[JournaledCall]:
        rows = self.db.execute("SELECT scope, sent_at, answered_at FROM api_calls WHERE sent_at >= ? ORDER BY id",
                               (moment.timestamp(),))
        return [JournaledCall(scope, datetime.fromtimestamp(sent, UTC), _moment(answered))
                for scope, sent, answered in rows]

    def forget_before(self, moment: datetime) -> None:
        with self.db.atomic():
            self.db.execute("DELETE FROM api_calls WHERE sent_at < ?", (moment.timestamp(),))
