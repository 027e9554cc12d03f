"""Outbox rows whose push came back neither confirmed nor refused: a task stays `sending` until it is looked up."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from leadpulse.core.contract import PropertyWrite, TaskPriority, TaskRequest, WriteResult
from leadpulse.core.model import ContactKind
from leadpulse.core.runtime.pipeline import complete

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
TASK = TaskRequest("lp-acme-c1-band-hot-1", "c1", ContactKind.CONTACT, "o1", "Call c1", "body", TaskPriority.HIGH, T0)
WRITE = PropertyWrite("lp-acme-c1-props", "c1", ContactKind.CONTACT, {"lp_score": 5})


@pytest.fixture
def store(store):
    """The store with a task handed over in run 1 and a write queued in it."""
    store.outbox.put_tasks([TASK], run_id=1)
    store.outbox.put_writes([WRITE], run_id=1)
    store.outbox.mark_sending([TASK.key], run_id=1)
    return store


def test_a_key_the_connector_gave_no_result_for_is_failed_with_its_outcome_unknown():
    [result] = complete(["k1"], [])
    assert not result.ok and result.outcome_unknown and result.error


def test_a_task_handed_over_without_a_result_stays_sending_for_the_next_run_to_look_up(store):
    store.outbox.settle(complete([TASK.key], []), run_id=1)
    assert [t.key for t in store.outbox.sending_tasks()] == [TASK.key]
    assert store.outbox.pending_tasks(10, run_id=2) == []
    assert store.outbox.failures()[0].attempts == 1


def test_a_write_without_a_result_goes_back_to_pending(store):
    store.outbox.settle(complete([WRITE.key], []), run_id=1)
    assert [w.key for w in store.outbox.pending_writes(10, run_id=2)] == [WRITE.key]


def test_a_task_the_crm_refused_goes_back_to_pending(store):
    store.outbox.settle([WriteResult(TASK.key, False, error="400 associations invalid")], run_id=1)
    assert store.outbox.sending_tasks() == []
    assert [t.key for t in store.outbox.pending_tasks(10, run_id=2)] == [TASK.key]


def test_a_task_whose_outcome_stays_unknown_is_parked_at_the_attempt_limit(store):
    for run_id in range(1, store.outbox.max_attempts + 1):
        store.outbox.settle(complete([TASK.key], []), run_id=run_id)
    assert store.outbox.counts()[("task", "parked")] == 1
