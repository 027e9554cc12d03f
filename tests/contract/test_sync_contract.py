"""What every connector's whole sync must do, whatever the CRM: one suite run against each CRM's sandbox through its
real SDK (see crms.py for how each is driven).

A full sync leaves the engine's scores in the CRM; a quiet run writes nothing; a crash at any point, a lost store, a
storm of faults or an unconfirmed task batch ends with the CRM an uninterrupted run leaves, each task once; a record
the CRM refuses is retried, then parked; refused credentials stop the run with a message that names what to check;
a dry run sends nothing.
"""

from __future__ import annotations

import shutil
import sqlite3
import time
from collections import Counter
from contextlib import closing
from datetime import UTC, datetime, timedelta

import pytest
from crms import AS_OF, CONTACTS, SEED, CrmDriver, sync

from leadpulse.core.clock import ManualClock, ScaledClock
from leadpulse.core.store.outbox import Outbox
from leadpulse.core.store.runs import RunOutcome
from leadpulse.core.store.store import Store
from leadpulse.sandbox import Sandbox


class Crash(BaseException):
    """Stands for the process being killed: nothing after it runs, no handler swallows it."""


def _raise(*args, **kwargs):
    raise Crash()


def stored(crm: CrmDriver, sb: Sandbox, state_dir) -> Store:
    return Store.open(crm.tenant(sb).store_path(state_dir))


def test_a_full_sync_leaves_every_contact_value_equal_to_the_engine_scores(crm, portal, tmp_path):
    summary = sync(crm, portal, tmp_path)
    assert summary.outcome is RunOutcome.SUCCEEDED, summary.error
    people = crm.people(portal)
    assert summary.written == len(people) and summary.rate_limited == 0
    with stored(crm, portal, tmp_path) as store:
        for contact_id in people:
            score = store.score(contact_id)
            assert score is not None
            held = crm.owned_values(portal, contact_id)
            written = {name: crm.wire(value) for name, value in score.written.items() if name in held}
            assert written == {name: held[name] for name in written}
            assert len(written) >= 5  # the score, its axes, band, grade and quadrant at least


def test_every_stored_contact_carries_the_moment_its_crm_record_was_made(crm, portal, tmp_path):
    sync(crm, portal, tmp_path)
    with stored(crm, portal, tmp_path) as store:
        made = {contact_id: store.contact(contact_id) for contact_id in crm.people(portal)}
    created = {contact_id: contact.created_at for contact_id, contact in made.items() if contact is not None}
    assert len(created) == len(made) and None not in created.values()
    # A Lead converted into a Contact was made at its conversion; every other person is the generated one.
    generated = {portal.crm.id_of(index): index for index in range(portal.crm.size)}
    compared = 0
    for contact_id, at in created.items():
        if contact_id in generated:
            expected = datetime.fromtimestamp(portal.crm.created_ms(generated[contact_id]) / 1000, tz=UTC)
            assert expected - timedelta(seconds=1) < at <= expected, contact_id  # Pipedrive says it to the second
            compared += 1
    assert compared > len(made) // 2


def test_a_run_with_nothing_changed_writes_nothing_and_makes_at_most_one_call_per_object(crm, portal, tmp_path):
    clock = ScaledClock(1000)  # windows follow the real time the sandbox stamps changes with
    sync(crm, portal, tmp_path, clock)
    # A CRM stamping changes to the second (Pipedrive) shows one made in the second a run starts to the run after it:
    # the echo run starts in a later second than the first run's last write, so it is the one to read them all.
    time.sleep(1.0 - time.time() % 1.0)
    echo = sync(crm, portal, tmp_path, clock)  # reads back leadpulse's own writes, which moved their stamps
    assert (echo.written, echo.tasks) == (0, 0)
    portal.stats.reset()
    quiet = sync(crm, portal, tmp_path, clock)
    assert (quiet.outcome, quiet.pulled, quiet.written, quiet.tasks) == (RunOutcome.SUCCEEDED, 0, 0, 0)
    assert {route: sum(by.values()) for route, by in portal.stats.by_route().items()} == crm.quiet_calls()


def crash_after_pull(crm, monkeypatch):
    from leadpulse.core.runtime import pipeline

    monkeypatch.setattr(pipeline, "score_contacts", _raise)


def crash_after_scoring(crm, monkeypatch):
    from leadpulse.core.runtime import pipeline

    monkeypatch.setattr(pipeline, "push", _raise)


def crash_in_the_middle_of_pushing(crm, monkeypatch):
    original = crm.connector.write_properties
    calls = Counter()

    def write_then_die(self, writes):
        results = original(self, writes)  # the CRM has the batch, the outbox never hears of it
        calls["n"] += 1
        if calls["n"] == 2:
            raise Crash()
        return results

    monkeypatch.setattr(crm.connector, "write_properties", write_then_die)


