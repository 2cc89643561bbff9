"""Content-level rot: redirects that hide a removed page (soft_404), judged and reported end to end."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from sqlalchemy import select
from structlog.testing import capture_logs
from typer.testing import CliRunner

from monitor.cli import app
from monitor.config import load_settings
from monitor.policy import Soft404Rules, Soft404Settings, VerdictPolicy
from monitor.run.check import run_check
from monitor.store.db import open_engine
from monitor.store.models import ResultRow, UrlRow
from monitor.types import FetchOutcome, Hop, Role, Severity, Target, TargetKind, Verdict
from monitor.urls import amp_cache_url, validate_amp_template
from monitor.verdict import classify, soft_404_evidence
from tests.server import FixtureServer
from tests.test_check import config_file, settings_for, write

SITE = "https://news.example.com"
STORY = f"{SITE}/2019/05/12/council-votes-on-budget"
ROOT = "redirects to the site root"
MARKER = "redirects to a not-found page"
SECTION = "redirects to a much shorter section or index page"
runner = CliRunner()


@pytest.mark.parametrize(
    ("original", "final", "evidence"),
    [
        (STORY, f"{SITE}/", ROOT),
        (STORY, f"{SITE}/index.html", ROOT),
        (STORY, f"{SITE}/?utm_source=redirect", ROOT),
        (STORY, "https://other.example/", ROOT),
        (STORY, f"{SITE}/news/", SECTION),
        (f"{SITE}/news/council-votes", f"{SITE}/news/", SECTION),
        (STORY, f"{SITE}/2019/", SECTION),
        (STORY, f"{SITE}/errors/404.html", MARKER),
        (STORY, f"{SITE}/page-not-found", MARKER),
        (STORY, f"{SITE}/2019/05/12/council-votes-on-budget-x/error", MARKER),
        (STORY, f"{SITE}/search?error=404", MARKER),
        # ordinary redirects stay redirects
        (STORY, f"{SITE}/2019/05/12/council-votes-on-budget/", None),
        (STORY, STORY.replace("https://", "https://www."), None),
        (STORY, f"{SITE}/2019/05/12/council-votes-on-budget-updated", None),
        (STORY, f"{SITE}/politics/2019/05/12/council-votes-on-budget-vote", None),
        (STORY, f"{SITE}/council-votes-on-budget", None),
        (STORY, f"{SITE}/?p=12345", None),
        (STORY, f"{SITE}/login?next=/2019/05/12/council-votes-on-budget", None),
        (STORY, "https://other.example/n/1", None),
        (f"{SITE}/", "https://www.news.example.com/", None),
        (f"{SITE}/index.html", f"{SITE}/", None),
        (f"{SITE}/error-codes-explained", f"{SITE}/error-codes/", None),
        (f"{SITE}/404/story", f"{SITE}/404/", SECTION),
        (f"{SITE}/a/b", f"{SITE}/a/c", None),
    ],
)
def test_soft_404_rules(original: str, final: str, evidence: str | None) -> None:
    """Root, marker and section redirects are soft 404s; longer, sibling and gated redirects are not."""
    assert soft_404_evidence(original, final, Soft404Rules()) == evidence


def test_each_rule_switches_off() -> None:
    """``root = false``, ``markers = []`` and ``section_ratio = 0`` each turn one rule off."""
    assert soft_404_evidence(STORY, f"{SITE}/", Soft404Rules(root=False)) is None
    assert soft_404_evidence(STORY, f"{SITE}/2019/05/12/x/404", Soft404Rules(markers=[])) is None
    assert soft_404_evidence(STORY, f"{SITE}/news/", Soft404Rules(section_ratio=0)) is None
    assert soft_404_evidence(STORY, f"{SITE}/gone", Soft404Rules(markers=["gone"])) == MARKER


def _judge(final: str, policy: VerdictPolicy, kind: TargetKind = TargetKind.PAGE, role: Role = Role.WEB):
    target = Target(url=STORY, host="news.example.com", kind=kind, roles=frozenset({role}))
    outcome = FetchOutcome(
        url=STORY, status=200, final_url=final, redirects=(Hop(STORY, 301, final),), method="HEAD"
    )
    return classify(target, outcome, policy)


def test_verdict_reason_severity_and_host_rules() -> None:
    """The reason names the evidence and the final URL; severity and per-host rules come from config."""
    got = _judge(f"{SITE}/", VerdictPolicy())
    assert (got.verdict, got.severity) == (Verdict.SOFT_404, Severity.ERROR)
    assert got.reason == f"redirects to the site root (301): {SITE}/"
    policy = VerdictPolicy(
        severity={Verdict.SOFT_404: Severity.WARNING},
        soft_404=Soft404Settings(hosts={"example.com": Soft404Rules(root=False)}),
    )
    # the host table switches the root rule off for news.example.com; its other keys stay global
    assert policy.soft_404.for_host("news.example.com").section_ratio == 0.5
    assert _judge(f"{SITE}/", policy).verdict is Verdict.MOVED_PERMANENTLY
    assert _judge(f"{SITE}/404", policy).severity is Severity.WARNING
    off = VerdictPolicy(soft_404=Soft404Settings(enabled=False))
    assert _judge(f"{SITE}/", off).verdict is Verdict.MOVED_PERMANENTLY
    # images are judged by their bytes, not by where they redirect
    assert (
        _judge(f"{SITE}/", VerdictPolicy(), TargetKind.IMAGE, Role.IMAGE).verdict is Verdict.MOVED_PERMANENTLY
    )


def test_soft_404_settings_from_toml(tmp_path: Path) -> None:
    """The rule table and its per-host tables are read from the config file."""
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        '[verdicts.soft_404]\nmarkers = ["gone"]\n[verdicts.soft_404.hosts."b.example"]\nenabled = false\n'
    )
    rules = load_settings(cfg).verdicts.soft_404
    assert rules.markers == ["gone"] and not rules.for_host("www.b.example").enabled
    assert rules.for_host("www.b.example").markers == ["gone"] and rules.for_host("a.example").enabled


def _urls(doc: object, found: dict[str, tuple[str, str]]) -> dict[str, tuple[str, str]]:
    if isinstance(doc, dict):
        if "url" in doc and "verdict" in doc:
            found[doc["url"]] = (doc["verdict"], doc["reason"])
        for value in doc.values():
            _urls(value, found)
    elif isinstance(doc, list):
        for value in doc:
            _urls(value, found)
    return found


def test_removed_stories_are_soft_404_in_every_report_format(server: FixtureServer, tmp_path: Path) -> None:
    """Against the fixture server: removed stories are soft_404 in JSON, Markdown, CSV and HTML; a
    healthy page, a sibling move and a temporary redirect keep their verdicts."""
    u = server.url
    gone = {
        "root": "/gone/2019/05/12/council-votes-on-budget?to=/",
        "section": "/gone/2019/05/12/mayor-resigns-after-vote?to=/site/news/",
        "marker": "/gone/2020/story-two?to=/site/not-found",
    }
    healthy = {
        "page": "/site/2021/03/healthy-story",
        "sibling": "/gone/2019/story-three?to=/gone/2019/story-three-updated%3Fto%3D/site/x/y/z/w",
        "temporary": "/redirect-to/302?to=/status/200",
    }
    lines = ["---", 'title: "Rot"', "related:"]
    for path in [*gone.values(), *healthy.values()]:
        lines += [f'  - webUrl: "{u(path)}"']
    write(tmp_path, "rot.md", "\n".join([*lines, "---", ""]))
    cfg = config_file(tmp_path)
    result = runner.invoke(app, ["-c", str(cfg), "check", "--format", "json"])
    assert result.exit_code == 2, result.output
    found = _urls(json.loads(result.stdout), {})
    assert found[u(gone["root"])] == ("soft_404", f"{ROOT} (301): {u('/')}")
    assert found[u(gone["section"])][0] == "soft_404" and SECTION in found[u(gone["section"])][1]
    assert found[u(gone["marker"])][0] == "soft_404" and MARKER in found[u(gone["marker"])][1]
    assert u(healthy["page"]) not in found  # ok: not a problem, so in no list
    assert found[u(healthy["sibling"])][0] == "moved_permanently"
    assert u(healthy["temporary"]) not in found
    for fmt in ("markdown", "csv", "html"):
        out = runner.invoke(app, ["-c", str(cfg), "report", "--format", fmt])
        assert out.exit_code == 0, out.output
        text = out.stdout.replace("soft\\_404", "soft_404")  # Markdown escapes the underscore
        assert text.count("soft_404") >= 3 and "redirects to the site root" in text, fmt


# --- retired AMP ----------------------------------------------------------------------------


def test_single_origin_cache_template_is_accepted(tmp_path: Path) -> None:
    """A cache without per-publisher subdomains can be written; only ``{path}`` is required."""
    template = "https://cache.example/c/s/{host}{path}"
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[corpus]\namp_cache_template = "{template}"\n')
    assert load_settings(cfg).corpus.amp_cache_template == template
    assert amp_cache_url("https://news.example.com/a/amp?x=1", template) == (
        "https://cache.example/c/s/news.example.com/a/amp?x=1"
    )
    assert validate_amp_template("https://cache.example/{host}") == "template lacks {path}"


@pytest.mark.parametrize(
    ("original", "final", "verdict"),
    [
        (f"{SITE}/2019/story/amp", f"{SITE}/2019/story", Verdict.AMP_RETIRED),
        (f"{SITE}/2019/story.amp.html", f"{SITE}/2019/story.html", Verdict.AMP_RETIRED),
        (f"{SITE}/2019/story?outputType=amp", f"{SITE}/2019/story", Verdict.AMP_RETIRED),
        (
            "https://amp.news.example.com/2019/story",
            "https://www.news.example.com/2019/story",
            Verdict.AMP_RETIRED,
        ),
        (f"{SITE}/a/amp", f"{SITE}/a", Verdict.AMP_RETIRED),  # short, but the slug is kept: no soft 404
        (f"{SITE}/2019/story/amp", f"{SITE}/", Verdict.SOFT_404),  # removed, not retired
        (f"{SITE}/2019/story/amp", f"{SITE}/amp/2019/story", Verdict.MOVED_PERMANENTLY),  # still AMP
        (f"{SITE}/2019/story/amp", "https://other.example/2019/story", Verdict.MOVED_PERMANENTLY),
        (f"{SITE}/2019/story-x", f"{SITE}/2019/story-y", Verdict.MOVED_PERMANENTLY),  # no AMP marker to drop
    ],
)
def test_amp_retired(original: str, final: str, verdict: Verdict) -> None:
    """An ampWebUrl redirecting to the non-AMP page of its site is amp_retired, informational and good."""
    target = Target(
        url=original, host=original.split("/")[2], kind=TargetKind.PAGE, roles=frozenset({Role.AMP})
    )
    outcome = FetchOutcome(url=original, status=200, final_url=final, redirects=(Hop(original, 301, final),))
    got = classify(target, outcome, VerdictPolicy())
    assert got.verdict is verdict, got.reason
    if verdict is Verdict.AMP_RETIRED:
        assert got.severity is Severity.IGNORE and got.verdict.is_good
        assert got.reason == f"AMP retired: redirects to the non-AMP page (301): {final}"


def _amp_corpus(server: FixtureServer, tmp_path: Path, count: int) -> tuple[list[str], list[str]]:
    u = server.url
    amps = [u(f"/gone/2019/0{i}/story-{i}/amp?to=/site/2019/0{i}/story-{i}") for i in range(count)]
    amps.append(u("/site/2021/healthy/amp"))
    caches = [u(f"/c/{a.split('://', 1)[1]}", host="localhost") for a in amps]
    for i, (amp, cache) in enumerate(zip(amps, caches, strict=True)):
        write(tmp_path, f"a{i}.md", f'---\nampWebUrl: "{amp}"\ncdnAmpWebUrl: "{cache}"\n---\n')
    return amps, caches


def test_retired_amp_and_a_cache_that_flips(server: FixtureServer, tmp_path: Path) -> None:
    """Run 1: the publisher dropped AMP (amp_retired) and the cache still serves (ok), exit 0.
    Run 2: the whole cache answers 404: every cache URL is amp_not_cached, one amp.cache_flipped
    event, still exit 0. Run 3: the cache redirects to the origin: not cached, no new event."""
    amps, caches = _amp_corpus(server, tmp_path, 4)
    s = settings_for(
        tmp_path,
        **{
            "corpus.amp_cache_template": f"http://localhost:{server.port}/c/{{s}}{{host}}{{path}}",
            "alerts.host_down_threshold": 3,
        },
    )
    engine_url = s.database_url

    def run() -> tuple[list[dict[str, object]], dict[str, str]]:
        with capture_logs() as events:
            code = asyncio.run(run_check(s, open_engine(engine_url)))
        with open_engine(engine_url).connect() as conn:
            rows = conn.execute(
                select(UrlRow.url, ResultRow.verdict, ResultRow.reason)
                .join(ResultRow, ResultRow.url_id == UrlRow.id)
                .where(ResultRow.run_id == code.run_id)
            ).all()
        assert code.severities.get("error", 0) == 0, rows  # informational: nothing fails the run
        return events, {url: f"{verdict}: {reason}" for url, verdict, reason in rows}

    events, got = run()
    assert [got[a].split(":")[0] for a in amps] == ["amp_retired"] * 4 + ["ok"]
    assert {got[c].split(":")[0] for c in caches} == {"ok"}
    assert not [e for e in events if e["event"] in ("amp.not_cached", "amp.cache_flipped", "link.moved")]
    assert not [e for e in events if e["event"] == "finding"]
    server.set_switch("amp-cache", 404)
    events, got = run()
    assert {got[c] for c in caches} == {"amp_not_cached: AMP cache: not cached (HTTP 404) after 2 attempts"}
    flipped = [e for e in events if e["event"] == "amp.cache_flipped"]
    assert len(flipped) == 1 and flipped[0]["count"] == 5 and flipped[0]["host"] == f"localhost:{server.port}"
    assert not [e for e in events if e["event"] in ("amp.not_cached", "link.broken", "host.down")]
    server.set_switch("amp-cache", 301)
    events, got = run()
    assert all(
        got[c].startswith("amp_not_cached: AMP cache: not cached, redirects to the origin") for c in caches
    )
    assert not [e for e in events if e["event"].startswith("amp.")]
