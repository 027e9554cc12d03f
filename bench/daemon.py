"""Many small HubSpot tenants in one daemon: how late scheduled runs start, and what the daemon costs per tenant.

    .venv/bin/python bench/daemon.py [--tenants 200] [--contacts 40] [--cycles 3] [--interval 60] [--max-parallel 8]

Starts one helper process that serves a HubSpot sandbox per tenant (``--contacts`` synthetic contacts each,
rate limits on at the professional tier's real figures) and prints their addresses and tokens; writes one tenant
file per sandbox (the demo tenant's rules, ``every: 1m``, its own token variable); runs ``leadpulse daemon``
(``python -m leadpulse.core.cli daemon``) over them, with the schedule-scale hook when one minute should last
``--interval`` seconds rather
than 60; lets every tenant sync ``--cycles`` times after its first run, then stops it with SIGTERM. It prints:

- the scheduling delay (p50, p99, max): how long after its due time each run started, from the daemon's own
  debug lines (a run waits when every worker is busy), and how long the runs took;
- the daemon's CPU seconds per tenant-run and its mean CPU use, from psutil;
- its resident memory per tenant: RSS with N tenants minus RSS of the same daemon with one tenant that has
  synced (so the HubSpot client's imports are in both), over N - 1; and the RSS of a daemon with none.

The sandboxes live in the helper process, so the daemon's figures are its own; the helper's CPU is printed
apart. A HubSpot run spends most of its time waiting on the portal's search limit (four a second), not on a
core, which is why the default runs more workers than the daemon's default of 4.
"""

from __future__ import annotations

import argparse
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
from pathlib import Path

import psutil
import yaml

from leadpulse.core.cli.demo import DEMO_TENANT_FILE
from leadpulse.core.runtime.daemon import SCHEDULE_SCALE_ENV


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


def write_tenant(config_dir: Path, name: str, portal: Portal) -> None:
    data = yaml.safe_load(DEMO_TENANT_FILE.read_text())
    data["tenant"] = name
    data["crm"]["connection"]["base_url"] = portal.base_url
    data["crm"]["secrets"]["access_token"] = {"env": token_variable(name)}
    data["schedule"] = {"every": "1m"}
    config_dir.mkdir(exist_ok=True)
    (config_dir / f"{name}.yaml").write_text(yaml.safe_dump(data, sort_keys=False))


def start_daemon(root: Path, config: Path, env: dict[str, str], max_parallel: int) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "leadpulse.core.cli", "daemon", "--config-dir", str(config), "--state-dir",
         str(root / f"{config.name}-state"), "--port", "0", "--max-parallel", str(max_parallel), "--log-level",
         "DEBUG"],
        stdout=subprocess.DEVNULL, stderr=open(root / f"{config.name}.log", "w"), env=env,
    )


def stop(process: subprocess.Popen) -> int:
    process.send_signal(signal.SIGTERM)
    return process.wait(timeout=120)


def baseline_rss(root: Path, portal: Portal, max_parallel: int) -> tuple[int, int]:
    """RSS of a daemon with no tenant, and of one with a single tenant after two runs (scaled to 1 s)."""
    empty, one = root / "empty", root / "one"
    empty.mkdir()
    write_tenant(one, "bench-one", portal)
    env = os.environ | {SCHEDULE_SCALE_ENV: "60", token_variable("bench-one"): portal.token}
    sizes = []
    for config, runs in ((empty, 0), (one, 2)):
        process = start_daemon(root, config, env, max_parallel)
        try:
            wait_for_lines(root / f"{config.name}.log", '"outcome": "succeeded"', runs)
            sizes.append(psutil.Process(process.pid).memory_info().rss)
        finally:
            stop(process)
    return sizes[0], sizes[1]


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
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    calls: Counter[str] = Counter()
    for status, value in re.findall(r'^leadpulse_api_calls_total\{.*status="(\d+)".*\} (\S+)$', text, re.M):
        calls[status] += int(float(value))
    return calls


def log_lines(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]


