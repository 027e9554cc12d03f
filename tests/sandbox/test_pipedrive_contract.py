"""The Pipedrive imitation driven through pipedrive-python-lib (v1) and plain requests (v2)."""
import re
import time

import pytest
import requests
from pipedrive.client import Client
from pipedrive.exceptions import TooManyRequestsError, UnauthorizedError

from leadpulse.sandbox import Sandbox
from leadpulse.sandbox.limits import ManualClock
from leadpulse.sandbox.pipedrive import ERROR_INFO, parse_rfc3339, rfc3339
from leadpulse.sandbox.pipedrive_records import Fate
from leadpulse.sandbox.synth import ActivityKind

ANCHOR_MS = parse_rfc3339("2025-06-01T00:00:00Z")
"""A tenant "now" in the past, so anything written during a test is newer than every generated record."""
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
V1_TIME = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$")


class V2:
    """A plain HTTP client for the v2 endpoints, the token in the ``x-api-token`` header."""

    def __init__(self, sb: Sandbox, token: str | None = None):
        self.sb = sb
        self.base = sb.base_url + "/api/v2"
        self.session = requests.Session()
        self.session.headers["x-api-token"] = token or sb.credentials["api_token"]

    def get(self, path: str, **params) -> requests.Response:
        return self.session.get(self.base + path, params=params, timeout=10)

    def patch(self, path: str, body: dict) -> requests.Response:
        return self.session.patch(self.base + path, json=body, timeout=10)

    def post(self, path: str, body: dict) -> requests.Response:
        return self.session.post(self.base + path, json=body, timeout=10)

    def page_all(self, path: str, **params) -> tuple[list[dict], int]:
        """Every item of a cursor-paged list, and how many pages it took."""
        items, cursor, pages = [], None, 0
        while True:
            answer = self.get(path, **params, **({"cursor": cursor} if cursor else {})).json()
            items += answer["data"]
            pages += 1
            cursor = answer["additional_data"]["next_cursor"]
            if cursor is None:
                return items, pages


def listed(sb: Sandbox, indexes=None) -> list[int]:
    """Ids of the persons Pipedrive lists among ``indexes`` (deleted and merged persons are not listed)."""
    return [i + 1 for i in (range(sb.crm.size) if indexes is None else indexes) if not sb.vendor.fates.gone(i)]


def sdk_client(sb: Sandbox) -> Client:
    client = Client(domain=sb.base_url + "/")
    client.set_api_token(sb.credentials["api_token"])
    return client


@pytest.fixture
def sb(sandbox_factory) -> Sandbox:
    return sandbox_factory("pipedrive", contacts=300, seed=7, anchor_ms=ANCHOR_MS)


@pytest.fixture
def sdk(sb) -> Client:
    return sdk_client(sb)


@pytest.fixture
def v2(sb) -> V2:
    return V2(sb)


@pytest.fixture
def limited(sandbox_factory):
    """A sandbox with rate limits on, on a clock that moves only when told to."""
    clock = ManualClock()
    sandbox = sandbox_factory("pipedrive", contacts=50, seed=3, rate_limits=True, clock=clock, anchor_ms=ANCHOR_MS)
    sandbox.clock = clock
    return sandbox


def create_field(sdk: Client, name: str, field_type: str, **extra) -> dict:
    """pipedrive-python-lib has no call for adding a person field: its own request method posts it."""
    return sdk._post(sdk.BASE_URL + "personFields", json={"name": name, "field_type": field_type, **extra})["data"]


# -- paging ---------------------------------------------------------------------------------------------

def test_v2_persons_page_to_the_end_by_cursor(v2):
    persons, pages = v2.page_all("/persons", limit=100)
    assert pages == 3
    assert [p["id"] for p in persons] == listed(v2.sb)


def test_v2_persons_descending_pages_cover_every_person_once(v2):
    persons, _ = v2.page_all("/persons", limit=70, sort_direction="desc")
    assert [p["id"] for p in persons] == listed(v2.sb)[::-1]


def test_v2_activities_page_to_the_end_by_cursor(sb, v2):
    activities, pages = v2.page_all("/activities", limit=500)
    expected = [a.id for i in range(300) if sb.vendor.fates.fate(i) is not Fate.DELETED
                for a in sb.crm.tenant.activities(i) if a.kind is not ActivityKind.NOTE]
    assert pages > 1
    assert [a["id"] for a in activities] == expected


def test_limit_above_500_answers_400_in_pipedrive_shape(v2):
    answer = v2.get("/persons", limit=501)
    assert answer.status_code == 400
    assert answer.json()["success"] is False and "limit" in answer.json()["error"]


