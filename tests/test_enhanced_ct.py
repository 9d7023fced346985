"""Enhanced CT (multi-frame) objects: each frame is read as a slice, so the series gives the volume,
HU and slice table its classic single-frame files give; frames that are no volume's slices are
quarantined with the reason."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.pixels import pixel_array
from pydicom.tag import Tag
from pydicom.uid import ExplicitVRLittleEndian, RLELossless

from ctcorpus.config.ingest import IngestConfig
from ctcorpus.enums import Action, QuarantineReason
from ctcorpus.errors import IngestError
from ctcorpus.ingest import (
    assemble_volume,
    index_export,
    ingest_stack,
    instance_rows,
    plan_stacks,
    pseudonymizer_for,
    read_instances,
    read_stored,
)
from ctcorpus.ingest.records import Volume
from ctcorpus.records import QuarantineLog
from ctcorpus.schemas import table_from_rows
from ctcorpus.snippets import stack_slices
from ctcorpus.synth.dicom import (
    SeriesHeader,
    SlicePlacement,
    write_enhanced_series,
    write_series,
)

N = 10
#: Image i of the series stored with this (slope, intercept): two conventions, frame by frame.
RESCALES = [(1.0, -1024.0) if i % 2 else (0.5, -2048.0) for i in range(N)]


def cfg() -> IngestConfig:
    return IngestConfig(pseudonym_key="test-key", target_spacing_mm=(4.0, 4.0, 4.0), min_slices=3)


def header(**kwargs: object) -> SeriesHeader:
    values: dict[str, object] = {
        "patient_id": "P1", "patient_name": "Doe^J", "birth_date": "19500101", "sex": "F", "study_uid": "1.2.3",
        "study_date": "20240101", "study_time": "120000", "accession_number": "A1", "series_uid": "1.2.3.4",
        "series_number": 2, "series_description": "CHEST", "frame_of_reference_uid": "1.2.3.5", "kernel": "B30f",
        "manufacturer": "SIEMENS", "model": "NAEOTOM", "slice_thickness_mm": 2.0, "pixel_spacing_mm": (0.7, 0.8),
    }
    return SeriesHeader(**(values | kwargs))  # type: ignore[arg-type]


def images() -> np.ndarray:
    """HU (z, y, x) with every value different: a frame read at the wrong place shows."""
    return np.random.default_rng(0).integers(-1024, 2000, size=(N, 12, 16)).astype(np.int16)


def placements(n: int = N) -> list[SlicePlacement]:
    """Feet to head, numbered head to feet (as the classic files' instance numbers)."""
    return [SlicePlacement(n - k, (-10.0, -12.0, -50.0 + 2.0 * k)) for k in range(n)]


def volume(root: Path) -> Volume:
    (stack,) = plan_stacks(index_export(root, cfg()), cfg())
    return assemble_volume(stack, cfg())


@pytest.mark.parametrize("transfer_syntax", [ExplicitVRLittleEndian, RLELossless])
def test_an_enhanced_ct_series_gives_the_volume_of_its_classic_files(tmp_path: Path, transfer_syntax: str) -> None:
    # an Enhanced CT object was quarantined as unsupported_multiframe: the whole series was lost
    h, hu = header(transfer_syntax=transfer_syntax), images()
    write_series(h, list(hu), placements(), [tmp_path / "classic" / f"I{k}" for k in range(N)])
    order = [int(i) for i in np.random.default_rng(1).permutation(N)]  # frames stored out of z order
    write_enhanced_series(h, list(hu), placements(), tmp_path / "enhanced" / "ct.dcm", order=order, rescales=RESCALES)
    classic, enhanced = volume(tmp_path / "classic"), volume(tmp_path / "enhanced")
    assert np.array_equal(enhanced.array, classic.array) and np.array_equal(enhanced.array, hu)
    assert (enhanced.spacing, enhanced.origin, enhanced.direction) == (classic.spacing, classic.origin, classic.direction)
    # the slice table names the file and the frame; the image number is the frame number
    assert {s.rel_path for s in enhanced.slices} == {"ct.dcm"}
    assert [s.frame for s in enhanced.slices] == [order.index(i) + 1 for i in range(N)]
    assert [s.instance_number for s in enhanced.slices] == [s.frame for s in enhanced.slices]
    assert [(s.rescale_slope, s.rescale_intercept) for s in enhanced.slices] == RESCALES
    index = index_export(tmp_path / "enhanced", cfg())
    (stack,) = plan_stacks(index, cfg())
    result = ingest_stack(stack, cfg())
    slices = table_from_rows("slices", result.slice_rows).to_pydict()
    assert slices["frame"] == [s.frame for s in enhanced.slices] and set(slices["path"]) == {"ct.dcm"}
    instances = table_from_rows("instances", instance_rows(index, pseudonymizer_for(cfg())))
    assert sorted(instances.column("frame").to_pylist()) == list(range(1, N + 1))
    # a report's "image 3" of the series is frame 3, placed where that frame lies
    series = stack_slices(stack, series_uid="ser-1", frame_of_reference_uid="for-1")
    assert series is not None and series.instance_z == {f: -50.0 + 2.0 * order[f - 1] for f in range(1, N + 1)}


def test_two_frames_at_one_position_with_other_pixels_are_no_duplicate(tmp_path: Path) -> None:
    # frames share the SOPInstanceUID and the file's sha256, which made any two frames at one
    # position "the same slice": one was dropped as an exact duplicate
    hu = images()
    where = placements()
    write_enhanced_series(header(), [*hu, hu[4] + 1], [*where, SlicePlacement(N + 1, where[4].position_mm)], tmp_path / "ct.dcm")
    (stack,) = plan_stacks(index_export(tmp_path, cfg()), cfg())
    assert len(stack.duplicates) == 1 and len({r.slice_id for r in stack.instances + stack.duplicates}) == N + 1
    with pytest.raises(IngestError) as caught:
        assemble_volume(stack, cfg())
    assert caught.value.reason is QuarantineReason.DUPLICATE_SLICE


def test_a_series_split_into_a_concatenation_numbers_its_images_across_the_files(tmp_path: Path) -> None:
    # each file's frames were images 1..n: "image 3" of the series was two slices, so no reference resolved to it
    hu, where = images(), placements()
    for name, part, offset in (("a.dcm", slice(0, 6), 0), ("b.dcm", slice(6, N), 6)):
        write_enhanced_series(header(), list(hu[part]), where[part], tmp_path / name)
        ds = pydicom.dcmread(tmp_path / name)
        ds.ConcatenationUID, ds.ConcatenationFrameOffsetNumber, ds.InConcatenationNumber = "1.2.3.9", offset, 1 + offset // 6
        ds.save_as(tmp_path / name)
    (stack,) = plan_stacks(index_export(tmp_path, cfg()), cfg())
    assert sorted(r.instance_number for r in stack.instances) == list(range(1, N + 1))
    assert sorted((r.rel_path, r.frame) for r in stack.instances) == [("a.dcm", f) for f in range(1, 7)] + [
        ("b.dcm", f) for f in range(1, 5)]
    series = stack_slices(stack, series_uid="ser-1", frame_of_reference_uid="for-1")
    assert series is not None and series.instance_z == {k + 1: -50.0 + 2.0 * k for k in range(N)}
    assert np.array_equal(volume(tmp_path).array, hu)


def _refused(root: Path) -> tuple[QuarantineReason, str]:
    index = index_export(root, cfg(), on_error=QuarantineLog())
    assert [r.frame for r in index.instances] == [None] and not index.usable  # one record: the file
    (entry,) = index.quarantine
    assert entry.action is Action.REJECT
    return entry.reason, entry.message


def test_a_derived_perfusion_map_is_quarantined_and_a_derived_hu_image_is_read(tmp_path: Path) -> None:
    hu = images()
    write_enhanced_series(header(image_type=("DERIVED", "PRIMARY", "PERFUSION", "RCBF")), list(hu), placements(),
                          tmp_path / "map" / "ct.dcm")
    reason, message = _refused(tmp_path / "map")
    assert reason is QuarantineReason.UNSUPPORTED_MULTIFRAME and "RCBF map" in message
    write_enhanced_series(header(image_type=("DERIVED", "SECONDARY", "AXIAL", "MEAN")), list(hu), placements(),
                          tmp_path / "mean" / "ct.dcm")
    assert np.array_equal(volume(tmp_path / "mean").array, hu)


def test_frames_in_several_orientations_are_quarantined(tmp_path: Path) -> None:
    where = placements()
    where[3] = SlicePlacement(where[3].instance_number, where[3].position_mm, (1.0, 0.0, 0.0, 0.0, 0.0, -1.0))
    write_enhanced_series(header(), list(images()), where, tmp_path / "ct.dcm")
    reason, message = _refused(tmp_path)
    assert reason is QuarantineReason.UNSUPPORTED_MULTIFRAME and "several orientations" in message


def test_a_frame_without_a_position_quarantines_its_file(tmp_path: Path) -> None:
    path = tmp_path / "ct.dcm"
    write_enhanced_series(header(), list(images()), placements(), path)
    ds = pydicom.dcmread(path)
    del ds.PerFrameFunctionalGroupsSequence[6].PlanePositionSequence
    ds.save_as(path)
    reason, message = _refused(tmp_path)
    assert reason is QuarantineReason.MISSING_GEOMETRY and "frame 7 has no PlanePositionSequence" in message


def _set_raw(item: Dataset, keyword: str, text: str, vr: str | None = None) -> None:
    """Write ``keyword`` in a functional group item as exactly this text ("2,0", "1A"), as ``vr`` (its own)."""
    tag = Tag(tag_for_keyword(keyword))
    raw = text.encode("ascii") + b" " * (len(text) % 2)
    item[tag] = RawDataElement(tag, vr or dictionary_VR(tag), len(raw), raw, 0, False, True)


def test_frame_numbers_with_a_decimal_comma_are_read_and_an_unreadable_acquisition_number_is_absent(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # float("2,0") raised: the whole file was quarantined as missing_geometry, its frames lost
    hu = images()
    path = tmp_path / "ct.dcm"
    write_enhanced_series(header(), list(hu), placements(), path)
    ds = pydicom.dcmread(path)
    measures = ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0]
    _set_raw(measures, "SliceThickness", "2,0")
    _set_raw(measures, "PixelSpacing", "0,7\\0,8")
    _set_raw(ds.PerFrameFunctionalGroupsSequence[6].PlanePositionSequence[0], "ImagePositionPatient", "-10\\-12\\-38,0")
    # a US, written as the IS of AcquisitionNumber it was copied from
    _set_raw(ds.PerFrameFunctionalGroupsSequence[2].FrameContentSequence[0], "FrameAcquisitionNumber", "1A", "IS")
    ds.save_as(path)
    with caplog.at_level("WARNING"):
        index = index_export(tmp_path, cfg(), on_error=QuarantineLog())
    assert not index.quarantine and len(index.usable) == N
    assert [r.acquisition_number for r in index.usable if r.frame == 3] == [None]
    assert [r.slice_thickness for r in index.usable] == [2.0] * N and {r.pixel_spacing for r in index.usable} == {(0.7, 0.8)}
    named = [r.getMessage() for r in caplog.records if "is no number" in r.getMessage()]
    assert named == ["header value is no number file=ct.dcm: FrameAcquisitionNumber (0020,9156) '1A': read as absent"]
    assert np.array_equal(volume(tmp_path).array, hu)


def test_an_unreadable_rescale_of_a_frame_quarantines_that_frame_naming_the_value(tmp_path: Path) -> None:
    path = tmp_path / "ct.dcm"
    write_enhanced_series(header(), list(images()), placements(), path)
    ds = pydicom.dcmread(path)
    rescale = Dataset()
    rescale.RescaleIntercept, rescale.RescaleType = "-1024", "HU"
    _set_raw(rescale, "RescaleSlope", "1.0 x")
    ds.PerFrameFunctionalGroupsSequence[3].PixelValueTransformationSequence = [rescale]
    ds.save_as(path)
    index = index_export(tmp_path, cfg(), on_error=QuarantineLog())
    assert len(index.usable) == N - 1
    (entry,) = index.quarantine
    assert entry.reason is QuarantineReason.INVALID_RESCALE and entry.message.startswith("ct.dcm frame 4 has a RescaleSlope")
    assert entry.message.endswith("(RescaleSlope (0028,1053) '1.0 x' is no number)")


def test_the_real_enhanced_ct_sample(shared_data: Path, tmp_path: Path) -> None:
    sample = shared_data / "pydicom_data_enhanced_ct" / "data_store" / "data" / "eCT_Supplemental.dcm"
    if not sample.exists():
        pytest.skip("the Enhanced CT sample is not present")
    # a DERIVED PERFUSION object: rCBF values, no HU anatomy
    reason, message = _refused(sample.parent)
    assert reason is QuarantineReason.UNSUPPORTED_MULTIFRAME and "DERIVED\\PRIMARY\\PERFUSION\\RCBF" in message
    # its frames, were they original images, are two slices holding pydicom's frames; their rescale
    # states RescaleType US (not HU), which they must then lose
    ds = pydicom.dcmread(sample)
    ds.SharedFunctionalGroupsSequence[0].CTImageFrameTypeSequence[0].FrameType = ["ORIGINAL", "PRIMARY", "AXIAL", "NONE"]
    ds.save_as(tmp_path / "ct.dcm")
    assert [(r.frame, r.reason) for r in read_instances(tmp_path / "ct.dcm", tmp_path)] == [
        (1, QuarantineReason.INVALID_RESCALE), (2, QuarantineReason.INVALID_RESCALE)]
    ds.SharedFunctionalGroupsSequence[0].PixelValueTransformationSequence[0].RescaleType = "HU"
    ds.save_as(tmp_path / "ct.dcm")
    records = read_instances(tmp_path / "ct.dcm", tmp_path)
    assert [(r.frame, r.reason) for r in records] == [(1, None), (2, None)]
    assert [r.position for r in records] == [
        tuple(float(v) for v in group.PlanePositionSequence[0].ImagePositionPatient) for group in ds.PerFrameFunctionalGroupsSequence
    ]
    for k, record in enumerate(records):
        assert np.array_equal(read_stored(record), pixel_array(tmp_path / "ct.dcm", index=k))
