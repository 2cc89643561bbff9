"""A streaming inventory as the dispatcher sees it: new articles' URLs arrive while the run checks.

The inventory pass runs in a thread (``sync_inventory``). Once it has settled what was already
known (vanished files gone, changed files read again), the run starts checking what the
inventory holds; each batch of new articles it commits afterwards is announced here, so that
the plan cursor that reached the end of what was stored waits for the next batch instead of
ending the run. Dedupe holds across that: the cursor only moves forward by URL id, and a URL
is one row however many articles carry it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import TypeVar

T = TypeVar("T")


class InventoryAbandoned(Exception):
    """The run stopped while its streaming inventory was still reading new articles; what was
    committed stays, and the next pass reads the rest (the inventory is incremental)."""


@dataclass(slots=True)
class Growth:
    """Batches of new URLs committed by an inventory pass that is still going on.

    ``settle`` and ``grow`` are called from the inventory's thread; everything else runs on
    the event loop.
    """

    loop: asyncio.AbstractEventLoop
    batches: int = 0
    done: bool = False
    error: BaseException | None = None
    abandoned: bool = False  # the run stopped: the pass ends at its next batch
    settled: asyncio.Event = field(default_factory=asyncio.Event)
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def settle(self) -> None:
        self.loop.call_soon_threadsafe(self.settled.set)

    def grow(self) -> None:
        if self.abandoned:  # raised in the inventory's thread, between two committed batches
            raise InventoryAbandoned("the run stopped before the inventory pass ended")
        self.loop.call_soon_threadsafe(self._grew)

    def _grew(self) -> None:
        self.batches += 1
        self._changed.set()

    def end(self, error: BaseException | None = None) -> None:
        """The pass is over (``error``: it failed, and the run with it)."""
        self.done, self.error = True, error
        self.finished.set()
        self.settled.set()
        self._changed.set()

    def mark(self) -> tuple[int, bool]:
        """What has been announced so far; taken before a plan query, so that a batch committed
        while the query runs is waited for no longer than it takes to notice it."""
        self.raise_failure()
        return self.batches, self.done

    async def after(self, mark: tuple[int, bool]) -> None:
        """Until something was announced since ``mark``: another batch, or the end."""
        while (self.batches, self.done) == mark:
            self._changed.clear()
            await self._changed.wait()
        self.raise_failure()

    def raise_failure(self) -> None:
        if self.error is not None:
            raise RuntimeError(f"the inventory failed: {self.error}") from self.error


async def until_settled(growth: Growth, inventory: Awaitable[T]) -> asyncio.Future[T]:
    """Start ``inventory`` and return its task once its first half is done (or it failed, which
    is then raised here: the run has not started checking)."""
    task = asyncio.ensure_future(inventory)

    def ended(done: asyncio.Future[T]) -> None:
        growth.end(None if done.cancelled() else done.exception())

    task.add_done_callback(ended)
    await growth.settled.wait()
    if task.done():
        task.result()
    return task


async def abandon(growth: Growth, inventory: asyncio.Future[T]) -> None:
    """The run ends early: let the pass stop at its next batch and wait for that (at most one
    batch of articles), so no thread writes on after the run."""
    growth.abandoned = True
    await asyncio.gather(inventory, return_exceptions=True)
