"""The scoring language as marketers write it: durations, exclusive bounds, count thresholds, distinct occasions,
sequences, dates on contact fields and lifecycle moves on events, each at its boundary, against hand-computed
numbers."""

from __future__ import annotations

from typing import Any

import pytest
from test_scoring import NOW, act, contact, engine, flat

from leadpulse.core.engine.rules import InactivityRule, ScoringConfig

# ---------------------------------------------------------------- durations


@pytest.mark.parametrize(("days_ago", "counted"), [(41.99, 1), (42, 0)])
def test_a_window_in_weeks_is_that_many_days(days_ago: float, counted: int) -> None:
    rule = {"id": "visit", "activity": "page_view", "points": 2, "within_days": "6w"}
    card = engine(rule).score(contact(), [act("page_view", days_ago)], NOW)
    assert card.total == 2 * counted


@pytest.mark.parametrize(("text", "days"), [("3mo", 90), ("1y", 365), ("36h", 1.5), (45, 45)])
def test_days_are_asked_as_a_number_or_as_a_duration(text: Any, days: float) -> None:
    config = ScoringConfig.model_validate({"rules": [{"inactive_days": text, "points": -5}], "bands": [{"name": "all"}],
                                           "quadrant": {"fit": 1, "engagement": 1}})
    rule = config.rules[0]
    assert isinstance(rule, InactivityRule) and rule.inactive_days == days


def test_a_duration_the_grammar_lacks_is_refused_saying_what_it_takes() -> None:
    with pytest.raises(ValueError, match=r"expected a number of days or a duration like .*6w or 3mo, found '6 weeks'"):
        engine({"activity": "page_view", "points": 1, "half_life_days": "6 weeks"})


# ---------------------------------------------------------------- exclusive bounds

EXCEEDS_10 = [{"name": "cold"}, {"name": "warm", "min": 5, "max": 10}, {"name": "qualified", "above": 10}]


@pytest.mark.parametrize(("score", "band"), [(4.99, "cold"), (5, "warm"), (10, "warm"), (10.01, "qualified")])
def test_a_band_that_starts_above_a_score_leaves_that_score_to_the_band_below(score: float, band: str) -> None:
    assert engine(flat(score), bands=EXCEEDS_10).score(contact(), [], NOW).band == band


@pytest.mark.parametrize(("ladder", "message"), [
    ([{"name": "a"}, {"name": "b", "min": 5, "max": 10}, {"name": "c", "min": 10}],
     r"expected above: 10, since band 'b' ends with max: 10 \(so 10 is in it\), found min: 10 "
     r"\(an overlap at 10\)"),
    ([{"name": "a", "below": 10}, {"name": "b", "above": 10}],
     r"expected min: 10, since band 'a' ends with below: 10 \(so 10 is not in it\), found "
     r"above: 10 \(a gap at 10\)"),
    ([{"name": "a"}, {"name": "b", "min": 3, "above": 4}], r"either min \(inclusive\) or above \(exclusive\)"),
])
def test_a_ladder_whose_bounds_leave_a_gap_or_an_overlap_at_a_score_is_refused(ladder, message) -> None:
    with pytest.raises(ValueError, match=message):
        ScoringConfig.model_validate({"rules": [flat(1)], "bands": ladder, "quadrant": {"fit": 1, "engagement": 1}})


@pytest.mark.parametrize(("employees", "fires"), [(50, False), (50.5, True), (1000, True), (1000.5, False)])
def test_a_range_above_a_number_leaves_that_number_out(employees: float, fires: bool) -> None:
    rule = {"id": "size", "when": {"field": "employees", "range": {"above": 50, "max": 1000}}, "points": 3}
    assert engine(rule).score(contact(employees=employees), [], NOW).total == (3 if fires else 0)
