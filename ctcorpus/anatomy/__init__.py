"""Anatomy masks: TotalSegmentator with provisioned weights or an offline threshold fallback.

Build one segmenter per worker with :func:`make_segmenter`, segment volumes with
:func:`segment_volume`, move masks onto the training grid with :func:`resample_mask`, measure them
with :func:`structure_stats` (``anatomy_stats`` table) and turn a sentence's anatomies into a z range
with :func:`sentence_region` (``sentence_regions`` table).
"""

from ctcorpus import taxonomy
from ctcorpus.anatomy.base import Segmentation, Segmenter
from ctcorpus.anatomy.fallback import FALLBACK_LABELS, ThresholdSegmenter
from ctcorpus.anatomy.regions import Region, sentence_region, sentence_regions_table
from ctcorpus.anatomy.segment import make_segmenter, resample_mask, segment_volume
from ctcorpus.anatomy.stats import StructureStats, anatomy_stats_table, dice, structure_stats
from ctcorpus.anatomy.totalseg import (
    TotalSegmentatorSegmenter,
    missing_weights,
    register_nnunet_trainers,
    required_task_ids,
    weights_dir,
    weights_fingerprint,
)
from ctcorpus.version import package_digest

#: The source of the anatomy package and of the taxonomy its statistics map structures by: part of
#: the pipeline's anatomy cache key, so a fixed mask or statistics step, or a newly mapped structure,
#: redoes cached masks (a segmenter's version names its model, not this code).
SOURCE_DIGEST = package_digest(__file__, str(taxonomy.__file__))

__all__ = [
    "FALLBACK_LABELS",
    "SOURCE_DIGEST",
    "Region",
    "Segmentation",
    "Segmenter",
    "StructureStats",
    "ThresholdSegmenter",
    "TotalSegmentatorSegmenter",
    "anatomy_stats_table",
    "dice",
    "make_segmenter",
    "missing_weights",
    "register_nnunet_trainers",
    "required_task_ids",
    "resample_mask",
    "segment_volume",
    "sentence_region",
    "sentence_regions_table",
    "structure_stats",
    "weights_dir",
    "weights_fingerprint",
]
