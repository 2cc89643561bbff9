"""Alert events end to end: real check runs against the fixture server, with URLs changing between runs."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy import select
from structlog.testing import capture_logs

from monitor.run.check import run_check
from monitor.store.db import open_engine
from monitor.store.models import StateChangeRow
from tests.server import FixtureServer
from tests.test_check import settings_for, write


def _run(settings: object, engine: object) -> list[dict[str, object]]:
    with capture_logs() as events:
        asyncio.run(run_check(settings, engine))  # type: ignore[arg-type]
    return events


def names(events: list[dict[str, object]], event: str) -> list[object]:
    return [e.get("url") or e.get("host") for e in events if e["event"] == event]


def test_broken_after_two_runs_then_recovered(server: FixtureServer, tmp_path: Path) -> None:
    """A link alerts broken on its second failed run (not the first) and recovers on its first good run."""
    url = server.url("/switch/a")
    write(tmp_path, "a.md", f'---\nwebUrl: "{url}"\nampWebUrl: "{server.url("/status/200")}"\n---\n')
    s = settings_for(tmp_path)
    engine = open_engine(s.database_url)
    server.set_switch("a", 404)
    first, second = _run(s, engine), _run(s, engine)
    server.set_switch("a", 200)
    third, fourth = _run(s, engine), _run(s, engine)
    assert names(first, "link.broken") == []
    assert names(second, "link.broken") == [url]
    broken = next(e for e in second if e["event"] == "link.broken")
    assert broken["verdict"] == "broken" and broken["http_status"] == 404
    assert broken["locations"] == [f"{tmp_path}/corpus/a.md:webUrl"] and broken["since"]
    assert names(third, "link.recovered") == [url]
    assert names(fourth, "link.recovered") == [] and names(fourth, "link.broken") == []
    for events in (first, second, third, fourth):
        run_ids = {e.get("run_id") for e in events if e["event"] in ("run.started", "run.finished")}
        assert len(run_ids) == 1 and None not in run_ids
    with engine.connect() as conn:
        changes = conn.execute(select(StateChangeRow.from_state, StateChangeRow.to_state)).all()
    assert changes == [("ok", "broken"), ("broken", "ok")]


def test_flapping_is_reported_once(server: FixtureServer, tmp_path: Path) -> None:
    """A link that flips every run is reported once as flapping, not broken/recovered each time."""
    url = server.url("/switch/f")
    write(tmp_path, "a.md", f'---\nwebUrl: "{url}"\n---\n')
    s = settings_for(
        tmp_path, **{"alerts.alert_after": 1, "alerts.flap_threshold": 3, "alerts.flap_window": 6}
    )
    engine = open_engine(s.database_url)
    events: list[dict[str, object]] = []
    for i in range(8):
        server.set_switch("f", 500 if i % 2 == 0 else 200)
        events += _run(s, engine)
    assert names(events, "link.flapping") == [url]
    flapping_at = next(i for i, e in enumerate(events) if e["event"] == "link.flapping")
    later = events[flapping_at + 1 :]
    assert names(later, "link.broken") == [] and names(later, "link.recovered") == []


def test_blocked_does_not_page(server: FixtureServer, tmp_path: Path) -> None:
    """Bot protection is reported, never alerted as broken, however many runs it lasts."""
    write(tmp_path, "a.md", f'---\nwebUrl: "{server.url("/cf-challenge")}"\n---\n')
    s = settings_for(tmp_path)
    engine = open_engine(s.database_url)
    events = _run(s, engine) + _run(s, engine) + _run(s, engine)
    assert names(events, "link.broken") == []
    finished = [e for e in events if e["event"] == "run.finished"]
    assert finished[-1]["counts"] == {"blocked": 1}


def test_dead_host_is_one_event(server: FixtureServer, tmp_path: Path) -> None:
    """Many newly broken links on one host become one host.down event instead of one per link."""
    for i in range(6):
        write(tmp_path, f"a{i}.md", f'---\nwebUrl: "{server.url(f"/status/404?i={i}")}"\n---\n')
    s = settings_for(tmp_path, **{"alerts.alert_after": 1, "alerts.host_down_threshold": 5})
    events = _run(s, open_engine(s.database_url))
    down = [e for e in events if e["event"] == "host.down"]
    assert names(events, "link.broken") == [] and len(down) == 1
    assert down[0]["host"] == f"127.0.0.1:{server.port}" and down[0]["count"] == 6


def test_corpus_error_and_moved_events(server: FixtureServer, tmp_path: Path) -> None:
    """A bad file logs corpus.error with path and reason; a 301 logs link.moved with the final URL."""
    write(tmp_path, "bad.md", "---\ntitle: [\n---\n")
    write(tmp_path, "a.md", f'---\nwebUrl: "{server.url("/redirect-to/301?to=/status/200")}"\n---\n')
    s = settings_for(tmp_path)
    events = _run(s, open_engine(s.database_url))
    errors = [e for e in events if e["event"] == "corpus.error"]
    assert (
        len(errors) == 1 and str(errors[0]["path"]).endswith("bad.md") and errors[0]["kind"] == "yaml_syntax"
    )
    moved = [e for e in events if e["event"] == "link.moved"]
    assert moved and moved[0]["final_url"] == server.url("/status/200")