def crash_between_task_creation_and_its_commit(crm, monkeypatch):
    original = Outbox.settle

    def settle_or_die(self, results, run_id):
        if any("-task-" in r.key for r in results):
            monkeypatch.setattr(Outbox, "settle", original)
            raise Crash()
        return original(self, results, run_id)

    monkeypatch.setattr(Outbox, "settle", settle_or_die)


@pytest.mark.parametrize("crash", [crash_after_pull, crash_after_scoring, crash_in_the_middle_of_pushing,
                                   crash_between_task_creation_and_its_commit])
def test_after_a_crash_the_next_run_ends_with_the_crm_of_an_uninterrupted_run(crm, portal, tmp_path, monkeypatch,
                                                                             reference, crash):
    crash(crm, monkeypatch)
    with pytest.raises(Crash):
        sync(crm, portal, tmp_path)
    monkeypatch.undo()
    summary = sync(crm, portal, tmp_path)
    assert summary.outcome is RunOutcome.SUCCEEDED, summary.error
    assert crm.state(portal) == reference


def test_rate_limit_storms_5xx_dropped_and_cut_off_answers_are_ridden_out_with_nothing_lost(crm, portal, tmp_path,
                                                                                           reference):
    refusals = crm.storm(portal.faults)
    summary = sync(crm, portal, tmp_path)
    assert summary.outcome is RunOutcome.SUCCEEDED, summary.error
    assert summary.rate_limited == refusals
    assert crm.state(portal) == reference


def test_a_task_batch_whose_answer_was_lost_is_settled_by_its_keys_in_the_same_run_not_created_again(
        crm, portal, tmp_path, reference):
    portal.faults.drop_next(crm.task_route, applied=True)
    first = sync(crm, portal, tmp_path)
    assert first.outcome is RunOutcome.SUCCEEDED and first.tasks == sum(reference[1].values())
    assert crm.state(portal) == reference
    assert portal.stats.count(crm.task_route) == crm.task_calls(first.tasks)


def test_a_5xx_on_a_task_batch_leaves_the_run_succeeded_and_the_next_run_creates_each_task_once(crm, portal, tmp_path,
                                                                                             reference):
    portal.faults.fail_next(crm.task_route, 503)  # a create is not retried on a 5xx: its outcome is unknown
    clock = ManualClock(AS_OF)  # one clock: the second run starts after the first ended, however long it paced
    first = sync(crm, portal, tmp_path, clock)
    assert first.outcome is RunOutcome.SUCCEEDED and first.error is None
    assert first.tasks < sum(reference[1].values())
    second = sync(crm, portal, tmp_path, clock)
    assert second.outcome is RunOutcome.SUCCEEDED
    assert crm.state(portal) == reference


