"""`leadpulse suggest`: learn from a tenant's stored outcomes which criteria predict conversion, and propose them as
an ordinary tenant file (see `leadpulse.core.engine.insight.suggest` for the learning itself).

The candidates are scored column-wise at every moment; the learner trains on the earlier moments, and the
proposal, the current rules and a reference model are judged on the later ones.
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
from leadpulse.core.engine.insight.asof import Moments, Population, newest_conversion, plan_moments, scored_at
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
from leadpulse.core.model import ActivityKind
from leadpulse.core.runtime.backtest import (
    DEFAULT_HORIZON,
    READ_CHUNK,
    RuleSetResult,
    default_moments,
    run_backtest,
)
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

    @classmethod
    def concatenate(cls, parts: Sequence[_Rows]) -> _Rows:
        return cls(*(np.concatenate([getattr(part, name) for part in parts])
                     for name in ("features", "converted", "latest")))


def suggest(store: Store, tenant: TenantConfig, *, horizon: timedelta = DEFAULT_HORIZON,
            moments: Sequence[datetime] = ()) -> Suggestion:
    """Learn from `store`'s outcomes and propose a scoring section for `tenant` (see the module docstring).

    The store is read a chunk of contacts at a time, three times: to see the fields' values and the activity kinds,
    to score the candidates at every moment, and to backtest the current rules and the proposal on the judged
    moments. Memory holds one chunk's activities, and the candidates' firing at the moments.

    :raises ValueError: when the store holds no dated conversion, or the moments leave none to train on
    """
    outcomes = store.outcomes()
    newest = newest_conversion(outcomes.values())
    plan = plan_moments(list(moments) or default_moments(newest, horizon), horizon, newest)
    split = split_moments(plan.at, horizon)
    found = candidates(tenant.scoring, *_survey(store, sorted(tenant.fields)))
    engine = ColumnEngine(candidate_config(found))
    parts: tuple[list[_Rows], list[_Rows]] = ([], [])
    for chunk in store.scoring_chunks(all=True, priors=False, chunk_size=READ_CHUNK):
        population = Population.of((contact, rows, outcomes.get(contact.id)) for contact, rows, _ in chunk)
        for rows, part in zip(parts, (split.train, split.judge), strict=True):
            rows.append(_features(engine, population, _part(plan, part)))
    train, judge = (_Rows.concatenate(rows) for rows in parts)
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
    checked = run_backtest(store, tenant, [("current", tenant.scoring), ("proposal", proposal)],
                           moments=split.judge, horizon=horizon)
    current, proposed = (_judged(result) for result in checked.results)
    judged = (current, proposed, _reference(train, judge, proposed.top_share))
    if any(t.min_total is not None or t.min_axis for t in (tenant.scoring.lifecycle.transitions
                                                            if tenant.scoring.lifecycle else ())):
        notes.append("the lifecycle section is kept as it is: its min_total and min_axis read the current rules' "
                     "scale; check them against the proposed points")
    notes.append("the tenant's examples are left out of the proposal: they expect the current rules' scores")
    return Suggestion(tenant.name, split, conversions, len(train.converted), document,
                      tuple((candidate.label, p) for candidate, p in chosen), judged, tuple(notes))


def _survey(store: Store, fields: Sequence[str]) -> tuple[dict[str, list[Any]], list[ActivityKind]]:
    """Each mapped field's value for every live contact, and the activity kinds the store holds."""
    values: dict[str, list[Any]] = {name: [] for name in fields}
    kinds: set[str] = set()
    for chunk in store.scoring_chunks(all=True, priors=False, chunk_size=READ_CHUNK):
        for contact, rows, _ in chunk:
            for name in fields:
                values[name].append(contact.fields.get(name))
            kinds.update(row[2] for row in rows)
    known = sorted(kind for kind in kinds if kind in ActivityKind._value2member_map_)
    return values, [ActivityKind(kind) for kind in known]


def _part(plan: Moments, moments: Sequence[datetime]) -> Moments:
    keep = [i for i, at in enumerate(plan.at) if at in moments]
    return Moments(tuple(plan.at[i] for i in keep), tuple(plan.horizons[i] for i in keep), plan.horizon, ())


def _features(engine: ColumnEngine, population: Population, moments: Moments) -> _Rows:
    """Each candidate's firing, for every contact made by each moment and not converted at it, and whether it
    converted within the horizon."""
    features, converted, latest = [], [], []
    for n, moment in enumerate(scored_at(engine, population, moments)):
        kept = moment.outcomes.judged
        features.append(moment.scores.fired[kept])
        converted.append(moment.outcomes.converted[kept])
        latest.append(np.full(int(kept.sum()), n == len(moments.at) - 1))
    return _Rows(np.concatenate(features), np.concatenate(converted), np.concatenate(latest))


def _judged(result: RuleSetResult) -> Judged:
    pooled = result.figures.pooled
    top = pooled.bands[-1]
    return Judged(result.name, pooled.auc, top.conversion_share, top.contact_share)


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
