"""httpx's transport interface over one shared aiohttp session, with nothing per request but the request.

Why our own and not a general-purpose adapter: the engine sends millions of small requests
(HEADs, 8 KB image windows) and the CPU per request decides how fast a run is on a small
machine. Everything that is the same for every request (timeouts, proxy, no body, no
decompression, no redirects) is decided once here; the URL httpx already normalised and
percent-encoded is handed to aiohttp as encoded; aiohttp's exceptions travel unchanged
(``errors.classify_exception`` reads them). Figures: ``python -m bench.transport_cpu``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import httpx
from yarl import URL

__all__ = ["SessionBody", "SessionResponse", "SessionTransport", "bodyless_request"]

_HTTP11 = {"http_version": b"HTTP/1.1"}
CHUNK = 16 * 1024  # at most this much per piece, so a probe or a cap stops close to where it should
_NO_BODY = httpx.ByteStream(b"")


def bodyless_request(method: str, url: httpx.URL, headers: httpx.Headers) -> httpx.Request:
    """The ``httpx.Request(method, url, headers=headers)`` of a GET or HEAD, built at a fifth of the CPU.

    httpx's constructor normalises every header twice and encodes an empty body for each
    request; in a busy event loop that was a tenth of the CPU per URL. ``headers`` is already
    an ``httpx.Headers`` (built once per host); the result is the same plain ``httpx.Request``
    httpx would build (Host first, an empty body stream), with headers of its own to mutate.
    Its ``content`` is not pre-read (``request.read()`` gives ``b""``): nothing here needs it.
    """
    request = httpx.Request.__new__(httpx.Request)
    request.method = method
    request.url = url
    if "Host" in headers:
        request.headers = httpx.Headers(headers)
    else:
        request.headers = httpx.Headers([(b"Host", url.netloc), *headers.raw])
    request.extensions = {}
    request.stream = _NO_BODY
    return request


class SessionBody(httpx.AsyncByteStream):
    """A response body read straight from aiohttp, in pieces of what has arrived (at most CHUNK)."""

    __slots__ = ("_response",)

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        content = self._response.content
        while True:
            chunk = await content.read(CHUNK)
            if not chunk:
                return
            yield chunk

    async def aclose(self) -> None:
        """Release the connection: back to the pool when the body was read, closed otherwise."""
        self._response.release()


class SessionResponse(httpx.Response):
    """An ``httpx.Response`` over an aiohttp response whose ``headers`` are built on first use.

    The engine reads the few headers it needs straight from ``raw_headers`` (the pairs as
    received), so most responses never pay for httpx's header normalisation; closing releases
    the aiohttp response directly.
    """

    def __init__(self, response: aiohttp.ClientResponse, request: httpx.Request) -> None:
        self._aio = response
        self._headers: httpx.Headers | None = None
        self.raw_headers: tuple[tuple[bytes, bytes], ...] = response.raw_headers
        super().__init__(response.status, stream=SessionBody(response), request=request, extensions=_HTTP11)

    @property
    def headers(self) -> httpx.Headers:
        if self._headers is None:
            self._headers = httpx.Headers(self.raw_headers)
        return self._headers

    @headers.setter
    def headers(self, value: httpx.Headers) -> None:
        # httpx.Response.__init__ assigns an empty Headers (we pass none); keep the lazy ones then
        self._headers = value if len(value) else None

    async def aclose(self) -> None:
        if not self.is_closed:
            self.is_closed = True
            self._aio.release()  # back to the pool when the body was read, closed otherwise


class SessionTransport(httpx.AsyncBaseTransport):
    """Sends httpx requests (bodyless, no redirects, raw bodies) through ``session``."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        connect: float | None,
        read: float | None,
        proxy: str | None = None,
    ) -> None:
        self.session = session
        # "connect" bounds the pool wait + DNS + TCP + TLS; sock_read each wait for bytes
        self._timeout = aiohttp.ClientTimeout(sock_connect=connect, sock_read=read, connect=connect)
        self._proxy: URL | None = None
        self._proxy_auth: aiohttp.BasicAuth | None = None
        if proxy:
            parsed = httpx.URL(proxy)
            if parsed.username or parsed.password:
                self._proxy_auth = aiohttp.BasicAuth(parsed.username, parsed.password)
            self._proxy = URL(str(parsed.copy_with(userinfo=b"")), encoded=True)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.session.request(
            request.method,
            URL(str(request.url), encoded=True),
            # httpx stored the names and values as bytes; decoding them once is cheaper than
            # multi_items(), which re-checks the encoding per header
            headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw],
            allow_redirects=False,
            timeout=self._timeout,
            proxy=self._proxy,
            proxy_auth=self._proxy_auth,
        )
        return SessionResponse(response, request)

    async def aclose(self) -> None:
        await self.session.close()
