"""One run checked by several local processes: the hosts are divided between them.

Why: a check spends its CPU in one Python thread (the event loop) long before the network or
the sites are the limit, so on a machine with spare cores a big run waits on one core. Each
child process runs the ordinary run dispatcher (``dispatch.Run``) over its own hosts and
writes its results to the run's database itself, so per-host politeness holds exactly as in
one process (a host belongs to one child), results stay unique per (run, URL), and a crash
or an interrupted run is resumed like any other. ``http.concurrency`` is divided between
the children. The parent keeps the run row, the lock, the progress and the alerts.

Children ignore SIGINT/SIGTERM: the parent decides, sets a shared flag, and each child
stops dispatching and finishes like a signalled single-process run. A child whose parent
died stops the same way.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from typing import Any

import structlog
from sqlalchemy import Engine, select

from monitor import aio, alerts
from monitor.config import HttpSettings, LogSettings, Settings
from monitor.logs import configure_logging
from monitor.run.dispatch import Run, RunScope
from monitor.run.shards import pack
from monitor.store.db import create
from monitor.store.tables import RUNS

MIN_TARGETS = 20_000  # "auto" splits only runs this big: a child costs 1-2 s of CPU to start
MAX_AUTO = 4
POLL = 0.2  # seconds between a child's looks at the stop flag; the parent's progress poll is 1 s

_stop_flag: Any = None  # multiprocessing.Event shared with the parent (set in each child)
_parent_pid = 0


def process_count(http: HttpSettings, targets: int) -> int:
    """How many processes check a run of ``targets`` URLs (``http.processes``)."""
    if http.processes != "auto":
        return http.processes
    if targets < MIN_TARGETS:
        return 1
    # one core stays for the writer threads, the database and the rest of the machine: on 2 cores
    # two children were no faster than one process (bench/check_bench.py) and used 2.6x the memory
    return max(1, min((os.cpu_count() or 1) // 2, MAX_AUTO))


def streams(http: HttpSettings) -> bool:
    """Whether a run may check while its inventory still reads new articles: only when it is
    checked in this one process whatever its size (splitting between processes needs every
    host's count first)."""
    return process_count(http, MIN_TARGETS) == 1


def split_hosts(counts: Mapping[str, int], parts: int) -> list[list[str]]:
    """Hosts in at most ``parts`` groups of similar URL counts (the shard planner's packing)."""
    return pack(counts, min(parts, len(counts)))


async def check_in_processes(
    settings: Settings,
    engine: Engine,
    scope: RunScope,
    groups: Sequence[Sequence[str]],
    *,
    stop: asyncio.Event,
    total: int,
    on_progress: Callable[[int, int], None] | None,
) -> tuple[list[alerts.Event], bool]:
    """Check the run's targets on ``groups`` of hosts, one child process each; (events, cut short)."""
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: no inherited loop or locks
    flag = context.Event()
    share = max(1, settings.http.concurrency // len(groups))
    child = settings.model_copy(update={"http": settings.http.model_copy(update={"concurrency": share})})
    loop = asyncio.get_running_loop()
    with ProcessPoolExecutor(
        len(groups),
        mp_context=context,
        initializer=_start_child,
        initargs=(flag, os.getpid(), settings.logging),
    ) as pool:
        jobs = [
            loop.run_in_executor(pool, _check_hosts, child, replace(scope, hosts=tuple(hosts)))
            for hosts in groups
        ]
        relay = asyncio.create_task(_relay_stop(stop, flag))
        progress = asyncio.create_task(_report_progress(engine, scope.run_id, total, on_progress))
        try:
            done = await asyncio.gather(*jobs)
        except BaseException:
            flag.set()  # one child failed (or we were cancelled): the others stop too
            await asyncio.gather(*jobs, return_exceptions=True)
            raise
        finally:
            relay.cancel()
            progress.cancel()
    events = [event for part, _cut in done for event in part]
    return events, any(cut for _part, cut in done)


async def _relay_stop(stop: asyncio.Event, flag: Any) -> None:
    await stop.wait()
    flag.set()


async def _report_progress(
    engine: Engine, run_id: int, total: int, on_progress: Callable[[int, int], None] | None
) -> None:
    """The children count their batches on the run row; the parent's progress bar reads it."""
    if on_progress is None:
        return

    def checked() -> int:
        with engine.connect() as conn:
            return int(conn.execute(select(RUNS.c.checked).where(RUNS.c.id == run_id)).scalar_one() or 0)

    while True:
        await asyncio.sleep(1.0)
        on_progress(await asyncio.to_thread(checked), total)


# --- in the child -----------------------------------------------------------------------------


def _start_child(flag: Any, parent: int, logging: LogSettings) -> None:
    global _stop_flag, _parent_pid
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when the children stop
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _stop_flag, _parent_pid = flag, parent
    configure_logging(logging)


def _check_hosts(settings: Settings, scope: RunScope) -> tuple[list[alerts.Event], bool]:
    """One child's share of the run (``scope.hosts``): results written as it goes."""
    engine = create(settings.database_url)
    structlog.contextvars.bind_contextvars(run_id=scope.run_id)

    async def check() -> tuple[list[alerts.Event], bool]:
        stop = asyncio.Event()
        watcher = asyncio.create_task(_watch_parent(stop))
        runner = Run(settings, engine, scope, stop)
        try:
            await runner.execute()
        finally:
            watcher.cancel()
        return runner.events, runner.cut_short

    try:
        return aio.run(check(), settings.http.event_loop)
    finally:
        engine.dispose()


async def _watch_parent(stop: asyncio.Event) -> None:
    while not (_stop_flag.is_set() or os.getppid() != _parent_pid):
        await asyncio.sleep(POLL)
    stop.set()
