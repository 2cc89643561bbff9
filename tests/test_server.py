"""The fixture server's standalone (benchmark) mode: totals only, so a long benchmark does not grow it."""

from __future__ import annotations

import json
import urllib.request

from tests.server import FixtureServer


def _get(url: str, method: str = "GET") -> bytes:
    with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=10) as resp:
        return resp.read()


def test_standalone_mode_keeps_totals_not_requests() -> None:
    server = FixtureServer(keep_requests=False).start()
    try:
        _get(server.url("/status/200"))
        _get(server.url("/page/1"), "HEAD")
        _get(server.url("/stats"))  # /stats itself is never counted
        stats = json.loads(_get(server.url("/stats")))
        assert server.requests() == []
        assert stats["requests"] == 2
        assert stats["bytes_sent"] > len(b"status 200\n")  # head and body of the GET, head of the HEAD
        assert 0 < stats["service_s"] < 5
    finally:
        server.stop()
