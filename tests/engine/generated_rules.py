"""Random tenants' scoring sections and the contacts to score with them, from a seed: every construct of the scoring
language, with data placed on its boundaries (exactly at a window's edge, at the moment scored, after it, a
microsecond either side of midnight).

`case(seed)` gives a `Case`: the scoring section (plain data, as a tenant file holds it), contacts, their activity
rows and the moments to score at. The same seed always gives the same case.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml

from leadpulse.core.config.files import load_tenant
from leadpulse.core.engine.rules import ScoringConfig
from leadpulse.core.engine.scoring import ActivityRow
from leadpulse.core.model import Contact, ContactKind

BASE = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)

#: durations as a tenant writes them, and the days they are
DURATIONS: list[tuple[Any, float]] = [
    (1, 1.0), (2.5, 2.5), (7, 7.0), (30, 30.0), ("6w", 42.0), ("3mo", 90.0), ("36h", 1.5), ("10d", 10.0),
    ("1y", 365.0), (0.5, 0.5),
]
KINDS = ["page_view", "form_submit", "email_click", "email_open", "meeting", "deal_won", "call", "other"]
VENDOR_TYPES = ["demo_booked", "meeting_held", "hs_email", "trial_started"]
TITLES = ["CEO", "VP Sales", "vp of marketing", "Head of IT", "PhD Student", "Intern", "Sales Manager", "", None,
          "Chief Technology Officer", "MVP hunter"]
COUNTRIES = ["US", "gb", "DE", "FR", "", None, "Spain"]
EMPLOYEES = [50, "50", 49.5, 1000, "1,200", 1000.5, "unknown", None, 0, -3, "250"]
DATES = ["2025-03-03", "2025-03-02", "2024-12-31", "2025-01-01", "2025-12-31T23:59:59Z", "2026-01-01",
         "not a date", "", None, "1754006400000", "2025-06-01", "2025-11-28", "2025-11-29", "2025-05-31T12:00:00Z"]
URLS = ["/pricing", "/pricing/enterprise", "/blog", "/docs/start", "/PRICING", None]
FORMS = ["cart", "demo request", "Contact Sales", "whitepaper", "", None]
OUTCOMES = ["COMPLETED", "completed", "NO_SHOW", None]
AMOUNTS = [0, 10, "10", 99.99, "1,000", 5000, None, "n/a"]


@dataclass(frozen=True)
class Case:
    seed: int
    scoring: dict[str, Any]
    contacts: list[Contact]
    rows: dict[str, list[ActivityRow]]
    moments: list[datetime]


#: a tenant file's head for a case's scoring section: the fields the generated contacts hold
TENANT = """\
tenant: generated
crm: {kind: file, connection: {contacts: c.csv, activities: a.jsonl, results: r.csv}}
fields: {title: job_title, country: country, employees: employees, signed: signed, project_start: project_start,
         go_live: go_live, customer: customer, phone: phone, tags: tags}
