"""A full Pipedrive sync of a large company at its plan's rate limits, its calls against the floor API v2 allows, then
two runs after it.

    .venv/bin/python bench/sync_pipedrive.py --persons 20000 --activities-per-person 10

The sandbox serves the company in its own process (``python -m leadpulse.sandbox serve --crm pipedrive``) on the
plan the demo tenant file names (config/demo/pipedrive-sandbox.yaml: premium, one seat), its rate limits on: the
API-token burst window (100 calls per 2 s) and the daily token budget (30,000 x 5 x seats). --time-scale speeds the
sandbox's clock up, and the sync runs here on a `ScaledClock` of the same scale, so both see the same windows; wall
times are given in the CRM's time (real seconds x time scale). The sync is the demo tenant file pointed at the
sandbox, its API token in DEMO_PIPEDRIVE_TOKEN.

Before the runs the bench lists what the company holds (persons with their organizations, activities, won and lost
deals), 500 a page, pacing itself by the burst headers and then letting the window empty. Three runs follow, each
measured by the sandbox's own count of calls (``/_sandbox/stats`` before and after, by route and status):

1. the full sync, against its floor: each stream's list pages at the largest page size (500), the organizations of
   the persons at 100 ids a call (when the tenant reads organization fields), one each of the fixed reads (person
   fields, organization fields, activity types, users), one PATCH per person whose values the run changed (its
   ``written``) and one POST per task created. The floor counts what the data needs, not what the connector did:
   the gap is shown route by route. A person whose new values the run deferred (see below) is no write of its
   floor: the run says how many it deferred and why.
2. the echo run right after: it re-reads the persons its own write-back touched, and should write nothing.
3. a quiet run with nothing changed: one list call a stream and the fixed reads, no writes.

Tokens are each answered call's cost in the sandbox's budget (``pipedrive_budget.COSTS``; a call refused by a rate
limit costs none), checked against how far ``x-daily-ratelimit-token-remaining`` fell (read with ``/v1/users/me``
before and after each run, outside its count). The same answers give ``x-daily-requests-left``, the POST/PUT calls
(PATCH included) the API token has left of its UTC day: 10,000, which a full sync of more persons than that cannot
fit in; the connector then defers the writes it cannot afford to the next day's runs, and the echo run right after
sends those the day still affords. ``--json`` prints the figures as one JSON object instead.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import resource
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sync_salesforce import Measured, answered, outcome

from leadpulse.connectors.pipedrive import ORGANIZATION
from leadpulse.connectors.settings import PipedriveSettings
from leadpulse.core.cli.demo import SHIPPED_CONFIG, sandbox_tenant, secrets_environ, tenant_data
from leadpulse.core.clock import ScaledClock
from leadpulse.core.config.files import validate_tenant
from leadpulse.core.config.tenant import TenantConfig
from leadpulse.core.runtime.pipeline import sync_tenant
from leadpulse.core.runtime.run import RunSummary
from leadpulse.sandbox import pipedrive_budget as budget
from leadpulse.sandbox.limits import Window
from leadpulse.sandbox.pipedrive_wire import IDS_MAX, LIST_MAX

TENANT_FILE = SHIPPED_CONFIG / "demo" / "pipedrive-sandbox.yaml"


@dataclass(frozen=True)
class Stream:
    """One v2 list a sync reads: the sandbox's name for its route, its path, and what it lists."""

    route: str
    path: str
    params: Mapping[str, str] = field(default_factory=dict)


#: deals only won or lost: an open deal scores nothing
STREAMS = {"persons": Stream("persons.list", "/api/v2/persons"),
           "activities": Stream("activities.list", "/api/v2/activities"),
           "deals": Stream("deals.list", "/api/v2/deals", {"status": "won,lost"})}
ORGANIZATIONS_ROUTE = "organizations.list"
#: the reads a run makes whatever changed: the person fields, the organization fields (when the tenant reads
#: organization fields), the activity types (kinds for the activities), the users (owners of tasks)
FIXED_ROUTES = ("personFields.list", "organizationFields.list", "v1.activityTypes.list", "v1.users.list")
WRITE_ROUTE, TASK_ROUTE = "persons.update", "activities.create"
#: the cheapest call that answers with the budget headers (/v1/users/me), and its route
ME, ME_ROUTE = "users/me", "v1.users.me"
#: answers given before the budget counts a call (a refused token, the edge's block page) or by a rate limit: no cost
UNCHARGED = frozenset({"401", "403", "429"})
#: the bench's own listing waits out the burst window when fewer calls than this are left in it
PACE_MARGIN = 10


# -- the company: a sandbox in its own process ----------------------------------------------------------------

