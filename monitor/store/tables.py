"""The SQL tables as SQLAlchemy Core objects, under one readable name each.

Queries that select, join or bulk-write use these (``RESULTS.c.verdict``) instead of the
SQLModel classes; every module imports them from here, so a name means one table everywhere.
"""

from __future__ import annotations

from sqlalchemy import Table

from monitor.store.models import (
    AckRow,
    ArchiveCopyRow,
    ArticleRow,
    CorpusErrorRow,
    FindingRow,
    LeaseRow,
    OccurrenceRow,
    ResultRow,
    RollupRow,
    RunEventRow,
    RunFanoutRow,
    RunRow,
    RunShardRow,
    SizeCheckRow,
    SoftBaselineRow,
    StateChangeRow,
    UrlRow,
)


def _table(row: type) -> Table:
    table = row.__table__  # type: ignore[attr-defined]
    assert isinstance(table, Table)
    return table


ACKS = _table(AckRow)
ARCHIVE_COPIES = _table(ArchiveCopyRow)
ARTICLES = _table(ArticleRow)
CORPUS_ERRORS = _table(CorpusErrorRow)
FINDINGS = _table(FindingRow)
LEASES = _table(LeaseRow)
OCCURRENCES = _table(OccurrenceRow)
RESULTS = _table(ResultRow)
ROLLUPS = _table(RollupRow)
RUN_EVENTS = _table(RunEventRow)
RUN_FANOUT = _table(RunFanoutRow)
RUNS = _table(RunRow)
RUN_SHARDS = _table(RunShardRow)
SIZE_CHECKS = _table(SizeCheckRow)
SOFT_BASELINES = _table(SoftBaselineRow)
STATE_CHANGES = _table(StateChangeRow)
URLS = _table(UrlRow)
