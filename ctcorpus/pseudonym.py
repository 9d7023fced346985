"""Keyed pseudonyms for patient IDs, accession numbers and DICOM UIDs.

Every identifier that leaves ingestion in a table is replaced by ``<prefix>-<hex>``, the first
bytes of HMAC-SHA256(key, kind + identifier). The key makes the ids impossible to reverse or to
recompute without it (a plain hash of a patient ID is not a pseudonym: IDs are guessable); the
same key gives the same ids in every run, so outputs join across runs. Original identifiers go
only to an optional private linkage table (:meth:`Pseudonymizer.linkage`), never to the corpus.

>>> p = Pseudonymizer.from_literal("demo-key")
>>> p.patient("12345").startswith("pat-")
True
>>> p.patient("12345") == Pseudonymizer.from_literal("demo-key").patient("12345")
True
>>> p.patient("0012345") == p.patient("12345")   # keyed as written, unless told to strip the zeros
False
>>> s = Pseudonymizer.from_literal("demo-key", strip_patient_zeros=True)
>>> s.patient("0012345") == s.patient("12345") == p.patient("12345")
True
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from dataclasses import dataclass, field
from typing import Literal

from ctcorpus.errors import ConfigError

#: Kinds of identifier and their id prefixes.
Kind = Literal["pat", "stu", "acc", "ser", "sop", "for", "vol", "per"]  # per: a person (name + birth date)

#: Hex characters kept per id: 64 bits, collision-free for any realistic export.
ID_HEX = 16


#: A float's spelling of a whole number ("12345.0"): pandas writes an id column with a gap so.
_WHOLE_FLOAT = re.compile(r"(\d+)\.0+")


def without_float_zeros(value: str) -> str:
    """An id as written before a float column spelled it: "4711.0" is "4711" (pandas writes an id
    column with a gap as floats, also to CSV), any other text as it is.

    >>> without_float_zeros("4711.0"), without_float_zeros("000123.00"), without_float_zeros("1.5"), without_float_zeros("A1.0")
    ('4711', '000123', '1.5', 'A1.0')
    """
    return m[1] if (m := _WHOLE_FLOAT.fullmatch(value)) else value


def patient_key(patient_id: str) -> str:
    """A patient id as its pseudonym keys it: an all-digit id without its leading zeros, any other
    as it is (so the pseudonym of an id with no leading zero is the one it always was).

    Some RIS and PACS strip the zeros of a fixed-width id ("0012345" -> "12345") and others keep
    them, so one export may hold a patient under both; keyed as written, they were two patients,
    whom a patient-level split may put on both sides of a split (a leak the audit cannot see).

    >>> patient_key("0012345"), patient_key("12345"), patient_key("000"), patient_key("0A12")
    ('12345', '12345', '0', '0A12')
    """
    return (patient_id.lstrip("0") or "0") if patient_id.isdigit() else patient_id


def id_key(value: str) -> str:
    """An accession number or patient id as linking compares it: without surrounding blanks, in
    upper case, and a number without leading zeros or a float's ".0".

    Spreadsheets drop the leading zeros of an all-digit id ("000123456" -> "123456") and pandas
    writes an id column with a gap as floats ("12345.0"), while the DICOM headers keep the RIS's
    spelling: compared as written, every report of such an export would be an orphan.

    >>> id_key(" 000123456 "), id_key("12345.0"), id_key("acc-007"), id_key("0")
    ('123456', '12345', 'ACC-007', '0')
    """
    return patient_key(without_float_zeros(value.strip().upper()))


def accession_key(value: str) -> str:
    """An accession number as linking compares it (:func:`id_key`), "" for none: also for a
    placeholder that names no order, all zeros ("0", "00000000": what a modality writes when the RIS
    sent none) or without a letter or digit ("-").

    Taken for a number, a placeholder made one exam of all the studies and reports of a patient
    that carry it: the reports were taken for versions of one report (all but the latest dropped as
    superseded), and linked to the study with the smallest UID instead of by date.

    >>> accession_key(" 000123 "), accession_key("00000000"), accession_key("-"), accession_key("A0")
    ('123', '', '', 'A0')
    """
    key = id_key(value)
    return "" if key == "0" or not any(c.isalnum() for c in key) else key


#: German letters and how a text without them spells them.
_UMLAUT_SPELLINGS = (("ä", "ae"), ("ö", "oe"), ("ü", "ue"), ("ß", "ss"))


def name_spellings(part: str) -> tuple[str, str, str]:
    """A name part, and it without and with umlauts: DICOM's default character set has none, so a
    header says "MUELLER" where a report or a folder says "Müller", and the other way round.

    >>> name_spellings("müller"), name_spellings("mueller")
    (('müller', 'mueller', 'müller'), ('mueller', 'mueller', 'müller'))
    """
    without, with_umlauts = part, part
    for umlaut, spelled in _UMLAUT_SPELLINGS:
        without, with_umlauts = without.replace(umlaut, spelled), with_umlauts.replace(spelled, umlaut)
    return part, without, with_umlauts


@dataclass(frozen=True, slots=True)
class LinkageRow:
    """One pseudonym and the original identifier it replaces (private: never part of the corpus)."""

    kind: str
    pseudonym: str
    original: str


@dataclass(frozen=True, slots=True)
class Pseudonymizer:
    """Makes stable keyed pseudonyms; optionally remembers the originals for a linkage table.

    Build it with :meth:`from_config` (key from an environment variable, read at call time) or
    :meth:`from_literal` (tests and demos only). ``strip_patient_zeros`` keys patient ids by
    :func:`patient_key` (``ingest.patient_id_zeros: strip``), so "0012345" and "12345" are one
    patient; off (the default), ids are keyed as written, as every earlier release keyed them.
    """

    key: bytes = field(repr=False)
    record: bool = False
    strip_patient_zeros: bool = False
    _seen: dict[tuple[str, str], str] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_literal(cls, key: str, *, record: bool = False, strip_patient_zeros: bool = False) -> Pseudonymizer:
        """A pseudonymizer with a literal key (tests and demos only: a literal key in a config leaks)."""
        if not key:
            raise ConfigError("the pseudonym key is empty; set ingest.pseudonym_key_env to a variable holding a secret")
        return cls(key=key.encode("utf-8"), record=record, strip_patient_zeros=strip_patient_zeros)

    @classmethod
    def from_config(cls, literal: str | None, env_var: str, *, record: bool = False,
                    strip_patient_zeros: bool = False) -> Pseudonymizer:
        """Key from ``literal`` if given, else from environment variable ``env_var`` (read now).

        >>> Pseudonymizer.from_config("k", "UNUSED").study("1.2.3")[:4]
        'stu-'
        """
        if literal:
            return cls.from_literal(literal, record=record, strip_patient_zeros=strip_patient_zeros)
        value = os.environ.get(env_var, "")
        if not value:
            raise ConfigError(
                f"no pseudonym key: environment variable {env_var} is unset or empty; "
                "export it with a long random secret (keep it: it makes ids stable across runs)",
                path="ingest.pseudonym_key_env",
            )
        return cls.from_literal(value, record=record, strip_patient_zeros=strip_patient_zeros)

    @property
    def key_id(self) -> str:
        """A fingerprint that names the key, and how it keys patient ids, without revealing it:
        stored results are keyed by it, so a rotated key (read from the environment, where no config
        digest sees it) or another ``strip_patient_zeros`` recomputes them instead of mixing old
        pseudonyms with new ones."""
        label = b"ctcorpus key id, patient zeros stripped" if self.strip_patient_zeros else b"ctcorpus key id"
        return hmac.new(self.key, label, hashlib.sha256).hexdigest()[:16]

    def make(self, kind: Kind, value: str) -> str:
        """The pseudonym of ``value`` as identifier kind ``kind`` (``""`` stays ``""``); a patient id
        keyed as ``strip_patient_zeros`` says, also where the reports stage makes it by kind."""
        if not value:
            return ""
        keyed = patient_key(value) if kind == "pat" and self.strip_patient_zeros else value
        digest = hmac.new(self.key, f"{kind}\x00{keyed}".encode(), hashlib.sha256).hexdigest()[:ID_HEX]
        pseudonym = f"{kind}-{digest}"
        if self.record:
            self._seen[(kind, value)] = pseudonym
        return pseudonym

    def patient(self, patient_id: str) -> str:
        return self.make("pat", patient_id)

    def study(self, study_uid: str) -> str:
        return self.make("stu", study_uid)

    def accession(self, accession_number: str) -> str:
        """The accession number's pseudonym; ``""`` for a placeholder that names no order
        (:func:`accession_key`): pseudonymized, the "00000000" a modality writes when the RIS sent
        none made the studies of many patients share one ``accession_id``, an accession leak across
        splits for the audit wherever two of them fell apart."""
        return self.make("acc", accession_number) if accession_key(accession_number) else ""

    def series(self, series_uid: str) -> str:
        return self.make("ser", series_uid)

    def instance(self, sop_uid: str) -> str:
        return self.make("sop", sop_uid)

    def frame_of_reference(self, uid: str) -> str:
        return self.make("for", uid)

    def volume(self, key: str) -> str:
        return self.make("vol", key)

    def linkage(self) -> list[LinkageRow]:
        """Rows of the private linkage table (only when built with ``record=True``)."""
        return [LinkageRow(kind, pseudonym, original) for (kind, original), pseudonym in sorted(self._seen.items())]


__all__ = ["ID_HEX", "Kind", "LinkageRow", "Pseudonymizer", "patient_key"]
