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
  (`leadpulse.sandbox.truth`, which the product never reads), the best any score could do on this data.

It prints the pooled AUC of the rules and of the truth, the top band's share of contacts and of conversions, the
backtest's peak RSS (run in a process of its own) and ``backtest/rescore ratio: X``; then runs `leadpulse suggest`
on the store and prints, on its judged (held-out) moments, ``auc current``, ``auc suggested``, ``auc reference``
(gradient boosting on the same criteria), ``auc truth`` and ``top-band capture suggested``.
"""

from __future__ import annotations

import argparse
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


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


if __name__ == "__main__":
    main()
