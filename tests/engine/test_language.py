"""The scoring language as marketers write it: durations, exclusive bounds, count thresholds, distinct occasions,
sequences, dates on contact fields and lifecycle moves on events, each at its boundary, against hand-computed
numbers."""

from __future__ import annotations

import csv
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from file_tenant import NOW as FILE_NOW
from file_tenant import TENANT_YAML, page_view, results, write_exports
from file_tenant import contact as file_contact
from test_scoring import NOW, act, contact, engine, flat

from leadpulse.core.clock import ManualClock
from leadpulse.core.config.files import load_tenant
from leadpulse.core.engine.rules import InactivityRule, ScoringConfig
from leadpulse.core.engine.scoring import Engine, round_half_up
from leadpulse.core.errors import ConfigError
from leadpulse.core.model import Activity, ActivityKind
from leadpulse.core.runtime.pipeline import sync_tenant
from leadpulse.core.store.runs import RunOutcome

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


# ---------------------------------------------------------------- thresholds on counts


def views(*days_ago: float, **attributes: Any) -> list[Activity]:
    return [Activity(f"v{n}", "c1", ActivityKind.PAGE_VIEW, NOW - timedelta(days=ago), attributes=attributes)
            for n, ago in enumerate(days_ago)]


@pytest.mark.parametrize(("pages", "total"), [(4, 0), (5, 10), (9, 10)])
def test_five_pages_or_more_score_once_from_the_fifth(pages: int, total: float) -> None:
    rule = {"id": "five-pages", "activity": "page_view", "min_occurrences": 5, "once": True, "points": 10}
    assert engine(rule).score(contact(), views(*range(1, pages + 1)), NOW).total == total


@pytest.mark.parametrize(("pages", "total"), [(4, 0), (5, 2), (7, 6)])
def test_per_occurrence_points_start_at_the_threshold(pages: int, total: float) -> None:
    rule = {"id": "pages", "activity": "page_view", "min_occurrences": 5, "points": 2}
    assert engine(rule).score(contact(), views(*range(1, pages + 1)), NOW).total == total


@pytest.mark.parametrize(("oldest", "total"), [(6.99, 5), (7, 0)])
def test_at_least_three_visits_within_a_week_counts_only_those_inside_it(oldest: float, total: float) -> None:
    rule = {"id": "busy-week", "activity": "page_view", "min_occurrences": 3, "once": True, "within_days": "1w",
            "points": 5}
    assert engine(rule).score(contact(), views(1, 3, oldest), NOW).total == total


def test_a_threshold_above_the_cap_on_occurrences_is_refused() -> None:
    with pytest.raises(ValueError, match=r"a min_occurrences of at most max_occurrences \(3\), found 4"):
        engine({"activity": "page_view", "points": 1, "min_occurrences": 4, "max_occurrences": 3})


# ---------------------------------------------------------------- distinct occasions


def test_fifty_page_views_in_one_day_are_one_visit() -> None:
    rule = {"id": "visit-days", "activity": "page_view", "count": "days", "points": 1}
    assert engine(rule).score(contact(), views(*[0.1 + n / 1000 for n in range(50)]), NOW).total == 1


def test_a_day_is_a_utc_day_so_a_second_apart_across_midnight_is_two() -> None:
    midnight = NOW.replace(hour=0, minute=0, second=0) - timedelta(days=2)
    rows = [Activity(f"v{n}", "c1", ActivityKind.PAGE_VIEW, at) for n, at in
            enumerate([midnight - timedelta(seconds=1), midnight, midnight + timedelta(hours=23, minutes=59)])]
    rule = {"id": "visit-days", "activity": "page_view", "count": "days", "points": 1}
    assert engine(rule).score(contact(), rows, NOW).total == 2


def test_sessions_count_by_session_and_an_activity_without_one_by_its_day() -> None:
    rows = [*views(1.1, 1.2, 1.3, session_id="s1"), *views(2.1, 2.2, session_id="s2"), *views(1.4, 1.5)]
    rows = [Activity(f"r{n}", "c1", row.kind, row.occurred_at, attributes=row.attributes) for n, row in enumerate(rows)]
    rule = {"id": "sessions", "activity": "page_view", "count": "sessions", "points": 1}
    assert engine(rule).score(contact(), rows, NOW).total == 3  # s1, s2, and the day of the two without


