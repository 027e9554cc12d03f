from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

import pytest
from support import T0, Card

from leadpulse.core.contract import (
    GoneContact,
    Page,
    PropertyWrite,
    SkippedRecord,
    TaskPriority,
    TaskRequest,
    WriteResult,
)
from leadpulse.core.errors import RunLocked
from leadpulse.core.model import Activity, ActivityKind, Contact, ContactKind, Outcome
from leadpulse.core.store.migrations import applied
from leadpulse.core.store.runs import RunCounts, RunOutcome
from leadpulse.core.store.store import ActivitiesRead, Store, encode_contributions, score_rows


def contact(cid: str, **fields) -> Contact:
    return Contact(cid, ContactKind.CONTACT, T0, email=f"{cid}@example.com", fields=fields, raw={"hs_id": cid})


def activity(aid: str, cid: str, kind=ActivityKind.PAGE_VIEW, days_ago=1, **attributes) -> Activity:
    return Activity(aid, cid, kind, T0 - timedelta(days=days_ago), attributes=attributes)


@dataclass(frozen=True)
class Contribution:
    rule_id: str
    axis: str
    points: float
    occurrences: int
    detail: str


def seed(store: Store, *ids: str, activities=()) -> None:
    store.apply_page(Page("contacts", "c1", contacts=[contact(cid) for cid in ids], activities=activities))


def test_open_creates_wal_store_with_recorded_migrations(store):
    assert store.db.journal_mode == "wal"
    assert applied(store.db) == ["initial", "crm_facts", "decided_under", "run_accounting", "api_calls",
                                 "contacts_gone", "merged_contacts", "push_priority", "contact_created",
                                 "drop_scores_valid_until"]


def test_scores_carry_no_index_on_valid_until(store):
    # none reads through it (the due contacts are found in id order), and each new valid_until moved its entry
    indexes = [row[0] for row in store.db.execute("SELECT name FROM sqlite_master WHERE tbl_name = 'scores'")]
    assert indexes == ["scores", "sqlite_autoindex_scores_1"]


def test_reopening_applies_no_migration_twice(tmp_path):
    Store.open(tmp_path / "s.sqlite").close()
    with Store.open(tmp_path / "s.sqlite") as again:
        assert applied(again.db) == ["initial", "crm_facts", "decided_under", "run_accounting", "api_calls",
                                     "contacts_gone", "merged_contacts", "push_priority", "contact_created",
                                     "drop_scores_valid_until"]


def test_apply_page_stores_records_and_cursor_together(store):
    page = Page(
        "contacts",
        "cursor-7",
        contacts=[contact("c1", title="CTO")],
        activities=[activity("a1", "c1", url="/pricing")],
        outcomes=[Outcome("c1", True, T0)],
        skipped=[SkippedRecord("contacts", "c9", "no email")],
    )
    store.apply_page(page)
    assert store.cursor("contacts") == "cursor-7"
    assert store.contact("c1") == contact("c1", title="CTO")
    assert store.activities("c1") == [activity("a1", "c1", url="/pricing")]
    assert store.counts()["skipped"] == 1
    assert store.counts()["outcomes"] == 1


def test_apply_page_leaves_no_trace_when_it_fails(store):
    broken = Page("contacts", "cursor-2", contacts=[contact("c1")], activities=[activity("a1", "c1", when=object())])
    with pytest.raises(TypeError):
        store.apply_page(broken)
    assert store.cursor("contacts") is None
    assert store.contact("c1") is None


def test_repeated_records_are_stored_once(store):
    seed(store, "c1", activities=[activity("a1", "c1")])
    seed(store, "c1", activities=[activity("a1", "c1")])
    assert store.counts()["contacts"] == 1
    assert store.counts()["activities"] == 1


