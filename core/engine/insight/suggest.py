"""Learned rules a person can read: which criteria predicted conversion in the stored outcomes, as integer points.

Every criterion the learner may pick is a rule of the scoring language already (a `Candidate`): each of the current
rules as it fires, a value or a range of each mapped field, and each activity kind at least once (or several
times) within a window. Scored with the column-wise engine, the candidates' `fired` columns are the features, so
what the learner picks is a rule whose meaning the engine already has, and the proposal is an ordinary tenant file.

The learner is an L1-penalised logistic regression: the penalty keeps a handful of criteria, not hundreds (the
sparsest model on the penalty path that ranks the latest training moment within one standard error of the best
one, then pruned the same way); the
chosen ones' weights, scaled so the largest is `MAX_POINTS`, are rounded to integer points. A reference model with
no readability constraint (histogram gradient boosting on the same features) shows what the readable one gives up.

Moments are split in time: the learner trains on the earlier moments whose horizon ends before the first judged
moment, and is judged on the later ones only (`split_moments`), so no outcome it is judged by was seen in training.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import pairwise
from typing import Any

import numpy as np
import numpy.typing as npt

from leadpulse.core.engine.insight.metrics import auc
from leadpulse.core.engine.rules import EngagementRule, FitRule, ScoringConfig
from leadpulse.core.engine.wording import describe
from leadpulse.core.model import ActivityKind

__all__ = [
    "AUC_TOLERANCE",
    "MAX_POINTS",
    "MIN_CONVERSIONS",
    "Candidate",
    "Split",
    "auc_error",
    "band_floors",
    "candidate_config",
    "candidates",
    "default_shares",
    "learn_points",
    "split_moments",
]

#: the fewest conversions in the training moments worth learning from
MIN_CONVERSIONS = 300
#: how much held-out AUC a sparser model may give up against the best on the penalty path, at least, and as a share
#: of that AUC's standard error (half: on 100,000 sandbox contacts a whole one kept 10 rules and lost 0.02 of AUC to
#: 23 rules at half of one)
AUC_TOLERANCE = 0.002
SE_SHARE = 0.5
#: the points of the strongest criterion; the others in proportion
MAX_POINTS = 20
#: how many criteria a proposal keeps at most
MAX_RULES = 30
#: the activity windows a criterion may count within, in days
WINDOWS = (7, 30, 90)
#: (how many, within how many days) an activity kind may be counted to, beyond at least once
SEVERAL = ((3, 30), (3, 90), (10, 90))
#: the quantiles a number field is cut at
CUTS = (0.2, 0.4, 0.6, 0.8)
#: how many values of a text field become criteria, the commonest first, each held by at least `MIN_SHARE`
TOP_VALUES = 8
MIN_SHARE = 0.01


@dataclass(frozen=True)
class Candidate:
    """A criterion the learner may pick: a rule of the scoring language (without points), on its axis, in words."""

    id: str
    axis: str
    label: str
    rule: Mapping[str, Any]

    def with_points(self, points: int) -> dict[str, Any]:
        """The candidate as a tenant file's rule giving `points` when it fires."""
        return {"id": self.id, "label": self.label, "axis": self.axis, **self.rule, "points": points}


@dataclass(frozen=True)
class Split:
    """The moments a learner trains on, and the later ones it is judged on."""

    train: tuple[datetime, ...]
    judge: tuple[datetime, ...]


def split_moments(moments: Sequence[datetime], horizon: timedelta, judged_share: float = 1 / 3) -> Split:
    """The last `judged_share` of `moments` (at least one) to judge on, and to train on every earlier moment whose
    horizon ends at or before the first judged moment, so no outcome a judged moment counts was known in training.

    :raises ValueError: if there are too few moments to leave any to train on
    """
    ordered = sorted(moments)
    judged = max(1, round(len(ordered) * judged_share))
    judge = ordered[-judged:]
    train = [moment for moment in ordered[:-judged] if moment + horizon <= judge[0]]
    if not train:
        raise ValueError(f"{len(ordered)} moments leave none to train on whose {horizon.days}-day horizon ends before "
                         f"the first judged moment ({judge[0].date()}): give more moments or a shorter horizon")
    return Split(tuple(train), tuple(judge))


