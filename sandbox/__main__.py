"""``python -m leadpulse.sandbox serve --crm hubspot --contacts 5000 --seed 7``: serve a tenant until Ctrl-C.

``--activities-per-contact 10`` sets how many activities a contact holds on average.
"""
from __future__ import annotations

import json
import sys

import click

from .app import CRMS, Sandbox
from .synth import MAX_ACTIVITIES_PER_CONTACT


@click.group()
def main() -> None:
    """A local imitation of the HubSpot, Salesforce and Pipedrive APIs."""


@main.command()
@click.option("--crm", type=click.Choice(CRMS), required=True, help="Which CRM to imitate.")
@click.option("--contacts", type=click.IntRange(min=0), default=1000, show_default=True, help="Tenant size.")
@click.option("--seed", type=int, default=0, show_default=True, help="Same seed, same tenant.")
@click.option("--port", type=click.IntRange(0, 65535), default=0, show_default=True, help="0 picks a free port.")
@click.option("--tier", default=None, help="Vendor plan; sets the rate-limit figures (HubSpot: professional...).")
@click.option("--time-scale", type=float, default=1.0, show_default=True,
              help="Rate-limit windows run this many times faster than the wall clock.")
@click.option("--no-rate-limits", is_flag=True, help="Count calls but never refuse them.")
@click.option("--activities-per-contact", type=click.FloatRange(0, MAX_ACTIVITIES_PER_CONTACT), default=None,
              help="Mean activities per contact (default: the natural mix, about 8.7).")
def serve(crm: str, contacts: int, seed: int, port: int, tier: str | None, time_scale: float, no_rate_limits: bool,
          activities_per_contact: float | None):
    """Serve one synthetic tenant on 127.0.0.1 until interrupted; prints the base URL and credentials."""
    sandbox = Sandbox.start(crm, contacts, seed, port=port, tier=tier, time_scale=time_scale,
                            rate_limits=not no_rate_limits, activities_per_contact=activities_per_contact)
    click.echo(f"base_url: {sandbox.base_url}")
    click.echo(f"credentials: {json.dumps(sandbox.credentials)}")
    if sandbox.ca_cert_path:
        click.echo(f"ca_cert: {sandbox.ca_cert_path}")
    sys.stdout.flush()  # a parent process reads these lines through a pipe
    click.echo(f"{crm} sandbox with {contacts} contacts (seed {seed}); Ctrl-C stops it.", err=True)
    try:
        sandbox.wait()
    except KeyboardInterrupt:
        pass
    finally:
        sandbox.stop()


if __name__ == "__main__":
    main()
