"""Metrics: a nightly run against the fixture server rewrites the textfile, the daemon serves the
same values on /metrics, /healthz answers, and each Metrics has its own registry."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import yaml
from apscheduler.triggers.interval import IntervalTrigger
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine
from structlog.testing import capture_logs
from typer.testing import CliRunner

from jobs.runner import execute
from jobs.scheduler import JobSpec, serve
from monitor.cli import app
from monitor.config import MetricsSettings, Settings
from monitor.run.metrics import Metrics
from tests.server import FixtureServer
from tests.test_jobs import runs, setup, until, write_article, write_config

__all__ = ["setup"]  # the fixture, re-exported for pytest

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]

METRICS = """
[alerts]
alert_after = 1
[metrics]
textfile = "{tmp}/textfile/monitor.prom"
top_hosts = 1
"""
RETRY = {"http.max_retries": 1, "http.backoff_base": 0.01}  # [http] is taken by write_config


def samples(text: str) -> Samples:
    """Every sample of an exposition text, keyed by name and sorted labels."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def corpus(tmp_path: Path, server: FixtureServer) -> None:
    """An ok URL, two 404s on 127.0.0.1, one on localhost, a URL retried once, and a bad file."""
    write_article(
        tmp_path / "corpus",
        "a",
        [
            server.url("/status/200?m=ok"),
            server.url("/status/404?m=1"),
            server.url("/status/404?m=2"),
            server.url("/status/404?m=3", host="localhost"),
            server.url(f"/flaky/1?key=metrics-{time.monotonic_ns()}"),
        ],
    )
    (tmp_path / "corpus" / "bad.md").write_text("---\ntitle: [unclosed\n---\n", encoding="utf-8")


async def test_nightly_run_writes_the_textfile_and_the_next_one_rewrites_it(
    setup: Callable[..., tuple[Settings, Engine]], server: FixtureServer, tmp_path: Path
) -> None:
    """The nightly job writes every metric the issue lists; parsed with prometheus_client's parser."""
    corpus(tmp_path, server)
    settings, engine = setup(METRICS.format(tmp=tmp_path), **RETRY)
    before = time.time()
    result = await execute("nightly_check", settings, engine, asyncio.Event())
    assert result.status == "finished"
    path = tmp_path / "textfile" / "monitor.prom"
    got = samples(path.read_text(encoding="utf-8"))
    assert got[("monitor_urls_checked", (("verdict", "ok"),))] == 2
    assert got[("monitor_urls_checked", (("verdict", "broken"),))] == 3
    # top_hosts = 1: the worst host by name, the rest summed under _other
    assert got[("monitor_broken_urls", (("host", f"127.0.0.1:{server.port}"),))] == 2
    assert got[("monitor_broken_urls", (("host", "_other"),))] == 1
    # what the fixture server saw: 404s are confirmed by a second attempt, the flaky URL is retried
    assert got[("monitor_requests", ())] == len(server.requests()) == 9
    assert got[("monitor_retries", ())] == 9 - 5
    assert got[("monitor_response_bytes", ())] > 0
    assert got[("monitor_alert_events", (("event", "link.broken"),))] == 3
    assert got[("monitor_alert_events", (("event", "link.recovered"),))] == 0
    assert got[("monitor_corpus_errors", ())] == 1
    job = (("job", "nightly_check"),)
    assert before <= got[("monitor_last_run_timestamp_seconds", job)] <= time.time()
    assert (
        got[("monitor_last_run_timestamp_seconds", job)]
        <= got[("monitor_last_success_timestamp_seconds", job)]
    )
    assert got[("monitor_run_duration_seconds", job)] > 0
    assert not [p for p in path.parent.iterdir() if p != path]  # the temporary file was renamed away
    first_success = got[("monitor_last_success_timestamp_seconds", job)]

    (tmp_path / "corpus" / "bad.md").unlink()
    prune = await execute("prune_history", settings, engine, asyncio.Event())
    assert prune.status == "finished"
    again = await execute("nightly_check", settings, engine, asyncio.Event())
    assert again.status == "finished"
    got = samples(path.read_text(encoding="utf-8"))
    assert got[("monitor_corpus_errors", ())] == 0
    assert got[("monitor_last_success_timestamp_seconds", job)] > first_success
    assert got[("monitor_alert_events", (("event", "link.broken"),))] == 0  # still broken: no new event
    # prune has no run rows: its times survive from the file the previous process wrote
    assert ("monitor_last_success_timestamp_seconds", (("job", "prune_history"),)) in got


def test_monitor_check_writes_the_textfile(
    server: FixtureServer, tmp_path: Path, plain_structlog: None
) -> None:
    """A one-shot `monitor check` writes the file too, under job="check"."""
    corpus(tmp_path, server)
    config = write_config(tmp_path, METRICS.format(tmp=tmp_path))
    env = {"MONITOR_HTTP__MAX_RETRIES": "1", "MONITOR_HTTP__BACKOFF_BASE": "0.01"}
    result = CliRunner().invoke(app, ["--config", str(config), "check", "--format", "json"], env=env)
    assert result.exit_code == 2, result.output
    got = samples((tmp_path / "textfile" / "monitor.prom").read_text(encoding="utf-8"))
    assert got[("monitor_urls_checked", (("verdict", "broken"),))] == 3
    assert ("monitor_last_success_timestamp_seconds", (("job", "check"),)) in got
    assert not any(labels == (("job", "nightly_check"),) for _, labels in got)


