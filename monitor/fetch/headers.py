"""Headers both ways: the request headers each host gets (built once per host and kind), and a
response's headers read once into a plain dict.

Per-host headers (``http.hosts``) go to their own host only, and credentials in a URL travel
only as an ``Authorization`` header to the URL that carries them (``credentials_as_header``).
"""

from __future__ import annotations

import base64

import httpx

from monitor.config import HttpSettings
from monitor.fetch.hosts import host_settings
from monitor.fetch.transport import SessionResponse
from monitor.types import Target, TargetKind

__all__ = ["IMAGE_FIRST_WINDOW", "RequestHeaders", "credentials_as_header", "header_dict"]

ACCEPT_ENCODING = "gzip, deflate, br"
PAGE_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
IMAGE_ACCEPT = "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8"
IMAGE_FIRST_WINDOW = 8 * 1024  # first Range asked of an image (81 of 88 real files need less); more if not


class RequestHeaders:
    """The headers of every request a Fetcher sends, cached per host key, kind and Range window."""

    __slots__ = ("_cache", "_http")

    def __init__(self, http: HttpSettings) -> None:
        self._http = http
        self._cache: dict[tuple[str, TargetKind, bool], httpx.Headers] = {}

    def get(self, key: str, target: Target, method: str, use_range: bool) -> httpx.Headers:
        """This host's headers for ``target`` (built once per host and kind; never mutate the result)."""
        image_window = use_range and method == "GET"
        base = self._cache.get((key, target.kind, image_window))
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
            base = self._cache[(key, target.kind, image_window)] = httpx.Headers(fields)
        if self._http.conditional_requests and (target.etag or target.last_modified):
            headers = httpx.Headers(base)
            if target.etag:
                headers["If-None-Match"] = target.etag
            if target.last_modified:
                headers["If-Modified-Since"] = target.last_modified
            return headers
        return base


def credentials_as_header(url: httpx.URL, headers: httpx.Headers) -> tuple[httpx.URL, httpx.Headers]:
    """``url`` without its userinfo, and ``headers`` with that userinfo as Basic ``Authorization``.

    aiohttp refuses a URL carrying userinfo next to an Authorization header, so the credentials
    travel only as that header, and only to the URL that carries them.
    """
    if not url.userinfo:
        return url, headers
    token = base64.b64encode(f"{url.username}:{url.password}".encode()).decode("ascii")
    headers = httpx.Headers(headers)
    headers["Authorization"] = f"Basic {token}"
    return url.copy_with(userinfo=b""), headers


def header_dict(response: httpx.Response) -> dict[str, str]:
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
