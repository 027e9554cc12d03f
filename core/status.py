"""What `leadpulse status` shows: per tenant, the last finished sync, its outcome and counts, a run started since
and not finished (going now, or killed), the backlog, the last error.

A run recorded with ``dry_run`` (``sync --dry-run``, and the offline rescore of ``leadpulse score``) sent nothing
to the CRM, so it is never taken for the last sync.

Stores are opened read-only (SQLite ``mode=ro``): looking never creates a store, never migrates one, and
never waits on a daemon writing to it (WAL lets readers through).
"""

from __future__ import annotations

import sqlite3
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from core.store import not_a_store, open_failure

#: outbox states still waiting to reach the CRM
BACKLOG_STATES = ("pending", "sending")


@dataclass(frozen=True)
class TenantStatus:
    """One tenant's status; the ``last_run_*`` fields and counts are those of its last finished sync (not a dry run)."""

    tenant: str
    store: Path
    last_run_id: int | None = None
    last_run_at: str | None = None
    outcome: str | None = None
    pulled: int | None = None
    written: int | None = None
    tasks: int | None = None
    backlog: int | None = None
    parked: int | None = None
    last_error: str | None = None
    #: a run started after the last finished sync and not finished: going now, or killed before it could record an end
    unfinished_run_id: int | None = None
    unfinished_since: str | None = None
    #: why the store could not be read (damaged, not a leadpulse store, unreadable), naming it and what to do
    store_error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}


def store_path(tenant: Any, state_dir: Path) -> Path:
    """Where a tenant's store lives: its ``store`` key if set, else ``<state_dir>/<name>.sqlite``."""
    if hasattr(tenant, "store_path"):
        return Path(tenant.store_path(state_dir))
    explicit = getattr(tenant, "store", None)
    return Path(explicit) if explicit else state_dir / f"{tenant.name}.sqlite"


def read_status(tenant: Any, state_dir: Path) -> TenantStatus:
    """The status of one tenant from its store; a tenant that never ran has only its name and store path."""
    path = store_path(tenant, state_dir)
    if not path.exists():
        return TenantStatus(tenant=tenant.name, store=path)
    try:
        with _read_only(path) as db:
            return _tenant_status(tenant.name, path, db)
    except sqlite3.Error as exc:
        return TenantStatus(tenant=tenant.name, store=path, store_error=open_failure(path, exc))


def _tenant_status(name: str, path: Path, db: sqlite3.Connection) -> TenantStatus:
    if not _has_table(db, "migrations"):
        tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")]
        return TenantStatus(tenant=name, store=path, store_error=not_a_store(path, tables))
    run = _last_run(db)
    unfinished = _unfinished_run(db)
    error = _last_error(db)
    backlog, parked = _outbox(db)
    return TenantStatus(
        tenant=name, store=path, backlog=backlog, parked=parked, last_error=error,
        **(run or {}), **(unfinished or {}),
    )


def read_backlog(tenant: Any, state_dir: Path) -> int | None:
    """Outbox rows of `tenant` still waiting to be pushed, or None if it has no store yet."""
    path = store_path(tenant, state_dir)
    if not path.exists():
        return None
    with _read_only(path) as db:
        return _outbox(db)[0]


def read_statuses(config_dir: Path, state_dir: Path) -> tuple[list[TenantStatus], list[Exception]]:
    """Status of every tenant of `config_dir`, and the tenant files that did not load."""
    from core.daemon import _config_loader

    tenants, errors = _config_loader(config_dir)
    return [read_status(t, state_dir) for t in sorted(tenants, key=lambda t: t.name)], list(errors)


class _read_only:  # noqa: N801 - used as a context manager, reads like one
    def __init__(self, path: Path) -> None:
        self.connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)

    def __enter__(self) -> sqlite3.Connection:
        return self.connection

    def __exit__(self, *exc: object) -> None:
        self.connection.close()


def _has_table(db: sqlite3.Connection, name: str) -> bool:
    return db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (name,)).fetchone() is not None


#: a run row `Store.finish_run` has closed; one still open is going, or its process was killed
_FINISHED = "finished_at IS NOT NULL"
#: a finished run that talked to the CRM's write side: dry runs and offline rescores sent nothing
_SYNC = f"{_FINISHED} AND dry_run = 0"


def _last_run(db: sqlite3.Connection) -> dict[str, Any] | None:
    if not _has_table(db, "runs"):
        return None
    row = db.execute(
        f"SELECT id, started_at, outcome, pulled, written, tasks FROM runs WHERE {_SYNC} ORDER BY id DESC LIMIT 1"
    ).fetchone()
    if row is None:
        return None
    keys = ("last_run_id", "last_run_at", "outcome", "pulled", "written", "tasks")
    return dict(zip(keys, row, strict=True))


def _unfinished_run(db: sqlite3.Connection) -> dict[str, Any] | None:
    if not _has_table(db, "runs"):
        return None
    row = db.execute(
        f"""SELECT id, started_at FROM runs
            WHERE NOT ({_FINISHED}) AND id > (SELECT coalesce(max(id), 0) FROM runs WHERE {_SYNC})
            ORDER BY id DESC LIMIT 1"""
    ).fetchone()
    return dict(zip(("unfinished_run_id", "unfinished_since"), row, strict=True)) if row else None


def _last_error(db: sqlite3.Connection) -> str | None:
    if not _has_table(db, "runs"):
        return None
    row = db.execute("SELECT error FROM runs WHERE error IS NOT NULL AND error != '' ORDER BY id DESC LIMIT 1")
    found = row.fetchone()
    return found[0] if found else None


def _outbox(db: sqlite3.Connection) -> tuple[int | None, int | None]:
    if not _has_table(db, "outbox"):
        return None, None
    marks = ",".join("?" * len(BACKLOG_STATES))
    backlog = db.execute(f"SELECT count(*) FROM outbox WHERE state IN ({marks})", BACKLOG_STATES).fetchone()[0]
    parked = db.execute("SELECT count(*) FROM outbox WHERE state = 'parked'").fetchone()[0]
    return backlog, parked
