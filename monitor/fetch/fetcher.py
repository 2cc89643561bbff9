"""The check engine's fetching layer: one ``FetchOutcome`` of facts per ``Target``, never an exception.

Transport: httpx's request/response API over ``transport.SessionTransport``, which drives one
shared aiohttp session (several times less CPU per request than httpx's own transport on this
machine; figures in ``bench/transport_cpu.py``). The session is ours, so we choose its
connector (a resolver that enforces the SSRF guard on the addresses it returns, no connection
to anything unchecked), its header limits (``max_header_bytes``, 128 headers) and a cookie
jar that keeps nothing. aiohttp has no HTTP/2: with ``http2 = true`` the same requests go
through ``transport_h2.Http2Transport`` (httpcore, HTTP/2 where a TLS server offers it, more CPU
per request), behind the same guard and limits.

What this module owns, per URL (remapped first by ``http.remap``):

* politeness: a host slot (``hosts.HostLimiter``) and then a global slot per request; fetches of
  the same URL and kind that overlap share one in-flight task;
* a hard deadline (``total_timeout``, per-host override) over everything: slot waits, redirects,
  retries and body reads; connect/read timeouts per request come from the transport;
* method: pages HEAD first and fall back to GET when HEAD fails (4xx/5xx, timeout, reset,
  protocol error; not DNS/refused/TLS/guard/redirect failures, which GET would repeat);
  images GET with ``Range`` and stream into ``probe.ImageProbe`` only until it answers; page
  GETs read at most ``page_body_cap`` decoded bytes; the connection is then dropped, not drained;
* redirects, followed here hop by hop (loops, hop limit, non-http schemes, 303 → GET, cookies
  kept for the chain only), each recorded as a ``Hop``; per-host headers go to their host only;
* retries (``retry.py``) with full-jitter backoff and ``Retry-After`` (a wait longer than
  ``retry_after_cap``, or than the deadline allows, ends the retries with the answer as it is);
* conditional requests (``If-None-Match`` / ``If-Modified-Since``) and the validators returned;
* decoding of gzip/deflate/br with bounded output, so a compression bomb stops at the cap;
* the one mapping of foreign exceptions to ``FetchFailure`` (``classify_exception``).

Details and URLs in outcomes go through ``redact_url``, so no credential is stored or logged.
"""

from __future__ import annotations

import asyncio
import base64
import errno
import logging
import random
import re
import socket
import ssl
import zlib
from collections.abc import AsyncGenerator, AsyncIterable, Awaitable, Callable
from contextlib import aclosing, suppress
from dataclasses import dataclass, field
from types import TracebackType
from typing import cast

import aiohttp
import brotli
import httpx
import structlog
from ada_url import join_url
from aiohttp import http_exceptions

from monitor.config import HttpSettings, SafetySettings
from monitor.fetch.guard import AddressGuard, BlockedAddress, GuardedResolver
from monitor.fetch.hosts import HostLimiter, host_settings
from monitor.fetch.retry import backoff, parse_retry_after, should_retry
from monitor.fetch.transport import SessionResponse, SessionTransport, bodyless_request
from monitor.fetch.transport_h2 import Http2Transport
from monitor.probe.sniff import ImageProbe
from monitor.types import FetchFailure, FetchOutcome, Hop, ImageFacts, Target, TargetKind
from monitor.urls import InvalidUrl, host_key, normalise_url, redact_url

__all__ = ["FetchStats", "Fetcher", "classify_exception"]

log = structlog.get_logger("monitor.fetch")

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
# Headers worth keeping in the outcome: content facts, rate limiting, validators, and the
# bot-protection markers verdict.py looks for.
KEPT_HEADERS = (
    "content-type",
    "content-length",
    "content-range",
    "content-encoding",
    "location",
    "retry-after",
    "etag",
    "last-modified",
    "server",
    "www-authenticate",
    "cf-mitigated",
    "cf-ray",
    "x-datadome",
    "x-dd-b",
    "x-amzn-waf-action",
    "akamai-grn",
)
_KEPT = frozenset(KEPT_HEADERS)
# HEAD failures that GET may not share (servers that hang, reset or garble on HEAD); DNS,
# refused connections, TLS, guard and redirect failures would repeat identically with GET.
HEAD_FALLBACK_FAILURES = frozenset({FetchFailure.TIMEOUT, FetchFailure.RESET, FetchFailure.PROTOCOL})
ACCEPT_ENCODING = "gzip, deflate, br"
PAGE_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
IMAGE_ACCEPT = "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8"
MAX_HEADERS = 128
MAX_URL_LENGTH = 65536  # a fetched URL (the corpus limits its own, corpus.max_url_length)
IMAGE_FIRST_WINDOW = 32 * 1024  # first Range asked of an image; more only if its header is longer
DISCARD_LIMIT = 16 * 1024  # unwanted bodies up to this size are read so the connection is reused
DISCARD_WAIT = 0.5

