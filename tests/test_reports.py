"""Reports: the aggregate over a real SQLite history, every renderer, and hostile input."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import re
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import fields, replace
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from sqlalchemy import Engine, delete, update

from monitor.store import tables
from monitor.store.db import open_engine
from monitor.store.models import ResultRow
from monitor.types import FindingKind, Role, Severity, Size, SizeCheck, Verdict
from reports import (
    FORMATS,
    SECTIONS,
    ReportData,
    ReportError,
    as_csv,
    as_html,
    as_json,
    as_markdown,
    as_table,
    build_report,
    render,
    write_reports,
)
from reports.as_html import render_html
from reports.as_json import to_document
from reports.as_table import render_table
from reports.data import BUILDERS
from reports.fmt import image_lists, relative
from reports.sections import CHECK_SECTIONS, REGISTRY, TITLES, choose
from tests.history_fixture import (
    GENERATED_AT,
    HOSTILE_MARKUP,
    HOSTILE_PATH,
    HOSTILE_TITLE,
    HOSTILE_URL,
    URLS,
    History,
    build_history,
)
from tests.pg_schema import pg_schema_url

GOLDEN = Path(__file__).parent / "golden"
SCHEMA = Path(__file__).parent.parent / "reports" / "report.schema.json"
CHROMIUM = Path(
    os.environ.get("MONITOR_CHROMIUM")
    or next(
        (
            found
            for name in ("chromium", "chromium-browser", "google-chrome")
            if (found := shutil.which(name))
        ),
        "chromium",
    )
)


@pytest.fixture(scope="module")
def history_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Engine, History]]:
    engine = open_engine(f"sqlite:///{tmp_path_factory.mktemp('reports')}/history.db")
    history = build_history(engine)
    yield engine, history
    engine.dispose()


@pytest.fixture(scope="module")
def engine(history_db: tuple[Engine, History]) -> Engine:
    return history_db[0]


@pytest.fixture(scope="module")
def report(engine: Engine) -> ReportData:
    return build_report(engine, now=GENERATED_AT)


def _urls(urls: Any) -> set[str]:
    return {item.url for item in urls.urls}


def _url(name: str) -> str:
    return URLS[name][0]


# --- the aggregate ---------------------------------------------------------------------------------


def test_summary_of_latest_run(report: ReportData) -> None:
    """The latest run is the default, compared with run 2, with verdict, severity, role and host counts."""
    assert (report.run.id, report.run.state, report.run.trigger) == (3, "finished", "nightly")
    assert report.run.previous_run_id == 2 and report.run.duration_seconds == 300
    s = report.summary
    assert s is not None
    assert dict(s.verdicts) == {
        "ok": 4,
        "moved_permanently": 1,
        "broken": 3,
        "timeout": 1,
        "unreachable": 2,
        "blocked": 1,
        "not_image": 1,
    }
    assert (s.checked, s.errors, s.warnings) == (13, 6, 3)
    assert {c.name: (c.urls, c.errors, c.warnings) for c in s.roles}["image"] == (3, 1, 0)
    assert s.hosts[0].name == "dead.example" and s.hosts_total == 9
    assert (s.articles, s.findings, s.corpus_errors) == (4, 4, 2)


def test_missing_run_and_bad_arguments_raise_report_error(engine: Engine, tmp_path: Path) -> None:
    """An unknown run id, an empty database, an unknown section and a zero limit are clear ReportErrors."""
    with pytest.raises(ReportError, match="no run with id 99"):
        build_report(engine, 99)
    empty = open_engine(f"sqlite:///{tmp_path}/empty.db")
    with pytest.raises(ReportError, match="no check run"):
        build_report(empty)
    empty.dispose()
    with pytest.raises(ReportError, match=r"unknown report section.*bogus"):
        build_report(engine, sections=["broken", "bogus"])
    with pytest.raises(ReportError, match="at least 1"):
        build_report(engine, limit=0)


def test_broken_groups_by_host_and_article(report: ReportData) -> None:
    """Broken URLs are listed once, a dead host is one line, and articles list exact locations."""
    broken = report.broken
    assert broken is not None
    assert _urls(broken) == {_url("dead_a"), _url("dead_b"), _url("gone"), _url("flaky"), HOSTILE_URL}
    dead = broken.by_host[0]
    assert (dead.host, dead.urls, dead.errors, dead.articles, dead.occurrences) == (
        "dead.example",
        2,
        2,
        2,
        3,
    )
    assert dead.verdicts == (("unreachable", 2),)
    plain = {g.article: g for g in broken.by_article()}["news/2024-03-03-plain.md"]
    assert [(occ.location, item.url) for occ, item in plain.entries] == [
        ("related[0].webUrl", _url("gone")),
        ("related[1].webUrl", _url("dead_a")),
        ("related[2].webUrl", _url("dead_b")),
    ]
    dead_a = next(item for item in broken.urls if item.url == _url("dead_a"))
    assert dead_a.failure == "dns" and dead_a.consecutive_failures == 3 and dead_a.alert_state == "broken"


def test_problem_sections_are_disjoint(report: ReportData) -> None:
    """Moved, blocked, image and broken lists never share a URL, and ignored verdicts are in none."""
    assert report.broken and report.moved and report.blocked and report.images
    lists = [_urls(report.broken), _urls(report.moved), _urls(report.blocked)]
    lists += [_urls(report.images.not_image), _urls(report.images.image_unreadable)]
    assert sum(len(x) for x in lists) == len(set().union(*lists))
    assert _url("ok") not in set().union(*lists)
    assert _urls(report.moved) == {_url("moved")}
    assert _urls(report.blocked) == {_url("blocked"), _url("slow")}


def test_images_separate_mismatch_from_scaled(report: ReportData) -> None:
    """Size mismatches and scaled images are separate lists of the affected occurrences only."""
    images = report.images
    assert images is not None
    (mismatch,) = images.size_mismatch.urls
    assert (
        mismatch.url == _url("mismatch") and len(mismatch.occurrences) == 1
    )  # the matching place is left out
    occ = mismatch.occurrences[0]
    assert (occ.location, str(occ.declared), str(occ.actual), occ.size_check) == (
        "images[1].url",
        "1200x630",
        "1200x1200",
        "size_mismatch",
    )
    assert _urls(images.scaled) == {_url("scaled")}
    (not_image,) = images.not_image.urls
    assert (
        not_image.content_type == "text/html"
        and not_image.occurrences[0].location == "related[0].images[0].url"
    )
    assert images.image_unreadable.total == 0


def test_sizes_are_the_shared_size_type_and_half_known_ones_are_unknown(tmp_path: Path) -> None:
    """Report sizes are monitor.types.Size; a stored size missing one side (the writers never store
    one) reads as no size, so no renderer has to print half of one."""
    engine = open_engine(f"sqlite:///{tmp_path}/half.db")
    build_history(engine)
    data = build_report(engine, 3, sections=["images"])
    assert data.images is not None
    (item,) = data.images.size_mismatch.urls
    assert item.image_size == Size(1200, 1200) and item.occurrences[0].actual == Size(1200, 1200)
    with engine.begin() as conn:
        conn.execute(update(tables.SIZE_CHECKS).values(actual_height=None))
        conn.execute(update(tables.RESULTS).values(image_height=None))
    data = build_report(engine, 3, sections=["images"])
    engine.dispose()
    assert data.images is not None
    (item,) = data.images.size_mismatch.urls
    assert item.image_size is None and item.occurrences[0].actual is None
    assert item.occurrences[0].declared == Size(1200, 630)
    url = to_document(data)["images"]["size_mismatch"]["urls"][0]
    assert url["image"] == {"format": "png", "width": None, "height": None}
    assert url["occurrences"][0]["size_check"] == {"verdict": "size_mismatch", "actual": None}


def test_moved_has_final_url_and_redirect_chain(report: ReportData) -> None:
    """A permanently moved link carries its final URL, its hops and where it is written."""
    assert report.moved is not None
    (moved,) = report.moved.urls
    assert moved.final_url == "https://new.example/story"
    assert [(hop.url, hop.status) for hop in moved.redirects] == [
        ("https://old.example/story", 301),
        ("https://new.example/story", 200),
    ]
    assert [(o.article, o.location) for o in moved.occurrences] == [(HOSTILE_PATH, "related[1].ampWebUrl")]


def test_changes_since_previous_run(report: ReportData) -> None:
    """Newly broken, recovered, still broken (with since and runs) and flapping, each URL in one list."""
    changes = report.changes
    assert changes is not None and changes.previous_run_id == 2
    assert _urls(changes.newly_broken) == {_url("gone"), HOSTILE_URL, _url("not_image")}
    assert _urls(changes.recovered) == {_url("back")}
    assert {
        (i.url, i.failing_since.day if i.failing_since else None, i.consecutive_failures)
        for i in changes.still_broken.urls
    } == {
        (_url("dead_a"), 1, 3),
        (_url("dead_b"), 2, 2),
    }
    assert _urls(changes.flapping) == {_url("flaky")}
    assert {i.url: i.previous_verdict for i in changes.newly_broken.urls}[_url("gone")] == "ok"
    assert {i.previous_verdict for i in changes.recovered.urls} == {"broken"}


def test_changes_of_an_older_run_use_its_own_history(engine: Engine) -> None:
    """Run 2 compares with run 1, and a URL that flaps only from run 3 on is an ordinary change there."""
    changes = build_report(engine, 2, sections=["changes"]).changes
    assert changes is not None and changes.previous_run_id == 1
    assert _urls(changes.newly_broken) == {_url("dead_b")}
    assert _urls(changes.recovered) == {_url("flaky")}
    assert _urls(changes.still_broken) == {_url("back"), _url("dead_a")}
    assert changes.flapping.total == 0


def test_first_run_has_nothing_to_compare(engine: Engine) -> None:
    """Without an earlier run everything failing is new and nothing is recovered or still broken."""
    data = build_report(engine, 1, sections=["changes", "trend"])
    assert data.run.previous_run_id is None and data.changes is not None
    assert _urls(data.changes.newly_broken) == {_url("back"), _url("dead_a"), _url("flaky")}
    assert data.changes.recovered.total == data.changes.still_broken.total == 0
    assert data.trend is not None and [p.run_id for p in data.trend] == [1]


def test_findings_corpus_errors_and_trend(report: ReportData) -> None:
    """Findings by kind with expected values, bad files, and problems per run oldest first."""
    findings = report.findings
    assert findings is not None
    assert dict(findings.counts) == {"amp_cache_mismatch": 1, "invalid_url": 2, "wrong_type": 1}
    amp = next(f for f in findings.items if f.kind == "amp_cache_mismatch")
    assert amp.expected == "https://plain-example.cdn.ampproject.org/c/s/plain.example/amp/"
    assert report.corpus_errors is not None and report.corpus_errors.total == 2
    assert report.corpus_errors.items[1].line == 3
    assert report.trend is not None
    assert [(p.run_id, p.checked, p.errors, p.warnings) for p in report.trend] == [
        (1, 8, 3, 0),
        (2, 10, 3, 0),
        (3, 13, 6, 3),
    ]


def test_limits_say_how_much_was_left_out(engine: Engine) -> None:
    """Capped lists keep their totals and every text format says how many were not listed."""
    data = build_report(engine, limit=1, occurrence_limit=1, trend_runs=2, now=GENERATED_AT)
    assert data.broken is not None and data.findings is not None and data.trend is not None
    assert (len(data.broken.urls), data.broken.total, data.broken.omitted) == (1, 5, 4)
    assert (len(data.broken.by_host), data.broken.hosts_omitted) == (1, 3)
    first = data.broken.urls[0]
    assert first.url == _url("dead_a") and (len(first.occurrences), first.occurrences_omitted) == (1, 1)
    assert (len(data.findings.items), data.findings.omitted) == (1, 3)
    assert [p.run_id for p in data.trend] == [2, 3]
    for fmt in ("markdown", "table", "html"):
        assert "4 more URLs not listed" in render(data, fmt), fmt
    assert to_document(data)["broken"]["omitted"] == 4


def test_section_subset_renders_in_every_format(engine: Engine) -> None:
    """Only the asked-for sections are built, and every renderer copes with the others missing."""
    data = build_report(engine, sections=["moved", "trend"], now=GENERATED_AT)
    assert data.sections == ("moved", "trend")
    assert data.summary is None and data.broken is None and data.moved is not None
    for fmt in FORMATS:
        assert "old.example" in render(data, fmt), fmt
    assert set(to_document(data)) == {
        "schema",
        "version",
        "generated_at",
        "limit",
        "sections",
        "run",
        "moved",
        "trend",
    }


def test_pruned_results_fall_back_to_stored_counts(tmp_path: Path) -> None:
    """When a run's result rows are pruned, its summary still shows the counts stored on the run."""
    engine = open_engine(f"sqlite:///{tmp_path}/pruned.db")
    build_history(engine)
    with engine.begin() as conn:
        conn.execute(delete(ResultRow.__table__).where(ResultRow.__table__.c.run_id == 3))
    data = build_report(engine, 3, sections=["summary", "broken"])
    engine.dispose()
    assert data.summary is not None and dict(data.summary.verdicts)["unreachable"] == 2
    assert data.run.previous_run_id == 2 and data.broken is not None and data.broken.total == 0


