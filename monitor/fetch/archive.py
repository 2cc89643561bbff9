"""Archived copies of dead pages: one lookup per page at the Wayback Machine's availability API.

``GET {endpoint}/wayback/available?url=<page>`` answers ``{"archived_snapshots": {"closest":
{"available": true, "url": ..., "timestamp": "YYYYMMDDhhmmss", "status": "200"}}}``, or
``{"archived_snapshots": {}}`` when there is no copy (archive.org, and a pywb serving the same
API). A lookup is sent like a check's request: an aiohttp session whose resolver enforces the
SSRF guard (``GuardedResolver``; a self-hosted archive on a private address needs
``safety.allow_hosts`` or ``allow_cidrs``), the configured proxy and User-Agent, a bounded body,
no redirects followed, nothing kept between requests.

The archive is a third party's service, so it is asked gently: request starts at least
``1 / rate_per_s`` apart (``Pacer``), at most ``concurrency`` in flight, a 429 (or a 503 with
``Retry-After``) holds every lookup back for the time asked, and a wait longer than
``http.retry_after_cap`` ends the lookups for this run, as do ``UNAVAILABLE_AFTER`` failures in a
row: a dead archive costs a few timeouts, not one per broken link.

``lookup`` never raises: its ``ArchiveAnswer`` holds a copy, none (an answer, worth caching),
or an ``error`` (no answer: not cached, asked again next run).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import aiohttp
import httpx

from monitor.config import ArchiveSettings, HttpSettings, SafetySettings
from monitor.fetch.errors import FOREIGN, classify_exception
from monitor.fetch.guard import AddressGuard, BlockedAddress, GuardedResolver
from monitor.fetch.headers import header_dict
from monitor.fetch.retry import parse_retry_after
from monitor.fetch.transport import SessionTransport, bodyless_request
from monitor.types import ArchiveSnapshot

__all__ = ["ArchiveAnswer", "ArchiveClient", "Pacer", "parse_answer"]

UNAVAILABLE_AFTER = 3  # failed lookups in a row before the archive is left alone for the run
BODY_CAP = 256 * 1024  # an availability answer is a few hundred bytes
RATE_LIMIT_WAIT = 30.0  # a 429 without a usable Retry-After
ATTEMPTS = 3  # per page, counting the retries after a 429/503


@dataclass(frozen=True, slots=True)
class ArchiveAnswer:
    """What the archive said about one page: a copy, none (``snapshot`` None), or no answer (``error``)."""

    url: str
    snapshot: ArchiveSnapshot | None = None
    error: str | None = None


class Pacer:
    """Request starts at least ``interval`` seconds apart, none before a ``hold`` has ended."""

    def __init__(self, interval: float) -> None:
        self._interval = interval
        self._next = 0.0
        self._lock = asyncio.Lock()

    def hold(self, seconds: float) -> None:
        """No request starts in the next ``seconds`` (the archive asked for it)."""
        loop = asyncio.get_running_loop()
        self._next = max(self._next, loop.time() + seconds)

    async def turn(self) -> None:
        """Wait for this request's start; a hold set meanwhile is waited for too."""
        loop = asyncio.get_running_loop()
        async with self._lock:
            while (wait := self._next - loop.time()) > 0:
                await asyncio.sleep(wait)
            self._next = loop.time() + self._interval


def parse_answer(url: str, body: bytes) -> ArchiveAnswer:
    """The availability API's JSON read leniently where it may, strictly where it must: anything
    but the documented shape is an error (not "none found"), so it is not cached."""
    try:
        doc: Any = json.loads(body)
    except ValueError:  # UnicodeDecodeError included
        return ArchiveAnswer(url, error="the archive's answer is not JSON")
    snapshots = doc.get("archived_snapshots") if isinstance(doc, dict) else None
    if not isinstance(snapshots, dict):
        return ArchiveAnswer(url, error="the archive's answer has no archived_snapshots object")
    closest = snapshots.get("closest")
    if closest is None:
        return ArchiveAnswer(url)
    if not isinstance(closest, dict):
        return ArchiveAnswer(url, error="the archive's closest snapshot is not an object")
    if closest.get("available") is not True:
        return ArchiveAnswer(url)
    where, stamp, status = closest.get("url"), closest.get("timestamp"), closest.get("status")
    if not isinstance(where, str) or not where.lower().startswith(("http://", "https://")):
        return ArchiveAnswer(url, error="the archive's closest snapshot has no http(s) url")
    if not isinstance(stamp, str | int):
        return ArchiveAnswer(url, error="the archive's closest snapshot has no timestamp")
    if status is not None and not str(status).startswith("2"):
        return ArchiveAnswer(url)  # the closest capture is of an error page or a redirect: no copy
    return ArchiveAnswer(url, ArchiveSnapshot(where, str(stamp)))


