"""Snippet mining: radiologists' image references -> snippet-slice pairs placed in the corpus volume.

Entry points: :func:`mine_image_references` (text -> references), :func:`resolve_references`
(references -> pairs + quarantine), :func:`mine_snippets` (both, for one report) and
:func:`snippets_table` (pairs -> the ``snippets`` table).
"""

from ctcorpus.snippets.grammar import (
    GRAMMAR_VERSION,
    ImageReference,
    ReferenceForm,
    mine_image_references,
    split_sentences,
)
from ctcorpus.snippets.resolve import (
    PRODUCER,
    SentenceContext,
    SeriesSlices,
    SnippetPair,
    VolumeGrid,
    mine_snippets,
    resolve_references,
    slice_position,
    snippets_table,
    stack_slices,
)

__all__ = [
    "GRAMMAR_VERSION",
    "ImageReference",
    "PRODUCER",
    "ReferenceForm",
    "SentenceContext",
    "SeriesSlices",
    "SnippetPair",
    "VolumeGrid",
    "mine_image_references",
    "mine_snippets",
    "resolve_references",
    "slice_position",
    "snippets_table",
    "split_sentences",
    "stack_slices",
]
