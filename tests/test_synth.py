"""Tests of the synthetic export generator: the ground truth every other stage is tested against.

Each test reads the written files back with independent readers (pydicom, SimpleITK, dcm2niix,
csv/json) and checks them against ``ground_truth.json``.
"""

from __future__ import annotations

import collections
import csv
import hashlib
import io
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.errors import InvalidDicomError
from pydicom.uid import JPEGLosslessSV1, RLELossless

from ctcorpus.enums import QuarantineReason
from ctcorpus.errors import SynthError
from ctcorpus.reports.markup import to_plain_text
from ctcorpus.reports.sr import read_sr_report
from ctcorpus.synth import FINDING_LABELS, LABEL_TABLE, FindingSpec, generate_export, make_phantom
from ctcorpus.synth.dicom import SeriesHeader, SlicePlacement, build_slice, write_dataset, write_series
from ctcorpus.synth.report_text import render_corpus
from ctcorpus.synth.series import reslice
from ctcorpus.synth.truth import ExportTruth, load_truth
from ctcorpus.taxonomy import CT_RATE_LABELS

ARGS = dict(patients=2, seed=7, defects=True, phi=True, language="mixed", n_slices=24)


def _digests(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ExportTruth]:
    root = tmp_path_factory.mktemp("export")
    truth = generate_export(root, **ARGS)
    return root, truth


def _defect(truth: ExportTruth, kind: str):
    (defect,) = [d for d in truth.defects if d.kind == kind]
    return defect


def _series(truth: ExportTruth, defect: str):
    (series,) = [s for s in truth.series if s.defect == defect]
    return series


# --- phantom ---------------------------------------------------------------------------------


def test_phantom_left_is_patient_left_and_tissues_have_plausible_hu() -> None:
    p = make_phantom((40, 128, 128), (5.0, 3.0, 3.0), np.random.default_rng(0))
    assert p.hu.dtype == np.int16 and p.labels.dtype == np.uint8 and p.hu.shape == p.labels.shape
    xs = p.origin_mm[0] + np.arange(128) * 3.0

    def centre_x(name: str) -> float:
        return float(xs[np.nonzero(p.labels == LABEL_TABLE[name])[2]].mean())

    # Patient LEFT is +x (increasing column index) in LPS.
    assert centre_x("lung_left") > 40 and centre_x("lung_right") < -40
    assert centre_x("heart") > 5 and centre_x("spleen") > 40 and centre_x("liver") < -10
    median = {name: float(np.median(p.hu[p.labels == v])) for name, v in LABEL_TABLE.items()}
    assert -900 < median["lung_left"] < -800 and median["airways"] < -900
    assert median["bones"] > 300 and 0 < median["liver"] < 100 and 20 < median["heart"] < 60
    assert p.hu[0, 0, 0] == -1000  # air outside the body
    # Liver at the bottom (low z), airways above the carina only at the top.
    z_of = {n: float(np.nonzero(p.labels == LABEL_TABLE[n])[0].mean()) for n in ("liver", "airways")}
    assert z_of["liver"] < 15 < z_of["airways"]
    # A left-right flip is detectable: mirrored labels disagree with the original heart mask.
    heart = p.labels == LABEL_TABLE["heart"]
    overlap = (heart & heart[:, :, ::-1]).sum() / heart.sum()
    assert overlap < 0.8


