"""Contract tests: the HubSpot sandbox driven through hubspot-api-client, answers checked against HubSpot's specs."""
import json
import threading
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from hubspot import HubSpot
from hubspot.crm import objects
from hubspot.crm.associations.v4 import BatchInputPublicFetchAssociationsBatchRequest
from hubspot.crm.contacts import (
    ApiException,
    BatchInputSimplePublicObjectBatchInput,
    BatchReadInputSimplePublicObjectId,
    PublicObjectSearchRequest,
)
from hubspot.crm.objects import tasks
from hubspot.crm.objects.tasks import BatchInputSimplePublicObjectBatchInputForCreate, SimplePublicObjectInputForCreate
from hubspot.crm.properties import ApiException as PropertiesApiException
from hubspot.crm.properties import OptionInput, PropertyCreate, PropertyGroupCreate, PropertyUpdate
from openapi_check import check, problems, response_schema

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


def next_page(sb, answer):
    """The page ``paging.next.link`` names, fetched as it is given, and the link split into (url, parameters)."""
    link = answer.json()["paging"]["next"]["link"]
    parts = urlsplit(link)
    following = requests.get(link, headers={"Authorization": f"Bearer {sb.credentials['access_token']}"})
    return following, f"{parts.scheme}://{parts.netloc}{parts.path}", parse_qs(parts.query)


@pytest.mark.parametrize(("path", "params"), [
    ("/crm/v3/objects/contacts", {"limit": "3", "properties": "email,lifecyclestage", "associations": "calls",
                                  "archived": "false"}),
    ("/crm/v3/objects/calls", {"limit": "3", "properties": "hs_timestamp", "associations": "contacts"}),
    ("/crm/v3/owners", {"limit": "3", "archived": "false"}),
])
def test_a_next_link_repeats_the_request_s_parameters_with_the_new_after(sb, path, params):
    first = raw(sb, "GET", path, params=params)
    second, url, query = next_page(sb, first)
    assert url == sb.base_url + path
    assert query == {**{name: [value] for name, value in params.items()}, "after": [first.json()["paging"]["next"]["after"]]}
    assert second.status_code == 200 and len(second.json()["results"]) == 3
    assert not {r["id"] for r in first.json()["results"]} & {r["id"] for r in second.json()["results"]}
    _, _, query = next_page(sb, second)
    assert query["after"] == [second.json()["paging"]["next"]["after"]] and query["limit"] == ["3"]


def test_a_search_next_link_names_the_search_and_the_new_after(sb):
    answer = raw(sb, "POST", "/crm/v3/objects/contacts/search", json={"limit": 5})
    parts = urlsplit(answer.json()["paging"]["next"]["link"])
    assert parts.path == "/crm/v3/objects/contacts/search" and parse_qs(parts.query) == {"after": ["5"]}


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


@pytest.mark.parametrize(("body", "named"), [
    ({"filters": [{"propertyName": "hs_object_id", "operator": "GT", "value": "200"}]}, "filters"),
    ({"filterGroup": [{"filters": [{"propertyName": "hs_object_id", "operator": "GT", "value": "200"}]}]}, "filterGroup"),
    ({"filterGroups": [{"filter": [{"propertyName": "hs_object_id", "operator": "GT", "value": "200"}]}]}, "filter"),
])
def test_a_search_body_key_hubspot_does_not_define_is_refused_not_ignored(sb, body, named):
    answer = raw(sb, "POST", "/crm/v3/objects/contacts/search", json=body)
    assert answer.status_code == 400 and answer.json()["category"] == "VALIDATION_ERROR"
    assert f"'{named}'" in answer.json()["message"] and answer.json()["errors"][0]["in"] == named


def test_a_full_text_query_is_refused_since_this_sandbox_does_not_apply_it(sb):
    answer = raw(sb, "POST", "/crm/v3/objects/contacts/search", json={"query": "acme"})
    assert answer.status_code == 400 and "query" in answer.json()["message"]
    assert raw(sb, "POST", "/crm/v3/objects/contacts/search", json={"query": "", "limit": 3}).json()["total"] == 250


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


