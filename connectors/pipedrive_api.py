"""Pipedrive's API as the connector calls it, through pipedrive-python-lib.

The library's `Client` authenticates (an API token, or an OAuth app's access token, which `OAuthRefresh` asks for
with the app's refresh token through the library's own grant), sends, parses and raises its own error classes; it
speaks v1 only, so the v2 calls (persons, organizations, deals, activities, fields) go through its request path too
(`PipedriveClient`), on the v2 URLs. Every call goes through the tenant's `ApiCaller` (burst
window, retries, call counting), and is sent only while the company's daily token budget can afford it.

Pipedrive counts two limits:

- a burst window per token: 20 to 120 calls per rolling 2 seconds by plan for API tokens, four times that for OAuth
  apps. The `RateBudget` keeps a little under it (`burst_window`), shared by every run on the same token; an answer
  saying none is left (``x-ratelimit-remaining: 0``, another client on the token) holds it until
  ``x-ratelimit-reset``, and a 429 of the window is sent again after that.
- the company's daily token budget (30,000 x plan multiplier x seats), each call costing its ``x-token-cost``
  (`TokenCost`), renewed at the server's midnight, not on a rolling day. Every answer's headers say what is left
  (`DailyBudget`); a call it can no longer afford is not sent, and a 429 of a spent budget (or one that does not say
  it is the burst window's) stops the tenant's run as `QuotaExhausted`, never retried: Pipedrive's edge blocks API
  tokens that keep calling after 429s with a 403 page.

Errors (`classify`): transport failures, cut-off answers, 408, 5xx and burst 429s are retried; 401 and a permission
403 stop the run (`AuthError`); a spent budget or the edge's block page stops it as `QuotaExhausted`; any other 4xx
is the request's own fault, handed back to the caller as the library's exception.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from enum import IntEnum
from typing import Any

import requests
from pipedrive import exceptions
from pipedrive.client import Client

from leadpulse.connectors.budget import RateBudget, Window, account_key, shared_budget
from leadpulse.connectors.paging import Batch, follow
from leadpulse.connectors.retry import ApiCaller, Failure, FailureKind, refusal
from leadpulse.connectors.settings import PipedriveAuth, PipedrivePlan, PipedriveSettings
from leadpulse.core.contract import ConnectorContext
from leadpulse.core.errors import AuthError, ConnectorError, QuotaExhausted

log = logging.getLogger("leadpulse.pipedrive")

#: plan -> calls per rolling 2 s for API tokens and for OAuth apps, and the daily budget's multiplier
PLANS = {
    PipedrivePlan.LITE: (20, 80, 1),
    PipedrivePlan.GROWTH: (40, 160, 2),
    PipedrivePlan.PREMIUM: (100, 400, 5),
    PipedrivePlan.ULTIMATE: (120, 480, 7),
}
BURST_SECONDS = 2.0
#: the share of the burst figure the budget takes: the rest is left to other clients of the same token (the
#: budget counts each call until the window has passed since its answer, so it never overruns Pipedrive's own count)
BURST_SHARE = 0.9
BASE_DAILY_TOKENS = 30_000
#: what to do about a read or look-up Pipedrive refuses as sent (a 4xx other than auth and limits)
REFUSED_ADVICE = ("retrying will not help; check crm.connection.base_url and the fields map in the tenant file, "
                  "then run again; if it keeps happening, report it with this message")
#: the v2 headers a 429 of the burst window and one of the daily budget are told apart by
BURST_LEFT, BURST_RESET = "x-ratelimit-remaining", "x-ratelimit-reset"
TOKENS, TOKENS_LEFT = "x-daily-ratelimit-token-limit", "x-daily-ratelimit-token-remaining"
WRITES_LEFT = "x-daily-requests-left"


class TokenCost(IntEnum):
    """What a call takes of the daily budget (``x-token-cost`` in Pipedrive's OpenAPI descriptions)."""

    GET = 1  # a v2 record by id
    V1_GET = 2  # a v1 record by id (users/me)
    WRITE = 5  # a v2 create or update
    LIST = 10  # a v2 list page
    V1_LIST = 20  # a v1 list (activity types, users)


def burst_window(settings: PipedriveSettings) -> Window:
    """The calls the budget lets through per 2 seconds on the tenant's plan and token kind."""
    api_token, oauth, _ = PLANS[settings.plan]
    vendor = api_token if settings.auth is PipedriveAuth.API_TOKEN else oauth
    return Window(int(vendor * BURST_SHARE), BURST_SECONDS)


def daily_tokens(settings: PipedriveSettings) -> int:
    """The daily token budget the company's plan and seats should give it."""
    return BASE_DAILY_TOKENS * PLANS[settings.plan][2] * settings.seats


@dataclass(frozen=True, slots=True)
class Answer:
    """One answer as `PipedriveClient` hands it over: its status and headers with the parsed body."""

    status: int
    headers: Mapping[str, str]
    body: Any

    @property
    def data(self) -> Any:
        return self.body.get("data") if isinstance(self.body, dict) else None

    @property
    def next_cursor(self) -> str | None:
        more = (self.body.get("additional_data") or {}) if isinstance(self.body, dict) else {}
        cursor = more.get("next_cursor") if isinstance(more, dict) else None
        return str(cursor) if cursor else None

    @property
    def next_start(self) -> str | None:
        """A v1 list's offset of its next page (``additional_data.pagination``); None on the last page."""
        more = (self.body.get("additional_data") or {}) if isinstance(self.body, dict) else {}
        pagination = more.get("pagination") if isinstance(more, dict) else None
        if not isinstance(pagination, dict) or not pagination.get("more_items_in_collection"):
            return None
        following = pagination.get("next_start")
        return str(following) if isinstance(following, int) else None


class NotJson(ValueError):
    """A successful answer whose body is not JSON: cut off, or a proxy's page."""


#: the library's error class for each status, as its `_parse` picks them for JSON refusals
_ERRORS: dict[int, type[exceptions.BaseError]] = {
    400: exceptions.BadRequestError, 401: exceptions.UnauthorizedError, 403: exceptions.ForbiddenError,
    404: exceptions.NotFoundError, 410: exceptions.GoneError, 415: exceptions.UnsupportedMediaTypeError,
    422: exceptions.UnprocessableEntityError, 429: exceptions.TooManyRequestsError,
    500: exceptions.InternalServerError, 501: exceptions.NotImplementedError, 503: exceptions.ServiceUnavailableError,
}


class PipedriveClient(Client):  # type: ignore[misc]  # pipedrive-python-lib ships no type information
    """pipedrive-python-lib's client, sending every call through its own request path, with three changes: an API
    token travels in the ``x-api-token`` header (the library puts it in the query string, where a transport error's
    message and a log line would show it); `_parse` hands over the status and headers with the body (the limits are
    in the headers); and a refusal whose body is not JSON (the edge's 403 page, a gateway's 502) raises the
    library's error class for its status rather than coming back as text."""

    def __init__(self, base_url: str, timeout: tuple[float, float]) -> None:
        super().__init__(domain=base_url.rstrip("/") + "/")
        self.timeout = timeout
        self._header_token: str | None = None

    def set_api_token(self, api_token: str) -> None:
        self._header_token = api_token

    def _request(self, method: str, url: str, headers: Mapping[str, str] | None = None, params: Any = None,
                 **kwargs: Any) -> Answer:
        sent = {**(headers or {}), **({"x-api-token": self._header_token} if self._header_token else {})}
        kwargs.setdefault("timeout", self.timeout)
        answer: Answer = super()._request(method, url, headers=sent, params=params, **kwargs)
        return answer

    def _parse(self, response: requests.Response) -> Answer:
        kind = response.headers.get("Content-Type", "")
        if "application/json" not in kind:
            what = f"Pipedrive answered {response.status_code} with {kind.split(';')[0] or 'no content type'}"
            if response.ok:
                raise NotJson(f"{what}, not JSON")
            raise _ERRORS.get(response.status_code, exceptions.UnknownError)(what, response)
        return Answer(response.status_code, response.headers, super()._parse(response))


def classify(exc: Exception) -> Failure:
    """Sort a library or transport failure into retry, stop-the-tenant, or the request's own fault."""
    if isinstance(exc, (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError,
                        ValueError)):  # ValueError: a body cut off mid-JSON, or no JSON at all (`NotJson`)
        return Failure(FailureKind.RETRY, 0, f"no complete answer from Pipedrive ({type(exc).__name__})")
    if not isinstance(exc, exceptions.BaseError):
        return Failure(FailureKind.RECORD, -1, f"{type(exc).__name__}: {exc}")
    response: requests.Response = exc.response
    status, headers = response.status_code, response.headers
    what = f"Pipedrive answered {status}: {exc}"
    if status == 401:
        return Failure(FailureKind.AUTH, status, f"{what}; check that crm.secrets names a valid API token of a user "
                       "of this company, or an OAuth app's access token (they expire after an hour: name the app's "
                       "client_id, with its refresh_token, and leadpulse asks for them itself)")
    if status == 403:
        if isinstance(exc, exceptions.ForbiddenError) and "text/html" in headers.get("Content-Type", ""):
            return Failure(FailureKind.QUOTA, status, f"{what}: Pipedrive's edge blocks this token for calling on "
                           "after rate-limit refusals; everything stored is kept, run again in a few minutes")
        return Failure(FailureKind.AUTH, status, f"{what}; the user or app lacks a permission leadpulse needs "
                       "(reading and editing persons and activities, managing person fields)")
    if status == 429:
        return _rate_limited(status, what, headers)
    if status == 408 or status >= 500:
        return Failure(FailureKind.RETRY, status, what)
    return Failure(FailureKind.RECORD, status, what)


def _rate_limited(status: int, what: str, headers: Mapping[str, str]) -> Failure:
    """A 429: the burst window's is waited out; any other (the daily budget spent, or the day's POST/PUT calls, or
    one that does not say) ends the run, since calling on would only meet more 429s and then Pipedrive's block."""
    if headers.get(TOKENS_LEFT) != "0" and headers.get(BURST_LEFT) == "0":
        return Failure(FailureKind.RETRY, status, f"{what} (the burst window is full)", _reset_seconds(headers))
    spent = ("the company's daily token budget is spent" if headers.get(TOKENS_LEFT) == "0" else
             "the day's POST/PUT calls are spent" if headers.get(WRITES_LEFT) == "0" else
             "a rate limit other than the burst window was hit")
    return Failure(FailureKind.QUOTA, status, f"{what}: {spent}; everything stored is kept, and the next run "
                   "resumes from the checkpoint once Pipedrive renews the budget (at its midnight)")


def _reset_seconds(headers: Mapping[str, str]) -> float:
    try:
        return max(float(headers.get(BURST_RESET) or BURST_SECONDS), 0.5)
    except ValueError:
        return BURST_SECONDS


@dataclass
class DailyBudget:
    """The company's daily token budget, and the POST/PUT calls left of the day (API tokens only), as the last
    answer said them; None until an answer did."""

    expected: int
    tokens: int | None = None
    tokens_left: int | None = None
    writes_left: int | None = None

    def note(self, headers: Mapping[str, str]) -> None:
        tokens, left, writes = (_count(headers, name) for name in (TOKENS, TOKENS_LEFT, WRITES_LEFT))
        if tokens is not None and tokens != self.tokens and tokens != self.expected:
            log.warning("Pipedrive gives this company %s daily tokens, not the %s its plan and seats in the tenant "
                        "file say: check crm.connection.plan and seats", f"{tokens:,}", f"{self.expected:,}")
        self.tokens = tokens if tokens is not None else self.tokens
        self.tokens_left = left if left is not None else self.tokens_left
        self.writes_left = writes if writes is not None else self.writes_left

    def refusal(self, cost: TokenCost) -> str | None:
        """Why a call of `cost` cannot be sent today, or None."""
        if self.tokens_left is not None and self.tokens_left < cost:
            return (f"the company's daily token budget has {self.tokens_left:,} tokens left, and the next call costs "
                    f"{int(cost)}")
        if cost is TokenCost.WRITE and self.writes_left is not None and self.writes_left <= 0:
            return "the day's POST/PUT calls of this API token are spent"
        return None


def _count(headers: Mapping[str, str], name: str) -> int | None:
    value = headers.get(name)
    return int(value) if value is not None and value.isdigit() else None


#: in this process, the refresh token Pipedrive last handed back for each one a tenant file names (by a digest of
#: the app and the token): when it issues a new one with an access token, the daemon's later runs send that one
_REFRESHED: dict[str, str] = {}


class OAuthRefresh:
    """An OAuth app's access token (an hour long), asked for with the app's refresh token before a run's first call
    and once more in the run when Pipedrive refuses the one in hand."""

    def __init__(self, client: PipedriveClient, settings: PipedriveSettings, secrets: Mapping[str, str]) -> None:
        self.client = client
        client.client_id = settings.client_id
        client.client_secret = secrets["client_secret"]
        client.OAUTH_BASE_URL = settings.oauth_url.rstrip("/") + "/oauth/"
        self.configured = secrets["refresh_token"]
        self.key = hashlib.sha256(f"{settings.client_id}\0{self.configured}".encode()).hexdigest()
        self.renewed = False

    def fresh(self, call: Callable[[], Answer], refresh: Callable[[], None]) -> Answer:
        """`call`, with an access token asked for first if there is none yet, and asked for again (once a run) if
        Pipedrive refuses it."""
        if self.client.access_token is None:
            refresh()
        try:
            return call()
        except AuthError:
            if self.renewed:
                raise
            self.renewed = True
            refresh()
            return call()

    def refresh(self, tenant: str) -> Answer:
        """Exchange the refresh token for an access token (the library's ``refresh_token`` grant).

        :raises AuthError: the OAuth server refused the app or its refresh token.
        """
        token = _REFRESHED.get(self.key, self.configured)
        try:
            answer: Answer = self.client.refresh_token(token)
        except exceptions.BaseError as exc:
            status = exc.response.status_code
            if status not in (400, 401, 403):
                raise
            raise AuthError(tenant, f"Pipedrive's OAuth server refused a new access token ({status}); check "
                            "crm.connection.client_id and crm.secrets.client_secret and refresh_token (a refresh "
                            "token unused for 60 days expires: authorize the app again for a new one)") from exc
        body = answer.body if isinstance(answer.body, dict) else {}
        access = body.get("access_token")
        if not isinstance(access, str) or not access:
            raise AuthError(tenant, "Pipedrive's OAuth server answered with no access token; check "
                            "crm.connection.oauth_url")
        self.client.set_access_token(access)
        issued = body.get("refresh_token")
        if isinstance(issued, str) and issued and issued != token:
            _REFRESHED[self.key] = issued
            log.info("tenant %r: Pipedrive issued a new refresh token, used by this process from now on", tenant)
        return answer


class PipedriveApi:
    """The calls one tenant's connector makes, v2 and v1, through the library, the budget and the retries."""

    def __init__(self, context: ConnectorContext, settings: PipedriveSettings) -> None:
        self.tenant = context.tenant
        self.client = PipedriveClient(settings.base_url, (min(5.0, settings.timeout_seconds),
                                                          settings.timeout_seconds))
        self.refresher: OAuthRefresh | None = None
        if settings.auth is PipedriveAuth.API_TOKEN:
            secret = context.secrets["api_token"]
            self.client.set_api_token(secret)
        elif settings.client_id:
            secret = settings.client_id
            self.refresher = OAuthRefresh(self.client, settings, context.secrets)
        else:
            secret = context.secrets["access_token"]
            self.client.set_access_token(secret)
        self.budget: RateBudget = shared_budget(account_key("pipedrive", settings.base_url, secret),
                                                [burst_window(settings)], context.clock)
        self.caller = ApiCaller(context.tenant, classify, self.budget, context.stats,
                                allowance=context.call_allowance)
        self.daily = DailyBudget(daily_tokens(settings))
        #: Pipedrive's clock at its first answer this run (the ``Date`` header)
        self.first_answered_at: datetime | None = None
        self.v2 = settings.base_url.rstrip("/") + "/api/v2/"

    def call(self, send: Callable[[], Answer], cost: TokenCost, *, idempotent: bool = True) -> Answer:
        """One call through the budget and retries, unless the daily budget can no longer afford it.

        :raises QuotaExhausted: the daily budget cannot afford it (nothing is sent), or Pipedrive said it is spent.
        :raises AuthError: the token was refused.
        :raises TransientError: retries ran out.
        :raises pipedrive.exceptions.BaseError: Pipedrive refused the request as sent (see `classify`).
        """
        if self.refresher is not None:
            return self.refresher.fresh(lambda: self._call(send, cost, idempotent=idempotent), self._refresh)
        return self._call(send, cost, idempotent=idempotent)

    def _refresh(self) -> None:
        refresher = self.refresher
        assert refresher is not None
        self.caller.call(lambda: refresher.refresh(self.tenant), ok_status=lambda answer: answer.status)

    def _call(self, send: Callable[[], Answer], cost: TokenCost, *, idempotent: bool) -> Answer:
        reason = self.daily.refusal(cost)
        if reason is not None:
            raise QuotaExhausted(self.tenant, f"{reason}; everything stored is kept, and the next run resumes from "
                                 "the checkpoint once Pipedrive renews the budget (at its midnight)")

        def attempt() -> Answer:
            try:
                answer = send()
            except exceptions.BaseError as exc:
                self._note(exc.response.headers)
                raise
            self._note(answer.headers)
            return answer

        return self.caller.call(attempt, ok_status=lambda answer: answer.status, idempotent=idempotent)

    def _note(self, headers: Mapping[str, str]) -> None:
        if self.first_answered_at is None and headers.get("Date"):
            with contextlib.suppress(TypeError, ValueError):  # a Date header that is no date: none
                self.first_answered_at = parsedate_to_datetime(headers["Date"])
        self.daily.note(headers)
        if headers.get(BURST_LEFT) == "0":  # another client of the token filled the window
            self.budget.pause(_reset_seconds(headers))

    def read(self, what: str, send: Callable[[], Answer], cost: TokenCost) -> Answer:
        """A call whose refusal is no one record's fault (a read, a look-up): it ends the run, saying what was asked.

        :raises ConnectorError: Pipedrive refused the request as sent.
        """
        try:
            return self.call(send, cost)
        except exceptions.BaseError as exc:
            reason = refusal(classify(exc))
            if reason is None:
                raise
            raise ConnectorError(self.tenant, f"Pipedrive refused {what}: {reason}; {REFUSED_ADVICE}") from exc

    def get(self, path: str, params: Mapping[str, Any], *, what: str, cost: TokenCost = TokenCost.LIST) -> Answer:
        """``GET /api/v2/{path}``."""
        return self.read(what, lambda: self.client._get(self.v2 + path, params=dict(params)), cost)

    def pages(self, path: str, params: Mapping[str, Any], *, what: str, start: str | None = None
              ) -> Iterator[Batch[dict[str, Any]]]:
        """The pages of a v2 list, followed by ``additional_data.next_cursor`` from `start`."""

        def fetch(cursor: str | None) -> Batch[dict[str, Any]]:
            answer = self.get(path, {**params, **({"cursor": cursor} if cursor else {})}, what=what)
            return Batch([r for r in answer.data or [] if isinstance(r, dict)], answer.next_cursor)

        return follow(self.tenant, what, fetch, start=start)

    def recents(self, items: str, since: str, limit: int, *, start: str | None = None
                ) -> Iterator[Batch[dict[str, Any]]]:
        """The pages of v1 recents (no v2 form): every record of `items` changed since `since` (UTC,
        ``YYYY-MM-DD HH:MM:SS``) as it stands now, deleted ones included, followed by offset from `start`. Pipedrive
        keeps the last 30 days of changes."""
        what = f"the {items}s changed since {since} (recents)"

        def fetch(offset: str | None) -> Batch[dict[str, Any]]:
            params = {"since_timestamp": since, "items": items, "start": int(offset or 0), "limit": limit}
            answer = self.read(what, lambda: self.client.recents.get_recent_changes(params=params), TokenCost.V1_LIST)
            return Batch([r for r in answer.data or [] if isinstance(r, dict)], answer.next_start)

        return follow(self.tenant, what, fetch, start=start)

    def v1(self, path: str, *, what: str, cost: TokenCost = TokenCost.V1_LIST) -> Answer:
        """``GET /v1/{path}``, for what v2 does not serve."""
        return self.read(what, lambda: self.client._get(self.client.BASE_URL + path), cost)

    def send(self, method: str, path: str, body: Any, *, idempotent: bool = True) -> Answer:
        """A v2 create or update (``POST``/``PATCH /api/v2/{path}``); a refusal comes back as the library's error."""
        return self.call(lambda: self.client._request(method.lower(), self.v2 + path, json=body), TokenCost.WRITE,
                         idempotent=idempotent)

    def tokens_left(self) -> int | None:
        """The company's daily tokens left as the last answer said, or None before any answer."""
        return self.daily.tokens_left

    def writes_left(self) -> int | None:
        """The POST/PUT calls the day leaves this API token, as the last answer said (None for OAuth apps, which
        Pipedrive does not count so)."""
        writes = self.daily.writes_left
        return None if writes is None else max(0, writes)
