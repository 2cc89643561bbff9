"""Recovery benchmark: how long `monitor check --resume` takes to finish a run killed with SIGKILL.

Usage: .venv/bin/python bench/recover_bench.py [--urls 20000] [--hosts 8] [--latency-ms 2] [--kill-at 0.5]

1. starts ``python -m tests.server`` on ``--hosts`` ports of 127.0.0.1 (one host key each);
2. writes a corpus of ``--urls`` distinct page links (ten per article) and inventories it
   with ``monitor links`` (not timed);
3. starts ``monitor check`` and sends it SIGKILL once ``--kill-at`` of the URLs have a stored
   result (nothing graceful: the run row stays 'running', the lease stays taken);
4. times ``monitor check --resume``: start-up, marking the orphaned run interrupted, taking
   over the lease, planning only the URLs without a result, checking them, and the report;
5. verifies exactly one result per URL in the run, and prints the figures with a full
   uninterrupted check of the same corpus for comparison.

Loopback only; everything lives in a temporary folder that is removed afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable


def start_server(hosts: int, latency_ms: float) -> tuple[subprocess.Popen[str], list[int]]:
    proc = subprocess.Popen(
        [PY, "-m", "tests.server", "--port", "0", "--listeners", str(hosts), "--latency-ms", str(latency_ms)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("READY"):
        raise SystemExit(f"fixture server did not start: {line!r}")
    return proc, [int(p) for p in line.split()[1:]]


def write_corpus(folder: Path, urls: int, ports: list[int]) -> None:
    """Ten distinct page links per article, spread round-robin over the listeners."""
    for a in range(0, urls, 10):
        sub = folder / f"{a // 10000:03d}"
        sub.mkdir(parents=True, exist_ok=True)
        links = "".join(
            f"[l{i}](http://127.0.0.1:{ports[i % len(ports)]}/status/200?n={i})\n"
            for i in range(a, min(a + 10, urls))
        )
        (sub / f"a{a:07d}.md").write_text(f"---\ntitle: recover bench {a}\n---\n{links}", encoding="utf-8")


def results(db: Path) -> int:
    try:
        with sqlite3.connect(db, timeout=30) as conn:
            return int(conn.execute("SELECT count(*) FROM result").fetchone()[0])
    except sqlite3.Error:
        return 0


def monitor(cfg: Path, *args: str) -> list[str]:
    return [PY, "-m", "monitor.cli", "-c", str(cfg), *args]


def timed(cmd: list[str]) -> tuple[float, subprocess.CompletedProcess[str]]:
    started = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if done.returncode not in (0, 2):
        raise SystemExit(f"{' '.join(cmd[3:])} failed ({done.returncode}): {done.stderr[-2000:]}")
    return time.perf_counter() - started, done


def event_times(stderr: str) -> dict[str, datetime]:
    """First timestamp of each JSON log event of a run."""
    seen: dict[str, datetime] = {}
    for line in stderr.splitlines():
        if line.startswith("{"):
            event = json.loads(line)
            seen.setdefault(event["event"], datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00")))
    return seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--urls", type=int, default=20000)
    parser.add_argument("--hosts", type=int, default=8)
    parser.add_argument("--latency-ms", type=float, default=2.0)
    parser.add_argument("--kill-at", type=float, default=0.5, help="fraction of URLs done before SIGKILL")
    args = parser.parse_args()
    server, ports = start_server(args.hosts, args.latency_ms)
    try:
        with tempfile.TemporaryDirectory(prefix="lmm-recover-") as tmp:
            work = Path(tmp)
            write_corpus(work / "corpus", args.urls, ports)
            db = work / "check.db"
            cfg = work / "config.toml"
            cfg.write_text(
                f'database_url = "sqlite:///{db}"\n[corpus]\nroots = ["{work / "corpus"}"]\n'
                '[safety]\nallow_cidrs = ["127.0.0.1/32"]\n'
                "[http]\nconcurrency = 128\nper_host_concurrency = 16\nmax_retries = 0\n"
                '[logging]\nformat = "json"\nlevel = "info"\n',
                encoding="utf-8",
            )
            timed(monitor(cfg, "links", "--summary"))
            full_s, _ = timed(monitor(cfg, "check", "-f", "json", "-o", str(work / "full.json")))

            # a fresh run of the same corpus, killed part-way
            victim = subprocess.Popen(
                monitor(cfg, "check"), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            base = results(db)
            target = base + int(args.urls * args.kill_at)
            started = time.perf_counter()
            while results(db) < target and victim.poll() is None:
                time.sleep(0.02)
            victim.send_signal(signal.SIGKILL)
            victim.wait()
            killed_after = time.perf_counter() - started
            done_before = results(db) - base

            launched = datetime.now(UTC)
            resume_s, resumed = timed(
                monitor(cfg, "check", "--resume", "-f", "json", "-o", str(work / "r.json"))
            )
            marks = event_times(resumed.stderr)
            with sqlite3.connect(db) as conn:
                run_id, state = conn.execute("SELECT id, state FROM run ORDER BY id DESC LIMIT 1").fetchone()
                total, distinct = conn.execute(
                    "SELECT count(*), count(DISTINCT url_id) FROM result WHERE run_id = ?", (run_id,)
                ).fetchone()
            ok = state == "finished" and total == distinct == args.urls
            ready = (
                (marks["run.started"] - launched).total_seconds() if "run.started" in marks else float("nan")
            )
            orphan_marked = "run.interrupted" in marks
            remaining = args.urls - done_before
            verdict = "OK" if ok else "WRONG"
            print(
                f"corpus: {args.urls} URLs on {args.hosts} host keys, {args.latency_ms:g} ms server latency"
            )
            print(f"full uninterrupted check:   {full_s:6.1f} s wall")
            print(f"killed (SIGKILL) after:     {killed_after:6.1f} s with {done_before} results stored")
            print(f"check --resume:             {resume_s:6.1f} s wall for the remaining {remaining}")
            print(
                f"  launch to resumed run started: {ready:.2f} s (orphan marked interrupted: {orphan_marked})"
            )
            print(f"result: run {run_id} {state}, {total} results, {distinct} distinct URLs: {verdict}")
            if not ok:
                raise SystemExit(1)
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()


if __name__ == "__main__":
    os.environ.setdefault("PYTHONPATH", str(ROOT))
    main()
