"""What the soft-404 probe costs an ordinary run: `run_check` CPU with ``probe`` on and off.

Usage: python bench/soft404_overhead.py [--urls 3000] [--rounds 5]

A corpus of ``--urls`` page URLs on the fixture server (127.0.0.1, in this process's own thread),
all on routes that 404 made-up URLs, so the probe finds nothing and pages stay HEAD-only: one extra
request per host and prefix (here 3). Each round checks the same corpus with ``probe = true`` and
then ``probe = false`` (fresh databases; ``baseline_ttl_hours = 0`` so every run probes) and
measures process CPU seconds per run; prints the medians side by side (server thread included).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from monitor.config import load_settings
from monitor.run.check import run_check
from monitor.store.db import open_engine
from tests.server import FixtureServer

ROUTES = ("/status/200?u={n}", "/page/story-{n}", "/etag?v={n}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--urls", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    server = FixtureServer(keep_requests=False).start()
    cpu: dict[bool, list[float]] = {True: [], False: []}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        corpus = root / "corpus"
        corpus.mkdir()
        for n in range(args.urls):
            url = server.url(ROUTES[n % len(ROUTES)].format(n=n))
            (corpus / f"a{n}.md").write_text(f'---\ntitle: "A {n}"\nwebUrl: "{url}"\n---\n')
        for r in range(args.rounds):
            for probe in (True, False) if r % 2 else (False, True):
                settings = load_settings(
                    None,
                    {
                        "database_url": f"sqlite:///{root}/r{r}-{probe}.db",
                        "corpus.roots": [str(corpus)],
                        "safety.allow_private": True,
                        "http.processes": 1,
                        "logging.level": "warning",
                        "verdicts.soft_404.probe": probe,
                        "verdicts.soft_404.baseline_ttl_hours": 0,
                    },
                )
                engine = open_engine(settings.database_url)
                start = time.process_time()
                outcome = asyncio.run(run_check(settings, engine))
                cpu[probe].append(time.process_time() - start)
                engine.dispose()
                assert outcome.checked == args.urls, outcome
    server.stop()
    on, off = statistics.median(cpu[True]), statistics.median(cpu[False])
    print(f"{args.urls} page URLs, 3 prefixes, median of {args.rounds} runs (process CPU s, with inventory):")
    print(f"  probe = true   {on:.3f} s   ({on / args.urls * 1e6:.0f} µs per URL)")
    print(f"  probe = false  {off:.3f} s   ({off / args.urls * 1e6:.0f} µs per URL)")
    print(
        "  every run, on:",
        " ".join(f"{v:.2f}" for v in cpu[True]),
        " off:",
        " ".join(f"{v:.2f}" for v in cpu[False]),
    )
    print(f"  difference     {on - off:+.3f} s   ({(on - off) / off * 100:+.1f} %)")


if __name__ == "__main__":
    main()
