"""The demo: a HubSpot portal played by the local sandbox, synced in full, livened up, and synced again.

`run_demo` starts the HubSpot sandbox with a few thousand synthetic contacts and real rate limits, runs a full
sync of the demo tenant (config/demo/hubspot-sandbox.yaml), lets the portal's people do things (meetings,
replies, answered calls, a new job title), runs an incremental sync that reads what changed and rescores the
contacts it touches, and hands both summaries back for the CLI to print with the hottest leads. `export_tenant` is
the tenant of the other demo, which scores the sample CRM export in config/sample with no API at all.

The demos' files (config/demo, config/demo-file.yaml, config/sample) belong to the source checkout, beside the
code: an installed wheel carries the program, not the demo data (see `require_demo_file`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from core.clock import Clock, ScaledClock
from core.config import TenantConfig, load_tenant, validate_tenant
from core.pipeline import RunSummary, sync_tenant

# The demos' tenant files live in the checkout beside the code: a demo runs the same from any working directory.
SHIPPED_CONFIG = Path(__file__).resolve().parent.parent / "config"
DEMO_TENANT_FILE = SHIPPED_CONFIG / "demo" / "hubspot-sandbox.yaml"
#: the tenant of the sample CRM export in config/sample, scored by ``leadpulse demo --from-export``
EXPORT_TENANT_FILE = SHIPPED_CONFIG / "demo-file.yaml"
TOKEN_VARIABLE = "DEMO_HUBSPOT_TOKEN"


class DemoUnavailable(Exception):
    """The demo's files are not here (leadpulse was installed from a wheel, not run from its checkout)."""


def require_demo_file(path: Path) -> Path:
    """`path`, one of the demos' files.

    :raises DemoUnavailable: naming the file and what to do, if it is missing.
    """
    if not path.exists():
        raise DemoUnavailable(f"{path}: the demo's files come with a checkout of leadpulse's source, not with an "
                              "installed package; run the demo from a checkout (`make demo` there)")
    return path


def sandbox_tenant(path: Path, base_url: str, **connection: Any) -> TenantConfig:
    """The tenant file at `path`, pointed at a sandbox's `base_url` (and any other connection settings)."""
    data = yaml.safe_load(path.read_text())
    data["crm"]["connection"].update(base_url=base_url, **connection)
    return validate_tenant(data, path)


def export_tenant(state_dir: Path) -> TenantConfig:
    """The sample export's tenant, writing its results into `state_dir` instead of beside the shipped files."""
    tenant = load_tenant(require_demo_file(EXPORT_TENANT_FILE))
    connection = tenant.crm.connection.model_copy(update={"results": state_dir / "results.csv"})
    return tenant.model_copy(update={"crm": tenant.crm.model_copy(update={"connection": connection})})


@dataclass(frozen=True)
class DemoRun:
    tenant: TenantConfig
    state_dir: Path
    full: RunSummary
    incremental: RunSummary
    livened: tuple[str, ...]


def liven_up(crm: Any, contact_ids: list[str]) -> None:
    """What a week in a real portal brings: meetings held, replies, answered calls, a promotion."""
    for n, contact_id in enumerate(contact_ids):
        crm.add_activity(contact_id, "meeting", outcome="completed")
        crm.add_activity(contact_id, "email", direction="inbound")
        if n % 2 == 0:
            crm.add_activity(contact_id, "call", status="completed")
        if n % 5 == 0:
            crm.edit_contact(contact_id, title="VP of Sales")


def run_demo(
    state_dir: Path,
    *,
    contacts: int = 3000,
    seed: int = 7,
    livened: int = 40,
    time_scale: float = 4.0,
    on_run: Callable[[str, RunSummary], None] = lambda name, summary: None,
) -> DemoRun:
    """Full sync, fresh activity, incremental sync, against a HubSpot sandbox with its rate limits on.

    :raises DemoUnavailable: if the demo's tenant file is not here.
    """
    from sandbox import Sandbox  # the sandbox is only needed for the demo and tests

    require_demo_file(DEMO_TENANT_FILE)

    with Sandbox.start("hubspot", contacts, seed, tier="professional", time_scale=time_scale) as sb:
        tenant = sandbox_tenant(DEMO_TENANT_FILE, sb.base_url)
        environ: Mapping[str, str] = {**os.environ, TOKEN_VARIABLE: sb.credentials["access_token"]}
        clock: Clock = ScaledClock(time_scale)
        full = sync_tenant(tenant, state_dir=state_dir, clock=clock, environ=environ)
        on_run("full sync", full)
        chosen = [sb.crm.id_of(i) for i in range(0, contacts, max(1, contacts // livened))][:livened]
        liven_up(sb.crm, chosen)
        incremental = sync_tenant(tenant, state_dir=state_dir, clock=clock, environ=environ)
        on_run("incremental sync", incremental)
    return DemoRun(tenant, state_dir, full, incremental, tuple(chosen))
