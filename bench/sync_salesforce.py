"""A full Salesforce sync of a large org, its calls against the floor Salesforce's APIs allow, then two runs after it.

    .venv/bin/python bench/sync_salesforce.py --leads 100000 --activities-per-lead 10

A helper process serves the Salesforce sandbox (HTTPS, the org's 24-hour API allowance on) with the custom fields
the demo tenant writes already made, as an admin makes them in Setup: the sandbox imitates no API that creates
fields (Salesforce's own is the Metadata API), so the helper adds them through the sandbox's Python API before it
prints its address. --leads is the number of people in the org; the sandbox makes about 60% of them Leads and the
rest Contacts. The sync runs here: the demo tenant file config/demo/salesforce-sandbox.yaml pointed at the sandbox.

Three runs are measured by the sandbox's own count of calls (``/_sandbox/stats``, before and after each run):

1. the full sync, against its floor: the fewest calls that pull each object, write the scores and create the tasks.
   An object of more than bulk_pull_above rows is one Bulk API 2.0 query job (create, the status reads, one result
   page per BULK_MAX_RECORDS rows), a smaller one its REST query pages of 2,000 rows (at least one); more than
   bulk_write_above writes to an object are one Bulk API 2.0 ingest job, fewer go 200 a Collections call; tasks go
   200 a Collections call; and the fixed calls every run makes (FIXED_CALLS, a describe per person object). Object
   sizes come from COUNT() queries made before the run, the writes per object from COUNT() queries on the score
   field after it: neither is counted in the run's calls. The floor follows the thresholds, not the path the
   connector took, so the ratio shows any gap between the two.
2. the echo run right after: it re-reads what the first run's write-back touched (the Leads it wrote, the Tasks it
   created), and should write nothing.
3. a quiet run with nothing changed: at most one call per object pulled, besides the login, and no writes.

Tasks are upserted by a Task External ID field (Leadpulse_Key__c, which the helper makes), as a large org should
run: an upsert cannot make a second task, so no look-up comes before creating. --subject-tokens runs the tenant file
as shipped instead: the key ends each task's subject, and each batch of 200 tasks is first looked up by one query of
200 ``Subject LIKE '%[token]'`` terms, one call more per batch than the floor.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from leadpulse.connectors.settings import SalesforceSettings
from leadpulse.core.cli.demo import SHIPPED_CONFIG, tenant_data
from leadpulse.core.config.files import validate_tenant
from leadpulse.core.config.tenant import Output, TenantConfig
from leadpulse.core.runtime.pipeline import sync_tenant
from leadpulse.core.runtime.run import RunSummary
from leadpulse.sandbox import Sandbox

TENANT_FILE = SHIPPED_CONFIG / "demo" / "salesforce-sandbox.yaml"
#: rows a REST query page holds (Salesforce's default batch, and the sandbox's)
QUERY_PAGE = 2000
#: records an sObject Collections call takes
COLLECTION = 200
#: Assumption: the rows a Bulk API 2.0 result page holds, the maxRecords the connector asks for (its QUERY_PAGE, and
#: simple-salesforce's bulk2 default, when this was written); asked for none, the sandbox pages 100,000 rows.
BULK_MAX_RECORDS = 50_000
#: the sandbox answers InProgress to a job's first status read and its end state to the second, so a job cannot be
#: seen finished in fewer
JOB_STATUS_READS = 2
#: an ingest job: create, upload, close, the status reads, successful results, failed results
INGEST_JOB_CALLS = 3 + JOB_STATUS_READS + 2
#: the calls every run makes besides its reads and writes (a describe of each person object comes on top)
FIXED_CALLS = ("login", "/limits", "recordCount", "User query")
#: how the connector reads each object it pulls besides the people: endpoint, and the condition on every row
ACTIVITY_READS = {"Task": ("queryAll", "IsDeleted = false"), "Event": ("queryAll", "IsDeleted = false"),
                  "CampaignMember": ("query", "")}
#: the answers that say the org's allowance is spent (REQUEST_LIMIT_EXCEEDED is a 403) or a rate limit hit
LIMIT_STATUSES = ("403", "429")


# -- the org: a sandbox in a helper process ---------------------------------------------------------------------

def serve_org(args: argparse.Namespace) -> None:
    """The helper process: the sandbox with the custom fields made, its address, credentials and CA on stdout,
    served until stdin closes; then its peak RSS and CPU time."""
    sb = Sandbox.start("salesforce", args.leads, args.seed, tier=args.edition, rate_limits=True,
                       activities_per_contact=args.activities_per_lead)
    for spec in args.field:
        sobject, name, kind, *external = spec.split(":")
        sb.vendor.add_custom_field(sobject, name, kind, external_id=bool(external))
    print(f"base_url: {sb.base_url}\ncredentials: {json.dumps(sb.credentials)}\nca_cert: {sb.ca_cert_path}",
          flush=True)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C reaches the bench, which closes our stdin
    sys.stdin.read()
    sb.stop()
    print(f"costs: {json.dumps(process_costs())}", flush=True)


def process_costs() -> dict[str, float]:
    """This process's peak RSS (MB) and CPU time (seconds) so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {"peak_rss_mb": usage.ru_maxrss / 1024, "cpu_seconds": usage.ru_utime + usage.ru_stime}