# Foreign exceptions that mean "network trouble" (everything else is a bug and propagates).
_FOREIGN: tuple[type[BaseException], ...] = (
    httpx.HTTPError,
    httpx.InvalidURL,
    aiohttp.ClientError,
    http_exceptions.HttpProcessingError,
    OSError,  # includes TimeoutError, ssl.SSLError, socket.gaierror
    zlib.error,
    brotli.error,
    ValueError,  # includes UnicodeError (e.g. IDNA of a redirect target)
)
_URL_IN_TEXT = re.compile(r"https?://[^\s'\"<>\])]+")


# --- the one exception mapping ------------------------------------------------------------


def classify_exception(exc: BaseException) -> tuple[FetchFailure, str]:
    """The ``FetchFailure`` a foreign exception stands for, with a short credential-free detail.

    The innermost cause decides: an adapter may wrap a precise aiohttp error in a vague httpx
    one (``ConnectTimeout`` for everything), so the outer type is the least reliable part.
    """
    chain = _chain(exc)
    for inner in reversed(chain):
        found = _classify_one(inner)
        if found is not None:
            failure, detail = found
            if failure in (FetchFailure.DNS, FetchFailure.CONNECT):
                detail = _connector_message(chain) or detail
            return failure, _scrub(detail)
    return FetchFailure.PROTOCOL, _scrub(_describe(chain[-1]))


def _chain(exc: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain and len(chain) < 16:
        chain.append(current)
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    return chain


def _classify_one(exc: BaseException) -> tuple[FetchFailure, str] | None:
    F = FetchFailure
    text = _describe(exc)
    if isinstance(exc, BlockedAddress):
        return F.BLOCKED_ADDRESS, str(exc)
    if isinstance(exc, socket.gaierror | aiohttp.ClientConnectorDNSError):
        return F.DNS, f"DNS lookup failed: {text}"
    if isinstance(exc, ssl.SSLError | ssl.CertificateError | aiohttp.ClientSSLError):
        return F.TLS, text
    if isinstance(exc, http_exceptions.LineTooLong) or (
        isinstance(exc, http_exceptions.BadHttpMessage) and "too many headers" in str(exc).lower()
    ):
        return F.TOO_LARGE, "response headers exceed the configured limits"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return F.RESET, "server closed the connection before answering"
    if isinstance(
        exc,
        aiohttp.ClientPayloadError
        | http_exceptions.HttpProcessingError
        | zlib.error
        | brotli.error
        | httpx.DecodingError
        | httpx.RemoteProtocolError,
    ):
        return F.PROTOCOL, text
    if isinstance(exc, TimeoutError | httpx.TimeoutException):
        return F.TIMEOUT, text or "timed out"
    if isinstance(exc, aiohttp.InvalidURL | httpx.InvalidURL | httpx.UnsupportedProtocol):
        return F.INVALID_URL, text
    if isinstance(exc, OSError) and exc.errno is not None:
        code = exc.errno
        if code == errno.ECONNREFUSED:
            return F.CONNECT, text
        if code in (errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED):
            return F.RESET, text
        if code == errno.ETIMEDOUT:
            return F.TIMEOUT, text
    if isinstance(exc, ConnectionRefusedError):
        return F.CONNECT, text
    if isinstance(exc, ConnectionResetError | ConnectionAbortedError | BrokenPipeError):
        return F.RESET, text
    if isinstance(exc, aiohttp.ClientConnectorError | httpx.ConnectError):
        return F.CONNECT, text
    if isinstance(exc, aiohttp.ClientConnectionError | httpx.ReadError | httpx.WriteError | httpx.CloseError):
        return F.RESET, text
    if isinstance(exc, httpx.ProtocolError | httpx.TransportError):
        return F.PROTOCOL, text
    if isinstance(exc, OSError):
        return F.CONNECT, text  # EHOSTUNREACH, ENETUNREACH and friends
    return None


def _connector_message(chain: list[BaseException]) -> str | None:
    """aiohttp's "Cannot connect to host h:p ..." names the host; prefer it for DNS/connect."""
    for exc in chain:
        if isinstance(exc, aiohttp.ClientConnectorError) and not isinstance(exc.__cause__, BlockedAddress):
            return str(exc)
    return None


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text and len(text) < 20 else (text or type(exc).__name__)


def _scrub(text: str) -> str:
    """One line, bounded, with any URL in it redacted."""
    flat = " ".join(_URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text).split())
    return flat if len(flat) <= 300 else flat[:299] + "…"


