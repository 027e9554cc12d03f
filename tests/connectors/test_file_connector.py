from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from file_tenant import contact, file_tenant, page_view, results, write_exports

from leadpulse.connectors.file import FileConnector
from leadpulse.connectors.settings import FileSettings
from leadpulse.core.clock import ManualClock
from leadpulse.core.contract import ConnectorContext, Page, PropertyWrite, TaskPriority, TaskRequest, connector_class
from leadpulse.core.errors import ConnectorError
from leadpulse.core.model import ActivityKind, ContactKind
from leadpulse.core.runtime.pipeline import sync_tenant
from leadpulse.core.store.runs import RunOutcome
from leadpulse.core.store.store import Store

NOW = datetime(2025, 6, 2, tzinfo=UTC)


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
    assert connector_class("file") is FileConnector


def test_contacts_csv_maps_fields_and_keeps_every_column_raw(folder):
    pages = pull_all(connector(folder), "contacts")
    first = pages[0].contacts[0]
    assert (first.id, first.kind, first.email, first.owner_id) == ("c1", ContactKind.CONTACT, "c1@example.com", "o1")
    assert first.fields == {"title": "VP Sales"}
    assert first.raw["job_title"] == "VP Sales"
    assert first.updated_at == datetime(2025, 5, 1, tzinfo=UTC)


def test_a_created_at_column_says_when_the_contact_was_made_and_an_empty_one_says_nothing(tmp_path):
    write_exports(tmp_path, [{**contact("c1"), "created_at": "2024-11-30T08:00:00Z"}, {**contact("c2"), "created_at": ""}],
                  [])
    made = {c.id: c.created_at for c in pull_all(connector(tmp_path), "contacts")[0].contacts}
    assert made == {"c1": datetime(2024, 11, 30, 8, tzinfo=UTC), "c2": None}
    with Store.open(tmp_path / "s.sqlite") as store:
        store.apply_page(pull_all(connector(tmp_path), "contacts")[0])
        again = pull_all(connector(tmp_path), "contacts")[0]
        store.apply_page(Page("contacts", None, contacts=[replace(c, created_at=None) for c in again.contacts]))
        # a pull that does not say keeps what an earlier one said
        assert store.contact("c1").created_at == datetime(2024, 11, 30, 8, tzinfo=UTC)


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
        ("a2", "activities.jsonl:2: occurred_at: expected a value, found none"),
        ("activities.jsonl:3", "activities.jsonl:3: not JSON (Expecting property name enclosed in double quotes)"),
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
    monkeypatch.setattr("leadpulse.connectors.file.PAGE_SIZE", 1)
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
    assert conn.find_tasks([task]) == {}
    [result] = conn.create_tasks([task])
    assert result.ok and result.remote_id == task.key
    other = TaskRequest("lp-acme-c2-band-hot-1", "c2", ContactKind.CONTACT, "o1", "Call", "why", TaskPriority.HIGH, NOW)
    assert conn.find_tasks([task, other]) == {task.key: task.key}


def test_outcomes_csv_is_read(folder):
    (folder / "outcomes.csv").write_text("contact_id,converted,converted_at\nc1,true,2025-05-20T00:00:00Z\nc2,false,\n")
    [page, _] = pull_all(connector(folder, outcomes="outcomes.csv"), "outcomes")
    assert [(o.contact_id, o.converted) for o in page.outcomes] == [("c1", True), ("c2", False)]


def append_lines(path: Path, *records: dict) -> None:
    with open(path, "a") as handle:
        handle.writelines(json.dumps(record) + "\n" for record in records)


@pytest.mark.parametrize(("column", "value", "found"), [
    ("vendor_type", {"x": 1}, 'an object {"x": 1}'),
    ("kind", ["call"], 'a list ["call"]'),
    ("contact_id", {"id": "c1"}, 'an object {"id": "c1"}'),
    ("id", True, "true/false true"),
])
def test_an_activity_with_a_non_text_value_in_a_text_column_is_skipped_naming_file_line_and_column(tmp_path, column, value, found):
    write_exports(tmp_path, [contact("c1")], [page_view("a1", "c1")])
    append_lines(tmp_path / "activities.jsonl", {**page_view("a2", "c1"), column: value}, page_view("a3", "c1"))
    [page, _] = pull_all(connector(tmp_path), "activities")
    assert [a.id for a in page.activities] == ["a1", "a3"]
    [skipped] = page.skipped
    assert skipped.reason == f"activities.jsonl:2: {column}: expected text, found {found}"
    assert skipped.record_id == ("activities.jsonl:2" if column == "id" else "a2")


