"""What a Pipedrive company holds beyond persons and activities, drawn from the tenant: deleted and merged
persons, organizations and deals.

- A person's *fate*: about 1.5% of generated persons were deleted and 1% were merged into a person a few
  ids below them, each at their own last touch (so a deletion or merge is the last change a person saw,
  and a merge is the survivor's last touch too). A client or a test may delete or merge a live person
  later, while a sync runs (:meth:`Fates.delete`, :meth:`Fates.merge`); such a fate is the same in every
  other respect. Gone persons are not listed; ``GET /persons/{id}`` shows them with ``is_deleted: true``
  (update_time is the deletion time). A merged person's activities and deal belong to the survivor from
  the merge on (and to the survivor's survivor, should it be merged in turn); those of a deleted person,
  or of one merged into a person deleted since, are deleted.
- Organizations: one per synthetic company (id ``company index + 1``); a person's ``org_id`` is their
  company's. Industry, employee count and annual revenue are organization custom fields, as Pipedrive's
  own organizationFields example keeps Industry. A client or a test may change an organization later
  (:class:`OrganizationEdits`): its update time moves to the change, its persons' does not.
- Deals: at most one per person, with the person's id: everyone who converted won one (``won_time``
  between conversion and last touch), a third of those in lifecycle ``sql`` lost one, and those in
  lifecycle ``opportunity`` have an open one. Every stamp lies between the person's creation and last touch.
"""
from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any

from .pipedrive_fields import ADDRESS_PARTS
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


@dataclass(frozen=True)
class LateFate:
    """A fate given after generation: when, and for a merge, into whom."""

    fate: Fate
    at_ms: int
    into: int | None = None


class Fates:
    """Which persons are deleted or merged, into whom and when: drawn from the seed, or given later."""

    def __init__(self, crm: Crm):
        self.crm = crm
        self.seed = crm.tenant.seed
        self._late: dict[int, LateFate] = {}
        self._absorbed: dict[int, list[int]] = {}
        """Survivor index: the persons merged into it after generation."""
        self._lock = threading.Lock()

    def _draw(self, index: int) -> Fate:
        if not 0 <= index < self.crm.tenant.size:
            return Fate.KEPT  # persons added later have no history
        share = mix(self.seed, index, 0xFA7E) / 2.0**64
        if share < DELETED_SHARE:
            return Fate.DELETED
        return Fate.MERGED if share < DELETED_SHARE + MERGED_SHARE else Fate.KEPT

    def _candidate(self, index: int) -> int:
        return index - 1 - mix(self.seed, index, 0x5A1E) % MERGE_REACH

    def _seeded(self, index: int) -> Fate:
        drawn = self._draw(index)
        if drawn is not Fate.MERGED:
            return drawn
        survivor = self._candidate(index)
        tenant = self.crm.tenant
        if survivor < 0 or self._draw(survivor) is not Fate.KEPT \
                or tenant.last_touch_ms(survivor) < tenant.last_touch_ms(index):
            return Fate.KEPT
        return Fate.MERGED

    def fate(self, index: int) -> Fate:
        late = self._late.get(index)
        return late.fate if late else self._seeded(index)

    def gone(self, index: int) -> bool:
        return self.fate(index) is not Fate.KEPT

    def _into(self, index: int) -> int:
        """Whom a merged person was merged into."""
        late = self._late.get(index)
        return late.into if late and late.into is not None else self._candidate(index)

    def survivor(self, index: int) -> int:
        """The person whose records this one's are now: itself unless merged (followed through later merges)."""
        while self.fate(index) is Fate.MERGED:
            index = self._into(index)
        return index

    def merged_into(self, index: int) -> list[int]:
        """Persons whose records are now this one's: merged into it, or into one of those."""
        seeded = [other for other in range(index + 1, index + 1 + MERGE_REACH)
                  if other < self.crm.tenant.size and self._seeded(other) is Fate.MERGED
                  and self._candidate(other) == index]
        direct = seeded + self._absorbed.get(index, [])
        return direct + [deeper for other in direct for deeper in self.merged_into(other)]

    def gone_ms(self, index: int) -> int:
        """When a gone person was deleted or merged: given later, then; drawn, their last touch (a merge is the
        survivor's last touch)."""
        late = self._late.get(index)
        if late:
            return late.at_ms
        tenant = self.crm.tenant
        return tenant.last_touch_ms(self._candidate(index) if self.fate(index) is Fate.MERGED else index)

    def moved_ms(self, index: int) -> int | None:
        """When the person's records last changed hands (the last merge on their way to the survivor), None when
        they never did."""
        moved = None
        while self.fate(index) is Fate.MERGED:
            moved = max(moved or 0, self.gone_ms(index))
            index = self._into(index)
        return moved

    def records_deleted(self, index: int) -> bool:
        """Whether the person's activities and deal are deleted: theirs, or their survivor's, was deleted."""
        fate = self.fate(index)
        if fate is Fate.MERGED:
            fate = self.fate(self.survivor(index))
        return fate is Fate.DELETED

    def settled_ms(self, index: int) -> int | None:
        """When the person's records last changed hands or were deleted; None when neither happened."""
        holder, moved = self.survivor(index), self.moved_ms(index)
        if self.fate(holder) is Fate.DELETED:
            return max(moved or 0, self.gone_ms(holder))
        return moved

    def changed_since(self, low_ms: int) -> list[int]:
        """Persons deleted or merged after generation at or after ``low_ms``."""
        return [index for index, late in list(self._late.items()) if late.at_ms >= low_ms]

    def changed_later(self) -> set[int]:
        """Persons whose records a fate given after generation moved or deleted: those deleted or merged since,
        and everyone merged into them. Every other person's records stand as the drawn fates left them."""
        late = list(self._late)
        return {*late, *(merged for index in late for merged in self.merged_into(index))}

    def delete(self, index: int, at_ms: int) -> None:
        """Delete a live person at ``at_ms``. :raises ValueError: when the person is already gone."""
        with self._lock:
            self._check_live(index)
            self._late[index] = LateFate(Fate.DELETED, at_ms)

    def merge(self, index: int, into: int, at_ms: int) -> None:
        """Merge a live person into another live one at ``at_ms``.

        :raises ValueError: when either is gone, or both are the same person.
        """
        with self._lock:
            if index == into:
                raise ValueError(f"person index {index} cannot be merged into itself")
            self._check_live(index)
            self._check_live(into)
            self._late[index] = LateFate(Fate.MERGED, at_ms, into)
            self._absorbed.setdefault(into, []).append(index)

    def _check_live(self, index: int) -> None:
        if self.gone(index):
            raise ValueError(f"person index {index} is already {self.fate(index).value}")


