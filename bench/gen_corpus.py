"""Generate N synthetic articles in the real format (the frontmatter of examples/articles).

Usage: python bench/gen_corpus.py OUT_DIR N [--hosts H] [--base-url http://127.0.0.1:PORT]

Each article has 11 URLs (web, AMP, AMP cache, images, related items) spread over H
hosts, and a few URLs shared between articles, like a real corpus. With --base-url
every URL points at one local server with the host as the first path segment, so
a fixture server can answer them all; otherwise hosts are ``hN.bench.test``.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

TEMPLATE = """---
category: news
title: "Synthetic article {i}: links, images and related items"
excerpt: "Generated for benchmarks; same shape as the real articles."
publishedDateTime: 2021-01-13T00:17:00Z
originalUrl: "{h0}/news/{i}/story"
webUrl: "{h0}/news/{i}/story"
ampWebUrl: "{h0}/news/{i}/story/amp"
cdnAmpWebUrl: "{cdn}"
type: article
quality: 38
provider:
  name: Bench
  domain: bench.test
topics:
  - Benchmarks
images:
  - url: "{h1}/img/{i}.jpg"
    width: 840
    height: 473
    isCached: true
related:
  - title: "Related A {i}"
    webUrl: "{h2}/a/{i}"
    ampWebUrl: "{h2}/a/{i}?amp"
    type: article
    images:
      - url: "{h3}/img/r{i}.jpg"
        width: 939
        height: 630
  - title: "Related B {i}"
    webUrl: "{h4}/b/{j}"
    type: article
    images:
      - url: "{h1}/img/shared{k}.png"
        width: 1280
        height: 720
---
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("n", type=int)
    parser.add_argument("--hosts", type=int, default=20)
    parser.add_argument("--base-url", default=None)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    names = [f"h{n}.bench.test" for n in range(args.hosts)]

    def prefix(host: str) -> str:
        return f"{args.base_url.rstrip('/')}/{host}" if args.base_url else f"https://{host}"

    args.out.mkdir(parents=True, exist_ok=True)
    for i in range(args.n):
        picks = [rng.choice(names) for _ in range(5)]
        sub = picks[0].replace("-", "--").replace(".", "-")
        cdn = f"https://{sub}.cdn.ampproject.org/c/s/{picks[0]}/news/{i}/story/amp"
        if args.base_url:
            cdn = f"{args.base_url.rstrip('/')}/cdn/{picks[0]}/news/{i}/story/amp"
        hosts = {f"h{n}": prefix(h) for n, h in enumerate(picks)}
        text = TEMPLATE.format(i=i, j=i // 2, k=i % 50, cdn=cdn, **hosts)
        folder = args.out / f"{i // 1000:04d}"
        folder.mkdir(exist_ok=True)
        (folder / f"article-{i:07d}.md").write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
