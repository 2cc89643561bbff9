"""The alert state machine and the alert events it leads to; pure, emission is the caller's.

Each run feeds every URL's verdict to ``step``. Only runs that say something about the link
count ("counted runs"):

* a *paging failure* — the verdict is in ``AlertSettings.page_on`` AND its resolved severity is
  ``error`` (a warning is reported, never paged; e.g. the AMP cache's 404 under the default
  policy) — is flagged ``f``;
* a good verdict (ok, redirected, moved_permanently) is flagged ``g``;
* anything else (skipped, blocked, rate_limited, timeout, ... by default) is *neutral*: the
  state is returned unchanged — it neither advances nor resets a streak, nor enters the
  flapping window. A bot wall or a slow night says nothing about whether the link is dead.

States: ``ok`` → ``broken`` after ``alert_after`` consecutive failures (transition
"broken", once); ``broken`` → ``ok`` after ``recover_after`` consecutive good runs
("recovered"; good runs never emit anything for a URL that was not alerted). Whenever the
last ``flap_window`` counted runs hold ``flap_threshold`` or more g/f flips, the URL becomes
``flapping`` ("flapping", once) and stays silent until the window is stable again — all of
it the same flag, and that streak long enough — then it leaves with "recovered" (good) or
"broken" (failing).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from itertools import pairwise
from typing import Any, Literal

from monitor.config import AlertSettings
from monitor.types import Judgement, Severity, Size, SizeCheck, Verdict

AlertStatus = Literal["ok", "broken", "flapping"]
Transition = Literal["broken", "recovered", "flapping"]
Event = tuple[str, dict[str, Any]]

GOOD, FAIL = "g", "f"
RECENT_MAX = 64  # width of ``url.recent`` in the store; a larger flap_window is capped to it
MAX_LISTED = 50  # articles/locations listed in one event; enough to act on, bounded in size
HOST_DOWN_SAMPLE = 5


@dataclass(frozen=True, slots=True)
class AlertState:
    """Alerting memory of one URL; persisted in the ``url`` row between runs.

    The streak counters count counted runs only (neutral verdicts leave them alone);
    ``recent`` holds the last flags, newest last, bounded to the flap window.
    """

    state: AlertStatus = "ok"
    consecutive_failures: int = 0
    consecutive_successes: int = 0
    recent: str = ""


def flag_for(verdict: Verdict, severity: Severity, settings: AlertSettings) -> str | None:
    """'g' for a good run, 'f' for a paging failure, None for a neutral run."""
    if verdict.is_good:
        return GOOD
    if verdict in settings.page_on and severity is Severity.ERROR:
        return FAIL
    return None


def flips(recent: str) -> int:
    """How often consecutive flags differ."""
    return sum(1 for a, b in pairwise(recent) if a != b)


def step(
    prev: AlertState, verdict: Verdict, severity: Severity, settings: AlertSettings
) -> tuple[AlertState, Transition | None]:
    """Advance one URL's alert state by one run's judgement; return the new state and any transition."""
    flag = flag_for(verdict, severity, settings)
    if flag is None:
        return prev, None
    window = min(settings.flap_window, RECENT_MAX)
    recent = (prev.recent + flag)[-window:]
    failures = prev.consecutive_failures + 1 if flag == FAIL else 0
    successes = prev.consecutive_successes + 1 if flag == GOOD else 0
    state = AlertState(prev.state, failures, successes, recent)
    if prev.state == "flapping":
        if flips(recent) or len(recent) < window:
            return state, None
        return _settle(state, settings)
    if flips(recent) >= settings.flap_threshold:
        return replace(state, state="flapping"), "flapping"
    return _settle(state, settings)


def _settle(state: AlertState, settings: AlertSettings) -> tuple[AlertState, Transition | None]:
    """Move to ok/broken once the current streak is long enough, emitting only real changes."""
    if state.consecutive_failures >= settings.alert_after and state.state != "broken":
        return replace(state, state="broken"), "broken"
    if state.consecutive_successes >= settings.recover_after and state.state != "ok":
        return replace(state, state="ok"), "recovered"
    return state, None


def _iso(moment: datetime | str | None) -> str | None:
    return moment.isoformat() if isinstance(moment, datetime) else moment


def _where(occurrences: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[str]]:
    """Sorted unique articles and ``article:location`` strings, each capped at MAX_LISTED."""
    articles = sorted({str(occ["article"]) for occ in occurrences})
    locations = sorted({f"{occ['article']}:{occ['location']}" for occ in occurrences})
    return articles[:MAX_LISTED], locations[:MAX_LISTED]


def link_event(
    transition: Transition,
    url: str,
    *,
    judgement: Judgement,
    state: AlertState,
    settings: AlertSettings,
    host: str,
    http_status: int | None = None,
    occurrences: Sequence[Mapping[str, Any]] = (),
    since: datetime | str | None = None,
    down_for_runs: int | None = None,
) -> Event:
    """The event for one transition: ``link.broken``, ``link.recovered`` or ``link.flapping``.

    ``state`` is the state after the step; ``occurrences`` are mappings with ``article`` and
    ``location``; ``since`` is when the URL started failing (or was alerted, for recovery).
    """
    if transition == "broken":
        articles, locations = _where(occurrences)
        return "link.broken", {
            "url": url,
            "verdict": str(judgement.verdict),
            "reason": judgement.reason,
            "http_status": http_status,
            "host": host,
            "articles": articles,
            "locations": locations,
            "since": _iso(since),
            "consecutive_failures": state.consecutive_failures,
        }
    if transition == "recovered":
        return "link.recovered", {"url": url, "since": _iso(since), "down_for_runs": down_for_runs}
    window = min(settings.flap_window, RECENT_MAX)
    return "link.flapping", {"url": url, "flips": flips(state.recent), "window": window}


def moved_event(url: str, final_url: str, occurrences: Sequence[Mapping[str, Any]]) -> Event:
    """``link.moved``: the link works but should be updated to ``final_url``."""
    articles, locations = _where(occurrences)
    return "link.moved", {"url": url, "final_url": final_url, "articles": articles, "locations": locations}


def blocked_event(url: str, host: str, reason: str, occurrences: Sequence[Mapping[str, Any]]) -> Event:
    """``link.blocked``: the URL turned into a bot wall (not a dead link; never pages)."""
    articles, locations = _where(occurrences)
    return "link.blocked", {
        "url": url,
        "host": host,
        "reason": reason,
        "articles": articles,
        "locations": locations,
    }


def title_mismatch_event(url: str, host: str, reason: str, occurrences: Sequence[Mapping[str, Any]]) -> Event:
    """``link.title_mismatch``: the page now carries another title than the article's (title drift)."""
    articles, locations = _where(occurrences)
    keys = {"url": url, "host": host, "reason": reason, "articles": articles, "locations": locations}
    return "link.title_mismatch", keys


