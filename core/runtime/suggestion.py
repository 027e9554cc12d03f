"""`leadpulse suggest`: learn from a tenant's stored outcomes which criteria predict conversion, and propose them as
an ordinary tenant file (see `leadpulse.core.engine.insight.suggest` for the learning itself).

The store is read once; the candidates are scored column-wise at every moment; the learner trains on the earlier
moments and the proposal, the current rules and a reference model are judged on the later ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import yaml

from leadpulse.core.config.files import validate_tenant
from leadpulse.core.config.tenant import TenantConfig
from leadpulse.core.engine.columnar import ColumnEngine
from leadpulse.core.engine.insight.asof import Moments, Population, plan_moments, score_moments
from leadpulse.core.engine.insight.metrics import auc
from leadpulse.core.engine.insight.suggest import (
    MIN_CONVERSIONS,
    Candidate,
    Split,
    band_floors,
    candidate_config,
    candidates,
    default_shares,
    learn_points,
    split_moments,
)
from leadpulse.core.engine.rules import ScoringConfig
from leadpulse.core.model import ActivityKind
from leadpulse.core.runtime.backtest import DEFAULT_HORIZON, default_moments, read_population
from leadpulse.core.store.store import Store


@dataclass(frozen=True)
class Judged:
    """How well one way of scoring ranked the judged moments' contacts: the AUC, and the share of the conversions
    its top band (or its top scores, as many as the proposal's top band holds) caught, with that band's share of
    the contacts."""

    name: str
    auc: float | None
    top_capture: float | None
    top_share: float | None


@dataclass(frozen=True)
class Suggestion:
    """What `suggest` found: the split, what it learned from, the proposed tenant document (None with too few
    conversions), the proposed rules in words with their points, and the judged figures."""

    tenant: str
    split: Split
    conversions: int
    contacts: int
    document: dict[str, Any] | None
    rules: tuple[tuple[str, int], ...]
    judged: tuple[Judged, ...]
    notes: tuple[str, ...]

    def yaml(self) -> str:
        """The proposed tenant file's text."""
        assert self.document is not None
        return yaml.safe_dump(self.document, sort_keys=False, allow_unicode=True)


@dataclass(frozen=True)
class _Rows:
    features: npt.NDArray[np.bool_]
    converted: npt.NDArray[np.bool_]
    #: the rows of the latest moment
    latest: npt.NDArray[np.bool_]


def suggest(store: Store, tenant: TenantConfig, *, horizon: timedelta = DEFAULT_HORIZON,
            moments: Sequence[datetime] = ()) -> Suggestion:
    """Learn from `store`'s outcomes and propose a scoring section for `tenant` (see the module docstring).

    :raises ValueError: when the store holds no dated conversion, or the moments leave none to train on
    """
    population = read_population(store)
    plan = plan_moments(list(moments) or default_moments(population.newest_outcome, horizon), horizon,
                        population.newest_outcome)
    split = split_moments(plan.at, horizon)
    kinds = sorted({ActivityKind(row[2]) for rows in population.rows for row in rows
                    if row[2] in ActivityKind._value2member_map_}, key=lambda kind: kind.value)
    found = candidates(tenant.scoring, sorted(tenant.fields), population.contacts, kinds)
    train, judge = (_features(found, population, _part(plan, part)) for part in (split.train, split.judge))
    conversions = int(train.converted.sum())
    notes = ["fields are as last pulled: a field filled in after a conversion can make a criterion look better "
             "than it was"]
    if conversions < MIN_CONVERSIONS:
        notes.append(f"learned nothing: the training moments ({len(split.train)}, up to {split.train[-1].date()}) "
                     f"hold {conversions} conversions and learning needs at least {MIN_CONVERSIONS}; sync more "
                     "history, or wait for more outcomes")
        return Suggestion(tenant.name, split, conversions, len(train.converted), None, (), (), tuple(notes))
    points = learn_points(train.features, train.converted, train.latest)
    chosen = [(candidate, int(p)) for candidate, p in zip(found, points.tolist(), strict=True) if p]
    scoring = _proposed_scoring(tenant, chosen, train.features[:, np.flatnonzero(points)], points[points != 0])
    document = _document(tenant, scoring)
    proposal = validate_tenant(document, tenant.source_path or Path("proposal.yaml")).scoring
    current = _judge("current", tenant.scoring, population, _part(plan, split.judge))
    proposed = _judge("proposal", proposal, population, _part(plan, split.judge))
    judged = (current, proposed, _reference(train, judge, proposed.top_share))
    if any(t.min_total is not None or t.min_axis for t in (tenant.scoring.lifecycle.transitions
                                                            if tenant.scoring.lifecycle else ())):
        notes.append("the lifecycle section is kept as it is: its min_total and min_axis read the current rules' "
                     "scale; check them against the proposed points")
    notes.append("the tenant's examples are left out of the proposal: they expect the current rules' scores")
    return Suggestion(tenant.name, split, conversions, len(train.converted), document,
                      tuple((candidate.label, p) for candidate, p in chosen), judged, tuple(notes))


def _part(plan: Moments, moments: Sequence[datetime]) -> Moments:
    keep = [i for i, at in enumerate(plan.at) if at in moments]
    return Moments(tuple(plan.at[i] for i in keep), tuple(plan.horizons[i] for i in keep), plan.horizon, ())


def _features(found: Sequence[Candidate], population: Population, moments: Moments) -> _Rows:
    """Each candidate's firing, for every contact made by each moment and not converted at it, and whether it
    converted within the horizon."""
    engine = ColumnEngine(candidate_config(found))
    batch = engine.batch(population.contacts, {c.id: rows for c, rows in zip(population.contacts, population.rows,
                                                                           strict=True)})
    features, converted, latest = [], [], []
    for n, (at, horizon) in enumerate(zip(moments.at, moments.horizons, strict=True)):
        stamp, until = at.timestamp(), (at + horizon).timestamp()
        kept = (population.since <= stamp) & (population.converted_at > stamp)
        features.append(engine.score(batch, at).fired[kept])
        converted.append(population.converted_at[kept] <= until)
        latest.append(np.full(int(kept.sum()), n == len(moments.at) - 1))
    return _Rows(np.concatenate(features), np.concatenate(converted), np.concatenate(latest))


def _proposed_scoring(tenant: TenantConfig, chosen: Sequence[tuple[Candidate, int]], fired: npt.NDArray[np.bool_],
                      points: npt.NDArray[np.int64]) -> dict[str, Any]:
    """The proposed scoring section: the chosen rules, bands (and grades) placed at shares of the training
    contacts, quadrant thresholds at each axis's top quarter, the tenant's lifecycle as it is."""
    axes = np.array([candidate.axis for candidate, _ in chosen])
    fit = fired[:, axes == "fit"].astype(np.int64) @ points[axes == "fit"]
    engagement = fired[:, axes == "engagement"].astype(np.int64) @ points[axes == "engagement"]
    total = (fit + engagement).astype(np.float64)
    current = tenant.scoring
    names = [step.name for step in current.bands]
    floors = band_floors(total, default_shares(len(names)))
    section: dict[str, Any] = {
        "rules": [candidate.with_points(p) for candidate, p in chosen],
        "bands": [{"name": names[0]}, *({"name": name, "min": floor} for name, floor in zip(names[1:], floors,
                                                                                             strict=True))],
        "quadrant": {"fit": float(np.quantile(fit, 0.75)) if fit.size else 0.0,
                     "engagement": float(np.quantile(engagement, 0.75)) if engagement.size else 0.0},
    }
    if current.grades:
        graded = fit if current.grade_axis == "fit" else engagement
        grade_names = [step.name for step in current.grades]
        grade_floors = band_floors(graded.astype(np.float64), [1 / len(grade_names)] * len(grade_names))
        section["grades"] = [{"name": grade_names[0]}, *({"name": name, "min": floor} for name, floor in
                                                         zip(grade_names[1:], grade_floors, strict=True))]
    return section


def _document(tenant: TenantConfig, scoring: dict[str, Any]) -> dict[str, Any]:
    """The tenant's own file with the proposed scoring section (its lifecycle kept) and without its examples."""
    assert tenant.source_path is not None
    document: dict[str, Any] = yaml.safe_load(tenant.source_path.read_text())
    kept = {key: value for key, value in document["scoring"].items()
            if key not in ("rules", "bands", "grades", "quadrant")}
    document["scoring"] = {**scoring, **kept}
    document.pop("examples", None)
    return document


def _judge(name: str, scoring: ScoringConfig, population: Population, moments: Moments) -> Judged:
    scored = score_moments(ColumnEngine(scoring), population, moments)
    totals = np.concatenate([m.total[~m.converted_before] for m in scored])
    converted = np.concatenate([m.converted[~m.converted_before] for m in scored])
    top = scoring.bands[-1].name
    in_top = np.concatenate([(np.array(m.band.tolist()) == top)[~m.converted_before] for m in scored])
    return Judged(name, auc(totals, converted), _capture(in_top, converted), _share(in_top))


def _reference(train: _Rows, judge: _Rows, top_share: float | None) -> Judged:
    """A model with no readability constraint on the same features: histogram gradient boosting."""
    from sklearn.ensemble import HistGradientBoostingClassifier  # the sync never imports scikit-learn

    model = HistGradientBoostingClassifier(max_iter=200, random_state=0)
    model.fit(train.features.astype(np.float64), train.converted)
    chances = model.predict_proba(judge.features.astype(np.float64))[:, 1]
    share = top_share if top_share is not None else 0.1
    cut = np.quantile(chances, 1 - share) if chances.size else 0.0
    in_top = chances >= cut
    return Judged("reference (gradient boosting)", auc(chances, judge.converted), _capture(in_top, judge.converted),
                  _share(in_top))


def _capture(in_top: npt.NDArray[np.bool_], converted: npt.NDArray[np.bool_]) -> float | None:
    conversions = int(converted.sum())
    return int((in_top & converted).sum()) / conversions if conversions else None


def _share(in_top: npt.NDArray[np.bool_]) -> float | None:
    return float(in_top.mean()) if in_top.size else None
