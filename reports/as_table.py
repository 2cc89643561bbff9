"""The terminal report: rich tables, one per list, each cut at MAX_ROWS rows.

Every value from the database goes in as a ``rich.text.Text`` of ``inert(...)``: no rich
markup, emoji code or terminal escape sequence from an article can reach the terminal.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Sequence

from rich import box
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from monitor.textsafe import inert
from reports import fmt
from reports.model import HostGroup, ReportData, UrlItem, UrlList
from reports.sections import TITLES

_STYLE = {"error": "red", "warning": "yellow"}
_URL_WIDTH = 30  # URLs are what the reader acts on: wrap other columns first
MAX_ROWS = 200  # per table: a terminal is for a glance, the file formats are for the full lists
_NO_WRAP = frozenset({"Verdict", "Severity", "HTTP", "Runs", "Kind"})


def render_table(data: ReportData, *, width: int = 120, color: bool = False) -> str:
    """The report as text; ``color`` adds ANSI styles (for a terminal)."""
    buffer = io.StringIO()
    console = Console(
        file=buffer,
        width=width,
        force_terminal=color,
        color_system="standard" if color else None,
        no_color=not color,
        highlight=False,
        emoji=False,
        markup=False,
        legacy_windows=False,
    )
    print_report(data, console)
    return buffer.getvalue()


def print_report(data: ReportData, console: Console) -> None:
    """Print straight to a console (the CLI passes its own, coloured on a terminal)."""
    for part in renderables(data):
        console.print(part)


def t(value: object, style: str = "") -> Text:
    """Untrusted text, made inert, as a literal rich Text (never parsed as markup)."""
    return Text(inert("" if value is None else str(value)), style=style)


def _table(
    title: str, headers: Sequence[str], rows: Iterable[Sequence[Text]], numeric: Sequence[int] = ()
) -> RenderableType:
    """A table of at most MAX_ROWS rows, with a line saying how many more the file formats hold."""
    listed = list(rows)
    table = Table(title=Text(title, style="bold"), title_justify="left", box=box.SIMPLE_HEAD, expand=False)
    for i, header in enumerate(headers):
        table.add_column(
            header,
            justify="right" if i in numeric else "left",
            overflow="fold",
            min_width=_URL_WIDTH if "URL" in header else None,
            no_wrap=header in _NO_WRAP,
        )
    for row in listed[:MAX_ROWS]:
        table.add_row(*row)
    if len(listed) <= MAX_ROWS:
        return table
    more = f"{len(listed) - MAX_ROWS} more rows not shown here; the html, csv and json reports list them all."
    return Group(table, Text(more, style="dim"))


def _sev(severity: str) -> Text:
    return t(severity, _STYLE.get(severity, ""))


def _verdict(verdict: str, severity: str) -> Text:
    """The verdict coloured by its severity (saves a column on narrow terminals)."""
    return t(verdict, _STYLE.get(severity, ""))


def _article(path: str, title: str | None) -> Text:
    cell = t(path)
    if title:
        cell.append("\n")
        cell.append(inert(title), style="dim")
    return cell


def renderables(data: ReportData) -> list[RenderableType]:
    run = data.run
    head = Text.assemble(
        (f"Link and media report: run {run.id}", "bold"),
        f" ({inert(run.state)}, trigger {inert(run.trigger)})\n",
        f"started {fmt.when(run.started_at)}, finished {fmt.when(run.finished_at) or 'not yet'}, "
        f"duration {fmt.duration(run.duration_seconds)}; "
        f"{f'compared with run {run.previous_run_id}' if run.previous_run_id else 'no earlier run'}",
    )
    if run.error:
        head.append("\nrun error: ")
        head.append(inert(run.error), style="red")
    parts: list[RenderableType] = [head]
    for section in data.sections:
        parts += SECTION_RENDERERS[section](data)
    return parts


def _more(omitted: int, what: str) -> list[RenderableType]:
    return [Text(fmt.more(omitted, what), style="dim")] if omitted else []


def _summary(data: ReportData) -> list[RenderableType]:
    s = data.summary
    if s is None:
        return []
    numbers = _table(
        "Summary",
        ["Checked", "Errors", "Warnings", "Articles", "Occurrences", "Findings", "Corpus errors"],
        [
            [
                t(v)
                for v in (
                    s.checked,
                    s.errors,
                    s.warnings,
                    s.articles,
                    s.occurrences,
                    s.findings,
                    s.corpus_errors,
                )
            ]
        ],
        numeric=range(7),
    )
    verdicts = _table("Verdicts", ["Verdict", "URLs"], [[t(v), t(n)] for v, n in s.verdicts], numeric=[1])
    roles = _table(
        "Roles",
        ["Role", "URLs", "Errors", "Warnings"],
        [[t(c.name), t(c.urls), t(c.errors), t(c.warnings)] for c in s.roles],
        numeric=[1, 2, 3],
    )
    hosts = _table(
        f"Hosts (top {len(s.hosts)} of {s.hosts_total})",
        ["Host", "URLs", "Errors", "Warnings"],
        [[t(c.name), t(c.urls), t(c.errors), t(c.warnings)] for c in s.hosts],
        numeric=[1, 2, 3],
    )
    return [numbers, verdicts, roles, hosts]


def _hosts(title: str, groups: Sequence[HostGroup], omitted: int) -> list[RenderableType]:
    table = _table(
        title,
        ["Host", "URLs", "Errors", "Warnings", "Articles", "Occurrences", "Verdicts"],
        [
            [
                *(t(g.host), t(g.urls), t(g.errors), t(g.warnings), t(g.articles), t(g.occurrences)),
                t(fmt.verdict_counts(g.verdicts)),
            ]
            for g in groups
        ],
        numeric=[1, 2, 3, 4, 5],
    )
    return [table, *_more(omitted, "hosts")]


def _broken(data: ReportData) -> list[RenderableType]:
    urls = data.broken
    if urls is None:
        return []
    title = f"{TITLES['broken']} ({urls.total})"
    if not urls.total:
        return [Text(f"{title}: none", style="bold")]
    rows = [
        [
            *(_article(group.article, group.title), t(occ.location), t(item.url)),
            *(_verdict(item.verdict, item.severity), _reason(item), t(fmt.status(item))),
            t(fmt.day(item.failing_since)),
        ]
        for group in urls.by_article()
        for occ, item in group.entries
    ]
    headers = ["Article", "Location", "URL", "Verdict", "Reason", "HTTP", "Failing since"]
    articles = _table(f"{title} by article", headers, rows, numeric=[5])
    return [
        *_hosts(f"{title} by host", urls.by_host, urls.hosts_omitted),
        articles,
        *_more(urls.omitted, "URLs"),
    ]


def _reason(item: UrlItem) -> Text:
    """The reason, and under it the archived copy of a dead page (``fmt.archived``) when there is one."""
    copy = fmt.archived(item.archived)
    return t(f"{item.reason}\n{copy}" if copy else item.reason)


def _url_rows(urls: UrlList, *, final: bool = False, previous: bool = False) -> list[list[Text]]:
    rows = []
    for item in urls.urls:
        where = "; ".join(f"{o.article} {o.location}" for o in item.occurrences)
        if item.occurrences_omitted:
            where += f"; and {item.occurrences_omitted} more"
        row = [t(item.url), t(item.verdict), _sev(item.severity), _reason(item), t(fmt.status(item))]
        row += [t(item.final_url)] if final else []
        row += [t(item.previous_verdict), t(fmt.since(item))] if previous else []
        rows.append([*row, t(where)])
    return rows


def _url_table(
    title: str, urls: UrlList, *, final: bool = False, previous: bool = False
) -> list[RenderableType]:
    headers = ["URL", "Verdict", "Severity", "Reason", "HTTP"]
    headers += ["Final URL"] if final else []
    headers += ["Previous", "Failing since"] if previous else []
    rows = _url_rows(urls, final=final, previous=previous)
    return [_table(f"{title} ({urls.total})", [*headers, "Where"], rows), *_more(urls.omitted, "URLs")]


def _images(data: ReportData) -> list[RenderableType]:
    if data.images is None:
        return []
    parts: list[RenderableType] = []
    for key, title, urls in fmt.image_lists(data.images):
        if key in ("size_mismatch", "scaled"):
            parts += _sizes(title, urls)
        else:
            parts += _url_table(title, urls)
    return parts


def _sizes(title: str, urls: UrlList) -> list[RenderableType]:
    rows = [
        [t(o.article), t(o.location), t(item.url), t(fmt.dims(o.declared)), t(fmt.dims(o.actual))]
        for item in urls.urls
        for o in item.occurrences
    ]
    headers = ["Article", "Location", "URL", "Declared", "Actual"]
    return [_table(f"{title} ({urls.total})", headers, rows), *_more(urls.omitted, "URLs")]


def _moved(data: ReportData) -> list[RenderableType]:
    return [] if data.moved is None else _url_table(TITLES["moved"], data.moved, final=True)


def _blocked(data: ReportData) -> list[RenderableType]:
    urls = data.blocked
    if urls is None:
        return []
    title = TITLES["blocked"]
    return _hosts(f"{title} by host", urls.by_host, urls.hosts_omitted) + _url_table(title, urls)


def _changes(data: ReportData) -> list[RenderableType]:
    if data.changes is None:
        return []
    parts: list[RenderableType] = []
    for key, title, urls in fmt.change_lists(data.changes):
        parts += _sizes(title, urls) if key == "newly_mismatched" else _url_table(title, urls, previous=True)
    return parts


def _acknowledged(data: ReportData) -> list[RenderableType]:
    urls = data.acknowledged
    if urls is None:
        return []
    rows = [
        [t(item.url), t(item.verdict), t(item.reason), t(fmt.ack(item.ack)), t(fmt.since(item))]
        for item in urls.urls
    ]
    headers = ["URL", "Verdict", "Reason", "Acknowledged", "Failing since"]
    return [_table(f"{TITLES['acknowledged']} ({urls.total})", headers, rows), *_more(urls.omitted, "URLs")]


def _findings(data: ReportData) -> list[RenderableType]:
    f = data.findings
    if f is None:
        return []
    rows = [
        [t(i.kind), t(i.article), t(i.location), t(i.message), t(i.value), t(i.expected)] for i in f.items
    ]
    headers = ["Kind", "Article", "Location", "Message", "Value", "Expected"]
    return [
        _table(f"{TITLES['findings']} ({f.total})", headers, rows),
        *_more(f.omitted, "findings"),
    ]


def _corpus_errors(data: ReportData) -> list[RenderableType]:
    e = data.corpus_errors
    if e is None:
        return []
    rows = [
        [t(i.path), t(i.kind), t(f"{i.line}:{i.column}" if i.line is not None else ""), t(i.message)]
        for i in e.items
    ]
    table = _table(f"{TITLES['corpus_errors']} ({e.total})", ["File", "Kind", "Where", "Message"], rows)
    return [table, *_more(e.omitted, "files")]


def _trend(data: ReportData) -> list[RenderableType]:
    if data.trend is None:
        return []
    peak = max((p.problems for p in data.trend), default=0) or 1
    rows = [
        [
            *(t(p.run_id), t(fmt.when(p.started_at)), t(p.state), t(p.checked), t(p.errors), t(p.warnings)),
            Text("█" * round(20 * p.problems / peak), style="red"),
        ]
        for p in data.trend
    ]
    headers = ["Run", "Started", "State", "Checked", "Errors", "Warnings", "Problems"]
    return [_table(TITLES["trend"], headers, rows, numeric=[0, 3, 4, 5])]


# one renderer per registered section (reports.sections)
SECTION_RENDERERS: dict[str, Callable[[ReportData], list[RenderableType]]] = {
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