def test_contacts_to_score_all_streams_every_contact_with_its_activities(store):
    seed(store, "c1", "c2", "c3", activities=[activity("a1", "c1"), activity("a2", "c3"), activity("a3", "c3")])
    got = {c.id: [a.id for a in acts] for c, acts in store.contacts_to_score(all=True, chunk_size=2)}
    assert got == {"c1": ["a1"], "c2": [], "c3": ["a2", "a3"]}


def test_saved_scores_clear_the_dirty_mark(store):
    seed(store, "c1", "c2")
    store.save_scores([Card("c1", 5, "cold"), Card("c2", 7, "warm")], run_id=1, fingerprint="fp1")
    assert list(store.contacts_to_score(fingerprint="fp1")) == []


def test_a_new_activity_makes_its_contact_due(store):
    seed(store, "c1", "c2")
    store.save_scores([Card("c1", 5, "cold"), Card("c2", 7, "warm")], run_id=1, fingerprint="fp1")
    store.apply_page(Page("emails", "e1", activities=[activity("a9", "c2", ActivityKind.EMAIL_OPEN)]))
    assert [c.id for c, _ in store.contacts_to_score(fingerprint="fp1")] == ["c2"]


def test_contacts_scored_under_other_rules_are_due(store):
    seed(store, "c1")
    store.save_scores([Card("c1", 5, "cold")], run_id=1, fingerprint="fp1")
    assert [c.id for c, _ in store.contacts_to_score(fingerprint="fp2")] == ["c1"]


def test_a_chunk_saved_by_span_marks_only_the_contacts_in_its_range(store):
    seed(store, "c1", "c2", "c3", "c4")
    store.save_scores([Card(cid, 5, "cold") for cid in ("c1", "c2", "c3", "c4")], run_id=1, fingerprint="fp1")
    store.apply_page(Page("emails", "e1", activities=[activity("a1", "c3"), activity("a2", "c4")]))
    later = T0 + timedelta(hours=1)
    rows = score_rows([Card("c2", 9, "warm", as_of=later)], 2, "fp2")
    store.save_scored(rows, ["c3"], run_id=2, fingerprint="fp2", as_of=later, span=("c1", "c3"))
    saved = store.current_scores(["c1", "c2", "c3", "c4"])
    assert {cid: (s.run_id, s.fingerprint, s.total) for cid, s in saved.items()} == {
        "c1": (1, "fp1", 5), "c2": (2, "fp2", 9), "c3": (2, "fp2", 5), "c4": (1, "fp1", 5),
    }
    assert saved["c3"].as_of == later
    assert [c.id for c, _ in store.contacts_to_score(fingerprint="fp2")] == ["c1", "c4"]


@pytest.mark.parametrize(("contacts", "size", "expected"), [
    (0, 2, []),
    (1, 2, [("", "c1")]),
    (4, 2, [("", "c2"), ("c2", "c4")]),
    (5, 2, [("", "c2"), ("c2", "c4"), ("c4", "c5")]),
    (5, 9, [("", "c5")]),
])
def test_scoring_bounds_cut_every_contact_into_ranges_of_a_chunk_each(store, contacts, size, expected):
    if contacts:
        seed(store, *(f"c{n}" for n in range(1, contacts + 1)))
    assert list(store.scoring_bounds(True, chunk_size=size)) == expected


def test_a_scoring_batch_makes_a_contact_only_when_asked_for_one_and_gives_ids_and_fields_without(store):
    seed(store, "c1", "c2", "c3")
    store.apply_page(Page("contacts", "c2", contacts=[Contact("c2", ContactKind.LEAD, T0, status="mql",
                                                              fields={"title": "CTO"})]))
    [batch] = store.scoring_batches(True)
    rows = batch.contacts
    assert rows.ids == ["c1", "c2", "c3"] and rows.fields == [{}, {"title": "CTO"}, {}]
    assert [rows.kind(i) for i in range(3)] == [ContactKind.CONTACT, ContactKind.LEAD, ContactKind.CONTACT]
    assert [rows.status(i) for i in range(3)] == [None, "mql", None]
    assert rows._made == [None, None, None]
    assert rows[1] == store.contact("c2") and rows[1].fields is rows.fields[1]
    assert rows[1] is rows[1] and rows[-2] is rows[1]
    assert rows._made[0] is None and rows._made[2] is None
    assert list(rows) == [store.contact(cid) for cid in ("c1", "c2", "c3")] and rows[::2] == [rows[0], rows[2]]
    assert len(rows) == 3


