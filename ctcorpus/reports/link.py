"""Linking reports to ingested studies: by accession number, else by patient id and date window."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date

from ctcorpus.pseudonym import accession_key, id_key
from ctcorpus.reports.records import RawReport, StudyKey

__all__ = ["Link", "link_by_accession", "link_reports", "link_sr_reports"]

logger = logging.getLogger(__name__)

@dataclass(frozen=True, slots=True)
class Link:
    """A report and the study it belongs to (``None``: orphan) and how that was decided."""

    report: RawReport
    study: StudyKey | None
    method: str  # "accession", "requested_accession", "patient_date", "dicom_sr" or "" for an orphan
    #: for an orphan: the study of another patient that carries the report's accession number (of a
    #: report without patient id: one of the studies of several patients that carry it)
    conflict: StudyKey | None = None
    #: for an orphan by date: the studies of its patient as close in date as each other, of which
    #: it may report any (by study UID); ``()`` otherwise
    candidates: tuple[StudyKey, ...] = ()
    #: for an orphan by date: the studies of its window that a report nearer in date may report, one
    #: as close to another study: whether they are this report's turns on which exam that one
    #: reports, which cannot be told (by study UID); ``()`` otherwise
    claimed_nearer: tuple[StudyKey, ...] = ()


def _day(yyyymmdd: str) -> date | None:
    try:
        return date(int(yyyymmdd[:4]), int(yyyymmdd[4:6]), int(yyyymmdd[6:8]))
    except (ValueError, IndexError):
        return None


def _same_patient(report: RawReport, study: StudyKey) -> bool:
    """Whether the report may be the study's: their patient ids agree (by :func:`id_key`), or
    either lacks one (nothing to check)."""
    return not report.patient_id or not study.patient_id or id_key(report.patient_id) == id_key(study.patient_id)


def _has_accession(study: StudyKey) -> bool:
    """Whether the study carries an accession number, its own or an order's it fulfils."""
    return bool(accession_key(study.accession_number) or any(map(accession_key, study.requested_accession_numbers)))


def _by_accession(
    report: RawReport, own: Mapping[str, list[StudyKey]], requested: Mapping[str, list[StudyKey]]
) -> tuple[Link | None, tuple[StudyKey, ...]]:
    """The report's link by accession number (``None``: it has none, or no study carries it) and
    the studies of its patient that carry it (one exam's: none of them takes another report by date).

    Accession numbers are only unique within one RIS: a study of another patient with the number
    (two sites' counters, "00123" and "123") is never linked, the report is an orphan naming it;
    so is a report without patient id whose number studies of several patients carry (which one
    is its patient's cannot be told). Of several studies of the patient (a modality that split one
    exam), the smallest study UID takes the report, so the choice does not depend on the order of
    the studies.
    """
    if not (key := accession_key(report.accession_number)):
        return None, ()
    for method, index in (("accession", own), ("requested_accession", requested)):
        if same := [s for s in index.get(key, ()) if _same_patient(report, s)]:
            first = min(same, key=lambda s: s.study_uid)
            if not report.patient_id and len({id_key(s.patient_id) for s in same if s.patient_id}) > 1:
                return Link(report, None, "", conflict=first), ()
            return Link(report, first, method), tuple(same)
    others = [*own.get(key, ()), *requested.get(key, ())]
    return (Link(report, None, "", conflict=min(others, key=lambda s: s.study_uid)) if others else None), ()


def _accession_index(studies: Sequence[StudyKey]) -> tuple[dict[str, list[StudyKey]], dict[str, list[StudyKey]]]:
    """The studies by their own accession number and by those of the orders they fulfil (by :func:`accession_key`)."""
    own: dict[str, list[StudyKey]] = defaultdict(list)
    requested: dict[str, list[StudyKey]] = defaultdict(list)
    for s in studies:
        if key := accession_key(s.accession_number):
            own[key].append(s)
        for number in dict.fromkeys(filter(None, map(accession_key, s.requested_accession_numbers))):
            requested[number].append(s)
    return own, requested


def link_by_accession(reports: Sequence[RawReport], studies: Sequence[StudyKey]) -> tuple[Link, ...]:
    """Link each report by accession number alone, as :func:`link_reports` does first (``study``
    ``None`` where that finds none): for rows that are no report, such as a cancel, which name
    their study by number but must not take one by date."""
    own, requested = _accession_index(studies)
    return tuple(_by_accession(report, own, requested)[0] or Link(report, None, "") for report in reports)


