"""The HTML report: one self-contained file that opens from disk.

No external CSS, JS, fonts or images: styles, the sort/filter script and the trend chart
(inline SVG) are in the file. Every value from the database is HTML-escaped (after
``inert``), only http(s) URLs become links (``rel="noopener noreferrer"``), and a
Content-Security-Policy allows only this file's own style and script by hash, so even a
missed escape could neither run script nor load anything.
"""

from __future__ import annotations

import base64
import hashlib
import html
import re
from collections.abc import Iterable, Sequence
from functools import cache
from importlib import resources
from string import Template

from monitor.textsafe import inert
from reports import fmt
from reports.model import HostGroup, ReportData, TrendPoint, UrlItem, UrlList

Cell = str | tuple[str, str]  # cell HTML, or (cell HTML, sort key)
_UNLINKABLE = re.compile(r"[\s\x00-\x1f\x7f]")
_NUM = ' class="num"'


@cache
def _asset(name: str) -> str:
    return (resources.files("reports") / "templates" / name).read_text(encoding="utf-8")


def _hash(source: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(source.encode()).digest()).decode() + "'"


def esc(value: object) -> str:
    """Untrusted text as inert, escaped HTML (safe in element content and quoted attributes)."""
    return html.escape(inert("" if value is None else str(value)), quote=True)


def link(url: str | None) -> str:
    """A link for an http(s) URL, plain text for anything else."""
    if not url:
        return ""
    if fmt.is_web_url(url) and not _UNLINKABLE.search(url):
        href = html.escape(url, quote=True)
        return f'<a href="{href}" rel="noopener noreferrer" target="_blank">{esc(url)}</a>'
    return f'<span class="nolink">{esc(url)}</span>'


def render_html(data: ReportData) -> str:
    css, js = _asset("report.css"), _asset("report.js")
    csp = (
        f"default-src 'none'; style-src {_hash(css)}; script-src {_hash(js)}; img-src data:; "
        "base-uri 'none'; form-action 'none'"
    )
    run = data.run
    meta = (
        f"{esc(run.state)} run, trigger {esc(run.trigger)}; started {fmt.when(run.started_at)}, "
        f"finished {fmt.when(run.finished_at) or 'not yet'}, duration {fmt.duration(run.duration_seconds)}; "
        + (f"compared with run {run.previous_run_id}" if run.previous_run_id else "no earlier run")
        + (f'; <span class="sev-error">run error: {esc(run.error)}</span>' if run.error else "")
    )
    nav = " ".join(f'<a href="#{name}">{html.escape(fmt.SECTION_TITLES[name])}</a>' for name in data.sections)
    sections = "\n".join(_SECTIONS[name](data) for name in data.sections)
    return Template(_asset("report.html")).substitute(
        csp=csp,
        title=f"Link and media report: run {run.id}",
        css=css,
        js=js,
        meta=meta,
        nav=nav,
        cards=_cards(data),
        sections=sections,
        footer=f"Generated {fmt.when(data.generated_at)} by link-media-monitor."
        + (f" Lists are capped at {data.limit} entries." if data.limit else ""),
    )


def _cards(data: ReportData) -> str:
    cards: list[tuple[str, int, str, str]] = []  # label, value, class, anchor
    if data.summary is not None:
        s = data.summary
        cards += [("URLs checked", s.checked, "", "summary")]
        cards += [("Errors", s.errors, "err" if s.errors else "good", "summary")]
        cards += [("Warnings", s.warnings, "warn" if s.warnings else "good", "summary")]
    if data.broken is not None:
        cards.append(("Broken URLs", data.broken.total, "err" if data.broken.total else "good", "broken"))
    if data.images is not None:
        count = sum(urls.total for _k, _t, urls in fmt.image_lists(data.images))
        cards.append(("Image problems", count, "warn" if count else "good", "images"))
    if data.moved is not None:
        cards.append(("Moved", data.moved.total, "warn" if data.moved.total else "good", "moved"))
    if data.blocked is not None:
        cards.append(
            ("Blocked / slow", data.blocked.total, "warn" if data.blocked.total else "good", "blocked")
        )
    if data.changes is not None:
        newly, recovered = data.changes.newly_broken.total, data.changes.recovered.total
        cards.append(("Newly broken", newly, "err" if newly else "good", "changes"))
        cards.append(("Recovered", recovered, "good", "changes"))
    if data.findings is not None:
        cards.append(("Findings", data.findings.total, "warn" if data.findings.total else "good", "findings"))
    if data.corpus_errors is not None:
        total = data.corpus_errors.total
        cards.append(("Corpus errors", total, "err" if total else "good", "corpus_errors"))
    return "".join(
        f'<a class="card {cls}" href="#{anchor}"><span class="value">{value}</span>'
        f'<span class="label">{html.escape(label)}</span></a>'
        for label, value, cls, anchor in cards
    )


