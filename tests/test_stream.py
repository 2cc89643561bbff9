"""Streaming inventory: a run checks what is stored while new articles are still being read.

Each test holds the inventory's thread at a batch boundary until the fixture server (real
sockets on 127.0.0.1) has seen the request it waits for. Without streaming that request can
only come after the pass, so the hold runs out (HOLD_S, a safety net, not a timing bound)
and the test fails on what was seen meanwhile, not on how long anything took.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from structlog.testing import capture_logs

from monitor.config import Settings
from monitor.fetch.hosts import HostLimiter
from monitor.run import inventory as run_inventory
from monitor.run.check import RunOutcome, RunRequest, run_check
from monitor.run.hostqueue import HOST_PAGE, MAIN, PAGE, HostQueue
from monitor.store.db import open_engine
from monitor.store.models import ResultRow, RunRow
from monitor.store.plan import Planned
from monitor.types import Target, TargetKind
from tests.server import FixtureServer
from tests.test_check import settings_for

HOLD_S = 30.0


def page(server: FixtureServer, *paths: str) -> str:
    """An article whose webUrl, originalUrl and ampWebUrl are the given fixture paths."""
    fields = ("webUrl", "originalUrl", "ampWebUrl")
    lines = ["---", 'title: "Stream fixture"']
    lines += [f'{field}: "{server.url(path)}"' for field, path in zip(fields, paths, strict=False)]
    return "\n".join([*lines, "---", ""])


def put(root: Path, name: str, text: str) -> Path:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


class Hold:
    """Wraps the inventory's ``save_parsed`` so that the thread stops before batch ``at`` until
    ``ready()`` is true (or HOLD_S passed); ``met`` says whether it was."""

    def __init__(
        self, monkeypatch: pytest.MonkeyPatch, at: int, ready: Callable[[], bool], wait_s: float = HOLD_S
    ) -> None:
        self.calls = 0
        self.met: bool | None = None
        self.thread: str | None = None
        original = run_inventory.store.save_parsed

        def save_parsed(*args: Any, **kwargs: Any) -> None:
            if args[1]:  # a batch with articles in it
                self.calls += 1
                if self.calls == at:
                    self.thread = threading.current_thread().name
                    deadline = time.monotonic() + wait_s
                    while not ready() and time.monotonic() < deadline:
                        time.sleep(0.01)
                    self.met = ready()
            original(*args, **kwargs)

        monkeypatch.setattr(run_inventory.store, "save_parsed", save_parsed)


def check(settings: Settings) -> tuple[RunOutcome, list[dict[str, Any]]]:
    engine = open_engine(settings.database_url)
    try:
        with capture_logs() as logs:
            outcome = asyncio.run(run_check(settings, engine, RunRequest()))
        return outcome, logs
    finally:
        engine.dispose()


@pytest.fixture
def one_article_batches(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(run_inventory, "BATCH", 1)  # each new article is committed (and announced) alone
    monkeypatch.setattr(run_inventory, "CHUNK", 1)
    yield


def results_of(settings: Settings, run_id: int) -> dict[str, str]:
    engine = open_engine(settings.database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                select(ResultRow.url_id, ResultRow.verdict).where(ResultRow.run_id == run_id)  # type: ignore[arg-type]
            ).all()
            total = conn.execute(select(RunRow.total_targets).where(RunRow.id == run_id)).scalar_one()  # type: ignore[arg-type]
            dupes = conn.execute(
                select(func.count()).select_from(ResultRow).where(ResultRow.run_id == run_id)  # type: ignore[arg-type]
            ).scalar_one()
        assert dupes == len(rows) == total
        return {str(uid): verdict for uid, verdict in rows}
    finally:
        engine.dispose()


def _first_run_streams(
    server: FixtureServer, settings: Settings, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(6):  # every article shares one URL and has two of its own
        put(root, f"a{i}.md", page(server, f"/status/200?s={i}", "/status/200?shared", f"/status/404?s={i}"))
    # the last article's batch waits until a URL of the first one has been requested
    hold = Hold(monkeypatch, at=6, ready=lambda: bool(server.requests("/status/200?s=0")))
    outcome, logs = check(settings)
    assert hold.met is True, "no URL was checked before the inventory's last batch was committed"
    assert hold.thread != threading.main_thread().name  # the pass ran beside the run, in a thread
    assert outcome.state == "finished" and outcome.total == outcome.checked == 13
    assert outcome.counts == {"ok": 7, "broken": 6}
    assert len(server.requests("/status/200?shared")) == 1  # one fetch per URL across batches
    assert sorted(s.target for s in server.requests("/status/200?s=")) == [
        f"/status/200?s={i}" for i in range(6)
    ]
    started = next(e for e in logs if e["event"] == "run.started")
    assert started["streaming"] is True
    done = next(e for e in logs if e["event"] == "run.inventory")
    assert done["parsed"] == 6 and done["files"] == 6
    results_of(settings, outcome.run_id)


def test_checking_starts_while_new_articles_are_still_read(
    server: FixtureServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, one_article_batches: None
) -> None:
    _first_run_streams(server, settings_for(tmp_path), tmp_path / "corpus", monkeypatch)


@pytest.mark.postgres
def test_streaming_on_postgres(
    server: FixtureServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, one_article_batches: None
) -> None:
    from tests.pg_schema import pg_schema_url

    with pg_schema_url() as url:
        _first_run_streams(server, settings_for(tmp_path, database_url=url), tmp_path / "corpus", monkeypatch)


def test_processes_above_one_read_the_whole_corpus_first(
    server: FixtureServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, one_article_batches: None
) -> None:
    """Splitting hosts between processes needs every host's count: no streaming then."""
    root = tmp_path / "corpus"
    for i in range(3):
        put(root, f"a{i}.md", page(server, f"/status/200?p={i}"))
    # nothing can be requested before the pass ends: a short hold shows it
    hold = Hold(monkeypatch, at=3, ready=lambda: bool(server.requests("/status/200?p=")), wait_s=1.0)
    outcome, logs = check(settings_for(tmp_path, **{"http.processes": 2}))
    assert hold.met is False
    assert outcome.checked == 3
    assert next(e for e in logs if e["event"] == "run.started")["streaming"] is False


