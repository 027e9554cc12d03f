"""The checkpoint store's schema, as ordered migrations recorded in the ``migrations`` table.

A migration is applied once, in its own transaction, together with the row that records it; a store opened
by a newer leadpulse catches up by applying the ones it lacks, in order. Never edit a released migration:
add the next one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlite_utils


@dataclass(frozen=True, slots=True)
class Migration:
    name: str
    statements: Sequence[str]


INITIAL = Migration(
    "initial",
    (
        # `dirty` marks contacts whose inputs changed since they were last scored; the partial index keeps
        # finding them cheap when almost none are.
        """CREATE TABLE contacts (
            id TEXT PRIMARY KEY, kind TEXT NOT NULL, updated_at TEXT NOT NULL, email TEXT, name TEXT,
            owner_id TEXT, status TEXT, opted_out INTEGER NOT NULL DEFAULT 0,
            fields TEXT NOT NULL DEFAULT '{}', raw TEXT NOT NULL DEFAULT '{}', dirty INTEGER NOT NULL DEFAULT 1)""",
        "CREATE INDEX contacts_dirty ON contacts (id) WHERE dirty = 1",
        # Clustered by contact so a rescore reads each contact's activities as one sequential range;
        # attributes stay JSON text and are parsed only when a rule reads them.
        """CREATE TABLE activities (
            contact_id TEXT NOT NULL, id TEXT NOT NULL, kind TEXT NOT NULL, occurred_at TEXT NOT NULL,
            vendor_type TEXT, attributes TEXT NOT NULL DEFAULT '{}',
            PRIMARY KEY (contact_id, id)) WITHOUT ROWID""",
        """CREATE TABLE outcomes (
            contact_id TEXT PRIMARY KEY, converted INTEGER NOT NULL, converted_at TEXT)""",
        """CREATE TABLE skipped (
            id INTEGER PRIMARY KEY, run_id INTEGER, stream TEXT NOT NULL, record_id TEXT,
            reason TEXT NOT NULL, at TEXT NOT NULL)""",
        "CREATE TABLE cursors (stream TEXT PRIMARY KEY, cursor TEXT, updated_at TEXT NOT NULL)",
        # `status` is the lifecycle leadpulse last set; `written` the CRM property values last queued for writing,
        # which the next diff compares against.
        """CREATE TABLE scores (
            contact_id TEXT PRIMARY KEY, run_id INTEGER, fingerprint TEXT NOT NULL, as_of TEXT NOT NULL,
            total REAL NOT NULL, band TEXT NOT NULL, grade TEXT, quadrant TEXT, axes TEXT NOT NULL,
            contributions TEXT NOT NULL, valid_until TEXT, status TEXT, written TEXT NOT NULL DEFAULT '{}')""",
        "CREATE INDEX scores_valid_until ON scores (valid_until) WHERE valid_until IS NOT NULL",
        """CREATE TABLE history (
            id INTEGER PRIMARY KEY, contact_id TEXT NOT NULL, run_id INTEGER, at TEXT NOT NULL,
            old_total REAL, new_total REAL NOT NULL, old_band TEXT, new_band TEXT NOT NULL,
            old_status TEXT, new_status TEXT)""",
        "CREATE INDEX history_contact ON history (contact_id, id)",
        """CREATE TABLE outbox (
            key TEXT PRIMARY KEY, kind TEXT NOT NULL, contact_id TEXT NOT NULL, payload TEXT NOT NULL,
            state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, error TEXT, remote_id TEXT,
            created_run INTEGER, last_run INTEGER, updated_at TEXT NOT NULL)""",
        "CREATE INDEX outbox_state ON outbox (kind, state)",
        "CREATE INDEX outbox_contact ON outbox (contact_id, kind)",
        """CREATE TABLE runs (
            id INTEGER PRIMARY KEY, tenant TEXT NOT NULL, started_at TEXT NOT NULL, finished_at TEXT,
            outcome TEXT, full INTEGER NOT NULL DEFAULT 0, dry_run INTEGER NOT NULL DEFAULT 0,
            pulled INTEGER NOT NULL DEFAULT 0, scored INTEGER NOT NULL DEFAULT 0,
            changed INTEGER NOT NULL DEFAULT 0, written INTEGER NOT NULL DEFAULT 0,
            tasks INTEGER NOT NULL DEFAULT 0, api_calls INTEGER NOT NULL DEFAULT 0,
            rate_limited INTEGER NOT NULL DEFAULT 0, error TEXT)""",
    ),
)

CRM_FACTS = Migration(
    "crm_facts",
    (
        # What a CRM account says about itself (e.g. its lifecycle stages in order), kept between runs so a run
        # with nothing new need not ask again.
        "CREATE TABLE crm_facts (name TEXT PRIMARY KEY, value TEXT NOT NULL, updated_at TEXT NOT NULL)",
    ),
)

DECIDED_UNDER = Migration(
    "decided_under",
    (
        # The fingerprint of what turns a score into CRM writes and tasks (lifecycle, bands, write-back, task
        # policy) when the score was saved: a contact whose inputs and score are unchanged since then needs no
        # new decision, and one decided under another fingerprint is due again. NULL (a score saved before this
        # migration) is due once.
        "ALTER TABLE scores ADD COLUMN decided_under TEXT",
    ),
)

RUN_ACCOUNTING = Migration(
    "run_accounting",
    (
        # Every record a run read and could not store, and every write or task the CRM refused, counted beside
        # what was pulled and written (the records themselves sit in `skipped` and in the outbox).
        "ALTER TABLE runs ADD COLUMN skipped INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE runs ADD COLUMN refused INTEGER NOT NULL DEFAULT 0",
    ),
)

API_CALLS = Migration(
    "api_calls",
    (
        # The API calls of the last minutes, sent and answered (Unix seconds; answered NULL while in flight): a
        # process started after another was killed knows the rate window that one spent.
        "CREATE TABLE api_calls (id INTEGER PRIMARY KEY, scope TEXT NOT NULL, sent_at REAL NOT NULL, answered_at REAL)",
    ),
)

CONTACTS_GONE = Migration(
    "contacts_gone",
    (
        # Why the CRM no longer lets a contact be scored or written (deleted, converted into another record); NULL
        # for a live one. The row and its history stay.
        "ALTER TABLE contacts ADD COLUMN gone TEXT",
    ),
)

MERGED_CONTACTS = Migration(
    "merged_contacts",
    (
        # Where a gone contact's person lives on (the Contact a converted Lead became), so activities pulled later
        # under the gone one's id go there. Kept apart from `contacts`: a Lead converted before the first pull is
        # never stored as a contact, yet activities still arrive under its id.
        "CREATE TABLE merged_contacts (contact_id TEXT PRIMARY KEY, merged_into TEXT NOT NULL) WITHOUT ROWID",
    ),
)

PUSH_PRIORITY = Migration(
    "push_priority",
    (
        # What a push that cannot afford every write ranks a pending write by: whether it carries a lifecycle
        # status change, and how far the score moved from the one last queued for the CRM. Rows queued before this
        # migration rank last (no status change, no move).
        "ALTER TABLE outbox ADD COLUMN status_change INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE outbox ADD COLUMN score_move REAL NOT NULL DEFAULT 0",
        # Partial, so it costs nothing for done rows; a ranked push reads its next batch off it instead of sorting
        # every pending write a batch.
        """CREATE INDEX outbox_pending_rank ON outbox (status_change, score_move DESC)
           WHERE kind = 'write' AND state = 'pending'""",
        # The writes and tasks a run left owed for want of the CRM's budget (planned: neither tried nor refused).
        "ALTER TABLE runs ADD COLUMN deferred INTEGER NOT NULL DEFAULT 0",
    ),
)

CONTACT_CREATED = Migration(
    "contact_created",
    (
        # When the CRM record was made (ISO 8601 text, NULL when the CRM did not say or the contact was stored
        # before this migration and not pulled since): a backtest scores a contact only at moments after it. Not
        # an input of scoring, so filling it in makes no contact due.
        "ALTER TABLE contacts ADD COLUMN created_at TEXT",
    ),
)
DROP_VALID_UNTIL_INDEX = Migration(
    "drop_scores_valid_until",
    (
        # No query reads through it: a pass picks the contacts due by walking them in id order with their scores
        # (see `Store._selection`). Yet every score saved with a new valid_until moved its entry, to a page
        # anywhere in the index: a full rescore wrote a fifth of its log pages for it.
        "DROP INDEX IF EXISTS scores_valid_until",
    ),
)

MIGRATIONS: tuple[Migration, ...] = (
    INITIAL, CRM_FACTS, DECIDED_UNDER, RUN_ACCOUNTING, API_CALLS, CONTACTS_GONE, MERGED_CONTACTS, PUSH_PRIORITY,
    CONTACT_CREATED, DROP_VALID_UNTIL_INDEX,
)


def applied(db: sqlite_utils.Database) -> list[str]:
    """Names of the migrations this store has, in the order they were applied."""
    if not db["migrations"].exists():
        return []
    return [row[0] for row in db.execute("SELECT name FROM migrations ORDER BY id")]


def migrate(db: sqlite_utils.Database, migrations: Sequence[Migration] = MIGRATIONS) -> list[str]:
    """Apply the migrations `db` lacks, each in its own transaction; return the names applied now.

    Several processes may open one store at once: each migration takes the write lock first (``BEGIN IMMEDIATE``)
    and then reads what is applied, so a second opener waits for the first and finds nothing left to do.
    """
    if _lacks_none(db, migrations):
        return []
    now_applied = []
    for migration in migrations:
        with _writing(db):
            db.execute(_MIGRATIONS_TABLE)
            if migration.name in applied(db):
                continue
            for statement in migration.statements:
                db.execute(statement)
            db.execute(
                "INSERT INTO migrations (name, applied_at) VALUES (?, ?)",
                (migration.name, datetime.now(UTC).isoformat()),
            )
        now_applied.append(migration.name)
    return now_applied


_MIGRATIONS_TABLE = "CREATE TABLE IF NOT EXISTS migrations (id INTEGER PRIMARY KEY, name TEXT, applied_at TEXT)"


def _lacks_none(db: sqlite_utils.Database, migrations: Sequence[Migration]) -> bool:
    # Migrations are never taken back, so a store seen to have them all needs no write lock to be sure.
    return {migration.name for migration in migrations} <= set(applied(db))


@contextlib.contextmanager
def _writing(db: sqlite_utils.Database) -> Iterator[None]:
    # A deferred BEGIN would read first and fail at its first write if another opener wrote meanwhile (WAL gives
    # no retry for that); IMMEDIATE waits (busy_timeout) for the write lock before reading.
    db.conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.conn.rollback()
        raise
    db.conn.commit()
