"""Lifecycle transitions: driven by score, band and grade; forward only; a status set in the CRM outranks the score."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from leadpulse.core.engine.rules import ScoringConfig
from leadpulse.core.engine.scoring import Engine, Quadrant, ScoreCard, StatusChange
from leadpulse.core.model import Contact, ContactKind, Lifecycle

NOW = datetime(2025, 6, 1, tzinfo=UTC)
HUBSPOT_VALUES = {
    "subscriber": "subscriber", "lead": "lead", "mql": "marketingqualifiedlead",
    "sql": "salesqualifiedlead", "customer": "customer",
}
HUBSPOT_ORDER = ["subscriber", "lead", "marketingqualifiedlead", "salesqualifiedlead", "opportunity", "customer", "evangelist"]


def engine(allow_demotion: bool = False, status_order: list[str] | None = HUBSPOT_ORDER) -> Engine:
    return Engine(ScoringConfig.model_validate({
        "rules": [{"id": "base", "when": {"field": "email", "exists": True}, "points": 1}],
        "bands": [{"name": "unqualified"}, {"name": "intermediate", "min": 6}, {"name": "qualified", "min": 10}],
        "grades": [{"name": "B"}, {"name": "A", "min": 5}],
        "quadrant": {"fit": 5, "engagement": 5},
        "lifecycle": {
            "values": HUBSPOT_VALUES, "status_order": status_order, "allow_demotion": allow_demotion,
            "transitions": [
                {"to": "lead", "min_total": 0},
                {"to": "mql", "min_band": "intermediate"},
                {"to": "sql", "min_band": "qualified", "grades": ["A"]},
            ],
        },
    }))


def decide(scoring: Engine, status: str | None, fit: float, last_set: Lifecycle | None = None) -> StatusChange | None:
    """The decision for a contact whose whole score is `fit` points of fit (grade A from 5)."""
    person = Contact("c1", ContactKind.CONTACT, NOW, email="a@b.io", status=status)
    band = "qualified" if fit >= 10 else "intermediate" if fit >= 6 else "unqualified"
    card = ScoreCard("c1", NOW, fit, {"fit": fit, "engagement": 0.0}, band, "A" if fit >= 5 else "B",
                     Quadrant.NURTURE if fit >= 5 else Quadrant.LEAVE, (), None)
    return scoring.decide_status(person, card, last_set)


def test_the_highest_stage_whose_conditions_hold_is_the_target() -> None:
    assert decide(engine(), "lead", 12) == StatusChange(Lifecycle.LEAD, Lifecycle.SQL, "salesqualifiedlead")


def test_band_threshold_moves_a_lead_to_mql() -> None:
    assert decide(engine(), "lead", 7) == StatusChange(Lifecycle.LEAD, Lifecycle.MQL, "marketingqualifiedlead")


def test_no_change_when_the_contact_is_already_at_the_target() -> None:
    assert decide(engine(), "marketingqualifiedlead", 7) is None


def test_an_empty_status_is_set() -> None:
    assert decide(engine(), None, 1) == StatusChange(None, Lifecycle.LEAD, "lead")


def test_a_falling_score_never_moves_a_status_back() -> None:
    assert decide(engine(), "salesqualifiedlead", 1, last_set=Lifecycle.SQL) is None


def test_leadpulse_never_moves_a_contact_back_below_the_status_it_set_last_though_the_crm_lags() -> None:
    # leadpulse set SQL, which the CRM has not taken (write off, refused or not yet sent); the score falls to MQL
    assert decide(engine(), "lead", 7, last_set=Lifecycle.SQL) is None


def test_a_move_leadpulse_already_made_is_not_made_again_after_a_person_set_the_contact_back() -> None:
    assert decide(engine(), "lead", 7, last_set=Lifecycle.MQL) is None
    assert decide(engine(), "lead", 12, last_set=Lifecycle.MQL) == StatusChange(
        Lifecycle.LEAD, Lifecycle.SQL, "salesqualifiedlead")


def test_demotion_when_allowed_lowers_a_status_leadpulse_set() -> None:
    change = decide(engine(allow_demotion=True), "salesqualifiedlead", 7, last_set=Lifecycle.SQL)
    assert change == StatusChange(Lifecycle.SQL, Lifecycle.MQL, "marketingqualifiedlead")


def test_a_status_set_in_the_crm_outranks_the_score_even_with_demotion_allowed() -> None:
    # a person moved the contact to SQL; leadpulse had set MQL; the score says MQL
    assert decide(engine(allow_demotion=True), "salesqualifiedlead", 7, last_set=Lifecycle.MQL) is None


def test_a_crm_value_outside_the_map_ranks_by_status_order() -> None:
    # opportunity sits between SQL and customer: a score reaching SQL leaves it alone
    assert decide(engine(), "opportunity", 12) is None


def test_a_crm_value_that_ranks_nowhere_is_left_alone() -> None:
    assert decide(engine(status_order=None), "opportunity", 12) is None
    assert decide(engine(), "some-custom-stage", 12) is None


def test_no_lifecycle_section_means_no_status_changes() -> None:
    scoring = Engine(ScoringConfig.model_validate({
        "rules": [{"when": {"field": "email", "exists": True}, "points": 1}],
        "bands": [{"name": "all"}], "quadrant": {"fit": 1, "engagement": 1},
    }))
    person = Contact("c1", ContactKind.CONTACT, NOW, email="a@b.io")
    assert scoring.decide_status(person, scoring.score(person, [], NOW), None) is None


def _transition_engine(**transition: Any) -> Engine:
    return Engine(ScoringConfig.model_validate({
        "rules": [{"when": {"field": "email", "exists": True}, "points": 6}],
        "bands": [{"name": "cold"}, {"name": "warm", "min": 5}],
        "quadrant": {"fit": 5, "engagement": 5},
        "lifecycle": {"values": HUBSPOT_VALUES, "transitions": [{"to": "mql", **transition}]},
    }))


def test_transition_conditions_on_quadrant_and_axis_must_all_hold() -> None:
    person = Contact("c1", ContactKind.CONTACT, NOW, email="a@b.io", status="lead")
    nurture = _transition_engine(quadrants=["nurture"], min_axis={"fit": 6})
    follow_up = _transition_engine(quadrants=["follow_up_now"])
    assert nurture.decide_status(person, nurture.score(person, [], NOW), None) is not None
    assert follow_up.decide_status(person, follow_up.score(person, [], NOW), None) is None
