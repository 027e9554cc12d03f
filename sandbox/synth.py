"""Deterministic synthetic tenants: people, their companies and their activities.

Nothing is stored. Person ``i`` and its activities are rebuilt on demand from ``(seed, i)``,
so a tenant of 1,000,000 people and ~10,000,000 activities costs no memory until it is read,
and the same seed and anchor always give the same tenant.

Each person carries two hidden traits drawn from their own random stream: *fit* (title,
industry, company size, country) and *interest* (how much they engage). Activity volume grows
with interest, and the chance of converting grows with both, so a backtest of a scoring rule
set against ``converted`` measures something real.

Timelines come from a cheap integer hash rather than the full random stream, so the
time indexes a search needs (:meth:`Tenant.created_ms`, :meth:`Tenant.last_touch_ms`) can
be built for a million people in about a second. Every activity of person ``i`` happens at
or before ``last_touch_ms(i)``, which is also the person's base ``updated_ms``.

Values here are vendor-neutral (lowercase words); each vendor module maps them to its own.
"""
from __future__ import annotations

import bisect
import itertools
import math
import random
import time
from dataclasses import dataclass, field
from enum import Enum

DAY_MS = 86_400_000
YEAR_MS = 365 * DAY_MS
ACTIVITY_SLOTS = 32
"""Activity ``j`` of person ``i`` has id ``i * ACTIVITY_SLOTS + j + 1``; a person has fewer than 32."""

_MASK = (1 << 64) - 1


def mix(*parts: int) -> int:
    """A stable 64-bit hash of integers (splitmix64 steps); Python's ``hash`` is salted per process."""
    h = 0x9E3779B97F4A7C15
    for part in parts:
        h = (h ^ (part & _MASK)) * 0xBF58476D1CE4E5B9 & _MASK
        h ^= h >> 29
        h = h * 0x94D049BB133111EB & _MASK
        h ^= h >> 32
    return h


def _unit(*parts: int) -> float:
    return mix(*parts) / 2.0**64


class ActivityKind(str, Enum):
    EMAIL = "email"
    CALL = "call"
    MEETING = "meeting"
    NOTE = "note"
    TASK = "task"


# (title, weight, fit): students and interns are common and fit badly, on purpose.
TITLES = [
    ("Chief Executive Officer", 2, 1.0), ("Chief Technology Officer", 2, 1.0), ("VP of Sales", 3, 0.9),
    ("VP of Marketing", 3, 0.9), ("Head of Operations", 3, 0.8), ("Director of Engineering", 4, 0.8),
    ("Marketing Director", 4, 0.8), ("Marketing Manager", 8, 0.6), ("Sales Manager", 8, 0.6),
    ("IT Manager", 6, 0.6), ("Product Manager", 6, 0.55), ("Software Engineer", 10, 0.4),
    ("Data Analyst", 6, 0.35), ("Account Executive", 6, 0.4), ("Consultant", 5, 0.3),
    ("Office Manager", 4, 0.2), ("Freelancer", 3, 0.15), ("Teacher", 2, 0.05), ("Intern", 3, 0.05),
    ("Student", 5, 0.0), ("PhD Student", 2, 0.0), ("", 4, 0.2),
]
INDUSTRIES = [
    ("Software", 14, 1.0), ("Financial Services", 9, 0.8), ("Healthcare", 8, 0.6), ("Manufacturing", 8, 0.6),
    ("Retail", 7, 0.5), ("Telecommunications", 4, 0.7), ("Logistics", 4, 0.5), ("Consulting", 6, 0.6),
    ("Media", 4, 0.4), ("Education", 6, 0.2), ("Government", 3, 0.3), ("Non-profit", 3, 0.1),
]
COMPANY_SIZES = [((1, 10), 20, 0.1), ((11, 50), 22, 0.4), ((51, 200), 22, 0.7), ((201, 1000), 17, 1.0),
                 ((1001, 5000), 11, 0.9), ((5001, 50000), 8, 0.7)]
COUNTRIES = [
    ("United States", 30, 1.0), ("United Kingdom", 10, 0.9), ("Germany", 9, 0.9), ("France", 6, 0.8),
    ("Canada", 6, 0.9), ("Australia", 4, 0.8), ("Netherlands", 4, 0.8), ("Sweden", 3, 0.8), ("Spain", 4, 0.6),
    ("India", 10, 0.4), ("Brazil", 6, 0.4), ("Japan", 4, 0.6), ("Nigeria", 2, 0.2), ("Mexico", 2, 0.4),
]
SOURCES = [("organic_search", 25), ("paid_search", 15), ("social_media", 12), ("email_marketing", 10),
           ("referrals", 10), ("direct_traffic", 14), ("offline", 8), ("other_campaigns", 6)]
