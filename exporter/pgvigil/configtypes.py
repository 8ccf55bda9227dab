"""Building blocks shared by every config section model (config.py and the section modules
of the sidecar, custom queries and targets), kept apart so those modules import no cycle."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

IDENTIFIER_PATTERN = r"^[A-Za-z_][A-Za-z0-9_$]*$"


class Strict(BaseModel):
    """Unknown keys are errors: a misspelt key must not be silently ignored."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


Identifier = Annotated[str, Field(min_length=1, max_length=63, pattern=IDENTIFIER_PATTERN)]
Seconds = Annotated[float, Field(gt=0, le=3600)]
