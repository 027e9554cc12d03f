"""``leadpulse validate`` and ``leadpulse sync``: check tenant files, and run one-shot syncs."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import click

from leadpulse.core.cli.overlap_warnings import warn_overlaps
from leadpulse.core.cli.progress import terminal_progress
from leadpulse.core.cli.render import NOT_STARTED, Unfinished, console, pending_table, print_summaries, say
from leadpulse.core.cli.tenants import (
    config_dir_option,
    load_named,
    load_tenants,
    log_level_option,
    open_store,
    services,
    state_dir_option,
    tenant_option,
    warn_without_connector,
)
from leadpulse.core.config.files import load_tenant, one_file_per_tenant
from leadpulse.core.config.tenant import TenantConfig
from leadpulse.core.contract import ConnectorFactory
from leadpulse.core.errors import ConfigError, StoreError
from leadpulse.core.runtime import logs
from leadpulse.core.runtime.examples import run_examples
from leadpulse.core.runtime.pipeline import sync_tenant
from leadpulse.core.runtime.run import RunSummary
from leadpulse.core.store.runs import RunOutcome

log = logging.getLogger("leadpulse.cli")

#: the exit code of a sync whose runs all finished but one or more skipped or had refused past its tolerance
EXIT_PARTIAL = 3


@click.command()
@click.argument("files", nargs=-1, type=click.Path(dir_okay=False, path_type=Path))
@config_dir_option
@state_dir_option
def validate(files: Sequence[Path], config_dir: Path, state_dir: Path) -> None:
    """Check tenant FILES (default: every file in --config-dir), say what each one sets up, and run each file's
    examples: every example must get the score, band, grade, quadrant or status it expects.

    Also warns (without failing) of engagement rules one activity can count for together, with an example value
    from the tenant's store in --state-dir when it has one.
    """
    if files:
        tenants, errors = [], []
        for path in files:
            try:
                tenants.append(load_tenant(path))
            except ConfigError as exc:
                errors.extend(exc.errors)
        tenants, doubled = one_file_per_tenant(tenants)
        errors.extend(doubled)
    else:
        tenants, errors = load_tenants(config_dir)
    failed = [tenant for tenant in tenants if not _examples_pass(tenant)]
    for error in errors:
        say("red", "error", str(error))
    warn_without_connector(tenants)
    for tenant in tenants:
        warn_overlaps(tenant, state_dir)
    if errors or failed:
        raise SystemExit(1)


def _examples_pass(tenant: TenantConfig) -> bool:
    """Print the tenant's summary with how its examples fared, then each example's differences."""
    run = run_examples(tenant)
    text = f"{tenant.summary()}\n  {run.summary()}"
    if not run.failed:
        say("green", "ok", text)
        return True
    say("red", "failed", text)
    for line in run.failures():
        say("red", "error", line)
    return False


@click.command()
@tenant_option
@click.option("--all", "all_tenants", is_flag=True, help="Sync every tenant in --config-dir, one after another.")
@click.option("--dry-run", is_flag=True, help="Pull and score, but send nothing to the CRM (the outbox keeps it).")
@click.option("--full", is_flag=True, help="Pull every stream from the beginning and rescore every contact.")
@config_dir_option
@state_dir_option
@log_level_option
def sync(
    tenant_name: str | None, all_tenants: bool, dry_run: bool, full: bool, config_dir: Path, state_dir: Path,
    log_level: str,
) -> None:
    """Pull a tenant's CRM changes, score them and write the results back (one-shot).

    Exits 0 when every run succeeded, 3 when one was partial (it skipped more records, or had more writes refused,
    than its tenant's tolerance), 1 when one failed or could not start.
    """
    if all_tenants:
        tenants, errors = load_tenants(config_dir)
        for error in errors:
            say("red", "error", str(error))
    else:
        tenants, errors = [load_named(config_dir, tenant_name)], []
    logs.configure(level=log_level.upper())
    summaries, unfinished = _sync_each(tenants, state_dir, dry_run=dry_run, full=full, connectors=services().connectors)
    if unfinished and not all_tenants:
        raise click.ClickException(unfinished[0].reason)
    print_summaries(summaries, unfinished=unfinished)
    if errors or unfinished or any(summary.outcome == RunOutcome.FAILED for summary in summaries):
        raise SystemExit(1)
    if any(summary.outcome == RunOutcome.PARTIAL for summary in summaries):
        raise SystemExit(EXIT_PARTIAL)


#: what stops a tenant's run before it begins: a secret missing, its run lock held, its store unreadable
_CANNOT_START = (StoreError, ConfigError)


def _sync_each(tenants: Sequence[TenantConfig], state_dir: Path, *, dry_run: bool, full: bool,
               connectors: Callable[[str], ConnectorFactory]) -> tuple[list[RunSummary], list[Unfinished]]:
    """Sync the tenants one after another; one that cannot start or breaks off is noted and the others still run."""
    summaries: list[RunSummary] = []
    unfinished: list[Unfinished] = []
    for tenant in tenants:
        try:
            summaries.append(_sync_one(tenant, state_dir, dry_run=dry_run, full=full, connectors=connectors))
        except _CANNOT_START as exc:
            unfinished.append(Unfinished(tenant.name, NOT_STARTED, str(exc)))
        except Exception as exc:
            # The run is recorded as failed in the store; its traceback goes to the log, which masks secrets.
            log.exception("tenant %s: the run broke off", tenant.name)
            reason = logs.redact(f"tenant {tenant.name!r}: {type(exc).__name__}: {exc}")
            unfinished.append(Unfinished(tenant.name, RunOutcome.FAILED.value, reason))
    return summaries, unfinished


def _sync_one(tenant: TenantConfig, state_dir: Path, *, dry_run: bool, full: bool,
              connectors: Callable[[str], ConnectorFactory]) -> RunSummary:
    logs.register_secrets(tenant.resolve_secrets().values())
    with terminal_progress(console, tenant.name) as progress:
        summary = sync_tenant(tenant, state_dir=state_dir, dry_run=dry_run, full=full, progress=progress,
                              connectors=connectors)
    if dry_run:
        with open_store(tenant, state_dir) as store:
            console.print(pending_table(store, tenant, run_id=summary.run_id))
    return summary
