"""A push the CRM's budget cannot fully afford sends what matters most first and defers the rest, saying so.

The scene: six contacts scored and written once, then new activity moves five of them: c1 and c2 into the hot band
(a status change to mql, and a task each), c3 by 6 points, c5 by 4 (a new job title), c4 by 3. Writes and tasks
cost 5 tokens each.
"""

from __future__ import annotations

from collections import Counter
from typing import ClassVar

import pytest
from file_tenant import NOW, contact, file_tenant, page_view, results, tasks, write_exports

from leadpulse.connectors.file import FileConnector
from leadpulse.core.clock import ManualClock
from leadpulse.core.contract import PushCapacity, one_call_each
from leadpulse.core.errors import QuotaExhausted
from leadpulse.core.runtime.pipeline import sync_tenant
from leadpulse.core.runtime.push_plan import plan_push
from leadpulse.core.store.outbox import Due
from leadpulse.core.store.runs import RunOutcome
from leadpulse.core.store.store import Store

COST = 5
CONTACTS = [f"c{i}" for i in range(1, 7)]


class Budgeted(FileConnector):
    """A file CRM with a budget for each run (None: no limit), logging what it was asked and sent, in order."""

    budgets: ClassVar[list[int | None]] = []
    sent: ClassVar[list[tuple[str, str]]] = []

    def ensure_properties(self, specs):
        Budgeted.sent.append(("ensure", ""))

    def push_capacity(self):
        Budgeted.sent.append(("capacity", ""))
        units = Budgeted.budgets.pop(0)
        return None if units is None else PushCapacity(units, write_cost=COST, task_cost=COST,
                                                       budget="the CRM's daily token budget", unit="tokens")

    def write_properties(self, writes):
        Budgeted.sent += [("write", w.contact_id) for w in writes]
        return super().write_properties(writes)

    def create_tasks(self, tasks):
        Budgeted.sent += [("task", t.contact_id) for t in tasks]
        return super().create_tasks(tasks)


@pytest.fixture
def clock():
    return ManualClock(NOW)


@pytest.fixture(autouse=True)
def fresh_log():
    Budgeted.budgets, Budgeted.sent = [], []


def sync(tenant, folder, clock, budgets=None, **options):
    """One run, with `budgets` the token budgets of the runs to come (None: the plain file connector)."""
    if budgets is not None:
        Budgeted.budgets += budgets
    connector = Budgeted if budgets is not None else FileConnector
    return sync_tenant(tenant, state_dir=folder / "state", clock=clock, connectors=lambda kind: connector, **options)


def scene(folder, clock):
    """The six contacts, scored and written with no limit, then the new activity (pulled by the next sync)."""
    tenant = file_tenant(folder, [contact(cid) for cid in CONTACTS], [page_view(f"v-{cid}", cid) for cid in CONTACTS])
    sync(tenant, folder, clock)
    new_activity(folder)
    return tenant


def new_activity(folder, **more_views: int) -> None:
    """The exports after the new activity of the scene, with `more_views` pricing views beyond it for some."""
    more = {"c1": 3, "c2": 3, "c3": 2, "c4": 1}
    views = [page_view(f"v-{cid}", cid) for cid in CONTACTS]
    views += [page_view(f"v-{cid}-{n}", cid) for cid, count in more.items() for n in range(count + more_views.get(cid, 0))]
    write_exports(folder, [contact(cid, "VP Sales" if cid == "c5" else "Engineer") for cid in CONTACTS], views)


def pushed() -> list[tuple[str, str]]:
    return [entry for entry in Budgeted.sent if entry[0] in ("write", "task")]


def outbox_rows(tenant, folder) -> dict[str, tuple]:
    with Store.open(tenant.store_path(folder / "state")) as store:
        rows = store.db.execute("SELECT contact_id, kind, state, attempts, error, last_run FROM outbox ORDER BY rowid")
        return {f"{kind} {cid}": (state, attempts, error, last_run) for cid, kind, state, attempts, error, last_run
                in rows}


def test_a_budget_too_small_sends_status_changes_and_tasks_first_then_the_largest_moves(tmp_path, clock):
    tenant = scene(tmp_path, clock)
    first = sync(tenant, tmp_path, clock, budgets=[5 * COST])
    assert pushed() == [("write", "c1"), ("write", "c2"), ("task", "c1"), ("task", "c2"), ("write", "c3")]
    assert (first.outcome, first.written, first.tasks, first.deferred, first.refused) == (
        RunOutcome.SUCCEEDED, 3, 2, 2, 0)
    assert first.deferral == (
        "deferred 2 writes and 0 tasks: the CRM's daily token budget leaves 25 tokens, enough for 5 of the 7 due "
        "(status changes and tasks first, then the largest score moves); the rest stays in the outbox for the next run"
    )
    assert first.notes == ()


