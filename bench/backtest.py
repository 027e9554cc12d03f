"""Backtest the demo HubSpot tenant's rules on sandbox data, against the sandbox's true conversion chances.

    .venv/bin/python bench/backtest.py --contacts 100000

Syncs a HubSpot sandbox of N contacts (rate limits off and the client's budget on a fast clock: this measures the
backtest, not the sync) into a temporary store through the connector, with the demo tenant
(config/demo/hubspot-sandbox.yaml), stops the sandbox, then:

- times one full rescore of the store (`leadpulse score`: every contact read, scored and decided, what changed
  saved, in one worker process per core);
- times a backtest of the current rules at twelve moments a month apart (`leadpulse backtest`'s default): one read
  of the store, every contact made by each moment scored as it stood then;
- scores the same contacts at the same moments with the sandbox's true chance of converting within the horizon
  (`leadpulse.sandbox.truth`, which the product never reads): an oracle, above what any score could do.

It prints the pooled AUC of the rules and of the truth, the top band's share of contacts and of conversions, the
backtest's peak RSS (run in a process of its own) and ``backtest/rescore ratio: X``; then runs `leadpulse suggest`
on the store and prints, on its judged (held-out) moments, ``auc current``, ``auc suggested``, ``auc reference``
(gradient boosting on the same criteria), ``auc truth``, ``auc truth without the future``, ``auc best from what
is visible`` and ``top-band capture suggested``. The truth reads each person's last touch, which may lie after the
moment, so no forecast made at the moment reaches it; the truth without the future is the same model's chance
given the person's traits but only the activities seen by the moment, and the best from what is visible is that
chance given only what a score could read at the moment (the fields and the activities seen; the interest too
inferred from them): the ceiling for any score on this data (`_forecast_columns`).
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from leadpulse.core.cli.demo import DEMO_TENANT_FILE, TOKEN_VARIABLE, sandbox_tenant
from leadpulse.core.clock import ScaledClock
from leadpulse.core.config.tenant import TenantConfig
from leadpulse.core.engine.insight.asof import Moments, Population
from leadpulse.core.engine.insight.metrics import auc
from leadpulse.core.runtime.backtest import DEFAULT_HORIZON, Backtest, read_population, run_backtest
from leadpulse.core.runtime.pipeline import rescore_tenant, sync_tenant
from leadpulse.core.runtime.suggestion import Suggestion, suggest
from leadpulse.core.store.store import Store
from leadpulse.sandbox import Sandbox
from leadpulse.sandbox.synth import ACTIVITY_SLOTS, CONVERSION_SPAN, ActivityKind
from leadpulse.sandbox.truth import GroundTruth


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--activities-per-contact", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-backtest-") as folder:
        state_dir = Path(folder)
        started = time.perf_counter()
        with Sandbox.start("hubspot", args.contacts, args.seed, rate_limits=False,
                           activities_per_contact=args.activities_per_contact) as sandbox:
            tenant = sandbox_tenant(DEMO_TENANT_FILE, sandbox.base_url)
            environ = {**os.environ, TOKEN_VARIABLE: sandbox.credentials["access_token"]}
            synced = sync_tenant(tenant, state_dir=state_dir, environ=environ, dry_run=True, clock=ScaledClock(100))
            truth = GroundTruth(sandbox.crm.tenant)
            index_of = sandbox.crm.index_of
        print(f"sync: {synced.outcome.value}, {synced.pulled} records pulled in {time.perf_counter() - started:.1f} s")

        started = time.perf_counter()
        rescore_tenant(tenant, state_dir=state_dir, full=True)
        rescore = time.perf_counter() - started

        # in a fresh process, so its peak memory is the backtest's own, not the sandbox's and the sync's
        with multiprocessing.get_context("spawn").Pool(1) as pool:
            result, backtest, backtest_mb = pool.apply(_timed_backtest, (tenant, state_dir))
        with Store.open(tenant.store_path(state_dir)) as store:
            population = read_population(store)
            started = time.perf_counter()
            found = suggest(store, tenant, horizon=DEFAULT_HORIZON)
            suggesting = time.perf_counter() - started

    figures = result.results[0].figures
    pooled = figures.pooled
    top = pooled.bands[-1]
    true_chances, converted = _truth_columns(population, result.moments, truth, index_of)
    print(f"contacts: {args.contacts}  moments: {len(result.moments.at)} ({result.moments.at[0].date()} to "
          f"{result.moments.at[-1].date()}), horizon {DEFAULT_HORIZON.days} days")
    print(f"scored contact-moments: {pooled.contacts} (left out as converted before: {pooled.left_out}), "
          f"conversions: {pooled.conversions}")
    print(f"auc current: {pooled.auc:.3f}")
    print(f"auc truth: {auc(true_chances, converted):.3f}")
    print(f"top band {top.name!r}: {_share(top.contact_share)} of contacts, {_share(top.conversion_share)} of "
          f"conversions (lift {pooled.lift:.2f})" if pooled.lift is not None else f"top band {top.name!r}: empty")
    print(f"full rescore: {rescore:.1f} s  backtest of {len(result.moments.at)} moments: {backtest:.1f} s")
    print(f"peak RSS: backtest {backtest_mb:.0f} MB (its own process); sandbox, sync and rescore "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    print(f"backtest/rescore ratio: {backtest / rescore:.2f}")
    _print_suggestion(found, population, truth, index_of, suggesting)


def _print_suggestion(found: Suggestion, population: Population, truth: GroundTruth, index_of: Any,
                      seconds: float) -> None:
    """`leadpulse suggest`'s figures on its judged moments, beside the truth's on the same contact-moments."""
    split = found.split
    print(f"suggest: trained on {len(split.train)} moments ({found.conversions} conversions in {found.contacts} "
          f"contact-moments), judged on {len(split.judge)} ({split.judge[0].date()} to {split.judge[-1].date()}), "
          f"in {seconds:.1f} s")
    if found.document is None:
        print("suggest proposed nothing: " + " ".join(found.notes))
        return
    print(f"proposed rules ({len(found.rules)}): " + "; ".join(f"{label} {p:+d}" for label, p in found.rules))
    judged = {j.name.split(" ")[0]: j for j in found.judged}
    held_out = Moments(split.judge, tuple(DEFAULT_HORIZON for _ in split.judge), DEFAULT_HORIZON, ())
    chances, converted = _truth_columns(population, held_out, truth, index_of)
    print("on the judged moments:")
    for name, label in (("current", "current"), ("proposal", "suggested"), ("reference", "reference")):
        print(f"auc {label}: {_auc(judged[name].auc)}")
    print(f"auc truth: {_auc(auc(chances, converted))}")
    for label, know_traits in (("truth without the future", True), ("best from what is visible", False)):
        forecast = _forecast_columns(population, held_out, truth, index_of, know_traits=know_traits)
        print(f"auc {label}: {_auc(auc(forecast, converted))}")
    print(f"top-band capture suggested: {_share(judged['proposal'].top_capture)} of conversions in "
          f"{_share(judged['proposal'].top_share)} of contacts (current: {_share(judged['current'].top_capture)} in "
          f"{_share(judged['current'].top_share)})")


def _auc(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _timed_backtest(tenant: TenantConfig, state_dir: Path) -> tuple[Backtest, float, float]:
    """`leadpulse backtest`'s default run on the store, its seconds and this process's peak RSS in MB."""
    with Store.open(tenant.store_path(state_dir)) as store:
        started = time.perf_counter()
        result = run_backtest(store, tenant, [("current", tenant.scoring)], horizon=DEFAULT_HORIZON)
        seconds = time.perf_counter() - started
    return result, seconds, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _truth_columns(population, moments, truth: GroundTruth, index_of) -> tuple[np.ndarray, np.ndarray]:
    """The truth's chance and the stored outcome of every contact-moment the backtest judged, pooled as its
    figures pool them (those made by the moment and not converted at it)."""
    prospects = [truth.prospect(index_of(contact.id)) for contact in population.contacts]
    chances, outcomes = [], []
    for at, horizon in zip(moments.at, moments.horizons, strict=True):
        at_ms, horizon_ms = int(at.timestamp() * 1000), int(horizon.total_seconds() * 1000)
        standing = population.outcomes_at(at, horizon)
        for i in np.flatnonzero(standing.judged):
            chances.append(prospects[i].within(at_ms, horizon_ms))
            outcomes.append(standing.converted[i])
    return np.array(chances), np.array(outcomes)


#: points of the last touch's prior, and of the interest's, that `_forecast_columns` sums over
_TOUCH_GRID = 200
_INTEREST_GRID = 40
_NO_ACTIVITY = np.iinfo(np.int64).max


def _forecast_columns(population: Population, moments: Moments, truth: GroundTruth, index_of: Any,
                      *, know_traits: bool) -> np.ndarray:
    """The truth without the future, in `_truth_columns`' order: the model's chance that the person converts within
    the horizon given the creation time and the activities stamped at or before the moment, but not the last touch,
    which the truth reads and which may lie after the moment. With `know_traits`, given the person's fit and
    interest too; without, given the fit (which the title, industry, size and country fields fix) and only what the
    fields (email opens and clicks, page views) and the activities seen say of the interest: the best any score made
    from what is visible at the moment can rank.

    The last touch is summed over its prior given the creation (the draw's: ``anchor - (anchor - created) * u**3``)
    and the interest over its prior (``u**1.7``), each pair weighed by how likely it makes what is seen: the fields'
    draws, the activities seen by the moment (their count capped at ``ACTIVITY_SLOTS - 1``, their times
    ``start + span * (1 - v**3)`` up to the last touch, the rest after the moment, the share of meetings among them)
    and the person being open at the moment.
    """
    tenant = truth.tenant
    count = len(population.contacts)
    traits = np.empty((count, 6))  # fit, interest, creation, email opens, email clicks, page views
    stamped = np.full((count, ACTIVITY_SLOTS), _NO_ACTIVITY, dtype=np.int64)
    meeting = np.zeros((count, ACTIVITY_SLOTS), dtype=np.bool_)
    for i, contact in enumerate(population.contacts):
        index = index_of(contact.id)
        person = tenant.person(index)
        traits[i] = (person.fit, person.interest, person.created_ms, person.email_opens, person.email_clicks,
                     person.page_views)
        activities = sorted(tenant.activities(index), key=lambda activity: activity.occurred_ms)
        stamped[i, :len(activities)] = [activity.occurred_ms for activity in activities]
        meeting[i, :len(activities)] = [activity.kind is ActivityKind.MEETING for activity in activities]
    people, at = [], []
    for moment, horizon in zip(moments.at, moments.horizons, strict=True):
        judged = np.flatnonzero(population.outcomes_at(moment, horizon).judged)
        people.append(judged)
        at.append(np.full((judged.size, 2), (int(moment.timestamp() * 1000), int(horizon.total_seconds() * 1000))))
    rows, when = np.concatenate(people), np.concatenate(at)
    step = 2000 if know_traits else 500
    return np.concatenate([
        _forecast(traits[part], stamped[part], meeting[part], when[lo:lo + step], tenant, know_traits)
        for lo in range(0, rows.size, step) for part in [rows[lo:lo + step]]
    ]) if rows.size else np.zeros(0)


_CHOOSE = np.array([[math.comb(n, k) for k in range(ACTIVITY_SLOTS + 1)] for n in range(ACTIVITY_SLOTS)])


def _forecast(traits: np.ndarray, stamped: np.ndarray, meeting: np.ndarray, when: np.ndarray, tenant: Any,
              know_traits: bool) -> np.ndarray:
    """`_forecast_columns` for some rows: their traits and fields, activity times and kinds, (moment, horizon)."""
    fit, created = traits[:, :1], traits[:, 2:3]
    at, horizon = when[:, :1].astype(np.float64), when[:, 1:].astype(np.float64)
    u = (np.arange(_TOUCH_GRID) + 0.5) / _TOUCH_GRID
    touched = tenant.anchor_ms - (tenant.anchor_ms - created) * u ** 3  # rows x touch grid
    start = np.maximum(created, tenant.history_start_ms)
    span = np.maximum(start, touched) - start
    seen = stamped <= at
    k = seen.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        share = (stamped[:, None, :] - start[:, :, None]) / span[:, :, None]  # rows x touch grid x activities
        inside = (share >= 0) & (share <= 1)
        density = np.where(inside & seen[:, None, :],
                           -np.log(3 * span)[:, :, None] - 2 / 3 * np.log1p(-np.minimum(share, 1)), 0.0)
        density = np.where(~inside & seen[:, None, :], -np.inf, density).sum(axis=2)
        later = np.where(touched > at, np.cbrt(np.clip(1 - (at - start) / span, 0, 1)), 0.0)
    # a person last touched before the history starts has every activity stamped at its start (a span of 0)
    at_start = np.all(~seen | (stamped == start), axis=1, keepdims=True) & (k[:, None] > 0)
    density = np.where(span <= 0, np.where(at_start | (k[:, None] == 0), 0.0, -np.inf),
                       np.where(at_start & (created < tenant.history_start_ms), -np.inf, density))
    if know_traits:
        interest, evidence = traits[:, 1:2], np.zeros((len(traits), 1))
    else:
        interest = np.broadcast_to(((np.arange(_INTEREST_GRID) + 0.5) / _INTEREST_GRID) ** 1.7,
                                   (len(traits), _INTEREST_GRID))
        evidence = _interest_evidence(interest, traits[:, 3:4], traits[:, 4:5], traits[:, 5:6],
                                      (meeting & seen).sum(axis=1, keepdims=True), k[:, None])
    # the count: n activities with chance P(n | interest), k of them seen and n - k after the moment
    n = np.arange(ACTIVITY_SLOTS)
    ratio = np.exp(-1 / (tenant.activity_scale * (3 + 20 * interest)))[:, :, None]
    counted = ratio ** n * np.where(n < ACTIVITY_SLOTS - 1, 1 - ratio, 1)  # rows x interests x counts
    rest = n - k[:, None]
    unseen = np.where((rest >= 0)[:, :, None], _CHOOSE[n[None, :], k[:, None]][:, :, None]
                      * later[:, None, :] ** np.maximum(rest, 0)[:, :, None], 0.0)  # rows x counts x touches
    held = counted @ unseen  # rows x interests x touches
    chance = 1 / (1 + np.exp(5.5 - 4 * fit - 5 * interest))  # synth.conversion_probability, rows x interests
    low, high = CONVERSION_SPAN

    def timing(moment: np.ndarray) -> np.ndarray:  # Prospect._timing for each touch of the grid
        lifetime = touched - created
        with np.errstate(divide="ignore", invalid="ignore"):
            reached = (moment + 1 - created - lifetime * low) / (lifetime * (high - low))
        return np.clip(np.nan_to_num(reached, nan=1.0), 0.0, 1.0)

    before, by_end = timing(at), timing(at + horizon)
    # the weights factor: the interest's evidence, the touch's density, and the count's chance of both
    by_interest = np.exp(evidence - evidence.max(axis=1, keepdims=True))[:, None, :]
    by_touch = np.exp(density - density.max(axis=1, keepdims=True))
    converting = (by_interest * chance[:, None, :]) @ held  # rows x 1 x touches
    every = (by_interest @ held)[:, 0] * by_touch
    return (converting[:, 0] * by_touch * (by_end - before)).sum(axis=1) / (
        every.sum(axis=1) - (converting[:, 0] * by_touch * before).sum(axis=1))


def _interest_evidence(interest: np.ndarray, opens: np.ndarray, clicks: np.ndarray, views: np.ndarray,
                       meetings: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """The log-likelihood of each interest of the grid given the fields and the kinds of the activities seen, as
    synth draws them: opens ``floor(Exp(1 + 25 i))``, views ``floor(Exp(2 + 40 i))``, clicks
    ``floor(opens * U(0, 0.5) * i)``, and a meeting's weight ``4 + floor(100 i) / 10`` among ``96`` for the rest."""
    def floored(value: np.ndarray, mean: np.ndarray) -> np.ndarray:
        return np.log(np.exp(-value / mean) - np.exp(-(value + 1) / mean) + 1e-300)

    reach = np.maximum(opens * interest, 1e-12)
    bought = (np.clip((clicks + 1) / reach, 0, 0.5) - np.clip(clicks / reach, 0, 0.5)) / 0.5
    weight = 4 + np.floor(interest * 100) / 10
    return (floored(opens, 1 + 25 * interest) + floored(views, 2 + 40 * interest)
            + np.where(opens > 0, np.log(bought + 1e-300), np.where(clicks == 0, 0.0, -np.inf))
            + meetings * np.log(weight) - seen * np.log(96 + weight))


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


if __name__ == "__main__":
    main()
