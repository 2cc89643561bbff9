"""The one exception boundary of fetching: a foreign exception becomes a ``FetchFailure`` and a detail.

Transports raise aiohttp, httpx, httpcore, OS and decoder errors alike; ``classify_exception``
reads the whole cause chain so both transports are judged the same way, and ``scrub`` keeps
every detail one short line with any URL in it redacted. Anything outside ``FOREIGN`` is a bug
and propagates.
"""

from __future__ import annotations

import errno
import re
import socket
import ssl
import zlib

import aiohttp
import brotli
import httpx
from aiohttp import http_exceptions

from monitor.fetch.guard import BlockedAddress
from monitor.types import FetchFailure
from monitor.urls import redact_url

__all__ = ["FOREIGN", "classify_exception", "scrub"]

# Foreign exceptions that mean "network trouble" (everything else is a bug and propagates).
FOREIGN: tuple[type[BaseException], ...] = (
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
            return failure, scrub(detail)
    return FetchFailure.PROTOCOL, scrub(_describe(chain[-1]))


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


def scrub(text: str) -> str:
    """One line, bounded, with any URL in it redacted."""
    flat = " ".join(_URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text).split())
    return flat if len(flat) <= 300 else flat[:299] + "…"
