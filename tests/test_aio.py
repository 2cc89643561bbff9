"""The event loop choice (``http.event_loop``): uvloop by default, asyncio on request or as fallback."""

from __future__ import annotations

import asyncio
import gc
import sys

import pytest
import structlog
import uvloop

from monitor import aio
from monitor.config import load_settings


async def loop_type() -> type:
    return type(asyncio.get_running_loop())


def test_uvloop_is_the_default_loop() -> None:
    assert load_settings(None).http.event_loop == "uvloop"
    assert issubclass(aio.run(loop_type()), uvloop.Loop)


def test_asyncio_loop_on_request() -> None:
    kind = aio.run(loop_type(), "asyncio")
    assert not issubclass(kind, uvloop.Loop)
    assert issubclass(kind, asyncio.BaseEventLoop)


def test_missing_uvloop_falls_back_with_a_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop now raises ImportError
    with structlog.testing.capture_logs() as logs:
        kind = aio.run(loop_type())
    assert not issubclass(kind, uvloop.Loop)
    assert [e["event"] for e in logs] == ["aio.uvloop_missing"]


def test_event_loop_setting_is_validated() -> None:
    from monitor.config import ConfigError

    with pytest.raises(ConfigError, match="event_loop"):
        load_settings(None, {"http.event_loop": "trio"})


async def threshold() -> tuple[int, int, int]:
    return gc.get_threshold()


def test_gc_is_tuned_while_the_loop_runs_and_restored_after() -> None:
    before = gc.get_threshold()
    assert aio.run(threshold()) == aio.GC_THRESHOLD
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0
