"""Corpus → links → store: bring the URL inventory up to date, incrementally.

A file whose size and mtime match the last read is not opened; one whose bytes hash
the same is not re-parsed. Files that vanished under a scanned root leave the
inventory (their history stays); a root that cannot be read never causes deletions.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import PurePosixPath

from sqlalchemy import Engine, update

from monitor.config import CorpusSettings
from monitor.corpus import CorpusFile, discover, read_article
from monitor.links import extract
from monitor.store import inventory as store
from monitor.types import CorpusError

BATCH = 500


@dataclass(slots=True)
class SyncReport:
    """What one inventory pass did; ``errors`` are the corpus errors met this pass."""

    seen: int = 0
    parsed: int = 0
    unchanged: int = 0
    deleted: int = 0
    errors: list[CorpusError] = field(default_factory=list)
    elapsed_s: float = 0.0


def _norm_root(root: str) -> str:
    return PurePosixPath(os.path.normpath(root)).as_posix()


def _under(path: str, roots: Sequence[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip("/") + "/") or r == "." for r in roots)


def sync_inventory(
    engine: Engine,
    corpus: CorpusSettings,
    roots: Sequence[str] | None = None,
    *,
    on_file: Callable[[int], None] | None = None,
    on_error: Callable[[CorpusError], None] | None = None,
) -> SyncReport:
    """Scan ``roots`` (default: the configured ones) and update the inventory tables."""
    started = time.perf_counter()
    now = datetime.now(UTC)
    scan_roots = [_norm_root(r) for r in (roots or corpus.roots)]
    known = store.known_files(engine)
    report = SyncReport()
    seen: set[str] = set()
    failed_roots: list[str] = []
    parsed: list[store.Parsed] = []
    errors: list[tuple[CorpusError, int, int]] = []
    restat: list[tuple[int, int, int]] = []

    def flush() -> None:
        store.save_parsed(engine, parsed, known, now)
        store.save_errors(engine, errors, known, now)
        if restat:
            with engine.begin() as conn:
                for aid, size, mtime_ns in restat:
                    conn.execute(
                        update(store.A)
                        .where(store.A.c.id == aid)
                        .values(size=size, mtime_ns=mtime_ns, last_seen=now)
                    )
        parsed.clear()
        errors.clear()
        restat.clear()

    def record_error(err: CorpusError, size: int, mtime_ns: int) -> None:
        report.errors.append(err)
        errors.append((err, size, mtime_ns))
        if on_error is not None:
            on_error(err)

    for item in discover(scan_roots, corpus.include, corpus.exclude):
        if isinstance(item, CorpusError):
            failed_roots.append(_norm_root(item.path))
            report.errors.append(item)
            if on_error is not None:
                on_error(item)
            continue
        report.seen += 1
        if on_file is not None:
            on_file(report.seen)
        seen.add(item.path)
        k = known.get(item.path)
        if k is not None and not k.deleted and k.size == item.size and k.mtime_ns == item.mtime_ns:
            report.unchanged += 1
            continue
        _read_one(item, k, corpus, parsed, restat, record_error, report)
        if len(parsed) + len(errors) + len(restat) >= BATCH:
            flush()
    flush()

    gone = [
        p
        for p, k in known.items()
        if not k.deleted and p not in seen and _under(p, scan_roots) and not _under(p, failed_roots)
    ]
    store.mark_deleted(engine, gone, known, now)
    report.deleted = len(gone)
    store.touch_unchanged(engine, now, now)
    report.elapsed_s = time.perf_counter() - started
    return report


def _read_one(
    item: CorpusFile,
    known: store.KnownFile | None,
    corpus: CorpusSettings,
    parsed: list[store.Parsed],
    restat: list[tuple[int, int, int]],
    record_error: Callable[[CorpusError, int, int], None],
    report: SyncReport,
) -> None:
    result = read_article(item, max_bytes=corpus.max_file_bytes)
    if isinstance(result, CorpusError):
        record_error(result, item.size, item.mtime_ns)
        return
    if known is not None and not known.deleted and known.sha256 and known.sha256 == result.sha256:
        restat.append((known.id, item.size, item.mtime_ns))
        report.unchanged += 1
        return
    occurrences, findings = extract(
        result, max_url_length=corpus.max_url_length, amp_template=corpus.amp_cache_template
    )
    parsed.append(store.Parsed(result, occurrences, findings))
    report.parsed += 1