def test_the_following_runs_finish_what_was_deferred_and_end_as_a_run_with_no_limit(tmp_path, clock):
    limited, unlimited = tmp_path / "limited", tmp_path / "unlimited"
    tenant = scene(limited, clock)
    summaries = [sync(tenant, limited, clock, budgets=[budget]) for budget in (5 * COST, COST, COST)]
    assert [(s.written, s.tasks, s.deferred) for s in summaries] == [(3, 2, 2), (1, 0, 1), (1, 0, 0)]
    assert pushed()[5:] == [("write", "c5"), ("write", "c4")]  # the move of 4 before the move of 3
    assert summaries[-1].deferral is None
    assert not [row for row in outbox_rows(tenant, limited).values() if row[0] != "done"]

    reference = scene(unlimited, clock)
    sync(reference, unlimited, clock)
    assert results(limited) == results(unlimited)
    assert {t["key"]: t for t in tasks(limited)} == {t["key"]: t for t in tasks(unlimited)}
    assert len(tasks(limited)) == 2


def test_deferred_writes_are_neither_attempts_nor_refusals(tmp_path, clock):
    tenant = scene(tmp_path, clock)
    summary = sync(tenant, tmp_path, clock, budgets=[5 * COST])
    rows = outbox_rows(tenant, tmp_path)
    # pending, no attempt, no error, never handed over since it was queued again
    assert rows["write c4"] == rows["write c5"] == ("pending", 0, None, None)
    assert rows["write c3"] == ("done", 1, None, summary.run_id)
    assert summary.refused == 0 and summary.outcome is RunOutcome.SUCCEEDED
    with Store.open(tenant.store_path(tmp_path / "state")) as store:
        assert store.outbox.failures() == []
        assert store.runs()[0].deferred == 2


def test_with_no_capacity_the_push_sends_everything_writes_then_tasks_oldest_first(tmp_path, clock):
    tenant = scene(tmp_path, clock)
    summary = sync(tenant, tmp_path, clock, budgets=[None])
    assert pushed() == [*(("write", cid) for cid in ("c1", "c2", "c3", "c4", "c5")), ("task", "c1"), ("task", "c2")]
    assert (summary.written, summary.tasks, summary.deferred, summary.deferral) == (5, 2, 0, None)


def test_a_capacity_that_affords_everything_sends_it_all_ranked_and_defers_nothing(tmp_path, clock):
    tenant = scene(tmp_path, clock)
    summary = sync(tenant, tmp_path, clock, budgets=[1000])
    assert pushed() == [("write", "c1"), ("write", "c2"), ("task", "c1"), ("task", "c2"), ("write", "c3"),
                        ("write", "c5"), ("write", "c4")]
    assert (summary.written, summary.tasks, summary.deferred, summary.deferral) == (5, 2, 0, None)


def test_the_capacity_is_asked_after_properties_are_ensured_and_not_when_nothing_is_due(tmp_path, clock):
    tenant = scene(tmp_path, clock)
    sync(tenant, tmp_path, clock, budgets=[1000])
    assert Budgeted.sent[:2] == [("ensure", ""), ("capacity", "")]
    Budgeted.sent = []
    summary = sync(tenant, tmp_path, clock, budgets=[])
    assert (Budgeted.sent, summary.outcome) == ([], RunOutcome.SUCCEEDED)


def test_a_write_queued_again_while_deferred_keeps_its_status_change_and_goes_first(tmp_path, clock):
    tenant = scene(tmp_path, clock)
    deferred = sync(tenant, tmp_path, clock, budgets=[0])  # c1's move to mql, like everything else, deferred
    assert (deferred.written, deferred.tasks, deferred.deferred) == (0, 0, 7)
    new_activity(tmp_path, c1=1)  # c1 moves once more, by 3 and within hot: a write with no status change
    summary = sync(tenant, tmp_path, clock, budgets=[COST])
    assert pushed() == [("write", "c1")]  # before c2's status change, older and its move as large
    assert (results(tmp_path)["c1"]["lifecycle"], results(tmp_path)["c1"]["lp_score"]) == ("mql", "15")
    assert summary.deferred == 6


def test_a_write_carries_its_status_change_and_its_score_move_from_what_was_last_queued(tmp_path, clock):
    tenant = scene(tmp_path, clock)
    sync(tenant, tmp_path, clock, dry_run=True)
    with Store.open(tenant.store_path(tmp_path / "state")) as store:
        rows = store.db.execute("SELECT contact_id, status_change, score_move FROM outbox WHERE kind = 'write' "
                                "AND state = 'pending' ORDER BY contact_id").fetchall()
    assert rows == [("c1", 1, 9.0), ("c2", 1, 9.0), ("c3", 0, 6.0), ("c4", 0, 3.0), ("c5", 0, 4.0)]


