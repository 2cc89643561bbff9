"""What `monitor fix` may change, from one run's results: moved links and image sizes per place.

A fix names the article (and the SHA-256 of the content the run read, so a file edited since
is never touched), the exact frontmatter location, the value the run saw there and the value
to write: the final URL of a ``moved_permanently`` link, or the real width and height of an
image whose declared size has another aspect ratio (``size_mismatch``), or (asked for) the
archived copy the archive cache holds for a ``broken`` or ``soft_404`` page.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, Engine, and_, select

from monitor.store.tables import ARCHIVE_COPIES, ARTICLES, OCCURRENCES, RESULTS, RUNS, SIZE_CHECKS
from monitor.types import ARCHIVE_VERDICTS, Role, SizeCheck, Verdict


@dataclass(frozen=True, slots=True)
class Fix:
    article: str
    sha256: str
    location: str
    old: str
    new: str
    kind: str  # "moved", "size" or "archive"


def latest_run(engine: Engine) -> int | None:
    with engine.connect() as conn:
        return conn.execute(select(RUNS.c.id).order_by(RUNS.c.id.desc()).limit(1)).scalar()


def fixes_for(engine: Engine, run_id: int, *, sizes: bool, archive: bool = False) -> list[Fix]:
    """The fixes run ``run_id`` supports for live articles, by article and location."""
    live = ARTICLES.c.deleted_at.is_(None)
    places = OCCURRENCES.join(ARTICLES, ARTICLES.c.id == OCCURRENCES.c.article_id)
    out: list[Fix] = []
    moved = (
        select(
            ARTICLES.c.path,
            ARTICLES.c.sha256,
            OCCURRENCES.c.location,
            OCCURRENCES.c.raw_url,
            RESULTS.c.final_url,
        )
        .select_from(
            places.join(RESULTS, and_(RESULTS.c.url_id == OCCURRENCES.c.url_id, RESULTS.c.run_id == run_id))
        )
        .where(live, RESULTS.c.verdict == Verdict.MOVED_PERMANENTLY.value, RESULTS.c.final_url.is_not(None))
    )
    with engine.connect() as conn:
        for path, sha, location, raw, final in conn.execute(moved):
            if final != raw and "***" not in final:  # a redacted final URL is not what to write
                out.append(Fix(path, sha, location, raw, final, "moved"))
        if sizes:
            checks = (
                select(
                    ARTICLES.c.path,
                    ARTICLES.c.sha256,
                    OCCURRENCES.c.location,
                    SIZE_CHECKS.c.declared_width,
                    SIZE_CHECKS.c.declared_height,
                    SIZE_CHECKS.c.actual_width,
                    SIZE_CHECKS.c.actual_height,
                )
                .select_from(places.join(SIZE_CHECKS, SIZE_CHECKS.c.occurrence_id == OCCURRENCES.c.id))
                .where(
                    live,
                    SIZE_CHECKS.c.run_id == run_id,
                    SIZE_CHECKS.c.verdict == SizeCheck.SIZE_MISMATCH.value,
                    SIZE_CHECKS.c.actual_width.is_not(None),
                    SIZE_CHECKS.c.declared_width.is_not(None),
                )
            )
            for path, sha, location, dw, dh, aw, ah in conn.execute(checks):
                parent = location.removesuffix(".url")
                if parent == location:
                    continue  # an image inside HTML or the body: no width/height fields to set
                out.append(Fix(path, sha, f"{parent}.width", str(dw), str(aw), "size"))
                out.append(Fix(path, sha, f"{parent}.height", str(dh), str(ah), "size"))
        if archive:
            out += _archived(conn, run_id)
    return sorted(out, key=lambda f: (f.article, f.location))


def _archived(conn: Connection, run_id: int) -> list[Fix]:
    """A dead page's places (AMP fields excepted: an AMP URL must stay an AMP URL) → its archived copy."""
    places = OCCURRENCES.join(ARTICLES, ARTICLES.c.id == OCCURRENCES.c.article_id)
    this_run = and_(RESULTS.c.url_id == OCCURRENCES.c.url_id, RESULTS.c.run_id == run_id)
    query = (
        select(
            ARTICLES.c.path,
            ARTICLES.c.sha256,
            OCCURRENCES.c.location,
            OCCURRENCES.c.raw_url,
            ARCHIVE_COPIES.c.snapshot_url,
        )
        .select_from(
            places.join(RESULTS, this_run).join(ARCHIVE_COPIES, ARCHIVE_COPIES.c.url_id == RESULTS.c.url_id)
        )
        .where(
            ARTICLES.c.deleted_at.is_(None),
            RESULTS.c.verdict.in_([v.value for v in ARCHIVE_VERDICTS]),
            ARCHIVE_COPIES.c.snapshot_url.is_not(None),
            OCCURRENCES.c.role.not_in([Role.AMP.value, Role.CDN_AMP.value]),
        )
    )
    return [
        Fix(path, sha, location, raw, copy, "archive")
        for path, sha, location, raw, copy in conn.execute(query)
    ]
