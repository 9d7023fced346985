"""Deterministic patient-level splits by a keyed hash.

A patient's split depends only on its pseudonymized id, the split key and the fractions, so
adding patients later never moves an existing patient to another split; patients linked as one
person (:func:`linked_patients`) take the split of the smallest of their ids, which a link found
later can change: the audit against the earlier version names that patient.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Collection, Iterable, Mapping

from ctcorpus.enums import Split

_ORDER = (Split.TRAIN, Split.VALIDATION, Split.TEST)


def assign_split(patient_id: str, fractions: Mapping[str, float], key: str) -> Split:
    """The split of one patient: HMAC-SHA256(key, patient_id) as a number in [0, 1).

    >>> assign_split("pat-1", {"train": 1.0}, "k")
    <Split.TRAIN: 'train'>
    """
    digest = hmac.new(key.encode(), patient_id.encode(), hashlib.sha256).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    edge = 0.0
    for split in _ORDER:
        edge += fractions.get(split.value, 0.0)
        if u < edge:
            return split
    return next(s for s in reversed(_ORDER) if fractions.get(s.value, 0.0) > 0)


def linked_patients(patients: Iterable[str], links: Iterable[Collection[str]]) -> dict[str, str]:
    """Each patient -> the smallest id among the patients ``links`` join to it, directly or through others.

    A link is the patients whose studies hold one volume: the same images (SOP instance UIDs) exported
    under two patient ids, before and after an id correction, are one person, whom a split by id put on
    both sides with the very same volume.

    >>> linked_patients(["pat-a", "pat-b", "pat-c", "pat-d"], [{"pat-c", "pat-b"}, {"pat-d", "pat-c"}])
    {'pat-a': 'pat-a', 'pat-b': 'pat-b', 'pat-c': 'pat-b', 'pat-d': 'pat-b'}
    """
    root = {p: p for p in patients}

    def find(patient: str) -> str:
        while root[patient] != patient:
            root[patient] = root[root[patient]]
            patient = root[patient]
        return patient

    for link in links:
        first, *others = sorted({find(p) for p in link})
        for other in others:
            root[other] = first
    return {p: find(p) for p in root}
