"""A backtest of a tenant's stored contacts: the current rules, and a proposed file beside them, scored at past
moments from one read of the store, and judged by the conversions that followed (see
`leadpulse.core.engine.insight.asof` for what "as it stood then" means, and `.metrics` for the figures)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import orjson

from leadpulse.core.config.tenant import TenantConfig
from leadpulse.core.engine.columnar import ColumnEngine
from leadpulse.core.engine.insight.asof import (
    NO_STATUS,
    Moments,
    Population,
    Tally,
    newest_conversion,
    plan_moments,
    score_moments,
    spaced,
)
from leadpulse.core.engine.insight.metrics import BacktestFigures, ScoredMoment, backtest_figures, concatenated
from leadpulse.core.engine.rules import Quadrant, ScoringConfig
from leadpulse.core.store.store import Store

#: when no moment is asked for: this many, `DEFAULT_EVERY` apart, the last a whole horizon before the newest outcome
DEFAULT_MOMENTS = 12
DEFAULT_EVERY = timedelta(days=30)
DEFAULT_HORIZON = timedelta(days=90)
#: contacts read, matched and scored at a time
READ_CHUNK = 5000


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
        for chunk in store.scoring_chunks(all=True, priors=False, chunk_size=READ_CHUNK)
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

    The store is read once, a chunk of contacts at a time, each chunk scored at every moment by every rule set
    before the next is read: memory holds one chunk's activities, and the scores.

    :raises ValueError: when the store holds no dated conversion, or every moment is at or after the newest one
    """
    outcomes = store.outcomes()
    newest = newest_conversion(outcomes.values())
    plan = plan_moments(list(moments) or default_moments(newest, horizon), horizon, newest)
    engines = [ColumnEngine(scoring) for _, scoring in rule_sets]
    parts: list[list[list[ScoredMoment]]] = [[] for _ in rule_sets]  # rule set, chunk, moment
    tally = Tally()
    for chunk in store.scoring_chunks(all=True, priors=False, chunk_size=READ_CHUNK):
        population = Population.of((contact, rows, outcomes.get(contact.id)) for contact, rows, _ in chunk)
        tally += population.tally
        for engine, scored in zip(engines, parts, strict=True):
            scored.append(score_moments(engine, population, plan))
    results = []
    for (name, scoring), scored in zip(rule_sets, parts, strict=True):
        if not scored:
            raise ValueError("the store holds no live contact to score")
        by_moment = [concatenated([chunk[n] for chunk in scored]) for n in range(len(plan.at))]
        results.append(RuleSetResult(name, _figures(scoring, by_moment), tuple(scoring.axes)))
    return Backtest(tenant.name, plan, tuple(results), (*tally.notes(), *plan.notes))


def _figures(scoring: ScoringConfig, scored: Sequence[ScoredMoment]) -> BacktestFigures:
    quadrants = [quadrant.value for quadrant in Quadrant] if scoring.quadrant else []
    targets = sorted({t.to for t in scoring.lifecycle.transitions}, key=lambda stage: stage.rank) if (
        scoring.lifecycle) else []
    statuses = [NO_STATUS, *(stage.value for stage in targets)] if targets else []
    return backtest_figures(scored, [step.name for step in scoring.bands],
                            grades=[step.name for step in scoring.grades or ()], quadrants=quadrants,
                            statuses=statuses)
