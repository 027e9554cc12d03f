"""The sandbox's HTTP layer, and how a vendor module plugs into it.

A loopback server (127.0.0.1, a free port, one thread per connection, HTTP/1.1 keep-alive,
optional TLS with a certificate made at start-up) that routes each call to a vendor module.
Everything vendor-specific lives in that module; everything else is here and in the
neighbouring files:

========================  ================================================================
``synth.py``              deterministic people, companies, owners and activities
``state.py``              the living CRM (``Crm``): writes, moved ``updated_ms``, additions
``limits.py``             rate-limit windows on a scalable clock
``faults.py``             injected faults, per-record batch failures, token expiry
``auth.py``               the tokens currently accepted
``stats.py``              calls per route and status, throttled calls
``app.py``                ``Sandbox``: builds all of the above and runs this server
========================  ================================================================

Writing a vendor module
-----------------------

Create ``sandbox/<crm>.py`` (the name given to ``Sandbox.start(<crm>)`` and ``--crm``) with a
subclass of :class:`Vendor` bound to the module-level name ``VENDOR``::

    from leadpulse.sandbox.server import Request, Response, Vendor, VendorError, route
    from leadpulse.sandbox.limits import Window

    class Acme(Vendor):
        name = "acme"
        tls = False                      # True: served over HTTPS (the base URL says so)
        ids = IdScheme()                 # optional: how contact ids look on the wire

        def windows(self) -> list[Window]:
            # real figures per self.tier; the route names are those declared below
            return [Window("BURST", limit=80, seconds=2), Window("DAILY", 30_000, 86_400)]

        def error(self, status, message, **context) -> VendorError:
            return VendorError(status, {"success": False, "error": message})

        def throttled(self, verdict) -> VendorError:
            return VendorError(429, {...}, headers={...})

        def limit_headers(self, verdict) -> dict[str, str]:
            return {"x-ratelimit-remaining": str(verdict.state("BURST").remaining)}

        @route("GET", "/api/v2/persons", name="persons.list")
        def list_persons(self, request: Request):
            index = int(request.arg("cursor") or 0)
            return {"data": [self.render(self.crm.record(i)) for i in range(index, index + 100)]}

        @route("PATCH", "/api/v2/persons/{id}", name="persons.update")
        def update_person(self, request: Request):
            index = self.contact_index(request.params["id"])    # 404 via self.error if unknown
            self.crm.write(index, {"title": request.json()["job_title"]})
            ...

    VENDOR = Acme

What a vendor module gets (attributes set before any call):

- ``self.crm`` (:class:`leadpulse.sandbox.state.Crm`): ``crm.size``; ``crm.record(index)`` gives the
  contact's current fields as a flat vendor-neutral dict (``state.CONTACT_FIELDS``: first_name,
  title, company, industry, employees, lifecycle, owner_id, opted_out, created_ms, updated_ms,
  converted, converted_ms, email_opens, page_views...) plus anything written under a vendor name;
  ``crm.activities(index)`` (oldest first), ``crm.activity(id)``, ``crm.iter_activities(kind,
  after_id)`` for paging by id, ``crm.updated_between(lo_ms, hi_ms)`` and
  ``crm.activities_touched_since(kind, lo_ms)`` for searches; ``crm.tenant.owners``.
  Values in ``synth`` are lowercase neutral words (``"outbound"``, ``"no_answer"``, ``"mql"``):
  map them to the vendor's spelling in the module.
- Writes: ``crm.write(index, {field: value})`` applies a write and returns the new
  ``updated_ms`` (use neutral names for neutral fields, the vendor's names for anything else);
  ``crm.log_activity(index, kind, occurred_ms, owner_id, attributes, by_api=True)`` creates an
  activity (tasks created this way are what ``crm.tasks()`` lists).
- ``self.faults``: call ``self.faults.record_fault(record_id)`` for each record of a batch write;
  a :class:`leadpulse.sandbox.faults.RecordFault` (status, message, code) means that record must fail in
  the vendor's per-record error shape while the others succeed.
- ``self.tokens``: ``tokens.issue()`` for a login/OAuth route (declare it ``auth=False``),
  ``tokens.is_valid(token)``.
- ``self.tier`` (str or None) and ``self.limits`` (read-only use).
- ``self.contact_index(contact_id)``: the index, or the vendor's 404 from :meth:`Vendor.error`.

Routes: ``@route(method, pattern, name=..., auth=True, limited=True)`` on a method. ``{param}``
segments match one path segment and land in ``request.params``. ``name`` is the route's key in
stats, faults and rate-limit windows (keep it short and stable, ``"<object>.<verb>"``); it may
name path parameters, ``"{object_type}.list"``, so each object type is counted apart. A
handler returns a JSON-able value (status 200), a :class:`Response` (any status, headers,
bytes), or raises :class:`VendorError` (status, body, headers) for the vendor's own error bodies.
Any other exception answers ``self.error(500, ...)``.

Authentication: :meth:`Vendor.authenticate` runs before every ``auth=True`` route; the default
accepts ``Authorization: Bearer <token>`` for any valid token and otherwise raises
``self.unauthorized()``, whose default is ``self.error(401, "...")``. Override either (Pipedrive:
``x-api-token`` header or ``api_token`` query; Salesforce: a JSON array body).

Rate limits: :meth:`Vendor.windows` declares them; before each ``limited=True`` route the server
admits the call (under :meth:`Vendor.limit_scope`, for windows with a ``scope``), raises
``self.throttled(verdict)`` when refused, and adds ``self.limit_headers(verdict)`` to every answer of a
limited route. A window's ``costs`` map
route names to token costs (Pipedrive).

Faults need nothing from a vendor module: the server applies them before the handler runs
(status, hang), or to its answer (drop, truncate), using ``self.error`` for injected statuses.

Credentials: :meth:`Vendor.credentials` returns what a client needs besides the base URL
(default ``{"access_token": tokens.current}``).

Admin routes (no auth, not counted): ``GET /_sandbox/stats``; ``POST /_sandbox/faults``
``{route, kind: status|hang|drop|truncate, times, status, seconds, body}``;
``POST /_sandbox/faults/records`` ``{ids, status, message, code, times}``; ``POST /_sandbox/faults/batches``
``{route, times, status, message, code}``;
``POST /_sandbox/faults/token`` ``{calls}``; ``DELETE /_sandbox/faults``;
``POST /_sandbox/limits`` ``{enabled, name, limit, seconds}``;
``POST /_sandbox/crm/touch`` ``{count, seed}``; ``POST /_sandbox/crm/activities`` ``{ids, kind, fields}`` (an
activity logged on each contact as its users would); ``GET /_sandbox/crm/written``: what clients wrote, the
``leadpulse*`` values of each contact and the tasks created through the API (as the vendor's ``created_tasks``
gives them, when it has that), and the id of every contact.
"""
from __future__ import annotations

