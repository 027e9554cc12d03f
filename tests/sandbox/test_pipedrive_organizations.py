"""Organizations that change while a sync runs: the v2 PATCH, the tests' entry, and persons read by organization."""
import pytest
from test_pipedrive_contract import ANCHOR_MS, V2

from leadpulse.sandbox import Sandbox
from leadpulse.sandbox.limits import ManualClock
from leadpulse.sandbox.pipedrive import rfc3339
from leadpulse.sandbox.server import VendorError

LATER = rfc3339(ANCHOR_MS + 1000)
"""After every generated organization's last change: only organizations changed by a test are listed since."""


@pytest.fixture
def company(sandbox_factory) -> Sandbox:
    return sandbox_factory("pipedrive", contacts=300, seed=6, anchor_ms=ANCHOR_MS)


@pytest.fixture
def api(company) -> V2:
    return V2(company)


def fields(api: V2) -> dict[str, dict]:
    """The organization custom fields by display name."""
    return {f["field_name"]: f for f in api.get("/organizationFields").json()["data"] if f["is_custom_field"]}


def option(field: dict, label: str) -> int:
    return next(o["id"] for o in field["options"] if o["label"] == label)


def firmographics(api: V2, industry: str, employees: int, revenue: dict) -> dict:
    """A ``custom_fields`` body setting all three organization fields."""
    named = fields(api)
    return {named["Industry"]["field_code"]: option(named["Industry"], industry),
            named["Number of employees"]["field_code"]: employees, named["Annual revenue"]["field_code"]: revenue}


def persons_of(api: V2, org_id: int) -> dict[int, str]:
    """Each person of the organization and their update time."""
    return {p["id"]: p["update_time"] for p in api.page_all("/persons", org_id=org_id, limit=500)[0]}


# -- the PATCH -------------------------------------------------------------------------------------------

def test_a_patch_answers_with_the_organization_as_get_now_gives_it(company, api):
    owner = company.crm.tenant.owners[-1].id
    custom = firmographics(api, "Healthcare", 4321, {"value": 9_500_000, "currency": "EUR"})
    answer = api.patch("/organizations/3", {"name": "Renamed Ltd", "owner_id": owner, "custom_fields": custom})
    shown = answer.json()["data"]
    assert answer.status_code == 200 and answer.json()["success"] is True
    assert shown == api.get("/organizations/3").json()["data"]
    assert (shown["name"], shown["owner_id"]) == ("Renamed Ltd", owner)
    assert shown["custom_fields"] == custom


def test_a_patched_organization_is_listed_again_by_update_time_with_its_new_values(company, api):
    before = api.get("/organizations", updated_since=LATER, sort_by="update_time").json()["data"]
    api.patch("/organizations/5", {"name": "Second Change"})
    api.patch("/organizations/2", {"custom_fields": firmographics(api, "Media", 12, {"value": 1, "currency": "USD"})})
    listed = api.get("/organizations", updated_since=LATER, sort_by="update_time", limit=500).json()["data"]
    by_ids = api.get("/organizations", ids="2,5").json()["data"]
    assert before == []
    assert [o["id"] for o in listed] == [5, 2] and listed[0]["name"] == "Second Change"
    assert listed[0]["update_time"] <= listed[1]["update_time"] and listed[0]["update_time"] > LATER
    assert sorted(listed, key=lambda o: o["id"]) == by_ids
    assert by_ids[0]["custom_fields"][fields(api)["Number of employees"]["field_code"]] == 12


def test_every_documented_field_of_the_body_is_written(company, api):
    address = {"value": "Main Street 1, Tartu", "country": "Estonia", "locality": "Tartu"}
    shown = api.patch("/organizations/4", {"visible_to": 7, "label_ids": [5, 6], "address": address}).json()["data"]
    cleared = api.patch("/organizations/4", {"address": None}).json()["data"]
    assert (shown["visible_to"], shown["label_ids"]) == (7, [5, 6])
    assert {k: v for k, v in shown["address"].items() if v is not None} == address
    assert cleared["address"] is None and cleared["label_ids"] == [5, 6]


def test_null_clears_an_organization_custom_field(company, api):
    key = fields(api)["Industry"]["field_code"]
    shown = api.patch("/organizations/4", {"custom_fields": {key: None}}).json()["data"]
    assert shown["custom_fields"][key] is None


@pytest.mark.parametrize("body", [
    {"colour": "red"}, {"add_time": "2025-01-01T00:00:00Z"}, {"update_time": "2025-01-01T00:00:00Z"},
    {"name": ""}, {"name": 5}, {"owner_id": "1"}, {"owner_id": 999_999}, {"owner_id": True}, {"visible_to": 2},
    {"label_ids": "1"}, {"label_ids": [1, "2"]}, {"custom_fields": []}, ["name"],
])
def test_a_patch_refuses_with_400_what_the_person_patch_refuses_in_the_same_words(company, api, body):
    person = api.get("/persons", limit=1).json()["data"][0]["id"]
    before = api.get("/organizations/3").json()["data"]
    answer = api.patch("/organizations/3", body)
    assert answer.status_code == 400 and answer.json()["success"] is False
    assert answer.json()["error"] == api.patch(f"/persons/{person}", body).json()["error"]
    assert api.get("/organizations/3").json()["data"] == before


@pytest.mark.parametrize(("name", "value", "word"), [
    ("Industry", "Software", "option ids"), ("Number of employees", "250", "number"),
    ("Annual revenue", 5_000_000, "currency"), ("Annual revenue", {"value": 5, "currency": "EURO"}, "currency"),
])
def test_a_patch_refuses_a_custom_value_in_the_wrong_v2_format(company, api, name, value, word):
    answer = api.patch("/organizations/3", {"custom_fields": {fields(api)[name]["field_code"]: value}})
    assert answer.status_code == 400 and name in answer.json()["error"] and word in answer.json()["error"]