@pytest.mark.parametrize("column", ["email", "name", "owner_id", "status", "kind"])
def test_a_jsonl_contact_with_an_object_in_a_text_column_is_skipped_naming_the_column(tmp_path, column):
    rows = [contact("c1"), {**contact("c2"), column: {"nested": True}}]
    (tmp_path / "contacts.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    [page, _] = pull_all(connector(tmp_path, contacts="contacts.jsonl"), "contacts")
    assert [c.id for c in page.contacts] == ["c1"]
    assert [(s.record_id, s.reason) for s in page.skipped] == [
        ("c2", f'contacts.jsonl:2: {column}: expected text, found an object {{"nested": true}}'),
    ]


def test_numbers_in_id_columns_are_read_as_text(tmp_path):
    write_exports(tmp_path, [contact("c1")], [{**page_view("a1", "c1"), "id": 17, "contact_id": 4021}])
    [page, _] = pull_all(connector(tmp_path), "activities")
    assert [(a.id, a.contact_id) for a in page.activities] == [("17", "4021")]


def test_a_flag_that_is_not_true_or_false_is_skipped_naming_the_column(tmp_path):
    (tmp_path / "outcomes.csv").write_text("contact_id,converted\nc1,maybe\nc2,yes\n")
    [page, _] = pull_all(connector(tmp_path, outcomes="outcomes.csv"), "outcomes")
    assert [o.contact_id for o in page.outcomes] == ["c2"]
    assert [s.reason for s in page.skipped] == ['outcomes.csv:2: converted: expected true or false, found text "maybe"']


def test_a_csv_row_with_more_cells_than_the_header_is_skipped(folder):
    with open(folder / "contacts.csv", "a") as handle:
        handle.write("c3,c3@example.com,Person c3,o1,,2025-05-01T00:00:00Z,Engineer,EXTRA\n")
    [page, _] = pull_all(connector(folder), "contacts")
    assert [c.id for c in page.contacts] == ["c1", "c2"]
    assert [(s.record_id, s.reason) for s in page.skipped] == [
        ("c3", "contacts.csv:4: expected 7 cells as the header has columns, found 8"),
    ]


def test_a_file_that_is_not_utf8_is_a_connector_error_naming_its_line_and_byte(folder):
    before = (folder / "contacts.csv").stat().st_size
    with open(folder / "contacts.csv", "ab") as handle:
        handle.write(b"c3,c3@example.com,Jos\xe9,o1,,2025-05-01T00:00:00Z,Engineer\n")
    expected = rf"tenant 'acme': contacts file .*contacts.csv: line 4 \(byte {before + 21}\) is not UTF-8; re-export the file as UTF-8"
    with pytest.raises(ConnectorError, match=expected):
        pull_all(connector(folder), "contacts")


def test_a_bad_value_skips_its_record_and_the_run_imports_and_writes_the_rest(tmp_path):
    tenant = file_tenant(tmp_path, [contact("c1", "VP Sales")], [page_view("a1", "c1")])
    append_lines(tmp_path / "activities.jsonl", {**page_view("a2", "c1"), "vendor_type": {"x": 1}}, page_view("a3", "c1"))
    summary = sync_tenant(tenant, state_dir=tmp_path / "state", clock=ManualClock(NOW))
    # one record skipped of four read: past the tolerance of 1%, so the run is partial
    assert (summary.outcome, summary.pulled, summary.skipped) == (RunOutcome.PARTIAL, 3, 1)
    assert results(tmp_path)["c1"]["lp_band"] == "hot"
    with Store.open(tenant.store_path(tmp_path / "state")) as store:
        assert store.db.execute("SELECT id FROM activities ORDER BY id").fetchall() == [("a1",), ("a3",)]
        assert store.db.execute("SELECT record_id, reason FROM skipped").fetchall() == [
            ("a2", 'activities.jsonl:2: vendor_type: expected text, found an object {"x": 1}'),
        ]


def test_a_bad_record_appended_later_keeps_what_was_stored_and_imports_the_new_good_records(tmp_path):
    tenant = file_tenant(tmp_path, [contact("c1", "VP Sales")], [page_view("a1", "c1")])
    state = tmp_path / "state"
    sync_tenant(tenant, state_dir=state, clock=ManualClock(NOW))
    append_lines(tmp_path / "activities.jsonl", {**page_view("a2", "c1"), "contact_id": ["c1"]}, page_view("a3", "c1"))
    summary = sync_tenant(tenant, state_dir=state, clock=ManualClock(NOW))
    assert (summary.outcome, summary.skipped) == (RunOutcome.PARTIAL, 1)
    with Store.open(tenant.store_path(state)) as store:
        assert store.db.execute("SELECT id FROM activities ORDER BY id").fetchall() == [("a1",), ("a3",)]
        assert store.db.execute("SELECT id FROM contacts").fetchall() == [("c1",)]


def many_contacts(n: int) -> list[dict]:
    return [contact(f"c{i:03d}") for i in range(n)]


def test_an_unterminated_quote_fails_the_run_naming_the_file_and_the_line_it_starts_on(tmp_path):
    tenant = file_tenant(tmp_path, many_contacts(400), [])
    lines = (tmp_path / "contacts.csv").read_text().splitlines(keepends=True)
    lines[6] = lines[6].replace("c005@example.com", '"c005@example.com', 1)  # the record on line 7
    (tmp_path / "contacts.csv").write_text("".join(lines))
    summary = sync_tenant(tenant, state_dir=tmp_path / "state", clock=ManualClock(NOW))
    assert summary.outcome == RunOutcome.FAILED and summary.scored == 0
    assert f"contacts file {tmp_path / 'contacts.csv'}: the record starting on line 7 cannot be read as CSV" in (
        summary.error or "")
    assert "a quote opened and never closed" in (summary.error or "")


def test_a_field_past_the_csv_size_limit_fails_the_run_naming_the_file_and_line(tmp_path):
    tenant = file_tenant(tmp_path, [contact("c1"), contact("c2", "x" * 200_000)], [])
    summary = sync_tenant(tenant, state_dir=tmp_path / "state", clock=ManualClock(NOW))
    assert summary.outcome == RunOutcome.FAILED
    assert "the record starting on line 3 cannot be read as CSV (field larger than field limit" in (summary.error or "")


@pytest.mark.parametrize(("renamed", "missing"), [("id", "id"), ("job_title", "job_title")])
def test_a_header_without_the_id_or_a_mapped_column_is_refused_before_a_row_is_read(tmp_path, renamed, missing):
    tenant = file_tenant(tmp_path, many_contacts(10), [])
    text = (tmp_path / "contacts.csv").read_text()
    header, rest = text.split("\n", 1)
    (tmp_path / "contacts.csv").write_text(header.replace(renamed, f"{renamed}_x", 1) + "\n" + rest)
    summary = sync_tenant(tenant, state_dir=tmp_path / "state", clock=ManualClock(NOW))
    assert summary.outcome == RunOutcome.FAILED and summary.pulled == 0 and summary.skipped == 0
    assert (f"contacts file {tmp_path / 'contacts.csv'}: the header has no {missing} column (expected id, job_title; "
            f"found {header.replace(renamed, f'{renamed}_x', 1).replace(',', ', ')})") in (summary.error or "")


def test_skipping_within_the_tolerance_succeeds_and_past_it_is_partial_with_the_first_skipped_noted(tmp_path):
    tenant = file_tenant(tmp_path, [contact("c1", "VP Sales")], [page_view(f"a{i}", "c1") for i in range(150)])
    append_lines(tmp_path / "activities.jsonl", {**page_view("bad1", "c1"), "occurred_at": "soon"})
    first = sync_tenant(tenant, state_dir=tmp_path / "state", clock=ManualClock(NOW))
    assert (first.outcome, first.skipped) == (RunOutcome.SUCCEEDED, 1)  # 1 of 152 read: under 1%
    append_lines(tmp_path / "activities.jsonl", *({**page_view(f"bad{i}", "c1"), "occurred_at": "soon"}
                                                  for i in range(2, 9)))
    second = sync_tenant(tenant, state_dir=tmp_path / "state", clock=ManualClock(NOW))
    # the file changed, so it is read again from the top: 8 skipped of 158 read
    assert (second.outcome, second.skipped) == (RunOutcome.PARTIAL, 8)
    assert len(second.notes) == 5 and second.notes[0] == (
        "skipped activities record bad1: activities.jsonl:151: occurred_at: expected an ISO 8601 time, found text "
        '"soon"')
