"""The demo: a CRM played by the local sandbox, synced in full, livened up, and synced again.

`run_demo` starts a CRM's sandbox (a HubSpot portal, or a Salesforce org: one `DemoCrm` each) with a few thousand
synthetic people and real rate limits, sets it up as an admin would, runs a full sync of that CRM's demo tenant
(config/demo/hubspot-sandbox.yaml, config/demo/salesforce-sandbox.yaml), lets its people do things (meetings,
replies, answered calls, a new job title), runs an incremental sync that reads what changed and rescores the
people it touches, and hands both summaries back for the CLI to print with the hottest leads. The other demo
scores the sample CRM export in config/sample with no API at all.

Each demo keeps what it made in one folder (`DEMO_FOLDER` unless told another), cleared by the next demo: the tenant
file as it ran, its store, and for a sandbox what the CRM ended up holding, so `explain`, `history` and
`status` can look at what the demo showed.

The demos' files (config/demo, config/demo-file.yaml, config/sample) belong to the source checkout, beside the
code: an installed wheel carries the program, not the demo data (see `require_demo_file`).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import yaml
from click.core import ParameterSource

from leadpulse.core.cli.offline import show_explanation
from leadpulse.core.cli.render import (
    OpenLead,
    band_table,
    console,
    hottest_table,
    open_leads,
    print_summaries,
)
from leadpulse.core.clock import Clock, ManualClock, ScaledClock
from leadpulse.core.config.files import load_tenant, validate_tenant
from leadpulse.core.config.tenant import Output, TenantConfig
from leadpulse.core.engine.scoring import Engine
from leadpulse.core.errors import DemoUnavailable
from leadpulse.core.runtime.pipeline import sync_tenant
from leadpulse.core.runtime.run import RunSummary
from leadpulse.core.store.store import Store
from leadpulse.sandbox import Sandbox

# The demos' tenant files live in the checkout beside the code: a demo runs the same from any working directory.
SHIPPED_CONFIG = Path(__file__).resolve().parents[2] / "config"
DEMO_TENANT_FILE = SHIPPED_CONFIG / "demo" / "hubspot-sandbox.yaml"
SALESFORCE_TENANT_FILE = SHIPPED_CONFIG / "demo" / "salesforce-sandbox.yaml"
PIPEDRIVE_TENANT_FILE = SHIPPED_CONFIG / "demo" / "pipedrive-sandbox.yaml"
#: the tenant of the sample CRM export in config/sample, scored by ``leadpulse demo --from-export``
EXPORT_TENANT_FILE = SHIPPED_CONFIG / "demo-file.yaml"
#: the variable the HubSpot demo tenant reads its token from (the demo sets every variable its tenant names; the
#: benchmarks and tests that sync that tenant set this one)
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
    """Where a demo keeps what it made: the tenant file it ran (`config`), its store (`state`), and what the sandbox
    CRM held at the end (`portal`, named for the HubSpot portal the first demo played)."""

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


def salesforce_written(sb: Sandbox, tenant: TenantConfig) -> dict[str, Any]:
    """What a Salesforce sandbox holds of leadpulse's work, shaped as `Sandbox.written` gives a HubSpot portal's: the
    tenant's custom fields on each Lead or Contact that has any, and the Tasks created through the API."""
    fields = tuple(tenant.writeback.properties.values())
    people = [sb.crm.id_of(index) for index in range(sb.crm.size)]
    values = {}
    for index, person in enumerate(people):
        record = sb.crm.record(index)
        written = {name: record[name] for name in fields if record.get(name) is not None}
        if written:
            values[person] = written
    tasks = [task.attributes["sobject_fields"] for task in sb.crm.tasks()]
    return {"contacts": people, "properties": values, "tasks": tasks}


#: the field type each output takes in a Salesforce org: Number(16, 2) for the score and its axes, else Text(255)
SALESFORCE_TYPES = {Output.SCORE: "double", Output.FIT: "double", Output.ENGAGEMENT: "double"}


