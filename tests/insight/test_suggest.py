"""`suggest` on generated data whose conversions depend on two known criteria, and its time-ordered split."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from file_tenant import write_exports

from leadpulse.core.cli.main import main
from leadpulse.core.config.files import load_tenant
from leadpulse.core.engine.insight.suggest import split_moments
from leadpulse.core.runtime.pipeline import sync_tenant
from leadpulse.core.runtime.suggestion import suggest
from leadpulse.core.store.store import Store

END = datetime(2025, 6, 1, tzinfo=UTC)
DAYS = 480
INDUSTRIES = ["Software", "Retail", "Banking", "Energy", "Farming"]

TENANT = """\
tenant: gen
crm:
  kind: file
  connection: {contacts: contacts.csv, activities: activities.jsonl, outcomes: outcomes.csv, results: out/results.csv}
fields: {industry: industry, country: country, employees: employees, title: title}
scoring:
  rules:
    - {id: vp, label: a VP, when: {field: title, contains: vp}, points: 5}
    - {id: viewed, label: viewed a page, activity: page_view, points: 1, max_points: 5}
  bands: [{name: cold}, {name: warm, min: 3}, {name: hot, min: 6}]
  quadrant: {fit: 3, engagement: 3}
"""


def generate(folder: Path, contacts: int, seed: int = 7) -> None:
    """Contacts made over the last 480 days, whose daily chance of converting is 0.05% times 6 in Software, times
    8 in the 90 days after a form; page views, email opens, country, size and title are noise."""
    rng = np.random.default_rng(seed)
    start = END - timedelta(days=DAYS)
    made = rng.integers(0, DAYS - 30, contacts)
    software = rng.random(contacts) < 0.3
    industries = np.where(software, "Software", rng.choice(INDUSTRIES[1:], contacts))
    rows, activities, outcomes = [], [], []
    day = np.arange(DAYS)
    for i in range(contacts):
        forms = np.sort(rng.choice(np.arange(made[i], DAYS), size=rng.poisson(2) + 0, replace=True))
        recent = np.zeros(DAYS, dtype=bool)
        for form in forms:
            recent[form + 1:form + 91] = True  # the days after a form, within 90 days of it
        hazard = 0.0005 * (6 if software[i] else 1) * np.where(recent, 8, 1) * (day >= made[i])
        hits = np.flatnonzero(rng.random(DAYS) < hazard)
        converted = int(hits[0]) if hits.size else None
        rows.append({"id": f"c{i}", "industry": industries[i], "country": rng.choice(["DE", "FR", "US"]),
                     "employees": int(rng.integers(5, 5000)), "title": rng.choice(["Engineer", "Analyst", "VP Sales"]),
                     "created_at": (start + timedelta(days=int(made[i]))).isoformat()})
        for n, form in enumerate(forms):
            activities.append({"id": f"f{i}-{n}", "contact_id": f"c{i}", "kind": "form_submit",
                               "occurred_at": (start + timedelta(days=int(form), hours=9)).isoformat()})
        for n, seen in enumerate(rng.integers(made[i], DAYS, rng.poisson(4))):
            kind = "page_view" if n % 2 else "email_open"
            activities.append({"id": f"p{i}-{n}", "contact_id": f"c{i}", "kind": kind,
                               "occurred_at": (start + timedelta(days=int(seen), hours=10)).isoformat()})
        when = (start + timedelta(days=converted, hours=15)).isoformat() if converted is not None else ""
        outcomes.append({"contact_id": f"c{i}", "converted": str(converted is not None).lower(), "converted_at": when})
    write_exports(folder, rows, activities)
    with open(folder / "outcomes.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(outcomes[0]))
        writer.writeheader()
        writer.writerows(outcomes)
    (folder / "gen.yaml").write_text(TENANT)


@pytest.fixture(scope="module")
def synced(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("suggest")
    generate(folder / "config", 4000)
    tenant = load_tenant(folder / "config" / "gen.yaml")
    assert sync_tenant(tenant, state_dir=folder / "state", dry_run=True).error is None
    return folder / "config", folder / "state"


def test_the_split_never_trains_on_a_moment_it_judges_nor_on_one_whose_horizon_reaches_into_them():
    moments = [END - timedelta(days=30 * k) for k in range(12)]
    split = split_moments(moments, timedelta(days=90))
    assert split.judge == tuple(sorted(moments)[-4:])
    assert not set(split.train) & set(split.judge)
    assert all(at + timedelta(days=90) <= split.judge[0] for at in split.train)
    assert len(split.train) == 6  # the two moments whose 90 days reach past the first judged one are left out
    with pytest.raises(ValueError, match="none to train on"):
        split_moments(moments[:3], timedelta(days=90))


def test_on_conversions_driven_by_two_criteria_it_proposes_rules_on_exactly_those_two(synced):
    config, state = synced
    tenant = load_tenant(config / "gen.yaml")
    with Store.open(tenant.store_path(state)) as store:
        found = suggest(store, tenant)
    assert found.document is not None, found.notes
    rules = found.document["scoring"]["rules"]
    read = {rule["when"]["field"] if "when" in rule else str(rule["activity"]) for rule in rules}
    assert read == {"industry", "form_submit"}, rules
    software = [rule for rule in rules if rule.get("when", {}).get("field") == "industry"]
    assert all(rule["when"].get("equals") == "Software" and rule["points"] > 0 for rule in software)
    [current, proposal, reference] = found.judged
    assert proposal.auc is not None and current.auc is not None and proposal.auc > current.auc + 0.1
    assert reference.auc is not None and proposal.auc >= reference.auc - 0.02


def test_the_proposal_validates_and_backtests_beside_the_current_rules(synced, tmp_path):
    config, state = synced
    out = tmp_path / "proposal.yaml"
    where = ["--config-dir", str(config), "--state-dir", str(state)]
    result = CliRunner().invoke(main, ["suggest", "--out", str(out), *where])
    assert result.exit_code == 0, result.output
    assert "proposed rules" in result.output and "reference (gradient boosting)" in result.output
    proposal, current = load_tenant(out), load_tenant(config / "gen.yaml")
    assert (proposal.name, proposal.crm.kind, proposal.fields, proposal.writeback) == (
        current.name, current.crm.kind, current.fields, current.writeback)
    assert [step.name for step in proposal.scoring.bands] == ["cold", "warm", "hot"]
    result = CliRunner().invoke(main, ["backtest", "--rules", str(out), "--json", *where])
    assert result.exit_code == 0, result.output
    assert [rules["name"] for rules in json.loads(result.output)["rules"]] == ["current", "proposal.yaml"]
    assert yaml.safe_load(out.read_text()).get("examples") is None


def test_with_too_few_conversions_it_says_how_many_it_has_and_needs_and_proposes_nothing(tmp_path):
    generate(tmp_path / "config", 300)
    tenant = load_tenant(tmp_path / "config" / "gen.yaml")
    sync_tenant(tenant, state_dir=tmp_path / "state", dry_run=True)
    result = CliRunner().invoke(main, ["suggest", "--config-dir", str(tmp_path / "config"), "--state-dir",
                                       str(tmp_path / "state")])
    assert result.exit_code == 0, result.output
    assert "learned nothing" in result.output and "needs at least 300" in result.output
    assert "proposed rules" not in result.output and "scoring:" not in result.output


def test_a_proposal_is_not_written_into_the_config_folder_where_it_would_name_the_tenant_twice(synced):
    config, state = synced
    result = CliRunner().invoke(main, ["suggest", "--out", str(config / "proposal.yaml"), "--config-dir", str(config),
                                       "--state-dir", str(state)])
    assert result.exit_code == 2 and "write the proposal elsewhere" in result.output
    assert not (config / "proposal.yaml").exists()
