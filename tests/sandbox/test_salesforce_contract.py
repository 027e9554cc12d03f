"""The Salesforce imitation driven through simple-salesforce, as a connector would drive it."""
import re
import time
from collections import Counter
from pathlib import Path

import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import (
    SalesforceAuthenticationFailed,
    SalesforceExpiredSession,
    SalesforceGeneralError,
    SalesforceMalformedRequest,
    SalesforceMoreThanOneRecord,
    SalesforceRefusedRequest,
    SalesforceResourceNotFound,
)
from simple_salesforce.login import token_login

from leadpulse.sandbox import Sandbox
from leadpulse.sandbox.limits import ManualClock
from leadpulse.sandbox.salesforce_auth import route_salesforce_hosts
from leadpulse.sandbox.salesforce_records import LEAD_STATUSES, is_deleted, is_lead, parse_datetime, sf_id

SF_DATETIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+0000$")


def session_for(sb: Sandbox) -> requests.Session:
    session = requests.Session()
    session.verify = sb.ca_cert_path
    session.trust_env = False
    return session


def login(sb: Sandbox, session: requests.Session | None = None, **overrides) -> tuple[str, str]:
    creds = sb.credentials
    form = {"grant_type": "password", "client_id": creds["client_id"], "client_secret": creds["client_secret"],
            "username": creds["username"], "password": creds["password"], **overrides}
    return token_login(f"{sb.base_url}/services/oauth2/token", form, "login", creds["client_id"], None, None,
                       session or session_for(sb))


def client(sb: Sandbox) -> Salesforce:
    session = session_for(sb)
    token, instance = login(sb, session)
    return Salesforce(session_id=token, instance=instance, session=session)


@pytest.fixture
def sb(sandbox_factory):
    return sandbox_factory("salesforce", contacts=600, seed=7)


@pytest.fixture
def sf(sb):
    return client(sb)


def lead_ids(sb: Sandbox) -> list[str]:
    """Every Lead's id, those a client may write first: converted and deleted Leads refuse writes."""
    def refuses(index: int) -> bool:
        return sb.vendor.conversion_ms(index) is not None or is_deleted(index, sb.crm.tenant.size)

    return [sb.crm.id_of(i) for i in sorted((i for i in range(sb.crm.size) if is_lead(i)), key=refuses)]


# -- OAuth ------------------------------------------------------------------------------------------

def test_password_grant_returns_a_token_for_this_instance(sb):
    token, instance = login(sb)
    assert sb.tokens.is_valid(token) and instance == f"127.0.0.1:{sb.port}"


def test_client_credentials_grant_is_accepted(sb):
    creds = sb.credentials
    token, _ = login(sb, grant_type="client_credentials", username=None, password=None)
    assert sb.tokens.is_valid(token) and creds["client_id"].startswith("3MVG9")


def test_wrong_client_secret_answers_invalid_client(sb):
    with pytest.raises(SalesforceAuthenticationFailed) as failure:
        login(sb, client_secret="nope")
    assert failure.value.code == "invalid_client"


def test_wrong_password_answers_invalid_grant(sb):
    with pytest.raises(SalesforceAuthenticationFailed) as failure:
        login(sb, password="nope")
    assert failure.value.code == "invalid_grant"


def routed(sb: Sandbox) -> requests.Session:
    """A session that reaches the sandbox when a client calls login.salesforce.com or the org's My Domain."""
    return route_salesforce_hosts(session_for(sb), sb.base_url)


def assertion(sb: Sandbox, key: bytes | str | None = None, alg: str = "RS256", **claims) -> str:
    """A JWT bearer assertion for the sandbox's connected app, signed with its key unless told otherwise."""
    creds = sb.credentials
    claims = {"iss": creds["client_id"], "sub": creds["username"], "aud": "https://login.salesforce.com",
              "exp": int(time.time()) + 180, **claims}
    return jwt.encode(claims, key or Path(creds["private_key_file"]).read_bytes(), algorithm=alg)


def jwt_login(sb: Sandbox, token: str, domain: str = "login") -> tuple[str, str]:
    form = {"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": token}
    return token_login(f"https://{domain}.salesforce.com/services/oauth2/token", form, domain,
                       sb.credentials["client_id"], None, None, routed(sb))


def test_client_credentials_on_the_login_host_answers_request_not_supported_on_this_domain(sb):
    creds = sb.credentials
    with pytest.raises(SalesforceAuthenticationFailed) as failure:
        token_login("https://login.salesforce.com/services/oauth2/token", {
            "grant_type": "client_credentials", "client_id": creds["client_id"],
            "client_secret": creds["client_secret"]}, "login", creds["client_id"], None, None, routed(sb))
    assert (failure.value.code, failure.value.auth_message) == ("invalid_grant", "request not supported on this domain")


def test_simple_salesforce_logs_in_with_client_credentials_on_the_my_domain_host(sb):
    creds = sb.credentials
    sf = Salesforce(consumer_key=creds["client_id"], consumer_secret=creds["client_secret"],
                    domain=creds["my_domain"].removesuffix(".salesforce.com"), session=routed(sb))
    assert sf.sf_instance == f"127.0.0.1:{sb.port}" and sf.query("SELECT Id FROM Lead LIMIT 1")["totalSize"] == 1


def test_simple_salesforce_logs_in_with_a_jwt_signed_by_the_connected_apps_key(sb):
    creds = sb.credentials
    sf = Salesforce(username=creds["username"], consumer_key=creds["client_id"],
                    privatekey_file=creds["private_key_file"], session=routed(sb))
    assert sb.tokens.is_valid(sf.session_id) and sf.query("SELECT Id FROM Lead LIMIT 1")["totalSize"] == 1


def test_a_jwt_on_the_my_domain_host_with_its_audience_is_accepted(sb):
    token, instance = jwt_login(sb, assertion(sb, aud=f"https://{sb.credentials['my_domain']}"),
                                domain=sb.credentials["my_domain"].removesuffix(".salesforce.com"))
    assert sb.tokens.is_valid(token) and instance == f"127.0.0.1:{sb.port}"


