"""Deterministic export-shaped records (contacts and their activities) for the sample export and the benchmark.

Each person is drawn from their own random stream (seeded by index), with a hidden fit (title, company size,
industry, country) and interest; activities are drawn in leadpulse's neutral vocabulary, about ten a person
on average, more for the interested ones. Records are plain dicts of text, as a CSV export holds them.
Self-contained on purpose: the committed sample must come out the same whatever else changes.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

#: the moment the sample export was taken; the demo scores as of this time so its output never drifts
EXPORT_AT = datetime(2025, 6, 2, tzinfo=UTC)

# (value, weight, fit): students and interns are common and fit badly, on purpose.
TITLES = [
    ("Chief Executive Officer", 2, 1.0), ("Chief Technology Officer", 2, 1.0), ("VP of Sales", 3, 0.9),
    ("VP of Marketing", 3, 0.9), ("Head of Operations", 3, 0.8), ("Director of Engineering", 4, 0.8),
    ("Marketing Manager", 8, 0.6), ("Sales Manager", 8, 0.6), ("IT Manager", 6, 0.6), ("Software Engineer", 10, 0.4),
    ("Data Analyst", 6, 0.35), ("Consultant", 5, 0.3), ("Freelancer", 3, 0.15), ("Intern", 3, 0.05),
    ("Student", 5, 0.0),
]
INDUSTRIES = [
    ("Software", 14, 1.0), ("Financial Services", 9, 0.8), ("Healthcare", 8, 0.6), ("Manufacturing", 8, 0.6),
    ("Retail", 7, 0.5), ("Telecommunications", 4, 0.7), ("Education", 6, 0.2), ("Non-profit", 3, 0.1),
]
SIZES = [((1, 10), 20, 0.1), ((11, 50), 22, 0.4), ((51, 200), 22, 0.7), ((201, 1000), 17, 1.0), ((1001, 5000), 11, 0.9),
         ((5001, 50000), 8, 0.7)]
COUNTRIES = [
    ("United States", 30, 1.0), ("United Kingdom", 10, 0.9), ("Germany", 9, 0.9), ("France", 6, 0.8),
    ("Canada", 6, 0.9),
    ("Netherlands", 4, 0.8), ("Spain", 4, 0.6), ("India", 10, 0.4), ("Brazil", 6, 0.4), ("Japan", 4, 0.6),
]
SOURCES = ["organic_search", "paid_search", "social_media", "email_marketing", "referrals", "direct_traffic"]
STAGES = [(0.75, "opportunity"), (0.62, "sql"), (0.5, "mql"), (0.25, "lead")]
FIRST_NAMES = [
    "Ada", "Alan", "Amir", "Ana", "Ben", "Carla", "Chen", "Dan", "Diego", "Elena", "Emma", "Femi", "Grace", "Hugo",
    "Ines", "Ivan", "Julia", "Kai", "Lara", "Leo", "Maya", "Noah", "Omar", "Priya", "Rosa", "Sam", "Sofia", "Tom",
    "Wei", "Zoe",
]
LAST_NAMES = [
    "Adams", "Ahmed", "Baker", "Becker", "Brown", "Chen", "Costa", "Evans", "Fischer", "Garcia", "Gupta", "Kim",
    "Lee", "Lopez", "Martin", "Meyer", "Nguyen", "Okafor", "Patel", "Rossi", "Sato", "Schmidt", "Singh", "Smith",
    "Taylor", "Wang", "Weber", "Wilson",
]
COMPANY_STEMS = ["Acme", "Bright", "Cor", "Dex", "Nova", "Orbit", "Pix", "Quanta", "Sol", "Terra", "Vox", "Zen"]
_KINDS = [  # (kind, weight for an uninterested person, extra weight per unit of interest)
    ("email_sent", 30, 0), ("email_open", 20, 20), ("email_click", 3, 12), ("email_reply", 1, 6),
    ("page_view", 15, 25), ("form_submit", 1, 6), ("meeting", 0, 4), ("call", 4, 4), ("webinar", 1, 3),
    ("unsubscribe", 2, -2), ("email_bounce", 2, -2),
]
_PAGES = ["/pricing", "/pricing", "/product", "/docs/start", "/blog/lead-scoring", "/careers", "/customers"]
_FORMS = ["demo request", "contact sales", "whitepaper", "newsletter", "ebook"]
_MEETING_OUTCOMES = ["COMPLETED", "COMPLETED", "SCHEDULED", "NO_SHOW"]


def records(count: int, *, seed: int = 7, at: datetime = EXPORT_AT) -> Iterator[tuple[dict, list[dict], dict]]:
    """(contact record, activity records, outcome record) for people 0 .. count-1."""
    for index in range(count):
        rng = random.Random(_seed(seed, index))
        person = _person(rng, index, at)
        yield person.contact, _activities(rng, person, at), _outcome(rng, person, at)


class _Person:
    __slots__ = ("contact", "fit", "interest")

    def __init__(self, contact: dict, fit: float, interest: float) -> None:
        self.contact, self.fit, self.interest = contact, fit, interest


def _seed(seed: int, index: int) -> int:
    return int.from_bytes(hashlib.blake2b(f"{seed}:{index}".encode(), digest_size=8).digest(), "big")


def _pick(rng: random.Random, table: list[tuple]) -> tuple:
    return rng.choices(table, weights=[row[1] for row in table])[0]


def _person(rng: random.Random, index: int, at: datetime) -> _Person:
    title, _, title_fit = _pick(rng, TITLES)
    industry, _, industry_fit = _pick(rng, INDUSTRIES)
    (low, high), _, size_fit = _pick(rng, SIZES)
    country, _, country_fit = _pick(rng, COUNTRIES)
    fit = 0.5 * title_fit + 0.5 * (industry_fit + size_fit + country_fit) / 3
    interest = rng.betavariate(1.2, 2.5)
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    company = rng.choice(COMPANY_STEMS) + rng.choice(COMPANY_STEMS).lower()
    warmth = 0.5 * fit + 0.5 * interest + rng.uniform(-0.2, 0.2)
    status = next((stage for floor, stage in STAGES if warmth >= floor), "subscriber")
    contact = {
        "id": str(100_000 + index),
        "email": f"{first}.{last}{index}@{company.lower()}.example".lower(),
        "name": f"{first} {last}",
        "owner_id": "" if rng.random() < 0.05 else str(10_000 + rng.randrange(8)),
        "status": status,
        "opted_out": "true" if rng.random() < 0.06 else "false",
        "updated_at": (at - timedelta(days=365 * rng.random() ** 3)).isoformat(timespec="seconds"),
        "job_title": title,
        "company": f"{company} {rng.choice(['Labs', 'Systems', 'Group', 'Inc', 'GmbH', 'Ltd'])}",
        "industry": industry,
        "employees": str(int(low + (high - low) * rng.random() ** 2)),
        "country": country,
        "source": rng.choice(SOURCES),
    }
    return _Person(contact, fit, interest)


def _outcome(rng: random.Random, person: _Person, at: datetime) -> dict:
    converted = rng.random() < 1 / (1 + math.exp(5.5 - 4 * person.fit - 5 * person.interest))
    converted_at = (at - timedelta(days=300 * rng.random())).isoformat(timespec="seconds") if converted else ""
    return {"contact_id": person.contact["id"], "converted": str(converted).lower(), "converted_at": converted_at}


def _activities(rng: random.Random, person: _Person, at: datetime) -> list[dict]:
    contact_id = person.contact["id"]
    count = min(40, int(rng.expovariate(1 / (2.5 + 26 * person.interest))))
    weights = [max(0.0, base + extra * person.interest) for _, base, extra in _KINDS]
    kinds = rng.choices([kind for kind, _, _ in _KINDS], weights=weights, k=count)
    found = []
    for j, kind in enumerate(kinds):
        days_ago = 365 * rng.random() ** (1 + 2 * person.interest)
        found.append({
            "id": f"{contact_id}-{j}",
            "contact_id": contact_id,
            "kind": kind,
            "occurred_at": (at - timedelta(days=days_ago)).isoformat(timespec="seconds"),
            **_attributes(rng, kind),
        })
    return found


def _attributes(rng: random.Random, kind: str) -> dict:
    if kind == "page_view":
        return {"url": rng.choice(_PAGES)}
    if kind == "form_submit":
        return {"form": rng.choice(_FORMS)}
    if kind == "meeting":
        return {"outcome": rng.choice(_MEETING_OUTCOMES)}
    return {}