@pytest.mark.postgres
def test_postgres_gives_the_same_report(report: ReportData) -> None:
    """On PostgreSQL the same history gives the same report, byte for byte."""
    with pg_schema_url() as url:
        engine = open_engine(url)
        try:
            build_history(engine)
            data = build_report(engine, now=GENERATED_AT)
        finally:
            engine.dispose()
    for fmt in ("markdown", "json", "csv"):
        assert render(data, fmt) == render(report, fmt), fmt


# --- renderers -------------------------------------------------------------------------------------


def _golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.parent.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8", newline="")
    assert text == path.read_text(encoding="utf-8"), f"{name} changed; rerun with UPDATE_GOLDEN=1 if intended"


def test_markdown_matches_golden(report: ReportData) -> None:
    """The Markdown report is byte-for-byte the reviewed golden file."""
    _golden("report.md", render(report, "markdown"))


def test_csv_matches_golden(report: ReportData) -> None:
    """The CSV report is byte-for-byte the reviewed golden file."""
    _golden("report.csv", render(report, "csv"))


def test_csv_columns_and_formula_cells(report: ReportData) -> None:
    """CSV has the documented columns and no cell a spreadsheet would evaluate or a terminal obey."""
    rows = list(csv.reader(io.StringIO(render(report, "csv"))))
    assert rows[0] == [
        "section",
        "article",
        "location",
        "role",
        "url",
        "verdict",
        "severity",
        "reason",
        "http_status",
        "final_url",
        "declared",
        "actual",
        "since",
        "archived_url",
        "archived_at",
    ]
    cells = [cell for row in rows[1:] for cell in row]
    assert not [c for c in cells if c[:1] in ("=", "+", "-", "@", "\t", "\r")]
    assert f"'{HOSTILE_PATH}" in cells and '\'=HYPERLINK("http://x")' in cells
    assert not [c for c in cells if "\x1b" in c]
    sections = {row[0] for row in rows[1:]}
    assert {
        "broken",
        "images.size_mismatch",
        "images.scaled",
        "moved",
        "blocked",
        "changes.flapping",
    } <= sections
    assert {"findings.amp_cache_mismatch", "corpus_errors"} <= sections