@pytest.mark.parametrize(("claims", "error", "description"), [
    ({"iss": "3MVG9someoneelse"}, "invalid_client_id", "client identifier invalid"),
    ({"aud": "https://test.salesforce.com"}, "invalid_grant", "audience is invalid"),
    ({"exp": int(time.time()) - 60}, "invalid_grant", "expired authorization code"),
    ({"sub": "nobody@example.com"}, "invalid_grant", "user hasn't approved this consumer"),
    ({"alg": "HS256", "key": "a secret the connected app and its client share"}, "invalid_grant", "invalid assertion"),
])
@pytest.mark.filterwarnings("ignore:\\s*If your connected app policy:UserWarning")  # simple-salesforce's hint
def test_a_bad_jwt_is_refused_as_salesforce_refuses_it(sb, claims, error, description):
    with pytest.raises(SalesforceAuthenticationFailed) as failure:
        jwt_login(sb, assertion(sb, **claims))
    assert (failure.value.code, failure.value.auth_message) == (error, description)


def test_a_jwt_signed_by_another_key_is_an_invalid_assertion(sb):
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    with pytest.raises(SalesforceAuthenticationFailed) as failure:
        jwt_login(sb, assertion(sb, key=other))
    assert (failure.value.code, failure.value.auth_message) == ("invalid_grant", "invalid assertion")


def test_a_garbled_assertion_is_invalid(sb):
    with pytest.raises(SalesforceAuthenticationFailed) as failure:
        jwt_login(sb, "not.a.jwt")
    assert (failure.value.code, failure.value.auth_message) == ("invalid_grant", "invalid assertion")


# -- query, queryMore, queryAll -----------------------------------------------------------------

def test_query_pages_to_the_end_with_query_more(sb, sf):
    first = sf.query("SELECT Id, Email FROM Lead", headers={"Sforce-Query-Options": "batchSize=200"})
    pages, records, result = 1, list(first["records"]), first
    while not result["done"]:
        assert result["nextRecordsUrl"].startswith("/services/data/v59.0/query/01g")
        result = sf.query_more(result["nextRecordsUrl"], identifier_is_url=True)
        records += result["records"]
        pages += 1
    assert pages == 2 and len(records) == first["totalSize"] < len(lead_ids(sb))  # deleted leads are left out
    assert "nextRecordsUrl" not in result
    assert [r["Id"] for r in records] == sorted(r["Id"] for r in records)


def test_default_batch_is_2000_records(sandbox_factory):
    sf = client(sandbox_factory("salesforce", contacts=4000))
    first = sf.query("SELECT Id FROM Lead")
    assert len(first["records"]) == 2000 and not first["done"] and first["totalSize"] > 2000


def test_query_all_includes_deleted_rows(sb, sf):
    live = sf.query_all("SELECT Id FROM Lead")["records"]
    every = sf.query_all("SELECT Id, IsDeleted FROM Lead", include_deleted=True)["records"]
    deleted = [r["Id"] for r in every if r["IsDeleted"]]
    assert deleted and len(every) == len(live) + len(deleted) == len(lead_ids(sb))
    assert not set(deleted) & {r["Id"] for r in live}


def test_bad_soql_answers_malformed_query(sf):
    with pytest.raises(SalesforceMalformedRequest) as failure:
        sf.query("SELECT Id FRM Lead")
    assert failure.value.content[0]["errorCode"] == "MALFORMED_QUERY"
    assert "unexpected token: 'FRM'" in failure.value.content[0]["message"]


def test_mixing_and_with_or_without_parentheses_is_malformed(sf):
    with pytest.raises(SalesforceMalformedRequest) as failure:
        sf.query("SELECT Id FROM Lead WHERE IsConverted = true AND Rating = 'Hot' OR Rating = 'Warm'")
    assert failure.value.content[0]["errorCode"] == "MALFORMED_QUERY"


def test_printed_datetime_with_plus_0000_is_refused_in_a_filter(sf):
    with pytest.raises(SalesforceMalformedRequest) as failure:
        sf.query("SELECT Id FROM Lead WHERE SystemModstamp > 2021-05-27T13:59:29.000+0000")
    assert failure.value.content[0]["errorCode"] == "MALFORMED_QUERY"


def test_an_id_literal_that_is_no_id_answers_invalid_query_filter_operator(sf):
    with pytest.raises(SalesforceMalformedRequest) as failure:
        sf.query("SELECT Id FROM Lead WHERE Id > 'abc'")
    assert failure.value.content[0]["errorCode"] == "INVALID_QUERY_FILTER_OPERATOR"


def test_unknown_field_answers_invalid_field(sf):
    with pytest.raises(SalesforceMalformedRequest) as failure:
        sf.query("SELECT Id, Lead_Score__c FROM Lead")
    assert failure.value.content[0]["errorCode"] == "INVALID_FIELD"


def test_quoted_datetime_answers_invalid_field(sf):
    with pytest.raises(SalesforceMalformedRequest) as failure:
        sf.query("SELECT Id FROM Lead WHERE LastModifiedDate > '2024-01-01T00:00:00Z'")
    assert failure.value.content[0]["errorCode"] == "INVALID_FIELD"


def test_records_carry_attributes_ids_and_salesforce_datetimes(sf):
    record = sf.query("SELECT Id, CreatedDate, LastModifiedDate, OwnerId FROM Lead LIMIT 1")["records"][0]
    assert record["attributes"] == {"type": "Lead", "url": f"/services/data/v59.0/sobjects/Lead/{record['Id']}"}
    assert len(record["Id"]) == 18 and record["Id"].startswith("00Q")
    assert SF_DATETIME.match(record["LastModifiedDate"]) and SF_DATETIME.match(record["CreatedDate"])
    assert record["OwnerId"] is None or record["OwnerId"].startswith("005")


