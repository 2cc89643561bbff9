"""Scale-out figures: 1, 2 and 4 `monitor worker`s against one local `monitor check`, same corpus.

Usage: .venv/bin/python bench/scale_bench.py [--articles 2000] [--latency-ms 50] [--per-host 64]
                                             [--concurrency 64] [--workers 1,2,4]
                                             [--split-threshold 2000] [--repeat 1]

The corpus is article_bench's (skewed hosts, 404s, redirects, resets, 503s and 429s that
recover, real images), served by one fixture server on 127.0.0.1 ... 127.0.0.21 with a fixed
latency, so the network rather than the CPU should be the limit up to several workers.
Each mode gets a schema of its own in a throwaway PostgreSQL database (127.0.0.1:5432) that
starts empty, so every mode pays the same inventory. A distributed mode starts its workers
first (idle on the queue), then times `monitor check` (inventory, planning, queueing) until
the workers have finalized the run. Per mode it prints the exit code, wall, the floor for that
many processes (URLs x latency / (concurrency x processes)), the busiest host's floor (which no
number of workers beats), the speed-up over local, CPU per URL (every process of the mode), how
busy the whole machine's cores were meanwhile (PostgreSQL, the server and anything else running
included: near 100% the mode is CPU-bound, not network-bound) and whether every URL's verdict
equals the local run's. Hosts above ``--split-threshold`` URLs are split into slices that run at
once on several workers, each within a share of the per-host limit. Loopback only.
"""

from __future__ import annotations

import argparse
import collections
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from article_bench import HOSTS, write_corpus
from check_bench import ROOT, start_server

PY = sys.executable


def write_config(work: Path, db: str, schema: str, args: argparse.Namespace, distributed: bool) -> Path:
    cfg = work / f"{schema}.toml"
    cfg.write_text(
        f'database_url = "postgresql://postgres@127.0.0.1:5432/{db}?options=-csearch_path%3D{schema}"\n'
        f'[corpus]\nroots = ["{work}/corpus"]\n'
        '[safety]\nallow_cidrs = ["127.0.0.0/8"]\n'
        f"[http]\nconcurrency = {args.concurrency}\nper_host_concurrency = {args.per_host}\n"
        "processes = 1\ntotal_timeout = 10\nread_timeout = 10\nmax_retries = 2\n"
        "[jobs]\nlock_ttl_seconds = 60\nshutdown_grace_seconds = 1\n"
        f"[distributed]\nenabled = {'true' if distributed else 'false'}\n"
        f"shard_size = {args.shard_size}\nhost_split_threshold = {args.split_threshold}\n"
        f"worker_concurrency = {args.shards_at_once}\n"
        "heartbeat_seconds = 1\nstall_seconds = 30\n"
        '[logging]\nformat = "json"\nlevel = "warning"\n'
    )
    return cfg


def q(db: str, schema: str, sql: str) -> list[tuple[object, ...]]:
    with psycopg.connect(f"host=127.0.0.1 user=postgres dbname={db} options=-csearch_path={schema}") as c:
        return c.execute(sql).fetchall()


def machine_busy() -> tuple[float, float]:
    """(all jiffies, idle jiffies) of the whole machine: what every process used, ours or not."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return float(sum(fields)), float(fields[3] + fields[4])


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def verdicts(db: str, schema: str) -> dict[str, str]:
    rows = q(
        db,
        schema,
        "SELECT u.url, r.verdict FROM result r JOIN url u ON u.id = r.url_id "
        "WHERE r.run_id = (SELECT max(id) FROM run)",
    )
    return {str(u): str(v) for u, v in rows}


def phases(db: str, schema: str, t0: float, wall: float) -> None:
    """Where a distributed run's time went: inventory and planning, queue pick-up, shards, fan-in."""
    (run_start, run_end), *_ = q(
        db, schema, "SELECT extract(epoch FROM started_at), extract(epoch FROM finished_at) FROM run"
    )
    shards = q(
        db,
        schema,
        "SELECT worker, url_count, extract(epoch FROM started_at), extract(epoch FROM finished_at) "
        "FROM run_shard ORDER BY started_at",
    )
    first = min(float(s[2]) for s in shards)
    last = max(float(s[3]) for s in shards)
    lengths = sorted(float(s[3]) - float(s[2]) for s in shards)
    print(
        f"  {schema}: run row at {float(run_start) - t0:.1f} s (inventory before it), first shard starts "
        f"{first - float(run_start):.1f} s later, last shard ends at {last - t0:.1f} s, run finalized at "
        f"{float(run_end) - t0:.1f} s, check returned at {wall:.1f} s; {len(shards)} shards of "
        f"{min(int(s[1]) for s in shards)}-{max(int(s[1]) for s in shards)} URLs took "
        f"{lengths[0]:.1f}-{lengths[-1]:.1f} s (median {lengths[len(lengths) // 2]:.1f} s)",
        flush=True,
    )


def forget(port: int) -> None:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/forget-counters", timeout=10) as answer:
        answer.read()  # every mode meets the same 503s and 429s


