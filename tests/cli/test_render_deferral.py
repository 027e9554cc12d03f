"""The sync table's follow-up lines: why a run left writes owed."""

from __future__ import annotations

from leadpulse.core.cli import render
from leadpulse.core.runtime.run import RunSummary
from leadpulse.core.store.runs import RunOutcome


def test_a_run_that_deferred_writes_says_how_many_and_why_under_its_table(capsys):
    why = "deferred 2 writes and 0 tasks: the CRM's daily token budget leaves 25 tokens, enough for 5 of the 7 due"
    render.print_summaries([RunSummary(tenant="acme", run_id=3, outcome=RunOutcome.SUCCEEDED, deferred=2,
                                       deferral=why)])
    shown = capsys.readouterr().out
    assert "acme " + why in " ".join(shown.split())
