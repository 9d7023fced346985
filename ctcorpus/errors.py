"""The exception hierarchy: one base, one subclass per stage.

Every error carries a machine-readable ``reason`` (a :class:`~ctcorpus.enums.QuarantineReason`
where one applies), the ``path`` it concerns (if any) and a message that says what to do.
Flows turn these into quarantine rows; the library raises them by default.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ctcorpus.enums import QuarantineReason


class CtCorpusError(Exception):
    """Base class of every error ctcorpus raises on purpose.

    Parameters
    ----------
    message:
        What went wrong and what to do about it.
    reason:
        The reason code recorded in the quarantine table, and named after the message unless it is
        the default, ``stage_failed``.
    path:
        The file (or folder) the error concerns, named in the message.
    """

    def __init__(
        self,
        message: str,
        *,
        reason: QuarantineReason | str = QuarantineReason.STAGE_FAILED,
        path: str | Path | None = None,
    ) -> None:
        self.reason = QuarantineReason(reason)
        self.path = None if path is None else str(path)
        self.message = message
        prefix = f"{self.path}: " if self.path else ""
        # the default says nothing of the cause: a bad config or a missing key is no failed stage
        suffix = "" if self.reason is QuarantineReason.STAGE_FAILED else f" [{self.reason.value}]"
        super().__init__(f"{prefix}{message}{suffix}")


class ConfigError(CtCorpusError):
    """The configuration is invalid; the message names the field."""


class SynthError(CtCorpusError):
    """The synthetic export generator was asked for something it cannot make."""


class IngestError(CtCorpusError):
    """A DICOM file or stack cannot be used."""


class ReportError(CtCorpusError):
    """A report export or report text cannot be used."""


class SnippetError(CtCorpusError):
    """An image reference cannot be resolved."""


class AnatomyError(CtCorpusError):
    """Segmentation cannot run (e.g. TotalSegmentator weights are not provisioned)."""


class OutputError(CtCorpusError):
    """Writing or verifying the corpus failed."""


class AuditError(CtCorpusError):
    """An audit input is missing or inconsistent."""


class TrainError(CtCorpusError):
    """The training stage cannot run on the given shards or device."""


class IncompleteRunError(CtCorpusError):
    """A flow run did and recorded its work, but lost part of it (studies that failed after retries)
    or found none to do. Raised after recording, so the run ends Failed where a scheduler (a Prefect
    deployment, cron) sees it; ``result`` is what the flow would have returned, for its report.
    """

    def __init__(self, message: str, result: dict[str, Any]) -> None:
        super().__init__(message)
        self.result = result
