"""A small, deterministic check history in a real database, for report and alert tests.

The ``add_*`` helpers insert one row with SQLAlchemy Core and return its id, so a test
can build any situation; ``build_history`` builds the standard three-run scenario:

* run 1 → run 3, one day apart, started at ``T0`` + n days, 5 minutes each;
* ``gone`` is ok, ok, broken (newly broken); ``back`` broken, broken, ok (recovered);
  ``dead_a`` unreachable in all runs and ``dead_b`` from run 2 (still broken, one dead host);
  ``flaky`` broken, ok, broken and flapping since run 3;
* in run 3: a moved link, a scaled and a mismatched image, a not_image, a blocked link, a
  timeout, and a URL, titles and paths full of hostile text (HTML, CSV formula, terminal
  escapes); findings of every kind and two corpus errors;
* archived copies cached for ``gone`` (broken: reports show it) and ``back`` (recovered: they
  do not).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, insert, update

from monitor.store.models import (
    ArchiveCopyRow,
    ArticleRow,
    CorpusErrorRow,
    FindingRow,
    OccurrenceRow,
    ResultRow,
    RunRow,
    SizeCheckRow,
    StateChangeRow,
    UrlRow,
)

T0 = datetime(2024, 3, 1, 2, 30, tzinfo=UTC)
DAY = timedelta(days=1)
RUN_LENGTH = timedelta(minutes=5)
GENERATED_AT = datetime(2024, 3, 3, 8, 0, tzinfo=UTC)

HOSTILE_HTML = '<script>alert(1)</script>"onmouseover=alert(1)'
HOSTILE_TERMINAL = "\x1b[31mred\x1b[0m \x1b]8;;https://evil.example/\x07click\x1b]8;;\x07"
HOSTILE_CSV = "=cmd|' /C calc'!A0"
HOSTILE_MARKUP = "[bold]markup[/bold] :smile:"  # rich markup and emoji codes must stay literal
HOSTILE_TITLE = f"{HOSTILE_HTML} {HOSTILE_TERMINAL} {HOSTILE_MARKUP}"
HOSTILE_URL = 'https://evil.example/"onmouseover=alert(1)/<script>alert(1)</script>'
HOSTILE_PATH = f"{HOSTILE_CSV}.md"


def _insert(conn: Connection, table: Any, **values: Any) -> int:
    return int(conn.execute(insert(table).values(**values).returning(table.c.id)).scalar_one())


def add_article(conn: Connection, path: str, title: str | None = None, *, at: datetime = T0) -> int:
    return _insert(conn, ArticleRow.__table__, path=path, title=title, first_seen=at, last_seen=at)


def add_url(conn: Connection, url: str, host: str, *, kind: str = "page", at: datetime = T0) -> int:
    return _insert(conn, UrlRow.__table__, url=url, host=host, kind=kind, first_seen=at)


def add_archive_copy(
    conn: Connection, url_id: int, snapshot_url: str | None, timestamp: str | None, *, at: datetime = T0
) -> None:
    """Cache the archive's answer for a URL (``snapshot_url`` None: "none found")."""
    values = {"endpoint": "https://archive.org", "looked_up_at": at, "snapshot_at": timestamp}
    conn.execute(insert(ArchiveCopyRow.__table__).values(url_id=url_id, snapshot_url=snapshot_url, **values))


def set_url_state(conn: Connection, url_id: int, **state: Any) -> None:
    """Set current-state columns (last_verdict, failing_since, consecutive_failures, alert_state, ...)."""
    table = UrlRow.__table__
    conn.execute(update(table).where(table.c.id == url_id).values(**state))


def add_occurrence(
    conn: Connection,
    article_id: int,
    url_id: int | None,
    location: str,
    role: str,
    raw_url: str,
    *,
    declared: tuple[int, int] | None = None,
    related: bool = False,
) -> int:
    width, height = declared if declared else (None, None)
    return _insert(
        conn,
        OccurrenceRow.__table__,
        article_id=article_id,
        url_id=url_id,
        raw_url=raw_url,
        location=location,
        role=role,
        related=related,
        declared_width=width,
        declared_height=height,
    )


def add_finding(
    conn: Connection,
    article_id: int,
    location: str,
    kind: str,
    message: str,
    *,
    value: str | None = None,
    expected: str | None = None,
) -> int:
    return _insert(
        conn,
        FindingRow.__table__,
        article_id=article_id,
        location=location,
        kind=kind,
        message=message,
        value=value,
        expected=expected,
    )


