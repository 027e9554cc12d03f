"""Deterministic export-shaped records (contacts and their activities) for the sample export and the benchmark.

People come from the sandbox's synthetic tenant (titles, companies, countries, hidden fit and interest);
their activities are drawn here in leadpulse's neutral vocabulary, about ten a person on average, more for
the interested ones. Records are plain dicts of text, as a CSV export holds them.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

from sandbox.synth import Tenant, mix

#: the moment the sample export was taken; the demo scores as of this time so its output never drifts
EXPORT_AT = datetime(2025, 6, 2, tzinfo=timezone.utc)

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
    anchor_ms = int(at.timestamp() * 1000)
    tenant = Tenant(count, seed=seed, anchor_ms=anchor_ms)
    for index in range(count):
        person = tenant.person(index)
        yield _contact(person), _activities(person, seed, at), _outcome(person)


def _contact(person) -> dict:
    return {
        "id": str(100_000 + person.index),
        "email": person.email,
        "name": f"{person.first_name} {person.last_name}",
        "owner_id": str(person.owner_id or ""),
        "status": person.lifecycle,
        "opted_out": "true" if person.opted_out else "false",
        "updated_at": _iso(person.updated_ms),
        "job_title": person.title,
        "company": person.company.name,
        "industry": person.company.industry,
        "employees": str(person.company.employees),
        "country": person.company.country,
        "source": person.source,
    }


def _outcome(person) -> dict:
    converted_at = _iso(person.converted_ms) if person.converted_ms else ""
    return {"contact_id": str(100_000 + person.index), "converted": str(person.converted).lower(), "converted_at": converted_at}


def _activities(person, seed: int, at: datetime) -> list[dict]:
    rng = random.Random(mix(seed, person.index, 99))
    count = min(40, int(rng.expovariate(1 / (2.5 + 26 * person.interest))))
    weights = [max(0.0, base + extra * person.interest) for _, base, extra in _KINDS]
    kinds = rng.choices([kind for kind, _, _ in _KINDS], weights=weights, k=count)
    found = []
    for j, kind in enumerate(kinds):
        days_ago = 365 * rng.random() ** (1 + 2 * person.interest)
        found.append({
            "id": f"{100_000 + person.index}-{j}",
            "contact_id": str(100_000 + person.index),
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


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, timezone.utc).isoformat(timespec="seconds")