def test_a_scoring_batch_reads_only_the_activities_of_the_kinds_and_vendor_types_asked_for(store):
    seed(store, "c1", "c2", activities=[
        activity("a1", "c1"), activity("a2", "c1", ActivityKind.CALL), activity("a3", "c2", ActivityKind.EMAIL_SENT),
        Activity("a4", "c2", ActivityKind.OTHER, T0, vendor_type="demo_booked"),
        Activity("a5", "c2", ActivityKind.OTHER, T0, vendor_type="webinar_joined"),
    ])

    def read(kinds=(), vendor_types=()):
        found = store.scoring_batches(True, read=ActivitiesRead(frozenset(kinds), frozenset(vendor_types)))
        return [row[1] for batch in found for row in batch.activities]

    assert [row[1] for batch in store.scoring_batches(True) for row in batch.activities] == \
        ["a1", "a2", "a3", "a4", "a5"]
    assert read(["page_view", "email_sent"]) == ["a1", "a3"]
    assert read(["call"], ["demo_booked"]) == ["a2", "a4"]
    assert read(vendor_types=["webinar_joined", "demo_booked"]) == ["a4", "a5"]
    assert read() == []


def test_scoring_bounds_count_only_the_contacts_due(store):
    seed(store, *(f"c{n}" for n in range(1, 8)))
    store.save_scores([Card(cid, 5, "cold") for cid in ("c1", "c2", "c4", "c6", "c7")], run_id=1, fingerprint="fp1")
    store.apply_page(Page("emails", "e1", activities=[activity("a1", "c6")]))
    # due: never scored (c3, c5) and dirty (c6); the ranges still hold the settled ones between
    assert list(store.scoring_bounds(fingerprint="fp1", chunk_size=2)) == [("", "c5"), ("c5", "c6")]
    assert list(store.scoring_bounds(fingerprint="fp2", chunk_size=3)) == [("", "c3"), ("c3", "c6"), ("c6", "c7")]


def test_scores_saved_as_keeping_their_valid_until_update_all_else_and_save_a_score_not_there_after_all(store):
    seed(store, "c1", "c2")
    until = T0 + timedelta(days=3)
    store.save_scores([Card("c1", 5, "cold", valid_until=until)], run_id=1, fingerprint="fp1",
                      statuses={"c1": "mql"}, written={"c1": {"lead_score": 5}})
    later = T0 + timedelta(hours=1)
    kept = score_rows([Card("c1", 9, "warm", as_of=later, valid_until=until, grade="B")], 2, "fp2")
    new = score_rows([Card("c2", 3, "cold", as_of=later, valid_until=until)], 2, "fp2",
                     statuses={"c2": "lead"}, written={"c2": {"lead_score": 3}})
    store.save_scored([], run_id=2, fingerprint="fp2", as_of=later, same_until=kept + new)
    saved = store.current_scores(["c1", "c2"])
    assert {cid: (s.run_id, s.fingerprint, s.as_of, s.total, s.band, s.grade, s.valid_until, s.status, s.written)
            for cid, s in saved.items()} == {
        "c1": (2, "fp2", later, 9, "warm", "B", until, "mql", {"lead_score": 5}),  # status and written kept
        "c2": (2, "fp2", later, 3, "cold", None, until, "lead", {"lead_score": 3}),
    }
    assert [(e.old_total, e.new_total) for e in store.history("c1")][-1] == (5, 9)
    assert list(store.contacts_to_score(fingerprint="fp2")) == []


