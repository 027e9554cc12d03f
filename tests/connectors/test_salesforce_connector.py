"""The Salesforce connector against the Salesforce sandbox, through simple-salesforce: what the contract suite
(tests/contract) does not ask of every CRM."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
from crms import AS_OF, SalesforceDriver, sync

from leadpulse.connectors.idempotency import task_token
from leadpulse.connectors.salesforce import SalesforceConnector, parse_datetime, soql_datetime
from leadpulse.connectors.settings import SalesforceAuth
from leadpulse.core.clock import ScaledClock
from leadpulse.core.contract import ConnectorContext, TaskPriority, TaskRequest
from leadpulse.core.errors import AuthError, ConfigError
from leadpulse.core.model import ContactKind
from leadpulse.core.store.runs import RunOutcome
from leadpulse.core.store.store import Store
from leadpulse.sandbox import Sandbox
from leadpulse.sandbox.salesforce_auth import route_salesforce_hosts
from leadpulse.sandbox.salesforce_records import is_deleted, is_lead

DRIVER = SalesforceDriver()


connect = DRIVER.connect


def test_an_expired_session_mid_run_logs_in_again_once_and_the_run_goes_on(org, tmp_path):
    org.faults.expire_token_after(4)
    summary = sync(DRIVER, org, tmp_path)
    assert summary.outcome is RunOutcome.SUCCEEDED, summary.error
    assert org.stats.count("oauth.token") == 2
    assert org.stats.count(status=401) == 1


def test_a_session_refused_again_after_logging_in_again_stops_the_tenant(org, monkeypatch):
    connector = connect(org)
    login = SalesforceConnector._login

    def login_into_a_revoked_session(self):
        session = login(self)
        org.faults.expire_token_after(0)  # revoked at once, as a deactivated integration user's would be
        return session

    org.faults.expire_token_after(0)
    monkeypatch.setattr(SalesforceConnector, "_login", login_into_a_revoked_session)
    with pytest.raises(AuthError) as refused:
        list(connector.pull("leads", None, started_at=AS_OF))
    assert "INVALID_SESSION_ID" in str(refused.value) and "'demo-salesforce'" in str(refused.value)
    assert org.stats.count("oauth.token") == 2  # the first login, and one more


def test_missing_custom_fields_are_named_with_what_to_create_before_anything_is_written(sandbox_factory, tmp_path):
    org = sandbox_factory("salesforce", contacts=300, seed=21)  # no custom fields made
    org.vendor.add_custom_field("Lead", "Lead_Score__c", "double")
    summary = sync(DRIVER, org, tmp_path)
    assert summary.outcome is RunOutcome.FAILED
    assert "Lead.Lead_Fit__c is missing: create it as Number(16, 2)" in summary.error
    assert "Contact.Lead_Score__c is missing" in summary.error and "Lead.Lead_Score__c" not in summary.error
    assert org.stats.count("composite.update") == 0 and org.stats.count("composite.create") == 0


def task(key: str, contact_id: str, subject: str = "Call them") -> TaskRequest:
    return TaskRequest(key, contact_id, ContactKind.LEAD, None, subject, "why", TaskPriority.HIGH,
                       AS_OF + timedelta(days=2))


def test_tasks_end_their_subject_with_their_token_and_are_found_by_one_query(org):
    connector = connect(org)
    people = DRIVER.people(org)
    tasks = [task(f"lp-demo-salesforce-{cid}-task-1", cid, subject="x" * 300) for cid in people[:150]]
    created = connector.create_tasks(tasks)
    assert all(result.ok for result in created)
    subjects = [t.attributes["subject"] for t in org.crm.tasks()]
    assert all(len(s) <= 255 and s.endswith(f"[{task_token(t.key)}]") for s, t in zip(subjects, tasks, strict=True))
    before = org.stats.count("queryAll")
    asked = [*tasks, task("lp-demo-salesforce-nobody-task-1", people[0])]
    assert connector.find_tasks(asked) == {t.key: r.remote_id for t, r in zip(tasks, created, strict=True)}
    assert org.stats.count("queryAll") - before == 1


def test_a_lead_and_a_contact_read_their_firmographics_from_their_own_fields_and_their_account(org):
    connector = connect(org, objects=["Lead", "Contact"])
    leads = [c for page in connector.pull("leads", None, started_at=AS_OF) for c in page.contacts]
    contacts = [c for page in connector.pull("contacts", None, started_at=AS_OF) for c in page.contacts]
    assert leads and contacts
    assert {c.kind for c in leads} == {ContactKind.LEAD} and {c.kind for c in contacts} == {ContactKind.CONTACT}
    with_account = [c for c in contacts if c.raw.get("AccountId")]
    assert with_account and all(c.fields["industry"] == c.raw["Account.Industry"] for c in with_account)
    assert all(c.fields["company"] == c.raw["Company"] for c in leads)


def test_a_run_resumed_inside_a_read_starts_after_the_last_row_stored_even_among_equal_stamps(org):
    connector = connect(org)
    every = [c.id for page in connector.pull("leads", None, started_at=AS_OF) for c in page.contacts]
    stamps = {}
    for page in connector.pull("leads", None, started_at=AS_OF):
        for contact in page.contacts:
            stamps[contact.id] = contact.updated_at
    # a cursor as a page ending at the 50th lead leaves it: every lead after it comes once, none before it
    cut = every[49]
    cursor = json.dumps({"since": soql_datetime(stamps[cut]), "after_id": cut, "until": soql_datetime(AS_OF)})
    rest = [c.id for page in connector.pull("leads", cursor, started_at=AS_OF) for c in page.contacts]
    assert rest == every[50:]


def test_salesforce_datetimes_read_and_written_in_its_own_forms():
    moment = parse_datetime("2021-05-27T13:59:29.120+0000")
    assert soql_datetime(moment) == "2021-05-27T13:59:29.120Z"
    assert parse_datetime("2021-05-27").isoformat() == "2021-05-27T00:00:00+00:00"


def test_a_converted_lead_records_its_outcome_and_is_never_scored_or_written(org, tmp_path):
    converted = [org.crm.id_of(i) for i in range(org.crm.size)
                 if is_lead(i) and org.vendor.conversion_ms(i) is not None and not is_deleted(i, org.crm.tenant.size)]
    assert converted
    summary = sync(DRIVER, org, tmp_path)
    assert summary.outcome is RunOutcome.SUCCEEDED and summary.refused == 0, summary.notes
    with Store.open(DRIVER.tenant(org).store_path(tmp_path)) as store:
        for lead in converted:
            assert store.score(lead) is None
            row = store.db.execute("SELECT gone FROM contacts WHERE id = ?", (lead,)).fetchone()
            assert row is None or row[0].startswith("converted into Contact 003")
            outcome = store.db.execute("SELECT converted FROM outcomes WHERE contact_id = ?", (lead,)).fetchone()
            assert outcome == (1,)


def test_a_lead_status_leadpulse_wrote_is_the_status_the_next_read_sees(org, tmp_path):
    sync(DRIVER, org, tmp_path)
    with Store.open(DRIVER.tenant(org).store_path(tmp_path)) as store:
        moved = {cid: score.written["Status"] for cid in DRIVER.people(org) if cid.startswith("00Q")
                 and (score := store.score(cid)) is not None and "Status" in score.written}
    assert moved
    now = datetime.now(UTC) + timedelta(seconds=1)  # after the writes, which moved the Leads' stamps
    read = {c.id: c.status for page in connect(org).pull("leads", None, started_at=now) for c in page.contacts}
    assert {cid: read[cid] for cid in moved} == moved


@pytest.fixture
def login_hosts_routed(org, monkeypatch):
    """Sessions the connector makes reach the sandbox when simple-salesforce logs in at login.salesforce.com or the
    org's My Domain, as the JWT bearer grant and SOAP login() do."""
    real = requests.Session
    monkeypatch.setattr(requests, "Session", lambda: route_salesforce_hosts(real(), org.base_url))