def test_foreign_cursor_answers_400(v2):
    assert v2.get("/persons", cursor="not-a-cursor").status_code == 400


# -- updated_since and sort ----------------------------------------------------------------------------------

def test_updated_since_returns_only_persons_changed_since(sb, v2):
    touched = sb.crm.touch(7, seed=1)
    persons, _ = v2.page_all("/persons", updated_since=rfc3339(ANCHOR_MS + 1000), limit=3)
    assert sorted(p["id"] for p in persons) == sorted(int(t) for t in touched)


def test_sort_by_update_time_pages_in_time_order_without_repeats(sb, v2):
    since = ANCHOR_MS - 60 * 86_400_000
    persons, _ = v2.page_all("/persons", updated_since=rfc3339(since), sort_by="update_time", limit=20)
    times = [p["update_time"] for p in persons]
    assert times == sorted(times)
    assert sorted(p["id"] for p in persons) == listed(sb, sb.crm.updated_between(since, 2**62))


def test_sort_by_update_time_descending_starts_with_the_latest_write(sb, v2):
    sb.crm.edit_contact("123", page_views=1)
    persons, _ = v2.page_all("/persons", sort_by="update_time", sort_direction="desc", limit=50)
    times = [p["update_time"] for p in persons]
    assert persons[0]["id"] == 123 and times == sorted(times, reverse=True)
    assert len(persons) == len(listed(sb))


def test_updated_until_excludes_later_changes(sb, v2):
    touched = {int(t) for t in sb.crm.touch(5, seed=2)}
    persons, _ = v2.page_all("/persons", updated_until=rfc3339(ANCHOR_MS + 1000), limit=500)
    assert [p["id"] for p in persons] == [i for i in listed(sb) if i not in touched]


def test_activities_updated_since_returns_only_new_ones(sb, v2):
    sb.crm.add_activity("12", "call", status="completed", direction="outbound", duration_ms=60_000, title="Call")
    activities, _ = v2.page_all("/activities", updated_since=rfc3339(ANCHOR_MS + 1000))
    assert [(a["person_id"], a["type"]) for a in activities] == [(12, "call")]


def test_v2_timestamps_are_rfc3339_and_v1_ones_are_plain_utc(v2, sdk):
    person = v2.get("/persons", limit=1).json()["data"][0]
    assert RFC3339.match(person["add_time"]) and RFC3339.match(person["update_time"])
    assert V1_TIME.match(sdk.users.get_all_users()["data"][0]["created"])


# -- person fields and writes -------------------------------------------------------------------------------

def test_person_fields_list_hash_keys_stable_for_a_seed(sb, sdk, sandbox_factory):
    fields = sdk.persons.get_person_fields()["data"]
    custom = {f["name"]: f["key"] for f in fields if re.fullmatch(r"[0-9a-f]{40}", f["key"])}
    twin = sandbox_factory("pipedrive", contacts=300, seed=7, anchor_ms=ANCHOR_MS)
    twin_fields = sdk_client(twin).persons.get_person_fields()["data"]
    assert {"Job title", "Industry", "Lifecycle stage", "Page views"} <= set(custom)
    assert custom == {f["name"]: f["key"] for f in twin_fields if f["key"] in custom.values()}


def test_created_field_gets_a_40_character_key_and_holds_written_values(sb, sdk, v2):
    field = create_field(sdk, "Lead score", "double")
    answer = v2.patch("/persons/5", {"custom_fields": {field["key"]: 42}})
    assert re.fullmatch(r"[0-9a-f]{40}", field["key"])
    assert answer.json()["data"]["custom_fields"][field["key"]] == 42
    assert sb.crm.contact("5")[field["key"]] == 42


def test_patch_moves_update_time(sb, v2):
    before = v2.get("/persons/8").json()["data"]["update_time"]
    after = v2.patch("/persons/8", {"custom_fields": {sb.vendor.field_key("Page views"): 99}}).json()["data"]
    assert after["update_time"] > before
    assert sb.crm.contact("8")["page_views"] == 99


def test_patching_the_lifecycle_option_changes_the_tenant_lifecycle(sb, sdk, v2):
    field = next(f for f in sdk.persons.get_person_fields()["data"] if f["name"] == "Lifecycle stage")
    mql = next(option["id"] for option in field["options"] if option["label"] == "MQL")
    answer = v2.patch("/persons/3", {"custom_fields": {field["key"]: mql}})
    assert answer.json()["data"]["custom_fields"][field["key"]] == mql
    assert sb.crm.contact("3")["lifecycle"] == "mql"