def add_custom_fields(sb: Sandbox, tenant: TenantConfig) -> None:
    """The custom fields `tenant` writes, added to the org's Leads and Contacts as an admin does in Setup before the
    first sync (the connector refuses to write into fields the org lacks)."""
    for sobject in ("Lead", "Contact"):
        for output, name in tenant.writeback.properties.items():
            sb.vendor.add_custom_field(sobject, name, SALESFORCE_TYPES.get(output, "string"))


def is_open_lead(sb: Sandbox, index: int) -> bool:
    """Whether person `index` of a Salesforce sandbox is a Lead still worked: not a Contact, not deleted, and not
    converted (a converted Lead is read-only; what happens to its person lands on its Contact)."""
    row = sb.vendor.row_by_id(sb.vendor.sobject("Lead"), sb.crm.id_of(index))
    return row is not None and not row.deleted and not row.converted


def pipedrive_written(sb: Sandbox, tenant: TenantConfig) -> dict[str, Any]:
    """What a Pipedrive sandbox holds of leadpulse's work: the person fields the tenant writes, by name (an option
    by its label), on each live person that has any, and the activities created through the API."""
    names = {field.key: field.name for field in sb.vendor.fields.custom.values()}
    owned = set(tenant.writeback.properties.values()) | {tenant.writeback.status_property}
    people = [index for index in range(sb.crm.size) if not sb.vendor.fates.gone(index)]
    values = {}
    for index in people:
        custom = sb.vendor.person(index, labels=True)["custom_fields"]
        written = {names[key]: value["label"] if isinstance(value, dict) else value
                   for key, value in custom.items() if names.get(key) in owned and value is not None}
        if written:
            values[sb.crm.id_of(index)] = written
    tasks = [{"person_id": sb.crm.id_of(made.contact_index), "subject": made.attributes.get("subject"),
              "type": made.attributes.get("pipedrive_type"),
              "due": datetime.fromtimestamp(made.occurred_ms / 1000, UTC).isoformat(),
              "note": made.attributes.get("note")}
             for made in sb.crm.added_activities() if "leadpulse:" in str(made.attributes.get("note"))]
    return {"contacts": [sb.crm.id_of(index) for index in people], "properties": values, "tasks": tasks}


@dataclass(frozen=True)
class DemoCrm:
    """One CRM as the sandbox demo runs it: its demo tenant file, how its sandbox starts and is reached, what an admin
    sets up before the first sync, whom the fresh activity goes to, and what the CRM holds of leadpulse's work."""

    name: str
    #: how the demo's sentences name the CRM, the place it holds people in, the people it holds, and the ones the
    #: tenant scores (and fresh activity goes to)
    title: str
    place: str
    people: str
    scored: str
    tenant_file: Path
    tier: str
    #: the connection settings that point the tenant at the running sandbox
    connection: Callable[[Sandbox], dict[str, Any]]
    written: Callable[[Sandbox, TenantConfig], dict[str, Any]]
    prepare: Callable[[Sandbox, TenantConfig], None] = lambda sb, tenant: None
    livens: Callable[[Sandbox, int], bool] = lambda sb, index: True


HUBSPOT = DemoCrm(
    name="hubspot", title="HubSpot", place="portal", people="contacts", scored="contacts",
    tenant_file=DEMO_TENANT_FILE, tier="professional",
    connection=lambda sb: {"base_url": sb.base_url}, written=lambda sb, tenant: sb.written(),
)
SALESFORCE = DemoCrm(
    name="salesforce", title="Salesforce", place="org", people="Leads and Contacts", scored="Leads",
    tenant_file=SALESFORCE_TENANT_FILE, tier="enterprise",
    connection=lambda sb: {"instance_url": sb.base_url, "ca_bundle": sb.ca_cert_path,
                           "client_id": sb.credentials["client_id"], "username": sb.credentials["username"]},
    written=salesforce_written, prepare=add_custom_fields, livens=is_open_lead,
)
PIPEDRIVE = DemoCrm(
    name="pipedrive", title="Pipedrive", place="company", people="persons", scored="persons",
    tenant_file=PIPEDRIVE_TENANT_FILE, tier="premium",
    connection=lambda sb: {"base_url": sb.base_url}, written=pipedrive_written,
    livens=lambda sb, index: not sb.vendor.fates.gone(index),
)
#: the CRMs `leadpulse demo --crm` plays, by name
DEMO_CRMS = {crm.name: crm for crm in (HUBSPOT, SALESFORCE, PIPEDRIVE)}