def add_corpus_error(
    conn: Connection,
    path: str,
    kind: str,
    message: str,
    *,
    line: int | None = None,
    column: int | None = None,
    at: datetime = T0,
) -> int:
    return _insert(
        conn,
        CorpusErrorRow.__table__,
        path=path,
        kind=kind,
        message=message,
        line=line,
        column=column,
        first_seen=at,
        last_seen=at,
    )


def add_run(
    conn: Connection,
    started_at: datetime,
    *,
    state: str = "finished",
    trigger: str = "cli",
    counts: Mapping[str, int] | None = None,
) -> int:
    finished = started_at + RUN_LENGTH if state != "running" else None
    total = sum((counts or {}).values())
    return _insert(
        conn,
        RunRow.__table__,
        started_at=started_at,
        finished_at=finished,
        heartbeat_at=finished or started_at,
        state=state,
        trigger=trigger,
        total_targets=total,
        checked=total,
        counts=json.dumps(dict(counts or {})),
    )


def add_result(
    conn: Connection,
    run_id: int,
    url_id: int,
    verdict: str,
    severity: str = "ignore",
    reason: str = "",
    *,
    at: datetime,
    redirects: list[tuple[str, int, str | None]] | None = None,
    **facts: Any,
) -> int:
    """One result; ``facts`` are ResultRow columns (http_status, final_url, content_type, ...)."""
    return _insert(
        conn,
        ResultRow.__table__,
        run_id=run_id,
        url_id=url_id,
        checked_at=at,
        verdict=verdict,
        severity=severity,
        reason=reason or verdict,
        redirects=json.dumps([list(hop) for hop in redirects]) if redirects else None,
        **facts,
    )


def add_size_check(
    conn: Connection,
    run_id: int,
    occurrence_id: int,
    url_id: int,
    verdict: str,
    declared: tuple[int, int] | None,
    actual: tuple[int, int] | None,
) -> int:
    dw, dh = declared if declared else (None, None)
    aw, ah = actual if actual else (None, None)
    return _insert(
        conn,
        SizeCheckRow.__table__,
        run_id=run_id,
        occurrence_id=occurrence_id,
        url_id=url_id,
        verdict=verdict,
        declared_width=dw,
        declared_height=dh,
        actual_width=aw,
        actual_height=ah,
    )


def add_state_change(
    conn: Connection, run_id: int, url_id: int, from_state: str, to_state: str, *, at: datetime
) -> int:
    return _insert(
        conn,
        StateChangeRow.__table__,
        run_id=run_id,
        url_id=url_id,
        at=at,
        from_state=from_state,
        to_state=to_state,
    )


@dataclass(frozen=True, slots=True)
class History:
    """Ids of what ``build_history`` inserted, by the names used in its docstring."""

    runs: tuple[int, ...]
    urls: Mapping[str, int]
    articles: Mapping[str, int]


# name -> (url, host, kind)
URLS: dict[str, tuple[str, str, str]] = {
    "ok": ("https://ok.example/page", "ok.example", "page"),
    "gone": ("https://news.example/gone", "news.example", "page"),
    "back": ("https://news.example/back", "news.example", "page"),
    "dead_a": ("https://dead.example/a", "dead.example", "page"),
    "dead_b": ("https://dead.example/b", "dead.example", "page"),
    "flaky": ("https://flaky.example/x", "flaky.example", "page"),
    "moved": ("https://old.example/story", "old.example", "page"),
    "scaled": ("https://img.example/a.jpg", "img.example", "image"),
    "mismatch": ("https://img.example/b.png", "img.example", "image"),
    "not_image": ("https://img.example/c.jpg", "img.example", "image"),
    "blocked": ("https://walled.example/p", "walled.example", "page"),
    "slow": ("https://slow.example/t", "slow.example", "page"),
    "hostile": (HOSTILE_URL, "evil.example", "page"),
}

_OK = {"verdict": "ok", "severity": "ignore", "reason": "200 OK", "http_status": 200}
_NOT_FOUND = {"verdict": "broken", "severity": "error", "reason": "HTTP 404", "http_status": 404}
_DNS = {"verdict": "unreachable", "severity": "error", "reason": "DNS lookup failed", "failure": "dns"}

