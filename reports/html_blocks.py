"""The HTML building blocks the report's sections are made of: escaped text, links, sortable tables.

``as_html`` lays out the page and its sections from these. Every value from the database
goes through ``esc`` (after ``inert``), and only http(s) URLs become links.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Sequence

from monitor.textsafe import inert
from monitor.types import Size
from reports import fmt
from reports.model import HostGroup, UrlItem, UrlList
from reports.sections import TITLES

Roots = tuple[str, ...] | None  # the run's corpus roots (article paths are shown relative to them)
Cell = str | tuple[str, str]  # cell HTML, or (cell HTML, sort key)
_UNLINKABLE = re.compile(r"[\s\x00-\x1f\x7f]")
_NUM = ' class="num"'
_BREAK_AFTER = re.compile(r"/+|\?|&amp;")  # in escaped text: "//" stays together, "&" is "&amp;"


def esc(value: object) -> str:
    """Untrusted text as inert, escaped HTML (safe in element content and quoted attributes)."""
    return html.escape(inert("" if value is None else str(value)), quote=True)


def link(url: str | None) -> str:
    """A link for an http(s) URL, plain text for anything else; both break only after ``/ ? &``."""
    if not url:
        return ""
    if fmt.is_web_url(url) and not _UNLINKABLE.search(url):
        href = html.escape(url, quote=True)
        return f'<a class="url" href="{href}" rel="noopener noreferrer" target="_blank">{breakable(url)}</a>'
    return f'<span class="url nolink">{breakable(url)}</span>'


def breakable(url: str) -> str:
    """The escaped URL with a ``<wbr>`` after each ``/``, ``?`` and ``&``, the only places it may wrap.

    Breaking anywhere let a table squeeze a URL column to a few letters a line; the CSS keeps
    ``word-break: normal`` so the path segments themselves stay whole.
    """
    return _BREAK_AFTER.sub(lambda m: m.group(0) + "<wbr>", esc(url))


def table(
    table_id: str,
    label: str,
    headers: Sequence[str],
    rows: Iterable[Sequence[Cell]],
    numeric: Sequence[int] = (),
    short: Sequence[int] = (),
) -> str:
    """A sortable, filterable table; ``short`` columns hold one short word (no minimum width)."""
    head = "".join(
        f'<th scope="col"{_NUM if i in numeric else ""}>{html.escape(h)}</th>' for i, h in enumerate(headers)
    )
    body = []
    for row in rows:
        cells = []
        for i, cell in enumerate(row):
            content, key = cell if isinstance(cell, tuple) else (cell, None)
            attrs = _NUM if i in numeric else ' class="short"' if i in short else ""
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


def num(value: int | None) -> Cell:
    return ("", "") if value is None else (str(value), str(value))


def sev(severity: str) -> str:
    return f'<span class="sev-{esc(severity)}">{esc(severity)}</span>'


def since(item: UrlItem) -> Cell:
    return (fmt.when(item.failing_since), item.failing_since.isoformat() if item.failing_since else "")


def article(path: str, title: str | None, roots: Roots) -> Cell:
    """The article's path relative to the run's root (the full path in the tooltip) and its title."""
    shown = fmt.relative(path, roots)
    tip = f' title="{esc(path)}"' if shown != path else ""
    cell = f'<span class="path"{tip}>{esc(shown)}</span>'
    return (cell + (f'<span class="title">{esc(title)}</span>' if title else ""), path)


def _hint(text: str) -> str:
    return f'<span class="hint">{esc(text)}</span>' if text else ""


def _archived(item: UrlItem) -> str:
    """A dead page's archived copy (``fmt.archived``), its URL a link."""
    copy = item.archived
    if copy is None:
        return ""
    return f'<span class="archived">archived copy: {link(copy.url)} ({esc(copy.captured)})</span>'


def hint_cell(verdict: str, size_check: str | None, actual: Size | None) -> str:
    """The "What to do" cell of an image place (its size check decides)."""
    return _hint(fmt.hint(verdict, size_check, actual))


def more_note(omitted: int, what: str) -> str:
    return f'<p class="note">{html.escape(fmt.more(omitted, what))}</p>' if omitted else ""


def _occurrence_rows(urls: UrlList, tail: Sequence[str], roots: Roots) -> list[list[Cell]]:
    """One row per occurrence (a URL without one gets a row of its own) with the ``tail`` columns."""
    rows: list[list[Cell]] = []
    for item in urls.urls:
        extra = [url_cell(item, column) for column in tail]
        places = item.occurrences or (None,)
        for occ in places:
            where: list[Cell] = ["", "", ""]
            if occ:
                where = [article(occ.article, occ.title, roots), esc(occ.location), esc(occ.role)]
            rows.append([*where, link(item.url), *extra])
    return rows


def url_cell(item: UrlItem, column: str) -> Cell:
    match column:
        case "Verdict":
            return esc(item.verdict)
        case "Severity":
            return sev(item.severity)
        case "Reason":
            return esc(item.reason)
        case "HTTP":
            return num(item.http_status)
        case "Final URL":
            return link(item.final_url)
        case "Redirects":
            return num(len(item.redirects))
        case "Content type":
            return esc(item.content_type)
        case "Failing since":
            return since(item)
        case "Runs":
            return num(item.consecutive_failures)
        case "Previous":
            return esc(item.previous_verdict)
        case "Acknowledged":
            return esc(fmt.ack(item.ack))
        case "What to do":
            return _hint(fmt.hint(item.verdict)) + _archived(item)
    raise ValueError(f"unknown column {column!r}")


def url_table(table_id: str, label: str, urls: UrlList, tail: Sequence[str], roots: Roots) -> str:
    headers = ["Article", "Location", "Role", "URL", *tail]
    numeric = [4 + i for i, c in enumerate(tail) if c in ("HTTP", "Runs", "Redirects")]
    short = [2, *(4 + i for i, c in enumerate(tail) if c == "Severity")]
    rows = _occurrence_rows(urls, tail, roots)
    return table(table_id, label, headers, rows, numeric, short) + more_note(urls.omitted, "URLs")


def host_table(table_id: str, label: str, groups: Sequence[HostGroup], omitted: int) -> str:
    rows = [
        [
            *(esc(g.host), num(g.urls), num(g.errors), num(g.warnings)),
            *(num(g.articles), num(g.occurrences), esc(fmt.verdict_counts(g.verdicts))),
        ]
        for g in groups
    ]
    headers = ["Host", "URLs", "Errors", "Warnings", "Articles", "Occurrences", "Verdicts"]
    return table(table_id, label, headers, rows, [1, 2, 3, 4, 5]) + more_note(omitted, "hosts")


def section(name: str, count: int | None, body: str) -> str:
    title = html.escape(TITLES[name]) + (f" ({count})" if count is not None else "")
    return f'<section id="{name}"><h2>{title}</h2>\n{body}\n</section>'
