"""Pipedrive's API as pipedrive-python-lib (v1) and a plain HTTP client (v2) see it.

Point the SDK here with ``Client(domain=sb.base_url + "/")`` (its base becomes ``domain + "v1/"``) and
``client.set_api_token(sb.credentials["api_token"])`` (it sends the token as the ``api_token`` query
parameter); call v2 on ``sb.base_url + "/api/v2/..."`` with the token in an ``x-api-token`` header (or the
query parameter). v1 answers under ``/v1/`` and ``/api/v1/``, as Pipedrive did. OAuth: codes and refresh
tokens are exchanged at ``POST /oauth/token`` (set the SDK's ``OAUTH_BASE_URL`` to
``sb.base_url + "/oauth/"``; ``client_id``/``client_secret`` are in ``sb.credentials``), whose ``api_domain``
is this sandbox's own base URL; ``sb.credentials["access_token"]`` is an OAuth token issued at start, with its
``refresh_token``. An API token sent as a Bearer, or an OAuth token sent as an API token, is refused (401).

Served (the parts):

- :mod:`.pipedrive_v2`: v2 persons (list, get, PATCH) and deals (list, get);
- :mod:`.pipedrive_activities`: v2 activities (list, get, create, PATCH), listed by update time in the order
  :mod:`.pipedrive_activity_times` keeps;
- :mod:`.pipedrive_field_routes`: v2 person fields (list, get, create, PATCH, options add/relabel/delete)
  and organization fields (list, get); v1 personFields (list, get, create, PUT);
- :mod:`.pipedrive_changes`: v2 person DELETE, v1 persons merge and v1 recents (persons), and the same
  deletion and merge for tests: ``sb.vendor.delete_person(id)``, ``sb.vendor.merge_persons(gone_id, into_id)``;
- :mod:`.pipedrive_organizations`: v2 organizations (list, get, PATCH), and the same change for tests:
  ``sb.vendor.edit_organization(org_id, Industry="Software")``;
- here: OAuth, v1 activityTypes, users and users/me.

Data: person ``id`` is ``index + 1``; persons, organizations and deals as :mod:`.pipedrive_records` draws
them (deleted and merged persons among them, and ``sb.vendor.fates`` answers for those deleted or merged
later too); custom fields as :mod:`.pipedrive_fields` describes.
Activities created here are listed by ``crm.added_activities()`` (tasks also by ``crm.tasks()``).

Timestamps: v2 RFC 3339 (``2025-01-01T10:20:00Z``), v1 ``YYYY-MM-DD HH:MM:SS`` (UTC). Errors:
``{success: false, error, error_info, data: null, additional_data: null}`` (plus ``errorCode`` on 401 and
429). ``faults.fail_records`` makes chosen person ids fail alone.

Rate limits per ``tier`` (lite, growth, premium, ultimate; default lite) and ``Pipedrive.seats`` (default
1), as :mod:`.pipedrive_budget` describes: windows ``BURST`` (API tokens), ``BURST_OAUTH``, ``DAILY`` (the
token budget, renewed at midnight: ``sb.vendor.budget_resets_in()``) and ``WRITES``; ``sb.limits.tune(name,
limit=...)`` sets any of them.
"""
from __future__ import annotations

import base64
import hashlib
import math
from collections import deque
from dataclasses import replace
from urllib.parse import parse_qs

from . import pipedrive_budget as budget
from .limits import Verdict, Window
from .pipedrive_activities import ACTIVITY_TYPES
from .pipedrive_organizations import V2Organizations
from .pipedrive_wire import ERROR_INFO, parse_rfc3339, rfc3339, v1_time
from .server import Request, Response, Route, VendorError, route

__all__ = ["ERROR_INFO", "VENDOR", "Pipedrive", "parse_rfc3339", "rfc3339"]