@dataclass(frozen=True)
class PlanLimits:
    """The company's burst window and daily token budget, as the sandbox's budget module sets them for its plan."""

    burst: Window
    daily: Window

    @classmethod
    def of(cls, settings: PipedriveSettings) -> PlanLimits:
        windows = {w.name: w for w in budget.windows(settings.plan.value, settings.seats, frozenset(), 0.0)}
        return cls(windows[budget.BURST], windows[budget.DAILY])

    def tokens(self, answers: Counter[tuple[str, str]]) -> int:
        """What these answers cost the daily budget."""
        return sum(n * self.daily.cost(route) for (route, status), n in answers.items() if status not in UNCHARGED)


@dataclass(frozen=True)
class Company:
    """The Pipedrive company the sandbox process serves, and the bench's own calls to it outside the measured runs."""

    process: subprocess.Popen[str]
    base_url: str
    credentials: dict[str, str]
    time_scale: float

    @classmethod
    def start(cls, args: argparse.Namespace, plan: str) -> Company:
        command = [sys.executable, "-m", "leadpulse.sandbox", "serve", "--crm", "pipedrive",
                   "--contacts", str(args.persons), "--activities-per-contact", str(args.activities_per_person),
                   "--seed", str(args.seed), "--tier", plan, "--time-scale", str(args.time_scale)]
        process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        assert process.stdout is not None
        said = dict(process.stdout.readline().rstrip("\n").split(": ", 1) for _ in range(2))
        return cls(process, said["base_url"], json.loads(said["credentials"]), args.time_scale)

    def stop(self) -> float | None:
        """Ends the sandbox process (as Ctrl-C does); its peak RSS in MB, when /proc shows it."""
        peak = peak_rss_mb(self.process.pid)
        self.process.send_signal(signal.SIGINT)
        self.process.wait(timeout=60)
        return peak

    def get(self, path: str, params: Mapping[str, Any] | None = None) -> tuple[Any, Mapping[str, str]]:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        request = urllib.request.Request(f"{self.base_url}{path}{query}",
                                         headers={"x-api-token": self.credentials["api_token"]})
        with urllib.request.urlopen(request, timeout=600) as answer:
            return json.load(answer), answer.headers

    def stats(self) -> dict[str, Any]:
        return self.get("/_sandbox/stats")[0]

    def day(self) -> DayLeft:
        """What the day leaves the company, as an answer's headers say (this call's own cost spent)."""
        headers = self.get(f"/v1/{ME}")[1]
        return DayLeft(int(headers["x-daily-ratelimit-token-remaining"]), int(headers["x-daily-requests-left"]))

    def listed(self, path: str, params: Mapping[str, str]) -> Iterator[dict[str, Any]]:
        """Every record of a v2 list, LIST_MAX a page, waiting out the burst window when it is nearly full."""
        cursor: str | None = None
        while True:
            body, headers = self.get(path, {**params, "limit": LIST_MAX, **({"cursor": cursor} if cursor else {})})
            yield from body["data"] or []
            if int(headers.get("x-ratelimit-remaining", PACE_MARGIN)) < PACE_MARGIN:
                time.sleep(float(headers["x-ratelimit-reset"]) / self.time_scale)
            cursor = (body.get("additional_data") or {}).get("next_cursor")
            if not cursor:
                return

    def wait_out(self, window: Window) -> None:
        """Let `window` empty of the bench's own calls, so the sync starts with all of it."""
        time.sleep(window.seconds / self.time_scale)


@dataclass(frozen=True)
class DayLeft:
    """The company's daily token budget left, and the POST/PUT calls its API token has left of the UTC day."""

    tokens: int
    writes: int