def test_phantom_is_deterministic_and_places_findings_where_asked() -> None:
    specs = [FindingSpec(label, "left") for label in FINDING_LABELS]
    a = make_phantom((32, 96, 96), (5.0, 4.0, 4.0), np.random.default_rng(3), specs)
    b = make_phantom((32, 96, 96), (5.0, 4.0, 4.0), np.random.default_rng(3), specs)
    assert np.array_equal(a.hu, b.hu) and np.array_equal(a.labels, b.labels) and a.findings == b.findings
    by_label = {f.label: f for f in a.findings}
    assert set(by_label) == set(FINDING_LABELS) and set(FINDING_LABELS) <= set(CT_RATE_LABELS)
    assert by_label["lung_nodule"].center_mm[0] > 20 and by_label["lung_nodule"].side == "left"
    assert by_label["pleural_effusion"].center_mm[1] > 20  # dependent: posterior is +y
    nodule = by_label["lung_nodule"]
    k, j, i = (int(round((c - o) / s)) for c, o, s in
               zip(nodule.center_mm[::-1], a.origin_mm[::-1], a.spacing_zyx))
    assert a.hu[k, j, i] > -400  # solid tissue inside the lung
    plain = make_phantom((32, 96, 96), (5.0, 4.0, 4.0), np.random.default_rng(3))
    assert (a.labels == LABEL_TABLE["heart"]).sum() > 1.3 * (plain.labels == LABEL_TABLE["heart"]).sum()
    with pytest.raises(SynthError, match="side"):
        make_phantom((32, 96, 96), (5.0, 4.0, 4.0), np.random.default_rng(3), [FindingSpec("lung_nodule")])
    with pytest.raises(SynthError, match="unknown finding"):
        make_phantom((32, 96, 96), (5.0, 4.0, 4.0), np.random.default_rng(3), [FindingSpec("fracture")])


# --- DICOM writing ----------------------------------------------------------------------------


def test_fast_series_writer_gives_pydicoms_bytes(tmp_path: Path) -> None:
    header = SeriesHeader("P1", "Doe^J", "19500101", "F", "1.2", "20240101", "120000", "A1", "1.3", 2,
                          "CHEST", "1.4", "B30f", "SIEMENS", "SOMATOM", 5.0, (3.0, 3.0), signed=True)
    images = np.random.default_rng(0).integers(-1000, 1000, (3, 16, 16)).astype(np.int16)
    placements = [SlicePlacement(3 - k, (0.5, -1.25, 2.5 * k)) for k in range(3)]
    write_series(header, images, placements, [tmp_path / f"fast{k}" for k in range(3)])
    for k in range(3):
        write_dataset(build_slice(header, images[k], placements[k]), tmp_path / f"ref{k}")
        assert (tmp_path / f"fast{k}").read_bytes() == (tmp_path / f"ref{k}").read_bytes()
        ds = pydicom.dcmread(tmp_path / f"fast{k}")
        hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        assert np.array_equal(hu, images[k]) and ds.InstanceNumber == 3 - k


def test_reslice_interpolates_thin_and_averages_thick() -> None:
    vol = np.stack([np.full((2, 2), v, np.int16) for v in (0, 100, 200, 300)])
    thin = reslice(vol, [0.0, 5.0, 10.0, 15.0], [0.0, 2.5, 5.0], 2.5)
    assert thin[:, 0, 0].tolist() == [0, 50, 100]
    thick = reslice(vol, [0.0, 5.0, 10.0, 15.0], [7.5], 10.0)
    assert thick[0, 0, 0] == 150


# --- the export ---------------------------------------------------------------------------------


def test_same_seed_gives_identical_bytes(export, tmp_path: Path) -> None:
    root, _ = export
    again = generate_export(tmp_path / "again", **ARGS)
    assert load_truth(root) == again
    first, second = _digests(root), _digests(tmp_path / "again")
    assert len(first) > 300 and first == second
    other = generate_export(tmp_path / "other", patients=1, seed=8, n_slices=12, matrix=64)
    assert not set(_digests(tmp_path / "other").values()) & set(first.values())
    assert other.series[1].study_uid != load_truth(root).series[1].study_uid