def link_reports(reports: Sequence[RawReport], studies: Sequence[StudyKey], *, window_days: int) -> tuple[Link, ...]:
    """Link each report to one study.

    An accession number present in both wins (compared by :func:`accession_key`) where the patient
    ids agree (or either is missing): the study's own, else one of the orders it fulfils
    (``requested_accession``: a chest and an abdomen order read on one scan, each reported under
    its number, link both to that study); of several such studies, the smallest study UID. A report
    whose accession number only studies of other patients carry, or that has no patient id and
    whose number studies of several patients carry, is an orphan with such a study as
    ``conflict``. Otherwise, when the report or the study has no accession number (a report and a
    study with different numbers are different exams: an X-ray's report never goes to the CT of
    the day), the report goes to a study of the same patient at most ``window_days`` away that no other
    report claims (a report claims by its number each study of its patient carrying it: a split exam
    takes no second report by date): a study takes one report, the closest in date (ties: the
    earlier in export order; an empty row only when no report with text wants the study), so a
    report of another exam on the same day never lands on a reported study and the result does not
    depend on the order of the studies. A report as close to several free studies links to the one of them the other reports as
    close leave, else to none, with them as ``candidates`` (logged); a farther report passes over the
    studies it holds, and links to none with them as ``claimed_nearer`` where it finds no other.
    Anything else is an orphan (``study=None``).

    >>> s = StudyKey("1.2", "A1", "P1", "20240105")
    >>> r = RawReport("x.csv", "line 2", "", "P1", "20240107", "", "text", "", "", "utf-8", "", "")
    >>> link_reports([r], [s], window_days=3)[0].method
    'patient_date'
    """
    own, requested = _accession_index(studies)
    by_patient: dict[str, list[tuple[date, StudyKey]]] = defaultdict(list)
    for s in studies:
        day = _day(s.study_date)
        if s.patient_id and day is not None:
            by_patient[id_key(s.patient_id)].append((day, s))
    found = [_by_accession(r, own, requested) for r in reports]
    matched = [link for link, _ in found]
    if ambiguous := sum(len(same) > 1 for _, same in found):
        logger.warning("reports: the accession numbers of %d reports belong to several studies of their patient; "
                       "each report links to the one with the smallest StudyInstanceUID", ambiguous)
    # a study of an exam whose report links by its number, the one that took it or another (a split exam), is reported
    claimed = {s.study_uid for _, same in found for s in same}
    # the rest, patient by patient: (empty, days, study) of each study a report may be, by report
    wants: dict[str, dict[int, list[tuple[bool, int, StudyKey]]]] = defaultdict(dict)
    for k, (report, match) in enumerate(zip(reports, matched, strict=True)):
        day = _day(report.study_date)
        if match is None and day is not None:
            empty, numbered = not report.text.strip(), bool(accession_key(report.accession_number))
            if options := [(empty, abs((d - day).days), s) for d, s in by_patient.get(id_key(report.patient_id), ())
                           if abs((d - day).days) <= window_days and s.study_uid not in claimed
                           and not (numbered and _has_accession(s))]:
                wants[id_key(report.patient_id)][k] = options
    by_date: dict[int, StudyKey] = {}
    undecided: dict[int, tuple[StudyKey, ...]] = {}
    claimed_nearer: dict[int, tuple[StudyKey, ...]] = {}
    for patient in sorted(wants):
        taken, left, lost = _by_date(wants[patient])
        by_date.update(taken)
        undecided.update(left)
        claimed_nearer.update(lost)
    if undecided or claimed_nearer:
        named = [f"{reports[k].path} {reports[k].location}".strip() for k in sorted({*undecided, *claimed_nearer})]
        logger.warning("reports: %d reports are as close in date to several studies of their patient (%s%s), or "
                       "farther from one than such a report, and link to none (quarantined as ambiguous_link): give "
                       "their rows accession numbers", len(named), ", ".join(named[:5]), ", ..." * (len(named) > 5))
    return tuple(
        match if match is not None
        else Link(report, by_date[k], "patient_date") if k in by_date
        else Link(report, None, "", candidates=undecided.get(k, ()), claimed_nearer=claimed_nearer.get(k, ()))
        for k, (report, match) in enumerate(zip(reports, matched, strict=True))
    )


