"""The least a client can do against the benchmark server: the reference row of ``check_bench.py``.

Usage: ``.venv/bin/python bench/bare_client.py URLS_FILE [--concurrency 64] [--per-host 8]``

Sends the same requests as ``monitor check`` (HEAD for pages, a 32 KB Range GET for images,
read until 16 KB have arrived) with raw aiohttp on uvloop, the same global and per-host limits,
and nothing else: no judging, no database, no start-up work. Its wall time is how close to the
latency floor any client gets against this server on this machine, so the gap between it and
``monitor check`` is the engine's own cost, and the gap between it and the floor is the
server's and the operating system's.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

import aiohttp
import uvloop

WINDOW = {"Range": "bytes=0-32767"}


async def run(urls: list[str], concurrency: int, per_host: int) -> None:
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=per_host)
    async with aiohttp.ClientSession(connector=connector, auto_decompress=False) as session:
        todo = iter(urls)

        async def worker() -> None:
            for url in todo:
                image = "/image/" in url
                method, headers = ("GET", WINDOW) if image else ("HEAD", None)
                async with session.request(method, url, headers=headers, allow_redirects=False) as response:
                    if image:
                        await response.content.read(16384)

        await asyncio.gather(*(worker() for _ in range(concurrency)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("urls", type=Path)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--per-host", type=int, default=8)
    args = parser.parse_args()
    urls = args.urls.read_text().split()
    uvloop.run(run(urls, args.concurrency, args.per_host))


if __name__ == "__main__":
    main()
