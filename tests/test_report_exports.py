"""Reports stage: linking safety (patients, accession numbers) and reading awkward RIS exports."""

from __future__ import annotations

import csv
import gzip
import json
import logging
from pathlib import Path

import pytest

from ctcorpus.config.reports import ReportColumns, ReportsConfig
from ctcorpus.enums import QuarantineReason
from ctcorpus.errors import ReportError
from ctcorpus.records import QuarantineLog
from ctcorpus.reports import StudyKey, process_reports
from ctcorpus.reports import io as report_io
from ctcorpus.reports.link import link_reports
from ctcorpus.reports.markup import decode_text
from ctcorpus.reports.records import RawReport, ReportExport

COLUMNS = ("accession_number", "patient_id", "study_date", "report_text")


def _csv(path: Path, *rows: tuple[str, ...], header: tuple[str, ...] = COLUMNS) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([header, *rows])
    return path


def _raw(accession: str, patient: str, day: str, text: str = "Kein Erguss.") -> RawReport:
    return RawReport("ris.csv", "line 2", accession, patient, day, "", text, "", "", "utf-8", "", "")


def _tagged(kind: str, value: str) -> str:
    return f"{kind}-{value}"


def test_a_report_never_links_to_another_patients_study_by_accession(tmp_path):
    """Two sites' RIS count alike: "00123" of patient A is not "123" of patient B, and A's row is
    no earlier version of B's report."""
    path = _csv(tmp_path / "two_sites.csv", ("00123", "P-SITE-A", "20240105", "Site A: pleural effusion."),
                ("123", "P-SITE-B", "20240301", "Site B: no effusion."))
    site_b = StudyKey("1.1", "123", "P-SITE-B", "20240301")
    result = process_reports([path], [site_b], pseudonymize=_tagged)
    assert [(r.text, r.study_id, r.link_method) for r in result.reports] == [
        ("Site B: no effusion.", "stu-1.1", "accession")]
    (entry,) = result.quarantine  # no superseded_report: different patients' reports are no versions
    assert entry.reason == QuarantineReason.PATIENT_MISMATCH
    assert f"{path}: line 2:" in entry.message and "stu-1.1" in entry.message and "patient id differs" in entry.message
    assert entry.item_id != result.reports[0].report_id
    # both sites' studies ingested: each report goes to its patient's study, under its own report id
    site_a = StudyKey("1.2", "00123", "P-SITE-A", "20240105")
    result = process_reports([path], [site_a, site_b], pseudonymize=_tagged)
    assert sorted((r.study_id, r.patient_id, r.text) for r in result.reports) == [
        ("stu-1.1", "pat-P-SITE-B", "Site B: no effusion."), ("stu-1.2", "pat-P-SITE-A", "Site A: pleural effusion.")]
    assert len({r.report_id for r in result.reports}) == 2 and not result.quarantine
    assert {s.report_id for s in result.sentences} == {r.report_id for r in result.reports}


def test_a_report_without_patient_id_is_not_given_to_one_of_two_patients_sharing_its_number(tmp_path):
    """Two sites count alike and the export has no patient id: which patient's study "123" is the
    report's cannot be told, so it links to neither (the smaller study UID took it)."""
    path = _csv(tmp_path / "ris.csv", ("123", "", "20240301", "Kein Erguss."))
    studies = [StudyKey("1.1", "00123", "P-SITE-A", "20240105"), StudyKey("1.2", "123", "P-SITE-B", "20240301")]
    result = process_reports([path], studies, pseudonymize=_tagged)
    assert result.reports == ()
    mismatch = [q for q in result.quarantine if q.reason == QuarantineReason.PATIENT_MISMATCH]
    assert len(mismatch) == 1 and "stu-1.1" in mismatch[0].message and "no patient id" in mismatch[0].message
    # a study of one patient carries it: the number links the report as before
    assert [k.study for k in link_reports([_raw("123", "", "20240301")], studies[:1], window_days=3)] == studies[:1]


def test_patient_ids_spelled_otherwise_or_missing_still_link_by_accession(tmp_path):
    """The RIS may write an MRN without its leading zeros, or leave it out: that is no mismatch."""
    path = _csv(tmp_path / "ris.csv", ("A1", "123456", "20240105", "Kein Erguss."), ("A2", "", "20240106", "Rundherd."),
                ("A1", "000123456", "20240105", "Final: Pleuraerguss."))
    studies = [StudyKey("1.1", "A1", "000123456", "20240105"), StudyKey("1.2", "A2", "000123456", "20240106")]
    result = process_reports([path], studies)
    assert [(r.study_id, r.link_method, r.text) for r in result.reports] == [
        ("1.2", "accession", "Rundherd."), ("1.1", "accession", "Final: Pleuraerguss.")]
    assert [q.reason for q in result.quarantine] == [QuarantineReason.SUPERSEDED_REPORT]  # one patient: versions


def test_studies_sharing_an_accession_number_take_the_report_whatever_their_order(tmp_path, caplog):
    first, second = StudyKey("1.1", "A1", "P1", "20240105"), StudyKey("1.2", "A1", "P1", "20240105")
    report = _raw("A1", "P1", "20240105")
    with caplog.at_level(logging.WARNING, logger="ctcorpus.reports.link"):
        linked = [link_reports([report], order, window_days=3)[0] for order in ([first, second], [second, first])]
    assert [(k.study.study_uid, k.method) for k in linked] == [("1.1", "accession")] * 2
    assert "belong to several studies of their patient" in caplog.text
    path = _csv(tmp_path / "ris.csv", ("A1", "P1", "20240105", "Kein Erguss."))
    result = process_reports([path], [second, first], pseudonymize=_tagged)
    assert [r.study_id for r in result.reports] == ["stu-1.1"]
    (entry,) = result.quarantine
    assert (entry.reason, entry.item_id) == (QuarantineReason.NO_REPORT, "stu-1.2")
    assert "also that of another study of the patient, which took the report" in entry.message


def test_a_study_of_a_split_exam_takes_no_other_report_by_date(tmp_path):
    """A modality split exam A1 into two studies; its report took the one, and a row of the day without
    accession number (the same report from an export without that column, or another exam's) took
    the other by date, a second report beside exam A1's images."""
    studies = [StudyKey("1.1", "A1", "P1", "20240105"), StudyKey("1.2", "A1", "P1", "20240105")]
    for number in ("A1", "a1"):  # the number as linking compares it
        links = link_reports([_raw(number, "P1", "20240105"), _raw("", "P1", "20240105", "Rundherd.")], studies,
                             window_days=3)
        assert [(k.study and k.study.study_uid, k.method) for k in links] == [("1.1", "accession"), (None, "")]
    # a study of the patient with another number, or none, still takes it
    links = link_reports([_raw("A1", "P1", "20240105"), _raw("", "P1", "20240105", "Rundherd.")],
                         [*studies, StudyKey("1.3", "", "P1", "20240105")], window_days=3)
    assert [(k.study.study_uid, k.method) for k in links] == [("1.1", "accession"), ("1.3", "patient_date")]
    path = _csv(tmp_path / "ris.csv", ("A1", "P1", "20240105", "Kein Erguss."), ("", "P1", "20240105", "Rundherd."))
    result = process_reports([path], studies, pseudonymize=_tagged)
    assert [r.study_id for r in result.reports] == ["stu-1.1"]
    assert [(q.reason, q.item_id) for q in result.quarantine][1:] == [(QuarantineReason.NO_REPORT, "stu-1.2")]
    assert result.quarantine[0].reason == QuarantineReason.ORPHAN_REPORT


def test_a_study_without_a_report_is_named_by_a_file_and_its_accession_number(tmp_path):
    # its row had no path and a message that named no study: only the study's pseudonym told which it was
    path = _csv(tmp_path / "ris.csv", ("A1", "P1", "20240105", "Kein Erguss."))
    studies = [StudyKey("1.1", "A1", "P1", "20240105", path="P1/S1/CT1"),
               StudyKey("1.2", "A2", "P1", "20240301", path="P1/S2/CT1"), StudyKey("1.3", "", "P2", "", path="P2/S1/CT1")]
    result = process_reports([path], studies, pseudonymize=_tagged)
    assert [(q.reason, q.path, q.item_id) for q in result.quarantine] == [
        (QuarantineReason.NO_REPORT, "P1/S2/CT1", "stu-1.2"), (QuarantineReason.NO_REPORT, "P2/S1/CT1", "stu-1.3")]
    named, unnumbered = (q.message for q in result.quarantine)
    # the accession number as the instances table pseudonymizes it (accession_id), never the number itself
    assert named.startswith("P1/S2/CT1: the study (accession number acc-A2) has no report in 1 export(s)")
    assert unnumbered.startswith("P2/S1/CT1: the study (no accession number) has no report")
    assert all(q.message.endswith("[no_report]") for q in result.quarantine)


def test_a_planned_export_names_each_study_without_a_report_once_by_a_file_of_it(tmp_path):
    # a study without PatientID had a missing_patient_id row and a no_report row besides; the others a
    # no_report row without a path
    import pydicom

    from ctcorpus import pipeline
    from ctcorpus.cli import demo_config
    from ctcorpus.config import config_from_dict
    from ctcorpus.synth import generate_export

    export = tmp_path / "export"
    generate_export(export, patients=2, seed=5, matrix=64, n_slices=24)
    files = sorted(p for p in export.rglob("*") if p.is_file() and not p.suffix)  # the DICOM files
    blanked = pydicom.dcmread(files[0]).PatientID
    for path in files:
        ds = pydicom.dcmread(path)
        if ds.PatientID == blanked:
            ds.PatientID = ""
            ds.save_as(path)
    data = demo_config(tmp_path)
    data["run"] |= {"export_dir": str(export), "report_files": [str(_csv(tmp_path / "ris.csv", ("X9", "P9", "", "x")))]}
    plan = pipeline.plan_export(config_from_dict(data), tmp_path / "work")
    stored = pipeline.WorkStore(tmp_path / "work").path("reports", plan.reports_key) / pipeline.PRIVATE_QUARANTINE
    rows = [json.loads(line) for line in stored.read_text(encoding="utf-8").splitlines()]  # with the real paths
    no_report = [row for row in rows if row["reason"] == "no_report"]
    anonymous = {e.item_id for e in plan.quarantine if e.reason == QuarantineReason.MISSING_PATIENT_ID}
    assert anonymous and no_report and anonymous.isdisjoint(row["item_id"] for row in no_report)
    assert len(plan.units) == len(no_report)  # the other patient's studies, each with a file of it
    for row in no_report:
        assert (export / row["path"]).is_file() and row["message"].startswith(f"{row['path']}: the study (accession number acc-")


