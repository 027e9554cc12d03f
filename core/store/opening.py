"""Opening a tenant's store file: creating it whole, refusing a file that is no store, and saying what went wrong.

Every failure is said with the file's path and what to do: restore or move aside a damaged or foreign file, fix a
folder's permissions, or try again when another process holds it.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
from collections.abc import Sequence
from pathlib import Path

import sqlite_utils

from leadpulse.core.errors import StoreError
from leadpulse.core.store.migrations import migrate

#: how long an opener waits for another process's write (a migration, a page being applied) before giving up
_BUSY_MS = 5000
#: SQLite's primary result codes that say the file is not a database, or a damaged one
_DAMAGED = {sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT}
#: ... that say the file or its folder cannot be written or opened
_NOT_WRITABLE = {sqlite3.SQLITE_READONLY, sqlite3.SQLITE_PERM, sqlite3.SQLITE_CANTOPEN}
_BUSY = {sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED}
#: what a lost store costs, said wherever moving one aside is offered
_AFRESH = (
    "restore it from a backup, or move it aside and run `leadpulse sync --full` to rebuild it from the CRM (follow-up "
    "tasks the CRM already holds are found by their keys and not created again)"
)


def create(path: Path) -> None:
    # Built aside and linked into place, so no other opener ever sees a half-made store: an existing file without
    # the schema is refused as emptied or overwritten (see `refuse_foreign`).
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=f"{path.name}.", suffix=".new")
    os.close(handle)
    fresh = Path(name)
    try:
        db = sqlite_utils.Database(fresh)
        try:
            migrate(db)
        finally:
            db.close()
        try:
            os.link(fresh, path)
        except FileExistsError:  # another opener created it first: open theirs
            pass
        except OSError:  # a filesystem without hard links: a rename, racing only with another first opener
            if not path.exists():
                os.replace(fresh, path)
    finally:
        fresh.unlink(missing_ok=True)


def connect(path: Path) -> sqlite_utils.Database:
    db = sqlite_utils.Database(path)
    try:
        # First, so that switching to WAL and migrating wait for another opener instead of failing.
        db.execute(f"PRAGMA busy_timeout = {_BUSY_MS}")
        refuse_foreign(db, path)
        db.enable_wal()
        db.execute("PRAGMA synchronous = NORMAL")
        # Temporary files (statement journals, sorting) in memory: on disk, saving a scoring chunk wrote three
        # times the pages it changed.
        db.execute("PRAGMA temp_store = MEMORY")
        migrate(db)
    except BaseException:
        db.close()
        raise
    return db


def refuse_foreign(db: sqlite_utils.Database, path: Path) -> None:
    """Refuse a file that exists but is no leadpulse store: treated as new, it would pull everything again and
    create every follow-up task a second time."""
    tables = sorted(row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'"))
    if "migrations" not in tables:
        raise StoreError(not_a_store(path, tables))


def not_a_store(path: Path, tables: Sequence[str]) -> str:
    """Why the existing file at `path`, holding `tables` and no ``migrations`` table, is refused, and what to do."""
    found = f"holds tables {', '.join(tables)} but no migrations table" if tables else "is empty"
    return (f"{path} is not a leadpulse checkpoint store: it {found} (it may have been emptied or overwritten); "
            f"{_AFRESH}")


def damaged(path: Path, found: str) -> str:
    """Why the store at `path`, which SQLite finds damaged (`found`), cannot be used, and the way out."""
    return (f"{path} is damaged or not an SQLite database ({found}); `leadpulse check` lists what SQLite finds "
            f"wrong in it; {_AFRESH}")


def is_damage(exc: BaseException) -> bool:
    """Whether `exc` is SQLite saying a file is damaged or no database at all."""
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(exc, sqlite3.DatabaseError) and code is not None and code & 0xFF in _DAMAGED


def open_failure(path: Path, exc: sqlite3.Error | OSError) -> str:
    """What went wrong opening `path`, and what to do about it."""
    code = getattr(exc, "sqlite_errorcode", None)
    primary = None if code is None else code & 0xFF
    if primary in _DAMAGED:
        return damaged(path, str(exc))
    if primary in _BUSY:
        return f"{path}: another process holds the checkpoint store locked ({exc}); try again once it is done"
    if primary in _NOT_WRITABLE or isinstance(exc, PermissionError):
        where = Path(getattr(exc, "filename", None) or path)
        return (
            f"{where}: cannot be written ({exc}); make {path.parent} and the files in it writable by the user "
            f"leadpulse runs as (uid {os.getuid()})"
        )
    return f"{path}: cannot open the checkpoint store ({exc}); check the disk (space, errors) and try again"
