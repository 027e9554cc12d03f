"""Persons deleted and merged while a sync runs, and the v1 recents feed that shows a client they went."""
import pytest
import requests
from pipedrive.client import Client
from pipedrive.exceptions import BadRequestError
from test_pipedrive_contract import ANCHOR_MS, RFC3339, V1_TIME, V2, sdk_client

from leadpulse.sandbox import Sandbox
from leadpulse.sandbox.limits import ManualClock
from leadpulse.sandbox.pipedrive import rfc3339
from leadpulse.sandbox.pipedrive_changes import OverLimit
from leadpulse.sandbox.pipedrive_records import Fate
from leadpulse.sandbox.pipedrive_wire import parse_v1_time, v1_time
from leadpulse.sandbox.synth import DAY_MS, ActivityKind


@pytest.fixture
def company(sandbox_factory) -> Sandbox:
    return sandbox_factory("pipedrive", contacts=300, seed=5, anchor_ms=ANCHOR_MS)


@pytest.fixture
def api(company) -> V2:
    return V2(company)


@pytest.fixture
def sdk(company) -> Client:
    return sdk_client(company)


def kept_with_activities(sb: Sandbox, count: int) -> list[int]:
    """Ids of the first ``count`` kept persons who have a few activities and nobody merged into them."""
    fates = sb.vendor.fates
    return [i + 1 for i in range(sb.crm.size) if fates.fate(i) is Fate.KEPT and not fates.merged_into(i)
            and sum(a.kind is not ActivityKind.NOTE for a in sb.crm.tenant.activities(i)) > 2][:count]


def activity_ids(sb: Sandbox, person_id: int) -> set[int]:
    return {a.id for a in sb.crm.tenant.activities(person_id - 1) if a.kind is not ActivityKind.NOTE}


def kept(sb: Sandbox) -> list[int]:
    return [i + 1 for i in range(sb.crm.size) if not sb.vendor.fates.gone(i)]


def write_to(sb: Sandbox, person_ids: list[int]) -> None:
    """Change each person as a user would (a page view), one after the other."""
    for person in person_ids:
        sb.crm.edit_contact(str(person), page_views=sb.crm.contact(str(person))["page_views"] + 1)


def delete(api: V2, person_id: int) -> requests.Response:
    return api.session.delete(f"{api.base}/persons/{person_id}", timeout=10)


def merge(sb: Sandbox, person_id: int, body: object) -> requests.Response:
    return requests.put(f"{sb.base_url}/v1/persons/{person_id}/merge", json=body,
                        params={"api_token": sb.credentials["api_token"]}, timeout=10)


def since(ms: int) -> str:
    """A since_timestamp a second before ``ms``, so the change at ``ms`` is in it."""
    stamp = v1_time(ms - 1000)
    assert stamp is not None
    return stamp


def recents(sdk: Client, **params) -> dict:
    return sdk.recents.get_recent_changes(params=params)


def every_recent(sdk: Client, **params) -> tuple[list[dict], int]:
    """Every item of a recents read paged by next_start, and how many pages it took."""
    items, start, pages = [], 0, 0
    while True:
        answer = recents(sdk, **params, start=start)
        items += answer["data"]
        pages += 1
        pagination = answer["additional_data"]["pagination"]
        if not pagination["more_items_in_collection"]:
            return items, pages
        start = pagination["next_start"]


# -- deletion ----------------------------------------------------------------------------------------------

def test_a_person_deleted_through_the_api_leaves_the_v2_list_and_reads_as_deleted(company, api):
    person = kept_with_activities(company, 1)[0]
    answer = delete(api, person)
    read = api.get(f"/persons/{person}").json()["data"]
    assert answer.status_code == 200 and answer.json() == {"success": True, "data": {"id": person}}
    assert person not in [p["id"] for p in api.page_all("/persons", limit=500)[0]]
    assert read["is_deleted"] is True and read["update_time"] > rfc3339(ANCHOR_MS)
    assert read["update_time"] == rfc3339(company.vendor.fates.gone_ms(person - 1))
    assert api.patch(f"/persons/{person}", {"name": "Back Again"}).status_code == 404


def test_a_deleted_persons_activities_and_deal_are_deleted_with_them(company, api):
    deal = next(d for d in api.get("/deals", status="open,won", limit=500).json()["data"]
                if len(activity_ids(company, d["person_id"])) > 2)
    person = deal["person_id"]
    theirs = sorted(activity_ids(company, person))
    company.vendor.delete_person(str(person))
    assert theirs and api.get("/activities", person_id=person).json()["data"] == []
    assert all(api.get(f"/activities/{i}").json()["data"]["is_deleted"] for i in theirs[:3])
    assert set(theirs).isdisjoint(a["id"] for a in api.page_all("/activities", limit=500)[0])
    assert api.get(f"/deals/{deal['id']}").json()["data"]["is_deleted"] is True
    assert deal["id"] in [d["id"] for d in api.get("/deals", status="deleted", limit=500).json()["data"]]


