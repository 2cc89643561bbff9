"""The fetching layer (monitor/fetch/) against the real fixture server on 127.0.0.1.

Assertions look at both sides: what the Fetcher reports and what the server saw (requests,
headers, bytes sent, peak in-flight), with real tiny timeouts and no patched clocks.
"""

from __future__ import annotations

import asyncio
import gzip
import itertools
import socket
import ssl
import time
import uuid
import zlib
from collections.abc import Iterator
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import aiohttp
import brotli
import httpx
import pytest
import structlog.testing
from aiohttp import http_exceptions
from sqlalchemy import select

from monitor.config import HostSettings, HttpSettings, RemapRule, SafetySettings
from monitor.fetch.decode import Decoder
from monitor.fetch.errors import classify_exception
from monitor.fetch.fetcher import Fetcher
from monitor.fetch.guard import BlockedAddress
from monitor.fetch.headers import IMAGE_FIRST_WINDOW
from monitor.fetch.hosts import ProcessLimits
from monitor.run.check import run_check
from monitor.store.db import open_engine
from monitor.store.models import ResultRow, SizeCheckRow, UrlRow
from monitor.types import FetchFailure, FetchOutcome, Hop, Size, Target, TargetKind
from monitor.urls import host_key
from tests.h2server import H2Server
from tests.server import HTML, FixtureServer, Seen
from tests.test_check import JPEG, article, settings_for, write

PAGE, IMAGE = TargetKind.PAGE, TargetKind.IMAGE
LOOPBACK = SafetySettings(allow_cidrs=["127.0.0.0/8"])
FAST: dict[str, Any] = {
    "connect_timeout": 1.0,
    "read_timeout": 0.3,
    "total_timeout": 4.0,
    "backoff_base": 0.01,
    "backoff_max": 0.05,
    "max_retries": 2,
}


def http_settings(**overrides: Any) -> HttpSettings:
    return HttpSettings(**{**FAST, **overrides})


def target(url: str, kind: TargetKind = PAGE, **fields: Any) -> Target:
    return Target(url, host_key(url), kind, **fields)


async def fetch(
    server: FixtureServer,
    path: str,
    kind: TargetKind = PAGE,
    *,
    safety: SafetySettings = LOOPBACK,
    host: str = "127.0.0.1",
    **overrides: Any,
) -> FetchOutcome:
    async with Fetcher(http_settings(**overrides), safety) as fetcher:
        return await fetcher.fetch(target(server.url(path, host), kind))


def key() -> str:
    return uuid.uuid4().hex


async def settled(server: FixtureServer, prefix: str, count: int = 1) -> list[Seen]:
    """The server's records for ``prefix`` once ``count`` of them have finished (bounded wait)."""
    for _ in range(200):
        seen = server.requests(prefix)
        if len([s for s in seen if s.finished is not None]) >= count:
            return seen
        await asyncio.sleep(0.02)
    return server.requests(prefix)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- method: HEAD first, GET fallback ------------------------------------------------------------


async def test_page_that_answers_head_costs_one_head(server: FixtureServer) -> None:
    """A healthy page is checked with a single HEAD request and no body."""
    outcome = await fetch(server, "/status/200")
    assert (outcome.status, outcome.method, outcome.attempts, outcome.bytes_read) == (200, "HEAD", 1, 0)
    assert outcome.failure is None and outcome.redirects == ()
    assert [s.method for s in server.requests("/status/200")] == ["HEAD"]


@pytest.mark.parametrize("path", ["/head-405", "/head-404", "/status/200?head_status=501", "/head-hang"])
async def test_head_quirks_fall_back_to_get(server: FixtureServer, path: str) -> None:
    """HEAD answered with 405/404/501 or hanging past the read timeout is retried as GET."""
    outcome = await fetch(server, path)
    assert (outcome.status, outcome.method, outcome.failure) == (200, "GET", None)
    assert outcome.attempts == 2
    assert [s.method for s in server.requests(path.partition("?")[0])] == ["HEAD", "GET"]


async def test_get_page_reads_at_most_the_body_cap(server: FixtureServer) -> None:
    """A GET of a 10 MB page stops at page_body_cap and drops the connection (server sent far less)."""
    outcome = await fetch(server, "/big-page?head_status=405", page_body_cap=1000)
    assert (outcome.status, outcome.method, outcome.bytes_read) == (200, "GET", 1000)
    (get,) = [s for s in await settled(server, "/big-page", 2) if s.method == "GET"]
    assert get.bytes_sent < 2 * 1024 * 1024  # socket buffers only, nowhere near the 10 MB


async def test_body_cap_zero_reads_headers_only(server: FixtureServer) -> None:
    """page_body_cap = 0 means a GET fallback reads no body at all."""
    outcome = await fetch(server, "/head-405", page_body_cap=0)
    assert (outcome.status, outcome.method, outcome.bytes_read) == (200, "GET", 0)


# --- redirects ---------------------------------------------------------------------------------


async def test_redirect_chain_records_every_hop(server: FixtureServer) -> None:
    """Each hop is recorded with its status and absolute Location; final_url is the last URL."""
    outcome = await fetch(server, "/redirect/3?code=301")
    base = server.url("")
    assert outcome.status == 200 and outcome.failure is None
    assert outcome.redirects == (
        Hop(f"{base}/redirect/3?code=301", 301, f"{base}/redirect/2?code=301"),
        Hop(f"{base}/redirect/2?code=301", 301, f"{base}/redirect/1?code=301"),
        Hop(f"{base}/redirect/1?code=301", 301, f"{base}/redirect/0?code=301"),
    )
    assert outcome.final_url == f"{base}/redirect/0?code=301"
    assert outcome.url == f"{base}/redirect/3?code=301"


@pytest.mark.parametrize("code", [302, 307, 308])
async def test_redirect_status_and_method_are_kept(server: FixtureServer, code: int) -> None:
    """Temporary and permanent redirects stay distinguishable, and HEAD stays HEAD."""
    outcome = await fetch(server, f"/redirect-to/{code}?to=/status/200")
    assert [hop.status for hop in outcome.redirects] == [code]
    assert (outcome.status, outcome.method) == (200, "HEAD")