def contact_links(sb, index, kind):
    return [{"id": str(a.id), "type": f"contact_to_{kind}"} for a in sb.crm.activities(index) if a.kind.value == kind]


def test_contacts_list_and_get_carry_the_engagements_asked_for_and_omit_the_types_without_any(client, sb):
    answer = raw(sb, "GET", "/crm/v3/objects/contacts", params={"limit": 60, "associations": "calls,meetings,companies"})
    check("contacts.json", "/crm/v3/objects/contacts", "get", "200", answer.json())
    seen = []
    for contact in answer.json()["results"]:
        index = int(contact["id"]) - 1
        expected = {f"{kind}s": {"results": links} for kind in ("call", "meeting")
                    if (links := contact_links(sb, index, kind))}
        assert contact.get("associations", {}) == expected
        seen.append(set(expected))
    assert {"calls", "meetings"} in seen and any(len(kinds) < 2 for kinds in seen)
    caller = next(i for i in range(250) if contact_links(sb, i, "call"))
    one = client.crm.contacts.basic_api.get_by_id(str(caller + 1), associations=["calls", "tasks"])
    assert [(a.id, a.type) for a in one.associations["calls"].results] == [
        (link["id"], link["type"]) for link in contact_links(sb, caller, "call")]
    assert set(one.associations) == {"calls", *(["tasks"] if contact_links(sb, caller, "task") else [])}


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
    assert meetings == {contact: ids for contact, ids in expected.items() if ids}
    assert [e.context["fromObjectId"][0] for e in answer.errors or []] == [c for c, ids in expected.items() if not ids]
    caller = next(str(i + 1) for i in range(300) if any(a.kind.value == "call" for a in sb.crm.activities(i)))
    assert raw(sb, "POST", "/crm/v4/associations/contacts/calls/batch/read",
               json={"inputs": [{"id": caller}]}).json()["results"][0]["to"][0]["associationTypes"][0]["typeId"] == 193


def test_v4_batch_read_from_calls_to_companies_answers_207_naming_each_call_without_any(client, sb):
    calls = [str(a.id) for i in range(10) for a in sb.crm.activities(i) if a.kind.value == "call"][:3]
    inputs = [{"id": call} for call in [*calls, "999999999"]]
    answer = raw(sb, "POST", "/crm/v4/associations/calls/companies/batch/read", json={"inputs": inputs})
    body = answer.json()
    assert answer.status_code == 207 and body["results"] == [] and body["numErrors"] == 4
    error = body["errors"][0]
    assert error["category"] == "OBJECT_NOT_FOUND" and error["subCategory"] == "crm.associations.NO_ASSOCIATIONS_FOUND"
    assert error["message"] == f"No company is associated with call {calls[0]}."
    assert error["context"] == {"fromObjectId": [calls[0]], "fromObjectType": ["call"], "toObjectType": ["company"]}
    # the spec types StandardError.subCategory as an object; HubSpot sends a string (see the sandbox docstring)
    check("associations.json", "/crm/v4/associations/{fromObjectType}/{toObjectType}/batch/read", "post", "207",
          {**body, "errors": [{k: v for k, v in e.items() if k != "subCategory"} for e in body["errors"]]})
    read = client.crm.associations.v4.batch_api.get_page("calls", "companies",
                                                         BatchInputPublicFetchAssociationsBatchRequest(inputs=inputs))
    assert read.results == [] and [e.context["fromObjectId"] for e in read.errors] == [[i["id"]] for i in inputs]
    assert raw(sb, "POST", "/crm/v4/associations/calls/widgets/batch/read", json={"inputs": inputs}).status_code == 400


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


# -- a unique task key: custom task properties, unique values, batch read by idProperty ---------------------------

KEY = "leadpulse_task_key"


def define_task_key(client):
    client.crm.properties.groups_api.create("tasks", PropertyGroupCreate(name="leadpulse", label="leadpulse"))
    return client.crm.properties.core_api.create("tasks", PropertyCreate(
        name=KEY, label="leadpulse task key", type="string", field_type="text", group_name="leadpulse",
        has_unique_value=True))


