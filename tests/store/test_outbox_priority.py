"""A queued write keeps what a push that cannot afford every write ranks it by; a merged write keeps the higher."""

from __future__ import annotations

from leadpulse.core.contract import PropertyWrite, WriteResult
from leadpulse.core.model import ContactKind
from leadpulse.core.store.outbox import Due, WritePriority


def write(cid: str, **values) -> PropertyWrite:
    return PropertyWrite(f"lp-acme-{cid}-props", cid, ContactKind.LEAD, values)


def put(store, cid: str, priority: WritePriority, run_id: int = 1, **values) -> None:
    queued = write(cid, **values)
    store.outbox.put_writes([queued], run_id, {queued.key: priority})


def priority_of(store, cid: str) -> WritePriority:
    status, move = store.db.execute("SELECT status_change, score_move FROM outbox WHERE key = ?",
                                    (f"lp-acme-{cid}-props",)).fetchone()
    return WritePriority(bool(status), move)


def ranked(store, *, status_change: bool, run_id: int = 9) -> list[str]:
    return [w.contact_id for w in store.outbox.ranked_writes(10, run_id, status_change=status_change)]


def test_ranked_writes_come_status_changes_apart_and_largest_score_move_first_then_oldest(store):
    put(store, "c1", WritePriority(False, 2.0), lp_score=2)
    put(store, "c2", WritePriority(True, 1.0), lp_score=1, lifecycle="mql")
    put(store, "c3", WritePriority(False, 7.5), lp_score=7)
    put(store, "c4", WritePriority(False, 2.0), lp_score=4)
    put(store, "c5", WritePriority(True, 4.0), lp_score=9, lifecycle="mql")
    assert ranked(store, status_change=True) == ["c5", "c2"]
    assert ranked(store, status_change=False) == ["c3", "c1", "c4"]
    assert store.outbox.due(9) == Due(status_writes=2, tasks=0, other_writes=3)


def test_a_write_queued_without_a_priority_ranks_last(store):
    store.outbox.put_writes([write("c1", lp_score=1)], run_id=1)
    put(store, "c2", WritePriority(False, 0.5), lp_score=1)
    assert priority_of(store, "c1") == WritePriority(False, 0.0)
    assert ranked(store, status_change=False) == ["c2", "c1"]


def test_a_write_merged_into_a_pending_one_keeps_the_higher_priority_of_the_two(store):
    put(store, "c1", WritePriority(True, 9.0), lp_score=12, lifecycle="mql")
    put(store, "c1", WritePriority(False, 2.0), run_id=2, lp_score=14)
    assert priority_of(store, "c1") == WritePriority(True, 9.0)
    put(store, "c1", WritePriority(False, 11.0), run_id=3, lp_score=25)
    assert priority_of(store, "c1") == WritePriority(True, 11.0)
    [merged] = store.outbox.ranked_writes(10, 9, status_change=True)
    assert merged.values == {"lp_score": 25, "lifecycle": "mql"}


def test_a_write_merged_into_a_parked_one_keeps_its_status_change_too(store):
    put(store, "c1", WritePriority(True, 3.0), lp_score=12, lifecycle="mql")
    store.outbox.settle([WriteResult("lp-acme-c1-props", False, error="INVALID_OPTION", permanent=True)], run_id=1)
    put(store, "c1", WritePriority(False, 1.0), run_id=2, lp_score=13)
    assert priority_of(store, "c1") == WritePriority(True, 3.0)


def test_a_write_after_a_delivered_one_starts_over_with_its_own_priority(store):
    put(store, "c1", WritePriority(True, 9.0), lp_score=12, lifecycle="mql")
    store.outbox.settle([WriteResult("lp-acme-c1-props", True, remote_id="c1")], run_id=1)
    put(store, "c1", WritePriority(False, 1.0), run_id=2, lp_score=13)
    assert priority_of(store, "c1") == WritePriority(False, 1.0)


def test_due_counts_only_the_pending_rows_the_run_has_not_tried(store):
    put(store, "c1", WritePriority(True, 1.0), lp_score=1)
    put(store, "c2", WritePriority(False, 1.0), lp_score=1)
    store.outbox.settle([WriteResult("lp-acme-c2-props", False, error="locked")], run_id=9)
    assert store.outbox.due(9) == Due(status_writes=1, tasks=0, other_writes=0)
    assert store.outbox.due(10) == Due(status_writes=1, tasks=0, other_writes=1)
