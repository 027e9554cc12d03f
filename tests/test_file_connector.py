from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from connectors.base import ConnectorContext, ConnectorError, PropertyWrite, TaskPriority, TaskRequest, load_connector
from connectors.file import FileConnector
from connectors.settings import FileSettings
from core.model import ActivityKind, ContactKind
from file_tenant import contact, page_view, write_exports

NOW = datetime(2025, 6, 2, tzinfo=timezone.utc)


def connector(folder: Path, **files) -> FileConnector:
    paths = {"contacts": "contacts.csv", "activities": "activities.jsonl", "results": "out/results.csv", **files}
    settings = FileSettings.model_validate(paths, context={"base_dir": folder})
    return FileConnector(ConnectorContext("acme", settings, {}, field_map={"title": "job_title"}))


def pull_all(conn: FileConnector, stream: str, cursor: str | None = None) -> list:
    return list(conn.pull(stream, cursor, started_at=NOW))


@pytest.fixture
def folder(tmp_path):
    write_exports(tmp_path, [contact("c1", "VP Sales"), contact("c2")], [page_view("a1", "c1"), page_view("a2", "c2")])
    return tmp_path


def test_the_file_connector_is_registered_under_file():
    assert load_connector("file") is FileConnector


def test_contacts_csv_maps_fields_and_keeps_every_column_raw(folder):
    pages = pull_all(connector(folder), "contacts")
    first = pages[0].contacts[0]
    assert (first.id, first.kind, first.email, first.owner_id) == ("c1", ContactKind.CONTACT, "c1@example.com", "o1")
    assert first.fields == {"title": "VP Sales"}
    assert first.raw["job_title"] == "VP Sales"
    assert first.updated_at == datetime(2025, 5, 1, tzinfo=timezone.utc)


def test_activities_jsonl_keep_extra_keys_as_attributes(folder):
    [page, _end] = pull_all(connector(folder), "activities")
    assert page.activities[0].kind == ActivityKind.PAGE_VIEW
    assert page.activities[0].attributes == {"url": "/pricing"}


def test_an_unknown_activity_kind_becomes_other_with_its_vendor_type(tmp_path):
    write_exports(tmp_path, [contact("c1")], [{"id": "a1", "contact_id": "c1", "kind": "lunch", "occurred_at": "2025-05-01"}])
    [page, _] = pull_all(connector(tmp_path), "activities")
    assert (page.activities[0].kind, page.activities[0].vendor_type) == (ActivityKind.OTHER, "lunch")


def test_malformed_records_are_skipped_with_their_place_and_reason(tmp_path):
    write_exports(tmp_path, [contact("c1")], [page_view("a1", "c1"), {"id": "a2", "contact_id": "c1", "kind": "call"}])
    with open(tmp_path / "activities.jsonl", "a") as handle:
        handle.write("{not json\n")
    [page, _] = pull_all(connector(tmp_path), "activities")
    assert [a.id for a in page.activities] == ["a1"]
    assert [(s.record_id, s.reason) for s in page.skipped] == [
        ("a2", "no occurred_at"),
        ("activities.jsonl:3", "not JSON (Expecting property name enclosed in double quotes)"),
    ]


def test_an_unchanged_file_is_not_read_again(folder):
    conn = connector(folder)
    cursor = pull_all(conn, "contacts")[-1].cursor
    assert pull_all(conn, "contacts", cursor) == []


def test_a_changed_file_is_read_again_from_the_start(folder):
    conn = connector(folder)
    cursor = pull_all(conn, "contacts")[-1].cursor
    write_exports(folder, [contact("c1"), contact("c2"), contact("c3")], [])
    pages = pull_all(conn, "contacts", cursor)
    assert [c.id for page in pages for c in page.contacts] == ["c1", "c2", "c3"]


def test_an_interrupted_import_resumes_after_the_last_stored_page(folder, monkeypatch):
    monkeypatch.setattr("connectors.file.PAGE_SIZE", 1)
    conn = connector(folder)
    first = next(iter(conn.pull("contacts", None, started_at=NOW)))
    rest = pull_all(conn, "contacts", first.cursor)
    assert [c.id for page in rest for c in page.contacts] == ["c2"]


def test_a_missing_file_names_itself_and_the_setting(tmp_path):
    with pytest.raises(ConnectorError, match=r"tenant 'acme': contacts file .*contacts.csv does not exist; check crm.connection.contacts"):
        pull_all(connector(tmp_path), "contacts")


def test_streams_are_the_configured_files_contacts_first(folder):
    assert connector(folder, outcomes="outcomes.csv").streams() == ["contacts", "activities", "outcomes"]
    assert connector(folder).streams() == ["contacts", "activities"]


def test_writes_merge_into_one_results_row_per_contact(folder):
    conn = connector(folder)
    conn.write_properties([PropertyWrite("k1", "c1", ContactKind.CONTACT, {"lp_score": 5.0, "lp_band": "warm"})])
    results = conn.write_properties([PropertyWrite("k1", "c1", ContactKind.CONTACT, {"lp_score": 12.5}),
                                     PropertyWrite("k2", "c2", ContactKind.CONTACT, {"lp_band": "cold"})])
    assert [r.ok for r in results] == [True, True]
    text = (folder / "out" / "results.csv").read_text().splitlines()
    assert text == ["contact_id,contact_kind,lp_band,lp_score", "c1,contact,warm,12.5", "c2,contact,cold,"]


def test_tasks_are_appended_and_found_by_key(folder):
    conn = connector(folder)
    task = TaskRequest("lp-acme-c1-band-hot-1", "c1", ContactKind.CONTACT, "o1", "Call", "why", TaskPriority.HIGH, NOW)
    assert conn.find_task(task.key) is None
    [result] = conn.create_tasks([task])
    assert result.ok and result.remote_id == task.key
    assert conn.find_task(task.key) == task.key


def test_outcomes_csv_is_read(folder):
    (folder / "outcomes.csv").write_text("contact_id,converted,converted_at\nc1,true,2025-05-20T00:00:00Z\nc2,false,\n")
    [page, _] = pull_all(connector(folder, outcomes="outcomes.csv"), "outcomes")
    assert [(o.contact_id, o.converted) for o in page.outcomes] == [("c1", True), ("c2", False)]