def test_contacts_whose_score_expired_are_due(store):
    seed(store, "c1", "c2")
    store.save_scores(
        [Card("c1", 5, "cold", valid_until=T0 + timedelta(days=1)), Card("c2", 5, "cold", valid_until=T0 + timedelta(days=9))],
        run_id=1,
        fingerprint="fp1",
    )
    due = store.contacts_to_score(fingerprint="fp1", as_of=T0 + timedelta(days=2))
    assert [c.id for c, _ in due] == ["c1"]


def test_activity_attributes_read_back_equal(store):
    seed(store, "c1", activities=[activity("a1", "c1", url="/pricing", n=2)])
    [(_, acts)] = list(store.contacts_to_score(all=True))
    assert acts[0].attributes == {"url": "/pricing", "n": 2}


def test_saved_score_keeps_contributions(store):
    seed(store, "c1")
    card = Card("c1", 12, "hot", contributions=(Contribution("pricing", "engagement", 10, 2, "visited pricing x2"),))
    store.save_scores([card], run_id=3, fingerprint="fp1")
    saved = store.score("c1")
    assert saved.total == 12 and saved.band == "hot" and saved.run_id == 3
    assert saved.contributions == (
        {"rule_id": "pricing", "axis": "engagement", "points": 10, "occurrences": 2, "detail": "visited pricing x2"},
    )


def test_contributions_are_saved_as_json_whatever_was_encoded_before():
    from leadpulse.core.engine.scoring import Contribution as Engines

    def plain(card):
        return json.dumps([{"rule_id": c.rule_id, "axis": c.axis, "points": c.points, "occurrences": c.occurrences,
                            "detail": c.detail} for c in card.contributions], separators=(",", ":"))

    # Equal as keys, not as text: each must still be written as itself, in any order.
    contributions = [Engines("r", "fit", 12.0, 1, "d"), Engines("r", "fit", 12, 1, "d"),
                     Engines("r", "fit", 0.0, 1, "d"), Engines("r", "fit", -0.0, 1, "d"),
                     Engines("r", "fit", 2.5, 1.0, "d"), Engines("r", "fit", 2.5, 1, "d"),
                     Contribution("r", "fit", 2.5, 1, "d"), Engines(1.0, "fit", 2.5, 1, "d"),
                     Engines(True, "fit", 2.5, 1, "d")]
    for order in (contributions, contributions[::-1]):
        for one in order:
            card = Card("c1", 1, "cold", contributions=(one,))
            assert encode_contributions(card) == plain(card)
    card = Card("c1", 1, "cold", contributions=tuple(contributions))
    assert encode_contributions(card) == plain(card)


def test_a_saved_valid_until_reads_as_the_same_card_as_saving_would_write_it(store):
    seed(store, "c1")
    saved_at = T0 + timedelta(days=3, microseconds=1500)
    store.save_scores([Card("c1", 5, "cold", valid_until=saved_at)], run_id=1, fingerprint="fp1")
    [[(_, _, prior)]] = list(store.scoring_chunks(True))
    assert prior.valid_until == "2025-03-04T12:00:00.001+00:00"
    for same in (saved_at, saved_at - timedelta(microseconds=500), (T0 + timedelta(days=3, milliseconds=1)).replace(tzinfo=None),
                 saved_at.astimezone(timezone(timedelta(hours=2)))):
        assert prior.same_card(Card("c1", 5, "cold", valid_until=same))
    for other in (saved_at + timedelta(milliseconds=1), None, (saved_at + timedelta(hours=2)).replace(tzinfo=None)):
        assert not prior.same_card(Card("c1", 5, "cold", valid_until=other))


def test_history_records_only_changes(store):
    seed(store, "c1")
    store.save_scores([Card("c1", 5, "cold")], run_id=1, fingerprint="fp1")
    store.save_scores([Card("c1", 5, "cold")], run_id=2, fingerprint="fp1")
    store.save_scores([Card("c1", 11, "hot")], run_id=3, fingerprint="fp1", statuses={"c1": "mql"})
    history = store.history("c1")
    assert [(h.old_total, h.new_total, h.old_band, h.new_band, h.new_status) for h in history] == [
        (None, 5, None, "cold", None),
        (5, 11, "cold", "hot", "mql"),
    ]


