"""The Salesforce connector's Bulk API 2.0 reads and writes, and its watch on the org's 24-hour allowance, against
the Salesforce sandbox through simple-salesforce."""

from __future__ import annotations

import json
from collections import Counter
from datetime import timedelta

import pytest
from crms import AS_OF, SalesforceDriver, sync

from leadpulse.connectors import salesforce_bulk
from leadpulse.connectors.salesforce import SalesforceConnector
from leadpulse.core.clock import ScaledClock
from leadpulse.core.contract import PropertyWrite, TaskPriority, TaskRequest
from leadpulse.core.model import ContactKind
from leadpulse.core.store.runs import RunOutcome
from leadpulse.core.store.store import Store
from leadpulse.sandbox import Sandbox
from leadpulse.sandbox.salesforce_records import is_deleted, is_lead

DRIVER = SalesforceDriver()
BULK = {"bulk_pull_above": 0, "bulk_write_above": 0}


connect = DRIVER.connect


def read(connector: SalesforceConnector, stream: str, cursor: str | None = None) -> dict[str, object]:
    """Everything a read of `stream` hands over, by record id."""
    found: dict[str, object] = {}
    for page in connector.pull(stream, cursor, started_at=AS_OF):
        found.update({c.id: c for c in page.contacts})
        found.update({a.id: a for a in page.activities})
        found.update({f"outcome-{o.contact_id}": o for o in page.outcomes})
        found.update({f"gone-{g.contact_id}": g for g in page.gone})
    return found


@pytest.mark.parametrize("stream", ["leads", "contacts", "tasks", "events", "campaign_members", "won_opportunities"])
def test_a_bulk_read_hands_over_exactly_what_rest_queries_do(org, stream):
    by_rest = read(connect(org), stream)
    jobs = org.stats.count("jobs.query.create")
    by_bulk = read(connect(org, **BULK), stream)
    assert org.stats.count("jobs.query.create") - jobs == 1
    assert by_rest and by_bulk == by_rest


def test_a_first_read_goes_to_bulk_only_above_the_tenants_size(org):
    connector = connect(org, bulk_pull_above=250)  # 300 people: Leads about half, Tasks far more
    read(connector, "leads")
    read(connector, "tasks")
    assert org.stats.count("jobs.query.create") == 1
    assert org.stats.count("limits.recordCount") == 1  # one count for every object, once a run


def test_a_big_first_read_goes_through_rest_when_the_org_has_no_bulk_query_jobs_left_today(org):
    org.vendor.bulk_query_jobs_per_day = 0
    connector = connect(org, **BULK)
    assert read(connector, "leads") == read(connect(org), "leads")
    assert org.stats.count("jobs.query.create") == 0


def test_an_incremental_read_goes_through_rest_whatever_its_size(org):
    connector = connect(org, **BULK)
    cursor = json.dumps({"since": "2020-01-01T00:00:00.000Z"})
    assert read(connector, "leads", cursor)
    assert org.stats.count("jobs.query.create") == 0


def test_a_stopped_bulk_read_resumes_at_its_page_of_the_same_job(org, monkeypatch):
    monkeypatch.setattr(salesforce_bulk, "QUERY_PAGE", 40)
    whole = read(connect(org, **BULK), "tasks")
    pages = list(connect(org, **BULK).pull("tasks", None, started_at=AS_OF))
    assert len(pages) > 3
    jobs = org.stats.count("jobs.query.create")
    cut = pages[2].cursor
    rest = read(connect(org, **BULK), "tasks", cut)
    assert org.stats.count("jobs.query.create") == jobs  # the job of the stopped read, read on
    before = {a.id for page in pages[:3] for a in page.activities}
    assert before | set(rest) == set(whole) and not before & set(rest)


def test_a_bulk_read_whose_job_is_gone_starts_a_new_one(org, monkeypatch):
    monkeypatch.setattr(salesforce_bulk, "QUERY_PAGE", 40)
    whole = read(connect(org, **BULK), "leads")
    cursor = json.loads(next(iter(connect(org, **BULK).pull("leads", None, started_at=AS_OF))).cursor)
    cursor["job"] = "750000000000000AAA"  # deleted since, or past the seven days Salesforce keeps a job
    assert read(connect(org, **BULK), "leads", json.dumps(cursor)) == whole


def test_a_sync_through_bulk_jobs_leaves_the_org_as_one_through_rest(org, sandbox_factory, tmp_path):
    rest_org = DRIVER.prepare(sandbox_factory("salesforce", contacts=300, seed=21))
    assert sync(DRIVER, rest_org, tmp_path / "rest").outcome is RunOutcome.SUCCEEDED
    summary = sync(DRIVER, org, tmp_path / "bulk", tenant=DRIVER.tenant(org, **BULK))
    assert summary.outcome is RunOutcome.SUCCEEDED, summary.error
    assert org.stats.count("jobs.ingest.create") == 2 and org.stats.count("composite.update") == 0
    assert DRIVER.state(org) == DRIVER.state(rest_org)


