from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import timedelta
from typing import ClassVar

import pytest
from file_tenant import NOW, contact, file_tenant, page_view, results, tasks, write_exports
from support import REPO_CONFIG

from leadpulse.connectors.file import FileConnector
from leadpulse.core.clock import ManualClock
from leadpulse.core.config.files import load_tenant
from leadpulse.core.contract import WriteResult
from leadpulse.core.engine.scoring import Engine
from leadpulse.core.errors import QuotaExhausted, RunLocked
from leadpulse.core.runtime.comparison import compare_rules
from leadpulse.core.runtime.pipeline import rescore_tenant, sync_tenant
from leadpulse.core.store.runs import RunOutcome
from leadpulse.core.store.store import Store


@pytest.fixture
def clock():
    return ManualClock(NOW)


def sync(tenant, tmp_path, clock, **options):
    return sync_tenant(tenant, state_dir=tmp_path / "state", clock=clock, **options)


def store_of(tenant, tmp_path) -> Store:
    return Store.open(tenant.store_path(tmp_path / "state"))


def hot_and_cold(tmp_path):
    # c1: VP (4) + 3 pricing views (9) = 13 hot; c2: one view = 3 cold
    views = [page_view(f"a{i}", "c1") for i in range(3)] + [page_view("b1", "c2")]
    return file_tenant(tmp_path, [contact("c1", "VP Sales"), contact("c2")], views)


def test_first_sync_scores_every_contact_and_writes_results(tmp_path, clock):
    tenant = hot_and_cold(tmp_path)
    summary = sync(tenant, tmp_path, clock)
    assert (summary.outcome, summary.pulled, summary.scored, summary.changed, summary.written) == (
        RunOutcome.SUCCEEDED, 6, 2, 2, 2)
    rows = results(tmp_path)
    assert (rows["c1"]["lp_score"], rows["c1"]["lp_band"], rows["c1"]["lifecycle"]) == ("13", "hot", "mql")
    assert (rows["c2"]["lp_score"], rows["c2"]["lp_band"], rows["c2"]["lifecycle"]) == ("3", "cold", "lead")


def test_second_sync_over_unchanged_files_writes_nothing(tmp_path, clock):
    tenant = hot_and_cold(tmp_path)
    sync(tenant, tmp_path, clock)
    summary = sync(tenant, tmp_path, clock)
    assert (summary.pulled, summary.scored, summary.written, summary.tasks) == (0, 0, 0, 0)


def test_a_new_activity_rescores_and_writes_only_its_contact(tmp_path, clock):
    tenant = hot_and_cold(tmp_path)
    sync(tenant, tmp_path, clock)
    views = [page_view(f"a{i}", "c1") for i in range(3)] + [page_view("b1", "c2"), page_view("b2", "c2")]
    write_exports(tmp_path, [contact("c1", "VP Sales"), contact("c2")], views)
    summary = sync(tenant, tmp_path, clock)
    assert (summary.scored, summary.changed, summary.written) == (1, 1, 1)
    assert results(tmp_path)["c2"]["lp_score"] == "6"


def test_only_changed_values_are_written(tmp_path, clock):
    tenant = hot_and_cold(tmp_path)
    sync(tenant, tmp_path, clock)
    views = [page_view(f"a{i}", "c1") for i in range(3)] + [page_view("b1", "c2"), page_view("b2", "c2")]
    write_exports(tmp_path, [contact("c1", "VP Sales"), contact("c2")], views)
    sync(tenant, tmp_path, clock, dry_run=True)
    with store_of(tenant, tmp_path) as store:
        [write] = store.outbox.pending_writes(10, run_id=99)
    assert write.values == {"lp_score": 6.0, "lp_band": "warm"}


