"""One batch of outcomes judged and written in one transaction: results, size checks, URL state.

Facts become verdicts here (``verdict.classify``; a 304 keeps the previous run's verdict
and facts), URL state advances and fires its alert transitions (``alerts.step``), and
the rows reach the store in one transaction, so a batch is all or nothing.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Protocol, TypeVar

import structlog
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError

from monitor import alerts
from monitor.clock import utcnow
from monitor.config import IgnoreRule, Settings
from monitor.store import acks, plan, results
from monitor.store.db import StoreError
from monitor.types import (
    CheckResult,
    FetchOutcome,
    Hop,
    ImageFacts,
    Judgement,
    Role,
    Severity,
    Size,
    SizeCheck,
    Target,
    TargetKind,
    Verdict,
)
from monitor.urls import redact_url
from monitor.verdict import classify, severity_for, size_check

log = structlog.get_logger("monitor.run")
T = TypeVar("T")

NOT_MODIFIED = " (not modified)"
ACKNOWLEDGED = " (acknowledged)"
IGNORED_METHOD = "SKIP"  # an outcome that was never fetched: an ignore rule matched (reason in the detail)
DB_RETRIES = 6  # reconnect attempts for one batch (about 6 s in all)


async def write_with_retry(write: Callable[[], T], *, what: str) -> T:
    """Run a database write in a thread, retrying when the connection was lost.

    A batch is one transaction, so a write cut by a dropped connection (a PostgreSQL
    restart, a terminated backend) rolled back whole and can simply be written again;
    result rows are ON CONFLICT DO NOTHING besides. Other database errors (disk full,
    constraint violations) stop the run with a clear message.
    """
    for attempt in range(1, DB_RETRIES + 1):
        try:
            return await asyncio.to_thread(write)
        except DBAPIError as exc:
            if not exc.connection_invalidated or attempt == DB_RETRIES:
                raise StoreError(f"cannot write {what} to the database: {_db_message(exc)}") from exc
            log.warning("db.reconnect", attempt=attempt, error=_db_message(exc))
            await asyncio.sleep(min(2.0, 0.1 * 2**attempt))
    raise AssertionError("unreachable")


def _db_message(exc: DBAPIError) -> str:
    text = str(exc.orig or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def ignore_reason(rules: Sequence[IgnoreRule], url: str, host: str, now: datetime) -> str | None:
    """The reason a URL is not checked (the first matching rule), or None when it is checked."""
    today = now.date()
    for index, rule in enumerate(rules):
        if rule.matches(url, host, today):
            return rule.describe(index)
    return None


def ignored_outcome(target: Target, reason: str) -> FetchOutcome:
    """What a target an ignore rule matched gets instead of a request; judged ``skipped``."""
    return FetchOutcome(url=target.url, attempts=0, method=IGNORED_METHOD, failure_detail=reason)


def _facts_from_previous(outcome: FetchOutcome, prev: dict[str, object]) -> FetchOutcome:
    """A 304 keeps the previous run's facts, marked not-modified."""
    width, height = prev.get("image_width"), prev.get("image_height")
    image = None
    fmt = prev.get("image_format")
    if fmt or width is not None:
        size = Size(width, height) if isinstance(width, int) and isinstance(height, int) else None
        image = ImageFacts(format=fmt if isinstance(fmt, str) else None, size=size)
    hops = tuple(Hop(str(u), int(s), loc) for u, s, loc in json.loads(str(prev.get("redirects") or "[]")))
    return FetchOutcome(
        url=outcome.url,
        status=int(prev["http_status"]) if prev.get("http_status") is not None else outcome.status,  # type: ignore[call-overload]
        final_url=prev.get("final_url") or outcome.final_url,  # type: ignore[arg-type]
        redirects=hops,
        attempts=outcome.attempts,
        elapsed_ms=outcome.elapsed_ms,
        method=outcome.method,
        content_type=prev.get("content_type") or outcome.content_type,  # type: ignore[arg-type]
        bytes_read=outcome.bytes_read,
        headers=outcome.headers,
        image=image,
        image_digest=prev.get("image_digest") if isinstance(prev.get("image_digest"), str) else None,  # type: ignore[arg-type]
        not_modified=True,
        etag=outcome.etag,
        last_modified=outcome.last_modified,
    )


