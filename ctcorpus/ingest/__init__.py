"""DICOM ingestion: header index, series splitting, volume assembly, HU, resampling, quarantine.

One entry point per step::

    index = index_export(root, cfg.ingest, workers=2, on_error=log)   # headers -> InstanceRecords (a frame each)
    stacks = plan_stacks(index, cfg.ingest)                           # series -> sorted stacks + findings
    corpus = select_stacks(stacks, cfg.ingest)                        # primary stack(s) per study
    groups = candidate_groups(stacks, cfg.ingest)                     # ... and those standing in for them
    result = ingest_stack(stacks[0], cfg.ingest)                      # assemble + repair + resample + rows

``assemble_volume``, ``resample_volume`` and ``resample_labels`` are the steps inside
``ingest_stack``. Table rows come from :mod:`ctcorpus.ingest.tables` (identifiers pseudonymized).
"""

from ctcorpus.ingest.assemble import assemble_volume, read_stored, rescale_to_hu, to_hu, volume_image
from ctcorpus.ingest.discover import index_export, iter_files
from ctcorpus.ingest.header import instance_problem, read_instance, read_instances
from ctcorpus.ingest.pipeline import finding_entry, ingest_stack, pseudonymizer_for
from ctcorpus.ingest.records import (
    ExportIndex,
    Finding,
    IngestedVolume,
    InstanceRecord,
    InstanceRow,
    ResampledVolume,
    SeriesRow,
    SliceRecord,
    SliceRow,
    Stack,
    Volume,
    VolumeRow,
)
from ctcorpus.ingest.resample import resample_image, resample_labels, resample_volume, resampled_image
from ctcorpus.ingest.select import candidate_groups, fallback_entry, is_sharp_kernel, select_stacks, unselected_entries
from ctcorpus.ingest.stacks import plan_stacks
from ctcorpus.ingest.tables import instance_rows, series_row, slice_rows, volume_row

__all__ = [
    "ExportIndex",
    "Finding",
    "IngestedVolume",
    "InstanceRecord",
    "InstanceRow",
    "ResampledVolume",
    "SeriesRow",
    "SliceRecord",
    "SliceRow",
    "Stack",
    "Volume",
    "VolumeRow",
    "assemble_volume",
    "candidate_groups",
    "fallback_entry",
    "finding_entry",
    "index_export",
    "ingest_stack",
    "instance_problem",
    "instance_rows",
    "is_sharp_kernel",
    "iter_files",
    "plan_stacks",
    "pseudonymizer_for",
    "read_instance",
    "read_instances",
    "read_stored",
    "resample_image",
    "resample_labels",
    "resample_volume",
    "resampled_image",
    "rescale_to_hu",
    "select_stacks",
    "series_row",
    "slice_rows",
    "to_hu",
    "unselected_entries",
    "volume_image",
    "volume_row",
]
