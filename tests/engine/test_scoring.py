"""The scoring engine, rule feature by rule feature, against hand-computed numbers."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from leadpulse.core.engine.rules import ScoringConfig
from leadpulse.core.engine.scoring import Engine, Quadrant
from leadpulse.core.model import Activity, ActivityKind, Contact, ContactKind

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
CLASSIC_BANDS = [{"name": "unqualified"}, {"name": "intermediate", "min": 6}, {"name": "qualified", "min": 10}]


def engine(*rules: dict[str, Any], **extra: Any) -> Engine:
    config = {"rules": list(rules), "bands": CLASSIC_BANDS, "quadrant": {"fit": 5, "engagement": 5}, **extra}
    return Engine(ScoringConfig.model_validate(config))


def contact(**fields: Any) -> Contact:
    return Contact("c1", ContactKind.CONTACT, NOW, email="ann@acme.io", fields=fields)


def act(kind: str, days_ago: float, **attributes: Any) -> Activity:
    return Activity(f"a-{kind}-{days_ago}", "c1", ActivityKind(kind), NOW - timedelta(days=days_ago), attributes=attributes)


def points(*rules: dict[str, Any], fields: dict[str, Any] | None = None, activities: Sequence[Activity] = ()) -> float:
    return engine(*rules).score(contact(**(fields or {})), list(activities), NOW).total


def flat(score: float) -> dict[str, Any]:
    """A fit rule that always fires, to put a total exactly where a test wants it."""
    return {"id": "base", "when": {"field": "email", "exists": True}, "points": score}


# ---------------------------------------------------------------- the classic scale


@pytest.mark.parametrize(
    ("score", "band"),
    [(-3, "unqualified"), (0, "unqualified"), (5, "unqualified"), (5.99, "unqualified"), (6, "intermediate"),
     (9, "intermediate"), (9.99, "intermediate"), (10, "qualified"), (42, "qualified")],
)
def test_classic_scale_places_scores_with_inclusive_lower_bounds(score: float, band: str) -> None:
    assert engine(flat(score)).score(contact(), [], NOW).band == band


def test_band_names_are_listed_lowest_first() -> None:
    assert engine(flat(1)).band_names == ["unqualified", "intermediate", "qualified"]


# ---------------------------------------------------------------- fit conditions


@pytest.mark.parametrize(
    ("condition", "fields", "fires"),
    [
        ({"field": "title", "equals": "ceo"}, {"title": "CEO"}, True),
        ({"field": "title", "equals": "ceo", "case_sensitive": True}, {"title": "CEO"}, False),
        ({"field": "country", "in": ["US", "GB"]}, {"country": "gb"}, True),
        ({"field": "country", "in": ["US", "GB"]}, {"country": "FR"}, False),
        ({"field": "title", "contains": "student"}, {"title": "PhD Student"}, True),
        ({"field": "title", "regex": r"\bvp\b"}, {"title": "VP Sales"}, True),
        ({"field": "title", "regex": r"\bvp\b"}, {"title": "MVP hunter"}, False),
        ({"field": "employees", "range": {"min": 50, "below": 1000}}, {"employees": "50"}, True),
        ({"field": "employees", "range": {"min": 50, "below": 1000}}, {"employees": 1000}, False),
        ({"field": "employees", "range": {"min": 50, "max": 1000}}, {"employees": 1000}, True),
        ({"field": "employees", "range": {"min": 50}}, {"employees": "unknown"}, False),
        ({"field": "phone", "exists": True}, {"phone": ""}, False),
        ({"field": "phone", "missing": True}, {}, True),
        ({"field": "tags", "equals": "partner"}, {"tags": ["lead", "Partner"]}, True),
        ({"field": "customer", "equals": True}, {"customer": "true"}, True),
    ],
)
def test_fit_condition_operators(condition: dict[str, Any], fields: dict[str, Any], fires: bool) -> None:
    assert points({"when": condition, "points": 3}, fields=fields) == (3 if fires else 0)


def test_all_any_not_combine_conditions() -> None:
    rule = {
        "when": {"all": [
            {"any": [{"field": "title", "contains": "head"}, {"field": "title", "contains": "director"}]},
            {"not": {"field": "country", "in": ["RU"]}},
        ]},
        "points": 5,
    }
    assert points(rule, fields={"title": "Head of IT", "country": "DE"}) == 5
    assert points(rule, fields={"title": "Head of IT", "country": "RU"}) == 0
    assert points(rule, fields={"title": "Engineer", "country": "DE"}) == 0


@pytest.mark.parametrize(
    ("condition", "fires_for"),
    [
        ({"any": [{"field": "title", "contains": "head"}, {"field": "title", "contains": "director"}]},
         {"Head of IT", "Director"}),
        ({"any": [{"field": "title", "contains": "head"}, {"field": "title", "contains": "director"},
                  {"field": "title", "equals": "cto"}]}, {"Head of IT", "Director", "CTO"}),
        ({"all": [{"field": "title", "contains": "head"}, {"field": "fields.title", "contains": "it"}]}, {"Head of IT"}),
        ({"not": {"field": "title", "contains": "head"}}, {"Director", "CTO", None}),
        ({"all": [{"field": "title", "contains": "head"}, {"not": {"field": "country", "in": ["RU"]}}]}, {"Head of IT"}),
        ({"any": [{"field": "title", "equals": "cto"}, {"field": "email", "regex": "^ann@"}]},
         {"Head of IT", "Director", "CTO", None}),
    ],
)
def test_conditions_on_one_field_or_several_fire_alike(condition: dict[str, Any], fires_for: set[str | None]) -> None:
    # One field read once for the whole condition, or each part reading its own: the same answers.
    for title in ("Head of IT", "Director", "CTO", None):
        fields = {"country": "DE"} if title is None else {"title": title, "country": "DE"}
        assert points({"when": condition, "points": 3}, fields=fields) == (3 if title in fires_for else 0), title


def test_where_conditions_on_one_attribute_or_the_activity_itself() -> None:
    views = [act("page_view", 1, url="/pricing"), act("page_view", 2, url="/plans"), act("page_view", 3, url="/blog"),
             act("page_view", 4), Activity("a9", "c1", ActivityKind.OTHER, NOW - timedelta(days=1), vendor_type="visit",
                                          attributes={"url": "/plans"})]
    either = {"any": [{"field": "url", "contains": "/pricing"}, {"field": "attributes.url", "contains": "/plans"}]}
    assert points({"activity": "page_view", "where": either, "points": 1}, activities=views) == 2
    assert points({"activity": "page_view", "where": {"not": {"field": "url", "contains": "/p"}}, "points": 1},
                  activities=views) == 2
    mixed = {"all": [{"field": "url", "contains": "/p"}, {"field": "id", "regex": "-[12]$"}]}
    assert points({"activity": "page_view", "where": mixed, "points": 1}, activities=views) == 2
    by_vendor = {"vendor_type": "visit", "where": {"field": "url", "contains": "/plans"}, "points": 4}
    assert points(by_vendor, {"activity": "page_view", "where": either, "points": 1}, activities=views) == 6


def test_fit_points_add_up_in_rule_order_whatever_each_rule_reads() -> None:
    # 0.1 + 0.2 + 0.375 rounds to 0.68; in another order (0.2 + 0.375 + 0.1) to 0.67.
    rules = [{"when": {"field": "email", "exists": True}, "points": 0.1},
             {"when": {"field": "title", "exists": True}, "points": 0.2},
             {"when": {"field": "company", "exists": True}, "points": 0.375}]
    assert points(*rules, fields={"title": "CTO", "company": "Acme"}) == 0.68


def test_rules_read_contact_attributes_and_raw_vendor_properties() -> None:
    rule = {"when": {"all": [{"field": "email", "regex": "@acme\\."}, {"field": "raw.hs_persona", "equals": "persona_1"}]}, "points": 2}
    person = Contact("c1", ContactKind.CONTACT, NOW, email="ann@acme.io", raw={"hs_persona": "persona_1"})
    assert engine(rule).score(person, [], NOW).total == 2


def test_negative_fit_points_take_away() -> None:
    assert points(flat(4), {"when": {"field": "title", "contains": "student"}, "points": -10}, fields={"title": "student"}) == -6


# ---------------------------------------------------------------- engagement


def test_points_per_occurrence_without_cap_keep_growing() -> None:
    rule = {"activity": "page_view", "points": 2}
    assert points(rule, activities=[act("page_view", d) for d in range(30)]) == 60


def test_where_conditions_filter_activities() -> None:
    rule = {"activity": "page_view", "where": {"field": "url", "contains": "/pricing"}, "points": 5}
    views = [act("page_view", 1, url="/pricing"), act("page_view", 2, url="/blog"), act("page_view", 3, url="/PRICING/team")]
    assert points(rule, activities=views) == 10


def test_vendor_type_matches_the_crm_own_activity_type() -> None:
    lunch = Activity("a1", "c1", ActivityKind.OTHER, NOW - timedelta(days=1), vendor_type="lunch")
    assert points({"vendor_type": "lunch", "points": 5}, activities=[lunch]) == 5


def test_max_points_caps_the_rule_total() -> None:
    rule = {"activity": "email_open", "points": 1, "max_points": 5}
    assert points(rule, activities=[act("email_open", d) for d in range(8)]) == 5


def test_max_points_caps_negative_rules_by_size() -> None:
    rule = {"activity": "email_bounce", "points": -3, "max_points": 5}
    assert points(rule, activities=[act("email_bounce", d) for d in range(4)]) == -5


def test_max_occurrences_counts_the_newest_ones() -> None:
    rule = {"activity": "email_click", "points": 4, "half_life_days": 10, "max_occurrences": 2}
    # the newest two: ages 0 and 10 days -> 4 + 2; the one 20 days old (1) is left out
    assert points(rule, activities=[act("email_click", 20), act("email_click", 0), act("email_click", 10)]) == 6


def test_decay_halves_after_one_half_life_and_quarters_after_two() -> None:
    rule = {"activity": "form_submit", "points": 8, "half_life_days": 30}
    assert points(rule, activities=[act("form_submit", 0)]) == 8
    assert points(rule, activities=[act("form_submit", 30)]) == 4
    assert points(rule, activities=[act("form_submit", 60)]) == 2
    assert points(rule, activities=[act("form_submit", 15)]) == 5.66  # 8 / sqrt(2), rounded


def test_window_counts_an_activity_until_it_is_exactly_n_days_old() -> None:
    rule = {"activity": "page_view", "points": 3, "within_days": 30}
    assert points(rule, activities=[act("page_view", 30 - 1 / 86400)]) == 3
    assert points(rule, activities=[act("page_view", 30)]) == 0
    assert points(rule, activities=[act("page_view", 31)]) == 0


def test_expiry_drops_points_after_n_days() -> None:
    rule = {"activity": "webinar", "points": 6, "expires_after_days": 90}
    assert points(rule, activities=[act("webinar", 89.9)]) == 6
    assert points(rule, activities=[act("webinar", 90)]) == 0


def test_activities_after_as_of_do_not_count_yet() -> None:
    assert points({"activity": "meeting", "points": 6}, activities=[act("meeting", -1)]) == 0


def test_unsubscribe_rule_takes_points_away() -> None:
    rules = [flat(12), {"activity": "unsubscribe", "points": -15, "max_occurrences": 1}]
    assert points(*rules, activities=[act("unsubscribe", 3), act("unsubscribe", 1)]) == -3


# ---------------------------------------------------------------- inactivity


def test_inactivity_applies_from_exactly_n_days_without_activity() -> None:
    rule = {"inactive_days": 60, "points": -5, "activity": ["email_open", "page_view"]}
    assert points(rule, activities=[act("page_view", 60)]) == -5
    assert points(rule, activities=[act("page_view", 59)]) == 0


def test_inactivity_ignores_other_kinds() -> None:
    rule = {"inactive_days": 60, "points": -5, "activity": "page_view"}
    assert points(rule, activities=[act("page_view", 90), act("note", 1)]) == -5


def test_inactivity_counts_never_active_contacts_unless_told_not_to() -> None:
    assert points({"inactive_days": 30, "points": -2}) == -2
    assert points({"inactive_days": 30, "points": -2, "count_never_active": False}) == 0


# ---------------------------------------------------------------- axes, grade, quadrant


def test_total_is_the_weighted_sum_of_axes() -> None:
    scoring = engine(
        flat(10), {"activity": "call", "points": 4},
        axes={"fit": {"weight": 0.5}, "engagement": {"weight": 2}},
    )
    card = scoring.score(contact(), [act("call", 1)], NOW)
    assert card.axes == {"fit": 10, "engagement": 4}
    assert card.total == 13


def test_axis_cap_applies_only_when_configured() -> None:
    rule = {"activity": "page_view", "points": 10}
    views = [act("page_view", d) for d in range(20)]
    assert engine(rule).score(contact(), views, NOW).total == 200
    capped = engine(rule, axes={"fit": {}, "engagement": {"max": 100}})
    assert capped.score(contact(), views, NOW).total == 100


def test_custom_axis_adds_to_the_total() -> None:
    rule = {"axis": "intent", "activity": "form_submit", "points": 7}
    scoring = engine(rule, axes={"fit": {}, "engagement": {}, "intent": {"weight": 1}})
    assert scoring.score(contact(), [act("form_submit", 1)], NOW).axes["intent"] == 7


@pytest.mark.parametrize(("fit", "grade"), [(-1, "D"), (0, "C"), (4.99, "C"), (5, "B"), (10, "A"), (30, "A")])
def test_grade_is_a_letter_on_the_fit_axis(fit: float, grade: str) -> None:
    grades = [{"name": "D"}, {"name": "C", "min": 0}, {"name": "B", "min": 5}, {"name": "A", "min": 10}]
    assert engine(flat(fit), grades=grades).score(contact(), [], NOW).grade == grade


def test_grade_is_none_without_grades() -> None:
    assert engine(flat(1)).score(contact(), [], NOW).grade is None


@pytest.mark.parametrize(
    ("fit", "clicks", "quadrant"),
    [(5, 5, Quadrant.FOLLOW_UP_NOW), (5, 4, Quadrant.NURTURE), (4, 5, Quadrant.QUALIFY), (4, 4, Quadrant.LEAVE)],
)
def test_quadrant_from_fit_and_engagement_thresholds(fit: float, clicks: int, quadrant: Quadrant) -> None:
    scoring = engine(flat(fit), {"activity": "email_click", "points": 1})
    assert scoring.score(contact(), [act("email_click", d) for d in range(clicks)], NOW).quadrant is quadrant


# ---------------------------------------------------------------- explanations


def test_every_fired_rule_leaves_its_contribution_in_rule_order() -> None:
    scoring = engine(
        {"id": "pricing", "label": "viewed pricing", "activity": "page_view", "points": 5},
        {"id": "vp", "when": {"field": "title", "contains": "vp"}, "points": 3},
        {"id": "student", "when": {"field": "title", "contains": "student"}, "points": -10},
    )
    card = scoring.score(contact(title="VP Sales"), [act("page_view", 1), act("page_view", 2)], NOW)
    assert [(c.rule_id, c.axis, c.points, c.occurrences) for c in card.contributions] == [
        ("pricing", "engagement", 10, 2), ("vp", "fit", 3, 1),
    ]
    assert card.reasons(2) == ["+10 viewed pricing (2 times)", "+3 title contains vp"]


def test_rules_without_an_id_get_a_derived_one() -> None:
    card = engine({"activity": "page_view", "points": 1}, {"activity": "page_view", "points": 2}).score(
        contact(), [act("page_view", 1)], NOW
    )
    assert [c.rule_id for c in card.contributions] == ["page_view", "page_view-2"]


def test_reasons_rank_by_size_whatever_the_sign() -> None:
    card = engine(flat(2), {"id": "u", "label": "unsubscribed", "activity": "unsubscribe", "points": -15}).score(
        contact(), [act("unsubscribe", 1)], NOW
    )
    assert card.reasons() == ["-15 unsubscribed", "+2 email present"]


# ---------------------------------------------------------------- purity, valid_until, fingerprint


def test_same_inputs_give_the_same_card() -> None:
    rules = [{"activity": "email_open", "points": 1, "half_life_days": 7}, flat(3)]
    activities = [act("email_open", d) for d in (1, 5, 9)]
    assert engine(*rules).score(contact(), activities, NOW) == engine(*rules).score(contact(), list(reversed(activities)), NOW)


def test_valid_until_is_the_window_edge_of_the_oldest_counted_activity() -> None:
    card = engine({"activity": "page_view", "points": 3, "within_days": 30}).score(
        contact(), [act("page_view", 5), act("page_view", 20), act("page_view", 40)], NOW
    )
    assert card.valid_until == NOW + timedelta(days=10)


def test_valid_until_is_when_inactivity_starts() -> None:
    card = engine({"inactive_days": 60, "points": -5}).score(contact(), [act("call", 45)], NOW)
    assert card.valid_until == NOW + timedelta(days=15)


def test_valid_until_follows_the_decay_recheck_interval() -> None:
    rule = {"activity": "email_open", "points": 1, "half_life_days": 7}
    card = engine(rule, decay_recheck="6h").score(contact(), [act("email_open", 1)], NOW)
    assert card.valid_until == NOW + timedelta(hours=6)


def test_valid_until_is_none_when_time_cannot_change_the_score() -> None:
    assert engine(flat(3), {"activity": "call", "points": 1}).score(contact(), [act("call", 400)], NOW).valid_until is None


def test_score_at_valid_until_differs_and_before_it_does_not() -> None:
    scoring = engine({"activity": "page_view", "points": 3, "within_days": 30})
    views = [act("page_view", 5), act("page_view", 20)]
    card = scoring.score(contact(), views, NOW)
    assert card.valid_until is not None
    assert scoring.score(contact(), views, card.valid_until - timedelta(seconds=1)).total == card.total
    assert scoring.score(contact(), views, card.valid_until).total == card.total - 3


def test_fingerprint_changes_iff_rules_change() -> None:
    assert engine(flat(3)).fingerprint == engine(flat(3)).fingerprint
    assert engine(flat(3)).fingerprint != engine(flat(4)).fingerprint
