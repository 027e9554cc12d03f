"""The ``leadpulse`` command: validate tenant files, sync, rescore, explain, compare rules, operate, and the demo.

Each command is a thin shell over the config, runtime and store layers; tables are drawn with rich (see
`leadpulse.core.cli.render`).
"""

from __future__ import annotations

from typing import Any

import click

from leadpulse.core.cli.demo import demo
from leadpulse.core.cli.insight import backtest, suggest
from leadpulse.core.cli.offline import check, compare, explain, history, score
from leadpulse.core.cli.ops import daemon_command, deploy_group, status_command
from leadpulse.core.cli.report import report
from leadpulse.core.cli.sync import sync, validate
from leadpulse.core.errors import LeadpulseError


class _Commands(click.Group):
    """The command group; an error of leadpulse's own that a command lets through ends it as a plain error line
    (its message already says what is wrong and what to do), never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except LeadpulseError as exc:
            raise click.ClickException(str(exc)) from None


@click.group(cls=_Commands)
@click.version_option(package_name="leadpulse")
def main() -> None:
    """leadpulse scores CRM contacts with each tenant's rules and writes scores, statuses and tasks back."""


for _command in (validate, sync, score, explain, history, compare, backtest, suggest, check, demo, daemon_command,
                 status_command, deploy_group, report):
    main.add_command(_command)
