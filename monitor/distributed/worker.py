"""``monitor worker``: run shard jobs from the queue, heartbeat them, and reap what others dropped.

A shard runs the local run's dispatcher and writer (``run.dispatch.Run``), restricted to its
hosts (or its url-id slice), so per-host limits and batching are the same code as a local run. What the
distributed mode adds sits around it:

* every batch commits only while the shard still carries this worker's attempt (the fencing
  token, checked under a row lock in the batch's own transaction);
* a heartbeat task marks the shard alive every ``heartbeat_seconds``, whatever the shard's
  length; a refused heartbeat stops the shard at once;
* SIGTERM stops dispatching, lets in-flight requests finish (``jobs.shutdown_grace_seconds``),
  commits them, and hands the shard back with a fresh job;
* each worker also runs the reaper every ``heartbeat_seconds`` (not as a queued periodic
  task: long shards filling every slot would starve it): shards silent for
  ``stall_seconds`` are handed back, stalled queue jobs failed (freeing their host lock),
  lost jobs re-deferred, missed finalizations done, alerts a dead finalizer did not emit
  emitted, and live runs' leases renewed.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from contextlib import suppress
from datetime import timedelta
from typing import Any

import structlog
from sqlalchemy import Connection, Engine

from monitor import alerts
from monitor.config import Settings
from monitor.distributed import ledger, queue, runs
from monitor.fetch.hosts import ProcessLimits
from monitor.run.batch import save_results, write_with_retry
from monitor.run.dispatch import Run, RunScope
from monitor.store import plan as store
from monitor.store.tables import RUN_SHARDS
from monitor.types import FetchOutcome

log = structlog.get_logger("monitor.worker")


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class _Guard:
    """Fences a batch on the shard's attempt and keeps its alert events, inside the batch's transaction."""

    def __init__(self, claim: ledger.Claim) -> None:
        self.claim = claim

    def before(self, conn: Connection) -> None:
        ledger.fence(conn, self.claim.shard_id, self.claim.attempt)

    def after(self, conn: Connection, events: list[alerts.Event], written: int) -> None:
        ledger.record_batch(conn, self.claim.shard_id, self.claim.run_id, events, written)


class ShardRun(Run):
    """The run dispatcher + writer over one shard's targets, with fenced batch writes."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        claim: ledger.Claim,
        stop: asyncio.Event,
        limits: ProcessLimits | None = None,
    ) -> None:
        scope = RunScope(claim.run_id, claim.only_failing, hosts=claim.hosts, id_range=claim.id_range)
        super().__init__(settings, engine, scope, stop, total=claim.url_count)
        if claim.host_share is not None:  # a slice of a split host: its own slots, as many as its share
            limits = (limits or ProcessLimits(settings.http)).with_share(claim.hosts[0], claim.host_share)
        self.limits = limits
        self.claim = claim
        self.guard = _Guard(claim)
        self.lost = False
        d = settings.distributed
        self.fresh_for = min(2 * d.heartbeat_seconds, d.stall_seconds / 2)
        self.confirmed = time.monotonic()  # when the database last confirmed we own the shard
        self._confirming = asyncio.Lock()
        self.request_gate = self.gate  # every request the fetcher sends, retries and hops included

    async def gate(self) -> None:
        """Before each request: if ownership was not confirmed lately (we may have been frozen
        past the stall limit), confirm it first; a lost shard sends nothing more, so a thawed
        worker never adds to a host's load while the new owner works on it."""
        if not self.lost and time.monotonic() - self.confirmed <= self.fresh_for:
            return
        async with self._confirming:
            if not self.lost and time.monotonic() - self.confirmed > self.fresh_for:
                c = self.claim
                asked = time.monotonic()  # a freeze inside the call must not make the answer look fresh
                if await asyncio.to_thread(ledger.beat, self.engine, c.shard_id, c.run_id, c.attempt):
                    self.confirmed = asked
                else:
                    self.lost = True
                    log.warning("shard.request_refused", attempt=c.attempt)
        if self.lost:
            self.stop.set()
            await asyncio.Event().wait()  # parked until the dispatcher cancels it after the grace period

    async def _flush(self, batch: list[tuple[store.Planned, FetchOutcome]]) -> None:
        if self.lost:
            return  # fenced out: drain what is still in flight without writing it
        try:
            await write_with_retry(
                lambda: save_results(self.engine, self.settings, self.run_id, batch, self.guard),
                what=f"{len(batch)} results",
            )
        except ledger.ShardLost:
            self.lost = True
            self.stop.set()
            log.warning("shard.commit_refused", batch=len(batch), attempt=self.claim.attempt)
            return
        self.done += len(batch)