def cache_domain(host: str) -> str:
    """The AMP cache a cache URL's host belongs to: ``x-com.cdn.ampproject.org`` → ``cdn.ampproject.org``.

    Google's cache gives each publisher its own subdomain; a single-origin cache (or an address)
    is its own host.
    """
    name = host.lower()
    labels = name.partition(":")[0].split(".")
    if len(labels) <= 2 or labels[-1].isdigit() or name.startswith("["):
        return name
    return name.partition(".")[2]


def amp_not_cached_event(url: str, host: str, reason: str, occurrences: Sequence[Mapping[str, Any]]) -> Event:
    """``amp.not_cached``: a ``cdnAmpWebUrl`` the cache no longer holds (informational)."""
    articles, locations = _where(occurrences)
    keys = {
        "url": url,
        "host": cache_domain(host),
        "reason": reason,
        "articles": articles,
        "locations": locations,
    }
    return "amp.not_cached", keys


def size_mismatch_event(
    url: str, article: str, location: str, declared: Size | None, actual: Size | None, check: SizeCheck
) -> Event:
    """``image.size_mismatch`` for one occurrence; sizes rendered as ``WxH``."""
    return "image.size_mismatch", {
        "url": url,
        "article": article,
        "location": location,
        "declared": str(declared) if declared else None,
        "actual": str(actual) if actual else None,
        "check": str(check),
    }


HOST_GROUPS = {
    "link.broken": "host.down",
    "link.blocked": "host.blocked",
    "amp.not_cached": "amp.cache_flipped",
}


def group_host_down(events: Sequence[Event], threshold: int, sample: int = HOST_DOWN_SAMPLE) -> list[Event]:
    """Collapse ``threshold`` or more ``link.broken`` (``link.blocked``, ``amp.not_cached``) events of
    one host (for the AMP cache: of one cache) into one ``host.down`` (``host.blocked``,
    ``amp.cache_flipped``).

    One dead or walled host should say so once, not once per link. The host event takes the
    place of that host's first link event of the kind; other events keep their order. ``sample``
    holds the first URLs in sorted order.
    """
    by_host: dict[tuple[str, str], list[str]] = defaultdict(list)
    for name, keys in events:
        if name in HOST_GROUPS and keys.get("host"):
            by_host[name, keys["host"]].append(keys["url"])
    grouped = {key for key, urls in by_host.items() if len(urls) >= threshold}
    out: list[Event] = []
    emitted: set[tuple[str, str]] = set()
    for name, keys in events:
        key = (name, keys.get("host") or "")
        if key not in grouped:
            out.append((name, keys))
        elif key not in emitted:
            emitted.add(key)
            urls = by_host[key]
            host_keys = {"host": key[1], "count": len(urls), "sample": sorted(urls)[:sample]}
            if name != "link.broken":
                host_keys["reason"] = keys["reason"]
            out.append((HOST_GROUPS[name], host_keys))
    return out
