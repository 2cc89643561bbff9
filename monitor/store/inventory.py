"""Inventory persistence: articles, occurrences, findings, URLs and corpus errors.

Writes use SQLAlchemy Core in batches (one transaction per batch, never a commit per
row); URL ids are resolved per batch with ``INSERT … ON CONFLICT DO NOTHING`` and one
``SELECT … IN``, so memory stays flat however many URLs the corpus holds.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, Engine, bindparam, delete, func, insert, select, update

from monitor.store.db import executemany, insert_ignore
from monitor.store.scope import Roots, under_roots
from monitor.store.tables import ARTICLES, CORPUS_ERRORS, FINDINGS, OCCURRENCES, SIZE_CHECKS, URLS
from monitor.types import Article, CorpusError, Finding, FindingKind, Occurrence, Role, TargetKind
from monitor.urls import host_key

_IN_CHUNK = 500  # bound for IN (...) lists; SQLite allows 32766 variables, keep it modest


@dataclass(frozen=True, slots=True)
class KnownFile:
    id: int
    size: int
    mtime_ns: int
    sha256: str
    deleted: bool


# (url, raw_url, location, role, related, declared width, declared height, item title)
OccurrenceRow = tuple[str | None, str, str, str, bool, int | None, int | None, str | None]
# (location, kind, message, value, expected)
FindingRow = tuple[str, str, str, str | None, str | None]


@dataclass(frozen=True, slots=True)
class Parsed:
    """One article read this run, as the rows the inventory stores: no body, no metadata.

    Built in a parse worker and pickled back to the writer, so it holds plain tuples:
    pickling a slots dataclass per occurrence cost more than parsing it (profiled).
    """

    path: str
    title: str | None
    size: int
    mtime_ns: int
    sha256: str
    occurrences: list[OccurrenceRow]
    findings: list[FindingRow]

    @classmethod
    def of(cls, article: Article, occurrences: Iterable[Occurrence], findings: Iterable[Finding]) -> Parsed:
        return cls(
            article.path,
            article.title,
            article.size,
            article.mtime_ns,
            article.sha256,
            [
                (
                    o.url,
                    o.raw_url,
                    o.location[:300],
                    o.role.value,
                    o.related,
                    o.declared.width if o.declared else None,
                    o.declared.height if o.declared else None,
                    o.title,
                )
                for o in occurrences
            ],
            [(f.location[:300], f.kind.value, f.message, f.value, f.expected) for f in findings],
        )


def known_files(engine: Engine) -> dict[str, KnownFile]:
    """Every article path the database knows, with the stat and hash of its last read."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                ARTICLES.c.path,
                ARTICLES.c.id,
                ARTICLES.c.size,
                ARTICLES.c.mtime_ns,
                ARTICLES.c.sha256,
                ARTICLES.c.deleted_at,
            )
        )
        return {r[0]: KnownFile(r[1], r[2], r[3], r[4], r[5] is not None) for r in rows}


_IMAGE_ROLES = frozenset(r.value for r in Role if r.is_image)


def _kind_for(roles: Iterable[str]) -> str:
    return TargetKind.IMAGE.value if any(r in _IMAGE_ROLES for r in roles) else TargetKind.PAGE.value


def url_ids(conn: Connection, urls: dict[str, set[str]], now: datetime) -> dict[str, int]:
    """Ids for normalised URLs, inserting the new ones; an image role wins over page roles."""
    out: dict[str, int] = {}
    items = list(urls.items())
    for start in range(0, len(items), _IN_CHUNK):
        chunk = items[start : start + _IN_CHUNK]
        executemany(
            conn,
            "inventory_url",
            lambda: insert_ignore(conn, URLS),
            [
                {"url": u, "host": host_key(u), "kind": _kind_for(roles), "first_seen": now}
                for u, roles in chunk
            ],
        )
        found = conn.execute(
            select(URLS.c.url, URLS.c.id, URLS.c.kind).where(URLS.c.url.in_([u for u, _ in chunk]))
        )
        upgrade = []
        for url, uid, kind in found:
            out[url] = uid
            if kind != TargetKind.IMAGE.value and _kind_for(urls[url]) == TargetKind.IMAGE.value:
                upgrade.append(uid)
        if upgrade:
            conn.execute(update(URLS).where(URLS.c.id.in_(upgrade)).values(kind=TargetKind.IMAGE.value))
    return out


