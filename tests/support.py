"""Helpers the tests share (fixtures live in the conftest.py files)."""

from __future__ import annotations

import json
import sqlite3
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from leadpulse.core.runtime import metrics

#: the checkout's tenant files, read from here rather than beside the code, so the suite also runs against an
#: installed wheel (which carries no demo files)
REPO_CONFIG = Path(__file__).resolve().parents[1] / "config"
#: the demo's HubSpot tenant, which the end-to-end tests point at a sandbox
DEMO_TENANT = REPO_CONFIG / "demo" / "hubspot-sandbox.yaml"


def wait_for(condition: Callable[[], object], timeout: float = 30.0) -> object:
    """What `condition` returns once it is truthy, or None after `timeout` seconds; while what it reads is not there
    yet (a file, a store, a port), its errors count as not yet."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            result = condition()
        except (OSError, ValueError, sqlite3.Error):
            result = None
        if result:
            return result
        time.sleep(0.02)
    return None


def metric(name: str, **labels: str) -> float:
    """The current value of one sample of leadpulse's metrics in this process (0 when it has none yet)."""
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


@dataclass(frozen=True)
class Schedule:
    """A stand-in for a tenant's schedule block, unchecked, so a test can ask for what a file may not hold (an
    interval of seconds, a cron line the trigger must refuse)."""

    every: timedelta | None = None
    cron: str | None = None
    jitter: timedelta = timedelta(0)


#: the moment the store tests save their scores as of
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Card:
    """A score card as the store keeps it (`leadpulse.core.store.store.Card`), for store tests."""

    contact_id: str
    total: float
    band: str
    as_of: datetime = T0
    axes: dict = field(default_factory=lambda: {"fit": 0.0, "engagement": 0.0})
    grade: str | None = None
    quadrant: str | None = None
    contributions: tuple = ()
    valid_until: datetime | None = None


def readyz(daemon: Any) -> tuple[int, dict[str, Any]]:
    """A running daemon's /readyz: its status and body (a refusal's too)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{daemon.health_port}/readyz", timeout=5) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as refused:
        return refused.code, json.loads(refused.read())


def invoke(*args: str) -> tuple[int, str]:
    """`leadpulse ARGS`, its exit code and output (an unexpected exception is raised, not caught)."""
    from click.testing import CliRunner

    from leadpulse.core.cli.main import main

    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.output
