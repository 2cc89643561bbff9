"""The editor-facing Markdown report: what to fix, article by article.

Untrusted text (titles, paths, URLs, reasons) is made inert and every character
Markdown or HTML would act on is backslash-escaped; only http(s) URLs without
``<``, ``>`` or spaces become autolinks, so nothing from an article turns into markup.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence

from monitor.textsafe import inert
from reports import fmt
from reports.model import HostGroup, ReportData, UrlItem, UrlList
from reports.sections import TITLES

_SPECIAL = re.compile(r"([\\`*_\[\]<>|~&!])")
_NOT_IN_AUTOLINK = re.compile(r"[\s<>\x00-\x1f\x7f]")


def md(value: object) -> str:
    """Plain text for a table cell or a heading: inert, escaped, on one line."""
    text = inert("" if value is None else str(value)).replace("\n", " ")
    return _SPECIAL.sub(r"\\\1", text)


def link(url: str | None) -> str:
    """An autolink for a safe http(s) URL, escaped text otherwise."""
    if not url:
        return ""
    if fmt.is_web_url(url) and not _NOT_IN_AUTOLINK.search(url):
        return "<" + url.replace("|", "%7C") + ">"
    return md(url)


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], numeric: Sequence[int] = ()) -> list[str]:
    align = ["---:" if i in numeric else "---" for i in range(len(headers))]
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return [*lines, ""]


def render_markdown(data: ReportData) -> str:
    out: list[str] = _header(data)
    for section in data.sections:
        out += SECTION_RENDERERS[section](data)
    return "\n".join(out).rstrip() + "\n"


def _header(data: ReportData) -> list[str]:
    run = data.run
    lines = [
        f"# Link and media report: run {run.id}",
        "",
        f"- **Run:** {run.id} ({md(run.state)}, trigger {md(run.trigger)})",
        f"- **Started:** {fmt.when(run.started_at)}; **finished:** {fmt.when(run.finished_at) or 'not yet'}; "
        f"**duration:** {fmt.duration(run.duration_seconds)}",
        f"- **Compared with:** {f'run {run.previous_run_id}' if run.previous_run_id else 'no earlier run'}",
        f"- **Generated:** {fmt.when(data.generated_at)}",
    ]
    if run.error:
        lines.append(f"- **Run error:** {md(run.error)}")
    return [*lines, ""]


def _summary(data: ReportData) -> list[str]:
    s = data.summary
    if s is None:
        return []
    out = ["## Summary", ""]
    out += table(
        ["Checked", "Errors", "Warnings", "Articles", "Occurrences", "Findings", "Corpus errors"],
        [
            [
                str(v)
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
    out += ["### Verdicts", ""]
    out += table(["Verdict", "URLs"], [[md(v), str(n)] for v, n in s.verdicts], numeric=[1])
    out += ["### Roles", ""]
    out += table(
        ["Role", "URLs", "Errors", "Warnings"],
        [[md(c.name), str(c.urls), str(c.errors), str(c.warnings)] for c in s.roles],
        numeric=[1, 2, 3],
    )
    out += [f"### Hosts (top {len(s.hosts)} of {s.hosts_total})", ""]
    out += table(
        ["Host", "URLs", "Errors", "Warnings"],
        [[md(c.name), str(c.urls), str(c.errors), str(c.warnings)] for c in s.hosts],
        numeric=[1, 2, 3],
    )
    return out


def _hosts(groups: Sequence[HostGroup], omitted: int) -> list[str]:
    out = ["### By host", ""]
    out += table(
        ["Host", "URLs", "Errors", "Warnings", "Articles", "Occurrences", "Verdicts"],
        [
            [
                *(md(g.host), str(g.urls), str(g.errors), str(g.warnings), str(g.articles)),
                *(str(g.occurrences), md(fmt.verdict_counts(g.verdicts))),
            ]
            for g in groups
        ],
        numeric=[1, 2, 3, 4, 5],
    )
    return out + ([fmt.more(omitted, "hosts"), ""] if omitted else [])


BY_ARTICLE_HEADERS = ["Location", "Role", "URL", "Verdict", "Severity", "Reason", "HTTP"]
BY_ARTICLE_HEADERS += ["Failing since", "Runs", "What to do"]


def _by_article(urls: UrlList) -> list[str]:
    out = ["### By article", ""]
    for group in urls.by_article():
        title = f": {md(group.title)}" if group.title else ""
        out += [f"#### {md(group.article)}{title}", ""]
        out += table(
            BY_ARTICLE_HEADERS,
            [
                [
                    *(md(occ.location), md(occ.role), link(item.url), md(item.verdict), md(item.severity)),
                    *(md(item.reason), fmt.status(item), fmt.since(item), str(item.consecutive_failures)),
                    todo(item),
                ]
                for occ, item in group.entries
            ],
        )
    return out + _omitted(urls) + _unplaced(urls)


def todo(item: UrlItem) -> str:
    """The "What to do" cell: the hint, then the archived copy (``fmt.archived``) with its URL as a link."""
    copy = item.archived
    if copy is None:
        return md(fmt.hint(item.verdict))
    suggestion = f"archived copy: {link(copy.url)} ({md(copy.captured)})"
    return "; ".join(part for part in (md(fmt.hint(item.verdict)), suggestion) if part)


def _omitted(urls: UrlList) -> list[str]:
    return [fmt.more(urls.omitted, "URLs"), ""] if urls.omitted else []


def _unplaced(urls: UrlList) -> list[str]:
    """URLs no article carries any more still deserve a line."""
    lonely = [item for item in urls.urls if not item.occurrences]
    if not lonely:
        return []
    out = ["URLs not found in any article now:", ""]
    return out + [f"- {link(item.url)}: {md(item.verdict)}, {md(item.reason)}" for item in lonely] + [""]


def _places(item: UrlItem) -> str:
    shown = "; ".join(f"{md(o.article)} {md(o.location)}" for o in item.occurrences)
    return shown + (f"; and {item.occurrences_omitted} more" if item.occurrences_omitted else "")


def _url_table(urls: UrlList, *, final: bool = False, previous: bool = False) -> list[str]:
    headers = ["URL", "Verdict", "Severity", "Reason", "HTTP"]
    headers += ["Final URL"] if final else []
    headers += ["Previous", "Failing since", "Runs"] if previous else []
    rows = []
    for item in urls.urls:
        row = [link(item.url), md(item.verdict), md(item.severity), md(item.reason), fmt.status(item)]
        row += [link(item.final_url)] if final else []
        row += (
            [md(item.previous_verdict or ""), fmt.since(item), str(item.consecutive_failures)]
            if previous
            else []
        )
        rows.append([*row, _places(item), todo(item)])
    return table([*headers, "Where", "What to do"], rows) + _omitted(urls)


def _broken(data: ReportData) -> list[str]:
    urls = data.broken
    if urls is None:
        return []
    out = [f"## {TITLES['broken']} ({urls.total})", ""]
    if not urls.total:
        return [*out, "No broken links.", ""]
    return out + _hosts(urls.by_host, urls.hosts_omitted) + _by_article(urls)


def _images(data: ReportData) -> list[str]:
    images = data.images
    if images is None:
        return []
    out = [f"## {TITLES['images']}", ""]
    for key, title, urls in fmt.image_lists(images):
        out += [f"### {title} ({urls.total})", ""]
        if not urls.total:
            out += ["None.", ""]
        elif key in ("size_mismatch", "scaled"):
            out += _sizes(urls)
        else:
            out += _url_table(urls)
    return out


def _sizes(urls: UrlList) -> list[str]:
    """Image places with their declared and real size (the size lists, newly mismatched images)."""
    rows = [
        [
            *(md(o.article), md(o.location), link(item.url), fmt.dims(o.declared), fmt.dims(o.actual)),
            md(fmt.hint(item.verdict, o.size_check, o.actual)),
        ]
        for item in urls.urls
        for o in item.occurrences
    ]
    headers = ["Article", "Location", "URL", "Declared", "Actual", "What to do"]
    return table(headers, rows) + _omitted(urls)


def _moved(data: ReportData) -> list[str]:
    urls = data.moved
    if urls is None:
        return []
    out = [f"## {TITLES['moved']} ({urls.total})", ""]
    if not urls.total:
        return [*out, "No permanently moved links.", ""]
    return [*out, "Update these links to their final URL.", "", *_url_table(urls, final=True)]


def _changes(data: ReportData) -> list[str]:
    changes = data.changes
    if changes is None:
        return []
    against = f"run {changes.previous_run_id}" if changes.previous_run_id else "no earlier run"
    out = [f"## {TITLES['changes']} (compared with {against})", ""]
    for key, title, urls in fmt.change_lists(changes):
        out += [f"### {title} ({urls.total})", ""]
        if not urls.total:
            out += ["None.", ""]
        elif key == "newly_mismatched":
            out += _sizes(urls)
        else:
            out += _url_table(urls, previous=True)
    return out


def _blocked(data: ReportData) -> list[str]:
    urls = data.blocked
    if urls is None:
        return []
    out = [f"## {TITLES['blocked']} ({urls.total})", ""]
    if not urls.total:
        return [*out, "None.", ""]
    out += ["These may work in a browser; they are kept apart from broken links.", ""]
    return out + _hosts(urls.by_host, urls.hosts_omitted) + ["### URLs", "", *_url_table(urls)]


def _acknowledged(data: ReportData) -> list[str]:
    urls = data.acknowledged
    if urls is None:
        return []
    out = [f"## {TITLES['acknowledged']} ({urls.total})", ""]
    if not urls.total:
        return [*out, "None.", ""]
    out += ["Accepted breakage (`monitor ack`): still checked, not counted as errors, never alerted.", ""]
    rows = [
        [
            link(item.url),
            md(item.verdict),
            md(item.reason),
            md(fmt.ack(item.ack)),
            fmt.since(item),
            _places(item),
        ]
        for item in urls.urls
    ]
    return (
        out
        + table(["URL", "Verdict", "Reason", "Acknowledged", "Failing since", "Where"], rows)
        + _omitted(urls)
    )


def _findings(data: ReportData) -> list[str]:
    findings = data.findings
    if findings is None:
        return []
    out = [f"## {TITLES['findings']} ({findings.total})", ""]
    if not findings.total:
        return [*out, "No findings.", ""]
    out += [f"{md(fmt.verdict_counts(findings.counts))}", ""]
    out += table(
        ["Kind", "Article", "Location", "Message", "Value", "Expected"],
        [
            [
                md(f.kind),
                md(f.article),
                md(f.location),
                md(f.message),
                link(f.value),
                link(f.expected),
            ]
            for f in findings.items
        ],
    )
    return out + ([fmt.more(findings.omitted, "findings"), ""] if findings.omitted else [])


def _corpus_errors(data: ReportData) -> list[str]:
    errors = data.corpus_errors
    if errors is None:
        return []
    out = [f"## {TITLES['corpus_errors']} ({errors.total})", ""]
    if not errors.total:
        return [*out, "Every file could be read.", ""]
    out += table(
        ["File", "Kind", "Line", "Column", "Message", "First seen"],
        [
            [
                md(e.path),
                md(e.kind),
                md(e.line or ""),
                md(e.column or ""),
                md(e.message),
                fmt.when(e.first_seen),
            ]
            for e in errors.items
        ],
    )
    return out + ([fmt.more(errors.omitted, "files"), ""] if errors.omitted else [])


def _trend(data: ReportData) -> list[str]:
    if data.trend is None:
        return []
    out = [f"## {TITLES['trend']} (last {len(data.trend)} runs)", ""]
    return out + table(
        ["Run", "Started", "State", "Checked", "Errors", "Warnings"],
        [
            [
                str(t.run_id),
                fmt.when(t.started_at),
                md(t.state),
                str(t.checked),
                str(t.errors),
                str(t.warnings),
            ]
            for t in data.trend
        ],
        numeric=[0, 3, 4, 5],
    )


# one renderer per registered section (reports.sections)
SECTION_RENDERERS: dict[str, Callable[[ReportData], list[str]]] = {
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
