"""DICOM ingestion: header index, stacks, geometry policy, HU, resampling, quarantine, pseudonyms.

Tiny series are written here with pydicom from fixed seeds; the synthetic export comes from
``ctcorpus.synth``; real public data from ``../shared/data`` (skipped when absent); dcm2niix is the
geometry reference.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import os
import shutil
import subprocess
import time
import tracemalloc
import unicodedata
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.tag import Tag
from pydicom.uid import (
    CTImageStorage,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGLosslessSV1,
    RLELossless,
    generate_uid,
)

import ctcorpus.ingest.discover as discover_module
import ctcorpus.ingest.header as header_module
import ctcorpus.ingest.pipeline as ingest_pipeline_module
from ctcorpus.config.ingest import GeometryPolicy, IngestConfig
from ctcorpus.enums import Action, QuarantineReason
from ctcorpus.errors import ConfigError, IngestError
from ctcorpus.ingest import (
    InstanceRecord,
    assemble_volume,
    candidate_groups,
    filecache,
    index_export,
    ingest_stack,
    instance_rows,
    plan_stacks,
    read_instance,
    read_stored,
    resample_labels,
    resample_volume,
    resampled_image,
    rescale_to_hu,
    select_stacks,
    to_hu,
    unselected_entries,
    volume_image,
)
from ctcorpus.ingest.assemble import AIR_HU
from ctcorpus.ingest.geometry import slice_centre
from ctcorpus.ingest.header import read_instances
from ctcorpus.ingest.records import ExportIndex
from ctcorpus.ingest.tables import instance_row, safe_path, series_row
from ctcorpus.pseudonym import Pseudonymizer
from ctcorpus.records import QuarantineLog
from ctcorpus.schemas import check_table, table_from_rows
from ctcorpus.synth.dicom import SeriesHeader, SlicePlacement, write_enhanced_series
from ctcorpus.synth.dicom import write_series as synth_write_series
from ctcorpus.synth.export import generate_export
from ctcorpus.synth.truth import ExportTruth

warnings.filterwarnings("ignore", module="pydicom")  # the tests write invalid values on purpose

DCM2NIIX = Path(__file__).resolve().parents[1] / ".venv" / "bin" / "dcm2niix"
KEY = "test-key"


def cfg(**kwargs: object) -> IngestConfig:
    base: dict[str, object] = {"pseudonym_key": KEY, "target_spacing_mm": (4.0, 4.0, 4.0)}
    base.update(kwargs)
    return IngestConfig(**base)


# ---------------------------------------------------------------- tiny series writer


def write_slice(
    path: Path,
    pixels: np.ndarray,
    position: tuple[float, float, float],
    *,
    series_uid: str,
    instance: int,
    orientation: tuple[float, ...] = (1, 0, 0, 0, 1, 0),
    spacing: float = 2.0,
    slope: float = 1.0,
    intercept: float = -1024.0,
    acquisition: int = 1,
    image_type: str = "ORIGINAL\\PRIMARY\\AXIAL",
    implicit: bool = False,
    preamble: bool = True,
    sop_uid: str | None = None,
    study_uid: str = "1.2.3.4",
    kernel: str = "B30f",
    thickness: float = 2.0,
    patient_id: str = "PAT-001",
) -> None:
    """One CT slice; ``pixels`` are stored values (uint16)."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.SOPInstanceUID = sop_uid or generate_uid(entropy_srcs=[series_uid, str(instance), str(position)])
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
    ds.SOPClassUID = CTImageStorage
    ds.Modality = "CT"
    ds.PatientID = patient_id
    ds.PatientName = "Doe^Jane"
    ds.PatientBirthDate = "19600101"
    ds.AccessionNumber = "ACC-42"
    ds.StudyDate = "20240102"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.FrameOfReferenceUID = study_uid + ".9"
    ds.SeriesNumber = 3
    ds.InstanceNumber = instance
    ds.AcquisitionNumber = acquisition
    ds.ImageType = image_type
    ds.ImagePositionPatient = [f"{v:.4f}" for v in position]
    ds.ImageOrientationPatient = [f"{v:.6f}" for v in orientation]
    ds.PixelSpacing = [spacing, spacing]
    ds.SliceThickness = thickness
    ds.ConvolutionKernel = kernel
    ds.Manufacturer = "TEST"
    ds.RescaleSlope = f"{slope:g}"
    ds.RescaleIntercept = f"{intercept:g}"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.PixelData = pixels.astype("<u2").tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, implicit_vr=implicit, little_endian=True, enforce_file_format=preamble)


def phantom(n: int = 12, size: int = 32) -> np.ndarray:
    """Stored values (z, y, x): air with an asymmetric bright block at high x, low y, high z."""
    stored = np.full((n, size, size), 24, np.uint16)  # -1000 HU
    stored[n - 4 : n - 1, 2:6, size - 8 : size - 3] = 2024  # +1000 HU
    return stored


def write_series(root: Path, stored: np.ndarray, *, z0: float = -50.0, dz: float = 2.0, reverse_numbers: bool = True, **kwargs: object) -> list[Path]:
    """A stack with shuffled file names and instance numbers running against z."""
    series_uid = str(kwargs.pop("series_uid", "1.2.3.4.5"))
    rng = np.random.default_rng(0)
    names = rng.permutation(len(stored))
    paths = []
    for k, pixels in enumerate(stored):
        number = len(stored) - k if reverse_numbers else k + 1
        path = root / f"IMG{names[k]:04d}"
        write_slice(path, pixels, (-31.0, -31.0, z0 + k * dz), series_uid=series_uid, instance=number, **kwargs)  # type: ignore[arg-type]
        paths.append(path)
    return paths


def run(root: Path, config: IngestConfig) -> tuple[list, QuarantineLog, list]:
    log = QuarantineLog()
    index = index_export(root, config, on_error=log)
    stacks = plan_stacks(index, config)
    return stacks, log, [ingest_stack(s, config) for s in stacks]


# ---------------------------------------------------------------- pseudonyms and config


def test_pseudonyms_are_keyed_stable_and_read_the_environment_at_call_time(monkeypatch: pytest.MonkeyPatch) -> None:
    a = Pseudonymizer.from_literal("k1", record=True)
    assert a.patient("123") == Pseudonymizer.from_literal("k1").patient("123")
    assert a.patient("123") != Pseudonymizer.from_literal("k2").patient("123")
    assert a.patient("123") != a.accession("123")  # kinds never collide
    assert [a.patient("1")[:4], a.study("1")[:4], a.accession("1")[:4], a.series("1")[:4], a.volume("1")[:4]] == [
        "pat-", "stu-", "acc-", "ser-", "vol-"
    ]
    assert {(r.kind, r.original) for r in a.linkage()} >= {("pat", "123"), ("acc", "123")}
    monkeypatch.delenv("CT_TEST_KEY", raising=False)
    with pytest.raises(ConfigError, match="CT_TEST_KEY"):
        Pseudonymizer.from_config(None, "CT_TEST_KEY")
    monkeypatch.setenv("CT_TEST_KEY", "k1")
    assert Pseudonymizer.from_config(None, "CT_TEST_KEY").patient("123") == a.patient("123")


