"""Tests of the audit: seeded leaks found, none invented, fingerprints, diff, statistics, IO, HTML."""

from __future__ import annotations

import dataclasses
import doctest
import importlib
import json
import os
import pkgutil
import shutil
import subprocess
import sys
import tracemalloc
import unicodedata
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from matplotlib.figure import Figure
from matplotlib.text import Text
from scipy import ndimage

from ctcorpus.audit import (
    LEAK_KINDS,
    CorpusTables,
    FindingKind,
    Severity,
    audit_corpus,
    corpus_statistics,
    diff_corpora,
    load_corpus_tables,
    result_to_dict,
    volume_fingerprint,
    write_audit_report,
)
from ctcorpus.audit import leakage, report
from ctcorpus.audit.fingerprint import FINGERPRINT_SIZE, FINGERPRINT_VERSION, similar_pairs
from ctcorpus.audit.leakage import report_pairs
from ctcorpus.audit.stats import CATEGORICAL
from ctcorpus.config.audit import AuditConfig
from ctcorpus.errors import AuditError
from ctcorpus.synth.leaks import SEEDED_KINDS, match_leaks, synthetic_corpus_tables
from ctcorpus.taxonomy import CT_RATE_LABELS

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def seeded() -> tuple[CorpusTables, tuple]:
    return synthetic_corpus_tables(300, seed=3, leaks=2)


@pytest.fixture(scope="module")
def clean() -> CorpusTables:
    return synthetic_corpus_tables(300, seed=3)[0]


def _leaks(findings) -> list:
    return [f for f in findings if f.kind in LEAK_KINDS]


# ---------------------------------------------------------------- leaks


def test_clean_corpus_has_no_leak(clean: CorpusTables) -> None:
    result = audit_corpus(clean)
    assert _leaks(result.findings) == []
    assert result.count(Severity.HIGH) == 0


def test_every_seeded_leak_is_found_and_none_invented(seeded) -> None:
    tables, expected = seeded
    assert {leak.kind for leak in expected} == set(SEEDED_KINDS) and len(expected) == 10
    score = match_leaks(audit_corpus(tables).findings, expected)
    assert (score.found, score.total, score.false) == (10, 10, 0), (score.missed, score.false_findings)


def test_projection_candidates_match_exact_search(seeded) -> None:
    tables, expected = seeded
    exact = audit_corpus(tables)
    projected = audit_corpus(tables, config=AuditConfig(volume_exact_limit=50))
    assert _leaks(projected.findings) == _leaks(exact.findings)
    assert match_leaks(projected.findings, expected).found == len(expected)


def test_candidates_are_scored_a_chunk_at_a_time() -> None:
    """Every pair a candidate (a corpus of look-alike scans): both rows of all 19,900 pairs were
    gathered at once, 390 MB for 200 fingerprints; a chunk at a time the search holds about 80 MB."""
    rng = np.random.default_rng(0)
    matrix = rng.standard_normal((200, FINGERPRINT_SIZE)).astype(np.float32)
    matrix[1] = matrix[0] + 0.01 * matrix[2]
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    tracemalloc.start()
    try:
        pairs = similar_pairs(matrix, 0.98, exact_limit=2, candidate_threshold=-1.0, dims=64, seed=0)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert pairs[["i", "j"]].values.tolist() == [[0, 1]]
    assert pairs["similarity"].iloc[0] == pytest.approx(float(matrix[0] @ matrix[1]))
    assert peak < 120 * 2**20


def test_a_nan_fingerprint_does_not_hide_near_copies_from_the_projection(seeded) -> None:
    """A volume whose HU held a NaN fingerprints as NaN: its row made the corpus mean, and so every
    projected fingerprint, NaN, and above the exact limit no near copy was a candidate any more."""
    tables, expected = seeded
    volumes = tables.volumes.copy()
    volumes.at[5, "fingerprint"] = np.full(len(volumes.at[5, "fingerprint"]), np.nan, np.float32)
    result = audit_corpus(dataclasses.replace(tables, volumes=volumes), config=AuditConfig(volume_exact_limit=50))
    score = match_leaks(result.findings, expected)
    assert (score.found, score.false) == (len(expected), 0), score.missed


def test_missing_ids_are_unknown_not_shared(seeded) -> None:
    """Two rows without a study id (or array hash) are not one study (or array): their copies are reported."""
    tables, expected = seeded
    unhashed = dataclasses.replace(tables, volumes=tables.volumes.assign(hu_sha256=""))
    near = [leak for leak in expected if leak.kind == FindingKind.NEAR_DUPLICATE_VOLUME]
    assert match_leaks(audit_corpus(unhashed).findings, near).found == len(near)
    reports = tables.reports.iloc[:2].assign(study_id=None, split=["train", "test"], text="Small nodule, left lower lobe.")
    found = leakage.duplicate_reports(reports.assign(corpus="c"), AuditConfig(), cross=False)
    assert [(f.kind, set(f.ids), f.severity) for f in found] == [
        (FindingKind.DUPLICATE_REPORT, set(reports["report_id"]), Severity.HIGH)
    ]


def test_a_row_without_a_split_does_not_stop_the_leak_report() -> None:
    """A patient in train and test, one of whose reports has no split: the leak is reported, not a
    TypeError from sorting the null among the split names, and named "(no split)", not left blank
    ("p1 in , test, train"), in its detail and on the page."""
    tiny = _tiny()
    volumes = tiny.volumes.assign(patient_id=["p1", "p1", "p3"], split=["train", "test", "test"])
    reports = tiny.reports.assign(patient_id=["p1", "p1", "p3"], split=["train", None, "test"])
    found = audit_corpus(dataclasses.replace(tiny, volumes=volumes, reports=reports)).findings
    patients = [f for f in found if f.kind == FindingKind.PATIENT_ACROSS_GROUPS]
    assert [(f.ids, f.groups, f.severity) for f in patients] == [(("p1",), ("", "test", "train"), Severity.HIGH)]
    assert patients[0].detail == "patient_id p1 in (no split), test, train"
    old = dataclasses.replace(tiny, volumes=volumes, reports=reports, name="old")
    against = audit_corpus(dataclasses.replace(tiny, volumes=volumes.assign(split=["train", "train", "test"]),
                                               reports=reports.assign(split=["train", "train", "test"])), against=old)
    crossed = [f for f in against.findings if f.kind == FindingKind.PATIENT_ACROSS_GROUPS]
    assert [f.detail for f in crossed] == ["patient_id p1 in old/(no split), old/test, old/train, tiny/train"]
    page = report.render_html(audit_corpus(old))
    assert "<td>(no split), test, train</td>" in page and "<td>, test, train</td>" not in page


@pytest.mark.parametrize("splits", [["train", "", "test"], ["train", "  ", "test"], ["train ", "train", " test"]])
def test_a_blank_split_is_no_split_and_spaces_around_one_are_dropped(splits: list[str]) -> None:
    """A report of split '' (a CSV's empty cell) beside its patient's train volume was a leak between
    '' and train, high, where a null split is none; a report of split 'train ' one between 'train '
    and 'train'."""
    tiny = _tiny()
    result = audit_corpus(dataclasses.replace(tiny, reports=tiny.reports.assign(split=splits)))
    assert _leaks(result.findings) == []
    lengths = result.stats.report_lengths.set_index("split")["reports"].to_dict()
    assert lengths == ({"train": 2, "test": 1} if splits[0] == "train " else {"": 1, "train": 1, "test": 1})


def test_numbered_splits_are_read_as_text(tmp_path: Path) -> None:
    """A table whose splits are numbers (a hand-made table, a split=0/1 layout as an int column; a
    null makes them floats) stopped the audit with a TypeError, sorting them beside text splits."""
    tiny = _tiny()
    fingerprints = tiny.volumes["fingerprint"].where(tiny.volumes["volume_id"] != "v2", None)
    volumes = tiny.volumes.assign(patient_id=["p1", "p1", "p3"], split=[0, 1, 1], fingerprint=fingerprints)
    reports = tiny.reports.assign(patient_id=["p1", "p1", "p3"], split=[0.0, None, 1.0])
    numbered = dataclasses.replace(tiny, volumes=volumes, reports=reports)
    result = audit_corpus(numbered)
    assert result.stats.splits["split"].tolist() == ["", "0", "1"]  # "": the report of no split
    assert set(result.stats.label_prevalence["split"]) == {"", "0", "1"}
    patients = [f for f in result.findings if f.kind == FindingKind.PATIENT_ACROSS_GROUPS]
    assert [(f.ids, f.groups, f.severity) for f in patients] == [(("p1",), ("", "0", "1"), Severity.HIGH)]
    against = audit_corpus(numbered, against=dataclasses.replace(tiny, name="text"))
    assert any(f.groups == ("text/train", "tiny/", "tiny/0", "tiny/1") for f in against.findings)
    _write_corpus(numbered, tmp_path / "numbered")
    loaded = load_corpus_tables(tmp_path / "numbered")
    assert set(loaded.volumes["split"]) == {"0", "1"}
    assert "<h2>Splits</h2>" in report.render_html(audit_corpus(loaded, against=tiny))


def test_leaks_across_splits_are_high(seeded) -> None:
    tables, expected = seeded
    findings = audit_corpus(tables).findings
    for leak in expected:
        hit = next(f for f in findings if f.kind == leak.kind and set(leak.ids) <= set(f.ids))
        assert hit.severity == (Severity.HIGH if len(hit.groups) > 1 else Severity.MEDIUM)
    kinds = {f.kind for f in findings if f.severity == Severity.HIGH}
    assert FindingKind.PATIENT_ACROSS_GROUPS in kinds and FindingKind.SAME_PERSON_TWO_IDS in kinds


def test_three_copies_of_one_scan_are_one_finding(clean: CorpusTables) -> None:
    volumes = clean.volumes
    row = volumes.iloc[0]
    copies = pd.DataFrame([{**row.to_dict(), "volume_id": f"copy{k}", "study_id": f"other{k}"} for k in range(2)])
    tables = dataclasses.replace(clean, volumes=pd.concat([volumes, copies], ignore_index=True))
    found = [f for f in audit_corpus(tables).findings if f.kind == FindingKind.DUPLICATE_VOLUME]
    assert len(found) == 1 and {"copy0", "copy1", row["volume_id"]} <= set(found[0].ids)
    assert found[0].detail.startswith("3 volumes of one scan (exact copies)")


def test_a_cluster_of_exact_and_near_copies_says_both(clean: CorpusTables) -> None:
    """An exact copy and a resampled one of one scan are one finding: it said 'exact copies' beside a
    score (its lowest pair) below 1."""
    row = clean.volumes.iloc[0].to_dict()
    others = clean.volumes.loc[clean.volumes["patient_id"] != row["patient_id"], "patient_id"].unique()
    noise = np.random.default_rng(0).standard_normal(len(row["fingerprint"])).astype(np.float32)
    exact = {**row, "volume_id": "EXACT", "study_id": "S-EXACT", "patient_id": others[0]}
    near = {**row, "volume_id": "NEAR", "study_id": "S-NEAR", "patient_id": others[1], "hu_sha256": "e" * 64}
    near["fingerprint"] = row["fingerprint"] + 0.05 * noise
    volumes = pd.concat([clean.volumes, pd.DataFrame([exact, near])], ignore_index=True)
    found = [f for f in audit_corpus(dataclasses.replace(clean, volumes=volumes)).findings if "NEAR" in f.ids]
    ids = tuple(sorted(["EXACT", "NEAR", row["volume_id"]]))
    assert [(f.kind, f.ids) for f in found] == [(FindingKind.DUPLICATE_VOLUME, ids)]
    assert found[0].score < 1 and "3 volumes of one scan (exact and near-identical copies)" in found[0].detail


def test_near_duplicates_are_reported_between_patients_only(clean: CorpusTables) -> None:
    """A follow-up scan shares its patient's anatomy: near-identical, but no leak; under another patient it is."""
    row = clean.volumes.iloc[0].to_dict()
    noise = np.random.default_rng(0).standard_normal(len(row["fingerprint"])).astype(np.float32)
    follow_up = {**row, "volume_id": "FOLLOW", "study_id": "S-FOLLOW", "hu_sha256": "e" * 64}
    follow_up["fingerprint"] = row["fingerprint"] + 0.05 * noise
    other = clean.volumes[clean.volumes["patient_id"] != row["patient_id"]].iloc[0]
    for patient, expected in ((row["patient_id"], 0), (other["patient_id"], 1)):
        volumes = pd.concat([clean.volumes, pd.DataFrame([{**follow_up, "patient_id": patient}])], ignore_index=True)
        found = [
            f
            for f in audit_corpus(dataclasses.replace(clean, volumes=volumes)).findings
            if f.kind == FindingKind.NEAR_DUPLICATE_VOLUME
        ]
        assert len(found) == expected
    assert {"FOLLOW", row["volume_id"]} <= set(found[0].ids) and found[0].score > 0.99