class ArchiveClient:
    """Looks pages up at ``archive.endpoint``; use as ``async with ArchiveClient(...) as client``."""

    def __init__(self, archive: ArchiveSettings, http: HttpSettings, safety: SafetySettings) -> None:
        self._archive = archive
        self._http = http
        self._safety = safety
        self._pacer = Pacer(1.0 / archive.rate_per_s)
        self._slots = asyncio.Semaphore(archive.concurrency)
        self._failures = 0
        self._headers = httpx.Headers({"User-Agent": http.user_agent, "Accept": "application/json"})
        self._transport: SessionTransport | None = None
        self._resolver: GuardedResolver | None = None
        self._guard: AddressGuard | None = None
        self.requests = 0
        self.in_flight = 0
        self.peak_in_flight = 0
        self.gave_up: str | None = None  # why the lookups ended for this run
        self._base: httpx.URL | None = None
        try:
            base = httpx.URL(archive.endpoint.rstrip("/") + "/wayback/available")
        except httpx.InvalidURL as exc:
            self.gave_up = f"archive.endpoint is not a URL: {exc}"
        else:
            if base.scheme in ("http", "https") and base.host:
                self._base = base
            else:
                self.gave_up = "archive.endpoint is not an http(s) URL"

    async def __aenter__(self) -> ArchiveClient:
        http = self._http
        proxy_host = httpx.URL(http.proxy).host if http.proxy else None
        self._guard = AddressGuard(self._safety, extra_hosts=[proxy_host] if proxy_host else [])
        self._resolver = GuardedResolver(self._guard)
        ssl = httpx.create_ssl_context(verify=True) if http.verify_tls else False
        connector = aiohttp.TCPConnector(
            limit=self._archive.concurrency, resolver=self._resolver, ttl_dns_cache=300, ssl=ssl
        )
        session = aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            max_line_size=http.max_header_bytes,
            max_field_size=http.max_header_bytes,
        )
        timeout = self._archive.timeout_s
        self._transport = SessionTransport(
            session, connect=min(http.connect_timeout, timeout), read=timeout, proxy=http.proxy
        )
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._transport is not None:
            await self._transport.aclose()
            self._transport = None

    async def lookup(self, url: str) -> ArchiveAnswer:
        """The archive's answer for page ``url`` (after waiting for its turn)."""
        for _ in range(ATTEMPTS):
            if self.gave_up is not None:
                return ArchiveAnswer(url, error=self.gave_up)
            await self._pacer.turn()
            if self.gave_up is not None:
                return ArchiveAnswer(url, error=self.gave_up)
            status, wait, answer = await self._attempt(url)
            if answer is not None:
                self._count(answer)
                return answer
            wait = RATE_LIMIT_WAIT if wait is None else wait  # only a 429 comes without one
            if wait > self._http.retry_after_cap:
                self.gave_up = (
                    f"the archive answered HTTP {status} and asked to wait {wait:g} s "
                    f"(more than http.retry_after_cap = {self._http.retry_after_cap:g} s)"
                )
                return ArchiveAnswer(url, error=self.gave_up)
            self._pacer.hold(wait)
        answer = ArchiveAnswer(url, error=f"the archive still answered HTTP {status} after {ATTEMPTS} tries")
        self._count(answer)
        return answer

    def _count(self, answer: ArchiveAnswer) -> None:
        """Failures in a row end the lookups for the run; any answer resets the count."""
        if answer.error is None:
            self._failures = 0
            return
        self._failures += 1
        if self._failures >= UNAVAILABLE_AFTER and self.gave_up is None:
            self.gave_up = f"{self._failures} lookups in a row failed, the last: {answer.error}"

    async def _attempt(self, url: str) -> tuple[int | None, float | None, ArchiveAnswer | None]:
        """One request: (status, seconds to wait, None) when it should be tried again after a wait,
        else (status, None, the answer)."""
        if self._transport is None or self._base is None or self._guard is None:
            return None, None, ArchiveAnswer(url, error=self.gave_up or "the archive client is not open")
        target = self._base.copy_merge_params({"url": url})
        timeout = self._archive.timeout_s
        async with self._slots:
            self.requests += 1
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
            try:
                async with asyncio.timeout(timeout):
                    status, headers, body = await self._get(target)
            except TimeoutError:
                return (
                    None,
                    None,
                    ArchiveAnswer(url, error=f"no answer from the archive within {timeout:g} s"),
                )
            except FOREIGN as exc:
                return None, None, ArchiveAnswer(url, error=classify_exception(exc)[1])
            finally:
                self.in_flight -= 1
        if status in (429, 503):
            wait = parse_retry_after(headers.get("retry-after"))
            if status == 429 or wait is not None:
                return status, wait, None
        if status != 200:
            return status, None, ArchiveAnswer(url, error=f"the archive answered HTTP {status}")
        if body is None:
            return status, None, ArchiveAnswer(url, error=f"the archive's answer is over {BODY_CAP} bytes")
        return status, None, parse_answer(url, body)

    async def _get(self, target: httpx.URL) -> tuple[int, dict[str, str], bytes | None]:
        """Status, headers and body (None when over ``BODY_CAP``) of one GET, behind the guard."""
        assert self._transport is not None and self._guard is not None and self._resolver is not None
        host = target.host
        refusal = self._guard.check_literal(host)
        if refusal is not None:
            raise BlockedAddress(refusal)
        if self._http.proxy and not self._safety.trust_proxy_dns:
            await self._resolver.vet(host)
        response = await self._transport.handle_async_request(bodyless_request("GET", target, self._headers))
        try:
            headers = header_dict(response)
            if response.status_code != 200:
                return response.status_code, headers, b""
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_raw():
                size += len(chunk)
                if size > BODY_CAP:
                    return response.status_code, headers, None
                chunks.append(chunk)
            return response.status_code, headers, b"".join(chunks)
        finally:
            await response.aclose()