@dataclass(frozen=True)
class Organization:
    """An organization as it stands: ``company`` is what it was drawn from, the other fields are current."""

    id: int
    name: str
    owner_id: int
    add_ms: int
    update_ms: int
    company: Company
    custom: Mapping[str, Any] = field(default_factory=dict)
    """Custom field values by the fields' store keys (``industry``, ``employees``, ``annual_revenue``...)."""
    address: Mapping[str, Any] | None = None
    visible_to: int = 3
    label_ids: tuple[int, ...] = ()


def organization(crm: Crm, org_id: int) -> Organization | None:
    """Organization ``org_id`` (a synthetic company) as drawn, or None when there is none."""
    tenant = crm.tenant
    if not 1 <= org_id <= tenant.companies:
        return None
    company = tenant.company(org_id - 1)
    created = tenant.anchor_ms - 2 * YEAR_MS - DAY_MS - int(YEAR_MS * (mix(tenant.seed, org_id, 0x0A6) / 2.0**64))
    updated = tenant.anchor_ms - int((tenant.anchor_ms - created) * (mix(tenant.seed, org_id, 0x0A7) / 2.0**64) ** 3)
    owner = tenant.owners[mix(tenant.seed, org_id, 0x0A8) % len(tenant.owners)].id
    custom = {"industry": company.industry, "employees": company.employees,
              "annual_revenue": {"value": company.annual_revenue, "currency": "USD"}}
    address = dict.fromkeys(ADDRESS_PARTS) | {"value": company.country, "country": company.country,
                                              "formatted_address": company.country}
    return Organization(org_id, company.name, owner, created, updated, company, custom, address)


class OrganizationEdits:
    """Organizations as clients and tests changed them: the drawn ones with every change laid over them."""

    def __init__(self, crm: Crm):
        self.crm = crm
        self._edited: dict[int, Organization] = {}
        self._lock = threading.Lock()

    def get(self, org_id: int) -> Organization | None:
        """Organization ``org_id`` as it stands now, or None when there is none."""
        return self._edited.get(org_id) or organization(self.crm, org_id)

    def edit(self, org_id: int, changes: Mapping[str, Any], custom: Mapping[str, Any], at_ms: int) -> Organization:
        """Apply ``changes`` (standard fields) and ``custom`` (values by store key) at ``at_ms``, or just after
        the organization's last change so every change is seen by an update-time cursor.

        :raises KeyError: when there is no organization ``org_id``.
        """
        with self._lock:
            current = self.get(org_id)
            if current is None:
                raise KeyError(f"organization {org_id}: the company's are 1 to {self.crm.tenant.companies}")
            edited = replace(current, **changes, custom={**current.custom, **custom},
                             update_ms=max(at_ms, current.update_ms + 1))
            self._edited[org_id] = edited
            return edited


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
