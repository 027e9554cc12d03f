"""What scoring one contact decides against what was saved and last written: its card, a status move, the CRM
values that changed and a task, and the outbox rows that carry them to the CRM."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, NamedTuple

from leadpulse.core.config.tenant import Output, TenantConfig
from leadpulse.core.contract import PropertyWrite, TaskRequest
from leadpulse.core.engine.scoring import Engine, ScoreCard, StatusChange, fingerprint_of
from leadpulse.core.model import Contact, ContactKind, Lifecycle
from leadpulse.core.store.outbox import WritePriority
from leadpulse.core.store.store import PriorScore, Store


@dataclass(frozen=True, slots=True)
class Decision:
    """What scoring one contact decided: its card, a status move, the CRM values that changed, a task."""

    card: ScoreCard
    status: StatusChange | None
    changed: Mapping[str, Any]
    written: Mapping[str, Any]
    task_event: str | None
    #: the card equals the saved score and nothing new is owed to the CRM
    unchanged: bool = False
    #: how far the total moved from the score last queued for the CRM (see `score_move`)
    score_move: float = 0.0


class Call(NamedTuple):
    """What a new score calls for against what was saved and last written (see `called_for`): a `Decision` but its
    card, field by field."""

    status: StatusChange | None
    changed: Mapping[str, Any]
    written: Mapping[str, Any]
    task_event: str | None
    unchanged: bool
    score_move: float


_UNSET = object()


def decide(
    tenant: TenantConfig,
    engine: Engine,
    contact: Contact,
    card: ScoreCard,
    before: PriorScore | None,
    decisions: str,
    values_for: Callable[[ScoreCard], dict[str, Any]] | None = None,
    *,
    same_card: bool | None = None,
) -> Decision:
    """Decide from one contact's new `card` (see `Engine.score_rows`), against what was saved and last written,
    what the CRM must be told. `same_card`, when given, is whether `card` equals the saved score (see
    `PriorScore.same_card`).

    A contact whose inputs, card and `decisions` fingerprint (see `decisions_fingerprint`) are all as when its
    score was saved is known to call for nothing new, without deciding again.
    """
    if same_card is None:
        same_card = before is not None and before.same_card(card)
    # a transition on fields or an event may hold while the card is as saved (a deal won that no rule scores):
    # the store does not keep them, so such a card is decided again (forward only, it moves nothing twice)
    if same_card and before is not None and before.settled(decisions) and not card.events:
        return Decision(card, None, _NOTHING, _NOTHING, None, unchanged=True)
    status = engine.decide_status(contact, card, last_set(before))
    values = values_for(card) if values_for is not None else tenant.writeback.values_for(card)
    return Decision(card, *called_for(tenant, engine.band_names, before, card.total, card.band, status, values,
                                      same_card))


def last_set(before: PriorScore | None) -> Lifecycle | None:
    """The lifecycle stage leadpulse set last, by the saved score `before`."""
    return Lifecycle(before.status) if before is not None and before.status else None


def called_for(
    tenant: TenantConfig,
    band_names: Sequence[str],
    before: PriorScore | None,
    total: float,
    band: str,
    status: StatusChange | None,
    values: dict[str, Any],
    same_card: bool,
) -> Call:
    """What a new score calls for (see `decide`), from its `total`, `band`, the lifecycle move it calls for
    (`status`) and its CRM `values` (see `WritebackConfig.values_for`; the status is added to them here);
    `same_card` is whether its card equals the saved score `before`."""
    if status is not None and tenant.writeback.status_property and tenant.writeback.write_status:
        values[tenant.writeback.status_property] = status.crm_value
    written = before.written_values() if before is not None else {}
    changed = {name: value for name, value in values.items() if written.get(name, _UNSET) != value}
    event = tenant.tasks.trigger(band_names, before.band if before else None, band, status,
                                 before.status if before else None)
    same = (
        before is not None and not changed and (status is None or status.to.value == before.status) and same_card
    )
    return Call(status, changed, {**written, **values} if changed else written, event, same,
                score_move(tenant, total, before, written))


def score_move(tenant: TenantConfig, total: float, before: PriorScore | None, written: Mapping[str, Any]) -> float:
    """How far `total` is from the score last queued for the CRM (`written` holds its values as last queued), or
    from the saved total when the tenant writes no score; a contact never scored before moves by its whole score."""
    if before is None:
        return abs(total)
    name = tenant.writeback.properties.get(Output.SCORE)
    last = written.get(name) if name else None
    if isinstance(last, bool) or not isinstance(last, int | float):
        last = before.total
    return abs(total - last)


def write_priority(tenant: TenantConfig, decision: Decision | Call) -> WritePriority:
    """How much a decision's write matters to a push that cannot afford every write: whether it carries the
    lifecycle status (see `WritePriority`), and its score move."""
    status = tenant.writeback.status_property
    carries = bool(status and tenant.writeback.write_status and status in decision.changed)
    return WritePriority(carries, decision.score_move)


_NOTHING: Mapping[str, Any] = MappingProxyType({})


def decisions_fingerprint(tenant: TenantConfig, engine: Engine) -> str:
    """A digest of everything that turns a score card into CRM writes, a status move and a task: the lifecycle
    and bands the engine ranks with, the tenant's write-back mapping and task policy."""
    document = {
        "lifecycle": engine.config.lifecycle.model_dump(mode="json") if engine.config.lifecycle else None,
        "bands": engine.band_names,
        "writeback": tenant.writeback.model_dump(mode="json"),
        # what a task says and when it is due are set when it is queued: they call for no new decision
        "tasks": tenant.tasks.model_dump(mode="json", include={"enabled", "on_bands", "on_statuses"}),
    }
    return fingerprint_of(document)


def property_write(
    tenant: TenantConfig, contact_id: str, kind: ContactKind, values: Mapping[str, Any]
) -> PropertyWrite:
    """The write of a contact's changed values, keyed per contact so a newer write merges into a pending one."""
    return PropertyWrite(f"lp-{tenant.name}-{contact_id}-props", contact_id, kind, dict(values))


def task_request(store: Store, tenant: TenantConfig, contact: Contact, decision: Decision) -> TaskRequest:
    """The task for a decision's event, keyed ``lp-<tenant>-<contact>-task-<n>``: the contact's n-th task.

    The key leaves the event out on purpose. Which trigger names one move (a band entered, a status reached) depends
    on the CRM's status when it is decided, and a store restored from an older copy decides it again after
    leadpulse's own status write reached the CRM: the status move is no move then, and the band entry calls for the
    task instead. Numbered per contact, the task decided again has the key of the one the CRM holds, and is found.
    """
    prefix = f"lp-{tenant.name}-{contact.id}-task-"
    key = f"{prefix}{store.outbox.task_count(prefix) + 1}"
    status = decision.status.crm_value if decision.status else None
    subject, body = tenant.tasks.render(contact, decision.card, status)
    return TaskRequest(
        key=key,
        contact_id=contact.id,
        contact_kind=contact.kind,
        owner_id=contact.owner_id,
        subject=subject,
        body=body,
        priority=tenant.tasks.priority,
        due_at=decision.card.as_of + tenant.tasks.due_in,
    )

