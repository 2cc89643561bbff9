"""The one way this program runs an event loop: uvloop by default, asyncio's own on request.

Why uvloop: a check is a few hundred thousand small requests and on a small machine the
event loop's own Python code is a large part of the CPU per URL; uvloop's loop and
transports are C (about 15% less CPU per URL in ``bench/check_bench.py``). Where uvloop is
not installed (Windows) the standard loop is used with a warning, never an error.

Why the garbage collector is tuned while the loop runs: every request allocates hundreds of
short-lived objects, so the default generation-0 threshold (700 allocations) ran the cycle
collector thousands of times a second over the same long-lived objects (modules, settings,
the inventory page). Freezing what exists at start and collecting every 50,000 allocations
cost 12% less CPU per URL, side by side on a 12k-URL check, with the same peak memory.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Coroutine
from typing import Any, Literal, TypeVar

import structlog

log = structlog.get_logger("monitor.aio")
T = TypeVar("T")


GC_THRESHOLD = (50_000, 50, 100)


def run(main: Coroutine[Any, Any, T], loop: Literal["uvloop", "asyncio"] = "uvloop") -> T:
    """``asyncio.run(main)`` on the chosen event loop implementation, with the GC tuned meanwhile."""
    before = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)
    try:
        return _run(main, loop)
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()


def _run(main: Coroutine[Any, Any, T], loop: Literal["uvloop", "asyncio"]) -> T:
    if loop == "uvloop":
        try:
            import uvloop
        except ImportError:
            log.warning("aio.uvloop_missing", detail="uvloop is not installed; using asyncio's event loop")
        else:
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                return runner.run(main)
    return asyncio.run(main)
