"""A queued write keeps what a push that cannot afford every write ranks it by; a merged write keeps the higher."""

from __future__ import annotations

import json

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


def row_of(store, cid: str) -> tuple:
    return store.db.execute(
        "SELECT state, attempts, error, last_run, status_change, score_move, payload FROM outbox WHERE key = ?",
        (f"lp-acme-{cid}-props",)).fetchone()


def test_a_write_merged_into_a_tried_pending_one_of_higher_priority_keeps_its_attempts_error_and_rank(store):
    put(store, "c1", WritePriority(True, 6.0), lp_score=12, lifecycle="mql")
    store.outbox.settle([WriteResult("lp-acme-c1-props", False, error="locked")], run_id=4)
    put(store, "c1", WritePriority(False, 2.0), run_id=5, lp_score=14)  # its priority stands: only values merge
    state, attempts, error, last_run, status, move, payload = row_of(store, "c1")
    assert (state, attempts, error, last_run, status, move) == ("pending", 1, "locked", 4, 1, 6.0)
    assert json.loads(payload)["values"] == {"lp_score": 14, "lifecycle": "mql"}
    # still a status write, tried in run 4 and not again in it
    assert (ranked(store, status_change=True, run_id=4), ranked(store, status_change=True, run_id=5)) == ([], ["c1"])


def test_writes_queued_together_into_new_pending_parked_and_delivered_rows_each_merge_as_alone(store):
    put(store, "c2", WritePriority(False, 5.0), lp_score=5)  # pending, its priority stands
    put(store, "c3", WritePriority(False, 1.0), lp_score=1)  # pending, outranked by the new write
    put(store, "c4", WritePriority(True, 2.0), lp_score=2, lifecycle="mql")  # parked
    store.outbox.settle([WriteResult("lp-acme-c4-props", False, error="INVALID", permanent=True)], run_id=1)
    put(store, "c5", WritePriority(False, 9.0), lp_score=9)  # delivered
    store.outbox.settle([WriteResult("lp-acme-c5-props", True, remote_id="c5")], run_id=1)
    writes = [write(cid, lp_score=20 + n) for n, cid in enumerate(["c1", "c2", "c3", "c4", "c5"])]
    store.outbox.put_writes(writes, 2, {w.key: WritePriority(False, 3.0) for w in writes})
    found = {cid: row_of(store, cid) for cid in ("c1", "c2", "c3", "c4", "c5")}
    assert {cid: (row[0], row[1], row[4], row[5]) for cid, row in found.items()} == {
        "c1": ("pending", 0, 0, 3.0), "c2": ("pending", 0, 0, 5.0), "c3": ("pending", 0, 0, 3.0),
        "c4": ("pending", 0, 1, 3.0), "c5": ("pending", 0, 0, 3.0),
    }
    assert {cid: json.loads(row[6])["values"] for cid, row in found.items()} == {
        "c1": {"lp_score": 20}, "c2": {"lp_score": 21}, "c3": {"lp_score": 22},
        "c4": {"lp_score": 23, "lifecycle": "mql"}, "c5": {"lp_score": 24},
    }
