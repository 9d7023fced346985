"""Base class of every config section: strict (unknown keys are errors) and immutable."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StageConfig(BaseModel):
    """A config section; unknown fields are rejected so typos do not pass silently."""

    model_config = ConfigDict(extra="forbid", frozen=True)