def test_entering_the_hot_band_creates_one_task_once(tmp_path, clock):
    tenant = hot_and_cold(tmp_path)
    sync(tenant, tmp_path, clock)
    sync(tenant, tmp_path, clock, full=True)
    assert [(t["key"], t["subject"]) for t in tasks(tmp_path)] == [("lp-acme-c1-task-1", "Call Person c1: 13")]


def test_a_status_move_the_crm_has_not_taken_yet_gets_no_second_task(tmp_path, clock):
    # The export keeps showing no status for c1, so every rescore decides the move to mql again.
    tenant = hot_and_cold(tmp_path)
    path = tmp_path / "acme.yaml"
    path.write_text(path.read_text().replace("on_bands: [hot]", "on_statuses: [mql]"))
    tenant = load_tenant(path)
    sync(tenant, tmp_path, clock)
    summary = sync(tenant, tmp_path, clock, full=True)
    assert summary.scored == 2
    assert [t["key"] for t in tasks(tmp_path)] == ["lp-acme-c1-task-1"]


def test_a_task_handed_over_moments_ago_and_not_found_yet_is_looked_up_again_not_created_twice(tmp_path, clock):
    class Lagging(FileConnector):
        """Loses the answer of its first task create, and its lookup misses tasks for ten minutes."""

        creates: ClassVar[list[str]] = []

        def create_tasks(self, tasks):
            Lagging.creates += [task.key for task in tasks]
            if len(Lagging.creates) == len(tasks):
                return [WriteResult(task.key, False, error="no answer", outcome_unknown=True) for task in tasks]
            return super().create_tasks(tasks)

        def find_tasks(self, tasks):
            return {}

        def lookup_lag(self):
            return timedelta(minutes=10)

    tenant = hot_and_cold(tmp_path)
    sync(tenant, tmp_path, clock, connectors=lambda kind: Lagging)
    sync(tenant, tmp_path, clock, connectors=lambda kind: Lagging)
    assert Lagging.creates == ["lp-acme-c1-task-1"]
    clock.advance(11 * 60)
    sync(tenant, tmp_path, clock, connectors=lambda kind: Lagging)
    assert Lagging.creates == ["lp-acme-c1-task-1"] * 2


def test_dry_run_sends_nothing_and_the_next_run_sends_it(tmp_path, clock):
    tenant = hot_and_cold(tmp_path)
    dry = sync(tenant, tmp_path, clock, dry_run=True)
    assert (dry.scored, dry.written, results(tmp_path)) == (2, 0, {})
    real = sync(tenant, tmp_path, clock)
    assert (real.scored, real.written, real.tasks) == (0, 2, 1)


def test_each_run_leaves_a_row_with_its_outcome_and_counts(tmp_path, clock):
    tenant = hot_and_cold(tmp_path)
    summary = sync(tenant, tmp_path, clock)
    with store_of(tenant, tmp_path) as store:
        [run] = store.runs()
    assert (run.id, run.outcome, run.pulled, run.scored, run.written, run.tasks) == (summary.run_id, "succeeded", 6, 2, 2, 1)
    assert run.started_at == NOW and run.finished_at == NOW


def test_a_second_run_of_the_same_tenant_is_refused(tmp_path, clock):
    tenant = hot_and_cold(tmp_path)
    with store_of(tenant, tmp_path) as store, store.lock(tenant.name), pytest.raises(RunLocked, match="tenant 'acme'"):
        sync(tenant, tmp_path, clock)


def test_changed_rules_rescore_every_contact(tmp_path, clock):
    tenant = hot_and_cold(tmp_path)
    sync(tenant, tmp_path, clock)
    richer = file_tenant(tmp_path, [contact("c1", "VP Sales"), contact("c2")],
                         [page_view(f"a{i}", "c1") for i in range(3)] + [page_view("b1", "c2")], pricing_points=5)
    summary = sync(richer, tmp_path, clock)
    assert (summary.pulled, summary.scored, summary.changed) == (0, 2, 2)
    assert results(tmp_path)["c2"]["lp_score"] == "5"


