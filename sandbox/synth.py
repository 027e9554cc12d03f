"""Deterministic synthetic tenants: people, their companies and their activities.

Nothing is stored. Person ``i`` and its activities are rebuilt on demand from ``(seed, i)``,
so a tenant of 1,000,000 people and ~9,000,000 activities costs no memory until it is read,
and the same seed and anchor always give the same tenant.

Each person carries two hidden traits drawn from their own hash stream: *fit* (title,
industry, company size, country) and *interest* (how much they engage). Activity volume grows
with interest, and the chance of converting grows with both (:func:`conversion_probability`), so a
backtest of a scoring rule set against ``converted`` measures something real; :mod:`leadpulse.sandbox.truth`
gives a benchmark each person's true chance.

Every draw is a 32-bit word of a SHAKE-128 stream keyed by ``(seed, purpose, index)``
(:class:`Stream`): one C call per record, so a 100-person page costs about half a millisecond
of generation. A person's timeline is the first two words of their stream, so the time indexes
a search needs (:meth:`Tenant.created_ms`, :meth:`Tenant.last_touch_ms`) build for a million
people in a few seconds. A person's activities reach back ``activity_history_ms`` (a year unless
a vendor asks for more) and no earlier than the person's creation; every activity of person ``i``
happens at or before the later of ``last_touch_ms(i)`` (the person's base ``updated_ms``) and
:attr:`Tenant.history_start_ms`, as a person last touched before the history starts has all their
activities stamped at that start. ``activities_per_contact`` sets how many activities a person
holds on average.

Values here are vendor-neutral (lowercase words); each vendor module maps them to its own.
"""
from __future__ import annotations

import bisect
import functools
import hashlib
import itertools
import math
import struct
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
FIRST_NAMES = [
    "Ada", "Alan", "Alice", "Amir", "Ana", "Anna", "Ben", "Carla", "Chen", "Chloe", "Dan", "David", "Diego",
    "Elena", "Emma", "Eva", "Femi", "Grace", "Hana", "Hugo", "Ines", "Ivan", "Jack", "Jana", "Jonas", "Julia",
    "Kai", "Kenji", "Lara", "Leo", "Lina", "Lucas", "Maria", "Mark", "Maya", "Mia", "Nadia", "Noah", "Nora", "Olga",
    "Omar", "Paul", "Priya", "Rafael", "Rosa", "Ruth", "Sam", "Sara", "Sofia", "Tom", "Uma", "Victor", "Wei",
    "Yara", "Yusuf", "Zoe",
]
LAST_NAMES = [
    "Adams", "Ahmed", "Alvarez", "Baker", "Becker", "Brown", "Chen", "Costa", "Da", "Silva", "Dubois", "Evans",
    "Fischer", "Garcia", "Gupta", "Hansen", "Hoffmann", "Ito", "Jensen", "Johnson", "Kim", "Kowalski", "Lee",
    "Lopez", "Martin", "Meyer", "Moreau", "Muller", "Nakamura", "Nguyen", "Novak", "Okafor", "Olsen", "Patel",
    "Perez", "Rossi", "Sato", "Schmidt", "Singh", "Smith", "Suzuki", "Taylor", "Thomas", "Walker", "Wang", "Weber",
    "Williams", "Wilson", "Wright", "Yamamoto", "Young", "Zhang",
]
_EMAIL_FIRST = [name.lower() for name in FIRST_NAMES]
_EMAIL_LAST = [name.lower().replace(" ", "") for name in LAST_NAMES]
_SYLLABLES = [
    "ac", "al", "an", "ar", "bel", "bri", "cor", "dex", "el", "fin", "gen", "ix", "jo", "kin", "lum", "mar", "nex",
    "nov", "or", "pix", "qua", "ra", "sol", "tan", "ver", "vo", "zen",
]
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