def test_visits_on_three_days_within_a_month_score_once() -> None:
    rule = {"id": "regular", "activity": "page_view", "count": "days", "min_occurrences": 3, "once": True,
            "within_days": "30d", "points": 8}
    assert engine(rule).score(contact(), views(1.1, 1.2, 5.1), NOW).total == 0  # two days
    assert engine(rule).score(contact(), views(1.1, 5.1, 29.5), NOW).total == 8
    assert engine(rule).score(contact(), views(1.1, 5.1, 30.2), NOW).total == 0  # the third day out of the window


# ---------------------------------------------------------------- sequences


def cart(days_ago: float, kind: str = "form_submit", **attributes: Any) -> Activity:
    return Activity(f"{kind}-{days_ago}", "c1", ActivityKind(kind), NOW - timedelta(days=days_ago),
                    attributes=attributes)


ABANDONED = {"id": "abandoned-cart", "activity": "form_submit", "where": {"field": "form", "equals": "cart"},
             "unless_followed_by": {"activity": "deal_won", "within_days": 2}, "points": 6}


def test_a_cart_abandoned_and_never_bought_counts() -> None:
    assert engine(ABANDONED).score(contact(), [cart(5, form="cart")], NOW).total == 6


@pytest.mark.parametrize(("bought_after", "total"), [(timedelta(days=2), 0),
                                                     (timedelta(days=2, seconds=1), 6)])
def test_a_purchase_within_the_window_cancels_the_cart_and_one_a_second_after_it_does_not(bought_after, total) -> None:
    abandoned = NOW - timedelta(days=5)
    rows = [Activity("cart", "c1", ActivityKind.FORM_SUBMIT, abandoned, attributes={"form": "cart"}),
            Activity("won", "c1", ActivityKind.DEAL_WON, abandoned + bought_after)]
    assert engine(ABANDONED).score(contact(), rows, NOW).total == total


def test_a_follow_up_before_the_occurrence_or_after_the_moment_scored_does_not_cancel_it() -> None:
    rule = {**ABANDONED, "unless_followed_by": {"activity": "deal_won"}}
    card = engine(rule).score(contact(), [cart(9, "deal_won"), cart(5, form="cart"), cart(-1, "deal_won")], NOW)
    assert card.total == 6
    assert card.valid_until == NOW + timedelta(days=1)  # when the purchase scored later lands


def test_a_meeting_booked_and_never_held_uses_vendor_types() -> None:
    rule = {"id": "no-show", "vendor_type": "meeting_booked", "unless_followed_by": {"vendor_type": "meeting_held"},
            "points": -3}
    booked = Activity("b", "c1", ActivityKind.OTHER, NOW - timedelta(days=3), vendor_type="meeting_booked")
    held = Activity("h", "c1", ActivityKind.MEETING, NOW - timedelta(days=2), vendor_type="meeting_held")
    assert engine(rule).score(contact(), [booked], NOW).total == -3
    assert engine(rule).score(contact(), [booked, held], NOW).total == 0


def test_a_follow_up_names_what_follows() -> None:
    with pytest.raises(ValueError, match=r"an activity or a vendor_type \(the activity looked for\)"):
        engine({"activity": "form_submit", "points": 1, "unless_followed_by": {"within_days": 2}})


def test_two_sessions_at_the_same_moment_are_two() -> None:
    at = NOW - timedelta(days=1)
    rows = [Activity(f"s{n}", "c1", ActivityKind.PAGE_VIEW, at, attributes={"session_id": f"s{n}"}) for n in range(2)]
    rule = {"id": "sessions", "activity": "page_view", "count": "sessions", "points": 1}
    assert engine(rule).score(contact(), rows, NOW).total == 2


# ---------------------------------------------------------------- dates on contact fields

STARTED_LONG_AGO = {"id": "mature-project", "when": {"field": "project_start", "age": {"above": "90d"}}, "points": 4}


@pytest.mark.parametrize(("started", "total"), [("2025-03-03", 0), ("2025-03-02", 4), ("2025-06-02", 0)])
def test_a_date_field_exactly_90_days_old_is_not_more_than_90_days_old(started: str, total: float) -> None:
    midnight = NOW.replace(hour=0)  # 2025-06-01 00:00: 2025-03-03 is exactly 90 days before it
    assert engine(STARTED_LONG_AGO).score(contact(project_start=started), [], midnight).total == total


