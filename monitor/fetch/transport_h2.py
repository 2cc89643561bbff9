"""The transport behind ``http2 = true``: httpcore's HTTP/1.1 and HTTP/2 pool, behind the address guard.

Why a second transport: aiohttp, which carries the default transport at a third of httpx's CPU
per request, speaks HTTP/1.1 only. With ``http2 = true`` the engine sends the same httpx
requests through httpcore instead; a server that offers ``h2`` in the TLS handshake (ALPN) gets
HTTP/2, one multiplexed connection per origin, every other server HTTP/1.1. Plain ``http://``
URLs stay on HTTP/1.1, as in browsers (no cleartext upgrade).

The guard holds as in the default transport: every host name is resolved here once and only
the addresses the guard allows are dialled (``GuardedBackend``). httpcore's exceptions become
httpx's, so ``errors.classify_exception`` reads both transports alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any

import httpcore
import httpx

from monitor.fetch.guard import GuardedResolver

__all__ = ["GuardedBackend", "Http2Transport"]

_ERRORS: dict[type[Exception], type[httpx.TransportError]] = {
    httpcore.ConnectTimeout: httpx.ConnectTimeout,
    httpcore.ReadTimeout: httpx.ReadTimeout,
    httpcore.WriteTimeout: httpx.WriteTimeout,
    httpcore.PoolTimeout: httpx.PoolTimeout,
    httpcore.ConnectError: httpx.ConnectError,
    httpcore.ReadError: httpx.ReadError,
    httpcore.WriteError: httpx.WriteError,
    httpcore.RemoteProtocolError: httpx.RemoteProtocolError,
    httpcore.LocalProtocolError: httpx.LocalProtocolError,
    httpcore.ProxyError: httpx.ProxyError,
    httpcore.UnsupportedProtocol: httpx.UnsupportedProtocol,
}


@contextlib.contextmanager
def _httpx_errors() -> Iterator[None]:
    """httpcore's exceptions raised as httpx's, caused by what httpcore wrapped; others unchanged.

    httpcore's pool re-raises ``from None``, which drops the wrapped error (an ``ssl`` or socket
    error the classifier needs) from the chain; it is still the exception's first argument.
    """
    try:
        yield
    except tuple(_ERRORS) as exc:
        ours = next(mapped for core, mapped in _ERRORS.items() if isinstance(exc, core))
        wrapped = exc.args[0] if exc.args and isinstance(exc.args[0], BaseException) else exc
        raise ours(str(exc)) from wrapped


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend that dials only the addresses the guard's resolver returned.

    ``BlockedAddress``, ``socket.gaierror`` and a timed-out lookup propagate as they are (the
    fetcher classifies them); a refused connection to one address moves on to the next.
    """

    def __init__(self, resolver: GuardedResolver) -> None:
        self._resolver = resolver
        self._backend = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        async with asyncio.timeout(timeout):  # the lookup counts towards the connect timeout
            addresses = await self._resolver.resolve(host, port, family=socket.AF_UNSPEC)
        failure: Exception | None = None
        for address in addresses:
            try:
                return await self._backend.connect_tcp(
                    address["host"],
                    address["port"],
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except httpcore.ConnectError as exc:
                failure = exc
        assert failure is not None  # the resolver returns at least one address or raises
        raise failure

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("unix sockets are not checked")

    async def sleep(self, seconds: float) -> None:
        await self._backend.sleep(seconds)


class _Body(httpx.AsyncByteStream):
    """An httpcore response body as httpx's stream, its errors as httpx's."""

    def __init__(self, response: httpcore.Response) -> None:
        self._response = response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _httpx_errors():
            async for chunk in self._response.aiter_stream():
                yield chunk

    async def aclose(self) -> None:
        await self._response.aclose()  # mid-body: the HTTP/2 stream is reset, HTTP/1.1 closed


class Http2Transport(httpx.AsyncBaseTransport):
    """Sends httpx requests (bodyless, no redirects, raw bodies) over HTTP/2 where offered."""

    def __init__(
        self,
        resolver: GuardedResolver,
        *,
        ssl_context: ssl.SSLContext | None,
        connect: float | None,
        read: float | None,
        max_connections: int,
        proxy: str | None = None,
    ) -> None:
        context = ssl_context or _unverified()
        options: dict[str, Any] = {
            "ssl_context": context,
            "max_connections": max_connections,
            "max_keepalive_connections": max_connections,
            "http1": True,
            "http2": True,
            "network_backend": GuardedBackend(resolver),
        }
        self._timeout = {"connect": connect, "read": read, "write": read, "pool": connect}
        if proxy:
            parsed = httpx.URL(proxy)
            auth = (parsed.username, parsed.password) if parsed.username or parsed.password else None
            self._pool: httpcore.AsyncConnectionPool = httpcore.AsyncHTTPProxy(
                proxy_url=str(parsed.copy_with(userinfo=b"")), proxy_auth=auth, **options
            )
        else:
            self._pool = httpcore.AsyncConnectionPool(**options)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        core = httpcore.Request(
            method=request.method,
            url=httpcore.URL(scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path),
            headers=request.headers.raw,
            extensions={"timeout": self._timeout},
        )
        with _httpx_errors():
            response = await self._pool.handle_async_request(core)
        return httpx.Response(
            response.status,
            headers=response.headers,
            stream=_Body(response),
            request=request,
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        await self._pool.aclose()


def _unverified() -> ssl.SSLContext:
    """``verify_tls = false``: TLS without certificate or name checks (still offering h2)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context
