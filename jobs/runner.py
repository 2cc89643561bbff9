"""Running one job by name: the job.* log events, skip reasons and outcome, shared by the
scheduler and ``monitor run-job`` so both behave the same. A failing job is logged and
reported, never raised: the daemon must outlive any one job.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from sqlalchemy import Engine

from jobs.nightly import nightly_check
from jobs.outcome import JobResult, JobSkipped
from jobs.prune import prune_history
from jobs.recheck import recheck_failing
from monitor.config import Settings
from monitor.run.metrics import Metrics, job_succeeded, now
from monitor.store.lease import LeaseBusy

log = structlog.get_logger("monitor.jobs")

JobFn = Callable[[Settings, Engine, asyncio.Event], Awaitable[Any]]


def job_functions() -> dict[str, JobFn]:
    """Job name (the [jobs.*] config key) → function."""
    return {
        "nightly_check": nightly_check,
        "recheck_failing": recheck_failing,
        "prune_history": prune_history,
    }


JOB_NAMES = ("nightly_check", "recheck_failing", "prune_history")


def canonical(name: str) -> str | None:
    """Accept ``nightly-check`` as well as ``nightly_check``; None for an unknown job."""
    key = name.strip().lower().replace("-", "_")
    return key if key in JOB_NAMES else None


async def execute(
    name: str, settings: Settings, engine: Engine, stop: asyncio.Event, metrics: Metrics | None = None
) -> JobResult:
    """Run job ``name`` once, then publish the metrics (the daemon's ``metrics``, or a fresh set).

    Skipped and busy jobs touch no metric: they did not run.
    """
    metrics = metrics if metrics is not None else Metrics(settings.metrics)
    at = now()
    result = await _execute(name, settings, engine, stop)
    if result.status in ("finished", "failed"):
        metrics.record_job(name, at, result.duration_s, job_succeeded(result.status, result.value))
        if result.status == "finished" and hasattr(result.value, "events"):
            metrics.record_events(result.value.events)
        await asyncio.to_thread(metrics.publish, engine)
    return result


async def _execute(name: str, settings: Settings, engine: Engine, stop: asyncio.Event) -> JobResult:
    """Run job ``name`` once, logging job.started and then job.finished, job.skipped or job.failed."""
    started = time.perf_counter()
    log.info("job.started", job=name)
    try:
        value = await job_functions()[name](settings, engine, stop)
    except LeaseBusy as busy:
        log.info("job.skipped", job=name, reason=f"another check is running (holder {busy.holder})")
        return JobResult(name, "busy", value=busy, detail=str(busy), duration_s=time.perf_counter() - started)
    except JobSkipped as skip:
        log.info("job.skipped", job=name, reason=str(skip))
        return JobResult(name, "skipped", detail=str(skip), duration_s=time.perf_counter() - started)
    except asyncio.CancelledError:
        duration = round(time.perf_counter() - started, 3)
        log.warning("job.failed", job=name, error="cancelled: stopped at once", duration_s=duration)
        raise
    except Exception as exc:
        duration = round(time.perf_counter() - started, 3)
        error = f"{type(exc).__name__}: {exc}"
        log.error("job.failed", job=name, error=error, duration_s=duration, exc_info=True)
        return JobResult(name, "failed", detail=error, duration_s=duration)
    duration = round(time.perf_counter() - started, 3)
    log.info("job.finished", job=name, duration_s=duration, **_summary(value))
    return JobResult(name, "finished", value=value, duration_s=duration)


def _summary(value: Any) -> dict[str, Any]:
    """A few keys describing what the job did, added to job.finished."""
    if value is None:
        return {}
    if hasattr(value, "shards"):  # a distributed run, queued for the workers
        return {"run_id": value.run_id, "state": "queued", "shards": value.shards, "targets": value.targets}
    if hasattr(value, "run_id"):
        return {
            "run_id": value.run_id,
            "state": value.state,
            "checked": value.checked,
            "errors": value.errors,
        }
    if hasattr(value, "as_log"):
        return dict(value.as_log())
    return {}