def _article_ids(
    conn: Connection, batch: Sequence[Parsed], known: dict[str, KnownFile], now: datetime
) -> list[int]:
    """Insert or update the article rows of a batch with two executemany calls and one SELECT."""

    def values(art: Parsed) -> dict[str, object]:
        return {
            "title": art.title,
            "size": art.size,
            "mtime_ns": art.mtime_ns,
            "sha256": art.sha256,
            "last_seen": now,
            "deleted_at": None,
        }

    fresh = [p for p in batch if p.path not in known]
    old = [p for p in batch if p.path in known]
    if fresh:
        conn.execute(insert(ARTICLES), [{"path": a.path, "first_seen": now, **values(a)} for a in fresh])
    if old:
        stmt = (
            update(ARTICLES)
            .where(ARTICLES.c.id == bindparam("b_id"))
            .values({k: bindparam(k) for k in values(old[0])})
        )
        conn.execute(stmt, [{"b_id": known[a.path].id, **values(a)} for a in old])
    ids: dict[str, int] = {}
    if fresh:
        paths = [a.path for a in fresh]
        for start in range(0, len(paths), _IN_CHUNK):
            chunk = paths[start : start + _IN_CHUNK]
            ids.update(
                dict(
                    conn.execute(
                        select(ARTICLES.c.path, ARTICLES.c.id).where(ARTICLES.c.path.in_(chunk))
                    ).all()
                )
            )
    return [ids[p.path] if p.path in ids else known[p.path].id for p in batch]


def _clear_article(conn: Connection, ids: Sequence[int]) -> None:
    """Articles gone or unreadable: their occurrences (and the size checks of those places) and findings."""
    for start in range(0, len(ids), _IN_CHUNK):
        chunk = ids[start : start + _IN_CHUNK]
        places = select(OCCURRENCES.c.id).where(OCCURRENCES.c.article_id.in_(chunk))
        conn.execute(delete(SIZE_CHECKS).where(SIZE_CHECKS.c.occurrence_id.in_(places)))
        conn.execute(delete(OCCURRENCES).where(OCCURRENCES.c.article_id.in_(chunk)))
        conn.execute(delete(FINDINGS).where(FINDINGS.c.article_id.in_(chunk)))


def _places(conn: Connection, ids: Sequence[int]) -> dict[tuple[int, str], list[int]]:
    """The stored occurrence ids of these articles by (article, location), oldest first."""
    out: dict[tuple[int, str], list[int]] = {}
    for start in range(0, len(ids), _IN_CHUNK):
        query = (
            select(OCCURRENCES.c.id, OCCURRENCES.c.article_id, OCCURRENCES.c.location)
            .where(OCCURRENCES.c.article_id.in_(ids[start : start + _IN_CHUNK]))
            .order_by(OCCURRENCES.c.id)
        )
        for oid, aid, location in conn.execute(query):
            out.setdefault((aid, location), []).append(oid)
    return out


def _drop_places(conn: Connection, ids: Sequence[int]) -> None:
    """Occurrences no longer in their article, with the size checks of those places."""
    for start in range(0, len(ids), _IN_CHUNK):
        chunk = ids[start : start + _IN_CHUNK]
        conn.execute(delete(SIZE_CHECKS).where(SIZE_CHECKS.c.occurrence_id.in_(chunk)))
        conn.execute(delete(OCCURRENCES).where(OCCURRENCES.c.id.in_(chunk)))