def test_a_report_of_another_exam_never_links_by_patient_and_date(tmp_path):
    """The chest X-ray's report (XR-9) is not the CT's (CT-1) of the same patient and day, even while
    the CT's own report is missing; a report or a study without a number still links by date."""
    ct = StudyKey("1.1", "CT-1", "P1", "20240105")
    xray = _raw("XR-9", "P1", "20240105", "Chest X-ray: no pneumothorax.")
    (linked,) = link_reports([xray], [ct], window_days=3)
    assert (linked.study, linked.method) == (None, "")
    group_case = StudyKey("1.1", "", "P1", "20240105", ("CT-2",))  # no AccessionNumber, but an order's number
    assert link_reports([xray], [group_case], window_days=3)[0].study is None
    unnumbered = StudyKey("1.1", "", "P1", "20240105")
    assert [(k.study.study_uid, k.method) for k in link_reports([xray], [unnumbered], window_days=3)] == [
        ("1.1", "patient_date")]
    assert link_reports([_raw("", "P1", "20240106")], [ct], window_days=3)[0].method == "patient_date"
    path = _csv(tmp_path / "ris.csv", ("XR-9", "P1", "20240105", "Chest X-ray: no pneumothorax."))
    result = process_reports([path], [ct])
    orphan = next(q for q in result.quarantine if q.reason == QuarantineReason.ORPHAN_REPORT)
    assert "line 2: no study with this accession number" in orphan.message
    assert "another number is another exam" in orphan.message


def test_an_export_that_cannot_be_read_costs_itself_not_the_run(tmp_path, monkeypatch):
    """No text column and a surplus field in the first row (a TypeError sorting the column names),
    or any failure a reader library raises: the export is quarantined by name, the others are read."""
    bad = tmp_path / "befunde.csv"
    bad.write_bytes(b"accession_number,patient_id,Befundtext\nA1,P1,Kein Erguss, kein Infiltrat\n")
    good = _csv(tmp_path / "good.csv", ("A2", "P2", "2024-01-05", "No effusion."))
    log = QuarantineLog()
    result = process_reports([bad, good], [StudyKey("1.2", "A2", "P2", "20240105")], on_error=log)
    assert [r.text for r in result.reports] == ["No effusion."]
    (entry,) = log.entries
    assert entry.path == str(bad) and entry.reason == QuarantineReason.UNREADABLE_REPORT
    assert "no text column 'report_text' (columns: ['Befundtext', 'accession_number', 'patient_id'])" in entry.message

    def broken(*args: object) -> None:
        raise RuntimeError("reader bug")

    monkeypatch.setattr(report_io, "_json_rows", broken)
    jsonl = tmp_path / "ris.jsonl"
    jsonl.write_text('{"report_text": "x"}\n', encoding="utf-8")
    log = QuarantineLog()
    assert len(process_reports([jsonl, good], [], on_error=log).quarantine) == 1  # good.csv's orphan
    assert [(e.path, e.reason) for e in log.entries] == [(str(jsonl), QuarantineReason.UNREADABLE_REPORT)]
    assert "cannot parse report export: RuntimeError: reader bug" in log.entries[0].message


def test_a_row_with_more_fields_than_the_header_is_named_not_cut(tmp_path):
    """An unquoted comma in a text shifts the row: its text would be cut at the comma."""
    path = tmp_path / "ris.csv"
    path.write_bytes(b"accession_number,patient_id,study_date,report_text\n"
                     b"A1,P1,2024-01-05,Kein Erguss, kein Infiltrat\nA2,P2,2024-01-05,Kein Erguss.,\n")
    export = report_io.read_report_export(path, ReportColumns())
    assert [(r.accession_number, r.text) for r in export.reports] == [("A2", "Kein Erguss.")]  # a trailing "," is none
    (problem,) = export.problems
    assert str(path) in str(problem) and "line 2 has more fields than the header" in str(problem)


def test_a_utf8_export_with_a_cp1252_row_keeps_its_utf8_rows(tmp_path):
    """Decoded whole as cp1252, every UTF-8 row became mojibake ("JÃ¼rgens"): the DICOM name no
    longer matched, so it leaked, and clinical words were mangled."""
    header = b"accession_number,patient_id,study_date,report_text\r\n"
    first = 'A1,P1,2024-01-05,"Befund:\r\nPatientin Jürgens über den Befund aufgeklärt."\r\n'.encode()
    pasted = 'A2,P2,2024-01-05,"Kein Pleuraerguß."\r\n'.encode("cp1252")
    last = 'A3,P3,2024-01-05,"Rundherd 5 mm, größenkonstant."\r\n'.encode()
    path = tmp_path / "ris.csv"
    path.write_bytes(header + first + pasted + last)
    export = report_io.read_report_export(path, ReportColumns())
    assert [(r.text, r.encoding) for r in export.reports] == [
        ("Befund:\nPatientin Jürgens über den Befund aufgeklärt.", "utf-8"), ("Kein Pleuraerguß.", "cp1252"),
        ("Rundherd 5 mm, größenkonstant.", "utf-8")]
    studies = [StudyKey("1.1", "A1", "P1", "20240105")]
    (row,) = process_reports([path], studies, header_names={"P1": ["JÜRGENS^ANNA"]}).reports
    assert "Jürgens" not in row.text and "[NAME]" in row.text and row.encoding == "utf-8"
    jsonl = tmp_path / "ris.jsonl"
    jsonl.write_bytes('{"report_text": "Größe"}\n'.encode() + '{"report_text": "Größe"}\n'.encode("cp1252"))
    assert [(r.text, r.encoding) for r in report_io.read_report_export(jsonl, ReportColumns()).reports] == [
        ("Größe", "utf-8"), ("Größe", "cp1252")]
    jsonl.write_text('{"report_text": "Befund:\u2028Kein Erguss."}\n', encoding="utf-8")  # a raw U+2028 in JSON
    (read,) = report_io.read_report_export(jsonl, ReportColumns()).reports
    assert read.text == "Befund:\u2028Kein Erguss."


def test_decoding_falls_back_per_line():
    decoded = decode_text(b"\xef\xbb\xbfok\r" + "Übung\n".encode("cp1252") + b"\x81x\n" + "Ölung".encode())
    assert decoded.text == "ok\rÜbung\n\x81x\nÖlung"  # the BOM dropped; 0x81 is no cp1252 character
    assert (decoded.encoding, dict(decoded.fallback)) == ("latin-1", {1: "cp1252", 2: "latin-1"})
    assert decoded.lines_encoding(0, 1) == "utf-8" and decoded.lines_encoding(0, 2) == "cp1252"
    assert decode_text("Ölung".encode()) == decode_text(b"\xef\xbb\xbf" + "Ölung".encode())


def test_a_json_lines_row_without_the_text_key_is_an_empty_report(tmp_path):
    """A writer that leaves out null fields: the first line has no text key, the others have one."""
    path = tmp_path / "ris.jsonl"
    path.write_text('{"accession_number": "A0", "patient_id": "P0", "study_date": "2024-01-05"}\n'
                    '{"accession_number": "A1", "patient_id": "P1", "study_date": "2024-01-05", '
                    '"report_text": "No effusion."}\n', encoding="utf-8")
    studies = [StudyKey("1.0", "A0", "P0", "20240105"), StudyKey("1.1", "A1", "P1", "20240105")]
    result = process_reports([path], studies)
    assert [(r.report_id, r.text) for r in result.reports] == [("A1", "No effusion.")]
    assert [(q.reason, q.item_id) for q in result.quarantine] == [(QuarantineReason.EMPTY_REPORT, "A0")]
    path.write_text('{"accession_number": "A0", "Befund": "x"}\n{"accession_number": "A1", "text": "y"}\n')
    with pytest.raises(ReportError, match=r"no text column 'report_text' \(columns: \['Befund', 'accession_number', "
                                          r"'text'\]\)"):
        report_io.read_report_export(path, ReportColumns())


def test_a_quote_that_nothing_closes_costs_its_row_not_every_row_after_it(tmp_path):
    """A text that opens a quote and never closes it: the csv module reads that field to the end of
    the file, so one patient's report took in every later row's ids and text and those reports vanished."""
    path = tmp_path / "ris.csv"
    path.write_bytes(b"accession_number,patient_id,study_date,report_text\n"
                     b'A1,P1,2024-01-05,"Kein Erguss."\nA2,P2,2024-01-05,"Rundherd 5 mm.\n'
                     b"A3,P3,2024-01-05,Pleuraerguss links.\nA4,P4,2024-01-05,Kein Infiltrat.\n")
    export = report_io.read_report_export(path, ReportColumns())
    assert [(r.location, r.accession_number, r.text) for r in export.reports] == [("line 2", "A1", "Kein Erguss.")]
    (problem,) = export.problems
    assert problem.reason == QuarantineReason.UNREADABLE_REPORT
    assert "ris.csv: line 3 opens a quoted field that no quote closes" in str(problem)
    assert "took in the 2 line(s) after it" in str(problem)
    # a quoted last field, with or without a line end after it, is closed
    for end in (b"", b"\r\n"):
        path.write_bytes(b'report_text\n"Kein ""Erguss"".\nZweite Zeile."' + end)
        export = report_io.read_report_export(path, ReportColumns())
        assert [r.text for r in export.reports] == ['Kein "Erguss".\nZweite Zeile.'] and not export.problems


def test_cells_an_export_wraps_for_excel_are_read_as_their_text(tmp_path):
    """An export meant for Excel keeps the leading zeros of an id by writing it ="000123": read as
    written, no study's accession number matched and every report was an orphan."""
    path = _csv(tmp_path / "ris.csv", ('="000123"', '="P0042"', '="2024-01-05"', '="Kein ""Erguss""."'))
    result = process_reports([path], [StudyKey("1.1", "000123", "P0042", "20240105")])
    assert [(r.study_id, r.link_method, r.text) for r in result.reports] == [("1.1", "accession", 'Kein "Erguss".')]
    assert result.quarantine == ()


