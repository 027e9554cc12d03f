"""As-of scoring and the backtest over a small hand-made store, against figures worked out by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from file_tenant import file_tenant

from leadpulse.core.config.tenant import TenantConfig
from leadpulse.core.contract import Page
from leadpulse.core.engine.columnar import ColumnEngine
from leadpulse.core.engine.insight.asof import (
    Moments,
    Population,
    plan_moments,
    score_moments,
    score_moments_by_contact,
)
from leadpulse.core.engine.insight.metrics import ScoredMoment
from leadpulse.core.engine.rules import ScoringConfig
from leadpulse.core.engine.scoring import Engine
from leadpulse.core.model import Activity, ActivityKind, Contact, ContactKind, Outcome
from leadpulse.core.runtime.backtest import run_backtest
from leadpulse.core.store.store import Store

M = datetime(2025, 3, 1, tzinfo=UTC)
DAY = timedelta(days=1)
BANDS = [{"name": "cold"}, {"name": "warm", "min": 5}, {"name": "hot", "min": 10}]

#: a tier field worth 15 (hot) or 5 (warm); each pricing page view 10 points, halving every 10 days
SCORING: dict[str, Any] = {
    "rules": [
        {"id": "hot", "when": {"field": "tier", "equals": "hot"}, "points": 15},
        {"id": "warm", "when": {"field": "tier", "equals": "warm"}, "points": 5},
        {"id": "pricing", "activity": "page_view", "points": 10, "half_life_days": 10},
    ],
    "bands": BANDS,
    "quadrant": {"fit": 5, "engagement": 5},
    "lifecycle": {"values": {"lead": "lead", "mql": "mql"},
                  "transitions": [{"to": "mql", "min_band": "hot"}]},
}


def person(cid: str, tier: str | None = None, created: datetime | None = M - 100 * DAY) -> Contact:
    return Contact(cid, ContactKind.CONTACT, M + 200 * DAY, fields={"tier": tier} if tier else {}, created_at=created)


def view(cid: str, at: datetime, n: int = 0) -> Activity:
    return Activity(f"{cid}-v{n}", cid, ActivityKind.PAGE_VIEW, at, attributes={"url": "/pricing"})


def converted(cid: str, at: datetime) -> Outcome:
    return Outcome(cid, True, at)


@pytest.fixture
def tenant(tmp_path) -> TenantConfig:
    loaded = file_tenant(tmp_path / "files", [], [])
    return loaded.model_copy(update={"scoring": ScoringConfig.model_validate(SCORING)})


def stored(tmp_path, contacts: list[Contact], activities: list[Activity], outcomes: list[Outcome]) -> Store:
    store = Store.open(tmp_path / "backtest.sqlite")
    store.apply_page(Page("contacts", None, contacts=contacts, activities=activities, outcomes=outcomes))
    return store


def column_wise(config: ScoringConfig, population: Population, moments: Moments) -> list[ScoredMoment]:
    return score_moments(ColumnEngine(config), population, moments)


def by_contact(config: ScoringConfig, population: Population, moments: Moments) -> list[ScoredMoment]:
    return score_moments_by_contact(Engine(config), population, moments)


@pytest.mark.parametrize("scored_by", [column_wise, by_contact])
def test_a_contact_scored_at_a_past_moment_counts_only_what_came_before_and_decays_from_the_moment(scored_by):
    early, late = person("early"), person("late", created=M + 15 * DAY)
    activities = [view("early", M), view("early", M + 20 * DAY, 1), view("late", M + 16 * DAY)]
    rows = {a.contact_id: [] for a in activities}
    for a in activities:
        rows[a.contact_id].append((a.contact_id, a.id, a.kind, a.occurred_at, a.vendor_type, a.attributes))
    population = Population.of([(early, rows["early"], None), (late, rows["late"], converted("late", M + 90 * DAY))])
    plan = plan_moments([M + 10 * DAY, M + 20 * DAY], timedelta(days=30), M + 90 * DAY)
    first, second = scored_by(ScoringConfig.model_validate(SCORING), population, plan)
    # Ten days after the first view only it counts, half decayed; the later contact did not exist yet.
    assert first.total.tolist() == [5.0]
    # At the second view: the first is a quarter left (2.5), the second whole (10); the later contact is four days
    # past its own view (10 * 0.5 ** 0.4 = 7.58).
    assert second.total.tolist() == [12.5, 7.58]
    assert second.band.tolist() == ["hot", "warm"]
    assert second.status is not None and second.status.tolist() == ["mql", "none"]


def test_a_backtest_gives_the_band_rates_lift_and_auc_worked_out_by_hand(tmp_path, tenant):
    contacts = [person("a", "hot"), person("b", "hot"), person("c", "warm"), person("d", "warm"), person("e"),
                person("f"), person("g", "hot"), person("h", "hot", created=M + DAY)]
    outcomes = [converted("a", M + 10 * DAY), converted("c", M + 20 * DAY), converted("d", M + 40 * DAY),
                converted("g", M - 5 * DAY), converted("h", M + 5 * DAY), Outcome("b", False)]
    with stored(tmp_path, contacts, [], outcomes) as store:
        result = run_backtest(store, tenant, [("current", tenant.scoring)], moments=[M], horizon=timedelta(days=30))
    [current] = result.results
    [moment] = current.figures.moments
    # g converted before the moment and is left out; h was not made yet; d converts after the horizon
    assert (moment.contacts, moment.left_out, moment.conversions) == (6, 1, 2)
    assert [(band.name, band.contacts, band.conversions, band.rate, band.conversion_share)
            for band in moment.bands] == [("cold", 2, 0, 0.0, 0.0), ("warm", 2, 1, 0.5, 0.5), ("hot", 2, 1, 0.5, 0.5)]
    assert moment.lift == pytest.approx(1.5)
    # pairs (converted, not): a=15 ties b, beats d, e, f (3.5); c=5 loses to b, ties d, beats e, f (2.5): 6 of 8
    assert moment.auc == 0.75
    assert moment.axis_auc == {"fit": 0.75, "engagement": 0.5}  # nobody has engagement: all tie
    assert [(s.name, s.contacts, s.conversions) for s in moment.statuses] == [("none", 4, 1), ("mql", 2, 1)]
    assert any("as last pulled" in note for note in result.notes)


def test_two_rule_files_side_by_side_score_the_same_moments_and_contacts(tmp_path, tenant):
    contacts = [person("a", "hot"), person("b"), person("c", "warm"), person("d", created=M + 40 * DAY)]
    outcomes = [converted("a", M + 10 * DAY), converted("c", M + 70 * DAY), converted("d", M + 80 * DAY)]
    flat = ScoringConfig.model_validate({"rules": [{"id": "x", "when": {"field": "tier", "exists": True},
                                                     "points": 1}], "bands": BANDS,
                                       "quadrant": {"fit": 1, "engagement": 1}})
    with stored(tmp_path, contacts, [], outcomes) as store:
        result = run_backtest(store, tenant, [("current", tenant.scoring), ("proposed", flat)],
                              moments=[M, M + 50 * DAY], horizon=timedelta(days=30))
    current, proposed = result.results
    assert [m.at for m in current.figures.moments] == [m.at for m in proposed.figures.moments] == [M, M + 50 * DAY]
    # at M: a, b, c (d not made yet), a converts; at M + 50: a left out, b, c, d, and c and d convert
    assert [(m.contacts, m.left_out, m.conversions) for m in current.figures.moments] == [(3, 0, 1), (3, 1, 2)]
    assert [(m.contacts, m.left_out, m.conversions) for m in proposed.figures.moments] == [(3, 0, 1), (3, 1, 2)]
    # at M the current rules put a (15) above b (0) and c (5); the proposed tie a with c (1 each) above b (0); at
    # M + 50 both put c above b and tie d with b
    assert [m.auc for m in current.figures.moments] == [1.0, 0.75]
    assert [m.auc for m in proposed.figures.moments] == [0.75, 0.75]


def test_a_horizon_past_the_newest_outcome_is_cut_and_a_moment_after_it_left_out_both_said():
    newest = M + 60 * DAY
    plan = plan_moments([M, M + 45 * DAY, M + 60 * DAY], timedelta(days=30), newest)
    assert plan.at == (M, M + 45 * DAY)
    assert plan.horizons == (timedelta(days=30), timedelta(days=15))
    assert "horizon cut from 30d to 15d" in plan.notes[0]
    assert "left out" in plan.notes[1] and "2025-04-30" in plan.notes[1]


def test_a_store_without_dated_conversions_is_refused_with_what_to_do():
    with pytest.raises(ValueError, match=r"no dated conversion.*pull the CRM's outcomes"):
        plan_moments([M], timedelta(days=30), None)
    with pytest.raises(ValueError, match="every moment is at or after"):
        plan_moments([M + DAY], timedelta(days=30), M)


@pytest.mark.parametrize("demotion", [False, True])
def test_column_wise_as_of_scoring_gives_what_the_per_contact_engine_gives_on_the_sample_export(tmp_path, demotion):
    from leadpulse.core.cli.demo import EXPORT_TENANT_FILE
    from leadpulse.core.config.files import load_tenant
    from leadpulse.core.runtime.backtest import default_moments, read_population
    from leadpulse.core.runtime.pipeline import sync_tenant

    tenant = load_tenant(EXPORT_TENANT_FILE)
    scoring = tenant.scoring
    if demotion:
        assert scoring.lifecycle is not None
        scoring = scoring.model_copy(update={"lifecycle": scoring.lifecycle.model_copy(
            update={"allow_demotion": True})})
    sync_tenant(tenant, state_dir=tmp_path, dry_run=True)
    with Store.open(tenant.store_path(tmp_path)) as store:
        population = read_population(store)
    plan = plan_moments(default_moments(population.newest_outcome, timedelta(days=60)), timedelta(days=60),
                        population.newest_outcome)
    fast, reference = column_wise(scoring, population, plan), by_contact(scoring, population, plan)
    statuses = set()
    for one, other in zip(fast, reference, strict=True):
        assert one.at == other.at
        for column in ("total", "band", "converted", "converted_before", "grade", "quadrant", "status"):
            assert getattr(one, column).tolist() == getattr(other, column).tolist(), (one.at, column)
        assert {k: v.tolist() for k, v in one.axes.items()} == {k: v.tolist() for k, v in other.axes.items()}
        statuses |= set(one.status.tolist())
    assert {"mql", "sql"} <= statuses  # the lifecycle moved contacts up


def test_a_store_read_in_small_chunks_gives_the_figures_of_one_read_whole(tmp_path, monkeypatch):
    from leadpulse.core.cli.demo import EXPORT_TENANT_FILE
    from leadpulse.core.config.files import load_tenant
    from leadpulse.core.runtime import backtest
    from leadpulse.core.runtime.pipeline import sync_tenant

    tenant = load_tenant(EXPORT_TENANT_FILE)
    sync_tenant(tenant, state_dir=tmp_path, dry_run=True)
    with Store.open(tenant.store_path(tmp_path)) as store:
        whole = run_backtest(store, tenant, [("current", tenant.scoring)])
        monkeypatch.setattr(backtest, "READ_CHUNK", 7)
        chunked = run_backtest(store, tenant, [("current", tenant.scoring)])
    assert chunked.as_dict() == whole.as_dict()
    assert whole.results[0].figures.pooled.contacts > 1000