def test_json_validates_against_schema(report: ReportData) -> None:
    """The JSON report is valid against the published 2020-12 schema, with facts per URL."""
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    doc = json.loads(render(report, "json"))
    validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    assert [e.message for e in validator.iter_errors(doc)] == []
    assert (doc["schema"], doc["version"]) == ("link-media-monitor/report", 1)
    moved = doc["moved"]["urls"][0]
    assert moved["redirects"][0] == {
        "url": _url("moved"),
        "status": 301,
        "location": "https://new.example/story",
    }
    mismatch = doc["images"]["size_mismatch"]["urls"][0]
    assert mismatch["image"] == {"format": "png", "width": 1200, "height": 1200}
    assert mismatch["occurrences"][0]["size_check"] == {
        "verdict": "size_mismatch",
        "actual": {"width": 1200, "height": 1200},
    }
    assert mismatch["occurrences"][0]["declared"] == {"width": 1200, "height": 630}


def test_json_schema_rejects_drift(report: ReportData) -> None:
    """The schema is strict: an unknown field or verdict fails validation, so drift is caught."""
    validator = Draft202012Validator(json.loads(SCHEMA.read_text(encoding="utf-8")))
    doc = to_document(report)
    doc["broken"]["urls"][0]["verdict"] = "exploded"
    doc["run"]["surprise"] = 1
    assert len(list(validator.iter_errors(doc))) == 2


