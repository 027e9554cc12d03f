"""Benchmark column-wise scoring at many moments, and whole score cards at one, against the per-contact engine.

    python bench/columnar.py --contacts 100000

Generates N synthetic contacts with about ten activities each (bench/synthetic.py, as bench/score.py does), parsed
as the file connector parses them and held as the store holds activity rows (ISO text times, JSON text
attributes), and scores them with the demo tenant's rules (config/demo-file.yaml). It times:

- building one batch (`ColumnEngine.batch`): every row matched against every rule, once;
- scoring that batch column-wise at each of --moments moments, a month apart, ending at the export's moment;
- the score cards of the last moment built from its columns (`Scores.cards`);
- the per-contact engine (`Engine.score_rows`) over the same contacts at the last moment;

checks that both give equal cards for every contact at that moment (`valid_until` and every contribution's
explanation included), and prints the figures, the peak RSS, ``cards/engine ratio: X``, one batch, one moment
and its cards over the engine's one moment (what a rescore would spend), and last ``columnar/engine ratio: X``,
the batch and all the moments column-wise over the engine's one moment.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from collections import defaultdict
from datetime import timedelta
from pathlib import Path

import orjson
from synthetic import EXPORT_AT, records

from leadpulse.connectors.file import parse_activity, parse_contact
from leadpulse.core.config.files import load_tenant
from leadpulse.core.engine.columnar import ColumnEngine
from leadpulse.core.engine.scoring import ActivityRow, Engine
from leadpulse.core.model import Contact, utc

REPO = Path(__file__).resolve().parent.parent
TENANT_FILE = REPO / "config" / "demo-file.yaml"


def generate(count: int, fields: dict[str, str]) -> tuple[list[Contact], dict[str, list[ActivityRow]]]:
    """`count` contacts and their activity rows, as a rescore reads them from the store."""
    contacts: list[Contact] = []
    rows: dict[str, list[ActivityRow]] = defaultdict(list)
    for record, acts, _ in records(count):
        contacts.append(parse_contact(record, fields, EXPORT_AT))
        for act in acts:
            a = parse_activity(act, {}, EXPORT_AT)
            rows[a.contact_id].append((a.contact_id, a.id, a.kind.value, utc(a.occurred_at).isoformat(
                timespec="milliseconds"), a.vendor_type, orjson.dumps(dict(a.attributes)).decode()))
    return contacts, dict(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--contacts", type=int, default=10_000, help="contacts to generate (default 10000)")
    parser.add_argument("--moments", type=int, default=12, help="moments to score column-wise (default 12)")
    args = parser.parse_args()
    scoring = load_tenant(TENANT_FILE).scoring
    started = time.perf_counter()
    contacts, rows = generate(args.contacts, load_tenant(TENANT_FILE).fields)
    print(f"contacts: {len(contacts)}, activities: {sum(map(len, rows.values()))} "
          f"(generated in {time.perf_counter() - started:.1f}s)")

    columns = ColumnEngine(scoring)
    started = time.perf_counter()
    batch = columns.batch(contacts, rows)
    batch_seconds = time.perf_counter() - started
    moments = [EXPORT_AT - timedelta(days=30 * k) for k in reversed(range(args.moments))]
    started = time.perf_counter()
    for moment in moments:
        scores = columns.score(batch, moment)
    moment_seconds = (time.perf_counter() - started) / len(moments)
    started = time.perf_counter()
    built = scores.cards()
    cards_seconds = time.perf_counter() - started

    engine = Engine(scoring)
    started = time.perf_counter()
    cards = [engine.score_rows(contact, rows.get(contact.id, ()), EXPORT_AT) for contact in contacts]
    engine_seconds = time.perf_counter() - started

    differing = [i for i, card in enumerate(cards) if card != built[i]]
    columnar_seconds = batch_seconds + moment_seconds * len(moments)
    rescore_seconds = batch_seconds + moment_seconds + cards_seconds
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"batch: {batch_seconds:.2f}s ({len(contacts) / batch_seconds:,.0f} contacts/s)")
    print(f"column-wise: {moment_seconds:.3f}s a moment ({len(contacts) / moment_seconds:,.0f} contacts/s), "
          f"{len(moments)} moments")
    print(f"cards: {cards_seconds:.3f}s for one moment ({len(contacts) / cards_seconds:,.0f} contacts/s)")
    print(f"per-contact engine: {engine_seconds:.2f}s for one moment ({len(contacts) / engine_seconds:,.0f} "
          "contacts/s)")
    print(f"equal cards at {EXPORT_AT.date()}: {len(contacts) - len(differing)} of {len(contacts)} contacts "
          f"({sum(card.valid_until is not None for card in cards)} with a valid_until)")
    print(f"peak RSS: {peak_mb:.0f} MB")
    print(f"cards/engine ratio: {rescore_seconds / engine_seconds:.2f} (batch + 1 moment + its cards over the "
          "engine's one)")
    print(f"columnar/engine ratio: {columnar_seconds / engine_seconds:.2f} "
          f"(batch + {len(moments)} moments over the engine's one)")
    if differing:
        i = differing[0]
        sys.exit(f"contact {contacts[i].id} differs:\n  engine   {cards[i]}\n  columnar {built[i]}")

if __name__ == "__main__":
    main()
