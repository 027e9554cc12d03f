"""The daemon's HTTP face: ``/healthz``, ``/readyz`` and ``/metrics`` on one small threaded server.

``/healthz`` answers 200 while the process and its scheduler are alive (a liveness probe restarts it
otherwise); ``/readyz`` answers 200 once the config directory has been loaded and the scheduler runs, and
503 while it drains on SIGTERM; ``/metrics`` is the Prometheus exposition of `leadpulse.core.runtime.metrics`.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from leadpulse.core.runtime import metrics


@dataclass(frozen=True)
class Probe:
    """Answers the two questions the probes ask; each returns (ok, detail)."""

    alive: Callable[[], tuple[bool, str]]
    ready: Callable[[], tuple[bool, str]]


class HealthServer:
    """Serves the probes and metrics on `host:port` from a background thread until `stop`."""

    def __init__(self, probe: Probe, *, host: str = "127.0.0.1", port: int = 9464) -> None:
        self.probe = probe
        handler = type("_Handler", (_Handler,), {"probe": probe})
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="health", daemon=True)
        self._stopped = False

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def start(self) -> HealthServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()


class _Handler(BaseHTTPRequestHandler):
    probe: Probe

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self._send(200, metrics.render(), metrics.CONTENT_TYPE)
        elif path == "/healthz":
            self._answer(*self.probe.alive())
        elif path == "/readyz":
            self._answer(*self.probe.ready())
        else:
            self._send(404, b"not found: try /healthz, /readyz or /metrics\n", "text/plain")

    def _answer(self, ok: bool, detail: str) -> None:
        body = json.dumps({"ok": ok, "detail": detail}).encode() + b"\n"
        self._send(200 if ok else 503, body, "application/json")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        # probes hit this every few seconds: their access lines would drown the sync logs
        pass


def check(url: str, timeout: float) -> tuple[bool, str]:
    """GET `url`; healthy means a 2xx answer within `timeout` seconds."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            return 200 <= answer.status < 300, f"{answer.status}"
    except urllib.error.HTTPError as error:
        return False, f"{error.code} {error.read().decode(errors='replace').strip()}"
    except OSError as error:
        return False, str(error)


def main(argv: list[str] | None = None) -> int:
    """``python -m leadpulse.core.runtime.health``: the container's health check (slim images have no curl)."""
    parser = argparse.ArgumentParser(prog="python -m leadpulse.core.runtime.health",
                                     description="Exit 0 if the daemon is healthy.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9464)
    parser.add_argument("--path", default="/healthz", choices=["/healthz", "/readyz"])
    parser.add_argument("--timeout", type=float, default=4.0)
    args = parser.parse_args(argv)
    url = f"http://{args.host}:{args.port}{args.path}"
    ok, detail = check(url, args.timeout)
    if not ok:
        print(f"leadpulse not healthy: {url}: {detail}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
