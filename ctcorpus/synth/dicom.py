"""Writing synthetic CT (and deliberately non-CT) DICOM objects with pydicom 3.

Everything here is deterministic: UIDs come from :func:`uid` with explicit entropy, dates and
times are fixed by the caller, and compressed pixel data is produced by codecs whose output
depends only on the pixels. That is what lets a test compare the sha256 of every file of two
exports made with the same seed.

>>> uid("seed0", "study", 1).startswith("1.2.826.0.1.3680043.8.498.")
True
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset, validate_file_meta
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_data_element, write_file_meta_info
from pydicom.uid import (
    CTImageStorage,
    EnhancedCTImageStorage,
    ExplicitVRLittleEndian,
    JPEGLosslessSV1,
    MRImageStorage,
    RLELossless,
    SecondaryCaptureImageStorage,
    generate_uid,
)

from ctcorpus.errors import SynthError

__all__ = [
    "SeriesHeader", "SlicePlacement", "build_slice", "uid", "write_dataset", "write_enhanced_series", "write_series", "write_sr_report",
]

#: Basic Text SR Storage: a report as a tree of text items under headings.
BASIC_TEXT_SR = "1.2.840.10008.5.1.4.1.1.88.11"

_SOP_CLASS = {"CT": CTImageStorage, "MR": MRImageStorage, "OT": SecondaryCaptureImageStorage}


def uid(*parts: object) -> str:
    """A DICOM UID derived only from ``parts`` (same parts, same UID; no clock, no host).

    Examples
    --------
    >>> uid("a", 1) == uid("a", 1) != uid("a", 2)
    True
    """
    return str(generate_uid(entropy_srcs=[str(p) for p in parts]))


@dataclass(frozen=True, slots=True)
class SeriesHeader:
    """The header values shared by every object of one series."""

    patient_id: str
    patient_name: str
    birth_date: str
    sex: str
    study_uid: str
    study_date: str
    study_time: str
    accession_number: str
    series_uid: str
    series_number: int
    series_description: str
    frame_of_reference_uid: str
    kernel: str
    manufacturer: str
    model: str
    slice_thickness_mm: float
    pixel_spacing_mm: tuple[float, float]  # (row spacing, column spacing) as DICOM orders it
    image_type: tuple[str, ...] = ("ORIGINAL", "PRIMARY", "AXIAL")
    modality: str = "CT"  # "CT", "MR" or "OT" (secondary capture)
    transfer_syntax: str = ExplicitVRLittleEndian
    signed: bool = False  # int16 stored values (intercept 0) instead of uint16 (intercept -1024)
    extra: tuple[tuple[str, str], ...] = ()  # further (keyword, value) pairs, e.g. seeded PHI
    requested_accession_numbers: tuple[str, ...] = ()  # the orders the study fulfils (a group case)


@dataclass(frozen=True, slots=True)
class SlicePlacement:
    """Where one image lies: its instance number, LPS position of the first pixel and orientation."""

    instance_number: int
    position_mm: tuple[float, float, float]
    orientation: tuple[float, float, float, float, float, float] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


def _ds(value: float) -> str:
    """Decimal string of at most 16 characters (DICOM DS), stable across platforms."""
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


_DYNAMIC = frozenset({0x00080018, 0x00200013, 0x00200032, 0x00200037, 0x00201041, 0x7FE00010})


def _series_dataset(header: SeriesHeader, shape: tuple[int, int]) -> Dataset:
    """The elements every image of the series shares (everything but identity, position, pixels)."""
    if header.modality not in _SOP_CLASS:
        raise SynthError(f"unsupported modality {header.modality!r}; use one of {sorted(_SOP_CLASS)}")
    sop_class = _SOP_CLASS[header.modality]
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = list(header.image_type)
    ds.SOPClassUID = sop_class
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = header.study_date
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = header.study_time
    ds.AccessionNumber = header.accession_number
    ds.Modality = header.modality
    ds.Manufacturer = header.manufacturer
    ds.ManufacturerModelName = header.model
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = "CT THORAX"
    ds.SeriesDescription = header.series_description
    ds.PatientName = header.patient_name
    ds.PatientID = header.patient_id
    ds.PatientBirthDate = header.birth_date
    ds.PatientSex = header.sex
    ds.SliceThickness = _ds(header.slice_thickness_mm)
    if header.modality == "CT":
        ds.KVP = "120"
        ds.ConvolutionKernel = header.kernel
    ds.StudyInstanceUID = header.study_uid
    ds.SeriesInstanceUID = header.series_uid
    ds.StudyID = header.accession_number[-8:]
    ds.SeriesNumber = header.series_number
    ds.FrameOfReferenceUID = header.frame_of_reference_uid
    ds.PositionReferenceIndicator = ""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = (int(v) for v in shape)
    ds.PixelSpacing = [_ds(v) for v in header.pixel_spacing_mm]
    ds.BitsAllocated = 16
    ds.BitsStored = 16 if header.signed else 12
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if header.signed else 0
    ds.RescaleIntercept = "0" if header.signed else "-1024"
    ds.RescaleSlope = "1"
    ds.RescaleType = "HU"
    ds.WindowCenter, ds.WindowWidth = "40", "400"
    for keyword, value in header.extra:
        setattr(ds, keyword, value)
    if header.requested_accession_numbers:
        ds.RequestAttributesSequence = [_request_attributes(n, k) for k, n in enumerate(header.requested_accession_numbers)]
    return ds


def _request_attributes(accession_number: str, index: int) -> Dataset:
    """One RequestAttributesSequence item: the order (accession number) and its procedure step."""
    item = Dataset()
    item.AccessionNumber = accession_number
    item.RequestedProcedureID = f"RP{index + 1}"
    item.ScheduledProcedureStepID = f"SPS{index + 1}"
    return item


def _slice_elements(header: SeriesHeader, hu: np.ndarray, placement: SlicePlacement) -> Dataset:
    """The per-image elements: SOP instance UID, instance number, position, orientation, pixels."""
    if hu.ndim != 2:
        raise SynthError(f"a slice must be 2-D, got shape {hu.shape}")
    ds = Dataset()
    ds.SOPInstanceUID = uid(header.series_uid, "sop", placement.instance_number, placement.position_mm)
    ds.InstanceNumber = placement.instance_number
    ds.ImagePositionPatient = [_ds(v) for v in placement.position_mm]
    ds.ImageOrientationPatient = [_ds(v) for v in placement.orientation]
    ds.SliceLocation = _ds(placement.position_mm[2])
    ds.PixelData = _stored(hu, header.signed, 1.0, 0.0 if header.signed else -1024.0, 16 if header.signed else 12).tobytes()
    ds["PixelData"].VR = "OW"
    return ds


def _stored(hu: np.ndarray, signed: bool, slope: float, intercept: float, bits_stored: int) -> np.ndarray:
    """The stored values that ``slope`` and ``intercept`` rescale to ``hu``, saturated to ``bits_stored`` bits."""
    values = np.rint((hu.astype(np.float64) - intercept) / slope)
    low, high = (-(1 << (bits_stored - 1)), (1 << (bits_stored - 1)) - 1) if signed else (0, (1 << bits_stored) - 1)
    return np.ascontiguousarray(np.clip(values, low, high).astype(np.int16 if signed else np.uint16))


def build_slice(header: SeriesHeader, hu: np.ndarray, placement: SlicePlacement) -> Dataset:
    """One image object of ``header``'s series holding ``hu`` (a 2-D HU image) at ``placement``.

    Stored values are ``HU + 1024`` as uint16 with intercept -1024, or HU as int16 with intercept
    0 (``header.signed``), both with slope 1 — the two conventions scanners actually use, so
    readers must apply the rescale rather than assume one.

    Examples
    --------
    >>> h = SeriesHeader("P1", "Doe^J", "19500101", "F", "1.2", "20240101", "120000", "A1", "1.3",
    ...                  2, "CHEST", "1.4", "B30f", "SIEMENS", "SOMATOM", 5.0, (3.0, 3.0))
    >>> build_slice(h, np.zeros((4, 4), np.int16), SlicePlacement(1, (0.0, 0.0, 0.0))).Rows
    4
    """
    ds = _series_dataset(header, hu.shape)
    ds.update(_slice_elements(header, hu, placement))
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return ds


def _encode(elements: Dataset | list) -> bytes:
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, False
    for elem in elements:
        write_data_element(fp, elem)
    return fp.getvalue()


def write_series(
    header: SeriesHeader, images: Sequence[np.ndarray], placements: Sequence[SlicePlacement], paths: Sequence[Path]
) -> None:
    """Write ``images[k]`` at ``placements[k]`` to ``paths[k]``: one series, one file per image.

    Uncompressed series are encoded once and only the per-image elements are re-encoded for each
    file (pydicom's writer costs ~5 ms a file; this is >5x faster and gives the same bytes as
    ``write_dataset(build_slice(...))``, which compressed series still use).
    """
    if header.transfer_syntax != ExplicitVRLittleEndian:
        for image, placement, path in zip(images, placements, paths, strict=True):
            write_dataset(build_slice(header, image, placement), path, header.transfer_syntax)
        return
    shared = _series_dataset(header, images[0].shape)
    meta = shared.file_meta
    meta.MediaStorageSOPInstanceUID = "1.2"
    validate_file_meta(meta, enforce_standard=True)
    # Runs of shared elements between the per-image tags, each encoded once.
    dynamic_tags = sorted(_DYNAMIC)
    runs: list[bytes] = []
    elems = list(shared)
    for lo, hi in zip([0] + dynamic_tags, dynamic_tags + [0xFFFFFFFF + 1], strict=True):
        runs.append(_encode([e for e in elems if lo < e.tag < hi]))
    for image, placement, path in zip(images, placements, paths, strict=True):
        own = _slice_elements(header, image, placement)
        meta.MediaStorageSOPInstanceUID = own.SOPInstanceUID
        fp = DicomBytesIO()
        fp.is_little_endian, fp.is_implicit_VR = True, False
        fp.write(b"\0" * 128 + b"DICM")
        write_file_meta_info(fp, meta, enforce_standard=True)
        parts = [fp.getvalue(), runs[0]]
        for tag, run in zip(dynamic_tags, runs[1:], strict=True):
            parts += [_encode([own[tag]]), run]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"".join(parts))


def _item(**values: object) -> Dataset:
    """A one-item functional group macro: a dataset of ``values``."""
    item = Dataset()
    for keyword, value in values.items():
        setattr(item, keyword, value)
    return item


def write_enhanced_series(
    header: SeriesHeader,
    images: Sequence[np.ndarray],
    placements: Sequence[SlicePlacement],
    path: Path,
    *,
    order: Sequence[int] | None = None,
    rescales: Sequence[tuple[float, float]] | None = None,
) -> None:
    """Write the series ``write_series`` writes as files as one Enhanced CT Image Storage object.

    Frame ``k`` holds ``images[order[k]]`` at ``placements[order[k]]`` (``order``: stored in
    ``images`` order when None, as scanners need not sort frames); its position goes in its
    per-frame PlanePositionSequence, orientation, pixel measures, frame type and the header's
    rescale in the shared group, and a (slope, intercept) of ``rescales[i]`` for image ``i`` in
    that frame's own PixelValueTransformationSequence. Stored values are 16 bits, so any rescale
    of the HU holds them; the InstanceNumber of each placement becomes its In-Stack Position.

    >>> write_enhanced_series(header, images, placements, Path("/tmp/ct.dcm"), order=[2, 0, 1])  # doctest: +SKIP
    """
    order = list(range(len(images))) if order is None else list(order)
    ds = _series_dataset(header, images[0].shape)
    for keyword in ("SliceThickness", "PixelSpacing", "RescaleIntercept", "RescaleSlope", "RescaleType", "WindowCenter", "WindowWidth"):
        delattr(ds, keyword)  # in the functional groups instead
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = EnhancedCTImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = uid(header.series_uid, "enhanced", len(images))
    frame_type = [*header.image_type, "NONE"][:4]
    ds.ImageType = frame_type
    ds.InstanceNumber = 1
    ds.NumberOfFrames = len(order)
    ds.BitsStored, ds.HighBit = 16, 15
    default = (1.0, 0.0 if header.signed else -1024.0)
    ds.SharedFunctionalGroupsSequence = [_item(
        PixelMeasuresSequence=[_item(PixelSpacing=[_ds(v) for v in header.pixel_spacing_mm],
                                     SliceThickness=_ds(header.slice_thickness_mm))],
        PlaneOrientationSequence=[_item(ImageOrientationPatient=[_ds(v) for v in placements[0].orientation])],
        CTImageFrameTypeSequence=[_item(FrameType=frame_type)],
        PixelValueTransformationSequence=[_item(RescaleIntercept=_ds(default[1]), RescaleSlope=_ds(default[0]), RescaleType="HU")],
    )]
    frames, pixels = [], []
    for i in order:
        slope, intercept = default if rescales is None else rescales[i]
        group = _item(
            PlanePositionSequence=[_item(ImagePositionPatient=[_ds(v) for v in placements[i].position_mm])],
            FrameContentSequence=[_item(StackID="1", InStackPositionNumber=placements[i].instance_number,
                                        DimensionIndexValues=[1, placements[i].instance_number])],
        )
        if placements[i].orientation != placements[0].orientation:
            group.PlaneOrientationSequence = [_item(ImageOrientationPatient=[_ds(v) for v in placements[i].orientation])]
        if rescales is not None:
            group.PixelValueTransformationSequence = [_item(RescaleIntercept=_ds(intercept), RescaleSlope=_ds(slope), RescaleType="HU")]
        frames.append(group)
        pixels.append(_stored(images[i], header.signed, slope, intercept, 16).tobytes())
    ds.PerFrameFunctionalGroupsSequence = frames
    ds.PixelData = b"".join(pixels)
    ds["PixelData"].VR = "OW"
    write_dataset(ds, path, header.transfer_syntax)


def _jpeg_lossless(ds: Dataset) -> None:
    """Re-encode ``ds`` in place as JPEG Lossless SV1 through GDCM (pydicom 3 cannot encode it).

    Only the encapsulated pixel data is taken from GDCM; the header stays pydicom's, so GDCM's
    own additions (implementation name, filled-in type 2 elements) never reach the file.
    """
    import gdcm  # python-gdcm; imported here because only this transfer syntax needs it
    from pydicom import dcmread

    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.dcm", Path(tmp) / "out.dcm"
        ds.save_as(src, enforce_file_format=True)
        reader = gdcm.ImageReader()
        reader.SetFileName(str(src))
        change = gdcm.ImageChangeTransferSyntax()
        change.SetTransferSyntax(gdcm.TransferSyntax(gdcm.TransferSyntax.JPEGLosslessProcess14_1))
        writer = gdcm.ImageWriter()
        if reader.Read():
            change.SetInput(reader.GetImage())
            if change.Change():
                writer.SetFile(reader.GetFile())
                writer.SetImage(change.GetOutput())
                writer.SetFileName(str(dst))
                if writer.Write():
                    encoded = dcmread(dst)
                    ds["PixelData"] = encoded["PixelData"]
                    ds.file_meta.TransferSyntaxUID = JPEGLosslessSV1
                    return
    raise SynthError("GDCM could not encode JPEG Lossless SV1; is python-gdcm installed and working?")


def write_dataset(ds: Dataset, path: Path, transfer_syntax: str = ExplicitVRLittleEndian) -> None:
    """Write ``ds`` as a DICOM Part 10 file at ``path`` in ``transfer_syntax``.

    Supported: Explicit VR Little Endian, RLE Lossless (pydicom's own encoder) and JPEG Lossless
    SV1 (GDCM). Parent folders are created.
    """
    if transfer_syntax == RLELossless:
        ds.compress(RLELossless, encoding_plugin="pydicom", generate_instance_uid=False)
    elif transfer_syntax == JPEGLosslessSV1:
        _jpeg_lossless(ds)
    elif transfer_syntax != ExplicitVRLittleEndian:
        raise SynthError(f"cannot write transfer syntax {transfer_syntax}; use Explicit VR LE, RLE or JPEG LL SV1")
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)



def _code(value: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, "DCM", meaning
    return item


def _image_item(sop_uid: str) -> Dataset:
    """An SR IMAGE content item: the CT image a finding was inferred from."""
    reference = Dataset()
    reference.ReferencedSOPClassUID, reference.ReferencedSOPInstanceUID = CTImageStorage, sop_uid
    item = Dataset()
    item.RelationshipType, item.ValueType, item.ReferencedSOPSequence = "INFERRED FROM", "IMAGE", [reference]
    item.ConceptNameCodeSequence = [_code("121112", "Source of Measurement")]
    return item


def write_sr_report(
    path: Path, header: SeriesHeader, sections: Sequence[tuple[str, Sequence[str | tuple[str, Sequence[str]]]]], *,
    content_time: str = "120000", language: str = "",
) -> None:
    """Write a Basic Text SR report of ``header``'s study: a "Radiology Report" container with one
    container per (heading, paragraphs) section (heading "": the paragraphs stand under the root,
    as "Comment" text items), the observer (PHI, no report text) as context, and with ``language``
    (an RFC 5646 code, "en-US") TID 1204's language item. A paragraph given as (text, SOP Instance
    UIDs) is inferred from those CT images (IMAGE items under it).

    >>> write_sr_report(Path("/tmp/sr.dcm"), header, [("Findings", ["No effusion."])])  # doctest: +SKIP
    """
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = BASIC_TEXT_SR
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = uid(header.series_uid, "sr", content_time)
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.Modality = "SR"
    ds.PatientName, ds.PatientID, ds.PatientBirthDate = header.patient_name, header.patient_id, header.birth_date
    ds.StudyInstanceUID, ds.SeriesInstanceUID = header.study_uid, header.series_uid
    ds.StudyDate, ds.StudyTime, ds.AccessionNumber = header.study_date, header.study_time, header.accession_number
    ds.SeriesNumber, ds.InstanceNumber = header.series_number, 1
    ds.ContentDate, ds.ContentTime = header.study_date, content_time
    ds.ValueType, ds.ContinuityOfContent = "CONTAINER", "SEPARATE"
    ds.ConceptNameCodeSequence = [_code("18748-4", "Radiology Report")]
    ds.CompletionFlag, ds.VerificationFlag = "COMPLETE", "UNVERIFIED"
    observer = Dataset()
    observer.RelationshipType, observer.ValueType = "HAS OBS CONTEXT", "PNAME"
    observer.ConceptNameCodeSequence = [_code("121008", "Person Observer Name")]
    observer.PersonName = "Radiologist^Reading"
    items = [observer]
    if language:
        stated = Dataset()
        stated.RelationshipType, stated.ValueType = "HAS CONCEPT MOD", "CODE"
        stated.ConceptNameCodeSequence = [_code("121049", "Language of Content Item and Descendants")]
        stated.ConceptCodeSequence = [_code(language, language)]
        stated.ConceptCodeSequence[0].CodingSchemeDesignator = "RFC5646"
        items.append(stated)
    for heading, paragraphs in sections:
        children = []
        for paragraph in paragraphs:
            words, cited = (paragraph, ()) if isinstance(paragraph, str) else paragraph
            text = Dataset()
            text.RelationshipType, text.ValueType, text.TextValue = "CONTAINS", "TEXT", words
            text.ConceptNameCodeSequence = [_code("121071", "Finding") if heading else _code("121106", "Comment")]
            if cited:
                text.ContentSequence = [_image_item(sop_uid) for sop_uid in cited]
            children.append(text)
        if not heading:
            items += children
            continue
        container = Dataset()
        container.RelationshipType, container.ValueType, container.ContinuityOfContent = "CONTAINS", "CONTAINER", "SEPARATE"
        container.ConceptNameCodeSequence = [_code("121070", heading)]
        container.ContentSequence = children
        items.append(container)
    ds.ContentSequence = items
    write_dataset(ds, path)
