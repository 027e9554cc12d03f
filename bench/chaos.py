"""A HubSpot sync killed at random moments, its store set back, then stormed: nothing lost, nothing doubled.

    .venv/bin/python bench/chaos.py --contacts 3000 --kills 10

One sandbox portal runs in its own process with HubSpot's real rate limits (professional: 190 calls per 10 s, four
searches a second); every sync is `leadpulse sync` in a process of its own, as cron or the daemon would start it.

1. kills: a full sync, SIGKILLed --kills times, each time at a random moment (a random number of API calls into
   the run, then up to 0.3 s more, so some die while scoring), each time started again at once; then run to its end.
   While they run, the store is copied whenever it holds queued tasks and none created yet.
2. restore: the store is replaced by the last such copy, its -wal gone (a restore from an older backup, or a kill
   during task creation that lost the -wal), and the sync runs again: it must find every task by its key.
3. storms: 150 contacts take a meeting, reply and answer a call; the next sync meets a 429 storm (no Retry-After),
   5xx and dropped connections on reads, writes, task look-ups and task creation (a dropped create is carried out,
   its answer lost). A last quiet sync settles what the storm left unknown.

What the portal should hold comes from a reference: the same portal (same seed, same activity), synced without
interruption in this process. Figures: kills, tasks expected (the reference's), tasks in crm, duplicate tasks
(tasks sharing an idempotency key), tasks missing, contacts lost (a contact without leadpulse's score in the CRM, or
not in the store), bands that differ from the reference, 429s after restart (rate-limit refusals met by the runs
started right after a kill or a restore). The exit code is 1 when anything was lost, doubled or throttled.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from leadpulse.connectors.hubspot import TASK_KEY
from leadpulse.connectors.idempotency import task_token
from leadpulse.core.cli.demo import DEMO_TENANT_FILE, TOKEN_VARIABLE, tenant_data
from leadpulse.core.clock import ScaledClock
from leadpulse.core.config.files import validate_tenant
from leadpulse.core.runtime.pipeline import sync_tenant
from leadpulse.sandbox import Sandbox

TENANT = "chaos"
LIVENED = 150
LIVEN_SEED = 11
#: (route, fault) the storm sync meets; a dropped call is carried out by the portal before its answer is lost
STORM: tuple[tuple[str, dict[str, Any]], ...] = (
    ("contacts.search", {"kind": "status", "status": 429, "times": 5}),
    ("meetings.search", {"kind": "status", "status": 503, "times": 3}),
    ("emails.search", {"kind": "drop", "times": 2}),
    ("contacts.batch_update", {"kind": "status", "status": 502, "times": 2}),
    ("contacts.batch_update", {"kind": "drop", "times": 2}),
    ("tasks.batch_read", {"kind": "status", "status": 429, "times": 2}),
    ("tasks.batch_create", {"kind": "drop", "times": 1}),
    ("tasks.batch_create", {"kind": "status", "status": 503, "times": 1}),
)
TOKEN = re.compile(r"lpk[0-9a-f]{24}")


def chaos_tenant(base_url: str) -> dict[str, Any]:
    """The demo tenant, renamed, with a task for every contact that becomes qualified (hundreds, not a handful)."""
    data = tenant_data(DEMO_TENANT_FILE, base_url=base_url, tier="professional")
    data["tenant"] = TENANT
    data["tasks"]["on_bands"] = ["qualified"]
    return data


def liven(crm: Any, ids: list[str]) -> None:
    for contact_id in ids:
        crm.add_activity(contact_id, "meeting", outcome="completed")
        crm.add_activity(contact_id, "email", direction="inbound")
        crm.add_activity(contact_id, "call", status="completed")


@dataclass
class Reference:
    """What an uninterrupted sync of the same portal leaves in it."""

    api_calls: int
    task_keys: Counter[str]
    bands: dict[str, str]


def reference(contacts: int, seed: int, state_dir: Path) -> Reference:
    with Sandbox.start("hubspot", contacts, seed, tier="professional", rate_limits=False) as sb:
        tenant = validate_tenant(chaos_tenant(sb.base_url), state_dir / f"{TENANT}.yaml")
        environ = {TOKEN_VARIABLE: sb.credentials["access_token"]}
        clock = ScaledClock(1000)  # no limits to keep to: the budget need not pace it
        first = sync_tenant(tenant, state_dir=state_dir, clock=clock, environ=environ)
        liven(sb.crm, sb.crm.touch(LIVENED, LIVEN_SEED))
        sync_tenant(tenant, state_dir=state_dir, clock=clock, environ=environ)
        written = sb.written()
    return Reference(first.api_calls, task_keys(written), bands(written))


def admin(base_url: str, path: str, body: dict[str, Any] | None = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"{base_url}/_sandbox{path}", data=data, method="GET" if data is None else "POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as answer:
        return json.load(answer)


def task_keys(written: dict[str, Any]) -> Counter[str]:
    """Each task's idempotency key as HubSpot holds it (its token: in the unique property, and in the body), counted."""
    keys: Counter[str] = Counter()
    for task in written["tasks"]:
        props = task["properties"]
        key = props.get(TASK_KEY) or next(iter(TOKEN.findall(props.get("hs_task_body") or "")), None)
        keys[key or f"no key: task {task['id']}"] += 1
    return keys