def test_a_last_row_cut_off_short_of_its_fields_is_named_not_read(tmp_path):
    """An export copied while it was written ends inside a row: read, that row was a report without
    text (or without ids, where the text column comes first) and its study counted as reported."""
    path = tmp_path / "ris.csv"
    head = b"accession_number,patient_id,study_date,report_text\nA1,P1,2024-01-05,Kein Erguss.\n"
    path.write_bytes(head + b"A2,P2,2024-01")
    export = report_io.read_report_export(path, ReportColumns())
    assert [r.accession_number for r in export.reports] == ["A1"]
    (problem,) = export.problems
    assert problem.path == str(path) and problem.reason == QuarantineReason.UNREADABLE_REPORT
    assert "line 3, the last row, has 3 of the header's 4 fields and the file ends inside it" in problem.message
    path.write_bytes(head.replace(b"text\n", b"text,\n") + b"A2,P2,2024-01-06,Rundherd.")  # a header's empty last name
    assert [r.text for r in report_io.read_report_export(path, ReportColumns()).reports] == [
        "Kein Erguss.", "Rundherd."]
    path.write_bytes(head + b"A2,P2,2024-01-06\n")  # a line break ends it: a row without text, as written
    assert [(r.accession_number, r.text) for r in report_io.read_report_export(path, ReportColumns()).reports] == [
        ("A1", "Kein Erguss."), ("A2", "")]


def test_a_mapped_column_named_twice_is_an_error_not_a_lost_text(tmp_path):
    """A row read as a dict keeps the last cell: a second, empty "report_text" dropped the text."""
    from openpyxl import Workbook

    path = tmp_path / "ris.csv"
    path.write_bytes(b"accession_number,patient_id,study_date,report_text,report_text\n"
                     b"A1,P1,2024-01-05,Pleural effusion on the right.,\n")
    with pytest.raises(ReportError, match=r"ris.csv: .*names the column 'report_text' more than once"):
        report_io.read_report_export(path, ReportColumns())
    workbook = Workbook()
    workbook.active.append(["Accession", "Befundtext", "Accession"])
    workbook.active.append(["A1", "Kein Erguss.", None])
    workbook.save(tmp_path / "ris.xlsx")
    with pytest.raises(ReportError, match=r"ris.xlsx: .*names the column 'Accession' more than once"):
        report_io.read_report_export(tmp_path / "ris.xlsx", ReportColumns(text="Befundtext",
                                                                          accession_number="Accession"))
    # a column nothing maps may be named twice
    path.write_bytes(b"accession_number,note,report_text,note\nA1,a,Kein Erguss.,b\n")
    assert [r.text for r in report_io.read_report_export(path, ReportColumns()).reports] == ["Kein Erguss."]


def test_study_dates_in_more_spellings_and_the_rest_named(tmp_path, caplog):
    """YYYY/MM/DD, German DD.MM.YY and Excel serials are read; an ambiguous slash date is not
    guessed, and neither it nor any other value that is no date vanishes silently."""
    from openpyxl import Workbook

    spellings = {"2024/01/05": "20240105", "2024.01.05": "20240105", "05.01.24": "20240105", "5.1.98": "19980105",
                 "01/05/2024": "", "05/01/2024": "", "45296": "", "n/a": ""}
    assert {v: report_io.normalize_date(v) for v in spellings} == spellings
    workbook = Workbook()
    workbook.active.append(["report_text", "study_date", "report_time"])
    workbook.active.append(["Kein Erguss.", 45296, 45296.5])  # date cells whose format was lost: serials
    workbook.active.append(["Rundherd.", 20240105, "05.01.2024 14:30"])
    workbook.save(tmp_path / "ris.xlsx")
    export = report_io.read_report_export(tmp_path / "ris.xlsx", ReportColumns())
    assert [(r.study_date, r.report_time) for r in export.reports] == [
        ("20240105", "20240105120000"), ("20240105", "20240105143000")]
    path = _csv(tmp_path / "ris.csv", ("", "P1", "01/05/2024", "No effusion."), ("", "P1", "2024/01/05", "Nodule."))
    studies = [StudyKey("1.1", "A1", "P1", "20240105")]
    with caplog.at_level(logging.WARNING, logger="ctcorpus.reports.io"):
        result = process_reports([path], studies)
    assert f"{path}: 1 value(s) of column 'study_date' are no date ctcorpus reads (line 2: '01/05/2024')" in caplog.text
    assert [(r.text, r.link_method) for r in result.reports] == [("Nodule.", "patient_date")]
    (orphan,) = result.quarantine
    assert orphan.reason == QuarantineReason.ORPHAN_REPORT and "line 2: no accession number" in orphan.message
    assert "no study date to link it by patient and date" in orphan.message


def test_report_times_with_an_hour_offset_keep_their_time(tmp_path):
    """PostgreSQL writes a timestamptz as "2024-01-05 14:02:11.52+01": the zone was not read, so the
    time was lost and both versions of a report counted as midnight; the export order, newest
    first, then kept the preliminary report and quarantined the final one as superseded."""
    assert [report_io.normalize_time(v, utc=True) for v in (
        "2024-01-05 14:02:11.52+01", "2024-01-05 10:22:33-05", "2024-01-05 10:22:33 +01:00",
        "2024-01-05 10:22:33 UTC")] == ["20240105130211", "20240105152233", "20240105092233", "20240105102233"]
    path = _csv(tmp_path / "ris.csv", ("A1", "P1", "2024-01-05", "2024-01-05 14:02:11.52+01", "Final: Pleuraerguss."),
                ("A1", "P1", "2024-01-05", "2024-01-05 10:15:40.1+01", "Vorläufig: kein Erguss."),
                header=(*COLUMNS[:3], "report_time", "report_text"))
    result = process_reports([path], [StudyKey("1.1", "A1", "P1", "20240105")])
    assert [r.text for r in result.reports] == ["Final: Pleuraerguss."]
    (entry,) = result.quarantine
    assert entry.reason == QuarantineReason.SUPERSEDED_REPORT and "line 3 is an earlier version" in entry.message


def test_report_times_on_the_12_hour_clock_keep_their_time_and_a_time_not_read_is_named(tmp_path, caplog):
    """US exports write "2024-01-05 04:30:12 PM", and Java a zone's name after the offset: the time
    was lost without a word, both versions of a report counted as midnight, and the export order,
    newest first, kept the preliminary report."""
    path = _csv(tmp_path / "ris.csv", ("A1", "P1", "2024-01-05", "2024-01-05 04:30:12 PM", "Final: Pleuraerguss."),
                ("A1", "P1", "2024-01-05", "2024-01-05 09:15:40 AM", "Vorläufig: kein Erguss."),
                ("A2", "P1", "2024-01-05", "2024-01-05T22:10:00+01:00[Europe/Berlin]", "Kein Erguss."),
                ("A3", "P1", "2024-01-05 10:00 CET", "2024-01-05 10:22 CET", "Rundherd."),
                header=(*COLUMNS[:3], "report_time", "report_text"))
    with caplog.at_level(logging.WARNING, logger="ctcorpus.reports.io"):
        result = process_reports([path], [StudyKey("1.1", "A1", "P1", "20240105")])
        assert [(r.accession_number, r.study_date, r.report_time)
                for r in report_io.read_report_export(path, ReportColumns()).reports] == [
            ("A1", "20240105", "20240105163012"), ("A1", "20240105", "20240105091540"),
            ("A2", "20240105", "20240105211000"), ("A3", "20240105", "20240105000000")]
    assert [r.text for r in result.reports] == ["Final: Pleuraerguss."]
    # the study date's time is not used; the report time's orders versions, and its loss is named
    assert caplog.messages[-1] == (
        f"{path}: 1 value(s) of column 'report_time' have a time ctcorpus does not read (line 5: '2024-01-05 10:22 "
        "CET'); each counts as midnight of its day when versions of a report are ordered. Write HH:MM[:SS] after "
        "the date, with a zone offset (+01:00) or Z if any")
    assert sum("does not read" in message for message in caplog.messages) == 2  # one per reading


def test_common_status_words_are_read(tmp_path, caplog):
    """A RIS writes "signiert", "validiert", "verified", "diktiert", "dictated" and the like: each was
    logged as no status, and a dictated version resent after the signed one replaced it."""
    pairs = [("signiert", "diktiert"), ("Validiert", "Vorla\u0308ufig"), ("verified", "dictated"),
             ("Signed", "Prelim."), ("Final Report", "in_progress"), ("approved", "transcribed")]
    rows = [row for k, (final, preliminary) in enumerate(pairs, start=1)
            for row in ((f"A{k}", "P1", "2024-01-05", "2024-01-05 10:00", final, f"Final {k}: Rundherd."),
                        (f"A{k}", "P1", "2024-01-05", "2024-01-05 12:00", preliminary, f"Draft {k}: kein Erguss."))]
    path = _csv(tmp_path / "ris.csv", *rows, header=(*COLUMNS[:3], "report_time", "report_status", "report_text"))
    studies = [StudyKey(f"1.{k}", f"A{k}", "P1", "20240105") for k in range(1, len(pairs) + 1)]
    with caplog.at_level(logging.WARNING, logger="ctcorpus.reports.io"):
        result = process_reports([path], studies)
    assert [(r.text, r.result_status) for r in result.reports] == [
        (f"Final {k}: Rundherd.", "final") for k in range(1, len(pairs) + 1)]
    assert not caplog.messages


def test_a_table_exports_status_column_orders_the_versions_of_a_report(tmp_path, caplog):
    """A RIS table export says which row is the preliminary, the final, an addendum or a cancel in
    a status column: read by time alone, a preliminary resent later replaced the final, an addendum
    row replaced the report it adds to, and a cancelled (wrong-patient) report was used."""
    path = _csv(tmp_path / "ris.csv",
                ("A1", "P1", "2024-01-05", "2024-01-05 10:00", "Final", "Final: Pleuraerguss."),
                ("A1", "P1", "2024-01-05", "2024-01-05 12:00", "vorläufig", "Vorläufig: kein Erguss."),
                ("A1", "P1", "2024-01-05", "2024-01-05 14:00", "NACHTRAG", "Nachtrag: Rundherd."),
                ("A2", "P1", "2024-01-06", "2024-01-06 10:00", "F", "Kein Erguss."),
                ("A2", "P1", "2024-01-06", "2024-01-06 11:00", "storniert", "Storniert."),
                ("A3", "P1", "2024-01-07", "", "abgerechnet", "Kein Rundherd."),
                header=(*COLUMNS[:3], "report_time", "Report Status", "report_text"))
    studies = [StudyKey("1.1", "A1", "P1", "20240105"), StudyKey("1.2", "A2", "P1", "20240106"),
               StudyKey("1.3", "A3", "P1", "20240107")]
    with caplog.at_level(logging.WARNING, logger="ctcorpus.reports.io"):
        result = process_reports([path], studies)
    assert [(r.study_id, r.text, r.result_status) for r in result.reports] == [
        ("1.1", "Final: Pleuraerguss.\n\nNachtrag: Rundherd.", "addendum"), ("1.3", "Kein Rundherd.", "")]
    preliminary, cancelled, unreported = result.quarantine
    assert preliminary.reason == cancelled.reason == QuarantineReason.SUPERSEDED_REPORT
    assert f"line 3 is an earlier version of the report in {path} line 4" in preliminary.message
    assert f"line 5 is a version of the report that {path} line 6 cancels" in cancelled.message
    assert unreported.reason == QuarantineReason.NO_REPORT and unreported.item_id == "1.2"
    assert caplog.messages == [(f"{path}: 1 value(s) of column 'report_status' are no report status ctcorpus reads "
                                "('abgerechnet' x1); such a row says nothing of which version of its report it is "
                                "(see reports.columns.result_status)")]