def test_every_dicom_file_reads_and_names_do_not_sort_by_slice(export) -> None:
    root, truth = export
    broken = {p for d in truth.defects if d.kind in ("truncated", "not_dicom") for p in d.paths}
    reports = {p for d in truth.defects if d.kind == "sr_report" for p in d.paths}  # an SR document: no pixels
    files = [p for p in root.rglob("*") if p.is_file() and p.parent.name != "labels"
             and not p.name.startswith(("reports", "ground_truth"))]
    read = 0
    for path in files:
        rel = path.relative_to(root).as_posix()
        if rel in broken:
            continue
        ds = pydicom.dcmread(path)
        assert ds.pixel_array.dtype in (np.uint16, np.int16) if rel not in reports else ds.Modality == "SR"
        read += 1
    assert read == len(files) - len(broken) > 300 and len(reports) == 1
    primaries = [s for s in truth.series if s.kind == "axial"]
    assert all(list(s.files) != sorted(s.files) for s in primaries)
    assert any(s.files[0].startswith("DICOM/") for s in primaries)
    assert any(s.files[0].startswith("PAT_") for s in primaries)
    # z follows the instance number in some series and runs against it in others.
    runs = {s.instance_numbers[0] == 1 for s in truth.series if s.kind in ("axial", "recon")}
    assert runs == {True, False}


def test_simpleitk_reads_every_clean_series_with_the_true_geometry(export) -> None:
    root, truth = export
    clean = [s for s in truth.series if s.kind in ("axial", "recon")]
    assert len(clean) >= 8
    for s in clean:
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames([str(root / f) for f in s.files])
        image = reader.Execute()
        assert image.GetSize() == (s.columns, s.rows, s.n_slices)
        assert np.allclose(image.GetSpacing(), s.spacing_mm, atol=1e-4)
        assert np.allclose(image.GetOrigin(), s.origin_mm, atol=1e-4)
        assert np.allclose(image.GetDirection(), s.direction, atol=1e-6)
        ds = pydicom.dcmread(root / s.files[0], stop_before_pixels=True)
        assert (ds.SeriesNumber, ds.FrameOfReferenceUID, ds.SeriesInstanceUID) == (
            s.series_number, s.frame_of_reference_uid, s.series_uid)
        if s.kind == "axial":  # the label map is on the same grid and matches the pixels
            hu = sitk.GetArrayFromImage(image)
            labels = np.load(root / s.label_map)
            assert labels.shape == hu.shape
            assert -900 < np.median(hu[labels == LABEL_TABLE["lung_left"]]) < -800
            assert np.median(hu[labels == LABEL_TABLE["bones"]]) > 300
    by_study = collections.defaultdict(set)
    for s in truth.series:
        if s.kind != "defect":
            by_study[s.study_uid].add((s.kind, s.frame_of_reference_uid))
    for kinds in by_study.values():  # localizer, primary and recon share one frame of reference
        assert {k for k, _ in kinds} == {"localizer", "axial", "recon"} and len({f for _, f in kinds}) == 1


def test_localizer_and_second_reconstruction(export) -> None:
    root, truth = export
    for s in truth.series:
        if s.kind == "localizer":
            ds = pydicom.dcmread(root / s.files[0])
            assert "LOCALIZER" in ds.ImageType and s.expected_reasons == ("localizer",)
    study = truth.series[1].study_uid
    primary, recon = (next(s for s in truth.series if s.study_uid == study and s.kind == k) for k in ("axial", "recon"))
    assert recon.kernel != primary.kernel and recon.slice_thickness_mm != primary.slice_thickness_mm
    assert recon.series_number != primary.series_number and recon.series_uid != primary.series_uid
    assert recon.z_mm[0] == primary.z_mm[0] and recon.z_mm[-1] == primary.z_mm[-1]


