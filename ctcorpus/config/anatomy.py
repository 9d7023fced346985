"""Configuration of the anatomy stage: which segmenter, where its weights are, fallback thresholds."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from ctcorpus.config.base import StageConfig


class AnatomyConfig(StageConfig):
    """Settings of the anatomy stage (every field described)."""

    backend: Literal["auto", "totalsegmentator", "threshold"] = Field(
        "auto",
        description=(
            "Segmenter: 'totalsegmentator' (needs provisioned weights), 'threshold' (CPU-only HU fallback), "
            "or 'auto' (TotalSegmentator when its weights are present, else the fallback with a warning)."
        ),
    )
    task: str = Field("total", description="TotalSegmentator task name (e.g. 'total').")
    mode: Literal["default", "fast", "fastest"] = Field(
        "fastest",
        description="TotalSegmentator resolution: default 1.5 mm (tasks 291-295), fast 3 mm (297), fastest 6 mm (298).",
    )
    roi_subset: tuple[str, ...] | None = Field(
        None, description="TotalSegmentator class names to segment only (adds the 6 mm crop model, task 298)."
    )
    device: Literal["auto", "gpu", "cpu"] = Field(
        "auto", description="Where TotalSegmentator runs; 'auto' uses a GPU when torch sees one."
    )
    weights_path: Path | None = Field(
        None,
        description=(
            "Folder holding the DatasetNNN_* weight folders (TOTALSEG_WEIGHTS_PATH for the call only); "
            "None: $TOTALSEG_WEIGHTS_PATH at run time (the docker images set it), else <home_dir>/nnunet/results."
        ),
    )
    home_dir: Path | None = Field(
        None,
        description=(
            "TotalSegmentator home (TOTALSEG_HOME_DIR for the call only; its config.json is written there "
            "with send_usage_stats false); None: $TOTALSEG_HOME_DIR at run time, else ~/.totalsegmentator "
            "(/tmp/.totalsegmentator where the home is /, as TotalSegmentator's own tools use)."
        ),
    )
    allow_download: bool = Field(
        False, description="Let TotalSegmentator download missing weights at run time (off: fail before any work)."
    )
    nr_thr_resamp: int = Field(1, ge=1, description="TotalSegmentator resampling threads.")
    nr_thr_saving: int = Field(1, ge=1, description="TotalSegmentator saving threads.")
    body_hu: float = Field(-500.0, description="Fallback: HU above which a voxel is body tissue.")
    air_hu: float = Field(-400.0, description="Fallback: HU below which a voxel inside the body is air or lung.")
    airway_hu: float = Field(
        -950.0, description="Fallback: HU below which air can be airway lumen (lung parenchyma is about -850)."
    )
    lung_median_hu: tuple[float, float] = Field(
        (-930.0, -650.0),
        description=(
            "Fallback: median HU range of a lung component; below it is gas (bowel, stomach: about -1000), "
            "above it fat or partial-volume rims."
        ),
    )
    bone_hu: float = Field(200.0, description="Fallback: HU above which a voxel inside the body is bone.")
    min_lung_ml: float = Field(5.0, ge=0, description="Fallback: smallest air component kept as lung (ml).")
    min_bone_ml: float = Field(0.05, ge=0, description="Fallback: smallest bone component kept (ml).")
    max_airway_ml: float = Field(
        300.0, gt=0, description="Fallback: an airway tree larger than this has leaked into the lungs (ml)."
    )

    @field_validator("lung_median_hu")
    @classmethod
    def _low_below_high(cls, value: tuple[float, float]) -> tuple[float, float]:
        """A reversed range would accept no component: every volume silently without lungs."""
        if value[0] >= value[1]:
            raise ValueError(f"lung_median_hu must be (low, high) with low < high, got {value}")
        return value
