"""Write the sample export the demo tenant (config/demo-file.yaml) scores: run once, the output is committed.

    python bench/make_sample.py            # -> config/sample/contacts.csv, activities.jsonl, outcomes.csv
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

from synthetic import records

SAMPLE = Path(__file__).resolve().parent.parent / "config" / "sample"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--contacts", type=int, default=400)
    parser.add_argument("--out", type=Path, default=SAMPLE)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    people = list(records(args.contacts))
    _write_csv(args.out / "contacts.csv", [contact for contact, _, _ in people])
    _write_csv(args.out / "outcomes.csv", [outcome for _, _, outcome in people])
    with open(args.out / "activities.jsonl", "w", encoding="utf-8") as handle:
        for _, activities, _ in people:
            handle.writelines(json.dumps(activity) + "\n" for activity in activities)
    print(f"{len(people)} contacts, {sum(len(a) for _, a, _ in people)} activities in {args.out}")


def _write_csv(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


if __name__ == "__main__":
    main()