def converted_lead(sb: Sandbox) -> str:
    return next(sb.crm.id_of(i) for i in range(sb.crm.size)
                if is_lead(i) and sb.vendor.conversion_ms(i) is not None and not is_deleted(i, sb.crm.tenant.size))


def live_leads(sb: Sandbox, n: int) -> list[str]:
    return [sb.crm.id_of(i) for i in range(sb.crm.size)
            if is_lead(i) and sb.vendor.conversion_ms(i) is None and not is_deleted(i, sb.crm.tenant.size)][:n]


def outcomes(results) -> list[tuple[bool, bool, str]]:
    return [(r.ok, r.permanent, (r.error or "").split(":")[0]) for r in results]


def test_a_bulk_write_back_answers_each_record_as_a_collections_call_does(org):
    locked, fine = live_leads(org, 3)[:2], live_leads(org, 3)[2]
    converted = converted_lead(org)
    writes = [PropertyWrite(f"lp-{cid}-props", cid, ContactKind.LEAD, {"Lead_Score__c": 42})
              for cid in [*locked, fine, converted]]
    answers = {}
    for name, connection in (("collections", {}), ("bulk", BULK)):
        org.faults.fail_records(locked, code="UNABLE_TO_LOCK_ROW", message="unable to obtain exclusive access")
        answers[name] = outcomes(connect(org, **connection).write_properties(writes))
        org.faults.clear()
    assert answers["bulk"] == answers["collections"] == [
        (False, False, "UNABLE_TO_LOCK_ROW"), (False, False, "UNABLE_TO_LOCK_ROW"), (True, False, ""),
        (False, True, "CANNOT_UPDATE_CONVERTED_LEAD")]
    assert org.stats.count("jobs.ingest.create") == 1


def test_a_row_lock_that_clears_is_sent_again_in_the_same_call(org):
    lead = live_leads(org, 1)[0]
    org.faults.fail_records([lead], code="UNABLE_TO_LOCK_ROW", times=1)
    [result] = connect(org).write_properties([PropertyWrite("k", lead, ContactKind.LEAD, {"Lead_Score__c": 7})])
    assert result.ok
    assert org.stats.count("composite.update") == 2


def test_bulk_write_back_failures_are_retried_next_run_and_parked_at_the_limit_as_collections_ones(
        org, tmp_path):
    locked = live_leads(org, 2)
    org.faults.fail_records(locked, code="UNABLE_TO_LOCK_ROW")  # held every time
    tenant = DRIVER.tenant(org, **BULK)
    with Store.open(tenant.store_path(tmp_path)) as store:
        limit = store.outbox.max_attempts
    states = []
    for _ in range(limit):
        summary = sync(DRIVER, org, tmp_path, tenant=tenant)
        assert summary.outcome in (RunOutcome.SUCCEEDED, RunOutcome.PARTIAL), summary.error
        with Store.open(tenant.store_path(tmp_path)) as store:
            states.append({r.key.split("-")[-2]: r.state for r in store.outbox.failures(50)})
    assert all(state == dict.fromkeys(locked, "pending") for state in states[:-1])
    assert states[-1] == dict.fromkeys(locked, "parked")
    org.faults.clear()


def test_the_run_stops_before_the_orgs_reserve_and_the_next_run_finishes_once(sandbox_factory, tmp_path):
    reference = DRIVER.prepare(sandbox_factory("salesforce", contacts=300, seed=21))
    sync(DRIVER, reference, tmp_path / "reference")
    org = DRIVER.prepare(sandbox_factory("salesforce", contacts=300, seed=21, rate_limits=True, time_scale=1000))
    org.limits.tune("DAILY", limit=15)  # a run takes 16 calls and the login; a fifth of 15 is kept for others
    first = sync(DRIVER, org, tmp_path)
    assert first.outcome is RunOutcome.QUOTA_EXHAUSTED
    assert "api_reserve" in (first.error or "") and "'demo-salesforce'" in (first.error or "")
    # stopped with 3 calls left, before Salesforce refused any
    assert org.stats.count() - org.stats.count("oauth.token") == 12 and org.stats.count(status=403) == 0
    org.limits.tune("DAILY", limit=1_000_000)  # a day later
    second = sync(DRIVER, org, tmp_path)
    assert second.outcome is RunOutcome.SUCCEEDED, second.error
    assert DRIVER.state(org) == DRIVER.state(reference)
    assert max(Counter(DRIVER.tasks(org)).values()) == 1


def test_the_reserve_is_read_from_the_orgs_limits_at_the_start_of_a_run(org):
    connector = connect(org, api_reserve=0.5)
    assert org.stats.count("limits") == 1
    assert connector._org.total > 0 and connector._org.used > 0


