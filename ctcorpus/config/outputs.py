"""Configuration of the corpus outputs: splits, shards, Parquet files."""

from __future__ import annotations

from pydantic import Field, field_validator

from ctcorpus.config.base import StageConfig


class OutputConfig(StageConfig):
    """Settings of the outputs stage (tables, shards, splits, manifest)."""

    dataset_version: str = Field(
        "v1",
        description="Folder `build` writes when given no --out: <run.output_dir>/dataset/<dataset_version>. A build "
        "records the name of the folder it writes as its version (manifest, card, audit): --out out/dataset/v2 is v2.",
    )
    split_fractions: dict[str, float] = Field(
        default_factory=lambda: {"train": 0.8, "validation": 0.1, "test": 0.1},
        description="Patient-level split fractions (train/validation/test); they must sum to 1.",
    )
    split_key: str = Field(
        "ctcorpus-split-v1",
        description="Key of the keyed hash that assigns patients to splits. Changing it reshuffles every "
        "patient; keep it fixed for the life of a dataset.",
    )
    shard_max_bytes: int = Field(
        256 * 1024 * 1024, gt=0,
        description="Largest WebDataset tar shard in bytes, tar headers and padding counted (a sample bigger than it "
        "is a shard of its own). Shard boundaries are content-defined, so that patients added to the export "
        "rewrite only the shards they fall into: shards hold from a quarter of it up, about half on average.",
    )
    shard_shuffle_seed: int | None = Field(
        None, description="If set, the samples inside each shard are ordered by a hash keyed with this seed instead "
        "of by volume id. It moves no sample to another shard (that would rewrite every shard of a grown export); "
        "the training loader mixes shards each epoch and samples in its shuffle buffer.",
    )
    parquet_row_group_rows: int = Field(
        64 * 1024, gt=0, description="Rows per Parquet row group (readers skip row groups by statistics)."
    )

    @field_validator("dataset_version")
    @classmethod
    def _plain_folder_name(cls, value: str) -> str:
        """A build replaces <output_dir>/dataset/<dataset_version> whole: '' or '.' named the dataset folder
        itself (every other version deleted), '..' or 'a/b' a folder elsewhere, and '.tmp-*' is removed as a
        killed build's leftover."""
        if not value or value.startswith(".") or "/" in value or "\\" in value:
            raise ValueError(f"{value!r} must be a plain folder name such as 'v2' (no '/', not starting with '.')")
        return value

    @field_validator("split_fractions")
    @classmethod
    def _fractions_sum_to_one(cls, value: dict[str, float]) -> dict[str, float]:
        allowed = {"train", "validation", "test"}
        if not value or set(value) - allowed:
            raise ValueError(f"split names must be among {sorted(allowed)}")
        if any(v < 0 for v in value.values()) or abs(sum(value.values()) - 1.0) > 1e-6:
            raise ValueError("split fractions must be >= 0 and sum to 1")
        return value
