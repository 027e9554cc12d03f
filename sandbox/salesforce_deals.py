"""Opportunities and the contact roles that tie them to people, for the Salesforce imitation.

A person holds at most one Opportunity (006, numbered like the person) and its one primary
OpportunityContactRole (00K, numbered alike), both drawn from the generated history:

- everyone who converted (``converted`` in :mod:`leadpulse.sandbox.synth`) has a won one, created when
  they converted (for a Lead: by the conversion itself, as ``ConvertedOpportunityId`` says) and
  closed won between then and their last touch;
- a Contact who did not convert has an open one when warm enough (lifecycle ``opportunity``), and a
  third of those in lifecycle ``sql`` have a lost one.

Its contact role names the person's Contact (a converted Lead's own), so won opportunities are
found through ``OpportunityContactRole`` as in an org: ``SELECT ContactId FROM
OpportunityContactRole WHERE Opportunity.IsWon = true``. Every stamp lies between the person's
creation and their generated last touch, so a time window narrows by person as activities do.
"""
from __future__ import annotations

from dataclasses import dataclass

from .salesforce_records import (
    AUDIT_PARENTS,
    LEAD_SOURCES,
    Field,
    Records,
    Row,
    SObject,
    audit_fields,
    fmt_date,
    is_deleted,
    is_lead,
    lead_source,
    sf_id,
    user_id,
)
from .synth import DAY_MS, mix

STAGES = ("Prospecting", "Qualification", "Needs Analysis", "Value Proposition", "Id. Decision Makers",
          "Perception Analysis", "Proposal/Price Quote", "Negotiation/Review", "Closed Won", "Closed Lost")
"""The default Opportunity stages of an org, in order; the last two are closed."""
_PROBABILITY = dict(zip(STAGES, (10, 10, 20, 50, 60, 70, 75, 90, 100, 0), strict=True))
ROLES = ("Business User", "Decision Maker", "Economic Buyer", "Economic Decision Maker", "Evaluator",
         "Executive Sponsor", "Influencer", "Technical Buyer", "Other")
"""The default OpportunityContactRole roles."""
WON, LOST = STAGES[-2], STAGES[-1]


@dataclass(frozen=True)
class Deal:
    """The Opportunity a person has: its stage and when it opened, last changed and closes."""

    stage: str
    opened_ms: int
    modified_ms: int
    close_ms: int
    amount: int
    role: str
    owner_id: int | None
    source: str
    company: str


def deal_of(vendor: Records, index: int) -> Deal | None:
    """The person's Opportunity as generated, or None when they have none (see the module docstring)."""
    tenant = vendor.crm.tenant
    if not 0 <= index < tenant.size:
        return None  # people added later have no history yet
    person = tenant.fields(index)
    created, touched = tenant.timeline(index)

    def fraction(salt: int) -> float:
        return mix(tenant.seed, index, salt) / 2.0**64

    draw = mix(tenant.seed, index, 0xDEA1)
    common = {"amount": round(2_000 + person["employees"] * (10 + draw % 40), -2), "role": ROLES[draw % len(ROLES)],
              "owner_id": person["owner_id"], "source": person["source"], "company": person["company"]}
    if person["converted"]:
        converted = person["converted_ms"]
        won = converted + int((touched - converted) * fraction(0xDEA2))
        return Deal(WON, converted, won, won, **common)
    open_deal = person["lifecycle"] == "opportunity"
    if is_lead(index) or not (open_deal or (person["lifecycle"] == "sql" and draw % 3 == 0)):
        return None
    opened = created + int((touched - created) * fraction(0xDEA3))
    modified = opened + int((touched - opened) * fraction(0xDEA4))
    if open_deal:
        return Deal(STAGES[draw % 8], opened, modified, tenant.anchor_ms + (15 + draw % 76) * DAY_MS, **common)
    return Deal(LOST, opened, modified, modified, **common)


class DealRow(Row):
    """A row numbered by its person (key = index + 1) that exists when the person has a deal."""

    __slots__ = ("deal",)

    def __init__(self, vendor: Records, key: int, deal: Deal):
        super().__init__(vendor, key)
        self.deal = deal

    @property
    def index(self) -> int:
        return self.key - 1

    @property
    def deleted(self) -> bool:
        return is_deleted(self.index, self.vendor.crm.tenant.size)

    @property
    def owner_key(self) -> int | None:
        return self.deal.owner_id

    @property
    def created_ms(self) -> int:
        return self.deal.opened_ms

    @property
    def account_id(self) -> str:
        return sf_id("001", self.vendor.crm.tenant.person(self.index).company.index + 1)