def test_an_edited_or_deleted_article_is_settled_before_anything_is_checked(
    server: FixtureServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, one_article_batches: None
) -> None:
    """The links an edit removed, and those of a deleted article, are never requested by the next
    run, even though it checks while the new articles are read."""
    root = tmp_path / "corpus"
    settings = settings_for(tmp_path)
    put(root, "edited.md", page(server, "/status/404?old"))
    put(root, "deleted.md", page(server, "/status/404?deleted"))
    put(root, "kept.md", page(server, "/status/200?kept"))
    first, _ = check(settings)
    assert first.counts == {"broken": 2, "ok": 1}
    server.reset()
    put(root, "edited.md", page(server, "/status/200?fixed-by-the-editor"))
    (root / "deleted.md").unlink()
    for i in range(3):
        put(root, f"new{i}.md", page(server, f"/status/200?new={i}"))
    # the edited article's batch comes first; held, it would let a run that had already started
    # request the old link. Nothing is requested while it waits: it is read before checking starts
    hold = Hold(monkeypatch, at=1, ready=lambda: bool(server.requests("/status/")), wait_s=1.0)
    second, logs = check(settings)
    assert hold.met is False
    assert next(e for e in logs if e["event"] == "run.started")["streaming"] is True
    assert server.requests("/status/404?old") == [] and server.requests("/status/404?deleted") == []
    assert len(server.requests("/status/200?fixed-by-the-editor")) == 1
    assert second.counts == {"ok": 5} and second.errors == 0


def test_a_moved_article_is_checked_although_its_urls_were_known(
    server: FixtureServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, one_article_batches: None
) -> None:
    """An article moved to a new path: its URLs leave the inventory with the old path and come
    back, with their old (low) ids, when the new path is read, after the plan cursor passed
    them. The run checks them once the pass is over (``run.sweep``)."""
    root = tmp_path / "corpus"
    settings = settings_for(tmp_path)
    put(root, "a/0-moved.md", page(server, "/status/404?moved"))
    put(root, "a/1-kept.md", page(server, "/status/200?kept"))
    check(settings)
    server.reset()
    (root / "b").mkdir()
    (root / "a/0-moved.md").rename(root / "b/moved.md")
    put(root, "b/zz-new.md", page(server, "/status/200?new"))
    # the moved article is read only after the cursor went past its URL's id. The only host is
    # bound from the start (it has all the targets): its own cursor waits for new batches too, so
    # the new article's URL is checked while streaming and only the moved one is left over
    hold = Hold(monkeypatch, at=1, ready=lambda: bool(server.requests("/status/200?kept")))
    outcome, logs = check(settings)
    assert hold.met is True
    assert [s.method for s in server.requests("/status/404?moved")] == ["HEAD", "GET"]  # checked once
    assert outcome.counts == {"broken": 1, "ok": 2} and outcome.total == outcome.checked == 3
    assert [e["targets"] for e in logs if e["event"] == "run.sweep"] == [1]
    results_of(settings, outcome.run_id)


def test_a_failing_inventory_fails_the_run(
    server: FixtureServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, one_article_batches: None
) -> None:
    """A database error in the pass's second half ends the streaming run as failed, with the
    error, not as a finished run that silently checked half the corpus."""
    root = tmp_path / "corpus"
    for i in range(3):
        put(root, f"a{i}.md", page(server, f"/status/200?f={i}"))
    original = run_inventory.store.save_parsed
    calls = []

    def save_parsed(*args: Any, **kwargs: Any) -> None:
        calls.append(1)
        if len(calls) == 2:
            raise OSError("disk full")
        original(*args, **kwargs)

    monkeypatch.setattr(run_inventory.store, "save_parsed", save_parsed)
    settings = settings_for(tmp_path)
    with capture_logs() as logs, pytest.raises(RuntimeError, match="inventory failed: disk full"):
        engine = open_engine(settings.database_url)
        try:
            asyncio.run(run_check(settings, engine, RunRequest()))
        finally:
            engine.dispose()
    assert any(e["event"] == "run.failed" for e in logs)


def test_a_host_promoted_mid_run_takes_its_loaded_targets_with_it() -> None:
    """When a streaming inventory ends, a host that turned out bound gets a cursor of its own:
    what the shared source had loaded of it moves over (counted once, served first), and the
    shared source, now below a page, asks for more at once."""

    async def scenario() -> None:
        def planned(i: int, host: str) -> Planned:
            return Planned(i, Target(f"http://{host}/{i}", host, TargetKind.PAGE))

        queue = HostQueue(HostLimiter(2))
        queue.add([planned(i, "big" if i % 4 else f"h{i % 3}") for i in range(PAGE)], last=False)
        assert not queue.low.is_set()
        feed = queue.promote("big")
        assert feed.buffered == PAGE * 3 // 4 and queue.sources[MAIN].buffered == PAGE // 4
        assert queue.low.is_set() and feed.low.is_set() == (feed.buffered < HOST_PAGE)
        hosts = [item.target.host for item in iter(queue.take, None)]
        assert hosts[:2] == ["big", "big"]  # the bound host's free slots first
        assert "big" not in hosts[2:]  # and it left the round-robin (limit 2: no more now)
        assert queue.buffered == feed.buffered + queue.sources[MAIN].buffered

    asyncio.run(scenario())