class Pipedrive(V2Organizations):
    """The Pipedrive imitation: every part's routes, authentication, OAuth and rate limits."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.api_token = self.tokens.current
        self.client_secret = hashlib.sha1(f"secret:{self.crm.tenant.seed}".encode()).hexdigest()
        self._oauth_tokens: set[str] = set()
        self._refresh_tokens: set[str] = set()
        self._refusals: deque[float] = deque()
        self._blocked_until = -math.inf
        self.access_token, self.refresh_token = self._issue_oauth()

    @classmethod
    def routes(cls) -> list[Route]:
        """Every route, and each v1 one under ``/api/v1/`` too."""
        found = super().routes()
        return found + [replace(r, pattern="/api" + r.pattern) for r in found if r.pattern.startswith("/v1/")]

    # -- the Vendor contract ---------------------------------------------------------------------------

    def windows(self) -> list[Window]:
        writes = frozenset(name for name in budget.COSTS if name.endswith((".create", ".update", ".add", ".merge")))
        return budget.windows(self.tier, self.seats, writes, self.server_utc_offset_hours)

    def credentials(self) -> dict:
        return {"api_token": self.api_token, "access_token": self.access_token, "refresh_token": self.refresh_token,
                "client_id": self.client_id, "client_secret": self.client_secret}

    def unauthorized(self) -> VendorError:
        return self.error(401, "unauthorized access")

    def authenticate(self, request: Request) -> None:
        token, scope = self._token(request)
        if scope == budget.API_TOKEN and self._blocked():
            raise self._block_page()
        valid = self.tokens.is_valid(token)
        if not valid or (token in self._oauth_tokens) != (scope == budget.OAUTH):
            raise self.unauthorized()

    def limit_scope(self, request: Request) -> str | None:
        return self._token(request)[1]

    @staticmethod
    def _token(request: Request) -> tuple[str | None, str]:
        if request.bearer:
            return request.bearer, budget.OAUTH
        return request.headers.get("x-api-token") or request.arg("api_token"), budget.API_TOKEN

    def throttled(self, verdict: Verdict) -> VendorError:
        if verdict.state(budget.BURST) is not None and self._hammering():  # only API-token traffic is blocked
            return self._block_page()
        return self.error(429, "Request over limit")

    def limit_headers(self, verdict: Verdict) -> dict[str, str]:
        scope = budget.OAUTH if verdict.state(budget.BURST_OAUTH) is not None else budget.API_TOKEN
        headers = budget.headers(verdict, scope)
        if self.limits is not None and not self.limits.enabled:
            # counted but never enforced (rate_limits=False): a burst window that refuses nothing is not announced
            # as full, or a client pacing itself by the headers would wait for a limit that is not there
            headers = {name: value for name, value in headers.items() if not name.startswith("x-ratelimit-")}
        return headers

    def budget_resets_in(self) -> float:
        """CRM seconds until the daily token budget renews (midnight at the server's zone)."""
        return self.limits.usage(budget.DAILY).reset_seconds

    # -- the edge's block on API-token clients that ignore 429 -------------------------------------------

    def _hammering(self) -> bool:
        now = self.limits.clock.now()
        with self._lock:
            self._refusals.append(now)
            while self._refusals and self._refusals[0] < now - self.hammer_seconds:
                self._refusals.popleft()
            if len(self._refusals) > self.hammer_refusals:
                self._blocked_until = now + self.block_seconds
                self._refusals.clear()
        return self._blocked()

    def _blocked(self) -> bool:
        return self.limits is not None and self.limits.clock.now() < self._blocked_until

    @staticmethod
    def _block_page() -> VendorError:
        refusal = VendorError(403, budget.BLOCK_PAGE)
        refusal.response.content_type = "text/html; charset=UTF-8"
        return refusal

    # -- OAuth ------------------------------------------------------------------------------------------

    @route("POST", "/oauth/token", name="oauth.token", auth=False, limited=False)
    def oauth_token(self, request: Request):
        """Authorization-code and refresh-token grants with HTTP Basic client credentials."""
        form = {key: values[0] for key, values in parse_qs(request.body.decode(errors="replace")).items()}
        if not self._client_authenticated(request):
            return Response(401, {"success": False, "message": "Invalid client credentials"})
        grant = form.get("grant_type")
        if (grant == "authorization_code" and form.get("code")) or \
                (grant == "refresh_token" and form.get("refresh_token") in self._refresh_tokens):
            access, refresh = self._issue_oauth()
            return {"access_token": access, "token_type": "Bearer", "refresh_token": refresh,
                    "scope": "base,contacts:full,activities:full,deals:read,admin", "expires_in": 3599,
                    "api_domain": f"http://{request.headers.get('Host') or '127.0.0.1'}"}
        message = "Missing parameter: grant_type" if not grant else f"Invalid grant: {grant}"
        return Response(400, {"success": False, "message": message})

    def _issue_oauth(self) -> tuple[str, str]:
        access = self.tokens.issue()
        refresh = hashlib.sha1(access.encode()).hexdigest()
        with self._lock:
            self._oauth_tokens.add(access)
            self._refresh_tokens.add(refresh)
        return access, refresh

    def _client_authenticated(self, request: Request) -> bool:
        header = request.headers.get("Authorization") or ""
        if not header.startswith("Basic "):
            return False
        try:
            client_id, _, secret = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            return False
        return client_id == self.client_id and secret == self.client_secret

    # -- v1: activity types and users -------------------------------------------------------------------

    @route("GET", "/v1/activityTypes", name="v1.activityTypes.list")
    def list_activity_types(self, request: Request):
        created = v1_time(self.crm.tenant.anchor_ms - 800 * 86_400_000)
        return {"success": True, "data": [
            {"id": i + 1, "order_nr": i + 1, "name": name, "key_string": key, "icon_key": key, "active_flag": True,
             "color": None, "is_custom_flag": False, "add_time": created, "update_time": None}
            for i, (key, name) in enumerate(ACTIVITY_TYPES)]}

    @route("GET", "/v1/users", name="v1.users.list")
    def list_users(self, request: Request):
        return {"success": True, "data": [self._user(k) for k in range(len(self.crm.tenant.owners))]}

    @route("GET", "/v1/users/me", name="v1.users.me")
    def get_me(self, request: Request):
        me = self._user(0)
        return {"success": True, "data": {**me, "company_id": 1, "company_name": "Sandbox Company",
                                          "company_domain": "sandbox", "company_country": "US"}}

    def _user(self, k: int) -> dict:
        owner, anchor = self.crm.tenant.owners[k], self.crm.tenant.anchor_ms
        return {"id": owner.id, "name": f"{owner.first_name} {owner.last_name}", "email": owner.email,
                "default_currency": "USD", "locale": "en_US", "lang": 1, "phone": None, "activated": True,
                "last_login": v1_time(anchor - 3_600_000 * (k + 1)), "created": v1_time(anchor - 800 * 86_400_000),
                "modified": v1_time(anchor - 86_400_000), "has_created_company": k == 0,
                "access": [{"app": "sales", "admin": k == 0, "permission_set_id": f"ps-{k}"}],
                "active_flag": True, "timezone_name": "UTC", "timezone_offset": "+00:00", "role_id": 1,
                "icon_url": None, "is_you": k == 0, "is_deleted": False}


VENDOR = Pipedrive
