"""The anatomy stage's entry points: pick a backend once, segment volumes, move masks between grids."""

from __future__ import annotations

import logging

import SimpleITK as sitk

from ctcorpus.anatomy.base import Segmentation, Segmenter
from ctcorpus.anatomy.fallback import ThresholdSegmenter
from ctcorpus.anatomy.totalseg import TotalSegmentatorSegmenter, missing_weights, totalsegmentator_ready, weights_dir
from ctcorpus.config.anatomy import AnatomyConfig
from ctcorpus.enums import QuarantineReason
from ctcorpus.errors import AnatomyError, CtCorpusError

log = logging.getLogger(__name__)


def make_segmenter(config: AnatomyConfig, *, warn: bool = True) -> Segmenter:
    """Build the configured segmenter once; keep it for every volume of a worker.

    ``backend: auto`` takes TotalSegmentator when its weights are provisioned, else the threshold
    fallback with a warning naming the task ids missing or incomplete (``warn=False``: a debug line, for the workers
    of a run whose planning process has warned: each builds its own). ``backend: totalsegmentator`` without
    complete weights raises :class:`~ctcorpus.errors.AnatomyError` with the provisioning steps before any work.

    Examples
    --------
    >>> segmenter = make_segmenter(AnatomyConfig(backend="threshold"))
    >>> segmenter.name, segmenter.version
    ('threshold', '1.2')
    """
    if config.backend == "threshold":
        return ThresholdSegmenter(config)
    if config.backend == "totalsegmentator" or totalsegmentator_ready(config):
        return TotalSegmentatorSegmenter(config)
    log.log(
        logging.WARNING if warn else logging.DEBUG,
        "TotalSegmentator weights not provisioned (task ids %s missing or incomplete under %s): "
        "using the threshold fallback",
        list(missing_weights(config)),
        weights_dir(config),
    )
    return ThresholdSegmenter(config)


def segment_volume(image: sitk.Image, config: AnatomyConfig, segmenter: Segmenter | None = None) -> Segmentation:
    """Segment one CT volume (HU) with ``segmenter``, or a new one from ``config`` if none is given.

    Pass a segmenter from :func:`make_segmenter` when segmenting many volumes: building one may load
    a model. Any failure of the segmenter (the fallback's ``MemoryError`` on a large volume included)
    raises :class:`~ctcorpus.errors.AnatomyError` (``segmentation_failed``): the pipeline then stores the
    volume without a mask and quarantines it, where an error of another class failed the whole study.

    Examples
    --------
    >>> seg = segment_volume(ct, AnatomyConfig(backend="threshold"))   # doctest: +SKIP
    >>> seg.labels.GetSize() == ct.GetSize()                           # doctest: +SKIP
    True
    """
    segmenter = segmenter if segmenter is not None else make_segmenter(config)
    try:
        segmentation = segmenter.segment(image)
    except CtCorpusError:
        raise
    except Exception as exc:  # any failure costs this volume its mask, not its study
        raise AnatomyError(
            f"segmenter {segmenter.name} failed: {type(exc).__name__}: {exc}", reason=QuarantineReason.SEGMENTATION_FAILED
        ) from exc
    if segmentation.labels.GetSize() != image.GetSize():
        raise AnatomyError(
            f"segmenter {segmenter.name} returned a {segmentation.labels.GetSize()} label map "
            f"for a {image.GetSize()} image",
            reason=QuarantineReason.SEGMENTATION_FAILED,
        )
    return segmentation


def resample_mask(segmentation: Segmentation, reference: sitk.Image) -> Segmentation:
    """The label map moved onto ``reference``'s grid with nearest-neighbour interpolation.

    Labels are never blended (a voxel keeps one structure's value); voxels outside the original
    field of view become background. Used to store masks on the resampled training-volume grid.

    Examples
    --------
    >>> on_training_grid = resample_mask(seg, resampled_ct)   # doctest: +SKIP
    """
    labels = sitk.Resample(
        segmentation.labels, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8
    )
    return Segmentation(
        labels=labels, label_table=segmentation.label_table, backend=segmentation.backend, version=segmentation.version
    )
