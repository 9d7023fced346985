"""What the audit reports: a :class:`Finding` with a kind, a severity and the ids it concerns."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum


class Severity(str, Enum):
    """How urgently a finding needs a person: ``high`` blocks training (a leak between splits)."""

    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"
    INFO = "info"


#: Severities from most to least urgent (report order).
SEVERITY_ORDER: tuple[Severity, ...] = (Severity.HIGH, Severity.MEDIUM, Severity.LOW, Severity.INFO)


class FindingKind(str, Enum):
    """The checks of the audit; the first eight are leaks or duplicates (:data:`LEAK_KINDS`)."""

    PATIENT_ACROSS_GROUPS = "patient_across_groups"
    STUDY_ACROSS_GROUPS = "study_across_groups"
    ACCESSION_ACROSS_GROUPS = "accession_across_groups"
    SAME_PERSON_TWO_IDS = "same_person_two_ids"
    DUPLICATE_VOLUME = "duplicate_volume"
    NEAR_DUPLICATE_VOLUME = "near_duplicate_volume"
    DUPLICATE_REPORT = "duplicate_report"
    NEAR_DUPLICATE_REPORT = "near_duplicate_report"
    PLACEHOLDER_ID = "placeholder_id"  # an accession or patient id that names no one: not checked for leaks
    OTHER_FINGERPRINT_VERSION = "other_fingerprint_version"  # fingerprints of a version not compared
    LABEL_MISSING_IN_SPLIT = "label_missing_in_split"  # no positive or no negative report there: no AUC
    EMPTY_SPLIT = "empty_split"  # no report there (no volume either, or the config's split has no patient)
    ORPHAN_LABELS = "orphan_labels"  # labels of reports the reports table does not hold: counted nowhere
    QUARANTINE = "quarantine"
    SPLIT_CHANGED = "split_changed"
    PIPELINE_CHANGED = "pipeline_changed"  # another ctcorpus version, or other producers, built the two versions
    LABELS_NOT_COMPARED = "labels_not_compared"  # a version has no labels table: no label checked or shift computed


LEAK_KINDS: frozenset[FindingKind] = frozenset(list(FindingKind)[:8])


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem the audit found.

    Parameters
    ----------
    kind:
        Which check found it.
    severity:
        ``high`` for a leak between splits (or between this corpus and the one checked against).
    ids:
        The ids concerned, sorted (patient, study, accession, volume or report ids, by kind; the
        placeholder for a placeholder id; the versions left out for another fingerprint version;
        the reports not in the reports table for orphan labels;
        the label, or the quarantine reasons, for those findings; none for an empty split; the old and
        the new ctcorpus version for a pipeline change, or where they agree, the tables whose rows
        other producers made; the versions without a labels table when labels were not compared).
    groups:
        The splits the ids fall in, sorted (``corpus/split`` against another corpus); the old and
        the new corpus for a split or pipeline change, or labels not compared; the corpus holding
        them for another fingerprint version; the stage for quarantine; the empty split; none for orphan labels.
    score:
        Duplicates: the lowest similarity among the pairs found joining the cluster (of near
        copies of reports, a tree of them, not all; 1.0 when all are exact copies); a label missing in a split: its prevalence there; quarantine: the items
        rejected; an empty split: its volumes; a placeholder id: the patients (of an accession) or
        persons (``patient_key``, of a patient id) it is held by; another fingerprint version: the
        volumes left out; orphan labels: their label rows; otherwise 1.0.
    detail:
        One line for a person.
    """

    kind: FindingKind
    severity: Severity
    ids: tuple[str, ...]
    groups: tuple[str, ...]
    score: float
    detail: str


def groups_text(groups: Iterable[str]) -> str:
    """A finding's groups as a person reads them: an unknown split ('') is '(no split)', alone or after
    its corpus (``v1/``); left blank, a patient read as "in , test, train"."""
    return ", ".join(f"{group}(no split)" if group == "" or group.endswith("/") else group for group in groups)