def test_a_sentinel_report_time_beyond_utc_costs_its_time_not_the_export(tmp_path):
    """A database writes a missing time as a sentinel ("9999-12-31 23:59:59-05", "0001-01-01
    00:00+01:00"): moved to UTC it left years 1-9999, and the OverflowError made the whole export
    unreadable for one cell."""
    path = _csv(tmp_path / "ris.csv", ("A1", "P1", "2024-01-05", "2024-01-05 10:00+01", "Kein Erguss."),
                ("A2", "P1", "2024-01-05", "9999-12-31 23:59:59-05", "Rundherd."),
                ("A3", "P1", "2024-01-05", "0001-01-01T00:00:00+01:00", "Pleuraerguss."),
                header=(*COLUMNS[:3], "report_time", "report_text"))
    assert [(r.accession_number, r.report_time) for r in report_io.read_report_export(path, ReportColumns()).reports] == [
        ("A1", "20240105090000"), ("A2", ""), ("A3", "")]


def test_csv_lines_above_the_header_and_blanks_around_column_names(tmp_path):
    """Excel's "sep=;" line, a blank line or a report title above the header, or column names
    padded with blanks (SQL*Plus, "a; b"), hid every column: the whole export failed for want of
    a text column."""
    rows = "A1; P1; 05.01.2024; \"Kein Erguss; kein Infiltrat.\"\r\n"
    exports = {"sep.csv": "sep=;\r\naccession_number;patient_id;study_date;report_text\r\n",
               "title.csv": "RIS-Export 05.01.2024\r\n\r\naccession_number;patient_id;study_date;report_text\r\n",
               "padded.csv": "accession_number ; patient_id; study_date ;report_text  \r\n"}
    for (name, header), first in zip(exports.items(), (3, 4, 2), strict=True):  # the line of the first row
        path = tmp_path / name
        path.write_bytes((header + rows + "A2;P2;05.01.2024;Größe\r\n").encode("cp1252"))
        export = report_io.read_report_export(path, ReportColumns())
        assert [(r.location, r.accession_number, r.patient_id, r.study_date, r.text, r.encoding)
                for r in export.reports] == [
            (f"line {first}", "A1", "P1", "20240105", "Kein Erguss; kein Infiltrat.", "utf-8"),
            (f"line {first + 1}", "A2", "P2", "20240105", "Größe", "cp1252")], name
        assert not export.problems


def test_column_names_in_another_case_than_the_mapping_are_read(tmp_path):
    """A RIS update or another export tool writes "BEFUNDTEXT" for "Befundtext": read by the exact
    name, the text column was missing and the whole export (every study's report) unread."""
    columns = ReportColumns(text="Befundtext", accession_number="AccNr", patient_id="PatID", study_date="Datum")
    path = tmp_path / "ris.csv"  # a title above the header: the header is found in any case too
    path.write_bytes(b"RIS-Export\r\nACCNR;patid;DATUM;BEFUNDTEXT\r\nA1;P1;05.01.2024;\"Kein Erguss; kein Infiltrat.\"\r\n")
    jsonl = tmp_path / "ris.jsonl"
    jsonl.write_text('{"accnr": "A1", "PatId": "P1", "datum": "2024-01-05", "befundtext": "Kein Erguss; kein '
                     'Infiltrat."}\n', encoding="utf-8")
    for export in (path, jsonl):
        assert [(r.accession_number, r.patient_id, r.study_date, r.text)
                for r in report_io.read_report_export(export, columns).reports] == [
            ("A1", "P1", "20240105", "Kein Erguss; kein Infiltrat.")], export
    # the exact name wins over another case; two names in other cases are one name twice
    path.write_bytes(b"accnr,AccNr,BEFUNDTEXT\nX,A1,Kein Erguss.\n")
    assert [(r.accession_number, r.text) for r in report_io.read_report_export(path, columns).reports] == [
        ("A1", "Kein Erguss.")]
    path.write_bytes(b"AccNr,Befundtext,BEFUNDTEXT\nA1,Kein Erguss.,\n")
    assert [r.text for r in report_io.read_report_export(path, columns).reports] == ["Kein Erguss."]
    path.write_bytes(b"AccNr,befundtext,BEFUNDTEXT\nA1,Kein Erguss.,\n")
    with pytest.raises(ReportError, match=r"ris.csv: .*names the column 'Befundtext' more than once"):
        report_io.read_report_export(path, columns)


def test_column_names_with_blanks_or_other_separators_than_the_mapping_are_read(tmp_path):
    """An export tool writes "Study Date" or "Patient-ID" for study_date and patient_id: read by the
    exact name (or in another case), the text column was missing, and a missing date or id column
    made every report an orphan with no word of why."""
    path = tmp_path / "ris.csv"
    path.write_bytes(b"Accession Number;Patient-ID;Study Date;Report Text\r\nA1;P1;05.01.2024;Kein Erguss.\r\n")
    assert [(r.accession_number, r.patient_id, r.study_date, r.text)
            for r in report_io.read_report_export(path, ReportColumns()).reports] == [
        ("A1", "P1", "20240105", "Kein Erguss.")]
    path.write_bytes(b"accession_number,Study Date,report_text,study.date\nA1,05.01.2024,Kein Erguss.,\n")
    with pytest.raises(ReportError, match=r"names the column 'study_date' more than once"):
        report_io.read_report_export(path, ReportColumns())
    jsonl = tmp_path / "ris.jsonl"  # rows of two tools, each spelling the keys its way
    jsonl.write_text('{"accession_number": "A1", "report_text": "Kein Erguss."}\n'
                     '{"Accession Number": "A2", "Report_Text": "Rundherd."}\n', encoding="utf-8")
    assert [(r.accession_number, r.text) for r in report_io.read_report_export(jsonl, ReportColumns()).reports] == [
        ("A1", "Kein Erguss."), ("A2", "Rundherd.")]


def test_an_export_without_a_linking_column_says_so_by_file(tmp_path, caplog):
    """A renamed column ("Untersuchungsdatum" for the mapped "study_date") made every report an
    orphan whose quarantine row blamed an empty cell: the log names the file and the column."""
    path = _csv(tmp_path / "ris.csv", ("A1", "P1", "05.01.2024", "Kein Erguss."),
                header=("accession_number", "patient_id", "Untersuchungsdatum", "report_text"))
    jsonl = tmp_path / "ris.jsonl"
    jsonl.write_text('{"patient_id": "P1", "report_text": "Kein Erguss."}\n', encoding="utf-8")
    complete = _csv(tmp_path / "all.csv", ("A1", "P1", "05.01.2024", "Kein Erguss."))
    with caplog.at_level(logging.WARNING, logger="ctcorpus.reports.io"):
        for export in (path, jsonl, complete):
            assert len(report_io.read_report_export(export, ReportColumns()).reports) == 1
    assert [record.getMessage() for record in caplog.records] == [
        (f"{path}: no row of the export has the column 'study_date' (its columns: ['Untersuchungsdatum', "
         "'accession_number', 'patient_id', 'report_text']), so its reports link by accession number only; name "
         "the export's columns in reports.columns"),
        (f"{jsonl}: no row of the export has the columns 'accession_number', 'study_date' (its columns: "
         "['patient_id', 'report_text']), so none of its reports can link to a study; name the export's columns in "
         "reports.columns")]


def test_a_gzipped_export_is_read_as_its_inner_format(tmp_path):
    """Exports are often shipped compressed ("ris.csv.gz"): the format was read off ".gz" alone, and
    the export refused as of an unknown format."""
    csv_gz, jsonl_gz = tmp_path / "ris.csv.gz", tmp_path / "ris.jsonl.gz"
    csv_gz.write_bytes(gzip.compress("accession_number;report_text\r\nA1;Pleuraerguß.\r\n".encode("cp1252")))
    jsonl_gz.write_bytes(gzip.compress(b'{"accession_number": "A2", "report_text": "Kein Erguss."}\n'))
    assert [(r.accession_number, r.text, r.encoding) for path in (csv_gz, jsonl_gz)
            for r in report_io.read_report_export(path, ReportColumns()).reports] == [
        ("A1", "Pleuraerguß.", "cp1252"), ("A2", "Kein Erguss.", "utf-8")]
    broken = tmp_path / "ris.tsv.gz"
    broken.write_bytes(b"accession_number\treport_text\n")  # named .gz, but not compressed
    with pytest.raises(ReportError, match=r"ris.tsv.gz: cannot parse report export: .*gzip") as error:
        report_io.read_report_export(broken, ReportColumns())
    assert error.value.reason == QuarantineReason.UNREADABLE_REPORT


def test_an_empty_export_file_is_unreadable_not_an_export_without_reports(tmp_path):
    """A failed export job leaves an empty file: read as no rows, every study of the run lost its
    report with nothing naming the file. A header without rows is an export without reports."""
    files = {"ris.csv": b"", "ris.jsonl": b"\n\n", "ris.hl7": b"\r\n", "ris.csv.gz": gzip.compress(b"")}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    log = QuarantineLog()
    assert process_reports([tmp_path / name for name in files], [], on_error=log).quarantine == ()
    assert [(entry.path, entry.reason) for entry in log.entries] == [
        (str(tmp_path / name), QuarantineReason.UNREADABLE_REPORT) for name in files]
    assert all("the export is empty" in entry.message for entry in log.entries)
    header = _csv(tmp_path / "header.csv")
    assert report_io.read_report_export(header, ReportColumns()) == ReportExport((), ())


def test_a_file_named_jsonl_that_holds_no_json_is_one_unreadable_export(tmp_path):
    """A CSV export (or any other file) given as .jsonl: each of its lines was quarantined on its
    own, thousands of entries for one wrong file; it is one unreadable export."""
    path = _csv(tmp_path / "ris.jsonl", *[(f"A{n}", "P1", "20240105", "Kein Erguss.") for n in range(50)])
    log = QuarantineLog()
    assert process_reports([path], [], on_error=log).reports == ()
    (entry,) = log.entries
    assert entry.reason == QuarantineReason.UNREADABLE_REPORT and entry.path == str(path)
    assert "not a JSON Lines export: none of its 51 line(s) is JSON" in entry.message