async def test_303_switches_to_get(server: FixtureServer) -> None:
    """A 303 See Other is followed with GET."""
    outcome = await fetch(server, "/redirect-to/303?to=/echo-headers")
    assert (outcome.status, outcome.method) == (200, "GET")
    assert [(s.method, s.path) for s in server.requests("/")] == [
        ("HEAD", "/redirect-to/303"),
        ("GET", "/echo-headers"),
    ]


async def test_relative_location_is_resolved(server: FixtureServer) -> None:
    """A relative Location is resolved against the URL that answered."""
    outcome = await fetch(server, "/redirect-relative")
    resolved = server.url("/status/200?via=relative")
    assert outcome.redirects == (Hop(server.url("/redirect-relative"), 302, resolved),)
    assert (outcome.final_url, outcome.status) == (resolved, 200)


async def test_redirect_loop_is_detected(server: FixtureServer) -> None:
    """A cycle is reported as REDIRECT_LOOP after one round, not followed until the hop limit."""
    outcome = await fetch(server, "/redirect-loop")
    assert (outcome.failure, outcome.status) == (FetchFailure.REDIRECT_LOOP, 302)
    assert [hop.status for hop in outcome.redirects] == [302, 302]
    assert outcome.final_url == server.url("/redirect-loop/b")
    assert len(server.requests("/redirect-loop")) == 2


async def test_too_many_redirects(server: FixtureServer) -> None:
    """More hops than max_redirects stop the chain with TOO_MANY_REDIRECTS."""
    outcome = await fetch(server, "/redirect/6", max_redirects=3)
    assert outcome.failure is FetchFailure.TOO_MANY_REDIRECTS
    assert len(outcome.redirects) == 4
    assert len(server.requests("/redirect/")) == 4


async def test_redirect_to_another_scheme_is_not_followed(server: FixtureServer) -> None:
    """A Location with a non-http(s) scheme is BAD_REDIRECT; the hop is kept, nothing else is fetched."""
    outcome = await fetch(server, "/redirect-scheme")
    assert outcome.failure is FetchFailure.BAD_REDIRECT
    assert outcome.status == 302
    assert outcome.redirects == (Hop(server.url("/redirect-scheme"), 302, "ftp://files.example/file.txt"),)
    assert len(server.requests("/")) == 1


async def test_cookie_then_redirect_to_self_is_not_a_loop(server: FixtureServer) -> None:
    """Cookies set during a chain are sent along it, and never carried into the next fetch."""
    first = await fetch(server, "/cookie-redirect")
    assert (first.status, first.failure, len(first.redirects)) == (200, None, 1)
    await fetch(server, "/cookie-redirect")
    cookies = [s.headers.get("cookie") for s in server.requests("/cookie-redirect")]
    assert cookies == [None, "seen=1", None, "seen=1"]


# --- retries, Retry-After, rate limiting ----------------------------------------------------------


async def test_transient_503_is_retried_until_it_recovers(server: FixtureServer) -> None:
    """Two 503s then 200: three GETs, attempts = 3, answer 200."""
    path = f"/flaky/2?key={key()}"
    outcome = await fetch(server, path, IMAGE)
    assert (outcome.status, outcome.attempts) == (200, 3)
    assert [s.method for s in server.requests("/flaky/")] == ["GET", "GET", "GET"]


async def test_page_retries_count_the_head_attempt(server: FixtureServer) -> None:
    """For a page the failed HEAD is attempt 1, then the GETs are retried."""
    outcome = await fetch(server, f"/flaky/2?key={key()}")
    assert (outcome.status, outcome.method, outcome.attempts) == (200, "GET", 3)
    assert [s.method for s in server.requests("/flaky/")] == ["HEAD", "GET", "GET"]


async def test_retries_stop_at_max_retries(server: FixtureServer) -> None:
    """A host that keeps failing gets exactly 1 + max_retries requests; the last answer is reported."""
    outcome = await fetch(server, f"/flaky/10?key={key()}", IMAGE, max_retries=2)
    assert (outcome.status, outcome.attempts, outcome.failure) == (503, 3, None)
    assert len(server.requests("/flaky/")) == 3


@pytest.mark.parametrize("path", ["/status/404", "/status/410", "/cf-challenge", "/999"])
async def test_permanent_answers_are_not_retried(server: FixtureServer, path: str) -> None:
    """4xx (and the 999 bot block) are answered once."""
    outcome = await fetch(server, path, IMAGE)
    assert outcome.attempts == 1
    assert len(server.requests(path)) == 1


async def test_retry_after_is_waited_for(server: FixtureServer) -> None:
    """A 429 with Retry-After: 1 makes the next request to the host wait at least one second."""
    outcome = await fetch(server, f"/retry-after/1?key={key()}")
    assert (outcome.status, outcome.attempts) == (200, 2)
    first, second = server.requests("/retry-after/")
    assert second.started - first.started >= 0.99
    assert outcome.elapsed_ms >= 990


@pytest.mark.parametrize("code", [429, 503])
async def test_retry_after_as_an_http_date_is_waited_for(server: FixtureServer, code: int) -> None:
    """``Retry-After: <HTTP date 2 s ahead>`` on a 429/503 is honoured: one retry, started only once
    the date has come (the date has whole seconds, so over 1 s later; backoff alone is <= 50 ms)."""
    outcome = await fetch(server, f"/retry-after/2?key={key()}&code={code}&date=1", IMAGE)
    assert (outcome.status, outcome.attempts, outcome.failure) == (200, 2, None)
    first, second = server.requests("/retry-after/")
    assert second.started - first.started >= 0.95


