"""The Pipedrive imitation's daily token budget, burst windows and authentication, as Pipedrive documents them."""
import pytest
import requests
from pipedrive.client import Client
from test_pipedrive_contract import ANCHOR_MS, V2, sdk_client

from leadpulse.sandbox import Sandbox
from leadpulse.sandbox.limits import ManualClock
from leadpulse.sandbox.pipedrive import Pipedrive


@pytest.fixture
def company(sandbox_factory) -> Sandbox:
    """Rate limits on, on a clock that moves only when told to."""
    clock = ManualClock()
    sandbox = sandbox_factory("pipedrive", contacts=50, seed=3, rate_limits=True, clock=clock, anchor_ms=ANCHOR_MS)
    sandbox.clock = clock
    return sandbox


def oauth(sb: Sandbox) -> V2:
    client = V2(sb)
    client.session.headers.pop("x-api-token")
    client.session.headers["Authorization"] = f"Bearer {sb.credentials['access_token']}"
    return client


def budget_left(answer: requests.Response) -> int:
    return int(answer.headers["x-daily-ratelimit-token-remaining"])


def test_each_call_costs_the_tokens_pipedrive_publishes_for_it(company):
    client, sdk = V2(company), sdk_client(company)
    start = budget_left(client.get("/persons/2"))  # 1
    spent = [start - budget_left(answer) for answer in (
        client.get("/persons", limit=500),  # v2 list: 10
        client.patch("/persons/2", {"name": "Ada Lovelace"}),  # v2 update: 5
        client.get("/activities"),  # 10
        client.get("/personFields"),  # v2 fields list: 10
        requests.get(company.base_url + "/v1/personFields", params={"api_token": company.credentials["api_token"]},
                     timeout=10),  # v1 list: 20
    )]
    assert start == 30_000 - 1
    assert spent == [10, 15, 25, 35, 55]
    assert sdk.users.get_me()["success"] and company.limits.usage("DAILY").used == 1 + 55 + 2  # v1 users/me: 2


def test_the_budget_is_base_times_plan_multiplier_times_seats(sandbox_factory):
    class ThreeSeats(Pipedrive):
        seats = 3

    sb = sandbox_factory(ThreeSeats, contacts=10, tier="premium", rate_limits=True, clock=ManualClock())
    answer = V2(sb).get("/persons", limit=1)
    assert answer.headers["x-daily-ratelimit-token-limit"] == str(30_000 * 5 * 3)
    assert answer.headers["x-ratelimit-limit"] == "100"  # Premium, API token


def test_a_spent_budget_refuses_every_call_until_midnight_not_for_a_rolling_day(company):
    client = V2(company)
    company.clock.advance(company.vendor.budget_resets_in() - 1)  # a second before the server's midnight
    company.limits.tune("DAILY", limit=20)
    assert [client.get("/persons").status_code for _ in range(2)] == [200, 200]
    refused = client.get("/persons/2")  # one token, and none is left
    company.clock.advance(2)  # past midnight: a rolling day would still hold all 20 tokens spent a second ago
    renewed = client.get("/persons/2")
    assert refused.status_code == 429 and refused.json()["errorCode"] == 429
    assert budget_left(refused) == 0 and int(refused.headers["x-ratelimit-remaining"]) > 0
    assert renewed.status_code == 200 and budget_left(renewed) == 19
    assert company.vendor.budget_resets_in() == pytest.approx(86_400 - 1)


def test_a_burst_429_and_a_spent_budget_429_differ_only_in_their_headers(company):
    client = V2(company)
    burst = [client.get("/persons/2") for _ in range(21)][-1]
    company.clock.advance(2.01)
    company.limits.tune("DAILY", limit=0)
    spent = client.get("/persons/2")
    assert burst.status_code == spent.status_code == 429 and burst.json() == spent.json()
    assert "Retry-After" not in burst.headers and "Retry-After" not in spent.headers
    assert (burst.headers["x-ratelimit-remaining"], budget_left(burst) > 0) == ("0", True)
    assert (int(spent.headers["x-ratelimit-remaining"]) > 0, budget_left(spent)) == (True, 0)


def test_oauth_apps_have_their_own_burst_window_and_no_daily_requests_left(company):
    app, token = oauth(company), V2(company)
    answer = app.get("/persons", limit=1)
    for _ in range(19):
        token.get("/persons/2")
    assert (answer.headers["x-ratelimit-limit"], answer.headers["x-ratelimit-remaining"]) == ("80", "79")
    assert "x-daily-requests-left" not in answer.headers
    assert token.get("/persons/2").headers["x-ratelimit-remaining"] == "0"  # the API token's 20 are spent
    assert app.get("/persons/2").headers["x-ratelimit-remaining"] == "78"  # the app's 80 are its own


def test_both_kinds_of_token_draw_on_one_company_budget(company):
    V2(company).get("/persons")
    answer = oauth(company).get("/persons")
    assert budget_left(answer) == 30_000 - 20


def test_an_api_token_sent_as_a_bearer_is_refused(company):
    bearer = {"Authorization": f"Bearer {company.credentials['api_token']}"}
    as_api_token = {"x-api-token": company.credentials["access_token"]}
    assert requests.get(company.base_url + "/api/v2/persons", headers=bearer, timeout=10).status_code == 401
    assert requests.get(company.base_url + "/api/v2/persons", headers=as_api_token, timeout=10).status_code == 401


def test_the_oauth_api_domain_is_a_base_url_the_sdk_and_v2_calls_can_use(company):
    client = Client(company.credentials["client_id"], company.credentials["client_secret"])
    client.OAUTH_BASE_URL = company.base_url + "/oauth/"
    grant = client.exchange_code("http://localhost/callback", "code-9")
    app = Client(domain=grant["api_domain"])
    app.set_access_token(grant["access_token"])
    v2 = requests.get(grant["api_domain"] + "/api/v2/persons", timeout=10,
                      headers={"Authorization": f"Bearer {grant['access_token']}"})
    assert grant["api_domain"] == company.base_url
    assert app.users.get_me()["success"] and v2.status_code == 200


def test_the_sdk_reaches_v1_under_the_api_prefix_too(company):
    client = Client(domain=company.base_url + "/api/")
    client.set_api_token(company.credentials["api_token"])
    assert client.BASE_URL.endswith("/api/v1/") and client.persons.get_person_fields()["success"]
    assert requests.get(company.base_url + "/api/v2/personFields", timeout=10,
                        params={"api_token": company.credentials["api_token"]}).status_code == 200
    assert requests.get(company.base_url + "/v2/persons", timeout=10,
                        params={"api_token": company.credentials["api_token"]}).status_code == 404
