"""Records shared by every stage, and the failure-policy handlers.

Stage-specific records live with their stage (``ctcorpus.ingest``, ``ctcorpus.reports``, ...).
The library raises by default; flows pass a :class:`QuarantineLog` as ``on_error`` so a bad
item is recorded and the run goes on (webdataset's handler pattern).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ctcorpus.enums import Action, QuarantineReason
from ctcorpus.errors import CtCorpusError


@dataclass(frozen=True, slots=True)
class QuarantineEntry:
    """One item that was not used (or was repaired), as a row of the ``quarantine`` table."""

    stage: str
    path: str
    reason: QuarantineReason
    message: str
    item_id: str = ""
    action: Action = Action.REJECT

    @classmethod
    def from_error(cls, error: CtCorpusError, stage: str, item_id: str = "") -> QuarantineEntry:
        return cls(stage=stage, path=error.path or "", reason=error.reason, message=str(error), item_id=item_id)


#: An error handler: gets the error and the stage name; re-raises or records.
ErrorHandler = Callable[[CtCorpusError, str], None]


def raise_on_error(error: CtCorpusError, stage: str) -> None:
    """The library default: a bad item stops the call."""
    raise error


@dataclass(slots=True)
class QuarantineLog:
    """An error handler that records each error as a :class:`QuarantineEntry` and continues."""

    entries: list[QuarantineEntry] = field(default_factory=list)

    def __call__(self, error: CtCorpusError, stage: str) -> None:
        self.entries.append(QuarantineEntry.from_error(error, stage))

    def add(self, entry: QuarantineEntry) -> None:
        self.entries.append(entry)

    def extend(self, entries: Iterable[QuarantineEntry]) -> None:
        self.entries.extend(entries)


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes (provenance and manifest checksums)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def sha256_of_hashes(hashes: Iterable[str]) -> str:
    """One provenance hash for a row derived from several files: sha256 of their sorted hashes."""
    return hashlib.sha256("\n".join(sorted(hashes)).encode()).hexdigest()
