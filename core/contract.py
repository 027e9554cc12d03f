"""The connector contract: everything the core knows about a CRM, and everything a connector may rely on.

A connector translates between one CRM's API (through that CRM's SDK) and the vendor-neutral model
(`leadpulse.core.model`). It never scores and never touches the store: the pipeline calls it to pull pages and
to push outbox batches. Its failures are the `ConnectorError` tree of `leadpulse.core.errors`; a bad *record* is
never an exception: a malformed pulled record goes into `Page.skipped`, a refused write comes back as a failed
`WriteResult`.

Connectors are found by name through the ``leadpulse.connectors`` entry-point group, and the models of their
``crm.connection`` blocks through ``leadpulse.settings`` (see `connector_class`, `settings_model`), so a third
party can ship one and the core never imports a connector module.
"""

from __future__ import annotations

import abc
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from importlib.metadata import entry_points
from typing import Any, ClassVar, NamedTuple, Protocol, TypeVar

from pydantic import Field

from leadpulse.core.clock import Clock, SystemClock
from leadpulse.core.errors import QuotaExhausted, UnknownConnector
from leadpulse.core.model import Activity, Contact, ContactKind, Outcome
from leadpulse.core.strict import Strict


@dataclass(frozen=True, slots=True)
class SkippedRecord:
    """A pulled record that could not be understood; it is stored for the operator and the run goes on."""

    stream: str
    record_id: str | None
    reason: str


