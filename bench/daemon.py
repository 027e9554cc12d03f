"""Many small HubSpot tenants in one daemon: do their runs start when due, and what does the daemon cost per tenant.

    .venv/bin/python bench/daemon.py [--tenants 200] [--every 15m] [--minutes 5] [--contacts 40] [--primed]
                                     [--max-parallel N] [--max-scoring N] [--scale 1]

Starts one helper process that serves a HubSpot sandbox per tenant (``--contacts`` synthetic contacts each, rate
limits on at the professional tier's real figures) and prints their addresses and tokens; writes one tenant file
per sandbox (the demo tenant's rules, ``every: <--every>``, its own token variable); starts ``leadpulse daemon``
(``python -m leadpulse.core.cli daemon``) over them and measures ``--minutes`` from the moment it has started,
then stops it with SIGTERM. With ``--primed``, a daemon first syncs every tenant once on an interval scaled to
30 s, so the window measures the incremental runs of a daemon that has been up a while (a HubSpot one waits on
the portal's search limit) rather than first syncs. ``--scale`` runs schedules, and the window, that many times
faster (the schedule-scale hook). It prints:

- the runs due in the window (each tenant's grid, as the daemon's own `trigger_for` places it) and how many of
  them started; the scheduling delay of those (p50, p99, max), how long after its due time each started; the
  peak number of runs in flight, all from the summary line each run logs;
- the daemon's CPU seconds per tenant-run over the window, from psutil;
- its resident memory per tenant: RSS with N tenants minus RSS of the same daemon with one tenant that has
  synced (so the HubSpot client's imports are in both), over N - 1.

The sandboxes live in the helper process, so the daemon's figures are its own; the helper's CPU is printed apart.
The daemon logs at INFO, as deployed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import psutil
import yaml

from leadpulse.core.cli.demo import DEMO_TENANT_FILE
from leadpulse.core.runtime.daemon import RUNS_IN_FLIGHT, SCHEDULE_SCALE_ENV
from leadpulse.core.runtime.workers import usable_cores
from leadpulse.core.schedule import Schedule, format_duration, parse_duration, trigger_for


@dataclass(frozen=True)
class Portal:
    base_url: str
    token: str


def serve_sandboxes(count: int, contacts: int) -> None:
    """The helper process: `count` HubSpot sandboxes, one JSON line each on stdout, served until stdin closes."""
    from leadpulse.sandbox import Sandbox

    started = [Sandbox.start("hubspot", contacts, seed, tier="professional", rate_limits=True)
               for seed in range(1, count + 1)]
    for sb in started:
        print(json.dumps({"base_url": sb.base_url, "token": sb.credentials["access_token"]}), flush=True)
    sys.stdin.read()  # the bench closes our stdin when it is done, or dies
    for sb in started:
        sb.stop()


def start_sandboxes(count: int, contacts: int) -> tuple[subprocess.Popen, list[Portal]]:
    helper = subprocess.Popen(
        [sys.executable, __file__, "--serve-sandboxes", str(count), "--contacts", str(contacts)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    portals: list[Portal] = []
    assert helper.stdout is not None
    for _ in range(count):
        line = helper.stdout.readline()
        if not line:
            raise SystemExit(f"the sandbox helper exited with {helper.wait()} after {len(portals)} sandboxes")
        answer = json.loads(line)
        portals.append(Portal(answer["base_url"], answer["token"]))
    return helper, portals


def token_variable(name: str) -> str:
    return f"LP_{name.upper().replace('-', '_')}_TOKEN"


def write_tenant(config_dir: Path, name: str, portal: Portal, every: str) -> None:
    data = yaml.safe_load(DEMO_TENANT_FILE.read_text())
    data["tenant"] = name
    data["crm"]["connection"]["base_url"] = portal.base_url
    data["crm"]["secrets"]["access_token"] = {"env": token_variable(name)}
    data["schedule"] = {"every": every}
    config_dir.mkdir(exist_ok=True)
    (config_dir / f"{name}.yaml").write_text(yaml.safe_dump(data, sort_keys=False))


def start_daemon(root: Path, config: Path, env: dict[str, str], options: list[str], log: str = "") -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "leadpulse.core.cli", "daemon", "--config-dir", str(config), "--state-dir",
         str(root / f"{config.name}-state"), "--port", "0", *options],
        stdout=subprocess.DEVNULL, stderr=open(root / (log or f"{config.name}.log"), "w"), env=env,
    )


def prime(root: Path, env: dict[str, str], options: list[str], tenants: int, every: timedelta) -> None:
    """Every tenant's first (full) sync, by a daemon whose interval lasts 30 s, so the measured runs are the
    incremental ones of a daemon that has been up a while."""
    scale = max(1.0, every.total_seconds() / 30)
    log = root / "prime.log"
    process = start_daemon(root, root / "config", env | {SCHEDULE_SCALE_ENV: str(scale)}, options, log.name)
    try:
        deadline = time.monotonic() + 1800
        while len({line["tenant"] for line in log_lines(log) if line.get("outcome") == "succeeded"}) < tenants:
            if time.monotonic() > deadline:
                raise SystemExit(f"not every tenant synced within 30 minutes; see {log}")
            time.sleep(1.0)
    finally:
        stop(process)


def stop(process: subprocess.Popen) -> int:
    process.send_signal(signal.SIGTERM)
    return process.wait(timeout=120)


def baseline_rss(root: Path, portal: Portal, options: list[str]) -> int:
    """RSS of a daemon with a single tenant after two runs (every 1m scaled to 1 s)."""
    one = root / "one"
    write_tenant(one, "bench-one", portal, "1m")
    env = os.environ | {SCHEDULE_SCALE_ENV: "60", token_variable("bench-one"): portal.token}
    process = start_daemon(root, one, env, options)
    try:
        wait_for_lines(root / f"{one.name}.log", '"outcome": "succeeded"', 2)
        return int(psutil.Process(process.pid).memory_info().rss)
    finally:
        stop(process)


def wait_for_lines(log: Path, text: str, count: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.exists() and "daemon started" in log.read_text() and log.read_text().count(text) >= count:
            return
        time.sleep(0.1)
    raise SystemExit(f"the daemon never logged {text!r} {count} times; see {log}")


def api_calls(log: Path) -> Counter[str]:
    """API answers by status, summed over tenants, from the daemon's /metrics."""
    found = re.search(r'"port": (\d+)', log.read_text())
    assert found, f"the daemon never served its port:\n{log.read_text()}"
    port = found.group(1)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as answer:
        text = answer.read().decode()
    calls: Counter[str] = Counter()
    for status, value in re.findall(r'^leadpulse_api_calls_total\{.*status="(\d+)".*\} (\S+)$', text, re.M):
        calls[status] += int(float(value))
    return calls


