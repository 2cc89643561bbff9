"""Retry policy: what is worth another try, how long to wait, and what ``Retry-After`` asks for.

Pure functions (no clock, no I/O: the caller passes ``now`` and the random source) so the
policy is testable exactly and the fetcher stays the only place that sleeps.

Retried: timeouts, connection resets and the statuses in ``retry_statuses`` (408, 429 and
the transient 5xx by default). Not retried: DNS failures and refused connections (as in
lychee: a host that refuses now almost always refuses a second later, and waiting on it only
slows the run), TLS and protocol errors, guard refusals, redirect problems and other 4xx.
"""

from __future__ import annotations

import math
import random
from collections.abc import Collection
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Protocol

from monitor.config import DEFAULT_RETRY_STATUSES
from monitor.types import FetchFailure

__all__ = ["RETRYABLE_FAILURES", "backoff", "parse_retry_after", "should_retry"]

RETRYABLE_FAILURES = frozenset({FetchFailure.TIMEOUT, FetchFailure.RESET})


class Uniform(Protocol):
    """The part of ``random.Random`` that jitter needs."""

    def random(self) -> float: ...


def should_retry(
    result: int | FetchFailure | None, retry_statuses: Collection[int] = DEFAULT_RETRY_STATUSES
) -> bool:
    """Whether an attempt that ended in ``result`` (a status or a failure) deserves another try."""
    if result is None:
        return False
    if isinstance(result, FetchFailure):
        return result in RETRYABLE_FAILURES
    return result in retry_statuses


def backoff(attempt: int, base: float, cap: float, rng: Uniform | None = None) -> float:
    """Seconds to wait before retry number ``attempt`` (1-based): full jitter over ``base·2^(n-1)``.

    Full jitter (uniform between 0 and the exponential ceiling, AWS architecture blog) spreads
    the retries of many URLs that failed together instead of re-synchronising them.
    """
    if attempt < 1 or base <= 0 or cap <= 0:
        return 0.0
    exponent = min(attempt - 1, 63)  # 2**63·base is beyond any cap; avoids float overflow
    ceiling = min(cap, base * math.ldexp(1.0, exponent))
    return (rng or random).random() * ceiling


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds a ``Retry-After`` value asks to wait (delay-seconds or HTTP-date), or None if unusable.

    A date in the past means "now" (0). Fractional seconds are tolerated although RFC 9110
    allows only digits; negative or non-numeric values are ignored.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if text[0].isdigit() or text[0] == ".":
        try:
            seconds = float(text)
        except ValueError:
            return None
        return seconds if math.isfinite(seconds) else None
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT; "-0000" parses as naive
        when = when.replace(tzinfo=UTC)
    current = now if now is not None else datetime.now(UTC)
    if current.tzinfo is None:
        current = current.replace(tzinfo=UTC)
    return max(0.0, (when - current).total_seconds())
