"""pytest fixtures that run sandboxes: enabled by ``pytest_plugins = ["leadpulse.sandbox.pytest_plugin"]``.

- ``sandbox_factory``: ``sandbox_factory("hubspot", contacts=500, seed=3, rate_limits=True)``
  starts a sandbox (rate limits off unless asked) and stops it after the test; it takes every
  option of :meth:`leadpulse.sandbox.Sandbox.start` (``activities_per_contact=10``, ``tier=``...).
- ``hubspot_sandbox``: a 300-contact HubSpot tenant, seed 7, rate limits off.
"""
from __future__ import annotations

import pytest

from .app import Sandbox


@pytest.fixture
def sandbox_factory():
    started: list[Sandbox] = []

    def start(crm, contacts: int = 300, seed: int = 7, **options) -> Sandbox:
        options.setdefault("rate_limits", False)
        sandbox = Sandbox.start(crm, contacts, seed, **options)
        started.append(sandbox)
        return sandbox

    yield start
    for sandbox in started:
        sandbox.stop()


@pytest.fixture
def hubspot_sandbox(sandbox_factory) -> Sandbox:
    return sandbox_factory("hubspot")
