"""Fixture HTTP/1.1 server for the fetch tests and the benchmarks: real sockets on 127.0.0.1.

Raw asyncio streams with keep-alive, so every misbehaviour is expressible (hang after headers,
RST, a body shorter than its Content-Length) and the server stays cheap enough to benchmark
against. It records every request (method, target, Host, headers, bytes sent) and the peak
number of requests in flight per Host header and per route, so tests assert on what the
checker actually did to the server, not only on what it reported.

In pytest: ``FixtureServer().start()`` runs it in a background thread. Standalone (benchmark):
``python -m tests.server --port 8080 --latency-ms 50`` prints ``READY <port> ...`` and serves
until interrupted.

Routes: /status/{code} /head-405 /head-404 /head-hang /redirect/{n}[?code=] /redirect-to/{code}?to=
/redirect-relative /redirect-loop /redirect-scheme /redirect-secret /slow-headers/{ms} /slow-drip
/hang-after-headers /drop /reset /wrong-length /gzip /gzip-bomb[?enc=br] /etag /flaky/{n}?key=
/retry-after/{s}?key=[&code=&date=1] /429-always[?retry_after=] /cf-challenge /999
/c/[s/]{host}{path} (an AMP cache: 200 until set_switch("amp-cache", 404 or 301: to the origin))
/wall/{kind}[/…][?switch=KEY] (bot walls, see WALLS; with ``switch`` a 200 page until set_switch(KEY, n))
/image/{path}[?norange=1] /huge-image[?early=1] /html-as-image /empty /big-page /big-header?bytes=
/echo-headers /cookie-redirect /gone/{story path}?to=[&code=] (a removed story's redirect) /site/{any path}
and / (200 pages of a site) /forget-counters (benchmarks: flaky and retry-after fail again)
/wayback/available?url= (an archive's availability API, see ``_r_wayback``).
Soft 404s: /soft/… answers every path 200: a story (last segment ``story-…``, ``huge-…``: 10 MB)
or else the same "not found" template; /pages/story-… is a story and any other /pages/ path a 404
(both take ``?title=`` for the story's title). A made-up URL (last segment ending ``-not-a-page``,
the checker's soft-404 probe) is a 404 on every route but /soft/: the other routes' parametric
paths stand for real pages of healthy sites.
Any route answers HEAD with ``?head_status=N`` (to force the GET fallback). Requests in absolute
form (``GET http://any.example/status/200``) are served as a forward proxy would, marked ``proxied``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import json
import mimetypes
import random
import socket
import struct
import threading
import time
import zlib
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from email.utils import formatdate, parsedate_to_datetime
from http import HTTPStatus
from pathlib import Path
from urllib.parse import parse_qs, unquote

IMAGES = Path(__file__).parent / "data" / "images"
ETAG = '"v1-5f3a"'
LAST_MODIFIED = "Wed, 21 Oct 2015 07:28:00 GMT"
HUGE_BYTES = 20 * 1024 * 1024
BIG_PAGE_BYTES = 10 * 1024 * 1024
BOMB_BYTES = 100 * 1024 * 1024
CHUNK = 64 * 1024
HANG_SECONDS = 30.0  # "forever" for a test, yet bounded so a stray connection cannot outlive a run
SMALL_SNDBUF = 16 * 1024  # keeps kernel buffering small on the large-body routes (Linux doubles it)
HTML = b"<!doctype html><html><head><title>fixture</title></head><body><p>hello</p></body></html>\n"
PAGE = (
    b"<!doctype html><html><head><title>news</title></head><body>"
    + b"<p>"
    + b"x" * 49000
    + b"</p></body></html>\n"
)

# Bot walls as their vendors answer: status, headers, page title (a real-looking page around it).
WALLS: dict[str, tuple[int, list[tuple[str, str]], str]] = {
    "cf-page": (503, [("Server", "cloudflare"), ("cf-ray", "8a1b2c3d4e5f-AMS")], "Just a moment..."),
    "cf-block": (403, [("Server", "cloudflare")], "Attention Required! | Cloudflare"),
    "cf-403": (
        403,
        [("Server", "cloudflare"), ("cf-ray", "8a1b2c3d4e5f-AMS")],
        "403 Forbidden",
    ),  # not a wall
    "akamai": (403, [("Server", "AkamaiGHost")], "Access Denied"),
    "akamai-grn": (403, [("akamai-grn", "0.1c2e3b17.1700000000.2ac4f0b1")], "Access Denied"),
    "datadome": (403, [("x-datadome", "protected"), ("Server", "nginx")], "example.com"),
    "aws-waf": (405, [("x-amzn-waf-action", "captcha")], "Human Verification"),
    "linkedin": (999, [], "Request denied"),
}
MADE_UP = "-not-a-page"  # monitor.fetch.soft404.PROBE_SUFFIX
SITE_TOP = (
    "<header><a href='/'>Fixture News</a> <nav><a href='/world'>World</a> <a href='/sport'>Sport</a>"
    " <a href='/culture'>Culture</a> <a href='/weather'>Weather</a></nav> Subscribe to our newsletter"
    " for the best of Fixture News every morning in your inbox</header>"
)
SITE_FOOT = (
    "<footer>About us Contact Careers Advertise with us Privacy policy Cookie settings Terms of use"
    " Copyright 2024 Fixture News Media Group all rights reserved</footer>"
)
_VOCABULARY = (
    "city council budget river bridge school teachers union vote election mayor health hospital "
    "storm flood rescue police court judge trial market shares bank inflation energy prices farmers "
    "harvest drought festival music film director award museum gallery football match goal coach "
    "league season injury transfer research university study scientists climate ocean forest fire "
    "wildlife airport flights railway strike workers factory jobs housing rent tenants minister"
)
_WORDS = _VOCABULARY.split()


def story_html(slug: str, title: str | None, *, size: int = 0) -> bytes:
    """A story page of the soft-404 fixture sites: the site's header and footer around ~300 words
    of text that depend on ``slug``; ``size`` pads the page to that many bytes."""
    rng = random.Random(slug)
    text = " ".join(rng.choice(_WORDS) for _ in range(300))
    heading = title or slug.replace("-", " ").title()
    page = (
        f"<!doctype html><html><head><title>{heading} | Fixture News</title>"
        f'<meta property="og:title" content="{heading}"></head><body>{SITE_TOP}'
        f"<article><h1>{heading}</h1><p>{text}</p></article>{SITE_FOOT}</body></html>\n"
    ).encode()
    if size > len(page):
        page = page.replace(
            b"</article>", b"<p>" + b"more words " * ((size - len(page)) // 11) + b"</p></article>"
        )
    return page


def not_found_html(path: str) -> bytes:
    """The soft-404 site's "not found" page: one template, echoing the path and a request id."""
    request_id = sum(path.encode()) * 7919 % 1000003
    return (
        "<!doctype html><html><head><title>Page not found | Fixture News</title></head><body>"
        f"{SITE_TOP}<main><h1>Sorry, we could not find that page</h1><p>The page {path} may have"
        " been moved, renamed or deleted. Try searching our archive, or browse the latest"
        " headlines from the sections above. If you followed a link from another site, please let"
        f" them know it is out of date.</p><p>Reference {request_id}</p></main>{SITE_FOOT}"
        "</body></html>\n"
    ).encode()