def test_a_score_the_rule_change_leaves_alone_is_not_saved_again_but_counts_as_rescored(tmp_path, clock):
    contacts = [contact("c1", "VP Sales"), contact("c2")]
    tenant = file_tenant(tmp_path, contacts, [page_view("a1", "c1")])
    sync(tenant, tmp_path, clock)
    richer = file_tenant(tmp_path, contacts, [page_view("a1", "c1")], pricing_points=5)  # c2 has no pricing view
    with store_of(tenant, tmp_path) as store:
        before = store.score("c2")
    summary = sync(richer, tmp_path, clock)
    with store_of(tenant, tmp_path) as store:
        after, history = store.score("c2"), store.history("c2")
    assert (after.run_id, after.fingerprint) == (summary.run_id, Engine(richer.scoring).fingerprint)
    assert (after.total, after.contributions, after.written, len(history)) == (
        before.total, before.contributions, before.written, 1)
    assert sync(richer, tmp_path, clock).scored == 0


def test_a_new_write_back_mapping_reaches_every_contact_at_the_next_sync(tmp_path, clock):
    tenant = hot_and_cold(tmp_path)
    sync(tenant, tmp_path, clock)
    path = tmp_path / "acme.yaml"
    path.write_text(path.read_text().replace("band: lp_band}", "band: lp_band, quadrant: lp_quadrant}"))
    summary = sync(load_tenant(path), tmp_path, clock)
    assert (summary.scored, summary.changed) == (2, 2)
    assert (results(tmp_path)["c1"]["lp_quadrant"], results(tmp_path)["c2"]["lp_quadrant"]) == ("follow_up_now", "leave")


def test_a_status_changed_in_the_crm_is_decided_again_though_the_score_is_the_same(tmp_path, clock):
    # c1 qualifies for mql, which the CRM already shows: no move. Then someone sets it back to lead.
    views = [page_view(f"a{i}", "c1") for i in range(3)]
    tenant = file_tenant(tmp_path, [contact("c1", "VP Sales", status="mql")], views)
    sync(tenant, tmp_path, clock)
    assert not results(tmp_path)["c1"].get("lifecycle")
    write_exports(tmp_path, [contact("c1", "VP Sales", status="lead")], views)
    summary = sync(tenant, tmp_path, clock)
    assert (summary.scored, summary.changed) == (1, 1)
    assert results(tmp_path)["c1"]["lifecycle"] == "mql"


def test_time_passing_a_window_edge_rescores_the_contact(tmp_path, clock):
    tenant = file_tenant(tmp_path, [contact("c1")], [page_view("a1", "c1")])
    tenant = tenant.model_copy(update={"scoring": tenant.scoring.model_copy(update={
        "rules": (tenant.scoring.rules[0], tenant.scoring.rules[1].model_copy(update={"within_days": 7}))})})
    sync(tenant, tmp_path, clock)
    clock.advance(86400)
    assert sync(tenant, tmp_path, clock).scored == 0
    clock.advance(7 * 86400)
    summary = sync(tenant, tmp_path, clock)
    assert (summary.scored, summary.written, results(tmp_path)["c1"]["lp_score"]) == (1, 1, "0")


class Refusing(FileConnector):
    """Refuses every write, as a CRM refuses a bad value."""

    def write_properties(self, writes: Sequence) -> list[WriteResult]:
        return [WriteResult(w.key, False, error="INVALID_OPTION lp_band") for w in writes]


def test_refused_writes_are_retried_next_run_then_parked(tmp_path, clock):
    tenant = hot_and_cold(tmp_path)
    for _ in range(5):
        sync(tenant, tmp_path, clock, connectors=lambda kind: Refusing)
    with store_of(tenant, tmp_path) as store:
        assert store.outbox.counts()[("write", "parked")] == 2
        assert store.outbox.failures()[0].error == "INVALID_OPTION lp_band"