def test_a_studys_own_volumes_and_reports_are_no_copies_its_text_elsewhere_is(clean: CorpusTables) -> None:
    """A second reconstruction of a scan and the versions of its study's report (re-sent, amended)
    belong to one study, in one split: no duplicate and no leak. The same text under another
    patient's study is one finding, joining the versions it copies."""
    volume = clean.volumes.iloc[0].to_dict()
    noise = np.random.default_rng(1).standard_normal(len(volume["fingerprint"])).astype(np.float32)
    recon = {**volume, "volume_id": "RECON", "series_id": "X-RECON", "hu_sha256": "e" * 64}
    recon["fingerprint"] = volume["fingerprint"] + 0.05 * noise
    report = clean.reports[clean.reports["study_id"] == volume["study_id"]].iloc[0].to_dict()
    versions = [
        {**report, "report_id": "RESENT"},
        {**report, "report_id": "AMENDED", "text": report["text"] + " Addendum: no change on review."},
    ]
    volumes = pd.concat([clean.volumes, pd.DataFrame([recon])], ignore_index=True)
    reports = pd.concat([clean.reports, pd.DataFrame(versions)], ignore_index=True)
    own = {volume["volume_id"], "RECON", report["report_id"], "RESENT", "AMENDED", volume["study_id"]}
    found = audit_corpus(dataclasses.replace(clean, volumes=volumes, reports=reports)).findings
    assert [f for f in found if own & set(f.ids)] == []
    other = clean.reports[clean.reports["patient_id"] != volume["patient_id"]].iloc[0]
    copied = reports.assign(text=reports["text"].where(reports["report_id"] != other["report_id"], report["text"]))
    found = audit_corpus(dataclasses.replace(clean, volumes=volumes, reports=copied)).findings
    ids = tuple(sorted([report["report_id"], "RESENT", "AMENDED", other["report_id"]]))
    assert [(f.kind, f.ids) for f in found if own & set(f.ids)] == [(FindingKind.DUPLICATE_REPORT, ids)]


def _with_ids(tables: CorpusTables, column: str, ids: dict[str, str], **rest: dict[str, str]) -> CorpusTables:
    """``tables`` with ``column`` of the volumes (and reports) of each patient of ``ids`` set to its value."""
    def put(frame: pd.DataFrame, name: str, values: dict[str, str]) -> pd.DataFrame:
        return frame.assign(**{name: frame["patient_id"].map(values).fillna(frame[name]) if values else frame[name]})

    volumes = put(tables.volumes, column, ids)
    for name, values in rest.items():
        volumes = put(volumes, name, values)
    reports = put(tables.reports, column, ids) if column in tables.reports.columns else tables.reports
    return dataclasses.replace(tables, volumes=volumes, reports=reports)


def _first_patients(tables: CorpusTables, per_split: int) -> list[str]:
    """The first ``per_split`` patients of every split."""
    return tables.volumes.drop_duplicates("patient_id").groupby("split").head(per_split)["patient_id"].tolist()


def test_a_placeholder_accession_is_no_leak_but_a_finding(clean: CorpusTables) -> None:
    """A table ctcorpus did not write may keep the "00000000" or "N/A" of a study without accession
    number, pseudonymized or not: every study with it shared one accession_id, a high-severity leak
    wherever two fell in other splits. An accession of two patients stays a leak (a mapping error)."""
    patients = _first_patients(clean, 6)
    ids = {p: "acc_pseudonym_of_zeros" for p in patients[0::3]}
    ids |= {p: "00000000" for p in patients[1::3][:2]} | {p: " n/a " for p in patients[1::3][2:4]}
    ids |= dict.fromkeys(patients[2::3][:2], "acc_of_two")
    tables = _with_ids(clean, "accession_id", ids)
    result = audit_corpus(tables)
    found = {f.ids: f for f in result.findings if f.kind in (FindingKind.ACCESSION_ACROSS_GROUPS, FindingKind.PLACEHOLDER_ID)}
    assert {ids: (f.kind, f.severity) for ids, f in found.items()} == {
        ("acc_pseudonym_of_zeros",): (FindingKind.PLACEHOLDER_ID, Severity.MEDIUM),
        ("00000000",): (FindingKind.PLACEHOLDER_ID, Severity.MEDIUM),
        (" n/a ",): (FindingKind.PLACEHOLDER_ID, Severity.MEDIUM),
        ("acc_of_two",): (FindingKind.ACCESSION_ACROSS_GROUPS, Severity.HIGH),
    }
    assert found[("acc_pseudonym_of_zeros",)].score == 6 and "held by 6 patient_ids" in found[("acc_pseudonym_of_zeros",)].detail
    assert "written for none" in found[("00000000",)].detail
    assert found[("00000000",)].groups == tuple(sorted(set(clean.volumes.set_index("patient_id").loc[patients[1::3][:2], "split"])))
    accession = result.coverage.set_index("check").loc[FindingKind.ACCESSION_ACROSS_GROUPS.value]
    unchecked = tables.volumes["patient_id"].isin([p for p, a in ids.items() if a != "acc_of_two"]).sum()
    assert (accession["rows"] - accession["checked"], accession["rows"]) == (unchecked, len(tables.volumes))


def test_a_placeholder_patient_id_is_no_leak_but_a_finding(clean: CorpusTables) -> None:
    """A patient id held by several persons (patient_key) in several splits is a placeholder, not one patient."""
    patients = _first_patients(clean, 1)
    tables = _with_ids(clean, "patient_id", dict.fromkeys(patients, "pat_placeholder"))
    found = [f for f in audit_corpus(tables).findings if "pat_placeholder" in f.ids]
    assert [(f.kind, f.severity, f.score) for f in found] == [(FindingKind.PLACEHOLDER_ID, Severity.MEDIUM, 3.0)]


def test_a_placeholder_shared_by_two_versions_is_no_leak_between_them(clean: CorpusTables) -> None:
    """Two versions written by a ctcorpus that pseudonymized "00000000": its accession_id is in every
    split of both, a leak between them for every pair of splits; each is named a placeholder in its corpus."""
    ids = dict.fromkeys(_first_patients(clean, 2), "acc_pseudonym_of_zeros")
    new = _with_ids(dataclasses.replace(clean, name="v2"), "accession_id", ids)
    old = _with_ids(dataclasses.replace(clean, name="v1"), "accession_id", ids)
    found = [f for f in audit_corpus(new, against=old).findings if "acc_pseudonym_of_zeros" in f.ids]
    assert [(f.kind, f.groups[0]) for f in found] == [(FindingKind.PLACEHOLDER_ID, "test"),
                                                      (FindingKind.PLACEHOLDER_ID, "v1/test")]


def test_same_person_in_one_split_is_medium(clean: CorpusTables) -> None:
    volumes = clean.volumes.copy()
    patient = volumes["patient_id"].iloc[0]
    study = volumes.loc[volumes["patient_id"] == patient, "study_id"].iloc[0]
    volumes.loc[volumes["study_id"] == study, "patient_id"] = "RENAMED"
    tables = dataclasses.replace(clean, volumes=volumes)
    found = [f for f in audit_corpus(tables).findings if f.kind == FindingKind.SAME_PERSON_TWO_IDS]
    renamed_all = (clean.volumes["patient_id"] == patient).sum() == (clean.volumes["study_id"] == study).sum()
    if renamed_all:  # the only study: no second id left, nothing to find
        assert found == []
    else:
        assert len(found) == 1 and found[0].ids == tuple(sorted((patient, "RENAMED")))
        assert found[0].severity == Severity.MEDIUM


def test_against_other_corpus(clean: CorpusTables) -> None:
    other = synthetic_corpus_tables(200, seed=11)[0]
    other = dataclasses.replace(other, name="public-benchmark")
    # the benchmark's test set holds a copy of one of our training volumes
    train = clean.volumes[clean.volumes["split"] == "train"].iloc[0]
    target = other.volumes[other.volumes["split"] == "test"].iloc[0]
    copy = {**train.to_dict(), "volume_id": "BENCH-COPY", "split": "test"}
    copy.update({c: target[c] for c in ("patient_id", "study_id", "accession_id", "patient_key")})
    other = dataclasses.replace(other, volumes=pd.concat([other.volumes, pd.DataFrame([copy])], ignore_index=True))
    result = audit_corpus(clean, against=other)
    cross = [f for f in result.findings if f.kind == FindingKind.DUPLICATE_VOLUME]
    assert len(cross) == 1
    assert set(cross[0].ids) == {"BENCH-COPY", train["volume_id"]} and cross[0].severity == Severity.HIGH
    assert cross[0].groups == ("public-benchmark/test", "synthetic-3/train")


def test_against_itself_reports_no_leak(clean: CorpusTables) -> None:
    """Two versions with the same samples in the same splits share everything and leak nothing."""
    result = audit_corpus(clean, against=dataclasses.replace(clean, name="previous"))
    assert _leaks(result.findings) == []
    assert result.diff is not None and not result.diff.volumes.added and result.diff.volumes.changed.empty


def test_a_leak_both_versions_hold_is_named_once(seeded) -> None:
    """Against an earlier version holding the same leaks, each copy was named three times (within,
    and across the versions once per direction) and each patient twice; a copy whose other half
    moved to another split in the earlier version is still a leak between the versions."""
    tables, _ = seeded
    within = _leaks(audit_corpus(tables).findings)
    assert _leaks(audit_corpus(tables, against=dataclasses.replace(tables, name="old")).findings) == within
    leak = next(f for f in within if f.kind == FindingKind.PATIENT_ACROSS_GROUPS)
    moved = tables.volumes["patient_id"].eq(leak.ids[0])
    old = dataclasses.replace(tables, name="old", volumes=tables.volumes.assign(split=tables.volumes["split"].mask(moved, "elsewhere")))
    across = [f for f in audit_corpus(tables, against=old).findings if f.kind == FindingKind.PATIENT_ACROSS_GROUPS and f not in within]
    assert [f.ids for f in across] == [leak.ids] and "old/elsewhere" in across[0].groups


def test_two_corpora_of_one_name_are_told_apart_everywhere(clean: CorpusTables) -> None:
    """Two folders named v1 (dataset_version is the folder's name): the leak findings named the other
    'v1 (other)' while the diff, its split_changed finding, the header and the version plot said v1 and v1."""
    patient = clean.volumes.at[0, "patient_id"]
    volumes, reports = (t.assign(split=t["split"].mask(t["patient_id"] == patient, "moved")) for t in (clean.volumes, clean.reports))
    result = audit_corpus(dataclasses.replace(clean, volumes=volumes, reports=reports), against=clean)
    other = f"{clean.name} (other)"
    assert result.against == result.diff.old_name == other and result.diff.new_name == clean.name
    moved = [f.groups for f in result.findings if f.kind == FindingKind.SPLIT_CHANGED]
    groups = {g for f in result.findings if f.kind == FindingKind.PATIENT_ACROSS_GROUPS for g in f.groups}
    crossed = {g.rsplit("/", 1)[0] for g in groups if "/" in g}  # corpus/split against the other corpus
    assert moved == [(other, clean.name)] and crossed == {other, clean.name}


# ---------------------------------------------------------------- reports


def test_report_near_duplicates_need_shared_wording() -> None:
    base = (
        "The heart is normal in size. "
        "There is a small left pleural effusion with adjacent atelectasis of the lower lobe."
    )
    edited = base.replace("small", "moderate").replace("adjacent", "basal")
    other = "Lungs are clear. No pleural effusion. Degenerative changes of the thoracic spine without fracture noted."
    pairs = report_pairs(pd.Series([base, edited, other, ""]), AuditConfig())
    assert pairs[["i", "j"]].values.tolist() == [[0, 1]]
    assert 0.5 <= pairs["similarity"].iloc[0] < 1.0


@pytest.mark.parametrize("form", ["NFD", "upper"])
def test_a_copy_decomposed_or_upper_cased_is_an_exact_copy(form: str) -> None:
    """A German report copied as NFD (umlauts as combining marks, split by \\w) or upper-cased ("GRÖSSE",
    lower-cased "grösse" beside "größe") had other words in every umlaut: no copy found at all."""
    text = "Rundherd im rechten Oberlappen, Größe 8 mm. Kein Pleuraerguss. Mäßiges Emphysem. Herzgröße normal."
    copy = unicodedata.normalize("NFD", text) if form == "NFD" else text.upper()
    reports = pd.DataFrame({"report_id": ["R1", "R2"], "study_id": ["S1", "S2"], "patient_id": ["P1", "P2"],
                            "split": ["train", "test"], "text": [text, copy], "corpus": "c"})
    found = leakage.duplicate_reports(reports, AuditConfig(), cross=False)
    assert [(f.kind, f.ids, f.severity, f.score) for f in found] == [
        (FindingKind.DUPLICATE_REPORT, ("R1", "R2"), Severity.HIGH, 1.0)
    ]


