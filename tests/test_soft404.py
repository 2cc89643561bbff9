"""Soft 404s by made-up URL: one probe per host and prefix, GET only where it answers 200, a TTL'd baseline.

Against the fixture server: /soft/ answers every path 200 (a story or its "not found" template),
/pages/ 404s what it does not have. Requests are counted at the server, by method.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import select

from monitor.fetch.soft404 import PROBE_SUFFIX, made_up_url, split_page_url, url_prefix
from monitor.pagesim import fingerprint, similarity, title_similarity
from monitor.policy import VerdictPolicy
from monitor.run.check import run_check
from monitor.store.db import open_engine
from monitor.store.models import ResultRow, SoftBaselineRow, UrlRow
from monitor.types import FetchOutcome, Hop, SoftBaseline, Target, TargetKind, Verdict
from monitor.verdict import classify
from tests.pg_schema import pg_schema_url
from tests.server import FixtureServer, not_found_html, story_html
from tests.test_check import settings_for, write

GONE = "/soft/news/2019/old-gone-story"
REAL = "/soft/news/2020/story-council-vote"
HEALTHY = ("/pages/story-river-bridge", "/pages/story-harvest", "/pages/2021/story-flood")


def _corpus(server: FixtureServer, tmp_path: Path) -> None:
    u = server.url
    a = f'---\ntitle: "Story council vote"\nwebUrl: "{u(GONE)}"\nampWebUrl: "{u(REAL)}"\n---\n'
    write(tmp_path, "a.md", a)
    write(
        tmp_path,
        "b.md",
        f'---\ntitle: "B"\nwebUrl: "{u(HEALTHY[0])}"\nampWebUrl: "{u(HEALTHY[1])}"\n'
        f'originalUrl: "{u(HEALTHY[2])}"\n---\n',
    )


def _results(engine_url: str, run_id: int) -> dict[str, tuple[str, str, str | None, int]]:
    engine = open_engine(engine_url)
    with engine.connect() as conn:
        rows = conn.execute(
            select(UrlRow.url, ResultRow.verdict, ResultRow.reason, ResultRow.method, ResultRow.bytes_read)
            .join(UrlRow, UrlRow.id == ResultRow.url_id)
            .where(ResultRow.run_id == run_id)
        ).all()
    engine.dispose()
    return {url: (verdict, reason, method, read) for url, verdict, reason, method, read in rows}


def _probes(server: FixtureServer, prefix: str) -> list[str]:
    return [r.method for r in server.requests(prefix, probes=True) if r.path.endswith(PROBE_SUFFIX)]


def test_soft_host_pages_are_read_and_compared_healthy_host_stays_head_only(
    server: FixtureServer, tmp_path: Path
) -> None:
    """The template page is soft_404, the real story ok; /pages/ costs one probe and stays HEAD."""
    _corpus(server, tmp_path)
    s = settings_for(tmp_path)
    engine = open_engine(s.database_url)
    first = asyncio.run(run_check(s, engine))
    got = _results(s.database_url, first.run_id)
    verdict, reason, method, _ = got[server.url(GONE)]
    assert (verdict, method) == ("soft_404", "GET")
    assert reason == "same page as a made-up URL on this host (similarity 1.00)"
    assert got[server.url(REAL)][:1] == ("ok",) and got[server.url(REAL)][2] == "GET"
    for path in HEALTHY:
        assert got[server.url(path)][0] == "ok"
        assert got[server.url(path)][2] == "HEAD"
    # one probe per host and prefix, in the page's directory; /pages/ pages are only HEADed
    assert _probes(server, "/soft/") == ["GET"]
    assert _probes(server, "/pages/") == ["GET"]
    probe = next(r for r in server.requests("/soft/", probes=True) if r.path.endswith(PROBE_SUFFIX))
    assert probe.path.startswith(("/soft/news/2019/", "/soft/news/2020/"))
    pages = [r.method for r in server.requests("/pages/") if not r.path.endswith(PROBE_SUFFIX)]
    assert sorted(pages) == ["HEAD"] * len(HEALTHY)
    soft = [r.method for r in server.requests("/soft/") if not r.path.endswith(PROBE_SUFFIX)]
    assert soft == ["GET", "GET"]
    with engine.connect() as conn:
        stored = conn.execute(
            select(SoftBaselineRow.prefix, SoftBaselineRow.soft, SoftBaselineRow.status)
        ).all()
    assert sorted(stored) == [("pages", False, 404), ("soft", True, 200)]

    # a second run within the TTL sends no probe, and judges the same
    server.reset()
    second = asyncio.run(run_check(s, engine))
    assert _probes(server, "/") == []
    again = _results(s.database_url, second.run_id)
    assert again[server.url(GONE)][0] == "soft_404" and again[server.url(REAL)][0] == "ok"
    assert sorted(r.method for r in server.requests("/pages/")) == ["HEAD"] * len(HEALTHY)


def test_baselines_are_kept_in_postgresql_too(server: FixtureServer, tmp_path: Path) -> None:
    """The same two runs against PostgreSQL: the probe is stored there and reused."""
    _corpus(server, tmp_path)
    with pg_schema_url() as url:
        s = settings_for(tmp_path, database_url=url)
        engine = open_engine(url)
        first = asyncio.run(run_check(s, engine))
        assert _results(url, first.run_id)[server.url(GONE)][0] == "soft_404"
        server.reset()
        second = asyncio.run(run_check(s, engine))
        assert _probes(server, "/") == []
        assert _results(url, second.run_id)[server.url(GONE)][0] == "soft_404"
        engine.dispose()


def test_expired_baseline_is_probed_again(server: FixtureServer, tmp_path: Path) -> None:
    """``baseline_ttl_hours = 0``: every run probes (once per prefix)."""
    _corpus(server, tmp_path)
    s = settings_for(tmp_path, **{"verdicts.soft_404.baseline_ttl_hours": 0})
    engine = open_engine(s.database_url)
    asyncio.run(run_check(s, engine))
    server.reset()
    asyncio.run(run_check(s, engine))
    assert _probes(server, "/soft/") == ["GET"] and _probes(server, "/pages/") == ["GET"]


def test_probe_off_for_a_host_costs_nothing(server: FixtureServer, tmp_path: Path) -> None:
    """A per-host ``probe = false``: no made-up URL, pages HEAD only, the template page stays ok."""
    _corpus(server, tmp_path)
    host = f"127.0.0.1:{server.port}"  # a host key, as the redirect rules' tables take it
    s = settings_for(tmp_path, **{"verdicts.soft_404.hosts": {host: {"probe": False}}})
    outcome = asyncio.run(run_check(s, open_engine(s.database_url)))
    assert _probes(server, "/") == []
    assert {r.method for r in server.requests("/", probes=True)} == {"HEAD"}
    assert _results(s.database_url, outcome.run_id)[server.url(GONE)][0] == "ok"


def test_body_over_the_limit_is_not_read_past_it(server: FixtureServer, tmp_path: Path) -> None:
    """A 10 MB page of a soft-404 host: at most ``body_limit`` bytes are read, the connection dropped."""
    huge = "/soft/news/2020/huge-story"
    write(tmp_path, "a.md", f'---\ntitle: "Huge Story"\nwebUrl: "{server.url(huge)}"\n---\n')
    s = settings_for(tmp_path, **{"verdicts.soft_404.body_limit": 4096})
    outcome = asyncio.run(run_check(s, open_engine(s.database_url)))
    verdict, _, method, read = _results(s.database_url, outcome.run_id)[server.url(huge)]
    assert (verdict, method) == ("ok", "GET")
    assert 0 < read <= 4096
    sent = server.requests(huge, probes=True)
    assert len(sent) == 1 and sent[0].bytes_sent < 10 * 1024 * 1024


# --- the pure parts -------------------------------------------------------------------------


def test_made_up_url_is_a_sibling_in_the_same_directory() -> None:
    import random

    url = made_up_url("https://site.example/news/2019/story?x=1#top", random.Random(1))
    origin, directory, prefix = split_page_url(url)
    assert (origin, directory, prefix) == ("https://site.example", "/news/2019/", "news")
    assert url.endswith(PROBE_SUFFIX) and len(url.rsplit("/", 1)[1]) == 10 + len(PROBE_SUFFIX)
    assert split_page_url("https://site.example/story") == ("https://site.example", "/", "")
    assert split_page_url("https://site.example") == ("https://site.example", "/", "")
    for url in (
        "https://s.example/news/2019/a?x=/b/c",
        "https://s.example/news/",
        "https://s.example/a?x=/b/c",
        "https://s.example/a#/b/c",
        "https://s.example/a",
        "https://s.example",
        "http://[::1]:8080/x/y",
    ):
        assert url_prefix(url) == split_page_url(url)[2], url


def test_fingerprint_sees_one_template_through_echoed_paths_and_ids() -> None:
    base = fingerprint(not_found_html("/soft/x/zq7x3k1v9w-not-a-page"), ["/soft/x/zq7x3k1v9w-not-a-page"])
    other = "/soft/a/b/a-very-long-story-path-that-was-removed"
    assert similarity(base, fingerprint(not_found_html(other), [other])) == 1.0
    story = similarity(base, fingerprint(story_html("story-a", None), ["/soft/story-a"]))
    assert story is not None and story < 0.3
    assert similarity(base, None) is None and similarity("x1:00", base) is None
    assert fingerprint(b"<html><script>var a = 1;</script> 12 34 </html>") is None


def test_title_similarity_cuts_site_suffixes() -> None:
    assert title_similarity("Diablo 4 beta: how to apply | PC Gamer", "Diablo 4 beta: how to apply") == 1.0
    assert title_similarity(
        "Council votes on bridge plan - City News", "Council votes on the bridge"
    ) == pytest.approx(4 / 6)
    assert title_similarity("City News - Council votes on the bridge", "Council votes on the bridge") == 1.0
    assert title_similarity("Diablo 4 release date", "Diablo 3 release date") == pytest.approx(3 / 5)
    low = title_similarity("Page not found | Fixture News", "Council votes on the bridge")
    assert low == 0.0
    assert title_similarity("", "x") is None


def _soft_outcome(body: bytes, url: str, title: str | None, hops: tuple[Hop, ...] = ()) -> FetchOutcome:
    base_url = "https://s.example/news/zq7x3k1v9w-not-a-page"
    base = SoftBaseline(
        "s.example",
        "news",
        base_url,
        200,
        True,
        "Page not found | Fixture News",
        fingerprint(not_found_html(base_url), [base_url]),
    )
    return FetchOutcome(
        url=url,
        status=200,
        method="GET",
        redirects=hops,
        title=title,
        body_print=fingerprint(body, [url]),
        baseline=base,
    )


def test_classify_soft_404_by_baseline_and_its_limits() -> None:
    url = "https://s.example/news/gone"
    target = Target(url, "s.example", TargetKind.PAGE)
    policy = VerdictPolicy()
    same = _soft_outcome(not_found_html(url), url, "Page not found | Fixture News")
    assert classify(target, same, policy).verdict is Verdict.SOFT_404
    # a real story of the same template, or a near-identical body with another title: ok
    assert (
        classify(target, _soft_outcome(story_html("story-a", None), url, "Story A"), policy).verdict
        is Verdict.OK
    )
    assert (
        classify(target, _soft_outcome(not_found_html(url), url, "Council votes"), policy).verdict
        is Verdict.OK
    )
    # a temporary redirect to the template is a soft 404 too, with the chain named
    hop = (Hop(url, 302, "/news/where"),)
    moved = _soft_outcome(not_found_html(url), url, None, hop)
    judged = classify(target, moved, policy)
    assert judged.verdict is Verdict.SOFT_404 and judged.reason.startswith("same page as a made-up URL")
    off = VerdictPolicy.model_validate({"soft_404": {"probe": False}})
    assert classify(target, same, off).verdict is Verdict.OK
    strict = VerdictPolicy.model_validate({"soft_404": {"similarity": 1.0}})
    assert classify(target, same, strict).verdict is Verdict.SOFT_404
