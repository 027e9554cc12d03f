"""The ``leadpulse`` command: validate tenant files, sync, rescore, explain, compare rules, and the demo.

Each command is a thin shell over `core.config`, `core.pipeline` and `core.store`; tables are drawn with rich.
"""

from __future__ import annotations

import logging
import sys
import tempfile
from collections import Counter
from itertools import islice
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from core import logs, ops_cli
from core.ops_cli import data_table, literal
from core.clock import ManualClock, SystemClock
from core.config import ConfigError, TenantConfig, load_config_dir, load_tenant
from core.demo import DemoUnavailable, export_tenant, run_demo
from core.pipeline import RunOutcome, RunSummary, ScoringFailed, compare_bands, rescore_tenant, sync_tenant
from core.progress import terminal_progress
from core.rules import ScoringConfig
from core.model import Contact, Lifecycle
from core.scoring import Engine
from core.store import StoredScore, Store, StoreError

CONFIG_DIR_ENV = ops_cli.CONFIG_DIR_ENV
STATE_DIR_ENV = ops_cli.STATE_DIR_ENV
#: when config/sample was exported (bench/synthetic.py EXPORT_AT): the demo scores as of then, so its output stays put
DEMO_AS_OF = datetime(2025, 6, 2, tzinfo=timezone.utc)

# Piped output (CI logs, the README) gets room for the explanation tables instead of 80 columns.
log = logging.getLogger("leadpulse.cli")
console = Console() if sys.stdout.isatty() else Console(width=120)

config_dir_option = ops_cli.config_dir_option
state_dir_option = ops_cli.state_dir_option
tenant_option = click.option(
    "--tenant", "tenant_name", metavar="NAME", help="The tenant (its name in its file); optional when there is only one."
)


@click.group()
@click.version_option(package_name="leadpulse")
def main() -> None:
    """leadpulse scores CRM contacts with each tenant's rules and writes scores, statuses and tasks back."""


ops_cli.register(main)


# loading tenants ---------------------------------------------------------------------------------------


def load_named(config_dir: Path, name: str | None) -> TenantConfig:
    """The tenant called `name` in `config_dir` (the only one when `name` is None), or a usage error saying why not."""
    tenants, errors = load_config_dir(config_dir)
    if name is None and len(tenants) == 1 and not errors:
        return tenants[0]
    found = [tenant for tenant in tenants if tenant.name == name]
    if found:
        return found[0]
    known = ", ".join(tenant.name for tenant in tenants) or "none"
    problem = "name one with --tenant" if name is None else f"no valid tenant named {name!r}"
    detail = "".join(f"\n  {error}" for error in errors)
    raise click.UsageError(f"{problem} in {config_dir} (tenants: {known}){detail}")


def existing_store(tenant: TenantConfig, state_dir: Path) -> Path:
    """The tenant's store file, or an error saying to sync first: offline commands never create an empty store."""
    path = tenant.store_path(state_dir)
    if not path.exists():
        raise click.ClickException(f"tenant {tenant.name!r} has no store at {path} yet; run `leadpulse sync --tenant {tenant.name}` first")
    return path


def open_store(tenant: TenantConfig, state_dir: Path) -> Store:
    """The tenant's existing store, opened; one that cannot be opened is an error naming it and what to do."""
    path = existing_store(tenant, state_dir)
    try:
        return Store.open(path)
    except StoreError as exc:
        raise click.ClickException(f"tenant {tenant.name!r}: {exc}") from None


# commands ----------------------------------------------------------------------------------------------


@main.command()
@click.argument("files", nargs=-1, type=click.Path(dir_okay=False, path_type=Path))
@config_dir_option
def validate(files: Sequence[Path], config_dir: Path) -> None:
    """Check tenant FILES (default: every file in --config-dir) and say what each one sets up."""
    if files:
        tenants, errors = [], []
        for path in files:
            try:
                tenants.append(load_tenant(path))
            except ConfigError as exc:
                errors.extend(exc.errors)
    else:
        tenants, errors = load_config_dir(config_dir)
    for tenant in tenants:
        say("green", "ok", tenant.summary())
    for error in errors:
        say("red", "error", error)
    if errors:
        raise SystemExit(1)
    if not tenants:
        raise click.UsageError(f"no tenant files (*.yaml, *.yml) in {config_dir}")