def test_a_report_template_copied_into_many_studies_stays_linear() -> None:
    """k copies of one text were k^2 / 2 LSH hits and pairs; one text and a forest of k - 1 edges suffice."""
    template = "No acute cardiopulmonary abnormality. Normal CT of the chest."
    edited = template.replace("Normal", "Unremarkable")
    texts = [template] * 300 + [edited] * 200
    reports = pd.DataFrame(
        {
            "report_id": [f"R{k}" for k in range(500)],
            "study_id": [f"S{k}" for k in range(500)],
            "patient_id": [f"P{k}" for k in range(500)],
            "split": ["train", "test"] * 250,
            "text": texts,
            "corpus": "c",
        }
    )
    pairs = report_pairs(reports["text"], AuditConfig(report_similarity=0.3))
    assert pairs[["i", "j"]].values.tolist() == [[0, 300]]
    assert len(leakage._equal_pairs(reports, "text", cross=False, same=("study_id",))) == 498
    found = leakage.duplicate_reports(reports, AuditConfig(report_similarity=0.3), cross=False)
    assert [(f.kind, len(f.ids), f.severity) for f in found] == [(FindingKind.DUPLICATE_REPORT, 500, Severity.HIGH)]
    assert found[0].score < 1.0  # the cluster holds the near pair too


def test_variants_of_a_structured_template_are_searched_in_linear_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    """k distinct reports a few words apart are each other's near copies where no wording counts as
    template: all k^2 / 2 of their pairs were verified and kept (two minutes and 72 MB for 1,500); a
    tree of k - 1 pairs joins the cluster. By default the wording they all share is template: no copy."""
    rng = np.random.default_rng(0)
    template = ("Lungs: no nodule, no consolidation, no ground glass opacity. Pleura: no effusion, no thickening. "
                "Heart: normal size, no pericardial effusion. Mediastinum: no enlarged lymph nodes. Aorta: normal "
                "calibre. Bones: no suspicious lesion. Upper abdomen: unremarkable. Impression: normal chest CT.")
    words = template.split()
    texts = []
    for k in range(200):
        variant = list(words)
        for position in rng.choice(len(words), 2, replace=False):
            variant[position] = f"w{k}x{position}"
        texts.append(" ".join(variant))
    checked = []
    monkeypatch.setattr(leakage, "_jaccard", lambda a, b: checked.append(1) or len(a & b) / len(a | b))
    wording = AuditConfig(report_template_share=1.0)
    pairs = report_pairs(pd.Series(texts), wording)
    assert len(pairs) == 199 and len(checked) < 2 * 200
    assert (pairs["i"] < pairs["j"]).all() and pairs["similarity"].between(0.5, 1.0).all()
    reports = pd.DataFrame({"report_id": [f"R{k}" for k in range(200)], "study_id": [f"S{k}" for k in range(200)],
                            "patient_id": [f"P{k}" for k in range(200)], "split": ["train", "test"] * 100,
                            "text": texts, "corpus": "c"})
    found = leakage.duplicate_reports(reports, wording, cross=False)
    assert [(f.kind, len(f.ids), f.severity) for f in found] == [(FindingKind.NEAR_DUPLICATE_REPORT, 200, Severity.HIGH)]
    assert leakage.duplicate_reports(reports, AuditConfig(), cross=False) == []


def test_a_template_sentence_everyone_shares_makes_no_near_copies() -> None:
    """Short reports alike only in "No pleural effusion." were near copies of other patients (Jaccard
    0.5: "Emphysema. No pleural effusion." and "No pleural effusion."), a leak across splits; a
    report copied with a word changed still is one, and exact copies of the template still are."""
    findings = ["Emphysema", "Cardiomegaly", "Small hiatal hernia", "Atelectasis left base", "Mild bronchiectasis",
                "Coronary artery calcification", "Thyroid nodule", "Rib fracture", "Mosaic attenuation",
                "Lung nodule 4 mm", "Aortic ectasia", "Tree in bud opacities"]
    texts = [f"{finding}. No pleural effusion." for finding in findings] + ["No pleural effusion."] * 2
    texts += ["No pleural effusion. No pneumothorax.", "No pleural effusion. No consolidation."]
    copied = "Spiculated mass of 23 mm in the right upper lobe with hilar lymphadenopathy. No pleural effusion."
    texts += [copied, copied.replace("23", "25")]
    n = len(texts)
    reports = pd.DataFrame({"report_id": [f"R{k}" for k in range(n)], "study_id": [f"S{k}" for k in range(n)],
                            "patient_id": [f"P{k}" for k in range(n)], "split": ["train", "test"] * (n // 2),
                            "text": texts, "corpus": "c"})
    found = leakage.duplicate_reports(reports, AuditConfig(), cross=False)
    assert sorted((f.kind, f.ids) for f in found) == [
        (FindingKind.DUPLICATE_REPORT, ("R12", "R13")),
        (FindingKind.NEAR_DUPLICATE_REPORT, (f"R{n - 2}", f"R{n - 1}")),
    ]


# ---------------------------------------------------------------- fingerprints


def _phantom(seed: int, shape=(40, 64, 64), spacing=(5.0, 6.0, 6.0)) -> np.ndarray:
    """A chest-like phantom: elliptic body, two lungs, spine, a few lesions, noise (differs per seed)."""
    rng = np.random.default_rng(seed)
    z, y, x = np.meshgrid(*[(np.arange(n) - n / 2) * s for n, s in zip(shape, spacing)], indexing="ij")
    volume = np.full(shape, -1000.0)
    a, b = rng.uniform(120, 170), rng.uniform(90, 130)
    cy, cx = rng.uniform(-20, 20, 2)
    volume[((x - cx) / a) ** 2 + ((y - cy) / b) ** 2 < 1] = 40
    for side in (-1, 1):
        centre = cx + side * a * rng.uniform(0.35, 0.5)
        axes = (a * rng.uniform(0.25, 0.35), b * rng.uniform(0.5, 0.7), rng.uniform(80, 130))
        zc = rng.uniform(-30, 30)
        volume[((x - centre) / axes[0]) ** 2 + ((y - cy) / axes[1]) ** 2 + ((z - zc) / axes[2]) ** 2 < 1] = -850
    volume[((x - cx) / 15) ** 2 + ((y - cy - 0.7 * b) / 15) ** 2 < 1] = 700
    for _ in range(5):
        c, r = rng.uniform(-100, 100, 3), rng.uniform(5, 15)
        volume[(x - c[2]) ** 2 + (y - c[1]) ** 2 + (z - c[0]) ** 2 < r * r] = rng.uniform(-100, 200)
    return (volume + rng.normal(0, 20, shape)).astype(np.int16)


def _chest_phantom(seed: int) -> np.ndarray:
    """A chest CT's z range, 350 mm: the phantom's lungs (at most 160 mm from the middle) lie inside it."""
    return _phantom(seed, shape=(70, 64, 64))


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / a.size)


def test_fingerprint_survives_resampling_and_small_crops() -> None:
    threshold = AuditConfig().volume_similarity
    volume, spacing = _phantom(3), (5.0, 6.0, 6.0)
    reference = volume_fingerprint(volume, spacing)
    assert reference.dtype == np.float32 and abs(float(reference.mean())) < 1e-4
    resampled = ndimage.zoom(volume.astype(np.float32), (5 / 3, 6 / 4.5, 6 / 4.5), order=1)
    assert _corr(volume_fingerprint(resampled, (3.0, 4.5, 4.5)), reference) > 0.99
    cropped = volume[3:-2, 3:-3, 2:-4]
    assert _corr(volume_fingerprint(cropped, spacing), reference) > 0.99
    rescaled = np.round(volume * 1.0 + 3).astype(np.int16)  # a rounding or offset step changes every byte
    assert _corr(volume_fingerprint(rescaled, spacing), reference) > threshold


@pytest.mark.parametrize("end", ["first", "last"])
def test_fingerprint_survives_a_50_mm_crop_in_z(end: str) -> None:
    """A re-export without the neck or the upper abdomen moves the body's centre of mass by 25 mm,
    a cell (0.95-0.96 on a grid centred there), but not the lungs' widest slab."""
    threshold, spacing = AuditConfig().volume_similarity, (5.0, 6.0, 6.0)
    for seed in (3, 5):
        volume = _chest_phantom(seed)
        cropped = volume[10:] if end == "first" else volume[:-10]
        assert _corr(volume_fingerprint(cropped, spacing), volume_fingerprint(volume, spacing)) >= threshold


def test_fingerprint_separates_different_phantoms() -> None:
    """Aligned on their lungs, chest phantoms of different bodies correlate at most 0.95: a margin."""
    threshold = AuditConfig().volume_similarity
    for phantom in (_phantom, _chest_phantom):
        prints = np.stack([volume_fingerprint(phantom(seed), (5.0, 6.0, 6.0)) for seed in range(8)])
        scores = prints @ prints.T / prints.shape[1]
        off_diagonal = scores[~np.eye(len(prints), dtype=bool)]
        assert off_diagonal.max() < threshold - 0.02, off_diagonal.max()


def test_a_z_cropped_copy_under_another_patient_is_reported(clean: CorpusTables) -> None:
    volume, spacing = _chest_phantom(3), (5.0, 6.0, 6.0)
    prints = [volume_fingerprint(v, spacing) for v in (volume, volume[10:])]
    first = clean.volumes.iloc[0]
    other = clean.volumes[clean.volumes["patient_id"] != first["patient_id"]].iloc[0]
    rows = [
        {**row.to_dict(), "volume_id": name, "study_id": f"S-{name}", "hu_sha256": digit * 64, "fingerprint": fp}
        for row, name, digit, fp in zip((first, other), ("CHEST", "CROPPED"), "ef", prints)
    ]
    volumes = pd.concat([clean.volumes, pd.DataFrame(rows)], ignore_index=True)
    findings = audit_corpus(dataclasses.replace(clean, volumes=volumes)).findings
    assert [set(f.ids) for f in findings if f.kind == FindingKind.NEAR_DUPLICATE_VOLUME] == [{"CHEST", "CROPPED"}]


def test_fingerprints_of_two_versions_are_not_compared_and_the_rest_is_audited(clean: CorpusTables) -> None:
    """A corpus stored before fingerprints had versions (version 1) against this one: their grids
    sample other anatomy, so comparing them would miss copies silently. The audit stopped with an
    AuditError, though every other check still held: now only the near copies across the versions
    go unchecked, and the report says so and how to have them checked."""
    train = clean.volumes[clean.volumes["split"] == "train"].iloc[0]
    target = clean.volumes[clean.volumes["split"] == "test"].iloc[0]
    copy = {**train.to_dict(), "volume_id": "OLD-COPY", "split": "test"}  # an exact copy, into test
    copy.update({c: target[c] for c in ("patient_id", "study_id", "accession_id", "patient_key")})
    volumes = pd.concat([clean.volumes, pd.DataFrame([copy])], ignore_index=True).drop(columns="fingerprint_version")
    old = dataclasses.replace(clean, name="before", volumes=volumes)
    result = audit_corpus(clean, against=old)
    n = len(clean.volumes)
    (mismatch,) = [f for f in result.findings if f.kind == FindingKind.OTHER_FINGERPRINT_VERSION]
    assert (mismatch.severity, mismatch.ids, mismatch.groups, mismatch.score) == (Severity.MEDIUM, ("1",), ("before",), n + 1)
    assert mismatch.detail == (
        f"{n + 1} volumes of before have fingerprints of version 1, not {FINGERPRINT_VERSION}: they were not "
        "compared for near-duplicate volumes (exact copies still are); rebuild before with this ctcorpus, "
        "which recomputes them from its work store, to have them compared"
    )
    copies = [f for f in result.findings if f.kind == FindingKind.DUPLICATE_VOLUME]
    assert [(set(f.ids), f.severity) for f in copies] == [({"OLD-COPY", train["volume_id"]}, Severity.HIGH)]
    assert result.diff is not None and result.diff.volumes.removed == ("OLD-COPY",)
    near = result.coverage[result.coverage["check"] == "near_duplicate_volume"]
    assert near[["corpus", "checked", "rows"]].values.tolist() == [[clean.name, n, n], ["before", 0, n + 1]]
    assert set(near["needs"]) == {f"volumes with a finite fingerprint of version {FINGERPRINT_VERSION}"}
    page = report.render_html(result)
    checked = f'<td>before</td><td>near_duplicate_volume</td><td class="num">0</td><td class="num">{n + 1}</td>'
    assert checked in page and "<td>other_fingerprint_version</td>" in page  # What was checked; the finding
    assert "other_fingerprint_version" in {f["kind"] for f in result_to_dict(result)["findings"]}
    alone = audit_corpus(dataclasses.replace(old, volumes=volumes.iloc[:n])).findings  # one version: compared as before
    assert _leaks(alone) == [] and FindingKind.OTHER_FINGERPRINT_VERSION not in {f.kind for f in alone}


