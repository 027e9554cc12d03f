"""A Pipedrive OAuth app that keeps its own access token fresh: asked for with the app's refresh token before the
first call, and again when Pipedrive refuses an expired one."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from urllib.parse import parse_qs

import pytest
import responses

from leadpulse.connectors import pipedrive_api
from leadpulse.connectors.pipedrive import PipedriveConnector
from leadpulse.connectors.pipedrive_api import OAuthRefresh, PipedriveClient
from leadpulse.connectors.settings import PipedriveSettings
from leadpulse.core.clock import ManualClock
from leadpulse.core.contract import ConnectorContext
from leadpulse.core.errors import AuthError
from leadpulse.sandbox import Sandbox


@pytest.fixture
def company(sandbox_factory) -> Sandbox:
    return sandbox_factory("pipedrive", contacts=120, seed=5)


def app(sb: Sandbox, refresh_token: str | None = None) -> PipedriveConnector:
    settings = PipedriveSettings(base_url=sb.base_url, auth="oauth", client_id=sb.credentials["client_id"],
                                 oauth_url=sb.base_url, lookback_seconds=0)
    secrets = {"refresh_token": refresh_token or sb.credentials["refresh_token"],
               "client_secret": sb.credentials["client_secret"]}
    return PipedriveConnector(ConnectorContext("acme", settings, secrets, field_map={"title": "Job title"},
                                               clock=ManualClock(datetime.now(UTC))))


def persons(connector: PipedriveConnector) -> list[str]:
    pages = connector.pull("persons", None, started_at=datetime.now(UTC))
    return [contact.id for page in pages for contact in page.contacts]


def live(sb: Sandbox) -> list[str]:
    return [sb.crm.id_of(index) for index in range(sb.crm.size) if not sb.vendor.fates.gone(index)]


def test_an_oauth_app_asks_for_an_access_token_once_before_its_first_call(company):
    assert sorted(persons(app(company)), key=int) == live(company)
    assert company.stats.count("oauth.token") == 1


def test_an_access_token_that_expires_mid_read_is_renewed_and_the_read_goes_on(company):
    connector = app(company)
    connector.owners()  # the token in hand works
    company.faults.expire_token_after(0)  # an hour later: every token issued so far is refused
    assert sorted(persons(connector), key=int) == live(company)
    assert company.stats.count("oauth.token") == 2
    assert company.stats.count(status=401) == 1  # the first call after the expiry, and no other


def test_a_refused_refresh_token_stops_the_run_naming_the_secrets_to_check_and_calls_no_api(company):
    with pytest.raises(AuthError, match=r"'acme'.*refused a new access token \(400\).*crm.secrets.client_secret "
                                        r"and refresh_token"):
        persons(app(company, refresh_token="never-issued"))
    assert company.stats.count("persons.list") == 0 and company.stats.count("v1.users.list") == 0


@responses.activate
def test_a_refresh_token_handed_back_anew_is_the_one_the_next_run_in_the_process_sends():
    sent: list[str] = []

    def grant(request):
        form = parse_qs(request.body)
        sent.append(form["refresh_token"][0])
        return 200, {"Content-Type": "application/json"}, json.dumps(
            {"access_token": f"access-{len(sent)}", "refresh_token": f"rotated-{len(sent)}", "expires_in": 3599,
             "token_type": "Bearer", "api_domain": "https://acme.pipedrive.com"})

    responses.add_callback(responses.POST, "https://oauth.pipedrive.com/oauth/token", callback=grant)
    settings = PipedriveSettings(base_url="https://acme.pipedrive.com", auth="oauth", client_id="app-1")
    secrets = {"refresh_token": "configured", "client_secret": "app-secret"}
    pipedrive_api._REFRESHED.clear()
    for _ in range(2):  # two runs of one daemon, each with its own connector
        client = PipedriveClient(settings.base_url, (5.0, 30.0))
        OAuthRefresh(client, settings, secrets).refresh("acme")
        assert client.access_token == f"access-{len(sent)}"
    assert sent == ["configured", "rotated-1"]
    assert responses.calls[0].request.headers["Authorization"].startswith("Basic ")  # the app's id and secret