import json
import logging
import re
import socket
import ssl
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

import orjson

from .auth import Tokens
from .faults import Fault, FaultKind, Faults
from .limits import Limits, Verdict, Window
from .state import Crm, IdScheme, UnknownContact
from .stats import Stats
from .synth import YEAR_MS

log = logging.getLogger("sandbox")


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: Any
    body: bytes
    params: dict[str, str] = field(default_factory=dict)
    route: str = ""
    _json: Any = None

    def arg(self, name: str, default: str | None = None) -> str | None:
        """The first value of a query parameter."""
        values = self.query.get(name)
        return values[0] if values else default

    def args(self, name: str) -> list[str]:
        """Every value of a query parameter, repeated (``a=1&a=2``) or comma-separated (``a=1,2``)."""
        return [part for value in self.query.get(name, ()) for part in value.split(",") if part]

    def json(self) -> Any:
        """The body as JSON; a malformed body raises ``BadRequestBody``."""
        if self._json is None:
            try:
                self._json = json.loads(self.body or b"null")
            except ValueError as exc:
                raise BadRequestBody(f"Invalid input JSON: {exc}") from None
        return self._json

    @property
    def bearer(self) -> str | None:
        header = self.headers.get("Authorization") or ""
        return header[7:].strip() if header[:7].lower() == "bearer " else None


class BadRequestBody(Exception):
    """The request body is not valid JSON."""


@dataclass
class Response:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json;charset=utf-8"

    def payload(self) -> bytes:
        if isinstance(self.body, bytes):
            return self.body
        if isinstance(self.body, str):
            return self.body.encode()
        if self.body is None and self.status == 204:
            return b""
        return encode_json(self.body)