def test_a_patch_refuses_a_custom_field_key_of_no_organization_field(company, api):
    person_key = company.vendor.field_key("Job title")
    answer = api.patch("/organizations/3", {"custom_fields": {person_key: "CEO"}})
    assert answer.status_code == 400 and person_key in answer.json()["error"]
    assert "does not exist" in answer.json()["error"]


def test_a_patch_refuses_an_address_without_its_value(company, api):
    answer = api.patch("/organizations/3", {"address": {"country": "Estonia"}})
    assert answer.status_code == 400 and "address" in answer.json()["error"]


def test_an_unknown_organization_answers_404_and_an_id_that_is_no_number_400(company, api):
    unknown = api.patch(f"/organizations/{company.crm.tenant.companies + 1}", {"name": "Nobody"})
    assert unknown.status_code == 404 and unknown.json()["error"] == "Organization not found"
    assert api.patch("/organizations/0", {"name": "Nobody"}).status_code == 404
    assert api.patch("/organizations/abc", {"name": "Nobody"}).status_code == 400


def test_a_patch_costs_5_tokens_and_counts_as_a_post_or_put(sandbox_factory):
    sb = sandbox_factory("pipedrive", contacts=50, seed=3, rate_limits=True, clock=ManualClock(), anchor_ms=ANCHOR_MS)
    client = V2(sb)
    before = client.get("/organizations/2")
    after = client.patch("/organizations/2", {"name": "Counted"})
    assert after.status_code == 200
    assert int(before.headers["x-daily-ratelimit-token-remaining"]) - 5 == \
        int(after.headers["x-daily-ratelimit-token-remaining"])
    assert int(after.headers["x-daily-requests-left"]) == int(before.headers["x-daily-requests-left"]) - 1


# -- the tests' entry ------------------------------------------------------------------------------------------

def test_edit_organization_takes_values_by_field_display_name_and_returns_the_change_time(company, api):
    changed = company.vendor.edit_organization(3, Industry="Software", name="Acme",
                                               **{"Number of employees": 250, "Annual revenue": 5_000_000})
    shown = api.get("/organizations/3").json()["data"]
    named = fields(api)
    assert shown["name"] == "Acme" and shown["update_time"] == rfc3339(changed) and changed > ANCHOR_MS
    assert shown["custom_fields"] == {named["Industry"]["field_code"]: option(named["Industry"], "Software"),
                                      named["Number of employees"]["field_code"]: 250,
                                      named["Annual revenue"]["field_code"]: {"value": 5_000_000, "currency": "USD"}}


def test_each_change_of_an_organization_moves_its_update_time_further(company):
    first = company.vendor.edit_organization(3, name="One")
    assert company.vendor.edit_organization(3, name="Two") > first


def refusal(edit) -> tuple[int, str]:
    """The status and error message of the VendorError ``edit()`` raises."""
    with pytest.raises(VendorError) as raised:
        edit()
    return raised.value.response.status, raised.value.response.body["error"]


def test_edit_organization_refuses_unknown_fields_options_and_organizations(company):
    status, unknown_field = refusal(lambda: company.vendor.edit_organization(3, Colour="red"))
    assert status == 400 and "Colour" in unknown_field and "Industry" in unknown_field
    status, unknown_option = refusal(lambda: company.vendor.edit_organization(3, Industry="Mining"))
    assert status == 400 and "Industry" in unknown_option and "option ids" in unknown_option
    nobody = company.crm.tenant.companies + 1
    assert refusal(lambda: company.vendor.edit_organization(nobody, name="X")) == (404, "Organization not found")


# -- persons ---------------------------------------------------------------------------------------------------

def test_changing_an_organization_leaves_its_persons_update_time(company, api):
    org = api.get("/persons", limit=1).json()["data"][0]["org_id"]
    before = persons_of(api, org)
    custom = firmographics(api, "Retail", 7, {"value": 2, "currency": "USD"})
    assert api.patch(f"/organizations/{org}", {"custom_fields": custom}).status_code == 200
    changed = company.vendor.edit_organization(org, name="Changed Again")
    since = api.page_all("/persons", updated_since=rfc3339(changed - 1000), sort_by="update_time", limit=500)[0]
    assert before and persons_of(api, org) == before
    assert since == []


def test_the_persons_of_an_organization_are_its_live_persons_paged_by_update_time(sandbox_factory):
    sb = sandbox_factory("pipedrive", contacts=1300, seed=8, anchor_ms=ANCHOR_MS)
    api = V2(sb)
    everyone = api.page_all("/persons", limit=500)[0]
    joining = [p["id"] for p in everyone if p["org_id"] != 1][:560]
    for person in joining:
        api.patch(f"/persons/{person}", {"org_id": 1})
    api.patch(f"/persons/{next(p['id'] for p in everyone if p['org_id'] == 1)}", {"org_id": 2})
    sb.vendor.delete_person(str(joining[0]))
    expected = {p["id"] for p in api.page_all("/persons", limit=500)[0] if p["org_id"] == 1}
    persons, pages = api.page_all("/persons", org_id=1, sort_by="update_time", limit=500)
    assert pages == 2 and len(expected) > 500 and joining[0] not in expected
    assert sorted(p["id"] for p in persons) == sorted(expected)
    assert [p["update_time"] for p in persons] == sorted(p["update_time"] for p in persons)
