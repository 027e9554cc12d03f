"""The column-wise engine agrees with the per-contact engine, contribution by contribution, on random tenants and
data placed on every boundary (see generated_rules.py): hundreds of seeded cases, each a rule set loaded as the
product loads a tenant file, 20 to 50 contacts and four moments."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from generated_rules import Case, case

from leadpulse.core.config.files import load_tenant
from leadpulse.core.engine.columnar import CardSummary, ColumnEngine, summarize
from leadpulse.core.engine.rules import ScoringConfig
from leadpulse.core.engine.scoring import Engine

CASES = 400
CHUNKS = 8
TENANT = """\
tenant: generated
crm: {kind: file, connection: {contacts: c.csv, activities: a.jsonl, results: r.csv}}
fields: {title: job_title, country: country, employees: employees, signed: signed, project_start: project_start,
         go_live: go_live, customer: customer, phone: phone, tags: tags}
"""


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("generated")


def loaded(found: Case, folder: Path) -> ScoringConfig:
    """The case's scoring section written into a tenant file and read by the product's loader."""
    path = folder / f"seed-{found.seed}.yaml"
    path.write_text(TENANT + yaml.safe_dump({"scoring": found.scoring}, sort_keys=False))
    return load_tenant(path).scoring


def differences(engine: CardSummary, columns: CardSummary) -> Iterator[str]:
    for name in ("total", "axes", "band", "grade", "quadrant", "events"):
        if getattr(engine, name) != getattr(columns, name):
            yield f"{name}: engine {getattr(engine, name)!r}, columnar {getattr(columns, name)!r}"
    by_rule = {c[0]: c for c in engine.contributions}
    found = {c[0]: c for c in columns.contributions}
    for rule_id in sorted(by_rule.keys() | found.keys()):
        if by_rule.get(rule_id) != found.get(rule_id):
            yield f"rule {rule_id}: engine {by_rule.get(rule_id)}, columnar {found.get(rule_id)}"


def disagreements(seed: int, folder: Path) -> list[str]:
    found = case(seed)
    config = loaded(found, folder)
    engine, columns = Engine(config), ColumnEngine(config)
    batch = columns.batch(found.contacts, found.rows)
    faults = []
    for moment in found.moments:
        scores = columns.score(batch, moment)
        for i, contact in enumerate(found.contacts):
            card = engine.score_rows(contact, found.rows[contact.id], moment)
            told = list(differences(summarize(card), scores.summary(i)))
            if told:
                faults.append(f"seed {seed}, as of {moment.isoformat()}, contact {contact.id}: " + "; ".join(told))
    return faults


@pytest.mark.slow
@pytest.mark.parametrize("chunk", range(CHUNKS))
def test_the_column_wise_engine_gives_every_contact_the_per_contact_engines_score(chunk: int, folder: Path) -> None:
    faults = [fault for seed in range(chunk, CASES, CHUNKS) for fault in disagreements(seed, folder)]
    assert not faults, f"{len(faults)} disagreements, the first:\n" + "\n".join(faults[:5])


def constructs(section: Any) -> Iterator[str]:
    """Every key and every shape the section uses, with the leaf operators named as such."""
    if isinstance(section, dict):
        for key, value in section.items():
            yield key
            if key in ("count", "activity") and isinstance(value, str):
                yield f"{key}={value}"
            yield from constructs(value)
    elif isinstance(section, list):
        for item in section:
            yield from constructs(item)


def test_the_generated_cases_use_every_construct_of_the_scoring_language() -> None:
    used = Counter(name for seed in range(CASES) for name in constructs(case(seed).scoring))
    wanted = {
        "all", "any", "not", "equals", "in", "contains", "regex", "range", "age", "ahead", "exists", "missing",
        "case_sensitive", "min", "above", "below", "max", "when", "activity", "vendor_type", "where", "count=days",
        "count=sessions", "min_occurrences", "max_occurrences", "once", "unless_followed_by", "within_days",
        "max_points", "expires_after_days", "half_life_days", "inactive_days", "count_never_active", "axis", "weight",
        "grades", "quadrant", "lifecycle", "after", "min_total", "min_band", "quadrants", "id",
    }
    assert wanted - used.keys() == set()
    singles = sum("quadrant" not in case(seed).scoring for seed in range(40))
    assert singles > 0  # tenants scoring on a single axis
