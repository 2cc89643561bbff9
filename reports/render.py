"""Format name → renderer: every renderer is a pure function ``ReportData -> str``."""

from __future__ import annotations

from collections.abc import Callable

from reports.as_csv import render_csv
from reports.as_html import render_html
from reports.as_json import render_json
from reports.as_markdown import render_markdown
from reports.as_table import render_table
from reports.model import ReportData, ReportError

FORMATS: dict[str, Callable[[ReportData], str]] = {
    "table": render_table,
    "markdown": render_markdown,
    "csv": render_csv,
    "json": render_json,
    "html": render_html,
}
EXTENSIONS: dict[str, str] = {
    "table": ".txt",
    "markdown": ".md",
    "csv": ".csv",
    "json": ".json",
    "html": ".html",
}


def render(data: ReportData, fmt: str) -> str:
    """``data`` in format ``fmt`` (one of FORMATS)."""
    try:
        renderer = FORMATS[fmt]
    except KeyError:
        raise ReportError(f"unknown report format {fmt!r}; choose from {', '.join(FORMATS)}") from None
    return renderer(data)
