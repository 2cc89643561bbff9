"""The check engine's fetching layer: one ``FetchOutcome`` of facts per ``Target``, never an exception.

Transport: httpx's request/response API over ``transport.SessionTransport``, which drives one
shared aiohttp session (several times less CPU per request than httpx's own transport on this
machine; figures in ``bench/transport_cpu.py``). The session is ours, so we choose its
connector (a resolver that enforces the SSRF guard on the addresses it returns, no connection
to anything unchecked), its header limits (``max_header_bytes``, 128 headers) and a cookie
jar that keeps nothing. aiohttp has no HTTP/2: with ``http2 = true`` the same requests go
through ``transport_h2.Http2Transport`` (httpcore, HTTP/2 where a TLS server offers it, more CPU
per request), behind the same guard and limits.

What ``Fetcher`` does per URL (remapped first by ``http.remap``), and where the parts live:

* politeness: a host slot (``hosts.HostLimiter``) and then a global slot per request; fetches of
  the same URL and kind that overlap share one in-flight task;
* a hard deadline (``total_timeout``, per-host override) over everything: slot waits, redirects,
  retries and body reads; connect/read timeouts per request come from the transport;
* method: pages HEAD first and fall back to GET when HEAD fails (4xx/5xx, timeout, reset,
  protocol error; not DNS/refused/TLS/guard/redirect failures, which GET would repeat);
  images GET with ``Range`` and stream into ``probe.ImageProbe`` only until it answers; page
  GETs read at most ``page_body_cap`` decoded bytes; the connection is then dropped, not drained
  (``body.BodyReader``);
* redirects, followed here hop by hop (loops, hop limit, non-http schemes, 303 → GET, cookies
  kept for the chain only), each recorded as a ``Hop`` (``redirects.py``); per-host headers go to
  their host only (``headers.RequestHeaders``);
* retries (``retry.py``) with full-jitter backoff and ``Retry-After`` (a wait longer than
  ``retry_after_cap``, or than the deadline allows, ends the retries with the answer as it is);
* conditional requests (``If-None-Match`` / ``If-Modified-Since``) and the validators returned;
* decoding of gzip/deflate/br with bounded output, so a compression bomb stops at the cap
  (``decode.Decoder``);
* the one mapping of foreign exceptions to ``FetchFailure`` (``errors.classify_exception``);
* the facts so far (``facts.Progress``), which become the ``FetchOutcome`` however the fetch ends.

Details and URLs in outcomes go through ``redact_url``, so no credential is stored or logged.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
from collections.abc import Awaitable, Callable
from contextlib import suppress
from types import TracebackType

import aiohttp
import httpx
import structlog

from monitor.config import HttpSettings, SafetySettings
from monitor.fetch.body import WALL_SERVERS, WALL_STATUSES, BodyReader
from monitor.fetch.errors import FOREIGN, classify_exception, scrub
from monitor.fetch.facts import FetchStats, Progress, outcome
from monitor.fetch.guard import AddressGuard, GuardedResolver
from monitor.fetch.headers import RequestHeaders, credentials_as_header, header_dict
from monitor.fetch.hosts import HostLimiter, ProcessLimits, host_settings
from monitor.fetch.redirects import REDIRECT_STATUSES, ChainCookies, fetchable_url, follow
from monitor.fetch.retry import backoff, parse_retry_after, should_retry
from monitor.fetch.soft404 import SoftProbes, echoes, learned
from monitor.fetch.transport import SessionTransport, bodyless_request
from monitor.fetch.transport_h2 import Http2Transport
from monitor.pagesim import fingerprint
from monitor.policy import Soft404Rules
from monitor.types import FetchFailure, FetchOutcome, SoftBaseline, Target, TargetKind
from monitor.urls import host_key, redact_url

__all__ = ["Fetcher"]

log = structlog.get_logger("monitor.fetch")

MAX_HEADERS = 128


class Fetcher:
    """Fetches Targets politely and reports facts; use as ``async with Fetcher(http, safety) as f``."""

    def __init__(
        self,
        http: HttpSettings,
        safety: SafetySettings | None = None,
        *,
        rng: random.Random | None = None,
        gate: Callable[[], Awaitable[None]] | None = None,
        on_retry_wait: Callable[[Target, bool], None] | None = None,
        limits: ProcessLimits | None = None,
        soft404: SoftProbes | None = None,
    ) -> None:
        """``gate`` is awaited before every request sent, retries and redirect hops included
        (a distributed shard uses it to stop at once when it no longer owns its hosts).
        ``on_retry_wait(target, True)`` is called when a fetch starts sleeping before a retry
        and ``(target, False)`` when it wakes: it holds no slot meanwhile, and a dispatcher
        may lend its turn to another target. ``limits``: global slots and host limits shared
        with other fetchers of this process (default: this fetcher's own). ``soft404``: probe each
        page's host and prefix with a made-up URL first (``soft404.SoftProbes``; None: never)."""
        self._http = http
        self._gate = gate
        self._on_retry_wait = on_retry_wait
        proxy_host = httpx.URL(http.proxy).host if http.proxy else None
        # Behind a proxy the proxy resolves target names and connects; the proxy itself must be
        # reachable even on a private address ...
        self._guard = AddressGuard(safety, extra_hosts=[proxy_host] if proxy_host else [])
        # ... so a name is resolved here first and refused if any of its addresses is refused
        self._vet_names = bool(http.proxy) and not (safety or SafetySettings()).trust_proxy_dns
        self._resolver: GuardedResolver | None = None
        self._limits = limits
        self._limiter = limits.limiter if limits is not None else HostLimiter.from_settings(http)
        self._rules = [(re.compile(rule.pattern), rule.replacement) for rule in http.remap]
        self._rng = rng or random.Random()
        self.stats = FetchStats(host_peak_in_flight=self._limiter.peaks)
        self._inflight: dict[tuple[str, TargetKind], asyncio.Task[FetchOutcome]] = {}
        self._headers = RequestHeaders(http)
        self._transport: SessionTransport | Http2Transport | None = None
        self._bodies: BodyReader | None = None
        self._global: asyncio.Semaphore | None = None
        self._soft = soft404

    @property
    def limiter(self) -> HostLimiter:
        return self._limiter

    async def __aenter__(self) -> Fetcher:
        http = self._http
        logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLogger("httpx").level))
        ssl_context = httpx.create_ssl_context(verify=True) if http.verify_tls else None
        self._global = self._limits.slots if self._limits is not None else asyncio.Semaphore(http.concurrency)
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
            self._bodies = BodyReader(self._transport, self.stats, self._gate)
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
        self._bodies = BodyReader(self._transport, self.stats, self._gate)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._soft is not None:
            await self._soft.aclose()
        pending = list(self._inflight.values())
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        if self._transport is not None:
            await self._transport.aclose()
            self._transport = self._bodies = None

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

    async def _fetch_one(self, target: Target, probe_cap: int | None = None) -> FetchOutcome:
        """One fetch; with ``probe_cap``, a soft-404 probe (already remapped; GET, body read to the cap)."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        text = self._remapped(target.url) if probe_cap is None else target.url
        progress = Progress(text, "GET" if target.kind is TargetKind.IMAGE or probe_cap else "HEAD")
        progress.body_cap = probe_cap
        # Normal already, unless remapped or given by a caller: read as a browser reads it, so the
        # guard sees the parsed host (every numeric IPv4 spelling in dotted form).
        try:
            normal, url = fetchable_url(text)
        except (httpx.InvalidURL, ValueError) as exc:
            progress.begin()
            progress.fail(FetchFailure.INVALID_URL, scrub(str(exc)), text, progress.method)
            return outcome(target, progress, loop.time() - started)
        text = progress.url = normal
        key = host_key(text)
        extra = host_settings(self._http.hosts, key)
        total = extra.total_timeout if extra and extra.total_timeout else self._http.total_timeout
        method = progress.method
        try:
            async with asyncio.timeout(total) as deadline:
                if self._soft is not None and method == "HEAD":
                    settled, base = self._soft.known(text, key)
                    if not settled:
                        progress.phase = "waiting for the soft-404 probe of its host"
                        base = await self._soft.baseline(text, key, target.host, self._probe)
                    if base is not None:  # a host answering 200 for made-up URLs: read and compare
                        method = progress.method = "GET"
                        progress.baseline = base
                        progress.body_cap = self._soft.rules(target.host).body_limit
                await self._attempts(target, url, key, progress, deadline, method)
        except TimeoutError:
            if not deadline.expired():
                raise
            progress.failure = FetchFailure.TIMEOUT
            progress.detail = f"total deadline of {total:g} s exceeded while {progress.phase}"
        return outcome(target, progress, loop.time() - started)

    async def _probe(self, text: str, key: str, prefix: str, rules: Soft404Rules) -> SoftBaseline | None:
        """GET one made-up URL (``soft404``) like a page of a soft-404 host: what its answer teaches."""
        self.stats.soft_probes += 1
        found = await self._fetch_one(Target(text, key, TargetKind.PAGE), rules.body_limit)
        log.debug("fetch.made_up_url", url=redact_url(text), status=found.status, failure=found.failure)
        return learned(found, key, prefix)

    def _remapped(self, url: str) -> str:
        """The first matching ``http.remap`` rule rewrites the URL (Python ``re.sub`` syntax)."""
        for pattern, replacement in self._rules:
            if pattern.search(url):
                return pattern.sub(replacement, url, count=1)
        return url

    async def _attempts(
        self, target: Target, url: httpx.URL, key: str, p: Progress, deadline: asyncio.Timeout, method: str
    ) -> None:
        """``method`` (HEAD for most pages) then GET, retried with backoff, until the facts are final."""
        http = self._http
        image = target.kind is TargetKind.IMAGE
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
            if self._on_retry_wait is None:
                await asyncio.sleep(delay)
                continue
            self._on_retry_wait(target, True)
            try:
                await asyncio.sleep(delay)
            finally:
                self._on_retry_wait(target, False)

    async def _chain(
        self, target: Target, start: httpx.URL, key: str, method: str, use_range: bool, p: Progress
    ) -> None:
        """One attempt: request ``start`` and follow its redirects, recording every hop."""
        p.begin()
        jar = ChainCookies()  # cookies live for this chain only (set-cookie-then-redirect sites)
        seen: set[tuple[str, int]] = set()
        url = start
        while True:
            url, headers = credentials_as_header(url, self._headers.get(key, target, method, use_range))
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

    async def _vetted(self, host: str, text: str, method: str, p: Progress) -> bool:
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

    async def _exchange(
        self, request: httpx.Request, text: str, key: str, target: Target, jar: ChainCookies, p: Progress
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
                    # redirect bookkeeping and raise on e.g. "javascript:..." before ``follow`` judges it.
                    response = await self._transport.handle_async_request(request)
                except FOREIGN as exc:
                    self._limiter.observe(key, None)
                    p.fail(*classify_exception(exc), text, method)
                    return None
                try:
                    return await self._answer(response, text, key, target, jar, p)
                except FOREIGN as exc:
                    p.fail(*classify_exception(exc), text, method)
                    return None
                finally:
                    with suppress(*FOREIGN):
                        await response.aclose()  # mid-body: aiohttp closes, never drains
            finally:
                stats.in_flight -= 1

    async def _answer(
        self, response: httpx.Response, text: str, key: str, target: Target, jar: ChainCookies, p: Progress
    ) -> httpx.URL | None:
        assert self._bodies is not None
        bodies = self._bodies
        method, status = response.request.method, response.status_code
        headers = header_dict(response)
        retry_after = None
        if status in self._http.retry_statuses or status in (429, 503):
            retry_after = parse_retry_after(headers.get("retry-after"))
        self._limiter.observe(key, status, retry_after)
        if "set-cookie" in headers:
            jar.extract(response)
        p.answer(text, method, status, headers, retry_after)
        location = headers.get("location")
        if status in REDIRECT_STATUSES and location:
            await bodies.discard(response, headers)
            return follow(text, status, location, method, self._http.max_redirects, p)
        if method == "GET" and 200 <= status < 300:
            if target.kind is TargetKind.IMAGE:
                await bodies.read_image(response, headers, self._http.image_byte_cap, p)
            else:
                cap = p.body_cap if p.body_cap is not None else self._http.page_body_cap
                if cap:
                    data = await bodies.read_page(response, headers, cap, p)
                    if p.body_cap is not None:  # a soft-404 host's page, or its probe
                        p.body_print = fingerprint(data, echoes(target.url, text))
        elif method == "GET" and status in WALL_STATUSES and _wall_server(headers):
            await bodies.read_title(response, headers, p)
        else:
            await bodies.discard(response, headers)
        return None


def _wall_server(headers: dict[str, str]) -> bool:
    server = headers.get("server", "").lower()
    return any(name in server for name in WALL_SERVERS)
