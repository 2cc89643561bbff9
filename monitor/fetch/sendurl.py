"""The ``httpx.URL`` of a URL the WHATWG normaliser already wrote, without httpx parsing it again.

Why: every request carries an ``httpx.URL``, and httpx's constructor re-validates and re-quotes
the text one character at a time: 26 µs per URL here, about a twelfth of the event loop's CPU
on an error-rich corpus. A normalised URL of the plain shape (http or https, a lower-case ASCII
host, an optional port, a path and query made only of characters httpx leaves as they are)
gives the same parsed components by splitting it, so it is split here; anything else (IPv6
literals, user info, dot segments, characters httpx would escape) goes through ``httpx.URL``.
``tests/test_sendurl.py`` holds the two equal over the WHATWG URL tests and the real articles.
"""

from __future__ import annotations

import ipaddress
import re

import httpx
from httpx._urlparse import ParseResult  # httpx's parsed form; tests/test_sendurl.py pins it

__all__ = ["PLAIN_SHAPE", "send_url"]

_UNCHANGED = r"A-Za-z0-9\-._~!$&'()*+,;=:@/"  # what httpx's path quoting leaves alone, less [ ]
PLAIN_SHAPE = re.compile(
    r"(https?)://([a-z0-9](?:[a-z0-9.\-]*[a-z0-9])?)(?::([0-9]{1,5}))?"
    rf"(/(?:[{_UNCHANGED}]|%[0-9A-Fa-f]{{2}})*)"
    rf"(?:\?((?:[{_UNCHANGED}?]|%[0-9A-Fa-f]{{2}})*))?"
)
_DEFAULT_PORTS = {"http": 80, "https": 443}


def send_url(normal: str) -> httpx.URL:
    """``httpx.URL(normal)`` for a normalised absolute URL, cheaply when its shape allows."""
    match = PLAIN_SHAPE.fullmatch(normal)
    if match is None:
        return httpx.URL(normal)
    scheme, host, port_text, path, query = match.groups()
    if "/." in path:  # dot segments: httpx would remove them (the normaliser already did, but be sure)
        return httpx.URL(normal)
    if host[-1].isdigit():  # a dotted IPv4 literal: httpx refuses an invalid one, so must this
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise httpx.InvalidURL(f"Invalid IPv4 address: {host!r}") from None
    port = int(port_text) if port_text else None
    if port == _DEFAULT_PORTS[scheme]:
        port = None
    url = httpx.URL.__new__(httpx.URL)
    url._uri_reference = ParseResult(scheme, "", host, port, path, query, None)
    return url
