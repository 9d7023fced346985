"""Seeded leaks: known overlap and duplicate cases, so the audit can be shown to find every one.

:func:`synthetic_corpus_tables` makes a metadata-only corpus (no pixels) of any size for unit tests
and benchmarks, with leaks of each :data:`LEAK_KINDS` seeded on request. :func:`match_leaks` scores
audit findings against the seeded truth: found, missed, and false (a leak-kind finding that
matches no seeded case).
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom

from ctcorpus.audit.findings import LEAK_KINDS, Finding, FindingKind
from ctcorpus.audit.fingerprint import FINGERPRINT_SIZE, FINGERPRINT_VERSION
from ctcorpus.audit.tables import EXPECTED_SECTIONS, CorpusTables
from ctcorpus.enums import LabelState, QuarantineReason, Split
from ctcorpus.errors import SynthError
from ctcorpus.synth.dicom import uid
from ctcorpus.synth.export import reports_csv_text
from ctcorpus.synth.report_text import render_report
from ctcorpus.synth.truth import ReportTruth, SeriesTruth, load_truth, save_truth
from ctcorpus.taxonomy import CT_RATE_LABELS, LABEL_ANATOMY

LEAKS_FILE = "leaks.json"

#: The leak kinds the generators seed, one case of each per requested leak.
SEEDED_KINDS: tuple[FindingKind, ...] = (
    FindingKind.PATIENT_ACROSS_GROUPS,
    FindingKind.SAME_PERSON_TWO_IDS,
    FindingKind.DUPLICATE_VOLUME,
    FindingKind.NEAR_DUPLICATE_VOLUME,
    FindingKind.NEAR_DUPLICATE_REPORT,
)

_WORDS = (
    "lung parenchyma lobe segment upper lower middle left right bilateral subpleural peripheral central "
    "mild moderate severe small large focal diffuse patchy linear nodular ground glass density opacity "
    "stable unchanged new increased decreased compared prior study heart size mediastinum hilar lymph node "
    "trachea bronchi pleural space fluid effusion thickening calcification aorta coronary artery wall "
    "vertebral body rib fracture degenerative change liver spleen kidney adrenal gland thyroid esophagus "
    "hernia scarring fibrosis bronchiectasis emphysema consolidation atelectasis nodule mass measures mm "
    "noted seen identified suggestive consistent likely possibly without with evidence of no there is "
    "are the and in on at within along adjacent anterior posterior lateral medial apical basal"
).split()
_STATE_WORDS = {
    LabelState.POSITIVE.value: "there is",
    LabelState.NEGATIVE.value: "no",
    LabelState.UNCERTAIN.value: "possible",
}


@dataclass(frozen=True, slots=True)
class SeededLeak:
    """One seeded case: the finding kind that must report it and the ids it must name (sorted).

    ``id_kind`` says what the ids are: ``""`` for corpus ids (metadata-level corpora); in an
    export's ``leaks.json`` the original identifiers ``patient_id``, ``series_uid`` or
    ``accession_number``, which the corpus holds pseudonymized
    (:class:`ctcorpus.pseudonym.Pseudonymizer` maps them).
    """

    kind: FindingKind
    ids: tuple[str, ...]
    detail: str = ""
    id_kind: str = ""


@dataclass(frozen=True, slots=True)
class LeakScore:
    """How audit findings compare with the seeded leaks."""

    found: int
    total: int
    false: int
    missed: tuple[SeededLeak, ...]
    false_findings: tuple[Finding, ...]


def match_leaks(findings: Iterable[Finding], seeded: Sequence[SeededLeak]) -> LeakScore:
    """Score findings against seeded leaks: a leak is found by a finding of its kind naming all its ids.

    Only leak and duplicate kinds count as false findings (data-quality findings are not leaks).

    Examples
    --------
    >>> match_leaks([], [SeededLeak(FindingKind.DUPLICATE_VOLUME, ("v1", "v2"))]).found
    0
    """
    leak_findings = [f for f in findings if f.kind in LEAK_KINDS]
    used: set[int] = set()
    missed = []
    for leak in seeded:
        hits = [k for k, f in enumerate(leak_findings) if f.kind == leak.kind and set(leak.ids) <= set(f.ids)]
        used.update(hits)
        if not hits:
            missed.append(leak)
    false = tuple(f for k, f in enumerate(leak_findings) if k not in used)
    return LeakScore(len(seeded) - len(missed), len(seeded), len(false), tuple(missed), false)


def _hex(rng: np.random.Generator) -> str:
    return hashlib.sha256(rng.bytes(16)).hexdigest()


def _unit(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` z-scored random vectors (float32): the shape of a real fingerprint."""
    vectors = rng.standard_normal((n, FINGERPRINT_SIZE)).astype(np.float32)
    vectors -= vectors.mean(axis=1, keepdims=True)
    vectors /= vectors.std(axis=1, keepdims=True)
    return vectors