def secrets_environ(tenant: TenantConfig, credentials: Mapping[str, str]) -> dict[str, str]:
    """The environment variables `tenant` reads its secrets from, each set to the sandbox credential of the same
    name as the secret (``access_token``; ``password``, ``client_secret``)."""
    return {ref.env: credentials[name] for name, ref in tenant.crm.secrets.items() if ref.env}


def keep_portal(sb: Sandbox, folder: DemoFolder, crm: DemoCrm, tenant: TenantConfig, livened: Sequence[str]) -> None:
    """What the sandbox CRM holds of leadpulse's work when the demo ends (its own copy goes with the process):
    the values leadpulse wrote on each person and the tasks it created."""
    kept = {"crm": crm.name, "livened": list(livened), **crm.written(sb, tenant)}
    folder.portal.write_text(json.dumps(kept, indent=1))


@dataclass(frozen=True)
class DemoRun:
    tenant: TenantConfig
    state_dir: Path
    full: RunSummary
    incremental: RunSummary
    livened: tuple[str, ...]


def liven_up(crm: Any, contact_ids: list[str]) -> None:
    """What a week in a real CRM brings: meetings held, replies, answered calls, a promotion."""
    # Each activity carries every attribute the sandboxes' own carry: Salesforce's renders a call's direction and
    # length, and names a meeting and an email by their title and subject.
    for n, contact_id in enumerate(contact_ids):
        crm.add_activity(contact_id, "meeting", outcome="completed", title="Demo", duration_ms=30 * 60_000)
        crm.add_activity(contact_id, "email", direction="inbound", status="sent", subject="Re: Pricing")
        if n % 2 == 0:
            crm.add_activity(contact_id, "call", status="completed", direction="outbound", duration_ms=6 * 60_000,
                             title="Call")
        if n % 5 == 0:
            crm.edit_contact(contact_id, title="VP of Sales")


