"""``python -m leadpulse.core.cli``: the ``leadpulse`` command, for where the console script is not on the path."""

from leadpulse.core.cli.main import main

main(prog_name="leadpulse")
