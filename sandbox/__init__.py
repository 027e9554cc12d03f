"""A local imitation of the HubSpot, Salesforce and Pipedrive APIs for tests, the demo and benchmarks.

    from leadpulse.sandbox import Sandbox

    with Sandbox.start("hubspot", contacts=2000, seed=7) as sb:
        client = HubSpot(access_token=sb.credentials["access_token"], host=sb.base_url)

See :mod:`leadpulse.sandbox.server` for how a vendor module plugs in. Imports nothing of leadpulse's own.
"""
from .app import CRMS, Sandbox

__all__ = ["CRMS", "Sandbox"]