async def _heartbeat(engine: Engine, runner: ShardRun, every: float, lost: asyncio.Event) -> None:
    claim = runner.claim
    while True:
        await asyncio.sleep(every)
        asked = time.monotonic()  # stamp the question, not the answer: we may be frozen in between
        try:
            alive = await asyncio.to_thread(ledger.beat, engine, claim.shard_id, claim.run_id, claim.attempt)
        except Exception as exc:  # a database hiccup: the next beat may pass before anyone calls us stale
            log.warning("shard.heartbeat_failed", error=f"{type(exc).__name__}: {exc}")
            continue
        if alive:
            runner.confirmed = asked
        else:
            log.warning("shard.heartbeat_refused", attempt=claim.attempt)
            lost.set()
            return


async def run_shard(
    settings: Settings,
    engine: Engine,
    app: Any,
    run_id: int,
    shard_id: int,
    job_id: int | None,
    stopping: asyncio.Event,
    limits: ProcessLimits | None = None,
) -> str:
    """Claim and check one shard; returns what happened (done, skipped, lost, handed_back, failed).

    ``limits``: the worker's global and per-host slots, shared by the shards it runs at once.
    """
    d = settings.distributed
    claim = await asyncio.to_thread(ledger.claim, engine, shard_id, worker_name(), job_id)
    if claim is None:
        log.info("shard.skipped", run_id=run_id, shard_id=shard_id, reason="done, owned or run ended")
        return "skipped"
    structlog.contextvars.bind_contextvars(run_id=run_id, shard_id=shard_id)
    log.info(
        "shard.started",
        attempt=claim.attempt,
        hosts=len(claim.hosts),
        urls=claim.url_count,
        host_share=claim.host_share,
    )
    stop = asyncio.Event()
    runner = ShardRun(settings, engine, claim, stop, limits)
    beat = asyncio.create_task(_heartbeat(engine, runner, d.heartbeat_seconds, stop))
    relay = asyncio.create_task(_relay(stopping, stop))
    try:
        await runner.execute()
    except asyncio.CancelledError:
        await _give_back(settings, engine, app, claim, "worker cancelled the shard")
        raise
    except Exception as exc:
        log.error("shard.error", error=f"{type(exc).__name__}: {exc}", exc_info=True)
        await _give_back(settings, engine, app, claim, f"{type(exc).__name__}: {exc}")
        return "failed"
    finally:
        beat.cancel()
        relay.cancel()
        structlog.contextvars.unbind_contextvars("run_id", "shard_id")
    if runner.lost or (stop.is_set() and not stopping.is_set()):
        log.warning(
            "shard.lost", run_id=run_id, shard_id=shard_id, attempt=claim.attempt, checked=runner.done
        )
        return "lost"
    if runner.cut_short:
        await _give_back(settings, engine, app, claim, "worker stopped")
        return "handed_back"
    counted, last = await asyncio.to_thread(ledger.complete, engine, shard_id, run_id, claim.attempt)
    log.info(
        "shard.done",
        run_id=run_id,
        shard_id=shard_id,
        attempt=claim.attempt,
        checked=runner.done,
        counted=counted,
    )
    if last:
        await asyncio.to_thread(runs.finalize, settings, engine, run_id)
    return "done" if counted else "lost"


async def _relay(source: asyncio.Event, target: asyncio.Event) -> None:
    await source.wait()
    target.set()


async def _give_back(settings: Settings, engine: Engine, app: Any, claim: ledger.Claim, reason: str) -> None:
    """Hand our shard back and queue it again at once (shielded: runs even while being cancelled)."""

    async def work() -> None:
        state, last = await asyncio.to_thread(
            ledger.hand_back,
            engine,
            claim.shard_id,
            reason,
            settings.distributed.max_attempts,
            attempt=claim.attempt,
        )
        log.warning(
            "shard.handed_back", run_id=claim.run_id, shard_id=claim.shard_id, state=state, reason=reason
        )
        await _after_hand_back(settings, engine, app, claim.run_id, claim.shard_id, state, last)

    await asyncio.shield(asyncio.create_task(work()))


async def _after_hand_back(
    settings: Settings, engine: Engine, app: Any, run_id: int, shard_id: int, state: str | None, last: bool
) -> None:
    if state == "queued":
        lock = await asyncio.to_thread(_lock_of, engine, shard_id)
        await queue.defer_shard(app, settings.distributed.queue, run_id, shard_id, lock)
    elif state == "failed" and last:
        await asyncio.to_thread(runs.finalize, settings, engine, run_id)


