"""The ``monitor schedule`` daemon: APScheduler 3 on asyncio, jobs persisted in the database.

Jobs come from ``[jobs.*]`` (disabled ones are removed from the store). The job store
(table ``apscheduler_jobs``) keeps each job's next run time across restarts: when a
job's schedule is unchanged its stored time is kept, so runs missed while the daemon
was down fire once on start (coalesce) if the latest is within
``misfire_grace_seconds``; a changed schedule replaces the stored job. Each job runs
at most once at a time (max_instances=1), and checks share the corpus-check lease with
the CLI.

The store pickles only a reference to the module-level ``run_job`` and plain strings;
the settings and engine live in a registry set when the daemon starts.

SIGTERM/SIGINT: stop scheduling, ask running jobs to stop (a check lets in-flight
requests finish for ``shutdown_grace_seconds``, writes what it has and marks its run
interrupted), then exit 0. A second signal cancels running jobs, waits briefly for them
to record that, and exits at once: committed batches are consistent by construction.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from apscheduler.events import EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED, JobEvent, JobExecutionEvent
from apscheduler.job import Job
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import Engine, inspect

from jobs.endpoint import Endpoint
from jobs.outcome import JobResult
from jobs.runner import JOB_NAMES, execute
from monitor.clock import utcnow
from monitor.config import Settings
from monitor.logs import redact_text
from monitor.run.metrics import Metrics
from monitor.signals import stop_on_signals
from monitor.store.figures import nightly_freshness

log = structlog.get_logger("monitor.jobs")

TABLE = "apscheduler_jobs"
HARD_EXIT_WAIT_S = 5.0  # after a second signal: time for cancelled jobs to mark their runs interrupted
DRAIN_MARGIN_S = 30.0  # beyond shutdown_grace_seconds, for flushing and report files


class ScheduleError(Exception):
    """A [jobs.*] schedule cannot be used (bad cron expression or timezone); names the key."""


@dataclass(frozen=True, slots=True)
class JobSpec:
    """One configured job: its trigger and a description that changes whenever the schedule does."""

    name: str
    enabled: bool
    trigger: BaseTrigger
    schedule: str


def job_specs(settings: Settings) -> list[JobSpec]:
    """The three jobs as [jobs.*] configures them."""
    j = settings.jobs
    recheck = j.recheck_failing
    return [
        _cron("nightly_check", j.nightly_check.enabled, j.nightly_check.cron, j.nightly_check.timezone),
        JobSpec(
            "recheck_failing",
            recheck.enabled,
            IntervalTrigger(minutes=recheck.interval_minutes, timezone=UTC),
            f"every {recheck.interval_minutes} min",
        ),
        _cron("prune_history", j.prune_history.enabled, j.prune_history.cron, j.prune_history.timezone),
    ]


def _cron(name: str, enabled: bool, cron: str, tz: str) -> JobSpec:
    try:
        trigger = CronTrigger.from_crontab(cron, timezone=tz)
    except (ValueError, LookupError) as exc:
        raise ScheduleError(f"jobs.{name}: cron {cron!r} / timezone {tz!r}: {exc}") from None
    return JobSpec(name, enabled, trigger, f"cron '{cron}' {tz}")


@dataclass(slots=True)
class Daemon:
    """What scheduled jobs need at run time, and the stop events of the jobs running now."""

    settings: Settings
    engine: Engine
    shutdown: asyncio.Event = field(default_factory=asyncio.Event)
    running: dict[asyncio.Task[Any], asyncio.Event] = field(default_factory=dict)
    results: list[JobResult] = field(default_factory=list)
    metrics: Metrics | None = None

    async def run(self, name: str) -> JobResult | None:
        if self.shutdown.is_set():
            log.info("job.skipped", job=name, reason="the scheduler is shutting down")
            return None
        task = asyncio.current_task()
        assert task is not None
        stop = asyncio.Event()
        self.running[task] = stop
        try:
            result = await execute(name, self.settings, self.engine, stop, self.metrics)
        except asyncio.CancelledError:
            return None  # a second signal: the run is marked interrupted and the process exits now
        finally:
            self.running.pop(task, None)
        self.results.append(result)
        return result

    def begin_shutdown(self) -> None:
        """Stop starting jobs and ask the running ones to wind down."""
        self.shutdown.set()
        for stop in self.running.values():
            stop.set()


_DAEMON: Daemon | None = None


async def run_job(name: str, schedule: str) -> None:
    """The scheduler's entry point for every job (module level: the job store pickles a reference).

    ``schedule`` describes the trigger; it is part of the stored job so a changed schedule
    is recognised on restart.
    """
    daemon = _DAEMON
    if daemon is None:
        log.error("job.failed", job=name, error="the scheduler daemon is not running", duration_s=0.0)
        return
    await daemon.run(name)


def build_scheduler(settings: Settings, engine: Engine) -> AsyncIOScheduler:
    """An AsyncIOScheduler with the database job store and the job defaults this tool relies on."""
    return AsyncIOScheduler(
        jobstores={"default": SQLAlchemyJobStore(engine=engine, tablename=TABLE)},
        job_defaults={
            "coalesce": True,
            "max_instances": 1,
            "misfire_grace_time": settings.jobs.misfire_grace_seconds,
        },
        timezone=UTC,
    )


def sync_jobs(scheduler: AsyncIOScheduler, specs: Sequence[JobSpec]) -> None:
    """Make the job store match the config; keep a stored next run time while the schedule is unchanged.

    Call on a started (paused) scheduler, so the store is open and nothing fires meanwhile.
    """
    wanted = {spec.name for spec in specs if spec.enabled}
    for job in scheduler.get_jobs():
        if job.id not in wanted:
            scheduler.remove_job(job.id)
            log.info("job.removed", job=job.id, reason="disabled or no longer configured")
    for spec in specs:
        if not spec.enabled:
            continue
        stored = scheduler.get_job(spec.name)
        keep: dict[str, Any] = {}
        if stored is not None and tuple(stored.args) == (spec.name, spec.schedule) and stored.next_run_time:
            keep["next_run_time"] = stored.next_run_time
        scheduler.add_job(
            run_job,
            spec.trigger,
            args=(spec.name, spec.schedule),
            id=spec.name,
            name=spec.name,
            replace_existing=True,
            **keep,
        )


def _on_event(event: JobEvent) -> None:
    """APScheduler's own skips, as job.skipped events."""
    if event.code == EVENT_JOB_MISSED and isinstance(event, JobExecutionEvent):
        at = event.scheduled_run_time.isoformat()
        reason = f"missed its {at} run by more than misfire_grace_seconds"
    else:
        reason = "the previous run of this job is still going"
    log.info("job.skipped", job=event.job_id, reason=reason)


