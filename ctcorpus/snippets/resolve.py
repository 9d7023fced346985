"""Resolution and placement: an :class:`ImageReference` -> z in mm -> a slice and a bin of the corpus volume.

A reference names a series and an image number. The series is one stack of the study (possibly
another reconstruction than the one stored in the corpus, e.g. a 1 mm lung kernel when the corpus
keeps 3 mm soft tissue); the image number is that stack's InstanceNumber. Both are mapped through
the stack's slice table to z in mm, and z is mapped into the corpus volume's voxel grid with its
full affine (RadFinder's approach), which works across reconstructions as long as they share the
FrameOfReferenceUID. What cannot be resolved is returned as quarantine entries with a reason, never
silently dropped.

>>> grid = VolumeGrid("v1", "1.2.3", (0.0, 0.0, 0.0), (1.0, 1.0, 3.0), (1, 0, 0, 0, 1, 0, 0, 0, 1), (10, 4, 4))
>>> round(slice_position(grid, 9.0), 3)
3.0
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import pyarrow as pa

from ctcorpus.config.snippets import SnippetsConfig
from ctcorpus.enums import QuarantineReason
from ctcorpus.errors import SnippetError
from ctcorpus.ingest.geometry import slice_centre
from ctcorpus.ingest.records import Stack
from ctcorpus.records import QuarantineEntry
from ctcorpus.schemas import table_from_rows
from ctcorpus.snippets.grammar import GRAMMAR_VERSION, ImageReference, mine_image_references
from ctcorpus.version import __version__, package_digest

__all__ = [
    "PRODUCER",
    "SentenceContext",
    "SeriesSlices",
    "SnippetPair",
    "VolumeGrid",
    "mine_snippets",
    "resolve_references",
    "slice_position",
    "snippets_table",
    "stack_slices",
]

#: A stack is axial when its slice normal's z component is above this (within 35 degrees of z): gantries
#: tilt up to 30 degrees and ingest untilts such a stack into a corpus volume; a coronal or sagittal
#: reformat is 90 degrees off.
_AXIAL_NORMAL_Z = math.cos(math.radians(35.0))

#: The backend recorded in the provenance column ``producer``, with the snippets package's source:
#: part of the pipeline's text cache key, so a fixed resolution step re-mines cached snippets.
PRODUCER = f"rules-{GRAMMAR_VERSION}-{package_digest(__file__)}"
_STAGE = "snippets"


@dataclass(frozen=True, slots=True)
class SeriesSlices:
    """One stack of the study as the resolver needs it: InstanceNumber -> z in mm (patient LPS)
    of the image's centre.

    ``is_axial`` marks stacks whose images are axial positions: a reference to another (a coronal
    or sagittal reformat) is quarantined, and a reference without a series may only point at
    these. ``repeated_images`` are InstanceNumbers that images at different positions share: a
    reference to one cannot tell which is meant. ``off_plane_images`` are those of the series'
    images in another plane than its axial ones (a reformat saved into the series): no axial position.
    """

    series_number: int
    series_uid: str
    frame_of_reference_uid: str
    slice_thickness_mm: float
    instance_z: Mapping[int, float]
    is_axial: bool = True
    repeated_images: frozenset[int] = frozenset()
    off_plane_images: frozenset[int] = frozenset()


@dataclass(frozen=True, slots=True)
class VolumeGrid:
    """The corpus (resampled) volume's geometry, as SimpleITK reports it.

    ``spacing_mm`` and ``origin_mm`` are (x, y, z); ``direction`` is the 3x3 direction matrix
    row-major (``GetDirection()``); ``shape_zyx`` is the array shape (slices, rows, columns).
    """

    volume_id: str
    frame_of_reference_uid: str
    origin_mm: tuple[float, float, float]
    spacing_mm: tuple[float, float, float]
    direction: tuple[float, ...]
    shape_zyx: tuple[int, int, int]


@dataclass(frozen=True, slots=True)
class SentenceContext:
    """A report sentence and what the reports stage found in it, joined onto each snippet."""

    start: int
    end: int
    anatomies: tuple[str, ...] = ()
    positive_labels: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SnippetPair:
    """One snippet-slice pair: a row of the ``snippets`` table (without the provenance columns)."""

    snippet_id: str
    report_id: str
    volume_id: str
    sentence_index: int
    snippet_text: str
    snippet_start: int
    snippet_end: int
    reference_text: str
    reference_start: int
    reference_end: int
    series_number: int
    series_uid: str
    series_stated: bool
    image_number: int
    z_mm: float
    slice_index: int
    bin_index: int
    bin_mm: float
    anatomies: tuple[str, ...]
    labels: tuple[str, ...]


def _z_axis(grid: VolumeGrid) -> tuple[float, float]:
    """(offset, slope) with slice position k = offset + slope * z, from the volume's full affine.

    k is row z of ``inverse(D @ diag(spacing)) @ (p - origin)`` for p at the in-plane centre of
    the first slice moved to height z. That row is ``(c0 x c1) / det`` for the columns c0, c1, c2
    of ``D @ diag(spacing)``, so it is written out in plain floats (numpy's per-call overhead
    would cost more than the mining of a report).
    """
    if len(grid.direction) != 9 or len(grid.spacing_mm) != 3 or len(grid.origin_mm) != 3:
        raise SnippetError(f"volume {grid.volume_id!r} needs 9 direction values and 3 spacing/origin values")
    d = [float(v) for v in grid.direction]
    sx, sy, sz = (float(v) for v in grid.spacing_mm)
    c0 = (d[0] * sx, d[3] * sx, d[6] * sx)
    c1 = (d[1] * sy, d[4] * sy, d[7] * sy)
    c2 = (d[2] * sz, d[5] * sz, d[8] * sz)
    cross = (c0[1] * c1[2] - c0[2] * c1[1], c0[2] * c1[0] - c0[0] * c1[2], c0[0] * c1[1] - c0[1] * c1[0])
    det = cross[0] * c2[0] + cross[1] * c2[1] + cross[2] * c2[2]
    if abs(det) < 1e-9:
        raise SnippetError(f"volume {grid.volume_id!r} has a singular direction/spacing matrix; check its geometry")
    row = (cross[0] / det, cross[1] / det, cross[2] / det)
    _, rows, columns = grid.shape_zyx
    i, j = (columns - 1) / 2.0, (rows - 1) / 2.0
    # p - origin for p = centre of the first slice at height z: (c0*i + c1*j)_xy, z - origin_z
    dx, dy = c0[0] * i + c1[0] * j, c0[1] * i + c1[1] * j
    offset = row[0] * dx + row[1] * dy - row[2] * float(grid.origin_mm[2])
    return offset, row[2]


def slice_position(grid: VolumeGrid, z_mm: float) -> float:
    """Continuous slice index (k) of the plane z = ``z_mm`` through the volume's in-plane centre.

    Uses the full affine, ``index = inverse(D @ diag(spacing)) @ (p - origin)``, with p at the
    centre of the first slice moved to ``z_mm``: for axial volumes (LPS or RAS, flipped or not)
    only the z row matters and this is exact; for a tilted grid it places the reference at the
    centre of the field of view, which is the best a z-only reference allows.

    >>> grid = VolumeGrid("v", "f", (0.0, 0.0, 30.0), (1.0, 1.0, 3.0), (1, 0, 0, 0, 1, 0, 0, 0, -1), (11, 4, 4))
    >>> slice_position(grid, 21.0)
    3.0
    """
    offset, slope = _z_axis(grid)
    return offset + slope * z_mm


def stack_slices(stack: Stack, *, series_uid: str, frame_of_reference_uid: str) -> SeriesSlices | None:
    """The slice table of an ingested stack, under the given (pseudonymized) ids; None for a stack
    without a SeriesNumber, which no reference can name.

    A duplicate (an image at a kept slice's position, dropped from the volume) names that position too: a
    re-sent copy renumbered 101..110 shows its own numbers in PACS ("image 105"), which were quarantined as
    out of range; one numbered as an image at another position makes that number ambiguous.

    >>> stack_slices(stacks[0], series_uid="ser-1", frame_of_reference_uid="for-1")  # doctest: +SKIP
    SeriesSlices(series_number=3, ...)
    """
    first = stack.first
    if first.series_number is None:
        return None
    centres: dict[int, set[float]] = defaultdict(set)
    for record in (*stack.instances, *stack.duplicates):
        if record.instance_number is not None:
            centres[record.instance_number].add(round(slice_centre(record)[2], 3))
    return SeriesSlices(
        series_number=first.series_number,
        series_uid=series_uid,
        frame_of_reference_uid=frame_of_reference_uid,
        slice_thickness_mm=float(first.slice_thickness or 0.0),
        instance_z={number: min(zs) for number, zs in centres.items() if len(zs) == 1},
        is_axial=abs(stack.normal[2]) > _AXIAL_NORMAL_Z,
        repeated_images=frozenset(number for number, zs in centres.items() if len(zs) > 1),
    )


def _pick_series(
    reference: ImageReference, series: Sequence[SeriesSlices], primary: int | None, primary_uid: str | None
) -> SeriesSlices | tuple[QuarantineReason, str]:
    """The stack a reference points at, or (reason, explanation).

    A primary series with its UID (``primary_uid``) is that series' stacks alone: another series of
    the study may share its number. Without a stated or primary series a reference points into the
    study's one axial series, counted by series number: ingest splits a series of two acquisitions
    into two stacks, still one series.
    """
    if reference.series_number is not None:
        wanted, how, candidates = reference.series_number, "stated", series
    elif primary is not None:
        own = [s for s in series if s.series_uid == primary_uid]
        wanted, how, candidates = primary, "primary", own or series
    else:
        candidates = [s for s in series if s.is_axial]
        numbers = sorted({s.series_number for s in candidates})
        if not numbers:  # a stack without a SeriesNumber has no slice table: no configured number names it
            return (QuarantineReason.AMBIGUOUS_SERIES,
                    "no series stated and the study has no axial series with a SeriesNumber to point into")
        if len(numbers) > 1:
            return (
                QuarantineReason.AMBIGUOUS_SERIES,
                f"no series stated and the study has {len(numbers)} axial series {numbers}; "
                "set snippets.primary_series_number to resolve bare image numbers",
            )
        wanted, how = numbers[0], "the only axial"
    matches = [s for s in candidates if s.series_number == wanted]
    if not matches:
        present = sorted({s.series_number for s in series})
        return QuarantineReason.SERIES_ABSENT, (
            f"{how} series {wanted} has no stack of CT images in the study (a localizer, a non-CT series or one "
            f"left out of the export has none); series with stacks: {present}"
        )
    if len(matches) > 1:
        joined = _joined_stacks(matches)
        if joined is not None:
            return joined
        uids = sorted({s.series_uid for s in matches})
        if len(uids) == 1:
            return QuarantineReason.AMBIGUOUS_SERIES, (
                f"{how} series {wanted} holds {len(matches)} stacks in different frames of reference"
            )
        return QuarantineReason.AMBIGUOUS_SERIES, f"{how} series number {wanted} names {len(uids)} series {uids}"
    return matches[0]


def _joined_stacks(stacks: Sequence[SeriesSlices]) -> SeriesSlices | None:
    """The stacks ingest split out of one series (two acquisitions, two matrices, a reformat saved
    into it) as one slice table, or None for stacks of different series or frames.

    The series' image numbers still name its images: only a number that two of its images at
    different positions carry is ambiguous, and one of an image in another plane than the axial
    stacks' is no axial position (``off_plane_images``). A series without an axial stack is its
    first stack, not axial.
    """
    first = stacks[0]
    if any(s.series_uid != first.series_uid or s.frame_of_reference_uid != first.frame_of_reference_uid
           for s in stacks):
        return None
    axial = [s for s in stacks if s.is_axial]
    if not axial:
        return first
    positions: dict[int, set[float]] = defaultdict(set)
    for s in axial:
        for number, z in s.instance_z.items():
            positions[number].add(z)
    off_plane = {n for s in stacks if not s.is_axial for n in (*s.instance_z, *s.repeated_images)}
    repeated = frozenset(n for s in axial for n in s.repeated_images)
    repeated |= {n for n, zs in positions.items() if len(zs) > 1} | (off_plane & positions.keys())
    return replace(axial[0], instance_z={n: zs.pop() for n, zs in positions.items() if n not in repeated},
                   repeated_images=repeated, off_plane_images=frozenset(off_plane - repeated))


def _is_year(reference: ImageReference, image: int, series: SeriesSlices) -> bool:
    """Whether ``image`` is the year a list ends with ("(series 3, image 45, 2019)"), which names no image: so read
    where the series has no image numbered that high; in a series that long it is an image."""
    return image == reference.year_after_list and image > max(
        (*series.instance_z, *series.repeated_images, *series.off_plane_images), default=0)


def _bin_index(slice_index: int, spacing_z_mm: float, bin_mm: float) -> int:
    """``floor(slice_index * spacing_z_mm / bin_mm)``, exact at a bin's edge: in floats
    3 * 1.2 / 3.6 is 0.999..., which put every third slice of a 1.2 mm volume into the bin below."""
    return math.floor(round(slice_index * spacing_z_mm / bin_mm, 9))


def resolve_references(
    references: Sequence[ImageReference],
    series: Sequence[SeriesSlices],
    grid: VolumeGrid,
    config: SnippetsConfig,
    *,
    report_id: str,
    text: str,
    sentences: Sequence[SentenceContext] | None = None,
    source: str = "",
    primary_series_number: int | None = None,
    primary_series_uid: str | None = None,
) -> tuple[list[SnippetPair], list[QuarantineEntry]]:
    """Resolve references to slices of the corpus volume: the snippet-slice pairs and the quarantine.

    Parameters
    ----------
    references:
        From :func:`~ctcorpus.snippets.mine_image_references` on ``text``.
    series:
        Every stack of the report's study (slice tables), including other reconstructions.
    grid:
        Geometry of the corpus volume the pairs point into.
    config:
        The ``snippets`` config section (primary series, range cap, bin size).
    report_id, text:
        The report the references were mined from (ids and snippet text).
    sentences:
        Sentence contexts aligned with the spans used for mining (``ImageReference.sentence_index``
        indexes them); their anatomies and positive labels are joined onto each pair.
    source:
        What quarantine entries name as their path: the pipeline gives the report's id (a pseudonym,
        where the report's file would name the export).
    primary_series_number:
        This study's primary series (e.g. the one the corpus volume was built from), for
        references that state no series when ``config.primary_series_number`` is not set: a
        site's configured series is a rule for every study, so it wins. ``None`` falls back to
        the study's only axial series.
    primary_series_uid:
        That series' UID, where it is known (the corpus volume's): the primary series is its stacks
        alone, where another series of the study sharing its number made each reference
        ``ambiguous_series``. Not applied to ``config.primary_series_number``, a number for every study.

    Returns
    -------
    pairs, quarantine:
        One pair per reference and distinct slice (two images of one reference that land on
        the same corpus slice give one pair), its id naming the volume too: a study with several
        corpus volumes pairs one report with each; one entry per unresolvable reference or image, its
        item id naming the volume as a pair's id does (a reference may lie outside one volume only), with
        reason ``series_absent``, ``ambiguous_series``, ``other_frame_of_reference``,
        ``non_axial_series``, ``ambiguous_image``, ``image_out_of_range`` or ``out_of_volume``.

    Examples
    --------
    >>> stack = SeriesSlices(3, "1.2.3.4", "1.2.3", 3.0, {45: 9.0})
    >>> grid = VolumeGrid("v1", "1.2.3", (0.0, 0.0, 0.0), (1.0, 1.0, 3.0), (1, 0, 0, 0, 1, 0, 0, 0, 1), (10, 4, 4))
    >>> text = "Nodule (series 3, image 45)."
    >>> pairs, quarantine = resolve_references(
    ...     mine_image_references(text), [stack], grid, SnippetsConfig(), report_id="r1", text=text)
    >>> pairs[0].slice_index, pairs[0].bin_index, quarantine
    (3, 0, [])
    """
    pairs: list[SnippetPair] = []
    quarantine: list[QuarantineEntry] = []
    n_slices = grid.shape_zyx[0]
    tolerance = config.out_of_volume_tolerance_slices
    spacing_z = abs(float(grid.spacing_mm[2]))
    primary, primary_uid = ((primary_series_number, primary_series_uid) if config.primary_series_number is None
                            else (config.primary_series_number, None))
    offset, slope = _z_axis(grid)

    def reject(reference: ImageReference, reason: QuarantineReason, why: str, image: int | None = None) -> None:
        item = f"{grid.volume_id}/{report_id}@{reference.start}-{reference.end}"
        item += "" if image is None else f"#{image}"
        quarantine.append(
            QuarantineEntry(
                stage=_STAGE,
                path=source,
                reason=reason,
                message=f"report {report_id}: reference {reference.text!r} at {reference.start}: {why}",
                item_id=item,
            )
        )

    for reference in references:
        if reference.on_reformat:
            reject(
                reference,
                QuarantineReason.NON_AXIAL_SERIES,
                "the text places the image on a reformat or a scout (coronal, sagittal, MIP, topogram) and names no "
                "series: its number is no image of an axial series",
            )
            continue
        picked = _pick_series(reference, series, primary, primary_uid)
        if isinstance(picked, tuple):
            reject(reference, *picked)
            continue
        if picked.frame_of_reference_uid != grid.frame_of_reference_uid:
            reject(
                reference,
                QuarantineReason.OTHER_FRAME_OF_REFERENCE,
                f"series {picked.series_number} is in frame of reference {picked.frame_of_reference_uid}, "
                f"volume {grid.volume_id} in {grid.frame_of_reference_uid}; z cannot be transferred",
            )
            continue
        if not picked.is_axial:
            reject(
                reference,
                QuarantineReason.NON_AXIAL_SERIES,
                f"series {picked.series_number} is not axial (a coronal or sagittal reformat?): its images are no "
                "axial positions to pair with a slice",
            )
            continue
        context = (
            sentences[reference.sentence_index]
            if sentences is not None and 0 <= reference.sentence_index < len(sentences)
            else None
        )
        seen_slices: set[int] = set()
        for image in reference.image_numbers:
            if _is_year(reference, image, picked):
                continue
            z = picked.instance_z.get(image)
            if image in picked.repeated_images:
                reject(
                    reference,
                    QuarantineReason.AMBIGUOUS_IMAGE,
                    f"series {picked.series_number} has images at different positions numbered {image}",
                    image,
                )
                continue
            if image in picked.off_plane_images:
                reject(
                    reference,
                    QuarantineReason.NON_AXIAL_SERIES,
                    f"image {image} of series {picked.series_number} lies in another plane than its axial images "
                    "(a reformat saved into the series): it is no axial position to pair with a slice",
                    image,
                )
                continue
            if z is None:
                known = sorted(picked.instance_z)
                span = f"{known[0]}..{known[-1]}" if known else "none"
                where = "a gap in" if known and known[0] < image < known[-1] else "outside"
                reject(
                    reference,
                    QuarantineReason.IMAGE_OUT_OF_RANGE,
                    f"series {picked.series_number} has no image {image} ({where} its InstanceNumbers {span})",
                    image,
                )
                continue
            k = offset + slope * z
            if not -tolerance <= k <= n_slices - 1 + tolerance:
                reject(
                    reference,
                    QuarantineReason.OUT_OF_VOLUME,
                    f"image {image} at z={z:.2f} mm lies at slice {k:.1f}, outside volume {grid.volume_id} "
                    f"(0..{n_slices - 1})",
                    image,
                )
                continue
            index = min(max(math.floor(k + 0.5), 0), n_slices - 1)
            if index in seen_slices:
                continue
            seen_slices.add(index)
            pairs.append(
                SnippetPair(
                    snippet_id=f"{grid.volume_id}/{report_id}@{reference.start}-{reference.end}#{image}",
                    report_id=report_id,
                    volume_id=grid.volume_id,
                    sentence_index=reference.sentence_index,
                    snippet_text=text[reference.sentence_start : reference.sentence_end],
                    snippet_start=reference.sentence_start,
                    snippet_end=reference.sentence_end,
                    reference_text=reference.text,
                    reference_start=reference.start,
                    reference_end=reference.end,
                    series_number=picked.series_number,
                    series_uid=picked.series_uid,
                    series_stated=reference.series_stated,
                    image_number=image,
                    z_mm=float(z),
                    slice_index=index,
                    bin_index=_bin_index(index, spacing_z, config.bin_mm),
                    bin_mm=config.bin_mm,
                    anatomies=context.anatomies if context else (),
                    labels=context.positive_labels if context else (),
                )
            )
    return pairs, quarantine


def mine_snippets(
    report_id: str,
    text: str,
    series: Sequence[SeriesSlices],
    grid: VolumeGrid,
    config: SnippetsConfig,
    *,
    sentences: Sequence[SentenceContext] | None = None,
    language: str | None = None,
    source: str = "",
    primary_series_number: int | None = None,
    primary_series_uid: str | None = None,
) -> tuple[list[SnippetPair], list[QuarantineEntry]]:
    """The stage's entry point for one report: mine its references and resolve them.

    ``sentences`` (from the reports stage) give the sentence spans and the anatomies/labels
    joined onto each pair; without them the grammar's own sentence split is used. The other
    arguments are those of :func:`resolve_references`.

    >>> stack = SeriesSlices(3, "1.2.3.4", "1.2.3", 3.0, {45: 9.0})
    >>> grid = VolumeGrid("v1", "1.2.3", (0.0, 0.0, 0.0), (1.0, 1.0, 3.0), (1, 0, 0, 0, 1, 0, 0, 0, 1), (10, 4, 4))
    >>> pairs, _ = mine_snippets("r1", "Herd (Serie 3, Bild 45).", [stack], grid, SnippetsConfig())
    >>> pairs[0].z_mm
    9.0
    """
    references = mine_image_references(
        text,
        None if sentences is None else [(s.start, s.end) for s in sentences],
        language,
        languages=config.languages,
        max_range_images=config.max_range_images,
    )
    return resolve_references(
        references, series, grid, config, report_id=report_id, text=text, sentences=sentences, source=source,
        primary_series_number=primary_series_number, primary_series_uid=primary_series_uid,
    )


def snippets_table(pairs: Sequence[SnippetPair], source_sha256: str | Mapping[str, str]) -> pa.Table:
    """The ``snippets`` table (schema ``schemas/snippets.json``) of ``pairs``, with provenance.

    ``source_sha256`` is one hash for all rows or a mapping report_id -> sha256 of that report's
    source file(s), so every row says where it came from.
    """
    if isinstance(source_sha256, str):
        hashes: Mapping[str, str] = {p.report_id: source_sha256 for p in pairs}
    else:
        hashes = source_sha256
        missing = sorted({p.report_id for p in pairs} - set(hashes))
        if missing:
            raise SnippetError(f"no source sha256 given for reports {missing[:5]}")
    rows = ({**_row(pair), "source_sha256": hashes[pair.report_id]} for pair in pairs)
    return table_from_rows("snippets", rows, pipeline_version=__version__, producer=PRODUCER)


def _row(pair: SnippetPair) -> dict[str, object]:
    return {name: getattr(pair, name) for name in SnippetPair.__slots__}
