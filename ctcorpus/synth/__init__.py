"""Synthetic hospital CT exports (DICOM series, RIS report exports, ground truth) for tests.

:func:`generate_export` writes a whole export (the ``ctcorpus synth`` command);
:func:`make_phantom` builds one thoracic HU volume with organ labels; the ground-truth sidecar
records live in :mod:`ctcorpus.synth.truth`.
"""

from ctcorpus.synth.export import REPORT_COLUMNS, generate_export
from ctcorpus.synth.phantom import FINDING_LABELS, LABEL_TABLE, FindingSpec, Phantom, PlacedFinding, make_phantom

__all__ = [
    "FINDING_LABELS",
    "LABEL_TABLE",
    "FindingSpec",
    "Phantom",
    "PlacedFinding",
    "REPORT_COLUMNS",
    "generate_export",
    "make_phantom",
]
