"""Whole HubSpot syncs (pull, store, score, outbox, push) against the HubSpot sandbox, through hubspot-api-client."""

from __future__ import annotations

import re
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from support import DEMO_TENANT

from leadpulse.connectors import budget
from leadpulse.connectors.hubspot import HubSpotConnector, task_token, wire_value
from leadpulse.core.cli.demo import TOKEN_VARIABLE, sandbox_tenant
from leadpulse.core.clock import ManualClock, ScaledClock
from leadpulse.core.config.files import validate_tenant
from leadpulse.core.runtime import pipeline
from leadpulse.core.runtime.pipeline import sync_tenant
from leadpulse.core.runtime.run import Run
from leadpulse.core.store.outbox import Outbox
from leadpulse.core.store.runs import RunCounts, RunOutcome
from leadpulse.core.store.store import Store
from leadpulse.sandbox import Sandbox

CONTACTS = 300
SEED = 21
OWNED = ("leadpulse_score", "leadpulse_fit", "leadpulse_engagement", "leadpulse_grade", "leadpulse_band",
         "leadpulse_quadrant", "leadpulse_reasons", "lifecyclestage")


class Crash(BaseException):
    """Stands for the process being killed: nothing after it runs, no handler swallows it."""


def tenant_for(sb: Sandbox, **connection):
    connection.setdefault("lookback_seconds", 0)
    return sandbox_tenant(DEMO_TENANT, sb.base_url, **connection)


def run(sb: Sandbox, state_dir: Path, clock=None, **options):
    return sync_tenant(tenant_for(sb), state_dir=state_dir, clock=clock or ManualClock(AS_OF),
                       environ={TOKEN_VARIABLE: sb.credentials["access_token"]}, **options)


AS_OF = datetime.now(UTC).replace(microsecond=0)


def crm_state(sb: Sandbox) -> tuple[dict, Counter]:
    """What the portal holds that leadpulse writes: owned properties per contact, and tasks by (contact, subject)."""
    properties = {}
    for index in range(sb.crm.size):
        contact_id = sb.crm.id_of(index)
        values = sb.vendor.properties_of(contact_id)
        properties[contact_id] = {name: values.get(name) for name in OWNED}
    tasks = Counter((tuple(t["contacts"]), t["properties"]["hs_task_subject"]) for t in sb.vendor.created_tasks())
    return properties, tasks