def test_a_corpus_of_two_fingerprint_versions_compares_the_newer_alone(clean: CorpusTables) -> None:
    """Within one corpus of mixed versions the audit stopped too: a near copy between volumes of
    the version compared is found, one whose copy is of another version is not (and is named)."""
    first = clean.volumes.iloc[0]
    other = clean.volumes[clean.volumes["patient_id"] != first["patient_id"]].index[0]
    volumes = clean.volumes.copy()
    volumes.at[other, "fingerprint"] = first["fingerprint"]  # a near copy (other bytes, same fingerprint)
    found = audit_corpus(dataclasses.replace(clean, volumes=volumes)).findings
    assert [set(f.ids) for f in found if f.kind == FindingKind.NEAR_DUPLICATE_VOLUME] == [
        {first["volume_id"], volumes.at[other, "volume_id"]}
    ]
    volumes["fingerprint_version"] = volumes["fingerprint_version"].astype(object)
    volumes.at[other, "fingerprint_version"] = None  # stored before versions were: version 1
    result = audit_corpus(dataclasses.replace(clean, volumes=volumes))
    assert not [f for f in result.findings if f.kind == FindingKind.NEAR_DUPLICATE_VOLUME]
    assert [(f.ids, f.groups, f.score) for f in result.findings if f.kind == FindingKind.OTHER_FINGERPRINT_VERSION] == [
        (("1",), (clean.name,), 1.0)
    ]
    near = result.coverage.set_index("check").loc["near_duplicate_volume"]
    assert (near["checked"], near["rows"]) == (len(volumes) - 1, len(volumes))


def test_audit_docstring_examples_run() -> None:
    """The audit's examples are run, so none goes stale (the fingerprint's said 1152 values for 2560)."""
    import ctcorpus.audit

    names = [f"ctcorpus.audit.{module.name}" for module in pkgutil.iter_modules(ctcorpus.audit.__path__)]
    results = {name: doctest.testmod(importlib.import_module(name)) for name in names}
    assert {name: r.failed for name, r in results.items() if r.failed} == {}
    assert results["ctcorpus.audit.fingerprint"].attempted == 2


@pytest.mark.parametrize(("n_slices", "spacing"), [(1, 1.5), (3, 1.0)])
def test_fingerprint_of_a_stack_thinner_than_one_block(n_slices: int, spacing: float) -> None:
    """Blocks of ~4 mm were cut from a volume of fewer slices than one block holds: a reshape error."""
    volume = _phantom(3, shape=(n_slices, 64, 64), spacing=(spacing, 6.0, 6.0))
    fp = volume_fingerprint(volume, (spacing, 6.0, 6.0))
    assert fp.shape == (FINGERPRINT_SIZE,) and np.isfinite(fp).all() and fp.std() == pytest.approx(1.0, abs=1e-3)


def test_fingerprint_rejects_bad_input() -> None:
    with pytest.raises(AuditError, match="3-D"):
        volume_fingerprint(np.zeros((4, 4)), (1.0, 1.0, 1.0))
    with pytest.raises(AuditError, match="spacing"):
        volume_fingerprint(np.zeros((4, 4, 4)), (1.0, 0.0, 1.0))
    flat = volume_fingerprint(np.full((4, 8, 8), -1000, np.int16), (2.0, 2.0, 2.0))
    assert not flat.any()


# ---------------------------------------------------------------- statistics


def _tiny() -> CorpusTables:
    volumes = pd.DataFrame(
        {
            "volume_id": ["v1", "v2", "v3"],
            "patient_id": ["p1", "p2", "p3"],
            "study_id": ["s1", "s2", "s3"],
            "accession_id": ["a1", "a2", "a3"],
            "series_id": ["x1", "x2", "x3"],
            "split": ["train", "train", "test"],
            "hu_sha256": ["h1", "h2", "h3"],
            "fingerprint": [np.array([1.0, -1.0, 0.5, -0.5], np.float32), np.nan, np.array([-1, 1, 0, 0], np.float32)],
            "spacing_x": [0.7, 0.8, 0.7],
            "spacing_y": [0.7, 0.8, 0.7],
            "spacing_z": [1.0, 2.0, 5.0],
            "n_slices": [100, 200, 60],
            "kernel": ["B30f", "B30f", None],
            "manufacturer": ["SIEMENS", "GE", "GE"],
            "contrast": [True, False, False],
            "mask_source": ["totalsegmentator", "fallback", "fallback"],
            "patient_key": ["k1", "k2", ""],
        }
    )
    reports = pd.DataFrame(
        {
            "report_id": ["r1", "r2", "r3"],
            "study_id": ["s1", "s2", "s3"],
            "patient_id": ["p1", "p2", "p3"],
            "split": ["train", "train", "test"],
            "text": ["Small nodule right upper lobe.", "No effusion.", ""],
            "n_sentences": [1, 1, 0],
            "sections": [["findings", "impression"], ["findings"], []],
        }
    )
    labels = pd.DataFrame(
        {
            "report_id": ["r1", "r1", "r2", "r3", "r1"],
            "sentence_index": [-1, -1, -1, -1, 0],
            "label": ["lung_nodule", "emphysema", "pleural_effusion", "lung_nodule", "lung_nodule"],
            "state": ["positive", "positive", "negative", "uncertain", "positive"],
        }
    )
    snippets = pd.DataFrame(
        {"volume_id": ["v1", "v1"], "anatomies": [["lungs"], ["lungs", "pleura"]], "labels": [["lung_nodule"], []]}
    )
    quarantine = pd.DataFrame(
        {"stage": ["ingest", "ingest", "reports"], "reason": ["localizer", "localizer", "no_report"]}
    )
    return CorpusTables(volumes, reports, labels, snippets, quarantine, {"dataset_version": "tiny-1"}, "tiny")


def test_statistics_by_hand() -> None:
    stats = corpus_statistics(_tiny())
    prevalence = stats.label_prevalence.set_index(["split", "label"])
    assert prevalence.loc[("train", "lung_nodule"), ["positive", "reports"]].tolist() == [1, 2]
    assert prevalence.loc[("train", "lung_nodule"), "prevalence"] == pytest.approx(0.5)
    assert prevalence.loc[("test", "lung_nodule"), ["positive", "uncertain"]].tolist() == [0, 1]
    assert prevalence.loc[("train", "pleural_effusion"), "negative"] == 1
    pairs = stats.label_cooccurrence.set_index(["label_a", "label_b"])["reports"]
    assert pairs[("emphysema", "lung_nodule")] == 1 and pairs[("lung_nodule", "lung_nodule")] == 1
    missing = stats.missing_sections.set_index(["split", "section"])["missing"]
    assert missing[("train", "impression")] == 1 and missing[("test", "findings")] == 1
    assert missing[("train", "technique")] == 2
    lengths = stats.report_lengths.set_index("split")
    assert lengths.loc["test", "empty"] == 1 and lengths.loc["train", "words_median"] == 3.5
    values = stats.volume_values.set_index(["field", "value", "split"])["volumes"]
    assert values[("kernel", "B30f", "train")] == 2 and values[("kernel", "(missing)", "test")] == 1
    numeric = stats.volume_numeric.set_index(["field", "split"])
    assert numeric.loc[("spacing_z", "train"), "max"] == 2.0
    assert dict(zip(stats.snippet_anatomies["anatomy"], stats.snippet_anatomies["snippets"])) == {
        "lungs": 2,
        "pleura": 1,
    }
    assert stats.quarantine.iloc[0].tolist() == ["ingest", "localizer", "reject", 2]  # no action: rejected
    assert stats.splits.set_index("split").loc["train"].tolist() == [2, 2, 2, 2]


def test_statistics_do_not_depend_on_the_order_of_rows(clean: CorpusTables) -> None:
    """Tied snippet counts were listed in the order their rows came: a re-ordered table changed audit.json."""
    shuffled = {
        name: getattr(clean, name).sample(frac=1.0, random_state=1) for name in ("volumes", "reports", "labels", "snippets")
    }
    before, after = (result_to_dict(audit_corpus(t)) for t in (clean, dataclasses.replace(clean, **shuffled)))
    assert json.dumps(after, sort_keys=True) == json.dumps(before, sort_keys=True)
    counts = before["stats"]["snippet_labels"]
    assert [(-c["snippets"], c["label"]) for c in counts] == sorted((-c["snippets"], c["label"]) for c in counts)


def test_a_report_without_split_or_sections_is_no_crash() -> None:
    """Nulls where pandas 3 keeps them null: a report's split (the split list sorted NaN with
    strings) and its sections (a float is no list)."""
    tiny = _tiny()
    reports = tiny.reports.assign(split=["train", "train", None], sections=[["findings"], float("nan"), None])
    result = audit_corpus(dataclasses.replace(tiny, reports=reports))
    assert set(result.stats.label_prevalence["split"]) == {"", "test", "train"}  # '': reports of no known split
    missing = result.stats.missing_sections.set_index(["split", "section"])["missing"]
    assert missing[("train", "findings")] == 1 and missing[("train", "impression")] == 2
    assert "<h2>Reports</h2>" in report.render_html(result)


def test_rows_of_no_known_split_are_counted_under_split_empty() -> None:
    """A volume and a report with a null split were in no count: the splits table summed to fewer
    volumes than the corpus held, and their labels were counted out of 0 reports."""
    tiny = _tiny()
    tables = dataclasses.replace(
        tiny, volumes=tiny.volumes.assign(split=["train", None, "test"]), reports=tiny.reports.assign(split=["train", None, "test"])
    )
    stats = corpus_statistics(tables)
    assert stats.splits.set_index("split").loc[""].tolist() == [1, 1, 1, 1]
    assert stats.splits["volumes"].sum() == 3 and stats.report_lengths.set_index("split").loc["", "reports"] == 1
    assert stats.label_prevalence.set_index(["split", "label"]).loc[("", "pleural_effusion"), ["negative", "reports"]].tolist() == [1, 1]
    assert stats.volume_values.query("split == ''")["volumes"].sum() == len(CATEGORICAL)
    assert set(stats.volume_numeric["split"]) == {"", "test", "train"}
    assert set(stats.missing_sections["split"]) == {"", "test", "train"}
    assert "<tr><td>(no split)</td>" in report.render_html(audit_corpus(tables))


#: _tiny's pleural_effusion: one negative report, positive in no split.
_NEVER_POSITIVE = (("pleural_effusion",), ("test", "train"))


def test_label_missing_in_test_split_is_reported() -> None:
    findings = audit_corpus(_tiny()).findings
    missing = {(f.ids, f.groups) for f in findings if f.kind == FindingKind.LABEL_MISSING_IN_SPLIT}
    assert missing == {(("emphysema",), ("test",)), (("lung_nodule",), ("test",)), _NEVER_POSITIVE}


def test_a_label_positive_in_no_split_is_one_finding() -> None:
    """A label no report is positive for can be neither trained nor evaluated: it had no finding at all."""
    found = [f for f in audit_corpus(_tiny()).findings if f.ids == ("pleural_effusion",)]
    assert [(f.kind, f.groups, f.score) for f in found] == [(FindingKind.LABEL_MISSING_IN_SPLIT, ("test", "train"), 0)]
    assert found[0].detail == (
        "label pleural_effusion has no positive report in any split (test, train): "
        "it can be neither trained nor evaluated"
    )


def test_an_expected_label_no_report_mentions_is_a_zero_row_and_one_finding() -> None:
    """The labels table has no row for a label no report mentions: the audit listed it nowhere. The
    build config the manifest records names the labels expected: the CT-RATE ones and a site's own."""
    tiny = _tiny()
    extra = {"lung_nodule": ["rundherd"], "pneumothorax": ["pneumothorax"]}
    manifest = {**tiny.manifest, "config": {"reports": {"extra_synonyms": extra}}}
    result = audit_corpus(dataclasses.replace(tiny, manifest=manifest))
    prevalence = result.stats.label_prevalence.set_index(["split", "label"])
    expected = {*CT_RATE_LABELS, "pneumothorax"}
    assert set(prevalence.index) == {(split, label) for split in ("test", "train") for label in expected}
    counts = ["positive", "negative", "uncertain", "reports"]
    assert prevalence.loc[("train", "pneumothorax"), counts].tolist() == [0, 0, 0, 2]
    assert prevalence.loc[("test", "cardiomegaly"), counts].tolist() == [0, 0, 0, 1]
    found = {f.ids: f for f in result.findings if f.kind == FindingKind.LABEL_MISSING_IN_SPLIT}
    unmentioned = expected - {"lung_nodule", "emphysema", "pleural_effusion"}
    assert set(found) == {(label,) for label in unmentioned} | {("lung_nodule",), ("emphysema",), _NEVER_POSITIVE[0]}
    pneumothorax = found[("pneumothorax",)]
    assert pneumothorax.groups == ("test", "train") and pneumothorax.detail == (
        "label pneumothorax is mentioned by no report in any split (test, train): "
        "it can be neither trained nor evaluated"
    )
    assert found[_NEVER_POSITIVE[0]].detail.startswith("label pleural_effusion has no positive report in any split")
    page = report.render_html(result)
    head = "<th>label</th><th>train positive</th><th>train mentioned</th><th>test positive</th><th>test mentioned</th>"
    assert head in page and "<td>pneumothorax</td>" + '<td class="num">0</td>' * 4 in page
    assert "<td>pleural_effusion</td>" + "".join(f'<td class="num">{n}</td>' for n in (0, 1, 0, 0)) in page
    assert "cardiomegaly" not in set(audit_corpus(tiny).stats.label_prevalence["label"])  # no config: none expected