def candidates(current: ScoringConfig, values: Mapping[str, Sequence[Any]],
               kinds: Sequence[ActivityKind]) -> list[Candidate]:
    """Every criterion the learner may pick: the current rules as they fire, each mapped field's common values
    (text) or quintile ranges (numbers) among its `values` (one per contact), and each of `kinds` at least once
    within each of `WINDOWS` and `SEVERAL` times."""
    found = [_current(rule, rule_id, current) for rule, rule_id in zip(current.rules, current.rule_ids(), strict=True)]
    for name, seen in values.items():
        found += _field_candidates(name, seen)
    for kind in kinds:
        for days in WINDOWS:
            words = f"{_kind_words(kind)} in the last {days} days"
            found.append(Candidate(f"{kind.value}-{days}d", "engagement", words,
                                   {"activity": kind.value, "within_days": days, "once": True}))
        for least, days in SEVERAL:
            found.append(Candidate(f"{kind.value}-{least}x-{days}d", "engagement",
                                   f"{least} or more {_kind_words(kind)}s in {days} days",
                                   {"activity": kind.value, "within_days": days, "min_occurrences": least,
                                    "once": True}))
    return found


def candidate_config(found: Sequence[Candidate]) -> ScoringConfig:
    """The candidates as one rule set, each giving a point when it fires: scored, its `fired` columns are the
    features."""
    return ScoringConfig.model_validate({
        "rules": [candidate.with_points(1) for candidate in found], "bands": [{"name": "all"}],
        "quadrant": {"fit": 0, "engagement": 0},
    })


def learn_points(features: npt.NDArray[np.bool_], converted: npt.NDArray[np.bool_],
                 held_out: npt.NDArray[np.bool_], *, max_rules: int = MAX_RULES,
                 tolerance: float = AUC_TOLERANCE) -> npt.NDArray[np.int64]:
    """Integer points per feature (0 for those left out) from an L1-penalised logistic regression.

    Along a path of penalties, each model is fitted on the rows not `held_out` (the latest training moment's) and
    ranked by its AUC on the held-out ones; the sparsest whose AUC is within one standard error (`auc_error`, at
    least `tolerance`) of the best (and keeps at most `max_rules` features) wins, is fitted again on every row, and
    its weights, scaled so the strongest is `MAX_POINTS`, are rounded to integer points; then the weakest rules are
    dropped while the held-out rows do not miss them (see `_pruned`).
    """
    from sklearn.linear_model import LogisticRegression  # the sync never imports scikit-learn

    x = features.astype(np.float64)
    # newer releases say the penalty by l1_ratio alone (and warn at penalty=); older ones read l1_ratio only for
    # an elastic net, which liblinear does not fit
    lasso = ({"l1_ratio": 1.0} if LogisticRegression().get_params()["penalty"] == "deprecated"
             else {"penalty": "l1"})

    def fitted(c: float, rows: npt.NDArray[np.bool_]) -> npt.NDArray[np.float64]:
        model = LogisticRegression(C=c, solver="liblinear", max_iter=500, **lasso)
        model.fit(x[rows], converted[rows])
        weights: npt.NDArray[np.float64] = model.coef_[0]
        return weights

    fit_rows = ~held_out
    tried: list[tuple[int, float, float]] = []  # (features kept, held-out AUC, penalty)
    for c in np.logspace(-3, 1, 17).tolist():
        weights = fitted(c, fit_rows)
        kept = int(np.count_nonzero(weights))
        if kept > max_rules:
            break
        if kept:
            tried.append((kept, auc(x[held_out] @ weights, converted[held_out]) or 0.5, c))
    if not tried:
        return np.zeros(features.shape[1], dtype=np.int64)
    best = max(found for _, found, _ in tried)
    slack = max(tolerance, SE_SHARE * auc_error(best, converted[held_out]))
    _, _, c = min(t for t in tried if t[1] >= best - slack)
    weights = fitted(c, np.ones(len(converted), dtype=np.bool_))
    if not np.any(weights):
        return np.zeros(features.shape[1], dtype=np.int64)
    points: npt.NDArray[np.int64] = np.rint(weights / np.abs(weights).max() * MAX_POINTS).astype(np.int64)
    return _pruned(points, x[held_out], converted[held_out], tolerance)


def _pruned(points: npt.NDArray[np.int64], x: npt.NDArray[np.float64], converted: npt.NDArray[np.bool_],
            tolerance: float) -> npt.NDArray[np.int64]:
    """`points` without the weakest rules that the held-out rows do not miss: the weakest is dropped while the
    integer score ranks them within one standard error (at least `tolerance`) of the full one."""
    full = auc(x @ points, converted)
    if full is None:
        return points
    tolerance = max(tolerance, SE_SHARE * auc_error(full, converted))
    kept = points.copy()
    while np.count_nonzero(kept) > 1:
        weakest = min(np.flatnonzero(kept).tolist(), key=lambda i: abs(int(kept[i])))
        trial = kept.copy()
        trial[weakest] = 0
        if (auc(x @ trial, converted) or 0.0) < full - tolerance:
            break
        kept = trial
    return kept


