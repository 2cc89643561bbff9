"""Article-shaped benchmark: `monitor check` against lychee on a skewed, error-rich news corpus.

Usage:
    .venv/bin/python bench/article_bench.py [--articles 2000] [--per-host 8] [--latency-ms 50]
                                            [--concurrency 64] [--seed 1] [--skip-lychee]
                                            [--profile STACKS.txt]  (needs py-spy)

The uniform benchmark (bench/check_bench.py) gives every host the same share and every URL a
200, so per-host limits never bind. Real news corpora are not like that; this one is built from
what the real articles in tests/data/articles show:
- 21 hosts (127.0.0.1 ... 127.0.0.21, so both tools apply per-host limits by host name); the
  AMP cache host (127.0.0.1) carries every ``cdnAmpWebUrl`` plus Zipf-like publisher shares
  put the biggest host at about a quarter of all URLs;
- per article: webUrl, ampWebUrl, cdnAmpWebUrl, originalUrl, 1-2 images, 2-3 related items
  with a webUrl and an image each;
- pages: about 4.5% 404/410, 1.5% 503 that recovers on the first retry, 0.3% connection
  resets, 0.1% that never answer (timeouts), 6% redirect chains of 1-3 hops, and on one host
  0.5% 429 with ``Retry-After: 1`` that recovers; images: real files of 5-300 KB from
  tests/data/images in every common format, 3% of them 404, 5% declared at a wrong size.

It prints, for monitor's first run (inventory included: the database starts empty) and for
lychee on the same URLs with the same global and per-host limits, the same timeout and the
same retry count: wall, CPU, peak RSS (the largest process, from /usr/bin/time; "tree MB"
samples all of a tool's processes), bytes and requests the server saw, each as a ratio to
lychee and to the floor max(global floor, busiest host's floor). Both tools' exit codes and
verdict counts are printed next to what the corpus holds, so a tool that fails fast never
looks fast. Loopback only.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import shutil
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from check_bench import ROOT, print_table, served, start_server, stats

HOSTS = 21
CACHE_HOST = 1  # the AMP cache host: every cdnAmpWebUrl
RETRY_AFTER_HOST = 3
TIMEOUT_S = 10
RETRIES = 2


@dataclass
class Corpus:
    """The URLs written, with what each should come back as (the corpus's own verdict counts)."""

    expect: dict[str, str] = field(default_factory=dict)  # url -> expected class
    host_of: dict[str, int] = field(default_factory=dict)

    def add(self, url: str, host: int, expected: str) -> str:
        self.expect.setdefault(url, expected)
        self.host_of.setdefault(url, host)
        return url


def images() -> list[tuple[str, int, int]]:
    """Real files of 5-300 KB with their true (displayed) size, from the vendored manifest."""
    manifest = json.loads((ROOT / "tests" / "data" / "images" / "manifest.json").read_text())
    found = []
    for entry in manifest["files"]:
        w, h = entry.get("displayed_width"), entry.get("displayed_height")
        if 5_000 <= entry["bytes"] <= 300_000 and w and h and entry["file"].rsplit(".", 1)[-1] != "json":
            found.append((entry["file"], int(w), int(h)))
    return sorted(found)


def publisher_weights() -> list[float]:
    """Zipf-like shares over the 20 publisher hosts (2..21)."""
    return [1 / (k**1.1) for k in range(1, HOSTS)]


def page_url(rng: random.Random, base: str, corpus: Corpus, host: int, uid: str) -> str:
    roll = rng.random()
    prefix = f"http://127.0.0.{host}:{base}"
    if roll < 0.045:
        code = rng.choice((404, 410))
        return corpus.add(f"{prefix}/status/{code}?u={uid}", host, "broken")
    if roll < 0.060:
        return corpus.add(f"{prefix}/flaky/1?key={uid}", host, "ok")
    if roll < 0.063:
        return corpus.add(f"{prefix}/reset?u={uid}", host, "unreachable")
    if roll < 0.064:
        return corpus.add(f"{prefix}/slow-headers/{(TIMEOUT_S + 20) * 1000}?u={uid}", host, "timeout")
    if roll < 0.124:
        hops = rng.choice((1, 2, 3))
        return corpus.add(f"{prefix}/redirect/{hops}?u={uid}", host, "redirected")
    if host == RETRY_AFTER_HOST and roll < 0.129:
        return corpus.add(f"{prefix}/retry-after/1?key={uid}", host, "ok")
    return corpus.add(f"{prefix}/page/{uid}", host, "ok")


def image_entry(
    rng: random.Random, base: str, corpus: Corpus, host: int, uid: str, files: list[tuple[str, int, int]]
) -> tuple[str, int, int]:
    name, w, h = rng.choice(files)
    prefix = f"http://127.0.0.{host}:{base}"
    if rng.random() < 0.03:
        return corpus.add(f"{prefix}/status/404?img={uid}", host, "broken"), w, h
    url = corpus.add(f"{prefix}/image/{name}?u={uid}", host, "ok")
    if rng.random() < 0.05:
        w, h = w + 10, h  # a declared size the file does not have: a size mismatch
    return url, w, h


def write_corpus(folder: Path, port: int, articles: int, seed: int) -> Corpus:
    rng = random.Random(seed)
    files = images()
    corpus = Corpus()
    weights = publisher_weights()
    publishers = list(range(2, HOSTS + 1))
    for i in range(articles):
        pub = rng.choices(publishers, weights)[0]
        img_host = rng.choices(publishers, weights)[0]
        web = page_url(rng, str(port), corpus, pub, f"{i}w")
        amp = page_url(rng, str(port), corpus, pub, f"{i}a")
        cdn = page_url(rng, str(port), corpus, CACHE_HOST, f"{i}c")
        orig = page_url(rng, str(port), corpus, rng.choices(publishers, weights)[0], f"{i}o")
        lines = [
            "---",
            f'title: "Article {i}"',
            f'originalUrl: "{orig}"',
            f'webUrl: "{web}"',
            f'ampWebUrl: "{amp}"',
            f'cdnAmpWebUrl: "{cdn}"',
            "images:",
        ]
        for k in range(rng.choice((1, 1, 2))):
            url, w, h = image_entry(rng, str(port), corpus, img_host, f"{i}i{k}", files)
            lines += [f'  - url: "{url}"', f"    width: {w}", f"    height: {h}"]
        lines.append("related:")
        for k in range(rng.choice((2, 3))):
            host = rng.choices(publishers, weights)[0]
            rweb = page_url(rng, str(port), corpus, host, f"{i}r{k}")
            url, w, h = image_entry(rng, str(port), corpus, host, f"{i}r{k}i", files)
            lines += [
                f'  - webUrl: "{rweb}"',
                "    images:",
                f'      - url: "{url}"',
                f"        width: {w}",
                f"        height: {h}",
            ]
        lines += ["---", ""]
        sub = folder / f"{i // 1000:04d}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"a{i:06d}.md").write_text("\n".join(lines))
    return corpus


def busiest_busy(port: int, host: int, cmd: list[str], env: dict[str, str] | None = None) -> dict[str, float]:
    """``served(cmd)`` plus ``busy_s``: the server seconds the tool's requests to the busiest host took,
    over the per-host limit. No client with that limit can finish the host sooner, given the
    requests it chose to send (retries, redirect hops, timeouts waited out)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/forget-counters", timeout=10) as answer:
        answer.read()  # every tool meets the same 503s and 429s, not only the first one
    before = stats(port).get("by_host", {})
    started = time.time()
    row = served(port, cmd, env)
    figures = stats(port)
    after = figures.get("by_host", {})
    key = next((k for k in after if k.startswith(f"127.0.0.{host}:")), "")
    row["busy_s"] = after.get(key, [0, 0.0])[1] - before.get(key, [0, 0.0])[1]
    first = figures.get("first_at")
    row["first_s"] = first - started if first is not None else float("nan")
    return row


def write_config(work: Path, name: str, args: argparse.Namespace) -> Path:
    """One config per timed tree, each on a database of its own that starts empty."""
    cfg = work / f"{name}.toml"
    cfg.write_text(
        f'database_url = "sqlite:///{work}/{name}.db"\n'
        f'[corpus]\nroots = ["{work}/corpus"]\n'
        f'[safety]\nallow_cidrs = ["127.0.0.0/8"]\n'
        f"[http]\nconcurrency = {args.concurrency}\nper_host_concurrency = {args.per_host}\n"
        f"total_timeout = {TIMEOUT_S}\nread_timeout = {TIMEOUT_S}\nmax_retries = {RETRIES}\n"
        + "".join(f"{line}\n" for line in args.http)
        + '[logging]\nformat = "json"\nlevel = "warning"\n'
    )
    return cfg


def monitor_counts(report: Path) -> dict[str, int]:
    """Verdict counts of a run, from `monitor check --format json`'s summary."""
    doc = json.loads(report.read_text())
    counts = doc.get("summary", {}).get("verdicts") or doc.get("counts") or {}
    return {str(k): int(v) for k, v in counts.items()}


def lychee_counts(report: Path) -> dict[str, int]:
    doc = json.loads(report.read_text())
    keys = ("successful", "errors", "timeouts", "redirects", "excludes", "unsupported", "cached", "unknown")
    return {k: int(doc[k]) for k in keys if doc.get(k)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--articles", type=int, default=2000)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--per-host", type=int, default=8)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--skip-lychee", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (printed)")
    parser.add_argument(
        "--http", action="append", default=[], metavar="KEY=VALUE", help="extra [http] setting"
    )
    parser.add_argument(
        "--profile",
        metavar="FILE",
        help="record monitor's run with py-spy (collapsed stacks, all processes) into FILE",
    )
    parser.add_argument(
        "--also",
        action="append",
        default=[],
        metavar="CHECKOUT",
        help="also time monitor from this source tree (e.g. a worktree of an older commit), side by side",
    )
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="lmm-articles-"))
    server, ports = start_server(HOSTS, args.latency_ms)
    port = ports[0]
    try:
        corpus = write_corpus(work / "corpus", port, args.articles, args.seed)
        urls = list(corpus.expect)
        per_host = collections.Counter(corpus.host_of.values())
        busiest_host, busiest = per_host.most_common(1)[0]
        lat = args.latency_ms / 1000
        global_floor = len(urls) * lat / args.concurrency
        host_floor = busiest * lat / args.per_host
        floor = max(global_floor, host_floor)
        expected = collections.Counter(corpus.expect.values())
        print(
            f"{args.articles} articles, {len(urls)} distinct URLs over {HOSTS} hosts; busiest host "
            f"127.0.0.{busiest_host} carries {busiest} ({busiest / len(urls):.0%}); "
            f"latency {args.latency_ms} ms, "
            f"concurrency {args.concurrency}, per host {args.per_host}"
        )
        print(
            f"floors: global {global_floor:.1f} s, busiest host {host_floor:.1f} s -> {floor:.1f} s "
            "(timeouts and Retry-After waits add to a single URL, not to the floor)"
        )
        print(f"the corpus holds: {dict(sorted(expected.items()))}")

        rows: dict[str, dict[str, float]] = {}
        verdicts: dict[str, dict[str, int]] = {}
        trees = {"monitor": ROOT, **{f"monitor@{Path(t).name}": Path(t).resolve() for t in args.also}}
        for name, tree in trees.items():
            cfg = write_config(work, name, args)
            out = work / f"{name}.json"
            env = {**os.environ, "PYTHONPATH": str(tree)}  # with -P: this tree, not the working directory
            cmd = [str(ROOT / ".venv" / "bin" / "python"), "-P", "-m", "monitor.cli", "-c", str(cfg), "check"]
            if args.profile and name == "monitor":
                spy = [
                    shutil.which("py-spy") or str(ROOT / ".venv" / "bin" / "py-spy"),
                    "record",
                    "--subprocesses",
                    "--format",
                    "raw",
                    "-r",
                    "200",
                ]
                cmd = [*spy, "-o", args.profile, "--", *cmd]
            rows[name] = busiest_busy(port, busiest_host, [*cmd, "-f", "json", "-o", str(out)], env)
            verdicts[name] = monitor_counts(out) if out.exists() else {}
        lychee = shutil.which("lychee") or str(ROOT / ".venv" / "bin" / "lychee")
        if not args.skip_lychee and Path(lychee).exists():
            listing = work / "urls.txt"
            listing.write_text("\n".join(urls) + "\n")
            ly_out = work / "lychee.json"
            ly_cmd = [lychee, "--no-progress", "--max-concurrency", str(args.concurrency)]
            ly_cmd += ["--host-concurrency", str(args.per_host), "--host-request-interval", "0ms"]
            ly_cmd += ["--timeout", str(TIMEOUT_S), "--max-retries", str(RETRIES)]
            ly_cmd += ["--format", "json", "--output", str(ly_out), str(listing)]
            rows["lychee"] = busiest_busy(port, busiest_host, ly_cmd)
            verdicts["lychee"] = lychee_counts(ly_out) if ly_out.exists() else {}

        heads = (
            "exit",
            "wall s",
            "xfloor",
            "CPU s",
            "ms/URL",
            "RSS MB",
            "tree MB",
            "MB sent",
            "requests",
            "host s",
            "1st req s",
        )
        print_table(
            heads,
            rows,
            floor,
            len(urls),
            lambda r: [r["busy_s"] / args.per_host, r["first_s"]],
            width=18,
            lead=lambda r: f"{int(r['rc']):>10}",
        )
        for name, counts in verdicts.items():
            print(f"{name} verdicts: {dict(sorted(counts.items()))}")
        for name in [n for n in rows if n.startswith("monitor") and "lychee" in rows]:
            m, ly = rows[name], rows["lychee"]
            print(
                f"{name}/lychee: wall {m['wall_s'] / ly['wall_s']:.2f}x, "
                f"CPU {m['cpu_s'] / ly['cpu_s']:.2f}x, "
                f"RSS {m['rss_mb'] / ly['rss_mb']:.2f}x, bytes {m['bytes'] / max(ly['bytes'], 1):.3f}x; "
                f"lychee wall {ly['wall_s'] / floor:.2f}x floor"
            )
        if args.keep:
            print(f"work folder kept: {work}")
    finally:
        server.terminate()
        server.wait()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