def test_labels_of_reports_of_no_known_split_are_no_label_finding() -> None:
    """One label row of a report no longer in the reports table put every label 'missing' in split ''."""
    tiny = _tiny()
    gone = pd.DataFrame({"report_id": ["gone"], "sentence_index": [-1], "label": ["emphysema"], "state": ["negative"]})
    result = audit_corpus(dataclasses.replace(tiny, labels=pd.concat([tiny.labels, gone], ignore_index=True)))
    assert "" not in set(result.stats.label_prevalence["split"])  # an orphan, in no split (test below)
    missing = {(f.ids, f.groups) for f in result.findings if f.kind == FindingKind.LABEL_MISSING_IN_SPLIT}
    assert missing == {(("emphysema",), ("test",)), (("lung_nodule",), ("test",)), _NEVER_POSITIVE}


def test_labels_of_reports_not_in_the_reports_table_are_orphans_not_a_prevalence() -> None:
    """Counted under split '', labels of two reports the reports table lacks were divided by the one
    report of no split: a prevalence of 2.0 (200 %) on the page, and in the co-occurrence."""
    tiny = _tiny()
    gone = pd.DataFrame(
        {"report_id": ["g1", "g2", "g2"], "sentence_index": [-1, -1, -1], "label": ["emphysema", "emphysema", "lung_nodule"],
         "state": ["positive"] * 3}
    )
    tables = dataclasses.replace(
        tiny, reports=tiny.reports.assign(split=["train", None, "test"]), labels=pd.concat([tiny.labels, gone], ignore_index=True)
    )
    result = audit_corpus(tables)
    prevalence = result.stats.label_prevalence
    assert prevalence["prevalence"].max() <= 1.0
    assert prevalence.set_index(["split", "label"]).loc[("", "emphysema"), ["positive", "reports"]].tolist() == [0, 1]
    clean_stats = corpus_statistics(dataclasses.replace(tables, labels=tiny.labels))
    pd.testing.assert_frame_equal(result.stats.label_cooccurrence, clean_stats.label_cooccurrence)
    (orphans,) = [f for f in result.findings if f.kind == FindingKind.ORPHAN_LABELS]
    assert (orphans.severity, orphans.ids, orphans.groups, orphans.score) == (Severity.MEDIUM, ("g1", "g2"), (), 3.0)
    assert orphans.detail.startswith("3 label rows name 2 reports not in the reports table: they are counted in no prevalence")
    assert not [f for f in audit_corpus(tiny).findings if f.kind == FindingKind.ORPHAN_LABELS]
    # a diff divides by the corpus's reports too: the orphans added two emphysema positives of 3 reports
    shift = diff_corpora(tiny, tables).label_shift
    assert shift["new_positive"].tolist() == shift["old_positive"].tolist() and shift["delta"].eq(0).all()


def test_split_with_volumes_but_no_report_is_reported(clean: CorpusTables) -> None:
    """A split whose reports all failed has no label to evaluate: one finding for the split, not one per label."""
    reports = clean.reports[clean.reports["split"] != "test"]
    labels = clean.labels[clean.labels["report_id"].isin(reports["report_id"])]
    tables = dataclasses.replace(clean, reports=reports, labels=labels)
    result = audit_corpus(tables)
    test = result.stats.label_prevalence.query("split == 'test'")
    assert len(test) == tables.labels["label"].nunique() and test["reports"].eq(0).all()
    found = [f for f in result.findings if f.groups == ("test",) and f.kind != FindingKind.QUARANTINE]
    volumes = clean.volumes["split"].eq("test").sum()
    assert [(f.kind, f.score) for f in found] == [(FindingKind.EMPTY_SPLIT, volumes)]
    assert found[0].detail.startswith(f"split test has {volumes} volumes but no report")


def test_a_corpus_without_reports_says_so(clean: CorpusTables) -> None:
    """No reports and no labels left the label grid empty: the audit found nothing and said 'No leak'."""
    tables = dataclasses.replace(clean, reports=clean.reports.iloc[:0], labels=clean.labels.iloc[:0])
    found = {f.groups: f.detail for f in audit_corpus(tables).findings if f.kind == FindingKind.EMPTY_SPLIT}
    assert set(found) == {("test",), ("train",), ("validation",)}
    assert "but no report" in found[("train",)]


def test_a_split_the_config_expects_but_no_patient_fell_in_is_reported() -> None:
    """8 patients at a 10 % test fraction can leave no test split: no table has a row of it, only
    the manifest's config names it; a split of fraction 0 is not expected."""
    tiny = _tiny()
    fractions = {"train": 0.8, "validation": 0.1, "test": 0.1}
    manifest = {**tiny.manifest, "config": {"outputs": {"split_fractions": fractions}}}
    result = audit_corpus(dataclasses.replace(tiny, manifest=manifest))
    assert result.stats.splits.set_index("split").loc["validation"].tolist() == [0, 0, 0, 0]
    found = [f for f in result.findings if f.kind == FindingKind.EMPTY_SPLIT]
    assert [(f.groups, f.detail) for f in found] == [
        (("validation",), "split validation is empty (no volume, no report): nothing can be trained or evaluated there")
    ]
    page = report.render_html(result)
    assert "split validation is empty" in page and "No leak between splits" in page
    manifest["config"]["outputs"]["split_fractions"] = {**fractions, "validation": 0.0, "train": 0.9}
    result = audit_corpus(dataclasses.replace(tiny, manifest=manifest))
    assert "validation" not in set(result.stats.splits["split"])
    assert not [f for f in result.findings if f.kind == FindingKind.EMPTY_SPLIT]


def test_label_without_a_negative_report_in_a_split_is_reported() -> None:
    """A split whose reports are all positive (or uncertain) for a label cannot give it an AUC either."""
    tiny = _tiny()
    more = pd.DataFrame(
        {
            "report_id": ["r2", "r2"],
            "sentence_index": [-1, -1],
            "label": ["lung_nodule", "emphysema"],
            "state": ["positive", "uncertain"],
        }
    )
    labels = pd.concat([tiny.labels, more], ignore_index=True)
    findings = audit_corpus(dataclasses.replace(tiny, labels=labels)).findings
    details = {(f.ids, f.groups): f.detail for f in findings if f.kind == FindingKind.LABEL_MISSING_IN_SPLIT}
    assert set(details) == {(("emphysema",), (split,)) for split in ("train", "test")} | {
        (("lung_nodule",), (split,)) for split in ("train", "test")
    } | {_NEVER_POSITIVE}
    assert "no negative report (2 of 2 positive, 0 uncertain)" in details[(("lung_nodule",), ("train",))]
    assert "no negative report (1 of 2 positive, 1 uncertain)" in details[(("emphysema",), ("train",))]
    assert "no positive report" in details[(("lung_nodule",), ("test",))]


def test_quarantine_finding_counts_rejected_items_only() -> None:
    """Items repaired or accepted with a defect stay in the corpus: named apart, not counted as quarantined."""
    quarantine = pd.DataFrame(
        {
            "stage": ["ingest", "ingest", "ingest", "ingest", "ingest", "reports"],
            "reason": ["localizer", "localizer", "gantry_tilt", "mixed_stacks", "mixed_stacks", "no_report"],
            "action": ["reject", "reject", "repair", "accept", "reject", "reject"],
        }
    )
    result = audit_corpus(dataclasses.replace(_tiny(), quarantine=quarantine))
    stats = result.stats.quarantine.set_index(["stage", "reason", "action"])["items"]
    assert stats[("ingest", "mixed_stacks", "accept")] == 1 and stats[("ingest", "mixed_stacks", "reject")] == 1
    found = {f.groups: f for f in result.findings if f.kind == FindingKind.QUARANTINE}
    assert found[("ingest",)].score == 3 and found[("reports",)].score == 1
    assert found[("ingest",)].detail == (
        "3 items rejected by ingest, most for localizer (2); 2 more kept in the corpus (accept 1, repair 1)"
    )
    assert found[("ingest",)].ids == ("gantry_tilt", "localizer", "mixed_stacks")


@pytest.mark.parametrize(
    ("reasons", "named"),
    [
        (["localizer", "localizer", "mixed_stacks"], "most for localizer (2)"),
        (
            ["localizer", "mixed_stacks", "localizer", "mixed_stacks", "gantry_tilt"],
            "most for localizer, mixed_stacks (2 each)",
        ),
        (["localizer", "mixed_stacks"], "1 each for localizer, mixed_stacks"),
        (["localizer", "localizer"], "all for localizer"),
    ],
)
def test_quarantine_finding_names_tied_reasons_as_a_tie(reasons: list[str], named: str) -> None:
    """Reasons rejecting as many items each read 'most for <the first> (1)', as if it stood out."""
    quarantine = pd.DataFrame({"stage": "ingest", "reason": reasons, "action": "reject"})
    findings = audit_corpus(dataclasses.replace(_tiny(), quarantine=quarantine)).findings
    details = [f.detail for f in findings if f.kind == FindingKind.QUARANTINE]
    assert details == [f"{len(reasons)} items rejected by ingest, {named}"]


def test_tables_must_have_the_columns() -> None:
    tiny = _tiny()
    with pytest.raises(AuditError, match=r"'volumes'.*'kernel'"):
        dataclasses.replace(tiny, volumes=tiny.volumes.drop(columns=["kernel"]))


def test_labels_the_statistics_cannot_count_are_refused(tmp_path: Path) -> None:
    """CheXpert's 1/0/-1 states were counted as no state (every label mentioned by no report, silently);
    a row without a label, or without a sentence index, stopped the audit with a TypeError naming nothing."""
    tiny = _tiny()
    with pytest.raises(AuditError, match=r"'labels' of corpus 'tiny' has states \['-1', '0', '1'\] in column 'state'"):
        dataclasses.replace(tiny, labels=tiny.labels.assign(state=[1, 1, 0, -1, 1]))
    with pytest.raises(AuditError, match=r"'labels' of corpus 'tiny' has 1 rows without a label in column 'label'"):
        dataclasses.replace(tiny, labels=tiny.labels.assign(label=["lung_nodule", None, "x", "y", "z"]))
    with pytest.raises(AuditError, match=r"'labels' of corpus 'tiny' has 2 rows without a whole number in column 'sentence_index'"):
        dataclasses.replace(tiny, labels=tiny.labels.assign(sentence_index=[-1, None, -1, "a", 0]))
    as_text = tiny.labels.assign(sentence_index=tiny.labels["sentence_index"].astype(str))  # a CSV read as text
    assert audit_corpus(dataclasses.replace(tiny, labels=as_text)).stats.label_prevalence["positive"].sum() == 2
    states = tiny.labels.assign(state=pd.Categorical(tiny.labels["state"]))  # as pyarrow reads a dictionary column
    assert audit_corpus(dataclasses.replace(tiny, labels=states)).stats.label_prevalence["positive"].sum() == 2
    volumes = tiny.volumes.assign(fingerprint=tiny.volumes["fingerprint"].where(tiny.volumes["volume_id"] != "v2", None))
    _write_corpus(dataclasses.replace(tiny, volumes=volumes), tmp_path, skip=("labels",))
    _write_parquet(tiny.labels.assign(state=[1, 1, 0, -1, 1]), tmp_path / "tables" / "labels" / "part-0.parquet")
    with pytest.raises(AuditError, match=rf"^{tmp_path / 'tables'}: table 'labels' .* in column 'state'"):
        load_corpus_tables(tmp_path)


def test_volumes_or_reports_without_an_id_are_refused() -> None:
    """The splits table counts ids: a split whose volume and report had none read as 'split test is
    empty (no volume, no report)', though both were there."""
    tiny = _tiny()
    with pytest.raises(AuditError, match=r"'volumes' of corpus 'tiny' has 1 rows without an id in column 'volume_id' \(in splits test\)"):
        dataclasses.replace(tiny, volumes=tiny.volumes.assign(volume_id=["v1", "v2", None]))
    with pytest.raises(AuditError, match=r"'reports' of corpus 'tiny' has 2 rows without an id in column 'report_id' \(in splits \(none\), test\)"):
        dataclasses.replace(tiny, reports=tiny.reports.assign(report_id=["r1", "", None], split=["train", None, "test"]))


