"""A rescore shared among worker processes saves exactly what one process would (each worker saving its own
chunks, one at a time)."""

from __future__ import annotations

import functools
import os
import sqlite3
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from support import REPO_CONFIG
from synthetic import EXPORT_AT, records

from leadpulse.connectors.file import parse_activity, parse_contact
from leadpulse.core.config.files import load_tenant
from leadpulse.core.contract import Page
from leadpulse.core.engine.scoring import Engine
from leadpulse.core.errors import ScoringFailed
from leadpulse.core.runtime import pipeline, scoring_pass
from leadpulse.core.runtime.scoring_pass import ScoringJob, score_contacts
from leadpulse.core.runtime.workers import in_workers
from leadpulse.core.store.runs import RunOutcome
from leadpulse.core.store.store import Store

DEMO = REPO_CONFIG / "demo-file.yaml"
CONTACTS = 3000
CHUNK = 100  # enough chunks for the workers to share

#: everything scoring saves, in an order independent of rowids; the outbox without its wall-clock time
SAVED = {
    "scores": "SELECT * FROM scores ORDER BY contact_id",
    # workers save their chunks as they finish them: a contact's history in its order, not every contact's
    "history": "SELECT contact_id, run_id, at, old_total, new_total, old_band, new_band, old_status, new_status "
               "FROM history ORDER BY contact_id, id",
    "outbox": "SELECT key, kind, contact_id, payload, state, attempts, created_run FROM outbox ORDER BY key",
    "dirty": "SELECT id, dirty FROM contacts ORDER BY id",
}


@pytest.fixture(scope="module")
def tenant():
    return load_tenant(DEMO)


def older_rules(tenant):
    changes = {"pricing-page": {"points": 2}, "email-click": {"half_life_days": 7}, "replied": {"within_days": 30}}
    rules = tuple(rule.model_copy(update=changes.get(rule.id or "", {})) for rule in tenant.scoring.rules)
    return tenant.scoring.model_copy(update={"rules": rules})


def scored_store(path: Path, tenant) -> Path:
    with Store.open(path) as store:
        contacts, activities = [], []
        for contact, acts, _ in records(CONTACTS):
            contacts.append(parse_contact(contact, tenant.fields, EXPORT_AT))
            activities += [parse_activity(activity, {}, EXPORT_AT) for activity in acts]
        store.apply_page(Page("contacts", None, contacts=contacts, activities=activities))
        score_contacts(store, tenant, Engine(older_rules(tenant)), run_id=1, as_of=EXPORT_AT, full=True)
    return path


def rescored(path: Path, tenant, workers: int) -> dict[str, list[tuple]]:
    """Rescore after the rule change, then again a month later (only the contacts then due)."""
    engine = Engine(tenant.scoring)
    with Store.open(path) as store:
        score_contacts(store, tenant, engine, run_id=2, as_of=EXPORT_AT, full=True, chunk_size=CHUNK, workers=workers)
        later = EXPORT_AT + timedelta(days=30)
        score_contacts(store, tenant, engine, run_id=3, as_of=later, chunk_size=CHUNK, workers=workers)
    with sqlite3.connect(path) as db:
        return {name: db.execute(query).fetchall() for name, query in SAVED.items()}


@pytest.mark.parametrize("workers", [1, 2])
def test_a_pass_over_the_contacts_due_leaves_none_of_them_due(tmp_path, tenant, workers):
    path = scored_store(tmp_path / "s.sqlite", tenant)
    engine = Engine(tenant.scoring)
    with Store.open(path) as store:
        score_contacts(store, tenant, engine, run_id=2, as_of=EXPORT_AT, full=True, chunk_size=CHUNK)
        # a new title for every third contact: its fit, so its card, changes; when its score expires does not
        changed = [parse_contact({**contact, "job_title": "VP Sales"}, tenant.fields, EXPORT_AT)
                   for n, (contact, _, _) in enumerate(records(CONTACTS)) if n % 3 == 0]
        store.apply_page(Page("contacts", None, contacts=changed))
        before = store.current_scores([contact.id for contact in changed])
        counts = score_contacts(store, tenant, engine, run_id=3, as_of=EXPORT_AT, chunk_size=CHUNK, workers=workers)
        after = store.current_scores([contact.id for contact in changed])
        assert counts.scored == len(changed)
        kept_until = [cid for cid in before if before[cid].valid_until == after[cid].valid_until
                      and before[cid].total != after[cid].total]
        assert len(kept_until) > len(changed) / 2
        assert not store.inputs_changed()
        assert score_contacts(store, tenant, engine, run_id=4, as_of=EXPORT_AT, workers=workers).scored == 0


@pytest.mark.slow
def test_rescore_in_two_workers_saves_what_one_process_saves(tmp_path, tenant):
    one = rescored(scored_store(tmp_path / "one.sqlite", tenant), tenant, workers=1)
    two = rescored(scored_store(tmp_path / "two.sqlite", tenant), tenant, workers=2)
    assert len(one["history"]) > CONTACTS and len(one["outbox"]) > CONTACTS / 10
    for name in SAVED:
        assert two[name] == one[name], name


