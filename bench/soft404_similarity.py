"""Soft-404 page likeness: the similarity figures behind ``similarity = 0.9``, and what it costs.

Usage: python bench/soft404_similarity.py [--repeat 50]

Prints (1) ``pagesim.similarity`` between the fixture site's "not found" template asked for by a
made-up URL and: the same template at other paths (it echoes the path and a request id), that
site's stories (same header, menu and footer), and two stories with each other; (2) the median
CPU of one fingerprint of a 64 KB and a 48 KB page; (3) the median CPU of the fetcher's per-URL
lookup (``SoftProbes.known``) for a host whose probe said 404: what an ordinary page pays.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from monitor.fetch.soft404 import SoftProbes, echoes
from monitor.pagesim import fingerprint, similarity
from monitor.policy import Soft404Settings
from monitor.types import SoftBaseline
from tests.server import PAGE, not_found_html, story_html


def _median_us(work: Callable[[], object], repeat: int, inner: int = 1) -> float:
    times = []
    for _ in range(repeat):
        start = time.process_time()
        for _ in range(inner):
            work()
        times.append((time.process_time() - start) / inner)
    return statistics.median(times) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=50)
    args = parser.parse_args()
    probe = "https://news.example/news/2019/zq7x3k1v9w-not-a-page"
    base = fingerprint(not_found_html(probe), echoes(probe))
    rows: list[tuple[str, float | None]] = []
    for path in ("/news/2019/old-story", "/news/a/b/c/a-much-longer-removed-story-path", "/x"):
        url = "https://news.example" + path
        rows.append((f"template at {path}", similarity(base, fingerprint(not_found_html(path), echoes(url)))))
    for slug in ("story-council-vote", "story-flood", "story-a"):
        url = f"https://news.example/news/2020/{slug}"
        rows.append((f"story {slug}", similarity(base, fingerprint(story_html(slug, None), echoes(url)))))
    a, b = fingerprint(story_html("story-a", None)), fingerprint(story_html("story-b", None))
    rows.append(("story-a vs story-b", similarity(a, b)))
    print("similarity with the made-up URL's page (estimated Jaccard of 3-word shingles)")
    for label, score in rows:
        print(f"  {label:<60} {score:.2f}" if score is not None else f"  {label:<60} n/a")
    big = story_html("story-big", None, size=64 * 1024)
    print(f"fingerprint CPU, median of {args.repeat}:")
    for label, body in (("story page", big), ("fixture PAGE", PAGE)):
        cost = _median_us(lambda body=body: fingerprint(body, echoes(probe)), args.repeat) / 1000
        print(f"  {len(body)} B {label:<14} {cost:.2f} ms")
    probes = SoftProbes(Soft404Settings())
    probes.seed([SoftBaseline("news.example", "news", probe, 404, False)])
    url = "https://news.example/news/2020/05/12/council-votes-on-the-bridge"
    lookup = _median_us(lambda: probes.known(url, "news.example"), args.repeat, inner=10_000)
    print(
        f"per-URL lookup, a 404-ing host (SoftProbes.known), median of {args.repeat}: {lookup * 1000:.0f} ns"
    )


if __name__ == "__main__":
    main()
