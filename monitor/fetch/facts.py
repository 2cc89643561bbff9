"""The facts of one fetch as they accumulate (``Progress``), a Fetcher's counters (``FetchStats``),
and the ``FetchOutcome`` they become (``outcome``).

The deadline may end a fetch at any await, so every step records its facts here as it goes and
whatever is here when the fetch ends is the outcome; nothing is kept of a response but the
headers in ``KEPT_HEADERS``, and every URL goes through ``redact_url``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from monitor.types import FetchFailure, FetchOutcome, Hop, ImageFacts, SoftBaseline, Target
from monitor.urls import redact_url

__all__ = [
    "DIGEST_WINDOW",
    "HEAD_FALLBACK_FAILURES",
    "KEPT_HEADERS",
    "FetchStats",
    "Progress",
    "image_digest",
    "outcome",
]

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


class Progress:
    """Facts of the fetch so far; the deadline turns whatever is here into the outcome.

    A new attempt keeps the previous attempt's facts until it produces its own (answer or
    failure), so a deadline hit while waiting to retry still reports the last real answer.
    """

    __slots__ = (
        "_fresh",
        "attempts",
        "baseline",
        "body_cap",
        "body_print",
        "bytes_read",
        "detail",
        "failure",
        "head",
        "headers",
        "hops",
        "image",
        "method",
        "og_title",
        "phase",
        "retry_after",
        "status",
        "title",
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
        self.title: str | None = None
        self.og_title: str | None = None
        self.body_print: str | None = None
        self.body_cap: int | None = None  # a page read with GET at most this far (else page_body_cap)
        self.baseline: SoftBaseline | None = None  # set: the body is fingerprinted and compared
        self.head = b""  # the first DIGEST_WINDOW bytes of an image body
        self.phase = "starting"
        self._fresh = False

    def begin(self) -> None:
        self.attempts += 1
        self._fresh = True

    def _settle(self, url: str, method: str) -> None:
        if self._fresh:
            self._fresh = False
            self.hops = []
            self.status = self.headers = self.image = self.failure = self.retry_after = self.title = None
            self.og_title = self.body_print = None
            self.bytes_read = 0
            self.head = b""
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
    soft_probes: int = 0  # made-up URLs requested (``soft404``)
    bytes_read: int = 0  # decoded body bytes consumed
    bytes_received: int = 0  # body bytes as received, before decoding
    in_flight: int = 0
    peak_in_flight: int = 0
    host_peak_in_flight: dict[str, int] = field(default_factory=dict)  # per host key


def outcome(target: Target, p: Progress, elapsed: float) -> FetchOutcome:
    """The outcome of ``target`` from its facts so far, ``elapsed`` seconds after it started."""
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
        title=p.title,
        og_title=p.og_title,
        body_print=p.body_print,
        baseline=p.baseline,
        image_digest=image_digest(p, headers),
    )


DIGEST_WINDOW = 1024


def image_digest(p: Progress, headers: dict[str, str]) -> str | None:
    """What identifies an image's bytes cheaply: the first window's hash, full size, content type.

    None unless the full size is known (``Content-Range`` total, or ``Content-Length`` of a 200)
    and the window was read whole (or the image is smaller than it).
    """
    if p.image is None or p.image.error is not None or p.status not in (200, 206):
        return None
    total_text = headers.get("content-range", "").rpartition("/")[2].strip()
    if p.status == 200:
        total_text = headers.get("content-length", "")
    if not total_text.isdigit() or len(p.head) < min(DIGEST_WINDOW, int(total_text)):
        return None
    kind = headers.get("content-type", "").partition(";")[0].strip().lower()
    return f"{hashlib.sha256(p.head).hexdigest()[:32]}:{total_text}:{kind}"
