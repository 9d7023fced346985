"""Sentence -> region: the head-foot range a report sentence's anatomies cover in one volume.

A sentence about "the left lower lobe" is tagged ``lungs`` by the report stage; the union of that
volume's lung structures spans some z range. That range (mm and slice indices) is a weak
localization target for training: which slices the sentence is about, not where in them.
``Anatomy.OTHER`` is not localized: it names no structure (its union would be the whole body).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import pyarrow as pa

from ctcorpus.anatomy.base import single_mask_source
from ctcorpus.anatomy.stats import StructureStats
from ctcorpus.errors import AnatomyError
from ctcorpus.schemas import table_from_rows
from ctcorpus.taxonomy import Anatomy
from ctcorpus.version import __version__


@dataclass(frozen=True, slots=True)
class Region:
    """The z range of a sentence's anatomies in one volume (a row of ``sentence_regions``).

    ``slice_min``/``slice_max`` are inclusive z indices of the grid the statistics were computed on
    (the training-volume grid when the mask was resampled onto it first).
    """

    sentence_id: str
    volume_id: str
    anatomies: tuple[Anatomy, ...]
    structures: tuple[str, ...]
    z_min_mm: float
    z_max_mm: float
    slice_min: int
    slice_max: int
    mask_source: str


def sentence_region(
    anatomies: Iterable[Anatomy | str], stats: Sequence[StructureStats], *, sentence_id: str = ""
) -> Region | None:
    """Union z range of the structures of ``anatomies`` in the volume ``stats`` describe.

    Parameters
    ----------
    anatomies:
        The sentence's taxonomy regions (``Anatomy`` or their string values).
    stats:
        One volume's :class:`~ctcorpus.anatomy.stats.StructureStats`.
    sentence_id:
        Copied into the result, for the ``sentence_regions`` table.

    Returns
    -------
    Region or None
        None when no structure of those anatomies is present (or only ``other`` was given).

    Examples
    --------
    >>> region = sentence_region(["lungs"], rows, sentence_id="s1")   # doctest: +SKIP
    >>> region.structures, region.slice_min, region.slice_max          # doctest: +SKIP
    (('lung_left', 'lung_right'), 12, 201)
    """
    wanted = tuple(sorted({Anatomy(a) for a in anatomies} - {Anatomy.OTHER}, key=lambda a: a.value))
    volumes = {row.volume_id for row in stats}
    if len(volumes) > 1:
        raise AnatomyError(f"sentence_region takes one volume's statistics, got volumes {sorted(volumes)}")
    hits = [row for row in stats if row.anatomy in wanted]
    if not hits:
        return None
    return Region(
        sentence_id=sentence_id,
        volume_id=hits[0].volume_id,
        anatomies=wanted,
        structures=tuple(sorted({row.structure for row in hits})),
        z_min_mm=min(row.z_min_mm for row in hits),
        z_max_mm=max(row.z_max_mm for row in hits),
        slice_min=min(min(row.bbox_index_min[2], row.bbox_index_max[2]) for row in hits),
        slice_max=max(max(row.bbox_index_min[2], row.bbox_index_max[2]) for row in hits),
        mask_source=hits[0].mask_source,
    )


def sentence_regions_table(regions: Sequence[Region], source_sha256: str) -> pa.Table:
    """The ``sentence_regions`` table of one volume's regions (producer = mask source).

    >>> table = sentence_regions_table([region], source_sha256=volume_sha)   # doctest: +SKIP
    """
    return table_from_rows(
        "sentence_regions",
        regions,
        pipeline_version=__version__,
        source_sha256=source_sha256,
        producer=single_mask_source((region.mask_source for region in regions), "sentence_regions"),
    )
