"""Linking reports to ingested studies: by accession number, else by patient id and date window."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from ctcorpus.reports.records import RawReport, StudyKey

__all__ = ["Link", "link_reports"]


@dataclass(frozen=True, slots=True)
class Link:
    """A report and the study it belongs to (``None``: orphan) and how that was decided."""

    report: RawReport
    study: StudyKey | None
    method: str  # "accession", "patient_date" or "" for an orphan


def _day(yyyymmdd: str) -> date | None:
    try:
        return date(int(yyyymmdd[:4]), int(yyyymmdd[4:6]), int(yyyymmdd[6:8]))
    except (ValueError, IndexError):
        return None


def link_reports(reports: Sequence[RawReport], studies: Sequence[StudyKey], *, window_days: int) -> tuple[Link, ...]:
    """Link each report to one study.

    An accession number present in both wins. Otherwise the report goes to the same patient's
    study closest in date, if at most ``window_days`` away and not already claimed by a report
    through its accession number (a report of another exam on the same day must not land on a
    reported study; ties: the smaller study UID, so the result does not depend on input order).
    Anything else is an orphan (``study=None``).

    >>> s = StudyKey("1.2", "A1", "P1", "20240105")
    >>> r = RawReport("x.csv", 0, "", "P1", "20240107", "text", "", "", "utf-8", "", "")
    >>> link_reports([r], [s], window_days=3)[0].method
    'patient_date'
    """
    by_accession = {s.accession_number: s for s in studies if s.accession_number}
    by_patient: dict[str, list[tuple[date, StudyKey]]] = defaultdict(list)
    for s in studies:
        day = _day(s.study_date)
        if s.patient_id and day is not None:
            by_patient[s.patient_id].append((day, s))
    direct = [by_accession.get(r.accession_number) if r.accession_number else None for r in reports]
    claimed = {s.study_uid for s in direct if s is not None}
    links = []
    for report, study in zip(reports, direct, strict=True):
        if study is not None:
            links.append(Link(report, study, "accession"))
            continue
        day = _day(report.study_date)
        candidates = [
            (abs((d - day).days), s.study_uid, s) for d, s in by_patient.get(report.patient_id, ())
            if day is not None and abs((d - day).days) <= window_days and s.study_uid not in claimed
        ]
        if candidates:
            links.append(Link(report, min(candidates, key=lambda c: (c[0], c[1]))[2], "patient_date"))
        else:
            links.append(Link(report, None, ""))
    return tuple(links)
