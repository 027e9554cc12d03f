"""A refusal no retry can change is parked at once; others are tried again next run."""

from __future__ import annotations

from leadpulse.core.contract import PropertyWrite, WriteResult
from leadpulse.core.model import ContactKind

KEY = "lp-acme-c1-props"


def put(store) -> None:
    store.outbox.put_writes([PropertyWrite(KEY, "c1", ContactKind.LEAD, {"lp_score": 5})], run_id=1)


def test_a_permanent_refusal_is_parked_at_once_with_its_reason(store):
    put(store)
    store.outbox.settle([WriteResult(KEY, False, error="CANNOT_UPDATE_CONVERTED_LEAD: converted", permanent=True)],
                        run_id=1)
    assert store.outbox.counts()[("write", "parked")] == 1
    assert store.outbox.pending_writes(10, run_id=2) == []
    [parked] = store.outbox.parked(10)
    assert parked.error == "CANNOT_UPDATE_CONVERTED_LEAD: converted" and parked.attempts == 1


def test_a_refusal_that_may_pass_stays_pending_for_the_next_run(store):
    put(store)
    store.outbox.settle([WriteResult(KEY, False, error="UNABLE_TO_LOCK_ROW: locked")], run_id=1)
    assert [w.key for w in store.outbox.pending_writes(10, run_id=2)] == [KEY]


def test_pending_writes_are_counted_for_the_run_that_has_not_tried_them(store):
    put(store)
    assert store.outbox.due(1).writes == 1
    store.outbox.settle([WriteResult(KEY, False, error="UNABLE_TO_LOCK_ROW: locked")], run_id=1)
    assert store.outbox.due(1).writes == 0
    assert store.outbox.due(2).writes == 1
