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
from collections.abc import Callable, Sequence
from functools import cache
from importlib import resources
from string import Template

from reports import fmt
from reports.html_blocks import (
    Cell,
    Roots,
    article,
    esc,
    hint_cell,
    host_table,
    link,
    more_note,
    num,
    section,
    sev,
    since,
    table,
    url_cell,
    url_table,
)
from reports.model import ReportData, TrendPoint, UrlList
from reports.sections import TITLES


@cache
def _asset(name: str) -> str:
    return (resources.files("reports") / "templates" / name).read_text(encoding="utf-8")


def _hash(source: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(source.encode()).digest()).decode() + "'"


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
        + (f"; checked {', '.join(map(esc, run.roots))} (article paths relative to it)" if run.roots else "")
        + (f'; <span class="sev-error">run error: {esc(run.error)}</span>' if run.error else "")
    )
    order = first_view(data.sections)
    nav = " ".join(f'<a href="#{name}">{html.escape(TITLES[name])}</a>' for name in order)
    sections = "\n".join(SECTION_RENDERERS[name](data) for name in order)
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


def first_view(sections: Sequence[str]) -> tuple[str, ...]:
    """The HTML report opens on what changed (what an editor reads first each morning), then the rest."""
    return tuple(sorted(sections, key=lambda name: name != "changes"))


def _cards(data: ReportData) -> str:
    cards: list[tuple[str, int, str, str]] = []  # label, value, class, anchor
    # what changed comes first: it is the default view
    if data.changes is not None:
        newly, recovered = data.changes.newly_broken.total, data.changes.recovered.total
        cards.append(("Newly broken", newly, "err" if newly else "good", "changes"))
        cards.append(("Recovered", recovered, "good", "changes"))
        mismatched = data.changes.newly_mismatched.total
        cards.append(("Newly mismatched images", mismatched, "warn" if mismatched else "good", "changes"))
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
    if data.acknowledged is not None and data.acknowledged.total:
        cards.append(("Acknowledged", data.acknowledged.total, "", "acknowledged"))
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


