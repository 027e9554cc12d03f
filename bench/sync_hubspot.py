"""A full HubSpot sync of a large tenant at the real tier limits, against the floor those limits allow, then the
two runs after it.

    .venv/bin/python bench/sync_hubspot.py --contacts 100000 --activities-per-contact 10 --time-scale 2

The sandbox runs in its own process with its rate limits on (professional: 190 calls per 10 s, 4 searches a
second) and its windows sped up by --time-scale; the sync runs here with its budget on the same time scale.
Wall time is measured in the CRM's time (real seconds x time scale), so it compares with the floors.

1. The full sync. Its floor is the fewest calls it can make: one list page per 100 contacts and per 100
   engagements of each type, plus one batch per 100 property writes and per 100 tasks; its wall-time floor is
   those calls at the tier's rate.
2. The echo run right after: every contact the write-back touched has changed since the cursor. Its floor
   reads the whole contact object through the list endpoint (one page per 100 contacts) at the tier's rate, plus
   each engagement type's changed pages: the tasks the write-back made, one search and one associations read per
   100, and one search for a type with nothing changed, the searches at the search limit.
3. The third run: one call a stream. The few contacts the echo run wrote (decay moved their scores) come back
   through those same searches; only leadpulse's own writes changed them, so they call for nothing more.

The three runs share one clock, so one rate budget, as runs of one daemon do.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from leadpulse.core.cli.demo import DEMO_TENANT_FILE, TOKEN_VARIABLE, sandbox_tenant
from leadpulse.core.clock import ScaledClock
from leadpulse.core.config.tenant import TenantConfig
from leadpulse.core.runtime.pipeline import sync_tenant
from leadpulse.core.runtime.run import RunSummary

CALLS_PER_10S = {"starter": 100, "professional": 190, "enterprise": 190}
SEARCHES_PER_SECOND = 4
PAGE = 100
ENGAGEMENT_TYPES = ("calls", "emails", "meetings", "notes", "tasks")


def start_sandbox(args: argparse.Namespace) -> tuple[subprocess.Popen, str, str]:
    command = [sys.executable, "-m", "leadpulse.sandbox", "serve", "--crm", "hubspot", "--contacts", str(args.contacts),
               "--seed", str(args.seed), "--tier", args.tier, "--time-scale", str(args.time_scale)]
    if args.activities_per_contact:
        command += ["--activities-per-contact", str(args.activities_per_contact)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    base_url = process.stdout.readline().split(": ", 1)[1].strip()
    token = json.loads(process.stdout.readline().split(": ", 1)[1])["access_token"]
    return process, base_url, token


def sandbox_stats(base_url: str) -> dict:
    with urllib.request.urlopen(f"{base_url}/_sandbox/stats") as answer:
        return json.load(answer)


def answered(base_url: str) -> Counter[tuple[str, str]]:
    routes = sandbox_stats(base_url)["routes"]
    return Counter({(route, status): n for route, by in routes.items() for status, n in by.items()})


@dataclass(frozen=True)
class Measured:
    """One sync, its wall time in CRM time, and the calls the sandbox answered while it ran, by route."""

    summary: RunSummary
    seconds: float
    answers: Counter[tuple[str, str]]

    @property
    def total(self) -> int:
        return sum(self.answers.values())

    def endpoints(self) -> str:
        calls = Counter[str]()
        for (route, _), n in self.answers.items():
            calls[route] += n
        said = ", ".join(f"{route} {n}" for route, n in calls.most_common())
        failed = [f"{route} {status} x{n}" for (route, status), n in self.answers.items() if status[0] != "2"]
        return f"{said}; not 2xx: {', '.join(failed)}" if failed else said


def measure(base_url: str, tenant: TenantConfig, state_dir: Path, environ: dict[str, str],
            clock: ScaledClock) -> Measured:
    before = answered(base_url)
    started = time.perf_counter()
    summary = sync_tenant(tenant, state_dir=state_dir, clock=clock, environ=environ)
    seconds = (time.perf_counter() - started) * clock.scale
    return Measured(summary, seconds, answered(base_url) - before)


def echo_floor(contacts: int, tasks: int, rate: float) -> tuple[float, str]:
    """Seconds the echo run cannot beat at the tier's limits, and what it counts: the contact list pages at the
    general limit, plus each engagement type's changed pages (the tasks the full sync made; one search for a type
    with nothing changed) at the search limit and their associations reads at the general one."""
    lists = math.ceil(contacts / PAGE)
    changed = {kind: tasks if kind == "tasks" else 0 for kind in ENGAGEMENT_TYPES}
    searches = sum(max(1, math.ceil(n / PAGE)) for n in changed.values())
    links = sum(math.ceil(n / PAGE) for n in changed.values())
    parts = (lists / rate, searches / SEARCHES_PER_SECOND, links / rate)
    return sum(parts), (f"{lists} contact list pages at {rate:g}/s {parts[0]:.1f} s + {searches} engagement "
                        f"searches at {SEARCHES_PER_SECOND}/s {parts[1]:.1f} s + {links} associations reads "
                        f"{parts[2]:.1f} s")


def engagements_by_type(store_path: Path) -> dict[str, int]:
    with sqlite3.connect(store_path) as db:
        rows = db.execute("SELECT vendor_type, count(*) FROM activities GROUP BY vendor_type").fetchall()
    return dict(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--activities-per-contact", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--tier", default="professional", choices=sorted(CALLS_PER_10S))
    parser.add_argument("--time-scale", type=float, default=2.0)
    args = parser.parse_args()

    process, base_url, token = start_sandbox(args)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-sync-") as folder:
            state_dir = Path(folder)
            tenant = sandbox_tenant(DEMO_TENANT_FILE, base_url, tier=args.tier)
            environ = {**os.environ, TOKEN_VARIABLE: token}
            clock = ScaledClock(args.time_scale)
            full = measure(base_url, tenant, state_dir, environ, clock)
            by_type = engagements_by_type(tenant.store_path(state_dir))
            stats = sandbox_stats(base_url)
            echo = measure(base_url, tenant, state_dir, environ, clock)
            third = measure(base_url, tenant, state_dir, environ, clock)
            streams = stream_count(tenant.store_path(state_dir))
    finally:
        process.terminate()
        process.wait(timeout=30)

    summary = full.summary
    real = full.seconds / args.time_scale
    pages = math.ceil(args.contacts / PAGE) + sum(math.ceil(n / PAGE) for n in by_type.values())
    floor = pages + math.ceil(summary.written / PAGE) + math.ceil(summary.tasks / PAGE)
    rate = CALLS_PER_10S[args.tier] / 10
    wall_floor = floor / rate
    wall = real * args.time_scale
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"run: {summary.outcome.value}{': ' + summary.error if summary.error else ''}")
    print(f"contacts: {args.contacts}  engagements: {sum(by_type.values())} {by_type}")
    print(f"pulled: {summary.pulled}  scored: {summary.scored}  written: {summary.written}  tasks: {summary.tasks}")
    print(f"API calls: {stats['total']} (client counted {summary.api_calls}); floor: {floor} "
          f"({pages} list pages, {math.ceil(summary.written / PAGE)} write and {math.ceil(summary.tasks / PAGE)} "
          "task batches)")
    print(f"wall: {wall:.1f} s in CRM time ({real:.1f} s real at time scale {args.time_scale}); "
          f"rate-limit floor: {wall_floor:.1f} s at {rate:g} calls/s")
    print("steps: " + ", ".join(f"{name} {sec * args.time_scale:.1f} s" for name, sec in summary.steps.items())
          + " (CRM time)")
    print(f"peak RSS: {peak_mb:.0f} MB")
    print(f"calls/floor: {stats['total'] / floor:.3f}")
    print(f"wall/floor: {wall / wall_floor:.3f}")
    print(f"429s: {stats['rate_limited']}")
    report_after(echo, third, streams, echo_floor(args.contacts, summary.tasks, rate), args.time_scale)


def report_after(echo: Measured, third: Measured, streams: int, floor: tuple[float, str], scale: float) -> None:
    seconds, spelled = floor
    for name, run in (("echo", echo), ("third", third)):
        said = run.summary
        print(f"{name} run: {said.outcome.value}{': ' + said.error if said.error else ''}; pulled {said.pulled}, "
              f"scored {said.scored}, written {said.written}, tasks {said.tasks}; steps "
              + ", ".join(f"{step} {sec * scale:.1f} s" for step, sec in said.steps.items()))
    print(f"echo run calls: {echo.total} ({echo.endpoints()})")
    print(f"echo run seconds: {echo.seconds:.1f}")
    print(f"echo floor seconds: {seconds:.1f} ({spelled})")
    print(f"echo/floor: {echo.seconds / seconds:.3f}")
    print(f"third run calls: {third.total} (streams: {streams}; pulled {third.summary.pulled}; "
          f"{third.endpoints()})")


def stream_count(store_path: Path) -> int:
    with sqlite3.connect(store_path) as db:
        return int(db.execute("SELECT count(*) FROM cursors").fetchone()[0])


if __name__ == "__main__":
    main()