@dataclass(frozen=True, slots=True)
class GoneContact:
    """A contact the CRM no longer lets leadpulse score or write: deleted, or converted into another record (a
    Salesforce Lead become a Contact). It is kept with its history, never scored or written again, and what was
    still owed to it is parked with `reason`.

    `merged_into` is the record the person lives on as, when the tenant scores that record too (the Contact a
    converted Lead became): the gone contact's activities move to it, now and whenever they are pulled later under
    the gone contact's id, and its score history is copied to it (the gone contact keeps its own).
    """

    contact_id: str
    reason: str
    merged_into: str | None = None


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
    gone: Sequence[GoneContact] = ()


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
    is looked up by its idempotency key (`Connector.find_tasks`) before it is ever sent again. `permanent` marks a
    refusal no retry can change (the record is read-only or deleted, a value the field cannot take): it is parked at
    once with its reason instead of being tried again.
    """

    key: str
    ok: bool
    remote_id: str | None = None
    error: str | None = None
    outcome_unknown: bool = False
    permanent: bool = False


Item = TypeVar("Item", PropertyWrite, TaskRequest)


def one_call_each(items: Sequence[Item], send: Callable[[Item], WriteResult]) -> list[WriteResult]:
    """`send` each item, one call each, for a connector whose CRM takes no batches. When the allowance runs out
    part-way, the `QuotaExhausted` carries the results of the items already carried out, so the run settles them
    and the rest stay owed, unsent."""
    results: list[WriteResult] = []
    for item in items:
        try:
            results.append(send(item))
        except QuotaExhausted as exc:
            exc.settled = tuple(results)
            raise
    return results


@dataclass(frozen=True, slots=True)
class PushCapacity:
    """What one run's push can still afford of a budget the CRM counts its calls against: `units` left, and what
    one write (`write_cost`) and one task (`task_cost`) take of them, in the same unit. Pipedrive, for one: the
    tokens left of its daily budget, and the tokens a person update and an activity create cost.

    A cost is all the item takes, look-ups included, rounded up to whole units. `budget` names what is counted and
    `unit` its unit (plural), as the run's note about what the push deferred says them ("the CRM's daily token
    budget leaves 1,200 tokens"). A CRM that also caps how many write calls a day may make (Pipedrive: an API
    token's POST/PUT calls) gives `calls`, the writes and tasks it leaves in all, and `calls_budget` names it.

    :raises ValueError: if `units` or `calls` is negative or a cost is below 1.
    """

    units: int
    write_cost: int = 1
    task_cost: int = 1
    budget: str = "the CRM's budget"
    unit: str = "units"
    calls: int | None = None
    calls_budget: str = "the CRM's daily write calls"

    def __post_init__(self) -> None:
        if self.units < 0 or self.write_cost < 1 or self.task_cost < 1 or (self.calls or 0) < 0:
            raise ValueError(f"a push capacity needs units >= 0, calls >= 0 and costs >= 1, not units={self.units}, "
                             f"calls={self.calls}, write_cost={self.write_cost}, task_cost={self.task_cost}")


def _unobserved(status: int) -> None:
    pass


class JournaledCall(NamedTuple):
    """One API call as a `CallJournal` kept it: when it was sent, and answered (None: no answer was recorded, the
    process ended while it was in flight)."""

    scope: str
    sent_at: datetime
    answered_at: datetime | None


class CallJournal(Protocol):
    """Where API calls are noted as they are sent and answered, so that a process started after another one was
    killed knows the part of the CRM's rate window that one spent (the tenant's store keeps them)."""

    def sent(self, scope: str, at: datetime) -> int:
        """Note a call sent; the mark returned is handed to `answered`."""
        ...

    def answered(self, mark: int, at: datetime) -> None: ...

    def since(self, moment: datetime) -> Sequence[JournaledCall]:
        """The calls sent at or after `moment`."""
        ...


class Unjournaled:
    """A journal that keeps nothing: the budget then knows only the calls of its own process."""

    def sent(self, scope: str, at: datetime) -> int:
        return 0

    def answered(self, mark: int, at: datetime) -> None:
        pass

    def since(self, moment: datetime) -> Sequence[JournaledCall]:
        return ()


@dataclass
class CallStats:
    """API calls made by one connector in one run, by status code (0 for a dropped connection).

    `observe` hears of every answer as it is counted (the runtime feeds its metrics from it); `journal` keeps
    each call's send and answer times beyond the process (see `CallJournal`).
    """

    by_status: Counter[int] = field(default_factory=Counter)
    rate_limited: int = 0
    observe: Callable[[int], None] = _unobserved
    journal: CallJournal = field(default_factory=Unjournaled)

    @property
    def total(self) -> int:
        return sum(self.by_status.values())

    def record(self, status: int) -> None:
        self.by_status[status] += 1
        if status == 429:
            self.rate_limited += 1
        self.observe(status)


class CrmSettings(Strict):
    """The ``crm.connection`` block of a tenant file, as every CRM's settings model extends it: the secrets it
    needs and may use, and a request timeout. Models import no SDK, so a tenant file is validated anywhere."""

    #: secrets the connector cannot work without
    required_secrets: ClassVar[tuple[str, ...]] = ()
    #: every secret name the connector understands; any other name in ``crm.secrets`` is refused
    known_secrets: ClassVar[tuple[str, ...]] = ()

    timeout_seconds: float = Field(30.0, gt=0)

    def needed_secrets(self) -> tuple[str, ...]:
        """The secrets these particular settings need (some depend on the chosen auth flow)."""
        return self.required_secrets


S = TypeVar("S", bound=CrmSettings)


@dataclass(frozen=True)
class ConnectorContext:
    """Everything a connector is given for one tenant.

    `settings` is the tenant file's ``crm.connection`` block, already validated against the connector's
    `settings_model`; `secrets` holds the resolved values of the secrets it names (never log them);
    `field_map` maps neutral field names (title, employees, ...) to the CRM's property names to read;
    `status_property` is the property the tenant keeps the lifecycle status in (``writeback.status_property``), for
    a CRM with no lifecycle of its own to read it from. A connector makes no call beyond `call_allowance` (its
    `ApiCaller` raises `QuotaExhausted`).
    """

    tenant: str
    settings: CrmSettings
    secrets: Mapping[str, str]
    field_map: Mapping[str, str] = field(default_factory=dict)
    clock: Clock = field(default_factory=SystemClock)
    stats: CallStats = field(default_factory=CallStats)
    #: API calls this run may make before the tenant's own daily limit (``daily_limit``) is reached: what the
    #: limit leaves of the last 24 hours. None when the tenant sets no such limit.
    call_allowance: int | None = None
    status_property: str | None = None

    def settings_of(self, model: type[S]) -> S:
        """`settings` as the connector's own model, which validated them when the tenant file was read.

        :raises TypeError: if they are another CRM's settings (the registry paired the wrong connector).
        """
        if not isinstance(self.settings, model):
            raise TypeError(f"tenant {self.tenant!r}: connection settings are {type(self.settings).__name__}, "
                            f"not {model.__name__}")
        return self.settings


class Connector(abc.ABC):
    """One CRM behind the contract. Instances serve one tenant for one run."""

    #: the name tenant files use in ``crm.kind`` and the entry point is registered under
    name: ClassVar[str]
    #: pydantic model of the ``crm.connection`` block; unknown keys must be refused (``extra="forbid"``)
    settings_model: ClassVar[type[CrmSettings]]
    #: largest batch `write_properties` and `create_tasks` accept in one call
    write_batch_size: ClassVar[int] = 1
    task_batch_size: ClassVar[int] = 1

    def __init__(self, context: ConnectorContext) -> None:
        self.context = context

    def write_batch(self, pending: int) -> int:
        """How many writes `write_properties` takes a call when `pending` are due this run: `write_batch_size`,
        unless the CRM has a cheaper way for many (a bulk job)."""
        return self.write_batch_size

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
        """Make sure every property in `specs` exists, creating the missing ones where the CRM allows it, and
        whatever else writes and tasks need (HubSpot: a task property holding each task's key). Called before
        anything is pushed.

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
    def find_tasks(self, tasks: Sequence[TaskRequest]) -> Mapping[str, str]:
        """The CRM ids of the `tasks` (at most `task_batch_size`) the CRM already holds, by idempotency key, in as
        few calls as the CRM allows (one where it can; a task's contact may narrow the look-up). Every batch of
        tasks is looked up before it is created (unless `creates_tasks_once`), so a task the store forgot (restored
        from an older copy) is not made twice, and an unknown outcome is settled in the same run.

        :raises TransientError: if retries run out.
        """

    def creates_tasks_once(self) -> bool:
        """True when `create_tasks` cannot make a second task for a key whatever happens (an upsert by the key):
        then no look-up comes before creating (an unknown outcome is still looked up, as for any connector)."""
        return False

    def tasks_seen(self, tasks: Sequence[TaskRequest]) -> Mapping[str, str] | None:
        """The CRM ids of the `tasks` this run's pull saw in the CRM, by idempotency key, when that pull read back
        every task leadpulse could have made before the run started (its activities stream, from the stored
        cursor less the look-back, so a store restored from an older copy reads again what it forgot); None when
        it cannot tell (the CRM's tasks are not read back, or this run resumed a read another began), and the batch
        is then looked up with `find_tasks`. Asked, instead of `find_tasks`, only for tasks never handed over since
        they were last pending; it makes no call."""
        return None

    def push_capacity(self) -> PushCapacity | None:
        """What this run's push can still afford, asked once a run right before writes and tasks are sent, after
        `ensure_properties` and the look-up of tasks whose outcome was unknown (which may have spent some of it),
        and only when something is due.

        :returns: None (the default) when the CRM sets no budget a push must fit: everything due is sent, writes
            then tasks, oldest first. Otherwise the units left and what a write and a task cost: the push sends what
            they afford, in this order: the writes that carry a lifecycle status change, then the tasks, then the
            other writes, largest score move first; the rest stays in the outbox, untried and unrefused, for the
            next run, and the run counts and notes it as deferred. A deferral is planned, not a failure: it leaves
            the run's outcome as it is.
        :raises TransientError: if the CRM is asked and retries run out.
        """
        return None

    def lookup_lag(self) -> timedelta:
        """How long after a task is created `find_tasks` may still miss it (a CRM search indexes writes late): a task
        handed over more recently and not found is looked up again later, not created again."""
        return timedelta(0)

    def close(self) -> None:  # noqa: B027 - optional: a connector holding no session has nothing to release
        """Release sessions and pools."""


def _entry_point(group: str, name: str) -> Any:
    found = {ep.name: ep for ep in entry_points(group=group)}
    if name not in found:
        known = ", ".join(sorted(found)) or "none"
        raise UnknownConnector(f"no {group} entry named {name!r} (installed: {known})")
    return found[name].load()


#: Makes the connector of one run from its context: a `Connector` class, or anything called like one.
ConnectorFactory = Callable[[ConnectorContext], Connector]


def connector_class(kind: str) -> ConnectorFactory:
    """The connector registered under `kind` in the ``leadpulse.connectors`` entry-point group.

    :raises UnknownConnector: naming the kinds that are installed, if none is registered under `kind`.
    """
    found: ConnectorFactory = _entry_point("leadpulse.connectors", kind)
    return found


def connector_installed(kind: str) -> bool:
    """Whether a connector is registered under `kind` (without importing it, or its CRM's SDK)."""
    return any(ep.name == kind for ep in entry_points(group="leadpulse.connectors"))


def settings_model(kind: str) -> type[CrmSettings]:
    """The model of a CRM's ``crm.connection`` block, from the ``leadpulse.settings`` entry-point group.

    Kept apart from the connector class so a tenant file can be validated without importing a CRM's SDK.

    :raises UnknownConnector: naming the kinds that are installed, if none is registered under `kind`.
    """
    found: type[CrmSettings] = _entry_point("leadpulse.settings", kind)
    return found