def _by_date(
    wants: Mapping[int, Sequence[tuple[bool, int, StudyKey]]],
) -> tuple[dict[int, StudyKey], dict[int, tuple[StudyKey, ...]], dict[int, tuple[StudyKey, ...]]]:
    """One patient's links by date: report (index) -> study; report -> the studies it is equally
    close to, of a report left unlinked for that; and report -> the studies it lost to such a
    nearer report, of a report left unlinked for that.

    ``wants`` gives each report's studies in the window as (empty report, days, study). Closest
    pairs go first, reports with text before empty ones: a study takes the closest report (ties:
    the earlier in export order). A report whose closest free studies are several is held back, as
    which exam it reports cannot be told (two CTs of one day; one the day before, one the day
    after): it takes the one of them that the other reports as close leave, else it links to none;
    a guess would put a report beside another exam's volume, worse for a corpus than a missing pair.
    A study such a report holds is closer to it than to any farther report, so a farther report
    passes it over as it does a taken one; one that finds no other study links to none: it took
    the study whichever way the held report lay, and so decided that report's exam by export order.
    """
    taken: dict[str, int] = {}  # study UID -> report
    links: dict[int, StudyKey] = {}
    held: dict[int, tuple[tuple[bool, int, int], list[StudyKey]]] = {}  # report -> (rank, its closest studies)
    lost: dict[int, dict[str, StudyKey]] = defaultdict(dict)  # report -> its studies a report held nearer holds
    for level in sorted({option[:2] for options in wants.values() for option in options}):
        # held now: undecided at a nearer level (the loop below leaves none with a single free study)
        holds = {s.study_uid for _, closest in held.values() for s in closest if s.study_uid not in taken}
        for k, options in wants.items():
            if k not in links and k not in held:
                free = [s for *at, s in options if tuple(at) == level and s.study_uid not in taken]
                lost[k].update((s.study_uid, s) for s in free if s.study_uid in holds)
                if closest := [s for s in free if s.study_uid not in holds]:
                    held[k] = ((*level, k), closest)
        while True:  # the first report by rank that has one study left takes it; one with none waits for a later level
            for k, (_, closest) in sorted(held.items(), key=lambda item: item[1][0]):
                free = [s for s in closest if s.study_uid not in taken]
                if len(free) < 2:
                    del held[k]
                    if free:
                        links[k] = free[0]
                        taken[free[0].study_uid] = k
                        break
            else:
                break
    return links, {k: _by_uid(s for s in closest if s.study_uid not in taken) for k, (_, closest) in held.items()}, {
        k: _by_uid(studies.values()) for k, studies in lost.items() if studies and k not in links and k not in held}


def _by_uid(studies: Iterable[StudyKey]) -> tuple[StudyKey, ...]:
    return tuple(sorted(studies, key=lambda s: s.study_uid))


def link_sr_reports(
    reports: Sequence[RawReport], studies: Sequence[StudyKey], reported: Collection[str]
) -> tuple[tuple[Link, ...], tuple[tuple[RawReport, RawReport], ...]]:
    """Link reports read from DICOM SR documents by their study UID, for the studies not in
    ``reported`` (those the RIS exports gave a report with text; an SR of one of them is not used).

    A study's latest SR (by ``report_time``, then path) is used and its earlier ones are returned
    as (superseded, used) pairs; an SR of a study that was not ingested is an orphan, and so is one
    without a StudyInstanceUID (which its study cannot be told by: as one group, such SRs of
    different studies were taken for versions of one report). An SR without text (a measurement or
    dose document) is no report and is passed over.

    >>> s = StudyKey("1.2", "A1", "P1", "20240105")
    >>> r = RawReport("sr.dcm", "", "A1", "P1", "20240105", "", "text", "", "", "dicom-sr", "", "", "1.2")
    >>> link_sr_reports([r], [s], reported=())[0][0].method
    'dicom_sr'
    """
    known = {s.study_uid: s for s in studies}
    by_study: dict[str, list[RawReport]] = defaultdict(list)
    links: list[Link] = []
    for report in reports:
        if report.text.strip() and report.study_uid:
            by_study[report.study_uid].append(report)
        elif report.text.strip():
            links.append(Link(report, None, ""))
    superseded: list[tuple[RawReport, RawReport]] = []
    for uid, documents in sorted(by_study.items()):
        if uid in reported:
            continue
        *earlier, latest = sorted(documents, key=lambda r: (r.report_time, r.path))
        links.append(Link(latest, known.get(uid), "dicom_sr" if uid in known else ""))
        superseded += [(r, latest) for r in earlier]
    return tuple(links), tuple(superseded)
