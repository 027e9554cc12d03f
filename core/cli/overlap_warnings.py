"""What ``leadpulse validate`` warns of beyond errors: engagement rules one activity can count for together (see
`leadpulse.core.config.overlaps`), with a value seen on the tenant's stored activities when it has a store."""

from __future__ import annotations

from pathlib import Path

from leadpulse.core.cli.render import say
from leadpulse.core.config.overlaps import Overlap, find_overlaps
from leadpulse.core.config.tenant import TenantConfig
from leadpulse.core.errors import StoreError
from leadpulse.core.store.store import Store


def warn_overlaps(tenant: TenantConfig, state_dir: Path) -> None:
    """A warning line for each pair of `tenant`'s engagement rules that one activity can count for together."""
    for overlap in overlaps(tenant, state_dir):
        say("yellow", "warning", f"tenant {tenant.name!r} ({tenant.source_path}): {overlap}")


def overlaps(tenant: TenantConfig, state_dir: Path) -> list[Overlap]:
    path = tenant.store_path(state_dir)
    if path.exists():
        try:
            with Store.reading(path) as store:
                return find_overlaps(tenant.scoring, store.attribute_values)
        except StoreError:
            pass  # a store that cannot be read only costs the examples it holds: the rules' own values remain
    return find_overlaps(tenant.scoring)