def _lock_of(engine: Engine, shard_id: int) -> str | None:
    from sqlalchemy import select

    with engine.connect() as conn:
        return conn.execute(select(RUN_SHARDS.c.lock).where(RUN_SHARDS.c.id == shard_id)).scalar_one()


async def reap(settings: Settings, engine: Engine, app: Any) -> None:
    """One reaper pass; safe to run in every worker at once (each step is a conditional update)."""
    import procrastinate.jobs

    d = settings.distributed
    stall = timedelta(seconds=d.stall_seconds)
    for job in await app.job_manager.get_stalled_jobs(
        queue=d.queue, task_name=queue.CHECK_SHARD, seconds_since_heartbeat=d.stall_seconds
    ):
        with suppress(Exception):  # another reaper got there first
            await app.job_manager.finish_job_by_id_async(job.id, procrastinate.jobs.Status.FAILED, False)
            log.warning("queue.stalled_job_failed", job_id=job.id, worker_id=job.worker_id)
    for s in await asyncio.to_thread(ledger.stale_shards, engine, "running", stall):
        state, last = await asyncio.to_thread(
            ledger.hand_back, engine, s.shard_id, f"no heartbeat for {d.stall_seconds:g}s", d.max_attempts
        )
        if state is not None:
            log.warning("shard.requeued", run_id=s.run_id, shard_id=s.shard_id, state=state, reason="stalled")
            await _after_hand_back(settings, engine, app, s.run_id, s.shard_id, state, last)
    for s in await asyncio.to_thread(ledger.stale_shards, engine, "queued", stall):
        if await queue.defer_shard(app, s.queue, s.run_id, s.shard_id, s.lock) is not None:
            log.warning("shard.redeferred", run_id=s.run_id, shard_id=s.shard_id)
        await asyncio.to_thread(ledger.touch, engine, s.shard_id)
    for run_id in await asyncio.to_thread(ledger.unfinalized_runs, engine):
        await asyncio.to_thread(runs.finalize, settings, engine, run_id)
    await asyncio.to_thread(runs.deliver_pending, settings, engine)
    await asyncio.to_thread(runs.renew_run_leases, engine, settings)


async def _reaper(settings: Settings, engine: Engine, app: Any) -> None:
    while True:
        try:
            await reap(settings, engine, app)
        except Exception as exc:  # the database may be restarting: try again next period
            log.warning("reaper.failed", error=f"{type(exc).__name__}: {exc}")
        await asyncio.sleep(settings.distributed.heartbeat_seconds)


async def serve(settings: Settings, engine: Engine, concurrency: int | None = None) -> int:
    """Run a worker until SIGTERM/SIGINT; the first signal hands running shards back gracefully."""
    queue.require_postgres(settings)
    await asyncio.to_thread(queue.ensure_schema, settings)
    d = settings.distributed
    slots = concurrency or d.worker_concurrency
    app = queue.build_app(settings, pool_size=slots + 3)
    stopping = asyncio.Event()
    limits = ProcessLimits(settings.http)  # the worker keeps http.concurrency however many shards run

    @app.task(name=queue.CHECK_SHARD, queue=d.queue, pass_context=True)
    async def check_shard(context: Any, run_id: int, shard_id: int) -> str:
        return await run_shard(settings, engine, app, run_id, shard_id, context.job.id, stopping, limits)

    loop = asyncio.get_running_loop()
    async with app.open_async():
        worker = asyncio.create_task(
            app.run_worker_async(
                queues=[d.queue],
                name=worker_name(),
                concurrency=slots,
                install_signal_handlers=False,
                update_heartbeat_interval=d.heartbeat_seconds,
                stalled_worker_timeout=d.stall_seconds,
                shutdown_graceful_timeout=settings.jobs.shutdown_grace_seconds + 5,
                fetch_job_polling_interval=min(5.0, d.heartbeat_seconds),
                delete_jobs="successful",
            )
        )

        def on_signal() -> None:
            if stopping.is_set():
                worker.cancel()
                return
            log.info("worker.stopping", reason="signal: handing running shards back")
            stopping.set()
            worker.cancel()  # procrastinate then stops fetching and waits for running jobs

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal)
        reaper = asyncio.create_task(_reaper(settings, engine, app))
        log.info("worker.started", queue=d.queue, concurrency=slots, name=worker_name())
        try:
            await worker
        except asyncio.CancelledError:
            if not stopping.is_set():
                raise
        finally:
            reaper.cancel()
            with suppress(asyncio.CancelledError):
                await reaper
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
    log.info("worker.stopped")
    return 0
