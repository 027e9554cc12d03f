"""What a run did, as the pipeline counts it, the store records it, and status and the CLI show it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from datetime import datetime
from enum import StrEnum


class RunOutcome(StrEnum):
    SUCCEEDED = "succeeded"
    #: finished, but skipped or had refused more records than the tenant's `tolerance` allows
    PARTIAL = "partial"
    #: asked to stop (SIGTERM): the current batch finished, everything done so far is checkpointed
    STOPPED = "stopped"
    #: the CRM's daily allowance ran out: checkpointed, the next run carries on
    QUOTA_EXHAUSTED = "quota_exhausted"
    FAILED = "failed"


@dataclass(frozen=True, kw_only=True)
class RunCounts:
    """A run's numbers; the runs table has a column for each (see `names`)."""

    #: records (contacts and activities) pulled from the CRM, and those read but not understood (skipped)
    pulled: int = 0
    skipped: int = 0
    #: contacts scored
    scored: int = 0
    #: contacts whose CRM values changed
    changed: int = 0
    #: contacts whose values the CRM accepted
    written: int = 0
    #: follow-up tasks the CRM created
    tasks: int = 0
    #: writes and tasks the CRM refused (each kept in the outbox with its reason, and tried again next run)
    refused: int = 0
    #: writes and tasks a push left in the outbox for the next run because the CRM's budget could not afford them
    #: this run (planned: neither tried nor refused, and no fault of the run's; see `Connector.push_capacity`)
    deferred: int = 0
    #: API calls made, and how many of them were answered 429
    api_calls: int = 0
    rate_limited: int = 0

    @staticmethod
    def names() -> tuple[str, ...]:
        """The counts' names, in the order tables show them."""
        return _NAMES

    def counts(self) -> RunCounts:
        """The counts alone (of a summary or record that carries them)."""
        return RunCounts(**{name: getattr(self, name) for name in _NAMES})

    def as_dict(self) -> dict[str, int]:
        return asdict(self.counts())

    def __add__(self, other: RunCounts) -> RunCounts:
        return RunCounts(**{name: getattr(self, name) + getattr(other, name) for name in _NAMES})


_NAMES = tuple(f.name for f in fields(RunCounts))


@dataclass(frozen=True, kw_only=True)
class RunRecord(RunCounts):
    """A run as the store keeps it; a run still going, or killed, has no `finished_at` and no `outcome`."""

    id: int
    tenant: str
    started_at: datetime
    finished_at: datetime | None
    outcome: RunOutcome | None
    full: bool
    dry_run: bool
    error: str | None