def test_a_patient_id_with_and_without_leading_zeros_is_one_patient_where_configured_and_warned_of(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # one RIS keeps the zeros of a fixed-width id, another strips them: as two patients, a
    # patient-level split could put the same person on both sides
    write_series(tmp_path / "a", phantom(), series_uid="1.2.3.4.5", study_uid="1.2.3.4", patient_id="0012345")
    write_series(tmp_path / "b", phantom(), series_uid="1.2.3.6.5", study_uid="1.2.3.6", patient_id="12345")
    patients = {}
    for zeros in ("strip", "keep"):
        caplog.clear()
        with caplog.at_level("WARNING", logger="ctcorpus.ingest.discover"):
            _, _, results = run(tmp_path, cfg(patient_id_zeros=zeros))
        patients[zeros] = {r.series_row.patient_id for r in results} | {r.volume_row.patient_id for r in results}
        (warning,) = [r.getMessage() for r in caplog.records if "leading zeros" in r.getMessage()]
        assert "a/IMG" in warning and "b/IMG" in warning and "12345" not in warning.split("files=")[0]
        assert ("one patient" in warning) == (zeros == "strip")
    assert len(patients["strip"]) == 1 and len(patients["keep"]) == 2
    p = Pseudonymizer.from_literal(KEY, strip_patient_zeros=True)
    assert patients["strip"] == {p.patient("12345")} == {p.make("pat", "0012345")}  # the reports stage makes it by kind
    # the default keys every id as earlier releases did (pseudonyms and splits of earlier versions hold);
    # stripping keeps those of ids without leading zeros, and keys the cache apart
    default = Pseudonymizer.from_literal(KEY)
    assert IngestConfig().patient_id_zeros == "keep" and patients["keep"] == {default.patient("0012345"), default.patient("12345")}
    for patient_id in ("0012345", "12345", "PAT-001", "0A12"):
        as_written = hmac.new(KEY.encode(), f"pat\x00{patient_id}".encode(), hashlib.sha256).hexdigest()[:16]
        assert default.patient(patient_id) == f"pat-{as_written}"
        if not patient_id.startswith("00"):
            assert p.patient(patient_id) == f"pat-{as_written}"
    assert p.key_id != default.key_id == hmac.new(KEY.encode(), b"ctcorpus key id", hashlib.sha256).hexdigest()[:16]


def test_config_rejects_bad_ranges() -> None:
    with pytest.raises(ValueError):
        IngestConfig(hu_clip=(100, -100))
    with pytest.raises(ValueError):
        IngestConfig(policy={"gantry_tilt": "fix"})  # type: ignore[arg-type]


# ---------------------------------------------------------------- discovery


def test_discovery_reasons_for_bad_files(tmp_path: Path) -> None:
    write_series(tmp_path / "s", phantom(12))
    (tmp_path / "notes.txt").write_text("export done\n")
    (tmp_path / "garbage").write_bytes(bytes(range(256)) * 3)
    (tmp_path / "empty").write_bytes(b"")  # an interrupted copy
    (tmp_path / "thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(1016))  # Windows' thumbnail cache
    good = (tmp_path / "s" / "IMG0000").read_bytes()
    (tmp_path / "cut").write_bytes(good[: len(good) - 300])  # pixel data truncated
    (tmp_path / "cut_header").write_bytes(good[:200])  # stops inside the header
    (tmp_path / "cut_before_pixels").write_bytes(good[: good.rindex(b"\xe0\x7f\x10\x00")])  # a CT image without PixelData
    write_slice(tmp_path / "scout", phantom(1)[0], (0, 0, 0), series_uid="1.9", instance=1, image_type="ORIGINAL\\PRIMARY\\LOCALIZER")
    write_slice(tmp_path / "nopre", phantom(1)[0], (0, 0, 0), series_uid="1.8", instance=1, implicit=True, preamble=False)
    sr = Dataset()
    sr.SOPClassUID, sr.SOPInstanceUID, sr.Modality = "1.2.840.10008.5.1.4.1.1.88.22", "1.2.3.77", "SR"
    sr.file_meta = FileMetaDataset()
    sr.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    sr.file_meta.MediaStorageSOPClassUID, sr.file_meta.MediaStorageSOPInstanceUID = sr.SOPClassUID, sr.SOPInstanceUID
    sr.save_as(tmp_path / "report_sr", enforce_file_format=True)
    shutil.copy(tmp_path / "report_sr", tmp_path / "DICOMDIR")
    log = QuarantineLog()
    index = index_export(tmp_path, cfg(), on_error=log)
    reasons = {q.path: q.reason for q in index.quarantine}
    assert reasons == {
        "notes.txt": QuarantineReason.NOT_DICOM,
        "garbage": QuarantineReason.NOT_DICOM,
        "empty": QuarantineReason.NOT_DICOM,
        "thumbs.db": QuarantineReason.NOT_DICOM,
        "cut": QuarantineReason.TRUNCATED,
        "cut_header": QuarantineReason.TRUNCATED,
        "cut_before_pixels": QuarantineReason.TRUNCATED,  # was non_image, "structured report, dose report, ..."
        "scout": QuarantineReason.LOCALIZER,
        "report_sr": QuarantineReason.NON_IMAGE,
    }
    assert index.skipped == ("DICOMDIR",)
    assert all(q.path in q.message for q in index.quarantine)
    nopre = next(r for r in index.instances if r.rel_path == "nopre")
    assert nopre.reason is None and nopre.reader == "pydicom"  # force=True, but only because it parses
    with pytest.raises(IngestError, match="cut_header.*truncated"):
        index_export(tmp_path, cfg())  # the library default raises


def test_a_large_file_that_is_no_dicom_is_refused_without_reading_it_whole(tmp_path: Path) -> None:
    # a video or archive in the export tree: each worker thread read it whole before pydicom refused it
    big = tmp_path / "screen_recording.mp4"
    with open(big, "wb") as handle:
        handle.write(b"\x00\x00\x00\x20ftypisom" + bytes(200))
        handle.truncate(header_module._LARGEST_UNCHECKED + 1)  # sparse: no disk used
    tracemalloc.start()
    try:
        with pytest.raises(IngestError, match="not a DICOM file") as caught:
            read_instance(big, tmp_path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert caught.value.reason == QuarantineReason.NOT_DICOM and peak < 1024 * 1024
    # a large file that starts like a dataset without preamble is still read
    with open(big, "r+b") as handle:
        handle.write(b"\x08\x00\x05\x00")
    with pytest.raises(IngestError) as caught:
        read_instance(big, tmp_path)
    assert "first bytes" not in str(caught.value)


def test_a_large_dicom_file_is_read_without_holding_it_in_memory(tmp_path: Path) -> None:
    # an Enhanced CT file of a gigabyte was read whole by each worker thread, only to be quarantined
    (path,) = write_series(tmp_path, phantom(1))
    small = read_instance(path, tmp_path)
    with open(path, "r+b") as handle:
        handle.truncate(header_module._LARGEST_UNCHECKED + 1)  # sparse: no disk used
    tracemalloc.start()
    try:
        large = read_instance(path, tmp_path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert small is not None and large is not None and peak < 1024 * 1024
    assert large == dataclasses.replace(small, size_bytes=header_module._LARGEST_UNCHECKED + 1,
                                        sha256=hashlib.sha256(path.read_bytes()).hexdigest())


@pytest.mark.parametrize(("element", "bad_vr"), [(b"\x08\x00\x70\x00LO", b"L%"), (b"\xe0\x7f\x10\x00OW", b"O\xdd")])
def test_a_corrupt_header_element_quarantines_its_file_and_the_run_goes_on(tmp_path: Path, element: bytes, bad_vr: bytes) -> None:
    # pydicom reads an unknown VR (a flipped byte) lazily: NotImplementedError when the value is
    # read, a bad VR on PixelData failed the pixel lookup; both escaped and stopped the whole index
    paths = write_series(tmp_path, phantom(12))
    data = paths[0].read_bytes()
    assert data.count(element) == 1
    paths[0].write_bytes(data.replace(element, element[:4] + bad_vr))
    index = index_export(tmp_path, cfg(), on_error=QuarantineLog())
    assert [q.path for q in index.quarantine] == [paths[0].name] and "re-export" in index.quarantine[0].message
    assert len(index.usable) == 11


@pytest.mark.parametrize("implicit", [True, False])
def test_a_file_meta_stating_the_wrong_vr_encoding_is_read_as_pydicom_finds_it(tmp_path: Path, implicit: bool) -> None:
    # anonymisers and PACS rewrite the file meta with the other VR encoding; pydicom reads the
    # dataset as it finds it, the scanner read garbage: every file was quarantined as truncated
    stored = phantom(12)
    paths = write_series(tmp_path, stored, implicit=implicit, reverse_numbers=False)
    for path in paths:
        ds = pydicom.dcmread(path)
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian if implicit else ImplicitVRLittleEndian
        pydicom.dcmwrite(path, ds, implicit_vr=implicit, little_endian=True, force_encoding=True)
    index = index_export(tmp_path, cfg())
    assert not index.quarantine and {r.reader for r in index.instances} == {"pydicom"}
    (stack,) = plan_stacks(index, cfg())
    assert np.array_equal(assemble_volume(stack, cfg()).array, stored.astype(int) - 1024)


def test_fast_header_reader_agrees_with_pydicom(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shared_data_or_none: Path | None) -> None:
    files = [*write_series(tmp_path / "e", phantom(3)), *write_series(tmp_path / "i", phantom(3), implicit=True, series_uid="1.7")]
    files.append(Path(pydicom.data.get_testdata_file("CT_small.dcm")))
    if shared_data_or_none is not None:
        for folder in ("dcm_qa_ct_philips_study_with_localizer/In", "totalsegmentator_reference/example_ct_dicom", "cornerstone_ct_transfer_syntaxes/testImages", "pydicom_data_enhanced_ct/data_store"):
            files += [p for p in sorted((shared_data_or_none / folder).rglob("*")) if p.is_file()]
    fast = [read_instance(p, p.parent) for p in files]
    assert sum(r.reader == "fast" for r in fast if r) >= 7

    def refuse(data: bytes) -> None:
        raise header_module._Unparsable("forced")

    monkeypatch.setattr(header_module, "_scan", refuse)
    slow = [read_instance(p, p.parent) for p in files]
    compared = 0
    for a, b in zip(fast, slow, strict=True):
        if a is None or a.reader != "fast":
            continue
        assert dataclasses.replace(a, reader="pydicom") == b, a.path
        compared += 1
    assert compared >= 7


@pytest.mark.parametrize(("charset", "name", "description", "reader"), [
    ("ISO_IR 192", "Müller^Jürgen", "Thorax Lunge Ödem", "fast"),
    ("ISO_IR 100", "Müller^Jürgen", "Thorax Lunge Ödem", "fast"),
    ("ISO_IR 144", "Соколов^Иван", "Грудная клетка", "pydicom"),
    # UTF-8 written decomposed (u + combining diaeresis): another person key, were it not composed
    ("ISO_IR 192", unicodedata.normalize("NFD", "Müller^Jürgen"), unicodedata.normalize("NFD", "Thorax Lunge Ödem"), "fast"),
])
def test_names_are_decoded_in_the_files_character_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, charset: str, name: str, description: str, reader: str
) -> None:
    # A UTF-8 name read as Latin-1 ("MÃ¼ller") matches no report text: the scrubber would miss it.
    path = tmp_path / "name"
    write_slice(path, phantom(1)[0], (0.0, 0.0, 0.0), series_uid="1.5", instance=1)
    ds = pydicom.dcmread(path)
    ds.SpecificCharacterSet, ds.PatientName, ds.SeriesDescription = charset, name, description
    ds.save_as(path, enforce_file_format=True)
    record = read_instance(path, tmp_path)
    assert record is not None and record.reason is None
    composed = unicodedata.normalize("NFC", name), unicodedata.normalize("NFC", description)
    assert (record.reader, record.patient_name, record.series_description) == (reader, *composed)
    monkeypatch.setattr(header_module, "_scan", lambda data: (_ for _ in ()).throw(header_module._Unparsable("forced")))
    assert read_instance(path, tmp_path) == dataclasses.replace(record, reader="pydicom")


def rewrite(path: Path, charset: str | list[str] | None, encoding: str | None = None, **text: str) -> None:
    """Set text elements of a written slice under SpecificCharacterSet ``charset`` (``None``: none),
    written as ``encoding``'s bytes whatever ``charset`` says (``None``: as pydicom encodes it there)."""
    ds = pydicom.dcmread(path)
    if charset is None:
        ds.pop("SpecificCharacterSet", None)
    else:
        ds.SpecificCharacterSet = charset
    for keyword, value in text.items():
        setattr(ds, keyword, value if encoding is None else value.encode(encoding))
    ds.save_as(path, enforce_file_format=True)


def read_both(path: Path, root: Path, monkeypatch: pytest.MonkeyPatch) -> InstanceRecord:
    """The fast reader's record of ``path``, checked to be what pydicom's fallback reads."""
    fast = read_instance(path, root)
    assert fast is not None
    with monkeypatch.context() as forced, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns of the bytes that are no UTF-8 under ISO_IR 192
        forced.setattr(header_module, "_scan", lambda data: (_ for _ in ()).throw(header_module._Unparsable("forced")))
        assert read_instance(path, root) == dataclasses.replace(fast, reader="pydicom")
    return fast


def test_pydicom_warnings_name_the_file_they_come_from_and_the_file_is_still_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # pydicom's "Invalid value for VR IS: '2.0'" named no file: in an export of 100,000 files, the
    # user could not find the one it came from. Files without a preamble are read by pydicom, by threads.
    paths = write_series(tmp_path, phantom(4), implicit=True, preamble=False)
    monkeypatch.setattr(pydicom.config.settings, "writing_validation_mode", pydicom.config.IGNORE)
    for path in paths:
        ds = pydicom.dcmread(path, force=True)
        ds["InstanceNumber"] = DataElement(0x00200013, "IS", f"{ds.InstanceNumber}.0", validation_mode=pydicom.config.IGNORE)
        ds.save_as(path, implicit_vr=True, little_endian=True)
    caplog.clear()
    with caplog.at_level("WARNING"):
        index = index_export(tmp_path, cfg(), workers=2)
    assert not index.quarantine and {r.reader for r in index.instances} == {"pydicom"}
    assert sorted(r.instance_number for r in index.instances) == [1, 2, 3, 4]
    assert not [r for r in caplog.records if r.name.startswith("pydicom")]  # no warning without its file
    named = [r.getMessage() for r in caplog.records if r.name == "ctcorpus.ingest.header"]
    assert len(named) == 4  # one per file, though two readers read each
    for record in index.instances:
        (message,) = [m for m in named if f"file={record.rel_path}:" in m]
        assert f"Invalid value for VR IS: '{record.instance_number}.0'" in message


def test_one_patients_series_exported_with_and_without_its_utf8_character_set_are_one_patient(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # An export tool writes UTF-8 but no SpecificCharacterSet; read as Latin-1 ("MÃ¼LLER-4711"),
    # the other export's patient would be another pseudonym, so another split: a leak.
    from ctcorpus.outputs.splits import assign_split
    from ctcorpus.pipeline import person_key

    for k, (folder, charset) in enumerate((("declared", "ISO_IR 192"), ("undeclared", None))):
        (path,) = write_series(tmp_path / folder, phantom(1), series_uid=f"1.5.{k}", study_uid=f"1.2.{k}")
        rewrite(path, charset, "utf-8", PatientID="MÜLLER-4711", PatientName="Müller^Jürgen", SeriesDescription="Thorax Lunge Ödem")
    assert b"\x00\x08\x05\x00" not in path.read_bytes()  # the second file declares no character set
    with caplog.at_level("WARNING", logger="ctcorpus.ingest.discover"):
        index = index_export(tmp_path, cfg())
    assert not index.quarantine and {r.reader for r in index.instances} == {"fast"}
    stacks = plan_stacks(index, cfg())
    p = Pseudonymizer.from_literal(KEY)
    fractions = {"train": 0.5, "val": 0.25, "test": 0.25}
    keys = {(s.first.patient_id, s.first.patient_name, s.first.series_description, p.patient(s.first.patient_id),
             person_key(s, p), assign_split(p.patient(s.first.patient_id), fractions, KEY)) for s in stacks}
    assert len(stacks) == 2 and len(keys) == 1
    assert next(iter(keys))[:3] == ("MÜLLER-4711", "Müller^Jürgen", "Thorax Lunge Ödem")
    notes = {s.first.rel_path: s.first.charset_note for s in stacks}
    assert notes[str(Path("declared") / path.name)] == ""
    assert notes[str(Path("undeclared") / path.name)] == "; ".join(
        f"{keyword} read as UTF-8, which its bytes are, not as the default repertoire (no SpecificCharacterSet)"
        for keyword in ("PatientID", "PatientName", "SeriesDescription"))
    (warning,) = [r for r in caplog.records if "character set" in r.getMessage()]
    assert "undeclared" in warning.getMessage() and "files=1" in warning.getMessage()
    assert read_both(tmp_path / "undeclared" / path.name, tmp_path / "undeclared", monkeypatch).patient_name == "Müller^Jürgen"


@pytest.mark.parametrize(("charset", "encoding", "written", "read", "note"), [
    # undeclared Latin-1 bytes (no UTF-8): still Latin-1, as pydicom and dcm2niix read them
    (None, "latin-1", "Müller^Jürgen", "Müller^Jürgen", ""),
    (None, "latin-1", "Ørsted^Åse", "Ørsted^Åse", ""),
    # ISO_IR 100 declared, UTF-8 written
    ("ISO_IR 100", "utf-8", "Müller^Jürgen", "Müller^Jürgen",
     "PatientName read as UTF-8, which its bytes are, not as the declared ISO_IR 100"),
    # the ideographic and phonetic groups of a person name, undeclared UTF-8
    (None, "utf-8", "Yamada^Tarou=山田^太郎=やまだ^たろう", "Yamada^Tarou=山田^太郎=やまだ^たろう",
     "PatientName read as UTF-8, which its bytes are, not as the default repertoire (no SpecificCharacterSet)"),
    # ISO 2022 escape sequences (JIS X 0208): pydicom reads them, nothing is corrected
    (["", "ISO 2022 IR 87"], None, "Yamada^Tarou=山田^太郎=やまだ^たろう", "Yamada^Tarou=山田^太郎=やまだ^たろう", ""),
    # bytes that are no UTF-8 under ISO_IR 192: replacement characters and a note, no failure
    ("ISO_IR 192", "latin-1", "Müller^Jürgen", "M\ufffdller^J\ufffdrgen",
     "PatientName holds bytes that are no UTF-8 under ISO_IR 192: read with replacement characters"),
])
def test_person_names_are_read_as_their_bytes_say_when_the_character_set_does_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, charset: str | list[str] | None, encoding: str | None,
    written: str, read: str, note: str,
) -> None:
    path = tmp_path / "name"
    write_slice(path, phantom(1)[0], (0.0, 0.0, 0.0), series_uid="1.5", instance=1)
    rewrite(path, charset, encoding, PatientName=written)
    record = read_both(path, tmp_path, monkeypatch)
    assert record.reason is None and (record.patient_name, record.charset_note) == (read, note)


@pytest.mark.parametrize(("written", "read"), [
    ("20210304", "20210304"),
    ("2021.03.04", "20210304"),  # ACR-NEMA, which PS3.5 asks readers to accept
    ("2021-03-04", "20210304"),
    ("2021/03/04 ", "20210304"),
    ("20210230", "20210230"),  # no such day: kept, linking finds no day in it
    ("2021-0304", "2021-0304"),
    ("", ""),
])
def test_dates_are_read_as_yyyymmdd_however_they_are_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, written: str, read: str
) -> None:
    # "2021-03-04" compared as written linked no report by patient and date, and gave the person
    # another key than the export that writes "20210304"
    path = tmp_path / "date"
    write_slice(path, phantom(1)[0], (0.0, 0.0, 0.0), series_uid="1.5", instance=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns of a DA value that is no YYYYMMDD
        rewrite(path, "ISO_IR 100", StudyDate=written, PatientBirthDate=written)
    record = read_both(path, tmp_path, monkeypatch)
    assert (record.study_date, record.patient_birth_date) == (read, read)


@pytest.mark.parametrize("implicit", [False, True])
@pytest.mark.parametrize("undefined_lengths", [False, True])
def test_accession_numbers_of_the_requested_procedures_are_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, implicit: bool, undefined_lengths: bool
) -> None:
    # A "group case": one scan fulfils a chest and an abdomen order; AccessionNumber is left empty
    # and each order's number stands in its RequestAttributesSequence item, after nested sequences.
    path = tmp_path / "group"
    write_slice(path, phantom(1)[0], (0.0, 0.0, 0.0), series_uid="1.5", instance=1, implicit=implicit)
    ds = pydicom.dcmread(path)
    ds.AccessionNumber = ""
    items = []
    for accession in ("ACC-CHEST", "ACC-ABD", ""):
        item = Dataset()
        language = Dataset()
        language.CodeValue, language.CodingSchemeDesignator, language.CodeMeaning = "en", "RFC5646", "English"
        item.LanguageCodeSequence = [language]  # (0008,0006): a sequence before the accession number
        item.AccessionNumber = accession
        item.RequestedProcedureID = accession[-3:] or "X"
        item.is_undefined_length_sequence_item = language.is_undefined_length_sequence_item = undefined_lengths
        items.append(item)
    ds.RequestAttributesSequence = items
    for sequence in (ds["RequestAttributesSequence"], *(i["LanguageCodeSequence"] for i in items)):
        sequence.is_undefined_length = undefined_lengths
    ds.save_as(path, implicit_vr=implicit, little_endian=True, enforce_file_format=True)
    assert (b"\xfe\xff\xdd\xe0" in path.read_bytes()) == undefined_lengths  # the sequence delimiter
    fast = read_instance(path, tmp_path)
    assert fast is not None and fast.reader == "fast" and fast.reason is None
    assert fast.accession_number == "" and fast.requested_accession_numbers == ("ACC-CHEST", "ACC-ABD")
    monkeypatch.setattr(header_module, "_scan", lambda data: (_ for _ in ()).throw(header_module._Unparsable("forced")))
    assert read_instance(path, tmp_path) == dataclasses.replace(fast, reader="pydicom")


def set_raw(path: Path, **values: str) -> None:
    """Write each keyword's value as exactly this text (padded to even length), as exports write
    numbers pydicom would refuse to write: "3A", "0,5", "1.0 x"."""
    ds = pydicom.dcmread(path)
    for keyword, text in values.items():
        tag = Tag(tag_for_keyword(keyword))
        raw = text.encode("ascii")
        raw += b" " * (len(raw) % 2)
        ds[tag] = RawDataElement(tag, dictionary_VR(tag), len(raw), raw, 0, False, True)
    ds.save_as(path, enforce_file_format=True)


@pytest.mark.parametrize(("keyword", "text", "field", "value"), [
    # unambiguous: a decimal comma, an IS written as a whole float, blanks around it
    ("SliceThickness", "2,0", "slice_thickness", 2.0),
    ("PixelSpacing", "2,0\\2,0 ", "pixel_spacing", (2.0, 2.0)),
    ("RescaleIntercept", " -1024,0", "rescale_intercept", -1024.0),
    ("ImagePositionPatient", "-31\\-31,0\\-44", "position", (-31.0, -31.0, -44.0)),
    ("InstanceNumber", " 4.0", "instance_number", 4),
    # unreadable, but no slice needs them: read as absent
    ("SeriesNumber", "3A", "series_number", None),
    ("InstanceNumber", "12a", "instance_number", None),
    ("InstanceNumber", "12.5", "instance_number", None),
    ("AcquisitionNumber", "abc", "acquisition_number", None),
    ("SliceThickness", "2 mm", "slice_thickness", None),
])
def test_a_header_number_written_unambiguously_or_unreadable_where_optional_keeps_its_slice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
    keyword: str, text: str, field: str, value: object,
) -> None:
    # A value float() or int() refused quarantined the whole file as missing_geometry ("lacks
    # ImagePositionPatient ..."), though its geometry was there: the slice was lost, the reason misled
    paths = write_series(tmp_path, phantom(12), reverse_numbers=False)
    set_raw(paths[3], **{keyword: text})
    with caplog.at_level("WARNING"):
        record = read_both(paths[3], tmp_path, monkeypatch)
    assert record.reason is None and getattr(record, field) == (pytest.approx(value) if value else value)
    named = [r.getMessage() for r in caplog.records if r.name == "ctcorpus.ingest.header" and "is no number" in r.getMessage()]
    if value is None:  # once per read, naming the file, the tag and the value
        tag = Tag(tag_for_keyword(keyword))
        message = f"header value is no number file={paths[3].name}: {keyword} ({tag.group:04X},{tag.element:04X}) {text!r}: read as absent"
        assert named == [message] * 2
    else:
        assert named == []
    index = index_export(tmp_path, cfg())
    assert not index.quarantine
    (stack,) = plan_stacks(index, cfg())
    assert len(stack.instances) == 12


@pytest.mark.parametrize(("keyword", "text", "reason"), [
    ("PixelSpacing", "0,7\\0.7x", QuarantineReason.INVALID_GEOMETRY),
    ("ImagePositionPatient", "-31\\-31\\-44,0,0", QuarantineReason.INVALID_GEOMETRY),
    ("ImageOrientationPatient", "1\\0\\0\\0\\1\\O", QuarantineReason.INVALID_GEOMETRY),
    ("RescaleSlope", "1.0 x", QuarantineReason.INVALID_RESCALE),
    ("RescaleIntercept", "-1024HU", QuarantineReason.INVALID_RESCALE),
    # a comma that may group thousands (en-US): read as a decimal, every HU value was 1,023 too high
    ("RescaleIntercept", "-1,024", QuarantineReason.INVALID_RESCALE),
])
def test_an_unreadable_number_a_slice_needs_quarantines_it_naming_the_tag_and_the_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, keyword: str, text: str, reason: QuarantineReason
) -> None:
    paths = write_series(tmp_path, phantom(12), reverse_numbers=False)
    set_raw(paths[3], **{keyword: text})
    record = read_both(paths[3], tmp_path, monkeypatch)
    assert record.reason is reason
    log = QuarantineLog()
    index = index_export(tmp_path, cfg(), on_error=log)
    assert [(q.path, q.reason) for q in index.quarantine] == [(paths[3].name, reason)]
    tag = Tag(tag_for_keyword(keyword))
    assert index.quarantine[0].message.endswith(f"({keyword} ({tag.group:04X},{tag.element:04X}) {text!r} is no number)")
    assert len(index.usable) == 11


