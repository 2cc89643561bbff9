"""What a 10-million-URL nightly run asks of PostgreSQL, measured on a synthetic plan of that size.

Usage: .venv/bin/python bench/scale_sim.py [--urls 10000000] [--articles 1500000] [--hosts 50000]

No network: in a throwaway database on 127.0.0.1:5432 it creates the real schema (Alembic),
fills it inside PostgreSQL (generate_series) with ``--urls`` URLs over ``--hosts`` hosts
(one host carries a quarter, the rest a power law, as in news corpora), ``--articles``
articles and 1.5 occurrences per URL, then times the code a distributed run runs:

* the planner: ``ledger.host_counts`` and the whole ``plan_run`` (shards, slices, fan-in row);
* a worker's plan pages (``plan.plan_page``) on the biggest shard;
* result writes: transactions of 200 results + 200 URL-state updates through the writer's
  executemany, as a worker's batch writes them, for ``--write-rows`` rows;
* the fan-in's verdict counts once the run has a result per URL;
* table and index sizes.
"""

from __future__ import annotations

import argparse
import json
import random
import time
import uuid
from datetime import UTC, datetime

import psycopg
from sqlalchemy import bindparam, select, update

from monitor.config import DistributedSettings, Settings
from monitor.distributed import ledger
from monitor.distributed.runs import plan_run
from monitor.store import plan, runs
from monitor.store.db import executemany, insert_ignore, open_engine
from monitor.store.tables import RESULTS, RUN_SHARDS, URLS


def timed(what: str, fn, *args, **kw):  # type: ignore[no-untyped-def]
    began = time.perf_counter()
    out = fn(*args, **kw)
    print(f"{what:58} {time.perf_counter() - began:8.2f} s", flush=True)
    return out


def fill(dsn: str, urls: int, articles: int, hosts: int) -> None:
    with psycopg.connect(dsn, autocommit=True) as c:
        now = "now()"
        c.execute(
            "INSERT INTO article (path, title, size, mtime_ns, sha256, first_seen, last_seen) "
            f"SELECT 'corpus/' || g || '.md', 'Article ' || g, 2000, 0, md5(g::text), {now}, {now} "
            f"FROM generate_series(1, {articles}) g"
        )
        # a quarter on one host (an AMP cache), the rest a power law over the others
        c.execute(
            "INSERT INTO url (url, host, kind, first_seen, consecutive_failures, consecutive_successes, "
            "alert_state, alert_failures, alert_successes, recent) "
            "SELECT 'https://' || h || '/2026/story-' || g || '.html', h, "
            "CASE WHEN g % 3 = 0 THEN 'image' ELSE 'page' END, now(), 0, 0, 'ok', 0, 0, '' "
            "FROM (SELECT g, CASE WHEN g % 4 = 0 THEN 'cache.example' ELSE "
            f"'h' || (1 + floor({hosts - 1} * power(random(), 3)))::int || '.example' END AS h "
            f"FROM generate_series(1, {urls}) g) s"
        )
        c.execute(
            "INSERT INTO occurrence (article_id, url_id, raw_url, location, role, related) "
            f"SELECT 1 + (g % {articles}), g, '', 'webUrl', 'web', false FROM generate_series(1, {urls}) g"
        )
        c.execute(  # half the URLs appear a second time, in another article's related items
            "INSERT INTO occurrence (article_id, url_id, raw_url, location, role, related) "
            f"SELECT 1 + ((g * 7) % {articles}), g, '', 'related[0].webUrl', 'related', true "
            f"FROM generate_series(1, {urls}, 2) g"
        )
        c.execute("ANALYZE")


STATE_UPDATE = (
    update(URLS)
    .where(URLS.c.id == bindparam("b_id"))
    .values({k: bindparam(k) for k in ("last_checked", "last_verdict", "consecutive_successes")})
)


