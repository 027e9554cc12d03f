"""Running a tenant file's examples: scored as a sync scores them, and each difference from what an example
expects said word for word. Every expected number here is worked out by hand from the rules in TENANT."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from leadpulse.core.config.files import load_tenant
from leadpulse.core.config.tenant import TenantConfig
from leadpulse.core.engine.rules import Quadrant
from leadpulse.core.engine.scoring import Engine, ScoreCard
from leadpulse.core.runtime.examples import differences, run_examples

TENANT = """\
tenant: acme
crm:
  kind: hubspot
  connection: {tier: starter}
  secrets: {access_token: {env: ACME_TOKEN}}
fields:
  title: jobtitle
scoring:
  rules:
    - {id: vp, when: {field: title, regex: "\\\\bvp\\\\b"}, points: 4}
    - {id: pricing, activity: page_view, where: {field: url, contains: /pricing}, points: 3, within_days: 30}
    - {id: form, activity: form_submit, points: 5, half_life_days: 10}
  bands:
    - {name: cold}
    - {name: warm, min: 5}
    - {name: hot, BOUND}
  grades: [{name: C}, {name: B, min: 2}, {name: A, min: 4}]
  quadrant: {fit: 4, engagement: 6}
  lifecycle:
    values: {lead: lead, mql: mql}
    transitions: [{to: lead, min_total: 0}, {to: mql, min_band: hot}]
examples:
"""

#: vp 4; a pricing view 3 and a form one half-life old 2.5: engagement 5.5; 9.5 in all
VP = """\
  - name: VP at a target account
    contact: {title: VP Sales}
    activities:
      - {kind: page_view, age: 2d, attributes: {url: /pricing}}
      - {kind: form_submit, age: 10d}
"""


def tenant(tmp_path: Path, examples: str, bound: str = "min: 10") -> TenantConfig:
    path = tmp_path / "acme.yaml"
    path.write_text(TENANT.replace("BOUND", bound) + examples, encoding="utf-8")
    return load_tenant(path)


def failures(tmp_path: Path, examples: str, bound: str = "min: 10") -> list[str]:
    run = run_examples(tenant(tmp_path, examples, bound))
    return [line.replace(str(tmp_path / "acme.yaml"), "FILE") for line in run.failures()]


def test_an_example_that_gets_all_it_expects_passes(tmp_path):
    expect = ("    expect: {score: 9.5, axes: {fit: 4, engagement: 5.5}, band: warm, grade: A, quadrant: nurture, "
              "status: lead}\n")
    run = run_examples(tenant(tmp_path, VP + expect))
    assert [result.passed for result in run.results] == [True]
    assert run.failures() == [] and run.summary() == "examples: 1 passed"


def test_an_example_is_scored_as_the_engine_scores_its_contact(tmp_path):
    config = tenant(tmp_path, VP + "    expect: {band: warm}\n")
    result = run_examples(config).results[0]
    contact, activities = result.example.build("example-1", config.examples.as_of)
    assert result.card == Engine(config.scoring).score(contact, activities, config.examples.as_of)


def test_a_band_below_the_expected_one_says_where_the_expected_one_starts(tmp_path):
    assert failures(tmp_path, VP + "    expect: {band: hot}\n") == [
        'FILE: example "VP at a target account": expected band hot, got warm (score 9.5; the band hot starts at 10)']


def test_a_band_above_the_expected_one_says_where_the_expected_one_ends(tmp_path):
    assert failures(tmp_path, VP + "    expect: {band: cold}\n") == [
        'FILE: example "VP at a target account": expected band cold, got warm (score 9.5; the band cold ends below 5)']


def test_a_score_of_exactly_an_exclusive_lower_bound_is_below_its_band(tmp_path):
    exactly_ten = """\
  - name: VP with two pricing views
    contact: {title: VP Sales}
    activities: [{kind: page_view, age: 1d, count: 2, attributes: {url: /pricing}}]
    expect: {score: 10, band: hot}
"""
    assert failures(tmp_path, exactly_ten, bound="above: 10") == [
        'FILE: example "VP with two pricing views": expected band hot, got warm (score 10; the band hot starts above '
        '10)']


def test_every_other_difference_is_named_with_what_was_got_and_why(tmp_path):
    expect = "    expect: {score: 10, axes: {fit: 5}, grade: B, quadrant: follow_up_now, status: mql}\n"
    assert failures(tmp_path, VP + expect) == [
        'FILE: example "VP at a target account": expected score 10, got 9.5 (fit 4, engagement 5.5)',
        'FILE: example "VP at a target account": expected fit 5, got 4',
        'FILE: example "VP at a target account": expected grade B, got A (fit 4; the grade B ends below 4)',
        'FILE: example "VP at a target account": expected quadrant follow_up_now, got nurture (fit 4, engagement 5.5; '
        'a contact fits from fit 4 and is interested from engagement 6)',
        'FILE: example "VP at a target account": expected status mql, got lead (score 9.5, band warm, grade A, '
        'quadrant nurture; the contact has no status)',
    ]


def test_the_status_is_the_move_from_where_the_contact_stands(tmp_path):
    already_lead = """\
  - name: a lead stays a lead
    contact: {title: VP Sales, status: lead}
    expect: {status: lead}
  - name: no move expected
    expect: {status: none}
"""
    assert failures(tmp_path, already_lead) == [
        'FILE: example "a lead stays a lead": expected status lead, got none (score 4, band cold, grade A, quadrant '
        "nurture; the contact's status is 'lead')",
        'FILE: example "no move expected": expected status none, got lead (score 0, band cold, grade C, quadrant '
        "leave; the contact has no status)",
    ]


def test_examples_are_scored_at_the_documented_default_moment(tmp_path):
    window_edge = """\
  - name: one pricing view a second inside the 30 days, one exactly 30 days old
    activities:
      - {kind: page_view, at: 2024-12-02T00:00:01Z, attributes: {url: /pricing}}
      - {kind: page_view, at: 2024-12-02T00:00:00Z, attributes: {url: /pricing}}
    expect: {score: 3}
"""
    run = run_examples(tenant(tmp_path, window_edge))
    assert run.failures() == [] and run.results[0].card.as_of == datetime(2025, 1, 1, tzinfo=UTC)


def test_the_summary_counts_passed_and_failed_examples(tmp_path):
    assert run_examples(tenant(tmp_path, VP + "    expect: {band: warm}\n  - {name: b, expect: {band: hot}}\n")
                        ).summary() == "examples: 1 passed, 1 failed"
    assert run_examples(tenant(tmp_path, "  []\n")).summary() == "examples: none"


@pytest.mark.parametrize(("expected", "got", "same"), [(0.3, 0.1 + 0.2, True), (9.5, 9.49, False)])
def test_a_score_compares_at_the_two_decimals_the_store_keeps(tmp_path, expected, got, same):
    scoring = tenant(tmp_path, "  []\n").scoring
    expect = tenant(tmp_path, f"  - {{name: a, expect: {{score: {expected}}}}}\n").examples.cases[0].expect
    card = ScoreCard("c1", datetime(2025, 1, 1, tzinfo=UTC), got, {"fit": got, "engagement": 0.0}, "cold", None,
                     Quadrant.LEAVE, (), None)
    assert (differences(scoring, expect, card, None, None) == []) is same