class Stream:
    """Deterministic 32-bit words for one purpose of one tenant: ``words(key, n)``.

    A list page builds a hundred people; seeding a ``random.Random`` per person cost more than
    the rest of the person together. One SHAKE-128 call instead yields every draw a record needs,
    and since its output for ``n`` words starts with its output for fewer, a record may first ask
    for one word (how many activities) and then for all of them.
    """

    __slots__ = ("_base",)

    def __init__(self, seed: int, purpose: str):
        self._base = hashlib.shake_128(f"sandbox:{seed}:{purpose}:".encode())

    def words(self, key: int, n: int) -> tuple[int, ...]:
        h = self._base.copy()
        h.update(key.to_bytes(8, "little", signed=True))
        return _words_struct(n).unpack(h.digest(4 * n))


@functools.cache
def _words_struct(n: int) -> struct.Struct:
    return struct.Struct(f"<{n}I")


# Draws from one 32-bit word each: a word is a uniform integer in [0, 2**32).
_UNIT = 2.0**-32


def unit(word: int) -> float:
    return word * _UNIT


def below(word: int, n: int) -> int:
    return (word * n) >> 32


def choice(items, word: int):
    return items[(word * len(items)) >> 32]


def exponential(word: int, mean: float) -> float:
    return -math.log(1.0 - word * _UNIT) * mean


def uniform(word: int, low: float, high: float) -> float:
    return low + (high - low) * word * _UNIT


class WeightedTable:
    """A (value, weight, ...) table with its cumulative weights, for :func:`pick`."""

    def __init__(self, rows):
        self.rows = list(rows)
        self.cumulative = list(itertools.accumulate(row[1] for row in self.rows))
        self.scale = self.cumulative[-1] * _UNIT


def pick(table: WeightedTable, word: int):
    return table.rows[bisect.bisect_right(table.cumulative, word * table.scale)]


_TITLES, _INDUSTRIES = WeightedTable(TITLES), WeightedTable(INDUSTRIES)
_SIZES, _COUNTRIES, _SOURCES = WeightedTable(COMPANY_SIZES), WeightedTable(COUNTRIES), WeightedTable(SOURCES)
_COMPANY_CACHE_SIZE = 50_000
_NO_OWNER = int(0.05 * 2**32)
_OPTED_OUT = int(0.06 * 2**32)

MAX_ACTIVITIES_PER_CONTACT = 20.0
"""The highest mean :class:`Tenant` accepts: a person holds at most ``ACTIVITY_SLOTS - 1``."""
_WORDS_PER_ACTIVITY = 5  # when, kind, and up to three attribute draws


def default_anchor_ms() -> int:
    """Today at 00:00 UTC: two tenants built on the same day with one seed are identical."""
    now = int(time.time() * 1000)
    return now - now % DAY_MS


