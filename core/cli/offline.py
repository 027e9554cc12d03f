"""The offline commands, which read a tenant's store and call no CRM: ``score``, ``explain``, ``history`` and
``compare``."""

from __future__ import annotations

from pathlib import Path

import click

from leadpulse.core.cli.render import (
    band_table,
    console,
    data_table,
    literal,
    move,
    print_comparison,
    print_explanation,
    say,
)
from leadpulse.core.cli.tenants import (
    config_dir_option,
    existing_store,
    load_named,
    open_store,
    state_dir_option,
    tenant_option,
)
from leadpulse.core.clock import SystemClock
from leadpulse.core.config.files import load_tenant
from leadpulse.core.config.tenant import TenantConfig
from leadpulse.core.engine.rules import ScoringConfig
from leadpulse.core.engine.scoring import Engine
from leadpulse.core.errors import ConfigError, ScoringFailed, StoreError
from leadpulse.core.runtime.comparison import compare_rules
from leadpulse.core.runtime.pipeline import rescore_tenant
from leadpulse.core.store.opening import damaged
from leadpulse.core.store.store import Store, StoredScore


@click.command()
@tenant_option
@click.option("--due", is_flag=True, help="Only contacts whose data changed or whose score expired (default: all).")
@config_dir_option
@state_dir_option
def score(tenant_name: str | None, due: bool, config_dir: Path, state_dir: Path) -> None:
    """Rescore the stored contacts with the current rules and print the band distribution.

    Only the store changes: what the new scores change in the CRM is queued, and the next `leadpulse sync` writes it.
    """
    tenant = load_named(config_dir, tenant_name)
    existing_store(tenant, state_dir)
    try:
        summary = rescore_tenant(tenant, state_dir=state_dir, full=not due)
    except StoreError as exc:
        raise click.ClickException(str(exc)) from None
    except ScoringFailed as exc:
        raise click.ClickException(f"tenant {tenant.name!r}: {exc}") from None
    console.print(f"{literal(tenant.name)}: scored {summary.scored} contacts, {summary.changed} changed, "
                  f"in {summary.seconds:.2f}s")
    with open_store(tenant, state_dir) as store:
        console.print(band_table(store.band_counts(), Engine(tenant.scoring).band_names))
        pending = store.outbox.counts()
    say("yellow", "note", unsent(tenant, summary.changed, pending["write", "pending"], pending["task", "pending"]))


def unsent(tenant: TenantConfig, changed: int, writes: int, tasks: int) -> str:
    """What `score` says of the CRM: untouched, and what the next sync writes there."""
    waiting = (f"{writes} {_plural(writes, 'write')} and {tasks} {_plural(tasks, 'task')} wait in the tenant's outbox"
               if writes or tasks else "nothing waits in the tenant's outbox")
    sync = f"`leadpulse sync --tenant {tenant.name}`"
    if not changed:
        return (f"no CRM was changed, and no value that leadpulse writes to it changed: the next {sync} has nothing "
                f"new to write from this rescore ({waiting})")
    return (f"no CRM was changed: the next {sync} writes the new values of {changed} {_plural(changed, 'contact')} "
            f"({waiting})")


def _plural(n: int, noun: str) -> str:
    return noun if n == 1 else noun + "s"


@click.command()
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
        show_explanation(tenant, store, stored)


def show_explanation(tenant: TenantConfig, store: Store, stored: StoredScore) -> None:
    """Print a stored score rule by rule, with the value each rule matched and where the contact stands in the
    lifecycle, both told by the tenant's rules from the stored contact and activities."""
    contact = store.contact(stored.contact_id)
    values: dict[str, str] = {}
    standing = None
    if contact is not None:
        engine = Engine(tenant.scoring)
        rows = [(a.contact_id, a.id, a.kind, a.occurred_at, a.vendor_type, a.attributes)
                for a in store.activities(stored.contact_id)]
        values = engine.matched_values(contact, rows, stored.as_of)
        standing = engine.lifecycle_standing(engine.score_rows(contact, rows, stored.as_of))
    print_explanation(stored, contact, values, standing)


@click.command()
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
        (entry.at.strftime("%Y-%m-%d %H:%M"), entry.run_id or "-", move(entry.old_total, entry.new_total),
         move(entry.old_band, entry.new_band), move(entry.old_status, entry.new_status))
        for entry in entries
    ]
    console.print(data_table(("when", "run", "score", "band", "status"), rows,
                             title=f"{tenant.name}: history of {contact_id}"))


@click.command()
@click.option("--rules", "rules_file", required=True, type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="A copy of the tenant's file (same tenant name and fields map) with the proposed scoring section.")
@click.option("--list", "listed", is_flag=True,
              help="Also list each contact that would move: its band, score and lifecycle status, now and proposed.")
@tenant_option
@config_dir_option
@state_dir_option
def compare(rules_file: Path, listed: bool, tenant_name: str | None, config_dir: Path, state_dir: Path) -> None:
    """Count how many stored contacts would move from each band to each other band under the --rules file, and
    how many would get another lifecycle status.

    Band ladders of the same length are paired by position, so a band renamed in the --rules file moves nobody.
    """
    tenant = load_named(config_dir, tenant_name)
    proposed = proposed_scoring(tenant, rules_file)
    with open_store(tenant, state_dir) as store:
        comparison = compare_rules(store, tenant, proposed, SystemClock().now(), listed=listed)
    print_comparison(comparison, Engine(tenant.scoring).band_names, Engine(proposed).band_names)


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
            f"{rules_file} is a file of tenant {proposed.name!r}, not of tenant {tenant.name!r} "
            f"({tenant.source_path}); "
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


@click.command()
@tenant_option
@config_dir_option
@state_dir_option
def check(tenant_name: str | None, config_dir: Path, state_dir: Path) -> None:
    """Check the tenant's store as SQLite can (every page, every index) and say whether it is sound."""
    tenant = load_named(config_dir, tenant_name)
    path = existing_store(tenant, state_dir)
    try:
        with Store.reading(path) as store:
            problems = store.verify(thorough=True)
    except StoreError as exc:
        raise click.ClickException(f"tenant {tenant.name!r}: {exc}") from None
    if problems:
        raise click.ClickException(f"tenant {tenant.name!r}: {damaged(path, '; '.join(problems))}")
    console.print(f"{literal(tenant.name)}: {literal(path)} is sound (SQLite's integrity check finds nothing wrong)")
