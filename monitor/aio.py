"""The one way this program runs an event loop: uvloop by default, asyncio's own on request.

Why uvloop: a check is a few hundred thousand small requests and on a small machine the
event loop's own Python code is a large part of the CPU per URL; uvloop's loop and
transports are C (about 15% less CPU per URL in ``bench/check_bench.py``). Where uvloop is
not installed (Windows) the standard loop is used with a warning, never an error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, Literal, TypeVar

import structlog

log = structlog.get_logger("monitor.aio")
T = TypeVar("T")


def run(main: Coroutine[Any, Any, T], loop: Literal["uvloop", "asyncio"] = "uvloop") -> T:
    """``asyncio.run(main)`` on the chosen event loop implementation."""
    if loop == "uvloop":
        try:
            import uvloop
        except ImportError:
            log.warning("aio.uvloop_missing", detail="uvloop is not installed; using asyncio's event loop")
        else:
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                return runner.run(main)
    return asyncio.run(main)
