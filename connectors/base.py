"""The connector contract: the only thing `core` knows about a CRM.

A connector translates between one CRM's API (through that CRM's SDK) and the vendor-neutral model. It never
scores and never touches the store: the pipeline calls it to pull pages and to push outbox batches.

Connectors are found by name through the ``leadpulse.connectors`` entry-point group (see `load_connector`), so
a third party can ship one without `core` importing it.

Errors a connector raises, and what the pipeline does with them::

    ConnectorError                 base; carries the tenant name
    ├── AuthError                  credentials refused after one refresh: the tenant's run stops
    ├── QuotaExhausted             the CRM's daily allowance is spent: checkpoint and stop cleanly
    ├── SchemaError                properties leadpulse writes are missing and cannot be created
    └── TransientError             retries ran out on 429 / 5xx / dropped connections: the run stops,
        │                          everything already checkpointed stays
        └── OutcomeUnknown         a create lost its answer: it may or may not exist in the CRM, so it is
                                   settled (looked up by its idempotency key) before it is ever sent again

A bad *record* is never an exception: a malformed pulled record goes into `Page.skipped`, a refused write
comes back as a failed `WriteResult`.
"""

from __future__ import annotations

import abc
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from importlib.metadata import entry_points
from typing import Any, ClassVar

from pydantic import BaseModel

from core.clock import Clock, SystemClock
from core.model import Activity, Contact, ContactKind, Outcome


class ConnectorError(Exception):
    """Something went wrong talking to a tenant's CRM."""

    def __init__(self, tenant: str, message: str) -> None:
        super().__init__(f"tenant {tenant!r}: {message}")
        self.tenant = tenant


class AuthError(ConnectorError):
    """The CRM refused the tenant's credentials."""


class QuotaExhausted(ConnectorError):
    """The CRM's daily allowance is used up; the run must checkpoint and stop until it refills."""


class SchemaError(ConnectorError):
    """Properties or fields that leadpulse writes are missing in the CRM and cannot be created by it."""


class TransientError(ConnectorError):
    """Retries ran out on a failure that may pass (429, 5xx, dropped connection, timeout)."""


class OutcomeUnknown(TransientError):
    """A call that is not safe to repeat lost its answer; what it did is settled before anything is resent."""


class UnknownConnector(LookupError):
    """No connector is registered under the name a tenant file asked for."""


@dataclass(frozen=True, slots=True)
class SkippedRecord:
    """A pulled record that could not be understood; it is stored for the operator and the run goes on."""

    stream: str
    record_id: str | None
    reason: str


@dataclass(frozen=True, slots=True)
class Page:
    """One page of one stream, stored in one transaction together with `cursor`.

    `cursor` is opaque to core: the connector's own encoding of where the next run (or the next page after a
    crash) should resume. A connector never lets it pass the run's start time.
    """

    stream: str
    cursor: str | None
    contacts: Sequence[Contact] = ()
    activities: Sequence[Activity] = ()
    outcomes: Sequence[Outcome] = ()
    skipped: Sequence[SkippedRecord] = ()


@dataclass(frozen=True, slots=True)
class PropertySpec:
    """A property leadpulse owns in the CRM: its CRM name, label and type (string, number, enumeration)."""

    name: str
    label: str
    type: str
    options: Sequence[str] = ()


@dataclass(frozen=True, slots=True)
class PropertyWrite:
    """Values to set on one contact, keyed by the CRM's property names. `key` is the outbox row's key."""

    key: str
    contact_id: str
    contact_kind: ContactKind
    values: Mapping[str, Any]