def encode_json(value: Any) -> bytes:
    """Compact JSON. orjson encodes a 100-record page about eight times faster than the standard
    library, and list pages are what benchmarks read; what it refuses (integers past 64 bits,
    odd types) still goes through ``json``."""
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)
    except TypeError:
        return json.dumps(value, separators=(",", ":")).encode()


class VendorError(Exception):
    """A vendor's own error answer: raise it from a handler, the server sends it as it is."""

    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None):
        super().__init__(f"{status}: {body}")
        self.response = Response(status, body, dict(headers or {}))


@dataclass(frozen=True)
class Route:
    method: str
    pattern: str
    name: str
    handler_name: str
    auth: bool = True
    limited: bool = True

    @property
    def regex(self) -> re.Pattern:
        return re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", self.pattern) + "$")


def route(method: str, pattern: str, name: str | None = None, auth: bool = True, limited: bool = True):
    """Declare a vendor method as the handler of ``method pattern``."""
    def mark(handler: Callable) -> Callable:
        handler.__sandbox_route__ = Route(  # type: ignore[attr-defined]  # the mark Vendor builds its routes from
            method.upper(), pattern, name or f"{method.upper()} {pattern}", handler.__name__, auth, limited)
        return handler
    return mark


class Vendor:
    """Base of every vendor module's class; see the module docstring for the contract."""

    name: ClassVar[str] = "vendor"
    tls: ClassVar[bool] = False
    ids: ClassVar[IdScheme] = IdScheme()
    tiers: ClassVar[tuple[str, ...]] = ("default",)
    activity_history_ms: ClassVar[int] = YEAR_MS
    """How far before the tenant's anchor generated activities reach (``Tenant(activity_history_ms=...)``)."""

    def __init__(self, crm: Crm, faults: Faults, tokens: Tokens, tier: str | None = None):
        self.crm, self.faults, self.tokens = crm, faults, tokens
        self.tier = tier or self.tiers[0]
        if self.tier not in self.tiers:
            raise ValueError(f"{self.name} has no tier {self.tier!r}; expected one of {', '.join(self.tiers)}")
        self.limits: Limits | None = None

    @classmethod
    def routes(cls) -> list[Route]:
        return [attr.__sandbox_route__ for attr in vars_of(cls) if hasattr(attr, "__sandbox_route__")]

    def windows(self) -> list[Window]:
        """The vendor's rate-limit windows for ``self.tier`` (real figures)."""
        return []

    def credentials(self) -> dict:
        return {"access_token": self.tokens.current}

    def authenticate(self, request: Request) -> None:
        if not self.tokens.is_valid(request.bearer):
            raise self.unauthorized()

    def unauthorized(self) -> VendorError:
        return self.error(401, "Authentication credentials not found or expired.")

    def error(self, status: int, message: str, **context) -> VendorError:
        return VendorError(status, {"message": message, **context})

    def throttled(self, verdict: Verdict) -> VendorError:
        return self.error(429, f"Rate limit {verdict.refused_by.name} reached.")

    def limit_headers(self, verdict: Verdict) -> dict[str, str]:
        return {}

    def limit_scope(self, request: Request) -> str | None:
        """The scope this authenticated call counts under (``Window.scope``); None: unscoped windows only."""
        return None

    def contact_index(self, contact_id: str) -> int:
        """The index of a contact named on the wire; the vendor's 404 when there is none."""
        try:
            return self.crm.index_of(contact_id)
        except UnknownContact:
            raise self.error(404, f"Object not found. objectId are usually numeric. ({contact_id})") from None


def vars_of(cls: type) -> list:
    seen, found = set(), []
    for klass in cls.__mro__:
        for key, value in vars(klass).items():
            if key not in seen:
                seen.add(key)
                found.append(value)
    return found


class Router:
    """Finds the route of a call: exact paths by dict, parametrised ones by regex."""

    def __init__(self, routes: list[Route]):
        self._exact: dict[tuple[str, str], Route] = {}
        self._patterns: list[tuple[str, re.Pattern, Route]] = []
        for r in routes:
            if "{" in r.pattern:
                self._patterns.append((r.method, r.regex, r))
            else:
                self._exact[(r.method, r.pattern)] = r
        # Literal segments beat parameters: "/batch/read" must not match "/{id}".
        self._patterns.sort(key=lambda item: item[2].pattern.count("{"))

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]] | None:
        path = path.rstrip("/") or "/"  # SDKs add a trailing slash to some collection paths
        found = self._exact.get((method, path))
        if found:
            return found, {}
        for route_method, regex, r in self._patterns:
            if route_method == method:
                hit = regex.match(path)
                if hit:
                    return r, hit.groupdict()
        return None


