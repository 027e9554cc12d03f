"""Structured logs: JSON lines off a terminal, text on one, tenant and run id on every line, no secret ever."""

from __future__ import annotations

import io
import json
import logging
import threading

import pytest

from leadpulse.core.runtime import logs


@pytest.fixture
def capture():
    stream = io.StringIO()
    handler = logs.configure(stream=stream, json_lines=True)
    yield stream
    logging.getLogger().removeHandler(handler)
    logs.forget_secrets()


def lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_stream_that_is_not_a_terminal_gets_json_lines():
    stream = io.StringIO()
    handler = logs.configure(stream=stream)
    try:
        logging.getLogger("leadpulse.t").info("hello %s", "there")
    finally:
        logging.getLogger().removeHandler(handler)
    assert json.loads(stream.getvalue())["message"] == "hello there"


def test_a_terminal_gets_readable_lines_with_tenant_and_run():
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Tty()
    handler = logs.configure(stream=stream)
    try:
        with logs.run_context(tenant="acme", run_id="7"):
            logging.getLogger("leadpulse.t").info("pulled 3 contacts")
    finally:
        logging.getLogger().removeHandler(handler)
    assert "INFO  [acme run=7] pulled 3 contacts" in stream.getvalue()


def test_every_line_of_a_run_carries_its_tenant_and_run_id(capture):
    log = logging.getLogger("leadpulse.t")
    with logs.run_context(tenant="acme", run_id="42"):
        log.info("one")
        log.warning("two")
    log.info("outside")
    first, second, outside = lines(capture)
    assert (first["tenant"], first["run_id"]) == ("acme", "42")
    assert (second["tenant"], second["run_id"]) == ("acme", "42")
    assert (outside["tenant"], outside["run_id"]) == (None, None)


def test_parallel_runs_in_threads_keep_their_own_tenant(capture):
    def run(name: str) -> None:
        with logs.run_context(tenant=name, run_id=name + "-run"):
            for _ in range(50):
                logging.getLogger("leadpulse.t").info("working on %s", name)

    threads = [threading.Thread(target=run, args=(n,)) for n in ("a", "b", "c")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(line["message"].endswith(line["tenant"]) for line in lines(capture))


def test_a_registered_secret_is_masked_in_message_arguments_and_tracebacks(capture):
    secret = "s3cr3t-value-91f"
    logs.register_secrets([secret])
    log = logging.getLogger("leadpulse.t")
    log.info("token is %s", secret)
    try:
        raise RuntimeError(f"login failed with {secret}")
    except RuntimeError:
        log.exception("failed")
    text = capture.getvalue()
    assert secret not in text
    assert text.count(logs.MASK) >= 2


@pytest.mark.parametrize(
    "leak",
    [
        "Authorization: Bearer abcdefghijklmnop1234",
        "pat-na1-0a1b2c3d-4e5f-6789-abcd-ef0123456789",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
        "00D5g000004ABCD!AQ0AQH3jk2l4m5n6o7p8q9r0s1t2u3v4w5x6y7z",
        "password=hunter2hunter2",
        '{"access_token": "ya29.a0AfH6SMBx"}',
    ],
)
def test_token_shapes_are_masked_even_when_nobody_registered_them(capture, leak):
    logging.getLogger("leadpulse.t").error("request failed: %s", leak)
    message = lines(capture)[0]["message"]
    assert logs.MASK in message
    secret_part = leak.split("=")[-1].split(": ")[-1].split(" ")[-1].strip('"}')
    assert secret_part not in message


def test_a_short_value_is_not_taken_for_a_secret():
    logs.register_secrets(["ab"])
    try:
        assert logs.redact("table tab") == "table tab"
    finally:
        logs.forget_secrets()


def test_extra_fields_travel_in_the_json_line(capture):
    logging.getLogger("leadpulse.t").info("run done", extra={"outcome": "ok", "tenant": "acme"})
    line = lines(capture)[0]
    assert (line["outcome"], line["tenant"]) == ("ok", "acme")