@pytest.mark.slow
def test_a_pass_scoring_column_by_column_saves_what_one_scoring_contact_by_contact_saves(tmp_path, tenant,
                                                                                      monkeypatch):
    saved = {}
    for mode, least in (("columns", 1), ("contacts", 10**9)):
        monkeypatch.setattr(scoring_pass, "COLUMN_WISE_FROM", least)
        saved[mode] = rescored(scored_store(tmp_path / f"{mode}.sqlite", tenant), tenant, workers=1)
    assert len(saved["contacts"]["history"]) > CONTACTS and len(saved["contacts"]["outbox"]) > CONTACTS / 10
    for name in SAVED:
        assert saved["columns"][name] == saved["contacts"][name], name


@pytest.mark.parametrize("workers", [1, 2])
def test_a_long_pass_copies_its_log_into_the_store_before_it_returns(tmp_path, tenant, workers):
    path = scored_store(tmp_path / "s.sqlite", tenant)
    before = path.stat().st_size
    with Store.open(path) as store:
        score_contacts(store, tenant, Engine(tenant.scoring), run_id=2, as_of=EXPORT_AT, full=True, chunk_size=CHUNK,
                       workers=workers)
        # still open: what the pass added (history, outbox rows) is in the store file itself, not only in its log
        assert path.stat().st_size > before
        assert store.db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 1000  # SQLite's default is back


def test_leadpulse_score_shares_a_rescore_among_workers_that_save_while_its_run_is_recorded(tmp_path, tenant,
                                                                                          monkeypatch):
    # what `leadpulse score` runs, in chunks small enough for the workers to share this store
    monkeypatch.setattr(pipeline, "score_contacts", functools.partial(score_contacts, chunk_size=CHUNK))
    monkeypatch.setattr(pipeline, "scoring_workers", lambda: 2)
    path = scored_store(tenant.store_path(tmp_path), tenant)
    summary = pipeline.rescore_tenant(tenant, state_dir=tmp_path)
    assert summary.outcome is RunOutcome.SUCCEEDED, summary.error
    with sqlite3.connect(path) as db:
        rescored = db.execute("SELECT count(*) FROM scores WHERE run_id = ?", (summary.run_id,)).fetchone()[0]
    assert summary.scored == rescored == CONTACTS