def test_a_utf16_export_is_read(tmp_path):
    """Excel's "Unicode text" (.txt) and SQL Server's bcp -w write UTF-16 with a byte order mark:
    read byte by byte, every column name came out garbled ("\\x00r\\x00e...") and the export failed."""
    table = ("accession_number\tpatient_id\tstudy_date\treport_text\r\n"
             "A1\tP1\t05.01.2024\t\"Pleuraerguß\r\nrechts.\"\r\n")
    for codec in ("utf-16-le", "utf-16-be"):
        path = tmp_path / f"ris-{codec}.txt"
        path.write_bytes(("\ufeff" + table).encode(codec))
        (report,) = report_io.read_report_export(path, ReportColumns()).reports
        assert (report.accession_number, report.study_date, report.text, report.encoding) == (
            "A1", "20240105", "Pleuraerguß\nrechts.", "utf-16")
    assert decode_text("\ufeffGröße".encode("utf-16-le") + b"\x00").text == "Größe\ufffd"  # a cut file


def test_a_utf16_export_without_a_byte_order_mark_is_read(tmp_path):
    """UTF-16 written without the mark (an export tool's "Unicode"): its ASCII is valid UTF-8, so
    every column name came out as "\\x00r\\x00e..." and the export failed for want of a text column."""
    table = "accession_number\treport_text\r\nA1\tPleuraerguß rechts.\r\n"
    for codec in ("utf-16-le", "utf-16-be"):
        path = tmp_path / f"ris-{codec}.txt"
        path.write_bytes(table.encode(codec))
        (report,) = report_io.read_report_export(path, ReportColumns()).reports
        assert (report.accession_number, report.text, report.encoding) == ("A1", "Pleuraerguß rechts.", "utf-16")
    assert decode_text(b"Kein\x00Erguss.\n").encoding == "utf-8"  # a stray NUL makes no UTF-16


def test_a_utf8_line_with_one_stray_byte_keeps_its_utf8_characters(tmp_path):
    """One cp1252 dash (0x96) pasted into a UTF-8 row turned that whole line into mojibake: the
    patient's name "JÃ¼rgens" escaped the scrubber and "PleuraergusÃŸ" the lexicons."""
    path = tmp_path / "ris.csv"
    path.write_bytes(b"accession_number,patient_id,study_date,report_text\r\n"
                     + "A1,P1,2024-01-05,Patientin Jürgens: Pleuraerguß rechts ".encode() + b"\x96 3 cm.\r\n")
    studies = [StudyKey("1.1", "A1", "P1", "20240105")]
    (row,) = process_reports([path], studies, header_names={"P1": ["JÜRGENS^ANNA"]}).reports
    assert (row.text, row.encoding) == ("Patientin [NAME]: Pleuraerguß rechts – 3 cm.", "cp1252")
    cp1252 = "„Fuß“ – Größe".encode("cp1252")
    assert decode_text(cp1252).text == "„Fuß“ – Größe"  # "ß“" is the UTF-8 of a letter too: still cp1252
    assert decode_text("Größe ".encode() + b"\x81").text == "Größe \x81"  # no cp1252 character: Latin-1
    assert decode_text("Größe ".encode() + b"\x81").encoding == "latin-1"


def test_the_same_rows_exported_twice_with_ids_spelled_otherwise_are_one_report(tmp_path):
    """The RIS rows handed over as CSV and as a workbook that dropped the ids' leading zeros: the
    copies were no duplicates, so "join" doubled the text and "latest" quarantined a copy as an
    earlier version."""
    from openpyxl import Workbook

    path = _csv(tmp_path / "ris.csv", ("00123", "000456", "2024-01-05", "Kein Erguss."))
    workbook = Workbook()
    workbook.active.append(list(COLUMNS))
    workbook.active.append([123, 456, "05.01.2024", "Kein Erguss."])
    workbook.save(tmp_path / "ris.xlsx")
    studies = [StudyKey("1.1", "00123", "000456", "20240105")]
    for policy in ("latest", "join"):
        result = process_reports([path, tmp_path / "ris.xlsx"], studies, config=ReportsConfig(same_accession=policy))
        assert [(r.text, r.source_path) for r in result.reports] == [("Kein Erguss.", str(path))], policy
        assert not result.quarantine


def _segment(name: str, **fields: str) -> str:
    """An HL7 v2 segment with the fields given as f<number>="value"."""
    values = [name] + [""] * max(int(k[1:]) for k in fields)
    for key, value in fields.items():
        values[int(key[1:])] = value
    return "|".join(values)


def _msh(n: int, time: str, kind: str) -> str:
    return f"MSH|^~\\&|RIS|RAD|EMR|HOSP|{time}||{kind}|M{n}|P|2.5.1"


def _hl7(path: Path, *messages: list[str]) -> Path:
    """A feed archive: segments separated by CR, one message after another."""
    path.write_text("\r".join("\r".join(message) for message in messages) + "\r", encoding="utf-8")
    return path


def test_mdm_document_messages_are_read_as_reports(tmp_path):
    """A RIS that sends its reports as documents (MDM): the dictated original (T02), its
    authentication (T04), a document with an order (OBR) signed at TXA-22's time and its addendum
    (T06, the addendum's text alone: kept after the report it adds to), a document cancelled (T11),
    a notification without content (T01) and an ADT message. Read as ORU only, the file gave no
    row and no problem: every study had "no report"."""
    signer = "^".join(["11", "BECKER", "ULLA", "", "", "Dr."] + [""] * 8 + ["20240106120000"])
    pid1, pid2, pid3 = (f"PID|1||00012345{n}^^^HOSP^MR||MUSTER^MAX||19500101|M" for n in (6, 7, 8))
    path = _hl7(
        tmp_path / "mdm.hl7",
        [_msh(1, "20240105090100", "MDM^T02^MDM_T02"), "EVN|T02|20240105090000", pid1, "PV1|1|O",
         _segment("TXA", f1="1", f2="RAD", f3="TX", f4="20240105083000", f6="20240105090000",
                  f9="11^BECKER^ULLA^^^Dr.", f12="DOC1", f15="ACC1^RIS", f17="DI", f19="AV"),
         "OBX|1|TX|^FINDINGS||Kleiner Pleuraerguss rechts.||||||P"],
        [_msh(2, "20240105095900", "MDM^T01^MDM_T01"), "EVN|T01|20240105095900", pid1,
         _segment("TXA", f1="1", f2="RAD", f12="DOC1", f15="ACC1^RIS", f17="DI")],
        [_msh(3, "20240105100100", "MDM^T04^MDM_T04"), "EVN|T04|20240105100000", pid1, "PV1|1|O",
         _segment("TXA", f1="1", f2="RAD", f3="TX", f4="20240105083000", f6="20240105090000",
                  f12="DOC1", f15="ACC1^RIS", f17="AU", f19="AV", f22="11^BECKER^ULLA^^^Dr."),
         "OBX|1|TX|^FINDINGS||Kleiner Pleuraerguss rechts.~Befundet von Becker.||||||F",
         "OBX|2|TX|^IMPRESSION||Pleuraerguss rechts.||||||F"],
        [_msh(4, "20240106", "ADT^A08^ADT_A01"), "EVN|A08|20240106", pid2],
        [_msh(5, "20240106120100", "MDM^T02^MDM_T02"), "EVN|T02", pid2, "ORC|RE|PL2|F2",
         _segment("OBR", f1="1", f2="PL2", f3="F2", f4="CT^CT Thorax", f7="20240106093000", f18="ACC2"),
         _segment("TXA", f1="1", f2="RAD", f3="TX", f12="DOC2", f15="F2^RIS", f17="LA", f22=signer),
         "OBX|1|TX|^IMPRESSION||Kein Pleuraerguss."],
        [_msh(8, "20240106150100", "MDM^T06^MDM_T02"), "EVN|T06|20240106150000", pid2,
         _segment("TXA", f1="1", f2="RAD", f3="TX", f12="DOC2A", f13="DOC2", f15="F2^RIS", f17="AU"),
         "OBX|1|TX|^ADDENDUM||Nachtrag: Rundherd rechts unverändert."],
        [_msh(6, "20240107100100", "MDM^T02^MDM_T02"), "EVN|T02|20240107100000", pid3,
         _segment("TXA", f1="1", f2="RAD", f3="TX", f4="20240107", f12="DOC3", f14="ACC3", f17="AU"),
         "OBX|1|TX|^IMPRESSION||Lungenrundherd links."],
        [_msh(7, "20240107110100", "MDM^T11^MDM_T01"), "EVN|T11|20240107110000", pid3,
         _segment("TXA", f1="1", f2="RAD", f12="DOC3", f14="ACC3", f17="AU", f19="CA")],
    )
    export = report_io.read_report_export(path, ReportColumns())
    assert [(r.location, r.accession_number, r.patient_id, r.study_date, r.report_time, r.result_status)
            for r in export.reports] == [  # messages 2 and 4, a notification and an ADT message, are passed over
        ("message 1", "ACC1", "000123456", "20240105", "20240105090000", "preliminary"),
        ("message 3", "ACC1", "000123456", "20240105", "20240105100000", "final"),
        ("message 5", "ACC2", "000123457", "20240106", "20240106120000", "final"),  # OBR-18 over TXA-15; TXA-22's time
        ("message 6", "F2", "000123457", "", "20240106150000", "addendum"),
        ("message 7", "ACC3", "000123458", "20240107", "20240107100000", "final"),  # the placer order number TXA-14
        ("message 8", "ACC3", "000123458", "", "20240107110000", "cancelled")]
    assert export.reports[1].text == ("FINDINGS:\nKleiner Pleuraerguss rechts.\nBefundet von Becker.\n\n"
                                      "IMPRESSION:\nPleuraerguss rechts.")
    assert "BECKER^ULLA" in export.reports[1].phi_values and not export.problems
    studies = [StudyKey(f"1.{n}", f"ACC{n}", f"00012345{n + 5}", f"2024010{n + 4}") for n in (1, 2, 3)]
    # the addendum is the filler order number's (its message has no OBR): map it as the RIS writes it
    columns = ReportColumns(hl7_accession_fields=("TXA-15", "TXA-14"))
    config = ReportsConfig(language="de", columns=columns)
    studies[1] = StudyKey("1.2", "F2", "000123457", "20240106")
    result = process_reports([path], studies, config=config, on_error=QuarantineLog())
    assert [(r.report_id, r.result_status, r.text) for r in result.reports] == [
        ("ACC1", "final", ("FINDINGS:\nKleiner Pleuraerguss rechts.\nBefundet von [NAME].\n\n"
                           "IMPRESSION:\nPleuraerguss rechts.")),
        ("F2", "addendum", "IMPRESSION:\nKein Pleuraerguss.\n\nNachtrag: Rundherd rechts unverändert.")]
    assert sorted((q.reason.value, q.item_id) for q in result.quarantine) == [
        ("no_report", "1.3"), ("superseded_report", "ACC1"), ("superseded_report", "ACC3")]
    cancelled = next(q for q in result.quarantine if q.item_id == "ACC3")
    assert "message 7 is a version of the report that" in cancelled.message and "message 8 cancels" in cancelled.message