def test_deleting_an_unknown_or_already_deleted_person_answers_404(company, api):
    person = kept_with_activities(company, 1)[0]
    drawn = next(i + 1 for i in range(company.crm.size) if company.vendor.fates.fate(i) is Fate.DELETED)
    assert delete(api, person).status_code == 200
    assert [delete(api, p).status_code for p in (person, drawn, 9999)] == [404, 404, 404]
    assert delete(api, person).json()["error"] == "Person not found"


def test_a_deletion_costs_3_tokens_and_is_no_post_or_put(sandbox_factory):
    sb = sandbox_factory("pipedrive", contacts=50, seed=3, rate_limits=True, clock=ManualClock(), anchor_ms=ANCHOR_MS)
    client = V2(sb)
    before = client.get("/persons/2")
    after = delete(client, kept(sb)[0])
    assert after.status_code == 200
    assert int(before.headers["x-daily-ratelimit-token-remaining"]) - 3 == \
        int(after.headers["x-daily-ratelimit-token-remaining"])
    assert after.headers["x-daily-requests-left"] == before.headers["x-daily-requests-left"]


def test_a_deletion_shows_in_recents_as_an_inactive_person(company, api, sdk):
    person = kept_with_activities(company, 1)[0]
    deleted_ms = company.vendor.delete_person(str(person))
    found = [item for item in recents(sdk, since_timestamp=since(deleted_ms), items="person")["data"]
             if item["id"] == person]
    assert len(found) == 1 and found[0]["item"] == "person"
    assert found[0]["data"]["active_flag"] is False and found[0]["data"]["update_time"] == v1_time(deleted_ms)


# -- merge ---------------------------------------------------------------------------------------------------

def test_a_merge_answers_with_the_survivor_and_the_id_merged_away(company, api):
    gone, survivor = kept_with_activities(company, 2)
    answer = merge(company, gone, {"merge_with_id": survivor})
    data = answer.json()["data"]
    assert answer.status_code == 200 and answer.json()["success"] is True
    assert (data["id"], data["merge_what_id"], data["active_flag"]) == (survivor, gone, True)
    assert data["update_time"] == v1_time(company.crm.updated_ms(survivor - 1))
    assert api.get(f"/persons/{gone}").json()["data"]["is_deleted"] is True
    assert gone not in [p["id"] for p in api.page_all("/persons", limit=500)[0]]
    assert company.vendor.fates.fate(gone - 1) is Fate.MERGED and company.vendor.fates.survivor(gone - 1) == survivor - 1


def test_a_merge_moves_the_activities_to_the_survivor_and_lists_them_again_after_it(company, api):
    gone, survivor = kept_with_activities(company, 2)
    theirs = activity_ids(company, gone)
    merged_ms = company.vendor.merge_persons(str(gone), str(survivor))
    after = {a["id"]: a for a in api.page_all("/activities", updated_since=rfc3339(merged_ms), limit=500)[0]}
    mine = {a["id"] for a in api.page_all("/activities", person_id=survivor, limit=500)[0]}
    assert theirs and set(after) == theirs
    assert {a["person_id"] for a in after.values()} == {survivor}
    assert {a["update_time"] for a in after.values()} == {rfc3339(merged_ms)}
    assert theirs | activity_ids(company, survivor) <= mine
    assert api.get(f"/persons/{survivor}").json()["data"]["update_time"] == rfc3339(merged_ms)


def test_a_merged_persons_deal_belongs_to_the_survivor_and_is_listed_again(company, api):
    deal = api.get("/deals", status="open,won", limit=500).json()["data"][0]
    survivor = next(p for p in kept_with_activities(company, 10) if p != deal["person_id"])
    merged_ms = company.vendor.merge_persons(str(deal["person_id"]), str(survivor))
    after = api.get("/deals", updated_since=rfc3339(merged_ms), status="open,won", limit=500).json()["data"]
    assert [(d["id"], d["person_id"]) for d in after] == [(deal["id"], survivor)]


def test_a_merge_keeps_the_survivors_values_and_fills_only_its_empty_fields(company, api, sdk):
    gone, survivor = kept_with_activities(company, 2)
    made = {name: sdk._post(sdk.BASE_URL + "personFields", json={"name": name, "field_type": "double"})["data"]["key"]
            for name in ("Lead score", "Lead fit")}
    api.patch(f"/persons/{gone}", {"custom_fields": {made["Lead score"]: 10, made["Lead fit"]: 20}})
    api.patch(f"/persons/{survivor}", {"custom_fields": {made["Lead score"]: 90}})
    data = merge(company, gone, {"merge_with_id": survivor}).json()["data"]
    assert (data[made["Lead score"]], data[made["Lead fit"]]) == (90, 20)