# ---------------------------------------------------------------- diff


def test_diff_between_versions(clean: CorpusTables) -> None:
    new_volumes = clean.volumes.copy()
    removed = new_volumes["volume_id"].iloc[0]
    new_volumes = new_volumes.iloc[1:].reset_index(drop=True)
    new_volumes.loc[0, "kernel"] = "CHANGED"
    new_volumes.loc[1, ["split", "n_slices"]] = ["test" if new_volumes.loc[1, "split"] != "test" else "train", 7]
    added = {**new_volumes.iloc[2].to_dict(), "volume_id": "NEW", "hu_sha256": "f" * 64}
    new_volumes = pd.concat([new_volumes, pd.DataFrame([added])], ignore_index=True)
    labels = clean.labels.copy()
    flip = labels.index[(labels["sentence_index"] == -1) & (labels["state"] == "negative")][0]
    labels.loc[flip, "state"] = "positive"
    new = dataclasses.replace(clean, volumes=new_volumes, labels=labels, name="v2")
    diff = diff_corpora(clean, new)
    assert diff.volumes.added == ("NEW",) and diff.volumes.removed == (removed,)
    changed = dict(zip(diff.volumes.changed["id"], diff.volumes.changed["fields"]))
    assert changed == {new_volumes.loc[0, "volume_id"]: "kernel", new_volumes.loc[1, "volume_id"]: "split,n_slices"}
    assert diff.reports.changed.empty and not diff.reports.added
    shift = diff.label_shift.set_index("label")
    label = labels.loc[flip, "label"]
    assert shift.loc[label, "flipped"] == 1 and shift["flipped"].sum() == 1
    assert shift.loc[label, "new_positive"] == shift.loc[label, "old_positive"] + 1
    assert [f.ids for f in diff.findings if f.kind == FindingKind.SPLIT_CHANGED] == [(new_volumes.loc[1, "volume_id"],)]


def test_diff_names_a_change_of_the_pipeline_that_built_the_versions(clean: CorpusTables) -> None:
    """A version built by another ctcorpus may change fields for that reason alone: the report said
    only which ctcorpus audited, not which built either version."""
    old = dataclasses.replace(clean, manifest={**clean.manifest, "pipeline_version": "0.1.0"}, name="v1")
    new = dataclasses.replace(clean, manifest={**clean.manifest, "pipeline_version": "0.2.0"}, name="v2")
    result = audit_corpus(new, against=old)
    found = [(f.severity, f.ids, f.groups) for f in result.findings if f.kind == FindingKind.PIPELINE_CHANGED]
    assert found == [(Severity.LOW, ("0.1.0", "0.2.0"), ("v1", "v2"))]
    assert "built by ctcorpus 0.2.0" in report.render_html(result)
    same = audit_corpus(new, against=dataclasses.replace(new, name="v1")).findings
    assert FindingKind.PIPELINE_CHANGED not in {f.kind for f in same}
    assert FindingKind.PIPELINE_CHANGED not in {f.kind for f in diff_corpora(clean, new).findings}  # one unknown


def test_diff_names_other_producers_of_the_same_ctcorpus_version(clean: CorpusTables) -> None:
    """A source install keeps its version while its report rules change: the producers say so."""
    rules = {"labels": ["rules-aaa+spacy-3.8"], "reports": ["rules-aaa+spacy-3.8"], "volumes": ["ingest-1"]}
    old = dataclasses.replace(clean, manifest={**clean.manifest, "producers": rules}, name="v1")
    changed = {**rules, "labels": ["rules-bbb+spacy-3.8"], "reports": ["rules-bbb+spacy-3.8"], "snippets": ["x"]}
    new = dataclasses.replace(clean, manifest={**clean.manifest, "producers": changed}, name="v2")
    found = [f for f in diff_corpora(old, new).findings if f.kind == FindingKind.PIPELINE_CHANGED]
    assert [(f.ids, f.groups) for f in found] == [(("labels", "reports"), ("v1", "v2"))]
    assert "labels, reports made by rules-aaa+spacy-3.8 in v1, by rules-bbb+spacy-3.8 in v2" in found[0].detail
    assert FindingKind.PIPELINE_CHANGED not in {f.kind for f in diff_corpora(old, old).findings}


def test_diff_counts_a_label_no_longer_mentioned_as_flipped(clean: CorpusTables) -> None:
    """The labels table has no row for an unmentioned label: positive -> absent is a flip all the same."""
    labels = clean.labels
    dropped = labels[(labels["sentence_index"] == -1) & (labels["state"] == "positive")].index[0]
    new = dataclasses.replace(clean, labels=labels.drop(index=dropped), name="v2")
    shift = diff_corpora(clean, new).label_shift.set_index("label")
    label = labels.loc[dropped, "label"]
    assert shift.loc[label, "flipped"] == 1 and shift["flipped"].sum() == 1
    assert shift.loc[label, "new_positive"] == shift.loc[label, "old_positive"] - 1


def test_diff_leaves_a_field_null_in_both_versions_unchanged() -> None:
    """A volume without a kernel in both versions is unchanged, whether read back as None or NaN."""
    tiny = _tiny()
    assert tiny.volumes["kernel"].isna().sum() == 1
    for volumes in (tiny.volumes, tiny.volumes.assign(kernel=["B30f", "B30f", np.nan])):
        diff = diff_corpora(tiny, dataclasses.replace(tiny, volumes=volumes, name="v2"))
        assert diff.volumes.changed.empty and diff.volumes.field_counts.empty


def test_diff_compares_numbers_as_numbers(clean: CorpusTables) -> None:
    """An int column read back as float (a NaN elsewhere: 300 prints '300.0') changes only where a value did."""
    volumes = clean.volumes.astype({"n_slices": "float64"})
    volumes.loc[0, "n_slices"] = np.nan
    diff = diff_corpora(clean, dataclasses.replace(clean, volumes=volumes, name="v2"))
    assert diff.volumes.changed.to_dict("records") == [{"id": volumes.loc[0, "volume_id"], "fields": "n_slices"}]


def test_diff_compares_numbers_written_as_text_as_numbers() -> None:
    """A hand-made copy writing counts as text ('1.0') read every such value as a changed field."""
    tiny = _tiny()
    copy = dataclasses.replace(
        tiny,
        volumes=tiny.volumes.assign(n_slices=["100", "200.0", "61"], spacing_z=["1.0", "2", "5.0"]),
        reports=tiny.reports.assign(n_sentences=["1.0", "1", "zero"]),
        name="copy",
    )
    diff = diff_corpora(tiny, copy)
    assert diff.volumes.changed.to_dict("records") == [{"id": "v3", "fields": "n_slices"}]
    assert diff.reports.changed.to_dict("records") == [{"id": "r3", "fields": "n_sentences"}]


# ---------------------------------------------------------------- IO and report


def _write_parquet(frame: pd.DataFrame, path: Path) -> None:
    table = pa.Table.from_pandas(frame.reset_index(drop=True), preserve_index=False)
    if "fingerprint" in frame.columns:
        values = [None if f is None else list(f) for f in frame["fingerprint"]]
        column = pa.array(values, pa.list_(pa.float32()))
        table = table.set_column(table.schema.get_field_index("fingerprint"), "fingerprint", column)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)


def _write_corpus(tables: CorpusTables, root: Path, skip: tuple[str, ...] = ()) -> None:
    """The audit's own columns, two files per table."""
    for name in ("volumes", "reports", "labels", "snippets", "quarantine"):
        if name not in skip:
            frame = getattr(tables, name)
            half = len(frame) // 2
            for part, piece in enumerate((frame.iloc[:half], frame.iloc[half:])):
                _write_parquet(piece, root / "tables" / name / f"part-{part}.parquet")
    (root / "manifest.json").write_text(json.dumps(dict(tables.manifest)))


def _write_pipeline_corpus(tables: CorpusTables, root: Path) -> None:
    """The pipeline's layout: ``split=`` folders, pixel hashes in ``samples``, makers in ``series``."""
    volumes = tables.volumes.assign(
        native_spacing_mm=[[x, y, z] for x, y, z in tables.volumes[["spacing_x", "spacing_y", "spacing_z"]].to_numpy()]
    )
    moved = [
        "hu_sha256", "fingerprint", "fingerprint_version", "mask_source", "manufacturer", "spacing_x", "spacing_y", "spacing_z"
    ]
    reports = tables.reports.rename(columns={"sections": "section_names"})
    for split in sorted(volumes["split"].unique()):
        part = f"split={split}/part-00000.parquet"
        rows = volumes[volumes["split"] == split]
        _write_parquet(rows.drop(columns=[*moved, "split"]), root / "tables" / "volumes" / part)
        _write_parquet(
            rows[["volume_id", "hu_sha256", "fingerprint", "fingerprint_version", "mask_source"]],
            root / "tables" / "samples" / part,
        )
        _write_parquet(rows[["series_id", "manufacturer"]], root / "tables" / "series" / part)
        _write_parquet(reports[reports["split"] == split].drop(columns="split"), root / "tables" / "reports" / part)
    _write_parquet(tables.labels, root / "tables" / "labels" / "part-00000.parquet")
    (root / "manifest.json").write_text(json.dumps(dict(tables.manifest)))


def test_load_corpus_roundtrip(seeded, tmp_path: Path) -> None:
    tables, expected = seeded
    _write_corpus(tables, tmp_path / "corpus", skip=("snippets",))
    loaded = load_corpus_tables(tmp_path / "corpus")
    assert loaded.name == tables.manifest["dataset_version"] and len(loaded.volumes) == len(tables.volumes)
    assert loaded.snippets.empty
    score = match_leaks(audit_corpus(loaded).findings, expected)
    assert (score.found, score.false) == (len(expected), 0)


def test_load_corpus_in_the_pipeline_layout(seeded, tmp_path: Path) -> None:
    tables, expected = seeded
    _write_pipeline_corpus(tables, tmp_path / "corpus")
    loaded = load_corpus_tables(tmp_path / "corpus")
    volumes = loaded.volumes.set_index("volume_id").loc[tables.volumes["volume_id"]]
    assert volumes["split"].tolist() == tables.volumes["split"].tolist()
    assert volumes["spacing_z"].tolist() == tables.volumes["spacing_z"].tolist()
    assert (volumes["fingerprint_version"] == FINGERPRINT_VERSION).all()
    assert (
        loaded.reports.set_index("report_id").loc[tables.reports["report_id"], "split"]
        == tables.reports["split"].to_numpy()
    ).all()
    score = match_leaks(audit_corpus(loaded).findings, expected)
    assert (score.found, score.false) == (len(expected), 0)


def test_load_corpus_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(AuditError, match="not found"):
        load_corpus_tables(tmp_path / "absent")
    (tmp_path / "c" / "tables" / "volumes").mkdir(parents=True)
    with pytest.raises(AuditError, match="'volumes' is missing"):
        load_corpus_tables(tmp_path / "c")
    (tmp_path / "c" / "tables" / "volumes" / "part-0.parquet").write_bytes(b"not parquet")
    with pytest.raises(AuditError, match=r"tables/volumes.*cannot read"):
        load_corpus_tables(tmp_path / "c")


def _list_files(root: Path) -> None:
    """Give the corpus's manifest the ``files`` list a build writes (its Parquet files and their rows)."""
    files = [
        {"path": path.relative_to(root).as_posix(), "kind": "parquet", "table": path.relative_to(root).parts[1],
         "count": pq.ParquetFile(path).metadata.num_rows}
        for path in sorted((root / "tables").rglob("*.parquet"))
    ]
    manifest = json.loads((root / "manifest.json").read_text())
    (root / "manifest.json").write_text(json.dumps({**manifest, "files": files}))


def test_load_corpus_of_a_partial_or_altered_version_names_the_file(seeded, tmp_path: Path) -> None:
    tables, _ = seeded
    root = tmp_path / "corpus"
    _write_pipeline_corpus(tables, root)
    _list_files(root)
    assert len(load_corpus_tables(root).volumes) == len(tables.volumes)
    samples = root / "tables" / "samples" / "split=test" / "part-00000.parquet"
    kept = samples.read_bytes()
    samples.unlink()  # the copy checks would skip the test volumes: no hash, no fingerprint
    with pytest.raises(AuditError, match=r"split=test/part-00000.parquet: a file of table 'samples' is missing"):
        load_corpus_tables(root)
    samples.write_bytes(kept)
    stray = root / "tables" / "labels" / "part-00001.parquet"
    _write_parquet(tables.labels.head(3), stray)
    with pytest.raises(AuditError, match=r"labels/part-00001.parquet: .* is not listed in manifest.json"):
        load_corpus_tables(root)
    stray.unlink()
    _write_parquet(tables.labels.head(3), root / "tables" / "labels" / "part-00000.parquet")
    with pytest.raises(AuditError, match=rf"labels/part-00000.parquet: .* 3 rows in this file, .* says {len(tables.labels)}"):
        load_corpus_tables(root)
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["files"] = [{k: v for k, v in entry.items() if k != "count"} for entry in manifest["files"]]
    (root / "manifest.json").write_text(json.dumps(manifest))  # hand-edited: no rows to check, no KeyError
    assert len(load_corpus_tables(root).labels) == 3