def test_compressed_series_are_clean_and_decode(export) -> None:
    root, truth = export
    syntaxes = {s.transfer_syntax: s for s in truth.series if s.kind in ("axial", "recon")}
    for uid in (RLELossless, JPEGLosslessSV1):
        s = syntaxes[uid]
        assert s.expected_reasons == () and s.defect == ""
        ds = pydicom.dcmread(root / s.files[len(s.files) // 2])
        assert ds.file_meta.TransferSyntaxUID == uid
        hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        assert hu.min() >= -1024 and np.median(hu) < -500 < hu.max()  # air around a body


def test_findings_are_placed_and_referenced_consistently(export) -> None:
    root, truth = export
    series = {(s.study_uid, s.series_number): s for s in truth.series}
    assert truth.findings
    for study_uid, findings in truth.findings.items():
        for f in findings:
            s = series[(study_uid, f.series_number)]
            k = s.instance_numbers.index(f.instance_number)
            assert s.z_mm[k] == f.z_mm and abs(f.z_mm - f.center_mm[2]) <= s.spacing_mm[2] / 2 + 1e-6
            if f.label == "lung_nodule":  # solid tissue where a lung would be -850 HU
                ds = pydicom.dcmread(root / s.files[k])
                hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
                col = round((f.center_mm[0] - s.origin_mm[0]) / s.spacing_mm[0])
                row = round((f.center_mm[1] - s.origin_mm[1]) / s.spacing_mm[1])
                assert hu[row, col] > -500
                assert (f.center_mm[0] > 0) == (f.side == "left")


def test_labels_vary_across_studies(tmp_path: Path) -> None:
    truth = generate_export(tmp_path, patients=6, seed=1, matrix=64, n_slices=16)
    counts = collections.Counter(f.label for fs in truth.findings.values() for f in fs)
    assert set(counts) == set(FINDING_LABELS)
    assert all(0 < n < len(truth.findings) for n in counts.values())
    assert {r.language for r in truth.reports} == {"en"}


def test_image_defects_are_present_as_described(export) -> None:
    root, truth = export
    for d in truth.defects:
        assert d.expected_reason == "" or QuarantineReason(d.expected_reason)
    (truncated,) = _defect(truth, "truncated").paths
    with pytest.raises(Exception):
        pydicom.dcmread(root / truncated).pixel_array  # noqa: B018 - decoding is the check
    for path in _defect(truth, "not_dicom").paths:
        with pytest.raises(InvalidDicomError):
            pydicom.dcmread(root / path)
    modalities = {pydicom.dcmread(root / p).Modality for p in _defect(truth, "non_ct").paths}
    assert modalities == {"MR", "OT"}

    missing = _series(truth, "missing_slice")
    steps = np.diff(missing.z_mm)
    assert sorted(set(np.round(steps, 3))) == [missing.spacing_mm[2], 2 * missing.spacing_mm[2]]
    assert missing.expected_reasons == ("missing_slices",)

    dup = _defect(truth, "duplicate_slice")
    a, b = (pydicom.dcmread(root / p) for p in dup.paths)
    assert a.SOPInstanceUID == b.SOPInstanceUID and a.ImagePositionPatient == b.ImagePositionPatient

    tilt = _series(truth, "gantry_tilt")
    angle = _defect(truth, "gantry_tilt").detail["tilt_deg"]
    ds = pydicom.dcmread(root / tilt.files[0])
    col = np.array(ds.ImageOrientationPatient[3:], float)
    assert np.degrees(np.arctan2(col[2], col[1])) == pytest.approx(angle, abs=1e-3)
    assert float(ds.GantryDetectorTilt) == angle
    positions = np.array([pydicom.dcmread(root / f).ImagePositionPatient for f in tilt.files], float)
    assert np.ptp(positions[:, 0]) == 0 and np.ptp(positions[:, 1]) == 0 and np.all(np.diff(positions[:, 2]) > 0)
    assert tilt.spacing_mm[2] == pytest.approx(np.diff(positions[:, 2])[0] * np.cos(np.radians(angle)), abs=1e-4)

    uneven = _series(truth, "non_uniform_spacing")
    assert len(set(np.round(np.diff(uneven.z_mm), 3))) == 2

    mixed = _series(truth, "mixed_stacks")
    shapes = {(int(d.Rows), int(d.Columns)) for d in (pydicom.dcmread(root / f) for f in mixed.files)}
    uids = {pydicom.dcmread(root / f).SeriesInstanceUID for f in mixed.files}
    assert len(shapes) == 2 and uids == {mixed.series_uid}


def test_report_exports_and_report_defects(export) -> None:
    root, truth = export
    with open(root / "reports.csv", encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    jsonl = [json.loads(line) for line in (root / "reports.jsonl").read_text(encoding="utf-8").splitlines()]
    assert rows == jsonl and len(rows) == len(truth.reports) - 2  # minus the latin-1 row and the SR report
    assert list(rows[0]) == ["accession_number", "patient_id", "patient_name", "study_date", "report_text", "language"]
    study_accessions = {pydicom.dcmread(root / s.files[0]).AccessionNumber for s in truth.series if s.kind == "axial"}
    csv_accessions = {r["accession_number"] for r in rows}
    orphan = _defect(truth, "orphan_report").accession_number
    assert orphan in csv_accessions and orphan not in study_accessions
    no_report = _defect(truth, "no_report").accession_number
    assert no_report in study_accessions and no_report not in csv_accessions
    empty = _defect(truth, "empty_report").accession_number
    assert next(r for r in rows if r["accession_number"] == empty)["report_text"] == ""
    raw = (root / "reports_latin1.csv").read_bytes()
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")
    (latin,) = list(csv.DictReader(io.StringIO(raw.decode("cp1252"), newline="")))
    assert latin["language"] == "de" and any(ch in latin["report_text"] for ch in "äöüßÄÖÜ")
    assert latin["accession_number"] == _defect(truth, "latin1").accession_number
    rtf = _defect(truth, "rtf_report").accession_number
    assert _defect(truth, "superseded_report").accession_number == rtf
    versions = [r["report_text"] for r in rows if r["accession_number"] == rtf]  # preliminary, then final (RTF)
    assert len(versions) == 2 and versions[1].startswith("{\\rtf1") and not versions[0].startswith("{")
    assert sum(r["report_text"].startswith("{\\rtf1") for r in rows) == 1
    assert sorted(to_plain_text(r["report_text"]).text for r in rows) == sorted(
        r.text for r in truth.reports if r.defect not in ("latin1", "sr_report"))
    assert set(truth.report_files) == {"reports.csv", "reports.jsonl", "reports_latin1.csv"}
    group = _defect(truth, "group_case")  # a study with two orders: each order's number and report
    own = group.detail["study_accession_number"]
    axial = next(s for s in truth.series if s.kind == "axial"
                 and pydicom.dcmread(root / s.files[0]).AccessionNumber == own)
    ds = pydicom.dcmread(root / axial.files[0])
    assert [item.AccessionNumber for item in ds.RequestAttributesSequence] == [own, group.accession_number]
    assert group.accession_number in csv_accessions and group.accession_number not in study_accessions
    assert own == latin["accession_number"]  # its chest report is the latin-1 file's
    sr = _defect(truth, "sr_report")  # the empty RIS row's report, as a Basic Text SR in the DICOM export
    (report,) = [r for r in truth.reports if r.defect == "sr_report"]
    document = pydicom.dcmread(root / sr.paths[0])
    assert document.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.11" and document.StudyInstanceUID == report.study_uid
    assert sr.accession_number == empty and read_sr_report(root / sr.paths[0]).text == report.text


def test_phi_is_seeded_in_headers_and_recorded(export, tmp_path: Path) -> None:
    root, truth = export
    s = next(s for s in truth.series if s.kind == "axial")
    ds = pydicom.dcmread(root / s.files[0], stop_before_pixels=True)
    for keyword in ("PatientName", "PatientBirthDate", "OtherPatientIDs", "InstitutionAddress"):
        assert str(ds.data_element(keyword).value) in truth.phi_header_values
    clean = generate_export(tmp_path, patients=1, seed=1, matrix=64, n_slices=12, language="de")
    ds = pydicom.dcmread(tmp_path / clean.series[1].files[0], stop_before_pixels=True)
    assert clean.phi_header_values == () and "OtherPatientIDs" not in ds and ds.PatientBirthDate == ""
    assert {r.language for r in clean.reports} == {"de"}


def test_report_text_seeds_the_phi_forms_of_uk_swiss_austrian_reports_and_of_signature_blocks() -> None:
    # each form (its context, the PHI in the group) occurs in the synthetic reports, and there it is a
    # PHI span of its kind, whole: what the scrubber's recall and precision are measured on
    forms = {
        r"NHS (?:number|No:) (?P<phi>\d{3} \d{3} \d{4})\.": "id",
        r"(?:Hospital No\.:|Unit No:|Chart #:|Case #:|Acct:) (?P<phi>\d+)\.": "id",
        r"AHV-Nr\. (?P<phi>756\.\d{4}\.\d{4}\.\d{2})\.": "id",
        r"SV-Nummer: (?P<phi>\d{4} \d{6})\.": "id",
        r"(?:Befundnummer:|Untersuchungsnummer) (?P<phi>\d+(?:-\d)?)\.": "id",
        r"(?P<phi>(?:\+41 |0)44 \d{3} \d{2} \d{2}) ": "phone",
        r"(?:bleep|pager|Pieper|DECT|Rufnummer) (?P<phi>\d{3,4}) ": "phone",
        r"(?P<phi>(?:\d{1,2}\. )?(?:Jänner|Feber) \d{4}(?: \d{2}:\d{2} [^\s.]+)?)": "date",
        r"prior study of (?P<phi>[A-Z][a-z]+, \d{4})\.": "date",
        r"(?P<phi>[A-Z][a-zäöüß]+(?: Straße| Gasse)? \d+, (?:A-)?\d{4} (?:Zürich|Wien))\.": "address",
        r"(?P<phi>\d+ [A-Z]\w+ (?:St\.|Avenue), (?:Apt|Suite) \w+, [A-Z]\w+, [A-Z]{2} \d{5})\.": "address",
        r"^(?:Re|Betrifft): (?P<phi>[A-Z]\w+ [A-Z]\w+), (?:DOB|geb\.) ": "name",
        r"^Pat\.: [A-Z]\w+ [A-Z]\w+ \*(?P<phi>\d{2}\.\d{2}\.\d{4})": "date",
        r"^Patient: (?P<phi>[A-Z]\w+, [A-Z]\w+ [A-Z]\.), MRN ": "name",
        r"^Referring physician: (?P<phi>[A-ZÄÖÜ\-]+, [A-ZÄÖÜ]+)\n": "name",
        r"^(?:Reading|Interpreting|Supervising) physician: (?P<phi>[A-Z]\w+ [\w' \-]+)$": "name",
        r"^(?:Tech|Approved|Vidiert|Validiert durch|Freigegeben durch): (?:Dr\. )?(?P<phi>[\w' \-]+)$": "name",
        # the spellings the scrubber learnt to read: bracketed area codes and "00", an e-mail written
        # against spam, a link without its scheme, a month with two digits of its year or after its
        # day, a time and its zone after a date, a family name first after "Physician:"
        r"(?P<phi>\+49 \(30\) 123456|\(0 30\) 12 34 56|0049 30 123456) ": "phone",
        r"(?:e-mail at|E-Mail informiert unter) (?P<phi>john\(at\)klinik\.de) ": "address",
        r"(?:Images|Bilder): (?P<phi>pacs\.[\w.\-]+/viewer[/?][\w=]+)\.": "address",
        r"prior study of (?P<phi>[A-Z][a-z]{2}-\d{2}|[A-Z][a-z]{2} '\d{2}|\d{1,2}-[A-Z][a-z]{2})\.": "date",
        r" (?:on|am) (?P<phi>(?:\S+ ){0,2}\S+ \d{2}:\d{2} [^\s.]+)\.": "date",
        r"^Physician: (?P<phi>[\w' \-]+, [A-Z]\w+)$": "name",
    }
    seen = dict.fromkeys(forms, 0)
    for truth, _ in render_corpus(1, 400, phi_share=1.0):
        spans = {(s.start, s.end, s.kind) for s in truth.phi}
        for form, kind in forms.items():
            for match in re.finditer(form, truth.text, re.MULTILINE):
                assert (*match.span("phi"), kind) in spans, (form, match.group(0), truth.text)
                seen[form] += 1
    assert all(seen.values()), [form for form, count in seen.items() if not count]


def test_report_text_says_what_the_patient_is_after_patient_and_seeds_no_name_there() -> None:
    # "Pat. Raucher, 40 py": the scrubber's precision is measured on words after "Patient" that are no name
    form = re.compile(r"(?:Pat\.|Patientin|Patient) (?:Raucher|Nichtraucherin|Dialysepatient|smoker)")
    seen = 0
    for truth, _ in render_corpus(1, 400, phi_share=1.0):
        for match in form.finditer(truth.text):
            assert not any(s.start < match.end() and match.start() < s.end for s in truth.phi), truth.text
            seen += 1
    assert seen


def test_report_text_a_normal_heart_size_is_no_cardiomegaly() -> None:
    # the NLP stage reads "The heart is normal in size" as negative cardiomegaly: so does the truth,
    # and the statement is not written beside a cardiomegaly
    seen = 0
    for truth, _ in render_corpus(2, 200):
        for s in truth.sentences:
            if truth.text[s.start:s.end].lower() in ("the heart is normal in size.", "herz normal groß.",
                                                     "herz normal gross."):
                assert s.labels == {"cardiomegaly": "negative"} and truth.labels["cardiomegaly"] != "positive"
                seen += 1
    assert seen


def test_bad_arguments_raise_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(SynthError, match="language"):
        generate_export(tmp_path, language="fr")
    with pytest.raises(SynthError, match="patients"):
        generate_export(tmp_path, patients=1, defects=True)


def test_an_export_is_not_written_over_another(tmp_path: Path) -> None:
    # the second export's files were added to the first's (their names are drawn from the seed):
    # the folder held both exports and a ground truth of one
    generate_export(tmp_path / "x", patients=1, seed=1, matrix=64, n_slices=8)
    before = _digests(tmp_path / "x")
    with pytest.raises(SynthError, match="not empty") as info:
        generate_export(tmp_path / "x", patients=1, seed=2, matrix=64, n_slices=8)
    assert info.value.path == str(tmp_path / "x") and _digests(tmp_path / "x") == before


@pytest.mark.skipif(shutil.which("dcm2niix", path=str(Path(sys.executable).parent)) is None,
                    reason="dcm2niix binary not installed in the venv")
def test_dcm2niix_converts_a_clean_series(export, tmp_path: Path) -> None:
    root, truth = export
    s = next(s for s in truth.series if s.kind == "axial" and s.transfer_syntax.endswith("1.2.1"))
    src = tmp_path / "in"
    src.mkdir()
    for k, f in enumerate(s.files):
        shutil.copy(root / f, src / f"f{k:03d}")
    binary = shutil.which("dcm2niix", path=str(Path(sys.executable).parent))
    result = subprocess.run([binary, "-z", "n", "-f", "vol", "-o", str(tmp_path), str(src)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    image = sitk.ReadImage(str(tmp_path / "vol.nii"))
    assert image.GetSize() == (s.columns, s.rows, s.n_slices)
    assert np.allclose(image.GetSpacing(), s.spacing_mm, atol=1e-3)


def test_report_templates_move_no_image(tmp_path, monkeypatch):
    # the report texts draw from their own stream: a template that draws more (as new PHI forms did)
    # left later patients' scans, and the audit's leak test, with other images
    from ctcorpus.synth import export

    def hashes(folder: Path) -> dict[str, str]:
        return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(folder.rglob("*")) if p.is_file() and p.read_bytes()[128:132] == b"DICM"}

    generate_export(tmp_path / "a", patients=3, seed=4, matrix=64, n_slices=16)

    real = export.render_report

    def greedier(rng, **kwargs):
        rng.random(7)  # a template with more choices
        return real(rng, **kwargs)

    monkeypatch.setattr(export, "render_report", greedier)
    generate_export(tmp_path / "b", patients=3, seed=4, matrix=64, n_slices=16)
    assert hashes(tmp_path / "a") == hashes(tmp_path / "b") != {}