def test_patch_fails_for_one_chosen_person_while_others_succeed(sb, v2):
    key = sb.vendor.field_key("Email opens")
    sb.faults.fail_records(["7"], status=400, message="Validation failed for person 7")
    answers = {pid: v2.patch(f"/persons/{pid}", {"custom_fields": {key: 1234}}) for pid in (5, 7, 9)}
    assert {pid: a.status_code for pid, a in answers.items()} == {5: 200, 7: 400, 9: 200}
    assert answers[7].json() == {"success": False, "error": "Validation failed for person 7", "data": None,
                                 "error_info": ERROR_INFO, "additional_data": None}
    assert [sb.crm.contact(pid)["email_opens"] == 1234 for pid in ("5", "7", "9")] == [True, False, True]


def test_patch_with_an_unknown_custom_field_answers_400_and_writes_nothing(sb, v2):
    before = sb.crm.contact("4")
    answer = v2.patch("/persons/4", {"custom_fields": {"f" * 40: 1}})
    assert answer.status_code == 400 and "f" * 40 in answer.json()["error"]
    assert sb.crm.contact("4") == before


def test_patch_with_an_unknown_option_id_answers_400(sb, v2):
    answer = v2.patch("/persons/4", {"custom_fields": {sb.vendor.field_key("Industry"): 1}})
    assert answer.status_code == 400 and "Industry" in answer.json()["error"]


def test_unknown_person_answers_404_in_pipedrive_shape(v2):
    answer = v2.patch("/persons/9999", {"name": "Nobody"})
    assert answer.status_code == 404 and answer.json()["error"] == "Person not found"


def test_injected_server_error_answers_in_pipedrive_shape(sb, v2):
    sb.faults.fail_next("persons.list", status=503)
    answer = v2.get("/persons")
    assert answer.status_code == 503 and answer.json()["success"] is False
    assert v2.get("/persons").status_code == 200


# -- activities ---------------------------------------------------------------------------------------------------

def test_activity_types_are_the_six_defaults(sdk):
    types = sdk._get(sdk.BASE_URL + "activityTypes")["data"]
    assert [t["key_string"] for t in types] == ["call", "meeting", "task", "deadline", "email", "lunch"]


def test_created_task_is_stored_and_listed_for_its_person(sb, v2):
    owner = sb.crm.tenant.owners[2].id
    body = {"subject": "Call back: score 81 [lp:abc123]", "type": "task", "due_date": "2025-06-03",
            "due_time": "09:30", "owner_id": owner, "participants": [{"person_id": 11, "primary": True}],
            "done": False, "note": "Entered band A"}
    created = v2.post("/activities", body).json()["data"]
    listed = v2.get("/activities", person_id=11, done="false").json()["data"]
    assert (created["due_date"], created["due_time"], created["owner_id"]) == ("2025-06-03", "09:30:00", owner)
    assert sb.crm.tasks()[-1].attributes["subject"] == body["subject"]
    assert created["id"] in [a["id"] for a in listed]


def test_activity_with_an_unknown_type_answers_400(v2):
    answer = v2.post("/activities", {"type": "carrier_pigeon", "participants": [{"person_id": 1, "primary": True}]})
    assert answer.status_code == 400 and "carrier_pigeon" in answer.json()["error"]


# -- users ------------------------------------------------------------------------------------------------------

def test_users_are_the_owners_of_persons(sdk, v2):
    users = {u["id"] for u in sdk.users.get_all_users()["data"]}
    owners = {p["owner_id"] for p in v2.get("/persons", limit=500).json()["data"]}
    assert owners <= users and sdk.users.get_me()["data"]["is_you"] is True


# -- authentication ----------------------------------------------------------------------------------------------

def test_token_in_the_query_is_accepted_by_v2(sb):
    query = {"api_token": sb.credentials["api_token"]}
    answer = requests.get(sb.base_url + "/api/v2/persons", params=query, timeout=10)
    assert answer.status_code == 200


def test_oauth_code_exchange_gives_a_bearer_token_for_v1_and_v2(sb):
    client = Client(sb.credentials["client_id"], sb.credentials["client_secret"], domain=sb.base_url + "/")
    client.OAUTH_BASE_URL = sb.base_url + "/oauth/"
    grant = client.exchange_code("http://localhost/callback", "code-123")
    client.set_access_token(grant["access_token"])
    bearer = {"Authorization": f"Bearer {grant['access_token']}"}
    assert grant["token_type"] == "Bearer" and client.persons.get_person_fields()["success"]
    assert requests.get(sb.base_url + "/api/v2/persons", headers=bearer, timeout=10).status_code == 200