def test_load_corpus_of_a_version_a_killed_build_moved_aside_says_where_it_is(tmp_path: Path) -> None:
    aside = tmp_path / f".tmp-old-{'0' * 32}-v2"  # killed between the build's two renames
    (aside / "tables").mkdir(parents=True)
    with pytest.raises(AuditError, match=f"moving this version aside to {aside}.*ctcorpus build --out"):
        load_corpus_tables(tmp_path / "v2")


@pytest.fixture(scope="module")
def report_files(seeded, clean, tmp_path_factory) -> tuple[Path, Path]:
    tables, _ = seeded
    result = audit_corpus(dataclasses.replace(tables, name="v2"), against=dataclasses.replace(clean, name="v1"))
    return write_audit_report(result, tmp_path_factory.mktemp("audit"))


def test_report_html_and_json_agree(report_files, seeded, clean) -> None:
    html_path, json_path = report_files
    data = json.loads(json_path.read_text())
    page = html_path.read_text()
    assert data["summary"]["high"] > 0 and data["against"] == "v1"
    assert f">{data['summary']['high']}<small>high</small>" in page
    assert page.count("data:image/png;base64,") >= 5 and "http" not in page.split("<body>")[1].replace("https://", "")
    kinds = {f["kind"] for f in data["findings"]}
    assert {k.value for k in SEEDED_KINDS} <= kinds
    assert data["diff"]["volumes"]["added"] and data["stats"]["label_prevalence"]
    tables, _ = seeded
    expected = result_to_dict(
        audit_corpus(dataclasses.replace(tables, name="v2"), against=dataclasses.replace(clean, name="v1"))
    )
    assert json.loads(json.dumps(expected, sort_keys=True)) == data  # reproducible


def test_report_says_what_each_leak_check_could_not_read(clean: CorpusTables) -> None:
    """A corpus without fingerprints had no near copy to find and read 'No leak between splits.' in green."""
    full = audit_corpus(clean)
    assert (full.coverage["checked"] == full.coverage["rows"]).all()
    assert '<div class="ok">No leak between splits.</div>' in report.render_html(full)
    volumes = clean.volumes.assign(fingerprint=None, patient_key=["", *clean.volumes["patient_key"][1:]])
    result = audit_corpus(dataclasses.replace(clean, volumes=volumes), against=dataclasses.replace(clean, name="v0"))
    partial = result.coverage[result.coverage["checked"] < result.coverage["rows"]]
    n = len(clean.volumes)
    assert partial[["corpus", "check", "checked", "rows"]].values.tolist() == [
        [clean.name, "same_person_two_ids", n - 1, n],
        [clean.name, "near_duplicate_volume", 0, n],
    ]
    page = report.render_html(result)
    assert "No leak between splits." not in page
    assert "not every row could be checked for same person two ids, near duplicate volume" in page
    assert result_to_dict(result)["coverage"] == json.loads(result.coverage.to_json(orient="records"))
    nothing = {name: pd.DataFrame(columns=getattr(clean, name).columns) for name in ("volumes", "reports", "labels")}
    page = report.render_html(audit_corpus(dataclasses.replace(clean, **nothing)))
    assert "Nothing was checked: no volume and no report." in page and "No finding" not in page


def test_report_tables_print_numbers_as_the_json_has_them() -> None:
    """1024 slices are '1024' on the page, not '1.02e+03'; fractions keep their digits."""
    tiny = _tiny()
    result = audit_corpus(dataclasses.replace(tiny, volumes=tiny.volumes.assign(n_slices=[1024, 2048, 600])))
    numeric = result.stats.volume_numeric.set_index(["field", "split"]).loc[("n_slices", "train")]
    assert numeric.tolist() == pytest.approx([1024, 1075.2, 1536, 1996.8, 2048])
    cells = "".join(f'<td class="num">{value}</td>' for value in ("1024", "1075.2", "1536", "1996.8", "2048"))
    page = report.render_html(result)
    assert f"<td>n_slices</td><td>train</td>{cells}" in page
    assert "<p>Voxel spacing in mm (x, y in-plane, z between slices) and slices per volume" in page  # the units


def test_report_says_how_many_findings_it_does_not_list(seeded) -> None:
    """At most max_listed findings of a kind are listed: the rest were left out without a word, so
    the page's table and audit.json disagreed with nothing telling the reader."""
    tables, _ = seeded
    result = audit_corpus(tables, config=AuditConfig(max_listed=1))
    kinds = pd.Series([f.kind.value for f in result.findings]).value_counts()
    page = report.render_html(result)
    assert page.count('<tr><td><span class="sev"') == len(kinds) and (kinds > 1).any()
    more = ", ".join(f"{n - 1} {k.replace('_', ' ')}" for k, n in kinds.items() if n > 1)
    assert f"Not listed (at most 1 of a kind): {more}; all are in audit.json." in page
    assert "Not listed" not in report.render_html(audit_corpus(tables))


@pytest.fixture
def figures(monkeypatch: pytest.MonkeyPatch) -> list[Figure]:
    """The figures the report draws, in order (each still drawn to its PNG)."""
    drawn: list[Figure] = []
    draw = report._png

    def keep(figure: Figure) -> str:
        drawn.append(figure)
        return draw(figure)

    monkeypatch.setattr(report, "_png", keep)
    return drawn


def test_report_draws_dollar_signs_literally(figures: list[Figure], tmp_path: Path) -> None:
    """DICOM free text such as 'FC$^$X' is no mathtext: the report is written and the labels drawn as they are."""
    tiny = _tiny()
    volumes = tiny.volumes.assign(kernel=["FC$^$X", "B30f", None], manufacturer=["FC$_{13}$", "GE", "GE"])
    html_path, json_path = write_audit_report(audit_corpus(dataclasses.replace(tiny, volumes=volumes)), tmp_path)
    assert html_path.is_file() and json_path.is_file()
    labels = [text for figure in figures for text in figure.findobj(Text) if "$" in text.get_text()]
    assert {text.get_text() for text in labels} == {"FC$^$X", "FC$_{13}$"}
    assert not any(text.get_parse_math() for text in labels)


def test_plots_name_the_rows_of_no_known_split(figures: list[Figure]) -> None:
    """Rows of no known split are split '': their grey bars had no legend entry, matplotlib leaves out '' labels."""
    tiny = _tiny()
    volumes = tiny.volumes.assign(split=["train", "train", ""])
    reports = tiny.reports.assign(split=["train", "train", ""])
    report.render_html(audit_corpus(dataclasses.replace(tiny, volumes=volumes, reports=reports)))
    legends = [[t.get_text() for t in ax.get_legend().get_texts()] for f in figures for ax in f.axes if ax.get_legend()]
    by_split = [names for names in legends if "train" in names]
    assert len(by_split) == 5 and all(names == ["train", "(no split)"] for names in by_split)  # prevalence, 4 fields


def test_a_corpus_of_no_known_split_has_a_page() -> None:
    """Every volume and report without a split (a corpus not yet split, a hand-made table): the label
    counts, pivoted on split '' alone, read back as a Series and the page stopped with an AttributeError."""
    tiny = _tiny()
    page = report.render_html(audit_corpus(dataclasses.replace(
        tiny, volumes=tiny.volumes.assign(split=None), reports=tiny.reports.assign(split=None))))
    assert "<th>(no split) positive</th><th>(no split) mentioned</th>" in page


def test_cooccurrence_diagonal_is_grey_not_the_colour_of_zero(figures: list[Figure]) -> None:
    """The diagonal is left off the colour scale: drawn blank (white), it read as the near-white 0 cells."""
    report.render_html(audit_corpus(_tiny()))
    (axes,) = [ax for f in figures for ax in f.axes if ax.get_title().startswith("Label co-occurrence")]
    (image,) = axes.get_images()
    colours = image.to_rgba(image.get_array())  # _tiny: emphysema and lung_nodule, positive in one report
    zero = image.to_rgba(0.0)
    assert image.get_array().mask.diagonal().all() and colours[0, 1, 3] == 1
    for diagonal in (colours[0, 0], colours[1, 1]):
        assert diagonal[3] == 1 and np.abs(diagonal[:3] - np.array(zero[:3])).max() > 0.2
    assert "grey diagonal" in axes.get_title()


def test_an_empty_part_of_the_report_says_why(figures: list[Figure]) -> None:
    """No report positive for two labels drew a blank co-occurrence square; no snippet said 'none'
    and an empty quarantine table nothing at all, as if the section were lost."""
    tiny = _tiny()
    empty = {name: getattr(tiny, name).iloc[:0] for name in ("snippets", "quarantine")}
    page = report.render_html(audit_corpus(dataclasses.replace(tiny, labels=tiny.labels.assign(state="negative"), **empty)))
    assert not [ax for f in figures for ax in f.axes if ax.get_title().startswith("Label co-occurrence")]
    assert "No co-occurrence plot: no report is positive for two labels." in page
    assert "No snippets per anatomy: the snippets table is missing or empty." in page
    assert "Nothing quarantined: the quarantine table is missing or empty." in page
    page = report.render_html(audit_corpus(dataclasses.replace(tiny, labels=tiny.labels.iloc[:0])))
    assert "No label to count: the labels table is missing or has no report-level row." in page


def test_page_tables_give_shares_in_percent_as_the_plots_do() -> None:
    """The plots speak %, the missing-sections and label-shift tables spoke fractions (0.5): the page
    says %, audit.json keeps the fractions."""
    tiny = _tiny()
    result = audit_corpus(tiny, against=dataclasses.replace(tiny, name="old"))
    data = result_to_dict(result)
    shares = {(r["split"], r["section"]): r["share"] for r in data["stats"]["missing_sections"]}
    assert shares[("train", "impression")] == 0.5
    assert {r["label"]: r["old_prevalence"] for r in data["diff"]["label_shift"]}["lung_nodule"] == pytest.approx(1 / 3)
    page = report.render_html(result)
    assert "<th>share (%)</th>" in page and "<th>old_prevalence (%)</th>" in page and "<th>delta (%)</th>" in page
    assert '<td>train</td><td>impression</td><td class="num">1</td><td class="num">50</td>' in page
    assert '<td>lung_nodule</td><td class="num">1</td><td class="num">33.3</td>' in page  # old: 1 of 3 reports