def test_json_schema_vocabularies_match_types() -> None:
    """The schema's verdict, severity, role, size-check and finding enums are exactly the shared types."""
    defs = json.loads(SCHEMA.read_text(encoding="utf-8"))["$defs"]
    for name, enum in (
        ("verdict", Verdict),
        ("severity", Severity),
        ("role", Role),
        ("size_check", SizeCheck),
        ("finding_kind", FindingKind),
    ):
        assert defs[name]["enum"] == [v.value for v in enum], name


def test_terminal_table_shows_control_characters_and_markup_literally(report: ReportData) -> None:
    """No escape sequence, rich markup or emoji code from the data reaches the terminal, coloured or not."""
    plain = render_table(report, width=400)
    coloured = render_table(report, width=400, color=True)
    assert "\x1b" not in plain and "\x1b[" in coloured
    # rich's own colours are plain SGR sequences; once they are removed no escape character may remain
    for out in (plain, re.sub(r"\x1b\[[0-9;]*m", "", coloured)):
        assert "\x1b" not in out
        assert "\\x1b[31mred" in out and "\\x1b]8;;https://evil.example/\\x07click" in out
        assert HOSTILE_MARKUP in out and "\\x1b[0m" in out


def test_terminal_tables_are_cut_with_a_note(report: ReportData, monkeypatch: pytest.MonkeyPatch) -> None:
    """A terminal table longer than MAX_ROWS shows its head and says how many rows the files hold."""
    import reports.as_table

    monkeypatch.setattr(reports.as_table, "MAX_ROWS", 2)
    out = render_table(report, width=200)
    assert "5 more rows not shown here" in out  # the 7 broken occurrences, by article
    assert "news/2024-03-03-plain.md" not in out.split("Broken links (5) by article")[1].split("more rows")[0]