def test_a_hl7_file_without_a_report_message_says_so(tmp_path):
    """Notifications without the document (MDM^T01) and ADT messages only: one error naming the
    file and the message types it holds, not silence and "no report" for every study."""
    path = _hl7(tmp_path / "notify.hl7",
                [_msh(1, "20240105", "MDM^T01^MDM_T01"), "EVN|T01|20240105", "PID|1||P1",
                 _segment("TXA", f1="1", f2="RAD", f12="DOC1", f15="ACC1", f17="DI")],
                [_msh(2, "20240105", "ADT^A08^ADT_A01"), "EVN|A08|20240105", "PID|1||P1"],
                [_msh(3, "20240106", "ADT^A08^ADT_A01"), "EVN|A08|20240106", "PID|1||P2"])
    holds = r"none of its 3 HL7 message\(s\) is a report ctcorpus reads \(it holds ADT\^A08 x2, MDM\^T01 x1\)"
    with pytest.raises(ReportError, match=holds) as err:
        report_io.read_report_export(path, ReportColumns())
    assert err.value.reason == QuarantineReason.UNREADABLE_REPORT and "notify.hl7" in str(err.value)


def test_hl7_result_status_orders_the_versions_of_a_report(tmp_path):
    """OBR-25 says which version is which: a preliminary result resent later (its time the
    message's, MSH-7) does not replace the final; a correction with the final's time wins
    whatever the file order; a cancel (X) repeating the final's text withdraws the report.
    Ordered by time and file order alone, each of the three reports was the wrong one."""
    def result(n: int, accession: str, status: str, text: str, time: str = "", sent: str = "20240108") -> list[str]:
        return [_msh(n, sent, "ORU^R01^ORU_R01"), f"PID|1||P{accession[0]}||DOE^JANE",
                _segment("OBR", f1="1", f3=accession, f7="20240105", f22=time, f25=status),
                f"OBX|1|TX|^IMPRESSION||{text}||||||{status}"]

    path = _hl7(tmp_path / "feed.hl7",
                result(1, "A1", "F", "Pleuraerguss rechts.", "20240105100000"),
                result(2, "A1", "P", "Kein Pleuraerguss."),  # the preliminary, resent on 8 January
                result(3, "B1", "C", "Lungenrundherd links.", "20240105110000"),
                result(4, "B1", "F", "Lungenrundherd rechts.", "20240105110000"),
                result(5, "C1", "F", "Kein Pleuraerguss.", "20240105120000"),
                result(6, "C1", "X", "Kein Pleuraerguss.", "20240105130000"))
    studies = [StudyKey(f"1.{a}", f"{a}1", f"P{a}", "20240105") for a in "ABC"]
    for policy in ("latest", "join"):
        outcome = process_reports([path], studies, config=ReportsConfig(language="de", same_accession=policy),
                                  on_error=QuarantineLog())
        used = {r.report_id: (r.result_status, r.text) for r in outcome.reports}
        assert used["A1"][0] == "final" and used["B1"][0] == "corrected" and "C1" not in used, policy
        if policy == "latest":
            assert used == {"A1": ("final", "IMPRESSION:\nPleuraerguss rechts."),
                            "B1": ("corrected", "IMPRESSION:\nLungenrundherd links.")}
            assert sorted((q.reason.value, q.item_id) for q in outcome.quarantine) == [
                ("no_report", "1.C"), ("superseded_report", "A1"), ("superseded_report", "B1"),
                ("superseded_report", "C1")]
        else:  # joined in version order: the preliminary first, the correction last
            assert used["A1"][1] == "IMPRESSION:\nKein Pleuraerguss.\n\nIMPRESSION:\nPleuraerguss rechts."
            assert used["B1"][1].endswith("Lungenrundherd links.")


def test_a_row_is_named_by_the_line_or_row_a_user_finds_it_at(tmp_path, caplog):
    """Rows were numbered from 0 and by record: "row 2" of a CSV whose texts hold line breaks, or
    with a blank line, was neither line 2 nor the third line an editor shows. A CSV or JSON Lines
    row is named by the line it starts at (the header is line 1), a Parquet row from 1, an Excel
    row by the number Excel shows."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from openpyxl import Workbook

    path = tmp_path / "ris.csv"
    path.write_bytes(b"accession_number,patient_id,study_date,report_text\r\n"
                     b'A1,P1,2024-01-05,"Befund:\r\nKein Erguss.\r\n\r\nBeurteilung: normal."\r\n'
                     b"\r\n"  # a blank line between rows
                     b"A2,P1,01/06/2024,Rundherd.\r\n"
                     b"A3,P1,2024-01-07,Kein Erguss.,surplus\r\n")
    with caplog.at_level(logging.WARNING, logger="ctcorpus.reports.io"):
        export = report_io.read_report_export(path, ReportColumns())
    assert [(r.location, r.accession_number) for r in export.reports] == [("line 2", "A1"), ("line 7", "A2")]
    (problem,) = export.problems
    assert f"{path}: line 8 has more fields than the header" in str(problem)
    assert "(line 7: '01/06/2024')" in caplog.text
    result = process_reports([path], [StudyKey("1.1", "A1", "P1", "20240105")], on_error=QuarantineLog())
    (orphan,) = result.quarantine
    assert f"{path}: line 7: no study with this accession number" in orphan.message
    jsonl = tmp_path / "ris.jsonl"
    jsonl.write_text('{"report_text": "Kein Erguss."}\n\n[1]\n{"report_text": "Rundherd."}\n', encoding="utf-8")
    export = report_io.read_report_export(jsonl, ReportColumns())
    assert [r.location for r in export.reports] == ["line 1", "line 4"]
    assert "line 3 is an array, not a JSON object" in str(export.problems[0])
    pq.write_table(pa.table({"report_text": ["Kein Erguss.", "Rundherd."]}), tmp_path / "ris.parquet")
    assert [r.location for r in report_io.read_report_export(tmp_path / "ris.parquet", ReportColumns()).reports] == [
        "row 1", "row 2"]
    workbook = Workbook()
    workbook.active.append(["report_text"])
    workbook.active.append(["Kein Erguss."])
    workbook.active.append([None])  # an empty row: left out, the next keeps its number
    workbook.active.append(["Rundherd."])
    workbook.save(tmp_path / "ris.xlsx")
    assert [r.location for r in report_io.read_report_export(tmp_path / "ris.xlsx", ReportColumns()).reports] == [
        "row 2", "row 4"]


def test_a_study_whose_report_is_cancelled_says_so(tmp_path):
    """A cancel row alone (the RIS withdrew a report written on the wrong patient, and the export
    holds only the cancel) or after the report's versions left the study a bare "no report in 1
    export(s)", as if linking had failed: its row names the cancel, file and line. A cancel names
    its study by accession number only, never taking one by patient and date."""
    path = _csv(tmp_path / "ris.csv",
                ("A1", "P1", "2024-01-05", "storniert", ""),
                ("A2", "P1", "2024-01-06", "F", "Kein Erguss."),
                ("A2", "P1", "2024-01-06", "X", ""),
                ("A3", "P1", "2024-01-07", "final", "Rundherd."),
                ("A5", "P1", "2024-01-09", "cancelled", "Storniert."),
                header=(*COLUMNS[:3], "report_status", "report_text"))
    studies = [StudyKey(f"1.{n}", f"A{n}", "P1", f"2024010{n + 4}") for n in (1, 2, 3, 4)]
    studies.append(StudyKey("1.5", "", "P1", "20240109"))  # no accession number: a report could link by date
    result = process_reports([path], studies, pseudonymize=_tagged)
    assert [(r.study_id, r.text) for r in result.reports] == [("stu-1.3", "Rundherd.")]
    assert [(q.reason.value, q.item_id) for q in result.quarantine] == [
        ("superseded_report", "acc-A2"), ("no_report", "stu-1.1"), ("no_report", "stu-1.2"),
        ("no_report", "stu-1.4"), ("no_report", "stu-1.5")]
    lone, after, absent, unnumbered = result.quarantine[1:]
    assert lone.message.startswith(f"the study (accession number acc-A1) has its report cancelled: {path} line 2 "
                                   "has a cancelled status")
    assert f"its report cancelled: {path} line 4 has" in after.message
    assert "has no report in 1 export(s)" in absent.message and "cancel" not in absent.message
    assert "has no report in 1 export(s)" in unnumbered.message
    # an HL7 cancel alone (MDM T11) is named by its message
    hl7 = _hl7(tmp_path / "feed.hl7",
               [_msh(1, "20240105110100", "MDM^T11^MDM_T01"), "EVN|T11|20240105110000", "PID|1||P1",
                _segment("TXA", f1="1", f2="RAD", f12="DOC1", f14="A1", f17="AU", f19="CA")])
    (entry,) = process_reports([hl7], studies[:1]).quarantine
    assert f"its report cancelled: {hl7} message 1 has a cancelled status" in entry.message


def test_a_cancel_without_a_report_time_withdraws_the_versions_exported_before_it(tmp_path):
    """A RIS leaves a withdrawn report's signing time empty: counted as older than the timed final,
    the cancel withdrew nothing and the cancelled (wrong-patient) report was used, unnamed. A version
    exported after the cancel (the report written again) is still used."""
    header = (*COLUMNS[:3], "report_time", "report_status", "report_text")
    path = _csv(tmp_path / "ris.csv",
                ("A1", "P1", "2024-01-05", "2024-01-05 10:00", "final", "Wrong patient: effusion."),
                ("A1", "P1", "2024-01-05", "", "storniert", ""),
                ("A2", "P1", "2024-01-06", "", "storniert", ""),
                ("A2", "P1", "2024-01-06", "2024-01-06 09:00", "final", "Written again: no effusion."),
                header=header)
    studies = [StudyKey("1.1", "A1", "P1", "20240105"), StudyKey("1.2", "A2", "P1", "20240106")]
    result = process_reports([path], studies)
    assert [(r.study_id, r.text) for r in result.reports] == [("1.2", "Written again: no effusion.")]
    superseded, cancelled = result.quarantine
    assert superseded.reason == QuarantineReason.SUPERSEDED_REPORT
    assert f"line 2 is a version of the report that {path} line 3 cancels" in superseded.message
    assert (cancelled.reason, cancelled.item_id) == (QuarantineReason.NO_REPORT, "1.1")


def test_exports_joined_into_one_csv_read_each_part_under_its_header(tmp_path, caplog):
    """A scheduled job appending each day's export, header and all: the second header was a report
    ("report_text", an orphan), and where the later export orders its columns otherwise every row
    after it was read under the first header's names: its report lost, its text taken for an id."""
    path = tmp_path / "ris.csv"
    path.write_bytes(b"accession_number,patient_id,study_date,report_text\nA1,P1,2024-01-05,Kein Erguss.\n"
                     b"Report_Text,accession_number,patient_id,study_date\nRundherd.,A2,P1,2024-01-06\n")
    studies = [StudyKey("1.1", "A1", "P1", "20240105"), StudyKey("1.2", "A2", "P1", "20240106")]
    with caplog.at_level(logging.INFO, logger="ctcorpus.reports.io"):
        result = process_reports([path], studies)
    assert [(r.study_id, r.text) for r in result.reports] == [("1.1", "Kein Erguss."), ("1.2", "Rundherd.")]
    assert result.quarantine == ()
    assert f"{path}: line 3 repeats the header" in caplog.text
    assert [r.location for r in report_io.read_report_export(path, ReportColumns()).reports] == ["line 2", "line 4"]
    # JSON Lines files joined: each began with a byte order mark, and the second's first line was no JSON
    jsonl = tmp_path / "ris.jsonl"
    jsonl.write_bytes(b'\xef\xbb\xbf{"report_text": "Kein Erguss."}\n\xef\xbb\xbf{"report_text": "Rundherd."}\n')
    export = report_io.read_report_export(jsonl, ReportColumns())
    assert [(r.location, r.text) for r in export.reports] == [("line 1", "Kein Erguss."), ("line 2", "Rundherd.")]
    assert not export.problems


