"""Bot walls are `blocked`, not broken: every vendor marker against the fixture server, and a
host that turns into a wall is one host-level event."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import select
from structlog.testing import capture_logs

from monitor.fetch.body import page_title
from monitor.run.check import run_check
from monitor.store.db import open_engine
from monitor.store.models import ResultRow, UrlRow
from tests.server import FixtureServer
from tests.test_check import settings_for, write

EXPECTED = {
    "cf-page": ("blocked", "bot protection (Cloudflare challenge page, HTTP 503)"),
    "cf-block": ("blocked", "bot protection (Cloudflare block page, HTTP 403)"),
    "akamai": ("blocked", "bot protection (Akamai, HTTP 403)"),
    "akamai-grn": ("blocked", "bot protection (Akamai, HTTP 403)"),
    "datadome": ("blocked", "bot protection (DataDome, HTTP 403)"),
    "aws-waf": ("blocked", "bot protection (AWS WAF, HTTP 405)"),
    "linkedin": ("blocked", "bot protection (HTTP 999, HTTP 999)"),
    "cf-403": ("broken", "HTTP 403 after 2 attempts"),  # an origin's own 403 through Cloudflare
}


def _run(settings: object) -> list[dict[str, object]]:
    with capture_logs() as events:
        asyncio.run(run_check(settings, open_engine(settings.database_url)))  # type: ignore[attr-defined]
    return events


def _verdicts(settings: object) -> dict[str, tuple[str, str, int]]:
    engine = open_engine(settings.database_url)  # type: ignore[attr-defined]
    with engine.connect() as conn:
        rows = conn.execute(
            select(UrlRow.url, ResultRow.verdict, ResultRow.reason, ResultRow.bytes_read).join(
                ResultRow, ResultRow.url_id == UrlRow.id
            )
        ).all()
    return {url: (verdict, reason, n) for url, verdict, reason, n in rows}


def test_every_wall_marker_is_blocked_and_an_ordinary_403_is_not(
    server: FixtureServer, tmp_path: Path
) -> None:
    """Cloudflare (header and interstitial page), Akamai, DataDome, AWS WAF and LinkedIn's 999 are
    blocked, each naming its vendor; a plain 403 behind Cloudflare stays broken."""
    lines = ["---", "related:"] + [f'  - webUrl: "{server.url(f"/wall/{kind}")}"' for kind in EXPECTED]
    lines += [f'  - webUrl: "{server.url("/cf-challenge")}"', "---", ""]
    write(tmp_path, "a.md", "\n".join(lines))
    s = settings_for(tmp_path, **{"http.max_retries": 0})
    _run(s)
    got = _verdicts(s)
    for kind, expected in EXPECTED.items():
        assert got[server.url(f"/wall/{kind}")][:2] == expected, kind
    assert got[server.url("/cf-challenge")][:2] == (
        "blocked",
        "bot protection (Cloudflare challenge, HTTP 403)",
    )
    # only the Cloudflare/Akamai error pages are read, and at most their first 8 KB (of 20 KB)
    read = {url.rsplit("/", 1)[1]: n for url, (_, _, n) in got.items() if "/wall/" in url}
    assert all(0 < read[k] <= 8192 for k in ("cf-page", "cf-block", "cf-403", "akamai")), read
    assert read["datadome"] == read["aws-waf"] == read["linkedin"] == read["akamai-grn"] == 0, read


def test_wall_title_is_read_bounded() -> None:
    """The title comes from the first `<title>`, entities decoded, spaces collapsed."""
    assert page_title(b"<html><head><TITLE>\n Just a moment&hellip;</title>") == "Just a moment\u2026"
    assert page_title(b"<html><body>no title") is None


def test_host_turning_into_a_wall_is_one_event(server: FixtureServer, tmp_path: Path) -> None:
    """Healthy on the first run; on the second every URL of the host is a Cloudflare interstitial:
    one ``host.blocked`` event, no ``link.blocked`` per URL, no ``link.broken``. A single newly
    walled URL on another path is its own ``link.blocked``."""
    for i in range(4):
        write(tmp_path, f"a{i}.md", f'---\nwebUrl: "{server.url(f"/wall/cf-page/{i}?switch=cf")}"\n---\n')
    s = settings_for(tmp_path, **{"alerts.alert_after": 1, "alerts.host_down_threshold": 3})
    first = _run(s)
    assert not [e for e in first if str(e["event"]).endswith(".blocked")]
    server.set_switch("cf", 503)
    second = _run(s)
    walled = [e for e in second if e["event"] == "host.blocked"]
    assert len(walled) == 1 and walled[0]["count"] == 4 and walled[0]["host"] == f"127.0.0.1:{server.port}"
    assert "Cloudflare challenge page" in str(walled[0]["reason"])
    assert not [e for e in second if e["event"] in ("link.blocked", "link.broken", "host.down")]
    third = _run(s)  # still walled: tracked, not re-announced
    assert not [e for e in third if str(e["event"]).endswith(".blocked")]
    assert [e["counts"] for e in third if e["event"] == "run.finished"] == [{"blocked": 4}]


@pytest.mark.parametrize("threshold", [10])
def test_one_walled_url_is_a_link_event(server: FixtureServer, tmp_path: Path, threshold: int) -> None:
    """Below the threshold each newly walled URL is one ``link.blocked`` naming where it is used."""
    write(tmp_path, "a.md", f'---\nwebUrl: "{server.url("/wall/datadome")}"\n---\n')
    s = settings_for(tmp_path, **{"alerts.host_down_threshold": threshold})
    (event,) = [e for e in _run(s) if e["event"] == "link.blocked"]
    assert event["url"] == server.url("/wall/datadome") and event["locations"] == [
        f"{tmp_path}/corpus/a.md:webUrl"
    ]