def _zscore(vectors: np.ndarray) -> np.ndarray:
    centred = vectors - vectors.mean(axis=1, keepdims=True)
    return (centred / centred.std(axis=1, keepdims=True)).astype(np.float32)


def _draw(rng: np.random.Generator, values: Sequence[object], n: int, p: Sequence[float] | None = None) -> list:
    """``n`` draws from ``values`` as Python objects (indices drawn, so str enums stay what they are)."""
    return [values[k] for k in rng.choice(len(values), size=n, p=p)]


def _report_text(rng: np.random.Generator, states: dict[str, str]) -> tuple[str, int]:
    """A report of random clinical words plus one sentence per labelled finding (distinct per report)."""
    n_filler = int(rng.integers(4, 8))
    lengths = rng.integers(4, 12, size=len(states) + n_filler)
    words = iter(_draw(rng, _WORDS, int(lengths.sum())))
    chunks = [" ".join(next(words) for _ in range(int(n))) for n in lengths]
    sentences = [f"{_STATE_WORDS[v]} {k.replace('_', ' ')} {c}." for (k, v), c in zip(states.items(), chunks)]
    sentences += [c.capitalize() + "." for c in chunks[len(states) :]]
    order = rng.permutation(len(sentences))
    return " ".join(sentences[k] for k in order), len(sentences)


def _volume_columns(rng: np.random.Generator, n: int) -> dict[str, list]:
    """Acquisition columns of ``n`` volumes, drawn column-wise."""
    return {
        "hu_sha256": [_hex(rng) for _ in range(n)],
        "spacing_x": _draw(rng, [0.6, 0.7, 0.8], n),
        "spacing_y": _draw(rng, [0.6, 0.7, 0.8], n),
        "spacing_z": _draw(rng, [1.0, 1.25, 2.5, 5.0], n),
        "n_slices": rng.integers(60, 400, size=n).tolist(),
        "kernel": _draw(rng, ["B30f", "B70f", "LUNG", "STANDARD"], n),
        "manufacturer": _draw(rng, ["SIEMENS", "GE MEDICAL SYSTEMS", "Philips"], n),
        "contrast": (rng.random(n) < 0.3).tolist(),
        "mask_source": _draw(rng, ["totalsegmentator", "fallback"], n, p=[0.8, 0.2]),
    }