class Tenant:
    """A synthetic CRM tenant of ``size`` people; every read is computed from ``(seed, index)``.

    ``activities_per_contact`` sets the mean number of activities a person holds (None: about
    8.7, the natural mix); more engaged people keep holding more, and recent ones stay denser.
    ``activity_history_ms`` sets how far before the anchor activities may lie (people joined up
    to two years and an hour before it, so ``3 * YEAR_MS`` lets every person's whole life hold them).
    """

    def __init__(self, size: int, seed: int = 0, anchor_ms: int | None = None, owners: int = 8,
                 activities_per_contact: float | None = None, activity_history_ms: int = YEAR_MS):
        self.size = size
        self.seed = seed
        self.anchor_ms = default_anchor_ms() if anchor_ms is None else anchor_ms
        self.activity_history_ms = activity_history_ms
        self.companies = max(5, size // 6)
        self.activity_scale = 1.0 if activities_per_contact is None else activity_scale(activities_per_contact)
        self._companies: dict[int, Company] = {}
        self._people, self._company_words = Stream(seed, "person"), Stream(seed, "company")
        self._activity_words = Stream(seed, "activities")
        self.owners = [self._owner(k) for k in range(owners)]

    # -- timelines: cheap, so indexes over a million people build fast ------------------------

    def created_ms(self, index: int) -> int:
        """Joined up to two years before the anchor."""
        return self.timeline(index)[0]

    def last_touch_ms(self, index: int) -> int:
        """The latest change to the person; cubed draws pile touches up near the anchor."""
        return self.timeline(index)[1]

    @property
    def history_start_ms(self) -> int:
        """How far back activities reach: no generated activity is older."""
        return self.anchor_ms - self.activity_history_ms

    def timeline(self, index: int) -> tuple[int, int]:
        """(created_ms, last_touch_ms): the first two words of the person's stream, so they come alone cheaply."""
        return self._timeline(*self._people.words(index, 2))

    def _timeline(self, w_joined: int, w_touched: int) -> tuple[int, int]:
        created = self.anchor_ms - int(2 * YEAR_MS * unit(w_joined)) - 3_600_000
        return created, self.anchor_ms - int((self.anchor_ms - created) * unit(w_touched) ** 3)

    # -- people ---------------------------------------------------------------------------------

    def person(self, index: int) -> Person:
        fields, company, fit, interest = self._draw(index)
        del fields["company"], fields["industry"], fields["employees"], fields["annual_revenue"], fields["country"]
        return Person(index=index, company=company, fit=fit, interest=interest, **fields)

    def fields(self, index: int) -> dict:
        """Person ``index`` as a flat dict of neutral fields (``state.CONTACT_FIELDS``): the fast path for lists."""
        return self._draw(index)[0]

    def interest(self, index: int) -> float:
        """How much the person engages, in [0, 1): skewed, most people barely engage, a few a lot."""
        return unit(self._people.words(index, 5)[4]) ** 1.7

    def _draw(self, index: int) -> tuple[dict, Company, float, float]:
        (w_joined, w_touched, w_title, w_company, w_interest, w_first, w_last, w_converted, w_opens, w_views, w_source,
         w_warmth, w_status, w_owner, w_opted_out, w_converted_at, w_clicks, w_forms) = self._people.words(index, 18)
        title, _, title_fit = pick(_TITLES, w_title)
        # Neighbours often share a company (they were imported together), which keeps the company cache warm.
        company_index = (index // 6 + below(w_company, 8)) % self.companies
        company = self._companies.get(company_index) or self.company(company_index)
        fit = 0.5 * title_fit + 0.5 * company.fit
        interest = unit(w_interest) ** 1.7
        first, last = below(w_first, len(FIRST_NAMES)), below(w_last, len(LAST_NAMES))
        created, touched = self._timeline(w_joined, w_touched)
        converted_ms = draw_conversion(conversion_probability(fit, interest), created, touched, w_converted,
                                       w_converted_at)
        converted = converted_ms is not None
        opens = int(exponential(w_opens, 1 + 25 * interest))
        page_views = int(exponential(w_views, 2 + 40 * interest))
        fields = {
            "first_name": FIRST_NAMES[first], "last_name": LAST_NAMES[last],
            "email": f"{_EMAIL_FIRST[first]}.{_EMAIL_LAST[last]}{index}@{company.domain}",
            "title": title, "company": company.name, "industry": company.industry, "employees": company.employees,
            "annual_revenue": company.annual_revenue, "country": company.country, "source": pick(_SOURCES, w_source)[0],
            "lifecycle": _lifecycle(w_warmth, converted, fit, interest),
            "lead_status": "connected" if converted else choice(LEAD_STATUSES, w_status),
            # The owner comes from the word's low bits, so the 5% without one do not all skip the first owner.
            "owner_id": None if w_owner < _NO_OWNER else self.owners[w_owner % len(self.owners)].id,
            "opted_out": w_opted_out < _OPTED_OUT, "created_ms": created, "updated_ms": touched,
            "converted": converted, "converted_ms": converted_ms,
            "email_opens": opens, "email_clicks": int(opens * uniform(w_clicks, 0, 0.5) * interest),
            "page_views": page_views, "form_submissions": int(page_views * uniform(w_forms, 0, 0.12)),
        }
        return fields, company, fit, interest

    def company(self, index: int) -> Company:
        company = self._companies.get(index)
        if company is None:
            if len(self._companies) >= _COMPANY_CACHE_SIZE:
                self._companies.clear()  # bounded: a million-person tenant must not grow without end
            company = self._companies[index] = self._make_company(index)
        return company

    def _make_company(self, index: int) -> Company:
        (w_length, w_first, w_second, w_third, w_industry, w_size, w_country, w_employees, w_suffix,
         w_revenue) = self._company_words.words(index, 10)
        syllables = (w_first, w_second, w_third)[:2 + below(w_length, 2)]
        stem = "".join(choice(_SYLLABLES, w) for w in syllables).capitalize()
        industry, _, industry_fit = pick(_INDUSTRIES, w_industry)
        (low, high), _, size_fit = pick(_SIZES, w_size)
        country, _, country_fit = pick(_COUNTRIES, w_country)
        employees = int(math.exp(uniform(w_employees, math.log(low), math.log(high))))
        return Company(
            index=index, name=f"{stem} {choice(_COMPANY_SUFFIXES, w_suffix)}", domain=f"{stem.lower()}{index}.example",
            industry=industry, employees=employees, annual_revenue=employees * (40 + below(w_revenue, 361)) * 1000,
            country=country, fit=(industry_fit + size_fit + country_fit) / 3,
        )

    def _owner(self, k: int) -> Owner:
        w_first, w_last = Stream(self.seed, "owner").words(k, 2)
        first, last = choice(FIRST_NAMES, w_first), choice(LAST_NAMES, w_last)
        return Owner(id=10_000 + k, first_name=first, last_name=last, email=f"{first}.{last}@sales.example".lower())

    # -- activities -----------------------------------------------------------------------------

    def activities(self, index: int, kind: ActivityKind | None = None) -> list[Activity]:
        """The person's activities (only those of ``kind``, if given), oldest first.

        Ids are ``index * ACTIVITY_SLOTS + j + 1``, ``j`` counting every kind, so a filtered list
        keeps the ids of the full one.
        """
        interest = self.interest(index)
        mean = self.activity_scale * (3 + 20 * interest)
        count = min(ACTIVITY_SLOTS - 1, int(exponential(self._activity_words.words(index, 1)[0], mean)))
        if count == 0:
            return []
        words = self._activity_words.words(index, 1 + _WORDS_PER_ACTIVITY * count)
        created, touched = self.timeline(index)
        start = max(created, self.history_start_ms)
        span = max(start, touched) - start
        kinds = _kinds(int(interest * 100))
        slots = sorted((start + span - int(span * unit(words[w]) ** 3), w)
                       for w in range(1, len(words), _WORDS_PER_ACTIVITY))
        wanted = [(j, at, w, pick(kinds, words[w + 1])[0]) for j, (at, w) in enumerate(slots)]
        wanted = [slot for slot in wanted if kind is None or slot[3] is kind]
        if not wanted:
            return []
        person = self.person(index)
        return [Activity(id=index * ACTIVITY_SLOTS + j + 1, contact_index=index, kind=k, occurred_ms=at, updated_ms=at,
                         owner_id=person.owner_id, attributes=_ATTRIBUTES[k](person, *words[w + 2:w + 5]))
                for j, at, w, k in wanted]

    def activity_index(self, activity_id: int) -> tuple[int, int]:
        """(person index, slot) of a synthetic activity id."""
        return divmod(activity_id - 1, ACTIVITY_SLOTS)


CONVERSION_SPAN = (0.5, 1.0)
"""Where a conversion falls between a person's creation and last touch, as shares of that span: its latter half."""


def conversion_probability(fit: float, interest: float) -> float:
    """How likely a person of this fit and interest is to convert: a logistic in both traits, within (0, 1)."""
    return 1 / (1 + math.exp(5.5 - 4 * fit - 5 * interest))


def draw_conversion(probability: float, created_ms: int, touched_ms: int, w_converted: int,
                    w_converted_at: int) -> int | None:
    """When a person converts (None: never), from the two words of their stream that decide it."""
    if unit(w_converted) < probability:
        return created_ms + int((touched_ms - created_ms) * uniform(w_converted_at, *CONVERSION_SPAN))
    return None


def _lifecycle(word: int, converted: bool, fit: float, interest: float) -> str:
    if converted:
        return "customer"
    warmth = 0.5 * fit + 0.5 * interest + uniform(word, -0.2, 0.2)
    for threshold, stage in ((0.75, "opportunity"), (0.62, "sql"), (0.5, "mql"), (0.25, "lead")):
        if warmth >= threshold:
            return stage
    return "subscriber"


def _expected_count(scale: float, samples: int = 400) -> float:
    """Mean of ``min(ACTIVITY_SLOTS - 1, floor(Exp(scale * (3 + 20 * interest))))`` over the interest mix."""
    total = 0.0
    for n in range(samples):
        mean = scale * (3 + 20 * ((n + 0.5) / samples) ** 1.7)
        if mean > 0:
            r = math.exp(-1 / mean)  # P(count >= k) = r**k, capped at the last slot
            total += r * (1 - r ** (ACTIVITY_SLOTS - 1)) / (1 - r)
    return total / samples


@functools.lru_cache(maxsize=16)
def activity_scale(per_contact: float) -> float:
    """The factor on each person's activity rate that makes the tenant's mean ``per_contact``."""
    if not 0 <= per_contact <= MAX_ACTIVITIES_PER_CONTACT:
        raise ValueError(f"activities_per_contact must be between 0 and {MAX_ACTIVITIES_PER_CONTACT:g} "
                         f"(a person holds at most {ACTIVITY_SLOTS - 1}), got {per_contact}")
    low, high = 0.0, 16.0
    for _ in range(40):  # bisection: the mean grows with the scale
        middle = (low + high) / 2
        low, high = (middle, high) if _expected_count(middle) < per_contact else (low, middle)
    return (low + high) / 2


_KIND_ORDER = (ActivityKind.EMAIL, ActivityKind.CALL, ActivityKind.MEETING, ActivityKind.NOTE, ActivityKind.TASK)


@functools.lru_cache(maxsize=128)
def _kinds(interest_percent: int) -> WeightedTable:
    """Kind weights 40/15/(4 + 10 * interest)/17/20: engaged people take more meetings."""
    return WeightedTable(zip(_KIND_ORDER, (40, 15, 4 + interest_percent / 10, 17, 20), strict=True))


_EMAIL_DIRECTIONS = WeightedTable([("outbound", 80), ("inbound", 17), ("forwarded", 3)])
_EMAIL_TOPICS = ("Intro", "Follow-up", "Pricing", "Case study", "Quick question", "Webinar invite")
_BOUNCED = int(0.03 * 2**32)
_CALL_STATUSES = WeightedTable([("completed", 60), ("no_answer", 25), ("busy", 10), ("failed", 5)])
_MEETING_OUTCOMES = WeightedTable([("completed", 60), ("scheduled", 15), ("rescheduled", 10), ("no_show", 8),
                                   ("canceled", 7)])
_NOTES = ("Asked about pricing.", "Evaluating competitors.", "Budget next quarter.", "Needs a security review.",
          "Not the decision maker.", "Very interested.")


def _email(person: Person, a: int, b: int, c: int) -> dict:
    return {"direction": pick(_EMAIL_DIRECTIONS, a)[0], "status": "bounced" if b < _BOUNCED else "sent",
            "subject": f"{choice(_EMAIL_TOPICS, c)} for {person.company.name}"}


def _call(person: Person, a: int, b: int, c: int) -> dict:
    status = pick(_CALL_STATUSES, a)[0]
    duration = int(exponential(b, 420_000)) if status == "completed" else 0
    return {"direction": choice(("outbound", "outbound", "inbound"), c), "status": status,
            "duration_ms": duration, "title": f"Call with {person.first_name}"}


def _meeting(person: Person, a: int, b: int, c: int) -> dict:
    return {"outcome": pick(_MEETING_OUTCOMES, a)[0], "title": f"Demo for {person.company.name}",
            "duration_ms": choice((15, 30, 45, 60), b) * 60_000}


def _note(person: Person, a: int, b: int, c: int) -> dict:
    return {"body": choice(_NOTES, a)}


def _task(person: Person, a: int, b: int, c: int) -> dict:
    kind = choice(("email", "call", "todo"), a)
    return {"subject": f"{kind.capitalize()} {person.first_name} {person.last_name}", "body": "",
            "status": choice(("not_started", "completed", "completed"), b),
            "priority": choice(("low", "medium", "high"), c), "type": kind}


_ATTRIBUTES = {ActivityKind.EMAIL: _email, ActivityKind.CALL: _call, ActivityKind.MEETING: _meeting,
               ActivityKind.NOTE: _note, ActivityKind.TASK: _task}