@pytest.mark.parametrize("code", [429, 503])
async def test_retry_after_as_an_http_date_pauses_the_host_by_the_parsed_delay(
    server: FixtureServer, code: int
) -> None:
    """The wait is derived from the date: the host is paused until then (no retry allowed here)."""
    async with Fetcher(http_settings(max_retries=0), LOOPBACK) as fetcher:
        outcome = await fetcher.fetch(
            target(server.url(f"/retry-after/3?key={key()}&code={code}&date=1"), IMAGE)
        )
        paused = fetcher.limiter.paused_for(host_key(server.url("")))
    assert (outcome.status, outcome.attempts, outcome.failure) == (code, 1, None)
    sent = outcome.headers["retry-after"]
    assert not sent.isdigit() and parsedate_to_datetime(sent).tzinfo is not None  # a date, as sent
    # the date is 2-3 s ahead of the answer (whole seconds), so it cannot ask for more than 3 s
    assert 1.0 < paused <= 3.0


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Every asyncio.sleep delay asked for during the test: proves a wait was (not) taken without a clock."""
    asked: list[float] = []
    real = asyncio.sleep

    async def recording(delay: float, result: Any = None) -> Any:
        asked.append(delay)
        return await real(delay, result)

    monkeypatch.setattr(asyncio, "sleep", recording)
    return asked


async def test_retry_after_beyond_the_cap_ends_retries(server: FixtureServer, sleeps: list[float]) -> None:
    """Asked to wait longer than retry_after_cap, the fetcher reports the 429 at once."""
    outcome = await fetch(server, f"/retry-after/30?key={key()}", IMAGE, retry_after_cap=1.0)
    assert (outcome.status, outcome.attempts, outcome.failure) == (429, 1, None)
    assert outcome.headers["retry-after"] == "30"
    assert [d for d in sleeps if d >= 0.5] == []  # no Retry-After wait was started
    assert len(server.requests("/retry-after/")) == 1


async def test_retry_after_beyond_the_deadline_ends_retries(
    server: FixtureServer, sleeps: list[float]
) -> None:
    """A wait that would overrun total_timeout is not started; the 503 is the answer."""
    outcome = await fetch(server, f"/retry-after/3?key={key()}&code=503", IMAGE, total_timeout=1.0)
    assert (outcome.status, outcome.attempts, outcome.failure) == (503, 1, None)
    assert [d for d in sleeps if d >= 0.5] == []


async def test_repeated_429_slow_the_host(server: FixtureServer) -> None:
    """Without Retry-After, each 429 spaces later requests to the host by the adaptive penalty."""
    async with Fetcher(http_settings(max_retries=3, backoff_max=0.08), LOOPBACK) as fetcher:
        outcome = await fetcher.fetch(target(server.url("/429-always"), IMAGE))
        assert fetcher.limiter.penalty(host_key(server.url(""))) == pytest.approx(0.08)
    assert (outcome.status, outcome.attempts) == (429, 4)
    starts = [s.started for s in server.requests("/429-always")]
    # 3 gaps of at least 80 ms each; server-side stamps may be late by scheduling jitter
    assert starts[-1] - starts[0] >= 0.2


# --- timeouts and broken connections -------------------------------------------------------------


async def test_slow_headers_time_out(server: FixtureServer) -> None:
    """Headers slower than read_timeout are a TIMEOUT, retried, within bounded time."""
    began = time.monotonic()
    outcome = await fetch(server, "/slow-headers/3000", IMAGE, read_timeout=0.2, max_retries=1)
    assert (outcome.failure, outcome.status, outcome.attempts) == (FetchFailure.TIMEOUT, None, 2)
    assert time.monotonic() - began >= 0.4  # both attempts waited out their read timeout


async def test_slow_drip_is_bounded_by_the_total_deadline(server: FixtureServer) -> None:
    """A body dripping faster than the read timeout but never ending is cut by total_timeout."""
    began = time.monotonic()
    outcome = await fetch(server, "/slow-drip?every_ms=50", IMAGE, total_timeout=0.8)
    elapsed = time.monotonic() - began
    assert outcome.failure is FetchFailure.TIMEOUT
    assert "total deadline of 0.8 s exceeded while reading the body" in outcome.failure_detail
    assert outcome.status == 200 and 3 <= outcome.bytes_read < 40
    assert elapsed >= 0.8  # the cut came at the deadline, not before


async def test_hang_after_headers_times_out(server: FixtureServer) -> None:
    """Headers then silence: the read timeout fires; the status seen is kept with the failure."""
    outcome = await fetch(server, "/hang-after-headers", IMAGE, read_timeout=0.2, max_retries=0)
    assert (outcome.failure, outcome.status, outcome.bytes_read) == (FetchFailure.TIMEOUT, 200, 0)


async def test_total_deadline_covers_waiting_for_a_host_slot(server: FixtureServer) -> None:
    """A fetch stuck behind a busy host slot times out at its host's deadline, never reaching the host."""
    host = host_key(server.url(""))
    settings = http_settings(per_host_concurrency=1, hosts={host: HostSettings(total_timeout=0.3)})
    async with Fetcher(settings, LOOPBACK) as fetcher, fetcher.limiter.slot(host):
        blocked = await fetcher.fetch(target(server.url("/status/200"), IMAGE))
    assert blocked.failure is FetchFailure.TIMEOUT
    assert blocked.failure_detail == "total deadline of 0.3 s exceeded while waiting for a host slot"
    assert blocked.elapsed_ms >= 300
    assert server.requests("/") == []


@pytest.mark.parametrize("path", ["/drop", "/reset"])
async def test_dropped_and_reset_connections_are_resets(server: FixtureServer, path: str) -> None:
    """A connection closed mid-headers or reset (RST) is RESET, and retried."""
    outcome = await fetch(server, path, IMAGE, max_retries=1)
    assert (outcome.failure, outcome.status, outcome.attempts) == (FetchFailure.RESET, None, 2)
    assert len(server.requests(path)) >= 2


async def test_refused_connection_is_not_retried() -> None:
    """Connection refused is CONNECT at once: no retry and no GET fallback after the HEAD."""
    async with Fetcher(http_settings(max_retries=3), LOOPBACK) as fetcher:
        outcome = await fetcher.fetch(target(f"http://127.0.0.1:{closed_port()}/x"))
        assert fetcher.stats.requests == 1
    assert (outcome.failure, outcome.attempts, outcome.method) == (FetchFailure.CONNECT, 1, "HEAD")
    assert "Cannot connect to host 127.0.0.1" in outcome.failure_detail


async def test_short_body_is_a_protocol_failure(server: FixtureServer) -> None:
    """A body shorter than its Content-Length is PROTOCOL, keeping status and the bytes that came."""
    outcome = await fetch(server, "/wrong-length?head_status=405", max_retries=0)
    assert (outcome.failure, outcome.status, outcome.bytes_read) == (FetchFailure.PROTOCOL, 200, 10)
    assert "content length" in outcome.failure_detail.lower()


