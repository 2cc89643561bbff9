"""Title drift: a page body read anyway whose title is not the one the article gives it.

Bodies are read on a soft-404 host (/soft/) and on a GET fallback (``?head_status=405``); the
fixture's story pages take their title from ``?title=``.
"""

from __future__ import annotations

import asyncio
import html
import json
from pathlib import Path

from sqlalchemy import select
from structlog.testing import capture_logs
from typer.testing import CliRunner

from monitor.cli import app
from monitor.links.extract import extract
from monitor.policy import VerdictPolicy
from monitor.run.check import run_check
from monitor.store.db import open_engine
from monitor.store.models import OccurrenceRow, ResultRow, UrlRow
from monitor.types import Article, FetchOutcome, Role, Severity, Target, TargetKind, Verdict
from monitor.verdict import classify
from tests.server import FixtureServer
from tests.test_check import config_file, settings_for, write

DRIFTED = "/pages/story-a?head_status=405&title=Football+league+season+starts+early"
SAME = "/pages/story-b?head_status=405&title=Mayor+opens+the+new+river+bridge"
RELATED = "/soft/news/2020/story-flood?title=Flood+rescue+at+the+harbour"
HEAD_ONLY = "/pages/story-c?title=Something+else+entirely"


def _corpus(server: FixtureServer, tmp_path: Path) -> None:
    u = server.url
    write(
        tmp_path,
        "a.md",
        "---\n"
        'title: "Mayor opens new river bridge"\n'
        f'webUrl: "{u(SAME)}"\n'
        f'originalUrl: "{u(DRIFTED)}"\n'
        f'ampWebUrl: "{u(HEAD_ONLY)}"\n'
        "related:\n"
        '  - title: "Flood rescue at the harbour"\n'
        f'    webUrl: "{u(RELATED)}"\n'
        '  - title: "Council budget vote"\n'
        f'    webUrl: "{u("/soft/news/2020/story-budget?title=Museum+award+for+director")}"\n'
        "---\n",
    )


def test_title_mismatch_where_a_body_is_read(server: FixtureServer, tmp_path: Path) -> None:
    """Drifted titles (own and related) are title_mismatch warnings with the reason; a HEAD-only
    page is never read for its title; a matching page stays ok; the drift logs one event."""
    _corpus(server, tmp_path)
    s = settings_for(tmp_path)
    engine = open_engine(s.database_url)
    with capture_logs() as logs:
        outcome = asyncio.run(run_check(s, engine))
    with engine.connect() as conn:
        rows = conn.execute(
            select(UrlRow.url, ResultRow.verdict, ResultRow.severity, ResultRow.reason, ResultRow.method)
            .join(UrlRow, UrlRow.id == ResultRow.url_id)
            .where(ResultRow.run_id == outcome.run_id)
        ).all()
        titles = dict(conn.execute(select(OccurrenceRow.location, OccurrenceRow.title)).all())
    got = {url: (verdict, severity, reason, method) for url, verdict, severity, reason, method in rows}
    drift = got[server.url(DRIFTED)]
    assert drift[:2] == ("title_mismatch", "warning")
    assert drift[2] == (
        "page title 'Football league season starts early | Fixture News' does not match the "
        "article's 'Mayor opens new river bridge' (similarity 0.00)"
    )
    assert got[server.url(SAME)][0] == "ok" and got[server.url(SAME)][3] == "GET"
    assert got[server.url(HEAD_ONLY)][0] == "ok" and got[server.url(HEAD_ONLY)][3] == "HEAD"
    assert got[server.url(RELATED)][0] == "ok"
    budget = got[server.url("/soft/news/2020/story-budget?title=Museum+award+for+director")]
    assert budget[0] == "title_mismatch" and "the article's 'Council budget vote'" in budget[2]
    assert (
        titles["related[1].webUrl"] == "Council budget vote"
        and titles["webUrl"] == "Mayor opens new river bridge"
    )
    events = [e for e in logs if e["event"] == "link.title_mismatch"]
    assert sorted(e["url"] for e in events) == sorted(
        [server.url(DRIFTED), server.url("/soft/news/2020/story-budget?title=Museum+award+for+director")]
    )
    assert events[0]["reason"].startswith("page title '") and events[0]["locations"]
    # a second run with the same drift does not announce it again
    with capture_logs() as again:
        asyncio.run(run_check(s, engine))
    assert not [e for e in again if e["event"] == "link.title_mismatch"]


