"""Corpus → links → store: bring the URL inventory up to date, incrementally.

A file whose size and mtime match the last read is not opened; one whose bytes hash
the same is not re-parsed. Files that vanished under a scanned root leave the
inventory (their history stays); a root that cannot be read never causes deletions.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import PurePosixPath

from sqlalchemy import Engine

from monitor.config import CorpusSettings
from monitor.corpus.discover import CorpusFile, check_roots, discover
from monitor.corpus.read import read_article
from monitor.links.extract import extract
from monitor.store import inventory as store
from monitor.types import CorpusError

BATCH = 500  # articles per database transaction
CHUNK = 250  # files per parse job
POOL_AFTER_CHUNKS = 4  # small runs parse in-process; a pool only pays off for big ones
WORKERS = 2
IN_FLIGHT = 4  # parse jobs outstanding at once


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


def scan_roots_of(corpus: CorpusSettings, roots: Sequence[str] | None) -> list[str]:
    """The normalised roots a pass scans (default: the configured ones), each checked readable."""
    scan_roots = [_norm_root(r) for r in (roots or corpus.roots)]
    check_roots(scan_roots)
    return scan_roots


def _under(path: str, roots: Sequence[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip("/") + "/") or r == "." for r in roots)


def sync_inventory(
    engine: Engine,
    corpus: CorpusSettings,
    roots: Sequence[str] | None = None,
    *,
    on_file: Callable[[int], None] | None = None,
    on_error: Callable[[CorpusError], None] | None = None,
    on_settled: Callable[[], None] | None = None,
    on_batch: Callable[[], None] | None = None,
) -> SyncReport:
    """Scan ``roots`` (default: the configured ones) and update the inventory tables.

    The pass has two halves, so that a run may check while it goes on (a streaming inventory).
    First the walk: files that vanished leave the inventory and known files that changed are
    read again, so that afterwards every URL it holds is still in the corpus (``on_settled``).
    Then the files never seen before are read; they only add URLs, each batch committed before
    ``on_batch`` is called. Both callbacks run in the caller's thread.
    """
    started = time.perf_counter()
    now = datetime.now(UTC)
    scan_roots = scan_roots_of(corpus, roots)  # raises RootUnavailable before anything is touched
    known = store.known_files(engine)
    report = SyncReport()
    seen: set[str] = set()
    failed_roots: list[str] = []
    changed: list[tuple[CorpusFile, str | None]] = []
    new: list[tuple[CorpusFile, str | None]] = []
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
        if k is None or k.deleted:
            new.append((item, None))
        elif k.size == item.size and k.mtime_ns == item.mtime_ns:
            report.unchanged += 1
        else:
            changed.append((item, k.sha256))
    gone = [
        p
        for p, k in known.items()
        if not k.deleted and p not in seen and _under(p, scan_roots) and not _under(p, failed_roots)
    ]
    store.mark_deleted(engine, gone, known, now)
    report.deleted = len(gone)
    writer = _Writer(engine, known, now, report, on_error)
    writer.read(changed, corpus)
    if on_settled is not None:
        on_settled()
    writer.read(new, corpus, on_batch=on_batch)
    store.touch_unchanged(engine, now)
    report.elapsed_s = time.perf_counter() - started
    return report


class _Writer:
    """Parses lists of files (``_Parser``) and saves what they hold in batches of ``BATCH``."""

    def __init__(
        self,
        engine: Engine,
        known: dict[str, store.KnownFile],
        now: datetime,
        report: SyncReport,
        on_error: Callable[[CorpusError], None] | None,
    ) -> None:
        self.engine, self.known, self.now, self.report, self.on_error = engine, known, now, report, on_error
        self.parsed: list[store.Parsed] = []
        self.errors: list[tuple[CorpusError, int, int]] = []
        self.restat: list[tuple[int, int, int]] = []

    def read(
        self,
        files: list[tuple[CorpusFile, str | None]],
        corpus: CorpusSettings,
        on_batch: Callable[[], None] | None = None,
    ) -> None:
        with _Parser(corpus) as parser:
            for at in range(0, len(files), CHUNK):
                chunk = files[at : at + CHUNK]
                ids = {f.path: self.known[f.path].id for f, _ in chunk if f.path in self.known}
                for results in parser.submit(chunk, ids, last=at + CHUNK >= len(files)):
                    self._consume(results, on_batch)
        self._flush(on_batch)

    def _consume(self, results: list[_Parsed], on_batch: Callable[[], None] | None) -> None:
        report = self.report
        for item, known_id, result in results:
            if isinstance(result, CorpusError):
                report.errors.append(result)
                self.errors.append((result, item.size, item.mtime_ns))
                if self.on_error is not None:
                    self.on_error(result)
            elif result is None:  # same bytes as last time: only the stat changed
                self.restat.append((known_id, item.size, item.mtime_ns))  # type: ignore[arg-type]
                report.unchanged += 1
            else:
                self.parsed.append(result)
                report.parsed += 1
        if len(self.parsed) + len(self.errors) + len(self.restat) >= BATCH:
            self._flush(on_batch)

    def _flush(self, on_batch: Callable[[], None] | None) -> None:
        if not (self.parsed or self.errors or self.restat):
            return
        store.save_parsed(self.engine, self.parsed, self.known, self.now)
        store.save_errors(self.engine, self.errors, self.known, self.now)
        store.save_restat(self.engine, self.restat, self.now)
        grew = bool(self.parsed)
        self.parsed.clear()
        self.errors.clear()
        self.restat.clear()
        if grew and on_batch is not None:
            on_batch()


_Parsed = tuple[CorpusFile, "int | None", "store.Parsed | CorpusError | None"]


def parse_chunk(
    pending: list[tuple[CorpusFile, str | None]], ids: dict[str, int], corpus: CorpusSettings
) -> list[_Parsed]:
    """Read and extract a chunk of files (runs in a worker process for big corpora).

    A file whose bytes hash like last time comes back as ``None``: nothing to re-extract.
    """
    out: list[_Parsed] = []
    for item, old_sha in pending:
        result = read_article(item, max_bytes=corpus.max_file_bytes)
        if isinstance(result, CorpusError):
            out.append((item, ids.get(item.path), result))
        elif old_sha and old_sha == result.sha256:
            out.append((item, ids.get(item.path), None))
        else:
            occurrences, findings = extract(
                result, max_url_length=corpus.max_url_length, amp_template=corpus.amp_cache_template
            )
            out.append((item, ids.get(item.path), store.Parsed.of(result, occurrences, findings)))
    return out


class _Parser:
    """Parses chunks in worker processes once a run has enough changed files to pay for them.

    The main process meanwhile writes earlier chunks to the database, so both cores work;
    at most ``IN_FLIGHT`` chunks are outstanding, which bounds memory.
    """

    def __init__(self, corpus: CorpusSettings) -> None:
        self.corpus = corpus
        self.pool: ProcessPoolExecutor | None = None
        self.futures: deque[Future[list[_Parsed]]] = deque()
        self.chunks = 0

    def __enter__(self) -> _Parser:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)

    def submit(
        self, pending: list[tuple[CorpusFile, str | None]], ids: dict[str, int], last: bool = False
    ) -> Iterator[list[_Parsed]]:
        """Queue ``pending``; yield the results that are ready (all of them when ``last``)."""
        self.chunks += 1
        workers = min(WORKERS, os.cpu_count() or 1)
        if self.pool is None and self.chunks >= POOL_AFTER_CHUNKS and workers > 1:
            # fork, not spawn: spawn re-imports the caller's __main__, which breaks (or re-runs)
            # any embedding script without a __main__ guard. The children only parse text.
            self.pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"))
        if pending:
            if self.pool is None:
                yield parse_chunk(pending, ids, self.corpus)
            else:
                self.futures.append(self.pool.submit(parse_chunk, pending, ids, self.corpus))
        while self.futures and (last or len(self.futures) > IN_FLIGHT or self.futures[0].done()):
            yield self.futures.popleft().result()
