"""What every ``leadpulse`` command shares: the options naming the folders and the tenant, how a command finds its
tenant and its store, and what it runs with (`Services`, which tests replace through click's context object)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import click

from leadpulse.core.config.files import load_config_dir
from leadpulse.core.config.tenant import TenantConfig
from leadpulse.core.contract import ConnectorFactory, connector_class
from leadpulse.core.errors import StoreError
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
        raise click.ClickException(
            f"tenant {tenant.name!r} has no store at {path} yet; run `leadpulse sync --tenant {tenant.name}` first")
    return path


def open_store(tenant: TenantConfig, state_dir: Path) -> Store:
    """The tenant's existing store, opened; one that cannot be opened is an error naming it and what to do."""
    path = existing_store(tenant, state_dir)
    try:
        return Store.open(path)
    except StoreError as exc:
        raise click.ClickException(f"tenant {tenant.name!r}: {exc}") from None
