"""The vendor-neutral model: what every connector translates its CRM into.

Connectors map their records onto these frozen values; the store, the scoring engine and the outbox only
ever see these types, never a vendor's shapes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any


class ContactKind(StrEnum):
    """What the CRM calls the person: a Salesforce Lead or Contact, a HubSpot contact, a Pipedrive person."""

    LEAD = "lead"
    CONTACT = "contact"
    PERSON = "person"


class ActivityKind(StrEnum):
    """The fixed vocabulary every connector maps its activity types onto."""

    EMAIL_SENT = "email_sent"
    EMAIL_OPEN = "email_open"
    EMAIL_CLICK = "email_click"
    EMAIL_REPLY = "email_reply"
    EMAIL_BOUNCE = "email_bounce"
    UNSUBSCRIBE = "unsubscribe"
    FORM_SUBMIT = "form_submit"
    PAGE_VIEW = "page_view"
    MEETING = "meeting"
    CALL = "call"
    NOTE = "note"
    TASK = "task"
    WEBINAR = "webinar"
    DEAL_WON = "deal_won"
    DEAL_LOST = "deal_lost"
    OTHER = "other"


class Lifecycle(StrEnum):
    """The neutral lifecycle, in order. Each tenant file maps these names onto its CRM's own values."""

    SUBSCRIBER = "subscriber"
    LEAD = "lead"
    MQL = "mql"
    SQL = "sql"
    CUSTOMER = "customer"

    @property
    def rank(self) -> int:
        return _LIFECYCLE_RANKS[self]


_LIFECYCLE_RANKS = {stage: rank for rank, stage in enumerate(Lifecycle)}


def utc(moment: datetime) -> datetime:
    """Return `moment` as an aware UTC datetime; a naive one is taken to be UTC already."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class Contact:
    """A person in the CRM.

    `status` is the CRM's own lifecycle value (e.g. HubSpot's ``marketingqualifiedlead``); the tenant file
    maps it onto `Lifecycle`. `fields` holds the normalised fields rules usually read (title, company,
    industry, employees, revenue, country, source, ...); `raw` holds the vendor's properties as pulled, so a
    rule can read either.
    """

    id: str
    kind: ContactKind
    updated_at: datetime
    email: str | None = None
    name: str | None = None
    owner_id: str | None = None
    status: str | None = None
    opted_out: bool = False
    fields: Mapping[str, Any] = field(default_factory=dict)
    raw: Mapping[str, Any] = field(default_factory=dict)
    #: when the CRM record was made, if the CRM says (a backtest counts a contact from then on)
    created_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Activity:
    """Something a contact did or that was done with them, at one moment.

    `vendor_type` keeps the CRM's own type (``hs_email``, ``Task/Call``, ``lunch`` ...) so a rule may match it
    when the neutral `kind` is too coarse.
    """

    id: str
    contact_id: str
    kind: ActivityKind
    occurred_at: datetime
    vendor_type: str | None = None
    attributes: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Outcome:
    """Whether a contact converted (became a customer, won a deal), and when: the ground truth for backtests."""

    contact_id: str
    converted: bool
    converted_at: datetime | None = None