def test_markdown_escapes_untrusted_text(report: ReportData) -> None:
    """Titles and URLs cannot inject HTML, links or table cells into the Markdown report."""
    out = render(report, "markdown")
    assert "<script>" not in out and "\\<script\\>alert(1)\\</script\\>" in out
    assert "<https://news.example/gone>" in out
    assert f"<{HOSTILE_URL}>" not in out  # not an autolink: it holds < and >
    assert "\x1b" not in out and "\\\\x1b\\[31mred" in out
    assert "=cmd\\|' /C calc'\\!A0" in out  # the pipe cannot split the table cell


SECTION_CODE: dict[str, Mapping[str, object]] = {
    "table": as_table.SECTION_RENDERERS,
    "markdown": as_markdown.SECTION_RENDERERS,
    "csv": as_csv.SECTION_ROWS,
    "json": as_json.SECTION_OBJECTS,
    "html": as_html.SECTION_RENDERERS,
}


def test_one_registry_names_the_sections() -> None:
    """The registry is the one list: names, titles and check sections come from it, each section is a
    ReportData field with a query, and the unknown-section error lists the registered names."""
    assert tuple(s.name for s in REGISTRY) == SECTIONS and set(TITLES) == set(SECTIONS)
    assert set(CHECK_SECTIONS) == set(SECTIONS) - {"changes", "trend"}
    assert [f.name for f in fields(ReportData)][4:] == list(SECTIONS) == list(BUILDERS)
    with pytest.raises(ReportError) as unknown:
        choose(["summary", "nope"])
    assert str(unknown.value) == f"unknown report section(s) nope; choose from {', '.join(SECTIONS)}"


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_every_renderer_handles_exactly_the_registered_sections(fmt: str) -> None:
    """Each format maps every registered section, and only those, to its code (a new section needs all)."""
    assert set(SECTION_CODE) == set(FORMATS)
    assert sorted(SECTION_CODE[fmt]) == sorted(SECTIONS)


def test_render_and_write_reports(report: ReportData, tmp_path: Path) -> None:
    """``render`` rejects unknown formats, and ``write_reports`` writes each format under the pattern."""
    assert set(FORMATS) == {"table", "markdown", "csv", "json", "html"} and SECTIONS[0] == "summary"
    with pytest.raises(ReportError, match="unknown report format"):
        render(report, "pdf")
    paths = write_reports(report, tmp_path / "out", ["html", "json", "markdown", "csv"])
    assert [p.name for p in paths] == [f"report-3-2024-03-03.{ext}" for ext in ("html", "json", "md", "csv")]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(p.name for p in paths)
    with pytest.raises(ReportError, match="plain file name"):
        write_reports(report, tmp_path, ["csv"], pattern="../escape-{run_id}")


# --- HTML ------------------------------------------------------------------------------------------


class _Page(HTMLParser):
    """Collects what a self-contained, inert report must be checked for."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.inline: dict[str, list[str]] = {"script": [], "style": []}
        self._open: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._open = tag if tag in self.inline else None

    def handle_endtag(self, tag: str) -> None:
        self._open = None

    def handle_data(self, data: str) -> None:
        if self._open:
            self.inline[self._open].append(data)
        else:
            self.text.append(data)

    def count(self, tag: str, **attrs: str) -> int:
        return sum(1 for t, a in self.tags if t == tag and all(a.get(k) == v for k, v in attrs.items()))


@pytest.fixture(scope="module")
def html_report(report: ReportData) -> str:
    return render_html(report)


def test_html_structure_tables_and_chart(html_report: str) -> None:
    """The page has sortable, filterable tables per section and an SVG bar per run and severity."""
    page = _Page()
    page.feed(html_report)
    tables = [str(a.get("id")) for t, a in page.tags if t == "table"]
    assert {
        "t-broken-hosts",
        "t-broken",
        "t-images-size_mismatch",
        "t-moved",
        "t-changes",
        "t-findings",
    } <= set(tables)
    assert all(page.count("input", **{"data-table": tid}) == 1 for tid in tables)
    assert page.count("svg", **{"class": "chart"}) == 1
    assert page.count("rect", **{"class": "bar-err"}) == page.count("rect", **{"class": "bar-warn"}) == 3
    assert {a["id"] for t, a in page.tags if t == "section" and a.get("id")} == set(SECTIONS)


def test_html_is_self_contained(html_report: str) -> None:
    """No external or relative resource: only http(s) links, in-page anchors and inline style/script."""
    page = _Page()
    page.feed(html_report)
    assert page.count("link") == page.count("img") == page.count("iframe") == page.count("object") == 0
    for tag, attrs in page.tags:
        assert "src" not in attrs, tag
        href = attrs.get("href")
        if href is not None:
            assert re.match(r"https?://|#[a-z_]+$", href), href
            if href.startswith("http"):
                assert attrs.get("rel") == "noopener noreferrer" and attrs.get("target") == "_blank"
        assert not [name for name in attrs if name.startswith("on")], (tag, attrs)
    assert "url(" not in "".join(page.inline["style"]) and "@import" not in "".join(page.inline["style"])
    assert page.count("script") == 1


def test_html_renders_hostile_text_inert(html_report: str) -> None:
    """Hostile titles and URLs appear as text, never as tags, attributes or javascript: links."""
    page = _Page()
    page.feed(html_report)
    text = "".join(page.text)
    assert HOSTILE_TITLE.split(" \x1b")[0] in text  # <script>… and "onmouseover=… as plain text
    assert HOSTILE_URL in text and "javascript:alert(1)" in text
    assert "\x1b" not in html_report and "\\x1b[31mred" in text
    hrefs = [str(a["href"]) for t, a in page.tags if t == "a" and a.get("href")]
    assert HOSTILE_URL in hrefs  # escaped into the attribute, so it is one harmless link
    assert not [h for h in hrefs if h.lower().startswith("javascript")]
    assert html_report.count("<script") == 1 and 'onmouseover=alert(1)"' not in html_report


def test_html_csp_pins_its_own_style_and_script(html_report: str) -> None:
    """The Content-Security-Policy allows exactly the page's inline style and script, nothing else."""
    import base64
    import hashlib

    page = _Page()
    page.feed(html_report)
    csp = next(
        a["content"] for t, a in page.tags if t == "meta" and a.get("http-equiv") == "Content-Security-Policy"
    )
    assert csp is not None and "default-src 'none'" in csp
    for kind in ("script", "style"):
        (body,) = page.inline[kind]
        digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
        assert f"{kind}-src 'sha256-{digest}'" in csp