def run_mode(
    args: argparse.Namespace, work: Path, db: str, port: int, workers: int, rep: int = 0
) -> tuple[dict[str, object], dict[str, str]]:
    schema = (f"w{workers}" if workers else "local") + (f"_{rep}" if rep else "")
    with psycopg.connect(f"host=127.0.0.1 user=postgres dbname={db}", autocommit=True) as c:
        c.execute(f"CREATE SCHEMA {schema}")
    cfg = write_config(work, db, schema, args, distributed=workers > 0)
    base = [PY, "-m", "monitor.cli", "-c", str(cfg)]
    if workers:  # create the schema and the queue before the workers poll it
        subprocess.run([*base, "db", "upgrade"], cwd=ROOT, check=True, capture_output=True)
    procs = [
        subprocess.Popen(
            [*base, "worker"],
            cwd=ROOT,
            stdout=(work / f"{schema}-{i}.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
        for i in range(workers)
    ]
    time.sleep(2 if workers else 0)  # let them reach the queue: start-up is not what is measured
    forget(port)
    cpu0 = children_cpu()
    total0, idle0 = machine_busy()
    started = time.perf_counter()
    started_wall = time.time()
    cmd = [*base, "check", "--format", "json", "--output", str(work / f"{schema}.json")]
    if workers:
        cmd.insert(len(base) + 1, "--wait-run")
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - started
    total1, idle1 = machine_busy()
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        p.wait(60)
    cpu = children_cpu() - cpu0  # the workers' CPU counts once they are reaped
    if done.returncode not in (0, 2):
        print(f"{schema}: exit {done.returncode}: {done.stderr.strip()[-400:]}", file=sys.stderr)
    found = verdicts(db, schema)
    if workers:
        phases(db, schema, started_wall, wall)
    row: dict[str, object] = {
        "exit": done.returncode,
        "wall s": wall,
        "CPU s": cpu,
        "ms/URL": cpu / max(1, len(found)) * 1000,
        "busy %": 100 * (1 - (idle1 - idle0) / max(1.0, total1 - total0)),
        "URLs": len(found),
    }
    return row, found


HEADS = ["exit", "wall s", "floor s", "x floor", "vs local", "CPU s", "ms/URL", "busy %", "URLs", "differ"]


def one_round(
    args: argparse.Namespace,
    work: Path,
    db: str,
    port: int,
    rep: int,
    urls: int,
    lat: float,
    host_floor: float,
) -> dict[str, dict[str, object]]:
    """Local, then each worker count, on fresh schemas; the rows of one round."""
    rows: dict[str, dict[str, object]] = {}
    local, want = run_mode(args, work, db, port, 0, rep)
    rows["local check"] = local
    for n in (int(x) for x in args.workers.split(",")):
        row, got = run_mode(args, work, db, port, n, rep)
        row["differ"] = sum(1 for u, v in want.items() if got.get(u) != v) + len(set(got) - set(want))
        rows[f"{n} worker(s)"] = row
    for name, row in rows.items():
        n = int(name.split()[0]) if name[0].isdigit() else 1
        floor = max(urls * lat / (args.concurrency * n), host_floor)
        row["floor s"] = floor
        row["x floor"] = float(row["wall s"]) / floor  # type: ignore[arg-type]
        row["vs local"] = float(row["wall s"]) / float(local["wall s"])  # type: ignore[arg-type]
    return rows


def print_table(title: str, rows: dict[str, dict[str, object]]) -> None:
    print(title)
    print(f"{'':14}" + "".join(f"{h:>9}" for h in HEADS))
    for name, row in rows.items():
        cells = [row.get(h, "") for h in HEADS]
        print(f"{name:14}" + "".join(f"{c:>9.2f}" if isinstance(c, float) else f"{c!s:>9}" for c in cells))
    sys.stdout.flush()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--articles", type=int, default=2000)
    ap.add_argument("--latency-ms", type=float, default=50.0)
    ap.add_argument("--per-host", type=int, default=64)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--shard-size", type=int, default=2000)
    ap.add_argument(
        "--split-threshold",
        type=int,
        default=2000,
        help="[distributed] host_split_threshold: bigger hosts become slices with shares of the limit",
    )
    ap.add_argument("--workers", default="1,2,4")
    ap.add_argument("--shards-at-once", type=int, default=4, help="[distributed] worker_concurrency")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=1, help="rounds of all modes; medians printed at the end")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="lmm-scale-"))
    server, ports = start_server(HOSTS, args.latency_ms)
    port = ports[0]
    corpus = write_corpus(work / "corpus", port, args.articles, args.seed)
    by_host = collections.Counter(corpus.host_of.values())
    busiest = max(by_host.values())
    urls = len(corpus.expect)
    lat = args.latency_ms / 1000
    host_floor = busiest * lat / args.per_host
    print(
        f"{args.articles} articles, {urls} distinct URLs over {len(by_host)} hosts; busiest host carries "
        f"{busiest} ({busiest / urls:.0%}): its floor {host_floor:.1f} s at per-host {args.per_host}; "
        f"latency {args.latency_ms} ms, concurrency {args.concurrency} per process",
        flush=True,
    )
    db = f"lmm_scale_{uuid.uuid4().hex[:8]}"
    admin = psycopg.connect("host=127.0.0.1 user=postgres dbname=postgres", autocommit=True)
    admin.execute(f"CREATE DATABASE {db}")
    rounds: list[dict[str, dict[str, object]]] = []
    try:
        for rep in range(args.repeat):
            rows = one_round(args, work, db, port, rep, urls, lat, host_floor)
            rounds.append(rows)
            print_table(f"round {rep + 1} of {args.repeat}", rows)
        if args.repeat > 1:
            medians: dict[str, dict[str, object]] = {}
            for name, first in rounds[0].items():
                values = {
                    h: [r[name][h] for r in rounds] for h, v in first.items() if isinstance(v, int | float)
                }
                medians[name] = {
                    h: statistics.median_low(vs) if isinstance(first[h], int) else statistics.median(vs)  # type: ignore[type-var]
                    for h, vs in values.items()
                }
            print_table(f"medians of {args.repeat} rounds", medians)
    finally:
        server.terminate()
        server.wait()
        admin.execute(f"DROP DATABASE {db} WITH (FORCE)")
        admin.close()


if __name__ == "__main__":
    main()
