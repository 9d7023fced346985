"""Deterministic patient-level splits by a keyed hash.

A patient's split depends only on its pseudonymized id, the split key and the fractions, so
adding patients later never moves an existing patient to another split.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

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
