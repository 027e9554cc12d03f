"""Prometheus metrics: one registry for the process, a handful of verbs to feed it.

Who calls what::

    record_run(summary)              the daemon (and `leadpulse sync`), once per finished run: run count by
                                     outcome, duration, records pulled / skipped / written / refused, tasks,
                                     last success time
    record_call(crm, status)         once per CRM answer (status 0: no answer), through the `call_stats` a run
                                     gives its connector; the tenant label comes from `logs.run_context`, or
                                     pass `tenant=`
    record_backlog(tenant, pending)  after a run: outbox rows still waiting to be pushed
    record_overlap(tenant)           a run refused because the tenant's previous run is still going
    record_schedule_delay(seconds)   how late a scheduled run started
    set_runs_in_flight(count)        the daemon, as each scheduled run starts and ends
    set_tenants(configured, broken)  after (re)loading the config directory

`render()` gives the text exposition served on ``/metrics``. Everything lives in `REGISTRY`, not the
prometheus-client default one, so importing a library that registers its own metrics changes nothing here.
"""

from __future__ import annotations

import contextlib
import functools
import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from leadpulse.core.contract import CallJournal, CallStats, Unjournaled
from leadpulse.core.runtime import logs

REGISTRY = CollectorRegistry(auto_describe=True)
CONTENT_TYPE = CONTENT_TYPE_LATEST

RUNS = Counter("leadpulse_runs", "Finished runs by tenant and outcome.", ["tenant", "outcome"], registry=REGISTRY)
LAST_SUCCESS = Gauge(
    "leadpulse_last_success_timestamp_seconds",
    "Unix time the tenant's last successful run ended.",
    ["tenant"],
    registry=REGISTRY,
)
PULLED = Counter("leadpulse_records_pulled", "Records pulled from the CRM.", ["tenant"], registry=REGISTRY)
WRITTEN = Counter("leadpulse_records_written", "Contacts whose properties were written.", ["tenant"], registry=REGISTRY)
TASKS = Counter("leadpulse_tasks_created", "Follow-up tasks created in the CRM.", ["tenant"], registry=REGISTRY)
SKIPPED = Counter("leadpulse_records_skipped", "Records read from the CRM that could not be understood.", ["tenant"],
                  registry=REGISTRY)
REFUSED = Counter("leadpulse_writes_refused", "Writes and tasks the CRM refused.", ["tenant"], registry=REGISTRY)
API_CALLS = Counter(
    "leadpulse_api_calls", "CRM API calls by answer status (0: no answer).", ["tenant", "crm", "status"],
    registry=REGISTRY,
)
RATE_LIMITED = Counter("leadpulse_rate_limited", "429 answers from the CRM.", ["tenant", "crm"], registry=REGISTRY)
DURATION = Histogram(
    "leadpulse_run_duration_seconds",
    "Wall time of a run.",
    ["tenant"],
    buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600),
    registry=REGISTRY,
)
BACKLOG = Gauge("leadpulse_outbox_backlog", "Outbox rows waiting to be pushed.", ["tenant"], registry=REGISTRY)
OVERLAPS = Counter(
    "leadpulse_overlaps_refused", "Runs refused because the tenant's previous run was still going.", ["tenant"],
    registry=REGISTRY,
)
SCHEDULE_DELAY = Histogram(
    "leadpulse_schedule_delay_seconds",
    "How late a scheduled run started.",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
    registry=REGISTRY,
)
RUNS_IN_FLIGHT = Gauge("leadpulse_runs_in_flight", "Scheduled runs going now.", registry=REGISTRY)
TENANTS = Gauge("leadpulse_tenants", "Tenant files in the config directory by state.", ["state"], registry=REGISTRY)


def record_run(summary: Any, *, gauges: bool = True) -> None:
    """Count one finished run from its `RunSummary` (tenant, outcome, pulled, written, tasks, seconds).

    Without `gauges`, the run is counted but the tenant's last-success time is left alone (a run of a tenant
    removed meanwhile must not bring its gauge back)."""
    tenant = summary.tenant
    outcome = _text(summary.outcome)
    RUNS.labels(tenant, outcome).inc()
    PULLED.labels(tenant).inc(_count(summary, "pulled"))
    WRITTEN.labels(tenant).inc(_count(summary, "written"))
    TASKS.labels(tenant).inc(_count(summary, "tasks"))
    SKIPPED.labels(tenant).inc(_count(summary, "skipped"))
    REFUSED.labels(tenant).inc(_count(summary, "refused"))
    DURATION.labels(tenant).observe(float(getattr(summary, "seconds", 0) or 0))
    if gauges and outcome in SUCCESS_OUTCOMES:
        LAST_SUCCESS.labels(tenant).set(time.time())


#: outcomes that count as a success for `leadpulse_last_success_timestamp_seconds`
SUCCESS_OUTCOMES = frozenset({"succeeded", "ok", "success"})


def record_call(crm: str, status: int, *, tenant: str | None = None) -> None:
    """Count one API answer; a 429 also counts in `leadpulse_rate_limited_total`."""
    tenant = tenant or logs.tenant_var.get() or ""
    API_CALLS.labels(tenant, crm, str(status)).inc()
    if status == 429:
        RATE_LIMITED.labels(tenant, crm).inc()


def call_stats(crm: str, tenant: str, journal: CallJournal | None = None) -> CallStats:
    """A connector's call counts for one run of `tenant`, each answer also counted in the API-call metrics, each
    call noted in `journal` when one is given."""
    return CallStats(observe=functools.partial(_record_call_of, crm, tenant), journal=journal or Unjournaled())


def _record_call_of(crm: str, tenant: str, status: int) -> None:
    record_call(crm, status, tenant=tenant)


def record_backlog(tenant: str, pending: int) -> None:
    BACKLOG.labels(tenant).set(pending)


def record_overlap(tenant: str) -> None:
    OVERLAPS.labels(tenant).inc()


def record_schedule_delay(seconds: float) -> None:
    SCHEDULE_DELAY.observe(max(0.0, seconds))


def set_runs_in_flight(count: int) -> None:
    RUNS_IN_FLIGHT.set(count)


def set_tenants(configured: int, broken: int) -> None:
    TENANTS.labels("configured").set(configured)
    TENANTS.labels("broken").set(broken)


def forget_tenant(tenant: str) -> None:
    """Drop a removed tenant's gauges, so a dashboard stops showing its stale backlog."""
    for gauge in (BACKLOG, LAST_SUCCESS):
        with contextlib.suppress(KeyError):
            gauge.remove(tenant)


def render() -> bytes:
    """The Prometheus text exposition of every metric above."""
    return generate_latest(REGISTRY)


def _text(value: Any) -> str:
    return str(getattr(value, "value", value))


def _count(summary: Any, name: str) -> int:
    value = getattr(summary, name, 0) or 0
    return int(sum(value.values()) if hasattr(value, "values") else value)