def _table(
    table_id: str,
    label: str,
    headers: Sequence[str],
    rows: Iterable[Sequence[Cell]],
    numeric: Sequence[int] = (),
) -> str:
    head = "".join(
        f'<th scope="col"{_NUM if i in numeric else ""}>{html.escape(h)}</th>' for i, h in enumerate(headers)
    )
    body = []
    for row in rows:
        cells = []
        for i, cell in enumerate(row):
            content, key = cell if isinstance(cell, tuple) else (cell, None)
            attrs = _NUM if i in numeric else ""
            attrs += f' data-sort="{esc(key)}"' if key is not None else ""  # keys hold corpus text too
            cells.append(f"<td{attrs}>{content}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (
        f'<div class="tools"><input type="search" class="filter" data-table="{table_id}" '
        f'data-count="{table_id}-count" placeholder="Filter rows" aria-label="Filter {html.escape(label)}">'
        f'<span class="count" id="{table_id}-count"></span></div>'
        f'<div class="scroll"><table class="sortable" id="{table_id}" aria-label="{html.escape(label)}">'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"
    )


def _num(value: int | None) -> Cell:
    return ("", "") if value is None else (str(value), str(value))


def _sev(severity: str) -> str:
    return f'<span class="sev-{esc(severity)}">{esc(severity)}</span>'


def _since(item: UrlItem) -> Cell:
    return (fmt.when(item.failing_since), item.failing_since.isoformat() if item.failing_since else "")


def _article(path: str, title: str | None) -> Cell:
    shown = esc(path) + (f'<span class="title">{esc(title)}</span>' if title else "")
    return (shown, path)


def _more(omitted: int, what: str) -> str:
    return f'<p class="note">{html.escape(fmt.more(omitted, what))}</p>' if omitted else ""


def _occurrence_rows(urls: UrlList, tail: Sequence[str]) -> list[list[Cell]]:
    """One row per occurrence (a URL without one gets a row of its own) with the ``tail`` columns."""
    rows: list[list[Cell]] = []
    for item in urls.urls:
        extra = [_url_cell(item, column) for column in tail]
        places = item.occurrences or (None,)
        for occ in places:
            where: list[Cell] = (
                [_article(occ.article, occ.title), esc(occ.location), esc(occ.role)] if occ else ["", "", ""]
            )
            rows.append([*where, link(item.url), *extra])
    return rows


def _url_cell(item: UrlItem, column: str) -> Cell:
    match column:
        case "Verdict":
            return esc(item.verdict)
        case "Severity":
            return _sev(item.severity)
        case "Reason":
            return esc(item.reason)
        case "HTTP":
            return _num(item.http_status)
        case "Final URL":
            return link(item.final_url)
        case "Redirects":
            return _num(len(item.redirects))
        case "Content type":
            return esc(item.content_type)
        case "Failing since":
            return _since(item)
        case "Runs":
            return _num(item.consecutive_failures)
        case "Previous":
            return esc(item.previous_verdict)
    raise ValueError(f"unknown column {column!r}")


def _url_section(table_id: str, label: str, urls: UrlList, tail: Sequence[str]) -> str:
    headers = ["Article", "Location", "Role", "URL", *tail]
    numeric = [4 + i for i, c in enumerate(tail) if c in ("HTTP", "Runs", "Redirects")]
    return _table(table_id, label, headers, _occurrence_rows(urls, tail), numeric) + _more(
        urls.omitted, "URLs"
    )


def _hosts(table_id: str, label: str, groups: Sequence[HostGroup], omitted: int) -> str:
    rows = [
        [
            *(esc(g.host), _num(g.urls), _num(g.errors), _num(g.warnings)),
            *(_num(g.articles), _num(g.occurrences), esc(fmt.verdict_counts(g.verdicts))),
        ]
        for g in groups
    ]
    headers = ["Host", "URLs", "Errors", "Warnings", "Articles", "Occurrences", "Verdicts"]
    return _table(table_id, label, headers, rows, [1, 2, 3, 4, 5]) + _more(omitted, "hosts")


def _section(name: str, count: int | None, body: str) -> str:
    title = html.escape(fmt.SECTION_TITLES[name]) + (f" ({count})" if count is not None else "")
    return f'<section id="{name}"><h2>{title}</h2>\n{body}\n</section>'