class OpportunityRow(DealRow):
    __slots__ = ()
    prefix = "006"

    @property
    def base_modified_ms(self) -> int:
        return self.deal.modified_ms


class ContactRoleRow(DealRow):
    """The primary contact role of an Opportunity: made with it, not changed since."""

    __slots__ = ()
    prefix = "00K"

    @property
    def base_modified_ms(self) -> int:
        return self.deal.opened_ms


def _opportunity() -> SObject:
    deal = lambda name: (lambda r: getattr(r.deal, name))  # noqa: E731 - a field-reader factory beside the table it serves
    closed = lambda r: r.deal.stage in (WON, LOST)  # noqa: E731 - a field reader beside the table it serves
    return SObject("Opportunity", "006", OpportunityRow, _by_name(
        Field("Id", "id", lambda r: r.id, label="Opportunity ID"),
        Field("IsDeleted", "boolean", lambda r: r.deleted, label="Deleted"),
        *audit_fields(lambda r: r.created_ms),
        Field("AccountId", "reference", lambda r: r.account_id, updateable=True, reference_to=("Account",),
              relationship="Account", label="Account ID"),
        Field("ContactId", "reference", lambda r: sf_id("003", r.key), createable=True, reference_to=("Contact",),
              relationship="Contact", label="Contact ID"),
        Field("Name", "string", lambda r: f"{r.deal.company} - New Business", updateable=True),
        Field("StageName", "picklist", deal("stage"), updateable=True, picklist=STAGES, label="Stage"),
        Field("Amount", "currency", deal("amount"), updateable=True),
        Field("Probability", "percent", lambda r: _PROBABILITY[r.deal.stage], updateable=True,
              label="Probability (%)"),
        Field("CloseDate", "date", lambda r: fmt_date(r.deal.close_ms), updateable=True),
        Field("Type", "picklist", lambda r: "New Business", updateable=True,
              picklist=("Existing Business", "New Business")),
        Field("LeadSource", "picklist", lambda r: lead_source(r.deal.source), updateable=True,
              picklist=LEAD_SOURCES),
        Field("IsClosed", "boolean", closed, label="Closed"),
        Field("IsWon", "boolean", lambda r: r.deal.stage == WON, label="Won"),
        Field("OwnerId", "reference", lambda r: user_id(r.deal.owner_id), updateable=True, reference_to=("User",),
              relationship="Owner", label="Owner ID"),
    ), parents={"account": ("Account", "AccountId", "Account"), "contact": ("Contact", "ContactId", "Contact"),
                "owner": ("Owner", "OwnerId", "User"), **AUDIT_PARENTS}, plural="Opportunities")


def _contact_role() -> SObject:
    return SObject("OpportunityContactRole", "00K", ContactRoleRow, _by_name(
        Field("Id", "id", lambda r: r.id, label="Contact Role ID"),
        Field("IsDeleted", "boolean", lambda r: r.deleted, label="Deleted"),
        *audit_fields(lambda r: r.created_ms),
        Field("OpportunityId", "reference", lambda r: sf_id("006", r.key), createable=True,
              reference_to=("Opportunity",), relationship="Opportunity", label="Opportunity ID"),
        Field("ContactId", "reference", lambda r: sf_id("003", r.key), updateable=True, reference_to=("Contact",),
              relationship="Contact", label="Contact ID"),
        Field("Role", "picklist", lambda r: r.deal.role, updateable=True, picklist=ROLES),
        Field("IsPrimary", "boolean", lambda r: True, updateable=True, label="Primary"),
    ), parents={"opportunity": ("Opportunity", "OpportunityId", "Opportunity"),
                "contact": ("Contact", "ContactId", "Contact"), **AUDIT_PARENTS}, plural="Opportunity Contact Role")


def deal_objects() -> list[SObject]:
    """Opportunity and OpportunityContactRole, for the catalogue."""
    return [_opportunity(), _contact_role()]




def _by_name(*specs: Field) -> dict[str, Field]:
    return {spec.name.lower(): spec for spec in specs}