def log_lines(log: Path) -> list[dict]:
    """The daemon's JSON lines so far; the one it is still writing is left for the next read."""
    found = []
    for line in log.read_text().splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            found.append(json.loads(line))
    return [line for line in found if isinstance(line, dict)]


def percentile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def due_in(names: list[str], every: timedelta, scale: float, start: datetime, end: datetime) -> int:
    """How many runs of the tenants `names` fall due in ``[start, end)``, each on its grid as the daemon sets it."""
    schedule = Schedule(every=every)
    count = 0
    for name in names:
        trigger = trigger_for(schedule, tenant=name, scale=scale)
        due = trigger.get_next_fire_time(None, start)
        while due < end:
            count += 1
            due = trigger.get_next_fire_time(due, due)
    return count


def measure(args: argparse.Namespace, root: Path, portals: list[Portal], helper: psutil.Process,
            options: list[str]) -> dict:
    env = dict(os.environ)
    if args.scale != 1:
        env[SCHEDULE_SCALE_ENV] = str(args.scale)
    names = [f"bench-{n:04d}" for n in range(len(portals))]
    for name, portal in zip(names, portals, strict=True):
        write_tenant(root / "config", name, portal, args.every)
        env[token_variable(name)] = portal.token
    if args.primed:
        prime(root, env, options, len(names), parse_duration(args.every))
    process = start_daemon(root, root / "config", env, options)
    log = root / "config.log"
    wait_for_lines(log, "daemon started", 1)
    watched = psutil.Process(process.pid)
    cpu0, helper0 = cpu_seconds(watched), cpu_seconds(helper)
    started = next(datetime.fromisoformat(line["time"]) for line in log_lines(log)
                   if line["message"].startswith("daemon started"))
    window = timedelta(minutes=args.minutes) / args.scale
    end = started + window
    time.sleep(max(0.0, (end - datetime.now(started.tzinfo)).total_seconds()))
    figures = {"cpu": cpu_seconds(watched) - cpu0, "helper_cpu": cpu_seconds(helper) - helper0,
               "rss": watched.memory_info().rss, "started": started, "end": end,
               "due": due_in(names, parse_duration(args.every), args.scale, started, end)}
    # a run due just before the end starts a moment after it; what has not ended by SIGTERM logs as it stops
    time.sleep(2.0)
    figures["calls"] = api_calls(log)
    figures["code"] = stop(process)
    return figures | {"lines": log_lines(log)}