# name -> verdict facts per run (None: not checked in that run)
_RUNS: dict[str, tuple[dict[str, Any] | None, ...]] = {
    "ok": (_OK, _OK, _OK),
    "gone": (_OK, _OK, _NOT_FOUND),
    "back": (_NOT_FOUND, _NOT_FOUND, _OK),
    "dead_a": (_DNS, _DNS, _DNS),
    "dead_b": (None, _DNS, _DNS),
    "flaky": (_NOT_FOUND, _OK, _NOT_FOUND),
    "moved": (
        _OK,
        _OK,
        {
            "verdict": "moved_permanently",
            "severity": "warning",
            "reason": "301 to https://new.example/story",
            "http_status": 200,
            "final_url": "https://new.example/story",
            "redirects": [
                ("https://old.example/story", 301, "https://new.example/story"),
                ("https://new.example/story", 200, None),
            ],
        },
    ),
    "scaled": (
        None,
        None,
        {
            **_OK,
            "content_type": "image/jpeg",
            "image_format": "jpeg",
            "image_width": 1600,
            "image_height": 900,
        },
    ),
    "mismatch": (
        None,
        None,
        {
            **_OK,
            "content_type": "image/png",
            "image_format": "png",
            "image_width": 1200,
            "image_height": 1200,
        },
    ),
    "not_image": (
        None,
        None,
        {
            "verdict": "not_image",
            "severity": "error",
            "reason": "served text/html",
            "http_status": 200,
            "content_type": "text/html",
        },
    ),
    "blocked": (
        _OK,
        _OK,
        {"verdict": "blocked", "severity": "warning", "reason": "HTTP 403 bot wall", "http_status": 403},
    ),
    "slow": (
        _OK,
        _OK,
        {
            "verdict": "timeout",
            "severity": "warning",
            "reason": "no answer in 20s",
            "failure": "timeout",
            "attempts": 4,
        },
    ),
    "hostile": (None, _OK, {**_NOT_FOUND, "reason": f"HTTP 404 {HOSTILE_CSV}"}),
}

_STATE_AFTER: dict[str, dict[str, Any]] = {
    "gone": {"failing_since": T0 + 2 * DAY, "consecutive_failures": 1},
    "dead_a": {"failing_since": T0, "consecutive_failures": 3, "alert_state": "broken"},
    "dead_b": {"failing_since": T0 + DAY, "consecutive_failures": 2, "alert_state": "broken"},
    "flaky": {
        "failing_since": T0 + 2 * DAY,
        "consecutive_failures": 1,
        "alert_state": "flapping",
        "recent": "fgf",
    },
    "hostile": {"failing_since": T0 + 2 * DAY, "consecutive_failures": 1},
}

# name -> (article, location, role, declared size)
_PLACES: tuple[tuple[str, str, str, str, tuple[int, int] | None], ...] = (
    ("gone", "hostile", "webUrl", "web", None),
    ("gone", "plain", "related[0].webUrl", "web", None),
    ("ok", "plain", "webUrl", "web", None),
    ("back", "plain", "ampWebUrl", "amp", None),
    ("dead_a", "plain", "related[1].webUrl", "web", None),
    ("dead_a", "formula", "webUrl", "web", None),
    ("dead_b", "plain", "related[2].webUrl", "web", None),
    ("flaky", "formula", "related[0].webUrl", "web", None),
    ("moved", "formula", "related[1].ampWebUrl", "amp", None),
    ("scaled", "images", "images[0].url", "image", (800, 450)),
    ("mismatch", "images", "images[1].url", "image", (1200, 630)),
    ("mismatch", "hostile", "images[0].url", "image", (1200, 1200)),
    ("not_image", "images", "related[0].images[0].url", "image", (640, 480)),
    ("blocked", "images", "webUrl", "web", None),
    ("slow", "images", "related[1].webUrl", "web", None),
    ("hostile", "hostile", "related[0].webUrl", "web", None),
)

ARTICLES: dict[str, tuple[str, str]] = {
    "hostile": ("news/2024-03-01-hostile.md", HOSTILE_TITLE),
    "formula": (HOSTILE_PATH, HOSTILE_CSV),
    "images": ("news/2024-03-02-images.md", "Images & sizes"),
    "plain": ("news/2024-03-03-plain.md", "Plain links"),
}