@dataclass(frozen=True)
class Org:
    """The sandbox org the helper serves, and the calls the bench makes outside the measured runs."""

    process: subprocess.Popen[str]
    base_url: str
    credentials: dict[str, Any]
    ca_cert: str
    api_version: str

    @classmethod
    def start(cls, args: argparse.Namespace, fields: Sequence[str], api_version: str) -> Org:
        command = [sys.executable, __file__, "--serve-org", "--leads", str(args.leads), "--seed", str(args.seed),
                   "--edition", args.edition, "--activities-per-lead", str(args.activities_per_lead),
                   *(f"--field={spec}" for spec in fields)]
        process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert process.stdout is not None
        lines = dict(process.stdout.readline().rstrip("\n").split(": ", 1) for _ in range(3))
        return cls(process, lines["base_url"], json.loads(lines["credentials"]), lines["ca_cert"], api_version)

    def stop(self) -> dict[str, float]:
        """Ends the helper; its costs (`process_costs`), when it said them."""
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.close()
        said = self.process.stdout.read()
        self.process.wait(timeout=60)
        costs = [json.loads(line.split(": ", 1)[1]) for line in said.splitlines() if line.startswith("costs: ")]
        return costs[0] if costs else {}

    def _get(self, path: str, token: bool = True) -> Any:
        headers = {"Authorization": f"Bearer {self.credentials['access_token']}"} if token else {}
        request = urllib.request.Request(f"{self.base_url}{path}", headers=headers)
        context = ssl.create_default_context(cafile=self.ca_cert)
        with urllib.request.urlopen(request, context=context, timeout=600) as answer:
            return json.load(answer)

    def stats(self) -> dict[str, Any]:
        return self._get("/_sandbox/stats", token=False)

    def count(self, sobject: str, endpoint: str = "query", where: str = "") -> int:
        soql = f"SELECT COUNT() FROM {sobject}" + (f" WHERE {where}" if where else "")
        answer = self._get(f"/services/data/v{self.api_version}/{endpoint}?" + urllib.parse.urlencode({"q": soql}))
        return int(answer["totalSize"])

    def daily_requests(self) -> tuple[int, int]:
        """The org's DailyApiRequests (Max, Remaining) from ``/limits``, this call included."""
        figures = self._get(f"/services/data/v{self.api_version}/limits")["DailyApiRequests"]
        return int(figures["Max"]), int(figures["Remaining"])


# -- the tenant -------------------------------------------------------------------------------------------------