def report(args: argparse.Namespace, figures: dict, one: int) -> None:
    start, end = figures["started"], figures["end"]
    runs = [line for line in figures["lines"] if line.get("due") and start <= datetime.fromisoformat(line["due"]) < end]
    late = [line["schedule_delay"] for line in runs]
    took = [float(m.group(1)) for line in runs if (m := re.search(r" in ([\d.]+)s", line["message"]))]
    outcomes = Counter(line.get("outcome", "error") for line in runs)
    window, cpu = (end - start).total_seconds(), figures["cpu"]
    refused = sum(1 for line in figures["lines"] if line["message"].startswith("run refused"))
    print(f"tenants {args.tenants} (HubSpot sandbox, {args.contacts} contacts each, professional-tier limits on), "
          f"every {args.every}{f' run {args.scale:g}x faster' if args.scale != 1 else ''}, "
          f"{args.max_parallel or RUNS_IN_FLIGHT} runs in flight at most, "
          f"{args.max_scoring or usable_cores()} scoring; a window of {window:.0f}s from the daemon's start"
          f"{' (every tenant synced once before)' if args.primed else ''}")
    print(f"runs started: {len(runs)} of {figures['due']} due ({dict(outcomes)}; {refused} refused as overlaps)")
    if not runs:
        raise SystemExit("no run started in the window")
    print(f"scheduling delay: p50 {percentile(late, 50) * 1000:.1f} ms, p99 {percentile(late, 99) * 1000:.1f} ms, "
          f"max {max(late) * 1000:.1f} ms")
    print(f"runs in flight: peak {max(line['in_flight'] for line in runs)}")
    calls = figures["calls"]
    print(f"run time: p50 {percentile(took, 50):.2f}s, p99 {percentile(took, 99):.2f}s; API calls "
          f"{sum(calls.values())}, {calls['429']} answered 429")
    print(f"daemon CPU: {cpu:.1f}s = {cpu / window * 100:.0f}% of one core; {cpu / len(runs) * 1000:.1f} ms per "
          f"tenant-run")
    ran = len({line["tenant"] for line in runs})
    print(f"daemon memory: RSS {figures['rss'] / 2**20:.0f} MiB with {args.tenants} tenants ({ran} of them have "
          f"run), {one / 2**20:.0f} MiB with one that has synced: "
          f"{(figures['rss'] - one) / max(1, args.tenants - 1) / 1024:.0f} KiB per tenant")
    print(f"sandboxes (helper process): {figures['helper_cpu']:.1f}s CPU; SIGTERM exit code {figures['code']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tenants", type=int, default=200)
    parser.add_argument("--every", default="15m", help="each tenant's schedule, as a tenant file writes it")
    parser.add_argument("--minutes", type=float, default=5.0, help="the measuring window, from the daemon's start")
    parser.add_argument("--contacts", type=int, default=40, help="contacts per tenant")
    parser.add_argument("--max-parallel", type=int, help="the daemon's --max-parallel (default: its own)")
    parser.add_argument("--max-scoring", type=int, help="the daemon's --max-scoring (default: its own)")
    parser.add_argument("--primed", action="store_true",
                        help="sync every tenant once before the window, so it measures incremental runs")
    parser.add_argument("--scale", type=float, default=1.0, help="schedules and the window run this many times faster")
    parser.add_argument("--serve-sandboxes", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_sandboxes:
        serve_sandboxes(args.serve_sandboxes, args.contacts)
        return
    args.every = format_duration(parse_duration(args.every))
    options = [*(["--max-parallel", str(args.max_parallel)] if args.max_parallel else []),
               *(["--max-scoring", str(args.max_scoring)] if args.max_scoring else [])]
    helper, portals = start_sandboxes(args.tenants + 1, args.contacts)
    try:
        with tempfile.TemporaryDirectory(prefix="leadpulse-bench-") as tmp:
            root = Path(tmp)
            one = baseline_rss(root, portals[-1], options)
            figures = measure(args, root, portals[:-1], psutil.Process(helper.pid), options)
        report(args, figures, one)
    finally:
        if helper.stdin:
            helper.stdin.close()
        helper.wait(timeout=60)


if __name__ == "__main__":
    main()