def _judge(
    target: Target,
    outcome: FetchOutcome,
    prev: dict[str, object] | None,
    roles: frozenset[Role],
    settings: Settings,
    titles: Sequence[str] = (),
) -> tuple[FetchOutcome, Judgement]:
    """Classify an outcome; a 304 keeps the previous verdict and facts (severity follows today's policy)."""
    if outcome.method == IGNORED_METHOD:
        return outcome, Judgement(Verdict.SKIPPED, Severity.IGNORE, outcome.failure_detail)
    if outcome.not_modified and prev is not None:
        verdict = Verdict(str(prev["verdict"]))
        reason = str(prev["reason"]).removesuffix(ACKNOWLEDGED).removesuffix(NOT_MODIFIED)
        severity = severity_for(verdict, roles, target.host, settings.verdicts)
        return _facts_from_previous(outcome, prev), Judgement(verdict, severity, reason + NOT_MODIFIED)
    return outcome, classify(target, outcome, settings.verdicts, roles, titles)


class BatchGuard(Protocol):
    """Hooks into a batch's transaction (a distributed shard fences its writes and stores its events)."""

    def before(self, conn: Connection) -> None:
        """Runs first in the transaction; raising aborts the batch (nothing is written)."""

    def after(self, conn: Connection, events: list[alerts.Event], written: int) -> None:
        """Runs last in the transaction, with the batch's alert events."""


def save_results(
    engine: Engine,
    settings: Settings,
    run_id: int,
    batch: Sequence[tuple[plan.Planned, FetchOutcome]],
    guard: BatchGuard | None = None,
) -> list[alerts.Event]:
    """Judge one batch of outcomes and write results, size checks and URL state in one transaction."""
    now = utcnow()
    ids = [p.url_id for p, _ in batch]
    events: list[alerts.Event] = []
    rows = results.BatchWrite([], [], [], [])
    with engine.begin() as conn:
        if guard is not None:
            guard.before(conn)
        occs = results.occurrences_for(conn, ids)
        states = results.states_for(conn, ids)
        not_modified = [p.url_id for p, o in batch if o.not_modified]
        prevs = results.previous_results(conn, not_modified, run_id) if not_modified else {}
        acked = acks.active_for(conn, ids, now)
        recovered: list[int] = []
        for planned, raw in batch:
            uid = planned.url_id
            here = occs.get(uid, [])
            roles = frozenset(o.role for o in here)
            target = Target(
                url=planned.target.url,
                host=planned.target.host,
                kind=planned.target.kind,
                roles=roles,
                etag=planned.target.etag,
                last_modified=planned.target.last_modified,
            )
            titles = [o.title for o in here if o.title] if raw.title or raw.og_title else []
            outcome, judgement = _judge(target, raw, prevs.get(uid), roles, settings, titles)
            silent = uid in acked  # acknowledged: reported apart, never an error, never alerted
            if silent and judgement.verdict.is_good:
                recovered.append(uid)
            elif silent and judgement.severity is not Severity.IGNORE:
                judgement = Judgement(judgement.verdict, Severity.IGNORE, judgement.reason + ACKNOWLEDGED)
            result = CheckResult(target, outcome, judgement)
            rows.results.append(_result_row(run_id, uid, result, now))
            occ_dicts = [{"article": o.article, "location": o.location} for o in here]
            actual = outcome.image.size if outcome.image else None
            if target.kind is TargetKind.IMAGE:
                for occ in here:
                    if not occ.role.is_image:
                        continue
                    check = size_check(occ.declared, actual, settings.images)
                    rows.size_checks.append(
                        {
                            "run_id": run_id,
                            "occurrence_id": occ.id,
                            "url_id": uid,
                            "verdict": check.value,
                            "declared_width": occ.declared.width if occ.declared else None,
                            "declared_height": occ.declared.height if occ.declared else None,
                            "actual_width": actual.width if actual else None,
                            "actual_height": actual.height if actual else None,
                        }
                    )
                    if check is SizeCheck.SIZE_MISMATCH and not silent:
                        events.append(
                            alerts.size_mismatch_event(
                                target.url, occ.article, occ.location, occ.declared, actual, check
                            )
                        )
            state = states.get(uid)
            update, transition_events = _advance(uid, state, result, occ_dicts, settings, now, run_id)
            rows.url_updates.append(update)
            if not silent:
                events.extend(transition_events)
            if state is not None and transition_events:
                rows.state_changes.extend(
                    {
                        "run_id": run_id,
                        "url_id": uid,
                        "at": now,
                        "from_state": state.alert_state,
                        "to_state": update["alert_state"],
                    }
                    for name, _ in transition_events
                    if name in ("link.broken", "link.recovered", "link.flapping")
                )
            if (
                not silent
                and judgement.verdict is Verdict.MOVED_PERMANENTLY
                and (state is None or state.last_verdict != "moved_permanently")
            ):
                events.append(alerts.moved_event(target.url, outcome.final_url or target.url, occ_dicts))
            if (
                not silent
                and judgement.verdict is Verdict.BLOCKED
                and (state is None or state.last_verdict != "blocked")
            ):
                events.append(alerts.blocked_event(target.url, target.host, judgement.reason, occ_dicts))
            if (
                not silent
                and judgement.verdict is Verdict.TITLE_MISMATCH
                and (state is None or state.last_verdict != Verdict.TITLE_MISMATCH.value)
            ):
                events.append(
                    alerts.title_mismatch_event(target.url, target.host, judgement.reason, occ_dicts)
                )
            if (  # a change from a checked state: a cache that flips is one grouped event
                not silent
                and judgement.verdict is Verdict.AMP_NOT_CACHED
                and state is not None
                and state.last_verdict not in (None, Verdict.AMP_NOT_CACHED.value)
            ):
                events.append(
                    alerts.amp_not_cached_event(target.url, target.host, judgement.reason, occ_dicts)
                )
        acks.clear(conn, recovered)
        results.write_batch(conn, run_id, rows, now)
        if guard is not None:
            guard.after(conn, events, len(rows.results))
    return events


