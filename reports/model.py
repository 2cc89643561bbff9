"""The report's values: what one run showed, as plain frozen dataclasses that renderers format.

The query modules (``queries_urls``, ``queries_counts``) fill them and ``data.build_report``
assembles them into a ReportData; renderers only read them, so no renderer touches SQL.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from monitor.types import ArchiveSnapshot, Size


class ReportError(Exception):
    """The report cannot be built as asked (no run yet, unknown run id or section)."""


@dataclass(frozen=True, slots=True)
class Redirect:
    url: str
    status: int | None
    location: str | None


@dataclass(frozen=True, slots=True)
class OccurrenceItem:
    """Where a URL is written, plus this run's size check of that place (images only)."""

    article: str
    title: str | None
    location: str
    role: str
    declared: Size | None
    size_check: str | None
    actual: Size | None


@dataclass(frozen=True, slots=True)
class AckInfo:
    """An editor's acknowledgement of a failing URL (``monitor ack``): why, who, when, until when."""

    reason: str
    by: str
    at: datetime
    until: datetime | None


@dataclass(frozen=True, slots=True)
class UrlItem:
    """One URL with this run's facts and verdict, its failure history and where it is used."""

    url: str
    host: str
    verdict: str
    severity: str
    reason: str
    checked_at: datetime | None
    http_status: int | None
    final_url: str | None
    redirects: tuple[Redirect, ...]
    attempts: int
    elapsed_ms: int
    content_type: str | None
    bytes_read: int
    image_format: str | None
    image_size: Size | None
    not_modified: bool
    failure: str | None
    failing_since: datetime | None
    consecutive_failures: int
    alert_state: str
    previous_verdict: str | None
    occurrences: tuple[OccurrenceItem, ...]
    occurrences_total: int
    ack: AckInfo | None = None  # set in the acknowledged section only
    archived: ArchiveSnapshot | None = None  # a dead page's archived copy, when the archive has one

    @property
    def occurrences_omitted(self) -> int:
        return self.occurrences_total - len(self.occurrences)


@dataclass(frozen=True, slots=True)
class HostGroup:
    """All listed problems of one host on one line, so a dead host reads as one problem."""

    host: str
    urls: int
    errors: int
    warnings: int
    articles: int
    occurrences: int
    verdicts: tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True)
class ArticleGroup:
    """The problems of one article, each with its exact frontmatter location."""

    article: str
    title: str | None
    entries: tuple[tuple[OccurrenceItem, UrlItem], ...]


@dataclass(frozen=True, slots=True)
class UrlList:
    """A capped list of URLs; ``total`` counts all of them, ``by_host`` aggregates all of them."""

    total: int
    urls: tuple[UrlItem, ...]
    by_host: tuple[HostGroup, ...] = ()
    hosts_total: int = 0

    @property
    def omitted(self) -> int:
        return self.total - len(self.urls)

    @property
    def hosts_omitted(self) -> int:
        return self.hosts_total - len(self.by_host)

    def by_article(self) -> tuple[ArticleGroup, ...]:
        """The listed URLs regrouped per article, articles by path, entries in document order."""
        groups: dict[str, tuple[str | None, list[tuple[OccurrenceItem, UrlItem]]]] = {}
        for item in self.urls:
            for occ in item.occurrences:
                groups.setdefault(occ.article, (occ.title, []))[1].append((occ, item))
        return tuple(
            ArticleGroup(path, title, tuple(sorted(entries, key=lambda e: _natural(e[0].location))))
            for path, (title, entries) in sorted(groups.items())
        )


def _natural(text: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key that puts ``related[2]`` before ``related[10]``."""
    return tuple((0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"(\d+)", text))


@dataclass(frozen=True, slots=True)
class Count:
    """URLs of one role or host in the run, and how many of them are errors or warnings."""

    name: str
    urls: int
    errors: int
    warnings: int


@dataclass(frozen=True, slots=True)
class RunInfo:
    id: int
    state: str
    trigger: str
    started_at: datetime
    finished_at: datetime | None
    duration_seconds: float | None
    total_targets: int
    checked: int
    error: str | None
    previous_run_id: int | None
    roots: tuple[str, ...] | None = None  # the corpus roots it checked; None: the whole inventory


@dataclass(frozen=True, slots=True)
class Summary:
    verdicts: tuple[tuple[str, int], ...]
    checked: int
    errors: int
    warnings: int
    roles: tuple[Count, ...]
    hosts: tuple[Count, ...]
    hosts_total: int
    articles: int
    occurrences: int
    urls: int
    findings: int
    corpus_errors: int


@dataclass(frozen=True, slots=True)
class ImagesSection:
    size_mismatch: UrlList
    scaled: UrlList
    not_image: UrlList
    image_unreadable: UrlList
    placeholder: UrlList = UrlList(0, ())  # placeholder_image: one default picture at many URLs


@dataclass(frozen=True, slots=True)
class ChangesSection:
    previous_run_id: int | None
    newly_broken: UrlList
    recovered: UrlList
    still_broken: UrlList
    flapping: UrlList
    newly_mismatched: UrlList  # image places whose size mismatch the baseline run did not have


@dataclass(frozen=True, slots=True)
class FindingItem:
    article: str
    title: str | None
    location: str
    kind: str
    message: str
    value: str | None
    expected: str | None


@dataclass(frozen=True, slots=True)
class FindingsSection:
    counts: tuple[tuple[str, int], ...]
    total: int
    items: tuple[FindingItem, ...]

    @property
    def omitted(self) -> int:
        return self.total - len(self.items)


@dataclass(frozen=True, slots=True)
class CorpusErrorItem:
    path: str
    kind: str
    message: str
    line: int | None
    column: int | None
    first_seen: datetime
    last_seen: datetime


@dataclass(frozen=True, slots=True)
class CorpusErrorsSection:
    total: int
    items: tuple[CorpusErrorItem, ...]

    @property
    def omitted(self) -> int:
        return self.total - len(self.items)


@dataclass(frozen=True, slots=True)
class TrendPoint:
    run_id: int
    started_at: datetime
    state: str
    checked: int
    errors: int
    warnings: int
    broken: int = 0  # URLs of the broken section (a broken-family verdict, error or warning)
    image_problems: int = 0  # the image lists' URLs added up (image verdicts, placeholders, sizes)

    @property
    def problems(self) -> int:
        return self.errors + self.warnings


@dataclass(frozen=True, slots=True)
class ReportData:
    """Everything one report shows; sections not asked for are None."""

    generated_at: datetime
    run: RunInfo
    sections: tuple[str, ...]
    limit: int | None
    summary: Summary | None = None
    broken: UrlList | None = None
    images: ImagesSection | None = None
    moved: UrlList | None = None
    changes: ChangesSection | None = None
    blocked: UrlList | None = None
    acknowledged: UrlList | None = None
    findings: FindingsSection | None = None
    corpus_errors: CorpusErrorsSection | None = None
    trend: tuple[TrendPoint, ...] | None = None
