"""A throwaway PostgreSQL schema per test, so parallel tests never see each other's tables."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

PG_BASE = "postgresql://postgres@127.0.0.1:5432/test"


@contextmanager
def pg_schema_url() -> Iterator[str]:
    """Yield a database URL whose search_path is a fresh schema; drop the schema afterwards.

    Skips the test when PostgreSQL is unreachable, unless MONITOR_REQUIRE_POSTGRES=1.
    """
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=test", autocommit=True)
    except psycopg.OperationalError as exc:
        if os.environ.get("MONITOR_REQUIRE_POSTGRES") == "1":
            raise
        pytest.skip(f"PostgreSQL unreachable: {exc}")
    with admin:
        admin.execute(f'CREATE SCHEMA "{schema}"')
        try:
            yield f"{PG_BASE}?options=-csearch_path%3D{schema}"
        finally:
            admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