@pytest.fixture(scope="session")
def shared_data_or_none() -> Path | None:
    from tests.conftest import SHARED_DATA

    return SHARED_DATA if SHARED_DATA.is_dir() else None


# ---------------------------------------------------------------- discovery cache


@pytest.fixture(scope="module")
def cache_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cached_export")
    generate_export(root, patients=2, seed=5, defects=True, matrix=64)
    return root


def _backdated_copy(source: Path, target: Path) -> Path:
    """A copy of the export whose files were last modified an hour ago: older than the racy window."""
    shutil.copytree(source, target)
    hour_ago = time.time_ns() - 3600 * 10**9
    for path in target.rglob("*"):
        if path.is_file():
            os.utime(path, ns=(hour_ago, hour_ago))
    return target


def _counting_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The export-relative paths discovery hashes from now on, in the order read (a cached file's
    header is read without hashing it)."""
    reads: list[str] = []

    def counted(path: str, root: str, **kwargs: object) -> tuple:
        if kwargs.get("hash_file", True):
            reads.append(os.path.relpath(path, root))
        return read_instances(path, root, **kwargs)

    monkeypatch.setattr(discover_module, "read_instances", counted)
    return reads


def _index(root: Path, cache: Path | None, **kwargs: object) -> ExportIndex:
    return index_export(root, cfg(**kwargs), on_error=QuarantineLog(),
                        cache=None if cache is None else filecache.DiscoveryCache(cache, b"test key"))


def test_a_rerun_hashes_no_unchanged_file_and_indexes_the_export_as_a_fresh_run(
    cache_export: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # every scheduled run hashed every file of the export: terabytes a night for nothing new
    root = _backdated_copy(cache_export, tmp_path / "export")
    cache = tmp_path / "work" / "discovery-cache.json"
    fresh = _index(root, None)
    reads = _counting_reads(monkeypatch)
    assert _index(root, cache) == fresh
    unreadable = {e.path for e in fresh.quarantine if e.path not in {r.rel_path for r in fresh.instances}}
    assert unreadable and len(reads) == sum(1 for p in root.rglob("*") if p.is_file())
    reads.clear()
    again = _index(root, cache)
    assert again == fresh and again.instances == fresh.instances  # paths, sha256 and headers alike
    kept = cache.read_text(encoding="utf-8")  # header values and paths hold PHI: no id, name or path in the cache
    assert not [v for r in fresh.instances for v in (r.patient_id, r.patient_name, r.accession_number, r.rel_path)
                if v and v in kept]
    assert set(reads) == unreadable  # only the quarantined files, which are never cached
    counts = []
    for rehash in ("always", "changed"):
        reads.clear()
        assert _index(root, cache, rehash=rehash) == fresh
        counts.append(len(reads))
    assert counts == [sum(1 for p in root.rglob("*") if p.is_file()), len(unreadable)]
    print(f"discovery files hashed on a re-run: {counts[1]} of {counts[0]}")


def test_a_changed_file_is_hashed_again_and_a_deleted_one_leaves_the_cache(
    cache_export: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _backdated_copy(cache_export, tmp_path / "export")
    cache = tmp_path / "discovery-cache.json"
    before = _index(root, cache)
    first, second, third = (root / rel for rel in sorted({r.rel_path for r in before.instances if r.frame is None})[:3])
    stamp = first.stat()
    # new content and mtime; then an in-place rewrite of the same size whose mtime is set back
    # (cp -p, rsync -t): its ctime changes, so it is hashed again too
    ds = pydicom.dcmread(first)
    ds.SeriesDescription = "CHANGED"
    ds.save_as(first)
    os.utime(first, ns=(stamp.st_atime_ns, stamp.st_mtime_ns - 10**9))
    data = bytearray(second.read_bytes())
    data[-1] ^= 0xFF
    mtime = second.stat().st_mtime_ns
    with open(second, "r+b") as handle:  # in place: same inode, same size
        handle.write(data)
    os.utime(second, ns=(mtime, mtime))
    third.unlink()
    reads = _counting_reads(monkeypatch)
    after = _index(root, cache)
    assert {first.name, second.name} <= {Path(r).name for r in reads}
    assert after == _index(root, None)
    assert {r.rel_path: r.sha256 for r in after.instances}[str(second.relative_to(root))] == hashlib.sha256(data).hexdigest()
    assert {r.series_description for r in after.instances if r.path == str(first)} == {"CHANGED"}
    entries = filecache.load_cache(cache, filecache.cache_key(str(root), True))
    file_id = filecache.DiscoveryCache(cache, b"test key").file_id
    assert file_id(str(third.relative_to(root))) not in entries and file_id(str(first.relative_to(root))) in entries


def test_a_corrupt_or_truncated_cache_is_ignored_with_a_warning_and_rewritten(
    cache_export: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # a partial cache (a killed run writing it without the atomic rename) is never trusted
    root = _backdated_copy(cache_export, tmp_path / "export")
    cache = tmp_path / "discovery-cache.json"
    fresh = _index(root, cache)
    whole = cache.read_bytes()
    key = filecache.cache_key(str(root), True)
    for broken in (whole[: len(whole) // 2], b"\x00garbage", whole.replace(b'"files":{', b'"files":{"x":[1,[]],', 1)):
        cache.write_bytes(broken)
        caplog.clear()
        with caplog.at_level("WARNING", logger="ctcorpus.ingest.filecache"):
            assert _index(root, cache) == fresh
        (message,) = [r.getMessage() for r in caplog.records]
        assert f"discovery cache ignored, every file is hashed path={cache}" in message
        assert filecache.load_cache(cache, key)  # rewritten whole


def test_files_modified_just_before_the_scan_are_not_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # on a file system with coarse timestamps a second write in the same tick keeps the stamp
    write_series(tmp_path / "export", phantom(2))
    cache = tmp_path / "discovery-cache.json"
    reads = _counting_reads(monkeypatch)
    _index(tmp_path / "export", cache)
    _index(tmp_path / "export", cache)
    assert len(reads) == 4
    stamp = filecache.FileStamp(1, 5 * 10**9, 5 * 10**9, 1)
    assert filecache.cacheable(stamp, 8 * 10**9) and not filecache.cacheable(stamp, 6 * 10**9)


def test_the_cache_decision_keeps_only_entries_whose_stamp_is_unchanged() -> None:
    entry = filecache.CachedFile(filecache.FileStamp(10, 1, 2, 3), "0" * 64)
    stamps = {"same": filecache.FileStamp(10, 1, 2, 3), "touched": filecache.FileStamp(10, 1, 9, 3)}
    cache = {"same": entry, "touched": entry, "gone": entry}
    assert filecache.fresh_results(stamps, cache, "changed") == {"same": entry}
    assert filecache.fresh_results(stamps, cache, "always") == {}


# ---------------------------------------------------------------- a header read from the file's first bytes


def _ugly_files(root: Path) -> list[Path]:
    """Files whose header a re-run reads from their first bytes, or must read whole: compressed series
    (one frame cut before its end marker, one cut inside its items), an Enhanced CT file with a short
    header and one whose functional groups run past ``HEADER_PREFIX``, a file with a private element
    longer than ``HEADER_PREFIX`` before PixelData, and files cut inside that header and inside their pixels."""
    stored = phantom(3, size=200)  # 80 KB of pixels a slice: more than HEADER_PREFIX
    files = write_series(root / "native", stored)
    for k, (name, syntax) in enumerate((("rle", RLELossless), ("jpeg", JPEGLosslessSV1))):
        header = SeriesHeader("P1", "Doe^John", "19500101", "M", "1.2.3", "20240101", "120000", "A1", f"1.2.3.{k + 6}", 2,
                              "CHEST", "1.2.3.9", "B30f", "X", "Y", 2.0, (2.0, 2.0), transfer_syntax=syntax)
        noisy = list(np.random.default_rng(0).integers(0, 4000, size=(3, 256, 256)).astype(np.int16))  # compresses little
        paths = [root / name / f"IM{k}" for k in range(3)]
        synth_write_series(header, noisy, [SlicePlacement(k + 1, (0.0, 0.0, 2.0 * k)) for k in range(3)], paths)
        files += paths
    jpeg = root / "jpeg" / "IM1"
    ds = pydicom.dcmread(jpeg)
    frame = next(pydicom.encaps.generate_frames(ds.PixelData, number_of_frames=1))
    ds.PixelData = pydicom.encaps.encapsulate([frame[: len(frame) - 64]])  # its item length and delimiter intact
    ds.save_as(jpeg)
    (root / "rle" / "IM2").write_bytes((root / "rle" / "IM2").read_bytes()[:-1000])
    for name, n in (("enhanced_short", 2), ("enhanced_long", 1000)):  # ~100 bytes of functional groups a frame
        header = SeriesHeader("P1", "Doe^John", "19500101", "M", "1.2.3", "20240101", "120000", "A1", f"1.2.4.{n}", 3,
                              "CHEST", "1.2.3.9", "B30f", "X", "Y", 2.0, (2.0, 2.0))
        size = 200 if n == 2 else 16
        files.append(root / f"{name}.dcm")
        write_enhanced_series(header, list(phantom(n, size=size).astype(np.int16)),
                              [SlicePlacement(k + 1, (0.0, 0.0, 2.0 * k)) for k in range(n)], files[-1])
    ds = pydicom.dcmread(files[0])
    ds.add_new(0x00090010, "LO", "VENDOR")
    ds.add_new(0x00091001, "OB", bytes(3 * header_module.HEADER_PREFIX))
    files.append(root / "long_private")
    ds.save_as(files[-1])
    for name, cut in (("cut_in_header", 2 * header_module.HEADER_PREFIX), ("cut_in_pixels", -5000)):
        files.append(root / name)
        files[-1].write_bytes((root / "long_private" if cut > 0 else files[1]).read_bytes()[:cut])
    return files


def _records_or_error(path: Path, *, hash_file: bool) -> tuple | tuple[str, str]:
    try:
        return read_instances(path, path.parent, hash_file=hash_file)
    except IngestError as error:
        return str(error.reason), str(error)


@pytest.mark.parametrize("prefix", [300, 4096, 64 * 1024])
def test_a_header_read_from_the_first_bytes_gives_the_records_of_a_whole_read(
    cache_export: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shared_data_or_none: Path | None, prefix: int
) -> None:
    # a re-run read every byte of each unchanged file for its header: the whole export from disk or network storage
    files = [p for p in sorted(cache_export.rglob("*")) if p.is_file()] + _ugly_files(tmp_path)
    if shared_data_or_none is not None:
        for folder in ("dcm_qa_ct_philips_study_with_localizer", "totalsegmentator_reference", "cornerstone_ct_transfer_syntaxes", "pydicom_data_enhanced_ct"):
            files += [p for p in sorted((shared_data_or_none / folder).rglob("*")) if p.is_file()]
    whole = []
    for path in files:
        result = _records_or_error(path, hash_file=True)
        whole.append(tuple(dataclasses.replace(r, sha256="") for r in result) if isinstance(result[0], InstanceRecord) else result)
    monkeypatch.setattr(header_module, "HEADER_PREFIX", prefix)
    from_prefix: list[str] = []  # the files whose records came from their first bytes
    read_header = header_module._read_header

    def spy(data: bytes, size: int, *args: object, **kwargs: object) -> tuple:
        records = read_header(data, size, *args, **kwargs)  # type: ignore[arg-type]
        if len(data) < size:
            from_prefix.append(str(args[1]))
        return records

    monkeypatch.setattr(header_module, "_read_header", spy)
    for path, expected in zip(files, whole, strict=True):
        assert _records_or_error(path, hash_file=False) == expected, path
    if prefix == 64 * 1024:
        for name in ("native/IMG0000", "rle/IM0", "jpeg/IM1", "enhanced_short.dcm", "cut_in_pixels"):  # cut ones too
            assert str(tmp_path / name) in from_prefix
        for name in ("enhanced_long.dcm", "long_private", "cut_in_header"):
            assert str(tmp_path / name) not in from_prefix


def test_an_unhashed_file_is_read_only_as_far_as_its_header(tmp_path: Path) -> None:
    (path,) = write_series(tmp_path, phantom(1))
    small = read_instance(path, tmp_path, hash_file=False)
    with open(path, "r+b") as handle:
        handle.truncate(16 * 1024 * 1024)  # sparse: no disk used
    tracemalloc.start()
    try:
        large = read_instance(path, tmp_path, hash_file=False)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert small is not None and large == dataclasses.replace(small, size_bytes=16 * 1024 * 1024)
    assert peak < 1024 * 1024  # read whole, the file alone took 16 MB


# ---------------------------------------------------------------- geometry, HU, resampling


def test_asymmetric_phantom_keeps_its_side_in_lps_and_ras(tmp_path: Path) -> None:
    write_series(tmp_path, phantom(12))
    stacks, log, _ = run(tmp_path, cfg())
    (stack,) = stacks
    volume = assemble_volume(stack, cfg())
    numbers = [s.instance_number for s in volume.slices]
    assert numbers == sorted(numbers, reverse=True)  # sorted by position, not by InstanceNumber
    assert [s.z_mm for s in volume.slices] == sorted(s.z_mm for s in volume.slices)
    # the block is at high x (patient left), low y (anterior), high z (superior) in LPS
    block = np.argwhere(volume.array > 0).mean(axis=0)
    world = volume_image(volume).TransformContinuousIndexToPhysicalPoint(block[::-1].tolist())
    expected = (-31 + 2 * 26, -31 + 2 * 3.5, -50 + 2 * 9)
    assert np.allclose(world, expected, atol=1e-6)
    for orientation, sign in (("LPS", 1), ("RAS", -1)):
        rv = resample_volume(volume, cfg(orientation=orientation, target_spacing_mm=(2.0, 2.0, 2.0)))
        image = resampled_image(rv)
        centre = np.argwhere(rv.array > 0).mean(axis=0)
        assert np.allclose(image.TransformContinuousIndexToPhysicalPoint(centre[::-1].tolist()), expected, atol=0.51)
        x_index = centre[2]
        assert (x_index > rv.array.shape[2] / 2) == (sign == 1)  # LPS: left is high x; RAS: low x
    lps = resample_volume(volume, cfg(orientation="LPS", target_spacing_mm=(2.0, 2.0, 2.0))).array
    ras = resample_volume(volume, cfg(orientation="RAS", target_spacing_mm=(2.0, 2.0, 2.0))).array
    assert np.array_equal(ras, lps[:, ::-1, ::-1])


@pytest.mark.parametrize(("orientation", "flip_rows", "flip_columns"), [
    ((1, 0, 0, 0, -1, 0), True, False),  # rows run anterior: the normal points to the feet, slices stack downwards
    ((-1, 0, 0, 0, -1, 0), True, True),  # rotated 180 degrees in plane
    ((-1, 0, 0, 0, 1, 0), False, True),  # mirrored columns, normal to the feet
])
def test_the_same_anatomy_stored_with_other_direction_cosines_gives_the_same_corpus_volume(
    tmp_path: Path, orientation: tuple[int, ...], flip_rows: bool, flip_columns: bool
) -> None:
    # CT-CLIP #41, Merlin #10: orientation was never stated and users found flipped volumes. The
    # asymmetric phantom written with the identity cosines and with cosines that reverse rows and/or
    # columns (pixels and first-pixel position to match) is one patient: the corpus grid must not see
    # the difference, while the native arrays are mirror images.
    stored = phantom(12)
    write_series(tmp_path / "plain", stored)
    for k, pixels in enumerate(stored):
        corner = (31.0 if flip_columns else -31.0, 31.0 if flip_rows else -31.0, -50.0 + 2 * k)
        pixels = pixels[::-1] if flip_rows else pixels
        write_slice(tmp_path / "flipped" / f"IM{k:02d}", pixels[:, ::-1] if flip_columns else pixels, corner,
                    series_uid="1.2.3.4.6", instance=k + 1, orientation=orientation)
    config = cfg(target_spacing_mm=(2.0, 2.0, 2.0))
    plain, flipped = (plan_stacks(index_export(tmp_path / name, config), config)[0] for name in ("plain", "flipped"))
    native = assemble_volume(flipped, config)
    assert not np.array_equal(native.array, assemble_volume(plain, config).array)
    for orientation_name in ("LPS", "RAS"):
        config = cfg(target_spacing_mm=(2.0, 2.0, 2.0), orientation=orientation_name)
        expected = resample_volume(assemble_volume(plain, config), config)
        got = resample_volume(native, config)
        assert np.allclose(got.origin, expected.origin) and np.allclose(got.direction, expected.direction)
        assert np.array_equal(got.array, expected.array), orientation_name


@pytest.mark.parametrize("orientation", [
    (1.004, 0, 0, 0, 1.004, 0),  # cosines 0.4% too long: within what discovery accepts (0.01 on the squared length)
    (1, 0, 0, 0.009, 1, 0),  # a column 0.5 degrees off orthogonal
])
def test_cosines_written_slightly_off_unit_and_orthogonal_place_the_pixels_as_exact_ones_do(
    tmp_path: Path, orientation: tuple[float, ...]
) -> None:
    # used as written, the cosines scaled (by 1.004: the last column 0.25 mm off on 62 mm) or sheared
    # the native volume and everything resampled from it
    stored = phantom(12)
    write_series(tmp_path / "exact", stored)
    write_series(tmp_path / "noisy", stored, orientation=orientation, series_uid="1.2.3.4.6")
    config = cfg(target_spacing_mm=(2.0, 2.0, 2.0))
    exact, noisy = (assemble_volume(plan_stacks(index_export(tmp_path / name, config), config)[0], config) for name in ("exact", "noisy"))
    assert np.array_equal(np.reshape(noisy.direction, (3, 3)), np.eye(3))
    last = volume_image(noisy).TransformIndexToPhysicalPoint([31, 31, 11])
    assert np.allclose(last, (-31 + 2 * 31, -31 + 2 * 31, -50 + 2 * 11), atol=1e-9)
    assert np.array_equal(resample_volume(noisy, config).array, resample_volume(exact, config).array)


def test_the_resampled_grid_is_centred_on_the_stack(tmp_path: Path) -> None:
    # 28.6 mm of slices and 62 mm of pixels on a 4 mm grid: anchored at the low end, the grid kept the
    # first slice whole and lost more of the last one, and LPS and RAS were no mirror images
    stored = np.full((12, 32, 32), 24, np.uint16)  # -1000 HU
    stored[[0, -1]] = 2024  # +1000 HU in the first and last slice
    write_series(tmp_path, stored, dz=2.6)
    (stack,) = plan_stacks(index_export(tmp_path, cfg()), cfg())
    volume = assemble_volume(stack, cfg())
    lps = resample_volume(volume, cfg()).array
    ras = resample_volume(volume, cfg(orientation="RAS")).array
    profile = lps[:, 8, 8].tolist()
    assert profile[0] == profile[-1] > 0 and profile == profile[::-1]
    assert np.array_equal(ras, lps[:, ::-1, ::-1])


def test_hu_is_applied_once_per_slice(tmp_path: Path) -> None:
    stored = phantom(12)
    paths = write_series(tmp_path, stored[:6], slope=1.0, intercept=-1024.0)
    paths += write_series(tmp_path / "b", stored[6:], z0=-50.0 + 12, slope=2.0, intercept=-2048.0, series_uid="1.2.3.4.5")
    stacks, _, results = run(tmp_path, cfg())
    (stack,) = stacks
    assert QuarantineReason.INCONSISTENT_RESCALE in {f.reason for f in stack.findings}
    raw = assemble_volume(stack, cfg(), hu=False)
    hu = assemble_volume(stack, cfg())
    assert not raw.is_hu and hu.is_hu and hu.array.dtype == np.int16
    expected = np.concatenate([stored[:6].astype(int) - 1024, stored[6:].astype(int) * 2 - 2048])
    assert np.array_equal(hu.array, np.maximum(expected, AIR_HU))  # b's air is -2000: below air, air
    assert np.array_equal(to_hu(raw).array, hu.array)
    assert to_hu(hu) is hu and np.array_equal(to_hu(to_hu(raw)).array, hu.array)  # a second pass changes nothing
    (result,) = results
    assert result.volume is not None and result.volume.array.min() >= -1000 and result.volume.array.max() <= 1000
    assert {q.reason for q in result.quarantine} == {QuarantineReason.INCONSISTENT_RESCALE}


def test_the_slice_table_states_the_rescale_each_file_holds(tmp_path: Path) -> None:
    # CT-CLIP #28: the published intercepts disagreed with the files. Each slice row must carry the
    # slope and intercept of its own file, the ones that turn that file's stored values into its HU.
    stored = phantom(12)
    write_series(tmp_path, stored[:6], reverse_numbers=False)
    write_series(tmp_path / "b", stored[6:], z0=-38.0, slope=2.0, intercept=-2048.0, reverse_numbers=False)
    (stack,) = plan_stacks(index_export(tmp_path, cfg()), cfg())
    native = assemble_volume(stack, cfg())
    result = ingest_stack(stack, cfg())
    assert len(result.slice_rows) == 12
    for row in result.slice_rows:
        ds = pydicom.dcmread(tmp_path / row.path)
        assert (row.rescale_slope, row.rescale_intercept) == (float(ds.RescaleSlope), float(ds.RescaleIntercept))
        hu = ds.pixel_array.astype(int) * row.rescale_slope + row.rescale_intercept
        assert np.array_equal(native.array[row.slice_index], np.maximum(hu, AIR_HU)), row.path  # b's air is -2000: air


def test_stored_values_are_rescaled_to_hu_before_resampling(tmp_path: Path) -> None:
    # A volume assembled as stored values (hu=False) was resampled and clipped as if it were HU:
    # air (stored 24) became +24 HU, the rescale skipped instead of applied once.
    write_series(tmp_path, phantom(12))
    (stack,) = plan_stacks(index_export(tmp_path, cfg()), cfg())
    raw, hu = assemble_volume(stack, cfg(), hu=False), assemble_volume(stack, cfg())
    expected = resample_volume(hu, cfg()).array
    assert expected.min() == -1000
    assert np.array_equal(resample_volume(raw, cfg()).array, expected)


def test_rescale_saturates_instead_of_wrapping() -> None:
    stored = np.array([[0, 1024, 40000, 65535]], np.uint16)
    assert rescale_to_hu(stored, 1.0, -1024.0).tolist() == [[-1024, 0, 32767, 32767]]
    assert rescale_to_hu(stored[:, :2], 1.0, -1024.0).tolist() == [[-1024, 0]]  # fast int16 path
    assert rescale_to_hu(np.array([[3, -3]], np.int16), 0.5, 0.0).tolist() == [[2, -2]]  # rint, half to even


@pytest.mark.parametrize(("signed", "vr", "padding", "limit", "implicit"), [
    (False, "US", 63536, None, False),  # unsigned padding far above the image: +32767 HU before the fix
    (True, "US", 63536, None, False),  # SS -2000 written as US: reads 63536, means -2000 (-3024 HU)
    (True, "SS", -2000, None, True),
    (False, "US", 63000, 65535, False),  # a padding range: 63000..65535
])
def test_pixel_padding_becomes_air(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, signed: bool, vr: str, padding: int, limit: int | None, implicit: bool
) -> None:
    stored = phantom(12).astype(np.int32)
    outside = -2000 if signed else 64000 if limit else 63536
    stored[:, :, :5] = outside  # the columns outside the reconstructed field of view
    for k, path in enumerate(write_series(tmp_path, stored.astype(np.uint16), implicit=implicit)):
        ds = pydicom.dcmread(path)
        ds.PixelRepresentation = int(signed)
        ds.add_new(0x00280120, vr, padding)
        if limit is not None:
            ds.add_new(0x00280121, vr, limit)
        ds.save_as(path, implicit_vr=implicit, little_endian=True, enforce_file_format=True)
    expected = stored.astype(np.int16).astype(int) - 1024
    expected[:, :, :5] = -1024
    stacks, _, results = run(tmp_path, cfg(target_spacing_mm=(2.0, 2.0, 2.0)))
    (stack,) = stacks
    assert np.array_equal(assemble_volume(stack, cfg()).array, expected)
    assert np.array_equal(to_hu(assemble_volume(stack, cfg(), hu=False)).array, expected)
    assert results[0].volume is not None and (results[0].volume.array[:, :, :2] == -1000).all()  # air, not bone
    monkeypatch.setattr(header_module, "_scan", lambda data: (_ for _ in ()).throw(header_module._Unparsable("forced")))
    slow = index_export(tmp_path, cfg()).instances
    assert {r.pixel_padding for r in slow} == {r.pixel_padding for r in stack.instances} == {(-2000, -2000) if signed else (padding, limit or padding)}


@pytest.mark.parametrize("slope", [1.0, 0.5])  # the int16 path and the float one
def test_fill_below_air_outside_the_field_of_view_resamples_as_air(tmp_path: Path, slope: float) -> None:
    # Scanners fill outside the reconstruction circle far below air (GE, Siemens: stored -2000,
    # -3024 HU) without naming it in PixelPaddingValue; where the body touches the circle, linear
    # resampling blended -3024 into tissue: a darkened rim, clipped to -1000
    yy, xx = np.mgrid[:32, :32]
    inside = (yy - 15.5) ** 2 + (xx - 15.5) ** 2 < 14**2  # the body fills the field of view
    arrays = {}
    for fill in (-3024, -1024):
        stored = np.broadcast_to((np.where(inside, 40, fill) + 3024) / slope, (12, 32, 32)).astype(np.uint16)
        write_series(tmp_path / str(fill), stored, slope=slope, intercept=-3024.0)
        (stack,) = plan_stacks(index_export(tmp_path / str(fill), cfg()), cfg())
        native = assemble_volume(stack, cfg())
        arrays[fill] = native.array, resample_volume(native, cfg(target_spacing_mm=(3.0, 3.0, 3.0))).array
    assert arrays[-3024][0].min() == AIR_HU  # air before any interpolation
    assert np.array_equal(arrays[-3024][0], arrays[-1024][0])
    assert np.array_equal(arrays[-3024][1], arrays[-1024][1])  # the rim is what it is beside air
    assert rescale_to_hu(np.array([[-2000, 2000]], np.int16), 1.0, -1024.0).tolist() == [[AIR_HU, 976]]


def test_real_fill_below_air_outside_the_field_of_view_resamples_as_air(shared_data: Path, tmp_path: Path) -> None:
    # cornerstone's CTImage.dcm declares PixelPaddingValue -32768 but stores -2000 (-3024 HU) outside
    # its reconstruction circle, where the body touches it; stacked into a series, it resampled
    # with a dark rim: the same series with that fill replaced by air (stored -1024) is the reference
    source = shared_data / "cornerstone_ct_transfer_syntaxes" / "testImages" / "CTImage.dcm"
    volumes = {}
    for name in ("fill", "air"):
        for k in range(10):
            ds = pydicom.dcmread(source)
            pixels = ds.pixel_array
            assert (pixels == -2000).any() and ds.PixelPaddingValue == -32768
            if name == "air":
                pixels[pixels == -2000] = -1024
            ds.PixelData = pixels.tobytes()
            ds.ImagePositionPatient = [*ds.ImagePositionPatient[:2], 5.0 * k]
            ds.InstanceNumber = k + 1
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=[name, str(k)])
            (tmp_path / name).mkdir(exist_ok=True)
            ds.save_as(tmp_path / name / f"IM{k}")
        (result,) = run(tmp_path / name, cfg(target_spacing_mm=(1.5, 1.5, 5.0)))[2]
        assert result.volume is not None
        volumes[name] = result.volume.array
    assert np.array_equal(volumes["fill"], volumes["air"])


@pytest.mark.parametrize(("element", "dtype"), [("FloatPixelData", np.float32), ("DoubleFloatPixelData", np.float64)])
@pytest.mark.parametrize("reader", ["fast", "pydicom"])
def test_float_pixel_data_is_quarantined_naming_its_element_not_as_truncated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, element: str, dtype: type, reader: str
) -> None:
    # a file whose pixels are FloatPixelData or DoubleFloatPixelData (parametric maps hold them, no CT
    # image does) has no PixelData: it was quarantined as truncated, "re-export it"
    paths = write_series(tmp_path / "ct", phantom(2), reverse_numbers=False)
    for path, modality in zip(paths, ("CT", "MR"), strict=True):
        ds = pydicom.dcmread(path)
        del ds.PixelData, ds.PixelRepresentation, ds.BitsStored, ds.HighBit
        ds.Modality = modality
        ds.BitsAllocated = 32 if dtype is np.float32 else 64
        setattr(ds, element, np.full((ds.Rows, ds.Columns), 0.5, dtype).tobytes())
        ds.save_as(path)
    cut = tmp_path / "cut" / "IM"
    cut.parent.mkdir()
    cut.write_bytes(paths[0].read_bytes()[:-40])
    if reader == "pydicom":
        monkeypatch.setattr(header_module, "_scan", lambda data: (_ for _ in ()).throw(header_module._Unparsable("forced")))
    ct, mr = (read_instance(p, tmp_path) for p in paths)
    assert ct is not None and ct.reason is QuarantineReason.UNREADABLE_PIXELS and ct.reader == reader
    assert mr is not None and mr.reason is QuarantineReason.NON_CT  # a parametric map in the export
    assert read_instance(cut, tmp_path).reason is QuarantineReason.TRUNCATED  # type: ignore[union-attr]
    message = header_module.problem_message(ct)
    assert f"ct/{paths[0].name}" in message and element in message and "truncated" not in message
    index = index_export(tmp_path / "ct", cfg())
    assert [q.reason for q in index.quarantine] == [QuarantineReason.UNREADABLE_PIXELS, QuarantineReason.NON_CT]


@pytest.mark.parametrize(("variant", "transfer_syntax"), [
    ("monochrome1", ExplicitVRLittleEndian),  # display inverts it; HU comes from the rescale alone, as pydicom reads it
    ("plain", DeflatedExplicitVRLittleEndian),
    ("bits12", ExplicitVRLittleEndian),  # 12 of 16 bits stored, the 4 above them set (overlay, garbage)
    ("bits12", ExplicitVRBigEndian),
    ("bits12_signed", ExplicitVRLittleEndian),  # signed in 12 bits: sign-extended, not read as 16 bits
    ("bits12_signed", ExplicitVRBigEndian),
])
def test_stored_values_are_read_as_the_pixel_module_says(tmp_path: Path, variant: str, transfer_syntax: str) -> None:
    stored = phantom(12)
    hu = stored.astype(np.int32) - 1024
    for path in write_series(tmp_path, stored):
        ds = pydicom.dcmread(path)
        values = ds.pixel_array.astype(np.int32)
        if variant == "monochrome1":
            ds.PhotometricInterpretation = "MONOCHROME1"
        elif variant != "plain":
            ds.BitsStored, ds.HighBit = 12, 11
            if variant == "bits12_signed":  # HU stored signed with a 0 intercept, in 12 bits
                ds.PixelRepresentation, ds.RescaleIntercept = 1, "0"
                values = values - 1024
            values = (values & 0xFFF) | 0xA000
        big_endian = transfer_syntax == ExplicitVRBigEndian
        ds.PixelData = values.astype(">u2" if big_endian else "<u2").tobytes()
        ds.file_meta.TransferSyntaxUID = transfer_syntax
        pydicom.dcmwrite(path, ds, implicit_vr=False, little_endian=not big_endian, force_encoding=True)
    (stack,), _, (result,) = run(tmp_path, cfg())
    assert {r.reader for r in stack.instances} == {"fast" if transfer_syntax == ExplicitVRLittleEndian else "pydicom"}
    assert np.array_equal(assemble_volume(stack, cfg()).array, hu) and result.volume is not None


def test_matrices_and_pixel_spacings_differing_within_a_series_are_stacks_of_their_own(tmp_path: Path) -> None:
    # one SeriesInstanceUID, 12 slices of 32x32 at 2 mm and, at the same positions, 3 of 16x16 and 3 at 1 mm
    stored = phantom(12)
    write_series(tmp_path, stored)
    for k in range(3):
        write_slice(tmp_path / f"SMALL{k}", stored[k, :16, :16], (-31.0, -31.0, -50.0 + 2 * k), series_uid="1.2.3.4.5", instance=100 + k)
        write_slice(tmp_path / f"FINE{k}", stored[k], (-31.0, -31.0, -50.0 + 2 * k), series_uid="1.2.3.4.5", instance=200 + k, spacing=1.0)
    stacks, _, results = run(tmp_path, cfg())
    shapes = sorted((len(s.instances), s.first.rows, s.first.pixel_spacing, s.rejected) for s in stacks)
    assert shapes == [(3, 16, (2.0, 2.0), True), (3, 32, (1.0, 1.0), True), (12, 32, (2.0, 2.0), False)]
    (accepted,) = [r for r in results if r.volume is not None]
    assert {q.reason for q in accepted.quarantine} == {QuarantineReason.MIXED_STACKS}
    assert all(QuarantineReason.TOO_FEW_SLICES in {q.reason for q in r.quarantine} for r in results if r.volume is None)


def test_one_series_uid_in_two_studies_is_two_stacks_and_one_series_in_two_folders_one(tmp_path: Path) -> None:
    # a UID collision (an exporter reusing UIDs) must not merge two studies' slices into one stack of
    # duplicates, and a series exported into two folders must not become two stacks
    stored = phantom(12)
    write_series(tmp_path / "study_a", stored, study_uid="1.2.3.4")
    write_series(tmp_path / "study_b", stored[:, ::-1], study_uid="1.2.3.99")
    write_series(tmp_path / "split" / "part1", stored[:6], series_uid="1.2.3.4.7", study_uid="1.2.3.5")
    write_series(tmp_path / "split" / "part2", stored[6:], z0=-38.0, series_uid="1.2.3.4.7", study_uid="1.2.3.5")
    stacks, _, results = run(tmp_path, cfg())
    assert sorted((s.first.study_uid, s.first.series_uid, len(s.instances), s.rejected) for s in stacks) == [
        ("1.2.3.4", "1.2.3.4.5", 12, False), ("1.2.3.5", "1.2.3.4.7", 12, False), ("1.2.3.99", "1.2.3.4.5", 12, False)]
    assert all(r.volume is not None and not r.quarantine for r in results)
    for stack in stacks:
        expected = stored[:, ::-1] if stack.first.study_uid == "1.2.3.99" else stored
        assert np.array_equal(assemble_volume(stack, cfg()).array, expected.astype(int) - 1024)


def test_a_study_uid_carried_by_two_patients_rejects_its_stacks_naming_a_file_of_each(tmp_path: Path) -> None:
    # an exporter reusing a StudyInstanceUID for another patient: the study was one unit of its first patient, the
    # other's volume took that patient's id (or was "not selected" as a second stack of the study), unseen
    write_series(tmp_path / "anna", phantom(), series_uid="1.2.3.4.5", patient_id="PAT-001")
    write_series(tmp_path / "bert", phantom()[:, ::-1], series_uid="1.2.3.4.6", patient_id="PAT-002")
    write_series(tmp_path / "other", phantom(), series_uid="1.2.3.7.5", study_uid="1.2.3.7", patient_id="PAT-002")
    stacks, _, results = run(tmp_path, cfg())
    assert sorted((s.first.series_uid, s.rejected) for s in stacks) == [("1.2.3.4.5", True), ("1.2.3.4.6", True), ("1.2.3.7.5", False)]
    for result in results:
        if result.series_row.series_id == Pseudonymizer.from_literal(KEY).series("1.2.3.7.5"):
            assert result.volume is not None and not result.quarantine
            continue
        (entry,) = result.quarantine
        assert result.volume is None and (entry.reason, entry.action) == (QuarantineReason.PATIENT_MISMATCH, Action.REJECT)
        assert "2 patients" in entry.message and "anna/IMG" in entry.message and "bert/IMG" in entry.message
        assert "PAT-00" not in entry.message
    # studies without a StudyInstanceUID are one study downstream: of two patients, they are rejected as well
    shutil.rmtree(tmp_path / "other")
    for folder, series_uid, patient_id in (("anna", "1.2.3.4.5", "PAT-001"), ("bert", "1.2.3.4.6", "PAT-002")):
        shutil.rmtree(tmp_path / folder)
        write_series(tmp_path / folder, phantom(), series_uid=series_uid, study_uid="", patient_id=patient_id)
    stacks = plan_stacks(index_export(tmp_path, cfg()), cfg())
    assert [s.rejected for s in stacks] == [True, True]
    assert all("StudyInstanceUID (empty) is carried by the images of 2 patients" in s.findings[-1].detail for s in stacks)
    # one patient under ids with and without leading zeros is one patient where the pseudonyms key them so
    for folder, series_uid, patient_id in (("anna", "1.2.3.4.5", "0012345"), ("bert", "1.2.3.4.6", "12345")):
        shutil.rmtree(tmp_path / folder)
        write_series(tmp_path / folder, phantom(), series_uid=series_uid, patient_id=patient_id)
    assert [s.rejected for s in plan_stacks(index_export(tmp_path, cfg()), cfg(patient_id_zeros="strip"))] == [False, False]
    assert [s.rejected for s in plan_stacks(index_export(tmp_path, cfg()), cfg())] == [True, True]


def test_split_by_acquisition_and_duplicates(tmp_path: Path) -> None:
    stored = phantom(12)
    write_series(tmp_path / "a", stored, acquisition=1)
    write_series(tmp_path / "b", stored[:, ::-1], acquisition=2)  # same positions, other pixels
    stacks, _, results = run(tmp_path, cfg())
    assert len(stacks) == 2 and all(len(s.instances) == 12 and not s.rejected for s in stacks)
    assert all(QuarantineReason.MIXED_STACKS in {f.reason for f in s.findings} for s in stacks)
    assert all(r.volume is not None for r in results)
    # same acquisition number: duplicates cannot be separated -> different pixels reject the stack
    shutil.rmtree(tmp_path / "b")
    write_series(tmp_path / "b", stored[:, ::-1], acquisition=1, series_uid="1.2.3.4.5", reverse_numbers=False)
    ((result,),) = [[ingest_stack(s, cfg()) for s in plan_stacks(index_export(tmp_path, cfg()), cfg())]]
    assert result.volume is None
    assert QuarantineReason.DUPLICATE_SLICE in {q.reason for q in result.quarantine if q.action is Action.REJECT}


def test_acquisitions_interleaved_in_one_series_are_split_and_consecutive_ones_are_one_stack(tmp_path: Path) -> None:
    # two acquisitions (phases) offset by half a step: no position repeats, so they were read as one
    # stack of 1 mm slices alternating between them, with no finding at all
    stored = phantom(12)
    for k in range(12):
        write_slice(tmp_path / "mixed" / f"A{k:02d}", stored[k], (-31.0, -31.0, -50.0 + 2 * k), series_uid="1.2.3.4.5", instance=k + 1)
        write_slice(tmp_path / "mixed" / f"B{k:02d}", stored[k, ::-1], (-31.0, -31.0, -49.0 + 2 * k), series_uid="1.2.3.4.5",
                    instance=k + 13, acquisition=2)
    stacks, _, results = run(tmp_path / "mixed", cfg())
    assert sorted((s.first.acquisition_number, len(s.instances)) for s in stacks) == [(1, 12), (2, 12)]
    assert all(r.volume is not None and {q.reason for q in r.quarantine} == {QuarantineReason.MIXED_STACKS} for r in results)
    for stack in stacks:
        expected = stored if stack.first.acquisition_number == 1 else stored[:, ::-1]
        assert np.array_equal(assemble_volume(stack, cfg()).array, expected.astype(int) - 1024)
    # step-and-shoot: each rotation an acquisition, one after another along the normal: one stack
    for k in range(12):
        write_slice(tmp_path / "sequential" / f"I{k:02d}", stored[k], (-31.0, -31.0, -50.0 + 2 * k), series_uid="1.2.3.4.6",
                    instance=k + 1, acquisition=1 + k // 4)
    (stack,), _, (result,) = run(tmp_path / "sequential", cfg())
    assert len(stack.instances) == 12 and not stack.findings and result.volume is not None


def test_a_duplicate_stored_with_another_rescale_but_the_same_hu_is_dropped_not_rejecting_its_stack(tmp_path: Path) -> None:
    # a re-sent slice re-encoded as signed with intercept 0 holds the same HU in other stored
    # values: compared by stored values and rescale, it rejected the whole stack as two mixed stacks
    stored = phantom(12)
    paths = write_series(tmp_path, stored)
    ds = pydicom.dcmread(paths[4])
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=["re-sent"])
    ds.PixelRepresentation, ds.RescaleIntercept = 1, "0"
    ds.PixelData = (stored[4].astype(np.int16) - 1024).astype("<i2").tobytes()
    ds.save_as(tmp_path / "RESENT")
    (stack,), _, (result,) = run(tmp_path, cfg())
    assert [d.rel_path for d in stack.duplicates] == ["RESENT"] and result.volume is not None
    assert {(q.reason, q.action) for q in result.quarantine} == {(QuarantineReason.DUPLICATE_SLICE, Action.REPAIR)}
    assert np.array_equal(assemble_volume(stack, cfg()).array, stored.astype(int) - 1024)
    ds.PixelData = (stored[4].astype(np.int16) - 1023).astype("<i2").tobytes()  # 1 HU off: other pixels
    ds.save_as(tmp_path / "RESENT")
    (stack,), _, (result,) = run(tmp_path, cfg())
    assert result.volume is None and (QuarantineReason.DUPLICATE_SLICE, Action.REJECT) in {(q.reason, q.action) for q in result.quarantine}


def test_reconstructions_sharing_a_series_uid_are_split_by_kernel_and_thickness(tmp_path: Path) -> None:
    # a soft-tissue and a lung kernel at the same positions were duplicates with other pixels (the
    # series rejected); 1 mm and 5 mm slices at other positions one stack, "repaired" by interpolating
    # between the two reconstructions
    stored = phantom(12)
    write_series(tmp_path / "soft", stored)
    write_series(tmp_path / "lung", stored[:, ::-1], kernel="B70f")
    write_series(tmp_path / "thick", stored, z0=-49.0, dz=5.0, thickness=5.0)
    stacks, _, results = run(tmp_path, cfg())
    assert sorted((s.first.kernel, s.first.slice_thickness, len(s.instances)) for s in stacks) == [
        ("B30f", 2.0, 12), ("B30f", 5.0, 12), ("B70f", 2.0, 12)]
    assert all(r.volume is not None and {q.reason for q in r.quarantine} == {QuarantineReason.MIXED_STACKS} for r in results)
    for stack in stacks:
        expected = stored[:, ::-1] if stack.first.kernel == "B70f" else stored
        assert np.array_equal(assemble_volume(stack, cfg()).array, expected.astype(int) - 1024)


def test_missing_slices_policy_and_too_few(tmp_path: Path) -> None:
    paths = write_series(tmp_path, phantom(12))
    paths[5].unlink()
    stacks, _, results = run(tmp_path, cfg())
    assert results[0].volume is None and stacks[0].rejected
    entry = next(q for q in results[0].quarantine if q.reason is QuarantineReason.MISSING_SLICES)
    assert entry.action is Action.REJECT and "gap" in entry.message
    repair = cfg(policy=GeometryPolicy(missing_slices=Action.REPAIR))
    [repaired] = plan_stacks(index_export(tmp_path, repair), repair)
    volume = assemble_volume(repaired, repair)
    assert volume.array.shape[0] == 12 and volume.spacing[2] == pytest.approx(2.0)
    assert len(volume.slices) == 11  # the slice table lists real slices only
    with pytest.raises(ValueError, match="assemble it with hu=True"):  # rows 6-11 are no slices to_hu could rescale
        assemble_volume(repaired, repair, hu=False)
    few = cfg(min_slices=20)
    (result,) = [ingest_stack(s, few) for s in plan_stacks(index_export(tmp_path, few), few)]
    assert {q.reason for q in result.quarantine if q.action is Action.REJECT} == {QuarantineReason.TOO_FEW_SLICES, QuarantineReason.MISSING_SLICES}


def test_slice_spacing_comes_from_every_slice_not_the_first_two(tmp_path: Path) -> None:
    # SimpleITK's series reader takes the spacing from the first two slices (its #440): a first step
    # off by a little stretched the whole volume, one off by more was never seen
    stored = phantom(12)
    jitter = np.zeros(12)
    jitter[1] = 0.008  # within spacing_tolerance_mm: steps 2.008, 1.992, then 2.0
    for k, pixels in enumerate(stored):
        write_slice(tmp_path / "jitter" / f"IM{k:02d}", pixels, (-31.0, -31.0, -50.0 + 2 * k + jitter[k]),
                    series_uid="1.2.3.4.5", instance=k + 1)
    (stack,) = plan_stacks(index_export(tmp_path / "jitter", cfg()), cfg())
    assert not stack.findings and assemble_volume(stack, cfg()).spacing[2] == pytest.approx(2.0, abs=1e-9)
    first_step = 2.8  # then 2.0 mm: non-uniform, no gap (below gap_factor x the median step)
    for k, pixels in enumerate(stored):
        write_slice(tmp_path / "wide" / f"IM{k:02d}", pixels, (-31.0, -31.0, -50.0 + 2 * k + (first_step - 2) * (k > 0)),
                    series_uid="1.2.3.4.6", instance=k + 1)
    (stack,) = plan_stacks(index_export(tmp_path / "wide", cfg()), cfg())
    assert [f.reason for f in stack.findings] == [QuarantineReason.NON_UNIFORM_SPACING]
    volume = assemble_volume(stack, cfg())
    assert volume.spacing[2] == pytest.approx(2.0) and volume.array.shape[0] == int((first_step + 20) // 2) + 1
    assert volume.origin[2] == pytest.approx(-50.0)  # the grid starts at the first slice


@pytest.mark.parametrize("image_type", ["ORIGINAL\\PRIMARY\\LOCALIZER", "ORIGINAL\\PRIMARY\\OTHER"])
def test_a_localizer_inside_the_axial_series_leaves_the_volume_alone(tmp_path: Path, image_type: str) -> None:
    # SimpleITK's series reader crashes on a localizer mixed into the series. Same SeriesInstanceUID,
    # matrix and pixel spacing, a coronal plane: labelled, discovery quarantines it; unlabelled, it is
    # a plane of its own (one slice, rejected), and the axial stack is the same either way.
    stored = phantom(12)
    write_series(tmp_path, stored)
    write_slice(tmp_path / "SCOUT", stored[0], (-31.0, 0.0, 10.0), series_uid="1.2.3.4.5", instance=1,
                orientation=(1, 0, 0, 0, 0, -1), image_type=image_type)
    index = index_export(tmp_path, cfg())
    labelled = "LOCALIZER" in image_type
    assert [(q.path, q.reason) for q in index.quarantine] == ([("SCOUT", QuarantineReason.LOCALIZER)] if labelled else [])
    stacks = plan_stacks(index, cfg())
    results = [ingest_stack(s, cfg()) for s in stacks]
    axial = [r for s, r in zip(stacks, results, strict=True) if len(s.instances) == 12]
    assert len(axial) == 1 and axial[0].volume is not None and len(stacks) == (1 if labelled else 2)
    assert [s.first.rel_path for s in stacks if s.rejected] == ([] if labelled else ["SCOUT"])
    (volume,) = [assemble_volume(s, cfg()) for s in stacks if not s.rejected]
    assert np.array_equal(volume.array, stored.astype(int) - 1024)


@pytest.mark.parametrize("repair_gap", [False, True])
def test_the_slice_table_maps_every_dicom_file_to_its_corpus_slice(tmp_path: Path, repair_gap: bool) -> None:
    # dcm2niix users ask for the DICOM slice <-> NIfTI slice map (its #341): the slice table is it.
    # Each file holds its own HU; the resampled slice its row names must hold that file's HU, also
    # past a missing slice the repair interpolated across.
    stored = np.stack([np.full((32, 32), 1024 + 50 * k, np.uint16) for k in range(12)])  # slice k: 50k HU
    paths = write_series(tmp_path, stored)
    if repair_gap:
        paths[5].unlink()
    config = cfg(target_spacing_mm=(2.0, 2.0, 2.0), policy=GeometryPolicy(missing_slices=Action.REPAIR))
    (stack,) = plan_stacks(index_export(tmp_path, config), config)
    result = ingest_stack(stack, config)
    assert result.volume is not None and len(result.slice_rows) == (11 if repair_gap else 12)
    assert [row.slice_index for row in result.slice_rows] == list(range(len(result.slice_rows)))
    for row in result.slice_rows:
        hu = int(pydicom.dcmread(tmp_path / row.path).pixel_array[0, 0]) - 1024
        index = round(row.resampled_z_index)
        assert abs(row.resampled_z_index - index) < 1e-6
        assert (result.volume.array[index] == hu).all(), row.path


def test_resample_labels_nearest_and_crop_pad(tmp_path: Path) -> None:
    write_series(tmp_path, phantom(12))
    (stack,) = plan_stacks(index_export(tmp_path, cfg()), cfg())
    volume = assemble_volume(stack, cfg())
    labels = sitk.Cast(volume_image(volume) > 0, sitk.sitkUInt8) * 7
    rv = resample_volume(volume, cfg(target_spacing_mm=(3.0, 3.0, 3.0), crop_pad_shape=(16, 30, 10)))
    assert rv.array.shape == (10, 30, 16)
    reference = resampled_image(rv)
    out = resample_labels(labels, reference)
    assert out.GetSize() == reference.GetSize() and out.GetOrigin() == reference.GetOrigin()
    values = np.unique(sitk.GetArrayViewFromImage(out))
    assert set(values.tolist()) <= {0, 7} and 7 in values
    # labels and image still agree after crop/pad: label voxels are the bright ones
    mask = sitk.GetArrayViewFromImage(out) == 7
    assert (rv.array[mask] >= -500).all() and (rv.array[~mask] == -1000).mean() > 0.95


def test_slice_rows_place_a_tilted_image_by_its_centre(tmp_path: Path) -> None:
    # a 20-degree tilt over a 128 mm field of view: the first pixel lies 21 mm of z from the image's
    # centre; resampled_z_index placed every image 5 slices off, where snippets put it by its centre
    tilt = np.radians(20.0)
    write_series(tmp_path, phantom(12, 64), orientation=(1, 0, 0, 0, np.cos(tilt), -np.sin(tilt)))
    (stack,) = plan_stacks(index_export(tmp_path, cfg()), cfg())
    result = ingest_stack(stack, cfg())
    assert result.volume is not None and QuarantineReason.GANTRY_TILT in result.volume_row.repairs
    image = resampled_image(result.volume)
    for row, record in zip(result.slice_rows, stack.instances, strict=True):
        centre = image.TransformPhysicalPointToContinuousIndex(slice_centre(record))
        assert abs(row.resampled_z_index - centre[2]) < 1e-6


@pytest.mark.parametrize("sheared", [True, False])
def test_tilt_is_read_from_the_positions_not_from_gantry_detector_tilt_or_spacing_between_slices(tmp_path: Path, sheared: bool) -> None:
    # GE states a tilted scan in GantryDetectorTilt and keeps axial cosines: only the positions, shifted
    # in y slice by slice, show the shear. A header tilt (or a negative SpacingBetweenSlices) the
    # positions do not show is no geometry: the stack is straight, its step the positions' 2 mm
    shift = 2.0 * np.tan(np.radians(15.0)) if sheared else 0.0
    for k, pixels in enumerate(phantom(12)):
        write_slice(tmp_path / f"IM{k:02d}", pixels, (-31.0, -31.0 + k * shift, -50.0 + 2 * k), series_uid="1.2.3.4.5", instance=k + 1)
        ds = pydicom.dcmread(tmp_path / f"IM{k:02d}")
        ds.GantryDetectorTilt, ds.SpacingBetweenSlices = "15", "-2"
        ds.save_as(tmp_path / f"IM{k:02d}")
    (stack,), _, (result,) = run(tmp_path, cfg())
    tilt = pytest.approx(15.0, abs=1e-3)  # positions are written to 4 decimals
    assert [(f.reason, f.value) for f in stack.findings] == ([(QuarantineReason.GANTRY_TILT, tilt)] if sheared else [])
    assert result.volume is not None and result.volume_row is not None
    assert result.volume_row.tilt_deg == (tilt if sheared else 0.0)
    volume = assemble_volume(stack, cfg())
    assert volume.spacing[2] == pytest.approx(2.0) and np.allclose(np.reshape(volume.direction, (3, 3)), np.eye(3))


def test_a_slice_without_image_position_is_quarantined_even_with_a_slice_location(tmp_path: Path) -> None:
    # SliceLocation is no position (its sign and origin are the vendor's): the slice cannot be placed
    paths = write_series(tmp_path, phantom(12), reverse_numbers=False)
    ds = pydicom.dcmread(paths[3])
    ds.SliceLocation = ds.ImagePositionPatient[2]
    del ds.ImagePositionPatient
    ds.save_as(paths[3])
    index = index_export(tmp_path, cfg())
    assert [(q.path, q.reason) for q in index.quarantine] == [(paths[3].name, QuarantineReason.MISSING_GEOMETRY)]
    assert index.quarantine[0].message.startswith(f"{paths[3].name} lacks ImagePositionPatient")
    (stack,) = plan_stacks(index, cfg())
    assert len(stack.instances) == 11 and QuarantineReason.MISSING_SLICES in {f.reason for f in stack.findings}


def test_untilting_rounds_the_interpolated_hu(tmp_path: Path) -> None:
    # the in-plane shift of each tilted slice interpolates every voxel; SimpleITK cast it to int16
    # toward zero, so tissue lost and air gained up to 1 HU (0.5 HU on average)
    tilt = np.radians(7.0)
    ramp = (1124 + 3 * np.arange(32))[None, :, None]  # +100 HU rising 3 HU a row, along the shear
    write_series(tmp_path, np.broadcast_to(ramp, (12, 32, 32)).astype(np.uint16), orientation=(1, 0, 0, 0, np.cos(tilt), -np.sin(tilt)))
    (stack,) = plan_stacks(index_export(tmp_path, cfg()), cfg())
    for simpleitk_buffer in (False, True):
        volume = assemble_volume(stack, cfg(), simpleitk_buffer=simpleitk_buffer)
        assert QuarantineReason.GANTRY_TILT in {f.reason for f in volume.findings}
        image = volume_image(volume)
        errors = []
        for index in np.ndindex(volume.array.shape):
            point = np.asarray(image.TransformIndexToPhysicalPoint([int(v) for v in index[::-1]]))
            record = volume.slices[index[0]]
            row = float(np.dot(point - np.asarray(record.position), stack.first.orientation[3:])) / 2.0  # the slice's row index
            if 0 <= row <= 31:
                errors.append(volume.array[index] - (100 + 3 * row))
        assert len(errors) > 0.8 * volume.array.size and np.abs(errors).max() <= 0.5 + 1e-3


def test_simpleitk_buffer_volume_is_shared_safely_and_changes_no_result(tmp_path: Path) -> None:
    write_series(tmp_path, phantom(12))
    (stack,) = plan_stacks(index_export(tmp_path, cfg()), cfg())
    plain = assemble_volume(stack, cfg())
    shared = assemble_volume(stack, cfg(), simpleitk_buffer=True)
    assert np.array_equal(shared.array, plain.array) and not shared.array.flags.writeable
    assert (shared.spacing, shared.origin, shared.direction) == (plain.spacing, plain.origin, plain.direction)
    image, copied = volume_image(shared), volume_image(plain)
    assert (image.GetSpacing(), image.GetOrigin(), image.GetDirection()) == (copied.GetSpacing(), copied.GetOrigin(), copied.GetDirection())
    # writing to the image copies its buffer first; the image outlives the volume and its array
    image[0, 0, 0] = 1234
    assert shared.array[0, 0, 0] == plain.array[0, 0, 0]
    image = volume_image(shared)
    array = shared.array
    del shared
    assert np.array_equal(array, plain.array)
    del array
    assert np.array_equal(sitk.GetArrayFromImage(image), plain.array)
    # a volume whose geometry was replaced gets a copy with that geometry
    moved = dataclasses.replace(assemble_volume(stack, cfg(), simpleitk_buffer=True), origin=(1.0, 2.0, 3.0))
    assert volume_image(moved).GetOrigin() == (1.0, 2.0, 3.0)
    # ingest_stack resamples the shared buffer: same voxels as resampling a copy
    result = ingest_stack(stack, cfg())
    assert result.volume is not None and np.array_equal(result.volume.array, resample_volume(plain, cfg()).array)


@pytest.mark.parametrize("geometry", [
    {"position": (-31.0, -31.0, float("nan"))},
    {"spacing": 0.0},
    {"spacing": -1.0},
    {"orientation": (2, 0, 0, 0, 2, 0)},  # cosines of length 2: the volume came out twice as large
    {"orientation": (1, 0, 0, 0.5, 0.866, 0)},  # not orthogonal
    {"orientation": (0, 0, 0, 0, 0, 0)},
])
def test_a_slice_whose_geometry_no_slice_can_have_is_quarantined(tmp_path: Path, geometry: dict[str, object]) -> None:
    # SimpleITK raised on "nan" or a spacing not above 0, failing the whole study without naming the file
    stored = phantom()
    paths = write_series(tmp_path, stored, reverse_numbers=False)
    write_slice(paths[3], stored[3], geometry.pop("position", (-31.0, -31.0, -44.0)), series_uid="1.2.3.4.5",  # type: ignore[arg-type]
                instance=4, **geometry)  # type: ignore[arg-type]
    index = index_export(tmp_path, cfg())
    assert [(e.path, e.reason) for e in index.quarantine] == [(paths[3].name, QuarantineReason.INVALID_GEOMETRY)]
    assert "cannot be placed in space" in index.quarantine[0].message
    repair = cfg(policy=GeometryPolicy(missing_slices=Action.REPAIR))
    [stack] = plan_stacks(index, repair)
    assert len(stack.instances) == 11 and ingest_stack(stack, repair).volume is not None  # the gap is repaired


@pytest.mark.parametrize("rescale", [{"slope": 0.0}, {"slope": float("nan")}, {"intercept": float("inf")}])
def test_a_slice_whose_rescale_gives_no_hu_is_quarantined(tmp_path: Path, rescale: dict[str, float]) -> None:
    # a RescaleSlope of 0 made the slice one value, a NaN slope made it garbage: no check saw it
    stored = phantom()
    paths = write_series(tmp_path, stored, reverse_numbers=False)
    write_slice(paths[3], stored[3], (-31.0, -31.0, -44.0), series_uid="1.2.3.4.5", instance=4, **rescale)
    index = index_export(tmp_path, cfg())
    assert [(e.path, e.reason) for e in index.quarantine] == [(paths[3].name, QuarantineReason.INVALID_RESCALE)]
    assert "cannot be read as HU" in index.quarantine[0].message


@pytest.mark.parametrize(("rescale_type", "usable"), [("US", False), ("MGML", False), ("HU", True), (None, True)])
def test_a_rescale_type_other_than_hu_is_quarantined_and_a_missing_slope_is_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rescale_type: str | None, usable: bool
) -> None:
    # a CT image states RescaleType only when its rescaled values are no HU ("US": unspecified, an
    # iodine map in mg/ml): read as HU, such a slice entered a volume of CT numbers
    stored = phantom()
    paths = write_series(tmp_path, stored, reverse_numbers=False)
    for path in paths:
        ds = pydicom.dcmread(path)
        del ds.RescaleSlope  # absent: 1, as SimpleITK and dcm2niix read it
        if rescale_type is not None:
            ds.RescaleType = rescale_type
        ds.save_as(path)
    index = index_export(tmp_path, cfg())
    assert len(index.usable) == (12 if usable else 0) and {r.reader for r in index.instances} == {"fast"}
    if usable:
        (stack,) = plan_stacks(index, cfg())
        assert np.array_equal(assemble_volume(stack, cfg()).array, stored.astype(int) - 1024)
    else:
        assert {e.reason for e in index.quarantine} == {QuarantineReason.INVALID_RESCALE}
        assert f"(RescaleType: {rescale_type})" in index.quarantine[0].message
    monkeypatch.setattr(header_module, "_scan", lambda data: (_ for _ in ()).throw(header_module._Unparsable("forced")))
    assert index_export(tmp_path, cfg()).instances == tuple(dataclasses.replace(r, reader="pydicom") for r in index.instances)


@pytest.mark.parametrize("signed", [False, True])
def test_a_slice_without_rescale_intercept_is_quarantined_unless_its_pixels_are_signed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, signed: bool
) -> None:
    # an export that drops RescaleIntercept (Type 1 in a CT image): unsigned values read with 0 made
    # air +24 HU and every voxel 1024 HU too bright, a volume the corpus took unseen
    stored = phantom()
    paths = write_series(tmp_path, stored, reverse_numbers=False)
    for path, pixels in zip(paths, stored, strict=True):
        ds = pydicom.dcmread(path)
        del ds.RescaleIntercept
        if signed:  # the HU themselves, as some converters write them
            ds.PixelRepresentation = 1
            ds.PixelData = (pixels.astype(np.int16) - 1024).astype("<i2").tobytes()
        ds.save_as(path)
    index = index_export(tmp_path, cfg())
    if signed:
        (stack,) = plan_stacks(index, cfg())
        assert np.array_equal(assemble_volume(stack, cfg()).array, stored.astype(int) - 1024)
    else:
        assert not index.usable and {e.reason for e in index.quarantine} == {QuarantineReason.INVALID_RESCALE}
        assert "unsigned pixels and no RescaleIntercept" in index.quarantine[0].message
    monkeypatch.setattr(header_module, "_scan", lambda data: (_ for _ in ()).throw(header_module._Unparsable("forced")))
    assert index_export(tmp_path, cfg()).instances == tuple(dataclasses.replace(r, reader="pydicom") for r in index.instances)


@pytest.mark.parametrize("written", [None, "0", "-2.0", "NaN"])
def test_a_slice_without_slice_thickness_joins_its_series_unless_two_reconstructions_could_take_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, written: str | None
) -> None:
    # SliceThickness is Type 2: an export left it empty (or wrote 0, or a value no slice has) in one file, which
    # became a one-slice stack, and the series it left had a gap: both rejected
    stored = phantom()
    paths = write_series(tmp_path / "a", stored, reverse_numbers=False)
    ds = pydicom.dcmread(paths[5])
    ds["SliceThickness"] = DataElement(0x00180050, "DS", written, already_converted=True)
    ds.save_as(paths[5])
    with caplog.at_level("WARNING", logger="ctcorpus.ingest.stacks"):
        (stack,) = plan_stacks(index_export(tmp_path / "a", cfg()), cfg())
    assert not stack.rejected and len(stack.instances) == len(stored)
    assert {r.slice_thickness for r in stack.instances} == {2.0}
    assert np.array_equal(assemble_volume(stack, cfg()).array, stored.astype(int) - 1024)
    assert any("SliceThickness empty or not above 0 files=1" in r.getMessage() for r in caplog.records)
    # a second reconstruction of other thickness at the same positions: which one it belongs to is unknown
    write_series(tmp_path / "a" / "thick", stored, reverse_numbers=False, thickness=5.0)
    stacks = plan_stacks(index_export(tmp_path / "a", cfg()), cfg())
    assert sorted(len(s.instances) for s in stacks) == [1, 11, 12]


def test_float_noise_in_the_orientation_does_not_split_a_stack(tmp_path: Path) -> None:
    # cosines 0.9995 +- 1e-6, rounded to 3 decimals, fell on both sides of 0.9995: 0.999 and 1.0,
    # two accepted stacks of every other slice
    stored = phantom()
    for k, pixels in enumerate(stored):
        c = 0.9995 + (1e-6 if k % 2 else -1e-6)
        s = (1 - c * c) ** 0.5
        position = (-31.0, -31.0 - 2.0 * k * s, -50.0 + 2.0 * k * c)  # stacked along the normal (0, -s, c)
        write_slice(tmp_path / f"IM{k:02d}", pixels, position, series_uid="1.2.3.4.5", instance=k + 1,
                    orientation=(1, 0, 0, 0, c, s))
    stacks = plan_stacks(index_export(tmp_path, cfg()), cfg())
    assert [(len(s.instances), [f.reason for f in s.findings]) for s in stacks] == [(12, [])]


def test_a_compressed_file_cut_inside_its_pixel_data_is_quarantined_at_indexing(tmp_path: Path) -> None:
    # encapsulated PixelData has no length to compare with the file size; cut, it was indexed as
    # usable and only failed at assembly, rejecting its whole stack as unreadable_pixels
    header = SeriesHeader("P1", "Doe^John", "19500101", "M", "1.2.3", "20240101", "120000", "A1", "1.2.3.4", 2,
                          "CHEST", "1.2.3.9", "B30f", "X", "Y", 2.0, (2.0, 2.0), transfer_syntax=RLELossless)
    paths = [tmp_path / f"IM{k:02d}" for k in range(3)]
    synth_write_series(header, list(phantom(3).astype(np.int16)), [SlicePlacement(k + 1, (0.0, 0.0, 2.0 * k)) for k in range(3)], paths)
    paths[1].write_bytes(paths[1].read_bytes()[:-40])
    records = [read_instance(p, tmp_path) for p in paths]
    assert [(r.reader, r.reason) for r in records if r] == [("fast", None), ("fast", QuarantineReason.TRUNCATED), ("fast", None)]
    assert records[0] is not None and records[0].pixel_offset + records[0].pixel_length == records[0].size_bytes


@pytest.mark.parametrize("kept", [0.5, 0.0])
def test_uncompressed_pixel_data_shorter_than_the_image_is_quarantined_at_indexing(tmp_path: Path, kept: float) -> None:
    # PixelData cut (or emptied) with its length rewritten: indexed as usable, it failed to decode
    # at assembly and rejected its whole stack as unreadable_pixels instead of losing itself
    paths = write_series(tmp_path, phantom(12), reverse_numbers=False)
    ds = pydicom.dcmread(paths[4])
    ds.PixelData = ds.PixelData[: int(len(ds.PixelData) * kept)]
    ds.save_as(paths[4])
    index = index_export(tmp_path, cfg())
    assert [(q.path, q.reason) for q in index.quarantine] == [(paths[4].name, QuarantineReason.TRUNCATED)]
    assert "shorter than its declared length or than the image its header describes" in index.quarantine[0].message
    repair = cfg(policy=GeometryPolicy(missing_slices=Action.REPAIR))
    (stack,) = plan_stacks(index, repair)
    assert len(stack.instances) == 11 and ingest_stack(stack, repair).volume is not None


@pytest.mark.parametrize("reader", ["fast", "pydicom"])
def test_a_compressed_frame_cut_before_its_end_marker_is_quarantined_at_indexing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reader: str
) -> None:
    # a damaged JPEG fragment whose item length and delimiter are intact: the decoder made up the
    # rows it lacked without raising (libjpeg only prints a warning) and the stack was ingested with them
    header = SeriesHeader("P1", "Doe^John", "19500101", "M", "1.2.3", "20240101", "120000", "A1", "1.2.3.4", 2,
                          "CHEST", "1.2.3.9", "B30f", "X", "Y", 2.0, (2.0, 2.0), transfer_syntax=JPEGLosslessSV1)
    paths = [tmp_path / f"IM{k:02d}" for k in range(12)]
    synth_write_series(header, list(phantom(12).astype(np.int16)), [SlicePlacement(k + 1, (0.0, 0.0, 2.0 * k)) for k in range(12)], paths)
    for path, cut in ((paths[5], True), (paths[6], False)):
        ds = pydicom.dcmread(path)
        frame = next(pydicom.encaps.generate_frames(ds.PixelData, number_of_frames=1))
        ds.PixelData = pydicom.encaps.encapsulate([frame[: len(frame) // 2] if cut else frame + bytes(4)])  # padded: whole
        ds.save_as(path)
    if reader == "pydicom":
        monkeypatch.setattr(header_module, "_scan", lambda data: (_ for _ in ()).throw(header_module._Unparsable("forced")))
    index = index_export(tmp_path, cfg())
    assert [(q.path, q.reason) for q in index.quarantine] == [(paths[5].name, QuarantineReason.TRUNCATED)]
    assert "end marker" in index.quarantine[0].message
    assert len(index.usable) == 11 and {r.reader for r in index.instances} == {reader}


def test_a_file_whose_transfer_syntax_no_installed_decoder_reads_is_quarantined_at_indexing_naming_the_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # without pylibjpeg-libjpeg (or gdcm), a JPEG Lossless export was indexed as usable and each of its
    # stacks failed at assembly, its pixels "cannot be decoded"; no file said which package was missing
    header = SeriesHeader("P1", "Doe^John", "19500101", "M", "1.2.3", "20240101", "120000", "A1", "1.2.3.4", 2,
                          "CHEST", "1.2.3.9", "B30f", "X", "Y", 2.0, (2.0, 2.0), transfer_syntax=JPEGLosslessSV1)
    paths = [tmp_path / f"IM{k:02d}" for k in range(12)]
    synth_write_series(header, list(phantom(12).astype(np.int16)), [SlicePlacement(k + 1, (0.0, 0.0, 2.0 * k)) for k in range(12)], paths)
    assert len(index_export(tmp_path, cfg()).usable) == 12
    decoder = pydicom.pixels.get_decoder(JPEGLosslessSV1)
    monkeypatch.setattr(decoder, "_available", {})
    monkeypatch.setattr(decoder, "_unavailable", {"pylibjpeg": ("pylibjpeg", "pylibjpeg-libjpeg"), "gdcm": ("gdcm",)})
    index = index_export(tmp_path, cfg())
    assert not index.usable and [(q.path, q.reason) for q in index.quarantine] == [
        (p.name, QuarantineReason.UNSUPPORTED_TRANSFER_SYNTAX) for p in paths]
    assert index.quarantine[0].message.startswith(f"{paths[0].name} has pixel data in transfer syntax JPEG Lossless")
    assert "pylibjpeg - requires pylibjpeg and pylibjpeg-libjpeg; gdcm - requires gdcm" in index.quarantine[0].message
    assert header_module.missing_decoder("1.2.840.10008.1.2.4.100") == "pydicom has no decoder for it"  # MPEG2 video


def test_a_big_endian_file_cut_inside_its_pixel_data_is_quarantined_at_indexing(tmp_path: Path) -> None:
    # pydicom reads a cut big-endian PixelData without a word; it was indexed as usable and only
    # failed at assembly, rejecting its whole stack as unreadable_pixels (a cut little-endian file
    # only loses itself)
    stored = phantom(12)
    paths = write_series(tmp_path, stored, reverse_numbers=False)
    for path in paths:
        ds = pydicom.dcmread(path)
        ds.PixelData = ds.pixel_array.astype(">u2").tobytes()  # pydicom writes the value's bytes as they are
        ds.file_meta.TransferSyntaxUID = ExplicitVRBigEndian
        pydicom.dcmwrite(path, ds, implicit_vr=False, little_endian=False, force_encoding=True)
    paths[-1].write_bytes(paths[-1].read_bytes()[:-300])
    index = index_export(tmp_path, cfg())
    assert [(q.path, q.reason) for q in index.quarantine] == [(paths[-1].name, QuarantineReason.TRUNCATED)]
    stacks, _, results = run(tmp_path, cfg())
    ((stack,), (result,)) = stacks, results
    assert {r.reader for r in stack.instances} == {"pydicom"} and len(stack.instances) == 11
    assert result.volume is not None and not result.quarantine
    assert np.array_equal(assemble_volume(stack, cfg()).array, stored[:11].astype(int) - 1024)


def test_a_corrupt_rle_segment_that_panics_the_decoder_quarantines_its_stack(tmp_path: Path) -> None:
    # pylibjpeg-rle is Rust: a run longer than its segment panics, and pyo3's PanicException is a
    # BaseException, so it went through every ``except Exception`` and ended the whole run
    header = SeriesHeader("P1", "Doe^John", "19500101", "M", "1.2.3", "20240101", "120000", "A1", "1.2.3.4", 2,
                          "CHEST", "1.2.3.9", "B30f", "X", "Y", 2.0, (2.0, 2.0), transfer_syntax=RLELossless)
    paths = [tmp_path / f"IM{k:02d}" for k in range(12)]
    synth_write_series(header, list(phantom(12).astype(np.int16)), [SlicePlacement(k + 1, (0.0, 0.0, 2.0 * k)) for k in range(12)], paths)
    ds = pydicom.dcmread(paths[5])
    frame = bytearray(next(pydicom.encaps.generate_frames(ds.PixelData, number_of_frames=1)))
    frame[int.from_bytes(frame[4:8], "little")] = 0x81  # the first segment's first run: repeat 128 times
    ds.PixelData = pydicom.encaps.encapsulate([bytes(frame)])
    ds.save_as(paths[5])
    stacks, _, results = run(tmp_path, cfg())
    ((stack,), (result,)) = stacks, results
    assert len(stack.instances) == 12 and result.volume is None
    assert [(q.path, q.reason) for q in result.quarantine] == [(paths[5].name, QuarantineReason.UNREADABLE_PIXELS)]
    assert "PanicException" in result.quarantine[0].message


def test_a_slice_out_of_memory_while_decoding_fails_its_stack_not_its_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a MemoryError while decoding was taken for a broken file: unreadable_pixels, kept for good,
    # where the stack's failure (stage_failed) is retried by the next runs once the workers have more memory
    header = SeriesHeader("P1", "Doe^John", "19500101", "M", "1.2.3", "20240101", "120000", "A1", "1.2.3.4", 2,
                          "CHEST", "1.2.3.9", "B30f", "X", "Y", 2.0, (2.0, 2.0), transfer_syntax=RLELossless)
    paths = [tmp_path / f"IM{k:02d}" for k in range(12)]
    synth_write_series(header, list(phantom(12).astype(np.int16)), [SlicePlacement(k + 1, (0.0, 0.0, 2.0 * k)) for k in range(12)], paths)
    (stack,) = plan_stacks(index_export(tmp_path, cfg()), cfg())

    def out_of_memory(*args: object, **kwargs: object) -> None:
        raise MemoryError

    monkeypatch.setattr(pydicom, "dcmread", out_of_memory)
    result = ingest_stack(stack, cfg())
    assert result.volume is None
    assert [q.reason for q in result.quarantine] == [QuarantineReason.STAGE_FAILED]
    assert "MemoryError" in result.quarantine[0].message


def test_a_stack_that_simpleitk_cannot_resample_is_quarantined_not_raised(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_series(tmp_path, phantom())

    def itk_error(*args: object) -> None:
        raise RuntimeError("Exception thrown in SimpleITK Image_SetSpacing: ITK ERROR")

    monkeypatch.setattr(ingest_pipeline_module, "resample_volume", itk_error)
    [stack] = plan_stacks(index_export(tmp_path, cfg()), cfg())
    result = ingest_stack(stack, cfg())
    assert result.volume is None and result.series_row.accepted is False
    [entry] = result.quarantine
    assert (entry.reason, entry.path) == (QuarantineReason.STAGE_FAILED, stack.first.rel_path)
    assert "RuntimeError: Exception thrown in SimpleITK" in entry.message


# ---------------------------------------------------------------- synthetic export against ground truth


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ExportTruth, object, list, list]:
    root = tmp_path_factory.mktemp("export")
    truth = generate_export(root, patients=2, seed=3, defects=True, phi=True, matrix=64)
    config = cfg(min_slices=5, target_spacing_mm=(6.0, 6.0, 5.0))
    log = QuarantineLog()
    index = index_export(root, config, on_error=log, exclude=[root / f for f in truth.report_files])
    stacks = plan_stacks(index, config)
    return root, truth, index, stacks, [ingest_stack(s, config) for s in stacks]


@pytest.mark.slow
def test_every_seeded_defect_gets_its_reason(synth: tuple) -> None:
    root, truth, index, stacks, results = synth
    entries = list(index.quarantine) + [q for r in results for q in r.quarantine]
    by_path: dict[str, set[str]] = {}
    for q in entries:
        by_path.setdefault(q.path, set()).add(q.reason.value)
    checked = 0
    for defect in truth.defects:
        if defect.kind in ("truncated", "not_dicom", "non_ct", "missing_slice", "duplicate_slice", "gantry_tilt", "non_uniform_spacing", "mixed_stacks"):
            found = set().union(*(by_path.get(p, set()) for p in defect.paths))
            assert defect.expected_reason in found, (defect.kind, found)
            checked += 1
    for series in truth.series:
        for reason in series.expected_reasons:
            assert reason in set().union(*(by_path.get(p, set()) for p in series.files)), series.kind
    assert checked >= 8


@pytest.mark.slow
def test_clean_volumes_match_ground_truth(synth: tuple) -> None:
    root, truth, index, stacks, results = synth
    by_files = {frozenset(s.rel_path for s in assemble_stack_slices(st)): st for st in stacks}
    clean = [s for s in truth.series if s.kind in ("axial", "recon") or (s.kind == "defect" and s.defect in ("", "rle", "jpeg_lossless"))]
    assert len(clean) >= 4
    config = cfg(min_slices=5)
    for series in clean:
        stack = by_files[frozenset(series.files)]
        volume = assemble_volume(stack, config)
        assert volume.array.shape == (series.n_slices, series.rows, series.columns)
        np.testing.assert_allclose(volume.spacing, series.spacing_mm, atol=1e-3)
        np.testing.assert_allclose(volume.origin, series.origin_mm, atol=1e-3)
        np.testing.assert_allclose(volume.direction, series.direction, atol=1e-3)
        assert [s.instance_number for s in volume.slices] == list(series.instance_numbers)
        np.testing.assert_allclose([s.z_mm for s in volume.slices], series.z_mm, atol=1e-3)
        for k in (0, series.n_slices // 2):  # HU equals pydicom's decode + rescale within rounding
            ds = pydicom.dcmread(root / series.files[k])
            reference = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
            assert np.abs(volume.array[k] - reference).max() <= 0.5


def assemble_stack_slices(stack: object) -> tuple:
    return tuple(stack.instances) + tuple(stack.duplicates)  # type: ignore[attr-defined]


@pytest.mark.slow
def test_tables_follow_schemas_and_hold_no_phi(synth: tuple) -> None:
    root, truth, index, stacks, results = synth
    p = Pseudonymizer.from_literal(KEY)
    accepted = [r for r in results if r.volume_row is not None]
    tables = {
        "instances": table_from_rows("instances", instance_rows(index, p)),
        "series": table_from_rows("series", [r.series_row for r in results]),
        "volumes": table_from_rows("volumes", [r.volume_row for r in accepted]),
        "slices": table_from_rows("slices", [row for r in accepted for row in r.slice_rows]),
        "quarantine": table_from_rows(
            "quarantine",
            [dataclasses.asdict(q) for r in results for q in r.quarantine] + [dataclasses.asdict(q) for q in index.quarantine],
            pipeline_version="test", source_sha256="", producer="test",
        ),
    }
    for name, table in tables.items():
        check_table(name, table)
    # every accepted stack, second reconstructions included, has its slice table
    assert {r.volume_id for r in accepted} == set(tables["slices"].column("volume_id").to_pylist())
    assert tables["series"].num_rows == len(stacks) and tables["volumes"].num_rows >= 9
    secret = set(truth.phi_header_values) | {r.patient_id for r in index.instances} | {r.accession_number for r in index.instances}
    secret |= {r.study_uid for r in index.instances} | {r.sop_uid for r in index.instances} | {r.series_uid for r in index.instances}
    secret.discard("")
    assert len(secret) > 20
    long_secrets = [s for s in secret if len(s) >= 6]
    for name, table in tables.items():
        for column in table.column_names:
            if name == "quarantine" and column in ("path", "message"):
                continue  # the operators' table names real files; corpus tables get redacted paths
            for value in table.column(column).to_pylist():
                if isinstance(value, str):
                    assert value not in secret and not [s for s in long_secrets if s in value], (name, column, value)
    assert any("PAT_pat-" in path for path in tables["slices"].column("path").to_pylist())
    phi = [s for s in truth.phi_header_values if len(s) > 3]
    assert phi
    for name, table in tables.items():
        text = str(table.to_pylist())
        assert not [s for s in phi if s in text], name


def test_series_descriptions_in_corpus_tables_lose_names_and_dates(synth: tuple) -> None:
    # An operator may type the patient into the description at the scanner: the series table keeps the rest.
    _, _, _, stacks, _ = synth
    stack = stacks[0]
    first = dataclasses.replace(stack.first, patient_name="Müller^Jürgen", patient_birth_date="19620501",
                                series_description="THORAX MUELLER 01.05.1962 1.0 B70f")
    stack = dataclasses.replace(stack, instances=(first, *stack.instances[1:]))
    row = series_row(stack, Pseudonymizer.from_literal(KEY), True)
    assert row.series_description == "THORAX [NAME] [DATE] 1.0 B70f"


def test_paths_in_corpus_tables_lose_names_and_dates(synth: tuple) -> None:
    # Exports that name folders after the patient must not carry the name into a corpus table.
    _, _, index, _, _ = synth
    record = dataclasses.replace(index.instances[0], patient_name="Doe^John", patient_birth_date="19500102",
                                 study_date="20230405", rel_path="DOE^JOHN_19500102/CT_20230405/DOEJOHN_SCANNER/IM1")
    path = safe_path(record.rel_path, record, Pseudonymizer.from_literal(KEY))
    assert path == "[NAME]^[NAME]_[DATE]/CT_[DATE]/DOEJOHN_SCANNER/IM1"
    # a folder named after the order's accession number of a group case (RequestAttributesSequence)
    record = dataclasses.replace(record, rel_path="ORDER_ABD-7731/IM1", requested_accession_numbers=("CH-7730", "ABD-7731"))
    assert safe_path(record.rel_path, record, Pseudonymizer.from_literal(KEY)) == (
        f"ORDER_{Pseudonymizer.from_literal(KEY).accession('ABD-7731')}/IM1")
    # a folder without the header's umlauts or accents, dates in other layouts, a time after the date
    record = dataclasses.replace(record, patient_name="Müller^Jürgen^José", patient_birth_date="19620501",
                                 study_date="20180325", requested_accession_numbers=(),
                                 rel_path="MUELLER_JURGEN_JOSE_1962-05-01/CT2018-03-25/01.05.1962/20180325120000/IM1")
    assert safe_path(record.rel_path, record, Pseudonymizer.from_literal(KEY)) == (
        "[NAME]_[NAME]_[NAME]_[DATE]/CT[DATE]/[DATE]/[DATE]120000/IM1")
    # folders named decomposed (u + combining diaeresis), as macOS writes them
    record = dataclasses.replace(record, rel_path=unicodedata.normalize("NFD", "Müller_Jürgen_José/IM1"))
    assert safe_path(record.rel_path, record, Pseudonymizer.from_literal(KEY)) == "[NAME]_[NAME]_[NAME]/IM1"
    # a header name with ideographic and phonetic component groups: each group's parts are names
    record = dataclasses.replace(record, patient_name="Yamada^Tarou=山田^太郎=やまだ^たろう", rel_path="YAMADA^TAROU/山田^太郎/IM1")
    assert safe_path(record.rel_path, record, Pseudonymizer.from_literal(KEY)) == "[NAME]^[NAME]/[NAME]^[NAME]/IM1"
    # an export tool that lower-cases folder names
    record = dataclasses.replace(record, patient_id="PID77", accession_number="ACC0042", rel_path="pat_pid77/acc0042/IM1")
    assert safe_path(record.rel_path, record, Pseudonymizer.from_literal(KEY)) == (
        f"pat_{Pseudonymizer.from_literal(KEY).patient('PID77')}/{Pseudonymizer.from_literal(KEY).accession('ACC0042')}/IM1")



def test_a_placeholder_accession_number_has_no_pseudonym(synth: tuple) -> None:
    # "00000000" is what a modality writes when the RIS sent no accession number: pseudonymized, it
    # made the studies of every patient with it share one accession_id (an accession leak for the audit)
    _, _, index, _, _ = synth
    p = Pseudonymizer.from_literal(KEY)
    assert [p.accession(number) for number in ("00000000", "0", "-", " ")] == ["", "", "", ""]
    assert p.accession("ACC00000000").startswith("acc-") and p.accession("000123").startswith("acc-")
    record = dataclasses.replace(index.instances[0], accession_number="00000000", rel_path="PAT/00000000/IM1")
    assert instance_row(record, p).accession_id == ""
    assert safe_path(record.rel_path, record, p).endswith("/00000000/IM1")  # nothing to hide, nothing to replace it by

@pytest.mark.slow
def test_primary_selection_picks_the_axial_series(synth: tuple) -> None:
    root, truth, index, stacks, results = synth
    chosen = select_stacks(stacks, cfg())
    axial = {frozenset(s.files) for s in truth.series if s.kind == "axial"}
    studies = {s.study_uid for s in truth.series if s.kind == "axial"}
    assert len(chosen) == len({s.first.study_uid for s in stacks if not s.rejected}) >= len(studies)
    picked = {frozenset(i.rel_path for i in s.instances) for s in chosen if s.first.study_uid in studies}
    assert picked <= axial and len(picked) == len(studies)
    assert len(select_stacks(stacks, cfg(volumes_per_study="all"))) == sum(not s.rejected for s in stacks)
    # a stack rejected at assembly is replaced by the next of its study's accepted stacks; "all": none to fall back to
    groups = candidate_groups(stacks, cfg())
    assert [g[0].stack_key for g in groups] == [s.stack_key for s in chosen]
    assert sorted(s.stack_key for g in groups for s in g) == sorted(s.stack_key for s in stacks if not s.rejected)
    assert all(len({s.first.study_uid for s in g}) == 1 for g in groups) and max(len(g) for g in groups) >= 2
    assert {len(g) for g in candidate_groups(stacks, cfg(volumes_per_study="all"))} == {1}
    entries = unselected_entries(stacks, chosen, Pseudonymizer.from_literal(KEY))
    assert len(entries) == sum(not s.rejected for s in stacks) - len(chosen)
    recons = {f for s in truth.series if s.kind == "recon" for f in s.files}
    assert {e.reason for e in entries} == {QuarantineReason.NOT_SELECTED} and sum(e.path in recons for e in entries) >= 2


# ---------------------------------------------------------------- dcm2niix agreement and real data


def _world_corners(size: np.ndarray, affine_lps: np.ndarray) -> np.ndarray:
    corners = np.array([[i, j, k, 1.0] for i in (0, size[0] - 1) for j in (0, size[1] - 1) for k in (0, size[2] - 1)])
    points = (affine_lps @ corners.T).T[:, :3]
    return points[np.lexsort(points.T[::-1])]


def _dcm2niix(files: list[Path], tmp: Path) -> nib.Nifti1Image:
    src, out = tmp / "in", tmp / "out"
    src.mkdir(parents=True)
    out.mkdir()
    for n, f in enumerate(files):
        shutil.copy(f, src / f"f{n:04d}")
    subprocess.run([str(DCM2NIIX), "-z", "n", "-f", "x", "-o", str(out), str(src)], check=True, capture_output=True)
    niftis = sorted(out.glob("x*.nii"))
    tilted = [p for p in niftis if "_Tilt" in p.name]
    return nib.load(tilted[0] if tilted else niftis[0])


def _assert_matches_dcm2niix(volume_size: tuple[int, int, int], spacing: tuple, image: sitk.Image, nifti: nib.Nifti1Image, shear_axis_slack: int = 0) -> None:
    ras_to_lps = np.diag([-1.0, -1.0, 1.0, 1.0])
    affine = ras_to_lps @ nifti.affine
    np.testing.assert_allclose(sorted(nifti.header.get_zooms()[:3]), sorted(spacing), atol=1e-3)
    theirs, ours = np.array(nifti.shape[:3]), np.array(volume_size)
    assert np.abs(np.sort(theirs) - np.sort(ours)).max() <= shear_axis_slack
    if shear_axis_slack == 0:
        direction = np.asarray(image.GetDirection()).reshape(3, 3)
        mine = np.eye(4)
        mine[:3, :3] = direction * np.asarray(image.GetSpacing())
        mine[:3, 3] = image.GetOrigin()
        np.testing.assert_allclose(_world_corners(ours, mine), _world_corners(theirs, affine), atol=1e-3)
    else:  # tilt: same axes up to sign, the sheared axis may be a voxel wider
        ours_axes = np.abs(np.asarray(image.GetDirection()).reshape(3, 3))
        theirs_axes = np.abs(affine[:3, :3] / np.asarray(nifti.header.get_zooms()[:3]))
        np.testing.assert_allclose(ours_axes, theirs_axes, atol=1e-3)


@pytest.mark.slow
@pytest.mark.skipif(not DCM2NIIX.exists(), reason="dcm2niix is not installed")
def test_geometry_agrees_with_dcm2niix_on_synthetic_series(synth: tuple, tmp_path: Path) -> None:
    root, truth, index, stacks, results = synth
    config = cfg(min_slices=5)
    for n, kind in enumerate(("axial", "gantry_tilt")):
        series = next(s for s in truth.series if s.kind == kind or s.defect == kind)
        stack = next(st for st in stacks if {i.rel_path for i in st.instances} == set(series.files))
        volume = assemble_volume(stack, config)
        nifti = _dcm2niix([root / f for f in series.files], tmp_path / str(n))
        _assert_matches_dcm2niix(volume.array.shape[::-1], volume.spacing, volume_image(volume), nifti, shear_axis_slack=1 if kind == "gantry_tilt" else 0)


@pytest.mark.skipif(not DCM2NIIX.exists(), reason="dcm2niix is not installed")
def test_real_series_match_dcm2niix(shared_data: Path, tmp_path: Path) -> None:
    roots = {
        "philips": shared_data / "dcm_qa_ct_philips_study_with_localizer",
        "totalseg": shared_data / "totalsegmentator_reference" / "example_ct_dicom",
    }
    for name, root in roots.items():
        log = QuarantineLog()
        stacks = plan_stacks(index_export(root, cfg(), on_error=log), cfg())
        (stack,) = [s for s in stacks if not s.rejected]
        volume = assemble_volume(stack, cfg())
        nifti = _dcm2niix([Path(i.path) for i in stack.instances], tmp_path / name)
        _assert_matches_dcm2niix(volume.array.shape[::-1], volume.spacing, volume_image(volume), nifti)
        # dcm2niix's voxels are ours up to its axis flips
        theirs = np.asarray(nifti.dataobj).astype(np.int32)
        ours = volume.array.transpose(2, 1, 0).astype(np.int32)
        assert any(np.array_equal(np.flip(theirs, axes) if axes else theirs, ours) for axes in ((), (1,), (0, 1), (2,), (1, 2), (0,), (0, 2), (0, 1, 2)))


def test_real_exports_quarantine_what_is_not_a_volume(shared_data: Path) -> None:
    log = QuarantineLog()
    index = index_export(shared_data / "dcm_qa_ct_philips_study_with_localizer", cfg(), on_error=log)
    reasons = {q.path.split("/")[-2] + "/" + q.path.split("/")[-1]: q.reason for q in index.quarantine if q.path.startswith("In")}
    assert reasons["S1000/I10"] is QuarantineReason.LOCALIZER
    assert sum(r is QuarantineReason.NON_CT for r in reasons.values()) == 6
    enhanced = index_export(shared_data / "pydicom_data_enhanced_ct", cfg(), on_error=QuarantineLog())
    assert [q.reason for q in enhanced.quarantine if q.path.endswith(".dcm")] == [QuarantineReason.UNSUPPORTED_MULTIFRAME]
    images = shared_data / "cornerstone_ct_transfer_syntaxes" / "testImages"
    reference = read_stored(read_instance(images / "CTImage.dcm", images))
    decoded = 0
    for path in sorted(images.glob("CTImage.dcm_*")):
        record = read_instance(path, images)
        assert record is not None and record.reason is None
        assert np.array_equal(read_stored(record), reference), path.name
        decoded += 1
    assert decoded == 7
    results = run(images, cfg())[2]
    assert all(r.volume is None for r in results)
    assert {q.reason for r in results for q in r.quarantine if q.action is Action.REJECT} == {QuarantineReason.SINGLE_SLICE}


def test_pydicom_bundled_ct_single_slice_is_quarantined_not_crashed(tmp_path: Path) -> None:
    shutil.copy(pydicom.data.get_testdata_file("CT_small.dcm"), tmp_path / "ct")
    stacks, log, results = run(tmp_path, cfg())
    (result,) = results
    assert result.volume is None and result.series_row.accepted is False
    (entry,) = [q for q in result.quarantine if q.action is Action.REJECT]
    assert entry.reason is QuarantineReason.SINGLE_SLICE and entry.path == "ct" and "single slice" in entry.message