def test_a_value_spelled_like_the_text_column_is_no_header_again(tmp_path):
    """A German RIS's document type "Befund" where the text column is "Befund", or a report reading
    "Report Text", was taken for a header again: that row and every row after it lost its report."""
    path = tmp_path / "ris.csv"
    path.write_bytes(b"Auftragsnummer;PID;Datum;Dokumenttyp;Befund\nA1;P1;05.01.2024;Befund;Kein Erguss.\n"
                     b"A2;P2;05.01.2024;Befund;Rundherd.\n")
    columns = ReportColumns(text="Befund", accession_number="Auftragsnummer", patient_id="PID", study_date="Datum")
    export = report_io.read_report_export(path, columns)
    assert [(r.location, r.accession_number, r.text) for r in export.reports] == [
        ("line 2", "A1", "Kein Erguss."), ("line 3", "A2", "Rundherd.")]
    plain = _csv(tmp_path / "plain.csv", ("A1", "P1", "20240105", "Report Text"), ("A2", "P2", "20240105", "Erguss."))
    assert [(r.accession_number, r.text) for r in report_io.read_report_export(plain, ReportColumns()).reports] == [
        ("A1", "Report Text"), ("A2", "Erguss.")]
    # a header again is still one where the other columns' names are longer than the text column's
    joined = _csv(tmp_path / "joined.csv", ("A1", "P1", "20240105", "Erguss."), ("study_date", "accession_number",
                  "patient_id", "Text"), ("20240106", "A2", "P2", "Rundherd."), header=(*COLUMNS[:3], "Text"))
    assert [(r.accession_number, r.study_date, r.text) for r in
            report_io.read_report_export(joined, ReportColumns(text="Text")).reports] == [
        ("A1", "20240105", "Erguss."), ("A2", "20240106", "Rundherd.")]


def test_a_dicom_sr_text_with_dicom_line_ends_keeps_its_headings(tmp_path):
    """DICOM text ends lines with CR LF or a bare CR: the SR's text kept them, where an export's
    are "\\n", and a bare CR hid the heading after it (the impression read as findings)."""
    from ctcorpus.reports.sr import read_sr_report
    from ctcorpus.synth.dicom import SeriesHeader, write_sr_report

    header = SeriesHeader("P1", "Muster^Max", "19500101", "M", "1.2", "20240105", "101500", "A2", "1.2.99", 99,
                          "Report", "", "", "", "", 0.0, (0.0, 0.0))
    for end in ("\r", "\r\n"):
        path = tmp_path / f"sr{len(end)}"
        write_sr_report(path, header, [("Findings", [f"Small left pleural effusion.{end}IMPRESSION:{end}Effusion."])])
        assert read_sr_report(path).text == "Findings:\nSmall left pleural effusion.\nIMPRESSION:\nEffusion."
        result = process_reports([], [StudyKey("1.2", "A2", "P1", "20240105")], sr_documents=[(path, "SR/a")])
        assert result.reports[0].section_names == ("findings", "impression")


def test_an_hl7_message_without_a_type_or_with_obx_before_any_obr_is_named(tmp_path):
    """Passed over without a word: a result message whose OBX stand before its OBR (or that has none)
    lost that text, and a message whose MSH-9 is empty lost its report."""
    msh, pid = "MSH|^~\\&|RIS|H|||20240105120000||ORU^R01|1|P|2.3\r", "PID|||P1||DOE^J\r"
    path = tmp_path / "feed.hl7"
    path.write_text(msh + pid + "OBR|1||A1|||20240105\rOBX|1|TX|^IMPRESSION||Fine.\r"
                    + msh + pid + "OBX|1|TX|^IMPRESSION||Before the order.\rOBR|1||A2|||20240105\rOBX|2|TX|||After.\r"
                    + msh.replace("ORU^R01", "") + pid + "OBR|1||A3|||20240105\rOBX|1|TX|||No type.\r",
                    encoding="utf-8")
    export = report_io.read_report_export(path, ReportColumns())
    assert [(r.location, r.accession_number, r.text) for r in export.reports] == [
        ("message 1", "A1", "IMPRESSION:\nFine."), ("message 2", "A2", "After.")]
    assert [str(p) for p in export.problems] == [
        (f"{path}: message 2 has 1 OBX segment(s) before any OBR, which belong to no order: their text is not "
         "read; fix or remove it [unreadable_report]"),
        (f"{path}: message 3 names no message type (MSH-9 is empty), so it is not read as a report; fix or remove "
         "it [unreadable_report]")]


def test_an_hl7_file_is_read_by_its_fields_whatever_the_tables_columns(tmp_path):
    """The mapping names a table's columns ("" where the site's CSV lacks one, section columns for a
    CT-RATE-like one); an HL7 file read under it lost its patient ids and dates, or was unreadable
    for want of the section columns."""
    path = tmp_path / "feed.hl7.gz"
    path.write_bytes(gzip.compress(b"MSH|^~\\&|RIS|H|||20240105120000||ORU^R01|1|P|2.3\rPID|||P1||DOE^J\r"
                                   b"OBR|1||A1||||20240105101500\rOBX|1|TX|^IMPRESSION||Fine.\r"))
    for columns in (ReportColumns(patient_id="", study_date="", report_time=""),
                    ReportColumns(text="", sections={"findings": "Findings_EN"}, accession_number="Acc")):
        (report,) = report_io.read_report_export(path, columns).reports
        assert (report.accession_number, report.patient_id, report.study_date, report.report_time, report.text) == (
            "A1", "P1", "20240105", "20240105120000", "IMPRESSION:\nFine.")


def test_hl7_hex_escaped_line_ends_break_lines():
    """An HL7 text may send its line ends as hex data ("\\X0D0A\\", "\\X0D\\"): decoded after the line
    ends were made "\\n", a bare CR stayed and hid the heading after it."""
    from ctcorpus.reports.markup import to_plain_text

    assert to_plain_text(r"FINDINGS:\X0D0A\Kein Erguss.\X0D\IMPRESSION:\X0A\Normal.", hl7=True).text == (
        "FINDINGS:\nKein Erguss.\nIMPRESSION:\nNormal.")


def test_a_report_as_close_to_two_studies_links_to_neither(caplog):
    """A report without accession number dated between two studies of its patient (or on the day of
    two) took the smaller study UID: which exam it is cannot be told, and a wrong pair is worse
    than none. It links once the other reports leave it one of them."""
    studies = [StudyKey("1.3", "", "P1", "20240107"), StudyKey("1.2", "", "P1", "20240105"),
               StudyKey("1.9", "", "P2", "20240105")]
    reports = [_raw("", "P1", "20240106"), _raw("", "P2", "20240106")]
    with caplog.at_level(logging.WARNING, logger="ctcorpus.reports.link"):
        links = link_reports(reports, studies, window_days=3)
    assert [(k.study and k.study.study_uid, k.method, [s.study_uid for s in k.candidates]) for k in links] == [
        (None, "", ["1.2", "1.3"]), ("1.9", "patient_date", [])]
    assert "1 reports are as close in date to several studies of their patient (ris.csv line 2)" in caplog.text
    # two reports of the day of two studies: each pairing is a coin toss, so neither links
    same_day = [StudyKey("1.5", "", "P1", "20240105"), StudyKey("1.4", "", "P1", "20240105")]
    links = link_reports([_raw("", "P1", "20240105"), _raw("", "P1", "20240105", "Rundherd.")], same_day,
                         window_days=3)
    assert [(k.study, [s.study_uid for s in k.candidates]) for k in links] == [(None, ["1.4", "1.5"])] * 2
    # another report takes one of the two (closer, or as close and only to it): the between one takes the other
    for other in ("20240107", "20240108"):
        links = link_reports([_raw("", "P1", "20240106"), _raw("", "P1", other, "Rundherd.")], studies, window_days=3)
        assert [(k.study.study_uid, k.method) for k in links] == [("1.2", "patient_date"), ("1.3", "patient_date")]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="ctcorpus.reports.link"):  # two reports, two studies: no tie left
        links = link_reports([_raw("", "P1", "20240107"), _raw("", "P1", "20240105")], studies, window_days=3)
    assert [k.study.study_uid for k in links] == ["1.3", "1.2"]
    assert "as close in date" not in caplog.text