def _summary(data: ReportData) -> str:
    s = data.summary
    if s is None:
        return ""
    verdicts = table(
        "t-verdicts", "Verdicts", ["Verdict", "URLs"], [[esc(v), num(n)] for v, n in s.verdicts], [1]
    )
    roles = table(
        "t-roles",
        "Roles",
        ["Role", "URLs", "Errors", "Warnings"],
        [[esc(c.name), num(c.urls), num(c.errors), num(c.warnings)] for c in s.roles],
        [1, 2, 3],
    )
    hosts = table(
        "t-hosts",
        "Hosts",
        ["Host", "URLs", "Errors", "Warnings"],
        [[esc(c.name), num(c.urls), num(c.errors), num(c.warnings)] for c in s.hosts],
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
    return section("summary", None, body)


def _broken(data: ReportData) -> str:
    urls = data.broken
    if urls is None:
        return ""
    if not urls.total:
        return section("broken", 0, '<p class="note">No broken links.</p>')
    tail = ["Verdict", "Severity", "Reason", "HTTP", "Failing since", "Runs", "What to do"]
    body = (
        "<h3>By host</h3>"
        + host_table("t-broken-hosts", "Broken links by host", urls.by_host, urls.hosts_omitted)
        + "<h3>By article</h3>"
        + url_table("t-broken", "Broken links by article", urls, tail, data.run.roots)
    )
    return section("broken", urls.total, body)


def _images(data: ReportData) -> str:
    if data.images is None:
        return ""
    parts = []
    for key, title, urls in fmt.image_lists(data.images):
        parts.append(f"<h3>{html.escape(title)} ({urls.total})</h3>")
        if not urls.total:
            parts.append('<p class="note">None.</p>')
        elif key in ("size_mismatch", "scaled"):
            parts.append(_sizes(f"t-images-{key}", title, urls, data.run.roots))
        else:
            tail = ["Verdict", "Severity", "Reason", "Content type", "What to do"]
            parts.append(url_table(f"t-images-{key}", title, urls, tail, data.run.roots))
    return section("images", None, "\n".join(parts))


def _sizes(table_id: str, title: str, urls: UrlList, roots: Roots) -> str:
    """Image places with declared and real size (the size lists, newly mismatched images)."""
    rows: list[list[Cell]] = [
        [
            *(article(o.article, o.title, roots), esc(o.location), link(item.url)),
            *(esc(fmt.dims(o.declared)), esc(fmt.dims(o.actual)), esc(item.image_format)),
            hint_cell(item.verdict, o.size_check, o.actual),
        ]
        for item in urls.urls
        for o in item.occurrences
    ]
    headers = ["Article", "Location", "URL", "Declared", "Actual", "Format", "What to do"]
    return table(table_id, title, headers, rows) + more_note(urls.omitted, "URLs")


def _moved(data: ReportData) -> str:
    urls = data.moved
    if urls is None:
        return ""
    if not urls.total:
        return section("moved", 0, '<p class="note">No permanently moved links.</p>')
    note = '<p class="note">Update these links to their final URL.</p>'
    tail = ["Final URL", "Redirects", "Severity", "Reason", "What to do"]
    listing = url_table("t-moved", "Moved permanently", urls, tail, data.run.roots)
    return section("moved", urls.total, note + listing)


def _changes(data: ReportData) -> str:
    changes = data.changes
    if changes is None:
        return ""
    rows: list[list[Cell]] = []
    changes_roots = data.run.roots
    for key, title, urls in fmt.change_lists(changes):
        if key == "newly_mismatched":
            continue  # its own table below: the places with their declared and real size
        for item in urls.urls:
            articles = ", ".join(esc(fmt.relative(o.article, changes_roots)) for o in item.occurrences)
            if item.occurrences_omitted:
                articles += f" and {item.occurrences_omitted} more"
            head: list[Cell] = [esc(title), link(item.url), esc(item.verdict), url_cell(item, "Previous")]
            rows.append(
                [
                    *head,
                    sev(item.severity),
                    since(item),
                    num(item.consecutive_failures),
                    articles,
                    url_cell(item, "What to do") if key != "recovered" else "",
                ]
            )
    against = f"run {changes.previous_run_id}" if changes.previous_run_id else "no earlier run"
    counts = ", ".join(f"{title.lower()} {urls.total}" for _k, title, urls in fmt.change_lists(changes))
    omitted = sum(urls.omitted for _k, _t, urls in fmt.change_lists(changes))
    headers = ["Change", "URL", "Verdict", "Previous", "Severity", "Failing since", "Runs", "Articles"]
    headers.append("What to do")
    body = (
        f'<p class="note">Compared with {against}: {counts}.</p>'
        + table("t-changes", "Changes since the previous run", headers, rows, [6])
        + more_note(omitted, "URLs")
    )
    if changes.newly_mismatched.total:
        title = dict(fmt.CHANGE_LISTS)["newly_mismatched"]
        sizes = _sizes("t-changes-sizes", title, changes.newly_mismatched, data.run.roots)
        body += f"<h3>{html.escape(title)}</h3>" + sizes
    return section("changes", None, body)


def _blocked(data: ReportData) -> str:
    urls = data.blocked
    if urls is None:
        return ""
    if not urls.total:
        return section("blocked", 0, '<p class="note">None.</p>')
    body = (
        '<p class="note">These may work in a browser; they are kept apart from broken links.</p>'
        + host_table("t-blocked-hosts", "Blocked by host", urls.by_host, urls.hosts_omitted)
        + url_table(
            "t-blocked",
            "Blocked, rate-limited and timed out",
            urls,
            ["Verdict", "Severity", "Reason", "HTTP"],
            data.run.roots,
        )
    )
    return section("blocked", urls.total, body)


def _acknowledged(data: ReportData) -> str:
    urls = data.acknowledged
    if urls is None:
        return ""
    if not urls.total:
        return section("acknowledged", 0, '<p class="note">None.</p>')
    note = (
        '<p class="note">Accepted breakage (<code>monitor ack</code>): still checked, '
        "not counted as errors, never alerted; it ends when the link recovers.</p>"
    )
    tail = ["Verdict", "Reason", "Acknowledged", "Failing since"]
    listing = url_table("t-acknowledged", "Acknowledged", urls, tail, data.run.roots)
    return section("acknowledged", urls.total, note + listing)


def _findings(data: ReportData) -> str:
    f = data.findings
    if f is None:
        return ""
    rows: list[list[Cell]] = [
        [
            esc(i.kind),
            article(i.article, i.title, data.run.roots),
            esc(i.location),
            esc(i.message),
            link(i.value),
            link(i.expected),
        ]
        for i in f.items
    ]
    headers = ["Kind", "Article", "Location", "Message", "Value", "Expected"]
    body = table("t-findings", "Findings", headers, rows) + more_note(f.omitted, "findings")
    return section("findings", f.total, body)


def _corpus_errors(data: ReportData) -> str:
    e = data.corpus_errors
    if e is None:
        return ""
    rows: list[list[Cell]] = [
        [
            (esc(fmt.relative(i.path, data.run.roots)), i.path),
            esc(i.kind),
            num(i.line),
            num(i.column),
            esc(i.message),
            esc(fmt.when(i.first_seen)),
        ]
        for i in e.items
    ]
    headers = ["File", "Kind", "Line", "Column", "Message", "First seen"]
    body = table("t-corpus-errors", "Corpus errors", headers, rows, [2, 3]) + more_note(e.omitted, "files")
    return section("corpus_errors", e.total, body)


def _trend(data: ReportData) -> str:
    if data.trend is None:
        return ""
    rows: list[list[Cell]] = [
        [
            num(p.run_id),
            esc(fmt.when(p.started_at)),
            esc(p.state),
            num(p.checked),
            num(p.errors),
            num(p.warnings),
            num(p.broken),
            num(p.image_problems),
        ]
        for p in data.trend
    ]
    headers = ["Run", "Started", "State", "Checked", "Errors", "Warnings", "Broken", "Image problems"]
    legend = (
        '<p class="legend"><span class="k-err">&#9632; broken</span>'
        '<span class="k-warn">&#9632; warnings</span><span class="k-img">&#9632; image problems</span></p>'
    )
    body = (
        chart(data.trend, data.run.id)
        + legend
        + table("t-trend", "Problems per run", headers, rows, [0, 3, 4, 5, 6, 7])
    )
    return section("trend", None, body)


SERIES = (("bar-err", "broken"), ("bar-warn", "warnings"), ("bar-img", "image problems"))


def chart(points: Sequence[TrendPoint], current: int) -> str:
    """An inline SVG chart of broken URLs, warnings and image problems per run: three bars a run."""
    width, height, left, bottom, top = 720, 220, 44, 28, 12
    plot_h = height - bottom - top
    slot = (width - left - 8) / max(len(points), 1)
    group = min(max(slot * 0.8, 3.0), 60.0)
    bar = group / len(SERIES)
    peak = max((max(_values(p)) for p in points), default=0) or 1
    every = max(1, round(len(points) / 15))  # at most ~15 run labels
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="Broken URLs, warnings and image problems per run over the last {len(points)} runs">',
        f'<line class="grid" x1="{left}" y1="{top}" x2="{width - 4}" y2="{top}"></line>',
        f'<line class="grid" x1="{left}" y1="{top + plot_h}" x2="{width - 4}" y2="{top + plot_h}"></line>',
        f'<text x="{left - 6}" y="{top + 4}" text-anchor="end">{peak}</text>',
        f'<text x="{left - 6}" y="{top + plot_h + 4}" text-anchor="end">0</text>',
    ]
    base = top + plot_h
    for i, p in enumerate(points):
        x = left + i * slot + (slot - group) / 2
        label = (
            f"Run {p.run_id} ({fmt.when(p.started_at)}, {p.state}): {p.broken} broken, "
            f"{p.warnings} warnings, {p.image_problems} image problems of {p.checked} checked"
        )
        parts.append(f'<g class="run" data-run="{p.run_id}"><title>{esc(label)}</title>')
        for k, ((cls, _name), value) in enumerate(zip(SERIES, _values(p), strict=True)):
            h = plot_h * value / peak
            parts.append(_rect(cls, x + k * bar, base - h, bar, h))
        if p.run_id == current:
            parts.append(_rect("current", x - 2, top - 2, group + 4, plot_h + 4))
        if i % every == 0 or p.run_id == current:
            parts.append(
                f'<text x="{x + group / 2:.1f}" y="{height - 10}" text-anchor="middle">{p.run_id}</text>'
            )
        parts.append("</g>")
    parts.append("</svg>")
    return "".join(parts)


def _values(point: TrendPoint) -> tuple[int, int, int]:
    return point.broken, point.warnings, point.image_problems


def _rect(cls: str, x: float, y: float, width: float, height: float) -> str:
    return f'<rect class="{cls}" x="{x:.1f}" y="{y:.1f}" width="{width:.1f}" height="{height:.1f}"></rect>'


# one renderer per registered section (reports.sections)
SECTION_RENDERERS: dict[str, Callable[[ReportData], str]] = {
    "summary": _summary,
    "broken": _broken,
    "images": _images,
    "moved": _moved,
    "changes": _changes,
    "blocked": _blocked,
    "acknowledged": _acknowledged,
    "findings": _findings,
    "corpus_errors": _corpus_errors,
    "trend": _trend,
}
