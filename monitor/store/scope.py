"""A run's scope: the corpus roots it was asked to check, as SQL filters on article paths.

A run records its roots (``run.roots``, a JSON list of normalised paths; NULL for runs from
before scopes, which cover the whole inventory). Its plan and its reports select only URLs,
occurrences, findings and corpus errors of articles under those roots; URL history stays
database-wide, so a URL shared by two roots keeps one history.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from sqlalchemy import ColumnElement, Connection, exists, func, or_, select, true

from monitor.store.tables import ARTICLES, OCCURRENCES, RUNS, URLS

Roots = tuple[str, ...] | None  # None: no restriction


def encode_roots(roots: Sequence[str]) -> str:
    return json.dumps(list(roots))


def run_roots(conn: Connection, run_id: int) -> Roots:
    """The roots run ``run_id`` recorded; None when it has none (an old run, or no such run)."""
    raw = conn.execute(select(RUNS.c.roots).where(RUNS.c.id == run_id)).scalar()
    if not raw:
        return None
    try:
        roots = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(roots, list) or not roots or "." in roots:
        return None  # "." is every relative path the inventory holds
    return tuple(str(r) for r in roots)


def under_roots(path: ColumnElement[str], roots: Roots) -> ColumnElement[bool]:
    """SQL: ``path`` is one of ``roots`` or lies below one (a prefix test with no LIKE wildcards)."""
    if roots is None:
        return true()
    terms: list[ColumnElement[bool]] = []
    for root in roots:
        prefix = root.rstrip("/") + "/"
        terms.append(path == root)
        terms.append(func.substr(path, 1, len(prefix)) == prefix)
    return or_(*terms)


def url_in_scope(roots: Roots) -> ColumnElement[bool]:
    """SQL: the URL (``URLS``) occurs in a live article under ``roots`` (anywhere when None)."""
    if roots is None:
        return exists().where(OCCURRENCES.c.url_id == URLS.c.id)
    return exists().where(
        OCCURRENCES.c.url_id == URLS.c.id,
        ARTICLES.c.id == OCCURRENCES.c.article_id,
        under_roots(ARTICLES.c.path, roots),
    )