async def test_oversized_headers_are_too_large(server: FixtureServer) -> None:
    """A header beyond max_header_bytes is TOO_LARGE (and not retried)."""
    outcome = await fetch(server, "/big-header?bytes=5000", IMAGE, max_header_bytes=2048)
    assert (outcome.failure, outcome.attempts) == (FetchFailure.TOO_LARGE, 1)


# --- decoding and caps ---------------------------------------------------------------------------


async def test_gzip_body_is_decoded(server: FixtureServer) -> None:
    """A gzip page is read decoded: bytes_read counts decoded bytes, more than arrived on the wire."""
    async with Fetcher(http_settings(), LOOPBACK) as fetcher:
        outcome = await fetcher.fetch(target(server.url("/gzip?head_status=405")))
        stats = fetcher.stats
    assert outcome.bytes_read == len(HTML * 200)
    assert outcome.headers["content-encoding"] == "gzip"
    assert stats.bytes_received < stats.bytes_read == outcome.bytes_read


@pytest.mark.parametrize("encoding", ["gzip", "br"])
async def test_compression_bomb_stops_at_the_cap(server: FixtureServer, encoding: str) -> None:
    """100 MB of compressed zeros are decoded only up to image_byte_cap; the rest is never inflated."""
    async with Fetcher(http_settings(image_byte_cap=64 * 1024), LOOPBACK) as fetcher:
        outcome = await fetcher.fetch(target(server.url(f"/gzip-bomb?enc={encoding}&type=image/png"), IMAGE))
        received = fetcher.stats.bytes_received
    assert outcome.bytes_read == 64 * 1024
    assert outcome.image is not None and outcome.image.error == "unreadable"
    assert received < 200 * 1024


def test_decoder_output_is_bounded_for_every_coding() -> None:
    """Each supported coding yields exactly the bytes asked for, never the whole inflated body."""
    plain = bytes(range(256)) * 4096  # 1 MB
    raw_deflate = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    bodies = {
        "gzip": gzip.compress(plain),
        "deflate": zlib.compress(plain),
        "br": brotli.compress(plain),
        "identity": plain,
        "x-unknown": plain,
    }
    for coding, body in bodies.items():
        assert Decoder(coding).decode(body, 1000) == plain[:1000], coding
    raw = raw_deflate.compress(plain) + raw_deflate.flush()
    assert Decoder("deflate").decode(raw, 5000) == plain[:5000]  # deflate without zlib wrapper
    assert Decoder("gzip, br").decode(b"stacked", 100) == b"stacked"  # passed through
    assert Decoder("gzip").decode(gzip.compress(plain), 0) == b""


# --- conditional requests ------------------------------------------------------------------------


async def test_etag_round_trip_gives_304(server: FixtureServer) -> None:
    """Validators are recorded, sent back as If-None-Match / If-Modified-Since, and 304 is not_modified."""
    first = await fetch(server, "/etag")
    assert (first.status, first.not_modified) == (200, False)
    assert (first.etag, first.last_modified) == ('"v1-5f3a"', "Wed, 21 Oct 2015 07:28:00 GMT")
    async with Fetcher(http_settings(), LOOPBACK) as fetcher:
        by_etag = await fetcher.fetch(target(server.url("/etag"), etag=first.etag))
        by_date = await fetcher.fetch(target(server.url("/etag"), IMAGE, last_modified=first.last_modified))
    assert (by_etag.status, by_etag.not_modified, by_etag.image) == (304, True, None)
    assert (by_date.status, by_date.not_modified, by_date.image) == (304, True, None)
    sent = server.requests("/etag")
    assert sent[1].headers["if-none-match"] == '"v1-5f3a"'
    assert sent[2].headers["if-modified-since"] == "Wed, 21 Oct 2015 07:28:00 GMT"


async def test_conditional_requests_can_be_turned_off(server: FixtureServer) -> None:
    """With conditional_requests = false no validator is sent and the full answer comes back."""
    async with Fetcher(http_settings(conditional_requests=False), LOOPBACK) as fetcher:
        outcome = await fetcher.fetch(target(server.url("/etag"), etag='"v1-5f3a"'))
    assert (outcome.status, outcome.not_modified) == (200, False)
    assert "if-none-match" not in server.requests("/etag")[0].headers


# --- images --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "fmt", "size"),
    [
        ("exif-orientation-examples/Landscape_6.jpg", "jpeg", (1800, 1200)),
        ("imagesize_py/test-rotated.jpg", "jpeg", (670, 802)),
        ("pngsuite/basn2c16.png", "png", (32, 32)),
        ("image-size/valid/gif/sample.gif", "gif", (123, 456)),
        ("image-size/valid/webp/lossless.webp", "webp", (123, 456)),
        ("image-size/valid/heif/sample.avif", "avif", (123, 456)),
        ("image-size/valid/svg/width-height.svg", "svg", (123, 456)),
        ("image-size/valid/bmp/sample.bmp", "bmp", (123, 456)),
        ("image-size/valid/ico/sample.ico", "ico", (32, 32)),
    ],
)
async def test_real_images_are_probed_with_a_range_request(
    server: FixtureServer, path: str, fmt: str, size: tuple[int, int]
) -> None:
    """Every format comes back with its displayed size, fetched with Range and read only to the header."""
    outcome = await fetch(server, f"/image/{path}", IMAGE)
    assert outcome.failure is None and outcome.status == 206
    assert outcome.image is not None and outcome.image.error is None
    assert (outcome.image.format, outcome.image.size) == (fmt, Size(*size))
    assert outcome.bytes_read <= 64 * 1024
    (seen,) = server.requests("/image/")
    assert seen.headers["range"] == f"bytes=0-{IMAGE_FIRST_WINDOW - 1}"  # a first window, not the whole cap


async def test_header_beyond_first_window_asks_for_the_rest(server: FixtureServer) -> None:
    """A TIFF whose directory sits past the first 64 KB gets one follow-up Range request, then its size."""
    outcome = await fetch(server, "/image/image-size/valid/tiff/big-endian.tiff", IMAGE)
    assert outcome.image is not None and outcome.image.error is None and outcome.image.format == "tiff"
    first, second = server.requests("/image/")
    assert first.headers["range"] == f"bytes=0-{IMAGE_FIRST_WINDOW - 1}"
    assert second.headers["range"] == f"bytes={IMAGE_FIRST_WINDOW}-{512 * 1024 - 1}"
    assert IMAGE_FIRST_WINDOW < outcome.bytes_read <= 226578


