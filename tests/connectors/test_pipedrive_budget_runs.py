"""Whole syncs of a Pipedrive company against its daily token budget: the budget spent mid-run by someone else,
and a budget too small for one run's writes.

The sandbox counts the budget for real, on a clock that follows the sync's (a sleep for the burst window moves
both), so no test waits for a window; the day's end is reached by moving the sandbox's clock alone past it.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from crms import AS_OF, CONTACTS, SEED, PipedriveDriver, sync

from leadpulse.core.clock import ManualClock
from leadpulse.core.runtime.run import RunSummary
from leadpulse.core.store.runs import RunOutcome
from leadpulse.core.store.store import Store
from leadpulse.sandbox import Sandbox
from leadpulse.sandbox.limits import Verdict
from leadpulse.sandbox.pipedrive_budget import DAILY

PIPEDRIVE = PipedriveDriver()
STAGE = "Lifecycle stage"
State = tuple[dict[str, dict[str, str | None]], Counter[tuple[str, str]]]


class FollowingClock:
    """The sandbox's rate-limit clock, reading the sync's: what the sync sleeps, the sandbox sees pass."""

    time_scale = 1.0

    def __init__(self, clock: ManualClock):
        self.clock = clock
        self.skipped = 0.0

    def now(self) -> float:
        return self.clock.monotonic() + self.skipped

    def skip(self, seconds: float) -> None:
        """Move the sandbox alone: the sync's own time (and so its scores) stays where it is."""
        self.skipped += seconds


@pytest.fixture(scope="module")
def unlimited(tmp_path_factory) -> tuple[State, int, RunSummary]:
    """The company after one sync with every token it wants: its state, the tokens that took, and the run."""
    with Sandbox.start("pipedrive", CONTACTS, SEED, rate_limits=False, **PIPEDRIVE.sandbox_options) as sb:
        summary = sync(PIPEDRIVE, sb, tmp_path_factory.mktemp("unlimited"))
        assert summary.outcome is RunOutcome.SUCCEEDED and summary.tasks > 0, summary.error
        usage = sb.limits.usage(DAILY)
        assert usage is not None
        return PIPEDRIVE.state(sb), usage.used, summary


def company(sandbox_factory, clock: ManualClock) -> tuple[Sandbox, FollowingClock]:
    following = FollowingClock(clock)
    sb = sandbox_factory("pipedrive", contacts=CONTACTS, seed=SEED, rate_limits=True, clock=following,
                         **PIPEDRIVE.sandbox_options)
    return sb, following


def next_day(sb: Sandbox, following: FollowingClock) -> None:
    """The company's day ends: the sandbox's clock passes its midnight."""
    following.skip(sb.vendor.budget_resets_in() + 1)


def statuses(state: State) -> dict[str, str | None]:
    return {person: values.get(STAGE) for person, values in state[0].items()}


def test_a_budget_spent_mid_run_stops_the_run_with_no_request_after_the_refusal_and_the_next_day_finishes_it(
        sandbox_factory, tmp_path: Path, unlimited, monkeypatch):
    reference, _, _ = unlimited
    clock = ManualClock(AS_OF)
    sb, following = company(sandbox_factory, clock)
    # every call the sandbox admitted or refused, in order
    calls: list[tuple[str, bool]] = []
    admit = sb.limits.admit

    def logged(route: str, scope: str | None = None) -> Verdict:
        verdict = admit(route, scope)
        calls.append((route, verdict.allowed))
        return verdict

    monkeypatch.setattr(sb.limits, "admit", logged)
    # the company's other integrations spend the rest of the day's budget after leadpulse's 40th person update
    update = sb.vendor.update_person
    updates = []

    def update_then_spend(request):
        answer = update(request)
        updates.append(request)
        if len(updates) == 40:
            sb.limits.spend(DAILY)
        return answer

    monkeypatch.setattr(sb.vendor, "update_person", update_then_spend)

    first = sync(PIPEDRIVE, sb, tmp_path, clock)

    assert first.outcome is RunOutcome.QUOTA_EXHAUSTED, first.error
    assert "budget" in (first.error or "")
    refused = [n for n, (_, allowed) in enumerate(calls) if not allowed]
    assert refused == [len(calls) - 1]  # one refusal, and not one request after it
    assert first.written >= 40 and first.rate_limited == 1
    with Store.open(PIPEDRIVE.tenant(sb).store_path(tmp_path)) as store:
        owed = store.outbox.counts()
    assert owed["write", "pending"] > 0 and owed["write", "parked"] == 0  # owed to the next run, nothing lost
    monkeypatch.undo()

    next_day(sb, following)
    second = sync(PIPEDRIVE, sb, tmp_path, clock)

    assert second.outcome is RunOutcome.SUCCEEDED, second.error
    assert second.rate_limited == 0
    assert PIPEDRIVE.state(sb) == reference  # every value, and each task once


def test_a_budget_too_small_for_the_writes_spends_it_on_status_changes_and_tasks_and_later_runs_finish(
        sandbox_factory, tmp_path: Path, unlimited):
    reference, needed, whole = unlimited
    clock = ManualClock(AS_OF)
    sb, following = company(sandbox_factory, clock)
    # a day's budget that holds the reads, the status changes and the tasks, and a third of the other writes
    budget = needed - 2 * whole.written * 5 // 3
    sb.limits.tune(DAILY, limit=budget)

    first = sync(PIPEDRIVE, sb, tmp_path, clock)

    assert first.outcome is RunOutcome.SUCCEEDED, first.error
    assert first.rate_limited == 0 and first.deferred > 0
    assert first.deferral and str(first.deferred) in first.deferral and "budget" in first.deferral
    state = PIPEDRIVE.state(sb)
    assert state[1] == reference[1]  # every task, each once
    assert statuses(state) == statuses(reference)  # every status change
    assert first.written + first.deferred == whole.written

    runs = [first]
    while runs[-1].deferred and len(runs) < 5:
        next_day(sb, following)
        runs.append(sync(PIPEDRIVE, sb, tmp_path, clock))
        assert runs[-1].outcome is RunOutcome.SUCCEEDED and runs[-1].rate_limited == 0, runs[-1].error

    assert runs[-1].deferred == 0 and len(runs) > 1
    assert PIPEDRIVE.state(sb) == reference