def auc_error(value: float, converted: npt.NDArray[np.bool_]) -> float:
    """The standard error of an AUC of `value` over these outcomes (Hanley and McNeil): how far two models' AUCs on
    the same rows may differ by chance. A sparser model within one of it of the best is preferred."""
    positives = int(converted.sum())
    negatives = converted.size - positives
    if not positives or not negatives:
        return 0.0
    q1, q2 = value / (2 - value), 2 * value * value / (1 + value)
    variance = (value * (1 - value) + (positives - 1) * (q1 - value * value)
                + (negatives - 1) * (q2 - value * value)) / (positives * negatives)
    return float(np.sqrt(max(variance, 0.0)))


def band_floors(scores: npt.NDArray[np.float64], shares: Sequence[float]) -> list[float]:
    """Where each band above the first starts so that the bands hold about `shares` of the contacts (lowest band
    first): the score quantiles, raised where two would meet so each band starts above the one before."""
    floors: list[float] = []
    cumulative = 0.0
    for share in shares[:-1]:
        cumulative += share
        floor = float(np.ceil(np.quantile(scores, cumulative))) if scores.size else 0.0
        if floors and floor <= floors[-1]:
            floor = floors[-1] + 1
        floors.append(floor)
    return floors


def default_shares(bands: int) -> list[float]:
    """The share of contacts each band is placed to hold, lowest first: the top band a tenth, the next a fifth, the
    next three tenths, the rest what is left."""
    top = [0.1, 0.2, 0.3][: max(bands - 1, 0)]
    rest = 1 - sum(top)
    lower = bands - len(top)
    return [rest / lower] * lower + list(reversed(top))


def _current(rule: Any, rule_id: str, config: ScoringConfig) -> Candidate:
    dumped = rule.model_dump(mode="json", by_alias=True, exclude_none=True, exclude={"id", "points", "label", "axis"})
    if isinstance(rule, EngagementRule):
        # as it fires, once: decay and caps change points, not whether it fires
        for name in ("half_life_days", "max_points", "max_occurrences"):
            dumped.pop(name, None)
        dumped["once"] = True
    label = rule.label or (describe(rule.when, rule_id.replace("-", " ")) if isinstance(rule, FitRule) else rule_id)
    return Candidate(f"now-{rule_id}", "fit" if config.rule_axis(rule) == "fit" else "engagement", label, dumped)


def _field_candidates(name: str, values: Sequence[Any]) -> list[Candidate]:
    present = [value for value in values if value not in (None, "")]
    if not present:
        return []
    numbers = [_number(value) for value in present]
    if sum(number is not None for number in numbers) >= 0.9 * len(present):
        known = np.array([number for number in numbers if number is not None], dtype=np.float64)
        edges = sorted({float(edge) for edge in np.quantile(known, CUTS)})
        bounds = [None, *edges, None]
        found = []
        for low, high in pairwise(bounds):
            span = {key: value for key, value in (("min", low), ("below", high)) if value is not None}
            if not span:
                continue
            when = {"field": name, "range": span}
            words = (f"{name} {_g(low)} to under {_g(high)}" if low is not None and high is not None
                     else f"{name} under {_g(high)}" if high is not None else f"{name} {_g(low)} or more")
            found.append(Candidate(f"{_slug(name)}-{_slug(words)}", "fit", words, {"when": when}))
        return found
    counts = Counter(str(value) for value in present)
    common = [value for value, count in counts.most_common(TOP_VALUES) if count >= MIN_SHARE * len(values)]
    return [Candidate(f"{_slug(name)}-{_slug(value)}", "fit", f"{name} is {value}",
                      {"when": {"field": name, "equals": value}}) for value in common]


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(str(value).replace(",", ""))
    except ValueError:
        return None


def _g(value: float | None) -> str:
    return f"{value:,.0f}" if value is not None and value == int(value) else f"{value:,.2f}"


def _slug(text: str) -> str:
    slug = "".join(ch if ch.isalnum() else "-" for ch in text.lower()).strip("-")
    while "--" in slug:
        slug = slug.replace("--", "-")
    return slug[:40].strip("-") or "value"


def _kind_words(kind: ActivityKind) -> str:
    return kind.value.replace("_", " ")