class TaskPriority(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


@dataclass(frozen=True, slots=True)
class TaskRequest:
    """A follow-up task for a contact's owner. `key` is the idempotency key, carried inside the task's body."""

    key: str
    contact_id: str
    contact_kind: ContactKind
    owner_id: str | None
    subject: str
    body: str
    priority: TaskPriority
    due_at: datetime


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What became of one write or task: `remote_id` on success, else the CRM's reason.

    `outcome_unknown` marks a failed result the CRM neither confirmed nor refused: a task so marked may exist, and
    is looked up by its idempotency key (`Connector.find_task`) before it is ever sent again.
    """

    key: str
    ok: bool
    remote_id: str | None = None
    error: str | None = None
    outcome_unknown: bool = False


@dataclass
class CallStats:
    """API calls made by one connector in one run, by status code (0 for a dropped connection)."""

    by_status: Counter[int] = field(default_factory=Counter)
    rate_limited: int = 0

    @property
    def total(self) -> int:
        return sum(self.by_status.values())

    def record(self, status: int) -> None:
        self.by_status[status] += 1
        if status == 429:
            self.rate_limited += 1


@dataclass(frozen=True)
class ConnectorContext:
    """Everything a connector is given for one tenant.

    `settings` is the tenant file's ``crm.connection`` block, already validated against the connector's
    `settings_model`; `secrets` holds the resolved values of the secrets it names (never log them);
    `field_map` maps neutral field names (title, employees, ...) to the CRM's property names to read. A connector
    makes no call beyond `call_allowance` (its `ApiCaller` raises `QuotaExhausted`).
    """

    tenant: str
    settings: BaseModel
    secrets: Mapping[str, str]
    field_map: Mapping[str, str] = field(default_factory=dict)
    clock: Clock = field(default_factory=SystemClock)
    stats: CallStats = field(default_factory=CallStats)
    #: API calls this run may make before the tenant's own daily limit (``daily_limit``) is reached: what the
    #: limit leaves of the last 24 hours. None when the tenant sets no such limit.
    call_allowance: int | None = None


class Connector(abc.ABC):
    """One CRM behind the contract. Instances serve one tenant for one run."""

    #: the name tenant files use in ``crm.kind`` and the entry point is registered under
    name: ClassVar[str]
    #: pydantic model of the ``crm.connection`` block; unknown keys must be refused (``extra="forbid"``)
    settings_model: ClassVar[type[BaseModel]]
    #: largest batch `write_properties` and `create_tasks` accept in one call
    write_batch_size: ClassVar[int] = 1
    task_batch_size: ClassVar[int] = 1

    def __init__(self, context: ConnectorContext) -> None:
        self.context = context

    @abc.abstractmethod
    def streams(self) -> Sequence[str]:
        """The streams to pull, contacts first, e.g. ``("contacts", "calls", "emails")``."""

    @abc.abstractmethod
    def pull(self, stream: str, cursor: str | None, *, started_at: datetime) -> Iterator[Page]:
        """Yield the records of `stream` changed since `cursor` (everything when it is None), a page at a time.

        Each page carries the cursor to resume from once that page is stored. Records at the cursor boundary
        may come again (a look-back overlap); the store de-duplicates them.

        :raises AuthError: if the credentials are refused.
        :raises QuotaExhausted: if the daily allowance runs out; pages already yielded stay valid.
        :raises TransientError: if retries run out.
        """

    def status_order(self) -> Sequence[str] | None:
        """The CRM's lifecycle values in ascending order as the account defines them, or None to use the tenant's."""
        return None

    def owners(self) -> Mapping[str, str]:
        """Owner id -> display name, for task assignment and reports."""
        return {}

    @abc.abstractmethod
    def ensure_properties(self, specs: Sequence[PropertySpec]) -> None:
        """Make sure every property in `specs` exists, creating the missing ones where the CRM allows it.

        :raises SchemaError: naming every missing property by its exact API name if they cannot be created.
        """

    @abc.abstractmethod
    def write_properties(self, writes: Sequence[PropertyWrite]) -> list[WriteResult]:
        """Set the given values, at most `write_batch_size` writes a call; one result per write, in order.

        A write the CRM refuses comes back failed; it never fails the others.
        """

    @abc.abstractmethod
    def create_tasks(self, tasks: Sequence[TaskRequest]) -> list[WriteResult]:
        """Create the tasks (at most `task_batch_size`), each associated with its contact; one result each.

        A task the CRM refused comes back failed, and never fails the others; one whose answer did not say
        whether it was created comes back failed with `WriteResult.outcome_unknown`.
        """

    @abc.abstractmethod
    def find_task(self, key: str) -> str | None:
        """The CRM id of a task whose body carries idempotency key `key`, or None: settles an unknown outcome."""

    def lookup_lag(self) -> timedelta:
        """How long after a task is created `find_task` may still miss it (a CRM search indexes writes late): a task
        handed over more recently and not found is looked up again later, not created again."""
        return timedelta(0)

    def close(self) -> None:
        """Release sessions and pools."""


def _entry_point(group: str, name: str) -> Any:
    found = {ep.name: ep for ep in entry_points(group=group)}
    if name not in found:
        known = ", ".join(sorted(found)) or "none"
        raise UnknownConnector(f"no {group} entry named {name!r} (installed: {known})")
    return found[name].load()


def load_connector(name: str) -> type[Connector]:
    """The connector class registered under `name` in the ``leadpulse.connectors`` entry-point group."""
    return _entry_point("leadpulse.connectors", name)


def load_settings_model(name: str) -> type[BaseModel]:
    """The model of a CRM's ``crm.connection`` block, from the ``leadpulse.settings`` entry-point group.

    Kept apart from the connector class so a tenant file can be validated without importing a CRM's SDK.
    """
    return _entry_point("leadpulse.settings", name)
