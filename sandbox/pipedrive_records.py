"""What a Pipedrive company holds beyond persons and activities, drawn from the tenant: deleted and merged
persons, organizations and deals.

- A person's *fate*: about 1.5% of generated persons were deleted and 1% were merged into a person a few
  ids below them, each at their own last touch (so a deletion or merge is the last change a person saw,
  and a merge is the survivor's last touch too). Gone persons are not listed; ``GET /persons/{id}`` shows
  them with ``is_deleted: true`` (update_time is the deletion time). A merged person's activities and
  deal belong to the survivor from the merge on.
- Organizations: one per synthetic company (id ``company index + 1``); a person's ``org_id`` is their
  company's. Industry, employee count and annual revenue are organization custom fields, as Pipedrive's
  own organizationFields example keeps Industry.
- Deals: at most one per person, with the person's id: everyone who converted won one (``won_time``
  between conversion and last touch), a third of those in lifecycle ``sql`` lost one, and those in
  lifecycle ``opportunity`` have an open one. Every stamp lies between the person's creation and last touch.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from .state import Crm
from .synth import DAY_MS, YEAR_MS, Company, mix


class Fate(str, Enum):
    KEPT = "kept"
    DELETED = "deleted"
    MERGED = "merged"


DELETED_SHARE, MERGED_SHARE = 0.015, 0.01
MERGE_REACH = 3
"""A merged person's survivor is one of the three persons below it."""
PIPELINE_ID = 1
STAGES = {"open": 3, "won": 5, "lost": 5}
LOST_REASONS = ("Price", "Timing", "Went with a competitor", "No budget")


class Fates:
    """Which generated persons are deleted or merged, and into whom."""

    def __init__(self, crm: Crm):
        self.crm = crm
        self.seed = crm.tenant.seed

    def _draw(self, index: int) -> Fate:
        if not 0 <= index < self.crm.tenant.size:
            return Fate.KEPT  # persons added later have no history
        share = mix(self.seed, index, 0xFA7E) / 2.0**64
        if share < DELETED_SHARE:
            return Fate.DELETED
        return Fate.MERGED if share < DELETED_SHARE + MERGED_SHARE else Fate.KEPT

    def _candidate(self, index: int) -> int:
        return index - 1 - mix(self.seed, index, 0x5A1E) % MERGE_REACH

    def fate(self, index: int) -> Fate:
        drawn = self._draw(index)
        if drawn is not Fate.MERGED:
            return drawn
        survivor = self._candidate(index)
        tenant = self.crm.tenant
        if survivor < 0 or self._draw(survivor) is not Fate.KEPT \
                or tenant.last_touch_ms(survivor) < tenant.last_touch_ms(index):
            return Fate.KEPT
        return Fate.MERGED

    def gone(self, index: int) -> bool:
        return self.fate(index) is not Fate.KEPT

    def survivor(self, index: int) -> int:
        """The person whose records this one's are now: itself unless merged."""
        return self._candidate(index) if self.fate(index) is Fate.MERGED else index

    def merged_into(self, index: int) -> list[int]:
        """Persons merged into this one."""
        return [other for other in range(index + 1, index + 1 + MERGE_REACH)
                if other < self.crm.tenant.size and self.fate(other) is Fate.MERGED and self._candidate(other) == index]

    def gone_ms(self, index: int) -> int:
        """When a gone person was deleted or merged: their last touch (a merge is the survivor's last touch)."""
        tenant = self.crm.tenant
        return tenant.last_touch_ms(self._candidate(index) if self.fate(index) is Fate.MERGED else index)


@dataclass(frozen=True)
class Organization:
    id: int
    name: str
    owner_id: int
    add_ms: int
    update_ms: int
    company: Company


def organization(crm: Crm, org_id: int) -> Organization | None:
    """Organization ``org_id`` (a synthetic company), or None when there is none."""
    tenant = crm.tenant
    if not 1 <= org_id <= tenant.companies:
        return None
    company = tenant.company(org_id - 1)
    created = tenant.anchor_ms - 2 * YEAR_MS - DAY_MS - int(YEAR_MS * (mix(tenant.seed, org_id, 0x0A6) / 2.0**64))
    updated = tenant.anchor_ms - int((tenant.anchor_ms - created) * (mix(tenant.seed, org_id, 0x0A7) / 2.0**64) ** 3)
    owner = tenant.owners[mix(tenant.seed, org_id, 0x0A8) % len(tenant.owners)].id
    return Organization(org_id, company.name, owner, created, updated, company)


def company_org_id(crm: Crm, index: int) -> int | None:
    """The organization a generated person belongs to (their company), None for persons added later."""
    if not 0 <= index < crm.tenant.size:
        return None
    return crm.tenant.person(index).company.index + 1


@dataclass(frozen=True)
class Deal:
    """The deal a person has: its status and when it opened, last changed and closed."""

    id: int
    person_index: int
    status: str
    add_ms: int
    update_ms: int
    close_ms: int | None
    value: int
    lost_reason: str | None


def deal_of(crm: Crm, index: int) -> Deal | None:
    """The person's deal as generated (id: the person's), or None when they have none."""
    tenant = crm.tenant
    if not 0 <= index < tenant.size:
        return None
    person = tenant.fields(index)
    created, touched = tenant.timeline(index)

    def between(low: int, high: int, salt: int) -> int:
        return low + int((high - low) * (mix(tenant.seed, index, salt) / 2.0**64))

    value = round(1_000 + person["employees"] * (10 + mix(tenant.seed, index, 0xDEA1) % 40), -2)
    if person["converted"]:
        won = between(person["converted_ms"], touched, 0xDEA2)
        opened = between(created, person["converted_ms"], 0xDEA3)
        return Deal(index + 1, index, "won", opened, won, won, value, None)
    if person["lifecycle"] == "sql" and mix(tenant.seed, index, 0xDEA4) % 3 == 0:
        lost = between(created, touched, 0xDEA5)
        reason = LOST_REASONS[mix(tenant.seed, index, 0xDEA6) % len(LOST_REASONS)]
        return Deal(index + 1, index, "lost", between(created, lost, 0xDEA3), lost, lost, value, reason)
    if person["lifecycle"] == "opportunity":
        return Deal(index + 1, index, "open", between(created, touched, 0xDEA3), touched, None, value, None)
    return None
