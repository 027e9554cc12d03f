"""Custom fields as API v2 writes and reads them, and their definitions through the v1 and v2 field endpoints."""
import re

import pytest
from test_pipedrive_contract import ANCHOR_MS, V2, sdk_client

from leadpulse.sandbox import Sandbox


@pytest.fixture
def company(sandbox_factory) -> Sandbox:
    return sandbox_factory("pipedrive", contacts=60, seed=5, anchor_ms=ANCHOR_MS)


@pytest.fixture
def api(company) -> V2:
    return V2(company)


def make_field(api: V2, name: str, field_type: str, labels=()) -> dict:
    body = {"field_name": name, "field_type": field_type, **({"options": [{"label": x} for x in labels]} if labels else {})}
    answer = api.post("/personFields", body)
    assert answer.status_code == 200, answer.text
    return answer.json()["data"]


def write(api: V2, key: str, value, person: int = 3):
    return api.patch(f"/persons/{person}", {"custom_fields": {key: value}})


def test_v2_person_fields_list_hash_keys_options_and_subfields(api):
    fields, pages = api.page_all("/personFields", limit=10)
    by_name = {f["field_name"]: f for f in fields}
    industry = by_name["Industry"]
    assert pages > 1 and set(industry) == {"field_name", "field_code", "field_type", "options", "subfields",
                                           "is_custom_field", "is_optional_response_field"}
    assert re.fullmatch(r"[0-9a-f]{40}", industry["field_code"]) and industry["is_custom_field"] is True
    assert {"id", "label"} == set(industry["options"][0]) and by_name["Name"]["is_custom_field"] is False
    visible = api.get("/personFields", include_fields="ui_visibility").json()["data"][0]
    assert visible["ui_visibility"]["add_visible_flag"] is True
    assert api.get("/personFields", include_fields="colour").status_code == 400


def test_a_monetary_field_takes_value_and_currency_and_refuses_a_bare_number(api):
    key = make_field(api, "Deal size", "monetary")["field_code"]
    written = write(api, key, {"value": 1200.5, "currency": "EUR"})
    assert written.json()["data"]["custom_fields"][key] == {"value": 1200.5, "currency": "EUR"}
    assert write(api, key, 1200).status_code == 400
    assert write(api, key, {"value": "1200", "currency": "EUR"}).status_code == 400
    assert api.get("/persons/3").json()["data"]["custom_fields"][key] == {"value": 1200.5, "currency": "EUR"}


def test_a_set_field_is_cleared_with_null_and_an_empty_array_is_refused(api):
    made = make_field(api, "Interests", "set", ["Pricing", "Security", "API"])
    key, ids = made["field_code"], [o["id"] for o in made["options"]]
    assert write(api, key, ids[:2]).json()["data"]["custom_fields"][key] == ids[:2]
    refused = write(api, key, [])
    assert refused.status_code == 400 and "null" in refused.json()["error"]
    assert write(api, key, None).json()["data"]["custom_fields"][key] is None
    labelled = api.get("/persons/3", include_option_labels="true")
    assert write(api, key, [ids[2]]).status_code == 200
    assert api.get("/persons/3", include_option_labels="true").json()["data"]["custom_fields"][key] == [
        {"id": ids[2], "label": "API"}] and labelled.status_code == 200


def test_range_and_time_fields_are_objects(api):
    dates, times = make_field(api, "Trial", "daterange")["field_code"], make_field(api, "Call window", "timerange")
    window = {"value": "09:00", "until": "11:30:00", "timezone_name": "Europe/London"}
    assert write(api, dates, {"value": "2025-01-01", "until": "2025-02-01"}).status_code == 200
    assert write(api, dates, "2025-01-01").status_code == 400
    assert write(api, dates, {"value": "2025-03-01", "until": "2025-02-01"}).status_code == 400
    stored = write(api, times["field_code"], window).json()["data"]["custom_fields"][times["field_code"]]
    assert stored == {"value": "09:00:00", "until": "11:30:00", "timezone_name": "Europe/London"}
    assert [s["field_code"] for s in times["subfields"]][:2] == ["value", "until"]


@pytest.mark.parametrize("value", ["1", True, 1.0, [1]])
def test_an_option_field_takes_only_an_option_id_number(company, api, value):
    key = company.vendor.field_key("Lifecycle stage")
    assert write(api, key, value).status_code == 400


def test_numbers_are_never_read_from_strings(company, api):
    assert write(api, company.vendor.field_key("Page views"), "42").status_code == 400
    assert api.patch("/persons/3", {"owner_id": str(company.crm.tenant.owners[1].id)}).status_code == 400


def test_options_are_added_relabelled_and_deleted_in_bulk_all_or_none(api):
    made = make_field(api, "Score band", "enum", ["A", "B"])
    key, (a, b) = made["field_code"], [o["id"] for o in made["options"]]
    added = api.post(f"/personFields/{key}/options", [{"label": "C"}, {"label": "D"}]).json()["data"]
    relabelled = api.session.patch(f"{api.base}/personFields/{key}/options", json=[{"id": a, "label": "A+"}],
                                   timeout=10)
    refused = api.session.delete(f"{api.base}/personFields/{key}/options", json=[{"id": b}, {"id": 999_999}],
                                 timeout=10)
    labels = [o["label"] for o in api.get(f"/personFields/{key}").json()["data"]["options"]]
    assert [o["label"] for o in added] == ["C", "D"] and relabelled.status_code == 200
    assert refused.status_code == 400 and labels == ["A+", "B", "C", "D"]
    assert write(api, key, added[0]["id"]).status_code == 200


def test_a_field_is_renamed_but_keeps_its_code_and_type(api):
    key = make_field(api, "Lead score", "double")["field_code"]
    renamed = api.patch(f"/personFields/{key}", {"field_name": "Lead score (leadpulse)"}).json()["data"]
    assert (renamed["field_code"], renamed["field_name"], renamed["field_type"]) == (key, "Lead score (leadpulse)",
                                                                                    "double")
    assert api.patch(f"/personFields/{key}", {"field_type": "varchar"}).status_code == 400


def test_v1_creates_a_field_and_replaces_its_options_by_put(company):
    sdk = sdk_client(company)
    made = sdk._post(sdk.BASE_URL + "personFields",
                     json={"name": "Tier", "field_type": "enum", "options": [{"label": "Gold"}, {"label": "Silver"}]})
    gold, silver = made["data"]["options"]
    kept = sdk._put(sdk.BASE_URL + f"personFields/{made['data']['id']}",
                    json={"options": [{"id": gold["id"], "label": "Gold"}, {"label": "Bronze"}]})["data"]
    assert re.fullmatch(r"[0-9a-f]{40}", made["data"]["key"])
    assert [o["label"] for o in kept["options"]] == ["Gold", "Bronze"] and silver["id"] not in [
        o["id"] for o in kept["options"]]


def test_a_read_can_name_up_to_fifteen_custom_fields(company, api):
    keys = list(company.vendor.fields.custom)
    two = api.get("/persons/3", custom_fields=",".join(keys[:2])).json()["data"]["custom_fields"]
    assert list(two) == keys[:2]
    assert api.get("/persons", custom_fields=",".join(keys[:16])).status_code == 400
