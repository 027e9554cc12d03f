"""Operations commands: ``leadpulse daemon``, ``leadpulse status`` and ``leadpulse deploy k8s``."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

import click
from rich.console import Console

from leadpulse.core.cli import k8s
from leadpulse.core.cli.render import data_table
from leadpulse.core.cli.tenants import (
    config_dir_option,
    load_tenants,
    log_level_option,
    state_dir_option,
    warn_without_connector,
)
from leadpulse.core.errors import DeployError
from leadpulse.core.runtime.daemon import RUNS_IN_FLIGHT, DaemonSettings, run
from leadpulse.core.runtime.status import TenantStatus, read_status
from leadpulse.core.runtime.workers import usable_cores
from leadpulse.core.store.runs import RunRecord


@click.command("daemon")
@config_dir_option
@state_dir_option
@click.option("--max-parallel", type=click.IntRange(min=1), default=RUNS_IN_FLIGHT, show_default=True,
              help="Tenant runs in flight at once. A run mostly waits on its CRM's rate limits, so this can be many "
                   "times the cores.")
@click.option("--max-scoring", type=click.IntRange(min=1), default=None, show_default="the cores this process may use",
              help="Runs scoring at once: the part of a run that needs a core.")
@click.option("--grace", "grace_seconds", type=click.FloatRange(min=0), default=30.0, show_default=True,
              help="Seconds SIGTERM waits for running syncs to finish their batch and checkpoint.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address of /healthz, /readyz and /metrics (0.0.0.0 in a container).")
@click.option("--port", type=click.IntRange(min=0, max=65535), default=9464, show_default=True,
              help="Port of /healthz, /readyz and /metrics.")
@log_level_option
@click.pass_context
def daemon_command(ctx: click.Context, config_dir: Path, state_dir: Path, max_parallel: int,
                   max_scoring: int | None, grace_seconds: float, host: str, port: int, log_level: str) -> None:
    """Sync every tenant in --config-dir on its own schedule until SIGTERM.

    SIGHUP re-reads the folder; SIGTERM or SIGINT let running syncs finish their batch and exit 0.
    """
    settings = DaemonSettings(
        config_dir=config_dir, state_dir=state_dir, max_parallel=max_parallel,
        max_scoring=max_scoring or usable_cores(), grace_seconds=grace_seconds, host=host, port=port,
    )
    ctx.exit(run(settings, log_level=log_level.upper()))


@click.command("status")
@config_dir_option
@state_dir_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object per tenant instead of a table.")
@click.option("--parked", "parked", is_flag=True,
              help="Also list the writes and tasks given up on after repeated refusals, with the CRM's reasons.")
def status_command(config_dir: Path, state_dir: Path, as_json: bool, parked: bool) -> None:
    """Per tenant: the last finished sync, its outcome and counts, the outbox backlog and the last error.

    Dry runs (`sync --dry-run`) and offline rescores (`leadpulse score`) send nothing to the CRM, so they are not
    shown as the last sync. A run started since it and not finished (going now, or killed) is shown apart, with
    when it started.
    """
    tenants, errors = load_tenants(config_dir)
    shown = PARKED_SHOWN if parked else 0
    statuses = [read_status(tenant, state_dir, parked=shown) for tenant in sorted(tenants, key=lambda t: t.name)]
    if as_json:
        for status in statuses:
            click.echo(json.dumps(status.as_dict(), default=str))
    else:
        _print_table(statuses)
        for status in statuses if parked else ():
            _print_parked(status)
    unreadable = [f"tenant {s.tenant!r}: {s.store_error}" for s in statuses if s.store_error]
    for error in [*errors, *unreadable]:
        click.echo(f"error: {error}", err=True)
    if errors or unreadable:
        sys.exit(1)


def _print_table(statuses: Sequence[TenantStatus]) -> None:
    rows = [
        (s.tenant, _when(s.last_sync), _outcome(s), *(_num(s.last_sync, name) for name in _STATUS_COUNTS),
         "-" if s.backlog is None else s.backlog, _unfinished(s), s.store_error or s.last_error or "")
        for s in statuses
    ]
    headers = ("tenant", "last sync", "outcome", *_STATUS_COUNTS, "backlog", "unfinished run", "last error")
    Console(width=200).print(data_table(headers, rows))


#: the counts of the last sync the status table shows
_STATUS_COUNTS = ("pulled", "skipped", "written", "tasks", "refused")
#: how many parked rows `status --parked` lists per tenant
PARKED_SHOWN = 50


def _print_parked(status: TenantStatus) -> None:
    if not status.parked:
        return
    rows = [(row.key, row.kind, row.contact_id, row.attempts, row.error) for row in status.parked_rows]
    title = (f"{status.tenant}: {status.parked} parked (newest {len(rows)} shown); each is tried again when its "
             "values change")
    Console(width=200).print(data_table(("key", "kind", "contact", "attempts", "reason"), rows, title=title))


def _outcome(status: TenantStatus) -> str:
    if status.last_sync is not None and status.last_sync.outcome is not None:
        return status.last_sync.outcome.value
    if status.store_error:
        return "store unreadable"
    return "none finished" if status.unfinished else "never synced"


def _unfinished(status: TenantStatus) -> str:
    """A run going now, or killed: its row was never closed, so it is told apart from the last finished run."""
    if status.unfinished is None:
        return "-"
    return f"run {status.unfinished.id} started at {_when(status.unfinished)}, not finished"


def _when(run: RunRecord | None) -> str:
    """When a run started, to the second, as a table shows it."""
    return run.started_at.strftime("%Y-%m-%d %H:%M:%S UTC") if run else "-"


def _num(run: RunRecord | None, name: str) -> str:
    return "-" if run is None else str(getattr(run, name))


@click.group("deploy")
def deploy_group() -> None:
    """Write deployment manifests from a config folder."""


@deploy_group.command("k8s")
@config_dir_option
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder to write the manifests into (created if missing).")
@click.option("--image", default=k8s.DEFAULT_IMAGE, show_default=True, help="Container image to run.")
@click.option("--namespace", default="leadpulse", show_default=True, help="Kubernetes namespace of every manifest.")
@click.option("--secret", "secret_name", default=k8s.SECRET_NAME, show_default=True,
              help="Secret whose keys become the tenants' environment (their {env: NAME} secrets).")
def deploy_k8s_command(config_dir: Path, out_dir: Path, image: str, namespace: str, secret_name: str) -> None:
    """One CronJob per tenant (concurrencyPolicy Forbid) running `leadpulse sync --tenant NAME`.

    Also writes the ConfigMap of the tenant files and a volume claim per tenant for its SQLite store.
    Tenant files that do not load are reported and left out.
    """
    tenants, errors = load_tenants(config_dir)
    warn_without_connector(tenants)
    plan = k8s.Plan(image=image, namespace=namespace, secret_name=secret_name)
    try:
        written = k8s.write_cronjobs(tenants, config_dir, out_dir, plan)
    except DeployError as exc:
        raise click.ClickException(str(exc)) from None
    for path in written:
        click.echo(f"wrote {path}")
    for error in errors:
        click.echo(f"error: {error}", err=True)
    if errors:
        sys.exit(1)
