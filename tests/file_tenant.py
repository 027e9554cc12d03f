"""A small file-connector tenant written into a test's folder: the real config, engine and connector, no network."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime
from pathlib import Path

from leadpulse.core.config.files import load_tenant
from leadpulse.core.config.tenant import TenantConfig

NOW = datetime(2025, 6, 2, tzinfo=UTC)

TENANT_YAML = """\
tenant: {name}
crm:
  kind: file
  connection:
    contacts: contacts.csv
    activities: activities.jsonl
    results: out/results.csv
fields:
  title: job_title
scoring:
  rules:
    - id: senior
      when: {{field: title, regex: "\\\\bvp\\\\b"}}
      points: 4
    - id: pricing
      label: viewed pricing
      activity: page_view
      where: {{field: url, contains: /pricing}}
      points: {pricing_points}
  bands:
    - {{name: cold}}
    - {{name: warm, min: 5}}
    - {{name: hot, min: 10}}
  quadrant: {{fit: 4, engagement: 6}}
  lifecycle:
    values: {{lead: lead, mql: mql}}
    transitions:
      - {{to: lead, min_total: 0}}
      - {{to: mql, min_band: hot}}
writeback:
  properties: {{score: lp_score, band: lp_band}}
  status_property: lifecycle
  write_status: true
tasks:
  enabled: true
  on_bands: [hot]
  subject: "Call {{name}}: {{score}}"
"""


def contact(cid: str, title: str = "Engineer", status: str = "") -> dict:
    return {"id": cid, "email": f"{cid}@example.com", "name": f"Person {cid}", "owner_id": "o1", "status": status,
            "updated_at": "2025-05-01T00:00:00Z", "job_title": title}


def page_view(aid: str, cid: str, url: str = "/pricing", when: str = "2025-05-30T10:00:00Z") -> dict:
    return {"id": aid, "contact_id": cid, "kind": "page_view", "occurred_at": when, "url": url}


def write_exports(folder: Path, contacts: list[dict], activities: list[dict]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "contacts.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(dict.fromkeys([*contact("x"), *(k for c in contacts for k in c)])))
        writer.writeheader()
        writer.writerows(contacts)
    with open(folder / "activities.jsonl", "w") as handle:
        handle.writelines(json.dumps(activity) + "\n" for activity in activities)


def file_tenant(folder: Path, contacts: list[dict], activities: list[dict], *, name: str = "acme",
                pricing_points: float = 3) -> TenantConfig:
    """Write the exports and the tenant file into `folder` and load it."""
    write_exports(folder, contacts, activities)
    path = folder / f"{name}.yaml"
    path.write_text(TENANT_YAML.format(name=name, pricing_points=pricing_points))
    return load_tenant(path)


def results(folder: Path) -> dict[str, dict[str, str]]:
    path = folder / "out" / "results.csv"
    if not path.exists():
        return {}
    with open(path, newline="") as handle:
        return {row["contact_id"]: row for row in csv.DictReader(handle)}


def tasks(folder: Path) -> list[dict[str, str]]:
    path = folder / "out" / "results-tasks.csv"
    if not path.exists():
        return []
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))
