"""The demo: a HubSpot portal played by the local sandbox, synced in full, livened up, and synced again.

`run_demo` starts the HubSpot sandbox with a few thousand synthetic contacts and real rate limits, runs a full
sync of the demo tenant (config/demo/hubspot-sandbox.yaml), lets the portal's people do things (meetings,
replies, answered calls, a new job title), runs an incremental sync that reads what changed and rescores the
contacts it touches, and hands both summaries back for the CLI to print with the hottest leads. The other demo
scores the sample CRM export in config/sample with no API at all.

Each demo keeps what it made in one folder (`DEMO_FOLDER` unless told another), cleared by the next demo: the tenant
file as it ran, its store, and for the sandbox what the portal ended up holding, so `explain`, `history` and
`status` can look at what the demo showed.

The demos' files (config/demo, config/demo-file.yaml, config/sample) belong to the source checkout, beside the
code: an installed wheel carries the program, not the demo data (see `require_demo_file`).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import yaml

from leadpulse.core.cli.render import (
    OpenLead,
    band_table,
    console,
    hottest_table,
    open_leads,
    print_explanation,
    print_summaries,
)
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
#: where a demo keeps what it made, unless told another folder (``var/`` of the checkout, which git ignores)
DEMO_FOLDER = SHIPPED_CONFIG.parent / "var" / "demo"
#: the file that marks a folder as a demo's, so that the next demo may clear it
DEMO_MARK = ".leadpulse-demo"
#: the connection settings of the sample export that are paths, relative to the tenant file's folder
EXPORT_PATHS = ("contacts", "activities", "outcomes")


def require_demo_file(path: Path) -> Path:
    """`path`, one of the demos' files.

    :raises DemoUnavailable: naming the file and what to do, if it is missing.
    """
    if not path.exists():
        raise DemoUnavailable(f"{path}: the demo's files come with a checkout of leadpulse's source, not with an "
                              "installed package; run the demo from a checkout (`make demo` there)")
    return path


def tenant_data(path: Path, **connection: Any) -> dict[str, Any]:
    """The tenant file at `path` as YAML reads it, its ``crm.connection`` settings updated with `connection`."""
    data: dict[str, Any] = yaml.safe_load(path.read_text())
    data["crm"]["connection"].update(connection)
    return data


def sandbox_tenant(path: Path, base_url: str, **connection: Any) -> TenantConfig:
    """The tenant file at `path`, pointed at a sandbox's `base_url` (and any other connection settings)."""
    return validate_tenant(tenant_data(path, base_url=base_url, **connection), path)