def test_failed_report_keeps_the_previous_pair(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A page that cannot be rendered must not leave a new audit.json beside the old audit.html."""
    html_path, json_path = write_audit_report(audit_corpus(_tiny()), tmp_path)
    before = {path: path.read_text() for path in (html_path, json_path)}

    def fail(result: object) -> str:
        raise ValueError("cannot render")

    monkeypatch.setattr(report, "render_html", fail)
    with pytest.raises(ValueError, match="cannot render"):
        write_audit_report(audit_corpus(dataclasses.replace(_tiny(), name="other")), tmp_path)
    assert {path: path.read_text() for path in (html_path, json_path)} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["audit.html", "audit.json"]


def test_an_audit_writes_its_pair_only_when_another_writing_the_folder_is_done(tmp_path: Path) -> None:
    """Two audits into one folder (overlapping scheduled runs) shared the temporary files and could
    leave one's audit.html beside the other's audit.json."""
    import fcntl
    import threading

    result = audit_corpus(_tiny())
    other = os.open(tmp_path, os.O_RDONLY)
    fcntl.flock(other, fcntl.LOCK_EX)  # another audit is writing this folder
    writer = threading.Thread(target=write_audit_report, args=(result, tmp_path))
    writer.start()
    writer.join(timeout=2.0)
    assert writer.is_alive() and not (tmp_path / "audit.json").exists()  # it waits for the other
    os.close(other)
    writer.join(timeout=60)
    assert not writer.is_alive() and sorted(p.name for p in tmp_path.iterdir()) == ["audit.html", "audit.json"]


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not installed")
def test_report_renders_in_headless_chromium(report_files, tmp_path: Path) -> None:
    from PIL import Image

    html_path, _ = report_files
    png = tmp_path / "shot.png"
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "render_audit.py"), "--html", str(html_path), "--png", str(png)],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1])["png_bytes"] == png.stat().st_size
    pixels = np.asarray(Image.open(png).convert("L"), dtype=np.float32)
    assert pixels.shape == (3000, 1400) and pixels.std() > 10  # drawn, not a blank page


# ---------------------------------------------------------------- leaks seeded into a generated export


@pytest.fixture(scope="module")
def leaky_export(tmp_path_factory) -> tuple[Path, tuple]:
    from ctcorpus.synth import generate_export
    from ctcorpus.synth.leaks import seed_export_leaks

    root = tmp_path_factory.mktemp("export")
    generate_export(root, patients=4, seed=2, matrix=64, n_slices=12)
    return root, seed_export_leaks(root, seed=2)


def _headers(root: Path, files) -> list:
    import pydicom

    return [pydicom.dcmread(root / f) for f in files]


def test_export_leaks_json_matches_the_files(leaky_export) -> None:
    from ctcorpus.audit.leakage import shingles
    from ctcorpus.synth.leaks import load_leaks
    from ctcorpus.synth.truth import load_truth

    root, leaks = leaky_export
    assert load_leaks(root) == leaks
    by_kind = {leak.kind: leak for leak in leaks}
    assert set(by_kind) == {
        FindingKind.SAME_PERSON_TWO_IDS,
        FindingKind.DUPLICATE_VOLUME,
        FindingKind.NEAR_DUPLICATE_REPORT,
    }
    truth = load_truth(root)
    series = {s.series_uid: s for s in truth.series}
    # every file's header agrees with the updated truth
    for s in truth.series:
        if s.kind in ("axial", "recon") and not s.defect:
            assert {str(h.PatientID) for h in _headers(root, s.files)} == {s.patient_id}
    # 1. one person, two ids: same name and birth date
    old, new = by_kind[FindingKind.SAME_PERSON_TWO_IDS].ids
    people = {}
    for s in truth.series:
        if s.patient_id in (old, new) and s.kind == "axial":
            h = _headers(root, s.files[:1])[0]
            people.setdefault(s.patient_id, set()).add((str(h.PatientName), str(h.get("PatientBirthDate", ""))))
    assert set(people) == {old, new} and people[old] == people[new] and len(people[old]) == 1
    # 2. same pixels under new UIDs and accession
    first, second = (series[u] for u in by_kind[FindingKind.DUPLICATE_VOLUME].ids)
    a, b = _headers(root, first.files), _headers(root, second.files)
    assert all(np.array_equal(x.pixel_array, y.pixel_array) for x, y in zip(a, b)) and len(a) == len(b)
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "AccessionNumber", "PatientID", "FrameOfReferenceUID"):
        assert getattr(a[0], keyword) != getattr(b[0], keyword)
    sops = [str(h.SOPInstanceUID) for s in truth.series for h in _headers(root, s.files) if s.kind != "defect"]
    assert len(sops) == len(set(sops))
    # 3. a report copied with three words changed, the same in both RIS files and the truth
    original, target = by_kind[FindingKind.NEAR_DUPLICATE_REPORT].ids
    csv_rows = pd.read_csv(root / "reports.csv", dtype=str, keep_default_na=False).set_index("accession_number")
    jsonl_rows = pd.read_json(root / "reports.jsonl", lines=True, dtype=False).set_index("accession_number")
    texts = {r.accession_number: r.text for r in truth.reports}
    for accession in (original, target, str(a[0].AccessionNumber), str(b[0].AccessionNumber)):
        assert csv_rows.loc[accession, "report_text"] == jsonl_rows.loc[accession, "report_text"] == texts[accession]
    x, y = texts[original], texts[target]
    assert len(x) == len(y) and sum(u != v for u, v in zip(x.split(" "), y.split(" "))) == 3
    jaccard = len(shingles(x, 3) & shingles(y, 3)) / len(shingles(x, 3) | shingles(y, 3))
    assert AuditConfig().report_similarity <= jaccard < 1.0


def _export_tables(root: Path) -> CorpusTables:
    """The tables the pipeline would make, built straight from the export's files (ids not pseudonymized).

    Fingerprints are left out: the generator draws every patient's phantom from one body (pairs
    differ by 12-25 HU on average), so near-duplicate volumes are tested on varied phantoms above.
    """
    import hashlib

    from ctcorpus.synth.truth import load_truth

    rows = []
    for s in load_truth(root).series:
        if s.kind not in ("axial", "recon") or s.defect:
            continue
        headers = _headers(root, s.files)
        hu = np.stack([h.pixel_array * float(h.RescaleSlope) + float(h.RescaleIntercept) for h in headers])
        h = headers[0]
        person = f"{h.PatientName}|{h.get('PatientBirthDate', '')}"
        rows.append(
            {
                "volume_id": s.series_uid,
                "patient_id": str(h.PatientID),
                "study_id": str(h.StudyInstanceUID),
                "accession_id": str(h.AccessionNumber),
                "series_id": s.series_uid,
                "split": ("train", "test")[int(hashlib.sha256(str(h.PatientID).encode()).hexdigest(), 16) % 2],
                "hu_sha256": hashlib.sha256(hu.astype(np.int16).tobytes()).hexdigest(),
                "fingerprint": None,
                "spacing_x": s.spacing_mm[0],
                "spacing_y": s.spacing_mm[1],
                "spacing_z": s.spacing_mm[2],
                "n_slices": s.n_slices,
                "kernel": s.kernel,
                "manufacturer": str(h.Manufacturer),
                "contrast": False,
                "mask_source": "",
                "patient_key": hashlib.sha256(person.encode()).hexdigest(),
            }
        )
    volumes = pd.DataFrame(rows)
    ris = pd.read_csv(root / "reports.csv", dtype=str, keep_default_na=False)
    study = dict(zip(volumes["accession_id"], volumes["study_id"]))
    split = dict(zip(volumes["patient_id"], volumes["split"]))
    reports = pd.DataFrame(
        {
            "report_id": ris["accession_number"],
            "study_id": ris["accession_number"].map(study),
            "patient_id": ris["patient_id"],
            "split": ris["patient_id"].map(split),
            "text": ris["report_text"],
            "n_sentences": 0,
            "sections": [[] for _ in range(len(ris))],
        }
    )
    return CorpusTables(volumes, reports, name="export")


def test_audit_finds_the_leaks_seeded_into_an_export(leaky_export) -> None:
    root, leaks = leaky_export
    score = match_leaks(audit_corpus(_export_tables(root)).findings, leaks)
    assert (score.found, score.total, score.false) == (3, 3, 0), (score.missed, score.false_findings)


def test_diff_against_a_version_without_a_labels_table_says_labels_were_not_compared(
    clean: CorpusTables, tmp_path: Path
) -> None:
    """A labels table is optional: read as an empty one, every label of every common report was a flip."""
    _write_corpus(clean, tmp_path / "v0", skip=("labels",))
    _write_corpus(clean, tmp_path / "v1")
    old, new = load_corpus_tables(tmp_path / "v0", name="v0"), load_corpus_tables(tmp_path / "v1", name="v1")
    assert old.missing_tables == ("labels",) and new.missing_tables == ()
    result = audit_corpus(new, against=old)
    assert result.diff is not None and result.diff.label_shift.empty
    assert list(result.diff.label_shift.columns) == list(diff_corpora(new, new).label_shift.columns)
    found = [(f.severity, f.ids, f.groups) for f in result.findings if f.kind == FindingKind.LABELS_NOT_COMPARED]
    assert found == [(Severity.LOW, ("v0",), ("v0", "v1"))]
    assert "v0 has no labels table: label shifts from v0 to v1 could not be computed" in report.render_html(result)
    assert result_to_dict(result)["diff"]["label_shift"] == []
    both = diff_corpora(old, dataclasses.replace(old, name="v2"))
    assert [f.ids for f in both.findings] == [("v0", "v2")] and both.label_shift.empty
    assert FindingKind.LABELS_NOT_COMPARED not in {f.kind for f in diff_corpora(new, new).findings}


def test_a_corpus_without_a_labels_table_has_one_finding_saying_so(clean: CorpusTables, tmp_path: Path) -> None:
    """Each label the manifest expects was a finding of its own, 'mentioned by no report', which no report was asked."""
    _write_corpus(clean, tmp_path / "v1", skip=("labels",))
    result = audit_corpus(load_corpus_tables(tmp_path / "v1", name="v1"))
    assert [f.kind for f in result.findings if f.kind == FindingKind.LABEL_MISSING_IN_SPLIT] == []
    found = [(f.severity, f.ids, f.detail) for f in result.findings if f.kind == FindingKind.LABELS_NOT_COMPARED]
    assert found == [(Severity.MEDIUM, ("v1",), "v1 has no labels table: no label is checked per split, and none "
                      "can be trained or evaluated from this corpus")]


def test_a_manifest_holding_nan_or_infinity_makes_valid_json_that_says_so(tmp_path: Path) -> None:
    """json.dumps wrote a hand-edited manifest's NaN as a bare NaN: an audit.json no JSON parser but Python's read."""
    manifest = {"dataset_version": "v1", "counts": {"volumes": float("nan"), "reports": [3, float("inf")]}}
    tables = dataclasses.replace(_tiny(), manifest=manifest)
    _, json_path = write_audit_report(audit_corpus(tables), tmp_path)

    def refuse(constant: str) -> None:
        raise ValueError(f"not JSON: {constant}")

    data = json.loads(json_path.read_text(), parse_constant=refuse)
    assert data["manifest"]["counts"] == {"volumes": "nan", "reports": [3, "inf"]}
    assert data["non_finite"] == ["manifest.counts.volumes", "manifest.counts.reports[1]"]
    assert result_to_dict(audit_corpus(_tiny()))["non_finite"] == []


def test_quarantine_rows_without_a_stage_or_reason_are_counted_as_unknown(caplog: pytest.LogCaptureFixture) -> None:
    """Grouped by a null, a row without a stage or reason was left out of every count, without a word;
    a table numbering its reasons stopped the page with a TypeError."""
    quarantine = pd.DataFrame(
        {"stage": ["ingest", None, "ingest", " "], "reason": [None, "no_report", 7, "localizer"], "action": "reject"}
    )
    with caplog.at_level("WARNING", logger="ctcorpus.audit.stats"):
        result = audit_corpus(dataclasses.replace(_tiny(), quarantine=quarantine))
    assert "3 quarantine rows name no stage or no reason: counted under '(unknown)'" in caplog.text
    stats = result.stats.quarantine.set_index(["stage", "reason"])["items"]
    assert stats.to_dict() == {
        ("ingest", "(unknown)"): 1, ("(unknown)", "no_report"): 1, ("ingest", "7"): 1, ("(unknown)", "localizer"): 1
    }
    found = {f.groups: (f.ids, f.score) for f in result.findings if f.kind == FindingKind.QUARANTINE}
    assert found == {("(unknown)",): (("localizer", "no_report"), 2.0), ("ingest",): (("(unknown)", "7"), 2.0)}
    assert "Nothing quarantined" not in report.render_html(result)  # drawn: 'ingest: ' + 7 was a TypeError


def test_ids_written_as_numbers_are_the_ids_written_as_text() -> None:
    """A CSV round trip makes number-like ids int64 (float64 with a null): the diff against the text
    ids of another version stopped with a ValueError, and number report ids in the labels table
    beside text ones in the reports table read as labels of no report (orphans)."""
    tiny = _tiny()
    to = {"r1": "101", "r2": "102", "r3": "103"}
    text = dataclasses.replace(
        tiny,
        volumes=tiny.volumes.assign(volume_id=["201", "202", "203"]),
        reports=tiny.reports.assign(report_id=tiny.reports["report_id"].map(to)),
        labels=tiny.labels.assign(report_id=tiny.labels["report_id"].map(to)),
        name="v1",
    )
    numbers = dataclasses.replace(
        text,
        volumes=text.volumes.assign(volume_id=[201.0, 202.0, 203.0]),
        reports=text.reports.assign(report_id=text.reports["report_id"].astype("int64")),
        labels=text.labels.assign(report_id=text.labels["report_id"].astype("int64")),
        name="v0",
    )
    assert numbers.volumes["volume_id"].tolist() == ["201", "202", "203"]
    diff = audit_corpus(text, against=numbers).diff
    assert diff is not None and not (diff.volumes.added or diff.volumes.removed or diff.reports.added)
    assert diff.volumes.changed.empty and diff.label_shift["flipped"].tolist() == [0, 0]
    mixed = dataclasses.replace(text, labels=numbers.labels)
    assert FindingKind.ORPHAN_LABELS not in {f.kind for f in audit_corpus(mixed).findings}


def test_counts_written_as_text_are_read_as_numbers() -> None:
    """A hand-made table may write whole numbers as text ('-1.0', '3.0'): the check of sentence_index
    passed them, and reading them as int64 then stopped the audit with a ValueError naming no table."""
    tiny = _tiny()
    tables = dataclasses.replace(
        tiny,
        labels=tiny.labels.assign(sentence_index=tiny.labels["sentence_index"].astype(float).astype(str)),
        reports=tiny.reports.assign(n_sentences=["3.0", None, "0"]),
    )
    stats = audit_corpus(tables).stats
    assert stats.label_prevalence.equals(corpus_statistics(tiny).label_prevalence)
    assert stats.report_lengths.set_index("split")["sentences_median"].to_dict() == {"test": 0, "train": 1.5}
