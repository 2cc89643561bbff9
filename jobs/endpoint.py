"""The daemon's HTTP endpoint: ``/metrics`` (Prometheus exposition) and ``/healthz``.

Off unless ``metrics.listen``; bound to ``metrics.address`` (loopback by default). It runs
in a thread of its own so a scrape never waits on the event loop that checks URLs, and it
serves only what the collectors already hold: a scrape costs no query. ``/healthz`` does
one ``SELECT 1`` and says whether the last nightly run is older than
``jobs.nightly_check.max_age_hours``; it answers 503 only when the database is unreachable,
so a liveness probe does not restart a daemon for a stale corpus (``monitor status`` exits
non-zero for that).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import structlog
from prometheus_client import CONTENT_TYPE_LATEST

from monitor.run.metrics import Metrics

log = structlog.get_logger("monitor.jobs")

Health = Callable[[], tuple[bool, dict[str, Any]]]


class Endpoint:
    """A started HTTP server; ``port`` is the bound one (``metrics.port = 0`` picks a free port)."""

    def __init__(self, metrics: Metrics, health: Health, address: str, port: int) -> None:
        handler = _handler(metrics, health)
        self._server = ThreadingHTTPServer((address, port), handler)
        self._server.daemon_threads = True
        self.address = address
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics-http", daemon=True)

    def start(self) -> Endpoint:
        self._thread.start()
        log.info("metrics.listening", address=self.address, port=self.port)
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


def _handler(metrics: Metrics, health: Health) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._reply(200, CONTENT_TYPE_LATEST, metrics.render())
            elif path == "/healthz":
                ok, body = health()
                self._reply(200 if ok else 503, "application/json", json.dumps(body).encode())
            else:
                self._reply(404, "text/plain; charset=utf-8", b"not found: try /metrics or /healthz\n")

        def _reply(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # scrapes are not log events
            return

    return Handler