def _summary(data: ReportData) -> str:
    s = data.summary
    if s is None:
        return ""
    verdicts = _table(
        "t-verdicts", "Verdicts", ["Verdict", "URLs"], [[esc(v), _num(n)] for v, n in s.verdicts], [1]
    )
    roles = _table(
        "t-roles",
        "Roles",
        ["Role", "URLs", "Errors", "Warnings"],
        [[esc(c.name), _num(c.urls), _num(c.errors), _num(c.warnings)] for c in s.roles],
        [1, 2, 3],
    )
    hosts = _table(
        "t-hosts",
        "Hosts",
        ["Host", "URLs", "Errors", "Warnings"],
        [[esc(c.name), _num(c.urls), _num(c.errors), _num(c.warnings)] for c in s.hosts],
        [1, 2, 3],
    )
    inventory = (
        f'<p class="note">{s.articles} articles, {s.occurrences} URL occurrences, {s.urls} known URLs; '
        f"{s.findings} findings, {s.corpus_errors} unreadable files.</p>"
    )
    body = (
        f'{inventory}<div class="grid3"><div><h3>Verdicts</h3>{verdicts}</div>'
        f"<div><h3>Roles</h3>{roles}</div>"
        f"<div><h3>Hosts (top {len(s.hosts)} of {s.hosts_total})</h3>{hosts}</div></div>"
    )
    return _section("summary", None, body)


def _broken(data: ReportData) -> str:
    urls = data.broken
    if urls is None:
        return ""
    if not urls.total:
        return _section("broken", 0, '<p class="note">No broken links.</p>')
    tail = ["Verdict", "Severity", "Reason", "HTTP", "Failing since", "Runs"]
    body = (
        "<h3>By host</h3>"
        + _hosts("t-broken-hosts", "Broken links by host", urls.by_host, urls.hosts_omitted)
        + "<h3>By article</h3>"
        + _url_section("t-broken", "Broken links by article", urls, tail)
    )
    return _section("broken", urls.total, body)


def _images(data: ReportData) -> str:
    if data.images is None:
        return ""
    parts = []
    for key, title, urls in fmt.image_lists(data.images):
        parts.append(f"<h3>{html.escape(title)} ({urls.total})</h3>")
        if not urls.total:
            parts.append('<p class="note">None.</p>')
        elif key in ("size_mismatch", "scaled"):
            rows: list[list[Cell]] = [
                [
                    *(_article(o.article, o.title), esc(o.location), link(item.url)),
                    *(esc(fmt.dims(o.declared)), esc(fmt.dims(o.actual)), esc(item.image_format)),
                ]
                for item in urls.urls
                for o in item.occurrences
            ]
            headers = ["Article", "Location", "URL", "Declared", "Actual", "Format"]
            parts.append(_table(f"t-images-{key}", title, headers, rows) + _more(urls.omitted, "URLs"))
        else:
            tail = ["Verdict", "Severity", "Reason", "Content type"]
            parts.append(_url_section(f"t-images-{key}", title, urls, tail))
    return _section("images", None, "\n".join(parts))


def _moved(data: ReportData) -> str:
    urls = data.moved
    if urls is None:
        return ""
    if not urls.total:
        return _section("moved", 0, '<p class="note">No permanently moved links.</p>')
    note = '<p class="note">Update these links to their final URL.</p>'
    table = _url_section(
        "t-moved", "Moved permanently", urls, ["Final URL", "Redirects", "Severity", "Reason"]
    )
    return _section("moved", urls.total, note + table)


def _changes(data: ReportData) -> str:
    changes = data.changes
    if changes is None:
        return ""
    rows: list[list[Cell]] = []
    for _key, title, urls in fmt.change_lists(changes):
        for item in urls.urls:
            articles = ", ".join(esc(o.article) for o in item.occurrences)
            if item.occurrences_omitted:
                articles += f" and {item.occurrences_omitted} more"
            head: list[Cell] = [esc(title), link(item.url), esc(item.verdict), _url_cell(item, "Previous")]
            rows.append([*head, _sev(item.severity), _since(item), _num(item.consecutive_failures), articles])
    against = f"run {changes.previous_run_id}" if changes.previous_run_id else "no earlier run"
    counts = ", ".join(f"{title.lower()} {urls.total}" for _k, title, urls in fmt.change_lists(changes))
    omitted = sum(urls.omitted for _k, _t, urls in fmt.change_lists(changes))
    headers = ["Change", "URL", "Verdict", "Previous", "Severity", "Failing since", "Runs", "Articles"]
    body = (
        f'<p class="note">Compared with {against}: {counts}.</p>'
        + _table("t-changes", "Changes since the previous run", headers, rows, [6])
        + _more(omitted, "URLs")
    )
    return _section("changes", None, body)


def _blocked(data: ReportData) -> str:
    urls = data.blocked
    if urls is None:
        return ""
    if not urls.total:
        return _section("blocked", 0, '<p class="note">None.</p>')
    body = (
        '<p class="note">These may work in a browser; they are kept apart from broken links.</p>'
        + _hosts("t-blocked-hosts", "Blocked by host", urls.by_host, urls.hosts_omitted)
        + _url_section(
            "t-blocked",
            "Blocked, rate-limited and timed out",
            urls,
            ["Verdict", "Severity", "Reason", "HTTP"],
        )
    )
    return _section("blocked", urls.total, body)