@dataclass(frozen=True)
class DemoFolder:
    """Where a demo keeps what it made: the tenant file it ran (`config`), its store (`state`), the portal."""

    path: Path

    @property
    def config(self) -> Path:
        return self.path / "config"

    @property
    def state(self) -> Path:
        return self.path / "state"

    @property
    def portal(self) -> Path:
        return self.path / "portal.json"

    @classmethod
    def fresh(cls, path: Path) -> DemoFolder:
        """The folder at `path`, an earlier demo's files cleared from it.

        :raises DemoUnavailable: if it holds files no demo made; they are left as they are.
        """
        if path.exists():
            if any(path.iterdir()) and not (path / DEMO_MARK).exists():
                raise DemoUnavailable(f"{path}: holds files no demo made, and a demo clears its folder first; name "
                                      "an empty or new folder with --folder")
            shutil.rmtree(path)
        folder = cls(path)
        folder.config.mkdir(parents=True)
        folder.state.mkdir()
        (path / DEMO_MARK).write_text("Made by `leadpulse demo`: the next demo clears this folder.\n")
        return folder

    def keep_tenant(self, source: Path, **connection: Any) -> TenantConfig:
        """The tenant file at `source`, its connection settings updated with `connection`, kept in `config`: the
        tenant the demo runs is the one left to look at."""
        data = tenant_data(require_demo_file(source), **connection)
        kept = self.config / f"{data['tenant']}.yaml"
        kept.write_text(f"# {source.name} as `leadpulse demo` ran it (any sandbox it names stopped with the demo); the "
                        "next demo clears this folder.\n"
                        + yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
        return load_tenant(kept)


def export_tenant(folder: DemoFolder) -> TenantConfig:
    """The sample export's tenant, its input read where it is shipped, its results written into `folder`."""
    source = require_demo_file(EXPORT_TENANT_FILE)
    shipped = yaml.safe_load(source.read_text())["crm"]["connection"]
    paths = {key: str((source.parent / shipped[key]).resolve()) for key in EXPORT_PATHS if key in shipped}
    return folder.keep_tenant(source, **paths, results=str(folder.state.resolve() / "results.csv"))


def keep_portal(sb: Sandbox, folder: DemoFolder, livened: Sequence[str]) -> None:
    """What the sandbox portal holds of leadpulse's work when the demo ends (its own copy goes with the process):
    the values leadpulse wrote on each contact and the tasks it created."""
    folder.portal.write_text(json.dumps({"crm": "hubspot", "livened": list(livened), **sb.written()}, indent=1))


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
    folder: DemoFolder,
    *,
    contacts: int = 3000,
    seed: int = 7,
    livened: int = 40,
    time_scale: float = 4.0,
    on_run: Callable[[str, RunSummary], None] = lambda name, summary: None,
) -> DemoRun:
    """Full sync, fresh activity, incremental sync, against a HubSpot sandbox with its rate limits on; the tenant
    file, the store and what the portal holds are kept in `folder`.

    :raises DemoUnavailable: if the demo's tenant file is not here.
    """
    require_demo_file(DEMO_TENANT_FILE)

    with Sandbox.start("hubspot", contacts, seed, tier="professional", time_scale=time_scale) as sb:
        tenant = folder.keep_tenant(DEMO_TENANT_FILE, base_url=sb.base_url)
        environ: Mapping[str, str] = {**os.environ, TOKEN_VARIABLE: sb.credentials["access_token"]}
        clock: Clock = ScaledClock(time_scale)
        full = sync_tenant(tenant, state_dir=folder.state, clock=clock, environ=environ)
        on_run("full sync", full)
        chosen = [sb.crm.id_of(i) for i in range(0, contacts, max(1, contacts // livened))][:livened]
        liven_up(sb.crm, chosen)
        incremental = sync_tenant(tenant, state_dir=folder.state, clock=clock, environ=environ)
        on_run("incremental sync", incremental)
        keep_portal(sb, folder, chosen)
    return DemoRun(tenant, folder.state, full, incremental, tuple(chosen))


@click.command()
@click.option("--contacts", type=click.IntRange(min=100), default=3000, show_default=True,
              help="How many contacts the sandbox portal holds.")
@click.option("--from-export", is_flag=True,
              help="Score the sample export shipped in config/sample instead (no API at all).")
@click.option("--folder", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where to keep the tenant file, store and portal the demo made (cleared by the next demo) "
                   "[default: var/demo in the checkout].")
def demo(contacts: int, from_export: bool, folder: Path | None) -> None:
    """Sync a HubSpot portal played by the local sandbox: a full run, fresh activity, an incremental run.

    The demos use the tenant files in leadpulse's checkout (config/demo, config/demo-file.yaml), wherever the
    command runs from, and keep what they made in a folder they print at the end for `explain`, `history` and
    `status` to look at.
    """
    try:
        require_demo_file(EXPORT_TENANT_FILE if from_export else DEMO_TENANT_FILE)
        _demo(contacts, from_export, DemoFolder.fresh(folder or DEMO_FOLDER))
    except DemoUnavailable as exc:
        raise click.ClickException(str(exc)) from None


def _demo(contacts: int, from_export: bool, folder: DemoFolder) -> None:
    if from_export:
        tenant = export_tenant(folder)
        print_summaries([sync_tenant(tenant, state_dir=folder.state, clock=ManualClock(DEMO_AS_OF))])
    else:
        console.print(f"Starting a HubSpot sandbox with {contacts} contacts on 127.0.0.1 ...")
        result = run_demo(folder, contacts=contacts,
                          on_run=lambda name, summary: print_summaries([summary], title=name))
        incremental = result.incremental
        console.print(f"Between the runs, {len(result.livened)} contacts held a meeting and replied (half of them "
                      "also took a call). The incremental run read what changed since the full one, the contacts "
                      f"its own write-back touched included, rescored the {incremental.scored} whose data changed or "
                      f"whose score had expired, and wrote the {incremental.changed} whose values moved.")
        tenant = result.tenant
    with Store.open(tenant.store_path(folder.state)) as store:
        console.print(band_table(store.band_counts(), Engine(tenant.scoring).band_names))
        leads = open_leads(store, tenant, 5)
        console.print(hottest_table(leads))
        for lead in leads[:1]:
            print_explanation(lead.score, lead.contact)
    print_next_steps(folder, leads)


def print_next_steps(folder: DemoFolder, leads: Sequence[OpenLead]) -> None:
    """Where the demo left its files, and the commands that look at them."""
    where = f"--config-dir {shown(folder.config)} --state-dir {shown(folder.state)}"
    contact = leads[0].score.contact_id if leads else "CONTACT"
    kept = "tenant file, store and portal" if folder.portal.exists() else "tenant file, store and results"
    console.print(f"The demo's {kept} are in {shown(folder.path)} (the next demo clears it). Look closer:",
                  highlight=False)
    for command in (f"explain {contact}", f"history {contact}", "status"):
        console.print(f"  {program()} {command} {where}", highlight=False, soft_wrap=True)


def shown(path: Path) -> str:
    """`path` as a command line would name it from here: relative when it is under the working directory."""
    absolute = path.resolve()
    try:
        return str(absolute.relative_to(Path.cwd()))
    except ValueError:
        return str(absolute)


def program() -> str:
    """How to run leadpulse from here: its name when the shell finds this installation's, else its path."""
    script = Path(sys.executable).parent / "leadpulse"
    found = shutil.which("leadpulse")
    return "leadpulse" if found and Path(found).resolve() == script.resolve() else shown(script)
