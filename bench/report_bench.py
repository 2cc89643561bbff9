"""Report benchmark: build + render every format over a large check history.

Usage: python bench/report_bench.py [--runs 50] [--urls 20000] [--repeat 3] [--db PATH]

Generates RUNS x URLS result rows (default 50 x 20,000 = 1,000,000) with occurrences,
size checks, state changes, findings and corpus errors into a fresh SQLite file
(bulk ``executemany`` in one transaction per run), then times ``build_report`` alone and
build + render per format and prints the median of REPEAT rounds. Target: under 10 s each.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import Engine

from monitor.store.db import open_engine
from reports import FORMATS, build_report, render

T0 = datetime(2024, 1, 1, 2, 30, tzinfo=UTC)
HOSTS = 400
DEAD_HOST_URLS = 300  # one host that dies in the last runs: many URLs, one line in "by host"


def _ts(moment: datetime) -> str:
    """The text SQLAlchemy's SQLite DateTime stores (UTC, no offset)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def _verdict(rng: random.Random, run: int, runs: int, url: int, image: bool) -> tuple[str, str, int | None]:
    if url < DEAD_HOST_URLS and run >= runs - 5:
        return "unreachable", "error", None
    roll = rng.random()
    if url % 97 == 0:  # flaky links alternate
        return ("broken", "error", 404) if run % 2 else ("ok", "ignore", 200)
    if url % 53 == 0:  # stays broken
        return "broken", "error", 404
    if roll < 0.02:
        return "broken", "error", 404
    if roll < 0.03:
        return "moved_permanently", "warning", 200
    if roll < 0.04:
        return ("blocked", "warning", 403) if roll < 0.035 else ("timeout", "warning", None)
    if image and roll < 0.045:
        return "not_image", "error", 200
    return "ok", "ignore", 200


def _put(cur: Any, table: str, columns: str, rows: Sequence[tuple[Any, ...]]) -> None:
    """Bulk insert ``rows`` (tuples in ``columns`` order) with one executemany."""
    names = [c.strip() for c in columns.split(",")]
    marks = ", ".join("?" for _ in names)
    cur.executemany(f"INSERT INTO {table} ({', '.join(names)}) VALUES ({marks})", rows)