def bands(written: dict[str, Any]) -> dict[str, str]:
    return {cid: values.get("leadpulse_band") for cid, values in written["properties"].items()}


@dataclass
class Chaos:
    """The portal in its own process and the syncs run against it."""

    base_url: str
    token: str
    folder: Path
    rng: random.Random
    kills: int = 0
    runs: list[str] = field(default_factory=list)
    throttled_after_restart: int = 0
    copies: int = 0

    @property
    def config_dir(self) -> Path:
        return self.folder / "config"

    @property
    def state_dir(self) -> Path:
        return self.folder / "state"

    @property
    def store(self) -> Path:
        return self.state_dir / f"{TENANT}.sqlite"

    @property
    def copy(self) -> Path:
        return self.folder / "before-tasks.sqlite"

    def stats(self) -> dict[str, Any]:
        return admin(self.base_url, "/stats")

    def sync(self, *, kill_after_calls: int | None = None, after_restart: bool = False) -> int:
        """One `leadpulse sync` in its own process, SIGKILLed once the portal has answered `kill_after_calls` calls
        in all (then up to 0.3 s more); its exit code (-9 when killed)."""
        throttled = self.stats()["throttled"]
        command = [str(Path(sys.executable).parent / "leadpulse"), "sync", "--tenant", TENANT, "--config-dir",
                   str(self.config_dir), "--state-dir", str(self.state_dir), "--log-level", "WARNING"]
        with open(self.folder / "syncs.log", "a") as log:
            child = subprocess.Popen(command, stdout=log, stderr=log,
                                     env={**os.environ, TOKEN_VARIABLE: self.token, "COLUMNS": "160"})
            deadline = None
            while child.poll() is None:
                self.copy_if_before_tasks()
                if kill_after_calls is not None and deadline is None and self.stats()["total"] >= kill_after_calls:
                    deadline = time.monotonic() + self.rng.uniform(0, 0.3)
                if deadline is not None and time.monotonic() >= deadline:
                    child.send_signal(signal.SIGKILL)
                    child.wait()
                    break
                time.sleep(0.02)
        self.copy_if_before_tasks()
        if after_restart:
            self.throttled_after_restart += self.stats()["throttled"] - throttled
        code = child.returncode
        self.kills += code == -signal.SIGKILL
        self.runs.append("killed" if code == -signal.SIGKILL else f"exit {code}")
        return code

    def copy_if_before_tasks(self) -> None:
        """Copy the store while it holds queued tasks and has created none (a consistent snapshot, WAL and all)."""
        if not self.store.exists():
            return
        try:
            with sqlite3.connect(self.store, timeout=5) as db:
                queued, created = db.execute("SELECT count(*), coalesce(sum(state IN ('done', 'sending')), 0) "
                                             "FROM outbox WHERE kind = 'task'").fetchone()
                if queued and not created:
                    with sqlite3.connect(self.copy) as copy:
                        db.backup(copy)
                    self.copies += 1
            db.close()
        except sqlite3.Error:
            return  # not a store yet, or busy: the next look

    def restore(self) -> None:
        for suffix in ("-wal", "-shm"):
            Path(f"{self.store}{suffix}").unlink(missing_ok=True)
        shutil.copyfile(self.copy, self.store)


