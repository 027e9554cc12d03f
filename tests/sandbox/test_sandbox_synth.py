"""Synthetic tenants: deterministic, realistic enough for a backtest, cheap to scale."""
from collections import Counter

import pytest

from leadpulse.sandbox.synth import ACTIVITY_SLOTS, YEAR_MS, ActivityKind, Tenant

ANCHOR = 1_750_000_000_000


def test_same_seed_gives_the_same_tenant():
    first, second = Tenant(200, seed=3, anchor_ms=ANCHOR), Tenant(200, seed=3, anchor_ms=ANCHOR)
    assert [first.person(i) for i in range(200)] == [second.person(i) for i in range(200)]
    assert [first.activities(i) for i in range(50)] == [second.activities(i) for i in range(50)]


def test_another_seed_gives_another_tenant():
    assert Tenant(10, seed=1, anchor_ms=ANCHOR).person(0) != Tenant(10, seed=2, anchor_ms=ANCHOR).person(0)


def test_mixes_cover_students_opt_outs_and_every_stage():
    people = [Tenant(3000, seed=5, anchor_ms=ANCHOR).person(i) for i in range(3000)]
    titles = Counter(p.title for p in people)
    assert titles["Student"] + titles["PhD Student"] > 100
    assert 0.03 < sum(p.opted_out for p in people) / 3000 < 0.1
    assert {p.lifecycle for p in people} >= {"subscriber", "lead", "mql", "sql", "customer"}
    assert len({p.company.country for p in people}) > 10 and len({p.owner_id for p in people}) > 5


def test_conversion_favours_fit_and_engaged_people():
    tenant = Tenant(4000, seed=9, anchor_ms=ANCHOR)
    people = [tenant.person(i) for i in range(4000)]
    hot = [p for p in people if p.fit > 0.6 and p.interest > 0.5]
    cold = [p for p in people if p.fit < 0.4 and p.interest < 0.2]
    def rate(group):
        return sum(p.converted for p in group) / len(group)

    assert rate(hot) > 3 * rate(cold) and 0.03 < rate(people) < 0.4


def test_activities_span_a_year_with_recent_ones_denser():
    tenant = Tenant(1500, seed=2, anchor_ms=ANCHOR)
    activities = [a for i in range(1500) for a in tenant.activities(i)]
    assert {a.kind for a in activities} == set(ActivityKind)
    assert all(ANCHOR - YEAR_MS <= a.occurred_ms <= ANCHOR for a in activities)
    last_quarter = sum(a.occurred_ms > ANCHOR - YEAR_MS // 4 for a in activities)
    first_quarter = sum(a.occurred_ms < ANCHOR - 3 * YEAR_MS // 4 for a in activities)
    assert last_quarter > 2 * first_quarter
    assert 5 < len(activities) / 1500 < 15


def test_activity_ids_lead_back_to_their_person():
    tenant = Tenant(50, seed=4, anchor_ms=ANCHOR)
    for activity in tenant.activities(17):
        assert tenant.activity_index(activity.id)[0] == 17
        assert activity.id <= 18 * ACTIVITY_SLOTS
        assert activity.occurred_ms <= tenant.last_touch_ms(17)


def test_activities_of_one_kind_are_the_full_list_filtered():
    tenant = Tenant(100, seed=6, anchor_ms=ANCHOR)
    for index in range(100):
        every = tenant.activities(index)
        for kind in ActivityKind:
            assert tenant.activities(index, kind) == [a for a in every if a.kind is kind]


def test_activities_per_contact_sets_the_mean_and_keeps_recent_ones_denser():
    for mean in (2.0, 10.0):
        tenant = Tenant(3000, seed=8, anchor_ms=ANCHOR, activities_per_contact=mean)
        activities = [a for i in range(3000) for a in tenant.activities(i)]
        assert abs(len(activities) / 3000 - mean) < 0.08 * mean
        last_quarter = sum(a.occurred_ms > ANCHOR - YEAR_MS // 4 for a in activities)
        assert last_quarter > 2 * sum(a.occurred_ms < ANCHOR - 3 * YEAR_MS // 4 for a in activities)


def test_activities_per_contact_beyond_what_a_person_holds_is_refused():
    with pytest.raises(ValueError, match="activities_per_contact must be between 0 and 20"):
        Tenant(10, activities_per_contact=40)