def write_results(engine, run_id: int, lo: int, rows: int) -> float:  # type: ignore[no-untyped-def]
    """Rows per second through batches shaped like a worker's (200 results + 200 URL updates each)."""
    rng = random.Random(1)
    now = datetime.now(UTC)
    began = time.perf_counter()
    for start in range(lo, lo + rows, 200):
        ids = range(start, min(start + 200, lo + rows))
        res = [
            {
                "run_id": run_id,
                "url_id": i,
                "checked_at": now,
                "verdict": "ok" if rng.random() > 0.05 else "broken",
                "severity": "ok",
                "reason": "200 OK",
                "http_status": 200,
                "attempts": 1,
                "elapsed_ms": 80,
                "bytes_read": 0,
                "not_modified": False,
            }
            for i in ids
        ]
        state = [
            {"b_id": i, "last_checked": now, "last_verdict": "ok", "consecutive_successes": 1} for i in ids
        ]
        with engine.begin() as conn:
            executemany(conn, "sim_result", lambda c=conn: insert_ignore(c, RESULTS), res)
            executemany(
                conn,
                "sim_state",
                lambda: STATE_UPDATE,
                state,
            )
    return rows / (time.perf_counter() - began)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--urls", type=int, default=10_000_000)
    ap.add_argument("--articles", type=int, default=1_500_000)
    ap.add_argument("--hosts", type=int, default=50_000)
    ap.add_argument("--write-rows", type=int, default=200_000)
    ap.add_argument("--keep", action="store_true", help="keep the database (its name is printed)")
    args = ap.parse_args()
    db = f"lmm_sim_{uuid.uuid4().hex[:8]}"
    dsn = f"host=127.0.0.1 user=postgres dbname={db}"
    admin = psycopg.connect("host=127.0.0.1 user=postgres dbname=postgres", autocommit=True)
    admin.execute(f"CREATE DATABASE {db}")
    url = f"postgresql://postgres@127.0.0.1:5432/{db}"
    print(f"database {db}: {args.urls:,} URLs, {args.articles:,} articles, {args.hosts:,} hosts", flush=True)
    try:
        engine = open_engine(url)
        timed("fill (generate_series, indexes, ANALYZE)", fill, dsn, args.urls, args.articles, args.hosts)
        settings = Settings(database_url=url, distributed=DistributedSettings(enabled=True))
        with engine.connect() as conn:
            probe = runs.create_run(engine, trigger="sim", fingerprint="sim", now=datetime.now(UTC))
            counts = timed(
                "planner: host_counts (GROUP BY host over the plan)", ledger.host_counts, conn, probe, False
            )
        print(f"  {len(counts):,} hosts; biggest {max(counts.values()):,} URLs", flush=True)
        run_id, planned, total = timed(
            "planner: plan_run (counts, slices, shards, fan-in row)",
            plan_run,
            settings,
            engine,
            "sim",
            "sim",
            False,
        )
        print(f"  {len(planned):,} shards for {total:,} targets", flush=True)
        with engine.connect() as conn:
            biggest = conn.execute(
                select(RUN_SHARDS.c.hosts, RUN_SHARDS.c.url_lo, RUN_SHARDS.c.url_hi, RUN_SHARDS.c.url_count)
                .where(RUN_SHARDS.c.run_id == run_id)
                .order_by(RUN_SHARDS.c.url_count.desc())
                .limit(1)
            ).one()
            hosts = json.loads(biggest.hosts)
            id_range = (biggest.url_lo, biggest.url_hi) if biggest.url_lo is not None else None
            page = timed(
                f"worker: first plan page of the biggest shard ({biggest.url_count:,} URLs)",
                plan.plan_page,
                conn,
                run_id=run_id,
                after_id=0,
                limit=2000,
                only_failing=False,
                hosts=hosts,
                id_range=id_range,
            )
            if page:
                timed(
                    "worker: a later plan page of that shard",
                    plan.plan_page,
                    conn,
                    run_id=run_id,
                    after_id=page[-1].url_id,
                    limit=2000,
                    only_failing=False,
                    hosts=hosts,
                    id_range=id_range,
                )
        rate = write_results(engine, run_id, 1, args.write_rows)
        print(f"{'results: 200-row batches, one writer':58} {rate:8,.0f} rows/s", flush=True)
        with psycopg.connect(dsn, autocommit=True) as c:  # the rest of the night's results, at once
            c.execute(
                "INSERT INTO result (run_id, url_id, checked_at, verdict, severity, reason, attempts, "
                "elapsed_ms, bytes_read, not_modified) "
                f"SELECT {run_id}, g, now(), CASE WHEN g % 20 = 0 THEN 'broken' ELSE 'ok' END, 'ok', '', "
                f"1, 80, 0, false FROM generate_series({args.write_rows + 1}, {args.urls}) g"
            )
            c.execute("ANALYZE result")
        with engine.connect() as conn:
            found = timed("fan-in: verdict counts over the run's results", runs.verdict_counts, conn, run_id)
        print(f"  {sum(found.values()):,} results", flush=True)
        with psycopg.connect(dsn) as c:
            for name, total_b, index_b in c.execute(
                "SELECT relname, pg_total_relation_size(oid), pg_indexes_size(oid) FROM pg_class "
                "WHERE relname IN ('url', 'occurrence', 'article', 'result') ORDER BY 2 DESC"
            ):
                print(f"  {name:12} {total_b / 2**30:6.2f} GiB ({index_b / 2**30:.2f} GiB indexes)")
            (size,) = c.execute(f"SELECT pg_database_size('{db}')").fetchone()  # type: ignore[misc]
            print(f"  database     {size / 2**30:6.2f} GiB after one night's results", flush=True)
        engine.dispose()
    finally:
        if not args.keep:
            admin.execute(f"DROP DATABASE {db} WITH (FORCE)")
        admin.close()


if __name__ == "__main__":
    main()