def test_a_report_farther_from_a_study_than_an_ambiguous_one_does_not_take_it(tmp_path):
    """A report between two studies (a day from each) was held back, and a report three days after
    the later study, it alone in its window, took that one: the between report then took the other,
    so the export order of farther reports decided which exam it reports (one three days before the
    earlier study, exported first, made it the later one's). The nearer report's claim holds the
    study: both are quarantined, whatever the order."""
    studies = [StudyKey("1.3", "", "P1", "20240107"), StudyKey("1.2", "", "P1", "20240105")]
    between, after, before = _raw("", "P1", "20240106"), _raw("", "P1", "20240110"), _raw("", "P1", "20240102")
    expected = {"20240106": (None, ["1.2", "1.3"], []), "20240110": (None, [], ["1.3"]), "20240102": (None, [], ["1.2"])}
    for reports in ([between, after], [between, after, before], [between, before, after], [after, before, between]):
        links = link_reports(reports, studies, window_days=3)
        assert [(k.study, [s.study_uid for s in k.candidates], [s.study_uid for s in k.claimed_nearer])
                for k in links] == [expected[r.study_date] for r in reports]
    # a farther report with another study as close takes that one, as it would were the held study taken
    links = link_reports([between, after], [*studies, StudyKey("1.4", "", "P1", "20240113")], window_days=3)
    assert [(k.study and k.study.study_uid, [s.study_uid for s in k.claimed_nearer]) for k in links] == [
        (None, []), ("1.4", [])]
    path = _csv(tmp_path / "ris.csv", ("", "P1", "2024-01-06", "Kein Erguss."), ("", "P1", "2024-01-10", "Rundherd."))
    result = process_reports([path], studies, pseudonymize=_tagged)
    assert result.reports == ()
    assert [q.reason for q in result.quarantine[:2]] == [QuarantineReason.AMBIGUOUS_LINK] * 2
    assert "line 3: it links by patient and date, and a report nearer in date to the study stu-1.3 of its patient" \
           in result.quarantine[1].message


def test_an_ambiguous_link_is_quarantined_with_its_candidates(tmp_path):
    path = _csv(tmp_path / "ris.csv", ("", "P1", "2024-01-05", "Kein Erguss."), ("", "P1", "2024-01-05", "Rundherd."))
    studies = [StudyKey("1.5", "", "P1", "20240105"), StudyKey("1.4", "", "P1", "20240105")]
    result = process_reports([path], studies, pseudonymize=_tagged)
    assert result.reports == ()
    assert [(q.reason, q.path) for q in result.quarantine] == [(QuarantineReason.AMBIGUOUS_LINK, str(path))] * 2 + [
        (QuarantineReason.NO_REPORT, "")] * 2
    assert "line 3: it links by patient and date, and the studies stu-1.4, stu-1.5 of its patient are as close" \
           in result.quarantine[1].message
    assert "as close in date to it as to another study of the patient links to neither" in result.quarantine[2].message


def test_a_german_report_time_with_uhr_is_read(tmp_path, caplog):
    """A German RIS writes "05.01.2024 14:30 Uhr": read as midnight, its versions of a report were
    ordered by export order alone (a preliminary exported after its final was kept)."""
    path = tmp_path / "ris.csv"
    path.write_bytes(b"accession_number;report_time;report_text\nA1;05.01.2024 14:30 Uhr;Final.\n"
                     b"A1;05.01.2024 09:15 Uhr;Vorl\xc3\xa4ufig.\n")
    with caplog.at_level(logging.WARNING, logger="ctcorpus.reports.io"):
        export = report_io.read_report_export(path, ReportColumns())
    assert [r.report_time for r in export.reports] == ["20240105143000", "20240105091500"]
    assert "does not read" not in caplog.text
    result = process_reports([path], [StudyKey("1.1", "A1", "P1", "20240105")])
    assert [r.text for r in result.reports] == ["Final."]


def test_a_report_given_as_a_list_of_lines_reads_as_its_lines(tmp_path):
    """A JSON export (or a Parquet list column) giving the report as an array of its lines: the
    report was Python's "['Findings: ...', ...]", brackets and quotes in the corpus."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    jsonl = tmp_path / "ris.jsonl"
    jsonl.write_text(json.dumps({"accession_number": "A1", "report_text": ["Findings:", "Kein Erguss."]}) + "\n")
    parquet = tmp_path / "ris.parquet"
    pq.write_table(pa.table({"accession_number": ["A1"], "report_text": [["Findings:", "Kein Erguss."]]}), parquet)
    for path in (jsonl, parquet):
        (report,) = report_io.read_report_export(path, ReportColumns()).reports
        assert report.text == "Findings:\nKein Erguss."


def test_ids_that_a_float_column_wrote_to_csv_read_as_integers(tmp_path):
    """pandas writes an id column with a gap as floats, to CSV as "4711.0": the patient id cited in
    the text ("4711") was not scrubbed, and the report's id differed from that of the same row read
    from a Parquet or JSON export (a float cell reads "4711")."""
    text = "Kein Pleuraerguss. Vergleich mit Voruntersuchung 4711."
    path = _csv(tmp_path / "ris.csv", ("123.0", "4711.0", "20240105", text), ("", "", "20240106", "Rundherd."))
    jsonl = tmp_path / "ris.jsonl"
    jsonl.write_text(json.dumps(dict(zip(COLUMNS, (123.0, 4711.0, "20240105", text), strict=True))) + "\n")
    (csv_row, _), (json_row,) = (report_io.read_report_export(p, ReportColumns()).reports for p in (path, jsonl))
    assert (csv_row.accession_number, csv_row.patient_id) == (json_row.accession_number, json_row.patient_id) == (
        "123", "4711")
    (report,) = process_reports([path], [StudyKey("1.1", "123", "4711", "20240105")]).reports
    assert report.report_id == "123" and "4711" not in report.text


def test_pandas_to_json_dates_are_read(tmp_path, caplog):
    """pandas' ``to_json`` writes a date column as milliseconds since 1970: each was logged as no
    date, and every report of the export lost its link by patient and date."""
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"accession_number": ["", "A2"], "patient_id": ["P1", "P1"],
                          "study_date": pd.to_datetime(["2024-01-05", "2024-01-06"]),
                          "report_time": pd.to_datetime(["2024-01-05 10:22:33", "2024-01-06 08:00:00"]),
                          "report_text": ["Kein Erguss.", "Rundherd."]})
    path = tmp_path / "ris.jsonl"
    frame.to_json(path, orient="records", lines=True)
    assert "1704450153000" in path.read_text()  # milliseconds, where the export meant 2024-01-05 10:22:33
    with caplog.at_level(logging.WARNING, logger="ctcorpus.reports.io"):
        export = report_io.read_report_export(path, ReportColumns())
    assert [(r.study_date, r.report_time) for r in export.reports] == [
        ("20240105", "20240105102233"), ("20240106", "20240106080000")]
    assert not caplog.messages
    frame.to_json(path, orient="records", lines=True, date_unit="s")
    assert [r.report_time for r in report_io.read_report_export(path, ReportColumns()).reports] == [
        "20240105102233", "20240106080000"]


@pytest.mark.parametrize(("value", "utc", "expected"), [
    ("2024-1-5", False, "20240105000000"), ("2024/1/15 9:05", False, "20240115090500"),
    ("Fri, 05 Jan 2024 10:22:33 +0100", False, "20240105102233"),
    ("Fri, 05 Jan 2024 10:22:33 +0100", True, "20240105092233"), ("5 Jan 2024 22:10 GMT", True, "20240105221000"),
    ("1704448953", True, "20240105100233"), ("1704448953000", False, "20240105100233"),
    ("2024010510", False, "20240105000000"),  # YYYYMMDDHH, no seconds since 1970
    ("Fri, 05 Jan 2024 10:22:33 CET", True, "20240105000000"),  # a zone's name is not read, as after any date
])
def test_more_date_spellings_are_read(value, utc, expected):
    assert report_io.normalize_time(value, utc=utc) == expected


@pytest.mark.parametrize(("value", "expected"), [
    ("Jan 5, 2024", "20240105"), ("January 5, 2024", "20240105"), ("Sept. 5th, 2024", "20240905"),
    ("Fri Jan 05 2024", "20240105"), ("5 January 2024", "20240105"), ("05-JAN-2024", "20240105"),
    ("05-JAN-24", "20240105"), ("05-Dec-98", "19981205"), ("5. Januar 2024", "20240105"),
    ("05. Mär. 2024", "20240305"), ("05. Ma\u0308r. 2024", "20240305"), ("12. Mrz. 2024", "20240312"),
    ("Freitag, 5. Jänner 2024", "20240105"), ("3. Okt 2024", "20241003"), ("1. Mai 2024", "20240501"),
    ("31 Feb 2024", ""), ("5 Foo 2024", ""), ("Ju 5, 2024", ""), ("Jan 24, 10:22", ""), ("Mai 2024", ""),
])
def test_dates_that_name_their_month_are_read_in_english_and_german(value, expected):
    """A RIS writes the study date with the month's name ("Jan 5, 2024", Oracle's "05-JAN-24", German
    "5. Januar 2024"): no such value was read, and every report of the export linked by accession number
    alone. Read by a table of names, not the process locale (which names one language's months only)."""
    assert report_io.normalize_date(value) == expected


@pytest.mark.parametrize(("value", "expected"), [
    ("05-JAN-24 02.30.15.000000 PM", "20240105143015"), ("05-JAN-24 10.22.33,123456 +01:00", "20240105092233"),
    ("05.01.2024 10.22 Uhr", "20240105102200"), ("20240105.0", "20240105000000"), ("05.01.2024 10.2", "20240105000000"),
])
def test_report_times_with_dots_between_hours_and_minutes_keep_their_time(value, expected):
    """Oracle writes a TIMESTAMP as "05-JAN-24 02.30.15.000000 PM" and German as "10.22 Uhr": the time
    was not read, so each version of a report counted as midnight and the export order chose the one used."""
    assert report_io.normalize_time(value, utc=True) == expected


def test_an_export_with_month_names_links_by_patient_and_date_and_keeps_report_times(tmp_path, caplog):
    path = _csv(tmp_path / "ris.csv", ("", "P1", "5. Januar 2024", "05-JAN-24 14:30", "Kein Erguss."),
                ("A2", "P2", "Jan 5, 2024", "Jan 5, 2024 2:30 PM", "No effusion."),
                header=(*COLUMNS[:3], "report_time", "report_text"))
    with caplog.at_level(logging.WARNING, logger="ctcorpus.reports.io"):
        export = report_io.read_report_export(path, ReportColumns())
    assert not caplog.messages
    assert [(r.study_date, r.report_time) for r in export.reports] == [
        ("20240105", "20240105143000"), ("20240105", "20240105143000")]
    result = process_reports([path], [StudyKey("1.1", "", "P1", "20240106"), StudyKey("1.2", "", "P2", "20240105")])
    assert sorted(r.link_method for r in result.reports) == ["patient_date", "patient_date"]