def save_parsed(engine: Engine, batch: Sequence[Parsed], known: dict[str, KnownFile], now: datetime) -> None:
    """Replace the occurrences and findings of each article in ``batch`` in one transaction.

    A place still in its article (same location) keeps its occurrence row, updated in place, so
    its size-check history stays attached (an edited article must not orphan it); only places
    that left the article are deleted, with their size checks.
    """
    if not batch:
        return
    with engine.begin() as conn:
        ids = _article_ids(conn, batch, known, now)
        changed = [i for i, p in zip(ids, batch, strict=True) if p.path in known]
        stored = _places(conn, changed)
        for start in range(0, len(changed), _IN_CHUNK):
            conn.execute(
                delete(FINDINGS).where(FINDINGS.c.article_id.in_(changed[start : start + _IN_CHUNK]))
            )
        wanted: dict[str, set[str]] = {}
        for p in batch:
            for occ in p.occurrences:
                if occ[0] is not None:
                    wanted.setdefault(occ[0], set()).add(occ[3])
        uid = url_ids(conn, wanted, now)
        occ_rows = [
            {
                "article_id": aid,
                "url_id": uid[url] if url else None,
                "raw_url": raw,
                "location": location,
                "role": role,
                "related": related,
                "declared_width": width,
                "declared_height": height,
                "title": title,
            }
            for aid, p in zip(ids, batch, strict=True)
            for url, raw, location, role, related, width, height, title in p.occurrences
        ]
        find_rows = [
            {
                "article_id": aid,
                "location": location,
                "kind": kind,
                "message": message,
                "value": value,
                "expected": expected,
            }
            for aid, p in zip(ids, batch, strict=True)
            for location, kind, message, value, expected in p.findings
        ]
        # a place still in its article keeps its row (and its size-check history), updated in place
        kept, new = [], []
        for row in occ_rows:
            same = stored.get((row["article_id"], row["location"]))  # type: ignore[arg-type]
            if same:
                kept.append({"b_id": same.pop(0), **row})
            else:
                new.append(row)
        _drop_places(conn, [oid for left in stored.values() for oid in left])
        if kept:
            conn.execute(update(OCCURRENCES).where(OCCURRENCES.c.id == bindparam("b_id")), kept)
        if new:
            executemany(conn, "occurrence", lambda: insert(OCCURRENCES), new)
        if find_rows:
            executemany(conn, "finding", lambda: insert(FINDINGS), find_rows)
        paths = [p.path for p in batch]
        for start in range(0, len(paths), _IN_CHUNK):
            conn.execute(
                delete(CORPUS_ERRORS).where(CORPUS_ERRORS.c.path.in_(paths[start : start + _IN_CHUNK]))
            )


def save_errors(
    engine: Engine, errors: Sequence[tuple[CorpusError, int, int]], known: dict[str, KnownFile], now: datetime
) -> None:
    """Record corpus errors (with the file's size and mtime, so an unchanged bad file is not re-read).

    The file's previous occurrences leave the inventory: a file that cannot be read
    has no trustworthy links. Its result history stays.
    """
    if not errors:
        return
    with engine.begin() as conn:
        clear = []
        for err, size, mtime_ns in errors:
            k = known.get(err.path)
            values = {"title": None, "size": size, "mtime_ns": mtime_ns, "sha256": "", "last_seen": now}
            if k is not None:
                conn.execute(update(ARTICLES).where(ARTICLES.c.id == k.id).values(deleted_at=None, **values))
                clear.append(k.id)
            else:
                conn.execute(insert(ARTICLES).values(path=err.path, first_seen=now, **values))
            conn.execute(delete(CORPUS_ERRORS).where(CORPUS_ERRORS.c.path == err.path))
            conn.execute(
                insert(CORPUS_ERRORS).values(
                    path=err.path,
                    kind=err.kind,
                    message=err.message,
                    line=err.line,
                    column=err.column,
                    first_seen=now,
                    last_seen=now,
                )
            )
        _clear_article(conn, clear)


