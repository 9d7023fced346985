"""Base class of every config section: strict (unknown keys are errors) and immutable."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, field_validator, model_validator


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

    @field_validator("*")
    @classmethod
    def _home_expanded(cls, value: object) -> object:
        """``~`` in a path is the user's home, as a shell reads it: YAML keeps it as text, so ``output_dir:
        ~/ctcorpus`` was a folder named '~' of the working folder, and ``export_dir: ~/export`` or
        ``anatomy.weights_path: ~/weights`` named no folder (provisioned weights read as missing)."""
        if isinstance(value, Path):
            return value.expanduser()
        if isinstance(value, tuple) and value and all(isinstance(v, Path) for v in value):
            return tuple(v.expanduser() for v in value)
        return value