def test_a_worker_that_dies_ends_the_rescore_with_an_error_and_the_chunks_saved_before_stay(tmp_path, tenant,
                                                                                           monkeypatch):
    path = scored_store(tmp_path / "s.sqlite", tenant)
    with sqlite3.connect(path) as db:
        ids = [row[0] for row in db.execute("SELECT id FROM contacts ORDER BY id")]
    fatal = ids[CONTACTS // 2]
    read = ScoringJob.read

    def dies_at_the_middle(job, store, after="", through=None):
        if through is not None and after <= fatal <= through:
            os._exit(3)  # as a worker killed for memory would, without a word
        return read(job, store, after, through)

    monkeypatch.setattr(ScoringJob, "read", dies_at_the_middle)  # before the workers are forked
    with Store.open(path) as store, pytest.raises(ScoringFailed) as caught:
        score_contacts(store, tenant, Engine(tenant.scoring), run_id=2, as_of=EXPORT_AT, full=True, chunk_size=CHUNK,
                       workers=2)
    assert f"exited with 3 while scoring contacts after id {ids[CONTACTS // 2 - 1]!r}" in str(caught.value)
    assert "run again" in str(caught.value)
    with sqlite3.connect(path) as db:
        saved = {row[0] for row in db.execute("SELECT contact_id FROM scores WHERE run_id = 2")}
        kept = {row[0] for row in db.execute("SELECT contact_id FROM scores WHERE run_id = 1")}
    # whole chunks were saved (the workers saved those they finished), not the fatal one; the rest keep the scores
    # of the older rules, so they stay due
    chunks = [set(ids[start:start + CHUNK]) for start in range(0, CONTACTS, CHUNK)]
    assert all(chunk <= saved or not chunk & saved for chunk in chunks)
    assert fatal not in saved and len(saved) >= CONTACTS // 4
    assert kept == set(ids) - saved


class Awkward(Exception):
    """An exception that pickles but cannot be rebuilt from its pickle (its constructor wants two arguments)."""

    def __init__(self, what: str, where: str) -> None:
        super().__init__(f"{what} after {where!r}")


@pytest.mark.parametrize("error", [ValueError("cannot score"), Awkward("cannot score", "x")], ids=["plain", "awkward"])
def test_an_error_in_a_worker_is_raised_where_the_rescore_was_asked_for(tmp_path, tenant, monkeypatch, error):
    path = scored_store(tmp_path / "s.sqlite", tenant)

    def fails(job, store, after="", through=None):
        raise error

    monkeypatch.setattr(ScoringJob, "read", fails)
    with Store.open(path) as store, pytest.raises(ScoringFailed) as caught:
        score_contacts(store, tenant, Engine(tenant.scoring), run_id=2, as_of=EXPORT_AT, full=True, chunk_size=CHUNK,
                       workers=2)
    assert f"a scoring worker failed on contacts after id '': {type(error).__name__}: cannot score" in str(caught.value)


class Unpicklable:
    """A job whose answer cannot cross to the parent."""

    def read(self, store, after="", through=None):
        return [lambda: "not picklable"]


def test_an_answer_that_cannot_reach_the_parent_is_an_error_not_a_dead_worker(tmp_path, tenant):
    path = scored_store(tmp_path / "s.sqlite", tenant)
    with pytest.raises(ScoringFailed, match=r"failed on contacts after id '': .*Can't pickle"):
        list(in_workers(Unpicklable(), path, [("", "c1"), ("c1", "c2")], 2))


@pytest.mark.slow
def test_a_pass_reading_only_the_activities_its_rules_read_saves_what_one_reading_every_row_saves(tmp_path, tenant,
                                                                                                monkeypatch):
    path = scored_store(tmp_path / "read.sqlite", tenant)
    read = ScoringJob(tenant, Engine(tenant.scoring), 2, EXPORT_AT, True, CHUNK).activities_read
    assert read is not None
    with sqlite3.connect(path) as db:
        kinds = dict(db.execute("SELECT kind, count(*) FROM activities GROUP BY kind").fetchall())
    assert sum(n for kind, n in kinds.items() if kind not in read.kinds) > sum(kinds.values()) / 4
    found = rescored(path, tenant, workers=2)
    monkeypatch.setattr(ScoringJob, "activities_read", None)  # every row
    every = rescored(scored_store(tmp_path / "every.sqlite", tenant), tenant, workers=2)
    for name in SAVED:
        assert found[name] == every[name], name


@pytest.mark.slow
def test_history_worked_out_while_scoring_is_what_the_store_works_out_against_saved_scores(tmp_path, tenant,
                                                                                          monkeypatch):
    found = rescored(scored_store(tmp_path / "found.sqlite", tenant), tenant, workers=1)
    verdict = ScoringJob._verdict
    monkeypatch.setattr(ScoringJob, "_verdict", lambda job, *args: replace(verdict(job, *args), history=None))
    stored = rescored(scored_store(tmp_path / "stored.sqlite", tenant), tenant, workers=1)
    assert len(found["history"]) > CONTACTS
    for name in SAVED:
        assert found[name] == stored[name], name


@pytest.mark.slow
def test_a_status_move_alone_is_history_worked_out_while_scoring_as_against_saved_scores(tmp_path, tenant,
                                                                                        monkeypatch):
    # The same rules, so the same cards; MQL now from the intermediate band, so statuses move on their own.
    scoring = older_rules(tenant)
    lifecycle = scoring.lifecycle
    transitions = tuple(t.model_copy(update={"min_band": "intermediate"}) if t.to.value == "mql" else t
                        for t in lifecycle.transitions)
    earlier = scoring.model_copy(update={"lifecycle": lifecycle.model_copy(update={"transitions": transitions})})

    def moved(path: Path) -> list[tuple]:
        with Store.open(path) as store:
            score_contacts(store, tenant, Engine(earlier), run_id=2, as_of=EXPORT_AT, chunk_size=CHUNK)
        with sqlite3.connect(path) as db:
            return db.execute("SELECT contact_id, old_total, new_total, old_status, new_status FROM history "
                              "WHERE run_id = 2 ORDER BY id").fetchall()

    found = moved(scored_store(tmp_path / "found.sqlite", tenant))
    verdict = ScoringJob._verdict
    monkeypatch.setattr(ScoringJob, "_verdict", lambda job, *args: replace(verdict(job, *args), history=None))
    stored = moved(scored_store(tmp_path / "stored.sqlite", tenant))
    assert found == stored
    assert found and all(old == new and status == "mql" for _, old, new, _, status in found)


def test_a_rescore_stopped_early_leaves_no_worker_behind(tmp_path, tenant):
    import multiprocessing
    import threading

    stop = threading.Event()

    class StopAfterFirstChunk:
        def step(self, name: str) -> None:
            pass

        def advance(self, n: int) -> None:
            stop.set()

    path = scored_store(tmp_path / "s.sqlite", tenant)
    with Store.open(path) as store:
        counts = score_contacts(store, tenant, Engine(tenant.scoring), run_id=2, as_of=EXPORT_AT, full=True,
                                chunk_size=CHUNK, workers=2, stop=stop, progress=StopAfterFirstChunk())
    assert multiprocessing.active_children() == []
    # the workers finished the chunks they held, each counted: the run's record says what was saved
    with sqlite3.connect(path) as db:
        saved = db.execute("SELECT count(*) FROM scores WHERE run_id = 2").fetchone()[0]
    # in hand when the first answer stops the pass: it hands out no chunk more than 5 past the oldest one not yet
    # answered (2 a worker, and 1), and the first answer moves that on by one before the pass hears of it
    assert counts.scored == saved and CHUNK <= saved <= 6 * CHUNK