_BOMBS: dict[str, bytes] = {}
_BOMB_LOCK = threading.Lock()


def _bomb(encoding: str) -> bytes:
    """100 MB of zeros, compressed (about 100 KB of gzip); built once per process."""
    with _BOMB_LOCK:
        if encoding not in _BOMBS:
            zeros = bytes(1 << 20)
            if encoding == "br":
                import brotli

                _BOMBS[encoding] = brotli.compress(zeros * (BOMB_BYTES >> 20), quality=5)
            else:
                packer = zlib.compressobj(9, zlib.DEFLATED, 31)
                parts = [packer.compress(zeros) for _ in range(BOMB_BYTES >> 20)]
                _BOMBS[encoding] = b"".join(parts) + packer.flush()
        return _BOMBS[encoding]


@dataclass(slots=True)
class Seen:
    """One request as the server saw it."""

    method: str
    target: str
    host: str
    headers: dict[str, str]
    started: float
    epoch: int = 0
    proxied: bool = False  # asked in absolute form, as a client asks a forward proxy
    bytes_sent: int = 0
    finished: float | None = None

    @property
    def path(self) -> str:
        return self.target.partition("?")[0]


@dataclass(slots=True)
class _Request:
    method: str
    target: str
    headers: dict[str, str]
    parts: list[str]
    query: dict[str, str]

    def q(self, name: str, default: str = "") -> str:
        return self.query.get(name, default)


@dataclass(slots=True)
class _Stats:
    in_flight: Counter[str] = field(default_factory=Counter)
    peak: dict[str, int] = field(default_factory=dict)

    def enter(self, key: str) -> None:
        self.in_flight[key] += 1
        self.peak[key] = max(self.peak.get(key, 0), self.in_flight[key])

    def leave(self, key: str) -> None:
        self.in_flight[key] -= 1