def build_history(engine: Engine) -> History:
    """Insert the standard three-run scenario (see the module docstring) and return its ids."""
    with engine.begin() as conn:
        articles = {name: add_article(conn, path, title) for name, (path, title) in ARTICLES.items()}
        urls = {name: add_url(conn, url, host, kind=kind) for name, (url, host, kind) in URLS.items()}
        places = {
            (name, article): add_occurrence(
                conn, articles[article], urls[name], location, role, URLS[name][0], declared=declared
            )
            for name, article, location, role, declared in _PLACES
        }
        add_occurrence(conn, articles["hostile"], None, "images[1].url", "image", "javascript:alert(1)")
        runs = []
        for index in range(3):
            started = T0 + index * DAY
            verdicts = [facts["verdict"] for facts in (v[index] for v in _RUNS.values()) if facts]
            counts = {v: verdicts.count(v) for v in sorted(set(verdicts))}
            run_id = add_run(conn, started, trigger="nightly" if index == 2 else "cli", counts=counts)
            runs.append(run_id)
            for name, per_run in _RUNS.items():
                facts = per_run[index]
                if facts is not None:
                    add_result(conn, run_id, urls[name], at=started + timedelta(minutes=1), **facts)
        last = runs[-1]
        at = T0 + 2 * DAY
        add_size_check(
            conn, last, places["scaled", "images"], urls["scaled"], "scaled", (800, 450), (1600, 900)
        )
        add_size_check(
            conn,
            last,
            places["mismatch", "images"],
            urls["mismatch"],
            "size_mismatch",
            (1200, 630),
            (1200, 1200),
        )
        add_size_check(
            conn, last, places["mismatch", "hostile"], urls["mismatch"], "match", (1200, 1200), (1200, 1200)
        )
        add_size_check(
            conn, last, places["not_image", "images"], urls["not_image"], "unknown", (640, 480), None
        )
        add_state_change(conn, runs[1], urls["back"], "ok", "broken", at=T0 + DAY)
        add_state_change(conn, runs[2], urls["back"], "broken", "ok", at=at)
        add_state_change(conn, runs[1], urls["dead_a"], "ok", "broken", at=T0 + DAY)
        add_state_change(conn, runs[2], urls["dead_b"], "ok", "broken", at=at)
        add_state_change(conn, runs[2], urls["flaky"], "ok", "flapping", at=at)
        gone_copy = "http://web.archive.org/web/20240229120000/https://news.example/gone"
        add_archive_copy(conn, urls["gone"], gone_copy, "20240229120000", at=at)
        back_copy = "http://web.archive.org/web/20240101000000/https://news.example/back"
        add_archive_copy(conn, urls["back"], back_copy, "20240101000000", at=at)
        for name, per_run in _RUNS.items():
            facts = per_run[-1] or {}
            set_url_state(
                conn,
                urls[name],
                last_checked=at,
                last_run_id=last,
                last_verdict=facts.get("verdict"),
                last_severity=facts.get("severity"),
                last_status=facts.get("http_status"),
                last_ok=at if facts.get("verdict") in ("ok", "moved_permanently") else None,
                **_STATE_AFTER.get(name, {}),
            )
        add_finding(
            conn,
            articles["hostile"],
            "images[1].url",
            "invalid_url",
            "scheme javascript is not checkable",
            value="javascript:alert(1)",
        )
        add_finding(
            conn,
            articles["formula"],
            "related[2].webUrl",
            "invalid_url",
            "no host",
            value='=HYPERLINK("http://x")',
        )
        add_finding(
            conn,
            articles["plain"],
            "cdnAmpWebUrl",
            "amp_cache_mismatch",
            "AMP cache URL does not match ampWebUrl",
            value="https://wrong-example.cdn.ampproject.org/c/s/plain.example/amp/",
            expected="https://plain-example.cdn.ampproject.org/c/s/plain.example/amp/",
        )
        add_finding(
            conn,
            articles["images"],
            "images[0].width",
            "wrong_type",
            "expected an integer, got a string",
            value="wide",
        )
        add_corpus_error(
            conn,
            "broken/bad-frontmatter.md",
            "yaml_syntax",
            "mapping values are not allowed here",
            line=3,
            column=7,
        )
        add_corpus_error(
            conn, f"broken/{HOSTILE_TERMINAL}.md", "not_utf8", f"invalid start byte {HOSTILE_CSV}"
        )
    return History(tuple(runs), urls, articles)
