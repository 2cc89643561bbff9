"""A run's lifecycle: the one place where the stages are wired, corpus → ... → store → alert.

``run_check`` opens (or resumes) the run row, syncs the inventory (corpus → links →
store), plans the targets, hands them to the dispatcher (``dispatch.Run``, in this
process or in several, ``processes``), then finishes the row and logs the run's alert
events. Before the row is finished, the archived copies of the run's dead pages are looked up
(``archive``, when ``[archive] enabled``). A crash loses at most the batch in hand; ``resume``
finishes an interrupted run by checking only what has no result yet.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta

import structlog
from sqlalchemy import Engine

from monitor import alerts
from monitor.clock import utcnow
from monitor.config import Settings
from monitor.corpus.discover import RootUnavailable
from monitor.run import processes
from monitor.run.archive import suggest_archived
from monitor.run.batch import write_with_retry
from monitor.run.dispatch import Run, RunScope
from monitor.run.inventory import SyncReport, scan_roots_of, sync_inventory
from monitor.run.stream import Growth, abandon, until_settled
from monitor.store import plan, results, runs
from monitor.types import Severity

log = structlog.get_logger("monitor.run")


@dataclass(frozen=True, slots=True)
class RunRequest:
    """What a caller (the CLI, a job) asks of a run, whichever executor checks it."""

    paths: Sequence[str] | None = None  # corpus roots or files; None: corpus.roots
    trigger: str = "cli"  # cli, schedule, recheck (resume is set by the run itself)
    only_failing: bool = False
    resume: bool = False
    wait_lock: float | None = None  # seconds to queue behind another check; None: fail at once


@dataclass(slots=True)
class RunOutcome:
    """What a run did, for the CLI summary and the jobs."""

    run_id: int
    state: str
    total: int
    checked: int
    counts: dict[str, int]
    severities: dict[str, int]
    duration_s: float
    inventory: SyncReport | None = None
    events: list[alerts.Event] = field(default_factory=list)

    @property
    def errors(self) -> int:
        return self.severities.get(Severity.ERROR.value, 0)

    @property
    def warnings(self) -> int:
        return self.severities.get(Severity.WARNING.value, 0)


def checked_roots(settings: Settings, paths: Sequence[str] | None) -> list[str]:
    """The run's normalised roots (default: corpus.roots); a missing or unreadable one is logged
    (``corpus.root_unavailable``) and raised as ``RootUnavailable`` before any run row exists."""
    try:
        return scan_roots_of(settings.corpus, paths)
    except RootUnavailable as exc:
        log.error("corpus.root_unavailable", path=exc.path, reason=exc.reason)
        raise


async def run_check(
    settings: Settings,
    engine: Engine,
    request: RunRequest = RunRequest(),
    *,
    stop: asyncio.Event | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> RunOutcome:
    """Check the corpus once; see the module docstring for the shape of a run."""
    trigger, only_failing = request.trigger, request.only_failing
    started = time.perf_counter()
    now = utcnow()
    stop = stop or asyncio.Event()
    stale = runs.interrupt_stale_runs(
        engine, now=now, stale_after=timedelta(seconds=settings.jobs.lock_ttl_seconds)
    )
    for run_id in stale:
        log.warning("run.interrupted", run_id=run_id, reason="found unfinished at start-up")

    inventory: SyncReport | None = None
    resumed = runs.latest_interrupted(engine) if request.resume else None
    # a resumed run goes on with the roots it recorded, unless told others
    recorded = runs.recorded_roots(engine, resumed) if resumed is not None and not request.paths else None
    roots = checked_roots(settings, recorded or request.paths)
    if resumed is not None:
        runs.reopen_run(engine, resumed, now)
        run_id, trigger = resumed, "resume"
    else:
        run_id = runs.create_run(
            engine, trigger=trigger, fingerprint=settings.fingerprint(), now=now, roots=roots
        )
    # run_id is bound explicitly (not only via contextvars) so every event carries it wherever it goes
    rlog = log.bind(run_id=run_id)
    structlog.contextvars.bind_contextvars(run_id=run_id)
    growth: Growth | None = None  # a streaming inventory still reading new articles
    adding: asyncio.Future[SyncReport] | None = None
    try:
        if not only_failing:  # a resumed run too: it may have died inside this pass (it is incremental)
            if processes.streams(settings.http):
                growth = Growth(asyncio.get_running_loop())
                adding = await until_settled(growth, _sync(engine, settings, roots, growth))
                if adding.done():  # small corpus: the whole pass is already over
                    inventory, growth, adding = adding.result(), None, None
            else:
                inventory = await _sync(engine, settings, roots, None)
            if inventory is not None:
                _log_inventory(rlog, inventory)
        # adaptive freshness (off unless jobs.stale_after_days is set): scheduled runs skip
        # URLs that were healthy and checked recently enough for their role
        fresh = plan.freshness_cutoffs(settings.jobs.stale_after_days, now) if trigger == "schedule" else None
        total = plan.count_plan(engine, run_id=run_id, only_failing=only_failing, stale_before=fresh)
        runs.set_total(engine, run_id, total)
        rlog.info(
            "run.started",
            trigger=trigger,
            targets=total,
            config_fingerprint=settings.fingerprint(),
            streaming=growth is not None,
        )
        try:
            scope = RunScope(run_id, only_failing, fresh)
            events, cut_short = await _execute(settings, engine, scope, stop, total, on_progress, growth)
            if growth is not None and adding is not None and not cut_short:
                inventory = await adding
                _log_inventory(rlog, inventory)
                more, cut_short = await _sweep(settings, engine, scope, stop, on_progress)
                events += more
                total = runs.run_total(engine, run_id)
        except BaseException as exc:
            state = "interrupted" if isinstance(exc, asyncio.CancelledError | KeyboardInterrupt) else "failed"
            try:
                runs.finish_run(
                    engine, run_id, state=state, now=utcnow(), error=f"{type(exc).__name__}: {exc}"
                )
            except Exception as db_exc:  # the database itself may be what failed; the next start repairs it
                rlog.error("run.unrecorded", error=f"{type(db_exc).__name__}: {db_exc}")
            rlog.error(
                "run.failed" if state == "failed" else "run.interrupted", error=f"{type(exc).__name__}: {exc}"
            )
            raise
        state = "interrupted" if cut_short else "finished"
        with engine.begin() as conn:  # placeholder images need all of the run's results
            results.mark_placeholders(conn, run_id, settings.images.placeholder_min_uses)
        if not cut_short:  # archived copies of the dead pages, for the reports written next
            await suggest_archived(settings, engine, run_id, stop=stop, beat=True)
        counts = runs.finish_run(engine, run_id, state=state, now=utcnow())
        by_verdict, by_severity = runs.run_counts(engine, run_id)
        events = alerts.group_host_down(events, settings.alerts.host_down_threshold)
        for name, keys in events:
            rlog.warning(name, **keys)
        outcome = RunOutcome(
            run_id=run_id,
            state=state,
            total=total,
            checked=sum(counts.values()),
            counts=by_verdict,
            severities=by_severity,
            duration_s=time.perf_counter() - started,
            inventory=inventory,
            events=events,
        )
        rlog.info(
            "run.finished" if state == "finished" else "run.interrupted",
            counts=by_verdict,
            checked=outcome.checked,
            errors=outcome.errors,
            warnings=outcome.warnings,
            duration_s=round(outcome.duration_s, 3),
        )
        return outcome
    finally:
        if growth is not None and adding is not None and not adding.done():
            await abandon(growth, adding)  # the run ended early: no thread writes on after it
        structlog.contextvars.unbind_contextvars("run_id")


def _sync(
    engine: Engine, settings: Settings, roots: Sequence[str], growth: Growth | None
) -> Awaitable[SyncReport]:
    """The inventory pass, in a thread (incremental, so a pass cut by a lost connection is simply
    run again); streaming when ``growth`` is given."""
    return write_with_retry(
        lambda: sync_inventory(
            engine,
            settings.corpus,
            roots,
            on_settled=growth.settle if growth else None,
            on_batch=growth.grow if growth else None,
        ),
        what="the inventory",
    )


async def _sweep(
    settings: Settings,
    engine: Engine,
    scope: RunScope,
    stop: asyncio.Event,
    on_progress: Callable[[int, int], None] | None,
) -> tuple[list[alerts.Event], bool]:
    """After a streaming run: check the URLs that were already known but not yet live when the
    shared cursor passed them (an article moved to a new path, say). Usually there are none."""
    rest = plan.count_plan(
        engine, run_id=scope.run_id, only_failing=scope.only_failing, stale_before=scope.stale_before
    )
    if not rest or stop.is_set():
        return [], stop.is_set()
    overall = runs.run_total(engine, scope.run_id)
    log.info("run.sweep", run_id=scope.run_id, targets=rest)

    def progress(done: int, _total: int) -> None:
        if on_progress is not None:
            on_progress(overall - rest + done, overall)

    return await _execute(settings, engine, scope, stop, rest, progress, None)


def _log_inventory(rlog: structlog.typing.FilteringBoundLogger, inventory: SyncReport) -> None:
    for err in inventory.errors:
        rlog.warning(
            "corpus.error",
            path=err.path,
            kind=err.kind,
            message=err.message,
            line=err.line,
            column=err.column,
        )
    rlog.info(
        "run.inventory",
        files=inventory.seen,
        parsed=inventory.parsed,
        unchanged=inventory.unchanged,
        deleted=inventory.deleted,
        corpus_errors=len(inventory.errors),
        duration_s=round(inventory.elapsed_s, 3),
    )


async def _execute(
    settings: Settings,
    engine: Engine,
    scope: RunScope,
    stop: asyncio.Event,
    total: int,
    on_progress: Callable[[int, int], None] | None,
    growth: Growth | None,
) -> tuple[list[alerts.Event], bool]:
    """Check the run's targets here, or in several processes (``http.processes``); (events, cut short).
    A streaming run (``growth``) is always checked here: splitting needs every host's count."""
    parts = 1 if growth is not None else processes.process_count(settings.http, total)
    if parts > 1:
        counts = plan.count_plan_by_host(
            engine, run_id=scope.run_id, only_failing=scope.only_failing, stale_before=scope.stale_before
        )
        groups = processes.split_hosts(counts, parts)
        if len(groups) > 1:
            log.info("run.processes", run_id=scope.run_id, processes=len(groups))
            return await processes.check_in_processes(
                settings, engine, scope, groups, stop=stop, total=total, on_progress=on_progress
            )
    runner = Run(settings, engine, scope, stop, total=total, on_progress=on_progress, growing=growth)
    await runner.execute()
    return runner.events, runner.cut_short
