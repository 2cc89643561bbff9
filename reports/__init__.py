"""Reports: one aggregate (``data.build_report``) and one renderer per format.

Every renderer is a pure function ``ReportData -> str``; ``write_reports`` saves several
formats of one report next to each other under the configured file pattern.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from reports.as_csv import render_csv
from reports.as_html import render_html
from reports.as_json import render_json
from reports.as_markdown import render_markdown
from reports.as_table import render_table
from reports.data import SECTIONS, ReportData, ReportError, build_report

__all__ = [
    "EXTENSIONS",
    "FORMATS",
    "SECTIONS",
    "ReportData",
    "ReportError",
    "build_report",
    "render",
    "write_reports",
]

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


def write_reports(
    data: ReportData, folder: str | Path, formats: Sequence[str], pattern: str = "report-{run_id}-{date}"
) -> list[Path]:
    """Write each format to ``folder/pattern.ext`` atomically (a reader never sees half a file).

    ``pattern`` may use ``{run_id}`` and ``{date}`` (the run's start day, UTC, YYYY-MM-DD).
    """
    base = pattern.format(run_id=data.run.id, date=data.run.started_at.strftime("%Y-%m-%d"))
    if not base or Path(base).name != base:
        raise ReportError(f"report file pattern {pattern!r} must give a plain file name, got {base!r}")
    target = Path(folder)
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for fmt in formats:
        text = render(data, fmt)
        path = target / f"{base}{EXTENSIONS[fmt]}"
        fd, tmp = tempfile.mkstemp(dir=target, prefix=f".{base}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
                fh.write(text)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        written.append(path)
    return written