async def test_server_ignoring_range_still_stops_early(server: FixtureServer) -> None:
    """A 200 with the full 350 KB body is read only until the probe answers."""
    outcome = await fetch(server, "/image/exif-orientation-examples/Landscape_6.jpg?norange=1", IMAGE)
    assert outcome.status == 200 and outcome.image is not None and outcome.image.size is not None
    assert outcome.bytes_read < 64 * 1024


async def test_huge_image_is_cut_at_the_cap(server: FixtureServer) -> None:
    """20 MB without a size: the client stops at image_byte_cap and the server sends little more.

    The server counts what its socket accepted. With its send buffer shrunk to 16 KB (Linux
    doubles it), a 16 KB transport buffer, aiohttp's read-ahead (2 x 64 KB) and the client's
    kernel receive buffer, up to a few MB can be in flight beyond what the client read; 4 MB
    of allowance against 20 MB still proves the connection was dropped, not drained.
    """
    cap = 256 * 1024
    outcome = await fetch(server, "/huge-image", IMAGE, image_byte_cap=cap)
    assert outcome.image is not None and outcome.image.error == "unreadable"
    assert outcome.bytes_read <= cap
    (seen,) = await settled(server, "/huge-image")
    assert seen.bytes_sent < 4 * 1024 * 1024


async def test_huge_image_with_early_header_stops_at_the_header(server: FixtureServer) -> None:
    """When the size comes first, the first chunk answers and the 20 MB body is abandoned."""
    outcome = await fetch(server, "/huge-image?early=1", IMAGE)
    assert outcome.image is not None and outcome.image.size == Size(32, 16)
    assert outcome.bytes_read <= 64 * 1024
    (seen,) = await settled(server, "/huge-image")
    assert seen.bytes_sent < 4 * 1024 * 1024


@pytest.mark.parametrize("path", ["/html-as-image", "/empty"])
async def test_non_images_at_image_urls(server: FixtureServer, path: str) -> None:
    """HTML or an empty body where an image should be is reported by the probe as not_image."""
    outcome = await fetch(server, path, IMAGE)
    assert outcome.status == 200 and outcome.failure is None
    assert outcome.image is not None and outcome.image.error == "not_image"


async def test_unsatisfiable_range_is_retried_without_range(server: FixtureServer) -> None:
    """A 416 to the Range request is followed by one plain GET."""
    outcome = await fetch(server, "/empty", IMAGE)
    assert outcome.attempts == 2
    assert [s.headers.get("range") is not None for s in server.requests("/empty")] == [True, False]


async def test_image_404_is_not_probed(server: FixtureServer) -> None:
    """An error status carries no image facts."""
    outcome = await fetch(server, "/image/missing.png", IMAGE)
    assert (outcome.status, outcome.image) == (404, None)


# --- concurrency, politeness, deduplication -------------------------------------------------------


async def test_per_host_peak_in_flight_never_exceeds_the_limit(server: FixtureServer) -> None:
    """Two host keys (127.0.0.1 and localhost) each stay at their own limit; the global limit holds."""
    port = server.port
    settings = http_settings(
        concurrency=3, per_host_concurrency=2, hosts={f"localhost:{port}": HostSettings(concurrency=1)}
    )
    urls = [
        server.url(f"/slow-headers/60?i={i}", host) for i in range(6) for host in ("127.0.0.1", "localhost")
    ]
    async with Fetcher(settings, LOOPBACK) as fetcher:
        outcomes = await asyncio.gather(*(fetcher.fetch(target(url, IMAGE)) for url in urls))
        stats = fetcher.stats
    assert all(o.status == 200 for o in outcomes)
    assert server.peak_by_host() == {f"127.0.0.1:{port}": 2, f"localhost:{port}": 1}
    assert stats.host_peak_in_flight == {f"127.0.0.1:{port}": 2, f"localhost:{port}": 1}
    assert stats.peak_in_flight <= 3
    assert server.peak_by_route()["slow-headers"] == 3


async def test_fetchers_sharing_process_limits_keep_one_global_and_one_per_host_limit(
    server: FixtureServer,
) -> None:
    """Two fetchers at once (a worker's two shards) share ProcessLimits: the process as a whole
    keeps ``concurrency`` and each host its limit, at the server, not twice each."""
    port = server.port
    settings = http_settings(concurrency=3, per_host_concurrency=2)
    limits = ProcessLimits(settings)
    urls = [
        server.url(f"/slow-headers/60?i={i}", host) for i in range(8) for host in ("127.0.0.1", "localhost")
    ]
    async with (
        Fetcher(settings, LOOPBACK, limits=limits) as one,
        Fetcher(settings, LOOPBACK, limits=limits) as two,
    ):
        outcomes = await asyncio.gather(*(f.fetch(target(url, IMAGE)) for url in urls for f in (one, two)))
    assert [o.status for o in outcomes] == [200] * 32
    assert server.peak_by_host() == {f"127.0.0.1:{port}": 2, f"localhost:{port}": 2}
    assert server.peak_by_route()["slow-headers"] == 3


async def test_min_interval_spaces_requests_to_a_host(server: FixtureServer) -> None:
    """A per-host min_interval_ms spaces request starts on the server's clock."""
    settings = http_settings(hosts={host_key(server.url("")): HostSettings(min_interval_ms=80)})
    async with Fetcher(settings, LOOPBACK) as fetcher:
        await asyncio.gather(*(fetcher.fetch(target(server.url(f"/status/200?i={i}"))) for i in range(4)))
    starts = sorted(s.started for s in server.requests("/status/200"))
    # 3 gaps of at least 80 ms each; server-side stamps may be late by scheduling jitter
    assert starts[-1] - starts[0] >= 0.2


async def test_identical_fetches_in_flight_are_sent_once(server: FixtureServer) -> None:
    """20 concurrent fetch() calls of one URL send one request and share its outcome."""
    async with Fetcher(http_settings(), LOOPBACK) as fetcher:
        same = target(server.url("/slow-headers/100"), IMAGE)
        outcomes = await asyncio.gather(*(fetcher.fetch(same) for _ in range(20)))
        assert (fetcher.stats.fetches, fetcher.stats.deduplicated) == (1, 19)
        again = await fetcher.fetch(same)
    assert len(server.requests("/slow-headers/")) == 2  # finished fetches are not cached
    assert all(o is outcomes[0] for o in outcomes)
    assert again.status == outcomes[0].status == 200