def start_portal(contacts: int, seed: int) -> tuple[subprocess.Popen[str], str, str]:
    command = [sys.executable, "-m", "leadpulse.sandbox", "serve", "--crm", "hubspot", "--contacts", str(contacts),
               "--seed", str(seed), "--tier", "professional"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert process.stdout is not None
    base_url = process.stdout.readline().split(": ", 1)[1].strip()
    token = json.loads(process.stdout.readline().split(": ", 1)[1])["access_token"]
    return process, base_url, token


def kill_points(rng: random.Random, kills: int, calls: int) -> list[int]:
    """Where in a full sync's calls the kills fall: spread over its first nine tenths, in order."""
    return sorted(rng.randint(3, max(4, int(calls * 0.9))) for _ in range(kills))


def run(args: argparse.Namespace, folder: Path) -> int:
    rng = random.Random(args.seed)
    started = time.monotonic()
    expected = reference(args.contacts, args.seed, folder / "reference")
    print(f"reference: a full sync makes {expected.api_calls} API calls; {sum(expected.task_keys.values())} tasks "
          f"after {LIVENED} contacts take meetings ({time.monotonic() - started:.1f} s)", flush=True)

    portal, base_url, token = start_portal(args.contacts, args.seed)
    try:
        chaos = Chaos(base_url, token, folder / "chaos", rng)
        chaos.config_dir.mkdir(parents=True)
        (chaos.config_dir / f"{TENANT}.yaml").write_text(yaml.safe_dump(chaos_tenant(base_url), sort_keys=False))

        phase = time.monotonic()
        for n, point in enumerate(kill_points(rng, args.kills, expected.api_calls)):
            calls = chaos.stats()["total"]
            chaos.sync(kill_after_calls=max(point, calls + rng.randint(1, 10)), after_restart=n > 0)
        finished = chaos.sync(after_restart=chaos.kills > 0)
        print(f"kills: {chaos.kills} of {args.kills} tried, then a run to the end: exit {finished} "
              f"({time.monotonic() - phase:.1f} s, {chaos.stats()['total']} API calls)", flush=True)

        if not chaos.copy.exists():
            print("no copy of the store was taken before task creation: the restore phase cannot run")
            return 1
        phase = time.monotonic()
        chaos.restore()
        restored = chaos.sync(after_restart=True)
        print(f"restore from a copy taken before task creation ({chaos.copies} taken), then a run: exit {restored} "
              f"({time.monotonic() - phase:.1f} s)", flush=True)

        phase = time.monotonic()
        ids = admin(base_url, "/crm/touch", {"count": LIVENED, "seed": LIVEN_SEED})["ids"]
        for kind, fields in (("meeting", {"outcome": "completed"}), ("email", {"direction": "inbound"}),
                             ("call", {"status": "completed"})):
            admin(base_url, "/crm/activities", {"ids": ids, "kind": kind, "fields": fields})
        for route, fault in STORM:
            admin(base_url, "/faults", {"route": route, **fault})
        stormed = chaos.sync()
        settled = chaos.sync()
        stats = chaos.stats()
        print(f"storms: {sum(f['times'] for _, f in STORM)} faults injected, the run: exit {stormed}, "
              f"a quiet run after it: exit {settled} ({time.monotonic() - phase:.1f} s)", flush=True)

        written = admin(base_url, "/crm/written")
        (folder / "portal.json").write_text(json.dumps(written))
    finally:
        portal.terminate()
        portal.wait(timeout=30)

    keys = task_keys(written)
    with sqlite3.connect(chaos.store) as db:
        stored = {row[0] for row in db.execute("SELECT id FROM contacts")}
        queued = {task_token(row[0]) for row in db.execute("SELECT key FROM outbox WHERE kind = 'task'")}
    db.close()
    scored = {cid for cid, values in written["properties"].items() if values.get("leadpulse_score") is not None}
    every = set(written["contacts"])
    lost = len(every - (scored & stored))
    duplicates = sum(n - 1 for n in keys.values())
    missing = len(set(expected.task_keys) - set(keys))
    differing = sum(1 for cid, band in bands(written).items() if expected.bands.get(cid) != band)
    failed = [outcome for outcome in chaos.runs if outcome not in ("killed", "exit 0")]

    print(f"kills: {chaos.kills}")
    print(f"tasks expected: {sum(expected.task_keys.values())}")
    print(f"tasks in crm: {sum(keys.values())}")
    print(f"duplicate tasks: {duplicates}")
    print(f"tasks missing: {missing}")
    unexpected = sorted(set(keys) - set(expected.task_keys))
    print(f"tasks not expected: {len(unexpected)} ({sum(k in queued for k in unexpected)} of them known to the store)"
          + (f", e.g. {', '.join(unexpected[:5])}" if unexpected else ""))
    print(f"contacts lost: {lost}")
    print(f"bands differing from the reference: {differing}")
    print(f"429s after restart: {chaos.throttled_after_restart}")
    injected = sum(fault["times"] for _, fault in STORM if fault.get("status") == 429)
    print(f"429s from the CRM's limits, all runs: {stats['throttled'] - injected} (and {injected} the storm sent)")
    print(f"runs: {len(chaos.runs)} ({', '.join(f'{n} {o}' for o, n in Counter(chaos.runs).items())}); "
          f"API calls: {stats['total']}; wall: {time.monotonic() - started:.1f} s")
    bad = duplicates or missing or lost or chaos.throttled_after_restart or failed or chaos.kills < args.kills
    return 1 if bad else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--contacts", type=int, default=3000)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep", type=Path, default=None,
                        help="Keep the stores, tenant files and sync logs in this folder (emptied first).")
    args = parser.parse_args()
    if args.keep:
        shutil.rmtree(args.keep, ignore_errors=True)
        args.keep.mkdir(parents=True)
        sys.exit(run(args, args.keep))
    with tempfile.TemporaryDirectory(prefix="bench-chaos-") as folder:
        sys.exit(run(args, Path(folder)))


if __name__ == "__main__":
    main()
