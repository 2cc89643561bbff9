"""Reports: one aggregate (``data.build_report``) of the sections ``sections`` registers, one
renderer per format, and report files.

Reports read the store and nothing downstream: the jobs and the distributed finalizer
call ``files`` to write a run's report files, never the other way round.
"""

from __future__ import annotations

from reports.data import build_report
from reports.files import write_pending_reports, write_reports, write_run_reports
from reports.model import ReportData, ReportError
from reports.render import EXTENSIONS, FORMATS, render
from reports.sections import SECTIONS

__all__ = [
    "EXTENSIONS",
    "FORMATS",
    "SECTIONS",
    "ReportData",
    "ReportError",
    "build_report",
    "render",
    "write_pending_reports",
    "write_reports",
    "write_run_reports",
]