def test_a_date_that_will_cross_a_bound_says_when_the_score_changes() -> None:
    card = engine(STARTED_LONG_AGO).score(contact(project_start="2025-03-20"), [], NOW)
    assert card.total == 0
    assert card.valid_until == datetime(2025, 6, 18, tzinfo=UTC) + timedelta(microseconds=1)
    later = engine(STARTED_LONG_AGO).score(contact(project_start="2025-03-20"), [], card.valid_until)
    assert later.total == 4


@pytest.mark.parametrize(("go_live", "total"), [("2025-11-28", 5), ("2025-11-29", 0), ("2025-05-31", 0),
                                                 ("1754006400000", 5)])
def test_a_go_live_within_six_months_is_ahead_of_the_moment_and_no_further(go_live: str, total: float) -> None:
    # NOW is 2025-06-01 12:00; 6mo is 180 days: up to 2025-11-28 12:00
    rule = {"id": "go-live-soon", "when": {"field": "go_live", "ahead": {"max": "6mo"}}, "points": 5}
    assert engine(rule).score(contact(go_live=go_live), [], NOW).total == total


@pytest.mark.parametrize(("signed", "fires"), [("2024-12-31", False), ("2025-01-01", True), ("2025-12-31T23:59:59Z", True),
                                               ("2026-01-01", False), ("not a date", False)])
def test_a_range_of_dates_compares_dates(signed: str, fires: bool) -> None:
    rule = {"id": "signed-2025", "when": {"field": "signed", "range": {"min": "2025-01-01", "below": "2026-01-01"}},
            "points": 2}
    assert engine(rule).score(contact(signed=signed), [], NOW).total == (2 if fires else 0)


def test_a_range_mixing_a_number_and_a_date_is_refused_and_age_is_for_contact_fields() -> None:
    with pytest.raises(ValueError, match="bounds that are all numbers or all dates"):
        engine({"when": {"field": "signed", "range": {"min": 3, "below": "2026-01-01"}}, "points": 1})
    with pytest.raises(ValueError, match="age and ahead read a contact's date fields"):
        engine({"activity": "page_view", "where": {"field": "published", "age": {"max": "7d"}}, "points": 1})


def test_a_date_rule_reads_as_words() -> None:
    card = engine({"when": {"field": "project_start", "age": {"above": "90d"}}, "points": 4}).score(
        contact(project_start="2024-01-01"), [], NOW)
    assert card.contributions[0].detail == "project_start more than 90 days ago"


# ---------------------------------------------------------------- lifecycle moves on events and fields

LIFECYCLE = {
    "values": {"lead": "lead", "mql": "mql", "sql": "sql", "customer": "customer"},
    "transitions": [
        {"to": "mql", "min_total": 10},
        {"to": "sql", "when": {"field": "title", "contains": "buyer"}, "min_total": 5},
        {"to": "customer", "after": {"activity": "deal_won", "within_days": 30}},
    ],
}


def decided(score: float, days_since_won: float | None = None, **fields: Any):
    scoring = engine(flat(score), lifecycle=LIFECYCLE)
    rows = [] if days_since_won is None else [Activity("won", "c1", ActivityKind.DEAL_WON,
                                                       NOW - timedelta(days=days_since_won))]
    person = contact(**fields)
    card = scoring.score(person, rows, NOW)
    change = scoring.decide_status(person, card, None)
    return card, change.to.value if change else None


def test_a_won_deal_makes_a_customer_whatever_the_score() -> None:
    assert decided(1, days_since_won=3)[1] == "customer"
    assert decided(1)[1] is None


@pytest.mark.parametrize(("days", "stage"), [(29.99, "customer"), (30, None)])
def test_an_event_counts_within_its_window(days: float, stage: str | None) -> None:
    card, change = decided(1, days_since_won=days)
    assert change == stage
    if stage:
        assert card.valid_until == NOW + timedelta(days=30 - days)  # when the deal leaves the window


def test_a_field_condition_holds_with_the_score_conditions_of_its_transition() -> None:
    assert decided(6, title="Head Buyer")[1] == "sql"
    assert decided(4, title="Head Buyer")[1] is None  # under its min_total
    assert decided(6, title="Engineer")[1] is None


def test_a_lifecycle_event_names_the_activity_it_looks_for() -> None:
    with pytest.raises(ValueError, match=r"an activity or a vendor_type \(the activity looked for\)"):
        engine(flat(1), lifecycle={**LIFECYCLE, "transitions": [{"to": "customer", "after": {"within_days": 3}}]})