@dataclass
class Outcome:
    """What the connection handler must do: send ``response`` unless ``fault`` drops or cuts it."""

    response: Response
    fault: Fault | None = None


class Dispatcher:
    """Runs one call through faults, authentication, rate limits and the vendor's handler."""

    def __init__(self, vendor: Vendor, limits: Limits, stats: Stats, admin: Admin, stopping: threading.Event):
        self.vendor, self.limits, self.stats, self.admin = vendor, limits, stats, admin
        self.router = Router(vendor.routes())
        self.stopping = stopping

    def dispatch(self, request: Request) -> Outcome:
        if request.path.startswith("/_sandbox/"):
            return Outcome(self.admin.handle(request))
        found = self.router.match(request.method, request.path)
        if found is None:
            response = self.vendor.error(404, f"Unknown route {request.method} {request.path}").response
            self.stats.record("unmatched", 404)
            return Outcome(response)
        route_, request.params = found
        # A name may hold path parameters ("{object_type}.list"), so each object type counts apart.
        request.route = route_.name.format(**request.params) if "{" in route_.name else route_.name
        route_ = replace(route_, name=request.route)
        fault = self.vendor.faults.take(route_.name)
        if fault and fault.kind is FaultKind.STATUS:
            return Outcome(self._injected(route_, fault))
        if fault and fault.kind is FaultKind.HANG:
            self.stopping.wait(fault.seconds)
        if fault and fault.kind is FaultKind.DROP and not fault.applied:
            self.stats.record(route_.name, 0)
            return Outcome(Response(), fault)
        response, throttled = self._answer(route_, request)
        self.stats.record(route_.name, 0 if fault and fault.kind is FaultKind.DROP else response.status, throttled)
        return Outcome(response, fault)

    def _injected(self, route_: Route, fault: Fault) -> Response:
        if fault.body is None:
            response = self.vendor.error(fault.status, f"Injected fault: {fault.status}").response
        else:
            response = Response(fault.status, fault.body)
        response.headers.update(fault.headers)
        self.stats.record(route_.name, response.status, throttled=fault.status == 429)
        return response

    def _answer(self, route_: Route, request: Request) -> tuple[Response, bool]:
        vendor, verdict = self.vendor, None
        try:
            if route_.auth:
                vendor.authenticate(request)
                vendor.faults.authenticated_call()
            if route_.limited:
                verdict = self.limits.admit(route_.name, vendor.limit_scope(request))
                if not verdict.allowed:
                    raise vendor.throttled(verdict)
            response = as_response(getattr(vendor, route_.handler_name)(request))
        except VendorError as exc:
            response = exc.response
        except BadRequestBody as exc:
            response = vendor.error(400, str(exc)).response
        except Exception:  # a handler bug must still answer, in the vendor's shape
            log.error("sandbox handler %s failed:\n%s", route_.name, traceback.format_exc())
            response = vendor.error(500, "internal error").response
        if verdict is not None:
            response.headers = {**vendor.limit_headers(verdict), **response.headers}
        return response, verdict is not None and not verdict.allowed


def as_response(result: Any) -> Response:
    return result if isinstance(result, Response) else Response(200, result)


def client_writes(crm: Crm, vendor: object) -> dict:
    """What clients wrote to the CRM: every contact's id, the ``leadpulse*`` values of those that have any, and the
    tasks created through the API as the vendor's ``created_tasks`` gives them (None for a vendor without it)."""
    values = {}
    for index in range(crm.size):
        written = {k: v for k, v in crm.record(index).items() if k.lower().startswith("leadpulse")}
        if written:
            values[crm.id_of(index)] = written
    created_tasks = getattr(vendor, "created_tasks", None)
    return {"contacts": [crm.id_of(index) for index in range(crm.size)], "properties": values,
            "tasks": created_tasks() if created_tasks else None}