def keyed_tasks(*keys):
    return [{"properties": {"hs_timestamp": str(ANCHOR), "hs_task_subject": f"Follow up {key}", KEY: key},
             "associations": TASK_LINK} for key in keys]


def create_tasks(client, *keys):
    return client.crm.objects.tasks.batch_api.create(BatchInputSimplePublicObjectBatchInputForCreate(
        inputs=keyed_tasks(*keys)))


def read_by_key(*keys, properties=(KEY, "hs_task_subject")):
    return objects.BatchReadInputSimplePublicObjectId(id_property=KEY, inputs=[{"id": key} for key in keys],
                                                      properties=list(properties), properties_with_history=[])


def test_a_unique_task_property_is_created_in_a_task_group_and_read_back(client, sb):
    assert client.crm.properties.groups_api.get_by_name("tasks", "taskinformation").name == "taskinformation"
    created = define_task_key(client)
    assert created.has_unique_value is True and created.name == KEY
    assert client.crm.properties.groups_api.get_by_name("tasks", "leadpulse").label == "leadpulse"
    assert client.crm.properties.core_api.get_by_name("tasks", KEY).has_unique_value is True
    assert {p.name: p.has_unique_value for p in client.crm.properties.core_api.get_all("tasks").results}[KEY] is True
    assert client.crm.properties.core_api.get_by_name("tasks", "hs_task_subject").has_unique_value is False
    answer = raw(sb, "GET", f"/crm/v3/properties/tasks/{KEY}")
    assert answer.json()["hasUniqueValue"] is True
    check("properties.json", "/crm/v3/properties/{objectType}/{propertyName}", "get", "200", answer.json())
    fresh = raw(sb, "POST", "/crm/v3/properties/calls", json={
        "name": "leadpulse_call_key", "label": "k", "type": "number", "fieldType": "number",
        "groupName": "callinformation", "hasUniqueValue": True})
    assert fresh.status_code == 201 and fresh.json()["hasUniqueValue"] is True
    check("properties.json", "/crm/v3/properties/{objectType}", "post", "201", fresh.json())


def test_unique_values_are_set_at_creation_only_on_text_or_number_and_at_most_ten_per_object(client, sb):
    define_task_key(client)
    changed = raw(sb, "PATCH", f"/crm/v3/properties/tasks/{KEY}", json={"hasUniqueValue": False})
    assert changed.status_code == 400 and "hasUniqueValue" in changed.json()["message"]
    assert client.crm.properties.core_api.get_by_name("tasks", KEY).has_unique_value is True
    with pytest.raises(PropertiesApiException) as refused:
        client.crm.properties.core_api.create("tasks", PropertyCreate(
            name="leadpulse_band", label="band", type="enumeration", field_type="select", group_name="leadpulse",
            options=[OptionInput(label="hot", value="hot", hidden=False)], has_unique_value=True))
    assert refused.value.status == 400
    for n in range(9):
        client.crm.properties.core_api.create("tasks", PropertyCreate(
            name=f"key_{n}", label=f"key {n}", type="string", field_type="text", group_name="leadpulse",
            has_unique_value=True))
    with pytest.raises(PropertiesApiException) as eleventh:
        client.crm.properties.core_api.create("tasks", PropertyCreate(
            name="key_10", label="key 10", type="string", field_type="text", group_name="leadpulse",
            has_unique_value=True))
    assert eleventh.value.status == 400 and "10" in json.loads(eleventh.value.body)["message"]
    clash = raw(sb, "POST", "/crm/v3/properties/tasks", json={
        "name": "status", "label": "s", "type": "string", "fieldType": "text", "groupName": "leadpulse"})
    assert clash.status_code == 400 and "sandbox" in clash.json()["message"]