def _clean_corpus(n_volumes: int, rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Volumes, reports and report-level labels of a corpus without leaks."""
    volumes, reports, labels, scans = [], [], [], []
    splits = [s.value for s in Split]
    states_drawn = list(_STATE_WORDS)
    p = 0
    while len(volumes) < n_volumes:
        patient, split = f"P{p:06d}", _draw(rng, splits, 1, p=[0.7, 0.15, 0.15])[0]
        key = hashlib.sha256(f"key-{p}".encode()).hexdigest()[:32]
        for s in range(int(rng.integers(1, 4))):
            study = f"S{p:06d}{s}"
            for r in range(int(rng.integers(1, 3))):  # reconstructions of one scan: near-identical
                scans.append((p, len(reports)))
                volumes.append(
                    {
                        "volume_id": f"V{p:06d}{s}{r}",
                        "patient_id": patient,
                        "study_id": study,
                        "accession_id": f"A{p:06d}{s}",
                        "series_id": f"SE{p:06d}{s}{r}",
                        "split": split,
                        "patient_key": key,
                    }
                )
            picked = sorted(rng.choice(len(CT_RATE_LABELS), size=int(rng.integers(1, 5)), replace=False))
            drawn = _draw(rng, states_drawn, len(picked), p=[0.4, 0.45, 0.15])
            states = {CT_RATE_LABELS[k]: v for k, v in zip(picked, drawn)}
            text, n_sentences = _report_text(rng, states)
            optional = rng.random(len(EXPECTED_SECTIONS)) < 0.7
            sections = [sec for sec, o in zip(EXPECTED_SECTIONS, optional) if o or sec in ("findings", "impression")]
            report_id = f"R{p:06d}{s}"
            reports.append(
                {
                    "report_id": report_id,
                    "study_id": study,
                    "patient_id": patient,
                    "split": split,
                    "text": text,
                    "n_sentences": n_sentences,
                    "sections": sections,
                }
            )
            labels += [
                {"report_id": report_id, "sentence_index": -1, "label": k, "state": v} for k, v in states.items()
            ]
        p += 1
    frame = pd.DataFrame(volumes[:n_volumes])
    for column, values in _volume_columns(rng, len(frame)).items():
        frame[column] = values
    person, study = (np.asarray(k)[:n_volumes] for k in zip(*scans))
    # what every chest CT shares + the person + the scan + the reconstruction: unrelated volumes
    # correlate ~0.76, two scans of one person ~0.95, two reconstructions of one scan ~0.998
    fingerprints = 2.0 * _unit(rng, 1) + _unit(rng, p)[person] + 0.5 * _unit(rng, len(reports))[study]
    fingerprints += 0.05 * _unit(rng, len(frame))
    frame["fingerprint"] = list(_zscore(fingerprints))
    frame["fingerprint_version"] = FINGERPRINT_VERSION
    return frame, pd.DataFrame(reports), pd.DataFrame(labels)


def _other_split(split: str, rng: np.random.Generator) -> str:
    return _draw(rng, [s.value for s in Split if s.value != split], 1)[0]


def _seed(
    kind: FindingKind,
    volumes: pd.DataFrame,
    reports: pd.DataFrame,
    used: set[str],
    rng: np.random.Generator,
    tag: str,
) -> tuple[pd.DataFrame, pd.DataFrame, SeededLeak]:
    """Seed one case of ``kind`` on patients not used by another case; returns the changed frames."""
    studies = volumes.groupby("patient_id")["study_id"].nunique()
    reported = set(reports["patient_id"])
    free = [p for p in studies.index if p not in used and p in reported]
    multi = [p for p in free if studies[p] > 1]
    pool = multi if kind in (FindingKind.PATIENT_ACROSS_GROUPS, FindingKind.SAME_PERSON_TWO_IDS) else free
    if len(pool) < 2:
        raise SynthError(f"corpus too small to seed another {kind.value} leak; ask for more volumes")
    source, target = (str(x) for x in rng.choice(pool, size=2, replace=False))
    used.update((source, target))
    if kind in (FindingKind.PATIENT_ACROSS_GROUPS, FindingKind.SAME_PERSON_TWO_IDS):
        study = str(volumes.loc[volumes["patient_id"] == source, "study_id"].iloc[-1])
        split = _other_split(str(volumes.loc[volumes["patient_id"] == source, "split"].iloc[0]), rng)
        new_patient = source if kind is FindingKind.PATIENT_ACROSS_GROUPS else f"P{tag}"
        for frame in (volumes, reports):
            rows = frame["study_id"] == study
            frame.loc[rows, "split"] = split
            frame.loc[rows, "patient_id"] = new_patient
        ids = tuple(sorted({source, new_patient}))
        return volumes, reports, SeededLeak(kind, ids, f"study {study} moved to {split} as {new_patient}")
    if kind is FindingKind.NEAR_DUPLICATE_REPORT:
        original = reports.index[reports["patient_id"] == source][0]
        copy = reports.index[reports["patient_id"] == target][0]
        words = str(reports.at[original, "text"]).split()
        for k in rng.choice(len(words), size=min(3, len(words)), replace=False):
            words[k] = str(rng.choice(_WORDS))
        reports.at[copy, "text"] = " ".join(words)
        ids = tuple(sorted((str(reports.at[original, "report_id"]), str(reports.at[copy, "report_id"]))))
        return volumes, reports, SeededLeak(kind, ids, "report copied with three words changed")
    original = volumes[volumes["patient_id"] == source].iloc[0].to_dict()
    host = volumes[volumes["patient_id"] == target].iloc[0]
    copy = {**original, **{c: host[c] for c in ("patient_id", "study_id", "accession_id", "split", "patient_key")}}
    copy.update(volume_id=f"V{tag}", series_id=f"SE{tag}")
    if kind is FindingKind.NEAR_DUPLICATE_VOLUME:  # a resampled copy: other bytes, same anatomy
        copy["hu_sha256"] = _hex(rng)
        copy["fingerprint"] = _zscore((original["fingerprint"] + 0.05 * _unit(rng, 1)[0])[None, :])[0]
    volumes = pd.concat([volumes, pd.DataFrame([copy])], ignore_index=True)
    ids = tuple(sorted((str(original["volume_id"]), f"V{tag}")))
    return volumes, reports, SeededLeak(kind, ids, f"volume copied under study {host['study_id']}")


def _snippets_and_quarantine(volumes: pd.DataFrame, rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame]:
    picked = volumes["volume_id"].sample(frac=0.5, random_state=int(rng.integers(1 << 31))).to_numpy()
    labels = _draw(rng, CT_RATE_LABELS, len(picked))
    snippets = pd.DataFrame(
        {
            "volume_id": picked,
            "anatomies": [[LABEL_ANATOMY[label].value] for label in labels],
            "labels": [[label] for label in labels],
        }
    )
    reasons = {
        QuarantineReason.LOCALIZER: "ingest",
        QuarantineReason.MISSING_SLICES: "ingest",
        QuarantineReason.NO_REPORT: "reports",
    }
    drawn = _draw(rng, list(reasons), max(1, len(volumes) // 20))
    quarantine = pd.DataFrame({"stage": [reasons[r] for r in drawn], "reason": [r.value for r in drawn]})
    return snippets, quarantine


def synthetic_corpus_tables(n_volumes: int, seed: int, leaks: int = 0) -> tuple[CorpusTables, tuple[SeededLeak, ...]]:
    """A metadata-only corpus of ``n_volumes`` volumes with ``leaks`` seeded cases of each seeded kind.

    Patients have 1-3 studies, studies 1-2 reconstructions (near-identical fingerprints, which
    the audit must not report); splits are assigned per patient, so a clean corpus has no leak.

    Parameters
    ----------
    n_volumes:
        Volumes before seeding (each seeded volume copy adds one).
    seed:
        Everything is drawn from ``numpy.random.default_rng(seed)``: same seed, same tables.
    leaks:
        Cases per kind of :data:`SEEDED_KINDS`.

    Returns
    -------
    tuple
        The corpus and the seeded leaks (what :func:`match_leaks` scores against).

    Examples
    --------
    >>> tables, expected = synthetic_corpus_tables(200, seed=0, leaks=1)
    >>> len(expected)
    5
    """
    if n_volumes < 10:
        raise SynthError(f"a synthetic corpus needs at least 10 volumes, got {n_volumes}")
    rng = np.random.default_rng(seed)
    volumes, reports, labels = _clean_corpus(n_volumes, rng)
    reports = reports[reports["study_id"].isin(volumes["study_id"])].reset_index(drop=True)
    labels = labels[labels["report_id"].isin(reports["report_id"])].reset_index(drop=True)
    used: set[str] = set()
    seeded = []
    for round_ in range(leaks):
        for k, kind in enumerate(SEEDED_KINDS):
            volumes, reports, leak = _seed(kind, volumes, reports, used, rng, f"L{round_:03d}{k}")
            seeded.append(leak)
    snippets, quarantine = _snippets_and_quarantine(volumes, rng)
    volumes["fingerprint"] = volumes["fingerprint"].map(lambda f: np.asarray(f, dtype=np.float32))
    manifest = {"dataset_version": f"synthetic-{seed}", "n_volumes": len(volumes), "n_reports": len(reports)}
    tables = CorpusTables(
        volumes=volumes,
        reports=reports,
        labels=labels,
        snippets=snippets,
        quarantine=quarantine,
        manifest=manifest,
        name=f"synthetic-{seed}",
    )
    return tables, tuple(seeded)


def save_leaks(leaks: Sequence[SeededLeak], root: str | Path) -> Path:
    """Write ``leaks.json`` under ``root`` (sorted keys: byte-identical for a seed)."""
    path = Path(root) / LEAKS_FILE
    rows = [{**dataclasses.asdict(leak), "kind": leak.kind.value} for leak in leaks]
    path.write_text(json.dumps({"leaks": rows}, sort_keys=True, indent=1), encoding="utf-8")
    return path


def load_leaks(root: str | Path) -> tuple[SeededLeak, ...]:
    """Read the seeded leaks of the export at ``root``."""
    path = Path(root) / LEAKS_FILE
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))["leaks"]
    except FileNotFoundError:
        raise SynthError("no leaks.json: seed leaks into this export first", path=path) from None
    return tuple(
        SeededLeak(FindingKind(r["kind"]), tuple(r["ids"]), r.get("detail", ""), r.get("id_kind", "")) for r in rows
    )


# ---------------------------------------------------------------- leaks in a generated export


def _read_rows(path: Path) -> list[dict[str, str]]:
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _write_rows(path: Path, rows: Sequence[dict[str, str]]) -> None:
    """Write RIS rows back in the generator's own format (same columns, encoding and key order)."""
    if path.suffix == ".jsonl":
        text = "".join(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n" for row in rows)
    else:
        text = reports_csv_text(rows)
    path.write_bytes(text.encode("utf-8"))


def _rewrite(source: Path, target: Path, changes: dict[str, str], sop_uid: str | None = None) -> None:
    """Re-write one DICOM file with other header values (pixels untouched), optionally to a new path."""
    dataset = pydicom.dcmread(source)
    for keyword, value in changes.items():
        setattr(dataset, keyword, value)
    if sop_uid is not None:
        dataset.SOPInstanceUID = sop_uid
        dataset.file_meta.MediaStorageSOPInstanceUID = sop_uid
    target.parent.mkdir(parents=True, exist_ok=True)
    dataset.save_as(target, enforce_file_format=True)


def _edit_words(report: ReportTruth, rng: np.random.Generator, n: int = 3) -> str:
    """``report.text`` with ``n`` words replaced by other words of the same length.

    Same length keeps every character offset of the truth (sentences, PHI, references) valid;
    only words outside PHI and reference spans, in sentences that carry no label, are touched.
    """
    text = report.text
    protected = [(p.start, p.end) for p in report.phi] + [(r.start, r.end) for r in report.references]
    protected += [(sen.start, sen.end) for sen in report.sentences if sen.labels]
    by_length: dict[int, list[str]] = {}
    for word in _WORDS:
        by_length.setdefault(len(word), []).append(word)
    spans = [
        (m.start(), m.end())
        for m in re.finditer(r"[A-Za-z]{4,}", text)
        if not any(a < m.end() and m.start() < b for a, b in protected)
        and any(w != m.group().lower() for w in by_length.get(m.end() - m.start(), []))
    ]
    if len(spans) < n:
        raise SynthError(f"report {report.accession_number} has too few free words to edit")
    chars = list(text)
    for k in sorted(rng.choice(len(spans), size=n, replace=False)):
        start, end = spans[int(k)]
        options = [w for w in by_length[end - start] if w != text[start:end].lower()]
        chars[start:end] = options[int(rng.integers(len(options)))]
    return "".join(chars)


def seed_export_leaks(root: str | Path, seed: int = 0) -> tuple[SeededLeak, ...]:
    """Seed three leaks into a generated export (``ctcorpus.synth.generate_export``) and write ``leaks.json``.

    1. **ID-mapping error**: the last study of a patient with two or more studies is re-written
       with another PatientID (same name and birth date), in its DICOM files and RIS rows.
    2. **Volume copied under another study**: the primary axial series of one study is copied
       (same pixels; new Study/Series/SOP/Frame-of-Reference UIDs and accession) under another
       patient, with a report of its own.
    3. **Report copied with small edits**: one study's report text is replaced by another study's
       with three words changed.

    ``ground_truth.json`` is updated to match (new patient id, the copied series and report, the
    copied report's text and truth, marked ``defect="copied_report"``).

    Examples
    --------
    >>> truth = generate_export(Path("/tmp/x"), patients=4, seed=2)   # doctest: +SKIP
    >>> leaks = seed_export_leaks("/tmp/x", seed=2)                    # doctest: +SKIP
    """
    root = Path(root)
    truth = load_truth(root)
    rng = np.random.default_rng(seed)
    axial = [s for s in truth.series if s.kind == "axial" and not s.defect]
    main = {r.accession_number: r for r in truth.reports if r.study_uid and not r.defect}
    studies: dict[str, list[SeriesTruth]] = {}
    for series in axial:
        studies.setdefault(series.patient_id, []).append(series)
    multi = sorted(p for p, group in studies.items() if len({s.study_uid for s in group}) > 1)
    if not multi or len(studies) < 3:
        raise SynthError("seeding leaks needs 3 patients, one with two studies: generate more patients", path=root)
    report_of = {r.study_uid: r for r in main.values()}
    ris = [root / name for name in truth.report_files if name in ("reports.csv", "reports.jsonl")]
    tables = {path: _read_rows(path) for path in ris}

    # 1. the ID-mapping error
    moved_patient = str(rng.choice(multi))
    moved_study = studies[moved_patient][-1].study_uid
    new_patient = f"{moved_patient}X"
    series_list = list(truth.series)
    for k, series in enumerate(series_list):
        if series.study_uid == moved_study:
            for name in series.files:
                _rewrite(root / name, root / name, {"PatientID": new_patient})
            series_list[k] = dataclasses.replace(series, patient_id=new_patient)
    superseded = tuple(r for r in truth.reports if r.defect == "superseded_report")  # shares an accession
    reports = {r.accession_number: r for r in truth.reports if r.defect != "superseded_report"}
    if moved_study in report_of:  # a study whose report was withheld (defects) has no RIS row
        moved_accession = report_of[moved_study].accession_number
        for rows in tables.values():
            for row in rows:
                if row["accession_number"] == moved_accession:
                    row["patient_id"] = new_patient
        reports[moved_accession] = dataclasses.replace(reports[moved_accession], patient_id=new_patient)
    leaks = [
        SeededLeak(
            FindingKind.SAME_PERSON_TWO_IDS, tuple(sorted((moved_patient, new_patient))), "id mapping", "patient_id"
        )
    ]

    # 2. a volume copied under another patient's new study
    others = sorted(p for p in studies if p != moved_patient and studies[p][0].study_uid in report_of)
    if len(others) < 2:
        raise SynthError("seeding a volume copy needs two other patients with reports", path=root)
    source_patient, host_patient = (str(x) for x in rng.choice(others, size=2, replace=False))
    source = studies[source_patient][0]
    host_file = pydicom.dcmread(root / studies[host_patient][0].files[0], stop_before_pixels=True)
    study_uid, series_uid = uid("ctcorpus-leak", seed, "study"), uid("ctcorpus-leak", seed, "series")
    accession = f"LEAK{seed:03d}001"
    changes = {
        "PatientID": host_patient,
        "PatientName": str(host_file.PatientName),
        "PatientBirthDate": str(host_file.get("PatientBirthDate", "")),
        "StudyInstanceUID": study_uid,
        "SeriesInstanceUID": series_uid,
        "FrameOfReferenceUID": uid("ctcorpus-leak", seed, "frame"),
        "AccessionNumber": accession,
    }
    files = tuple(f"LEAKS/{accession}/IM{k + 1:05d}" for k in range(len(source.files)))
    for k, (old, new) in enumerate(zip(source.files, files)):
        _rewrite(root / old, root / new, changes, sop_uid=uid("ctcorpus-leak", seed, "sop", k))
    series_list.append(
        dataclasses.replace(
            source,
            patient_id=host_patient,
            study_uid=study_uid,
            series_uid=series_uid,
            frame_of_reference_uid=changes["FrameOfReferenceUID"],
            files=files,
        )
    )
    source_report = report_of[source.study_uid]
    copied_findings = tuple(
        f for f in truth.findings.get(source.study_uid, ()) if f.series_number == source.series_number
    )
    copy_report = render_report(
        rng,
        accession_number=accession,
        patient_id=host_patient,
        patient_name=changes["PatientName"],
        birth_date=changes["PatientBirthDate"],
        study_date=source_report.study_date,
        language=source_report.language,
        findings=copied_findings,
        primary_series_number=source.series_number,
        secondary_series_number=source.series_number + 1,
        phi=False,
        study_uid=study_uid,
    )
    reports[accession] = copy_report
    host_name = next(r["patient_name"] for r in tables[ris[0]] if r["patient_id"] == host_patient)
    for rows in tables.values():
        rows.append(
            {
                "accession_number": accession,
                "patient_id": host_patient,
                "patient_name": host_name,
                "study_date": copy_report.study_date,
                "report_text": copy_report.text,
                "language": copy_report.language,
            }
        )
    leaks.append(
        SeededLeak(FindingKind.DUPLICATE_VOLUME, tuple(sorted((source.series_uid, series_uid))), "copy", "series_uid")
    )

    # 3. a report copied with three words changed, between two studies not touched above
    listed = {row["accession_number"] for row in tables[ris[0]]}
    free = sorted(a for a, r in main.items() if a in listed and r.study_uid not in (moved_study, source.study_uid))
    original = str(rng.choice(free))
    strangers = [a for a in free if main[a].patient_id != main[original].patient_id]
    target = str(rng.choice(strangers or [a for a in free if a != original]))
    edited = _edit_words(reports[original], rng)
    for rows in tables.values():
        for row in rows:
            if row["accession_number"] == target:
                row["report_text"] = edited
    kept = reports[target]
    reports[target] = dataclasses.replace(
        reports[original],
        text=edited,
        accession_number=kept.accession_number,
        patient_id=kept.patient_id,
        study_date=kept.study_date,
        study_uid=kept.study_uid,
        defect="copied_report",
    )
    leaks.append(
        SeededLeak(
            FindingKind.NEAR_DUPLICATE_REPORT, tuple(sorted((original, target))), "copied report", "accession_number"
        )
    )

    for path, rows in tables.items():
        _write_rows(path, rows)
    findings = {**truth.findings, study_uid: copied_findings}
    save_truth(
        dataclasses.replace(truth, series=tuple(series_list), reports=superseded + tuple(reports.values()),
                            findings=findings), root
    )
    save_leaks(leaks, root)
    return tuple(leaks)