async def test_daemon_serves_the_textfile_values_on_metrics_and_answers_healthz(
    setup: Callable[..., tuple[Settings, Engine]], server: FixtureServer, tmp_path: Path
) -> None:
    """The daemon's nightly run, scraped over 127.0.0.1, shows exactly what it wrote to the textfile."""
    corpus(tmp_path, server)
    settings, engine = setup(METRICS.format(tmp=tmp_path) + "listen = true\nport = 0\n", **RETRY)
    first = datetime.now(UTC) + timedelta(seconds=2)  # one fire during the test
    trigger = IntervalTrigger(hours=1, start_date=first, timezone="UTC")
    specs = [JobSpec("nightly_check", True, trigger, "hourly")]
    path = tmp_path / "textfile" / "monitor.prom"
    shutdown = asyncio.Event()
    with capture_logs() as logs:
        daemon = asyncio.create_task(
            serve(settings, engine, specs=specs, shutdown=shutdown, install_signals=False)
        )
        try:
            await until(lambda: daemon.done() or any(e["event"] == "metrics.listening" for e in logs))
            assert not daemon.done(), daemon.exception()
            listening = next(e for e in logs if e["event"] == "metrics.listening")
            assert listening["address"] == "127.0.0.1"
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{listening['port']}") as client:
                health = await client.get("/healthz")
                assert health.status_code == 200
                assert health.json()["status"] == "ok" and health.json()["stale"] is True  # no nightly yet
                assert (await client.get("/nope")).status_code == 404

                def nightly_published() -> bool:
                    return path.exists() and 'job="nightly_check"' in path.read_text(encoding="utf-8")

                await until(nightly_published, timeout=60)
                scraped = await client.get("/metrics")
                assert scraped.status_code == 200
                assert scraped.headers["content-type"].startswith("text/plain")
                written = samples(path.read_text(encoding="utf-8"))
                assert samples(scraped.text) == written
                assert written[("monitor_urls_checked", (("verdict", "broken"),))] == 3
                health = await client.get("/healthz")
                assert health.status_code == 200 and health.json()["stale"] is False
        finally:
            shutdown.set()
            assert await asyncio.wait_for(daemon, 30) == 0
    assert [r.trigger for r in runs(engine)] == ["schedule"]


def test_each_metrics_has_its_own_registry() -> None:
    """Two Metrics in one process never share samples (no global default registry)."""
    a, b = Metrics(MetricsSettings()), Metrics(MetricsSettings())
    a.record_job("prune_history", 1000.0, 2.5, success=True)
    assert 'monitor_run_duration_seconds{job="prune_history"} 2.5' in a.render().decode()
    assert "prune_history" not in b.render().decode()


def test_an_unwritable_textfile_is_logged_not_raised(tmp_path: Path) -> None:
    """A textfile path that cannot be written ends as metrics.write_failed; the caller goes on."""
    (tmp_path / "file").write_text("", encoding="utf-8")
    metrics = Metrics(MetricsSettings(textfile=str(tmp_path / "file" / "m.prom")))
    with capture_logs() as logs:
        assert metrics.write_textfile() is None
    assert [e["event"] for e in logs] == ["metrics.write_failed"]


def test_example_alert_rule_and_dashboard_use_only_real_metrics() -> None:
    """examples/: the alert rules and the Grafana dashboard name only metrics Metrics exposes."""
    examples = Path(__file__).resolve().parent.parent / "examples"
    known = {family.name for family in Metrics(MetricsSettings()).registry.collect()}
    rules = yaml.safe_load((examples / "prometheus" / "alerts.yml").read_text(encoding="utf-8"))
    [group] = rules["groups"]
    nightly = next(r for r in group["rules"] if r["alert"] == "LinkMonitorNightlyMissing")
    assert "26 * 3600" in nightly["expr"] and 'job="nightly_check"' in nightly["expr"]
    dashboard = json.loads((examples / "grafana" / "dashboard.json").read_text(encoding="utf-8"))
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    exprs += [r["expr"] for r in group["rules"]]
    used = {name for e in exprs for name in re.findall(r"\bmonitor_[a-z_]+", e)}
    assert used and used <= known, sorted(used - known)
    assert used == known - {"monitor_last_run_timestamp_seconds", "monitor_last_finished_run_id"}
    promtool = shutil.which("promtool")
    if promtool is None:
        print("promtool not installed: the rule file was checked by parsing only")
        return
    checked = subprocess.run(
        [promtool, "check", "rules", str(examples / "prometheus" / "alerts.yml")],
        capture_output=True,
        text=True,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