def test_a_won_deal_moves_a_stored_contact_to_customer_and_a_date_crossing_its_bound_moves_one_later(tmp_path) -> None:
    yaml_text = TENANT_YAML.format(name="acme", pricing_points=3).replace(
        "values: {lead: lead, mql: mql}", "values: {lead: lead, mql: mql, sql: sql, customer: customer}").replace(
        "      - {to: mql, min_band: hot}\n",
        "      - {to: mql, min_band: hot}\n"
        "      - {to: sql, when: {field: started, age: {above: 90d}}}\n"
        "      - {to: customer, after: {activity: deal_won}}\n").replace(
        "  title: job_title\n", "  title: job_title\n  started: project_start\n")
    people = [{**file_contact("c1"), "project_start": ""}, {**file_contact("c2"), "project_start": "2025-03-05"}]

    def export(activities: list[dict]) -> None:
        write_exports(tmp_path, [], activities)
        with open(tmp_path / "contacts.csv", "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(people[0]))
            writer.writeheader()
            writer.writerows(people)

    export([page_view("v1", "c1")])
    (tmp_path / "acme.yaml").write_text(yaml_text)
    tenant = load_tenant(tmp_path / "acme.yaml")
    clock = ManualClock(FILE_NOW)  # 2025-06-02: c2's project started 89 days before
    assert sync_tenant(tenant, state_dir=tmp_path / "state", clock=clock).outcome is RunOutcome.SUCCEEDED
    assert {cid: row["lifecycle"] for cid, row in results(tmp_path).items()} == {"c1": "lead", "c2": "lead"}
    export([page_view("v1", "c1"), {"id": "w1", "contact_id": "c1", "kind": "deal_won",
                                    "occurred_at": "2025-06-01T10:00:00Z"}])
    clock.advance(2 * 86400)  # c2's project is now 91 days old: nothing of c2 changed, its score is as saved
    later = sync_tenant(tenant, state_dir=tmp_path / "state", clock=clock)
    assert later.outcome is RunOutcome.SUCCEEDED
    assert {cid: row["lifecycle"] for cid, row in results(tmp_path).items()} == {"c1": "customer", "c2": "sql"}


# ---------------------------------------------------------------- explanations


def test_a_cap_on_occurrences_shows_how_many_counted_of_how_many_matched() -> None:
    rule = {"id": "clicks", "label": "clicked a link in an email", "activity": "page_view", "max_occurrences": 5,
            "points": 1}
    [row] = engine(rule).score(contact(), views(*range(1, 8)), NOW).contributions
    assert (row.points, row.occurrences, row.matched) == (5, 5, 7)
    assert row.text() == "+5 clicked a link in an email (5 of 7 counted)"


def test_a_cap_on_points_says_so_rather_than_a_count_that_reads_like_a_product() -> None:
    rule = {"id": "clicks", "label": "clicked a link in an email", "activity": "page_view", "max_points": 5,
            "points": 1}
    [row] = engine(rule).score(contact(), views(*range(1, 8)), NOW).contributions
    assert row.text() == "+5 clicked a link in an email (7 times, capped at 5)"


def test_decayed_points_show_their_full_value_age_and_half_life_rounded_half_up() -> None:
    rule = {"id": "form", "label": "form filled", "activity": "form_submit", "half_life_days": 45, "points": 5}
    [row] = engine(rule).score(contact(), [cart(135)], NOW).contributions
    assert row.points == 0.63  # 5 x 0.5^3 = 0.625: half up
    assert row.text() == "+0.63 of 5, form filled 135 days ago, half-life 45 days"


@pytest.mark.parametrize(("value", "shown"), [(0.625, 0.63), (2.675, 2.68), (-0.625, -0.63), (0.1 + 0.2, 0.3),
                                              (12.344, 12.34), (1.005, 1.01)])
def test_points_round_half_up_as_their_decimal_text_reads(value: float, shown: float) -> None:
    assert round_half_up(value) == shown


def test_the_value_each_rule_matched_is_told_from_the_same_rules() -> None:
    scoring = engine({"id": "vp", "when": {"field": "title", "regex": r"\bvp\b"}, "points": 4},
                     {"id": "pricing", "activity": "page_view", "where": {"field": "url", "contains": "/pricing"},
                      "points": 2})
    rows = [(a.contact_id, a.id, a.kind, a.occurred_at, a.vendor_type, a.attributes) for a in
            [*views(3, url="/pricing/enterprise"), act("page_view", 1, url="/blog")]]
    assert scoring.matched_values(contact(title="VP Sales"), rows, NOW) == {"vp": "VP Sales",
                                                                             "pricing": "/pricing/enterprise"}


@pytest.mark.parametrize(("rule", "reason"), [
    ({"when": {"field": "title", "regex": r"\b(vp|head of|chief)\b"}}, "+1 title with vp, head of or chief"),
    ({"id": "buyer-role", "when": {"field": "title", "regex": r"\bc[eiot]o\b"}}, "+1 title fits buyer role"),
    ({"when": {"field": "title", "regex": r"\bc[eiot]o\b"}}, "+1 title matching the rule's pattern"),
    ({"when": {"field": "country", "in": ["US", "GB", "DE"]}}, "+1 country is US, GB or DE"),
])
def test_a_fit_rule_without_a_label_reads_as_words_not_as_its_pattern(rule: dict[str, Any], reason: str) -> None:
    fields = {"title": "VP Sales" if "vp" in str(rule) else "CTO", "country": "GB"}
    card = engine({**rule, "points": 1}).score(contact(**fields), [], NOW)
    assert card.reasons(1) == [reason]


# ---------------------------------------------------------------- a single axis, and kinds the vocabulary lacks


def test_a_tenant_scoring_on_a_single_axis_needs_no_quadrant_and_grades_read_that_axis() -> None:
    config = ScoringConfig.model_validate({
        "axes": {"score": {}},
        "rules": [flat(7), {"id": "visits", "activity": "page_view", "points": 2}],
        "bands": [{"name": "cold"}, {"name": "hot", "min": 10}],
        "grades": [{"name": "B"}, {"name": "A", "min": 8}],
    })
    card = Engine(config).score(contact(), views(1, 2), NOW)
    assert (card.axes, card.total, card.band, card.grade, card.quadrant) == ({"score": 11.0}, 11.0, "hot", "A", None)


def test_a_quadrant_is_refused_with_a_single_axis_and_needed_with_fit_and_engagement() -> None:
    with pytest.raises(ValueError, match=r"no quadrant with a single axis"):
        ScoringConfig.model_validate({"axes": {"score": {}}, "rules": [flat(1)], "bands": [{"name": "all"}],
                                      "quadrant": {"fit": 1, "engagement": 1}})
    with pytest.raises(ValueError, match=r"a quadrant: \{fit: N, engagement: N\}"):
        ScoringConfig.model_validate({"rules": [flat(1)], "bands": [{"name": "all"}]})


def test_an_activity_kind_the_vocabulary_lacks_says_to_match_the_crms_own_type(tmp_path) -> None:
    path = tmp_path / "x.yaml"
    path.write_text("tenant: x\ncrm: {kind: file, connection: {contacts: c.csv, activities: a.jsonl, results: r.csv}}\n"
                    "scoring:\n  rules: [{activity: demo_booked, points: 3}]\n  bands: [{name: all}]\n"
                    "  axes: {score: {}}\n")
    with pytest.raises(ConfigError, match=r"to match the CRM's own activity type, write vendor_type: demo_booked "
                                          r"instead of activity\), found 'demo_booked'"):
        load_tenant(path)


def test_the_lifecycle_standing_names_the_transition_that_holds_and_what_the_next_one_lacks() -> None:
    scoring = engine(flat(6), lifecycle=LIFECYCLE)
    assert scoring.lifecycle_standing(scoring.score(contact(title="Engineer"), [], NOW)) == (
        "no transition holds; next, mql needs a score of 10 (now 6)")
    scoring = engine(flat(11), lifecycle=LIFECYCLE)
    assert scoring.lifecycle_standing(scoring.score(contact(title="Engineer"), [], NOW)) == (
        "the transition to mql holds; next, sql needs the contact's fields: title contains buyer")
    won = [Activity("won", "c1", ActivityKind.DEAL_WON, NOW - timedelta(days=40))]
    assert scoring.lifecycle_standing(scoring.score(contact(title="Head Buyer"), won, NOW)) == (
        "the transition to sql holds; next, customer needs a deal_won within 30 days")