def test_a_contact_written_for_the_first_time_moves_by_its_whole_score(tmp_path, clock):
    tenant = file_tenant(tmp_path, [contact("c1", "VP Sales")], [page_view("a1", "c1")])
    sync(tenant, tmp_path, clock, dry_run=True)
    with Store.open(tenant.store_path(tmp_path / "state")) as store:
        assert store.db.execute("SELECT status_change, score_move FROM outbox").fetchall() == [(1, 7.0)]


def test_the_plan_spends_what_is_left_after_a_costly_task_on_cheaper_writes():
    capacity = PushCapacity(units=12, write_cost=2, task_cost=7)
    plan = plan_push(capacity, Due(status_writes=1, tasks=2, other_writes=5))
    assert (plan.status_writes, plan.tasks, plan.other_writes) == (1, 1, 1)
    assert (plan.deferred_writes, plan.deferred_tasks, plan.deferred) == (4, 1, 5)


@pytest.mark.parametrize(("units", "write_cost", "task_cost"), [(-1, 1, 1), (10, 0, 1), (10, 1, 0)])
def test_a_capacity_with_negative_units_or_a_cost_below_one_is_refused(units, write_cost, task_cost):
    with pytest.raises(ValueError, match="units >= 0, calls >= 0 and costs >= 1"):
        PushCapacity(units, write_cost=write_cost, task_cost=task_cost)


class SpentMidway(FileConnector):
    """A file CRM taking one call a write or task, whose daily allowance holds `allowance` of them."""

    allowance: ClassVar[int] = 0

    def _spend(self, item):
        if SpentMidway.allowance == 0:
            raise QuotaExhausted(self.context.tenant, "the CRM's daily allowance is spent")
        SpentMidway.allowance -= 1
        return item

    def write_properties(self, writes):
        return one_call_each(writes, lambda write: super(SpentMidway, self).write_properties([self._spend(write)])[0])

    def create_tasks(self, tasks):
        return one_call_each(tasks, lambda task: super(SpentMidway, self).create_tasks([self._spend(task)])[0])


@pytest.mark.parametrize(("allowance", "written", "created"), [(2, 2, 0), (6, 5, 1)])
def test_an_allowance_spent_mid_batch_keeps_what_was_carried_out_and_leaves_the_rest_owed_unsent(
        tmp_path, clock, allowance, written, created):
    tenant = scene(tmp_path, clock)
    SpentMidway.allowance = allowance
    summary = sync_tenant(tenant, state_dir=tmp_path / "state", clock=clock, connectors=lambda kind: SpentMidway)
    assert summary.outcome is RunOutcome.QUOTA_EXHAUSTED
    assert (summary.written, summary.tasks, summary.refused) == (written, created, 0)
    rows = outbox_rows(tenant, tmp_path)
    states = Counter(state for state, *_ in rows.values())
    # (c6's write is the scene's first run's, done then)
    assert states == Counter({"done": 1 + written + created, "pending": 7 - written - created})
    # nothing unsent counts as tried, and no task is left to be looked up as if its answer were lost
    assert all(attempts == 0 and error is None for state, attempts, error, _ in rows.values() if state == "pending")

    SpentMidway.allowance = 100  # the next day
    later = sync_tenant(tenant, state_dir=tmp_path / "state", clock=clock, connectors=lambda kind: SpentMidway)
    assert (later.outcome, later.written, later.tasks) == (RunOutcome.SUCCEEDED, 5 - written, 2 - created)
    assert len(tasks(tmp_path)) == 2


def test_a_cap_on_write_calls_binds_with_the_units_and_the_note_names_the_one_that_ran_out():
    capacity = PushCapacity(units=1_000, write_cost=5, task_cost=15, budget="Pipedrive's daily token budget",
                            unit="tokens", calls=4, calls_budget="the API token's daily POST/PUT calls")
    plan = plan_push(capacity, Due(status_writes=1, tasks=2, other_writes=5))
    assert (plan.status_writes, plan.tasks, plan.other_writes, plan.deferred) == (1, 2, 1, 4)
    assert plan.note(capacity) == (
        "deferred 4 writes and 0 tasks: the API token's daily POST/PUT calls leave 4, enough for 4 of the 8 due "
        "(status changes and tasks first, then the largest score moves); the rest stays in the outbox for the next run"
    )
    tokens_short = PushCapacity(units=12, write_cost=5, task_cost=15, budget="the budget", unit="tokens", calls=100)
    plan = plan_push(tokens_short, Due(status_writes=1, tasks=2, other_writes=5))
    assert (plan.status_writes, plan.tasks, plan.other_writes) == (1, 0, 1)
    assert plan.note(tokens_short).startswith("deferred 4 writes and 2 tasks: the budget leaves 12 tokens")


def test_a_negative_count_of_calls_is_refused():
    with pytest.raises(ValueError, match="calls >= 0"):
        PushCapacity(10, calls=-1)
