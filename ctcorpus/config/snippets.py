"""Configuration of the snippets stage (image-reference mining and placement)."""

from __future__ import annotations

from pydantic import Field, field_validator

from ctcorpus.config.base import StageConfig


class SnippetsConfig(StageConfig):
    """Settings of the snippets stage (every field described)."""

    languages: tuple[str, ...] = Field(
        ("en", "de", "nl"),
        description=(
            "Languages whose reference keywords the grammar accepts when a report's language is "
            "unknown ('en', 'de', 'nl'). A report with a known language uses only that language's words."
        ),
    )
    max_range_images: int = Field(
        64,
        ge=1,
        description=(
            "Longest image range ('images 40-44') expanded into one pair per image; a longer range "
            "is kept as its first and last image only, so a typo like 'images 4-4000' cannot flood the table."
        ),
    )
    primary_series_number: int | None = Field(
        None,
        description=(
            "SeriesNumber that a reference without a series ('image 45') points at, in every study. None: "
            "the series the corpus volume was built from where it is the study's one volume; for a volume "
            "without a SeriesNumber, or among several (ingest.volumes_per_study 'all'), the study's only "
            "axial series, else the reference is quarantined as ambiguous_series."
        ),
    )
    bin_mm: float = Field(
        12.0,
        gt=0,
        description=(
            "Height of one coarse depth bin in mm (RadFinder: 4 slices of 3 mm = 12 mm); "
            "bin = floor(slice_index * spacing_z / bin_mm)."
        ),
    )
    out_of_volume_tolerance_slices: float = Field(
        0.5,
        ge=0,
        description=(
            "How far (in slices of the corpus volume) outside the first/last slice centre a referenced "
            "z may lie and still be clamped onto the edge slice; farther is quarantined as out_of_volume."
        ),
    )

    @field_validator("languages")
    @classmethod
    def _known_languages(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        known = {"en", "de", "nl"}
        if not value or set(value) - known:
            raise ValueError(f"languages must be a non-empty subset of {sorted(known)}")
        return value