async def serve(
    settings: Settings,
    engine: Engine,
    *,
    specs: Sequence[JobSpec] | None = None,
    shutdown: asyncio.Event | None = None,
    install_signals: bool = True,
) -> int:
    """Run the scheduler until a signal (or ``shutdown``) arrives; returns the exit code (0)."""
    global _DAEMON
    specs = list(specs) if specs is not None else job_specs(settings)
    daemon = Daemon(settings, engine, metrics=Metrics(settings.metrics))
    if shutdown is not None:
        daemon.shutdown = shutdown
    _DAEMON = daemon
    logging.getLogger("apscheduler").setLevel(logging.ERROR)  # its skips are logged as job.skipped
    scheduler = build_scheduler(settings, engine)
    scheduler.add_listener(_on_event, EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES)
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM) if install_signals else ()
    endpoint: Endpoint | None = None
    try:
        assert daemon.metrics is not None
        await asyncio.to_thread(daemon.metrics.publish, engine)  # what the database already knows
        if settings.metrics.listen:
            endpoint = Endpoint(
                daemon.metrics,
                lambda: health(settings, engine),
                settings.metrics.address,
                settings.metrics.port,
            ).start()
        scheduler.start(paused=True)
        sync_jobs(scheduler, specs)
        for sig in signals:
            loop.add_signal_handler(sig, _on_signal, daemon, sig)
        scheduler.resume()
        log.info(
            "scheduler.started",
            jobs={job.id: _iso(job.next_run_time) for job in scheduler.get_jobs()},
            disabled=[s.name for s in specs if not s.enabled],
        )
        await daemon.shutdown.wait()
        log.info("scheduler.stopping", running=len(daemon.running))
        scheduler.pause()
        daemon.begin_shutdown()
        await _drain(daemon, settings.jobs.shutdown_grace_seconds + DRAIN_MARGIN_S)
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
        if scheduler.running:
            scheduler.shutdown(wait=False)
            await asyncio.sleep(0)  # AsyncIOScheduler shuts down on the next loop turn
        if endpoint is not None:
            endpoint.stop()
        _DAEMON = None
    log.info("scheduler.stopped")
    return 0