def task_tokens(sb: Sandbox) -> list[str]:
    return [token for t in sb.vendor.created_tasks()
            for token in re.findall(r"lpk[0-9a-f]{24}", t["properties"].get("hs_task_body") or "")]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The portal after one uninterrupted full sync: what every interrupted sync must end with."""
    with Sandbox.start("hubspot", CONTACTS, SEED, rate_limits=False) as sb:
        summary = run(sb, tmp_path_factory.mktemp("reference"))
        assert summary.outcome is RunOutcome.SUCCEEDED and summary.tasks > 0
        return crm_state(sb)


@pytest.fixture
def portal(sandbox_factory):
    return sandbox_factory("hubspot", contacts=CONTACTS, seed=SEED)


def test_a_full_sync_leaves_every_contact_property_equal_to_the_engine_scores(portal, tmp_path):
    summary = run(portal, tmp_path)
    assert summary.outcome is RunOutcome.SUCCEEDED
    assert summary.written == CONTACTS and summary.rate_limited == 0
    tenant = tenant_for(portal)
    with Store.open(tenant.store_path(tmp_path)) as store:
        for index in range(CONTACTS):
            contact_id = portal.crm.id_of(index)
            stored = store.score(contact_id)
            values = portal.vendor.properties_of(contact_id)
            assert float(values["leadpulse_score"]) == stored.total
            assert float(values["leadpulse_fit"]) == stored.axes["fit"]
            assert float(values["leadpulse_engagement"]) == stored.axes["engagement"]
            assert (values["leadpulse_band"], values["leadpulse_grade"]) == (stored.band, stored.grade)
            assert values["leadpulse_quadrant"] == stored.quadrant
            assert {k: wire_value(v) for k, v in stored.written.items()} == {
                k: values[k] for k in stored.written}


def test_a_second_run_with_nothing_changed_writes_nothing_and_makes_one_call_per_stream(portal, tmp_path):
    clock = ScaledClock(1000)  # windows follow the real time the sandbox stamps changes with
    run(portal, tmp_path, clock)
    echo = run(portal, tmp_path, clock)  # reads back leadpulse's own writes, which moved lastmodifieddate
    assert (echo.written, echo.tasks) == (0, 0)
    portal.stats.reset()
    quiet = run(portal, tmp_path, clock)
    assert (quiet.outcome, quiet.pulled, quiet.written, quiet.tasks) == (RunOutcome.SUCCEEDED, 0, 0, 0)
    streams = ("contacts", "calls", "emails", "meetings", "notes", "tasks")
    assert {route: sum(by.values()) for route, by in portal.stats.by_route().items()} == {
        f"{stream}.search": 1 for stream in streams}


@pytest.mark.slow
def test_an_incremental_run_picks_up_exactly_what_changed_across_more_than_ten_thousand_records(sandbox_factory, tmp_path):
    sb = sandbox_factory("hubspot", contacts=10_400, seed=5)
    # real timestamps (the sandbox stamps changes with the wall clock), rate-limit waits a thousand times shorter
    clock = ScaledClock(1000)
    run(sb, tmp_path, clock)
    run(sb, tmp_path, clock)  # absorbs the echo of the first run's writes
    changed = set(sb.crm.touch(10_200, seed=8))
    added = [sb.crm.add_activity(sb.crm.id_of(i), "meeting", outcome="completed") for i in range(0, 10_400, 400)]
    summary = run(sb, tmp_path, clock)
    assert summary.outcome is RunOutcome.SUCCEEDED
    assert len(changed) > 10_000
    assert summary.pulled == len(changed) + len(added)
    assert sb.stats.count(status=400) == 0
    tenant = tenant_for(sb)
    with Store.open(tenant.store_path(tmp_path)) as store:
        assert store.counts()["contacts"] == 10_400
        for activity in added:
            assert any(a.id.startswith(f"meetings-{activity.id}-") for a in
                       store.activities(sb.crm.id_of(activity.contact_index)))


def crash_after_pull(monkeypatch):
    monkeypatch.setattr(pipeline, "score_contacts", _raise)


def crash_after_scoring(monkeypatch):
    monkeypatch.setattr(pipeline, "push", _raise)


def crash_in_the_middle_of_pushing(monkeypatch):
    original = HubSpotConnector.write_properties
    calls = Counter()

    def write_then_die(self, writes):
        results = original(self, writes)  # the CRM has the batch, the outbox never hears of it
        calls["n"] += 1
        if calls["n"] == 2:
            raise Crash()
        return results

    monkeypatch.setattr(HubSpotConnector, "write_properties", write_then_die)


def crash_between_task_creation_and_its_commit(monkeypatch):
    original = Outbox.settle

    def settle_or_die(self, results, run_id):
        if any("-task-" in r.key for r in results):
            monkeypatch.setattr(Outbox, "settle", original)
            raise Crash()
        return original(self, results, run_id)

    monkeypatch.setattr(Outbox, "settle", settle_or_die)


def _raise(*args, **kwargs):
    raise Crash()


@pytest.mark.parametrize("crash", [crash_after_pull, crash_after_scoring, crash_in_the_middle_of_pushing,
                                   crash_between_task_creation_and_its_commit])
def test_after_a_crash_the_next_run_ends_with_the_crm_of_an_uninterrupted_run(portal, tmp_path, monkeypatch,
                                                                             reference, crash):
    crash(monkeypatch)
    with pytest.raises(Crash):
        run(portal, tmp_path)
    monkeypatch.undo()
    summary = run(portal, tmp_path)
    assert summary.outcome is RunOutcome.SUCCEEDED
    properties, tasks = crm_state(portal)
    assert properties == reference[0]
    assert tasks == reference[1]
    tokens = task_tokens(portal)
    assert len(tokens) == len(set(tokens)) == sum(reference[1].values())


def test_429_storms_5xx_bursts_and_dropped_connections_are_ridden_out_with_nothing_lost(portal, tmp_path, reference):
    faults = portal.faults
    faults.fail_next("contacts.list", 429, times=6)
    faults.fail_next("calls.list", 503, times=4)
    faults.fail_next("contacts.batch_update", 502, times=2)
    faults.drop_next("emails.list", times=3)
    faults.drop_next("contacts.batch_update", times=2, applied=True)
    faults.truncate_next("meetings.list", times=2)
    faults.fail_next("tasks.batch_create", 429, times=3)
    summary = run(portal, tmp_path)
    assert summary.outcome is RunOutcome.SUCCEEDED
    assert summary.rate_limited == 9
    assert crm_state(portal) == reference


def test_a_task_batch_whose_answer_was_lost_is_settled_by_its_key_in_the_same_run_not_created_again(portal, tmp_path,
                                                                                                   reference):
    portal.faults.drop_next("tasks.batch_create", applied=True)
    first = run(portal, tmp_path)
    assert first.outcome is RunOutcome.SUCCEEDED and first.tasks == sum(reference[1].values())
    assert crm_state(portal) == reference
    assert portal.stats.count("tasks.batch_create") == 1  # found by key after the lost answer, never sent again


def test_a_5xx_on_a_task_batch_leaves_the_run_succeeded_and_the_next_run_creates_each_task_once(portal, tmp_path,
                                                                                             reference):
    portal.faults.fail_next("tasks.batch_create", 503)  # a create is not retried on a 5xx: its outcome is unknown
    first = run(portal, tmp_path)
    assert first.outcome is RunOutcome.SUCCEEDED and first.tasks == 0 and first.error is None
    second = run(portal, tmp_path)
    assert second.outcome is RunOutcome.SUCCEEDED
    assert crm_state(portal) == reference


def test_a_task_hubspot_did_not_confirm_is_settled_by_its_key_on_the_next_run_not_created_again(portal, tmp_path,
                                                                                             reference):
    run(portal, tmp_path, dry_run=True)
    queued = sum(reference[1].values())
    unconfirming = {"status": "COMPLETE", "results": [], "startedAt": "2026-01-01T00:00:00Z",
                    "completedAt": "2026-01-01T00:00:01Z"}
    portal.faults.fail_next("tasks.batch_create", status=201, body=unconfirming, times=-(-queued // 100))
    first = run(portal, tmp_path)
    assert first.outcome is RunOutcome.SUCCEEDED and first.tasks == 0
    tenant = tenant_for(portal)
    with Store.open(tenant.store_path(tmp_path)) as store:
        assert store.outbox.counts()[("task", "sending")] == queued
        created_anyway = store.outbox.sending_tasks()[0]  # HubSpot had created it, its answer did not say so
    pipeline.open_connector(tenant, {"access_token": portal.credentials["access_token"]},
                            ManualClock(AS_OF)).create_tasks([created_anyway])
    second = run(portal, tmp_path)
    assert second.outcome is RunOutcome.SUCCEEDED and second.tasks == queued - 1
    assert crm_state(portal) == reference
    tokens = task_tokens(portal)
    assert len(tokens) == len(set(tokens)) == queued


def tenant_with_bands(sb: Sandbox, bands: list[dict]):
    data = yaml.safe_load(DEMO_TENANT.read_text())
    data["crm"]["connection"].update(base_url=sb.base_url, lookback_seconds=0)
    data["scoring"]["bands"] = bands
    return validate_tenant(data, DEMO_TENANT)


def test_a_band_added_to_the_rules_is_added_to_the_portal_options_and_every_contact_gets_its_band(portal, tmp_path):
    clock = ManualClock(AS_OF)
    run(portal, tmp_path, clock)
    bands = yaml.safe_load(DEMO_TENANT.read_text())["scoring"]["bands"]
    tenant = tenant_with_bands(portal, [*bands, {"name": "hot", "min": 14}])
    clock.advance(60)
    summary = sync_tenant(tenant, state_dir=tmp_path, clock=clock,
                          environ={TOKEN_VARIABLE: portal.credentials["access_token"]})
    assert summary.outcome is RunOutcome.SUCCEEDED and summary.written > 0
    with Store.open(tenant.store_path(tmp_path)) as store:
        assert store.outbox.failures() == [] and store.band_counts().get("hot")
        for index in range(CONTACTS):
            contact_id = portal.crm.id_of(index)
            assert portal.vendor.properties_of(contact_id)["leadpulse_band"] == store.score(contact_id).band


def test_a_207_writes_the_good_records_and_retries_the_bad_on_the_next_run(portal, tmp_path, reference):
    bad = [portal.crm.id_of(i) for i in (3, 77, 150)]
    portal.faults.fail_records(bad)
    first = run(portal, tmp_path)
    assert first.outcome is RunOutcome.SUCCEEDED and first.written == CONTACTS - len(bad)
    assert all(portal.vendor.properties_of(b).get("leadpulse_score") is None for b in bad)
    with Store.open(tenant_for(portal).store_path(tmp_path)) as store:
        failures = store.outbox.failures()
    assert sorted(f.key for f in failures) == sorted(f"lp-demo-hubspot-{b}-props" for b in bad)
    assert all(f.attempts == 1 and f.error for f in failures)
    portal.faults.clear()
    second = run(portal, tmp_path)
    assert second.written == len(bad)
    assert crm_state(portal) == reference


def test_a_record_refused_again_and_again_is_parked_and_no_longer_sent(portal, tmp_path):
    bad = portal.crm.id_of(9)
    portal.faults.fail_records([bad])
    clock = ManualClock(AS_OF)
    for _ in range(5):
        run(portal, tmp_path, clock)
        clock.advance(60)
    portal.stats.reset()
    later = run(portal, tmp_path, clock)
    assert later.written == 0 and portal.stats.count("contacts.batch_update") == 0
    with Store.open(tenant_for(portal).store_path(tmp_path)) as store:
        assert store.outbox.counts()[("write", "parked")] == 1


def test_the_tenants_daily_limit_ends_a_run_as_quota_exhausted_and_a_later_run_carries_on(portal, tmp_path, reference):
    environ = {TOKEN_VARIABLE: portal.credentials["access_token"]}
    capped = tenant_for(portal, daily_limit=20)
    first = sync_tenant(capped, state_dir=tmp_path, clock=ManualClock(AS_OF), environ=environ)
    assert (first.outcome, first.api_calls) == (RunOutcome.QUOTA_EXHAUSTED, 20)
    assert "daily_limit" in first.error and "'demo-hubspot'" in first.error
    again = sync_tenant(capped, state_dir=tmp_path, clock=ManualClock(AS_OF), environ=environ)
    assert (again.outcome, again.api_calls) == (RunOutcome.QUOTA_EXHAUSTED, 0)
    assert portal.stats.count() == 20
    raised = sync_tenant(tenant_for(portal, daily_limit=100_000), state_dir=tmp_path, clock=ManualClock(AS_OF),
                         environ=environ)
    assert raised.outcome is RunOutcome.SUCCEEDED
    assert crm_state(portal) == reference


def test_calls_older_than_a_day_no_longer_count_against_the_daily_limit(tmp_path):
    tenant = sandbox_tenant(DEMO_TENANT, "http://127.0.0.1:9", daily_limit=100)
    with Store.open(tmp_path / "t.sqlite") as store:
        for hours_ago, calls in ((25, 70), (23, 30)):
            run_id = store.start_run(tenant.name, AS_OF - timedelta(hours=hours_ago))
            store.finish_run(run_id, AS_OF - timedelta(hours=hours_ago), RunOutcome.SUCCEEDED,
                             RunCounts(api_calls=calls))
        current = Run(tenant.name, store.start_run(tenant.name, AS_OF), AS_OF, 0.0)
        assert pipeline.daily_allowance(tenant, store, current) == 70


def test_a_401_ends_the_run_with_a_message_that_names_the_tenant_and_what_to_check(portal, tmp_path):
    summary = sync_tenant(tenant_for(portal), state_dir=tmp_path, clock=ManualClock(AS_OF),
                          environ={TOKEN_VARIABLE: "pat-na1-00000000-not-the-token"})
    assert summary.outcome is RunOutcome.FAILED
    assert "'demo-hubspot'" in summary.error and "crm.secrets.access_token" in summary.error
    assert "not-the-token" not in summary.error
    assert portal.stats.count(status=401) == 1  # stopped at once, no retries


def test_a_dry_run_sends_nothing_and_leaves_its_writes_for_the_next_run(portal, tmp_path, reference):
    dry = run(portal, tmp_path, dry_run=True)
    assert dry.outcome is RunOutcome.SUCCEEDED and (dry.written, dry.tasks) == (0, 0)
    assert portal.stats.count("contacts.batch_update") == 0 and portal.stats.count("tasks.batch_create") == 0
    with Store.open(tenant_for(portal).store_path(tmp_path)) as store:
        counts = store.outbox.counts()
    assert counts[("write", "pending")] == CONTACTS and counts[("task", "pending")] == sum(reference[1].values())
    run(portal, tmp_path)
    assert crm_state(portal) == reference


def test_task_tokens_are_found_again_from_the_idempotency_key():
    assert task_token("lp-acme-1-band-qualified-1") != task_token("lp-acme-1-band-qualified-2")
    assert re.fullmatch(r"lpk[0-9a-f]{24}", task_token("lp-acme-1-band-qualified-1"))


def test_a_task_for_an_owner_the_portal_no_longer_has_is_created_unassigned(portal, tmp_path):
    ids = [portal.crm.id_of(i) for i in range(CONTACTS)]
    for contact_id in ids:
        portal.crm.edit_contact(contact_id, owner_id=99999)
    summary = run(portal, tmp_path)
    assert summary.outcome is RunOutcome.SUCCEEDED and summary.tasks > 0
    tasks = portal.vendor.created_tasks()
    assert tasks and all(not t["properties"].get("hubspot_owner_id") for t in tasks)
    with Store.open(tenant_for(portal).store_path(tmp_path)) as store:
        assert store.crm_fact("owners") and "99999" not in store.crm_fact("owners")


def test_a_task_subject_gives_the_score_and_the_top_reasons(portal, tmp_path):
    run(portal, tmp_path)
    subjects = [t["properties"]["hs_task_subject"] for t in portal.vendor.created_tasks()]
    assert subjects and all(re.search(r"scored [\d.]+ .*: [+-]\d", s) for s in subjects)


def test_a_store_restored_from_a_copy_taken_before_its_tasks_were_created_creates_no_second_task(portal, tmp_path,
                                                                                               reference):
    import shutil
    import sqlite3
    from contextlib import closing

    state = tmp_path / "state"
    run(portal, state, dry_run=True)  # everything scored and queued, nothing sent
    path = tenant_for(portal).store_path(state)
    with closing(sqlite3.connect(path)) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    shutil.copy(path, tmp_path / "backup.sqlite")
    assert run(portal, state).tasks == sum(reference[1].values())
    for sidecar in (path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        sidecar.unlink(missing_ok=True)  # a lost -wal, as a restore from the copy loses it
    shutil.copy(tmp_path / "backup.sqlite", path)
    again = run(portal, state)
    assert again.outcome is RunOutcome.SUCCEEDED and again.tasks == sum(reference[1].values())  # found, settled
    assert crm_state(portal) == reference  # each task once
    assert portal.stats.count("tasks.batch_create") == 1


def test_a_store_rebuilt_after_leadpulse_set_statuses_gives_no_contact_a_second_task(portal, tmp_path):
    """Rebuilt from the CRM (or restored from a copy older than the decisions), the store decides each contact
    again while the CRM already holds the status leadpulse set: the status move is no move any more, and the band
    entry calls for the task instead. It is the same follow-up, and must be found, not made again."""
    data = yaml.safe_load(DEMO_TENANT.read_text())
    data["crm"]["connection"].update(base_url=portal.base_url, lookback_seconds=0)
    data["tasks"]["on_bands"] = ["qualified"]
    tenant = validate_tenant(data, DEMO_TENANT)
    environ = {TOKEN_VARIABLE: portal.credentials["access_token"]}
    first = sync_tenant(tenant, state_dir=tmp_path / "lost", clock=ManualClock(AS_OF), environ=environ)
    assert first.tasks > 0
    rebuilt = sync_tenant(tenant, state_dir=tmp_path / "rebuilt", clock=ManualClock(AS_OF), environ=environ)
    assert rebuilt.outcome is RunOutcome.SUCCEEDED
    per_contact = Counter(c for t in portal.vendor.created_tasks() for c in t["contacts"])
    assert sum(per_contact.values()) == first.tasks
    assert max(per_contact.values()) == 1


class CrmTime:
    """The portal's rate-limit clock reading the client's manual clock: a window passes for both at once."""

    time_scale = 1.0

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock

    def now(self) -> float:
        return self.clock.monotonic()


def test_a_rerun_right_after_a_killed_run_stays_under_the_window_the_killed_one_spent(sandbox_factory, tmp_path,
                                                                                       monkeypatch):
    clock = ManualClock(AS_OF)
    portal = sandbox_factory("hubspot", contacts=1_500, seed=SEED, rate_limits=True, tier="starter",
                             clock=CrmTime(clock))
    tenant = tenant_for(portal, tier="starter")
    environ = {TOKEN_VARIABLE: portal.credentials["access_token"]}
    original = Store.apply_page

    def apply_or_die(self, page, run_id=None):
        if portal.stats.count() >= 95:  # the 100 calls the portal allows in 10 s are (almost) spent
            raise Crash()
        return original(self, page, run_id)

    monkeypatch.setattr(Store, "apply_page", apply_or_die)
    with pytest.raises(Crash):
        sync_tenant(tenant, state_dir=tmp_path, clock=clock, environ=environ)
    monkeypatch.undo()
    assert portal.stats.rate_limited == 0
    # A new process: it has no budget of its own yet, only what the store noted of the calls before it.
    monkeypatch.setattr(budget, "_SHARED", {})
    summary = sync_tenant(tenant, state_dir=tmp_path, clock=clock, environ=environ)
    assert summary.outcome is RunOutcome.SUCCEEDED
    assert summary.api_calls > 50  # more than the 5 the window had left
    assert portal.stats.rate_limited == 0