def test_status_and_written_values_persist_when_not_given(store):
    seed(store, "c1")
    store.save_scores([Card("c1", 5, "cold")], 1, "fp1", statuses={"c1": "lead"}, written={"c1": {"lp_score": 5}})
    store.save_scores([Card("c1", 6, "cold")], 2, "fp1")
    saved = store.score("c1")
    assert saved.status == "lead"
    assert saved.written == {"lp_score": 5}


def test_band_counts_and_top_scores(store):
    seed(store, "c1", "c2", "c3")
    store.save_scores([Card("c1", 5, "cold"), Card("c2", 15, "hot"), Card("c3", 3, "cold")], 1, "fp1")
    assert store.band_counts() == {"cold": 2, "hot": 1}
    assert [s.contact_id for s in store.top_scores(2)] == ["c2", "c1"]


def test_runs_record_start_end_outcome_and_counts(store):
    run_id = store.start_run("acme", T0, full=True)
    store.finish_run(run_id, T0 + timedelta(seconds=3), RunOutcome.SUCCEEDED, RunCounts(pulled=4, scored=2), None)
    [run] = store.runs()
    assert (run.id, run.tenant, run.outcome, run.pulled, run.scored, run.full) == (run_id, "acme", "succeeded", 4, 2, True)
    assert run.finished_at == T0 + timedelta(seconds=3)


def test_second_lock_on_the_same_store_is_refused(store, tmp_path):
    with (
        store.lock("acme"),
        Store.open(store.path) as other,
        pytest.raises(RunLocked, match="tenant 'acme': another run holds"),
        other.lock("acme"),
    ):
        pass


def test_lock_is_refused_to_another_process(store):
    code = (
        "import sys; from leadpulse.core.store.store import Store; from leadpulse.core.errors import RunLocked\n"
        f"s = Store.open({str(store.path)!r})\n"
        "try:\n    s.lock('acme').__enter__()\nexcept RunLocked:\n    sys.exit(3)\n"
    )
    with store.lock("acme"):
        assert subprocess.run([sys.executable, "-c", code], env=os.environ).returncode == 3


def test_lock_is_free_again_after_the_run(store):
    with store.lock("acme"):
        pass
    with store.lock("acme"):
        pass


def write(contact_id: str, **values) -> PropertyWrite:
    return PropertyWrite(f"lp-acme-{contact_id}-props", contact_id, ContactKind.CONTACT, values)


def task(key: str) -> TaskRequest:
    return TaskRequest(key, "c1", ContactKind.CONTACT, "o1", "Call c1", "body", TaskPriority.HIGH, T0)


def test_outbox_merges_a_new_write_into_the_pending_one(store):
    store.outbox.put_writes([write("c1", lp_score=5, lp_band="cold")], run_id=1)
    store.outbox.put_writes([write("c1", lp_score=7)], run_id=2)
    [pending] = store.outbox.pending_writes(10, run_id=3)
    assert pending.values == {"lp_score": 7, "lp_band": "cold"}


def test_outbox_write_done_is_not_pending(store):
    store.outbox.put_writes([write("c1", lp_score=5)], run_id=1)
    store.outbox.settle([WriteResult("lp-acme-c1-props", True, remote_id="c1")], run_id=1)
    assert store.outbox.pending_writes(10, run_id=2) == []
    assert store.outbox.counts()[("write", "done")] == 1


def test_outbox_failure_is_retried_next_run_not_this_one(store):
    store.outbox.put_writes([write("c1", lp_score=5)], run_id=1)
    store.outbox.settle([WriteResult("lp-acme-c1-props", False, error="INVALID_OPTION")], run_id=1)
    assert store.outbox.pending_writes(10, run_id=1) == []
    assert [w.key for w in store.outbox.pending_writes(10, run_id=2)] == ["lp-acme-c1-props"]
    assert store.outbox.failures()[0].error == "INVALID_OPTION"


