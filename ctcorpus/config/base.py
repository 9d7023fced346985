"""Base class of every config section: strict (unknown keys are errors) and immutable."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, model_validator


class StageConfig(BaseModel):
    """A config section; unknown fields are rejected so typos do not pass silently."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _empty_section(cls, data: object) -> object:
        """A section with no field under it (``train:`` whose fields are all commented out) is YAML's null:
        it keeps every default, where it was refused as 'Input should be a valid dictionary or instance of
        TrainConfig'."""
        return {} if data is None else data