def test_trend_counts_broken_warnings_and_image_problems(report: ReportData, html_report: str) -> None:
    """Each trend point counts what the sections list (this run), and the chart draws three bars a run."""
    assert report.trend is not None and report.broken is not None and report.images is not None
    last = report.trend[-1]
    images = report.images
    assert last.broken == report.broken.total == 5
    card = sum(urls.total for _k, _t, urls in image_lists(images))  # the "Image problems" card
    assert last.image_problems == card == 3 and last.warnings == 3
    assert [p.broken for p in report.trend] != [0] * len(report.trend)
    page = _Page()
    page.feed(html_report)
    assert page.count("rect", **{"class": "bar-img"}) == len(report.trend) == 3
    assert to_document(report)["trend"][-1]["image_problems"] == last.image_problems
    assert "5 broken, 3 warnings" in html_report


def _table_rows(page: str, table_id: str) -> list[str]:
    body = page.split(f'id="{table_id}"', 1)[1].split("</tbody>", 1)[0]
    return body.split("<tr>")[2:]  # after the head row


def test_html_gives_every_problem_row_a_hint(html_report: str) -> None:
    """Each problem row says what to do: the final URL, the real size to declare, or replace the link."""
    hint = '<span class="hint">{}</span>'
    moved = _table_rows(html_report, "t-moved")
    assert moved and all(hint.format("update to the final URL") in row for row in moved)
    broken = _table_rows(html_report, "t-broken")
    dead = [row for row in broken if row.split("</td>")[4] in ("<td>broken", "<td>soft_404")]
    assert len(dead) >= 3 and all(hint.format("remove or replace the link") in row for row in dead)
    sizes = _table_rows(html_report, "t-images-size_mismatch")
    assert sizes and all(hint.format("fix the declared size to 1200x1200") in row for row in sizes)
    assert hint.format("") not in html_report  # no empty hint markup where nothing is to be done


def test_html_shows_article_paths_relative_to_the_run_root(tmp_path: Path) -> None:
    """A run that recorded its root shows article paths below it (full path in the tooltip); others keep
    the stored path, and with two roots each path keeps its root's name in front."""
    engine = open_engine(f"sqlite:///{tmp_path}/roots.db")
    build_history(engine)
    with engine.begin() as conn:
        conn.execute(update(tables.RUNS).where(tables.RUNS.c.id == 3).values(roots='["news"]'))
    data = build_report(engine, now=GENERATED_AT)
    engine.dispose()
    assert data.run.roots == ("news",)
    page = render_html(data)
    assert '<span class="path" title="news/2024-03-02-images.md">2024-03-02-images.md</span>' in page
    assert ">news/2024-03-02-images.md<" not in page and "checked news (article paths relative to it)" in page
    assert "news/2024-03-02-images.md" in render(data, "markdown")  # other formats keep the stored path
    unscoped = render_html(replace(data, run=replace(data.run, roots=None)))
    assert '<span class="path">news/2024-03-02-images.md</span>' in unscoped
    assert relative("/srv/c/world/index.md", ("/srv/c/world", "/srv/b")) == "world/index.md"
    assert relative("/srv/c/world/index.md", ("/srv/c/world",)) == "index.md"
    assert relative("/srv/c/worldwide/a.md", ("/srv/c/world",)) == "/srv/c/worldwide/a.md"


