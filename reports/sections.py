"""The report's sections, named once: their order, titles and which ones `monitor check` prints.

Everything that names sections derives from REGISTRY: the names ``build_report`` accepts
and its error for others, the titles every renderer prints, the `--section` help of
`monitor report` and the sections `monitor check` shows. Each renderer maps every
registered name to its code (the tests hold them to exactly these names).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from reports.model import ReportError


@dataclass(frozen=True, slots=True)
class Section:
    """One report section: its name (a ReportData field), its heading, and whether `check` shows it."""

    name: str
    title: str
    in_check: bool


REGISTRY: tuple[Section, ...] = (
    Section("summary", "Summary", in_check=True),
    Section("broken", "Broken links", in_check=True),
    Section("images", "Images", in_check=True),
    Section("moved", "Moved permanently", in_check=True),
    # a check prints its own run's problems; the comparison with history is for `monitor report`
    Section("changes", "Changes since the previous run", in_check=False),
    Section("blocked", "Blocked, rate-limited and timed out", in_check=True),
    Section("acknowledged", "Acknowledged", in_check=True),
    Section("findings", "Findings", in_check=True),
    Section("corpus_errors", "Corpus errors", in_check=True),
    Section("trend", "Trend", in_check=False),
)
SECTIONS: tuple[str, ...] = tuple(s.name for s in REGISTRY)
TITLES: dict[str, str] = {s.name: s.title for s in REGISTRY}
CHECK_SECTIONS: tuple[str, ...] = tuple(s.name for s in REGISTRY if s.in_check)
NAMES_TEXT = ", ".join(SECTIONS)  # for help texts and error messages


def choose(names: Sequence[str] | None) -> tuple[str, ...]:
    """The asked-for sections in report order (None: all); an unknown name is a ReportError."""
    if names is None:
        return SECTIONS
    unknown = sorted(set(names) - set(SECTIONS))
    if unknown:
        raise ReportError(f"unknown report section(s) {', '.join(unknown)}; choose from {NAMES_TEXT}")
    return tuple(s for s in SECTIONS if s in names)
