"""Contract tests: the HubSpot sandbox driven through hubspot-api-client, answers checked against HubSpot's specs."""
import json

import pytest
import requests
from hubspot import HubSpot
from hubspot.crm.associations.v4 import BatchInputPublicFetchAssociationsBatchRequest
from hubspot.crm.contacts import (
    ApiException,
    BatchInputSimplePublicObjectBatchInput,
    BatchReadInputSimplePublicObjectId,
    PublicObjectSearchRequest,
)
from hubspot.crm.objects.tasks import BatchInputSimplePublicObjectBatchInputForCreate, SimplePublicObjectInputForCreate
from hubspot.crm.properties import OptionInput, PropertyCreate, PropertyGroupCreate, PropertyUpdate
from openapi_check import check

from leadpulse.sandbox import Sandbox
from leadpulse.sandbox.limits import ManualClock

ANCHOR = 1_750_000_000_000
TASK_LINK = [{"to": {"id": "5"}, "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 204}]}]


@pytest.fixture
def sb():
    with Sandbox.start("hubspot", contacts=250, seed=7, rate_limits=False, anchor_ms=ANCHOR) as sandbox:
        yield sandbox


@pytest.fixture
def client(sb):
    return HubSpot(access_token=sb.credentials["access_token"], host=sb.base_url)


def raw(sb, method, path, **kwargs):
    headers = {"Authorization": f"Bearer {sb.credentials['access_token']}"}
    return requests.request(method, sb.base_url + path, headers=headers, **kwargs)


def test_contacts_page_to_the_end_and_paging_is_absent_on_the_last_page(client):
    ids, after = [], None
    while True:
        page = client.crm.contacts.basic_api.get_page(limit=100, after=after, properties=["email", "lifecyclestage"])
        ids += [c.id for c in page.results]
        if page.paging is None:
            break
        after = page.paging.next.after
    assert ids == [str(n) for n in range(1, 251)]


def test_contact_properties_are_strings_and_match_the_spec(sb):
    answer = raw(sb, "GET", "/crm/v3/objects/contacts", params={
        "limit": 5, "properties": "numberofemployees,hs_email_optout,createdate,hubspot_owner_id"})
    check("contacts.json", "/crm/v3/objects/contacts", "get", "200", answer.json())
    for contact in answer.json()["results"]:
        assert all(v is None or isinstance(v, str) for v in contact["properties"].values())
    assert answer.json()["paging"]["next"]["after"] == "6"


def test_list_limit_above_100_is_refused(client):
    with pytest.raises(ApiException) as refused:
        client.crm.contacts.basic_api.get_page(limit=101)
    assert refused.value.status == 400


def test_search_by_last_modified_pages_in_id_order_with_a_total(client, sb):
    since = ANCHOR - 30 * 86_400_000
    expected = [str(i + 1) for i in range(250) if sb.crm.updated_ms(i) >= since]
    request = {"filter_groups": [{"filters": [{"propertyName": "lastmodifieddate", "operator": "GTE", "value": str(since)}]}],
               "sorts": [{"propertyName": "hs_object_id", "direction": "ASCENDING"}], "limit": 10,
               "properties": ["email", "lastmodifieddate"]}
    found, after = [], None
    while True:
        page = client.crm.contacts.search_api.do_search(PublicObjectSearchRequest(**request, after=after))
        assert page.total == len(expected)
        found += [c.id for c in page.results]
        if page.paging is None:
            break
        after = page.paging.next.after
    assert found == expected


def test_search_answer_matches_the_spec(sb):
    answer = raw(sb, "POST", "/crm/v3/objects/contacts/search", json={
        "filterGroups": [{"filters": [{"propertyName": "hs_object_id", "operator": "GT", "value": "200"}]}]})
    check("contacts.json", "/crm/v3/objects/contacts/search", "post", "200", answer.json())
    assert answer.json()["total"] == 50


def test_search_past_10000_results_answers_400():
    with Sandbox.start("hubspot", contacts=12_000, seed=1, rate_limits=False) as sb:
        client = HubSpot(access_token=sb.credentials["access_token"], host=sb.base_url)
        ok = client.crm.contacts.search_api.do_search(PublicObjectSearchRequest(limit=100, after="9900"))
        assert ok.total == 12_000 and ok.paging.next.after == "10000"
        with pytest.raises(ApiException) as refused:
            client.crm.contacts.search_api.do_search(PublicObjectSearchRequest(limit=100, after="10000"))
        assert refused.value.status == 400
        assert json.loads(refused.value.body)["category"] == "VALIDATION_ERROR"
        window = {"filter_groups": [{"filters": [{"propertyName": "hs_object_id", "operator": "GT", "value": "10000"}]}]}
        assert client.crm.contacts.search_api.do_search(PublicObjectSearchRequest(**window)).total == 2000


def test_two_sorts_are_refused(client):
    sorts = [{"propertyName": "hs_object_id", "direction": "ASCENDING"}, {"propertyName": "createdate"}]
    with pytest.raises(ApiException) as refused:
        client.crm.contacts.search_api.do_search(PublicObjectSearchRequest(sorts=sorts))
    assert refused.value.status == 400


def test_a_sort_given_as_a_bare_property_name_is_refused(client):
    with pytest.raises(ApiException) as refused:
        client.crm.contacts.search_api.do_search(PublicObjectSearchRequest(sorts=["hs_object_id"]))
    assert refused.value.status == 400 and "propertyName" in refused.value.body


def test_batch_update_answers_207_with_per_item_errors_and_applies_the_rest(client, sb):
    sb.faults.fail_records(["3"])
    inputs = [{"id": str(n), "properties": {"jobtitle": f"Title {n}"}} for n in (1, 2, 3, 999)]
    answer = client.crm.contacts.batch_api.update(BatchInputSimplePublicObjectBatchInput(inputs=inputs))
    assert answer.num_errors == 2 and sorted(e.context["ids"][0] for e in answer.errors) == ["3", "999"]
    assert sorted(r.id for r in answer.results) == ["1", "2"]
    assert sb.crm.contact("2")["title"] == "Title 2" and sb.crm.contact("3")["title"] != "Title 3"


def test_batch_207_matches_the_spec(sb):
    sb.faults.fail_records(["4"])
    answer = raw(sb, "POST", "/crm/v3/objects/contacts/batch/update",
                 json={"inputs": [{"id": "4", "properties": {"company": "x"}}, {"id": "5", "properties": {"company": "y"}}]})
    assert answer.status_code == 207
    check("contacts.json", "/crm/v3/objects/contacts/batch/update", "post", "207", answer.json())


def test_writes_move_updated_at_and_show_in_search(client, sb):
    before = sb.crm.contact("7")["updated_ms"]
    client.crm.contacts.batch_api.update(BatchInputSimplePublicObjectBatchInput(
        inputs=[{"id": "7", "properties": {"lifecyclestage": "marketingqualifiedlead"}}]))
    after = sb.crm.contact("7")["updated_ms"]
    assert after > before and sb.vendor.properties_of("7")["lifecyclestage"] == "marketingqualifiedlead"
    found = client.crm.contacts.search_api.do_search(PublicObjectSearchRequest(filter_groups=[{"filters": [
        {"propertyName": "lastmodifieddate", "operator": "GTE", "value": str(after)}]}]))
    assert [c.id for c in found.results] == ["7"]


def test_unknown_property_or_bad_option_fails_the_whole_batch(client):
    for properties in ({"no_such_property": "1"}, {"lifecyclestage": "not-a-stage"}):
        with pytest.raises(ApiException) as refused:
            client.crm.contacts.batch_api.update(BatchInputSimplePublicObjectBatchInput(
                inputs=[{"id": "1", "properties": properties}]))
        assert refused.value.status == 400


def test_more_than_100_inputs_are_refused(client):
    with pytest.raises(ApiException) as refused:
        client.crm.contacts.batch_api.read(BatchReadInputSimplePublicObjectId(properties=[], inputs=[{"id": str(n)} for n in range(1, 102)]))
    assert refused.value.status == 400


def test_batch_read_returns_the_asked_properties(client):
    answer = client.crm.contacts.batch_api.read(BatchReadInputSimplePublicObjectId(
        inputs=[{"id": "1"}, {"id": "2"}], properties=["email", "hs_email_optout"]))
    assert {r.id for r in answer.results} == {"1", "2"}
    assert answer.results[0].properties["hs_email_optout"] in ("true", "false")


def test_lifecycle_options_carry_display_order_and_custom_properties_can_be_created(client):
    stage = client.crm.properties.core_api.get_by_name("contacts", "lifecyclestage")
    assert [o.value for o in sorted(stage.options, key=lambda o: o.display_order)][:3] == [
        "subscriber", "lead", "marketingqualifiedlead"]
    client.crm.properties.groups_api.create("contacts", PropertyGroupCreate(name="leadpulse", label="leadpulse"))
    assert client.crm.properties.groups_api.get_by_name("contacts", "leadpulse").label == "leadpulse"
    created = client.crm.properties.core_api.create("contacts", PropertyCreate(
        name="leadpulse_score", label="Lead score", type="number", field_type="number", group_name="leadpulse"))
    assert created.name == "leadpulse_score"
    assert "leadpulse_score" in {p.name for p in client.crm.properties.core_api.get_all("contacts").results}
    client.crm.contacts.batch_api.update(BatchInputSimplePublicObjectBatchInput(
        inputs=[{"id": "9", "properties": {"leadpulse_score": "42"}}]))
    assert client.crm.contacts.basic_api.get_by_id("9", properties=["leadpulse_score"]).properties["leadpulse_score"] == "42"


def test_creating_an_existing_property_answers_409(client):
    from hubspot.crm.properties import ApiException as PropertiesApiException
    with pytest.raises(PropertiesApiException) as refused:
        client.crm.properties.core_api.create("contacts", PropertyCreate(
            name="email", label="Email", type="string", field_type="text", group_name="contactinformation"))
    assert refused.value.status == 409


def test_a_property_update_replaces_its_options_and_writes_then_take_the_new_ones(client, sb):
    client.crm.properties.groups_api.create("contacts", PropertyGroupCreate(name="leadpulse", label="leadpulse"))
    client.crm.properties.core_api.create("contacts", PropertyCreate(
        name="leadpulse_band", label="Lead band", type="enumeration", field_type="select", group_name="leadpulse",
        options=[OptionInput(label="cold", value="cold", hidden=False)]))
    updated = client.crm.properties.core_api.update("contacts", "leadpulse_band", PropertyUpdate(
        options=[OptionInput(label="warm", value="warm", hidden=False), OptionInput(label="hot", value="hot", hidden=False)]))
    assert [o.value for o in updated.options] == ["warm", "hot"]
    client.crm.contacts.batch_api.update(BatchInputSimplePublicObjectBatchInput(
        inputs=[{"id": "9", "properties": {"leadpulse_band": "hot"}}]))
    with pytest.raises(ApiException) as refused:
        client.crm.contacts.batch_api.update(BatchInputSimplePublicObjectBatchInput(
            inputs=[{"id": "9", "properties": {"leadpulse_band": "cold"}}]))
    assert refused.value.status == 400


def test_a_property_update_answer_matches_the_spec_and_an_unknown_property_answers_404(sb):
    answer = raw(sb, "PATCH", "/crm/v3/properties/contacts/industry", json={"label": "Sector"})
    assert answer.status_code == 200 and answer.json()["label"] == "Sector"
    check("properties.json", "/crm/v3/properties/{objectType}/{propertyName}", "patch", "200", answer.json())
    assert raw(sb, "PATCH", "/crm/v3/properties/contacts/no_such_property", json={"label": "x"}).status_code == 404


@pytest.mark.parametrize("object_type", ["calls", "emails", "meetings", "notes", "tasks"])
def test_engagements_list_with_contact_associations_to_the_end(client, sb, object_type):
    api = getattr(client.crm.objects, object_type).basic_api
    seen, after = [], None
    while True:
        page = api.get_page(limit=100, after=after, associations=["contacts"], properties=["hs_timestamp"])
        for item in page.results:
            assert item.associations["contacts"].results[0].id
            assert item.properties["hs_timestamp"].endswith("Z")
        seen += [item.id for item in page.results]
        if page.paging is None:
            break
        after = page.paging.next.after
    kind = {"calls": "call", "emails": "email", "meetings": "meeting", "notes": "note", "tasks": "task"}[object_type]
    expected = [str(a.id) for i in range(250) for a in sb.crm.activities(i) if a.kind.value == kind]
    assert seen == expected and seen


def test_engagement_list_matches_the_spec(sb):
    answer = raw(sb, "GET", "/crm/v3/objects/calls", params={
        "associations": "contacts", "properties": "hs_call_status,hs_call_direction,hs_call_duration"})
    check("calls.json", "/crm/v3/objects/calls", "get", "200", answer.json())
    properties = answer.json()["results"][0]["properties"]
    assert properties["hs_call_direction"] in ("INBOUND", "OUTBOUND")


def test_engagement_search_on_last_modified(client, sb):
    since = ANCHOR - 60 * 86_400_000
    request = PublicObjectSearchRequest(filter_groups=[{"filters": [
        {"propertyName": "hs_lastmodifieddate", "operator": "GTE", "value": str(since)}]}], limit=100,
        properties=["hs_email_direction", "hs_email_status"])
    found = client.crm.objects.emails.search_api.do_search(request)
    expected = [a for i in range(250) for a in sb.crm.activities(i) if a.kind.value == "email" and a.updated_ms >= since]
    assert found.total == len(expected) > 0
    assert found.results[0].properties["hs_email_direction"] in ("EMAIL", "INCOMING_EMAIL", "FORWARDED_EMAIL")


def test_task_created_on_a_contact_is_held_and_found_by_its_body_token(client, sb):
    task = SimplePublicObjectInputForCreate(properties={
        "hs_timestamp": str(ANCHOR), "hs_task_subject": "Call: score 42", "hs_task_body": "Hot lead lp-key-abc123",
        "hs_task_status": "NOT_STARTED", "hs_task_priority": "HIGH", "hs_task_type": "CALL",
        "hubspot_owner_id": "10001"}, associations=TASK_LINK)
    created = client.crm.objects.tasks.basic_api.create(task)
    assert [t["id"] for t in sb.vendor.created_tasks()] == [created.id]
    assert sb.vendor.created_tasks()[0]["contacts"] == ["5"]
    found = client.crm.objects.tasks.search_api.do_search(PublicObjectSearchRequest(filter_groups=[{"filters": [
        {"propertyName": "hs_task_body", "operator": "CONTAINS_TOKEN", "value": "lp-key-abc123"}]}]))
    assert [t.id for t in found.results] == [created.id]


def test_tasks_batch_create_and_bad_association_is_refused(client, sb):
    inputs = [{"properties": {"hs_timestamp": str(ANCHOR), "hs_task_subject": f"T{n}"}, "associations": TASK_LINK}
              for n in range(3)]
    answer = client.crm.objects.tasks.batch_api.create(BatchInputSimplePublicObjectBatchInputForCreate(inputs=inputs))
    assert len(answer.results) == 3 and len(sb.crm.tasks()) == 3
    bad = [{"to": {"id": "5"}, "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 194}]}]
    answer = raw(sb, "POST", "/crm/v3/objects/tasks", json={"properties": {"hs_timestamp": str(ANCHOR)}, "associations": bad})
    assert answer.status_code == 400 and len(sb.crm.tasks()) == 3


def test_associations_v4_batch_read(client, sb):
    answer = client.crm.associations.v4.batch_api.get_page("contacts", "meetings",
                                                           BatchInputPublicFetchAssociationsBatchRequest(
                                                               inputs=[{"id": str(n)} for n in range(1, 40)]))
    meetings = {r._from.id: {t.to_object_id for t in r.to} for r in answer.results}
    expected = {str(i + 1): {str(a.id) for a in sb.crm.activities(i) if a.kind.value == "meeting"} for i in range(39)}
    assert meetings == expected
    caller = next(str(i + 1) for i in range(300) if any(a.kind.value == "call" for a in sb.crm.activities(i)))
    assert raw(sb, "POST", "/crm/v4/associations/contacts/calls/batch/read",
               json={"inputs": [{"id": caller}]}).json()["results"][0]["to"][0]["associationTypes"][0]["typeId"] == 193


def test_owners_are_listed(client, sb):
    owners = client.crm.owners.owners_api.get_page(limit=100)
    assert {o.id for o in owners.results} == {str(o.id) for o in sb.crm.tenant.owners}
    check("crmOwners.json", "/crm/v3/owners", "get", "200", raw(sb, "GET", "/crm/v3/owners").json())


def test_bad_token_answers_401_invalid_authentication(sb):
    client = HubSpot(access_token="wrong", host=sb.base_url)
    with pytest.raises(ApiException) as refused:
        client.crm.contacts.basic_api.get_page(limit=1)
    assert refused.value.status == 401
    assert json.loads(refused.value.body)["category"] == "INVALID_AUTHENTICATION"


def test_token_expires_after_n_calls(client, sb):
    sb.faults.expire_token_after(1)
    client.crm.contacts.basic_api.get_page(limit=1)
    with pytest.raises(ApiException) as refused:
        client.crm.contacts.basic_api.get_page(limit=1)
    assert refused.value.status == 401


def test_rate_limit_answers_429_with_hubspot_body_and_headers():
    with Sandbox.start("hubspot", contacts=20, clock=ManualClock()) as sb:
        sb.limits.tune("TEN_SECONDLY_ROLLING", limit=2)
        first = raw(sb, "GET", "/crm/v3/objects/contacts")
        assert first.headers["X-HubSpot-RateLimit-Max"] == "2" and first.headers["X-HubSpot-RateLimit-Remaining"] == "1"
        client = HubSpot(access_token=sb.credentials["access_token"], host=sb.base_url)
        client.crm.contacts.search_api.do_search(PublicObjectSearchRequest())
        with pytest.raises(ApiException) as refused:
            client.crm.contacts.search_api.do_search(PublicObjectSearchRequest())
        body = json.loads(refused.value.body)
        assert refused.value.status == 429 and body["policyName"] == "TEN_SECONDLY_ROLLING"
        assert body["errorType"] == "RATE_LIMIT" and body["message"] == "You have reached your ten_secondly_rolling limit."
        assert sb.stats.rate_limited == 1 and sb.stats.count("contacts.search", 429) == 1


def test_search_has_its_own_secondly_limit():
    clock = ManualClock()
    with Sandbox.start("hubspot", contacts=20, clock=clock) as sb:
        codes = [raw(sb, "POST", "/crm/v3/objects/contacts/search", json={}).status_code for _ in range(5)]
        assert codes == [200] * 4 + [429]
        clock.advance(1.01)
        assert raw(sb, "POST", "/crm/v3/objects/contacts/search", json={}).status_code == 200


def test_injected_503_uses_hubspot_error_shape(client, sb):
    sb.faults.fail_next("contacts.list", status=503)
    with pytest.raises(ApiException) as failed:
        client.crm.contacts.basic_api.get_page(limit=1, _request_timeout=5)
    body = json.loads(failed.value.body)
    assert failed.value.status == 503 and {"message", "correlationId", "category"} <= set(body)


def test_stats_count_requests_per_route_and_status(client, sb):
    client.crm.contacts.basic_api.get_page(limit=1)
    client.crm.objects.calls.basic_api.get_page(limit=1)
    assert sb.stats.by_route() == {"contacts.list": {200: 1}, "calls.list": {200: 1}}