def test_outbox_parks_a_row_after_the_attempt_limit(store):
    store.outbox.put_writes([write("c1", lp_score=5)], run_id=1)
    for run_id in range(1, store.outbox.max_attempts + 1):
        store.outbox.settle([WriteResult("lp-acme-c1-props", False, error="bad")], run_id=run_id)
    assert store.outbox.counts()[("write", "parked")] == 1
    assert store.outbox.pending_writes(10, run_id=99) == []


def test_a_new_write_revives_a_parked_one_with_the_values_it_still_owes(store):
    store.outbox.put_writes([write("c1", lp_score=10, lp_band="hot")], run_id=1)
    for run_id in range(1, store.outbox.max_attempts + 1):
        store.outbox.settle([WriteResult("lp-acme-c1-props", False, error="bad")], run_id=run_id)
    store.outbox.put_writes([write("c1", lp_score=13)], run_id=7)
    [revived] = store.outbox.pending_writes(10, run_id=8)
    assert revived.values == {"lp_score": 13, "lp_band": "hot"}
    assert store.outbox.counts()[("write", "parked")] == 0


def test_outbox_queues_a_task_key_once(store):
    store.outbox.put_tasks([task("lp-acme-c1-band-hot-1")], run_id=1)
    store.outbox.settle([WriteResult("lp-acme-c1-band-hot-1", True, remote_id="t1")], run_id=1)
    store.outbox.put_tasks([task("lp-acme-c1-band-hot-1")], run_id=2)
    assert store.outbox.pending_tasks(10, run_id=2) == []
    assert store.outbox.task_count("lp-acme-c1-band-hot-") == 1


def test_outbox_task_round_trips(store):
    store.outbox.put_tasks([task("k1")], run_id=1)
    assert store.outbox.pending_tasks(10, run_id=2) == [task("k1")]


def test_outbox_sending_tasks_are_listed_until_settled(store):
    store.outbox.put_tasks([task("k1")], run_id=1)
    store.outbox.mark_sending(["k1"], run_id=1)
    assert [t.key for t in store.outbox.sending_tasks()] == ["k1"]
    store.outbox.release(["k1"])
    assert store.outbox.sending_tasks() == []
    assert [t.key for t in store.outbox.pending_tasks(10, run_id=2)] == ["k1"]


def test_a_record_seen_again_unchanged_leaves_its_contact_alone(tmp_path):
    from dataclasses import replace
    from datetime import timedelta

    from leadpulse.core.contract import Page
    from leadpulse.core.model import Activity, ActivityKind, Contact, ContactKind

    at = datetime(2026, 1, 1, tzinfo=UTC)
    person = Contact("c1", ContactKind.CONTACT, at, email="a@example.com", fields={"title": "CEO"}, raw={"x": "1"})
    visit = Activity("a1", "c1", ActivityKind.PAGE_VIEW, at, attributes={"url": "/pricing"})
    with Store.open(tmp_path / "t.sqlite") as store:
        def dirty() -> int:
            return store.db.execute("SELECT dirty FROM contacts WHERE id = 'c1'").fetchone()[0]

        store.apply_page(Page("contacts", "1", contacts=[person], activities=[visit]))
        assert dirty() == 1
        store.db.conn.execute("UPDATE contacts SET dirty = 0")
        # the CRM moved the modification time (our own write landed) but nothing scoring reads changed
        store.apply_page(Page("contacts", "2", contacts=[replace(person, updated_at=at + timedelta(hours=1))],
                              activities=[visit]))
        assert dirty() == 0
        store.apply_page(Page("contacts", "3", activities=[replace(visit, attributes={"url": "/careers"})]))
        assert dirty() == 1
        store.db.conn.execute("UPDATE contacts SET dirty = 0")
        store.apply_page(Page("contacts", "4", contacts=[replace(person, fields={"title": "Student"})]))
        assert dirty() == 1