def mark_deleted(engine: Engine, paths: Sequence[str], known: dict[str, KnownFile], now: datetime) -> None:
    """Files gone from disk: their occurrences leave the inventory, their history stays."""
    ids = [known[p].id for p in paths if p in known]
    if not ids:
        return
    with engine.begin() as conn:
        _clear_article(conn, ids)
        for start in range(0, len(ids), _IN_CHUNK):
            conn.execute(
                update(ARTICLES)
                .where(ARTICLES.c.id.in_(ids[start : start + _IN_CHUNK]))
                .values(deleted_at=now)
            )
        for start in range(0, len(paths), _IN_CHUNK):
            conn.execute(
                delete(CORPUS_ERRORS).where(CORPUS_ERRORS.c.path.in_(list(paths[start : start + _IN_CHUNK])))
            )


def touch_unchanged(engine: Engine, now: datetime) -> None:
    """Mark every live article as seen now, in one statement."""
    with engine.begin() as conn:
        conn.execute(
            update(ARTICLES)
            .where(ARTICLES.c.deleted_at.is_(None), ARTICLES.c.last_seen < now)
            .values(last_seen=now)
        )


def save_restat(engine: Engine, restat: Sequence[tuple[int, int, int]], now: datetime) -> None:
    """Files whose stat changed but whose bytes did not: new size and mtime, one executemany."""
    if not restat:
        return
    stmt = (
        update(ARTICLES)
        .where(ARTICLES.c.id == bindparam("b_id"))
        .values(size=bindparam("b_size"), mtime_ns=bindparam("b_mtime"), last_seen=now)
    )
    with engine.begin() as conn:
        conn.execute(stmt, [{"b_id": a, "b_size": sz, "b_mtime": mt} for a, sz, mt in restat])


@dataclass(frozen=True, slots=True)
class InventoryCounts:
    files: int
    articles: int
    corpus_errors: int
    occurrences: int
    distinct_urls: int
    invalid_urls: int
    amp_mismatches: int
    wrong_types: int


def counts(engine: Engine, roots: Roots = None) -> InventoryCounts:
    """Current inventory totals (live files only), of the articles under ``roots`` when given."""
    in_roots = under_roots(ARTICLES.c.path, roots)
    of_article = ARTICLES.c.id == OCCURRENCES.c.article_id
    with engine.connect() as conn:
        files = conn.execute(
            select(func.count()).select_from(ARTICLES).where(ARTICLES.c.deleted_at.is_(None), in_roots)
        ).scalar_one()
        errors = conn.execute(
            select(func.count()).select_from(CORPUS_ERRORS).where(under_roots(CORPUS_ERRORS.c.path, roots))
        ).scalar_one()
        occ = conn.execute(
            select(func.count()).select_from(OCCURRENCES.join(ARTICLES, of_article)).where(in_roots)
        ).scalar_one()
        distinct = conn.execute(
            select(func.count(func.distinct(OCCURRENCES.c.url_id)))
            .select_from(OCCURRENCES.join(ARTICLES, of_article))
            .where(OCCURRENCES.c.url_id.is_not(None), in_roots)
        ).scalar_one()
        by_kind: dict[str, int] = dict(
            conn.execute(
                select(FINDINGS.c.kind, func.count())
                .select_from(FINDINGS.join(ARTICLES, ARTICLES.c.id == FINDINGS.c.article_id))
                .where(in_roots)
                .group_by(FINDINGS.c.kind)
            ).all()
        )
    return InventoryCounts(
        files=files,
        articles=files - errors,
        corpus_errors=errors,
        occurrences=occ,
        distinct_urls=distinct,
        invalid_urls=by_kind.get(FindingKind.INVALID_URL.value, 0),
        amp_mismatches=by_kind.get(FindingKind.AMP_CACHE_MISMATCH.value, 0),
        wrong_types=by_kind.get(FindingKind.WRONG_TYPE.value, 0),
    )