# --- headless Chromium -----------------------------------------------------------------------------

_BROWSER_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--remote-debugging-port=0",
    "--remote-allow-origins=*",
    "--window-size=1400,1600",
)

# Runs in the page at a 1400 px viewport: a column is squeezed when it is narrower than 12 'x' in its
# font while one of its cells needs more room than that (so it wraps: a short "404" column is fine).
_COLUMNS = """(() => {
  const natural = (cell, style) => {
    const clone = document.createElement("div");
    clone.style.cssText = "position:absolute;visibility:hidden;display:inline-block;white-space:nowrap";
    clone.style.font = style.font;
    clone.innerHTML = cell.innerHTML;
    document.body.appendChild(clone);
    const width = clone.getBoundingClientRect().width;
    clone.remove();
    return width;
  };
  const narrow = [];
  let measured = 0;
  document.querySelectorAll("table.sortable").forEach(table => {
    const rows = Array.from(table.tBodies[0].rows);
    if (!rows.length) { return; }
    Array.from(table.tHead.rows[0].cells).forEach((th, i) => {
      const style = getComputedStyle(rows[0].cells[i]);
      const probe = document.createElement("span");
      probe.style.cssText = "position:absolute;white-space:pre";
      probe.style.font = style.font;
      probe.textContent = "x".repeat(12);
      document.body.appendChild(probe);
      const need = probe.getBoundingClientRect().width;
      probe.remove();
      const pad = parseFloat(style.paddingLeft) + parseFloat(style.paddingRight);
      const width = th.getBoundingClientRect().width - pad;
      const widest = Math.max(...rows.map(r => natural(r.cells[i], style)));
      measured += 1;
      if (width < need - 0.5 && widest > width + 0.5) {
        const name = table.id + ": " + th.textContent.trim();
        narrow.push(name + " " + Math.round(width) + " px < " + Math.round(need));
      }
    });
  });
  const byArticle = document.getElementById("t-broken").parentElement;
  const overflow = byArticle.scrollWidth - byArticle.clientWidth;
  return { narrow, measured, overflow, viewport: window.innerWidth };
})()"""

# Runs in the page after load: sort the by-host table twice by a number and once by text, then filter.
_PROBE = """(() => {
  const col = (t, i) => Array.from(t.tBodies[0].rows).map(r => r.cells[i].textContent.trim());
  const hosts = document.getElementById("t-broken-hosts");
  const urls = hosts.tHead.rows[0].cells[1];
  urls.click();
  const asc = col(hosts, 1).map(Number);
  urls.click();
  const desc = col(hosts, 1).map(Number);
  const sortState = urls.getAttribute("aria-sort");
  hosts.tHead.rows[0].cells[0].click();
  const names = col(hosts, 0);
  const filter = document.querySelector('input[data-table="t-broken"]');
  filter.value = "dead.example";
  filter.dispatchEvent(new Event("input"));
  const rows = Array.from(document.getElementById("t-broken").tBodies[0].rows);
  const visible = rows.filter(r => !r.hidden).length;
  return {
    tables: document.querySelectorAll("table.sortable").length,
    bars: document.querySelectorAll("svg.chart rect.bar-err").length,
    asc, desc, sortState, names, visible,
    scripts: document.scripts.length,
    alerts: window.__alerts,
  };
})()"""