class OutOfQuota(FileConnector):
    def streams(self):
        return ["contacts", "activities"]

    def pull(self, stream, cursor, *, started_at):
        if stream == "activities":
            raise QuotaExhausted(self.context.tenant, "daily limit reached")
        yield from super().pull(stream, cursor, started_at=started_at)


def test_quota_exhausted_keeps_what_was_pulled_and_ends_the_run_cleanly(tmp_path, clock):
    tenant = hot_and_cold(tmp_path)
    summary = sync(tenant, tmp_path, clock, connectors=lambda kind: OutOfQuota)
    assert summary.outcome == RunOutcome.QUOTA_EXHAUSTED
    assert summary.error == "tenant 'acme': daily limit reached"
    with store_of(tenant, tmp_path) as store:
        assert store.counts()["contacts"] == 2
        assert store.runs()[0].outcome == "quota_exhausted"


def test_a_run_that_fails_keeps_its_error_with_the_tenants_secret_masked(tmp_path, clock):

    from leadpulse.core.runtime import logs

    def quoting_the_token(context):
        raise ValueError(f"Invalid header value b'{context.secrets['access_token']}'")

    tenant = load_tenant(REPO_CONFIG / "hubspot.yaml")
    try:
        with pytest.raises(ValueError, match="Invalid header value"):
            sync(tenant, tmp_path, clock, environ={"ACME_HUBSPOT_TOKEN": "not-a-known-shape-4711"},
                 connectors=lambda kind: quoting_the_token)
        with Store.open(tenant.store_path(tmp_path / "state")) as store:
            [error] = [row[0] for row in store.db.execute("SELECT error FROM runs")]
    finally:
        logs.forget_secrets()
    assert error == "ValueError: Invalid header value b'***'"


def test_a_stop_request_ends_the_run_as_stopped(tmp_path, clock):
    stop = threading.Event()
    stop.set()
    summary = sync(hot_and_cold(tmp_path), tmp_path, clock, stop=stop)
    assert (summary.outcome, summary.written) == (RunOutcome.STOPPED, 0)


def test_rescore_changes_the_store_but_sends_nothing(tmp_path, clock):
    tenant = hot_and_cold(tmp_path)
    sync(tenant, tmp_path, clock)
    richer = file_tenant(tmp_path, [contact("c1", "VP Sales"), contact("c2")],
                         [page_view(f"a{i}", "c1") for i in range(3)] + [page_view("b1", "c2")], pricing_points=5)
    summary = rescore_tenant(richer, state_dir=tmp_path / "state", clock=clock)
    assert (summary.scored, summary.changed, summary.written) == (2, 2, 0)
    assert results(tmp_path)["c2"]["lp_score"] == "3"


def test_a_rescore_ranks_statuses_as_the_crm_orders_them_so_the_next_sync_has_nothing_to_redo(tmp_path, clock):
    class Ordered(FileConnector):
        def status_order(self):
            return ["subscriber", "lead", "opportunity", "mql", "sql"]

    tenant = hot_and_cold(tmp_path)
    sync(tenant, tmp_path, clock, connectors=lambda kind: Ordered)
    assert rescore_tenant(tenant, state_dir=tmp_path / "state", clock=clock, full=False).scored == 0
    assert sync(tenant, tmp_path, clock, connectors=lambda kind: Ordered).scored == 0


def test_compare_counts_band_moves_under_proposed_rules(tmp_path, clock):
    tenant = hot_and_cold(tmp_path)
    sync(tenant, tmp_path, clock)
    richer = file_tenant(tmp_path, [], [], name="proposal", pricing_points=5)
    with store_of(tenant, tmp_path) as store:
        comparison = compare_rules(store, tenant, richer.scoring, NOW)
    assert comparison.bands == {("hot", "hot"): 1, ("cold", "warm"): 1}
    assert (comparison.contacts, comparison.band_moves) == (2, 1)
