"""What `leadpulse status` shows: per tenant, the last finished sync, its outcome and counts, a run started since
and not finished (going now, or killed), the backlog, the last error.

A run recorded with ``dry_run`` (``sync --dry-run``, and the offline rescore of ``leadpulse score``) sent nothing
to the CRM, so it is never taken for the last sync. Stores are read with `Store.reading`: looking never creates,
migrates or waits on a store.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from leadpulse.core.config.tenant import TenantConfig
from leadpulse.core.errors import StoreError
from leadpulse.core.store.outbox import OutboxState, Refusal
from leadpulse.core.store.runs import RunCounts, RunRecord
from leadpulse.core.store.store import Store, iso

#: outbox states still waiting to reach the CRM
BACKLOG_STATES = (OutboxState.PENDING, OutboxState.SENDING)


@dataclass(frozen=True)
class TenantStatus:
    """One tenant's status, as its store tells it."""

    tenant: str
    store: Path
    #: its last finished sync (not a dry run)
    last_sync: RunRecord | None = None
    #: a run started after the last sync and not finished: going now, or killed before it could record an end
    unfinished: RunRecord | None = None
    backlog: int | None = None
    parked: int | None = None
    last_error: str | None = None
    #: why the store could not be read (damaged, not a leadpulse store, unreadable), naming it and what to do
    store_error: str | None = None
    #: the outbox rows given up on, newest first, when asked for
    parked_rows: tuple[Refusal, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """One flat JSON object: the last sync's id, time, outcome and counts, the unfinished run's id and start."""
        sync, going = self.last_sync, self.unfinished
        counts = sync.as_dict() if sync else dict.fromkeys(RunCounts.names())
        return {
            "tenant": self.tenant, "store": str(self.store),
            "last_run_id": sync.id if sync else None, "last_run_at": iso(sync.started_at) if sync else None,
            "outcome": sync.outcome.value if sync and sync.outcome else None, **counts,
            "backlog": self.backlog, "parked": self.parked, "last_error": self.last_error,
            "unfinished_run_id": going.id if going else None,
            "unfinished_since": iso(going.started_at) if going else None, "store_error": self.store_error,
            **({"parked_rows": [asdict(row) for row in self.parked_rows]} if self.parked_rows else {}),
        }


def read_status(tenant: TenantConfig, state_dir: Path, *, parked: int = 0) -> TenantStatus:
    """The status of one tenant from its store, with up to `parked` of its parked outbox rows; a tenant that never
    ran has only its name and store path."""
    path = tenant.store_path(state_dir)
    if not path.exists():
        return TenantStatus(tenant=tenant.name, store=path)
    try:
        with Store.reading(path) as store:
            return TenantStatus(
                tenant=tenant.name, store=path, last_sync=store.last_sync(), unfinished=store.unfinished_run(),
                backlog=_count(store, BACKLOG_STATES), parked=_count(store, (OutboxState.PARKED,)),
                last_error=store.last_error(), parked_rows=tuple(store.outbox.parked(parked)) if parked else (),
            )
    except StoreError as exc:
        return TenantStatus(tenant=tenant.name, store=path, store_error=str(exc))


def read_backlog(tenant: TenantConfig, state_dir: Path) -> int | None:
    """Outbox rows of `tenant` still waiting to be pushed, or None if it has no store yet.

    :raises StoreError: if the store cannot be read.
    """
    path = tenant.store_path(state_dir)
    if not path.exists():
        return None
    with Store.reading(path) as store:
        return _count(store, BACKLOG_STATES)


def _count(store: Store, states: Sequence[OutboxState]) -> int:
    """Outbox rows in any of `states`."""
    return sum(n for (_, state), n in store.outbox.counts().items() if state in states)