def test_a_store_restored_from_a_copy_taken_before_its_tasks_were_created_creates_no_second_task(crm, portal, tmp_path,
                                                                                               reference):
    state = tmp_path / "state"
    sync(crm, portal, state, dry_run=True)  # everything scored and queued, nothing sent
    path = crm.tenant(portal).store_path(state)
    with closing(sqlite3.connect(path)) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    shutil.copy(path, tmp_path / "backup.sqlite")
    assert sync(crm, portal, state).tasks == sum(reference[1].values())
    for sidecar in (path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        sidecar.unlink(missing_ok=True)  # a lost -wal, as a restore from the copy loses it
    shutil.copy(tmp_path / "backup.sqlite", path)
    again = sync(crm, portal, state)
    assert again.outcome is RunOutcome.SUCCEEDED and again.tasks == sum(reference[1].values())  # found, settled
    assert crm.state(portal) == reference  # each task once
    assert portal.stats.count(crm.task_route) == crm.task_calls(again.tasks)


def test_a_batch_write_with_refused_records_writes_the_good_ones_and_retries_the_refused_next_run(crm, portal,
                                                                                                tmp_path, reference):
    people = crm.people(portal)
    bad = [people[i] for i in (3, 77, 150)]
    portal.faults.fail_records(bad)
    first = sync(crm, portal, tmp_path)
    assert first.outcome is RunOutcome.SUCCEEDED and first.written == len(people) - len(bad)
    assert first.refused == len(bad)
    assert all(crm.owned_values(portal, b) == reference[0][b] for b in set(reference[0]) - set(bad))
    with stored(crm, portal, tmp_path) as store:
        failures = store.outbox.failures()
    tenant = crm.tenant(portal).name
    assert sorted(f.key for f in failures) == sorted(f"lp-{tenant}-{b}-props" for b in bad)
    assert all(f.attempts == 1 and f.error for f in failures)
    portal.faults.clear()
    second = sync(crm, portal, tmp_path)
    assert second.written == len(bad)
    assert crm.state(portal) == reference


def test_a_record_refused_again_and_again_is_parked_and_no_longer_sent(crm, portal, tmp_path):
    bad = crm.people(portal)[9]
    portal.faults.fail_records([bad])
    clock = ManualClock(AS_OF)
    for _ in range(5):
        sync(crm, portal, tmp_path, clock)
        clock.advance(60)
    with stored(crm, portal, tmp_path) as store:
        [before] = store.outbox.parked(10)
    later = sync(crm, portal, tmp_path, clock)
    # A contact whose score time alone moved in the last minute may be written; the parked one is not tried again.
    assert later.refused == 0
    with stored(crm, portal, tmp_path) as store:
        assert store.outbox.counts()[("write", "parked")] == 1
        [parked] = store.outbox.parked(10)
    assert parked == before and parked.contact_id == bad and parked.error


def test_refused_credentials_end_the_run_with_a_message_that_names_the_tenant_and_what_to_check(crm, portal, tmp_path):
    summary = sync(crm, portal, tmp_path, environ=crm.wrong_environ(portal))
    assert summary.outcome is RunOutcome.FAILED
    tenant = crm.tenant(portal).name
    assert f"'{tenant}'" in summary.error and crm.secret_key in summary.error
    assert "not-the-secret" not in summary.error
    assert portal.stats.count(status=crm.refused_status) == 1  # stopped at once, no retries


def test_a_dry_run_sends_nothing_and_leaves_its_writes_for_the_next_run(crm, portal, tmp_path, reference):
    dry = sync(crm, portal, tmp_path, dry_run=True)
    assert dry.outcome is RunOutcome.SUCCEEDED and (dry.written, dry.tasks) == (0, 0)
    assert portal.stats.count(crm.write_route) == 0 and portal.stats.count(crm.task_route) == 0
    with stored(crm, portal, tmp_path) as store:
        counts = store.outbox.counts()
    assert counts[("write", "pending")] == len(crm.people(portal))
    assert counts[("task", "pending")] == sum(reference[1].values())
    sync(crm, portal, tmp_path)
    assert crm.state(portal) == reference


def test_a_store_rebuilt_after_leadpulse_set_statuses_gives_no_contact_a_second_task(crm, portal, tmp_path):
    """Rebuilt from the CRM (or restored from a copy older than the decisions), the store decides each contact
    again while the CRM already holds the status leadpulse set: the status move is no move any more, and the band
    entry calls for the task instead. It is the same follow-up, and must be found, not made again."""
    tenant = crm.tenant(portal)
    top = tenant.scoring.bands[-1].name
    tenant = tenant.model_copy(update={"tasks": tenant.tasks.model_copy(update={"on_bands": (top,)})})
    first = sync(crm, portal, tmp_path / "lost", tenant=tenant)
    assert first.tasks > 0
    # after the first run's writes, so a CRM read up to the run's start shows every contact, statuses set
    later = ManualClock(datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1))
    rebuilt = sync(crm, portal, tmp_path / "rebuilt", later, tenant=tenant)
    assert rebuilt.outcome is RunOutcome.SUCCEEDED and rebuilt.scored == len(crm.people(portal))
    per_contact = Counter(contact for contact, _ in crm.tasks(portal))
    assert sum(per_contact.values()) == first.tasks
    assert max(per_contact.values()) == 1


def test_the_allowance_running_out_mid_push_ends_the_run_and_the_next_run_writes_everything_once(
        crm, sandbox_factory, tmp_path, reference, monkeypatch):
    # the allowance counted for real, its windows a thousand times shorter; scored as of the reference's moment
    portal = crm.prepare(sandbox_factory(crm.crm, contacts=CONTACTS, seed=SEED, rate_limits=True, time_scale=1000,
                                         **crm.sandbox_options))
    original = crm.connector.write_properties

    def write_then_spend(self, writes):
        results = original(self, writes)
        portal.limits.tune("DAILY", limit=1)  # the org's other integrations spend what is left of the day
        return results

    monkeypatch.setattr(crm.connector, "write_properties", write_then_spend)
    first = sync(crm, portal, tmp_path)
    assert first.outcome is RunOutcome.QUOTA_EXHAUSTED, first.error
    assert first.written > 0  # what was settled before the allowance ran out is counted
    assert first.written < len(crm.people(portal)) or first.tasks < sum(reference[1].values())
    monkeypatch.undo()
    portal.limits.tune("DAILY", limit=1_000_000)  # a day later
    second = sync(crm, portal, tmp_path)
    assert second.outcome is RunOutcome.SUCCEEDED, second.error
    assert crm.state(portal) == reference
