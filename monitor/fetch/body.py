"""Reading response bodies: decoded and bounded, fed to the image probe, never drained.

A page GET reads at most ``page_body_cap`` decoded bytes; an image is read only until
``probe.ImageProbe`` answers, first through the Range window the request asked for and then,
only while its size is unknown, through one follow-up Range request to the cap. Unwanted small
bodies (redirects, error pages) are read so the connection can be reused; anything else is
dropped with the connection.
"""

from __future__ import annotations

import asyncio
import html
import re
from collections.abc import AsyncGenerator, AsyncIterable, Awaitable, Callable
from contextlib import aclosing, suppress
from typing import cast

import httpx

from monitor.fetch.decode import Decoder
from monitor.fetch.errors import FOREIGN
from monitor.fetch.facts import DIGEST_WINDOW, FetchStats, Progress
from monitor.fetch.headers import header_dict
from monitor.fetch.transport import bodyless_request
from monitor.probe.sniff import ImageProbe

__all__ = ["WALL_BYTES", "WALL_SERVERS", "WALL_STATUSES", "BodyReader", "og_title", "page_title"]

DISCARD_LIMIT = 16 * 1024  # unwanted bodies up to this size are read so the connection is reused
DISCARD_WAIT = 0.5
# Error answers of these CDNs may be a bot wall known only by its page title ("Just a moment...");
# their first WALL_BYTES are read for it. Any other error page costs nothing extra.
WALL_SERVERS = ("cloudflare", "akamaighost")
WALL_STATUSES = frozenset({403, 503})
WALL_BYTES = 8 * 1024
_TITLE = re.compile(rb"<title[^>]*>(.*?)</title", re.IGNORECASE | re.DOTALL)
_SPACES = re.compile(r"\s+")
_META = re.compile(rb"<meta\b[^>]*>", re.IGNORECASE)
_OG_TITLE = re.compile(rb"""property\s*=\s*["']?og:title\b""", re.IGNORECASE)
_CONTENT = re.compile(rb"""content\s*=\s*(?:"([^"]*)"|'([^']*)')""", re.IGNORECASE | re.DOTALL)


def page_title(data: bytes) -> str | None:
    """The first ``<title>`` of an HTML prefix, entities decoded and spaces collapsed (at most 200 chars)."""
    match = _TITLE.search(data)
    if match is None:
        return None
    text = html.unescape(match.group(1).decode("utf-8", "replace"))
    return _SPACES.sub(" ", text).strip()[:200] or None


def og_title(data: bytes) -> str | None:
    """The ``<meta property="og:title" content="...">`` of an HTML prefix, like ``page_title``."""
    for tag in _META.finditer(data):
        text = tag.group(0)
        if _OG_TITLE.search(text):
            content = _CONTENT.search(text)
            if content is None:
                return None
            value = html.unescape((content.group(1) or content.group(2) or b"").decode("utf-8", "replace"))
            return _SPACES.sub(" ", value).strip()[:200] or None
    return None


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


class BodyReader:
    """Reads the bodies of one Fetcher's responses, counting bytes in its ``FetchStats``.

    ``gate`` is awaited before the follow-up Range request of an image, as before every
    request the Fetcher sends.
    """

    __slots__ = ("_gate", "_stats", "_transport")

    def __init__(
        self,
        transport: httpx.AsyncBaseTransport,
        stats: FetchStats,
        gate: Callable[[], Awaitable[None]] | None,
    ) -> None:
        self._transport = transport
        self._stats = stats
        self._gate = gate

    async def read(
        self,
        response: httpx.Response,
        headers: dict[str, str],
        cap: int,
        probe: ImageProbe | None,
        p: Progress,
        *,
        finish: bool = True,
        offset: int = 0,
        keep: bytearray | None = None,
    ) -> None:
        """Read decoded bytes until the probe answers or ``cap`` is reached; never drain the rest.

        ``offset`` counts bytes already read by an earlier Range request of the same image;
        with ``finish=False`` an unanswered probe is left open for a follow-up request; ``keep``
        collects the bytes read (a page whose title and fingerprint are wanted).
        """
        decoder = Decoder(headers.get("content-encoding"))
        stats = self._stats
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
                    if keep is not None:
                        keep += data
                    if probe is not None and data:
                        if len(p.head) < DIGEST_WINDOW:
                            p.head += data[: DIGEST_WINDOW - len(p.head)]
                        facts = probe.feed(data)
                        if facts is not None:
                            p.image = facts
                            return
                    if consumed >= cap:
                        break
        finally:
            if finish and probe is not None and p.image is None:
                p.image = probe.finish()  # at EOF, at the cap, or on a broken stream: what we have

    async def read_page(
        self, response: httpx.Response, headers: dict[str, str], cap: int, p: Progress
    ) -> bytes:
        """Read at most ``cap`` bytes of a page and keep its titles (``p.title``, ``p.og_title``)."""
        keep = bytearray()
        await self.read(response, headers, cap, None, p, keep=keep)
        data = bytes(keep)
        p.title, p.og_title = page_title(data), og_title(data)
        return data

    async def read_image(
        self, response: httpx.Response, headers: dict[str, str], cap: int, p: Progress
    ) -> None:
        """Probe an image: a first Range window, then (only while its size is unknown) the rest, to the cap.

        Asking for a small window first keeps the server from pushing the whole file into
        socket buffers we then throw away; nearly every header fits in it.
        """
        probe = ImageProbe(cap, headers.get("content-type"))
        partial = response.status_code == 206
        await self.read(response, headers, cap, probe, p, finish=not partial)
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
        self._stats.requests += 1
        try:
            if follow.status_code == 206:
                await self.read(follow, header_dict(follow), cap, probe, p, offset=got)
            else:
                p.image = probe.finish()
        finally:
            with suppress(*FOREIGN):
                await follow.aclose()

    async def read_title(self, response: httpx.Response, headers: dict[str, str], p: Progress) -> None:
        """Read at most WALL_BYTES of an error page and keep its title (``p.title``)."""
        decoder = Decoder(headers.get("content-encoding"))
        buffer = bytearray()
        with suppress(*FOREIGN):
            async with aclosing(_raw_chunks(response)) as chunks:
                async for raw in chunks:
                    self._stats.bytes_received += len(raw)
                    buffer += decoder.decode(raw, WALL_BYTES - len(buffer))
                    if len(buffer) >= WALL_BYTES or b"</title" in buffer.lower():
                        break
        self._stats.bytes_read += len(buffer)
        p.bytes_read = len(buffer)
        p.title = page_title(bytes(buffer))

    async def discard(self, response: httpx.Response, headers: dict[str, str]) -> None:
        """Read a small unwanted body (redirect/error page) so the connection can be reused."""
        length = headers.get("content-length", "")
        if response.request.method == "HEAD" or not length.isdigit() or int(length) > DISCARD_LIMIT:
            return
        with suppress(*FOREIGN):
            async with asyncio.timeout(DISCARD_WAIT), aclosing(_raw_chunks(response)) as chunks:
                async for raw in chunks:
                    self._stats.bytes_received += len(raw)