def test_unique_values_on_contacts_are_refused_since_they_are_not_enforced_here(sb):
    answer = raw(sb, "POST", "/crm/v3/properties/contacts", json={
        "name": "external_id", "label": "External id", "type": "string", "fieldType": "text",
        "groupName": "contactinformation", "hasUniqueValue": True})
    assert answer.status_code == 400 and "contacts" in answer.json()["message"]
    sb.vendor.unique_value_objects = frozenset()  # as if HubSpot refused them on tasks too
    answer = raw(sb, "POST", "/crm/v3/properties/tasks", json={
        "name": KEY, "label": "k", "type": "string", "fieldType": "text", "groupName": "taskinformation",
        "hasUniqueValue": True})
    assert answer.status_code == 400


def test_tasks_keep_their_custom_property_and_every_read_returns_it(client, sb):
    define_task_key(client)
    created = create_tasks(client, "k-1", "k-2")
    assert sorted(t.properties[KEY] for t in created.results) == ["k-1", "k-2"]
    single = client.crm.objects.tasks.basic_api.create(SimplePublicObjectInputForCreate(
        properties={"hs_timestamp": str(ANCHOR), KEY: "k-3"}, associations=TASK_LINK))
    assert single.properties[KEY] == "k-3"
    assert client.crm.objects.tasks.basic_api.get_by_id(single.id, properties=[KEY]).properties[KEY] == "k-3"
    found = client.crm.objects.tasks.search_api.do_search(PublicObjectSearchRequest(
        filter_groups=[{"filters": [{"propertyName": KEY, "operator": "EQ", "value": "k-2"}]}], properties=[KEY]))
    assert [t.properties[KEY] for t in found.results] == ["k-2"]
    listed, after = {}, None
    while True:
        page = client.crm.objects.tasks.basic_api.get_page(limit=100, after=after, properties=[KEY])
        listed.update({t.id: t.properties[KEY] for t in page.results})
        if page.paging is None:
            break
        after = page.paging.next.after
    assert sorted(v for v in listed.values() if v) == ["k-1", "k-2", "k-3"]
    assert sorted(t["properties"][KEY] for t in sb.vendor.created_tasks()) == ["k-1", "k-2", "k-3"]


def test_a_task_property_that_is_not_defined_fails_the_whole_batch(client, sb):
    inputs = keyed_tasks("k-1")
    with pytest.raises(tasks.ApiException) as refused:
        client.crm.objects.tasks.batch_api.create(BatchInputSimplePublicObjectBatchInputForCreate(inputs=inputs))
    assert refused.value.status == 400 and "PROPERTY_DOESNT_EXIST" in refused.value.body
    assert sb.crm.tasks() == []


def test_batch_read_by_the_unique_key_finds_what_was_just_created_and_reports_the_missing_in_a_207(client, sb):
    define_task_key(client)
    created = {t.properties[KEY]: t.id for t in create_tasks(client, "k-1", "k-2", "k-3").results}
    everything = client.crm.objects.batch_api.read("tasks", read_by_key("k-1", "k-3"))
    assert type(everything).__name__ == "BatchResponseSimplePublicObject" and not hasattr(everything, "errors")
    assert {t.id: t.properties[KEY] for t in everything.results} == {created["k-1"]: "k-1", created["k-3"]: "k-3"}
    some = client.crm.objects.batch_api.read("tasks", read_by_key("k-2", "gone-1", "k-1", "gone-2"))
    assert type(some).__name__ == "BatchResponseSimplePublicObjectWithErrors"  # the SDK returns a 207, no raise
    assert sorted(t.properties[KEY] for t in some.results) == ["k-1", "k-2"]
    assert some.num_errors == 1 and some.errors[0].category == "OBJECT_NOT_FOUND"
    assert some.errors[0].context == {"ids": ["gone-1", "gone-2"]}
    assert some.errors[0].message == ("Could not get some TASK objects, they may be deleted or not exist. "
                                      "Check that ids are valid.")
    assert sb.stats.count("tasks.batch_read", 200) == 1 and sb.stats.count("tasks.batch_read", 207) == 1


