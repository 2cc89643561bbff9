"""The base of every settings section: unknown keys are errors, values are frozen once loaded."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

PositiveInt = Annotated[int, Field(gt=0)]
NonNegFloat = Annotated[float, Field(ge=0)]
PositiveFloat = Annotated[float, Field(gt=0)]


class Section(BaseModel):
    """A table of the config file; a misspelt key stops start-up instead of being ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)
