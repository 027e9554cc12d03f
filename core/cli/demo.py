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
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import yaml

from leadpulse.core.cli.render import band_table, console, hottest_table, open_leads, print_explanation, print_summaries
from leadpulse.core.clock import Clock, ManualClock, ScaledClock
from leadpulse.core.config.files import load_tenant, validate_tenant
from leadpulse.core.config.tenant import TenantConfig
from leadpulse.core.engine.scoring import Engine
from leadpulse.core.errors import DemoUnavailable
from leadpulse.core.runtime.pipeline import sync_tenant
from leadpulse.core.runtime.run import RunSummary
from leadpulse.core.store.store import Store
from leadpulse.sandbox import Sandbox

# The demos' tenant files live in the checkout beside the code: a demo runs the same from any working directory.
SHIPPED_CONFIG = Path(__file__).resolve().parents[2] / "config"
DEMO_TENANT_FILE = SHIPPED_CONFIG / "demo" / "hubspot-sandbox.yaml"
#: the tenant of the sample CRM export in config/sample, scored by ``leadpulse demo --from-export``
EXPORT_TENANT_FILE = SHIPPED_CONFIG / "demo-file.yaml"
TOKEN_VARIABLE = "DEMO_HUBSPOT_TOKEN"
#: when config/sample was exported (bench/synthetic.py EXPORT_AT): the demo scores as of then, so its output stays put
DEMO_AS_OF = datetime(2025, 6, 2, tzinfo=UTC)


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


@click.command()
@click.option("--contacts", type=click.IntRange(min=100), default=3000, show_default=True,
              help="How many contacts the sandbox portal holds.")
@click.option("--from-export", is_flag=True,
              help="Score the sample export shipped in config/sample instead (no API at all).")
def demo(contacts: int, from_export: bool) -> None:
    """Sync a HubSpot portal played by the local sandbox: a full run, fresh activity, an incremental run.

    The demos use the tenant files in leadpulse's checkout (config/demo, config/demo-file.yaml), wherever the
    command runs from.
    """
    try:
        _demo(contacts, from_export)
    except DemoUnavailable as exc:
        raise click.ClickException(str(exc)) from None


def _demo(contacts: int, from_export: bool) -> None:
    with tempfile.TemporaryDirectory(prefix="leadpulse-demo-") as folder:
        if from_export:
            tenant = _demo_from_export(Path(folder))
        else:
            console.print(f"Starting a HubSpot sandbox with {contacts} contacts on 127.0.0.1 ...")
            result = run_demo(Path(folder), contacts=contacts,
                              on_run=lambda name, summary: print_summaries([summary], title=name))
            incremental = result.incremental
            console.print(f"Between the runs, {len(result.livened)} contacts held a meeting and replied (half of them "
                          "also took a call). The incremental run read what changed since the full one, the contacts "
                          f"its own write-back touched included, rescored the {incremental.scored} whose data "
                          "changed or "
                          f"whose score had expired, and wrote the {incremental.changed} whose values moved.")
            tenant = result.tenant
        with Store.open(tenant.store_path(Path(folder))) as store:
            console.print(band_table(store.band_counts(), Engine(tenant.scoring).band_names))
            leads = open_leads(store, tenant, 5)
            console.print(hottest_table(leads))
            for lead in leads[:1]:
                print_explanation(lead.score, lead.contact)


def _demo_from_export(state_dir: Path) -> TenantConfig:
    tenant = export_tenant(state_dir)
    print_summaries([sync_tenant(tenant, state_dir=state_dir, clock=ManualClock(DEMO_AS_OF))])
    return tenant