def _range_total(content_range: str | None) -> int | None:
    """The full length from ``Content-Range: bytes 0-65535/347327`` (None when unknown)."""
    if not content_range or "/" not in content_range:
        return None
    total = content_range.rsplit("/", 1)[1].strip()
    return int(total) if total.isdigit() else None


def _raw_chunks(response: httpx.Response) -> AsyncGenerator[bytes, None]:
    """The body as received, straight from the transport's stream (httpx's ``aiter_raw``
    re-chunks every piece); an async generator, closed as soon as we stop reading."""
    return cast(AsyncGenerator[bytes, None], cast(AsyncIterable[bytes], response.stream).__aiter__())


def _header_dict(response: httpx.Response) -> dict[str, str]:
    """Lower-cased name → value, repeated names joined with ", " (as httpx's ``items()`` does).

    One pass over the raw pairs (as received, when the transport kept them): httpx's
    ``Headers.get`` scans a list per call and ``items()`` re-checks the encoding per header.
    Non-ASCII headers take httpx's own decoding.
    """
    out: dict[str, str] = {}
    pairs = response.raw_headers if isinstance(response, SessionResponse) else response.headers.raw
    try:
        for key, value in pairs:
            name, text = key.decode("ascii").lower(), value.decode("ascii")
            out[name] = f"{out[name]}, {text}" if name in out else text
    except UnicodeDecodeError:
        return dict(response.headers.items())
    return out


# --- bounded decoding ------------------------------------------------------------------------


class _Decoder:
    """Content-Encoding decoding that never produces more than asked for (bomb-proof).

    Single gzip/deflate/br codings are decoded; stacked or unknown codings pass through as they
    are (the probe then reports what it sees), as httpx does for unknown ones.
    """

    __slots__ = ("_brotli", "_mode", "_started", "_zlib")

    def __init__(self, encoding: str | None) -> None:
        codings = [c.strip().lower() for c in (encoding or "").split(",")]
        codings = [c for c in codings if c and c != "identity"]
        mode = codings[0] if len(codings) == 1 else "identity"
        self._zlib: zlib._Decompress | None = None
        self._brotli: brotli.Decompressor | None = None
        self._started = False
        if mode in ("gzip", "x-gzip"):
            self._zlib = zlib.decompressobj(zlib.MAX_WBITS | 16)
        elif mode == "deflate":
            self._zlib = zlib.decompressobj()
        elif mode == "br":
            self._brotli = brotli.Decompressor()
        else:
            mode = "identity"
        self._mode = mode

    def decode(self, data: bytes, limit: int) -> bytes:
        """Up to ``limit`` decoded bytes from ``data`` (the caller stops once it has its cap)."""
        if limit <= 0 or not data:
            return b""
        if self._brotli is not None:
            return self._brotli.process(data, output_buffer_limit=limit)[:limit]
        if self._zlib is None:
            return data[:limit]
        if self._mode == "deflate" and not self._started:
            self._started = True
            try:
                return self._zlib.decompress(data, limit)
            except zlib.error:  # "deflate" is often sent without its zlib wrapper
                self._zlib = zlib.decompressobj(-zlib.MAX_WBITS)
        return self._zlib.decompress(data, limit)


# --- per-fetch progress ----------------------------------------------------------------------


