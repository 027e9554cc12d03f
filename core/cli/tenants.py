"""What every ``leadpulse`` command shares: the options naming the folders and the tenant, how a command finds its
tenant and its store, and what it runs with (`Services`, which tests replace through click's context object)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import click

from leadpulse.core.config.files import load_config_dir
from leadpulse.core.config.tenant import TenantConfig
from leadpulse.core.contract import ConnectorFactory, connector_class, connector_installed
from leadpulse.core.errors import ConfigError, DuplicateTenant, StoreError
from leadpulse.core.store.store import Store

CONFIG_DIR_ENV = "LEADPULSE_CONFIG_DIR"
STATE_DIR_ENV = "LEADPULSE_STATE_DIR"

config_dir_option = click.option(
    "--config-dir", type=click.Path(file_okay=False, path_type=Path), envvar=CONFIG_DIR_ENV, default=Path("config"),
    show_default=True, help=f"Folder of tenant files (*.yaml), one per tenant. Env: {CONFIG_DIR_ENV}.",
)
state_dir_option = click.option(
    "--state-dir", type=click.Path(file_okay=False, path_type=Path), envvar=STATE_DIR_ENV, default=Path("var"),
    show_default=True, help=f"Folder of the per-tenant SQLite stores. Env: {STATE_DIR_ENV}.",
)
log_level_option = click.option(
    "--log-level", default="INFO", show_default=True,
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    help="Least severe log lines written (JSON lines on stderr, text on a terminal).",
)
tenant_option = click.option(
    "--tenant", "tenant_name", metavar="NAME",
    help="The tenant (its name in its file); optional when there is only one.",
)


@dataclass(frozen=True)
class Services:
    """What the commands run with: `connectors` finds the connector of a CRM kind (the entry points)."""

    connectors: Callable[[str], ConnectorFactory] = connector_class


def services() -> Services:
    """The services of the command being run (`Services()` unless the caller passed its own as ``obj``)."""
    return click.get_current_context().ensure_object(Services)


def load_tenants(config_dir: Path) -> tuple[list[TenantConfig], list[ConfigError]]:
    """Every tenant file of `config_dir` (see `load_config_dir`), or a usage error when it holds none: a command
    that ran over nothing would look as if it had succeeded.

    :raises ConfigError: if `config_dir` is not a folder.
    """
    tenants, errors = load_config_dir(config_dir)
    if not tenants and not errors:
        raise click.UsageError(f"no tenant files (*.yaml, *.yml) in {config_dir}: put the tenants' files there, or "
                               f"name their folder with --config-dir (or {CONFIG_DIR_ENV})")
    return tenants, errors


def warn_without_connector(tenants: Sequence[TenantConfig]) -> None:
    """A warning on stderr for each tenant whose CRM kind has no connector installed: its file is valid, but no
    sync of it can run here."""
    for tenant in tenants:
        if not connector_installed(tenant.crm.kind):
            click.echo(f"warning: tenant {tenant.name!r} ({tenant.source_path}): crm.kind {tenant.crm.kind!r} has no "
                       "connector installed here; its syncs fail until a package registering one under that name "
                       "in the 'leadpulse.connectors' entry points is installed", err=True)


def load_named(config_dir: Path, name: str | None) -> TenantConfig:
    """The tenant called `name` in `config_dir` (the only one when `name` is None), or a usage error saying why not."""
    tenants, errors = load_tenants(config_dir)
    if name is None and len(tenants) == 1 and not errors:
        return tenants[0]
    found = [tenant for tenant in tenants if tenant.name == name]
    if found:
        return found[0]
    doubled = {error.tenant: error for error in errors if isinstance(error, DuplicateTenant)}
    if name is None and not tenants and len(doubled) == 1:
        name = next(iter(doubled))
    if name in doubled:  # its files say what to do, which the list of tenants would not
        raise click.ClickException(str(doubled[name]))
    known = ", ".join(tenant.name for tenant in tenants) or "none"
    problem = "name one with --tenant" if name is None else f"no valid tenant named {name!r}"
    detail = "".join(f"\n  {error}" for error in errors)
    raise click.UsageError(f"{problem} in {config_dir} (tenants: {known}){detail}")


def existing_store(tenant: TenantConfig, state_dir: Path) -> Path:
    """The tenant's store file, or an error saying to sync first: offline commands never create an empty store."""
    path = tenant.store_path(state_dir)
    if not path.exists():
        raise click.ClickException(
            f"tenant {tenant.name!r} has no store at {path} yet; run `leadpulse sync --tenant {tenant.name}` first")
    return path


def open_store(tenant: TenantConfig, state_dir: Path) -> Store:
    """The tenant's existing store, opened and found sound; one that cannot be opened, or that SQLite finds damaged,
    is an error naming it and what to do."""
    path = existing_store(tenant, state_dir)
    try:
        store = Store.open(path)
    except StoreError as exc:
        raise click.ClickException(f"tenant {tenant.name!r}: {exc}") from None
    try:
        store.require_sound()
    except StoreError as exc:
        store.close()
        raise click.ClickException(f"tenant {tenant.name!r}: {exc}") from None
    return store
