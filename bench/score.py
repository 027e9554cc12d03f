"""Benchmark a full rescore against a plain scan of the same rows.

    python bench/score.py --contacts 100000

Generates N synthetic contacts with about ten activities each into a temporary store (in a child process, so
the figures below are the rescore's own), then times:

- a plain scan: every contact and activity row the rescore reads, iterated through Python's sqlite3 and dropped;
- a full rescore with the demo tenant's rules (config/demo-file.yaml): read, score, save scores and history,
  queue the writes and tasks, exactly what ``leadpulse score`` does.

It prints contacts per second, the peak RSS of this process, and last ``rescore/scan ratio: X``.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this folder comes first on the path, where bench/sandbox.py would hide the sandbox package.
sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse
import multiprocessing
import resource
import sqlite3
import tempfile
import time


from bench.synthetic import EXPORT_AT, records
from connectors.base import Page
from connectors.file import parse_activity, parse_contact
from core.config import TenantConfig, load_tenant
from core.pipeline import score_contacts
from core.scoring import Engine
from core.store import Store

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


def scan(path: Path) -> tuple[float, int]:
    """Seconds to iterate every contact and activity row the rescore reads, and how many rows there were."""
    started = time.perf_counter()
    rows = 0
    with sqlite3.connect(path) as db:
        for _ in db.execute(
            "SELECT id, kind, updated_at, email, name, owner_id, status, opted_out, fields, raw FROM contacts ORDER BY id"
        ):
            rows += 1
        for _ in db.execute(
            "SELECT contact_id, id, kind, occurred_at, vendor_type, attributes FROM activities ORDER BY contact_id, id"
        ):
            rows += 1
    return time.perf_counter() - started, rows


def rescore(path: Path, tenant: TenantConfig) -> tuple[float, int]:
    with Store.open(path) as store:
        started = time.perf_counter()
        counts = score_contacts(store, tenant, Engine(tenant.scoring), run_id=1, as_of=EXPORT_AT, full=True)
        return time.perf_counter() - started, counts.scored


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--contacts", type=int, default=10_000, help="contacts to generate (default 10000)")
    parser.add_argument("--keep", type=Path, help="build the store at this path and keep it")
    args = parser.parse_args()
    tenant = load_tenant(TENANT_FILE)
    with tempfile.TemporaryDirectory(prefix="leadpulse-bench-") as folder:
        path = args.keep or Path(folder) / "bench.sqlite"
        started = time.perf_counter()
        child = multiprocessing.get_context("fork").Process(target=generate, args=(path, args.contacts, tenant))
        child.start()
        child.join()
        if child.exitcode != 0:
            sys.exit(f"generating the store failed (exit code {child.exitcode})")
        with sqlite3.connect(path) as db:
            activities = db.execute("SELECT count(*) FROM activities").fetchone()[0]
        print(f"contacts: {args.contacts}, activities: {activities} (generated in {time.perf_counter() - started:.1f}s)")
        scan_seconds, rows = scan(path)
        rescore_seconds, scored = rescore(path, tenant)
        scan_seconds = min(scan_seconds, scan(path)[0])
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"plain scan: {scan_seconds:.2f}s for {rows} rows")
        print(f"rescore: {rescore_seconds:.2f}s for {scored} contacts, {scored / rescore_seconds:,.0f} contacts/s")
        print(f"peak RSS: {peak_mb:.0f} MB")
        print(f"rescore/scan ratio: {rescore_seconds / scan_seconds:.2f}")


if __name__ == "__main__":
    main()