def chosen_people(sb: Sandbox, crm: DemoCrm, count: int) -> list[str]:
    """`count` of the people `crm` livens, spread evenly over the sandbox."""
    eligible = [index for index in range(sb.crm.size) if crm.livens(sb, index)]
    return [sb.crm.id_of(index) for index in eligible[::max(1, len(eligible) // count)][:count]]


def run_demo(
    folder: DemoFolder,
    *,
    crm: DemoCrm = HUBSPOT,
    contacts: int = 3000,
    seed: int = 7,
    livened: int = 40,
    time_scale: float = 4.0,
    on_run: Callable[[str, RunSummary], None] = lambda name, summary: None,
) -> DemoRun:
    """Full sync, fresh activity, incremental sync, against `crm`'s sandbox with its rate limits on; the tenant
    file, the store and what the CRM holds are kept in `folder`.

    :raises DemoUnavailable: if the demo's tenant file is not here.
    """
    require_demo_file(crm.tenant_file)

    with Sandbox.start(crm.name, contacts, seed, tier=crm.tier, time_scale=time_scale) as sb:
        tenant = folder.keep_tenant(crm.tenant_file, **crm.connection(sb))
        crm.prepare(sb, tenant)
        environ: Mapping[str, str] = {**os.environ, **secrets_environ(tenant, sb.credentials)}
        clock: Clock = ScaledClock(time_scale)
        full = sync_tenant(tenant, state_dir=folder.state, clock=clock, environ=environ)
        on_run("full sync", full)
        chosen = chosen_people(sb, crm, livened)
        liven_up(sb.crm, chosen)
        # a run reads up to its start, and a CRM stamping changes to the second (Pipedrive) leaves what changed in
        # that second to the run after: the incremental run starts in the next second, so it is the one to read it
        time.sleep(1 - time.time() % 1)
        incremental = sync_tenant(tenant, state_dir=folder.state, clock=clock, environ=environ)
        on_run("incremental sync", incremental)
        keep_portal(sb, folder, crm, tenant, chosen)
    return DemoRun(tenant, folder.state, full, incremental, tuple(chosen))


@click.command()
@click.option("--crm", "crm_name", type=click.Choice(sorted(DEMO_CRMS)), default=HUBSPOT.name, show_default=True,
              help="Which CRM the sandbox plays: a HubSpot portal, a Salesforce org or a Pipedrive company.")
@click.option("--contacts", type=click.IntRange(min=100), default=3000, show_default=True,
              help="How many people the sandbox CRM holds (in Salesforce, Leads and Contacts together).")
@click.option("--from-export", is_flag=True,
              help="Score the sample export shipped in config/sample instead (no API and no CRM at all).")
@click.option("--folder", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where to keep the tenant file, store and CRM data the demo made (cleared by the next demo) "
                   "[default: var/demo in the checkout].")
@click.pass_context
def demo(ctx: click.Context, crm_name: str, contacts: int, from_export: bool, folder: Path | None) -> None:
    """Sync a CRM played by the local sandbox: a full run, fresh activity, an incremental run.

    The sandbox plays a HubSpot portal, a Salesforce org with --crm salesforce, or a Pipedrive company with --crm
    pipedrive. The demos use the tenant files
    in leadpulse's checkout (config/demo, config/demo-file.yaml), wherever the command runs from, and keep what
    they made in a folder they print at the end for `explain`, `history` and `status` to look at.
    """
    if from_export and ctx.get_parameter_source("crm_name") is ParameterSource.COMMANDLINE:
        raise click.UsageError("--from-export scores the sample export in config/sample with no CRM at all, so it "
                               f"takes no --crm; leave out --crm {crm_name}, or --from-export to sync the sandbox")
    crm = DEMO_CRMS[crm_name]
    try:
        require_demo_file(EXPORT_TENANT_FILE if from_export else crm.tenant_file)
        _demo(crm, contacts, from_export, DemoFolder.fresh(folder or DEMO_FOLDER))
    except DemoUnavailable as exc:
        raise click.ClickException(str(exc)) from None


def _demo(crm: DemoCrm, contacts: int, from_export: bool, folder: DemoFolder) -> None:
    if from_export:
        tenant = export_tenant(folder)
        print_summaries([sync_tenant(tenant, state_dir=folder.state, clock=ManualClock(DEMO_AS_OF))])
    else:
        console.print(f"Starting a {crm.title} sandbox with {contacts} {crm.people} on 127.0.0.1 ...")
        result = run_demo(folder, crm=crm, contacts=contacts,
                          on_run=lambda name, summary: print_summaries([summary], title=name))
        incremental = result.incremental
        console.print(f"Between the runs, {len(result.livened)} {crm.scored} held a meeting and replied (half of "
                      "them also took a call). The incremental run read what changed since the full one, the "
                      f"{crm.scored} its own write-back touched included, rescored the {incremental.scored} whose "
                      f"data changed or whose score had expired, and wrote the {incremental.changed} whose values "
                      "moved.")
        tenant = result.tenant
    with Store.open(tenant.store_path(folder.state)) as store:
        console.print(band_table(store.band_counts(), Engine(tenant.scoring).band_names))
        leads = open_leads(store, tenant, 5)
        console.print(hottest_table(leads))
        for lead in leads[:1]:
            show_explanation(tenant, store, lead.score)
    print_next_steps(folder, leads, "results" if from_export else crm.place)


def print_next_steps(folder: DemoFolder, leads: Sequence[OpenLead], data: str) -> None:
    """Where the demo left its files (the tenant file, the store and `data`), and the commands that look at them."""
    where = f"--config-dir {shown(folder.config)} --state-dir {shown(folder.state)}"
    contact = leads[0].score.contact_id if leads else "CONTACT"
    kept = f"tenant file, store and {data}"
    console.print(f"The demo's {kept} are in {shown(folder.path)} (the next demo clears it). Look closer:",
                  highlight=False, soft_wrap=True)  # a long path is not cut across lines, so it can be copied
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