def connect_with(sb: Sandbox, secrets: dict[str, str], **connection) -> SalesforceConnector:
    """A connector logging in with other settings and secrets than the demo tenant file's."""
    settings = DRIVER.tenant(sb).crm.connection.model_copy(update=connection)
    return SalesforceConnector(ConnectorContext("demo-salesforce", settings, secrets, clock=ScaledClock(1000)))


def test_the_jwt_bearer_grant_logs_in_with_the_connected_apps_key(org, login_hosts_routed):
    key = Path(org.credentials["private_key_file"]).read_text()
    connector = connect_with(org, {"private_key": key}, auth=SalesforceAuth.JWT, domain="login")
    assert connector.owners()
    assert org.stats.count("oauth.token") == 1


def test_the_soap_login_takes_the_password_and_security_token_without_a_connected_app(org, login_hosts_routed):
    creds = org.credentials
    connector = connect_with(org, {"password": creds["password"], "security_token": creds["security_token"]},
                             client_id=None, domain="login")
    assert connector.owners()


def test_a_soap_login_without_the_security_token_is_refused_naming_what_to_check(org, login_hosts_routed):
    with pytest.raises(AuthError, match=r"INVALID_LOGIN.*security_token"):
        connect_with(org, {"password": org.credentials["password"]}, client_id=None, domain="login")


def test_the_password_login_without_a_connected_app_is_refused_from_api_65_where_soap_login_is_gone(org):
    with pytest.raises(ConfigError, match="client_id"):
        DRIVER.tenant(org, client_id=None, api_version="65.0")