@pytest.mark.parametrize(("path_id", "body", "status", "word"), [
    ("gone", {"merge_with_id": "self"}, 400, "itself"),
    ("gone", {"merge_with_id": "drawn"}, 400, "merge_with_id"),
    ("gone", {"merge_with_id": 9999}, 400, "merge_with_id"),
    ("gone", {}, 400, "merge_with_id"),
    ("gone", {"merge_with_id": True}, 400, "merge_with_id"),
    ("drawn", {"merge_with_id": "survivor"}, 404, "Person not found"),
    ("9999", {"merge_with_id": "survivor"}, 404, "Person not found"),
])
def test_a_merge_that_cannot_be_done_is_refused_and_changes_nothing(company, path_id, body, status, word):
    gone, survivor = kept_with_activities(company, 2)
    drawn = next(i + 1 for i in range(company.crm.size) if company.vendor.fates.fate(i) is Fate.DELETED)
    named = {"gone": gone, "survivor": survivor, "drawn": drawn, "self": gone}
    target = body.get("merge_with_id")
    answer = merge(company, named.get(path_id, path_id), {"merge_with_id": named.get(target, target)} if body else {})
    assert answer.status_code == status and word in answer.json()["error"]
    assert not company.vendor.fates.gone(gone - 1) and not company.vendor.fates.gone(survivor - 1)


def test_a_merge_counts_as_a_put_and_costs_40_tokens(sandbox_factory):
    sb = sandbox_factory("pipedrive", contacts=50, seed=3, rate_limits=True, clock=ManualClock(), anchor_ms=ANCHOR_MS)
    before = V2(sb).get("/persons/2")
    after = merge(sb, kept(sb)[0], {"merge_with_id": kept(sb)[1]})
    assert after.status_code == 200
    assert int(before.headers["x-daily-ratelimit-token-remaining"]) - 40 == \
        int(after.headers["x-daily-ratelimit-token-remaining"])
    assert int(after.headers["x-daily-requests-left"]) == int(before.headers["x-daily-requests-left"]) - 1


def test_a_merge_shows_in_recents_for_the_person_merged_away_and_the_survivor(company, sdk):
    gone, survivor = kept_with_activities(company, 2)
    merged_ms = company.vendor.merge_persons(str(gone), str(survivor))
    found = {item["id"]: item["data"] for item in recents(sdk, since_timestamp=since(merged_ms))["data"]}
    assert set(found) == {gone, survivor}
    assert (found[gone]["active_flag"], found[survivor]["active_flag"]) == (False, True)
    assert found[survivor]["update_time"] == v1_time(merged_ms)


# -- recents ---------------------------------------------------------------------------------------------------

def test_recents_pages_by_next_start_and_visits_each_change_once_in_time_order(company, sdk):
    start_ms = company.crm.clock_ms()
    written, (deleted, gone, survivor) = kept(company)[10:19], kept_with_activities(company, 3)
    write_to(company, written)
    company.vendor.delete_person(str(deleted))
    company.vendor.merge_persons(str(gone), str(survivor))
    items, pages = every_recent(sdk, since_timestamp=since(start_ms), items="person", limit=4)
    ids, times = [item["id"] for item in items], [item["data"]["update_time"] for item in items]
    assert pages == 3 and len(ids) == len(set(ids)) == 12
    assert set(ids) == {*written, deleted, gone, survivor} and times == sorted(times)


def test_recents_names_the_last_time_on_each_page(company, sdk):
    start_ms = company.crm.clock_ms()
    write_to(company, kept(company)[:5])
    first = recents(sdk, since_timestamp=since(start_ms), limit=2)
    rest = recents(sdk, since_timestamp=since(start_ms), start=4)
    empty = recents(sdk, since_timestamp=since(start_ms), start=5)
    assert first["additional_data"]["last_timestamp_on_page"] == first["data"][-1]["data"]["update_time"]
    assert first["additional_data"]["pagination"] == {"start": 0, "limit": 2, "more_items_in_collection": True,
                                                      "next_start": 2}
    assert rest["additional_data"]["pagination"] == {"start": 4, "limit": 100, "more_items_in_collection": False}
    assert empty["data"] == [] and empty["additional_data"]["last_timestamp_on_page"] is None


