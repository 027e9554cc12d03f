"""Prometheus metrics: what each verb counts, and the /healthz, /readyz and /metrics endpoints."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass

import pytest
from support import metric

from leadpulse.core.runtime import logs, metrics
from leadpulse.core.runtime.health import HealthServer, Probe


@dataclass(frozen=True)
class Summary:
    tenant: str
    outcome: str
    pulled: int = 0
    written: int = 0
    tasks: int = 0
    seconds: float = 0.0
    skipped: int = 0
    refused: int = 0


def test_a_run_counts_by_outcome_with_its_records_and_duration():
    metrics.record_run(Summary("m-run", "succeeded", pulled=10, written=4, tasks=1, seconds=2.0))
    metrics.record_run(Summary("m-run", "failed", pulled=3, seconds=1.0))
    assert metric("leadpulse_runs_total", tenant="m-run", outcome="succeeded") == 1
    assert metric("leadpulse_runs_total", tenant="m-run", outcome="failed") == 1
    assert metric("leadpulse_records_pulled_total", tenant="m-run") == 13
    assert metric("leadpulse_records_written_total", tenant="m-run") == 4
    assert metric("leadpulse_tasks_created_total", tenant="m-run") == 1
    assert metric("leadpulse_run_duration_seconds_count", tenant="m-run") == 2
    assert metric("leadpulse_run_duration_seconds_sum", tenant="m-run") == 3.0


def test_only_a_successful_run_sets_the_last_success_time():
    metrics.record_run(Summary("m-fail", "failed"))
    assert metrics.REGISTRY.get_sample_value("leadpulse_last_success_timestamp_seconds", {"tenant": "m-fail"}) is None
    metrics.record_run(Summary("m-fail", "succeeded"))
    assert metric("leadpulse_last_success_timestamp_seconds", tenant="m-fail") > 0


def test_api_calls_count_by_crm_and_status_and_429s_apart():
    for status in (200, 200, 429, 500):
        metrics.record_call("hubspot", status, tenant="m-calls")
    assert metric("leadpulse_api_calls_total", tenant="m-calls", crm="hubspot", status="200") == 2
    assert metric("leadpulse_api_calls_total", tenant="m-calls", crm="hubspot", status="429") == 1
    assert metric("leadpulse_rate_limited_total", tenant="m-calls", crm="hubspot") == 1


def test_an_api_call_takes_its_tenant_from_the_run_context():
    with logs.run_context(tenant="m-ctx"):
        metrics.record_call("pipedrive", 200)
    assert metric("leadpulse_api_calls_total", tenant="m-ctx", crm="pipedrive", status="200") == 1


def test_backlog_is_a_gauge_that_a_removed_tenant_drops():
    metrics.record_backlog("m-backlog", 7)
    assert metric("leadpulse_outbox_backlog", tenant="m-backlog") == 7
    metrics.forget_tenant("m-backlog")
    assert metrics.REGISTRY.get_sample_value("leadpulse_outbox_backlog", {"tenant": "m-backlog"}) is None


def test_the_exposition_names_every_metric():
    text = metrics.render().decode()
    for name in ("leadpulse_runs_total", "leadpulse_api_calls_total", "leadpulse_rate_limited_total",
                 "leadpulse_outbox_backlog", "leadpulse_run_duration_seconds", "leadpulse_overlaps_refused_total",
                 "leadpulse_schedule_delay_seconds", "leadpulse_last_success_timestamp_seconds"):
        assert f"# TYPE {name.removesuffix('_total')}" in text


@pytest.fixture
def server():
    state = {"ready": True}
    health = HealthServer(Probe(alive=lambda: (True, "ok"), ready=lambda: (state["ready"], "draining")), port=0)
    health.state = state
    yield health.start()
    health.stop()


def get(server: HealthServer, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}{path}", timeout=5) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_healthz_answers_200_while_alive(server):
    status, body = get(server, "/healthz")
    assert status == 200 and json.loads(body)["ok"] is True


def test_readyz_answers_503_while_draining(server):
    server.state["ready"] = False
    assert get(server, "/readyz")[0] == 503


def test_metrics_endpoint_serves_the_prometheus_text_format(server):
    metrics.record_backlog("m-http", 3)
    status, body = get(server, "/metrics")
    assert status == 200 and b'leadpulse_outbox_backlog{tenant="m-http"} 3.0' in body


def test_the_container_health_check_command_exits_0_when_healthy_and_1_when_not(server):
    ok = subprocess.run([sys.executable, "-m", "leadpulse.core.runtime.health", "--port", str(server.port)], timeout=30)
    assert ok.returncode == 0
    server.stop()
    down = subprocess.run([sys.executable, "-m", "leadpulse.core.runtime.health", "--port", str(server.port), "--timeout", "1"],
                          timeout=30, capture_output=True, text=True)
    assert down.returncode == 1 and "not healthy" in down.stderr


def test_a_run_counts_its_skipped_records_and_refused_writes():
    metrics.record_run(Summary("m-partial", "partial", pulled=100, skipped=3, written=10, refused=2))
    assert metric("leadpulse_runs_total", tenant="m-partial", outcome="partial") == 1
    assert metric("leadpulse_records_skipped_total", tenant="m-partial") == 3
    assert metric("leadpulse_writes_refused_total", tenant="m-partial") == 2
