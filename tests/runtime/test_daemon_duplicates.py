"""The daemon and a tenant named by two files of its config folder: it runs neither file, says so on /readyz and
in its log, and runs the other tenants."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
from file_tenant import contact, file_tenant
from support import metric, readyz

from leadpulse.core.config.tenant import TenantConfig
from leadpulse.core.runtime.daemon import Daemon, DaemonSettings
from leadpulse.core.runtime.run import RunSummary
from leadpulse.core.store.runs import RunOutcome


class Runs:
    """A stand-in sync that only counts runs per tenant."""

    def __init__(self) -> None:
        self.runs: dict[str, int] = {}

    def __call__(self, tenant: TenantConfig, *, state_dir: Path, stop: threading.Event,
                 scoring: AbstractContextManager[object]) -> RunSummary:
        self.runs[tenant.name] = self.runs.get(tenant.name, 0) + 1
        return RunSummary(tenant.name, 1, RunOutcome.SUCCEEDED)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    folder = tmp_path / "config"
    file_tenant(folder, [contact("c1")], [])
    file_tenant(folder, [contact("c1")], [], name="beta")
    return folder


@pytest.fixture
def daemon(config: Path, tmp_path: Path) -> Iterator[Daemon]:
    started = Daemon(DaemonSettings(config_dir=config, state_dir=tmp_path / "state", port=0), sync=Runs())
    yield started
    started.drain()


def copy_acme(config: Path) -> Path:
    copy = config / "acme-v1.yaml"
    copy.write_text((config / "acme.yaml").read_text().replace("points: 3", "points: 30"))
    return copy


def test_the_daemon_schedules_neither_file_of_a_doubled_tenant_and_names_both_on_readyz(daemon, config):
    copy = copy_acme(config)
    report = daemon.start()
    assert report.added == ("beta",) and sorted(daemon._tenants) == ["beta"]
    assert len(report.errors) == 1 and f"{copy} and {config / 'acme.yaml'}: none of them is loaded" in report.errors[0]
    assert metric("leadpulse_tenants", state="broken") == 2  # both files count as refused
    status, body = readyz(daemon)
    assert status == 200 and "1 tenants scheduled" in body["detail"]
    assert f"tenant 'acme' is named by 2 files in {config}, {copy} and {config / 'acme.yaml'}" in body["detail"]


def test_a_copy_that_appears_beside_a_running_tenant_stops_it_at_the_next_reload(daemon, config):
    assert daemon.start().added == ("acme", "beta")
    copy_acme(config)
    report = daemon.reload()
    assert report.removed == ("acme",) and report.kept == ()
    assert sorted(daemon._tenants) == ["beta"] and daemon._scheduler.get_job("acme") is None


def test_moving_the_copy_out_brings_the_tenant_back(daemon, config):
    copy = copy_acme(config)
    daemon.start()
    copy.rename(config.parent / "acme-v1.yaml")
    assert daemon.reload().added == ("acme",)
    assert sorted(daemon._tenants) == ["acme", "beta"]