def test_batch_read_as_raw_json_has_the_spec_shapes(client):
    define_task_key(client)
    created = create_tasks(client, "k-1", "k-2")
    found = client.crm.objects.batch_api.read("tasks", read_by_key("k-1", "k-2"), _preload_content=False)
    body = json.loads(found.data)
    assert found.status == 200 and body["status"] == "COMPLETE" and {"startedAt", "completedAt"} <= set(body)
    assert "errors" not in body and "numErrors" not in body
    check("tasks.json", "/crm/v3/objects/tasks/batch/read", "post", "200", body)
    assert sorted(r["id"] for r in body["results"]) == sorted(t.id for t in created.results)
    for result in body["results"]:
        assert set(result) == {"id", "properties", "createdAt", "updatedAt", "archived"}
        assert set(result["properties"]) == {KEY, "hs_task_subject"}
    partial = client.crm.objects.batch_api.read("tasks", read_by_key("k-2", "nope"), _preload_content=False)
    body = json.loads(partial.data)
    assert partial.status == 207 and body["numErrors"] == 1 and [r["properties"][KEY] for r in body["results"]] == ["k-2"]
    check("tasks.json", "/crm/v3/objects/tasks/batch/read", "post", "207", body)
    error = body["errors"][0]
    assert error["status"] == "error" and error["category"] == "OBJECT_NOT_FOUND" and error["context"] == {"ids": ["nope"]}
    assert {"errors", "links", "message"} <= set(error)


def test_a_create_with_a_key_already_held_is_refused_whole_and_creates_nothing(client, sb):
    define_task_key(client)
    create_tasks(client, "k-1")
    with pytest.raises(tasks.ApiException) as refused:
        create_tasks(client, "k-2", "k-1")
    body = json.loads(refused.value.body)
    assert refused.value.status == 400 and body["category"] == "VALIDATION_ERROR"
    assert KEY in body["message"] and '"k-1"' in body["message"]
    spec, _ = response_schema("tasks.json", "/crm/v3/objects/tasks/batch/read", "post", "200")
    assert not problems(spec, {"$ref": "#/components/schemas/Error"}, body)
    with pytest.raises(tasks.ApiException) as single:
        client.crm.objects.tasks.basic_api.create(SimplePublicObjectInputForCreate(
            properties={"hs_timestamp": str(ANCHOR), KEY: "k-1"}, associations=TASK_LINK))
    assert single.value.status == 400
    with pytest.raises(tasks.ApiException) as twice:
        create_tasks(client, "k-3", "k-3")
    assert twice.value.status == 400 and '"k-3"' in json.loads(twice.value.body)["message"]
    assert [t["properties"][KEY] for t in sb.vendor.created_tasks()] == ["k-1"]
    missing = client.crm.objects.batch_api.read("tasks", read_by_key("k-2", "k-3"))
    assert missing.results == [] and missing.errors[0].context == {"ids": ["k-2", "k-3"]}
    assert len(create_tasks(client, "k-2", "k-3", "").results) == 3  # an empty value holds nothing