def _findings(data: ReportData) -> str:
    f = data.findings
    if f is None:
        return ""
    rows: list[list[Cell]] = [
        [
            esc(i.kind),
            _article(i.article, i.title),
            esc(i.location),
            esc(i.message),
            link(i.value),
            link(i.expected),
        ]
        for i in f.items
    ]
    headers = ["Kind", "Article", "Location", "Message", "Value", "Expected"]
    body = _table("t-findings", "Findings", headers, rows) + _more(f.omitted, "findings")
    return _section("findings", f.total, body)


def _corpus_errors(data: ReportData) -> str:
    e = data.corpus_errors
    if e is None:
        return ""
    rows: list[list[Cell]] = [
        [esc(i.path), esc(i.kind), _num(i.line), _num(i.column), esc(i.message), esc(fmt.when(i.first_seen))]
        for i in e.items
    ]
    headers = ["File", "Kind", "Line", "Column", "Message", "First seen"]
    body = _table("t-corpus-errors", "Corpus errors", headers, rows, [2, 3]) + _more(e.omitted, "files")
    return _section("corpus_errors", e.total, body)


def _trend(data: ReportData) -> str:
    if data.trend is None:
        return ""
    rows: list[list[Cell]] = [
        [
            _num(p.run_id),
            esc(fmt.when(p.started_at)),
            esc(p.state),
            _num(p.checked),
            _num(p.errors),
            _num(p.warnings),
        ]
        for p in data.trend
    ]
    headers = ["Run", "Started", "State", "Checked", "Errors", "Warnings"]
    legend = (
        '<p class="legend"><span class="k-err">&#9632; errors</span>'
        '<span class="k-warn">&#9632; warnings</span></p>'
    )
    body = (
        chart(data.trend, data.run.id)
        + legend
        + _table("t-trend", "Problems per run", headers, rows, [0, 3, 4, 5])
    )
    return _section("trend", None, body)


def chart(points: Sequence[TrendPoint], current: int) -> str:
    """An inline SVG bar chart of errors and warnings per run, errors stacked under warnings."""
    width, height, left, bottom, top = 720, 220, 44, 28, 12
    plot_h = height - bottom - top
    slot = (width - left - 8) / max(len(points), 1)
    bar = min(max(slot * 0.7, 1.0), 48.0)
    peak = max((p.problems for p in points), default=0) or 1
    every = max(1, round(len(points) / 15))  # at most ~15 run labels
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="Problems per run over the last {len(points)} runs">',
        f'<line class="grid" x1="{left}" y1="{top}" x2="{width - 4}" y2="{top}"></line>',
        f'<line class="grid" x1="{left}" y1="{top + plot_h}" x2="{width - 4}" y2="{top + plot_h}"></line>',
        f'<text x="{left - 6}" y="{top + 4}" text-anchor="end">{peak}</text>',
        f'<text x="{left - 6}" y="{top + plot_h + 4}" text-anchor="end">0</text>',
    ]
    for i, p in enumerate(points):
        x = left + i * slot + (slot - bar) / 2
        err_h = plot_h * p.errors / peak
        warn_h = plot_h * p.warnings / peak
        base = top + plot_h
        label = (
            f"Run {p.run_id} ({fmt.when(p.started_at)}, {p.state}): "
            f"{p.errors} errors, {p.warnings} warnings of {p.checked} checked"
        )
        parts.append(f'<g class="run" data-run="{p.run_id}"><title>{esc(label)}</title>')
        parts.append(_rect("bar-err", x, base - err_h, bar, err_h))
        parts.append(_rect("bar-warn", x, base - err_h - warn_h, bar, warn_h))
        if p.run_id == current:
            parts.append(_rect("current", x - 2, top - 2, bar + 4, plot_h + 4))
        if i % every == 0 or p.run_id == current:
            parts.append(
                f'<text x="{x + bar / 2:.1f}" y="{height - 10}" text-anchor="middle">{p.run_id}</text>'
            )
        parts.append("</g>")
    parts.append("</svg>")
    return "".join(parts)


def _rect(cls: str, x: float, y: float, width: float, height: float) -> str:
    return f'<rect class="{cls}" x="{x:.1f}" y="{y:.1f}" width="{width:.1f}" height="{height:.1f}"></rect>'


_SECTIONS = {
    "summary": _summary,
    "broken": _broken,
    "images": _images,
    "moved": _moved,
    "changes": _changes,
    "blocked": _blocked,
    "findings": _findings,
    "corpus_errors": _corpus_errors,
    "trend": _trend,
}