def test_title_mismatch_in_every_report_format(server: FixtureServer, tmp_path: Path) -> None:
    _corpus(server, tmp_path)
    runner = CliRunner()
    cfg = config_file(tmp_path)
    result = runner.invoke(app, ["-c", str(cfg), "check", "--format", "json"])
    assert result.exit_code == 0, result.output  # warnings only
    doc = json.loads(result.stdout)
    found = [u for u in doc["broken"]["urls"] if u["verdict"] == "title_mismatch"]
    assert {u["url"] for u in found} >= {server.url(DRIFTED)}
    assert any("does not match the article's 'Mayor opens new river bridge'" in u["reason"] for u in found)
    for fmt in ("markdown", "csv", "html", "table"):
        out = runner.invoke(app, ["-c", str(cfg), "report", "--format", fmt])
        assert out.exit_code == 0, out.output
        text = out.stdout.replace("\\_", "_")  # Markdown escapes underscores
        assert "title_mismatch" in text, fmt
        if fmt != "table":  # the terminal table wraps its cells
            assert "does not match the article's 'Mayor opens new river bridge'" in html.unescape(text), fmt


def test_title_disabled_or_severity_configured(server: FixtureServer, tmp_path: Path) -> None:
    _corpus(server, tmp_path)
    s = settings_for(tmp_path, **{"verdicts.title.enabled": False})
    outcome = asyncio.run(run_check(s, open_engine(s.database_url)))
    assert "title_mismatch" not in outcome.counts
    policy = VerdictPolicy.model_validate({"severity": {"title_mismatch": "error"}})
    target = Target("https://n.example/a", "n.example", TargetKind.PAGE)
    page = FetchOutcome(
        url=target.url, status=200, method="GET", title="Weather today | N", og_title="Weather"
    )
    judged = classify(target, page, policy, frozenset({Role.WEB}), ["Council budget vote"])
    assert judged.verdict is Verdict.TITLE_MISMATCH and judged.severity is Severity.ERROR
    # og:title alone may match; no title on the page, or no expected title: nothing to compare
    og = FetchOutcome(url=target.url, status=200, method="GET", title="N", og_title="Council budget vote")
    assert classify(target, og, policy, frozenset({Role.WEB}), ["Council budget vote"]).verdict is Verdict.OK
    bare = FetchOutcome(url=target.url, status=200, method="GET")
    assert (
        classify(target, bare, policy, frozenset({Role.WEB}), ["Council budget vote"]).verdict is Verdict.OK
    )
    assert classify(target, page, policy, frozenset({Role.WEB})).verdict is Verdict.OK
    # a page that is broken stays broken
    gone = FetchOutcome(url=target.url, status=404, method="GET", title="Weather")
    assert (
        classify(target, gone, policy, frozenset({Role.WEB}), ["Council budget vote"]).verdict
        is Verdict.BROKEN
    )


def test_extract_gives_url_fields_their_items_title() -> None:
    meta = {
        "title": "Own title",
        "webUrl": "https://a.example/x",
        "images": [{"url": "https://a.example/i.jpg"}],
        "related": [
            {"title": "  ", "webUrl": "https://b.example/y"},
            {"title": "Rel", "ampWebUrl": "https://c.example/z"},
        ],
    }
    article = Article("a.md", "Own title", meta, "", 0, 0, "")
    occurrences, _ = extract(article)
    titles = {o.location: o.title for o in occurrences}
    assert titles == {
        "webUrl": "Own title",
        "images[0].url": None,
        "related[0].webUrl": None,
        "related[1].ampWebUrl": "Rel",
    }
