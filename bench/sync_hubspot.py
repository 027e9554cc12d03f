"""A full HubSpot sync of a large tenant at the real tier limits, against the floor those limits allow.

    .venv/bin/python bench/sync_hubspot.py --contacts 100000 --activities-per-contact 10 --time-scale 2

The sandbox runs in its own process with its rate limits on (professional: 190 calls per 10 s, 4 searches a
second) and its windows sped up by --time-scale; the sync runs here with its budget on the same time scale.

The floor is the fewest calls a full sync can make: one list page per 100 contacts and per 100 engagements of
each type, plus one batch per 100 property writes and per 100 tasks. The wall-time floor is those calls at the
tier's rate. Wall time is measured in the CRM's time (real seconds x time scale), so it compares with the floor.
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
from pathlib import Path

from leadpulse.core.cli.demo import DEMO_TENANT_FILE, TOKEN_VARIABLE, sandbox_tenant
from leadpulse.core.clock import ScaledClock
from leadpulse.core.runtime.pipeline import sync_tenant

CALLS_PER_10S = {"starter": 100, "professional": 190, "enterprise": 190}
PAGE = 100


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
            started = time.perf_counter()
            summary = sync_tenant(tenant, state_dir=state_dir, clock=ScaledClock(args.time_scale), environ=environ)
            real = time.perf_counter() - started
            by_type = engagements_by_type(tenant.store_path(state_dir))
            stats = sandbox_stats(base_url)
    finally:
        process.terminate()
        process.wait(timeout=30)

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


if __name__ == "__main__":
    main()
