"""Benchmark a full rescore against a plain scan of the same rows.

    python bench/score.py --contacts 100000

Generates N synthetic contacts with about ten activities each into a temporary store and scores them all with
the previous rules (the demo tenant's, config/demo-file.yaml, before a rule change: see `previous_rules`), both
in child processes, so the figures below are the rescore's own. Then it times:

- a plain scan: every contact and activity row in the store, with the columns the rescore reads (the store's own
  SELECTs), iterated through Python's sqlite3 and dropped; and the same scan of only the activity rows the rescore
  reads: those of the kinds its rules read (see `leadpulse.core.engine.columnar.ColumnEngine.activities_read`;
  a third of the synthetic activities are emails sent, calls, webinars and bounces, which no demo rule reads);
- a full rescore with the current rules: every contact read and scored again, and what changed saved (scores,
  history, the writes and tasks queued for the CRM), exactly what ``leadpulse score`` does after a rule change.
  A contact whose card comes out as saved, with nothing about it or the write-back changed since, is not decided
  again (see `leadpulse.core.store.store.PriorScore.settled`).
  With ``--first``, the store is not scored beforehand and the timed run is a first scoring, which saves
  everything. Like ``leadpulse score``, it reads and scores in one worker process per core (see
  `leadpulse.core.runtime.scoring_pass.scoring_workers`), each chunk of 1,000 contacts column by column (see
  `leadpulse.core.runtime.scoring_pass.COLUMN_WISE_FROM`) and saved by the worker that scored it, one saving at a
  time.

Each is timed three times (``--runs``), the rescore each time on a fresh copy of the store as it was before the
first, and the best time of each counts, as `timeit` takes the best of its runs: on a machine shared with
others, a run can take half as long again for reasons of its own. It prints contacts per second (with every
rescore's time), the peak RSS of this process and of the largest scoring worker, the best rescore over the best
scan of the rows it reads, and last ``rescore/scan ratio: X``, the best rescore over the best plain scan of the
store.

With ``--floor``, it then rescores a copy of the store again in this one process, recording every SQL statement
the rescore makes, and replays them on another copy with no Python object built around them: the reads (rows
fetched and dropped, as the scan does) and then the writes (in the rescore's own transactions). What SQLite alone
spends on the rescore, before any scoring, is printed as ``sqlite floor: X scans``: the reads shared by two cores and
the writes made by one, at best ``max(writes, (reads + writes) / 2)``.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import resource
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from synthetic import EXPORT_AT, records

from leadpulse.connectors.file import parse_activity, parse_contact
from leadpulse.core.config.files import load_tenant
from leadpulse.core.config.tenant import TenantConfig
from leadpulse.core.contract import Page
from leadpulse.core.engine.rules import ScoringConfig
from leadpulse.core.engine.scoring import Engine
from leadpulse.core.runtime.scoring_pass import SCORE_CHUNK, ScoringJob, score_contacts, scoring_workers
from leadpulse.core.store.store import ACTIVITY_SCAN, CONTACT_SCAN, ActivitiesRead, Store

REPO = Path(__file__).resolve().parent.parent
TENANT_FILE = REPO / "config" / "demo-file.yaml"
PAGE = 1000


def generate(path: Path, count: int, tenant: TenantConfig) -> None:
    """Fill a store with `count` contacts and their activities, a page of contacts at a time."""
    with Store.open(path) as store:
        contacts, activities = [], []
        for contact, acts, _ in records(count):
            contacts.append(parse_contact(contact, tenant.fields, EXPORT_AT))
            activities += [parse_activity(activity, {}, EXPORT_AT) for activity in acts]
            if len(contacts) == PAGE:
                store.apply_page(Page("contacts", None, contacts=contacts, activities=activities))
                contacts, activities = [], []
        store.apply_page(Page("contacts", None, contacts=contacts, activities=activities))


def previous_rules(current: ScoringConfig) -> ScoringConfig:
    """The rules before the change the benchmark rescores for: pricing views and clicks were worth less, replies
    counted for 30 days, not 60. Most contacts' scores move, so most are written again."""
    changes = {"pricing-page": {"points": 2}, "email-click": {"half_life_days": 7}, "replied": {"within_days": 30}}
    rules = tuple(rule.model_copy(update=changes.get(rule.id or "", {})) for rule in current.rules)
    return current.model_copy(update={"rules": rules})