def test_a_store_made_by_the_first_schema_catches_up_and_keeps_its_data(tmp_path):
    import sqlite_utils

    from leadpulse.core.store.migrations import INITIAL, MIGRATIONS, migrate

    path = tmp_path / "old.sqlite"
    old = sqlite_utils.Database(path)
    migrate(old, (INITIAL,))
    old.execute("INSERT INTO contacts (id, kind, updated_at) VALUES ('c1', 'contact', '2025-03-01T12:00:00.000+00:00')")
    old.execute("""INSERT INTO scores (contact_id, fingerprint, as_of, total, band, axes, contributions)
                   VALUES ('c1', 'fp1', '2025-03-01T12:00:00.000+00:00', 5, 'cold', '{}', '[]')""")
    old.conn.commit()
    old.close()
    with Store.open(path) as store:
        assert applied(store.db) == [migration.name for migration in MIGRATIONS]
        assert store.contact("c1") is not None and store.score("c1").total == 5
        store.set_crm_fact("status_order", ["lead", "customer"])
        assert store.crm_fact("status_order") == ["lead", "customer"]
        [(_, _, prior)] = next(store.scoring_chunks(all=True))
        assert prior.decided_under is None and not prior.settled("any decisions")


def test_the_call_log_keeps_calls_across_openings_in_flight_ones_unanswered(tmp_path):
    path = tmp_path / "acme.sqlite"
    with Store.open(path) as store:
        old = store.calls.sent("default", T0 - timedelta(hours=2))
        store.calls.answered(old, T0 - timedelta(hours=2))
        done = store.calls.sent("search", T0)
        store.calls.answered(done, T0 + timedelta(seconds=0.25))
        store.calls.sent("default", T0 + timedelta(seconds=1))  # the process dies before the answer
    with Store.open(path) as store:
        store.calls.forget_before(T0 - timedelta(hours=1))
        assert store.calls.since(T0 - timedelta(days=1)) == [
            ("search", T0, T0 + timedelta(seconds=0.25)), ("default", T0 + timedelta(seconds=1), None)]
        assert store.calls.since(T0 + timedelta(seconds=0.5)) == [("default", T0 + timedelta(seconds=1), None)]


def test_a_call_noted_inside_a_transaction_is_kept_with_it(store):
    with store.transaction():
        store.calls.sent("default", T0)
    assert len(store.calls.since(T0)) == 1


def test_a_contact_gone_from_the_crm_is_kept_but_never_scored_again_and_what_it_was_owed_is_parked(store):
    store.apply_page(Page("contacts", "c1", contacts=[contact("c1"), contact("c2")],
                          activities=[activity("a1", "c1")]))
    store.outbox.put_writes([write("c1", score=5), write("c2", score=3)], run_id=1)
    store.outbox.put_tasks([task("lp-acme-c1-task-1")], run_id=1)
    store.apply_page(Page("contacts", "c2", outcomes=[Outcome("c1", True, T0)],
                          gone=[GoneContact("c1", "converted into Contact 0031")]))
    assert [c.id for c, _ in store.contacts_to_score(all=True)] == ["c2"]
    assert [c.id for c, _ in store.contacts_to_score()] == ["c2"]
    assert store.contact("c1") is not None and store.activities("c1")  # its history stays
    parked = {r.key: r.error for r in store.outbox.parked(10)}
    assert parked == {"lp-acme-c1-props": "the contact is gone from the CRM: converted into Contact 0031",
                      "lp-acme-c1-task-1": "the contact is gone from the CRM: converted into Contact 0031"}
    store.apply_page(Page("contacts", "c3", contacts=[contact("c1")]))  # restored from the recycle bin
    assert [c.id for c, _ in store.contacts_to_score(all=True)] == ["c1", "c2"]