class _Progress:
    """Facts of the fetch so far; the deadline turns whatever is here into the outcome.

    A new attempt keeps the previous attempt's facts until it produces its own (answer or
    failure), so a deadline hit while waiting to retry still reports the last real answer.
    """

    __slots__ = (
        "_fresh",
        "attempts",
        "bytes_read",
        "detail",
        "failure",
        "headers",
        "hops",
        "image",
        "method",
        "phase",
        "retry_after",
        "status",
        "url",
    )

    def __init__(self, url: str, method: str) -> None:
        self.url = url
        self.method = method
        self.attempts = 0
        self.hops: list[Hop] = []
        self.status: int | None = None
        self.headers: dict[str, str] | None = None  # lower-cased names
        self.bytes_read = 0
        self.image: ImageFacts | None = None
        self.failure: FetchFailure | None = None
        self.detail = ""
        self.retry_after: float | None = None
        self.phase = "starting"
        self._fresh = False

    def begin(self) -> None:
        self.attempts += 1
        self._fresh = True

    def _settle(self, url: str, method: str) -> None:
        if self._fresh:
            self._fresh = False
            self.hops = []
            self.status = self.headers = self.image = self.failure = self.retry_after = None
            self.bytes_read = 0
            self.detail = ""
        self.url, self.method = url, method

    def answer(
        self, url: str, method: str, status: int, headers: dict[str, str], retry_after: float | None
    ) -> None:
        self._settle(url, method)
        self.status, self.headers, self.retry_after = status, headers, retry_after

    def fail(self, failure: FetchFailure, detail: str, url: str, method: str) -> None:
        self._settle(url, method)
        self.failure, self.detail = failure, detail

    def hop_to(self, url: str) -> None:
        """Moving on along a redirect: the new URL has no answer yet."""
        self.url = url
        self.status = self.headers = self.retry_after = None

    @property
    def result(self) -> int | FetchFailure | None:
        return self.failure if self.failure is not None else self.status

    @property
    def head_failed(self) -> bool:
        if self.failure is not None:
            return self.failure in HEAD_FALLBACK_FAILURES
        return self.status is not None and self.status >= 400


@dataclass(slots=True)
class FetchStats:
    """Counters of one Fetcher, for benchmarks, progress and tests (mutable: they count)."""

    fetches: int = 0  # fetch() calls that started a fetch
    deduplicated: int = 0  # fetch() calls that joined an identical fetch already in flight
    requests: int = 0  # HTTP requests sent (every hop of every attempt)
    retries: int = 0
    bytes_read: int = 0  # decoded body bytes consumed
    bytes_received: int = 0  # body bytes as received, before decoding
    in_flight: int = 0
    peak_in_flight: int = 0
    host_peak_in_flight: dict[str, int] = field(default_factory=dict)  # per host key


class _ChainCookies:
    """The cookies of one redirect chain; the jar is made on the first Set-Cookie (most never see one)."""

    __slots__ = ("jar",)

    def __init__(self) -> None:
        self.jar: httpx.Cookies | None = None

    def __len__(self) -> int:
        return 0 if self.jar is None else len(self.jar.jar)

    def extract(self, response: httpx.Response) -> None:
        if self.jar is None:
            self.jar = httpx.Cookies()
        self.jar.extract_cookies(response)

    def apply(self, request: httpx.Request) -> None:
        if self.jar is not None and len(self.jar.jar):
            self.jar.set_cookie_header(request)