"""


def loaded(found: Case, folder: Path) -> ScoringConfig:
    """The case's scoring section written into a tenant file in `folder` and read by the product's loader."""
    path = folder / f"seed-{found.seed}.yaml"
    path.write_text(TENANT + yaml.safe_dump({"scoring": found.scoring}, sort_keys=False))
    return load_tenant(path).scoring


def report(faults: list[str]) -> None:
    """Fail the test that found `faults` (disagreements between two ways of working something out), with the
    first five."""
    if faults:
        pytest.fail(f"{len(faults)} disagreements, the first:\n" + "\n".join(faults[:5]), pytrace=False)


def case(seed: int) -> Case:
    rng = random.Random(seed)
    gen = _Generator(rng)
    scoring = gen.scoring()
    contacts = [gen.contact(f"c{n}") for n in range(rng.randint(20, 50))]
    rows = {person.id: gen.activities(person.id) for person in contacts}
    return Case(seed, scoring, contacts, rows, gen.moments(rows))


class _Generator:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        #: spans (days) the rules use: activities are placed exactly on them
        self.spans: list[float] = [7.0, 30.0]

    def pick(self, items: list[Any]) -> Any:
        return self.rng.choice(items)

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    def duration(self) -> Any:
        written, days = self.pick(DURATIONS)
        self.spans.append(days)
        return written

    def points(self) -> float:
        return self.pick([1, 2, 3, 5, -2, -5, 0.5, 2.345, 1.005, 0.125, -0.625, 10, 4.75, 0.333])

    # ------------------------------------------------------------ the scoring section

    def scoring(self) -> dict[str, Any]:
        shape = self.pick(["two", "two", "three", "single"])
        axes: dict[str, Any]
        if shape == "single":
            axes = {"score": self.axis()}
        else:
            axes = {"fit": self.axis(), "engagement": self.axis()}
            if shape == "three":
                axes["intent"] = self.axis()
        self.axis_names = list(axes)
        rules = [self.rule(n) for n in range(self.rng.randint(2, 9))]
        section: dict[str, Any] = {"axes": axes, "rules": rules, "bands": self.ladder("band")}
        if self.chance(0.7):
            section["grades"] = self.ladder("grade")
        if shape != "single":
            section["quadrant"] = {"fit": self.pick([0, 1, 2.5, 5]), "engagement": self.pick([0, 1, 3, 6])}
        if self.chance(0.6):
            section["lifecycle"] = self.lifecycle(section)
        if self.chance(0.3):
            section["decay_recheck"] = self.pick(["6h", "2d", 3600, "1w", "90m"])
        return section

    def axis(self) -> dict[str, Any]:
        axis: dict[str, Any] = {}
        if self.chance(0.3):
            axis["weight"] = self.pick([0.5, 2, 1.5, 0.3, -1])
        if self.chance(0.2):
            axis["min"] = self.pick([0, -2.5, -10])
        if self.chance(0.2):
            axis["max"] = self.pick([10, 7.25, 20])
        if "min" in axis and "max" in axis and axis["min"] > axis["max"]:
            del axis["min"]
        return axis

    def rule(self, n: int) -> dict[str, Any]:
        shape = self.rng.random()
        if shape < 0.35:
            rule = {"when": self.condition(fit=True), "points": self.points()}
        elif shape < 0.88:
            rule = self.engagement()
        else:
            rule = {"inactive_days": self.duration(), "points": self.pick([-5, -2.5, 1, -0.125])}
            if self.chance(0.6):
                rule["activity"] = self.rng.sample(KINDS[:-1], self.rng.randint(1, 3))
            if self.chance(0.4):
                rule["count_never_active"] = False
        if self.chance(0.7):
            rule["id"] = f"r{n}"
        if len(self.axis_names) > 2 or self.chance(0.2):
            rule["axis"] = self.pick(self.axis_names)
        return rule

    def engagement(self) -> dict[str, Any]:
        rule: dict[str, Any] = {"points": self.points()}
        rule.update(self.what())
        if self.chance(0.5):
            rule["where"] = self.condition(fit=False)
        if self.chance(0.3):
            rule["count"] = self.pick(["days", "sessions", "occurrences"])
        if self.chance(0.3):
            rule["max_occurrences"] = self.rng.randint(1, 4)
        if self.chance(0.3):
            rule["min_occurrences"] = self.rng.randint(1, rule.get("max_occurrences", 4))
        if self.chance(0.2):
            rule["once"] = True
        if self.chance(0.25):
            follow = self.what()
            if self.chance(0.5):
                follow["within_days"] = self.duration()
            if self.chance(0.3):
                follow["where"] = self.condition(fit=False)
            rule["unless_followed_by"] = follow
        if self.chance(0.3):
            rule["max_points"] = self.pick([1, 2.5, 5, 0.75])
        for key in ("within_days", "expires_after_days", "half_life_days"):
            if self.chance(0.3):
                rule[key] = self.duration()
        return rule

    def what(self) -> dict[str, Any]:
        """An activity looked for: kinds, vendor types, or both."""
        found: dict[str, Any] = {}
        roll = self.rng.random()
        if roll < 0.75:
            kinds = self.rng.sample(KINDS, self.rng.randint(1, 2))
            found["activity"] = kinds[0] if len(kinds) == 1 and self.chance(0.5) else kinds
        if roll >= 0.6:
            found["vendor_type"] = self.pick(VENDOR_TYPES)
        return found

    def condition(self, *, fit: bool, depth: int = 0) -> dict[str, Any]:
        roll = self.rng.random()
        if depth < 2 and roll < 0.25:
            key = self.pick(["all", "any"])
            return {key: [self.condition(fit=fit, depth=depth + 1) for _ in range(self.rng.randint(1, 3))]}
        if depth < 2 and roll < 0.35:
            return {"not": self.condition(fit=fit, depth=depth + 1)}
        return self.fit_leaf() if fit else self.where_leaf()

    def fit_leaf(self) -> dict[str, Any]:
        kind = self.pick(["title", "country", "employees", "date", "flag", "present", "attribute", "tags"])
        if kind == "title":
            return self.text_leaf(self.pick(["title", "fields.title"]), ["ceo", "VP", "student", "intern", "manager"],
                                  [r"\bvp\b", r"\b(head|chief)\b", "^ceo$", "Stud"])
        if kind == "country":
            return self.text_leaf("country", ["US", "GB", "de", "Spain"], ["^(us|gb)$"])
        if kind == "employees":
            return {"field": self.pick(["employees", "raw.employees"]), "range": self.number_range()}
        if kind == "date":
            field = self.pick(["signed", "project_start", "go_live"])
            roll = self.rng.random()
            if roll < 0.3:
                bounds = self.bounds(["2025-01-01", date(2025, 3, 3), "2025-06-01T12:00:00Z", "2026-01-01"])
                return {"field": field, "range": bounds}
            span = self.bounds(sorted([self.duration() for _ in range(3)], key=_days))
            return {"field": field, "age" if roll < 0.65 else "ahead": span}
        if kind == "flag":
            return {"field": self.pick(["customer", "opted_out"]), "equals": self.pick([True, False, "true", "yes"])}
        if kind == "present":
            return {"field": self.pick(["phone", "email", "title", "raw.source", "status"]),
                    self.pick(["exists", "missing"]): True}
        if kind == "tags":
            return self.text_leaf("tags", ["partner", "LEAD"], ["^part"])
        return {"field": self.pick(["owner_id", "name", "kind"]), "in": ["o1", "Ann Lee", "contact"]}

    def where_leaf(self) -> dict[str, Any]:
        kind = self.pick(["url", "form", "outcome", "amount", "vendor", "present", "session"])
        if kind == "url":
            return self.text_leaf(self.pick(["url", "attributes.url"]), ["/pricing", "/blog"], [r"^/pricing", "docs"])
        if kind == "form":
            return self.text_leaf("form", ["cart", "demo request", "contact sales"], ["demo|contact sales"])
        if kind == "outcome":
            return self.text_leaf("outcome", ["COMPLETED"], ["^comp"])
        if kind == "amount":
            return {"field": "amount", "range": self.number_range()}
        if kind == "vendor":
            return self.text_leaf(self.pick(["vendor_type", "kind", "id"]), [*VENDOR_TYPES[:2], "page_view", "a1"],
                                  ["^demo", "view$"])
        if kind == "session":
            return {"field": "session_id", "exists": True}
        return {"field": self.pick(["url", "form", "amount"]), self.pick(["exists", "missing"]): True}

    def text_leaf(self, field: str, words: list[str], patterns: list[str]) -> dict[str, Any]:
        op = self.pick(["equals", "in", "contains", "regex"])
        leaf: dict[str, Any] = {"field": field}
        if op == "equals":
            leaf["equals"] = self.pick(words)
        elif op == "in":
            leaf["in"] = self.rng.sample(words, self.rng.randint(1, len(words)))
        elif op == "contains":
            leaf["contains"] = self.pick(words)
        else:
            leaf["regex"] = self.pick(patterns)
        if self.chance(0.25):
            leaf["case_sensitive"] = True
        return leaf

    def number_range(self) -> dict[str, Any]:
        return self.bounds([0, 10, 50, 99.99, 1000, 5000])

    def bounds(self, values: list[Any]) -> dict[str, Any]:
        """A lower bound, an upper bound or both, each inclusive or exclusive, from `values` (lowest first)."""
        low, high = sorted(self.rng.sample(range(len(values)), 2))
        found: dict[str, Any] = {}
        sides = self.pick(["low", "high", "both"])
        if sides != "high":
            found[self.pick(["min", "above"])] = values[low]
        if sides != "low":
            found[self.pick(["below", "max"])] = values[high]
        return found

    def ladder(self, noun: str) -> list[dict[str, Any]]:
        steps: list[dict[str, Any]] = [{"name": f"{noun}0"}]
        start = self.pick([-5.0, 0.0, 1.0])
        for k in range(1, self.rng.randint(1, 4)):
            start += self.pick([0.01, 0.5, 1, 2.5, 4, 6])
            inclusive = self.chance(0.6)
            step = {"name": f"{noun}{k}", ("min" if inclusive else "above"): round(start, 2)}
            if self.chance(0.3):
                steps[-1]["max" if not inclusive else "below"] = round(start, 2)
            steps.append(step)
        return steps

    def lifecycle(self, section: dict[str, Any]) -> dict[str, Any]:
        stages = ["lead", "mql", "sql", "customer"]
        transitions = []
        for stage in self.rng.sample(stages, self.rng.randint(1, 4)):
            transition: dict[str, Any] = {"to": stage}
            if self.chance(0.4):
                transition["when"] = self.condition(fit=True)
            if self.chance(0.4):
                after = self.what()
                if self.chance(0.5):
                    after["within_days"] = self.duration()
                if self.chance(0.3):
                    after["where"] = self.condition(fit=False)
                transition["after"] = after
            if self.chance(0.4):
                transition["min_total"] = self.pick([0, 3, 6.5])
            if self.chance(0.2):
                transition["min_band"] = self.pick(section["bands"])["name"]
            if "grades" in section and self.chance(0.2):
                transition["grades"] = [self.pick(section["grades"])["name"]]
            if "quadrant" in section and self.chance(0.2):
                transition["quadrants"] = [self.pick(["follow_up_now", "nurture", "qualify", "leave"])]
            transitions.append(transition)
        return {"values": {stage: stage for stage in stages}, "transitions": transitions}

    # ------------------------------------------------------------ data

    def contact(self, contact_id: str) -> Contact:
        fields = {
            "title": self.pick(TITLES), "country": self.pick(COUNTRIES), "employees": self.pick(EMPLOYEES),
            "signed": self.pick(DATES), "project_start": self.pick(DATES), "go_live": self.moment_text(),
            "customer": self.pick([True, False, "true", "no", None]), "phone": self.pick(["", "555", None]),
            "tags": self.pick([["lead", "Partner"], ["lead"], [], None, "partner"]),
        }
        fields = {key: value for key, value in fields.items() if value is not None or self.chance(0.5)}
        raw = {"employees": self.pick(EMPLOYEES), "source": self.pick(["ads", "", None])}
        return Contact(contact_id, ContactKind.CONTACT, BASE, email=self.pick(["a@b.io", None, ""]),
                       name=self.pick(["Ann Lee", None]), owner_id=self.pick(["o1", "o2", None]),
                       status=self.pick(["lead", None]), opted_out=self.chance(0.2), fields=fields, raw=raw)

    def moment_text(self) -> Any:
        """A date field around the base moment, on the rules' spans."""
        if self.chance(0.3):
            return self.pick(DATES)
        offset = timedelta(days=self.pick(self.spans) * self.pick([1, -1])) + self.nudge()
        return (BASE + offset).isoformat()

    def nudge(self) -> timedelta:
        return self.pick([timedelta(0), timedelta(0), timedelta(microseconds=1), timedelta(microseconds=-1),
                          timedelta(hours=5), timedelta(days=-0.5), timedelta(seconds=-1)])

    def activities(self, contact_id: str) -> list[ActivityRow]:
        rows: list[ActivityRow] = []
        for n in range(self.rng.choice([0, 1, 2, 3, 5, 8, 12])):
            roll = self.rng.random()
            if roll < 0.5:  # on a rule's span before the base moment (or a moment after it)
                at = BASE - timedelta(days=self.pick(self.spans)) * self.pick([1, 1, 2]) + self.nudge()
            elif roll < 0.65:  # at or after the base moment
                at = BASE + self.pick([timedelta(0), timedelta(hours=1), timedelta(days=3), timedelta(microseconds=1)])
            elif roll < 0.8:  # around a midnight
                midnight = datetime(2025, 5, self.rng.randint(20, 31), tzinfo=UTC)
                at = midnight + self.pick([timedelta(0), timedelta(microseconds=-1), timedelta(seconds=1),
                                           timedelta(hours=23, minutes=59)])
            else:
                at = BASE - timedelta(days=self.rng.uniform(0, 400))
            if rows and self.chance(0.1):  # at the very moment of another
                at = self.pick(rows)[3]
                at = at if isinstance(at, datetime) else datetime.fromisoformat(at)
            kind = self.pick([*KINDS, "page_view", "page_view", "demo_booked"])
            vendor = self.pick(VENDOR_TYPES) if self.chance(0.3) or kind == "demo_booked" else None
            attributes = self.attributes()
            when: Any = at
            if self.chance(0.3):
                when = (at if self.chance(0.7) else at.astimezone(_PLUS_TWO)).isoformat()
            rows.append((contact_id, f"a{n}", kind, when, vendor,
                         json.dumps(attributes) if self.chance(0.3) else attributes))
        return rows

    def attributes(self) -> dict[str, Any]:
        found = {"url": self.pick(URLS), "form": self.pick(FORMS), "outcome": self.pick(OUTCOMES),
                 "amount": self.pick(AMOUNTS), "session_id": self.pick(["s1", "s2", 3, "", None, None])}
        return {key: value for key, value in found.items() if value is not None and self.chance(0.6)}

    def moments(self, rows: dict[str, list[ActivityRow]]) -> list[datetime]:
        """The base moment, a microsecond either side of it, midnight, and moments on activities and their
        spans."""
        times = [row[3] for found in rows.values() for row in found]
        times = [t if isinstance(t, datetime) else datetime.fromisoformat(t) for t in times]
        moments = [BASE, BASE + timedelta(microseconds=1), datetime(2025, 6, 1, tzinfo=UTC), BASE + timedelta(days=3)]
        for _ in range(2):
            if times:
                moments.append(self.pick(times) + timedelta(days=self.pick([0, *self.spans])))
        return self.rng.sample(moments, 4)


_PLUS_TWO = timezone(timedelta(hours=2))
_DAYS = dict(DURATIONS)


def _days(written: Any) -> float:
    return _DAYS[written]
