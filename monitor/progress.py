"""Progress display: a rich bar with rate and ETA on a terminal, nothing when piped."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def file_progress(tty: bool, label: str, total: int | None = None) -> Iterator[Callable[..., None]]:
    """Yield ``tick(done, total=None)``; renders only on a terminal so piped output stays clean."""
    if not tty:
        yield lambda _done, _total=None: None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        TextColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class Rate(ProgressColumn):
        """Items per second (rich's own speed column is for bytes)."""

        def render(self, task: Any) -> Text:
            speed = task.finished_speed or task.speed
            return Text(f"{speed:,.0f}/s" if speed else "–/s", style="progress.data.speed")

    columns = [
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        Rate(),
        TimeRemainingColumn(),
    ]
    with Progress(*columns, transient=True) as progress:
        task = progress.add_task(label, total=total)
        yield lambda done, total=None: progress.update(task, completed=done, total=total)