class _Conn:
    """One client connection: writes count towards the current request's ``bytes_sent``."""

    __slots__ = ("answered", "reader", "record", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.record: Seen | None = None
        self.answered = True

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()
        if self.record is not None:
            self.record.bytes_sent += len(data)

    def small_buffers(self) -> None:
        """Shrink send buffering so bytes counted as sent are close to bytes the client took."""
        sock = self.writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SMALL_SNDBUF)
        self.writer.transport.set_write_buffer_limits(high=CHUNK // 4)


def _head(status: int, headers: list[tuple[str, str]], reason: str | None = None) -> bytes:
    if reason is None:
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = "Unknown"
    lines = [f"HTTP/1.1 {status} {reason}"] + [f"{k}: {v}" for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


Handler = Callable[[_Conn, _Request], Awaitable[bool]]


class FixtureServer:
    """The server; state is read from the test thread, mutated only on the server's loop."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        latency_ms: float = 0.0,
        listeners: int = 1,
        extra_hosts: tuple[str, ...] = (),
        keep_requests: bool = True,
    ) -> None:
        """``keep_requests=False`` (the benchmarks' standalone server) keeps only the totals of
        ``/stats``, so a long benchmark neither grows the server's memory nor slows its GC."""
        self.host = host
        self.keep_requests = keep_requests
        self.extra_hosts = extra_hosts
        self.requested_port = port
        self.latency = latency_ms / 1000
        self.listeners = listeners
        self.ports: list[int] = []
        self._lock = threading.Lock()
        self._seen: list[Seen] = []
        self._by_host = _Stats()
        self._by_route = _Stats()
        self._counters: Counter[str] = Counter()
        self._switches: dict[str, int] = {}
        self.connections = 0  # accepted TCP connections (keep-alive reuse shows as few)
        self._totals = {"requests": 0, "bytes_sent": 0, "service_s": 0.0}  # all but /stats
        self._host_busy: dict[str, list[float]] = {}  # Host header -> [requests, service seconds]
        self._first_at: float | None = None  # time.time() of the first request (see /forget-counters)
        self._epoch = 0  # requests from before the last reset() no longer count as in flight
        self._servers: list[asyncio.Server] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopping: asyncio.Event | None = None
        self._routes: dict[str, Handler] = {
            name.removeprefix("_r_").replace("_", "-"): getattr(self, name)
            for name in dir(self)
            if name.startswith("_r_")
        }
        self._routes["429-always"] = self._r_always_429
        self._routes["999"] = self._r_status_999
        self._routes[""] = self._r_site  # the site root

    # --- test-facing API --------------------------------------------------------------

    @property
    def port(self) -> int:
        return self.ports[0]

    def url(self, path: str, host: str = "127.0.0.1", listener: int = 0) -> str:
        return f"http://{host}:{self.ports[listener]}{path}"

    def requests(self, prefix: str = "", *, probes: bool = False) -> list[Seen]:
        """Requests seen so far (finished or not) whose target starts with ``prefix``; the checker's
        soft-404 probes (made-up URLs, see MADE_UP) only with ``probes=True``, so tests about other
        things count the requests for their URLs."""
        with self._lock:
            seen = [s for s in self._seen if s.target.startswith(prefix)]
        return seen if probes else [s for s in seen if not s.path.endswith(MADE_UP)]

    def peak_by_host(self) -> dict[str, int]:
        """Most requests in flight at once, per Host header."""
        with self._lock:
            return dict(self._by_host.peak)

    def peak_by_route(self) -> dict[str, int]:
        """Most requests in flight at once, per first path segment ("slow-headers")."""
        with self._lock:
            return dict(self._by_route.peak)

    def in_flight(self) -> int:
        with self._lock:
            return sum(self._by_host.in_flight.values())

    def set_switch(self, key: str, status: int) -> None:
        """Make ``/switch/<key>`` answer ``status`` from now on (a URL that changes between runs)."""
        with self._lock:
            self._switches[key] = status

    def reset(self) -> None:
        """Forget recorded requests, peaks and per-key counters (between tests)."""
        with self._lock:
            self._seen.clear()
            self._by_host = _Stats()
            self._by_route = _Stats()
            self._counters.clear()
            self._switches.clear()
            self._epoch += 1

    def start(self) -> FixtureServer:
        """Serve from a daemon thread; returns once the sockets listen."""
        ready = threading.Event()
        errors: list[BaseException] = []

        def run() -> None:
            try:
                asyncio.run(self.serve(ready))
            except BaseException as exc:  # surfaced to the starting thread
                errors.append(exc)
                ready.set()

        self._thread = threading.Thread(target=run, name="fixture-server", daemon=True)
        self._thread.start()
        ready.wait(10)
        if errors:
            raise errors[0]
        return self

    def stop(self) -> None:
        loop, stopping = self._loop, self._stopping
        if loop is not None and stopping is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stopping.set)
        if self._thread is not None:
            self._thread.join(10)

    async def serve(self, ready: threading.Event | None = None) -> None:
        """Listen until ``stop()`` (or cancellation); ``ready`` is set once ports are known."""
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        for index in range(self.listeners):
            port = self.requested_port + index if self.requested_port else 0
            server = await asyncio.start_server(self._connection, self.host, port, limit=256 * 1024)
            self._servers.append(server)
            self.ports.append(server.sockets[0].getsockname()[1])
        for extra in self.extra_hosts:  # more loopback addresses on the first port: distinct host names
            server = await asyncio.start_server(self._connection, extra, self.ports[0], limit=256 * 1024)
            self._servers.append(server)
        if ready is not None:
            ready.set()
        try:
            await self._stopping.wait()
        finally:
            for server in self._servers:
                server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    # --- connection handling ----------------------------------------------------------

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)  # type: ignore[arg-type]
        conn = _Conn(reader, writer)
        self.connections += 1
        try:
            while await self._one_request(conn):
                pass
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            pass
        except asyncio.CancelledError:
            pass  # server shutting down; ending quietly keeps asyncio from logging the cancellation
        finally:
            self._tasks.discard(task)  # type: ignore[arg-type]
            if not writer.transport.is_closing():
                writer.close()

    async def _one_request(self, conn: _Conn) -> bool:
        try:
            head = await conn.reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            return False
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = [*lines[0].split(" ", 2), "", ""][:3]
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        proxied = target.startswith(("http://", "https://"))
        if proxied:  # act as a forward proxy that happens to be the origin too
            target = "/" + target.split("/", 3)[3] if target.count("/") >= 3 else "/"
        length = int(headers.get("content-length", "0") or 0)
        if length:
            await conn.reader.readexactly(length)
        path, _, query = target.partition("?")
        parts = [unquote(p) for p in path.strip("/").split("/")]
        request = _Request(method, target, headers, parts, {k: v[0] for k, v in parse_qs(query).items()})
        host, route = headers.get("host", ""), parts[0]
        with self._lock:
            record = Seen(method, target, host, headers, time.monotonic(), self._epoch, proxied)
            if self.keep_requests:
                self._seen.append(record)
            self._by_host.enter(host)
            self._by_route.enter(route)
        conn.record, conn.answered = record, False
        try:
            if self.latency:
                await asyncio.sleep(self.latency)
            handler = self._routes.get(route, self._r_not_found)
            if parts[-1].endswith(MADE_UP) and route != "soft":
                handler = self._r_not_found
            if method == "HEAD" and "head_status" in request.query:  # any route can refuse HEAD
                keep = await self._respond(conn, request, int(request.q("head_status")))
            else:
                keep = await handler(conn, request)
        finally:
            self._answered(conn)
            record.finished = time.monotonic()
            conn.record = None
            if route not in ("stats", "forget-counters"):
                with self._lock:
                    if self._first_at is None:
                        self._first_at = time.time() - (record.finished - record.started)
                    self._totals["requests"] += 1
                    self._totals["bytes_sent"] += record.bytes_sent
                    self._totals["service_s"] += record.finished - record.started
                    busy = self._host_busy.setdefault(host, [0, 0.0])
                    busy[0] += 1
                    busy[1] += record.finished - record.started
        return keep and headers.get("connection", "").lower() != "close"

    def _answered(self, conn: _Conn) -> None:
        """The request stops counting as in flight (once).

        Called just before the last write: the client cannot see the answer, free its slot and
        start another request before this runs, so server-side peaks never overstate what the
        client had in flight (a late count after the write would, on a busy machine).
        """
        if conn.answered or conn.record is None:
            return
        conn.answered = True
        host, route = conn.record.host, conn.record.path.strip("/").split("/")[0]
        with self._lock:
            if conn.record.epoch != self._epoch:
                return
            self._by_host.leave(host)
            self._by_route.leave(route)

    async def _respond(
        self,
        conn: _Conn,
        req: _Request,
        status: int,
        body: bytes = b"",
        headers: list[tuple[str, str]] | None = None,
        content_type: str = "text/plain",
        reason: str | None = None,
    ) -> bool:
        fields = [("Content-Type", content_type), *(headers or [])]
        if status not in (204, 304) and status >= 200:
            fields.append(("Content-Length", str(len(body))))
        else:
            body = b""
        data = _head(status, fields, reason)
        self._answered(conn)
        await conn.send(data if req.method == "HEAD" else data + body)
        return True

    async def _stream(
        self, conn: _Conn, req: _Request, status: int, total: int, chunk: bytes, head: bytes, ctype: str
    ) -> bool:
        """Send ``head`` then ``chunk`` repeatedly up to ``total`` body bytes, with small buffers."""
        conn.small_buffers()
        await conn.send(_head(status, [("Content-Type", ctype), ("Content-Length", str(total))]))
        if req.method == "HEAD":
            return True
        await conn.send(head)
        left = total - len(head)
        while left > 0:
            piece = chunk[:left]
            await conn.send(piece)
            left -= len(piece)
        return True

    # --- routes -----------------------------------------------------------------------

    async def _r_not_found(self, conn: _Conn, req: _Request) -> bool:
        return await self._respond(conn, req, 404, b"no such route\n")

    async def _r_status(self, conn: _Conn, req: _Request) -> bool:
        code = int(req.parts[1]) if len(req.parts) > 1 and req.parts[1].isdigit() else 200
        return await self._respond(conn, req, code, f"status {code}\n".encode())

    async def _r_status_999(self, conn: _Conn, req: _Request) -> bool:
        return await self._respond(conn, req, 999, b"denied\n", reason="Request denied")

    async def _r_head_405(self, conn: _Conn, req: _Request) -> bool:
        if req.method == "HEAD":
            return await self._respond(conn, req, 405, headers=[("Allow", "GET")])
        return await self._respond(conn, req, 200, HTML, content_type="text/html")

    async def _r_head_404(self, conn: _Conn, req: _Request) -> bool:
        status = 404 if req.method == "HEAD" else 200
        return await self._respond(conn, req, status, HTML, content_type="text/html")

    async def _hang(self, conn: _Conn) -> None:
        """Say nothing until the client gives up (EOF) or HANG_SECONDS pass."""
        with contextlib.suppress(TimeoutError, ConnectionError):
            await asyncio.wait_for(conn.reader.read(1), HANG_SECONDS)

    async def _r_head_hang(self, conn: _Conn, req: _Request) -> bool:
        if req.method == "HEAD":
            await self._hang(conn)
            return False
        return await self._respond(conn, req, 200, HTML, content_type="text/html")

    async def _r_redirect(self, conn: _Conn, req: _Request) -> bool:
        left = int(req.parts[1]) if len(req.parts) > 1 else 1
        if left <= 0:
            return await self._respond(conn, req, 200, b"arrived\n")
        code = req.q("code", "302")
        nxt = f"/redirect/{left - 1}" + (f"?code={code}" if "code" in req.query else "")
        return await self._respond(conn, req, int(code), headers=[("Location", nxt)])

    async def _r_redirect_to(self, conn: _Conn, req: _Request) -> bool:
        code = int(req.parts[1]) if len(req.parts) > 1 else 302
        return await self._respond(conn, req, code, headers=[("Location", req.q("to", "/status/200"))])

    async def _r_gone(self, conn: _Conn, req: _Request) -> bool:
        """A removed story: whatever its path, a redirect (301 unless ``code``) to ``to`` (the root)."""
        code = int(req.q("code", "301"))
        return await self._respond(conn, req, code, headers=[("Location", req.q("to", "/"))])

    async def _r_wayback(self, conn: _Conn, req: _Request) -> bool:
        """The Wayback Machine's availability API: a copy of every URL but those containing
        ``never-archived`` (``{"archived_snapshots": {}}``). Switches: ``archive`` (500: HTTP 500,
        429: HTTP 429 with ``Retry-After: <archive-retry-after>``, 600: a 200 that is not JSON, 601:
        JSON of another shape), ``archive-429`` (that many 429s first, then answers) and
        ``archive-delay-ms`` (each answer that late, so lookups overlap)."""
        with self._lock:
            mode = self._switches.get("archive", 0)
            delay = self._switches.get("archive-delay-ms", 0)
            retry_after = self._switches.get("archive-retry-after", 0)
            self._counters["wayback"] += 1
            early = self._counters["wayback"] <= self._switches.get("archive-429", 0)
        if delay:
            await asyncio.sleep(delay / 1000)
        if mode == 429 or early:
            return await self._respond(conn, req, 429, b"slow down\n", [("Retry-After", str(retry_after))])
        if mode == 500:
            return await self._respond(conn, req, 500, b"archive down\n")
        if mode in (600, 601):
            body = b"<html>maintenance</html>" if mode == 600 else b'{"status": "ok"}'
            return await self._respond(conn, req, 200, body, content_type="application/json")
        url = req.q("url")
        snapshots: dict[str, object] = {}
        if "never-archived" not in url:
            stamp = "20200102030405"
            copy = f"http://web.archive.test/web/{stamp}/{url}"
            snapshots = {"closest": {"available": True, "url": copy, "timestamp": stamp, "status": "200"}}
        doc = {"url": url, "archived_snapshots": snapshots}
        return await self._respond(conn, req, 200, json.dumps(doc).encode(), content_type="application/json")

    async def _r_site(self, conn: _Conn, req: _Request) -> bool:
        """Any page of a healthy site: the root, a section, a story, a soft "not found" page."""
        return await self._respond(conn, req, 200, HTML, content_type="text/html")

    async def _r_redirect_relative(self, conn: _Conn, req: _Request) -> bool:
        return await self._respond(conn, req, 302, headers=[("Location", "status/200?via=relative")])

    async def _r_redirect_loop(self, conn: _Conn, req: _Request) -> bool:
        nxt = "/redirect-loop" if len(req.parts) > 1 else "/redirect-loop/b"
        return await self._respond(conn, req, 302, headers=[("Location", nxt)])

    async def _r_redirect_secret(self, conn: _Conn, req: _Request) -> bool:
        return await self._respond(conn, req, 302, headers=[("Location", "/status/200?token=abc123&page=2")])

    async def _r_redirect_scheme(self, conn: _Conn, req: _Request) -> bool:
        return await self._respond(conn, req, 302, headers=[("Location", "ftp://files.example/file.txt")])

    async def _r_slow_headers(self, conn: _Conn, req: _Request) -> bool:
        await asyncio.sleep(int(req.parts[1]) / 1000 if len(req.parts) > 1 else 1.0)
        return await self._respond(conn, req, 200, HTML, content_type="text/html")

    async def _r_slow_drip(self, conn: _Conn, req: _Request) -> bool:
        total, every = 600, int(req.q("every_ms", "100")) / 1000
        await conn.send(_head(200, [("Content-Type", "text/html"), ("Content-Length", str(total))]))
        if req.method == "HEAD":
            return True
        for _ in range(total):
            await conn.send(b"x")
            await asyncio.sleep(every)
        return True

    async def _r_hang_after_headers(self, conn: _Conn, req: _Request) -> bool:
        await conn.send(
            _head(200, [("Content-Type", req.q("type", "text/html")), ("Content-Length", "1000")])
        )
        if req.method == "HEAD":
            return True
        await self._hang(conn)
        return False

    async def _r_drop(self, conn: _Conn, req: _Request) -> bool:
        await conn.send(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Le")
        return False

    async def _r_reset(self, conn: _Conn, req: _Request) -> bool:
        sock = conn.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.writer.transport.abort()
        return False

    async def _r_wrong_length(self, conn: _Conn, req: _Request) -> bool:
        await conn.send(_head(200, [("Content-Type", "text/html"), ("Content-Length", "1000")]))
        if req.method != "HEAD":
            await conn.send(b"0123456789")
        return False

    async def _r_gzip(self, conn: _Conn, req: _Request) -> bool:
        body = gzip.compress(HTML * 200)
        return await self._respond(
            conn, req, 200, body, headers=[("Content-Encoding", "gzip")], content_type="text/html"
        )

    async def _r_gzip_bomb(self, conn: _Conn, req: _Request) -> bool:
        encoding = "br" if req.q("enc") == "br" else "gzip"
        ctype = req.q("type", "text/html")
        return await self._respond(
            conn, req, 200, _bomb(encoding), headers=[("Content-Encoding", encoding)], content_type=ctype
        )

    async def _r_etag(self, conn: _Conn, req: _Request) -> bool:
        fields = [("ETag", ETAG), ("Last-Modified", LAST_MODIFIED)]
        match = ETAG in req.headers.get("if-none-match", "")
        since = req.headers.get("if-modified-since")
        if not match and since and "if-none-match" not in req.headers:
            with contextlib.suppress(TypeError, ValueError):
                match = parsedate_to_datetime(since) >= parsedate_to_datetime(LAST_MODIFIED)
        if match:
            return await self._respond(conn, req, 304, headers=fields)
        return await self._respond(conn, req, 200, HTML, headers=fields, content_type="text/html")

    async def _r_flaky(self, conn: _Conn, req: _Request) -> bool:
        failures = int(req.parts[1]) if len(req.parts) > 1 else 1
        key = "flaky:" + req.q("key")
        with self._lock:
            self._counters[key] += 1
            count = self._counters[key]
        if count <= failures:
            return await self._respond(conn, req, int(req.q("code", "503")), b"try again\n")
        return await self._respond(conn, req, 200, b"recovered\n")

    async def _r_retry_after(self, conn: _Conn, req: _Request) -> bool:
        seconds = req.parts[1] if len(req.parts) > 1 else "1"
        key = "retry-after:" + req.q("key")
        with self._lock:
            self._counters[key] += 1
            first = self._counters[key] == 1
        if not first:
            return await self._respond(conn, req, 200, b"thanks for waiting\n")
        value = formatdate(time.time() + float(seconds), usegmt=True) if req.q("date") else seconds
        code = int(req.q("code", "429"))
        return await self._respond(conn, req, code, b"slow down\n", headers=[("Retry-After", value)])

    async def _r_always_429(self, conn: _Conn, req: _Request) -> bool:
        fields = [("Retry-After", req.q("retry_after"))] if req.q("retry_after") else []
        return await self._respond(conn, req, 429, b"slow down\n", headers=fields)

    async def _r_cf_challenge(self, conn: _Conn, req: _Request) -> bool:
        fields = [("cf-mitigated", "challenge"), ("Server", "cloudflare"), ("cf-ray", "8a1b2c3d4e5f-AMS")]
        return await self._respond(conn, req, 403, HTML, headers=fields, content_type="text/html")

    async def _r_c(self, conn: _Conn, req: _Request) -> bool:
        """A single-origin AMP cache: serves its copy until the "amp-cache" switch says 404 or 301."""
        with self._lock:
            mode = self._switches.get("amp-cache", 200)
        if mode == 301:
            scheme, rest = ("https", req.parts[2:]) if req.parts[1:2] == ["s"] else ("http", req.parts[1:])
            return await self._respond(conn, req, 301, headers=[("Location", f"{scheme}://{'/'.join(rest)}")])
        return await self._respond(conn, req, mode, HTML, content_type="text/html")

    async def _r_wall(self, conn: _Conn, req: _Request) -> bool:
        kind = req.parts[1] if len(req.parts) > 1 else "cf-page"
        with self._lock:
            walled = not req.q("switch") or self._switches.get(req.q("switch"), 200) != 200
        if kind not in WALLS or not walled:
            return await self._respond(
                conn, req, 200 if walled is False else 404, HTML, content_type="text/html"
            )
        status, fields, title = WALLS[kind]
        page = f"<!DOCTYPE html><html><head><title>{title}</title></head><body>{'x' * 20000}</body></html>"
        return await self._respond(conn, req, status, page.encode(), headers=fields, content_type="text/html")

    async def _r_image(self, conn: _Conn, req: _Request) -> bool:
        base = IMAGES.resolve()
        path = (base / "/".join(req.parts[1:])).resolve()
        if base not in path.parents or not path.is_file():
            return await self._respond(conn, req, 404, b"no such image\n")
        data = path.read_bytes()
        ctype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        etag = f'"img-{len(data)}"'
        if etag in req.headers.get("if-none-match", ""):
            return await self._respond(conn, req, 304, headers=[("ETag", etag)], content_type=ctype)
        wanted = req.headers.get("range", "")
        if not wanted.startswith("bytes=") or req.q("norange"):
            return await self._respond(
                conn, req, 200, data, headers=[("Accept-Ranges", "bytes"), ("ETag", etag)], content_type=ctype
            )
        first_text, _, last_text = wanted[6:].partition("-")
        first = int(first_text or 0)
        last = min(int(last_text), len(data) - 1) if last_text else len(data) - 1
        if first >= len(data) or first > last:
            return await self._respond(conn, req, 416, headers=[("Content-Range", f"bytes */{len(data)}")])
        fields = [
            ("Content-Range", f"bytes {first}-{last}/{len(data)}"),
            ("Accept-Ranges", "bytes"),
            ("ETag", etag),
        ]
        return await self._respond(conn, req, 206, data[first : last + 1], headers=fields, content_type=ctype)

    async def _r_huge_image(self, conn: _Conn, req: _Request) -> bool:
        """A JPEG whose SOF comes after 20 MB of APP15 segments (or, with ?early=1, right away).

        Range is ignored on purpose: the answer is always a 200 with the whole body.
        """
        app15 = b"\xff\xef\xff\xff" + bytes(0xFFFF - 2)
        sof = b"\xff\xc0\x00\x11\x08\x00\x10\x00\x20\x03\x01\x22\x00\x02\x11\x01\x03\x11\x01"
        head = b"\xff\xd8" + (sof if req.q("early") else b"")
        return await self._stream(conn, req, 200, HUGE_BYTES, app15, head, "image/jpeg")

    async def _r_html_as_image(self, conn: _Conn, req: _Request) -> bool:
        return await self._respond(conn, req, 200, HTML, content_type="text/html; charset=utf-8")

    async def _r_empty(self, conn: _Conn, req: _Request) -> bool:
        if req.headers.get("range"):  # no byte of an empty body is satisfiable
            return await self._respond(conn, req, 416, headers=[("Content-Range", "bytes */0")])
        return await self._respond(conn, req, 200, b"", content_type=req.q("type", "image/png"))

    async def _r_cookie_redirect(self, conn: _Conn, req: _Request) -> bool:
        """Sets a cookie and redirects to itself until the cookie comes back (a common paywall dance)."""
        if "seen=1" in req.headers.get("cookie", ""):
            return await self._respond(conn, req, 200, HTML, content_type="text/html")
        fields = [("Set-Cookie", "seen=1; Path=/"), ("Location", "/cookie-redirect")]
        return await self._respond(conn, req, 302, headers=fields)

    async def _r_big_page(self, conn: _Conn, req: _Request) -> bool:
        filler = (b"<p>" + b"lorem ipsum " * 40 + b"</p>\n") * 128
        return await self._stream(conn, req, 200, BIG_PAGE_BYTES, filler, HTML, "text/html")

    async def _r_big_header(self, conn: _Conn, req: _Request) -> bool:
        size = int(req.q("bytes", "100000"))
        return await self._respond(
            conn, req, 200, HTML, headers=[("X-Big", "a" * size)], content_type="text/html"
        )

    async def _r_page(self, conn: _Conn, req: _Request) -> bool:
        """A news-page-sized HTML answer (48 KB) with validators: the benchmark's typical page."""
        fields = [("ETag", ETAG), ("Last-Modified", LAST_MODIFIED)]
        if ETAG in req.headers.get("if-none-match", ""):
            return await self._respond(conn, req, 304, headers=fields)
        return await self._respond(conn, req, 200, PAGE, headers=fields, content_type="text/html")

    async def _r_switch(self, conn: _Conn, req: _Request) -> bool:
        """Answers the status a test last set with ``set_switch`` (200 until then)."""
        key = req.parts[1] if len(req.parts) > 1 else ""
        with self._lock:
            status = self._switches.get(key, 200)
        return await self._respond(conn, req, status, b"switch\n")

    async def _r_forget_counters(self, conn: _Conn, req: _Request) -> bool:
        """Forget the per-key counters of /flaky and /retry-after, so the next tool a benchmark runs
        meets their failures too instead of the answers its predecessor already waited out."""
        with self._lock:
            self._counters.clear()
            self._first_at = None
        return await self._respond(conn, req, 200, b"forgotten\n")

    async def _r_stats(self, conn: _Conn, req: _Request) -> bool:
        """Totals for a benchmark driving a standalone server: requests, bytes sent, connections, and
        the summed seconds from each request's head read to its answer written (the latency plus the
        server's own time: what no client can go below), also per Host header; and when the first
        request since ``/forget-counters`` arrived (how long a tool took to start checking)."""
        with self._lock:
            totals = self._totals
            body = json.dumps(
                {
                    "requests": totals["requests"],
                    "bytes_sent": totals["bytes_sent"],
                    "connections": self.connections,
                    "service_s": totals["service_s"],
                    "by_host": self._host_busy,
                    "first_at": self._first_at,  # wall clock of the first request since /forget-counters
                }
            )
        return await self._respond(conn, req, 200, body.encode(), content_type="application/json")

    async def _r_soft(self, conn: _Conn, req: _Request) -> bool:
        """A site that answers every path 200: its stories, or its "not found" template."""
        slug = req.parts[-1]
        title = req.q("title") or None
        if slug.startswith("huge-"):
            page = story_html(slug, title)
            return await self._stream(
                conn, req, 200, BIG_PAGE_BYTES, b"<p>filler words</p>\n" * 512, page, "text/html"
            )
        body = (
            story_html(slug, title)
            if slug.startswith("story-")
            else not_found_html(req.target.partition("?")[0])
        )
        return await self._respond(conn, req, 200, body, content_type="text/html; charset=utf-8")

    async def _r_pages(self, conn: _Conn, req: _Request) -> bool:
        """A healthy site: its stories, and a 404 for any other path."""
        slug = req.parts[-1]
        if not slug.startswith("story-"):
            return await self._respond(conn, req, 404, not_found_html(req.target), content_type="text/html")
        body = story_html(slug, req.q("title") or None)
        return await self._respond(conn, req, 200, body, content_type="text/html; charset=utf-8")

    async def _r_echo_headers(self, conn: _Conn, req: _Request) -> bool:
        body = json.dumps(req.headers, sort_keys=True).encode()
        return await self._respond(conn, req, 200, body, content_type="application/json")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080, help="first port (0: any free port)")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="delay before every answer")
    parser.add_argument("--listeners", type=int, default=1, help="listen on this many consecutive ports")
    parser.add_argument(
        "--loopback-hosts", type=int, default=1, help="also listen on 127.0.0.2 … 127.0.0.N (same port)"
    )
    args = parser.parse_args(argv)
    extra = tuple(f"127.0.0.{n}" for n in range(2, args.loopback_hosts + 1))
    server = FixtureServer(
        args.host,
        args.port,
        latency_ms=args.latency_ms,
        listeners=args.listeners,
        extra_hosts=extra,
        keep_requests=False,
    )

    async def run() -> None:
        ready = threading.Event()
        task = asyncio.create_task(server.serve(ready))
        while not ready.is_set() and not task.done():
            await asyncio.sleep(0.01)
        print("READY", *server.ports, flush=True)
        await task

    with contextlib.suppress(KeyboardInterrupt):
        # uvloop (a dependency of the tool) when present: less of the server's own time in every answer
        try:
            import uvloop
        except ImportError:
            asyncio.run(run())
        else:
            uvloop.run(run())


if __name__ == "__main__":
    main()