class _Cdp:
    """The few Chrome DevTools Protocol calls the browser test needs, over one websocket."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.next_id = 0
        self.events: list[str] = []

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        await self.ws.send_json({"id": self.next_id, "method": method, "params": params})
        while True:
            msg = await asyncio.wait_for(self.ws.receive_json(), 20)
            if msg.get("id") == self.next_id:
                assert "error" not in msg, msg
                return dict(msg["result"])
            self.events.append(msg.get("method", ""))

    async def wait_event(self, method: str) -> None:
        while method not in self.events:
            msg = await asyncio.wait_for(self.ws.receive_json(), 20)
            self.events.append(msg.get("method", ""))


async def _devtools_port(profile: Path, proc: asyncio.subprocess.Process) -> int:
    port_file = profile / "DevToolsActivePort"
    for _ in range(300):
        if port_file.exists() and port_file.read_text().strip():
            return int(port_file.read_text().split()[0])
        assert proc.returncode is None, "chromium exited early"
        await asyncio.sleep(0.1)
    raise AssertionError("chromium did not open its DevTools port in 30 s")


LONG_URL = (
    "https://www.newsroom.example.org/world/europe/2024/03/02/"
    "parliament-votes-on-the-long-awaited-reform-of-the-electoral-law-after-months-of-debate"
    "?utm_source=newsletter&utm_medium=email&utm_campaign=morning-briefing-2024-03-02&ref=homepage"
)


def _with_long_url(report: ReportData) -> ReportData:
    """The report with one more broken link whose URL is long, the kind that squeezed the URL column."""
    broken = report.broken
    assert broken is not None and broken.urls
    item = replace(broken.urls[0], url=LONG_URL, host="www.newsroom.example.org")
    return replace(report, broken=replace(broken, urls=(*broken.urls, item), total=broken.total + 1))


@pytest.mark.browser
async def test_html_report_in_headless_chromium(report: ReportData, tmp_path: Path) -> None:
    """Opened from disk in Chromium at 1400 px, the report shows tables and chart, sorts on header click
    and filters, and no table column is squeezed under ~12 characters, even by a long URL."""
    if not CHROMIUM.is_file():
        if os.environ.get("MONITOR_REQUIRE_BROWSER") == "1":
            pytest.fail(f"no Chromium on PATH (looked for {CHROMIUM}) and MONITOR_REQUIRE_BROWSER=1")
        pytest.skip(f"no Chromium on PATH (looked for {CHROMIUM})")
    import aiohttp

    page = tmp_path / "report.html"
    page.write_text(render_html(_with_long_url(report)), encoding="utf-8")
    profile = tmp_path / "profile"
    proc = await asyncio.create_subprocess_exec(
        str(CHROMIUM),
        *_BROWSER_FLAGS,
        f"--user-data-dir={profile}",
        "about:blank",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        port = await _devtools_port(profile, proc)
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/json/list") as resp:
                targets = await resp.json()
            ws_url = next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")
            async with http.ws_connect(ws_url, max_msg_size=0) as ws:
                cdp = _Cdp(ws)
                await cdp.call("Page.enable")
                metrics = {"width": 1400, "height": 1600, "deviceScaleFactor": 1, "mobile": False}
                await cdp.call("Emulation.setDeviceMetricsOverride", **metrics)
                # counts alert() calls, so a script smuggled in through the data would show up
                counter = "window.__alerts = 0; window.alert = () => { window.__alerts += 1; };"
                await cdp.call("Page.addScriptToEvaluateOnNewDocument", source=counter)
                await cdp.call("Page.navigate", url=page.as_uri())
                await cdp.wait_event("Page.loadEventFired")
                columns = await cdp.call("Runtime.evaluate", expression=_COLUMNS, returnByValue=True)
                probe = await cdp.call("Runtime.evaluate", expression=_PROBE, returnByValue=True)
                shot = await cdp.call("Page.captureScreenshot", format="png")
    finally:
        if proc.returncode is None:
            proc.terminate()
        await proc.wait()
    widths = columns["result"]["value"]
    assert widths["viewport"] == 1400 and widths["measured"] >= 60, widths
    assert widths["narrow"] == [], widths["narrow"]  # no column squeezed under ~12 characters
    assert widths["overflow"] <= 0, widths  # and the by-article table fits: no sideways scrolling
    result = probe["result"]["value"]
    assert result["tables"] >= 15 and result["bars"] == 3 and result["scripts"] == 1 and result["alerts"] == 0
    assert result["asc"] == sorted(result["asc"]) and result["desc"] == sorted(result["desc"], reverse=True)
    assert result["asc"] != result["desc"] and result["sortState"] == "descending"
    assert result["names"] == sorted(result["names"])
    assert result["visible"] == 3  # dead.example's three occurrences
    import base64

    screenshot = tmp_path / "report.png"
    screenshot.write_bytes(base64.b64decode(shot["data"]))
    print(f"report screenshot: {screenshot}")


def test_archived_copy_is_shown_for_dead_pages_only(report: ReportData) -> None:
    """The cache holds copies of ``gone`` (broken) and ``back`` (recovered): only the broken one shows it."""
    assert report.broken is not None and report.changes is not None
    gone = next(item for item in report.broken.urls if item.url == _url("gone"))
    assert gone.archived is not None and gone.archived.timestamp == "20240229120000"
    assert [item.archived for item in report.changes.recovered.urls] == [None]
    others = [item for item in report.broken.urls if item.url != _url("gone")]
    assert others and all(item.archived is None for item in others)
    doc = json.loads(render(report, "json"))
    listed = {u["url"]: u["archived"] for u in doc["broken"]["urls"]}
    assert listed[_url("gone")] == {
        "url": "http://web.archive.org/web/20240229120000/https://news.example/gone",
        "timestamp": "20240229120000",
        "captured_at": "2024-02-29T12:00:00Z",
    }
