"""The ``monitor`` command line: one module per command group, thin over run, reports and jobs.

This is the top of the house: it may import every layer, and defers heavy imports into
command bodies so that ``monitor --help`` stays quick.
"""

from __future__ import annotations

import sys

import typer

from monitor.cli import check, db, export, fix, history, jobs, links, report, runs, triage  # noqa: F401  (registers commands)
from monitor.cli.app import app

__all__ = ["app", "main"]


def main() -> None:
    """Console-script entry point: usage errors exit 1 (click's default, 2, means "problems found" here)."""
    try:
        code = app(standalone_mode=False)
    except typer.TyperException as exc:  # click's usage errors (typer bundles click)
        show = getattr(exc, "show", None)
        if show is not None:
            show()
        sys.exit(0 if type(exc).__name__ == "NoArgsIsHelpError" else 1)
    except typer.Abort:
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
