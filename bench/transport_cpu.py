"""CPU per request of the HTTP client options, against the fixture server in its own process.

Run: ``.venv/bin/python -m bench.transport_cpu [--requests 10000] [--in-flight 64] [--hosts 4]``
(from the repository root). Only this process's CPU time is counted (``time.process_time``),
so the server's work is excluded. Requests are spread over ``--hosts`` host keys (one port
each) with distinct URLs, bodies are read, connections are kept alive.

Measured on the 2-core dev machine (shared, so ±15 %), 10 000 requests, 64 in flight, 4 hosts,
asyncio's own event loop (requests/s is bounded by the single-threaded fixture server, CPU
ms/request is the figure), on the second 2026-11-26 machine:

    option                                        CPU ms/request   requests/s
    httpx, default transport, one pool                  3.18            314
    httpx, default transport, client per host           1.72            581
    httpx + monitor.fetch.transport.SessionTransport          0.32           3108
    raw aiohttp                                         0.09          10585
    monitor Fetcher, pages (HEAD)                 0.22           4530
    monitor Fetcher, images (GET+probe)           0.28           3602

With ``http2 = true`` the Fetcher sends through ``monitor.fetch.transport_h2`` (httpcore, which has
HTTP/2) instead: 0.82 ms/request against 0.18 for the default (5,000 pages, both in one run on
2026-11-27; cleartext, so httpcore's HTTP/1.1 path). That is why HTTP/2 is opt-in.

Decision: httpx's request/response API over ``monitor.fetch.transport.SessionTransport`` (one shared
aiohttp session, everything constant decided once), 5-10x cheaper than httpx's own transport.
The whole Fetcher (host limiter, guard, redirects, cookies, outcome; plus the image probe)
costs less than a plain ``client.get`` over the same transport because it builds its requests
itself: headers once per host, ``transport.bodyless_request`` instead of httpx's constructor
(which normalises every header twice), and responses whose httpx ``Headers`` are only built
when asked for. Inside a busy event loop every object costs about 2.5x its cost in a tight
loop; what is left between the Fetcher and raw aiohttp is mostly ``httpx.URL`` parsing (about
45 µs a URL there) and the engine's own politeness and bookkeeping.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

import aiohttp
import httpx

from monitor.config import HttpSettings, SafetySettings
from monitor.fetch.fetcher import Fetcher
from monitor.fetch.transport import SessionTransport
from monitor.types import Target, TargetKind
from monitor.urls import host_key

ROOT = Path(__file__).resolve().parent.parent

Runner = Callable[[list[str], int], Coroutine[Any, Any, None]]


async def _drive(urls: list[str], in_flight: int, one: Callable[[str], Awaitable[object]]) -> None:
    queue = iter(urls)

    async def worker() -> None:
        for url in queue:
            await one(url)

    await asyncio.gather(*(worker() for _ in range(in_flight)))


async def httpx_shared(urls: list[str], in_flight: int) -> None:
    limits = httpx.Limits(max_connections=in_flight, max_keepalive_connections=in_flight)
    async with httpx.AsyncClient(limits=limits, trust_env=False) as client:

        async def one(url: str) -> None:
            (await client.get(url)).raise_for_status()

        await _drive(urls, in_flight, one)


async def httpx_per_host(urls: list[str], in_flight: int) -> None:
    clients: dict[str, httpx.AsyncClient] = {}
    per_host = max(1, in_flight // len({host_key(u) for u in urls}))
    limits = httpx.Limits(max_connections=per_host, max_keepalive_connections=per_host)

    async def one(url: str) -> None:
        key = host_key(url)
        client = clients.get(key)
        if client is None:
            client = clients[key] = httpx.AsyncClient(limits=limits, trust_env=False)
        (await client.get(url)).raise_for_status()

    try:
        await _drive(urls, in_flight, one)
    finally:
        for client in clients.values():
            await client.aclose()


async def httpx_session(urls: list[str], in_flight: int) -> None:
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=in_flight))
    transport = SessionTransport(session, connect=10.0, read=10.0)
    async with httpx.AsyncClient(transport=transport, trust_env=False) as client:

        async def one(url: str) -> None:
            (await client.get(url)).raise_for_status()

        await _drive(urls, in_flight, one)


async def raw_aiohttp(urls: list[str], in_flight: int) -> None:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=in_flight)) as session:

        async def one(url: str) -> None:
            async with session.get(url) as response:
                await response.read()
                response.raise_for_status()

        await _drive(urls, in_flight, one)


def _fetcher(kind: TargetKind, http2: bool = False) -> Runner:
    async def run(urls: list[str], in_flight: int) -> None:
        hosts = len({host_key(u) for u in urls})
        http = HttpSettings(
            concurrency=in_flight, per_host_concurrency=max(1, in_flight // hosts), http2=http2
        )
        async with Fetcher(http, SafetySettings(allow_cidrs=["127.0.0.0/8"])) as fetcher:

            async def one(url: str) -> None:
                outcome = await fetcher.fetch(Target(url, host_key(url), kind))
                if outcome.failure is not None or outcome.status not in (200, 206):
                    raise RuntimeError(f"{url}: {outcome.failure} {outcome.status} {outcome.failure_detail}")

            await _drive(urls, in_flight, one)

    return run


OPTIONS: dict[str, tuple[Runner, str]] = {
    "httpx, default transport, one pool": (httpx_shared, "/status/200"),
    "httpx, default transport, client per host": (httpx_per_host, "/status/200"),
    "httpx + monitor.fetch.transport.SessionTransport": (httpx_session, "/status/200"),
    "raw aiohttp": (raw_aiohttp, "/status/200"),
    "monitor Fetcher, pages (HEAD)": (_fetcher(TargetKind.PAGE), "/status/200"),
    "monitor Fetcher, images (GET+probe)": (_fetcher(TargetKind.IMAGE), "/image/pngsuite/basn2c16.png"),
    # http2 = true: monitor.fetch.transport_h2 (httpcore); cleartext here, so its HTTP/1.1 path
    "monitor Fetcher, pages, http2 = true": (_fetcher(TargetKind.PAGE, http2=True), "/status/200"),
}


def measure(runner: Runner, urls: list[str], in_flight: int) -> tuple[float, float]:
    """(CPU ms per request, requests per second) of one run in a fresh event loop."""
    cpu, wall = time.process_time(), time.perf_counter()
    asyncio.run(runner(urls, in_flight))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return cpu * 1000 / len(urls), len(urls) / wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--in-flight", type=int, default=64)
    parser.add_argument("--hosts", type=int, default=4, help="host keys (server ports)")
    parser.add_argument("--only", help="run only options whose name contains this text")
    args = parser.parse_args()
    server = subprocess.Popen(
        [sys.executable, "-m", "tests.server", "--port", "0", "--listeners", str(args.hosts)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        ports = [int(p) for p in server.stdout.readline().split()[1:]]
        print(f"{'option':44} CPU ms/request   requests/s")
        for name, (runner, path) in OPTIONS.items():
            if args.only and args.only not in name:
                continue
            sep = "&" if "?" in path else "?"
            urls = [f"http://127.0.0.1:{ports[i % len(ports)]}{path}{sep}i={i}" for i in range(args.requests)]
            measure(runner, urls[: min(500, len(urls))], args.in_flight)  # warm-up: imports, caches
            cpu_ms, rate = measure(runner, urls, args.in_flight)
            print(f"{name:44} {cpu_ms:10.2f} {rate:14.0f}", flush=True)
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