def test_keyset_paging_on_system_modstamp_and_id_matches_the_tenant(sb, sf):
    since = sb.crm.tenant.anchor_ms - 30 * 86_400_000
    since_text = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(since // 1000))
    seen, last = [], "000000000000000"
    while True:
        page = sf.query(f"SELECT Id, SystemModstamp FROM Lead WHERE SystemModstamp >= {since_text} "
                        f"AND Id > '{last}' ORDER BY Id LIMIT 50")["records"]
        if not page:
            break
        seen += [r["Id"] for r in page]
        last = page[-1]["Id"]
    size = sb.crm.tenant.size
    stamps = {i: sb.vendor.conversion_ms(i) or sb.crm.updated_ms(i) for i in range(size) if is_lead(i)}
    expected = {sb.crm.id_of(i) for i, at in stamps.items() if at >= since // 1000 * 1000 and not is_deleted(i, size)}
    assert seen == sorted(expected) and seen


def test_where_filters_agree_with_the_tenant(sb, sf):
    answer = sf.query_all("SELECT Id, Status, NumberOfEmployees FROM Lead WHERE Status IN "
                          "('Open - Not Contacted', 'Working - Contacted') AND NumberOfEmployees >= 200")
    assert answer["totalSize"] > 0
    for record in answer["records"]:
        assert record["Status"] in LEAD_STATUSES[:2] and record["NumberOfEmployees"] >= 200
        assert sb.crm.contact(record["Id"])["employees"] == record["NumberOfEmployees"]


def test_like_and_negation_select_the_complement(sf):
    total = sf.query("SELECT COUNT() FROM Lead")["totalSize"]
    like = sf.query("SELECT COUNT() FROM Lead WHERE Title LIKE '%manager%'")["totalSize"]
    unlike = sf.query("SELECT COUNT() FROM Lead WHERE NOT Title LIKE '%MANAGER%'")["totalSize"]
    assert 0 < like < total and like + unlike == total


def test_order_by_two_fields_sorts_descending_with_nulls_last(sf):
    records = sf.query_all("SELECT Id, OwnerId FROM Contact ORDER BY OwnerId DESC, Id")["records"]
    owners = [r["OwnerId"] for r in records]
    present = [o for o in owners if o is not None]
    assert present == sorted(present, reverse=True) and owners[len(present):] == [None] * (len(owners) - len(present))
    first_owner = [r["Id"] for r in records if r["OwnerId"] == present[0]]
    assert first_owner == sorted(first_owner)


def test_contacts_carry_the_firmographics_on_their_account(sb, sf):
    record = sf.query("SELECT Id, AccountId, Account.Industry, Account.NumberOfEmployees, Account.AnnualRevenue, "
                      "Account.BillingCountry FROM Contact LIMIT 1")["records"][0]
    assert record["AccountId"].startswith("001") and record["Account"]["BillingCountry"]
    assert record["Account"]["NumberOfEmployees"] == sb.crm.contact(record["Id"])["employees"]


def test_tasks_and_events_map_the_activities(sb, sf):
    tasks = sf.query_all("SELECT Id, WhoId, TaskSubtype, Status, Priority, ActivityDate FROM Task")["records"]
    events = sf.query_all("SELECT Id, WhoId, StartDateTime, DurationInMinutes FROM Event")["records"]
    assert {t["TaskSubtype"] for t in tasks} == {"Call", "Email", "Task"}
    assert all(t["Id"].startswith("00T") and t["WhoId"][:3] in ("00Q", "003") for t in tasks)
    assert events and all(e["Id"].startswith("00U") and e["DurationInMinutes"] > 0 for e in events)


def test_tasks_of_one_person_are_found_by_who_id(sb, sf):
    who = sb.crm.id_of(1)
    answer = sf.query_all(f"SELECT Id, WhoId FROM Task WHERE WhoId = '{who}'")
    assert {r["WhoId"] for r in answer["records"]} <= {who}
    expected = [a for a in sb.crm.activities(1) if a.kind.value in ("email", "call", "task", "note")]
    assert answer["totalSize"] == len(expected)


def test_campaign_members_record_form_submissions(sf):
    members = sf.query_all("SELECT Id, LeadId, ContactId, Status, HasResponded, Campaign.Type FROM CampaignMember")
    rows = members["records"]
    assert rows and all(r["Id"].startswith("00v") and (r["LeadId"] or r["ContactId"]) for r in rows)
    assert {r["Campaign"]["Type"] for r in rows if r["HasResponded"]} >= {"Webinar", "Content"}


def test_too_many_open_cursors_drop_the_oldest(sf):
    batch = {"Sforce-Query-Options": "batchSize=200"}
    first = sf.query("SELECT Id FROM Lead", headers=batch)
    for _ in range(10):
        sf.query("SELECT Id FROM Lead", headers=batch)
    with pytest.raises(SalesforceMalformedRequest) as failure:
        sf.query_more(first["nextRecordsUrl"], identifier_is_url=True)
    assert failure.value.content[0]["errorCode"] == "INVALID_QUERY_LOCATOR"


# -- describe ----------------------------------------------------------------------------------------

def test_describe_lists_custom_fields_only_once_defined(sb, sf):
    assert "Lead_Score__c" not in {f["name"] for f in sf.Lead.describe()["fields"]}
    sb.vendor.add_custom_field("Lead", "Lead_Score__c", "double", label="Lead Score")
    field = next(f for f in sf.Lead.describe()["fields"] if f["name"] == "Lead_Score__c")
    assert field["custom"] and field["updateable"] and field["type"] == "double"


def test_global_describe_names_every_object(sf):
    names = {o["name"]: o["keyPrefix"] for o in sf.describe()["sobjects"]}
    assert names["Lead"] == "00Q" and names["Contact"] == "003" and names["CampaignMember"] == "00v"


def test_lead_status_picklist_has_the_default_values(sf):
    status = next(f for f in sf.Lead.describe()["fields"] if f["name"] == "Status")
    assert [v["value"] for v in status["picklistValues"]] == list(LEAD_STATUSES)


# -- writes ------------------------------------------------------------------------------------------

def update(sf: Salesforce, records: list[dict], all_or_none: bool = False):
    return sf.restful("composite/sobjects", method="PATCH", json={"allOrNone": all_or_none, "records": records})


def test_composite_update_applies_and_moves_system_modstamp(sb, sf):
    sb.vendor.add_custom_field("Lead", "Lead_Score__c")
    ids = lead_ids(sb)[:3]
    before = sf.query(f"SELECT SystemModstamp FROM Lead WHERE Id = '{ids[0]}'")["records"][0]["SystemModstamp"]
    results = update(sf, [{"attributes": {"type": "Lead"}, "id": i, "Lead_Score__c": 42, "Status": "Working - Contacted"}
                          for i in ids])
    assert results == [{"id": i, "success": True, "errors": []} for i in ids]
    after = sf.query(f"SELECT SystemModstamp, Lead_Score__c, Status FROM Lead WHERE Id = '{ids[0]}'")["records"][0]
    assert parse_datetime(after["SystemModstamp"], False) > parse_datetime(before, False)
    assert after["Lead_Score__c"] == 42.0 and after["Status"] == "Working - Contacted"
    assert sb.crm.contact(ids[1])["Lead_Score__c"] == 42


def test_standard_fields_land_on_the_neutral_record(sb, sf):
    contact = next(sb.crm.id_of(i) for i in range(sb.crm.size) if not is_lead(i))
    update(sf, [{"attributes": {"type": "Contact"}, "id": contact, "Title": "CTO"}])
    assert sb.crm.contact(contact)["title"] == "CTO"


def test_one_failing_record_does_not_fail_the_others(sb, sf):
    sb.vendor.add_custom_field("Lead", "Lead_Score__c")
    ids = lead_ids(sb)[:3]
    sb.faults.fail_records([ids[1]], message="Score is locked", code="FIELD_CUSTOM_VALIDATION_EXCEPTION")
    results = update(sf, [{"attributes": {"type": "Lead"}, "id": i, "Lead_Score__c": 7} for i in ids])
    assert [r["success"] for r in results] == [True, False, True]
    assert results[1]["errors"][0]["statusCode"] == "FIELD_CUSTOM_VALIDATION_EXCEPTION"
    assert sb.crm.contact(ids[1]).get("Lead_Score__c") is None and sb.crm.contact(ids[2])["Lead_Score__c"] == 7


def test_a_field_the_org_lacks_fails_that_record_with_invalid_field(sb, sf):
    ids = lead_ids(sb)[:2]
    results = update(sf, [{"attributes": {"type": "Lead"}, "id": ids[0], "Lead_Score__c": 1},
                          {"attributes": {"type": "Lead"}, "id": ids[1], "Title": "VP of Sales"}])
    assert results[0]["errors"][0]["statusCode"] == "INVALID_FIELD" and results[0]["errors"][0]["fields"] == [
        "Lead_Score__c"]
    assert results[1]["success"] and sb.crm.contact(ids[1])["title"] == "VP of Sales"


def test_all_or_none_rolls_back_every_record(sb, sf):
    ids = lead_ids(sb)[:2]
    results = update(sf, [{"attributes": {"type": "Lead"}, "id": ids[0], "Title": "Changed"},
                          {"attributes": {"type": "Lead"}, "id": ids[1], "Status": "Not a status"}], all_or_none=True)
    assert results[0]["errors"][0]["statusCode"] == "ALL_OR_NONE_OPERATION_ROLLED_BACK"
    assert results[1]["errors"][0]["statusCode"] == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
    assert sb.crm.contact(ids[0])["title"] != "Changed"


def test_more_than_200_records_are_refused(sb, sf):
    records = [{"attributes": {"type": "Lead"}, "id": i, "Title": "x"} for i in lead_ids(sb)[:201]]
    with pytest.raises(SalesforceMalformedRequest) as failure:
        update(sf, records)
    assert failure.value.content[0]["errorCode"] == "EXCEEDED_ID_LIMIT"


def test_malformed_and_deleted_ids_fail_per_record(sb, sf):
    deleted = sf.query_all("SELECT Id FROM Lead WHERE IsDeleted = true", include_deleted=True)["records"][0]["Id"]
    results = update(sf, [{"attributes": {"type": "Lead"}, "id": "00Qnotanid", "Title": "x"},
                          {"attributes": {"type": "Lead"}, "id": deleted, "Title": "x"}])
    assert [r["errors"][0]["statusCode"] for r in results] == ["MALFORMED_ID", "ENTITY_IS_DELETED"]


def test_single_create_makes_a_task_for_the_person(sb, sf):
    who = lead_ids(sb)[0]
    answer = sf.Task.create({"WhoId": who, "Subject": "Call back: score 42", "Priority": "High",
                             "ActivityDate": "2030-01-31"})
    assert answer["success"] and answer["id"].startswith("00T")
    task = sb.crm.tasks()[-1]
    assert task.attributes["subject"] == "Call back: score 42" and sb.crm.id_of(task.contact_index) == who
    found = sf.query(f"SELECT Subject, Priority, ActivityDate, Status FROM Task WHERE Id = '{answer['id']}'")
    assert found["records"][0]["ActivityDate"] == "2030-01-31" and found["records"][0]["Status"] == "Not Started"


def test_composite_create_answers_per_record(sb, sf):
    who = lead_ids(sb)[0]
    results = sf.restful("composite/sobjects", method="POST", json={"allOrNone": False, "records": [
        {"attributes": {"type": "Task"}, "WhoId": who, "Subject": "Follow up"},
        {"attributes": {"type": "Task"}, "Subject": "Nobody"}]})
    assert results[0]["success"] and results[1]["errors"][0]["statusCode"] == "REQUIRED_FIELD_MISSING"
    assert len(sb.crm.tasks()) == 1


def lock_error(record_id: str) -> dict:
    return {"statusCode": "UNABLE_TO_LOCK_ROW", "fields": [],
            "message": f"unable to obtain exclusive access to this record or 1 records: {record_id}"}


def test_a_locked_row_fails_its_next_writes_with_unable_to_lock_row_then_takes_them(sb, sf):
    locked, free = lead_ids(sb)[:2]
    sb.faults.fail_records([locked], code="UNABLE_TO_LOCK_ROW", times=2)
    results = update(sf, [{"attributes": {"type": "Lead"}, "id": i, "Title": "CTO"} for i in (locked, free)])
    assert results == [{"success": False, "errors": [lock_error(locked)]}, {"id": free, "success": True, "errors": []}]
    with pytest.raises(SalesforceMalformedRequest) as failure:
        sf.Lead.update(locked, {"Title": "CTO"})
    assert failure.value.status == 400 and failure.value.content == [
        {"message": lock_error(locked)["message"], "errorCode": "UNABLE_TO_LOCK_ROW"}]
    assert sf.Lead.update(locked, {"Title": "CTO"}) == 204 and sb.crm.contact(locked)["title"] == "CTO"


def test_the_next_collections_call_fails_every_record_with_unable_to_lock_row(sb, sf):
    leads = lead_ids(sb)[:3]
    sb.faults.fail_batches("composite.*", code="UNABLE_TO_LOCK_ROW")
    records = [{"attributes": {"type": "Lead"}, "id": i, "Title": "CTO"} for i in leads]
    assert update(sf, records) == [{"success": False, "errors": [lock_error(i)]} for i in leads]
    assert all(sb.crm.contact(i)["title"] != "CTO" for i in leads)
    assert [r["success"] for r in update(sf, records)] == [True] * 3


def test_row_locks_are_armed_over_the_admin_route(sb, sf):
    lead = lead_ids(sb)[0]
    session = session_for(sb)
    session.post(f"{sb.base_url}/_sandbox/faults/records", json={"ids": [lead], "code": "UNABLE_TO_LOCK_ROW",
                                                                 "times": 1}).raise_for_status()
    session.post(f"{sb.base_url}/_sandbox/faults/batches", json={"route": "composite.update",
                                                                 "code": "UNABLE_TO_LOCK_ROW"}).raise_for_status()
    record = [{"attributes": {"type": "Lead"}, "id": lead, "Title": "CTO"}]
    assert update(sf, record)[0]["errors"] == [lock_error(lead)]  # the batch fault
    assert update(sf, record)[0]["errors"] == [lock_error(lead)]  # the record's one counted write
    assert update(sf, record)[0]["success"]


# -- upsert by External ID ------------------------------------------------------------------------------

KEY = "LeadPulse_Key__c"


@pytest.fixture
def keyed(sb):
    sb.vendor.add_custom_field("Task", KEY, "string", label="LeadPulse Key", external_id=True)
    return sb


def upsert_all(sf: Salesforce, records: list[dict], all_or_none: bool = False):
    return sf.restful(f"composite/sobjects/Task/{KEY}", method="PATCH",
                      json={"allOrNone": all_or_none, "records": [{"attributes": {"type": "Task"}, **r} for r in records]})


def test_describe_marks_an_external_id_field(keyed, sf):
    fields = {f["name"]: f for f in sf.Task.describe()["fields"]}
    assert fields[KEY]["externalId"] and fields[KEY]["idLookup"] and fields[KEY]["custom"]
    assert not fields["Subject"]["externalId"] and fields["Id"]["idLookup"]


def test_upsert_creates_then_updates_the_record_its_external_id_names(keyed, sf):
    who = lead_ids(keyed)[0]
    created = sf.Task.upsert(f"{KEY}/lp-1", {"WhoId": who, "Subject": "Call"}, raw_response=True)
    task = created.json()["id"]
    assert created.status_code == 201 and created.json() == {"id": task, "success": True, "errors": [],
                                                              "created": True}
    updated = sf.Task.upsert(f"{KEY}/LP-1", {"Subject": "Call again"}, raw_response=True)  # case does not matter
    assert updated.status_code == 200 and updated.json() == {"id": task, "success": True, "errors": [],
                                                              "created": False}
    record = sf.query(f"SELECT Subject, {KEY}, WhoId FROM Task WHERE {KEY} = 'lp-1'")["records"]
    assert [(r["Subject"], r[KEY], r["WhoId"]) for r in record] == [("Call again", "lp-1", who)]


def test_upsert_of_a_value_two_records_hold_answers_300_with_both(keyed, sf):
    who = lead_ids(keyed)[0]
    tasks = [sf.Task.create({"WhoId": who, "Subject": f"Twin {n}", KEY: "twin"})["id"] for n in (1, 2)]
    with pytest.raises(SalesforceMoreThanOneRecord) as failure:
        sf.Task.upsert(f"{KEY}/twin", {"Subject": "Which one?"})
    assert failure.value.status == 300
    assert failure.value.content == [f"/services/data/v59.0/sobjects/Task/{task}" for task in tasks]


@pytest.mark.parametrize("field", ["Subject", "Lead_Score__c", "No_Such_Field__c"])
def test_upsert_on_a_field_that_is_no_external_id_answers_404(keyed, sf, field):
    keyed.vendor.add_custom_field("Task", "Lead_Score__c")
    with pytest.raises(SalesforceResourceNotFound) as failure:
        sf.Task.upsert(f"{field}/x", {"Subject": "Call"})
    assert failure.value.content == [{"message": "The requested resource does not exist", "errorCode": "NOT_FOUND"}]


def test_collections_upsert_says_per_record_whether_it_created(keyed, sf):
    who = lead_ids(keyed)[0]
    existing = sf.Task.create({"WhoId": who, "Subject": "Old", KEY: "k1"})["id"]
    results = upsert_all(sf, [{KEY: "K1", "Subject": "Updated"}, {KEY: "k2", "WhoId": who, "Subject": "New"},
                              {KEY: "k3", "Subject": "Nobody"}])
    assert results[0] == {"id": existing, "success": True, "errors": [], "created": False}
    assert results[1]["success"] and results[1]["created"] and results[1]["id"].startswith("00T")
    assert results[2]["errors"][0]["statusCode"] == "REQUIRED_FIELD_MISSING" and not results[2]["created"]
    assert sf.Task.get(existing)["Subject"] == "Updated"


def test_collections_upsert_refuses_a_value_given_twice_or_held_twice(keyed, sf):
    who = lead_ids(keyed)[0]
    held = [sf.Task.create({"WhoId": who, KEY: "held"})["id"] for _ in range(2)]
    results = upsert_all(sf, [{KEY: "same", "WhoId": who}, {KEY: "SAME", "WhoId": who}, {KEY: "held"}])
    assert [r["errors"][0]["statusCode"] for r in results] == ["DUPLICATE_VALUE", "DUPLICATE_VALUE",
                                                                "DUPLICATE_EXTERNAL_ID"]
    assert results[0]["errors"][0]["message"] == "Duplicate external id specified: same"
    assert results[2]["errors"][0] == {"statusCode": "DUPLICATE_EXTERNAL_ID", "fields": [KEY], "message":
                                       f"LeadPulse Key: more than one record found for external id field: "
                                       f"[{', '.join(held)}]"}


def test_collections_upsert_takes_200_records_at_most(keyed, sf):
    with pytest.raises(SalesforceMalformedRequest) as failure:
        upsert_all(sf, [{KEY: f"k{n}"} for n in range(201)])
    assert failure.value.content[0]["errorCode"] == "EXCEEDED_ID_LIMIT"


# -- limits, sessions, faults ------------------------------------------------------------------------

def test_every_answer_carries_sforce_limit_info(sandbox_factory):
    sf = client(sandbox_factory("salesforce", tier="developer"))
    sf.query("SELECT Id FROM Lead LIMIT 1")
    sf.Lead.describe()
    assert sf.api_usage["api-usage"].used == 1  # SFType keeps its own copy of the header
    assert sf.api_usage["api-usage"].total == 15_000


def test_daily_allowance_answers_request_limit_exceeded_until_it_rolls(sandbox_factory):
    clock = ManualClock()
    sb = sandbox_factory("salesforce", rate_limits=True, clock=clock)
    sb.limits.tune("DAILY", limit=2)
    sf = client(sb)
    sf.query("SELECT Id FROM Lead LIMIT 1")
    sf.query("SELECT Id FROM Lead LIMIT 1")
    with pytest.raises(SalesforceRefusedRequest) as failure:
        sf.query("SELECT Id FROM Lead LIMIT 1")
    assert failure.value.status == 403
    assert failure.value.content == [{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}]
    assert sb.stats.throttled == 1
    clock.advance(86_401)
    assert sf.query("SELECT Id FROM Lead LIMIT 1")["totalSize"] == 1


def test_expired_session_answers_invalid_session_id_until_a_new_login(sb, sf):
    sb.faults.expire_token_after(1)
    sf.query("SELECT Id FROM Lead LIMIT 1")
    with pytest.raises(SalesforceExpiredSession) as failure:
        sf.query("SELECT Id FROM Lead LIMIT 1")
    assert failure.value.content == [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]
    assert client(sb).query("SELECT Id FROM Lead LIMIT 1")["totalSize"] == 1


def test_injected_429_reaches_the_sdk_as_a_general_error(sb, sf):
    sb.faults.fail_next("query", status=429)
    with pytest.raises(SalesforceGeneralError) as failure:
        sf.query("SELECT Id FROM Lead LIMIT 1")
    assert failure.value.status == 429 and failure.value.content[0]["errorCode"] == "REQUEST_LIMIT_EXCEEDED"
    assert sb.stats.count("query", 429) == 1


def test_a_keyset_page_of_a_million_people_renders_fast(sandbox_factory):
    sf = client(sandbox_factory("salesforce", contacts=1_000_000))
    started = time.perf_counter()
    page = sf.query("SELECT Id, Email, Status, Company, LastModifiedDate FROM Lead "
                    f"WHERE Id > '{sf_id('00Q', 700_000)}' ORDER BY Id LIMIT 500")
    assert page["totalSize"] == 500 and time.perf_counter() - started < 1.0


def test_an_edited_task_is_found_by_an_incremental_query(sb, sf):
    task = sf.query("SELECT Id FROM Task ORDER BY Id LIMIT 1")["records"][0]["Id"]
    results = update(sf, [{"attributes": {"type": "Task"}, "id": task, "Status": "Completed"}])
    assert results[0]["success"]
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 60))
    found = sf.query_all(f"SELECT Id, Status FROM Task WHERE SystemModstamp >= {since}")["records"]
    assert [(r["Id"], r["Status"]) for r in found] == [(task, "Completed")]


