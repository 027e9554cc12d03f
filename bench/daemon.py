"""Many small tenants in one daemon: how late scheduled runs start, and what the daemon costs per tenant.

    .venv/bin/python bench/daemon.py [--tenants 200] [--cycles 4] [--interval 10] [--max-parallel 4]

Writes N small file tenants (``--contacts`` contacts with one activity each, every tenant ``every: 1m``),
runs ``python -m core.daemon`` over them with the schedule-scale hook so one minute lasts ``--interval``
seconds, lets every tenant sync ``--cycles`` times, then stops it with SIGTERM. It prints:

- the scheduling delay (p50, p99, max): how long after its due time each run started, from the daemon's own
  debug lines (a run waits when every worker is busy);
- the daemon's CPU seconds per tenant-run and its mean CPU use, from psutil;
- its resident memory per tenant: RSS with N tenants minus RSS of the same daemon with none, over N.

File tenants are used: the runs read local CSV files, so the figures are the daemon's and the pipeline's,
not a CRM's latency.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this folder comes first on the path, where bench/sandbox.py would hide the sandbox package.
sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse
import csv
import json
import os
import signal
import statistics
import subprocess
import tempfile
import time

import psutil

from core.daemon import SCHEDULE_SCALE_ENV

TENANT = """\
tenant: {name}
crm:
  kind: file
  connection:
    contacts: ../data/{name}-contacts.csv
    activities: ../data/{name}-activities.csv
    results: ../data/{name}-results.csv
schedule:
  every: 1m
fields:
  title: title
scoring:
  axes:
    fit: {{weight: 1}}
    engagement: {{weight: 1}}
  rules:
    - {{id: vp, when: {{field: title, contains: VP}}, points: 5}}
    - {{id: demo, activity: form_submit, points: 8}}
  bands:
    - {{name: cold}}
    - {{name: hot, min: 10}}
  quadrant: {{fit: 5, engagement: 6}}
  lifecycle:
    values: {{lead: lead, mql: mql}}
    transitions:
      - {{to: lead, min_total: 0}}
      - {{to: mql, min_band: hot}}
writeback:
  properties: {{score: lp_score, band: lp_band}}
tasks:
  enabled: true
  on_bands: [hot]
"""


def write_tenants(root: Path, count: int, contacts: int) -> None:
    for folder in ("config", "data", "state"):
        (root / folder).mkdir(exist_ok=True)
    for n in range(count):
        name = f"bench-{n:04d}"
        (root / "config" / f"{name}.yaml").write_text(TENANT.format(name=name))
        with open(root / "data" / f"{name}-contacts.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["id", "email", "title", "updated_at", "owner_id"])
            writer.writerows([f"c{i}", f"p{i}@example.com", "VP" if i % 3 == 0 else "Engineer",
                              "2026-01-01T00:00:00Z", "o1"] for i in range(contacts))
        with open(root / "data" / f"{name}-activities.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["id", "contact_id", "kind", "occurred_at"])
            writer.writerows([f"a{i}", f"c{i}", "form_submit", "2026-11-01T00:00:00Z"] for i in range(contacts))


def start_daemon(root: Path, config: Path, scale: float, max_parallel: int) -> subprocess.Popen:
    env = os.environ | {SCHEDULE_SCALE_ENV: str(scale)}
    return subprocess.Popen(
        [sys.executable, "-m", "core.daemon", "--config-dir", str(config), "--state-dir", str(root / "state"),
         "--port", "0", "--max-parallel", str(max_parallel), "--log-level", "DEBUG"],
        stdout=subprocess.DEVNULL, stderr=open(root / f"{config.name}.log", "w"), env=env,
    )


def idle_rss(root: Path, scale: float, max_parallel: int) -> int:
    """RSS of a daemon with no tenant, once it has started."""
    empty = root / "empty"
    empty.mkdir()
    process = start_daemon(root, empty, scale, max_parallel)
    try:
        wait_for_line(root / "empty.log", "daemon started")
        return psutil.Process(process.pid).memory_info().rss
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


def wait_for_line(log: Path, text: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.exists() and text in log.read_text():
            return
        time.sleep(0.1)
    raise SystemExit(f"the daemon never logged {text!r}; see {log}")


def delays(log: Path) -> list[float]:
    found = []
    for line in log.read_text().splitlines():
        if '"schedule_delay"' in line:
            found.append(json.loads(line)["schedule_delay"])
    return found


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tenants", type=int, default=200)
    parser.add_argument("--cycles", type=int, default=4)
    parser.add_argument("--interval", type=float, default=10.0, help="seconds one scheduled minute lasts")
    parser.add_argument("--contacts", type=int, default=20, help="contacts per tenant")
    parser.add_argument("--max-parallel", type=int, default=4)
    args = parser.parse_args()
    scale = 60 / args.interval

    with tempfile.TemporaryDirectory(prefix="leadpulse-bench-") as tmp:
        root = Path(tmp)
        write_tenants(root, args.tenants, args.contacts)
        baseline = idle_rss(root, scale, args.max_parallel)
        process = start_daemon(root, root / "config", scale, args.max_parallel)
        log = root / "config.log"
        wait_for_line(log, "daemon started")
        watched = psutil.Process(process.pid)
        cpu0, t0 = sum(watched.cpu_times()[:2]), time.monotonic()
        # the first runs are spread over one interval, then every tenant runs once an interval
        time.sleep(args.interval * (args.cycles + 1))
        cpu = sum(watched.cpu_times()[:2]) - cpu0
        elapsed = time.monotonic() - t0
        rss = watched.memory_info().rss
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=60)
        late = delays(log)

    runs = len(late)
    print(f"tenants {args.tenants} (file, {args.contacts} contacts each), interval {args.interval:g}s, "
          f"{args.max_parallel} workers, {elapsed:.0f}s, {runs} runs ({runs / args.tenants:.1f} per tenant)")
    print(f"scheduling delay: p50 {percentile(late, 50) * 1000:.1f} ms, p99 {percentile(late, 99) * 1000:.1f} ms, "
          f"max {max(late) * 1000:.1f} ms")
    print(f"daemon CPU: {cpu:.1f}s = {cpu / elapsed * 100:.0f}% of one core; {cpu / runs * 1000:.1f} ms per "
          f"tenant-run; {cpu / elapsed / args.tenants * 100:.2f}% of a core per tenant at this interval")
    print(f"daemon memory: RSS {rss / 2**20:.0f} MiB with {args.tenants} tenants, {baseline / 2**20:.0f} MiB with "
          f"none: {(rss - baseline) / args.tenants / 1024:.0f} KiB per tenant")
    print(f"SIGTERM exit code {code}")


if __name__ == "__main__":
    main()