@main.command()
@tenant_option
@click.option("--all", "all_tenants", is_flag=True, help="Sync every tenant in --config-dir, one after another.")
@click.option("--dry-run", is_flag=True, help="Pull and score, but send nothing to the CRM (the outbox keeps it).")
@click.option("--full", is_flag=True, help="Pull every stream from the beginning and rescore every contact.")
@config_dir_option
@state_dir_option
def sync(tenant_name: str | None, all_tenants: bool, dry_run: bool, full: bool, config_dir: Path, state_dir: Path) -> None:
    """Pull a tenant's CRM changes, score them and write the results back (one-shot)."""
    if all_tenants:
        tenants, errors = load_config_dir(config_dir)
        for error in errors:
            say("red", "error", error)
    else:
        tenants, errors = [load_named(config_dir, tenant_name)], []
    logs.configure()
    summaries, unfinished = _sync_each(tenants, state_dir, dry_run=dry_run, full=full)
    if unfinished and not all_tenants:
        raise click.ClickException(unfinished[0].reason)
    print_summaries(summaries, unfinished=unfinished)
    if errors or unfinished or any(summary.outcome == RunOutcome.FAILED for summary in summaries):
        raise SystemExit(1)


#: what stops a tenant's run before it begins: a secret missing, its run lock held, its store unreadable
_CANNOT_START = (StoreError, ConfigError)


@dataclass(frozen=True)
class Unfinished:
    """A tenant whose run could not begin (`outcome` "not started") or broke off on a fault in leadpulse or a
    library ("failed"), and why: the error, which names the tenant and what to do, with secrets masked."""

    tenant: str
    outcome: str
    reason: str


NOT_STARTED = "not started"


def _sync_each(tenants: Sequence[TenantConfig], state_dir: Path, *, dry_run: bool,
               full: bool) -> tuple[list[RunSummary], list[Unfinished]]:
    """Sync the tenants one after another; one that cannot start or breaks off is noted and the others still run."""
    summaries: list[RunSummary] = []
    unfinished: list[Unfinished] = []
    for tenant in tenants:
        try:
            summaries.append(_sync_one(tenant, state_dir, dry_run=dry_run, full=full))
        except _CANNOT_START as exc:
            unfinished.append(Unfinished(tenant.name, NOT_STARTED, str(exc)))
        except Exception as exc:
            # The run is recorded as failed in the store; its traceback goes to the log, which masks secrets.
            log.exception("tenant %s: the run broke off", tenant.name)
            reason = logs.redact(f"tenant {tenant.name!r}: {type(exc).__name__}: {exc}")
            unfinished.append(Unfinished(tenant.name, RunOutcome.FAILED.value, reason))
    return summaries, unfinished


def _sync_one(tenant: TenantConfig, state_dir: Path, *, dry_run: bool, full: bool) -> RunSummary:
    logs.register_secrets(tenant.resolve_secrets().values())
    with terminal_progress(console, tenant.name) as progress:
        summary = sync_tenant(tenant, state_dir=state_dir, dry_run=dry_run, full=full, progress=progress)
    if dry_run:
        with open_store(tenant, state_dir) as store:
            console.print(pending_table(store, tenant, run_id=summary.run_id))
    return summary


@main.command()
@tenant_option
@click.option("--due", is_flag=True, help="Only contacts whose data changed or whose score expired (default: all).")
@config_dir_option
@state_dir_option
def score(tenant_name: str | None, due: bool, config_dir: Path, state_dir: Path) -> None:
    """Rescore the stored contacts with the current rules and print the band distribution."""
    tenant = load_named(config_dir, tenant_name)
    existing_store(tenant, state_dir)
    try:
        summary = rescore_tenant(tenant, state_dir=state_dir, full=not due)
    except StoreError as exc:
        raise click.ClickException(str(exc)) from None
    except ScoringFailed as exc:
        raise click.ClickException(f"tenant {tenant.name!r}: {exc}") from None
    console.print(f"{literal(tenant.name)}: scored {summary.scored} contacts, {summary.changed} changed, in {summary.seconds:.2f}s")
    with open_store(tenant, state_dir) as store:
        console.print(band_table(store.band_counts(), Engine(tenant.scoring).band_names))


@main.command()
@click.argument("contact_id", metavar="CONTACT")
@tenant_option
@config_dir_option
@state_dir_option
def explain(contact_id: str, tenant_name: str | None, config_dir: Path, state_dir: Path) -> None:
    """Show CONTACT's current score rule by rule: which rules fired, how often, for how many points."""
    tenant = load_named(config_dir, tenant_name)
    with open_store(tenant, state_dir) as store:
        stored = store.score(contact_id)
        if stored is None:
            raise click.ClickException(f"tenant {tenant.name!r}: contact {contact_id!r} has no score in {store.path}")
        print_explanation(stored, store.contact(contact_id))


