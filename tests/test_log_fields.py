"""Log field namings: real runs against the fixture server, logged as JSON lines under
``logging.fields = "native"`` and ``"otel"``; every catalogued event that appears must carry its
catalogue keys (``logs.EVENTS``, through ``logs.event_keys``) under that naming, and nothing of
the other naming. The Vector example that routes alert events to a webhook is checked too."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest

from jobs.runner import execute
from monitor.logs import ALERT_EVENTS, EVENTS, OTEL_NAMES, configure_logging, event_keys, otel_fields
from monitor.run.check import run_check
from monitor.store.db import open_engine
from tests.server import FixtureServer
from tests.test_check import JPEG, settings_for, write

pytestmark = pytest.mark.usefixtures("plain_structlog")
BASE = ("timestamp", "level", "event")
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def emitted(server: FixtureServer, tmp_path: Path, fields: str) -> list[dict[str, Any]]:
    """Four runs and three jobs whose events cover the alert catalogue; the JSON lines they wrote."""
    log = tmp_path / "events.jsonl"
    s = settings_for(
        tmp_path,
        **{
            "alerts.alert_after": 1,
            "alerts.host_down_threshold": 3,
            "alerts.flap_threshold": 2,
            "alerts.flap_window": 4,
            "reports.folder": str(tmp_path / "reports"),
            "logging.fields": fields,
            "logging.file": str(log),
            "logging.stderr": False,
        },
    )
    configure_logging(s.logging)
    switch = f"lf-{fields}"
    write(tmp_path, "bad.md", "---\ntitle: [\n---\n")
    write(tmp_path, "a.md", f'---\nwebUrl: "{server.url(f"/switch/{switch}", host="localhost")}"\n---\n')
    write(tmp_path, "m.md", f'---\nwebUrl: "{server.url("/redirect-to/301?to=/status/200")}"\n---\n')
    images = f'images:\n  - url: "{server.url(JPEG)}"\n    width: 10\n    height: 10\n'
    write(tmp_path, "i.md", f"---\n{images}---\n")
    for i in range(3):
        write(tmp_path, f"d{i}.md", f'---\nwebUrl: "{server.url(f"/status/404?d={i}")}"\n---\n')
    engine = open_engine(s.database_url)
    for status in (404, 200, 404, 200):
        server.set_switch(switch, status)
        asyncio.run(run_check(s, engine))
    stop = asyncio.Event()
    asyncio.run(execute("nightly_check", s, engine, stop))
    asyncio.run(execute("prune_history", s, engine, stop))
    bad = settings_for(tmp_path, **{"reports.file_pattern": "{nope}", "reports.folder": str(tmp_path / "r2")})
    asyncio.run(execute("nightly_check", bad, engine, stop))  # job.failed: an unknown placeholder
    engine.dispose()
    return [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]


@pytest.mark.parametrize("fields", ["native", "otel"])
def test_every_emitted_event_matches_the_catalogue(
    server: FixtureServer, tmp_path: Path, fields: str
) -> None:
    """Each catalogued event carries its keys under the naming in force, and no key of the other."""
    events = emitted(server, tmp_path, fields)
    seen = {e["event"] for e in events}
    wanted = {*ALERT_EVENTS, "corpus.error", "run.started", "run.finished", "job.started", "job.finished"}
    assert wanted | {"job.failed"} <= seen, sorted(wanted - seen)
    foreign = set(OTEL_NAMES) if fields == "otel" else {*OTEL_NAMES.values(), "event.name", "error.type"}
    for event in events:
        if event["event"] not in EVENTS:
            continue
        missing = [k for k in (*BASE, *event_keys(event["event"], fields)) if k not in event]
        assert not missing, f"{event['event']} under {fields}: missing {missing} in {sorted(event)}"
        assert not foreign & set(event), f"{event['event']} under {fields}: {sorted(foreign & set(event))}"
    if fields == "otel":
        broken = next(e for e in events if e["event"] == "link.broken")
        assert broken["event.name"] == "link.broken" and broken["error.type"] == "broken"
        assert broken["server.address"] == "localhost" and broken["server.port"] == server.port
        assert broken["http.response.status_code"] == 404 and broken["url.full"].startswith(
            "http://localhost"
        )
        failed = next(e for e in events if e["event"] == "job.failed")
        assert failed["error.type"] == failed["exception.message"].split(":")[0]


def test_otel_names_split_host_and_error() -> None:
    """host -> server.address (+ server.port); error -> error.type + exception.message; IPv6 too."""
    out = otel_fields(None, "", {"event": "job.failed", "error": "KeyError: 'x'", "host": "[::1]:8080"})
    assert out == {
        "event": "job.failed",
        "event.name": "job.failed",
        "exception.message": "KeyError: 'x'",
        "error.type": "KeyError",
        "server.address": "::1",
        "server.port": 8080,
    }
    assert (
        otel_fields(None, "", {"event": "host.down", "host": "example.com"})["server.address"]
        == "example.com"
    )


def test_vector_example_routes_exactly_the_alert_events_to_a_webhook() -> None:
    """examples/vector/vector.toml parses, chains source -> filter -> webhook sink, and its filter
    names exactly logs.ALERT_EVENTS under the otel naming it expects."""
    config = tomllib.loads((EXAMPLES / "vector" / "vector.toml").read_text(encoding="utf-8"))
    sources, transforms, sinks = config["sources"], config["transforms"], config["sinks"]
    [(source, _)] = sources.items()
    chain = {name: t["inputs"] for name, t in transforms.items()}
    assert chain["alerts_only"] == [next(n for n, i in chain.items() if source in i)]
    filter_ = transforms["alerts_only"]
    listed = re.search(r"includes\(\[(.*?)\]", filter_["condition"])
    assert listed is not None
    names = set(re.findall(r'"([^"]+)"', listed[1]))
    assert names == set(ALERT_EVENTS) and '."event.name"' in filter_["condition"]
    webhook = sinks["webhook"]
    assert webhook["type"] == "http" and webhook["inputs"] == ["to_webhook"]
    assert webhook["encoding"]["codec"] == "json" and webhook["uri"].startswith("${")
    vector = shutil.which("vector")
    if vector is None:
        print("vector not installed (not packaged in Debian or PyPI): the config was checked by parsing only")
        return
    checked = subprocess.run(
        [vector, "validate", "--no-environment", str(EXAMPLES / "vector" / "vector.toml")],
        capture_output=True,
        text=True,
        env={**os.environ, "MONITOR_WEBHOOK_URL": "http://127.0.0.1:9/hook"},
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
