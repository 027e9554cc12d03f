"""Persons deleted or merged away in Pipedrive between two syncs stop being scored and written: v2 lists leave them
out, so the connector reads them from v1 recents, and what was still owed to them is parked with the reason."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from crms import AS_OF, PipedriveDriver, sync

from leadpulse.core.clock import ManualClock
from leadpulse.core.store.runs import RunOutcome
from leadpulse.core.store.store import Store

PIPEDRIVE = PipedriveDriver()


def test_persons_deleted_or_merged_after_a_run_are_not_scored_or_written_again_and_what_they_were_owed_is_parked(
        sandbox_factory, tmp_path):
    sb = sandbox_factory("pipedrive", contacts=200, seed=3, **PIPEDRIVE.sandbox_options)
    first = sync(PIPEDRIVE, sb, tmp_path, ManualClock(AS_OF), dry_run=True)  # every write still owed
    assert first.outcome is RunOutcome.SUCCEEDED and first.scored > 0
    deleted, merged, survivor = PIPEDRIVE.people(sb)[10], PIPEDRIVE.people(sb)[21], PIPEDRIVE.people(sb)[20]
    with Store.open(PIPEDRIVE.tenant(sb).store_path(tmp_path)) as store:
        merged_activities = {row[0].split("-")[1] for row in store.db.execute(
            "SELECT id FROM activities WHERE contact_id = ? AND id LIKE 'activity-%'", (merged,))}
    assert merged_activities
    sb.vendor.delete_person(deleted)
    sb.vendor.merge_persons(merged, survivor)
    time.sleep(1 - time.time() % 1)  # Pipedrive stamps to the second: the next run starts after these changes

    second = sync(PIPEDRIVE, sb, tmp_path, ManualClock(datetime.now(UTC).replace(microsecond=0)))

    assert second.outcome is RunOutcome.SUCCEEDED, second.error
    assert sb.stats.count("v1.recents.list") == 1
    assert sb.stats.count("persons.update", 404) == 0  # nothing was sent to a person who is gone
    assert second.written == first.scored - 2
    with Store.open(PIPEDRIVE.tenant(sb).store_path(tmp_path)) as store:
        gone = dict(store.db.execute("SELECT id, gone FROM contacts WHERE gone IS NOT NULL").fetchall())
        assert gone == {deleted: "deleted in Pipedrive, or merged into another person",
                        merged: "deleted in Pipedrive, or merged into another person"}
        parked = store.db.execute("SELECT contact_id, error FROM outbox WHERE state = 'parked'").fetchall()
        assert sorted(contact for contact, _ in parked) == sorted([deleted, merged])
        assert all("the contact is gone from the CRM: deleted in Pipedrive" in error for _, error in parked)
        # the merged person's activities are read again under the survivor, who is scored with them
        moved = {row[0].split("-")[1] for row in store.db.execute(
            "SELECT id FROM activities WHERE contact_id = ? AND id LIKE 'activity-%'", (survivor,))}
        assert merged_activities <= moved
        assert store.score(survivor).run_id == second.run_id


def test_a_first_run_reads_no_recents_and_a_run_after_a_long_pause_still_reads_what_recents_keep(
        sandbox_factory, tmp_path):
    sb = sandbox_factory("pipedrive", contacts=60, seed=4, **PIPEDRIVE.sandbox_options)
    sync(PIPEDRIVE, sb, tmp_path, ManualClock(AS_OF))
    assert sb.stats.count("v1.recents.list") == 0  # no person is known yet, so none can have gone
    gone = PIPEDRIVE.people(sb)[5]
    sb.vendor.delete_person(gone)
    time.sleep(1 - time.time() % 1)
    later = sync(PIPEDRIVE, sb, tmp_path, ManualClock(datetime.now(UTC).replace(microsecond=0)
                                                      + timedelta(days=45)))
    assert later.outcome is RunOutcome.SUCCEEDED, later.error
    with Store.open(PIPEDRIVE.tenant(sb).store_path(tmp_path)) as store:
        assert store.db.execute("SELECT id FROM contacts WHERE gone IS NOT NULL").fetchall() == [(gone,)]


def test_the_persons_of_an_organization_changed_since_the_last_run_are_read_again_with_its_new_values(
        sandbox_factory, tmp_path):
    sb = sandbox_factory("pipedrive", contacts=200, seed=3, **PIPEDRIVE.sandbox_options)
    # scored at the wall clock's second, as the runs after it are: between an earlier moment and theirs, time alone
    # could move a score, which they would write
    first = sync(PIPEDRIVE, sb, tmp_path, ManualClock(datetime.now(UTC).replace(microsecond=0)))
    assert first.outcome is RunOutcome.SUCCEEDED
    assert sb.stats.count("organizations.list") > 0  # the persons' organizations, read in bulk
    time.sleep(1 - time.time() % 1)
    echo = sync(PIPEDRIVE, sb, tmp_path, ManualClock(datetime.now(UTC).replace(microsecond=0)))
    assert echo.outcome is RunOutcome.SUCCEEDED and echo.written == 0  # what the write-back touched, read back
    people = PIPEDRIVE.people(sb)
    members: dict[int, list[str]] = {}
    for person in people:
        org = sb.vendor.org_id_of(sb.crm.index_of(person))
        if org is not None:
            members.setdefault(org, []).append(person)
    org, persons = next((org, persons) for org, persons in sorted(members.items())
                        if len(persons) >= 2 and sb.vendor.organizations.get(org).custom["industry"] != "Software")
    sb.vendor.edit_organization(org, Industry="Software")  # a target industry: +3 fit for each of its persons
    time.sleep(1 - time.time() % 1)
    listed = sb.stats.count("persons.list")

    second = sync(PIPEDRIVE, sb, tmp_path, ManualClock(datetime.now(UTC).replace(microsecond=0)))

    assert second.outcome is RunOutcome.SUCCEEDED, second.error
    # the persons changed since the last run (none), and the changed organization's
    assert sb.stats.count("persons.list") - listed == 2
    assert second.written == len(persons)
    with Store.open(PIPEDRIVE.tenant(sb).store_path(tmp_path)) as store:
        for person in persons:
            score = store.score(person)
            assert score is not None and score.run_id == second.run_id
            assert any(c["rule_id"] == "target-industry" for c in score.contributions)
            assert PIPEDRIVE.owned_values(sb, person)["Lead fit"] == score.axes["fit"]