@main.command()
@click.argument("contact_id", metavar="CONTACT")
@tenant_option
@config_dir_option
@state_dir_option
def history(contact_id: str, tenant_name: str | None, config_dir: Path, state_dir: Path) -> None:
    """List CONTACT's score, band and status changes, oldest first."""
    tenant = load_named(config_dir, tenant_name)
    with open_store(tenant, state_dir) as store:
        entries = store.history(contact_id)
    if not entries:
        raise click.ClickException(f"tenant {tenant.name!r}: no history for contact {contact_id!r}")
    rows = [
        (entry.at.strftime("%Y-%m-%d %H:%M"), entry.run_id or "-", _move(entry.old_total, entry.new_total),
         _move(entry.old_band, entry.new_band), _move(entry.old_status, entry.new_status))
        for entry in entries
    ]
    console.print(data_table(("when", "run", "score", "band", "status"), rows,
                             title=f"{tenant.name}: history of {contact_id}"))


@main.command()
@click.option("--rules", "rules_file", required=True, type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="A copy of the tenant's file (same tenant name and fields map) with the proposed scoring section.")
@tenant_option
@config_dir_option
@state_dir_option
def compare(rules_file: Path, tenant_name: str | None, config_dir: Path, state_dir: Path) -> None:
    """Count how many stored contacts would move from each band to each other band under the --rules file."""
    tenant = load_named(config_dir, tenant_name)
    proposed = proposed_scoring(tenant, rules_file)
    with open_store(tenant, state_dir) as store:
        moves = compare_bands(store, tenant.scoring, proposed, SystemClock().now())
    console.print(move_table(moves, Engine(tenant.scoring).band_names, Engine(proposed).band_names))
    moved = sum(n for (before, after), n in moves.items() if before != after)
    console.print(f"{moved} of {sum(moves.values())} contacts would change band")


def proposed_scoring(tenant: TenantConfig, rules_file: Path) -> ScoringConfig:
    """The scoring section of `rules_file`, if that file is a version of `tenant`'s own: the same tenant name and the
    same ``fields`` map, without which its rules would read the stored contacts differently from how they were pulled.
    """
    try:
        proposed = load_tenant(rules_file)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    if proposed.name != tenant.name:
        raise click.ClickException(
            f"{rules_file} is a file of tenant {proposed.name!r}, not of tenant {tenant.name!r} ({tenant.source_path}); "
            f"to try new rules on {tenant.name!r}, copy {tenant.source_path} and change its scoring section"
        )
    changed = sorted(name for name in {*proposed.fields, *tenant.fields}
                     if proposed.fields.get(name) != tenant.fields.get(name))
    if changed:
        raise click.ClickException(
            f"{rules_file} maps fields {', '.join(changed)} differently from {tenant.source_path} (tenant "
            f"{tenant.name!r}), whose map the stored contacts were pulled with; give {rules_file} the fields section "
            f"of {tenant.source_path} and change only its scoring section"
        )
    return proposed.scoring


@main.command()
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
                          f"its own write-back touched included, rescored the {incremental.scored} whose data changed or "
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


# rendering ---------------------------------------------------------------------------------------------


def summary_table(summaries: Sequence[RunSummary], title: str = "sync", *,
                  unfinished: Sequence[Unfinished] = ()) -> Table:
    headers = ("tenant", "run", "outcome", "pulled", "scored", "changed", "written", "tasks", "API calls", "429s",
               "seconds")
    rows = [
        (s.tenant, s.run_id, s.outcome.value, s.pulled, s.scored, s.changed, s.written, s.tasks, s.api_calls,
         s.rate_limited, f"{s.seconds:.2f}")
        for s in summaries
    ]
    rows += [(n.tenant, "-", n.outcome, *["-"] * 8) for n in unfinished]
    return data_table(headers, rows, title=title)


def say(style: str, label: str, text: str) -> None:
    """One line: `label` in `style`, then `text` as it is (rich markup in it is shown, not applied), unwrapped."""
    console.print(f"[{style}]{label}[/{style}] {literal(text)}", highlight=False, soft_wrap=True)


def print_summaries(summaries: Sequence[RunSummary], title: str = "sync", *,
                    unfinished: Sequence[Unfinished] = ()) -> None:
    """The runs' table, then each run's error in full (a table cell would cut it), and why any tenant's run did
    not start or broke off."""
    console.print(summary_table(summaries, title, unfinished=unfinished))
    for s in summaries:
        if s.error:
            say("red", s.outcome.value, s.error)
    for n in unfinished:
        say("red", n.outcome, n.reason)


