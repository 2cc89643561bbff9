"""Progress display: a rich bar with rate and ETA on a terminal, nothing when piped."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager


@contextmanager
def file_progress(tty: bool, label: str, total: int | None = None) -> Iterator[Callable[[int], None]]:
    """Yield ``tick(done)``; renders only on a terminal so piped output stays clean."""
    if not tty:
        yield lambda _done: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = [
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.speed}/s"),
    ]
    columns.append(TimeRemainingColumn())
    with Progress(*columns, transient=True) as progress:
        task = progress.add_task(label, total=total)
        yield lambda done: progress.update(task, completed=done)