async def test_cancelled_caller_does_not_cancel_the_shared_fetch(server: FixtureServer) -> None:
    """One waiter giving up leaves the shared fetch running for the others."""
    async with Fetcher(http_settings(), LOOPBACK) as fetcher:
        same = target(server.url("/slow-headers/150"), IMAGE)
        quitter = asyncio.create_task(fetcher.fetch(same))
        stayer = asyncio.create_task(fetcher.fetch(same))
        await asyncio.sleep(0.05)
        quitter.cancel()
        outcome = await stayer
    assert outcome.status == 200
    assert len(server.requests("/slow-headers/")) == 1


# --- SSRF guard ----------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_default_settings_refuse_loopback(server: FixtureServer, host: str) -> None:
    """Without an allowance, neither the literal nor a name resolving to it reaches the server."""
    outcome = await fetch(server, "/status/200", safety=SafetySettings(), host=host)
    assert outcome.failure is FetchFailure.BLOCKED_ADDRESS
    assert outcome.failure_detail == "127.0.0.1 is a loopback address"
    assert outcome.attempts == 1
    assert server.requests("/") == []


async def test_redirect_to_a_refused_address_is_blocked(server: FixtureServer) -> None:
    """allow_hosts for "localhost" only: its redirect to 127.0.0.1 is refused at that hop."""
    hop_target = server.url("/status/200")
    path = f"/redirect-to/302?to={hop_target}"
    outcome = await fetch(server, path, safety=SafetySettings(allow_hosts=["localhost"]), host="localhost")
    assert outcome.failure is FetchFailure.BLOCKED_ADDRESS
    assert outcome.failure_detail == "127.0.0.1 is a loopback address"
    assert outcome.redirects == (Hop(server.url(path, "localhost"), 302, hop_target),)
    assert [s.host for s in server.requests("/")] == [f"localhost:{server.port}"]


@pytest.mark.parametrize("http2", [False, True], ids=["default", "http2"])
async def test_proxy_with_trusted_dns_resolves_nothing_and_literals_are_still_guarded(
    server: FixtureServer, http2: bool
) -> None:
    """trust_proxy_dns: a name is not resolved here (the proxy does it), while a private IP literal
    is still refused before anything is sent; the proxy itself may be on a private address."""
    safety = SafetySettings(trust_proxy_dns=True)
    async with Fetcher(http_settings(proxy=server.url(""), http2=http2), safety) as fetcher:
        named = await fetcher.fetch(target("http://origin.example/status/200"))
        literal = await fetcher.fetch(target("http://10.1.2.3/status/200"))
    assert (named.status, named.failure) == (200, None)
    (seen,) = server.requests("/")
    assert (seen.proxied, seen.host, seen.path) == (True, "origin.example", "/status/200")
    assert (literal.failure, literal.failure_detail) == (
        FetchFailure.BLOCKED_ADDRESS,
        "10.1.2.3 is a private address",
    )


def _fake_dns(monkeypatch: pytest.MonkeyPatch, answers: dict[str, str]) -> list[str]:
    """The loop's getaddrinfo answers from ``answers`` (no DNS query leaves the machine); the
    names asked come back in the returned list, and any other name does not resolve."""
    asked: list[str] = []

    async def getaddrinfo(self: Any, host: str, port: Any, **_: Any) -> list[Any]:
        asked.append(host)
        if host not in answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (answers[host], port or 0))]

    monkeypatch.setattr(asyncio.base_events.BaseEventLoop, "getaddrinfo", getaddrinfo)
    return asked