class Fetcher:
    """Fetches Targets politely and reports facts; use as ``async with Fetcher(http, safety) as f``."""

    def __init__(
        self,
        http: HttpSettings,
        safety: SafetySettings | None = None,
        *,
        rng: random.Random | None = None,
        gate: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """``gate`` is awaited before every request sent, retries and redirect hops included
        (a distributed shard uses it to stop at once when it no longer owns its hosts)."""
        self._http = http
        self._gate = gate
        proxy_host = httpx.URL(http.proxy).host if http.proxy else None
        # Behind a proxy the proxy resolves target names and connects; the proxy itself must be
        # reachable even on a private address ...
        self._guard = AddressGuard(safety, extra_hosts=[proxy_host] if proxy_host else [])
        # ... so a name is resolved here first and refused if any of its addresses is refused
        self._vet_names = bool(http.proxy) and not (safety or SafetySettings()).trust_proxy_dns
        self._resolver: GuardedResolver | None = None
        self._limiter = HostLimiter.from_settings(http)
        self._rules = [(re.compile(rule.pattern), rule.replacement) for rule in http.remap]
        self._rng = rng or random.Random()
        self.stats = FetchStats(host_peak_in_flight=self._limiter.peaks)
        self._inflight: dict[tuple[str, TargetKind], asyncio.Task[FetchOutcome]] = {}
        self._headers_cache: dict[tuple[str, TargetKind, bool], httpx.Headers] = {}
        self._transport: SessionTransport | Http2Transport | None = None
        self._global: asyncio.Semaphore | None = None

    @property
    def limiter(self) -> HostLimiter:
        return self._limiter

    async def __aenter__(self) -> Fetcher:
        http = self._http
        logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLogger("httpx").level))
        ssl_context = httpx.create_ssl_context(verify=True) if http.verify_tls else None
        self._global = asyncio.Semaphore(http.concurrency)
        self._resolver = GuardedResolver(self._guard)
        if http.http2:
            self._transport = Http2Transport(
                self._resolver,
                ssl_context=ssl_context,
                connect=http.connect_timeout,
                read=http.read_timeout,
                max_connections=http.concurrency,
                proxy=http.proxy,
            )
            return self
        connector = aiohttp.TCPConnector(
            limit=http.concurrency,
            limit_per_host=0,  # per-host limits are ours (HostLimiter), with overrides and spacing
            resolver=self._resolver,
            ttl_dns_cache=300,
            ssl=ssl_context if ssl_context is not None else False,
        )
        session = aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),  # cookies live per redirect chain, in _chain
            auto_decompress=False,
            max_line_size=http.max_header_bytes,
            max_field_size=http.max_header_bytes,
            max_headers=MAX_HEADERS,
        )
        # Requests are built here (see _chain) and sent through the transport itself: no
        # client-side redirects, environment proxies (they would bypass the guard) or cookie jar.
        self._transport = SessionTransport(
            session, connect=http.connect_timeout, read=http.read_timeout, proxy=http.proxy
        )
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        pending = list(self._inflight.values())
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        if self._transport is not None:
            await self._transport.aclose()
            self._transport = None

    # --- public entry ----------------------------------------------------------------------

    async def fetch(self, target: Target) -> FetchOutcome:
        """Facts about ``target``; overlapping calls for the same URL and kind share one fetch."""
        return await asyncio.shield(self._shared(target))

    def _shared(self, target: Target) -> asyncio.Task[FetchOutcome]:
        """The task fetching ``target``, started now or joined if already in flight (one per URL and
        kind; ``fetch`` shields it so one caller's cancellation does not cancel the others')."""
        if self._transport is None:
            raise RuntimeError("Fetcher is not open; use 'async with Fetcher(...)'")
        key = (target.url, target.kind)
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.ensure_future(self._fetch_one(target))
            self._inflight[key] = task
            task.add_done_callback(lambda done: self._forget(key, done))
            self.stats.fetches += 1
        else:
            self.stats.deduplicated += 1
        return task

    async def fetch_unshared(self, target: Target) -> FetchOutcome:
        """Fetch ``target`` in the caller's own task, without joining or sharing an in-flight fetch.

        For a caller whose targets are unique (the run's workers): no task per URL, and the
        caller's cancellation cancels the fetch.
        """
        if self._transport is None:
            raise RuntimeError("Fetcher is not open; use 'async with Fetcher(...)'")
        self.stats.fetches += 1
        return await self._fetch_one(target)

    def _forget(self, key: tuple[str, TargetKind], task: asyncio.Task[FetchOutcome]) -> None:
        if self._inflight.get(key) is task:
            del self._inflight[key]

    # --- one URL -----------------------------------------------------------------------------

    async def _fetch_one(self, target: Target) -> FetchOutcome:
        loop = asyncio.get_running_loop()
        started = loop.time()
        text = self._remapped(target.url)
        progress = _Progress(text, "GET" if target.kind is TargetKind.IMAGE else "HEAD")
        # Normal already, unless remapped or given by a caller: read as a browser reads it, so the
        # guard sees the parsed host (every numeric IPv4 spelling in dotted form).
        normal = normalise_url(text, max_length=MAX_URL_LENGTH)
        try:
            if isinstance(normal, InvalidUrl):
                raise httpx.InvalidURL(normal.reason)
            url = httpx.URL(normal)
        except (httpx.InvalidURL, ValueError) as exc:
            progress.begin()
            progress.fail(FetchFailure.INVALID_URL, _scrub(str(exc)), text, progress.method)
            return self._outcome(target, progress, started)
        text = progress.url = normal
        key = host_key(text)
        extra = host_settings(self._http.hosts, key)
        total = extra.total_timeout if extra and extra.total_timeout else self._http.total_timeout
        try:
            async with asyncio.timeout(total) as deadline:
                await self._attempts(target, url, key, progress, deadline)
        except TimeoutError:
            if not deadline.expired():
                raise
            progress.failure = FetchFailure.TIMEOUT
            progress.detail = f"total deadline of {total:g} s exceeded while {progress.phase}"
        return self._outcome(target, progress, started)

    def _remapped(self, url: str) -> str:
        """The first matching ``http.remap`` rule rewrites the URL (Python ``re.sub`` syntax)."""
        for pattern, replacement in self._rules:
            if pattern.search(url):
                return pattern.sub(replacement, url, count=1)
        return url

    async def _attempts(
        self, target: Target, url: httpx.URL, key: str, p: _Progress, deadline: asyncio.Timeout
    ) -> None:
        """HEAD (pages) then GET, retried with backoff; returns when the facts are final."""
        http = self._http
        image = target.kind is TargetKind.IMAGE
        method = "GET" if image else "HEAD"
        use_range = image and http.image_range_request
        retries = 0
        loop = asyncio.get_running_loop()
        while True:
            await self._chain(target, url, key, method, use_range, p)
            if use_range and p.failure is None and p.status == 416:
                use_range = False  # e.g. an empty file: ask again for the whole thing
                continue
            wait = p.retry_after
            if wait is not None and wait > http.retry_after_cap:
                return  # asked to wait longer than we are willing to: report the answer as is
            when = deadline.when()
            if method == "HEAD" and p.head_failed:
                method = "GET"  # the host limiter already holds back for any Retry-After
                if wait and when is not None and loop.time() + wait >= when:
                    return
                continue
            if retries >= http.max_retries or not should_retry(p.result, http.retry_statuses):
                return
            retries += 1
            delay = max(backoff(retries, http.backoff_base, http.backoff_max, self._rng), wait or 0.0)
            if when is not None and loop.time() + delay >= when:
                return  # no time left for another try; the last answer is the fact
            self.stats.retries += 1
            p.phase = "waiting to retry"
            await asyncio.sleep(delay)

    async def _chain(
        self, target: Target, start: httpx.URL, key: str, method: str, use_range: bool, p: _Progress
    ) -> None:
        """One attempt: request ``start`` and follow its redirects, recording every hop."""
        p.begin()
        jar = _ChainCookies()  # cookies live for this chain only (set-cookie-then-redirect sites)
        seen: set[tuple[str, int]] = set()
        url = start
        while True:
            headers = self._request_headers(key, target, method, use_range)
            if url.userinfo:
                # aiohttp refuses a URL carrying userinfo next to an Authorization header, so the
                # credentials travel only as that header, and only to the URL that carries them.
                token = base64.b64encode(f"{url.username}:{url.password}".encode()).decode("ascii")
                headers = httpx.Headers(headers)
                headers["Authorization"] = f"Basic {token}"
                url = url.copy_with(userinfo=b"")
            text = str(url)
            seen.add((text.partition("#")[0], len(jar)))
            refusal = self._guard.check_literal(url.host)
            if refusal is not None:
                p.fail(FetchFailure.BLOCKED_ADDRESS, refusal, text, method)
                return
            if self._vet_names and not await self._vetted(url.host, text, method, p):
                return
            # Not client.build_request: that re-parses the URL to merge (empty) params and runs
            # the client cookie jar, a third of the per-request CPU.
            request = bodyless_request(method, url, headers)
            jar.apply(request)
            nxt = await self._exchange(request, text, key, target, jar, p)
            if nxt is None:
                return
            nxt_text = str(nxt)
            # A loop is a URL revisited with no new cookie: "set a cookie, redirect to self" is not.
            if (nxt_text.partition("#")[0], len(jar)) in seen:
                detail = f"redirect loop: {redact_url(nxt_text)} was already visited"
                p.fail(FetchFailure.REDIRECT_LOOP, detail, text, method)
                return
            if p.status == 303 and method != "GET":
                method = "GET"
            url, key = nxt, host_key(nxt_text)
            p.hop_to(nxt_text)

    async def _vetted(self, host: str, text: str, method: str, p: _Progress) -> bool:
        """Behind a proxy: whether ``host`` resolved here to allowed addresses only (else ``p`` failed)."""
        assert self._resolver is not None
        p.phase = "resolving the name before the proxy"
        try:
            async with asyncio.timeout(self._http.connect_timeout):
                await self._resolver.vet(host)
        except TimeoutError:
            p.fail(FetchFailure.DNS, f"DNS lookup of {host} timed out", text, method)
            return False
        except OSError as exc:  # BlockedAddress or socket.gaierror
            p.fail(*classify_exception(exc), text, method)
            return False
        return True

    def _request_headers(self, key: str, target: Target, method: str, use_range: bool) -> httpx.Headers:
        """This host's headers for ``target`` (built once per host and kind; never mutate the result)."""
        image_window = use_range and method == "GET"
        base = self._headers_cache.get((key, target.kind, image_window))
        if base is None:
            http = self._http
            extra = host_settings(http.hosts, key)
            fields = {
                "User-Agent": http.user_agent,
                "Accept": IMAGE_ACCEPT if target.kind is TargetKind.IMAGE else PAGE_ACCEPT,
                "Accept-Encoding": ACCEPT_ENCODING,
            }
            fields.update(http.headers)
            if extra is not None:
                fields.update(extra.headers)  # this host's own headers: never sent anywhere else
                if extra.user_agent:
                    fields["User-Agent"] = extra.user_agent
            if image_window:
                fields["Range"] = f"bytes=0-{min(IMAGE_FIRST_WINDOW, http.image_byte_cap) - 1}"
            base = self._headers_cache[(key, target.kind, image_window)] = httpx.Headers(fields)
        if self._http.conditional_requests and (target.etag or target.last_modified):
            headers = httpx.Headers(base)
            if target.etag:
                headers["If-None-Match"] = target.etag
            if target.last_modified:
                headers["If-Modified-Since"] = target.last_modified
            return headers
        return base

    async def _exchange(
        self, request: httpx.Request, text: str, key: str, target: Target, jar: _ChainCookies, p: _Progress
    ) -> httpx.URL | None:
        """Send one request inside its host and global slots; the next URL if it redirects."""
        assert self._transport is not None and self._global is not None
        method = request.method
        stats = self.stats
        p.phase = "waiting for a host slot"
        async with self._limiter.slot(key), self._global:
            if self._gate is not None:
                # after the slot wait, right before sending: that wait may have spanned a freeze
                await self._gate()
            stats.requests += 1
            stats.in_flight += 1
            stats.peak_in_flight = max(stats.peak_in_flight, stats.in_flight)
            try:
                p.phase = "waiting for the response headers"
                try:
                    # The transport, not client.send: httpx would parse every Location for its own
                    # redirect bookkeeping and raise on e.g. "javascript:..." before _follow judges it.
                    response = await self._transport.handle_async_request(request)
                except _FOREIGN as exc:
                    self._limiter.observe(key, None)
                    p.fail(*classify_exception(exc), text, method)
                    return None
                try:
                    return await self._answer(response, text, key, target, jar, p)
                except _FOREIGN as exc:
                    p.fail(*classify_exception(exc), text, method)
                    return None
                finally:
                    with suppress(*_FOREIGN):
                        await response.aclose()  # mid-body: aiohttp closes, never drains
            finally:
                stats.in_flight -= 1

    async def _answer(
        self, response: httpx.Response, text: str, key: str, target: Target, jar: _ChainCookies, p: _Progress
    ) -> httpx.URL | None:
        request = response.request
        url, method, status = request.url, request.method, response.status_code
        headers = _header_dict(response)
        retry_after = None
        if status in self._http.retry_statuses or status in (429, 503):
            retry_after = parse_retry_after(headers.get("retry-after"))
        self._limiter.observe(key, status, retry_after)
        if "set-cookie" in headers:
            jar.extract(response)
        p.answer(text, method, status, headers, retry_after)
        location = headers.get("location")
        if status in REDIRECT_STATUSES and location:
            await self._discard(response, headers)
            return self._follow(url, text, status, location, method, p)
        if method == "GET" and 200 <= status < 300:
            if target.kind is TargetKind.IMAGE:
                await self._read_image(response, headers, p)
            elif self._http.page_body_cap:
                await self._read(response, headers, self._http.page_body_cap, None, p)
        else:
            await self._discard(response, headers)
        return None

    def _follow(
        self, url: httpx.URL, text: str, status: int, location: str, method: str, p: _Progress
    ) -> httpx.URL | None:
        """The next URL: ``location`` read against ``text`` as a browser reads it (WHATWG), normalised
        like an article's URL, so the guard sees its parsed host; None when the chain ends here."""
        try:
            joined = join_url(text, location)
        except ValueError:
            joined = None
        if joined is None:
            p.hops.append(Hop(redact_url(text), status, redact_url(location)))
            p.fail(FetchFailure.BAD_REDIRECT, f"unusable Location {_scrub(location)!r}", text, method)
            return None
        p.hops.append(Hop(redact_url(text), status, redact_url(joined)))
        scheme = joined.partition(":")[0]
        if scheme not in ("http", "https"):
            detail = f"redirect to {_scrub(redact_url(joined))} ({scheme or 'no'} scheme) not followed"
            p.fail(FetchFailure.BAD_REDIRECT, detail, text, method)
            return None
        if len(p.hops) > self._http.max_redirects:
            detail = f"more than {self._http.max_redirects} redirects"
            p.fail(FetchFailure.TOO_MANY_REDIRECTS, detail, text, method)
            return None
        normal = normalise_url(joined, max_length=MAX_URL_LENGTH)
        try:
            if isinstance(normal, InvalidUrl):
                raise httpx.InvalidURL(normal.reason)
            return httpx.URL(normal)
        except (httpx.InvalidURL, ValueError) as exc:
            detail = f"unusable Location {_scrub(redact_url(joined))!r}: {_scrub(str(exc))}"
            p.fail(FetchFailure.BAD_REDIRECT, detail, text, method)
            return None

    async def _read(
        self,
        response: httpx.Response,
        headers: dict[str, str],
        cap: int,
        probe: ImageProbe | None,
        p: _Progress,
        *,
        finish: bool = True,
        offset: int = 0,
    ) -> None:
        """Read decoded bytes until the probe answers or ``cap`` is reached; never drain the rest.

        ``offset`` counts bytes already read by an earlier Range request of the same image;
        with ``finish=False`` an unanswered probe is left open for a follow-up request.
        """
        decoder = _Decoder(headers.get("content-encoding"))
        stats = self.stats
        p.phase = "reading the body"
        consumed = offset
        try:
            async with aclosing(_raw_chunks(response)) as chunks:
                async for raw in chunks:
                    stats.bytes_received += len(raw)
                    data = decoder.decode(raw, cap - consumed)
                    consumed += len(data)
                    stats.bytes_read += len(data)
                    p.bytes_read = consumed
                    if probe is not None and data:
                        facts = probe.feed(data)
                        if facts is not None:
                            p.image = facts
                            return
                    if consumed >= cap:
                        break
        finally:
            if finish and probe is not None and p.image is None:
                p.image = probe.finish()  # at EOF, at the cap, or on a broken stream: what we have

    async def _read_image(self, response: httpx.Response, headers: dict[str, str], p: _Progress) -> None:
        """Probe an image: a first Range window, then (only while its size is unknown) the rest, to the cap.

        Asking for a small window first keeps the server from pushing the whole file into
        socket buffers we then throw away; nearly every header fits in it.
        """
        assert self._transport is not None
        cap = self._http.image_byte_cap
        probe = ImageProbe(cap, headers.get("content-type"))
        partial = response.status_code == 206
        await self._read(response, headers, cap, probe, p, finish=not partial)
        if not partial or p.image is not None:
            return
        total = _range_total(headers.get("content-range"))
        got = probe.bytes_seen
        if total is None or got >= min(total, cap):
            p.image = probe.finish()
            return
        request = response.request
        more = httpx.Headers(request.headers)
        more["Range"] = f"bytes={got}-{cap - 1}"
        if self._gate is not None:
            await self._gate()
        follow = await self._transport.handle_async_request(bodyless_request("GET", request.url, more))
        self.stats.requests += 1
        try:
            if follow.status_code == 206:
                await self._read(follow, _header_dict(follow), cap, probe, p, offset=got)
            else:
                p.image = probe.finish()
        finally:
            with suppress(*_FOREIGN):
                await follow.aclose()

    async def _discard(self, response: httpx.Response, headers: dict[str, str]) -> None:
        """Read a small unwanted body (redirect/error page) so the connection can be reused."""
        length = headers.get("content-length", "")
        if response.request.method == "HEAD" or not length.isdigit() or int(length) > DISCARD_LIMIT:
            return
        with suppress(*_FOREIGN):
            async with asyncio.timeout(DISCARD_WAIT), aclosing(_raw_chunks(response)) as chunks:
                async for raw in chunks:
                    self.stats.bytes_received += len(raw)

    # --- outcome -------------------------------------------------------------------------------

    def _outcome(self, target: Target, p: _Progress, started: float) -> FetchOutcome:
        elapsed = asyncio.get_running_loop().time() - started
        headers: dict[str, str] = {}
        if p.headers is not None:
            headers = {name: value for name, value in p.headers.items() if name in _KEPT}
            if "location" in headers:
                headers["location"] = redact_url(headers["location"])
        return FetchOutcome(
            url=target.url,
            status=p.status,
            final_url=redact_url(p.url),
            redirects=tuple(p.hops),
            attempts=max(1, p.attempts),
            elapsed_ms=int(elapsed * 1000),
            method=p.method,
            content_type=headers.get("content-type"),
            bytes_read=p.bytes_read,
            failure=p.failure,
            failure_detail=p.detail,
            headers=headers,
            image=p.image,
            not_modified=p.status == 304 and p.failure is None,
            etag=headers.get("etag"),
            last_modified=headers.get("last-modified"),
        )
