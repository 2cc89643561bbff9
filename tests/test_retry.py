"""Retry policy (monitor/retry.py): what is retried, backoff bounds and Retry-After parsing."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.fetch.retry import RETRYABLE_FAILURES, backoff, parse_retry_after, should_retry
from monitor.types import FetchFailure

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


class Fixed:
    """A random source that always returns the same value."""

    def __init__(self, value: float) -> None:
        self.value = value

    def random(self) -> float:
        return self.value


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_transient_statuses_are_retried(status: int) -> None:
    """The default retry statuses are retried."""
    assert should_retry(status)


@pytest.mark.parametrize("status", [200, 204, 301, 304, 400, 401, 403, 404, 410, 451, 501, 999])
def test_other_statuses_are_not_retried(status: int) -> None:
    """Success, redirects and permanent client/server errors are final."""
    assert not should_retry(status)


def test_retry_statuses_are_configurable() -> None:
    """A custom status list replaces the default one."""
    assert should_retry(520, retry_statuses=[520])
    assert not should_retry(503, retry_statuses=[520])


@pytest.mark.parametrize("failure", list(FetchFailure))
def test_only_timeouts_and_resets_are_retried(failure: FetchFailure) -> None:
    """Timeouts and resets are retried; DNS, refused connections, TLS, guard and redirect failures are not."""
    assert should_retry(failure) is (failure in {FetchFailure.TIMEOUT, FetchFailure.RESET})
    assert {FetchFailure.TIMEOUT, FetchFailure.RESET} == RETRYABLE_FAILURES


def test_nothing_to_retry_without_a_result() -> None:
    """No status and no failure is not a reason to retry."""
    assert not should_retry(None)


@settings(max_examples=200, deadline=None)
@given(
    attempt=st.integers(min_value=1, max_value=10_000),
    base=st.floats(min_value=0.0, max_value=100.0),
    cap=st.floats(min_value=0.0, max_value=1000.0),
    draw=st.floats(min_value=0.0, max_value=1.0, exclude_max=True),
)
def test_backoff_stays_within_full_jitter_bounds(attempt: int, base: float, cap: float, draw: float) -> None:
    """Every delay lies in [0, min(cap, base·2^(attempt-1))], for any attempt number (no overflow)."""
    delay = backoff(attempt, base, cap, Fixed(draw))
    ceiling = min(cap, base * 2.0 ** min(attempt - 1, 1023))
    assert 0.0 <= delay <= ceiling + 1e-12


def test_backoff_is_exponential_and_capped() -> None:
    """The ceiling doubles per attempt until the cap, and the jitter scales it linearly."""
    top = Fixed(0.999999)
    ceilings = [round(backoff(n, 0.5, 3.0, top), 3) for n in range(1, 6)]
    assert ceilings == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert backoff(3, 0.5, 30.0, Fixed(0.5)) == pytest.approx(1.0)
    assert backoff(3, 0.5, 30.0, Fixed(0.0)) == 0.0


def test_backoff_jitter_spreads_delays() -> None:
    """With a real random source, delays of the same attempt differ (they do not re-synchronise)."""
    rng = random.Random(7)
    delays = {backoff(4, 0.1, 10.0, rng) for _ in range(50)}
    assert len(delays) == 50
    assert max(delays) <= 0.8


@pytest.mark.parametrize(
    ("attempt", "base", "cap"), [(0, 1.0, 1.0), (-3, 1.0, 1.0), (2, 0.0, 5.0), (2, 1.0, 0.0)]
)
def test_backoff_degenerate_inputs_mean_no_wait(attempt: int, base: float, cap: float) -> None:
    """Attempt numbers below 1 and zero base or cap give no delay."""
    assert backoff(attempt, base, cap, Fixed(0.9)) == 0.0


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("120", 120.0), (" 3 ", 3.0), ("0", 0.0), ("1.5", 1.5), ("007", 7.0)],
)
def test_retry_after_seconds(value: str, seconds: float) -> None:
    """Delay-seconds are read as seconds (fractions tolerated)."""
    assert parse_retry_after(value, NOW) == seconds


def test_retry_after_http_date_in_the_future() -> None:
    """An IMF-fixdate is turned into the seconds from ``now``."""
    when = format_datetime(NOW + timedelta(seconds=90), usegmt=True)
    assert parse_retry_after(when, NOW) == 90.0


@pytest.mark.parametrize(
    "value",
    ["Wednesday, 01-May-24 12:00:45 GMT", "Wed May  1 12:00:45 2024", "Wed, 01 May 2024 12:00:45 -0000"],
)
def test_retry_after_obsolete_date_formats(value: str) -> None:
    """RFC 850 and asctime dates (still accepted by RFC 9110 recipients) parse too."""
    assert parse_retry_after(value, NOW) == 45.0


def test_retry_after_date_in_the_past_means_now() -> None:
    """A date that has passed asks for no wait at all."""
    when = format_datetime(NOW - timedelta(hours=1), usegmt=True)
    assert parse_retry_after(when, NOW) == 0.0


def test_retry_after_naive_now_is_utc() -> None:
    """A naive ``now`` is taken as UTC rather than failing on the comparison."""
    when = format_datetime(NOW + timedelta(seconds=5), usegmt=True)
    assert parse_retry_after(when, NOW.replace(tzinfo=None)) == 5.0


@pytest.mark.parametrize(
    "value", [None, "", "   ", "-5", "soon", "1e400", "12abc", "Mon, 99 Foo 2024 99:99:99 GMT"]
)
def test_retry_after_unusable_values(value: str | None) -> None:
    """Negative, non-numeric, infinite or malformed values are ignored (None)."""
    assert parse_retry_after(value, NOW) is None


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=0, max_value=10**9))
def test_retry_after_integer_round_trip(seconds: int) -> None:
    """Any non-negative integer of delay-seconds is returned exactly."""
    assert parse_retry_after(str(seconds), NOW) == float(seconds)