def percentile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def measure(args: argparse.Namespace, root: Path, portals: list[Portal], helper: psutil.Process) -> dict:
    env = dict(os.environ)
    if args.interval != 60:
        env[SCHEDULE_SCALE_ENV] = str(60 / args.interval)
    for n, portal in enumerate(portals):
        name = f"bench-{n:04d}"
        write_tenant(root / "config", name, portal)
        env[token_variable(name)] = portal.token
    process = start_daemon(root, root / "config", env, args.max_parallel)
    log = root / "config.log"
    wait_for_lines(log, "daemon started", 1)
    watched = psutil.Process(process.pid)
    cpu0, helper0, t0 = cpu_seconds(watched), cpu_seconds(helper), time.monotonic()
    # the first runs are spread over one interval, then every tenant runs once an interval
    time.sleep(args.interval * (args.cycles + 1))
    figures = {"cpu": cpu_seconds(watched) - cpu0, "helper_cpu": cpu_seconds(helper) - helper0,
               "elapsed": time.monotonic() - t0, "rss": watched.memory_info().rss, "calls": api_calls(log)}
    figures["code"] = stop(process)
    return figures | {"lines": log_lines(log)}


def report(args: argparse.Namespace, figures: dict, idle: int, one: int) -> None:
    lines = figures["lines"]
    late = [line["schedule_delay"] for line in lines if "schedule_delay" in line]
    summaries = [line for line in lines if "outcome" in line]
    took = [float(m.group(1)) for line in summaries if (m := re.search(r" in ([\d.]+)s", line["message"]))]
    outcomes = Counter(line["outcome"] for line in summaries)
    cpu, elapsed, runs = figures["cpu"], figures["elapsed"], len(summaries)
    print(f"tenants {args.tenants} (HubSpot sandbox, {args.contacts} contacts each, professional-tier limits on), "
          f"interval {args.interval:g}s, {args.max_parallel} workers, {elapsed:.0f}s, {runs} runs "
          f"({runs / args.tenants:.1f} per tenant): {dict(outcomes)}")
    print(f"scheduling delay: p50 {percentile(late, 50) * 1000:.1f} ms, p99 {percentile(late, 99) * 1000:.1f} ms, "
          f"max {max(late) * 1000:.1f} ms")
    calls = figures["calls"]
    print(f"run time: p50 {percentile(took, 50):.2f}s, p99 {percentile(took, 99):.2f}s; API calls "
          f"{sum(calls.values())}, {calls['429']} answered 429")
    print(f"daemon CPU: {cpu:.1f}s = {cpu / elapsed * 100:.0f}% of one core; {cpu / runs * 1000:.1f} ms per "
          f"tenant-run; {cpu / elapsed / args.tenants * 100:.2f}% of a core per tenant at this interval")
    print(f"daemon memory: RSS {figures['rss'] / 2**20:.0f} MiB with {args.tenants} tenants, {one / 2**20:.0f} MiB "
          f"with one that has synced, {idle / 2**20:.0f} MiB with none: "
          f"{(figures['rss'] - one) / (args.tenants - 1) / 1024:.0f} KiB per tenant")
    print(f"sandboxes (helper process): {figures['helper_cpu']:.1f}s CPU; SIGTERM exit code {figures['code']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tenants", type=int, default=200)
    parser.add_argument("--cycles", type=int, default=3)
    parser.add_argument("--interval", type=float, default=60.0, help="seconds one scheduled minute lasts")
    parser.add_argument("--contacts", type=int, default=40, help="contacts per tenant")
    parser.add_argument("--max-parallel", type=int, default=8)
    parser.add_argument("--serve-sandboxes", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_sandboxes:
        serve_sandboxes(args.serve_sandboxes, args.contacts)
        return
    helper, portals = start_sandboxes(args.tenants + 1, args.contacts)
    try:
        with tempfile.TemporaryDirectory(prefix="leadpulse-bench-") as tmp:
            root = Path(tmp)
            idle, one = baseline_rss(root, portals[-1], args.max_parallel)
            figures = measure(args, root, portals[:-1], psutil.Process(helper.pid))
        report(args, figures, idle, one)
    finally:
        if helper.stdin:
            helper.stdin.close()
        helper.wait(timeout=60)


if __name__ == "__main__":
    main()
