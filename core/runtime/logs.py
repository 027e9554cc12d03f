"""Structured logging: readable lines on a terminal, JSON lines otherwise, never a secret.

Every line a run logs carries the tenant and the run id, taken from context variables that `run_context`
sets (they follow the thread that runs the sync, so parallel tenants never mix). A redaction filter on the
handler masks every secret value registered with `register_secrets` and the common token shapes (bearer
tokens, JWTs, HubSpot private-app tokens, Salesforce session ids, ``password=...``), in the message, its
arguments and any traceback, before anything is formatted.

Usage::

    logs.configure()                                  # once, at process start
    logs.register_secrets(tenant.resolve_secrets().values())
    with logs.run_context(tenant=tenant.name, run_id=run_id):
        log.info("pulled %d contacts", n)
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import sys
import threading
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import IO

MASK = "***"

#: values shorter than this are not masked: masking "a" would shred every line; such a secret is refused
#: nowhere else, so it is a weak secret, not a reason to corrupt logs
MIN_SECRET_LENGTH = 4

tenant_var: ContextVar[str | None] = ContextVar("leadpulse_tenant", default=None)
run_id_var: ContextVar[str | None] = ContextVar("leadpulse_run_id", default=None)

# Shapes that look like credentials even when nobody registered them (a token echoed in an SDK error).
_TOKEN_SHAPES = [
    re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}"),
    re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"),  # JWT
    re.compile(r"\bpat-[a-z]{2,3}\d?-[0-9a-f-]{20,}"),  # HubSpot private-app token
    re.compile(r"\b00D[A-Za-z0-9]{12,15}![A-Za-z0-9._]{20,}"),  # Salesforce session id
    re.compile(
        r"(?i)([\"']?\b(?:access_token|refresh_token|api_token|client_secret|password|passwd|secret|token|"
        r"authorization|api_key|apikey)[\"']?\s*[:=]\s*[\"']?)([^\s\"'&,;}]{3,})"
    ),
]


class _SecretRegistry:
    """Process-wide set of secret values to mask; a daemon masks every tenant's secrets on every line."""

    def __init__(self) -> None:
        self._values: frozenset[str] = frozenset()
        self._lock = threading.Lock()

    def add(self, values: Iterable[str]) -> None:
        fresh = {v for v in values if isinstance(v, str) and len(v) >= MIN_SECRET_LENGTH}
        with self._lock:
            self._values = self._values | fresh

    def clear(self) -> None:
        with self._lock:
            self._values = frozenset()

    def values(self) -> list[str]:
        # longest first, so a secret containing another is masked whole
        return sorted(self._values, key=len, reverse=True)


_secrets = _SecretRegistry()


def register_secrets(values: Iterable[str]) -> None:
    """Mask these values (resolved tokens, passwords, keys) in every log line from now on."""
    _secrets.add(values)


def forget_secrets() -> None:
    """Drop every registered value. For tests."""
    _secrets.clear()


def redact(text: str) -> str:
    """`text` with every registered secret and every token-shaped string replaced by ``***``."""
    for value in _secrets.values():
        if value in text:
            text = text.replace(value, MASK)
    for shape in _TOKEN_SHAPES:
        text = shape.sub(lambda m: m.group(1) + MASK, text) if shape.groups >= 2 else shape.sub(MASK, text)
    return text


@contextlib.contextmanager
def run_context(*, tenant: str | None = None, run_id: str | None = None) -> Iterator[None]:
    """Tag every line logged inside the block (in this thread) with `tenant` and `run_id`."""
    tokens = []
    if tenant is not None:
        tokens.append((tenant_var, tenant_var.set(tenant)))
    if run_id is not None:
        tokens.append((run_id_var, run_id_var.set(run_id)))
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


def bind_run_id(run_id: str) -> None:
    """Tag the rest of the current context with `run_id`: for code that learns its run id mid-way."""
    run_id_var.set(run_id)


class ContextFilter(logging.Filter):
    """Copies the tenant and run id of the current context onto the record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.tenant = getattr(record, "tenant", None) or tenant_var.get()
        record.run_id = getattr(record, "run_id", None) or run_id_var.get()
        return True


class RedactingFilter(logging.Filter):
    """Masks secrets in the rendered message and traceback, so no formatter can leak them."""

    _exc_formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._exc_formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


_STANDARD_ATTRS = set(vars(logging.LogRecord("x", 0, "x", 0, "x", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, tenant, run_id, and any `extra=` fields."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "tenant": getattr(record, "tenant", None),
            "run_id": getattr(record, "run_id", None),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and key not in line:
                line[key] = value
        if record.exc_text:
            line["exception"] = record.exc_text
        return redact(json.dumps(line, default=str))


class TextFormatter(logging.Formatter):
    """``12:03:04 INFO  [acme run=3f2a] pulled 120 contacts`` for people at a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        when = datetime.fromtimestamp(record.created).strftime("%H:%M:%S")
        tags = " ".join(
            part
            for part in (getattr(record, "tenant", None), _run_tag(getattr(record, "run_id", None)))
            if part
        )
        text = f"{when} {record.levelname:<5} " + (f"[{tags}] " if tags else "") + record.getMessage()
        if record.exc_text:
            text += "\n" + record.exc_text
        return redact(text)


def _run_tag(run_id: str | None) -> str | None:
    return f"run={run_id}" if run_id else None


def configure(
    *, level: int | str = logging.INFO, stream: IO[str] | None = None, json_lines: bool | None = None
) -> logging.Handler:
    """Send the process's logs to `stream` (stderr): text on a terminal, JSON lines otherwise.

    Replaces handlers installed by an earlier call, so it is safe to call again (tests, a reload).
    """
    if json_lines is None:
        json_lines = not _isatty(stream or sys.stderr)
    handler = logging.StreamHandler(stream) if stream is not None else _Stderr()
    handler.addFilter(ContextFilter())
    handler.addFilter(RedactingFilter())
    handler.setFormatter(JsonFormatter() if json_lines else TextFormatter())
    handler.set_name("leadpulse")
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == "leadpulse"]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    return handler


class _Stderr(logging.StreamHandler):  # type: ignore[type-arg]
    """A handler writing to whatever `sys.stderr` is when a record is emitted, not the one it was made with: a
    command run in-process after another (tests, through click's runner) must not write to a stream since closed."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> IO[str]:
        return sys.stderr

    @stream.setter
    def stream(self, value: IO[str]) -> None:
        pass


def _isatty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