LEAD_STATUSES = ["new", "open", "in_progress", "attempted_to_contact", "connected", "unqualified", "bad_timing"]
FIRST_NAMES = ("Ada Alan Alice Amir Ana Anna Ben Carla Chen Chloe Dan David Diego Elena Emma Eva Femi Grace Hana "
               "Hugo Ines Ivan Jack Jana Jonas Julia Kai Kenji Lara Leo Lina Lucas Maria Mark Maya Mia Nadia Noah "
               "Nora Olga Omar Paul Priya Rafael Rosa Ruth Sam Sara Sofia Tom Uma Victor Wei Yara Yusuf Zoe").split()
LAST_NAMES = ("Adams Ahmed Alvarez Baker Becker Brown Chen Costa Da Silva Dubois Evans Fischer Garcia Gupta Hansen "
              "Hoffmann Ito Jensen Johnson Kim Kowalski Lee Lopez Martin Meyer Moreau Muller Nakamura Nguyen "
              "Novak Okafor Olsen Patel Perez Rossi Sato Schmidt Singh Smith Suzuki Taylor Thomas Walker Wang "
              "Weber Williams Wilson Wright Yamamoto Young Zhang").split()
_SYLLABLES = "ac al an ar bel bri cor dex el fin gen ix jo kin lum mar nex nov or pix qua ra sol tan ver vo zen".split()
_COMPANY_SUFFIXES = ["Labs", "Systems", "Group", "Technologies", "Partners", "Solutions", "Inc", "GmbH", "Ltd", "Co"]


@dataclass(frozen=True, slots=True)
class Owner:
    id: int
    first_name: str
    last_name: str
    email: str


@dataclass(frozen=True, slots=True)
class Company:
    index: int
    name: str
    domain: str
    industry: str
    employees: int
    annual_revenue: int
    country: str
    fit: float


@dataclass(frozen=True, slots=True)
class Person:
    index: int
    first_name: str
    last_name: str
    email: str
    title: str
    company: Company
    source: str
    lifecycle: str
    lead_status: str
    owner_id: int | None
    opted_out: bool
    created_ms: int
    updated_ms: int
    converted: bool
    converted_ms: int | None
    email_opens: int
    email_clicks: int
    page_views: int
    form_submissions: int
    fit: float
    interest: float


@dataclass(frozen=True, slots=True)
class Activity:
    id: int
    contact_index: int
    kind: ActivityKind
    occurred_ms: int
    updated_ms: int
    owner_id: int | None
    attributes: dict = field(default_factory=dict)


class Draws:
    """A random stream with the few draws building a person needs, kept cheap for the hot path.

    A list page builds a hundred people; ``Random.choices`` with weights costs more than the rest
    of a person together, so weighted picks use precomputed cumulative weights instead.
    """

    __slots__ = ("unit",)

    def __init__(self, seed: int):
        self.unit = random.Random(seed).random

    def below(self, n: int) -> int:
        return int(self.unit() * n)

    def choice(self, items):
        return items[int(self.unit() * len(items))]

    def pick(self, table: "WeightedTable"):
        return table.rows[bisect.bisect_right(table.cumulative, self.unit() * table.total)]

    def exponential(self, mean: float) -> float:
        return -math.log(1.0 - self.unit()) * mean

    def uniform(self, low: float, high: float) -> float:
        return low + (high - low) * self.unit()


class WeightedTable:
    """A (value, weight, ...) table with its cumulative weights, for :meth:`Draws.pick`."""

    def __init__(self, rows):
        self.rows = list(rows)
        self.cumulative = list(itertools.accumulate(row[1] for row in self.rows))
        self.total = self.cumulative[-1]


_TITLES, _INDUSTRIES = WeightedTable(TITLES), WeightedTable(INDUSTRIES)
_SIZES, _COUNTRIES, _SOURCES = WeightedTable(COMPANY_SIZES), WeightedTable(COUNTRIES), WeightedTable(SOURCES)
_COMPANY_CACHE_SIZE = 50_000


def default_anchor_ms() -> int:
    """Today at 00:00 UTC: two tenants built on the same day with one seed are identical."""
    now = int(time.time() * 1000)
    return now - now % DAY_MS


