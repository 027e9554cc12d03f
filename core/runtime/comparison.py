"""A proposed scoring section against the tenant's current one, over every stored contact, offline: where each
contact's band would go and which lifecycle status each rule set would give it.

Bands are paired by position when both ladders have as many bands (band i of the current ladder is band i of the
proposed one, whatever their names), so renaming a band moves nobody; ladders of different lengths pair the bands
that keep their names, and a contact whose band has no pair has moved.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from leadpulse.core.config.tenant import TenantConfig
from leadpulse.core.engine.rules import ScoringConfig
from leadpulse.core.engine.scoring import Engine, ScoreCard
from leadpulse.core.model import Contact, Lifecycle
from leadpulse.core.runtime.pipeline import STATUS_ORDER, scoring_in_crm_order
from leadpulse.core.store.store import Store


@dataclass(frozen=True, slots=True)
class ContactMove:
    """A contact the proposed rules would move to another band (as the bands pair) or to another lifecycle status
    than the current rules would give it. Statuses are the CRM's values; a rule set that moves no status leaves the
    one leadpulse set last, or else the CRM's as last pulled (None when there is none)."""

    contact_id: str
    name: str | None
    band: tuple[str, str]
    total: tuple[float, float]
    status: tuple[str | None, str | None]
    band_moved: bool

    @property
    def status_moved(self) -> bool:
        return self.status[0] != self.status[1]


@dataclass(frozen=True)
class BandPairs:
    """Which proposed band each current band is taken to be (see the module docstring)."""

    pairs: Mapping[str, str]
    by_position: bool

    @classmethod
    def of(cls, current: Sequence[str], proposed: Sequence[str]) -> BandPairs:
        if len(current) == len(proposed):
            return cls(dict(zip(current, proposed, strict=True)), list(current) != list(proposed))
        return cls({name: name for name in current if name in proposed}, False)

    def moved(self, current: str, proposed: str) -> bool:
        return self.pairs.get(current) != proposed


@dataclass(frozen=True)
class Comparison:
    """What the proposed rules would change for the stored contacts: the contacts per (current band, proposed band),
    how the bands pair, how many contacts would move band and status, and (when listed) each contact that moves."""

    bands: Counter[tuple[str, str]]
    pairs: BandPairs
    contacts: int
    band_moves: int
    status_moves: int
    #: whether either rule set has lifecycle transitions, without which no status moves
    lifecycle: bool
    moves: tuple[ContactMove, ...] = field(default=())


def compare_rules(store: Store, tenant: TenantConfig, proposed: ScoringConfig, as_of: datetime, *,
                  listed: bool = False) -> Comparison:
    """Score every stored contact at `as_of` with `tenant`'s rules and with `proposed`, and compare the two; with
    `listed`, keep each contact that would move (see `ContactMove`).

    Statuses are decided as a sync would decide them: against the status leadpulse last set for the contact and the
    CRM's status order as the last sync read it.
    """
    order = store.crm_fact(STATUS_ORDER)
    now = Engine(scoring_in_crm_order(tenant, order))
    new = Engine(scoring_in_crm_order(tenant.model_copy(update={"scoring": proposed}), order))
    pairs = BandPairs.of(now.band_names, new.band_names)
    bands: Counter[tuple[str, str]] = Counter()
    moves: list[ContactMove] = []
    band_moves = status_moves = 0
    for chunk in store.scoring_chunks(all=True):
        for contact, rows, before in chunk:
            last_set = Lifecycle(before.status) if before is not None and before.status else None
            old, fresh = now.score_rows(contact, rows, as_of), new.score_rows(contact, rows, as_of)
            bands[old.band, fresh.band] += 1
            move = ContactMove(contact.id, contact.name, (old.band, fresh.band), (old.total, fresh.total),
                               (_status(now, contact, old, last_set), _status(new, contact, fresh, last_set)),
                               pairs.moved(old.band, fresh.band))
            band_moves += move.band_moved
            status_moves += move.status_moved
            if listed and (move.band_moved or move.status_moved):
                moves.append(move)
    lifecycle = any(engine.config.lifecycle and engine.config.lifecycle.transitions for engine in (now, new))
    return Comparison(bands, pairs, sum(bands.values()), band_moves, status_moves, lifecycle, tuple(moves))


def _status(engine: Engine, contact: Contact, card: ScoreCard, last_set: Lifecycle | None) -> str | None:
    """The CRM value of the status `engine` would leave `contact` at."""
    change = engine.decide_status(contact, card, last_set)
    if change is not None:
        return change.crm_value
    values = engine.config.lifecycle.values if engine.config.lifecycle else {}
    # What leadpulse set last may not have been pulled back yet (or the CRM is a file): it is the status that holds.
    held = values.get(last_set) if last_set is not None else None
    return held or contact.status or None