def _result_row(run_id: int, url_id: int, result: CheckResult, now: datetime) -> dict[str, object]:
    o, j = result.outcome, result.judgement
    size = o.image.size if o.image else None
    return {
        "run_id": run_id,
        "url_id": url_id,
        "checked_at": now,
        "verdict": j.verdict.value,
        "severity": j.severity.value,
        "reason": j.reason,
        "http_status": o.status,
        "final_url": redact_url(o.final_url) if o.final_url else None,
        "redirects": json.dumps(
            [[redact_url(h.url), h.status, h.location and redact_url(h.location)] for h in o.redirects]
        )
        if o.redirects
        else None,
        "attempts": o.attempts,
        "elapsed_ms": o.elapsed_ms,
        "method": o.method,
        "content_type": (o.content_type or None) and o.content_type[:200],
        "bytes_read": o.bytes_read,
        "failure": o.failure.value if o.failure else None,
        "image_format": o.image.format if o.image else None,
        "image_width": size.width if size else None,
        "image_height": size.height if size else None,
        "not_modified": o.not_modified,
        "image_digest": o.image_digest[:120] if o.image_digest else None,
    }


def _advance(
    url_id: int,
    state: results.UrlState | None,
    result: CheckResult,
    occurrences: list[dict[str, str]],
    settings: Settings,
    now: datetime,
    run_id: int,
) -> tuple[dict[str, object], list[alerts.Event]]:
    """The URL's new current state and the alert events its transition (if any) fires."""
    j, o = result.judgement, result.outcome
    prev = state or results.UrlState(url_id, 0, 0, None, None, "ok", 0, 0, "", None)
    failing = j.verdict.is_failure
    good = j.verdict.is_good
    alert_prev = alerts.AlertState(prev.alert_state, prev.alert_failures, prev.alert_successes, prev.recent)  # type: ignore[arg-type]
    new_alert, transition = alerts.step(alert_prev, j.verdict, j.severity, settings.alerts)
    failing_since = (prev.failing_since or now) if failing else None
    update: dict[str, object] = {
        "b_id": url_id,
        "last_checked": now,
        "last_run_id": run_id,
        "last_verdict": j.verdict.value,
        "last_severity": j.severity.value,
        "last_status": o.status,
        "last_ok": now if good else prev.last_ok,
        "failing_since": failing_since,
        "consecutive_failures": prev.consecutive_failures + 1 if failing else 0,
        "consecutive_successes": prev.consecutive_successes + 1 if good else 0,
        "etag": o.etag if o.etag is not None or not o.not_modified else None,
        "last_modified": o.last_modified,
        "alert_state": new_alert.state,
        "alert_failures": new_alert.consecutive_failures,
        "alert_successes": new_alert.consecutive_successes,
        "recent": new_alert.recent,
    }
    if o.not_modified:  # a 304 may omit validators: keep the ones we sent
        update["etag"] = o.etag or result.target.etag
        update["last_modified"] = o.last_modified or result.target.last_modified
    events: list[alerts.Event] = []
    if transition is not None:
        events.append(
            alerts.link_event(
                transition,
                result.target.url,
                judgement=j,
                state=new_alert,
                settings=settings.alerts,
                host=result.target.host,
                http_status=o.status,
                occurrences=occurrences,
                since=failing_since or prev.failing_since,
                down_for_runs=prev.consecutive_failures if transition == "recovered" else None,
            )
        )
    return update, events
