"""The daemon as a real process over HubSpot sandbox tenants: schedules, overlaps, SIGHUP, SIGTERM mid-run, /metrics.

Each tenant is its own HubSpot sandbox (rate limits on, professional tier) served from this process; the daemon
is a subprocess that reaches them over HTTP with one token each, passed through its environment. Intervals are
``every: 2m`` in the files and run 60 times faster through the schedule-scale hook. Runs are slowed only by the
sandboxes' own faults: a hung first list makes a run outlast its interval, hung batch updates keep a push going
long enough to send SIGTERM in its middle.
"""

from __future__ import annotations

import functools
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
from collections.abc import Mapping
from pathlib import Path

import pytest
import yaml
from support import DEMO_TENANT, wait_for

from leadpulse.connectors.hubspot import wire_value
from leadpulse.connectors.idempotency import task_token
from leadpulse.core.runtime.daemon import SCHEDULE_SCALE_ENV
from leadpulse.core.store.store import Store
from leadpulse.sandbox import Sandbox

pytestmark = pytest.mark.slow

SMALL = {"t-a": 1, "t-b": 2, "t-c": 3}  # tenant: sandbox seed
SMALL_CONTACTS = 40
BIG, BIG_SEED, BIG_CONTACTS = "t-big", 4, 600
WRITE_BATCH = 100  # HubSpot's batch update size
OWNED = ("leadpulse_score", "leadpulse_fit", "leadpulse_engagement", "leadpulse_grade", "leadpulse_band",
         "leadpulse_quadrant", "leadpulse_reasons", "lifecyclestage")


def token_variable(tenant: str) -> str:
    return f"LP_TEST_{tenant.upper().replace('-', '_')}_TOKEN"


def write_tenant(config_dir: Path, name: str, sb: Sandbox) -> None:
    """The demo tenant file under another name, pointed at `sb`, with its own token variable."""
    data = yaml.safe_load(DEMO_TENANT.read_text())
    data["tenant"] = name
    data["crm"]["connection"]["base_url"] = sb.base_url
    data["crm"]["secrets"]["access_token"] = {"env": token_variable(name)}
    data["schedule"] = {"every": "2m"}
    data["tasks"]["on_statuses"] = ["mql", "sql"]  # a few tasks in every tenant, so duplicates would show
    (config_dir / f"{name}.yaml").write_text(yaml.safe_dump(data, sort_keys=False))


def start_portal(sandbox_factory, seed: int, contacts: int) -> Sandbox:
    return sandbox_factory("hubspot", contacts=contacts, seed=seed, rate_limits=True, tier="professional",
                           activities_per_contact=2)


