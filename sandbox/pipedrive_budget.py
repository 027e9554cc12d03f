"""Pipedrive's rate limits: the company's daily token budget, the per-token burst windows and the POST/PUT day.

Figures from Pipedrive's rate-limiting page ("Token-Based Rate Limiting", "Burst limits"):

- the daily budget is 30,000 base tokens x plan multiplier (Lite 1, Growth 2, Premium 5, Ultimate 7) x
  seats, shared by every API-token and OAuth call of the company, and it "resets at midnight at server's
  timezone" (not a rolling day; which zone is not said: ``Pipedrive.server_utc_offset_hours``, default UTC).
  Once spent, "all further API requests will be rejected with a 429" until the reset;
- each call costs its operation's ``x-token-cost`` in Pipedrive's OpenAPI descriptions (``COSTS``);
- burst: a rolling 2-second window per token: API tokens 20/40/100/120 requests by plan, OAuth apps
  80/160/400/480;
- ``x-daily-requests-left``: the POST/PUT calls left in the UTC day (10,000 a user), on API-token calls only.

Headers on every limited answer: ``x-ratelimit-limit``, ``x-ratelimit-remaining`` and ``x-ratelimit-reset``
(the burst window of the call's token), ``x-daily-ratelimit-token-limit`` and
``x-daily-ratelimit-token-remaining`` (the budget: not in the documentation, but what clients read from
live answers), and ``x-daily-requests-left`` for API tokens. No ``Retry-After``: none is documented. A spent
budget and a full burst window both answer the same 429 body; only the headers tell them apart.

API-token clients that keep calling after 429s are blocked by Pipedrive's edge with a 403 HTML page
(documented; the thresholds are not, so ``hammer_*`` and ``block_seconds`` are settings).
"""
from __future__ import annotations

import math
import time

from .limits import Verdict, Window

BURST, BURST_OAUTH, DAILY, WRITES = "BURST", "BURST_OAUTH", "DAILY", "WRITES"
API_TOKEN, OAUTH = "api_token", "oauth"
PLANS = {"lite": (20, 80, 1), "growth": (40, 160, 2), "premium": (100, 400, 5), "ultimate": (120, 480, 7)}
"""plan: (API-token requests per 2 s, OAuth requests per 2 s, daily budget multiplier)."""
BASE_DAILY_TOKENS = 30_000
DAILY_WRITES = 10_000
DAY_SECONDS = 86_400
COSTS = {
    # API v2 (x-token-cost in Pipedrive's v2 OpenAPI description)
    "persons.list": 10, "persons.get": 1, "persons.update": 5, "persons.delete": 3,
    "activities.list": 10, "activities.get": 1, "activities.create": 5, "activities.update": 5,
    "deals.list": 10, "deals.get": 1, "organizations.list": 10, "organizations.get": 1, "organizations.update": 5,
    "personFields.list": 10, "personFields.get": 1, "personFields.create": 5, "personFields.update": 5,
    "personFields.options.add": 5, "personFields.options.update": 5, "personFields.options.delete": 3,
    "organizationFields.list": 10, "organizationFields.get": 1,
    # API v1 (the v1 description)
    "v1.personFields.list": 20, "v1.personFields.get": 2, "v1.personFields.create": 10, "v1.personFields.update": 10,
    "v1.activityTypes.list": 20, "v1.users.list": 20, "v1.users.me": 2,
    "v1.persons.merge": 40,  # the persons reference's "Merge two persons"
    "v1.recents.list": 20,  # the cost of v1's other lists: the recents reference shows none
}
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH"})
BLOCK_PAGE = """<!DOCTYPE html>
<html lang="en-US"><head><title>Access denied | api.pipedrive.com used Cloudflare to restrict access</title></head>
<body><div id="cf-wrapper"><h1>Error 1020</h1><h2>Access denied</h2>
<p>This website is using a security service to protect itself from online attacks.</p>
<p>This error is produced by Cloudflare. See troubleshooting guide
<a href="https://support.cloudflare.com/hc/en-us/articles/360029779472">here</a>.</p></div></body></html>
"""


def seconds_to_midnight(utc_offset_hours: float, now: float | None = None) -> float:
    """Wall seconds from ``now`` to the next midnight at ``utc_offset_hours`` from UTC."""
    local = (time.time() if now is None else now) + utc_offset_hours * 3600
    return DAY_SECONDS - local % DAY_SECONDS


def windows(tier: str, seats: int, write_routes: frozenset[str], server_utc_offset_hours: float) -> list[Window]:
    """The limits of a company on ``tier`` with ``seats``; the day windows start at the next midnight, taking the
    limits clock's origin as now."""
    api_burst, oauth_burst, multiplier = PLANS[tier]
    not_writes = {name: 0 for name in COSTS if name not in write_routes}
    return [Window(BURST, api_burst, 2, scope=API_TOKEN), Window(BURST_OAUTH, oauth_burst, 2, scope=OAUTH),
            Window(DAILY, BASE_DAILY_TOKENS * multiplier * seats, DAY_SECONDS, costs=COSTS,
                   resets_at=seconds_to_midnight(server_utc_offset_hours)),
            Window(WRITES, DAILY_WRITES, DAY_SECONDS, costs=not_writes, resets_at=seconds_to_midnight(0))]


def headers(verdict: Verdict, scope: str | None) -> dict[str, str]:
    """The rate-limit headers of one answer."""
    burst, daily, writes = verdict.state(BURST_OAUTH if scope == OAUTH else BURST), verdict.state(DAILY), \
        verdict.state(WRITES)
    found = {}
    if burst is not None:
        found.update({"x-ratelimit-limit": str(burst.window.limit), "x-ratelimit-remaining": str(burst.remaining),
                      "x-ratelimit-reset": str(math.ceil(burst.reset_seconds))})
    if daily is not None:
        found.update({"x-daily-ratelimit-token-limit": str(daily.window.limit),
                      "x-daily-ratelimit-token-remaining": str(daily.remaining)})
    if writes is not None and scope == API_TOKEN:
        found["x-daily-requests-left"] = str(writes.remaining)
    return found