def pending_table(store: Store, tenant: TenantConfig, *, run_id: int, shown: int = 15) -> Table:
    """What the CRM would be sent: the first pending writes and tasks, and how many there are in all.

    `run_id` is the dry run's: the outbox lists the pending rows not tried in a given run, and a dry run tries
    none, so every pending row is listed, the ones never tried included.
    """
    counts = store.outbox.counts()
    writes, tasks = counts.get(("write", "pending"), 0), counts.get(("task", "pending"), 0)
    rows = [(write.contact_id, ", ".join(f"{name}={value}" for name, value in write.values.items()))
            for write in store.outbox.pending_writes(shown, run_id=run_id)]
    rows += [(task.contact_id, f"task for owner {task.owner_id or '-'}: {task.subject}")
             for task in store.outbox.pending_tasks(shown, run_id=run_id)]
    return data_table(("contact", "would write"), rows,
                      title=f"{tenant.name}: dry run, {writes} writes and {tasks} tasks not sent")


@dataclass(frozen=True)
class OpenLead:
    """A well-scored contact that is not a customer yet, and its lifecycle status in the CRM's words: the one
    leadpulse set when it set one (the CRM may not have it yet: a dry run, a backlog), else the CRM's as last pulled."""

    score: StoredScore
    contact: Contact | None
    status: str | None


def open_leads(store: Store, tenant: TenantConfig, n: int) -> list[OpenLead]:
    """The `n` best-scored contacts that are not customers yet."""
    customer = tenant.scoring.lifecycle.values.get(Lifecycle.CUSTOMER)
    leads = (_lead(tenant, s, store.contact(s.contact_id)) for s in store.top_scores(n * 20))
    return list(islice((lead for lead in leads if not _is_customer(lead, customer)), n))


def _is_customer(lead: OpenLead, customer: str | None) -> bool:
    # The CRM's status counts too: a customer there may still carry the stage leadpulse set before the deal closed.
    return customer is not None and customer in (lead.status, getattr(lead.contact, "status", None))


def _lead(tenant: TenantConfig, stored: StoredScore, contact: Contact | None) -> OpenLead:
    values = tenant.scoring.lifecycle.values
    # The store keeps the neutral stage leadpulse set; the table speaks the CRM's values, as the CRM's status does.
    status = values.get(Lifecycle(stored.status), stored.status) if stored.status else getattr(contact, "status", None)
    return OpenLead(stored, contact, status)


def hottest_table(leads: Sequence[OpenLead]) -> Table:
    rows = [
        (lead.score.contact_id, getattr(lead.contact, "name", None) or "-", f"{lead.score.total:g}", lead.score.band,
         lead.score.grade or "-", lead.status or "-", _top_reasons(lead.score))
        for lead in leads
    ]
    return data_table(("contact", "name", "score", "band", "grade", "status", "why"), rows, title="hottest open leads")


def _top_reasons(stored: StoredScore) -> str:
    return "; ".join(c["detail"] for c in sorted(stored.contributions, key=lambda c: -abs(c["points"]))[:3])


def band_table(counts: dict[str, int], band_names: Sequence[str]) -> Table:
    total = sum(counts.values()) or 1
    rows = [(band, counts.get(band, 0), f"{100 * counts.get(band, 0) / total:.1f}%")
            for band in reversed([*band_names, *sorted(set(counts) - set(band_names))])]
    return data_table(("band", "contacts", "share"), rows, title="band distribution")


def print_explanation(stored: StoredScore, contact: object) -> None:
    who = getattr(contact, "name", None) or getattr(contact, "email", None) or stored.contact_id
    axes = ", ".join(f"{name} {value:g}" for name, value in stored.axes.items())
    title = (f"{who} ({stored.contact_id}): {stored.total:g} {stored.band}, grade {stored.grade or '-'}, "
             f"{(stored.quadrant or '-').replace('_', ' ')} [{axes}]")
    rows = [(c["rule_id"], c["axis"], f"{c['points']:+g}", c["occurrences"], c["detail"]) for c in stored.contributions]
    console.print(data_table(("rule", "axis", "points", "times", "why"), rows, title=title))


def move_table(moves: Counter[tuple[str, str]], before: Sequence[str], after: Sequence[str]) -> Table:
    rows = [(band, *(moves.get((band, new), 0) for new in after)) for band in before]
    return data_table(("now \\ proposed", *after), rows, title="band moves")


def _move(old: object, new: object) -> str:
    if old == new or old is None:
        return "-" if new is None else _text(new)
    return f"{_text(old)} -> {_text(new)}"


def _text(value: object) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)