def asked_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The connection settings asked for on the command line (the tenant file's own stand for the others)."""
    asked = {"bulk_pull_above": args.bulk_pull_above, "bulk_write_above": args.bulk_write_above,
             "task_external_id": args.task_external_id}
    return {key: value for key, value in asked.items() if value is not None}


def salesforce(tenant: TenantConfig) -> SalesforceSettings:
    settings = tenant.crm.connection
    assert isinstance(settings, SalesforceSettings), f"{tenant.name}: not a Salesforce tenant"
    return settings


def custom_fields(args: argparse.Namespace) -> list[str]:
    """The fields the demo tenant writes, on each person object, and the Task External ID asked for, as
    ``Object:Field:type[:external]`` for the helper."""
    data = tenant_data(TENANT_FILE)
    objects = args.objects or data["crm"]["connection"]["objects"]
    specs = validate_tenant(data, TENANT_FILE).property_specs()
    task_key = [f"Task:{args.task_external_id}:string:external"] if args.task_external_id else []
    return [f"{sobject}:{spec.name}:{'double' if spec.type == 'number' else 'string'}"
            for sobject in objects for spec in specs] + task_key


def org_tenant(org: Org, args: argparse.Namespace) -> tuple[TenantConfig, dict[str, str]]:
    """The demo tenant pointed at the org, and the environment its secrets resolve from."""
    credentials = org.credentials
    connection: dict[str, Any] = {"instance_url": org.base_url, "client_id": credentials["client_id"],
                                  "username": credentials["username"], "ca_bundle": org.ca_cert,
                                  **asked_settings(args)}
    if args.objects:
        connection["objects"] = args.objects
    data = tenant_data(TENANT_FILE, **connection)
    environ = {ref["env"]: credentials[name] for name, ref in data["crm"]["secrets"].items()}
    return validate_tenant(data, TENANT_FILE), {**os.environ, **environ}


def people_objects(tenant: TenantConfig) -> list[str]:
    return [people.value for people in salesforce(tenant).objects]


# -- the floor --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Part:
    """Calls the floor counts for one thing a run must do."""

    kind: str
    calls: int
    what: str


def read_part(sobject: str, rows: int, pull_above: int) -> Part:
    if rows > pull_above:
        pages = math.ceil(rows / BULK_MAX_RECORDS)
        return Part("reads", 1 + JOB_STATUS_READS + pages,
                    f"{sobject} {rows:,} rows: bulk query job (create, {JOB_STATUS_READS} status reads, {pages} result "
                    f"page{'s' if pages > 1 else ''})")
    pages = max(1, math.ceil(rows / QUERY_PAGE))
    return Part("reads", pages, f"{sobject} {rows:,} rows: {pages} query page{'s' if pages > 1 else ''}")


def write_part(sobject: str, records: int, write_above: int) -> Part:
    if records > write_above:
        return Part("writes", INGEST_JOB_CALLS, f"{sobject} {records:,}: one ingest job")
    batches = math.ceil(records / COLLECTION)
    return Part("writes", batches, f"{sobject} {records:,}: {batches} batches of {COLLECTION}")


def floor_parts(tenant: TenantConfig, rows: dict[str, int], writes: dict[str, int], tasks: int) -> list[Part]:
    settings = salesforce(tenant)
    people = people_objects(tenant)
    fixed = [*FIXED_CALLS[:3], *(f"describe {sobject}" for sobject in people), *FIXED_CALLS[3:]]
    return [Part("fixed", len(fixed), ", ".join(fixed)),
            *(read_part(sobject, n, settings.bulk_pull_above) for sobject, n in rows.items()),
            *(write_part(sobject, n, settings.bulk_write_above) for sobject, n in writes.items()),
            Part("tasks", math.ceil(tasks / COLLECTION), f"{tasks:,} in batches of {COLLECTION}")]


def spelled(parts: Sequence[Part]) -> str:
    """The floor's parts grouped by kind: ``fixed 5: login, ...; reads 12: Lead ...; Task ...``."""
    kinds = list(dict.fromkeys(part.kind for part in parts))
    return "; ".join(f"{kind} {sum(p.calls for p in parts if p.kind == kind)}: "
                     + ", ".join(p.what for p in parts if p.kind == kind) for kind in kinds)


def pull_sizes(org: Org, tenant: TenantConfig) -> dict[str, int]:
    """Rows of each object the first run pulls, read as the connector reads them (people with their deleted)."""
    sizes = {sobject: org.count(sobject, "queryAll") for sobject in people_objects(tenant)}
    return {**sizes, **{sobject: org.count(sobject, endpoint, where)
                        for sobject, (endpoint, where) in ACTIVITY_READS.items()}}


def written_sizes(org: Org, tenant: TenantConfig) -> dict[str, int]:
    """Records of each person object that hold a score the write-back wrote."""
    score = tenant.writeback.properties[Output.SCORE]
    return {sobject: org.count(sobject, "query", f"{score} != null") for sobject in people_objects(tenant)}


# -- the runs ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Measured:
    """One sync and the calls the sandbox answered while it ran, by endpoint and by status."""

    summary: RunSummary
    seconds: float
    calls: Counter[str]
    statuses: Counter[str]

    @property
    def total(self) -> int:
        return sum(self.calls.values())

    @property
    def limit_errors(self) -> int:
        return sum(self.statuses[status] for status in LIMIT_STATUSES)

    def endpoints(self) -> str:
        return ", ".join(f"{route} {n}" for route, n in self.calls.most_common())


def answered(stats: dict[str, Any]) -> Counter[tuple[str, str]]:
    return Counter({(route, status): n for route, by in stats["routes"].items() for status, n in by.items()})


def measure(org: Org, tenant: TenantConfig, state_dir: Path, environ: dict[str, str]) -> Measured:
    before = answered(org.stats())
    started = time.perf_counter()
    summary = sync_tenant(tenant, state_dir=state_dir, environ=environ)
    seconds = time.perf_counter() - started
    during = answered(org.stats()) - before
    calls, statuses = Counter[str](), Counter[str]()
    for (route, status), n in during.items():
        calls[route] += n
        statuses[status] += n
    return Measured(summary, seconds, calls, statuses)


def outcome(summary: RunSummary) -> str:
    said = f"run: {summary.outcome.value}{': ' + summary.error if summary.error else ''}"
    return (f"{said}; pulled {summary.pulled:,}, scored {summary.scored:,}, written {summary.written:,}, "
            f"tasks {summary.tasks:,}, refused {summary.refused:,}")


def report_full(full: Measured, parts: list[Part], allowance: tuple[int, int]) -> None:
    floor = sum(part.calls for part in parts)
    used, most = allowance
    print(outcome(full.summary))
    print(f"API calls: {full.total:,}; floor: {floor:,} ({spelled(parts)})")
    print(f"  by endpoint: {full.endpoints()} (client counted {full.summary.api_calls:,})")
    print(f"calls/floor: {full.total / floor:.3f}")
    print(f"share of daily allowance used: {100 * used / most:.2f}% ({used:,} of the org's {most:,} DailyApiRequests, "
          "from /limits)")
    print(f"limit errors: {full.limit_errors}")


def report_after(echo: Measured, quiet: Measured, pulled_objects: int) -> None:
    print(outcome(echo.summary))
    print(f"echo run calls: {echo.total:,} ({echo.endpoints()}); re-read {echo.summary.pulled:,} records")
    print(outcome(quiet.summary))
    print(f"quiet run calls: {quiet.total:,} ({quiet.endpoints()}); objects pulled: {pulled_objects}; "
          f"limit errors after the full run: {echo.limit_errors + quiet.limit_errors}")


def report_costs(runs: dict[str, Measured], org: dict[str, float]) -> None:
    print("wall: " + ", ".join(f"{name} {run.seconds:.1f} s" for name, run in runs.items()))
    print("full run steps: " + ", ".join(f"{name} {sec:.1f} s" for name, sec in runs["full"].summary.steps.items()))
    bench = process_costs()
    print(f"peak RSS: {bench['peak_rss_mb']:.0f} MB (this process, the sync); sandbox process: "
          + (f"{org['peak_rss_mb']:.0f} MB" if org else "unknown"))
    print(f"CPU: {bench['cpu_seconds']:.1f} s this process, "
          + (f"{org['cpu_seconds']:.1f} s the sandbox process" if org else "the sandbox process's unknown")
          + " (the COUNT() queries included)")


def bench(args: argparse.Namespace, org: Org, state_dir: Path) -> dict[str, Measured]:
    tenant, environ = org_tenant(org, args)
    started = time.perf_counter()
    rows = pull_sizes(org, tenant)
    print(f"org: {args.leads:,} people, {' '.join(f'{s} {n:,}' for s, n in rows.items())} rows "
          f"(counted in {time.perf_counter() - started:.1f} s)", flush=True)
    _, remaining = org.daily_requests()
    full = measure(org, tenant, state_dir, environ)
    most, left = org.daily_requests()
    writes = written_sizes(org, tenant)
    report_full(full, floor_parts(tenant, rows, writes, full.summary.tasks), (remaining - left - 1, most))
    echo = measure(org, tenant, state_dir, environ)
    quiet = measure(org, tenant, state_dir, environ)
    report_after(echo, quiet, len(rows))
    return {"full": full, "echo": echo, "quiet": quiet}


def options() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--leads", type=int, default=100_000, help="people in the org (Leads and Contacts)")
    parser.add_argument("--activities-per-lead", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--edition", default="enterprise", help="the org's edition: sets its daily API allowance")
    parser.add_argument("--objects", nargs="+", choices=("Lead", "Contact"),
                        help="person objects the tenant scores (default: the tenant file's, Lead)")
    parser.add_argument("--bulk-pull-above", type=int, help="crm.connection.bulk_pull_above (default 50,000)")
    parser.add_argument("--bulk-write-above", type=int, help="crm.connection.bulk_write_above (default 10,000)")
    parser.add_argument("--task-external-id", metavar="FIELD", default="Leadpulse_Key__c",
                        help="crm.connection.task_external_id: a Task External ID field the helper makes; tasks are "
                             "upserted and looked up by it (default: %(default)s)")
    parser.add_argument("--subject-tokens", dest="task_external_id", action="store_const", const=None,
                        help="no Task External ID: tasks carry their key at the end of their subject, as the demo "
                             "tenant file ships, and each batch of 200 is looked up before it is created")
    parser.add_argument("--serve-org", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--field", action="append", default=[], help=argparse.SUPPRESS)
    return parser.parse_args()


def main() -> None:
    args = options()
    if args.serve_org:
        serve_org(args)
        return
    api_version = salesforce(validate_tenant(tenant_data(TENANT_FILE), TENANT_FILE)).api_version
    org = Org.start(args, custom_fields(args), api_version)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-sync-salesforce-") as folder:
            runs = bench(args, org, Path(folder))
    finally:
        org_costs = org.stop()
    report_costs(runs, org_costs)


if __name__ == "__main__":
    main()