def score_with(path: Path, tenant: TenantConfig, scoring: ScoringConfig, run_id: int) -> tuple[float, int, int]:
    """Score every contact in the store with `scoring`: seconds, contacts scored, contacts whose CRM values changed."""
    with Store.open(path) as store:
        started = time.perf_counter()
        counts = score_contacts(store, tenant, Engine(scoring), run_id=run_id, as_of=EXPORT_AT, full=True,
                                workers=scoring_workers())
        return time.perf_counter() - started, counts.scored, counts.changed


def in_child(target, *args) -> None:
    child = multiprocessing.get_context("fork").Process(target=target, args=args)
    child.start()
    child.join()
    if child.exitcode != 0:
        sys.exit(f"{target.__name__} failed in a child process (exit code {child.exitcode})")


def scan(path: Path, read: ActivitiesRead | None = None) -> tuple[float, int]:
    """Seconds to iterate every contact and activity row in the store (with `read`, only the activity rows it
    names) with the columns the rescore reads, and how many rows there were."""
    clause, params = read.clause() if read is not None else ("1", [])
    started = time.perf_counter()
    rows = 0
    with contextlib.closing(sqlite3.connect(path)) as db:  # closed, so the next run can replace the file
        for _ in db.execute(f"{CONTACT_SCAN} ORDER BY id"):
            rows += 1
        for _ in db.execute(f"{ACTIVITY_SCAN} WHERE {clause} ORDER BY contact_id, id", params):
            rows += 1
    return time.perf_counter() - started, rows


