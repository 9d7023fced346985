"""Corpus outputs: Parquet tables, WebDataset shards, splits, manifest, verification."""

from ctcorpus.outputs.dataset import (
    BuildResult,
    BuildUnit,
    StoredSample,
    VersionChanges,
    build_dataset,
    read_manifest,
    render_card,
)
from ctcorpus.outputs.sample import CorpusSample, decode_array, decode_sample, encode_array
from ctcorpus.outputs.splits import assign_split
from ctcorpus.outputs.store import WorkStore, atomic_dir, atomic_write_bytes, remove_partial, write_parquet
from ctcorpus.outputs.verify import VerifyProblem, verify_dataset

__all__ = [
    "BuildResult",
    "BuildUnit",
    "CorpusSample",
    "StoredSample",
    "VerifyProblem",
    "VersionChanges",
    "WorkStore",
    "assign_split",
    "atomic_dir",
    "atomic_write_bytes",
    "build_dataset",
    "decode_array",
    "decode_sample",
    "encode_array",
    "read_manifest",
    "remove_partial",
    "render_card",
    "verify_dataset",
    "write_parquet",
]