def generate(engine: Engine, runs: int, urls: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute("PRAGMA synchronous=OFF")
        now = _ts(T0)
        articles = max(urls // 2, 1)
        _put(
            cur,
            "article",
            "id, path, title, size, mtime_ns, sha256, first_seen, last_seen",
            [(a + 1, f"news/{a:06d}.md", f"Article {a}", 0, 0, "", now, now) for a in range(articles)],
        )
        url_rows = []
        for u in range(urls):
            host = "dead.example" if u < DEAD_HOST_URLS else f"h{u % HOSTS}.example"
            kind = "image" if u % 5 == 0 else "page"
            url_rows.append((u + 1, f"https://{host}/p/{u}", host, kind, now, 0, 0, "ok", 0, 0, ""))
        _put(
            cur,
            "url",
            "id, url, host, kind, first_seen, consecutive_failures, consecutive_successes, alert_state,"
            " alert_failures, alert_successes, recent",
            url_rows,
        )
        occ_rows, image_occ = [], []
        occ_id = 0
        for u in range(urls):
            image = u % 5 == 0
            for k in range(1 if u % 2 else 2):
                occ_id += 1
                role, loc = ("image", f"images[{k}].url") if image else ("web", f"related[{k}].webUrl")
                declared = (1200, 630) if image else (None, None)
                article = (u * 7 + k) % articles + 1
                occ_rows.append((occ_id, article, u + 1, f"https://x/{u}", loc, role, False, *declared))
                if image:
                    image_occ.append((occ_id, u + 1))
        _put(
            cur,
            "occurrence",
            "id, article_id, url_id, raw_url, location, role, related, declared_width, declared_height",
            occ_rows,
        )
        raw.commit()
        for run in range(runs):
            started = T0 + timedelta(days=run)
            run_id = run + 1
            results: list[tuple[Any, ...]] = []
            counts: dict[str, int] = {}
            for u in range(urls):
                verdict, severity, status = _verdict(rng, run, runs, u, u % 5 == 0)
                counts[verdict] = counts.get(verdict, 0) + 1
                final = f"https://new.example/p/{u}" if verdict == "moved_permanently" else None
                redirects = (
                    json.dumps([[f"https://x/{u}", 301, final], [final, 200, None]]) if final else None
                )
                image = u % 5 == 0 and verdict == "ok"
                checked = _ts(started + timedelta(seconds=u % 600))
                facts = (
                    status,
                    final,
                    redirects,
                    1,
                    120,
                    "GET",
                    "image/jpeg" if image else "text/html",
                    4096,
                )
                picture = ("jpeg", 1200, 675) if image else (None, None, None)
                results.append((run_id, u + 1, checked, verdict, severity, verdict, *facts, *picture, False))
            finished = _ts(started + timedelta(minutes=40))
            _put(
                cur,
                "run",
                "id, started_at, finished_at, heartbeat_at, state, trigger, config_fingerprint,"
                " total_targets, checked, counts",
                [
                    (
                        run_id,
                        _ts(started),
                        finished,
                        finished,
                        "finished",
                        "nightly",
                        "",
                        urls,
                        urls,
                        json.dumps(counts),
                    )
                ],
            )
            _put(
                cur,
                "result",
                "run_id, url_id, checked_at, verdict, severity, reason, http_status, final_url, redirects,"
                " attempts, elapsed_ms, method, content_type, bytes_read, image_format, image_width,"
                " image_height, not_modified",
                results,
            )
            sizes = []
            for occ, url in image_occ:
                roll = (occ * 31 + run) % 100
                verdict = "size_mismatch" if roll < 2 else "scaled" if roll < 7 else "match"
                sizes.append(
                    (run_id, occ, url, verdict, 1200, 630, 1200, 675 if verdict != "scaled" else 630)
                )
            _put(
                cur,
                "size_check",
                "run_id, occurrence_id, url_id, verdict, declared_width, declared_height, actual_width,"
                " actual_height",
                sizes,
            )
            raw.commit()
        last = _ts(T0 + timedelta(days=runs - 1))
        changes = [(runs, u + 1, last, "ok", "broken") for u in range(DEAD_HOST_URLS)]
        changes += [(max(runs - 3, 1), u + 1, last, "ok", "flapping") for u in range(0, urls, 97)]
        _put(cur, "state_change", "run_id, url_id, at, from_state, to_state", changes)
        cur.execute(
            "UPDATE url SET failing_since = ?, consecutive_failures = 5, alert_state = 'broken'"
            " WHERE id <= ?",
            (_ts(T0 + timedelta(days=runs - 5)), DEAD_HOST_URLS),
        )
        mismatch = ("cdnAmpWebUrl", "amp_cache_mismatch", "AMP cache URL differs", "https://a", "https://b")
        _put(
            cur,
            "finding",
            "article_id, location, kind, message, value, expected",
            [(a + 1, *mismatch) for a in range(0, articles, 5)],
        )
        _put(
            cur,
            "corpus_error",
            "path, kind, message, line, column, first_seen, last_seen",
            [(f"bad/{i}.md", "yaml_syntax", "bad", 1, 1, now, now) for i in range(100)],
        )
        cur.execute("ANALYZE")
        raw.commit()
    finally:
        raw.close()


def _median(fn: object, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--urls", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--db", type=Path, default=Path("bench/out/report-bench.db"))
    args = parser.parse_args()

    for suffix in ("", "-wal", "-shm"):
        Path(f"{args.db}{suffix}").unlink(missing_ok=True)
    engine = open_engine(f"sqlite:///{args.db}")
    start = time.perf_counter()
    generate(engine, args.runs, args.urls)
    print(
        f"generated {args.runs * args.urls:,} result rows ({args.runs} runs x {args.urls:,} URLs) "
        f"in {time.perf_counter() - start:.1f} s -> {args.db}"
    )

    data = build_report(engine)
    broken = data.broken
    if broken is None:
        raise SystemExit("report has no broken section")
    sizes = {fmt: len(render(data, fmt)) for fmt in FORMATS}
    print(f"latest run: {broken.total} broken URLs on {broken.hosts_total} hosts; output chars {sizes}")
    print(f"{'step':<22}{'median s':>10}   (of {args.repeat})")
    print(f"{'build_report':<22}{_median(lambda: build_report(engine), args.repeat):>10.3f}")
    worst = 0.0
    for fmt in FORMATS:
        seconds = _median(lambda fmt=fmt: render(build_report(engine), fmt), args.repeat)
        worst = max(worst, seconds)
        print(f"{'build + ' + fmt:<22}{seconds:>10.3f}")
    engine.dispose()
    print(f"slowest format {worst:.3f} s: {'OK' if worst < 10 else 'TOO SLOW'} (target < 10 s)")
    return 0 if worst < 10 else 1


if __name__ == "__main__":
    raise SystemExit(main())
