"""Operations commands: ``leadpulse daemon``, ``leadpulse status`` and ``leadpulse deploy k8s``.

`register(group)` adds them to the main click group; ``python -m core.daemon`` runs `daemon_command` alone.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from core import k8s

if TYPE_CHECKING:  # rich is imported when a table is drawn: the daemon never draws one
    from rich.table import Table

CONFIG_DIR_ENV = "LEADPULSE_CONFIG_DIR"
STATE_DIR_ENV = "LEADPULSE_STATE_DIR"

# The folder options of every leadpulse command, the offline ones of core.cli included, and `literal` and
# `data_table` below, which draw all of their output: defined here because core.cli imports this module.
config_dir_option = click.option(
    "--config-dir", type=click.Path(file_okay=False, path_type=Path), envvar=CONFIG_DIR_ENV, default=Path("config"),
    show_default=True, help=f"Folder of tenant files (*.yaml), one per tenant. Env: {CONFIG_DIR_ENV}.",
)
state_dir_option = click.option(
    "--state-dir", type=click.Path(file_okay=False, path_type=Path), envvar=STATE_DIR_ENV, default=Path("var"),
    show_default=True, help=f"Folder of the per-tenant SQLite stores. Env: {STATE_DIR_ENV}.",
)


@click.command("daemon")
@config_dir_option
@state_dir_option
@click.option("--max-parallel", type=click.IntRange(min=1), default=4, show_default=True,
              help="Tenants synced at the same time.")
@click.option("--grace", "grace_seconds", type=click.FloatRange(min=0), default=30.0, show_default=True,
              help="Seconds SIGTERM waits for running syncs to finish their batch and checkpoint.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address of /healthz, /readyz and /metrics (0.0.0.0 in a container).")
@click.option("--port", type=click.IntRange(min=0, max=65535), default=9464, show_default=True,
              help="Port of /healthz, /readyz and /metrics.")
@click.option("--log-level", default="INFO", show_default=True,
              type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False))
@click.pass_context
def daemon_command(ctx: click.Context, config_dir: Path, state_dir: Path, max_parallel: int, grace_seconds: float,
                   host: str, port: int, log_level: str) -> None:
    """Sync every tenant in --config-dir on its own schedule until SIGTERM.

    SIGHUP re-reads the folder; SIGTERM or SIGINT let running syncs finish their batch and exit 0.
    """
    from core.daemon import DaemonSettings, run

    settings = DaemonSettings(
        config_dir=config_dir, state_dir=state_dir, max_parallel=max_parallel, grace_seconds=grace_seconds,
        host=host, port=port,
    )
    ctx.exit(run(settings, log_level=log_level.upper()))


@click.command("status")
@config_dir_option
@state_dir_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object per tenant instead of a table.")
def status_command(config_dir: Path, state_dir: Path, as_json: bool) -> None:
    """Per tenant: the last finished sync, its outcome and counts, the outbox backlog and the last error.

    Dry runs (`sync --dry-run`) and offline rescores (`leadpulse score`) send nothing to the CRM, so they are not
    shown as the last sync. A run started since it and not finished (going now, or killed) is shown apart, with
    when it started.
    """
    from core.status import read_statuses

    statuses, errors = read_statuses(config_dir, state_dir)
    if as_json:
        for status in statuses:
            click.echo(json.dumps(status.as_dict(), default=str))
    else:
        _print_table(statuses)
    unreadable = [f"tenant {s.tenant!r}: {s.store_error}" for s in statuses if s.store_error]
    for error in [*errors, *unreadable]:
        click.echo(f"error: {error}", err=True)
    if errors or unreadable:
        sys.exit(1)


def _print_table(statuses: list[Any]) -> None:
    from rich.console import Console

    rows = [
        (s.tenant, _when(s.last_run_at), s.outcome or _never(s), _num(s.pulled), _num(s.written), _num(s.tasks),
         _num(s.backlog), _unfinished(s), s.store_error or s.last_error or "")
        for s in statuses
    ]
    headers = ("tenant", "last sync", "outcome", "pulled", "written", "tasks", "backlog", "unfinished run", "last error")
    Console(width=200).print(data_table(headers, rows))


def _never(status: Any) -> str:
    if status.store_error:
        return "store unreadable"
    return "none finished" if status.unfinished_run_id else "never synced"


def _unfinished(status: Any) -> str:
    """A run going now, or killed: its row was never closed, so it is told apart from the last finished run."""
    if status.unfinished_run_id is None:
        return "-"
    return f"run {status.unfinished_run_id} started at {_when(status.unfinished_since)}, not finished"


def literal(value: object) -> str:
    """`value` as rich markup that shows it as is: data and error text (a name with "[/b]", a pattern with
    "[a-z]") are never read as markup, while the styling written around them ("[red]...[/red]") still applies."""
    from rich.markup import escape

    return escape(str(value))


def data_table(headers: Sequence[str], rows: Iterable[Sequence[object]], *, title: str | None = None) -> Table:
    """A rich table of data: its headers, title and cells are shown as given (see `literal`)."""
    from rich.table import Table

    table = Table(*map(literal, headers), title=None if title is None else literal(title))
    for row in rows:
        table.add_row(*map(literal, row))
    return table


def _when(moment: str | None) -> str:
    """A store timestamp (ISO 8601, UTC) to the second, as a table shows it."""
    return datetime.fromisoformat(moment).strftime("%Y-%m-%d %H:%M:%S UTC") if moment else "-"


def _num(value: int | None) -> str:
    return "-" if value is None else str(value)


@click.group("deploy")
def deploy_group() -> None:
    """Write deployment manifests from a config folder."""


@deploy_group.command("k8s")
@config_dir_option
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder to write the manifests into (created if missing).")
@click.option("--image", default=k8s.DEFAULT_IMAGE, show_default=True, help="Container image to run.")
@click.option("--namespace", default="leadpulse", show_default=True)
@click.option("--secret", "secret_name", default=k8s.SECRET_NAME, show_default=True,
              help="Secret whose keys become the tenants' environment (their {env: NAME} secrets).")
def deploy_k8s_command(config_dir: Path, out_dir: Path, image: str, namespace: str, secret_name: str) -> None:
    """One CronJob per tenant (concurrencyPolicy Forbid) running `leadpulse sync --tenant NAME`.

    Also writes the ConfigMap of the tenant files and a volume claim per tenant for its SQLite store.
    Tenant files that do not load are reported and left out.
    """
    from core.daemon import _config_loader

    tenants, errors = _config_loader(config_dir)
    plan = k8s.Plan(image=image, namespace=namespace, secret_name=secret_name)
    written = k8s.write_cronjobs(tenants, config_dir, out_dir, plan)
    for path in written:
        click.echo(f"wrote {path}")
    for error in errors:
        click.echo(f"error: {error}", err=True)
    if errors:
        sys.exit(1)


def register(group: click.Group) -> None:
    """Add ``daemon``, ``status`` and ``deploy`` to the main command group."""
    group.add_command(daemon_command)
    group.add_command(status_command)
    group.add_command(deploy_group)
