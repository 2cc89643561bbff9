"""SIGINT/SIGTERM for foreground commands: the first asks for a graceful stop, the second stops now.

One place for what `monitor check` and `monitor run-job` share. POSIX only (the tool runs
under systemd, in containers and in CI); off the main thread no handler is installed.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager

SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def stop_on_signals(stop: asyncio.Event, *, now: Callable[[], bool] = lambda: False) -> Iterator[None]:
    """Set ``stop`` on the first signal; cancel the current task on the second (or when ``now()`` says so)."""
    loop = asyncio.get_running_loop()
    current = asyncio.current_task()

    def on_signal() -> None:
        if (stop.is_set() or now()) and current is not None:
            current.cancel()
        stop.set()

    installed = []
    for sig in SIGNALS:
        try:
            loop.add_signal_handler(sig, on_signal)
        except (RuntimeError, ValueError):  # not the main thread's loop: leave signals alone
            continue
        installed.append(sig)
    try:
        yield
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
