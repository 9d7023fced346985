"""Table rows of the ingest stage, with every identifier pseudonymized.

In-memory records keep original identifiers (linking needs them); these functions are the only
place rows are made, so no PatientID, AccessionNumber or UID reaches a table. The patient's name
and birth date are read into memory only, to redact them from paths, series descriptions and
quarantine rows (:class:`Redactor`) and for the keyed person key; other PHI header values are never
read (see :mod:`ctcorpus.ingest.header`).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

import ahocorasick
import numpy as np
import pydicom
import SimpleITK as sitk

from ctcorpus.enums import Action
from ctcorpus.ingest.geometry import slice_centre
from ctcorpus.ingest.records import ExportIndex, InstanceRecord, InstanceRow, ResampledVolume, SeriesRow, SliceRow, Stack, Volume, VolumeRow
from ctcorpus import pseudonym
from ctcorpus.pseudonym import Pseudonymizer, name_spellings
from ctcorpus.records import sha256_of_hashes
from ctcorpus.version import __version__, package_digest

#: The backends behind ingest rows (provenance ``producer``), and the source of the ingest package and
#: of the pseudonyms its rows hold: part of the pipeline's ingest cache key, so a fixed decoding or
#: assembly step, or a changed pseudonym rule, redoes the volumes.
PRODUCER = (f"ctcorpus-ingest-{package_digest(__file__, str(pseudonym.__file__))}/pydicom-{pydicom.__version__}"
            f"/simpleitk-{sitk.Version.VersionString()}")


def _name_spellings(part: str) -> set[str]:
    """A name part as folder names also write it: without umlauts or accents ("Müller": "MUELLER",
    "MULLER"; "García": "GARCIA"), for a header in DICOM's default character set with them, and
    decomposed (u + combining diaeresis), as macOS file systems and tools write file names."""
    _, without, with_umlauts = name_spellings(part.lower())
    bare = unicodedata.normalize("NFKD", without).encode("ascii", "ignore").decode()
    plain = unicodedata.normalize("NFKD", part).encode("ascii", "ignore").decode()
    return {form for s in (part, without, with_umlauts, bare, plain) if len(s) >= 3 or not s.isascii()
            for form in (s, unicodedata.normalize("NFD", s))}


def _date_spellings(day: str) -> set[str]:
    """A DICOM date (``YYYYMMDD``) as folder names write it: 19500102, 1950-01-02, 1950.01.02,
    1950_01_02, 02.01.1950, 02-01-1950, 01-02-1950 (US), 02011950."""
    digits = re.sub(r"\D", "", day)
    if len(digits) != 8:
        return {day}
    y, m, d = digits[:4], digits[4:6], digits[6:]
    return {f"{a}{sep}{b}{sep}{c}" for a, b, c in ((y, m, d), (d, m, y), (m, d, y)) for sep in ("", "-", ".", "_")}


def _fold(text: str) -> str:
    """``text`` lower-cased character by character, so offsets in it are offsets in ``text``
    (``str.lower`` makes two characters of "İ")."""
    lower = text.lower()
    return lower if len(lower) == len(text) else "".join(c.lower() if len(c.lower()) == 1 else c for c in text)


#: What a redacted spelling is, in the order that wins where two are spelled alike: an identifier
#: (replaced anywhere), a name part (a whole path word only: "ANN" is no part of "SCANNER"), a date
#: (not inside a longer number; a time may follow).
_ID, _NAME, _DATE = range(3)


class Redactor:
    """Replaces, in one pass of an Aho-Corasick automaton, the identifiers of ``records`` with their
    pseudonyms and their patients' name parts and birth and study dates with ``[NAME]``/``[DATE]``.

    PACS dumps name folders after these identifiers (``PAT_<PatientID>/STUDY_<Accession>/...``),
    and some after the patient (``DOE^JOHN_19500102/CT_20230405``). Identifiers are matched in any
    case (``pat_pid0040000``; some export tools lower-case names), names in each spelling a file
    system may give them (``MUELLER`` for ``Müller``) and in each component group of the header's
    name (``Yamada^Tarou=山田^太郎``), dates in the common layouts, also after letters or before a
    time (``CT2023-04-05``, ``20230405123000``). Where matches overlap, the leftmost and then the
    longest wins (UIDs nest). Built from one record it is :func:`safe_path`; from a stack's or a
    whole export's, it redacts quarantine rows, also those of files with no readable header.
    """

    def __init__(self, records: Iterable[InstanceRecord], p: Pseudonymizer) -> None:
        spellings: dict[str, tuple[int, str]] = {}  # folded spelling -> (kind, replacement)
        names: set[str] = set()
        days: set[str] = set()
        for record in records:
            identifiers = [
                (record.sop_uid, p.instance),
                (record.series_uid, p.series),
                (record.study_uid, p.study),
                (record.frame_of_reference_uid, p.frame_of_reference),
                (record.accession_number, p.accession),
                *((number, p.accession) for number in record.requested_accession_numbers),
                (record.patient_id, p.patient),
            ]
            for original, make in identifiers:  # a placeholder accession number has no pseudonym: it stays
                if len(original) >= 3 and _fold(original) not in spellings and (pseudonym_id := make(original)):
                    spellings[_fold(original)] = (_ID, pseudonym_id)
            names.add(record.patient_name)
            days.update(day for day in (record.patient_birth_date, record.study_date) if len(day) >= 6)
        parts = {part for name in names for part in re.split(r"[\^\s,_.\-=]+", name) if part}  # "=": the other groups
        for kind, forms, replacement in ((_NAME, {s for part in parts for s in _name_spellings(part)}, "[NAME]"),
                                         (_DATE, {s for day in days for s in _date_spellings(day)}, "[DATE]")):
            for form in forms:
                spellings.setdefault(_fold(form), (kind, replacement))
        self._automaton: ahocorasick.Automaton | None = None
        if spellings:
            automaton = ahocorasick.Automaton()
            for key, (kind, replacement) in spellings.items():
                automaton.add_word(key, (len(key), kind, replacement))
            automaton.make_automaton()
            self._automaton = automaton

    def __call__(self, text: str) -> str:
        if self._automaton is None or not text:
            return text
        matches = []
        for end, (length, kind, replacement) in self._automaton.iter(_fold(text)):
            start = end - length + 1
            if kind == _NAME and (start and text[start - 1].isalnum() or end + 1 < len(text) and text[end + 1].isalnum()):
                continue
            if kind == _DATE and start and text[start - 1].isdecimal():
                continue
            matches.append((start, -length, replacement))
        parts, at = [], 0
        for start, negative_length, replacement in sorted(matches):
            if start >= at:
                parts += (text[at:start], replacement)
                at = start - negative_length
        return "".join(parts) + text[at:]


def safe_path(rel_path: str, record: InstanceRecord, p: Pseudonymizer) -> str:
    """``rel_path`` with the file's identifiers pseudonymized and its name and dates redacted (see
    :class:`Redactor`). Corpus tables get the redacted path, the private quarantine keeps the real
    one for operators."""
    return Redactor([record], p)(rel_path)


def safe_description(record: InstanceRecord, p: Pseudonymizer) -> str:
    """The series description redacted as :func:`safe_path` redacts a path.

    Operators type descriptions at the scanner, and some put the patient in them ("THORAX
    MUELLER", "CT 02.01.1950", a requisition's accession number); the corpus keeps the rest
    ("THORAX 1.0 B70f"), which selection and audits read.
    """
    return safe_path(record.series_description, record, p)


def _floats(values: object) -> list[float] | None:
    return None if values is None else [float(v) for v in values]  # type: ignore[union-attr]


def instance_row(record: InstanceRecord, p: Pseudonymizer) -> InstanceRow:
    """The ``instances`` row of one indexed slice (a file, or a frame of a multi-frame file)."""
    return InstanceRow(
        path=safe_path(record.rel_path, record, p),
        frame=record.frame,
        size_bytes=record.size_bytes,
        study_id=p.study(record.study_uid),
        series_id=p.series(record.series_uid),
        sop_id=p.instance(record.sop_uid),
        frame_of_reference_id=p.frame_of_reference(record.frame_of_reference_uid),
        patient_id=p.patient(record.patient_id),
        accession_id=p.accession(record.accession_number),
        modality=record.modality,
        sop_class_uid=record.sop_class_uid,
        image_type=list(record.image_type),
        series_number=record.series_number,
        instance_number=record.instance_number,
        acquisition_number=record.acquisition_number,
        position=_floats(record.position),
        orientation=_floats(record.orientation),
        pixel_spacing=_floats(record.pixel_spacing),
        slice_thickness_mm=record.slice_thickness,
        rows=record.rows,
        columns=record.columns,
        transfer_syntax=record.transfer_syntax,
        kernel=record.kernel,
        manufacturer=record.manufacturer,
        contrast=record.contrast,
        usable=record.reason is None,
        reason="" if record.reason is None else record.reason.value,
        pipeline_version=__version__,
        source_sha256=record.sha256,
        producer=f"{PRODUCER}/{record.reader}",
    )


def instance_rows(index: ExportIndex, p: Pseudonymizer) -> list[InstanceRow]:
    """``instances`` rows of every DICOM file discovery read (of every frame a multi-frame file's slices)."""
    return [instance_row(r, p) for r in index.instances]


def series_row(stack: Stack, p: Pseudonymizer, accepted: bool) -> SeriesRow:
    """The ``series`` row of one stack (accepted or not)."""
    first = stack.first
    along = stack.positions_along_normal
    steps = np.diff(along)
    return SeriesRow(
        stack_id=p.volume(stack.stack_key),
        study_id=p.study(first.study_uid),
        series_id=p.series(first.series_uid),
        patient_id=p.patient(first.patient_id),
        accession_id=p.accession(first.accession_number),
        frame_of_reference_id=p.frame_of_reference(first.frame_of_reference_uid),
        series_number=first.series_number,
        series_description=safe_description(first, p),
        n_instances=len(stack.instances),
        n_duplicates=len(stack.duplicates),
        rows=first.rows,
        columns=first.columns,
        orientation=list(first.orientation or ()),
        normal=list(stack.normal),
        kernel=first.kernel,
        manufacturer=first.manufacturer,
        contrast=first.contrast,
        slice_thickness_mm=first.slice_thickness,
        median_step_mm=float(np.median(steps)) if len(steps) else 0.0,
        coverage_mm=float(along[-1] - along[0]),
        reasons=sorted({f.reason.value for f in stack.findings}),
        accepted=accepted,
        pipeline_version=__version__,
        source_sha256=sha256_of_hashes(r.sha256 for r in stack.instances + stack.duplicates),
        producer=PRODUCER,
    )


def volume_row(
    volume_id: str, stack: Stack, native: Volume, native_shape: tuple[int, ...], resampled: ResampledVolume, p: Pseudonymizer
) -> VolumeRow:
    """The ``volumes`` row of one ingested stack (``native_shape``: the native array's (z, y, x))."""
    first = stack.first
    return VolumeRow(
        volume_id=volume_id,
        study_id=p.study(first.study_uid),
        series_id=p.series(first.series_uid),
        patient_id=p.patient(first.patient_id),
        accession_id=p.accession(first.accession_number),
        series_number=first.series_number,
        kernel=first.kernel,
        contrast=first.contrast,
        slice_thickness_mm=first.slice_thickness,
        native_shape=[int(v) for v in native_shape[::-1]],
        native_spacing_mm=list(native.spacing),
        native_origin_mm=list(native.origin),
        native_direction=list(native.direction),
        shape=list(resampled.array.shape[::-1]),
        spacing_mm=list(resampled.spacing),
        origin_mm=list(resampled.origin),
        direction=list(resampled.direction),
        orientation=resampled.orientation,
        hu_clip=list(resampled.hu_clip),
        is_hu=native.is_hu,
        tilt_deg=native.tilt_deg,
        repairs=sorted({f.reason.value for f in native.findings if f.action is Action.REPAIR}),
        n_slices=len(native.slices),
        pipeline_version=__version__,
        source_sha256=sha256_of_hashes(s.sha256 for s in native.slices),
        producer=PRODUCER,
    )


def slice_rows(volume_id: str, stack: Stack, native: Volume, resampled: ResampledVolume, p: Pseudonymizer) -> list[SliceRow]:
    """The ``slices`` rows of one volume: source slice <-> SOP <-> InstanceNumber <-> z <-> file (and frame).

    ``resampled_z_index`` places an image by its centre, as snippets do: in a tilted image the
    first pixel (ImagePositionPatient) lies tens of mm of z from it.
    """
    direction = np.asarray(resampled.direction).reshape(3, 3)
    origin = np.asarray(resampled.origin)
    return [
        SliceRow(
            volume_id=volume_id,
            slice_index=s.slice_index,
            sop_id=p.instance(s.sop_uid),
            series_number=stack.first.series_number,
            instance_number=s.instance_number,
            position_mm=list(s.position),
            z_mm=s.z_mm,
            resampled_z_index=float((np.asarray(slice_centre(record)) - origin) @ direction[:, 2] / resampled.spacing[2]),
            path=safe_path(s.rel_path, record, p),
            frame=s.frame,
            rescale_slope=s.rescale_slope,
            rescale_intercept=s.rescale_intercept,
            pipeline_version=__version__,
            source_sha256=s.sha256,
            producer=PRODUCER,
        )
        for s, record in zip(native.slices, stack.instances, strict=True)
    ]