def test_concurrent_creates_of_one_key_make_one_task(client, sb):
    define_task_key(client)
    statuses = []

    def attempt():
        answer = raw(sb, "POST", "/crm/v3/objects/tasks/batch/create", json={"inputs": keyed_tasks("same")})
        statuses.append(answer.status_code)

    threads = [threading.Thread(target=attempt) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [201] + [400] * 7 and len(sb.crm.tasks()) == 1


def test_keys_set_outside_the_api_are_held_and_found_too(client, sb):
    define_task_key(client)
    task = sb.crm.add_activity("5", "task", ANCHOR, subject="made in the UI", **{KEY: "ui-1"})
    assert [r.id for r in client.crm.objects.batch_api.read("tasks", read_by_key("ui-1")).results] == [str(task.id)]
    with pytest.raises(tasks.ApiException):
        create_tasks(client, "ui-1")
    sb.crm.update_activity(task.id, **{KEY: "ui-2"})
    assert client.crm.objects.batch_api.read("tasks", read_by_key("ui-1")).errors[0].context == {"ids": ["ui-1"]}
    assert len(create_tasks(client, "ui-1").results) == 1


def test_batch_read_by_task_id_and_what_it_refuses(client, sb):
    define_task_key(client)
    made = create_tasks(client, "k-1").results[0].id
    generated = next(str(a.id) for i in range(250) for a in sb.crm.activities(i) if a.kind.value == "task")
    call = next(str(a.id) for i in range(250) for a in sb.crm.activities(i) if a.kind.value == "call")
    by_id = client.crm.objects.batch_api.read("tasks", objects.BatchReadInputSimplePublicObjectId(
        inputs=[{"id": made}, {"id": generated}, {"id": call}, {"id": "999"}], properties=[KEY],
        properties_with_history=["hs_task_subject"]))
    assert sorted(r.id for r in by_id.results) == sorted([made, generated])
    assert by_id.errors[0].context == {"ids": [call, "999"]}
    assert {r.id: r.properties[KEY] for r in by_id.results}[made] == "k-1"
    history = {r.id: r.properties_with_history["hs_task_subject"] for r in by_id.results}[made]
    assert [(h.value, h.source_type) for h in history] == [("Follow up k-1", "API")]
    for id_property in ("hs_task_subject", "no_such_property"):
        with pytest.raises(objects.ApiException) as refused:
            client.crm.objects.batch_api.read("tasks", objects.BatchReadInputSimplePublicObjectId(
                id_property=id_property, inputs=[{"id": "k-1"}], properties=[], properties_with_history=[]))
        assert refused.value.status == 400 and id_property in json.loads(refused.value.body)["message"]
    with pytest.raises(objects.ApiException) as too_many:
        client.crm.objects.batch_api.read("tasks", read_by_key(*(f"k-{n}" for n in range(101))))
    assert too_many.value.status == 400
    notes = raw(sb, "POST", "/crm/v3/objects/notes/batch/read", json={"inputs": [{"id": generated}], "properties": []})
    assert notes.status_code == 207 and notes.json()["errors"][0]["message"].startswith("Could not get some NOTE")


def test_task_batch_read_takes_faults_by_route_name(client, sb):
    define_task_key(client)
    create_tasks(client, "k-1")
    sb.faults.fail_next("tasks.batch_read", status=503)
    with pytest.raises(objects.ApiException) as failed:
        client.crm.objects.batch_api.read("tasks", read_by_key("k-1"), _request_timeout=5)
    assert failed.value.status == 503
    assert client.crm.objects.batch_api.read("tasks", read_by_key("k-1")).results[0].properties[KEY] == "k-1"
    assert sb.stats.by_route()["tasks.batch_read"] == {503: 1, 200: 1}


def test_task_batch_read_counts_against_the_ordinary_limit_not_search_s():
    with Sandbox.start("hubspot", contacts=20, clock=ManualClock()) as sb:
        body = {"inputs": [{"id": "1"}], "properties": [], "propertiesWithHistory": []}
        codes = [raw(sb, "POST", "/crm/v3/objects/tasks/batch/read", json=body).status_code for _ in range(6)]
        assert 429 not in codes
        answer = raw(sb, "POST", "/crm/v3/objects/tasks/batch/read", json=body)
        assert "X-HubSpot-RateLimit-Secondly" not in answer.headers
        assert int(answer.headers["X-HubSpot-RateLimit-Remaining"]) == int(answer.headers["X-HubSpot-RateLimit-Max"]) - 7
        assert sb.stats.count("tasks.batch_read", 207) == 7


def test_admin_routes_log_activities_and_report_what_clients_wrote(hubspot_sandbox):
    sb = hubspot_sandbox
    first, second = sb.crm.id_of(0), sb.crm.id_of(1)
    before = len(sb.crm.activities(0))
    answer = requests.post(f"{sb.base_url}/_sandbox/crm/activities",
                           json={"ids": [first], "kind": "meeting", "fields": {"outcome": "completed"}})
    assert answer.ok and len(sb.crm.activities(0)) == before + 1
    sb.crm.write(1, {"leadpulse_score": "12.5"})
    written = requests.get(f"{sb.base_url}/_sandbox/crm/written").json()
    assert written["contacts"] == [sb.crm.id_of(i) for i in range(sb.crm.size)]
    assert written["properties"] == {second: {"leadpulse_score": "12.5"}}
    assert written["tasks"] == []
    assert sb.stats.count() == 0  # admin calls are not the API's
