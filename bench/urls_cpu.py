"""CPU per ``normalise_url`` call, on the frontmatter URLs of a generated corpus.

Usage: python bench/urls_cpu.py CORPUS_DIR [--articles 500]   (CORPUS_DIR from bench/gen_corpus.py)

Prints the best of 7 timings (process CPU time, 20 passes over every quoted URL of the first
``--articles`` files). To compare with another version of ``monitor/urls.py``, run the script
alternately with ``PYTHONPATH=<that checkout>`` and without, and compare medians.
"""

from __future__ import annotations

import argparse
import re
import time
from pathlib import Path

import monitor.urls
from monitor.urls import normalise_url


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("corpus", type=Path)
    parser.add_argument("--articles", type=int, default=500)
    args = parser.parse_args()
    files = sorted(args.corpus.rglob("*.md"))[: args.articles]
    urls = [url for path in files for url in re.findall(r'"(https?://[^"]+)"', path.read_text())]
    best = float("inf")
    for _ in range(7):
        start = time.process_time()
        for _ in range(20):
            for url in urls:
                normalise_url(url)
        best = min(best, (time.process_time() - start) / (20 * len(urls)))
    print(f"{monitor.urls.__file__}: {len(urls)} URLs, {best * 1e6:.2f} µs per normalise_url call")


if __name__ == "__main__":
    main()
