"""Prometheus metrics: the one module that owns the collectors, exposed as a textfile or over HTTP.

Every ``Metrics`` has its own ``CollectorRegistry`` (never prometheus-client's global
one), so two runs in one process, or two tests, never see each other's samples. The
figures are read from the database after each run (``store.figures``), so the textfile
written by a one-shot ``monitor check`` and the daemon's ``/metrics`` show the same values
for the same database. All are gauges of the newest run, the convention for batch jobs:
a counter in a file rewritten by short-lived processes would reset every night.

The textfile follows node_exporter's textfile collector: written to a temporary file in
the same folder, then renamed over the old one, so a scrape never reads half a file.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, Gauge, generate_latest, write_to_textfile
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine

from monitor import alerts
from monitor.config import MetricsSettings
from monitor.logs import ALERT_EVENTS
from monitor.store.figures import JobTimes, job_times, latest_figures

log = structlog.get_logger("monitor.metrics")

OTHER_HOSTS = "_other"  # the host label that sums every host beyond metrics.top_hosts


@dataclass(slots=True)
class _Times:
    last_run: float | None = None
    last_success: float | None = None
    duration_s: float | None = None

    def merge(self, other: JobTimes | _Times) -> None:
        """Keep the newest of each timestamp; the duration goes with the newest success."""
        if other.last_run is not None and (self.last_run is None or other.last_run > self.last_run):
            self.last_run = other.last_run
        if other.last_success is not None and (
            self.last_success is None or other.last_success > self.last_success
        ):
            self.last_success = other.last_success
            duration = other.last_duration_s if isinstance(other, JobTimes) else other.duration_s
            self.duration_s = duration


class Metrics:
    """The collectors of one process (or one test), fed by ``refresh`` and ``record_job``."""

    def __init__(self, settings: MetricsSettings) -> None:
        self.settings = settings
        self.registry = CollectorRegistry()
        self._times: dict[str, _Times] = {}
        r = self.registry
        self.last_run = Gauge(
            "monitor_last_run_timestamp_seconds",
            "When the job last started (Unix time).",
            ["job"],
            registry=r,
        )
        self.last_success = Gauge(
            "monitor_last_success_timestamp_seconds",
            "When the job last finished successfully (Unix time).",
            ["job"],
            registry=r,
        )
        self.duration = Gauge(
            "monitor_run_duration_seconds", "Duration of the job's last successful run.", ["job"], registry=r
        )
        self.run_id = Gauge("monitor_last_finished_run_id", "The newest finished run.", registry=r)
        self.urls = Gauge(
            "monitor_urls_checked",
            "URLs the newest finished run checked, by verdict.",
            ["verdict"],
            registry=r,
        )
        self.broken = Gauge(
            "monitor_broken_urls",
            f"Error-severity URLs of the newest finished run, top hosts (the rest: host={OTHER_HOSTS!r}).",
            ["host"],
            registry=r,
        )
        self.requests = Gauge("monitor_requests", "HTTP requests of the newest finished run.", registry=r)
        self.retries = Gauge("monitor_retries", "Retried requests of the newest finished run.", registry=r)
        self.bytes = Gauge("monitor_response_bytes", "Bytes read by the newest finished run.", registry=r)
        self.alert_events = Gauge(
            "monitor_alert_events",
            "Alert events the last run checked by this process emitted, by event.",
            ["event"],
            registry=r,
        )
        self.corpus_errors = Gauge(
            "monitor_corpus_errors", "Files that could not be read as articles.", registry=r
        )

    def record_job(self, job: str, started: float, duration_s: float, success: bool) -> None:
        """A job this process ran: it started at ``started`` (Unix time) and took ``duration_s``."""
        end = started + duration_s
        self._times.setdefault(job, _Times()).merge(
            _Times(started, end if success else None, duration_s if success else None)
        )
        self._publish_times()

    def record_events(self, events: Iterable[alerts.Event]) -> None:
        """The alert events of the run this process just checked (zero for the names not seen)."""
        counts = dict.fromkeys(ALERT_EVENTS, 0)
        for name, _ in events:
            counts[name] = counts.get(name, 0) + 1
        for name, n in counts.items():
            self.alert_events.labels(event=name).set(n)

    def refresh(self, engine: Engine) -> None:
        """Re-read the run figures and the run-backed jobs' times from the database."""
        for job, times in job_times(engine).items():
            self._times.setdefault(job, _Times()).merge(times)
        self._publish_times()
        figures = latest_figures(engine, self.settings.top_hosts)
        if figures is None:
            return
        self.run_id.set(figures.run_id)
        self.urls.clear()
        for verdict, n in sorted(figures.by_verdict.items()):
            self.urls.labels(verdict=verdict).set(n)
        self.broken.clear()
        for host, n in figures.broken_by_host.items():
            self.broken.labels(host=host).set(n)
        if figures.broken_other_hosts:
            self.broken.labels(host=OTHER_HOSTS).set(figures.broken_other_hosts)
        self.requests.set(figures.requests)
        self.retries.set(figures.retries)
        self.bytes.set(figures.bytes_read)
        self.corpus_errors.set(figures.corpus_errors)

    def _publish_times(self) -> None:
        for job, t in sorted(self._times.items()):
            if t.last_run is not None:
                self.last_run.labels(job=job).set(t.last_run)
            if t.last_success is not None:
                self.last_success.labels(job=job).set(t.last_success)
            if t.duration_s is not None:
                self.duration.labels(job=job).set(t.duration_s)

    def carry_over(self, path: Path) -> None:
        """Keep the job times an earlier process wrote to the textfile (jobs without run rows: prune)."""
        try:
            text = path.read_text(encoding="utf-8")
        except OSError:
            return
        seen: dict[str, _Times] = {}
        try:
            for family in text_string_to_metric_families(text):
                for sample in family.samples:
                    job = sample.labels.get("job")
                    if job is None:
                        continue
                    t = seen.setdefault(job, _Times())
                    if sample.name == "monitor_last_run_timestamp_seconds":
                        t.last_run = sample.value
                    elif sample.name == "monitor_last_success_timestamp_seconds":
                        t.last_success = sample.value
                    elif sample.name == "monitor_run_duration_seconds":
                        t.duration_s = sample.value
        except ValueError as exc:  # a hand-edited or truncated file: start afresh, say so
            log.warning("metrics.write_failed", path=str(path), error=f"old textfile unreadable: {exc}")
            return
        for job, t in seen.items():
            self._times.setdefault(job, _Times()).merge(t)

    def render(self) -> bytes:
        """The exposition text of every collector (what /metrics serves)."""
        return bytes(generate_latest(self.registry))

    def write_textfile(self) -> Path | None:
        """Write ``metrics.textfile`` (temporary file + rename) when it is set; errors are logged."""
        if not self.settings.textfile:
            return None
        path = Path(self.settings.textfile)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_to_textfile(str(path), self.registry)
        except OSError as exc:
            log.warning("metrics.write_failed", path=str(path), error=f"{type(exc).__name__}: {exc}")
            return None
        return path

    def publish(self, engine: Engine) -> Path | None:
        """After a run or job: refresh from the database and rewrite the textfile (when set)."""
        if self.settings.textfile:
            self.carry_over(Path(self.settings.textfile))
        try:
            self.refresh(engine)
        except Exception as exc:  # metrics must never turn a finished run into a failed one
            log.warning(
                "metrics.write_failed", path=self.settings.textfile, error=f"{type(exc).__name__}: {exc}"
            )
            return None
        return self.write_textfile()


def job_succeeded(status: str, value: Any) -> bool:
    """A job succeeded when it finished and, for a checked run, the run finished (not interrupted)."""
    if status != "finished":
        return False
    if hasattr(value, "shards"):  # a distributed run queued: it succeeds when the workers finish it
        return False
    return getattr(value, "state", "finished") == "finished"


def now() -> float:
    """Unix time, for ``record_job``."""
    return time.time()