def health(settings: Settings, engine: Engine) -> tuple[bool, dict[str, Any]]:
    """/healthz: the database answers (else 503), and how fresh the last nightly run is."""
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
        fresh = nightly_freshness(engine, settings.jobs.nightly_check.max_age_hours, utcnow())
    except Exception as exc:
        return False, {"status": "error", "error": redact_text(f"database: {type(exc).__name__}: {exc}")}
    return True, {"status": "ok", **fresh}


async def _drain(daemon: Daemon, timeout: float) -> None:
    """Wait for running jobs to finish after their stop was set; cancel what is still going after that."""
    tasks = list(daemon.running)
    if not tasks:
        return
    _done, rest = await asyncio.wait(tasks, timeout=timeout)
    for task in rest:
        task.cancel()
    if rest:
        await asyncio.wait(rest, timeout=HARD_EXIT_WAIT_S)


def _on_signal(daemon: Daemon, sig: signal.Signals) -> None:
    if not daemon.shutdown.is_set():
        log.info("scheduler.signal", signal=sig.name, action="finishing running jobs, then exiting")
        daemon.begin_shutdown()
        return
    log.warning("scheduler.signal", signal=sig.name, action="exiting now")
    tasks = list(daemon.running)
    for task in tasks:
        task.cancel()  # each check marks its run interrupted and releases its lease as it unwinds
    asyncio.get_running_loop().create_task(_exit_when_done(tasks, 128 + sig.value))


async def _exit_when_done(tasks: list[asyncio.Task[Any]], code: int) -> None:
    if tasks:
        await asyncio.wait(tasks, timeout=HARD_EXIT_WAIT_S)
    os._exit(code)


def _iso(at: datetime | None) -> str | None:
    return at.astimezone(UTC).isoformat() if at else None


@dataclass(frozen=True, slots=True)
class JobInfo:
    """A job as `monitor jobs` lists it."""

    name: str
    enabled: bool
    schedule: str
    next_run: datetime | None
    note: str = ""


def describe_jobs(
    settings: Settings, engine: Engine, *, now: datetime | None = None, specs: Sequence[JobSpec] | None = None
) -> list[JobInfo]:
    """Each configured job with its next run: the stored time when the daemon has it, else from the config."""
    now = now or datetime.now(UTC)
    stored = _stored_jobs(engine)
    out = []
    for spec in specs if specs is not None else job_specs(settings):
        if not spec.enabled:
            out.append(JobInfo(spec.name, False, spec.schedule, None, "disabled"))
            continue
        job = stored.get(spec.name)
        if job is not None and tuple(job.args) == (spec.name, spec.schedule) and job.next_run_time:
            nxt = job.next_run_time.astimezone(UTC)
            grace = timedelta(seconds=settings.jobs.misfire_grace_seconds)
            note = ""
            if nxt < now:
                latest = _latest_fire(spec.trigger, nxt, now)
                note = "missed; runs when the scheduler starts" if now - latest <= grace else "missed"
            out.append(JobInfo(spec.name, True, spec.schedule, nxt, note))
            continue
        nxt = spec.trigger.get_next_fire_time(None, now)
        note = "not yet scheduled" if job is None else "schedule changed; applies on scheduler restart"
        out.append(JobInfo(spec.name, True, spec.schedule, nxt.astimezone(UTC) if nxt else None, note))
    return out


def _latest_fire(trigger: BaseTrigger, first: datetime, now: datetime) -> datetime:
    """The last fire time up to ``now`` from ``first`` on: the one a coalesced start would run."""
    latest = first
    for _ in range(100_000):  # a minutely job down for two months; beyond that, the answer is "missed"
        nxt = trigger.get_next_fire_time(latest, latest + timedelta(microseconds=1))
        if nxt is None or nxt > now:
            break
        latest = nxt
    return latest


def _stored_jobs(engine: Engine) -> dict[str, Job]:
    if not inspect(engine).has_table(TABLE):
        return {}
    store = SQLAlchemyJobStore(engine=engine, tablename=TABLE)
    jobs: dict[str, Job] = {}
    for name in JOB_NAMES:
        with suppress(LookupError, ValueError):  # a job stored by another version that cannot be restored
            job = store.lookup_job(name)
            if job is not None:
                jobs[name] = job
    return jobs


async def run_now(settings: Settings, engine: Engine, name: str) -> JobResult:
    """`monitor run-job`: one job in the foreground; SIGINT/SIGTERM stop it gracefully, twice at once."""
    stop = asyncio.Event()
    with stop_on_signals(stop):
        return await execute(name, settings, engine, stop)
