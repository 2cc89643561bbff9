"""Distributed-mode figures: throughput with 1 and 2 workers, queue overhead per shard, recovery time.

Usage: .venv/bin/python bench/distributed_bench.py [--articles 1000] [--hosts 20] [--latency-ms 50]

Generates a corpus with bench/gen_corpus.py (--base-url), moves each bench host onto its own
listener of one fixture server (``python -m tests.server --listeners H``) so hosts are real
Host headers and can be sharded, then in a throwaway PostgreSQL database (127.0.0.1:5432):

* for 1 and 2 ``monitor worker`` processes: queue a run, start the workers, time until finalized;
* queue overhead: median gap between one shard's end and the next shard's start on a worker;
* recovery: SIGKILL a worker mid-shard and time until its shard runs again on the other one.
"""

from __future__ import annotations

import argparse
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable


def sh(*args: str, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, check=True, capture_output=True, text=True, cwd=ROOT, **kw)  # type: ignore[call-overload]


def write_config(
    tmp: Path, db: str, schema: str, corpus: Path, shard_size: int, hb: float, stall: float
) -> Path:
    cfg = tmp / f"{schema}.toml"
    cfg.write_text(
        f'database_url = "postgresql://postgres@127.0.0.1:5432/{db}?options=-csearch_path%3D{schema}"\n'
        f'[corpus]\nroots = ["{corpus}"]\n[safety]\nallow_private = true\n'
        "[http]\nmax_retries = 0\n[jobs]\nlock_ttl_seconds = 30\nshutdown_grace_seconds = 1\n"
        f"[distributed]\nenabled = true\nshard_size = {shard_size}\nhost_split_threshold = {shard_size * 4}\n"
        f"heartbeat_seconds = {hb}\nstall_seconds = {stall}\n"
        '[logging]\nformat = "json"\nlevel = "warning"\n'
    )
    return cfg


def q(db: str, schema: str, sql: str) -> list[tuple[object, ...]]:
    with psycopg.connect(f"host=127.0.0.1 user=postgres dbname={db} options=-csearch_path={schema}") as c:
        return c.execute(sql).fetchall()


def workers(cfg: Path, n: int, tmp: Path) -> list[subprocess.Popen[bytes]]:
    return [
        subprocess.Popen(
            [PY, "-m", "monitor.cli", "-c", str(cfg), "worker", "--concurrency", "2"],
            stdout=(tmp / f"w{i}-{cfg.stem}.log").open("wb"),
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
        for i in range(n)
    ]


def wait_finished(db: str, schema: str, timeout: float = 900) -> None:
    deadline = time.monotonic() + timeout
    while q(db, schema, "SELECT state FROM run ORDER BY id DESC LIMIT 1")[0][0] == "running":
        if time.monotonic() > deadline:
            raise SystemExit("run did not finish")
        time.sleep(0.1)


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        p.wait(30)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--articles", type=int, default=1000)
    ap.add_argument("--hosts", type=int, default=20)
    ap.add_argument("--latency-ms", type=float, default=50)
    ap.add_argument("--port", type=int, default=18400)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="lmm-dist-bench-"))
    corpus = tmp / "corpus"
    base = f"http://127.0.0.1:{args.port}"
    sh(
        PY,
        "bench/gen_corpus.py",
        str(corpus),
        str(args.articles),
        "--hosts",
        str(args.hosts),
        "--base-url",
        base,
    )
    pattern = re.compile(re.escape(base) + r"/h(\d+)\.bench\.test/")
    for f in corpus.rglob("*.md"):
        text = f.read_text()
        f.write_text(
            pattern.sub(lambda m: f"http://127.0.0.1:{args.port + 1 + int(m[1])}/h{m[1]}.bench.test/", text)
        )
    server = subprocess.Popen(
        [PY, "-m", "tests.server", "--port", str(args.port), "--latency-ms", str(args.latency_ms),
         "--listeners", str(args.hosts + 1)],
        stdout=subprocess.PIPE, cwd=ROOT,
    )  # fmt: skip
    assert server.stdout is not None and server.stdout.readline().startswith(b"READY")
    db = f"lmm_bench_{uuid.uuid4().hex[:8]}"
    admin = psycopg.connect("host=127.0.0.1 user=postgres dbname=postgres", autocommit=True)
    admin.execute(f"CREATE DATABASE {db}")
    try:
        for n in (1, 2):
            schema = f"w{n}"
            with psycopg.connect(f"host=127.0.0.1 user=postgres dbname={db}", autocommit=True) as c:
                c.execute(f"CREATE SCHEMA {schema}")
            cfg = write_config(tmp, db, schema, corpus, shard_size=max(50, args.articles), hb=1, stall=5)
            sh(PY, "-m", "monitor.cli", "-c", str(cfg), "check")
            urls = q(db, schema, "SELECT total_targets FROM run ORDER BY id DESC LIMIT 1")[0][0]
            shards = q(db, schema, "SELECT count(*) FROM run_shard")[0][0]
            started = time.perf_counter()
            procs = workers(cfg, n, tmp)
            wait_finished(db, schema)
            took = time.perf_counter() - started
            stop(procs)
            gaps = []  # per shard: its start minus the last end of a shard on the same worker before it
            rows = q(db, schema, "SELECT worker, started_at, finished_at FROM run_shard WHERE state='done'")
            for w, start, _ in rows:
                ends = [f for w2, _, f in rows if w2 == w and f <= start]
                if ends:
                    gaps.append((start - max(ends)).total_seconds())
            gap = f"{statistics.median(gaps) * 1000:.0f} ms" if gaps else "n/a"
            print(f"{n} worker(s): {urls} URLs in {shards} shards, {took:.1f} s incl. worker start, "
                  f"{urls / took:.0f} URLs/s; median shard-to-shard gap {gap}", flush=True)  # fmt: skip
        schema = "kill"
        with psycopg.connect(f"host=127.0.0.1 user=postgres dbname={db}", autocommit=True) as c:
            c.execute(f"CREATE SCHEMA {schema}")
        cfg = write_config(tmp, db, schema, corpus, shard_size=max(50, args.articles // 2), hb=1, stall=5)
        sh(PY, "-m", "monitor.cli", "-c", str(cfg), "check")
        procs = workers(cfg, 2, tmp)
        while True:
            row = q(
                db, schema, "SELECT id, worker FROM run_shard WHERE state='running' AND checked > 0 LIMIT 1"
            )
            if row:
                break
            time.sleep(0.05)
        shard_id, owner = row[0]
        pid = int(str(owner).rpartition(":")[2])
        victim = next(p for p in procs if p.pid == pid)
        victim.send_signal(signal.SIGKILL)
        killed = time.perf_counter()
        sql = f"SELECT state FROM run_shard WHERE id={shard_id} AND attempt > 1"
        while not q(db, schema, sql):
            time.sleep(0.05)
        requeued = time.perf_counter() - killed
        while q(db, schema, sql)[0][0] != "running":
            time.sleep(0.05)
        print(
            f"SIGKILL -> shard re-queued after {requeued:.1f} s, running again on the other worker after "
            f"{time.perf_counter() - killed:.1f} s (heartbeat 1 s, stall 5 s, 2 slots per worker)",
            flush=True,
        )
        wait_finished(db, schema)
        stop(procs)
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(10)
        admin.execute(f"DROP DATABASE {db} WITH (FORCE)")
        admin.close()


if __name__ == "__main__":
    main()