class _Recorder:
    """A connection that records each statement made through it (and its parameters) before making it."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.statements: list[tuple[str, Any, bool]] = []

    def execute(self, sql: str, parameters: Any = ()) -> sqlite3.Cursor:
        self.statements.append((sql, parameters, False))
        return self.conn.execute(sql, parameters)

    def executemany(self, sql: str, rows: Any) -> sqlite3.Cursor:
        rows = list(rows)
        self.statements.append((sql, rows, True))
        return self.conn.executemany(sql, rows)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.conn, name)


def sqlite_floor(prior: Path, tenant: TenantConfig, folder: Path) -> tuple[float, float]:
    """Seconds SQLite alone takes to make the rescore's reads, then its writes, on copies of the store at `prior`."""
    recorded, replayed = folder / "recorded.sqlite", folder / "replayed.sqlite"
    shutil.copy(prior, recorded)
    shutil.copy(prior, replayed)
    with Store.open(recorded) as store:
        recorder = _Recorder(store.db.conn)
        store.db.conn = recorder  # type: ignore[assignment]
        score_contacts(store, tenant, Engine(tenant.scoring), run_id=3, as_of=EXPORT_AT, full=True, workers=1)
    os.sync()
    db = sqlite3.connect(replayed, isolation_level=None)
    for pragma in ("journal_mode = WAL", "synchronous = NORMAL", "temp_store = MEMORY"):  # as the store opens it
        db.execute(f"PRAGMA {pragma}")
    reads = [(sql, parameters) for sql, parameters, _ in recorder.statements
             if sql.lstrip().upper().startswith("SELECT")]
    started = time.perf_counter()
    for sql, parameters in reads:
        for _ in db.execute(sql, parameters):
            pass
    reading = time.perf_counter() - started
    started = time.perf_counter()
    for sql, parameters, many in recorder.statements:
        verb = sql.lstrip().split(None, 1)[0].upper()
        if verb == "SELECT":
            continue
        if verb == "BEGIN" and db.in_transaction:  # the store commits each transaction it began
            db.execute("COMMIT")
        if many:
            db.executemany(sql, parameters)
        else:
            db.execute(sql, parameters)
    if db.in_transaction:
        db.execute("COMMIT")
    writing = time.perf_counter() - started
    db.close()
    return reading, writing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--contacts", type=int, default=10_000, help="contacts to generate (default 10000)")
    parser.add_argument("--keep", type=Path, help="build the store at this path and keep it")
    parser.add_argument("--first", action="store_true",
                        help="time a first scoring instead of a rescore after a rule change")
    parser.add_argument("--floor", action="store_true",
                        help="then replay the rescore's SQL statements alone (see above)")
    parser.add_argument("--runs", type=int, default=3,
                        help="time the scan and the rescore this many times, the rescore each time on a copy of "
                             "the same store, and take the best of each (default 3)")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs: at least 1")
    tenant = load_tenant(TENANT_FILE)
    with tempfile.TemporaryDirectory(prefix="leadpulse-bench-") as folder:
        path = args.keep or Path(folder) / "bench.sqlite"
        started = time.perf_counter()
        in_child(generate, path, args.contacts, tenant)
        with contextlib.closing(sqlite3.connect(path)) as db:
            activities = db.execute("SELECT count(*) FROM activities").fetchone()[0]
        took = time.perf_counter() - started
        print(f"contacts: {args.contacts}, activities: {activities} (generated in {took:.1f}s)")
        if not args.first:
            in_child(score_with, path, tenant, previous_rules(tenant.scoring), 1)
        prior = Path(folder) / "prior.sqlite"  # the store as each timed rescore finds it
        shutil.copy(path, prior)
        read = ScoringJob(tenant, Engine(tenant.scoring), None, EXPORT_AT, True, SCORE_CHUNK).activities_read
        scans, scans_read, rescores = [], [], []
        children_before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        for run in range(args.runs):
            if run:
                for suffix in ("-wal", "-shm"):
                    Path(f"{path}{suffix}").unlink(missing_ok=True)
                shutil.copy(prior, path)
            os.sync()  # what was written before reaches the disk now, not during the timed runs
            scans.append(scan(path))
            scans_read.append(scan(path, read))
            rescores.append(score_with(path, tenant, tenant.scoring, 2))
        children_after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        scan_seconds, rows = min(scans)
        read_seconds, read_rows = min(scans_read)
        rescore_seconds, scored, changed = min(rescores)
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        what = "first scoring (every score new)" if args.first else "full rescore after a rule change"
        which = "the activities of the kinds the rules read" if read is not None else "every row: a rule reads all"
        print(f"plain scan: {scan_seconds:.2f}s for {rows} rows; {read_seconds:.2f}s for the {read_rows} of them "
              f"the rescore reads ({which})")
        print(f"timed: {what}; {changed} of {scored} contacts with changed CRM values queued")
        each = ", ".join(f"{seconds:.2f}" for seconds, _, _ in rescores)
        print(f"rescore: {rescore_seconds:.2f}s for {scored} contacts, {scored / rescore_seconds:,.0f} contacts/s "
              f"(the best of {args.runs}: {each})")
        print(f"peak RSS: {peak_mb:.0f} MB", end="")
        if children_after > children_before:  # else no worker outgrew the generating child
            print(f"; largest scoring worker {children_after / 1024:.0f} MB", end="")
        print(f" ({scoring_workers()} scoring workers)")
        print(f"rescore over the scan of the rows it reads: {rescore_seconds / read_seconds:.2f}")
        print(f"rescore/scan ratio: {rescore_seconds / scan_seconds:.2f}")
        if args.floor:
            reading, writing = sqlite_floor(prior, tenant, Path(folder))
            least = max(writing, (reading + writing) / 2)
            print(f"sqlite alone: reads {reading:.2f}s, writes {writing:.2f}s; at best {least:.2f}s on two cores")
            print(f"sqlite floor: {least / scan_seconds:.2f} scans")


if __name__ == "__main__":
    main()