class Admin:
    """The ``/_sandbox/`` routes: faults, stats, limits and CRM edits over HTTP."""

    def __init__(self, crm: Crm, faults: Faults, limits: Limits, stats: Stats, vendor: object = None):
        self.crm, self.faults, self.limits, self.stats, self.vendor = crm, faults, limits, stats, vendor

    def handle(self, request: Request) -> Response:
        action = (request.method, request.path[len("/_sandbox"):].rstrip("/"))
        try:
            body = request.json() if request.body else {}
            result = self._do(action, body or {})
        except (BadRequestBody, KeyError, TypeError, ValueError) as exc:
            return Response(400, {"error": f"bad admin request: {exc!r}"})
        return Response(404, {"error": f"no admin route {action}"}) if result is None else Response(200, result)

    def _do(self, action: tuple[str, str], body: dict) -> dict | None:
        if action == ("GET", "/stats"):
            return self.stats.snapshot()
        if action == ("POST", "/faults"):
            fault = Fault(FaultKind(body.get("kind", "status")), status=int(body.get("status", 500)),
                          seconds=float(body.get("seconds", 0)), body=body.get("body"))
            self.faults.inject(body["route"], fault, int(body.get("times", 1)))
        elif action == ("POST", "/faults/records"):
            times = body.get("times")
            self.faults.fail_records(body["ids"], int(body.get("status", 400)), body.get("message"), body.get("code"),
                                     None if times is None else int(times))
        elif action == ("POST", "/faults/batches"):
            self.faults.fail_batches(body["route"], int(body.get("times", 1)), int(body.get("status", 400)),
                                     body.get("message"), body.get("code"))
        elif action == ("POST", "/faults/token"):
            self.faults.expire_token_after(int(body["calls"]))
        elif action == ("DELETE", "/faults"):
            self.faults.clear()
        elif action == ("POST", "/limits"):
            self._limits(body)
        elif action == ("POST", "/crm/touch"):
            return {"ids": self.crm.touch(int(body["count"]), int(body.get("seed", 0)))}
        elif action == ("POST", "/crm/activities"):
            for contact_id in body["ids"]:
                self.crm.add_activity(str(contact_id), body["kind"], **body.get("fields", {}))
        elif action == ("GET", "/crm/written"):
            return client_writes(self.crm, self.vendor)
        else:
            return None
        return {"ok": True}

    def _limits(self, body: dict) -> None:
        if "enabled" in body:
            self.limits.enable() if body["enabled"] else self.limits.disable()
        if "name" in body:
            self.limits.tune(body["name"], body.get("limit"), body.get("seconds"))


class _Connection(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 120  # an idle keep-alive connection releases its thread after this
    server: SandboxHTTPServer

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if isinstance(self.connection, ssl.SSLSocket):
            self.connection.do_handshake()

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except (ConnectionError, ssl.SSLError, TimeoutError):
            self.close_connection = True

    def _serve(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        request = Request(self.command, parts.path, parse_qs(parts.query, keep_blank_values=True),
                          self.headers, self.rfile.read(length) if length else b"")
        outcome = self.server.dispatcher.dispatch(request)
        if outcome.fault and outcome.fault.kind is FaultKind.DROP:
            self.close_connection = True
            return
        self._send(outcome.response, cut=bool(outcome.fault and outcome.fault.kind is FaultKind.TRUNCATE))

    def _send(self, response: Response, cut: bool) -> None:
        payload = response.payload()
        lines = [f"HTTP/1.1 {response.status} {self.responses.get(response.status, ('',))[0]}",
                 f"Date: {self.date_time_string()}",  # the server's clock, as every HTTP server sends it
                 f"Content-Type: {response.content_type}", f"Content-Length: {len(payload)}"]
        lines += [f"{key}: {value}" for key, value in response.headers.items()]
        if cut:
            payload = payload[: len(payload) // 2]
            self.close_connection = True
            lines.append("Connection: close")
        self.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

    def log_message(self, format: str, *args) -> None:
        log.debug("%s " + format, self.address_string(), *args)


class SandboxHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 128

    def __init__(self, dispatcher: Dispatcher, port: int = 0, tls: ssl.SSLContext | None = None):
        super().__init__(("127.0.0.1", port), _Connection)
        self.dispatcher = dispatcher
        if tls is not None:
            # The handshake runs in the connection's own thread, so a slow client cannot stall accept().
            self.socket = tls.wrap_socket(self.socket, server_side=True, do_handshake_on_connect=False)

    @property
    def port(self) -> int:
        return self.server_address[1]

    def handle_error(self, request, client_address) -> None:
        log.debug("sandbox connection from %s failed", client_address, exc_info=True)