@pytest.mark.parametrize("http2", [False, True], ids=["default", "http2"])
async def test_proxy_names_are_resolved_here_first(
    server: FixtureServer, http2: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Behind a proxy (default safety) a name is resolved here before the request goes to the proxy:
    a public answer is sent on, a private one is refused, an unresolvable name is a DNS failure."""
    asked = _fake_dns(
        monkeypatch,
        {"public.example": "93.184.215.14", "inside.example": "10.9.8.7", "127.0.0.1": "127.0.0.1"},
    )
    async with Fetcher(http_settings(proxy=server.url(""), http2=http2), SafetySettings()) as fetcher:
        public = await fetcher.fetch(target("http://public.example/status/200"))
        inside = await fetcher.fetch(target("http://inside.example/status/200"))
        again = await fetcher.fetch(target("http://inside.example/status/204"))
        missing = await fetcher.fetch(target("http://missing.example/status/200"))
    assert (public.status, public.failure) == (200, None)
    assert (inside.failure, inside.failure_detail) == (
        FetchFailure.BLOCKED_ADDRESS,
        "10.9.8.7 is a private address (an address of inside.example)",
    )
    assert again.failure is FetchFailure.BLOCKED_ADDRESS
    assert missing.failure is FetchFailure.DNS
    assert [(s.proxied, s.host) for s in server.requests("/")] == [(True, "public.example")]
    assert asked.count("inside.example") == 1  # the answer is kept for a while
    assert "missing.example" in asked


# --- headers, user agent, remap, redaction -------------------------------------------------------


async def test_per_host_headers_stay_with_their_host(server: FixtureServer) -> None:
    """A host's own headers and user agent are not forwarded across a cross-host redirect."""
    port = server.port
    settings = http_settings(
        headers={"X-Team": "links"},
        hosts={f"localhost:{port}": HostSettings(headers={"X-Secret": "s3cr3t"}, user_agent="special/1")},
    )
    url = server.url(f"/redirect-to/302?to={server.url('/echo-headers')}", "localhost")
    async with Fetcher(settings, LOOPBACK) as fetcher:
        outcome = await fetcher.fetch(target(url, IMAGE))
    assert outcome.status == 200
    first, second = server.requests("/")
    assert (first.headers["x-secret"], first.headers["x-team"], first.headers["user-agent"]) == (
        "s3cr3t",
        "links",
        "special/1",
    )
    assert second.path == "/echo-headers" and second.host == f"127.0.0.1:{port}"
    assert "x-secret" not in second.headers
    assert second.headers["x-team"] == "links"
    assert second.headers["user-agent"] == settings.user_agent


async def test_request_headers_are_polite_and_complete(server: FixtureServer) -> None:
    """Requests carry the user agent, an image Accept, supported encodings and the Range."""
    await fetch(server, "/echo-headers", IMAGE, user_agent="probe/9")
    (seen,) = server.requests("/echo-headers")
    assert seen.headers["user-agent"] == "probe/9"
    assert seen.headers["accept"].startswith("image/")
    assert seen.headers["accept-encoding"] == "gzip, deflate, br"
    assert "cookie" not in seen.headers


async def test_remap_fetches_the_rewritten_url(server: FixtureServer) -> None:
    """The first matching remap rule decides what is fetched; the outcome keeps the article's URL."""
    rules = [
        RemapRule(pattern=r"^https://nowhere\.example/", replacement=server.url("/status/404?")),
        RemapRule(pattern=r"^https://old\.example/(.*)$", replacement=server.url(r"/\1")),
        RemapRule(pattern=r"^https://old\.example/", replacement="http://never.example/"),
    ]
    async with Fetcher(http_settings(remap=rules), LOOPBACK) as fetcher:
        outcome = await fetcher.fetch(target("https://old.example/status/200"))
    assert (outcome.url, outcome.final_url, outcome.status) == (
        "https://old.example/status/200",
        server.url("/status/200"),
        200,
    )
    assert len(server.requests("/status/200")) == 1


async def test_credentials_never_reach_the_outcome(server: FixtureServer) -> None:
    """Userinfo and secret-looking query values are redacted in hops, final_url and headers."""
    url = server.url("/redirect-secret").replace("http://", "http://user:hunter2@")
    async with Fetcher(http_settings(), LOOPBACK) as fetcher:
        outcome = await fetcher.fetch(target(url))
    text = repr(outcome.redirects) + str(outcome.final_url) + repr(outcome.headers)
    assert outcome.status == 200
    assert "hunter2" not in text and "abc123" not in text
    assert outcome.final_url == server.url("/status/200?token=***&page=2")
    first, second = server.requests("/")
    assert first.headers["authorization"] == "Basic dXNlcjpodW50ZXIy"  # used on its own URL only
    assert "authorization" not in second.headers


# --- http2 = true: HTTP/2 where a TLS server offers it, the same guard and judging -------------


@pytest.fixture(scope="module")
def h2() -> Iterator[H2Server]:
    server = H2Server().start()
    yield server
    server.stop()


async def fetch_h2(
    h2: H2Server, path: str, kind: TargetKind = PAGE, host: str = "127.0.0.1", **overrides: Any
) -> FetchOutcome:
    settings = http_settings(http2=True, **{"verify_tls": False, **overrides})
    async with Fetcher(settings, LOOPBACK) as fetcher:
        return await fetcher.fetch(target(h2.url(path, host), kind))


async def test_http2_pages_head_then_get_over_one_h2_server(h2: H2Server) -> None:
    """The server speaks only HTTP/2, so an answer proves the protocol; a failed HEAD still falls
    back to GET, and a redirect is followed hop by hop."""
    ok = await fetch_h2(h2, "/status/200?a")
    assert (ok.status, ok.method, ok.failure) == (200, "HEAD", None)
    missing = await fetch_h2(h2, "/status/404?b")
    assert (missing.status, missing.method) == (404, "GET")
    moved = await fetch_h2(h2, "/redirect?c")
    assert moved.status == 200 and [hop.status for hop in moved.redirects] == [301]
    assert moved.final_url == h2.url("/status/200")
    assert ("HEAD", "/status/200?a") in h2.seen
    assert [m for m, p in h2.seen if p == "/status/404?b"] == ["HEAD", "GET"]


async def test_http2_image_size_is_read_from_the_stream(h2: H2Server) -> None:
    outcome = await fetch_h2(h2, "/image/pngsuite/basi0g16.png", IMAGE)
    assert outcome.status == 200 and outcome.image is not None
    assert (outcome.image.format, outcome.image.size) == ("png", Size(32, 32))


async def test_http2_verifies_certificates_unless_told_not_to(h2: H2Server) -> None:
    """TLS verification stays on by default: the self-signed test certificate is refused."""
    outcome = await fetch_h2(h2, "/status/200?verify", verify_tls=True)
    assert outcome.status is None and outcome.failure is FetchFailure.TLS


async def test_http2_transport_keeps_the_address_guard(h2: H2Server) -> None:
    """A name resolving to loopback is refused by the guard, as with the default transport."""
    settings = http_settings(http2=True, verify_tls=False)
    async with Fetcher(settings, SafetySettings()) as fetcher:
        outcome = await fetcher.fetch(target(h2.url("/status/200?guard", "localhost")))
    assert outcome.failure is FetchFailure.BLOCKED_ADDRESS
    assert ("HEAD", "/status/200?guard") not in h2.seen


async def test_http2_setting_still_checks_plain_http_over_http11(server: FixtureServer) -> None:
    """Cleartext URLs stay on HTTP/1.1 (no h2c), with no warning."""
    with structlog.testing.capture_logs() as logs:
        outcome = await fetch(server, "/status/200?h2c", http2=True)
    assert (outcome.status, outcome.failure) == (200, None)
    assert not [entry for entry in logs if entry["log_level"] in ("warning", "error")]


async def test_invalid_url_is_reported_not_raised() -> None:
    """A target that is not an absolute http(s) URL is INVALID_URL without any request."""
    async with Fetcher(http_settings(), LOOPBACK) as fetcher:
        outcome = await fetcher.fetch(target("mailto:someone@example.com"))
        assert fetcher.stats.requests == 0
    assert outcome.failure is FetchFailure.INVALID_URL


async def test_bot_protection_headers_are_kept(server: FixtureServer) -> None:
    """The markers verdict.py needs (cf-mitigated, server) survive into outcome.headers."""
    outcome = await fetch(server, "/cf-challenge", IMAGE)
    assert outcome.status == 403
    assert outcome.headers["cf-mitigated"] == "challenge"
    assert outcome.headers["server"] == "cloudflare"


# --- the one exception mapping -------------------------------------------------------------------


def _raised(outer: BaseException, *causes: BaseException) -> BaseException:
    """``outer`` with ``causes`` chained below it as ``raise ... from ...`` would."""
    chain = [outer, *causes]
    for upper, lower in itertools.pairwise(chain):
        upper.__cause__ = lower
    return outer


def _conn_key() -> Any:
    from aiohttp.client_reqrep import ConnectionKey

    return ConnectionKey("nosuch.example", 443, True, True, None, None, None)


@pytest.mark.parametrize(
    ("exc", "failure"),
    [
        (
            _raised(
                httpx.ConnectTimeout("x"),
                aiohttp.ClientConnectorDNSError(
                    _conn_key(), socket.gaierror(-2, "Name or service not known")
                ),
                socket.gaierror(-2, "Name or service not known"),
            ),
            FetchFailure.DNS,
        ),
        (_raised(httpx.ConnectTimeout("x"), ConnectionRefusedError(111, "refused")), FetchFailure.CONNECT),
        (_raised(httpx.ConnectTimeout("x"), aiohttp.ServerDisconnectedError()), FetchFailure.RESET),
        (_raised(httpx.ReadError("x"), ConnectionResetError(104, "reset by peer")), FetchFailure.RESET),
        (
            _raised(httpx.ReadTimeout("x"), aiohttp.SocketTimeoutError("Timeout on reading")),
            FetchFailure.TIMEOUT,
        ),
        (httpx.ReadTimeout("read timed out"), FetchFailure.TIMEOUT),
        (ssl.SSLCertVerificationError(1, "certificate verify failed"), FetchFailure.TLS),
        (_raised(httpx.ReadError("x"), aiohttp.ClientPayloadError("not completed")), FetchFailure.PROTOCOL),
        (http_exceptions.LineTooLong(b"x" * 10, 8190), FetchFailure.TOO_LARGE),
        (http_exceptions.BadHttpMessage("Too many headers received"), FetchFailure.TOO_LARGE),
        (zlib.error("invalid stored block lengths"), FetchFailure.PROTOCOL),
        (OSError(113, "No route to host"), FetchFailure.CONNECT),
        (httpx.InvalidURL("bad"), FetchFailure.INVALID_URL),
        (
            _raised(httpx.ConnectTimeout("x"), BlockedAddress("10.0.0.1 is a private address")),
            FetchFailure.BLOCKED_ADDRESS,
        ),
    ],
)
def test_exceptions_map_to_failures(exc: BaseException, failure: FetchFailure) -> None:
    """The innermost cause decides, whatever an adapter wrapped it in."""
    assert classify_exception(exc)[0] is failure


def test_failure_details_are_redacted_and_bounded() -> None:
    """URLs inside exception messages lose credentials; details are one bounded line."""
    exc = httpx.ConnectError("failed for https://bob:pa55@h.example/a?api_key=k3y\n" + "x" * 500)
    failure, detail = classify_exception(exc)
    assert failure is FetchFailure.CONNECT
    assert "pa55" not in detail and "k3y" not in detail and "\n" not in detail
    assert len(detail) <= 300


def test_blocked_address_detail_is_the_guard_message() -> None:
    """The guard's sentence is the detail, not aiohttp's wrapper text."""
    blocked = BlockedAddress("127.0.0.1 is a loopback address")
    exc = _raised(httpx.ConnectTimeout("x"), aiohttp.ClientConnectorDNSError(_conn_key(), blocked), blocked)
    assert classify_exception(exc) == (FetchFailure.BLOCKED_ADDRESS, "127.0.0.1 is a loopback address")


@pytest.mark.parametrize(
    "url",
    ["http://example.com/a?b=c", "https://EXAMPLE.com:8443/x/y", "http://[::1]:8080/", "http://bücher.de/ä"],
)
@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_bodyless_request_is_the_request_httpx_would_build(url: str, method: str) -> None:
    """Same method, URL, headers in the same order (Host first) and an empty body; headers of its own."""
    from monitor.fetch.transport import bodyless_request

    headers = httpx.Headers([(b"User-Agent", b"t/1"), (b"Accept", b"*/*"), (b"X-Name", "ä".encode())])
    ours = bodyless_request(method, httpx.URL(url), headers)
    theirs = httpx.Request(method, httpx.URL(url), headers=headers)
    assert (ours.method, ours.url, ours.headers.raw) == (theirs.method, theirs.url, theirs.headers.raw)
    assert ours.read() == theirs.read() == b""
    ours.headers["Cookie"] = "a=b"
    assert "cookie" not in headers
    with_host = httpx.Headers({"Host": "mirror.internal", "Accept": "*/*"})
    assert (
        bodyless_request(method, httpx.URL(url), with_host).headers.raw
        == httpx.Request(method, httpx.URL(url), headers=with_host).headers.raw
    )


# --- 304 Not Modified over a whole run -------------------------------------------------------------


def test_an_image_answering_304_keeps_its_probed_size(server: FixtureServer, tmp_path: Path) -> None:
    """Run 1 probes the image (200 with an ETag); run 2 re-checks it with If-None-Match, gets 304
    and reads no body, yet the stored result and the size check keep the size probed in run 1."""
    image = f"{JPEG}?k={key()}"  # 1800x1200, declared here as 900x600: "scaled"
    write(tmp_path, "a.md", article(server, webUrl="/status/200", images=f"{image}@900x600"))
    settings = settings_for(tmp_path)
    engine = open_engine(settings.database_url)
    asyncio.run(run_check(settings, engine))
    asyncio.run(run_check(settings, engine))
    first, second = server.requests(image)
    assert "if-none-match" not in first.headers
    assert second.headers["if-none-match"].startswith('"img-')
    with engine.connect() as conn:
        results = conn.execute(
            select(
                ResultRow.not_modified,
                ResultRow.bytes_read,
                ResultRow.image_format,
                ResultRow.image_width,
                ResultRow.image_height,
            )
            .join(UrlRow, UrlRow.id == ResultRow.url_id)
            .where(UrlRow.url == server.url(image))
            .order_by(ResultRow.run_id)
        ).all()
        checks = conn.execute(
            select(SizeCheckRow.verdict, SizeCheckRow.actual_width, SizeCheckRow.actual_height).order_by(
                SizeCheckRow.run_id
            )
        ).all()
    (probed, kept) = results
    assert probed[0] is False and probed[1] > 0 and probed[2:] == ("jpeg", 1800, 1200)
    assert kept[0] is True and kept[1] == 0 and kept[2:] == ("jpeg", 1800, 1200)
    assert checks == [("scaled", 1800, 1200), ("scaled", 1800, 1200)]
