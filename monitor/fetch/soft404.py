"""Soft-404 probes: per host and first path segment, what a made-up sibling URL answers.

Many sites answer a missing page with 200 and their "not found" template. Before the first page
of a host and prefix (``/news/...``: ``news``) is fetched, one made-up URL in the same directory
(``/news/2019/zq7x3k1v9w-not-a-page``) is requested, through the fetcher's host limits and address
guard like any request. A 4xx answer costs nothing more: that host's pages stay HEAD-only. A 200
(after redirects) makes it a soft-404 host: its pages are then read with GET (at most
``body_limit`` bytes) and fingerprinted, and the verdict stage compares them with the baseline.
Baselines come in from the store (younger than ``baseline_ttl_hours``: no probe) and the ones
probed now go out through ``fresh``; a probe that got no usable answer (timeout, 5xx) is not
kept, so the next run asks again.
"""

from __future__ import annotations

import asyncio
import random
import string
from collections.abc import Awaitable, Callable, Iterable
from urllib.parse import unquote

from monitor.policy import Soft404Rules, Soft404Settings
from monitor.types import FetchOutcome, SoftBaseline
from monitor.urls import redact_url

__all__ = [
    "PROBE_SUFFIX",
    "SoftProbes",
    "echoes",
    "learned",
    "made_up_url",
    "probe_wanted",
    "split_page_url",
    "url_prefix",
]

PROBE_SUFFIX = "-not-a-page"
_SLUG_CHARS = string.ascii_lowercase + string.digits
Probe = Callable[[str, str, str, Soft404Rules], Awaitable[SoftBaseline | None]]


def probe_wanted(rules: Soft404Settings) -> bool:
    """Whether any host may be probed (else the fetcher gets no ``SoftProbes`` and pays nothing)."""
    tables = [rules, *rules.hosts.values()]
    return any(t.enabled and t.probe for t in tables) if rules.hosts else rules.enabled and rules.probe


def split_page_url(url: str) -> tuple[str, str, str]:
    """``(origin, directory, prefix)`` of a normal absolute URL: the part before the path, the
    path up to its last ``/``, and the first path segment ("" for a page at the root)."""
    start = url.find("//")
    slash = url.find("/", start + 2 if start >= 0 else 0)
    if slash < 0:
        return url.partition("?")[0].partition("#")[0], "/", ""
    origin, path = url[:slash], url[slash:]
    for mark in "?#":
        path = path.partition(mark)[0]
    directory = path[: path.rfind("/") + 1]
    first = path[1:].partition("/")
    return origin, directory, first[0] if first[1] else ""


def url_prefix(url: str) -> str:
    """``split_page_url(url)[2]`` on the per-URL path: the first path segment, "" at the root."""
    slash = url.find("/", url.find("//") + 2)
    end = url.find("/", slash + 1) if slash >= 0 else -1
    if end < 0:
        return ""
    first = url[slash + 1 : end]
    return "" if "?" in first or "#" in first else first


def echoes(*urls: str) -> list[str]:
    """What a "not found" page may repeat of the URLs asked for: each URL and path, as sent and
    percent-decoded (``pagesim.fingerprint`` cuts them from the text)."""
    found: list[str] = []
    for url in urls:
        origin = split_page_url(url)[0]
        path = url[len(origin) :].partition("?")[0].partition("#")[0]
        found += [url, unquote(url), path, unquote(path)]
    return found


def made_up_url(url: str, rng: random.Random) -> str:
    """A sibling of ``url`` that no site has: its directory and a random slug."""
    origin, directory, _ = split_page_url(url)
    slug = "".join(rng.choice(_SLUG_CHARS) for _ in range(10))
    return f"{origin}{directory}{slug}{PROBE_SUFFIX}"


def learned(probe: FetchOutcome, key: str, prefix: str) -> SoftBaseline | None:
    """What a probe's answer says: a 2xx, a soft-404 baseline; a 4xx, a host that says "not found";
    anything else (no answer, a 5xx) is None: nothing learned, nothing stored."""
    status, url = probe.status, redact_url(probe.url)
    if probe.failure is not None or status is None or not 200 <= status < 500 or 300 <= status < 400:
        return None
    if status >= 400:
        return SoftBaseline(key, prefix, url, status, False)
    return SoftBaseline(key, prefix, url, status, True, probe.title or probe.og_title, probe.body_print)


class SoftProbes:
    """The baselines of one run, by (host key, prefix); each probed at most once, however many
    pages of it are fetched at the same time (they wait on one shared probe)."""

    def __init__(self, rules: Soft404Settings, rng: random.Random | None = None) -> None:
        self._rules = rules
        self._rng = rng or random.Random()
        self._known: dict[tuple[str, str], SoftBaseline | None] = {}
        self._tasks: dict[tuple[str, str], asyncio.Task[SoftBaseline | None]] = {}
        self._per_host: dict[str, Soft404Rules] = {}
        self.fresh: list[SoftBaseline] = []  # probed in this run: for the store
        self.probes = 0

    def seed(self, known: Iterable[SoftBaseline]) -> None:
        """Baselines from earlier runs: their hosts and prefixes are not probed again."""
        for base in known:
            self._known[(base.host, base.prefix)] = base

    def rules(self, host: str) -> Soft404Rules:
        rules = self._per_host.get(host)
        if rules is None:
            rules = self._per_host[host] = self._rules.for_host(host)
        return rules

    def known(self, url: str, key: str) -> tuple[bool, SoftBaseline | None]:
        """Without waiting: whether ``url``'s host and prefix is settled, and its soft baseline if any
        (the fetcher's per-URL path when nothing is to be probed: no coroutine, one dict lookup)."""
        slot = (key, url_prefix(url))
        if slot not in self._known:
            return False, None
        found = self._known[slot]
        return True, found if found is not None and found.soft else None

    async def baseline(self, url: str, key: str, host: str, probe: Probe) -> SoftBaseline | None:
        """The soft baseline of ``url``'s host and prefix, or None when its made-up URLs are not 200."""
        settled, found = self.known(url, key)
        if settled:
            return found
        slot = (key, url_prefix(url))
        task = self._tasks.get(slot)
        if task is None:
            rules = self.rules(host)
            if not (rules.enabled and rules.probe):
                self._known[slot] = None
                return None
            self.probes += 1
            task = asyncio.ensure_future(probe(made_up_url(url, self._rng), key, slot[1], rules))
            self._tasks[slot] = task
            task.add_done_callback(lambda done: self._settle(slot, done))
        answer = await asyncio.shield(task)
        return answer if answer is not None and answer.soft else None

    def _settle(self, slot: tuple[str, str], task: asyncio.Task[SoftBaseline | None]) -> None:
        del self._tasks[slot]
        found = None if task.cancelled() or task.exception() is not None else task.result()
        self._known[slot] = found
        if found is not None:
            self.fresh.append(found)

    async def aclose(self) -> None:
        """Cancel the probes still running (the fetcher is closing)."""
        pending = list(self._tasks.values())
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