def peak_rss_mb(pid: int) -> float | None:
    """A live process's peak RSS (VmHWM) in MB; None where /proc does not say."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    found = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
    return int(found.group(1)) / 1024 if found else None


@dataclass(frozen=True)
class Holdings:
    """What the company holds of what a sync reads, listed before the runs."""

    persons: int
    activities: int
    deals: int
    #: distinct organizations of the persons listed
    organizations: int
    #: the list calls the count took, and its real seconds
    calls: int
    seconds: float


def count_holdings(company: Company) -> Holdings:
    before = company.stats()["total"]
    started = time.perf_counter()
    persons, organizations = 0, set()
    for person in company.listed(STREAMS["persons"].path, STREAMS["persons"].params):
        persons += 1
        if isinstance(person.get("org_id"), int):
            organizations.add(person["org_id"])
    activities, deals = (sum(1 for _ in company.listed(STREAMS[name].path, STREAMS[name].params))
                         for name in ("activities", "deals"))
    return Holdings(persons, activities, deals, len(organizations), company.stats()["total"] - before,
                    round(time.perf_counter() - started, 2))


# -- the tenant -------------------------------------------------------------------------------------------------

def pipedrive(tenant: TenantConfig) -> PipedriveSettings:
    settings = tenant.crm.connection
    assert isinstance(settings, PipedriveSettings), f"{tenant.name}: not a Pipedrive tenant"
    return settings


def reads_organizations(tenant: TenantConfig) -> bool:
    """Whether the tenant's ``fields:`` read the persons' organizations (``Organization``, ``Organization.<name>``)."""
    return any(name == ORGANIZATION.rstrip(".") or name.startswith(ORGANIZATION) for name in tenant.fields.values())


# -- the floor --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Floor:
    """The fewest calls a full sync of the company makes, by what they are for."""

    persons: int
    activities: int
    deals: int
    organizations: int
    fixed: tuple[str, ...]
    writes: int
    tasks: int

    @classmethod
    def of(cls, holdings: Holdings, tenant: TenantConfig, written: int, tasks: int) -> Floor:
        pages = {name: max(1, math.ceil(getattr(holdings, name) / LIST_MAX)) for name in STREAMS}
        organizations = reads_organizations(tenant)
        fixed = tuple(route for route in FIXED_ROUTES if organizations or route != "organizationFields.list")
        return cls(pages["persons"], pages["activities"], pages["deals"],
                   math.ceil(holdings.organizations / IDS_MAX) if organizations else 0, fixed, written, tasks)

    @property
    def total(self) -> int:
        return sum(self.by_route().values())

    def by_route(self) -> Counter[str]:
        return Counter({STREAMS["persons"].route: self.persons, STREAMS["activities"].route: self.activities,
                        STREAMS["deals"].route: self.deals, ORGANIZATIONS_ROUTE: self.organizations,
                        **dict.fromkeys(self.fixed, 1), WRITE_ROUTE: self.writes, TASK_ROUTE: self.tasks})

    def spelled(self) -> str:
        return (f"persons {self.persons:,} pages + activities {self.activities:,} pages + deals {self.deals:,} pages + "
                f"organizations {self.organizations:,} calls + fixed {len(self.fixed)} + writes {self.writes:,} + "
                f"tasks {self.tasks:,}")

    def gap(self, calls: Counter[str]) -> dict[str, int]:
        """Calls over (or under) the floor, by route."""
        floor = self.by_route()
        routes = sorted(set(calls) | set(floor), key=lambda route: -abs(calls[route] - floor[route]))
        return {route: calls[route] - floor[route] for route in routes if calls[route] != floor[route]}


# -- the runs ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Metered(Measured):
    """A measured run, the daily tokens it took (by the routes' costs, and as the budget header fell), and the
    POST/PUT calls the day has left after it."""

    tokens: int
    header_tokens: int
    writes_left: int


def metered(company: Company, limits: PlanLimits, run: Callable[[], RunSummary]) -> Metered:
    """`run` (a sync) and the sandbox's count of the calls it made; the users/me reads around it are not counted."""
    left_before = company.day()
    before = answered(company.stats())
    started = time.perf_counter()
    summary = run()
    seconds = time.perf_counter() - started
    during = answered(company.stats()) - before
    left_after = company.day()
    calls, statuses = Counter[str](), Counter[str]()
    for (route, status), n in during.items():
        calls[route] += n
        statuses[status] += n
    return Metered(summary, seconds, calls, statuses, limits.tokens(during),
                   left_before.tokens - left_after.tokens - limits.daily.cost(ME_ROUTE), left_after.writes)


def next_second() -> None:
    """Wait for the next whole second: v2 stamps updates in whole seconds and a run reads up to the second it
    started in, so writes made in that second would be left to the run after it."""
    time.sleep(1 - time.time() % 1)


def run_figures(run: Metered, time_scale: float) -> dict[str, Any]:
    return {"calls": run.total, "by_route": dict(run.calls.most_common()), "tokens": run.tokens,
            "header_tokens": run.header_tokens, "429s": run.statuses["429"], "writes": run.calls[WRITE_ROUTE],
            "post_put_left": run.writes_left, "deferral": run.summary.deferral,
            "wall_crm_seconds": round(run.seconds * time_scale, 1), "real_seconds": round(run.seconds, 1),
            "summary": {"outcome": run.summary.outcome.value, "error": run.summary.error,
                        **run.summary.as_dict()}}


def bench(args: argparse.Namespace, company: Company, tenant: TenantConfig, state_dir: Path,
          say: Callable[[str], None]) -> dict[str, Any]:
    limits = PlanLimits.of(pipedrive(tenant))
    holdings = count_holdings(company)
    company.wait_out(limits.burst)
    say(f"company: {holdings.persons:,} persons listed of {args.persons:,} made ({holdings.organizations:,} "
        f"organizations), {holdings.activities:,} activities, {holdings.deals:,} won or lost deals (listed by "
        f"{holdings.calls:,} calls in {holdings.seconds:.1f} s, before the runs)")
    clock, environ = ScaledClock(args.time_scale), {**os.environ, **secrets_environ(tenant, company.credentials)}

    def sync() -> RunSummary:
        return sync_tenant(tenant, state_dir=state_dir, clock=clock, environ=environ)

    full = metered(company, limits, sync)
    floor = Floor.of(holdings, tenant, full.summary.written, full.summary.tasks)
    report_full(full, floor, limits, args.time_scale, say)
    next_second()
    echo = metered(company, limits, sync)
    report_after("echo", echo, say)
    next_second()
    quiet = metered(company, limits, sync)
    report_after("quiet", quiet, say)
    return {"holdings": asdict(holdings),
            "full": {**run_figures(full, args.time_scale), "floor": floor.total, "floor_by_route":
                     dict(floor.by_route()), "calls_per_floor": round(full.total / floor.total, 4),
                     "gap_by_route": floor.gap(full.calls), "budget": limits.daily.limit},
            "echo": run_figures(echo, args.time_scale), "quiet": run_figures(quiet, args.time_scale)}


def report_full(full: Metered, floor: Floor, limits: PlanLimits, time_scale: float, say: Callable[[str], None]) -> None:
    say(outcome(full.summary))
    say(f"API calls: {full.total:,}; floor: {floor.total:,} ({floor.spelled()})")
    say(f"  by route: {full.endpoints()} (client counted {full.summary.api_calls:,})")
    say("  over the floor: " + (", ".join(f"{route} {n:+,}" for route, n in floor.gap(full.calls).items()) or "none"))
    say(f"calls/floor: {full.total / floor.total:.3f}")
    say(f"tokens used: {full.tokens:,} of budget {limits.daily.limit:,} (the budget header fell by "
        f"{full.header_tokens:,})")
    say(f"429s: {full.statuses['429']}")
    say(f"POST/PUT calls left of the day after it: {full.writes_left:,}; persons whose values changed: "
        f"{full.summary.changed:,}, written {full.summary.written:,}, deferred {full.summary.deferred:,}"
        + (f" ({full.summary.deferral})" if full.summary.deferral else ""))
    rate = limits.burst.limit / limits.burst.seconds
    say(f"wall: {full.seconds * time_scale:,.1f} s in the CRM's time ({full.seconds:,.1f} s real at time scale "
        f"{time_scale:g}); the floor's calls at {rate:g} a second take {floor.total / rate:,.1f} s")
    say("full run steps: " + ", ".join(f"{name} {sec * time_scale:,.1f} s" for name, sec in full.summary.steps.items())
        + " (CRM time)")


def report_after(name: str, run: Metered, say: Callable[[str], None]) -> None:
    say(outcome(run.summary))
    say(f"{name} run calls: {run.total:,} (tokens: {run.tokens:,}): {run.endpoints()}; writes: "
        f"{run.calls[WRITE_ROUTE]}; 429s: {run.statuses['429']}; re-read {run.summary.pulled:,} records; "
        f"deferred {run.summary.deferred:,}")


def options() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--persons", type=int, default=20_000,
                        help="persons the sandbox makes (some deleted or merged)")
    parser.add_argument("--activities-per-person", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--time-scale", type=float, default=4.0,
                        help="the sandbox's and the sync's clocks run this many times faster than the wall's")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    return parser.parse_args()


def main() -> None:
    args = options()
    say: Callable[[str], None] = (lambda line: None) if args.json else (lambda line: print(line, flush=True))
    plan = pipedrive(validate_tenant(tenant_data(TENANT_FILE), TENANT_FILE)).plan.value
    company = Company.start(args, plan)
    try:
        tenant = sandbox_tenant(TENANT_FILE, company.base_url)
        with tempfile.TemporaryDirectory(prefix="bench-sync-pipedrive-") as folder:
            figures = bench(args, company, tenant, Path(folder), say)
    finally:
        sandbox_peak = company.stop()
    bench_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    say(f"peak RSS: {bench_peak:,.0f} MB this process (the sync), "
        + (f"{sandbox_peak:,.0f} MB the sandbox process" if sandbox_peak else "the sandbox process's unknown"))
    if args.json:
        figures.update(persons=args.persons, activities_per_person=args.activities_per_person, seed=args.seed,
                       time_scale=args.time_scale, peak_rss_mb={"sync": round(bench_peak), "sandbox":
                                                                None if sandbox_peak is None else round(sandbox_peak)})
        print(json.dumps(figures))


if __name__ == "__main__":
    main()