def test_wrong_token_answers_401_and_the_sdk_raises(sb):
    client = Client(domain=sb.base_url + "/")
    client.set_api_token("not-a-token")
    with pytest.raises(UnauthorizedError) as refused:
        client.users.get_all_users()
    assert refused.value.response.status_code == 401
    assert refused.value.response.json()["errorCode"] == 401 and refused.value.args[0] == "unauthorized access"


def test_expired_oauth_token_is_replaced_by_a_refresh(sb):
    client = Client(sb.credentials["client_id"], sb.credentials["client_secret"], domain=sb.base_url + "/")
    client.OAUTH_BASE_URL = sb.base_url + "/oauth/"
    grant = client.exchange_code("http://localhost/callback", "code-1")
    client.set_access_token(grant["access_token"])
    sb.faults.expire_token_after(0)
    with pytest.raises(UnauthorizedError):
        client.users.get_me()
    client.set_access_token(client.refresh_token(grant["refresh_token"])["access_token"])
    assert client.users.get_me()["success"]


# -- rate limits -------------------------------------------------------------------------------------------------------

def test_every_limited_answer_carries_the_burst_and_daily_headers(limited):
    answer = V2(limited).get("/persons", limit=1)
    assert {k: answer.headers[k] for k in ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset",
                                           "x-daily-requests-left")} == {
        "x-ratelimit-limit": "20", "x-ratelimit-remaining": "19", "x-ratelimit-reset": "2",
        "x-daily-requests-left": "10000"}


def test_daily_requests_left_counts_writes_only(limited):
    client = V2(limited)
    client.get("/persons", limit=1)
    answer = client.patch("/persons/1", {"name": "Ada Lovelace"})
    assert answer.headers["x-daily-requests-left"] == "9999"


def test_burst_over_limit_answers_429_with_its_headers_then_frees(limited):
    client = sdk_client(limited)
    for _ in range(20):
        client.users.get_me()
    with pytest.raises(TooManyRequestsError) as refused:
        client.users.get_me()
    response = refused.value.response
    assert response.status_code == 429 and response.json()["errorCode"] == 429
    assert (response.headers["x-ratelimit-limit"], response.headers["x-ratelimit-remaining"]) == ("20", "0")
    assert limited.stats.throttled == 1
    limited.clock.advance(2.01)
    assert client.users.get_me()["success"]


def test_client_that_keeps_calling_after_429s_gets_the_403_html_page(limited):
    client = sdk_client(limited)
    for _ in range(20):
        client.users.get_me()
    for _ in range(limited.vendor.hammer_refusals):
        with pytest.raises(TooManyRequestsError):
            client.users.get_me()
    page = client.users.get_me()  # the SDK hands a non-JSON body back as a string, without raising
    limited.clock.advance(2.01)
    still_blocked = V2(limited).get("/persons")
    assert isinstance(page, str) and "Cloudflare" in page
    assert still_blocked.status_code == 403 and still_blocked.headers["Content-Type"].startswith("text/html")
    limited.clock.advance(limited.vendor.block_seconds)
    assert client.users.get_me()["success"]


def test_oauth_clients_are_not_blocked_by_the_edge(limited):
    client = V2(limited)
    client.session.headers.pop("x-api-token")
    client.session.headers["Authorization"] = f"Bearer {limited.credentials['access_token']}"
    statuses = [client.get("/persons", limit=1).status_code for _ in range(100)]
    assert statuses == [200] * 80 + [429] * 20  # OAuth apps' own burst on Lite: 80 requests per 2 s, never the 403


def test_daily_token_budget_charges_each_route_its_cost(limited):
    limited.limits.tune("DAILY", limit=25)  # two v2 lists (10 tokens each) fit, a third does not
    client = V2(limited)
    statuses = [client.get("/persons", limit=1).status_code for _ in range(3)]
    cheap = client.get("/persons/1")  # 1 token still fits in what is left
    assert statuses == [200, 200, 429] and cheap.status_code == 200
    assert client.get("/persons", limit=1).headers["x-ratelimit-remaining"] != "0"


# -- scale ------------------------------------------------------------------------------------------------------------

def test_first_pages_of_a_million_person_tenant_come_without_indexing(sandbox_factory):
    big = sandbox_factory("pipedrive", contacts=1_000_000, seed=11, anchor_ms=ANCHOR_MS)
    client = V2(big)
    started = time.perf_counter()
    first = client.get("/persons", limit=500).json()
    second = client.get("/persons", limit=500, cursor=first["additional_data"]["next_cursor"]).json()
    assert time.perf_counter() - started < 2.0
    assert [p["id"] for p in first["data"] + second["data"]] == listed(big, range(1100))[:1000]