def test_single_record_get_and_update(sb, sf):
    lead = lead_ids(sb)[0]
    assert sf.Lead.update(lead, {"Title": "Head of Growth"}) == 204
    record = sf.Lead.get(lead)
    assert record["Title"] == "Head of Growth" and record["Id"] == lead and "Status" in record


def test_filters_reach_through_a_parent_relationship(sf):
    rows = sf.query_all("SELECT Id, Account.Industry FROM Contact WHERE Account.Industry = 'technology'")["records"]
    assert rows and {r["Account"]["Industry"] for r in rows} == {"Technology"}


def test_relative_date_literals_select_recent_rows(sb, sf):
    recent = sf.query("SELECT COUNT() FROM Lead WHERE LastModifiedDate = LAST_N_DAYS:30")["totalSize"]
    assert 0 < recent < sf.query("SELECT COUNT() FROM Lead")["totalSize"]


# -- time windows, archived activities -----------------------------------------------------------------

WINDOWED = ["Lead", "Contact", pytest.param("Task", marks=pytest.mark.slow), "Event", "CampaignMember", "Account",
            "User", "Campaign", "Opportunity", "OpportunityContactRole"]
DAY_MS = 86_400_000


def soql_datetime(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"


def ms(text: str) -> int:
    at = parse_datetime(text, colon_offset=False)
    assert at is not None, f"not a Salesforce datetime: {text!r}"
    return at


def stamps_of(sf: Salesforce, sobject: str, where: str = "") -> dict[str, int]:
    """Id -> SystemModstamp of every row queryAll returns (deleted and archived ones too)."""
    rows = sf.query_all(f"SELECT Id, SystemModstamp FROM {sobject} {where}", include_deleted=True)["records"]
    return {r["Id"]: ms(r["SystemModstamp"]) for r in rows}


@pytest.fixture(scope="module")
def thousand():
    with Sandbox.start("salesforce", 1000, 7, rate_limits=False) as sb:
        yield sb, client(sb)


@pytest.mark.parametrize("sobject", WINDOWED)
def test_system_modstamp_windows_hold_exactly_the_rows_stamped_in_them(thousand, sobject):
    _, sf = thousand
    every = stamps_of(sf, sobject)  # no WHERE: every row, nothing narrowed
    low = min(every.values()) // DAY_MS * DAY_MS
    seen: dict[str, int] = {}
    while low <= max(every.values()):
        high = low + 30 * DAY_MS
        window = stamps_of(sf, sobject, f"WHERE SystemModstamp >= {soql_datetime(low)} "
                                        f"AND SystemModstamp < {soql_datetime(high)}")
        assert all(low <= at < high for at in window.values()) and not set(window) & set(seen)
        seen.update(window)
        low = high
    assert seen == every and every


@pytest.mark.parametrize("sobject", WINDOWED)
def test_keyset_pages_on_system_modstamp_and_id_read_every_row_once_in_order(thousand, sobject):
    _, sf = thousand
    every = stamps_of(sf, sobject)
    read: list[tuple[int, str]] = []
    where = f"SystemModstamp >= {soql_datetime(0)}"
    while True:
        page = sf.query_all(f"SELECT Id, SystemModstamp FROM {sobject} WHERE {where} "
                            "ORDER BY SystemModstamp, Id LIMIT 500", include_deleted=True)["records"]
        if not page:
            break
        read += [(ms(r["SystemModstamp"]), r["Id"]) for r in page]
        at, last = soql_datetime(read[-1][0]), read[-1][1]
        where = f"SystemModstamp >= {at} AND (SystemModstamp > {at} OR Id > '{last}')"
    assert read == sorted((at, record_id) for record_id, at in every.items())


@pytest.mark.parametrize("sobject", ["Task", "Event"])
def test_activities_rarely_share_a_system_modstamp(thousand, sobject):
    _, sf = thousand
    counts = Counter(stamps_of(sf, sobject).values())
    assert counts.most_common(1)[0][1] <= 3


@pytest.mark.parametrize("sobject", ["Task", "Event"])
def test_query_leaves_out_archived_activities_that_query_all_returns(thousand, sobject):
    sb, sf = thousand
    every = sf.query_all(f"SELECT Id, IsArchived, IsDeleted, ActivityDate FROM {sobject}",
                         include_deleted=True)["records"]
    live = {r["Id"] for r in sf.query_all(f"SELECT Id FROM {sobject}")["records"]}
    archived = [r for r in every if r["IsArchived"]]
    year_ago = time.strftime("%Y-%m-%d", time.gmtime((sb.crm.tenant.anchor_ms - 365 * DAY_MS) / 1000))
    assert archived and all(r["ActivityDate"] <= year_ago for r in archived)
    assert live == {r["Id"] for r in every if not r["IsArchived"] and not r["IsDeleted"]}
    assert any(not r["IsArchived"] and r["ActivityDate"] <= year_ago for r in every) == (sobject == "Task")


def test_only_closed_tasks_are_archived(thousand):
    _, sf = thousand
    rows = sf.query_all("SELECT IsClosed FROM Task WHERE IsArchived = true", include_deleted=True)["records"]
    assert rows and all(r["IsClosed"] for r in rows)
    assert sf.query("SELECT COUNT() FROM Task WHERE IsArchived = true")["totalSize"] == 0


# -- audit fields --------------------------------------------------------------------------------------

AUDIT = ("CreatedDate", "CreatedById", "LastModifiedDate", "LastModifiedById", "SystemModstamp")


@pytest.mark.parametrize("sobject", ["User", "Campaign"])
def test_users_and_campaigns_say_who_made_and_last_changed_them_and_when(sf, sobject):
    rows = sf.query_all(f"SELECT Id, {', '.join(AUDIT)}, CreatedBy.Name FROM {sobject}")["records"]
    users = {r["Id"] for r in sf.query_all("SELECT Id FROM User")["records"]}
    assert rows and all(r[name] is not None for r in rows for name in AUDIT)
    assert {r["CreatedById"] for r in rows} | {r["LastModifiedById"] for r in rows} <= users
    assert all(ms(r["CreatedDate"]) <= ms(r["LastModifiedDate"]) == ms(r["SystemModstamp"]) for r in rows)
    assert len({r["SystemModstamp"] for r in rows}) == len(rows) and rows[0]["CreatedBy"]["Name"]


def test_every_object_describes_its_audit_fields(sf):
    for sobject in (o["name"] for o in sf.describe()["sobjects"]):
        fields = {f["name"]: f for f in getattr(sf, sobject).describe()["fields"]}
        assert set(AUDIT) <= set(fields), sobject
        assert fields["CreatedById"]["referenceTo"] == ["User"] and not fields["LastModifiedById"]["updateable"]


def test_a_clients_write_names_the_integration_user_as_last_modifier(sb, sf):
    lead = lead_ids(sb)[0]
    before = sf.Lead.get(lead)["LastModifiedById"]
    sf.Lead.update(lead, {"Title": "Head of Growth"})
    after = sf.query(f"SELECT LastModifiedById, LastModifiedBy.Username FROM Lead WHERE Id = '{lead}'")["records"][0]
    assert after["LastModifiedBy"]["Username"] == sb.credentials["username"] != before
    sb.crm.edit_contact(lead, title="VP of Sales")  # a sales rep changes it afterwards
    assert sf.Lead.get(lead)["LastModifiedById"] == before


# -- converted Leads -----------------------------------------------------------------------------------

CONVERTED = ("Id, Email, Status, IsConverted, ConvertedDate, ConvertedContactId, ConvertedAccountId, "
             "ConvertedOpportunityId, SystemModstamp")


def converted_leads(sf: Salesforce) -> list[dict]:
    return sf.query_all(f"SELECT {CONVERTED} FROM Lead WHERE IsConverted = true")["records"]


def test_a_converted_lead_points_to_the_contact_account_and_opportunity_it_became(sf):
    leads = converted_leads(sf)
    assert leads and all(r["Status"] == "Closed - Converted" and r["ConvertedDate"] for r in leads)
    for lead in leads[:20]:
        contact = sf.Contact.get(lead["ConvertedContactId"])
        opportunity = sf.Opportunity.get(lead["ConvertedOpportunityId"])
        assert contact["Email"] == lead["Email"] and contact["AccountId"] == lead["ConvertedAccountId"]
        assert contact["CreatedDate"][:10] == lead["ConvertedDate"] == opportunity["CreatedDate"][:10]
        assert opportunity["AccountId"] == lead["ConvertedAccountId"] and opportunity["IsWon"]
        assert ms(lead["SystemModstamp"]) <= ms(contact["SystemModstamp"])


def test_leads_that_did_not_convert_point_nowhere(sf):
    rows = sf.query_all(f"SELECT {CONVERTED} FROM Lead WHERE IsConverted = false")["records"]
    assert rows and all(r["Status"] != "Closed - Converted" for r in rows)
    assert all(r[name] is None for r in rows
               for name in ("ConvertedDate", "ConvertedContactId", "ConvertedAccountId", "ConvertedOpportunityId"))


def test_updating_a_converted_lead_answers_cannot_update_converted_lead(sf):
    lead = converted_leads(sf)[0]["Id"]
    with pytest.raises(SalesforceMalformedRequest) as failure:
        sf.Lead.update(lead, {"Title": "CTO"})
    assert failure.value.status == 400
    assert failure.value.content == [{"message": "cannot reference converted lead",
                                      "errorCode": "CANNOT_UPDATE_CONVERTED_LEAD"}]


def test_a_converted_lead_fails_alone_in_a_collection(sb, sf):
    converted, unconverted = converted_leads(sf)[0]["Id"], lead_ids(sb)[0]
    results = update(sf, [{"attributes": {"type": "Lead"}, "id": i, "Title": "CTO"} for i in (converted, unconverted)])
    assert results[0] == {"success": False, "errors": [{"statusCode": "CANNOT_UPDATE_CONVERTED_LEAD",
                                                        "message": "cannot reference converted lead", "fields": []}]}
    assert results[1]["success"] and sb.crm.contact(unconverted)["title"] == "CTO"


def test_a_task_cannot_name_a_converted_lead_but_can_name_its_contact(sf):
    lead = converted_leads(sf)[0]
    with pytest.raises(SalesforceMalformedRequest) as failure:
        sf.Task.create({"WhoId": lead["Id"], "Subject": "Call back"})
    assert failure.value.content[0]["errorCode"] == "CANNOT_UPDATE_CONVERTED_LEAD"
    assert sf.Task.create({"WhoId": lead["ConvertedContactId"], "Subject": "Call back"})["success"]


def test_a_converted_leads_activities_and_memberships_name_its_contact(sf):
    leads = {r["Id"]: r["ConvertedContactId"] for r in converted_leads(sf)}
    tasks = sf.query_all("SELECT WhoId FROM Task", include_deleted=True)["records"]
    assert not {t["WhoId"] for t in tasks} & set(leads) and {t["WhoId"] for t in tasks} & set(leads.values())
    members = sf.query_all("SELECT LeadId, ContactId FROM CampaignMember", include_deleted=True)["records"]
    moved = [m for m in members if m["LeadId"] in leads]
    assert moved and all(m["ContactId"] == leads[m["LeadId"]] for m in moved)


def test_writing_the_contact_leaves_the_converted_lead_as_it_was(sb, sf):
    lead = converted_leads(sf)[0]
    before = sf.Lead.get(lead["Id"])
    sf.Contact.update(lead["ConvertedContactId"], {"Title": "Chief Revenue Officer"})
    assert sf.Contact.get(lead["ConvertedContactId"])["Title"] == "Chief Revenue Officer"
    assert sf.Lead.get(lead["Id"]) == before


# -- opportunities ----------------------------------------------------------------------------------------

def test_describe_lists_the_fields_that_find_won_opportunities(sf):
    opportunity = {f["name"]: f["type"] for f in sf.Opportunity.describe()["fields"]}
    role = {f["name"]: f["type"] for f in sf.OpportunityContactRole.describe()["fields"]}
    assert {"Id": "id", "IsWon": "boolean", "IsClosed": "boolean", "CloseDate": "date", "StageName": "picklist",
            "Amount": "currency", "AccountId": "reference", "SystemModstamp": "datetime"}.items() <= opportunity.items()
    assert {"Id": "id", "ContactId": "reference", "OpportunityId": "reference", "IsPrimary": "boolean",
            "Role": "picklist", "SystemModstamp": "datetime"}.items() <= role.items()


def test_won_opportunities_through_contact_roles_are_the_people_who_converted(sb, sf):
    roles = sf.query_all("SELECT ContactId, IsPrimary, Opportunity.IsWon, Opportunity.StageName FROM "
                         "OpportunityContactRole WHERE Opportunity.IsWon = true")["records"]
    size = sb.crm.tenant.size
    converted = {sf_id("003", i + 1) for i in range(size)
                 if sb.crm.tenant.person(i).converted and not is_deleted(i, size)}
    assert {r["ContactId"] for r in roles} == converted and converted
    assert all(r["IsPrimary"] and r["Opportunity"]["StageName"] == "Closed Won" for r in roles)


def test_opportunities_are_won_lost_or_still_open(sb, sf):
    rows = sf.query_all("SELECT StageName, IsClosed, IsWon, CloseDate, Amount FROM Opportunity")["records"]
    today = time.strftime("%Y-%m-%d", time.gmtime(sb.crm.tenant.anchor_ms / 1000))
    stages = Counter(r["StageName"] for r in rows)
    assert stages["Closed Won"] and stages["Closed Lost"] and len(stages) > 3
    for row in rows:
        assert row["IsClosed"] == (row["StageName"] in ("Closed Won", "Closed Lost"))
        assert row["IsWon"] == (row["StageName"] == "Closed Won") and row["Amount"] > 0
        assert (row["CloseDate"] <= today) == row["IsClosed"]
