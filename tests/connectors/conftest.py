"""Fixtures the connector tests share."""

from __future__ import annotations

import pytest
from crms import SalesforceDriver

from leadpulse.sandbox import Sandbox


@pytest.fixture
def org(sandbox_factory) -> Sandbox:
    """A Salesforce org of 300 people, given the custom fields the demo tenant writes."""
    return SalesforceDriver().prepare(sandbox_factory("salesforce", contacts=300, seed=21))