def test_recents_gives_each_person_in_the_v1_shape(company, api, sdk):
    start_ms = company.crm.clock_ms()
    person = kept(company)[3]
    write_to(company, [person])
    item = recents(sdk, since_timestamp=since(start_ms))["data"][0]
    shown, v2 = item["data"], api.get(f"/persons/{person}").json()["data"]
    industry, views = company.vendor.field_key("Industry"), company.vendor.field_key("Page views")
    assert (item["item"], item["id"], shown["id"]) == ("person", person, person)
    assert {k: shown[k] for k in ("name", "owner_id", "org_id", "label_ids")} == {
        k: v2[k] for k in ("name", "owner_id", "org_id", "label_ids")}
    assert shown["email"] == v2["emails"] and shown["phone"] == v2["phones"] and shown["visible_to"] == "3"
    assert V1_TIME.match(shown["add_time"]) and V1_TIME.match(shown["update_time"]) and shown["active_flag"] is True
    assert shown[industry] == str(v2["custom_fields"][industry]) and shown[views] == v2["custom_fields"][views]
    assert "custom_fields" not in shown and "emails" not in shown and RFC3339.match(v2["update_time"])


def test_a_set_and_a_monetary_field_read_in_v1_form(company, api, sdk):
    tags = sdk._post(sdk.BASE_URL + "personFields", json={"name": "Tags", "field_type": "set", "options": [
        {"label": "Hot"}, {"label": "Partner"}]})["data"]
    budget = sdk._post(sdk.BASE_URL + "personFields", json={"name": "Budget", "field_type": "monetary"})["data"]
    options = [o["id"] for o in tags["options"]]
    start_ms, person = company.crm.clock_ms(), kept(company)[0]
    api.patch(f"/persons/{person}", {"custom_fields": {tags["key"]: options, budget["key"]: {"value": 1200, "currency": "EUR"}}})
    shown = recents(sdk, since_timestamp=since(start_ms))["data"][0]["data"]
    assert shown[tags["key"]] == ",".join(map(str, options))
    assert (shown[budget["key"]], shown[f"{budget['key']}_currency"]) == (1200, "EUR")


@pytest.mark.parametrize(("params", "word"), [
    ({}, "since_timestamp"),
    ({"since_timestamp": "2025-06-01T00:00:00Z"}, "since_timestamp"),
    ({"since_timestamp": "2025-6-1 0:00:00"}, "since_timestamp"),
    ({"since_timestamp": "yesterday"}, "since_timestamp"),
    ({"since_timestamp": "2025-06-01 00:00:00", "items": "deal"}, "deal"),
    ({"since_timestamp": "2025-06-01 00:00:00", "items": "person,activity"}, "activity"),
    ({"since_timestamp": "2025-06-01 00:00:00", "items": "widget"}, "widget"),
    ({"since_timestamp": "2025-06-01 00:00:00", "limit": 501}, "limit"),
    ({"since_timestamp": "2025-06-01 00:00:00", "limit": 0}, "limit"),
    ({"since_timestamp": "2025-06-01 00:00:00", "start": -1}, "start"),
    ({"since_timestamp": "2025-06-01 00:00:00", "until_timestamp": "2025-07-01 00:00:00"}, "until_timestamp"),
])
def test_recents_refuses_a_bad_parameter_with_400_naming_it(sdk, params, word):
    with pytest.raises(BadRequestError) as refused:
        recents(sdk, **params)
    assert refused.value.response.status_code == 400 and word in refused.value.args[0]


def test_recents_serves_500_for_a_larger_limit_when_set_to_cap(company, sdk, monkeypatch):
    monkeypatch.setattr(company.vendor, "recents_over_limit", OverLimit.CAP)
    answer = recents(sdk, since_timestamp="2025-06-01 00:00:00", limit=900)
    assert answer["additional_data"]["pagination"]["limit"] == 500


def test_recents_older_than_30_days_serves_the_last_30_days_with_the_persons_gone_in_them(sandbox_factory):
    sb = sandbox_factory("pipedrive", contacts=400, seed=4)  # anchored today: the last month holds drawn fates
    fates, sdk = sb.vendor.fates, sdk_client(sb)
    items, _ = every_recent(sdk, since_timestamp="2000-01-01 00:00:00", limit=500)
    served = parse_v1_time(recents(sdk, since_timestamp="2000-01-01 00:00:00", limit=1)["additional_data"][
        "since_timestamp"])
    changed = {i + 1: fates.gone_ms(i) if fates.gone(i) else sb.crm.updated_ms(i) for i in range(sb.crm.size)}
    inactive = {item["id"] for item in items if not item["data"]["active_flag"]}
    assert abs(sb.crm.clock_ms() - 30 * DAY_MS - served) < 5_000
    assert [item["id"] for item in items] == sorted((i for i in changed if changed[i] >= served),
                                                    key=lambda i: (changed[i], i))
    assert any(fates.fate(i - 1) is Fate.DELETED for i in inactive)
    assert any(fates.fate(i - 1) is Fate.MERGED for i in inactive)
    assert inactive == {item["id"] for item in items if fates.gone(item["id"] - 1)}
