"""Configuration of DICOM ingestion: geometry policy, resampling, pseudonyms.

>>> IngestConfig().policy.missing_slices.value
'reject'
>>> IngestConfig().orientation
'LPS'
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from ctcorpus.config.base import StageConfig
from ctcorpus.enums import Action


class GeometryPolicy(StageConfig):
    """What ingestion does with a stack that has a given geometry defect.

    ``repair`` resamples (spacing, tilt) or drops exact duplicates; ``accept`` keeps the stack as
    it is (the defect is still recorded); ``reject`` quarantines the stack. Every decision is
    recorded as a quarantine row with its action, so a user can see why a volume looks the way
    it does.
    """

    missing_slices: Action = Field(
        Action.REJECT,
        description="A gap larger than gap_factor x the median slice step; repair interpolates across it.",
    )
    non_uniform_spacing: Action = Field(
        Action.REPAIR, description="Slice steps that differ by more than spacing_tolerance_mm; repair resamples to the median step."
    )
    gantry_tilt: Action = Field(
        Action.REPAIR,
        description="Slices stacked at an angle to their normal; repair resamples onto an orthogonal grid (as dcm2niix).",
    )
    duplicate_slice: Action = Field(
        Action.REPAIR,
        description="Several slices at one position; repair keeps one when they hold the same HU (else the stack is rejected).",
    )
    too_few_slices: Action = Field(Action.REJECT, description="Fewer than min_slices slices.")
    inconsistent_rescale: Action = Field(
        Action.ACCEPT,
        description="RescaleSlope/Intercept differ across slices; always applied per slice, so accept is safe.",
    )


class IngestConfig(StageConfig):
    """Settings of the ingest stage.

    Orientation: ``LPS`` (the default, DICOM's and SimpleITK's patient frame) makes the resampled
    array's index axes (x, y, z) increase towards patient Left, Posterior and Superior;
    ``RAS`` towards Right, Anterior and Superior. Arrays are stored (z, y, x).
    """

    target_spacing_mm: tuple[float, float, float] = Field(
        (1.5, 1.5, 1.5), description="Resampled voxel spacing (x, y, z) in mm."
    )
    orientation: Literal["LPS", "RAS"] = Field(
        "LPS", description="Axis directions of resampled volumes (index x, y, z increase towards L,P,S or R,A,S)."
    )
    hu_clip: tuple[int, int] = Field(
        (-1000, 1000),
        description=(
            "HU range resampled volumes are clipped to (CT-RATE, Merlin). -1000 loses nothing for air; "
            "dense bone and metal above 1000 saturate. Native volumes are not clipped, except that values "
            "below air (-1024: the fill outside the reconstructed field of view) are air before any resampling."
        ),
    )
    crop_pad_shape: tuple[int, int, int] | None = Field(
        None, description="Optional fixed (x, y, z) shape: resampled volumes are centre-cropped/padded (pad = air)."
    )
    min_slices: int = Field(10, ge=2, description="Stacks with fewer slices are too_few_slices.")
    gap_factor: float = Field(1.5, gt=1.0, description="A slice step above gap_factor x the median step is a missing slice.")
    spacing_tolerance_mm: float = Field(
        0.01, gt=0, description="Slice steps differing from the median by more than this are non-uniform."
    )
    tilt_tolerance_deg: float = Field(
        0.1, ge=0, description="Angles between slice normal and stacking direction below this are not a tilt."
    )
    policy: GeometryPolicy = Field(default_factory=GeometryPolicy, description="Action per geometry defect.")
    volumes_per_study: Literal["primary", "all"] = Field(
        "primary",
        description=(
            "Which accepted stacks of a study become corpus volumes: 'all', or 'primary' = one per study "
            "(axial first, then soft-tissue kernel over lung/bone kernel, then most coverage, then the "
            "thickest slices up to max_primary_thickness_mm). A 'primary' stack that assembly rejects (a corrupt "
            "slice, a gap only the pixels show) is replaced by the study's next stack in this order."
        ),
    )
    max_primary_thickness_mm: float = Field(5.0, gt=0, description="Thicker stacks are never chosen as primary.")
    workers: int = Field(2, ge=1, description="Threads reading headers and pixel data.")
    hash_files: bool = Field(True, description="sha256 every source file (provenance columns); off only for dry runs.")
    rehash: Literal["changed", "always"] = Field(
        "changed",
        description=(
            "Which files a run hashes again: 'changed' (the default) those whose size, mtime, ctime or inode "
            "differ from the last run's (the work store's discovery cache); 'always' every file, for a site "
            "whose file system does not keep ctime (a file rewritten with the same size and mtime is then "
            "not noticed). Stored results do not depend on it."
        ),
    )
    pseudonym_key: str | None = Field(
        None,
        description="Literal HMAC key for pseudonyms. For tests and demos only: real runs use pseudonym_key_env.",
    )
    pseudonym_key_env: str = Field(
        "CTCORPUS_PSEUDONYM_KEY",
        description=(
            "Environment variable holding the HMAC key, read when pseudonyms are made (not at import). A new "
            "key renames every patient, and splits follow the pseudonym: about a third of patients change split."
        ),
    )

    patient_id_zeros: Literal["keep", "strip"] = Field(
        "keep",
        description=(
            "How an all-digit PatientID is keyed for its pseudonym: 'keep' (the default) keys it as written, "
            "so '0012345' and '12345' are two patients, as in every earlier release; 'strip' drops its leading "
            "zeros, so they are one patient, never on both sides of a patient-level split. Ingest warns of each "
            "id an export spells both ways. Choose 'strip' for a new corpus: switching an existing one changes "
            "the pseudonyms, hence the splits, of ids with leading zeros, and an audit against its earlier "
            "versions can no longer match those patients. Ids without leading zeros are keyed alike either way."
        ),
    )

    @model_validator(mode="after")
    def _check_ranges(self) -> IngestConfig:
        if self.hu_clip[0] >= self.hu_clip[1]:
            raise ValueError(f"hu_clip must be (low, high) with low < high, got {self.hu_clip}")
        if min(self.target_spacing_mm) <= 0:
            raise ValueError(f"target_spacing_mm must be positive, got {self.target_spacing_mm}")
        if self.crop_pad_shape is not None and min(self.crop_pad_shape) < 1:
            # 0 made every volume empty, a negative size failed in the first resample
            raise ValueError(f"crop_pad_shape must be positive, got {self.crop_pad_shape}")
        return self