class Tenant:
    """A synthetic CRM tenant of ``size`` people; every read is computed from ``(seed, index)``."""

    def __init__(self, size: int, seed: int = 0, anchor_ms: int | None = None, owners: int = 8):
        self.size = size
        self.seed = seed
        self.anchor_ms = default_anchor_ms() if anchor_ms is None else anchor_ms
        self.companies = max(5, size // 6)
        self._companies: dict[int, Company] = {}
        self.owners = [self._owner(k) for k in range(owners)]

    # -- timelines: cheap, so indexes over a million people build fast ------------------------

    def created_ms(self, index: int) -> int:
        """Joined up to two years before the anchor."""
        return self.timeline(index)[0]

    def last_touch_ms(self, index: int) -> int:
        """The latest change to the person; cubed draws pile touches up near the anchor."""
        return self.timeline(index)[1]

    def timeline(self, index: int) -> tuple[int, int]:
        """(created_ms, last_touch_ms) from one hash: its low and high 32 bits."""
        h = mix(self.seed, index, 1)
        created = self.anchor_ms - int(2 * YEAR_MS * (h & 0xFFFFFFFF) / 2.0**32) - 3_600_000
        return created, self.anchor_ms - int((self.anchor_ms - created) * ((h >> 32) / 2.0**32) ** 3)

    # -- people ---------------------------------------------------------------------------------

    def person(self, index: int) -> Person:
        fields, company, fit, interest = self._draw(index)
        del fields["company"], fields["industry"], fields["employees"], fields["annual_revenue"], fields["country"]
        return Person(index=index, company=company, fit=fit, interest=interest, **fields)

    def fields(self, index: int) -> dict:
        """Person ``index`` as a flat dict of neutral fields (``state.CONTACT_FIELDS``): the fast path for lists."""
        return self._draw(index)[0]

    def _draw(self, index: int) -> tuple[dict, Company, float, float]:
        draw = Draws(mix(self.seed, index, 3))
        title, _, title_fit = draw.pick(_TITLES)
        # Neighbours often share a company (they were imported together), which keeps the company cache warm.
        company = self.company((index // 6 + draw.below(8)) % self.companies)
        fit = 0.5 * title_fit + 0.5 * company.fit
        interest = draw.unit() ** 1.7  # skewed: most people barely engage, a few engage a lot
        first, last = draw.choice(FIRST_NAMES), draw.choice(LAST_NAMES)
        created, touched = self.timeline(index)
        converted = draw.unit() < 1 / (1 + math.exp(5.5 - 4 * fit - 5 * interest))
        opens = int(draw.exponential(1 + 25 * interest))
        page_views = int(draw.exponential(2 + 40 * interest))
        fields = {
            "first_name": first, "last_name": last,
            "email": f"{first}.{last}{index}@{company.domain}".lower().replace(" ", ""),
            "title": title, "company": company.name, "industry": company.industry, "employees": company.employees,
            "annual_revenue": company.annual_revenue, "country": company.country, "source": draw.pick(_SOURCES)[0],
            "lifecycle": self._lifecycle(draw, converted, fit, interest),
            "lead_status": "connected" if converted else draw.choice(LEAD_STATUSES),
            "owner_id": None if draw.unit() < 0.05 else draw.choice(self.owners).id,
            "opted_out": draw.unit() < 0.06, "created_ms": created, "updated_ms": touched, "converted": converted,
            "converted_ms": created + int((touched - created) * draw.uniform(0.5, 1.0)) if converted else None,
            "email_opens": opens, "email_clicks": int(opens * draw.uniform(0, 0.5) * interest),
            "page_views": page_views, "form_submissions": int(page_views * draw.uniform(0, 0.12)),
        }
        return fields, company, fit, interest

    @staticmethod
    def _lifecycle(draw: Draws, converted: bool, fit: float, interest: float) -> str:
        if converted:
            return "customer"
        warmth = 0.5 * fit + 0.5 * interest + draw.uniform(-0.2, 0.2)
        for threshold, stage in ((0.75, "opportunity"), (0.62, "sql"), (0.5, "mql"), (0.25, "lead")):
            if warmth >= threshold:
                return stage
        return "subscriber"

    def company(self, index: int) -> Company:
        company = self._companies.get(index)
        if company is None:
            if len(self._companies) >= _COMPANY_CACHE_SIZE:
                self._companies.clear()  # bounded: a million-person tenant must not grow without end
            company = self._companies[index] = self._make_company(index)
        return company

    def _make_company(self, index: int) -> Company:
        draw = Draws(mix(self.seed, index, 4))
        stem = "".join(draw.choice(_SYLLABLES) for _ in range(2 + draw.below(2))).capitalize()
        industry, _, industry_fit = draw.pick(_INDUSTRIES)
        (low, high), _, size_fit = draw.pick(_SIZES)
        country, _, country_fit = draw.pick(_COUNTRIES)
        employees = int(math.exp(draw.uniform(math.log(low), math.log(high))))
        return Company(
            index=index, name=f"{stem} {draw.choice(_COMPANY_SUFFIXES)}", domain=f"{stem.lower()}{index}.example",
            industry=industry, employees=employees, annual_revenue=employees * (40 + draw.below(361)) * 1000,
            country=country, fit=(industry_fit + size_fit + country_fit) / 3,
        )

    def _owner(self, k: int) -> Owner:
        rng = random.Random(mix(self.seed, k, 5))
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        return Owner(id=10_000 + k, first_name=first, last_name=last, email=f"{first}.{last}@sales.example".lower())

    # -- activities -----------------------------------------------------------------------------

    def activities(self, index: int) -> list[Activity]:
        """The person's activities, oldest first; ids are ``index * ACTIVITY_SLOTS + j + 1``."""
        person = self.person(index)
        rng = random.Random(mix(self.seed, index, 6))
        count = min(ACTIVITY_SLOTS - 1, int(rng.expovariate(1 / (3 + 20 * person.interest))))
        start = max(person.created_ms, self.anchor_ms - YEAR_MS)
        end = max(start, person.updated_ms)
        times = sorted(end - int((end - start) * rng.random() ** 3) for _ in range(count))
        return [self._activity(rng, person, j, at) for j, at in enumerate(times)]

    def activity_index(self, activity_id: int) -> tuple[int, int]:
        """(person index, slot) of a synthetic activity id."""
        return divmod(activity_id - 1, ACTIVITY_SLOTS)

    def _activity(self, rng: random.Random, person: Person, j: int, at: int) -> Activity:
        kind = rng.choices(list(ActivityKind), weights=[40, 15, 4 + 10 * person.interest, 17, 20])[0]
        return Activity(
            id=person.index * ACTIVITY_SLOTS + j + 1, contact_index=person.index, kind=kind,
            occurred_ms=at, updated_ms=at, owner_id=person.owner_id,
            attributes=_ATTRIBUTES[kind](rng, person),
        )


def _email(rng: random.Random, person: Person) -> dict:
    direction = rng.choices(["outbound", "inbound", "forwarded"], weights=[80, 17, 3])[0]
    status = "sent" if rng.random() > 0.03 else "bounced"
    topic = rng.choice(["Intro", "Follow-up", "Pricing", "Case study", "Quick question", "Webinar invite"])
    return {"direction": direction, "status": status, "subject": f"{topic} for {person.company.name}"}


def _call(rng: random.Random, person: Person) -> dict:
    status = rng.choices(["completed", "no_answer", "busy", "failed"], weights=[60, 25, 10, 5])[0]
    duration = int(rng.expovariate(1 / 420_000)) if status == "completed" else 0
    return {"direction": rng.choice(["outbound", "outbound", "inbound"]), "status": status,
            "duration_ms": duration, "title": f"Call with {person.first_name}"}


def _meeting(rng: random.Random, person: Person) -> dict:
    outcome = rng.choices(["completed", "scheduled", "rescheduled", "no_show", "canceled"],
                          weights=[60, 15, 10, 8, 7])[0]
    return {"outcome": outcome, "title": f"Demo for {person.company.name}",
            "duration_ms": rng.choice([15, 30, 45, 60]) * 60_000}


def _note(rng: random.Random, person: Person) -> dict:
    return {"body": rng.choice(["Asked about pricing.", "Evaluating competitors.", "Budget next quarter.",
                                "Needs a security review.", "Not the decision maker.", "Very interested."])}


def _task(rng: random.Random, person: Person) -> dict:
    kind = rng.choice(["email", "call", "todo"])
    return {"subject": f"{kind.capitalize()} {person.first_name} {person.last_name}", "body": "",
            "status": rng.choice(["not_started", "completed", "completed"]),
            "priority": rng.choice(["low", "medium", "high"]), "type": kind}


_ATTRIBUTES = {ActivityKind.EMAIL: _email, ActivityKind.CALL: _call, ActivityKind.MEETING: _meeting,
               ActivityKind.NOTE: _note, ActivityKind.TASK: _task}