class DaemonProcess:
    def __init__(self, root: Path, log_name: str, portals: Mapping[str, Sandbox]) -> None:
        self.log_path = root / log_name
        tokens = {token_variable(name): sb.credentials["access_token"] for name, sb in portals.items()}
        env = os.environ | tokens | {SCHEDULE_SCALE_ENV: "60", "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "leadpulse.core.cli", "daemon", "--config-dir", str(root / "config"), "--state-dir",
             str(root / "state"), "--port", "0", "--grace", "20"],
            stdout=subprocess.DEVNULL, stderr=open(self.log_path, "w"), env=env,  # noqa: SIM115 - the child keeps it
        )
        found = wait_for(lambda: re.search(r'"port": (\d+)', self.log_path.read_text()), timeout=30)
        assert isinstance(found, re.Match), f"the daemon never served its port:\n{self.log_path.read_text()}"
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
        return self.process.wait(timeout=40)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def sample(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def store_path(root: Path, tenant: str) -> Path:
    return root / "state" / f"{tenant}.sqlite"


def store_runs(root: Path, tenant: str) -> list[dict]:
    path = store_path(root, tenant)
    if not path.exists():
        return []
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        db.row_factory = sqlite3.Row
        return [dict(row) for row in db.execute("SELECT * FROM runs ORDER BY id")]


def metrics_agree_with_store(samples: dict, root: Path, tenant: str, after_run: int = 0) -> bool:
    """Every run counter of `tenant` in /metrics equals what its store says this daemon's finished runs did."""
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


def calls_agree_with_sandbox(samples: dict, tenant: str, sb: Sandbox) -> bool:
    """The API-call and 429 counters of `tenant` equal what its sandbox answered, status by status."""
    answered: Counter[str] = Counter()
    for by_status in sb.stats.by_route().values():
        answered.update({str(status): n for status, n in by_status.items()})
    counted = {dict(labels)["status"]: value for (name, labels), value in samples.items()
               if name == "leadpulse_api_calls_total" and ("tenant", tenant) in labels and ("crm", "hubspot") in labels}
    return counted == answered and sample(samples, "leadpulse_rate_limited_total", tenant=tenant,
                                          crm="hubspot") == sb.stats.rate_limited


def daemon_agrees(daemon: DaemonProcess, root: Path, tenant: str, sb: Sandbox, after_run: int = 0) -> bool:
    """/metrics, the store and the sandbox tell the same story (polled: it holds between the tenant's runs)."""
    samples = daemon.metrics()
    return metrics_agree_with_store(samples, root, tenant, after_run) and calls_agree_with_sandbox(samples, tenant, sb)


def assert_crm_holds_the_stores_scores(root: Path, tenant: str, sb: Sandbox) -> None:
    with Store.open(store_path(root, tenant)) as store:
        for index in range(sb.crm.size):
            contact_id = sb.crm.id_of(index)
            stored, values = store.score(contact_id), sb.vendor.properties_of(contact_id)
            assert stored is not None, (tenant, contact_id)
            assert float(values["leadpulse_score"]) == stored.total, (tenant, contact_id)
            assert float(values["leadpulse_fit"]) == stored.axes["fit"], (tenant, contact_id)
            assert float(values["leadpulse_engagement"]) == stored.axes["engagement"], (tenant, contact_id)
            assert (values["leadpulse_band"], values["leadpulse_grade"]) == (stored.band, stored.grade)
            assert values["leadpulse_quadrant"] == stored.quadrant
            assert {k: wire_value(v) for k, v in stored.written.items()} == {k: values[k] for k in stored.written}


def assert_every_task_exists_once(root: Path, tenant: str, sb: Sandbox) -> None:
    tokens = [token for task in sb.vendor.created_tasks()
              for token in re.findall(r"lpk[0-9a-f]{24}", task["properties"].get("hs_task_body") or "")]
    with sqlite3.connect(f"file:{store_path(root, tenant)}?mode=ro", uri=True) as db:
        keys = [key for (key,) in db.execute("SELECT key FROM outbox WHERE kind = 'task' AND state = 'done'")]
    assert keys, f"{tenant} created no task: the check would prove nothing"
    assert sorted(tokens) == sorted(task_token(key) for key in keys)
    assert sum(r["tasks"] for r in store_runs(root, tenant)) == len(keys)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    for folder in ("config", "state"):
        (tmp_path / folder).mkdir()
    return tmp_path


@pytest.fixture
def portals(sandbox_factory, root: Path) -> dict[str, Sandbox]:
    """One HubSpot sandbox per small tenant, each tenant's file already in the config folder."""
    started = {name: start_portal(sandbox_factory, seed, SMALL_CONTACTS) for name, seed in SMALL.items()}
    for name, sb in started.items():
        write_tenant(root / "config", name, sb)
    return started


def test_daemon_schedules_refuses_overlaps_reloads_and_resumes_after_sigterm(root: Path, portals, sandbox_factory):
    big = start_portal(sandbox_factory, BIG_SEED, BIG_CONTACTS)
    everyone = {**portals, BIG: big}
    portals["t-b"].faults.fail_next("contacts.list", 429, times=2)  # ridden out, and counted as 429s
    portals["t-c"].faults.hang_next("contacts.list", 5.0)  # its first run outlasts its 2 s interval
    daemon = DaemonProcess(root, "first.log", everyone)
    try:
        # every tenant syncs, again and again, on its own schedule
        assert wait_for(lambda: all(len(store_runs(root, t)) >= 2 for t in SMALL)), daemon.log_path.read_text()
        # a run that outlasts its interval: the next one is refused, never run alongside
        assert wait_for(lambda: sample(daemon.metrics(), "leadpulse_overlaps_refused_total", tenant="t-c"))
        assert any("run refused" in line["message"] and line["tenant"] == "t-c" for line in daemon.lines())
        # /metrics carries the same counts as the stores, and the same API answers as the sandboxes
        for name, sb in portals.items():
            assert wait_for(functools.partial(daemon_agrees, daemon, root, name, sb)), name
        # at least the two injected 429s (back-to-back runs may meet the search limit too, counted alike)
        assert sample(daemon.metrics(), "leadpulse_rate_limited_total", tenant="t-b", crm="hubspot") >= 2

        # SIGHUP: a new tenant is picked up, a broken file is reported, the others keep going
        big.faults.hang_next("contacts.batch_update", 1.0, times=BIG_CONTACTS // WRITE_BATCH)
        write_tenant(root / "config", BIG, big)
        (root / "config" / "t-broken.yaml").write_text("tenant: t-broken\nschedule: {every: soon}\n")
        daemon.signal(signal.SIGHUP)
        assert wait_for(lambda: any("t-broken.yaml" in line["message"] for line in daemon.lines()
                                    if line["level"] == "error"))
        assert wait_for(lambda: sample(daemon.metrics(), "leadpulse_tenants", state="broken") == 1)
        assert sample(daemon.metrics(), "leadpulse_tenants", state="configured") == 4

        # SIGTERM in the middle of the big tenant's push: its batch ends, it checkpoints, the daemon exits 0
        assert wait_for(lambda: big.stats.count("contacts.batch_update") >= 1), daemon.log_path.read_text()
        assert daemon.stop() == 0
    finally:
        daemon.kill()
    interrupted = store_runs(root, BIG)[-1]
    assert interrupted["outcome"] == "stopped"
    assert 0 < interrupted["written"] < BIG_CONTACTS
    assert 0 < sum(1 for i in range(BIG_CONTACTS) if big.vendor.properties_of(big.crm.id_of(i)).get(
        "leadpulse_score") is not None) < BIG_CONTACTS

    # the next start resumes: every contact written exactly once, every task created once
    big.faults.clear()
    for sb in everyone.values():
        sb.stats.reset()  # from here the sandboxes count what the second daemon asked
    earlier = {name: store_runs(root, name)[-1]["id"] for name in everyone}
    again = DaemonProcess(root, "second.log", everyone)
    try:
        assert wait_for(lambda: any(r["outcome"] == "succeeded" for r in store_runs(root, BIG)), timeout=40)
        for name in ("t-a", BIG):
            assert wait_for(functools.partial(daemon_agrees, again, root, name, everyone[name], earlier[name])), name
    finally:
        assert again.stop() == 0
        again.kill()
    assert sum(r["written"] for r in store_runs(root, BIG)) == BIG_CONTACTS
    for name, sb in everyone.items():
        assert_crm_holds_the_stores_scores(root, name, sb)
        assert_every_task_exists_once(root, name, sb)


def test_every_log_line_is_json_with_its_tenant_and_no_token_ever_shows(root: Path, portals):
    daemon = DaemonProcess(root, "daemon.log", portals)
    try:
        assert wait_for(lambda: all(len(store_runs(root, t)) >= 1 for t in SMALL))
    finally:
        assert daemon.stop() == 0
        daemon.kill()
    text = daemon.log_path.read_text()
    lines = daemon.lines()
    assert lines and len(lines) == len(text.splitlines())
    summaries = [line for line in lines if "outcome" in line]  # the line each finished run ends with
    assert {line["tenant"] for line in summaries} >= set(SMALL)
    assert all(line["run_id"] for line in summaries)
    assert not [name for name, sb in portals.items() if sb.credentials["access_token"] in text]


def test_status_shows_each_tenants_last_run_counts_backlog_and_last_error(root: Path, portals):
    from click.testing import CliRunner

    from leadpulse.core.cli.main import main
    from leadpulse.core.config.files import load_config_dir
    from leadpulse.core.runtime.pipeline import sync_tenant

    tenants = {t.name: t for t in load_config_dir(root / "config")[0]}
    environ = {token_variable("t-a"): portals["t-a"].credentials["access_token"],
               token_variable("t-b"): "pat-na1-00000000-not-the-token"}
    synced = sync_tenant(tenants["t-a"], state_dir=root / "state", environ=environ)
    sync_tenant(tenants["t-b"], state_dir=root / "state", environ=environ)
    result = CliRunner().invoke(main, ["status", "--json", "--config-dir", str(root / "config"),
                                       "--state-dir", str(root / "state")])
    assert result.exit_code == 0, result.output
    rows = {row["tenant"]: row for row in map(json.loads, result.output.splitlines())}
    assert (rows["t-a"]["outcome"], rows["t-a"]["pulled"], rows["t-a"]["written"]) == (
        "succeeded", synced.pulled, SMALL_CONTACTS)
    assert (rows["t-a"]["tasks"], rows["t-a"]["backlog"], rows["t-a"]["last_error"]) == (synced.tasks, 0, None)
    assert rows["t-b"]["outcome"] == "failed" and "crm.secrets.access_token" in rows["t-b"]["last_error"]
    assert rows["t-c"]["outcome"] is None and rows["t-c"]["last_run_at"] is None
