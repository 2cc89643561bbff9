"""How a job ended: shared by the runner and the jobs themselves (a job raises ``JobSkipped``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Status = Literal["finished", "skipped", "busy", "failed"]


class JobSkipped(Exception):
    """The job had nothing to do; the message says why."""


@dataclass(slots=True)
class JobResult:
    """How one job execution ended, with what the job returned (a RunOutcome, a PruneOutcome)."""

    job: str
    status: Status
    value: Any = None
    detail: str = ""
    duration_s: float = 0.0
