"""The daemon as a real process over file tenants: schedules, overlaps, SIGHUP, SIGTERM mid-run, /metrics.

Intervals are ``every: 1m`` in the files (the shortest a tenant file allows) and run 60 times faster through
the schedule-scale test hook; the batch-delay test hook slows every batch so a signal lands mid-run.
"""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

pytest.importorskip("core.pipeline")
pytest.importorskip("connectors.file")

from core.daemon import BATCH_DELAY_ENV, SCHEDULE_SCALE_ENV  # noqa: E402

pytestmark = pytest.mark.slow

SMALL = ("t-a", "t-b", "t-c")
BIG = "t-big"
BIG_CONTACTS = 2000

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


def write_tenant(root: Path, name: str, contacts: int) -> None:
    (root / "config" / f"{name}.yaml").write_text(TENANT.format(name=name))
    data = root / "data"
    with open(data / f"{name}-contacts.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "email", "name", "title", "updated_at", "owner_id"])
        for i in range(contacts):
            title = "VP Sales" if i % 2 else "Engineer"
            writer.writerow([f"c{i}", f"p{i}@example.com", f"P {i}", title, "2026-01-01T00:00:00Z", "o1"])
    with open(data / f"{name}-activities.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "contact_id", "kind", "occurred_at"])
        for i in range(contacts):
            writer.writerow([f"a{i}", f"c{i}", "form_submit", "2026-11-01T00:00:00Z"])


class DaemonProcess:
    def __init__(self, root: Path, log_name: str) -> None:
        self.log_path = root / log_name
        env = os.environ | {SCHEDULE_SCALE_ENV: "60", BATCH_DELAY_ENV: "0.25", "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "core.daemon", "--config-dir", str(root / "config"), "--state-dir",
             str(root / "state"), "--port", "0", "--grace", "15"],
            stdout=subprocess.DEVNULL, stderr=open(self.log_path, "w"), env=env,
        )
        found = wait_for(lambda: re.search(r'"port": (\d+)', self.log_path.read_text()), timeout=15)
        assert found, f"the daemon never served its port:\n{self.log_path.read_text()}"
        self.port = int(found.group(1))

    def lines(self) -> list[dict]:
        return [json.loads(line) for line in self.log_path.read_text().splitlines() if line.startswith("{")]

    def metrics(self) -> dict[tuple[str, frozenset], float]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as answer:
            text = answer.read().decode()
        samples = {}
        for line in text.splitlines():
            match = re.match(r"^(\w+)(?:\{(.*)\})? (\S+)$", line)
            if match:
                labels = frozenset(re.findall(r'(\w+)="([^"]*)"', match.group(2) or ""))
                samples[(match.group(1), labels)] = float(match.group(3))
        return samples

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def stop(self) -> int:
        self.signal(signal.SIGTERM)
        return self.process.wait(timeout=30)


def sample(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def wait_for(condition: Callable[[], object], timeout: float = 20.0) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            result = condition()
        except (OSError, ValueError, sqlite3.Error):
            result = None
        if result:
            return result
        time.sleep(0.05)
    return None


def store_runs(root: Path, tenant: str) -> list[dict]:
    path = root / "state" / f"{tenant}.sqlite"
    if not path.exists():
        return []
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        db.row_factory = sqlite3.Row
        return [dict(row) for row in db.execute("SELECT * FROM runs ORDER BY id")]


def results_rows(root: Path, tenant: str) -> int:
    path = root / "data" / f"{tenant}-results.csv"
    with open(path, newline="") as handle:
        return sum(1 for _ in csv.DictReader(handle))


def metrics_agree_with_store(daemon: DaemonProcess, root: Path, tenant: str, after_run: int = 0) -> bool:
    """Every counter of `tenant` in /metrics equals what its store says this daemon's finished runs did."""
    samples = daemon.metrics()
    finished = [r for r in store_runs(root, tenant) if r["outcome"] and r["id"] > after_run]
    by_outcome = Counter(r["outcome"] for r in finished)
    return bool(finished) and all([
        all(sample(samples, "leadpulse_runs_total", tenant=tenant, outcome=o) == n for o, n in by_outcome.items()),
        sample(samples, "leadpulse_records_pulled_total", tenant=tenant) == sum(r["pulled"] for r in finished),
        sample(samples, "leadpulse_records_written_total", tenant=tenant) == sum(r["written"] for r in finished),
        sample(samples, "leadpulse_tasks_created_total", tenant=tenant) == sum(r["tasks"] for r in finished),
        sample(samples, "leadpulse_run_duration_seconds_count", tenant=tenant) == len(finished),
        sample(samples, "leadpulse_outbox_backlog", tenant=tenant) == 0,
        sample(samples, "leadpulse_last_success_timestamp_seconds", tenant=tenant) > time.time() - 60,
    ])


@pytest.fixture
def root(tmp_path: Path) -> Path:
    for folder in ("config", "data", "state"):
        (tmp_path / folder).mkdir()
    for name in SMALL:
        write_tenant(tmp_path, name, contacts=20)
    return tmp_path


def test_daemon_schedules_refuses_overlaps_reloads_and_resumes_after_sigterm(root: Path):
    daemon = DaemonProcess(root, "first.log")
    try:
        # every tenant syncs, again and again, on its own schedule
        assert wait_for(lambda: all(len(store_runs(root, t)) >= 2 for t in SMALL)), daemon.log_path.read_text()
        # runs take longer than the 1 s interval: the next one is refused, never run alongside
        assert wait_for(lambda: any(sample(daemon.metrics(), "leadpulse_overlaps_refused_total", tenant=t)
                                    for t in SMALL))
        assert any("run refused" in line["message"] for line in daemon.lines())
        # /metrics carries the same counts as the stores
        assert wait_for(lambda: metrics_agree_with_store(daemon, root, "t-a"))

        # SIGHUP: a new tenant is picked up, a broken file is reported, the others keep going
        write_tenant(root, BIG, contacts=BIG_CONTACTS)
        (root / "config" / "t-broken.yaml").write_text("tenant: t-broken\nschedule: {every: soon}\n")
        daemon.signal(signal.SIGHUP)
        assert wait_for(lambda: any("t-broken.yaml" in line["message"] for line in daemon.lines()
                                    if line["level"] == "error"))
        assert wait_for(lambda: sample(daemon.metrics(), "leadpulse_tenants", state="broken") == 1)
        assert sample(daemon.metrics(), "leadpulse_tenants", state="configured") == 4

        # SIGTERM in the middle of the big tenant's push: its batch ends, it checkpoints, the daemon exits 0
        assert wait_for(lambda: 0 < results_rows(root, BIG) < BIG_CONTACTS, timeout=30), daemon.log_path.read_text()
        assert daemon.stop() == 0
    finally:
        if daemon.process.poll() is None:
            daemon.process.kill()
    interrupted = store_runs(root, BIG)[-1]
    assert interrupted["outcome"] == "stopped"
    assert 0 < interrupted["written"] < BIG_CONTACTS

    # the next start resumes: every contact written exactly once, every task created once
    earlier = store_runs(root, "t-a")[-1]["id"]
    again = DaemonProcess(root, "second.log")
    try:
        assert wait_for(lambda: any(r["outcome"] == "succeeded" for r in store_runs(root, BIG)), timeout=30)
        assert wait_for(lambda: metrics_agree_with_store(again, root, "t-a", after_run=earlier))
    finally:
        assert again.stop() == 0
    assert results_rows(root, BIG) == BIG_CONTACTS
    assert sum(r["written"] for r in store_runs(root, BIG)) == BIG_CONTACTS
    with open(root / "data" / f"{BIG}-results-tasks.csv", newline="") as handle:
        keys = [row["key"] for row in csv.DictReader(handle)]
    assert len(keys) == len(set(keys)) == BIG_CONTACTS // 2
    assert sum(r["tasks"] for r in store_runs(root, BIG)) == BIG_CONTACTS // 2


def test_every_log_line_of_a_run_is_json_with_its_tenant(root: Path):
    daemon = DaemonProcess(root, "daemon.log")
    try:
        assert wait_for(lambda: all(len(store_runs(root, t)) >= 1 for t in SMALL))
    finally:
        assert daemon.stop() == 0
    lines = daemon.lines()
    assert lines and len(lines) == len(daemon.log_path.read_text().splitlines())
    summaries = [line for line in lines if "outcome" in line]  # the line each finished run ends with
    assert {line["tenant"] for line in summaries} >= set(SMALL)
    assert all(line["run_id"] for line in summaries)


def test_status_shows_each_tenants_last_run_counts_backlog_and_last_error(root: Path):
    from click.testing import CliRunner

    from core.cli import main
    from core.config import load_config_dir
    from core.pipeline import sync_tenant

    tenants, _ = load_config_dir(root / "config")
    sync_tenant(next(t for t in tenants if t.name == "t-a"), state_dir=root / "state")
    (root / "data" / "t-b-contacts.csv").unlink()
    sync_tenant(next(t for t in tenants if t.name == "t-b"), state_dir=root / "state")
    result = CliRunner().invoke(main, ["status", "--json", "--config-dir", str(root / "config"),
                                       "--state-dir", str(root / "state")])
    assert result.exit_code == 0, result.output
    rows = {row["tenant"]: row for row in map(json.loads, result.output.splitlines())}
    assert (rows["t-a"]["outcome"], rows["t-a"]["pulled"], rows["t-a"]["written"]) == ("succeeded", 40, 20)
    assert (rows["t-a"]["tasks"], rows["t-a"]["backlog"], rows["t-a"]["last_error"]) == (10, 0, None)
    assert rows["t-b"]["outcome"] == "failed" and "t-b-contacts.csv" in rows["t-b"]["last_error"]
    assert rows["t-c"]["outcome"] is None and rows["t-c"]["last_run_at"] is None