def test_tasks_upserted_by_an_external_id_are_never_made_twice(org):
    org.vendor.add_custom_field("Task", "Leadpulse_Key__c", "string", external_id=True)
    connector = connect(org, task_external_id="Leadpulse_Key__c")
    lead = live_leads(org, 1)[0]
    request = TaskRequest("lp-demo-salesforce-k1", lead, ContactKind.LEAD, None, "Call them", "why",
                          TaskPriority.HIGH, AS_OF + timedelta(days=2))
    first = connector.create_tasks([request])
    again = connector.create_tasks([request])  # the answer to the first was lost, say
    assert first[0].ok and again[0].ok and first[0].remote_id == again[0].remote_id
    assert len([t for t in org.crm.tasks() if t.attributes["subject"] == "Call them"]) == 1
    other = TaskRequest("lp-other", lead, ContactKind.LEAD, None, "Call them", "why", TaskPriority.HIGH,
                        AS_OF + timedelta(days=2))
    assert connector.find_tasks([request, other]) == {"lp-demo-salesforce-k1": first[0].remote_id}


def test_a_lead_converted_between_runs_is_never_written_again_and_its_history_goes_on_as_its_contact(org, tmp_path):
    clock = ScaledClock(1000)  # the sandbox stamps the conversion in real time
    assert sync(DRIVER, org, tmp_path, clock).outcome is RunOutcome.SUCCEEDED
    tenant = DRIVER.tenant(org)
    with Store.open(tenant.store_path(tmp_path)) as store:
        lead = max(live_leads(org, 200), key=lambda cid: len(store.activities(cid)))
        touched = {a.id for a in store.activities(lead)}
        history = [(h.at, h.new_total) for h in store.history(lead)]
    assert touched and history
    contact = org.vendor.convert_lead(lead)
    writes = org.stats.count("composite.update")
    second = sync(DRIVER, org, tmp_path, clock)
    assert second.outcome is RunOutcome.SUCCEEDED and second.refused == 0, second.notes
    with Store.open(tenant.store_path(tmp_path)) as store:
        assert store.activities(lead) == []
        assert touched <= {a.id for a in store.activities(contact)}
        assert history == [(h.at, h.new_total) for h in store.history(contact)][:len(history)]
        score = store.score(contact)
        assert score is not None and store.contact(lead) is not None
        gone = store.db.execute("SELECT gone FROM contacts WHERE id = ?", (lead,)).fetchone()[0]
        assert gone == f"converted into Contact {contact}"
    assert org.stats.count("composite.update") > writes  # the Contact was written
    assert DRIVER.owned_values(org, contact)["Lead_Score__c"] == score.total


def test_an_archived_task_is_read_and_still_scores(org, tmp_path):
    assert sync(DRIVER, org, tmp_path).outcome is RunOutcome.SUCCEEDED
    with Store.open(DRIVER.tenant(org).store_path(tmp_path)) as store:
        bounces = store.db.execute(
            "SELECT contact_id, json_extract(attributes, '$.IsArchived') FROM activities WHERE kind = 'email_bounce'"
        ).fetchall()
        archived_only = {cid for cid, archived in bounces if archived} - {cid for cid, archived in bounces
                                                                          if not archived}
        assert archived_only  # bounces Salesforce archived (over a year old), which `query` would not return
        for cid in archived_only:
            score = store.score(cid)
            assert score is not None and "bounced" in {c["rule_id"] for c in score.contributions}


def test_tasks_upserted_by_an_external_id_need_no_look_up_and_a_rebuilt_store_makes_none_twice(org, tmp_path):
    org.vendor.add_custom_field("Task", "Leadpulse_Key__c", "string", external_id=True)
    tenant = DRIVER.tenant(org, task_external_id="Leadpulse_Key__c")
    top = tenant.scoring.bands[-1].name  # a task on entering the top band, whoever decides it
    tenant = tenant.model_copy(update={"tasks": tenant.tasks.model_copy(update={"on_bands": (top,)})})
    clock = ScaledClock(1000)  # the sandbox stamps leadpulse's writes in real time: the rebuilt store reads them
    first = sync(DRIVER, org, tmp_path / "lost", clock, tenant=tenant)
    assert first.outcome is RunOutcome.SUCCEEDED and first.tasks > 0
    assert org.stats.count("queryAll") == 4  # Lead, Contact, Task and Event: no look-up of tasks by key
    rebuilt = sync(DRIVER, org, tmp_path / "rebuilt", clock, tenant=tenant)  # every task owed again
    assert rebuilt.outcome is RunOutcome.SUCCEEDED and rebuilt.tasks == first.tasks
    per_contact = Counter(contact for contact, _ in DRIVER.tasks(org))
    assert sum(per_contact.values()) == first.tasks and max(per_contact.values()) == 1
