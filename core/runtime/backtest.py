"""A backtest of a tenant's stored contacts: the current rules, and a proposed file beside them, scored at past
moments from one read of the store, and judged by the conversions that followed (see
`leadpulse.core.engine.insight.asof` for what "as it stood then" means, and `.metrics` for the figures)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import orjson

from leadpulse.core.config.tenant import TenantConfig
from leadpulse.core.engine.insight.asof import NO_STATUS, Moments, Population, plan_moments, score_moments, spaced
from leadpulse.core.engine.insight.metrics import BacktestFigures, backtest_figures
from leadpulse.core.engine.rules import Quadrant, ScoringConfig
from leadpulse.core.store.store import Store

#: when no moment is asked for: this many, `DEFAULT_EVERY` apart, the last a whole horizon before the newest outcome
DEFAULT_MOMENTS = 12
DEFAULT_EVERY = timedelta(days=30)
DEFAULT_HORIZON = timedelta(days=90)


@dataclass(frozen=True)
class RuleSetResult:
    """One rule set's figures over the backtest's moments."""

    name: str
    figures: BacktestFigures
    axes: tuple[str, ...]


@dataclass(frozen=True)
class Backtest:
    """What `leadpulse backtest` shows: each rule set's figures on the same moments and contacts, and the notes
    that say what the figures cannot."""

    tenant: str
    moments: Moments
    results: tuple[RuleSetResult, ...]
    notes: tuple[str, ...]

    def as_dict(self) -> dict[str, object]:
        return {
            "tenant": self.tenant,
            "horizon_days": self.moments.horizon.total_seconds() / 86400,
            "moments": [{"at": at.isoformat(), "horizon_days": horizon.total_seconds() / 86400}
                        for at, horizon in zip(self.moments.at, self.moments.horizons, strict=True)],
            "rules": [{"name": result.name, **result.figures.as_dict()} for result in self.results],
            "notes": list(self.notes),
        }

    def to_json(self) -> str:
        return orjson.dumps(self.as_dict(), option=orjson.OPT_INDENT_2).decode()


def read_population(store: Store) -> Population:
    """Every live contact with its activities and outcome, in one pass over the store."""
    outcomes = store.outcomes()
    return Population.of(
        (contact, rows, outcomes.get(contact.id))
        for chunk in store.scoring_chunks(all=True, priors=False, chunk_size=5000)
        for contact, rows, _ in chunk
    )


def default_moments(newest_outcome: datetime | None, horizon: timedelta) -> list[datetime]:
    """Twelve moments a month apart, the last one a whole horizon before the newest stored conversion."""
    if newest_outcome is None:
        return []
    last = newest_outcome - horizon
    return spaced(last - DEFAULT_EVERY * (DEFAULT_MOMENTS - 1), last, DEFAULT_EVERY)


def run_backtest(store: Store, tenant: TenantConfig, rule_sets: Sequence[tuple[str, ScoringConfig]], *,
                 moments: Sequence[datetime] = (), horizon: timedelta = DEFAULT_HORIZON) -> Backtest:
    """Score the stored contacts at `moments` (by default `default_moments`) with each of `rule_sets`, named, and
    judge each by the conversions within `horizon` after each moment.

    :raises ValueError: when the store holds no dated conversion, or every moment is at or after the newest one
    """
    population = read_population(store)
    asked = list(moments) or default_moments(population.newest_outcome, horizon)
    plan = plan_moments(asked, horizon, population.newest_outcome)
    results = []
    for name, scoring in rule_sets:
        scored = score_moments(scoring, population, plan)
        quadrants = [quadrant.value for quadrant in Quadrant] if scoring.quadrant else []
        targets = sorted({t.to for t in scoring.lifecycle.transitions}, key=lambda stage: stage.rank) if (
            scoring.lifecycle) else []
        statuses = [NO_STATUS, *(stage.value for stage in targets)] if targets else []
        figures = backtest_figures(scored, [step.name for step in scoring.bands],
                                   grades=[step.name for step in scoring.grades or ()], quadrants=quadrants,
                                   statuses=statuses)
        results.append(RuleSetResult(name, figures, tuple(scoring.axes)))
    return Backtest(tenant.name, plan, tuple(results), (*population.notes(), *plan.notes))
