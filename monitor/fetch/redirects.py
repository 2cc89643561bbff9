"""Redirects, followed by the Fetcher hop by hop: which URL comes next (``follow``) and the cookies
a chain keeps (``ChainCookies``).

A Location is read against the current URL as a browser reads it (WHATWG) and normalised like
an article's URL (``fetchable_url``), so the address guard sees its parsed host; each hop is
recorded as a ``Hop``, and non-http schemes, unusable targets and too many hops end the chain
as a ``FetchFailure``.
"""

from __future__ import annotations

import httpx
from ada_url import join_url

from monitor.fetch.errors import scrub
from monitor.fetch.facts import Progress
from monitor.fetch.sendurl import send_url
from monitor.types import FetchFailure, Hop
from monitor.urls import InvalidUrl, normalise_url, redact_url

__all__ = ["MAX_URL_LENGTH", "REDIRECT_STATUSES", "ChainCookies", "fetchable_url", "follow"]

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
MAX_URL_LENGTH = 65536  # a fetched URL (the corpus limits its own, corpus.max_url_length)


class ChainCookies:
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


def fetchable_url(text: str) -> tuple[str, httpx.URL]:
    """``text`` read as a browser reads it and normalised, so the guard sees the parsed host (every
    numeric IPv4 spelling in dotted form), as text and as a URL to send; raises
    ``httpx.InvalidURL`` or ``ValueError``."""
    normal = normalise_url(text, max_length=MAX_URL_LENGTH)
    if isinstance(normal, InvalidUrl):
        raise httpx.InvalidURL(normal.reason)
    return normal, send_url(normal)


def follow(
    text: str, status: int, location: str, method: str, max_redirects: int, p: Progress
) -> httpx.URL | None:
    """The next URL after ``text`` answered ``status`` with ``location``, the hop recorded in ``p``;
    None when the chain ends here (``p`` then holds the failure)."""
    try:
        joined = join_url(text, location)
    except ValueError:
        joined = None
    if joined is None:
        p.hops.append(Hop(redact_url(text), status, redact_url(location)))
        p.fail(FetchFailure.BAD_REDIRECT, f"unusable Location {scrub(location)!r}", text, method)
        return None
    p.hops.append(Hop(redact_url(text), status, redact_url(joined)))
    scheme = joined.partition(":")[0]
    if scheme not in ("http", "https"):
        detail = f"redirect to {scrub(redact_url(joined))} ({scheme or 'no'} scheme) not followed"
        p.fail(FetchFailure.BAD_REDIRECT, detail, text, method)
        return None
    if len(p.hops) > max_redirects:
        p.fail(FetchFailure.TOO_MANY_REDIRECTS, f"more than {max_redirects} redirects", text, method)
        return None
    try:
        return fetchable_url(joined)[1]
    except (httpx.InvalidURL, ValueError) as exc:
        detail = f"unusable Location {scrub(redact_url(joined))!r}: {scrub(str(exc))}"
        p.fail(FetchFailure.BAD_REDIRECT, detail, text, method)
        return None
