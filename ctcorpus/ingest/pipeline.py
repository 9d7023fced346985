"""Per-stack ingestion: assemble + checks + resample + rows, the unit the orchestrator maps.

:func:`ingest_stack` takes one :class:`Stack` and returns picklable records only, so a flow can
map it over stacks on Dask workers one series at a time; memory stays at about one native volume
plus its resampled copy (the native volume is assembled in SimpleITK's buffer, which is resampled
without a copy). A stack that fails never raises: its failure becomes a quarantine row.
"""

from __future__ import annotations

import logging
import os

from ctcorpus.config.ingest import IngestConfig
from ctcorpus.enums import Action, QuarantineReason
from ctcorpus.errors import IngestError
from ctcorpus.ingest.assemble import assemble_volume
from ctcorpus.ingest.records import Finding, IngestedVolume, Stack, Volume
from ctcorpus.ingest.resample import resample_volume
from ctcorpus.ingest.tables import series_row, slice_rows, volume_row
from ctcorpus.pseudonym import Pseudonymizer
from ctcorpus.records import QuarantineEntry

log = logging.getLogger(__name__)

STAGE = "ingest"

_WHAT_TO_DO = {
    Action.REJECT: "the stack is not used; fix the export or change ingest.policy to repair/accept",
    Action.REPAIR: "repaired by ingestion; check the volume if exact geometry matters",
    Action.ACCEPT: "kept as is (recorded for the audit)",
}


def _describe(stack: Stack) -> str:
    first = stack.first
    folder = os.path.dirname(first.rel_path) or "."
    label = f"series {first.series_number}" if first.series_number is not None else "series (no SeriesNumber)"
    return f"{label} '{first.series_description}' in {folder} ({len(stack.instances)} slices)"


def finding_entry(stack: Stack, item: Finding, volume_id: str) -> QuarantineEntry:
    """The quarantine row of one geometry decision (rejections, repairs and accepted defects)."""
    message = f"{_describe(stack)}: {item.detail}; action {item.action.value}: {_WHAT_TO_DO[item.action]}"
    return QuarantineEntry(STAGE, item.path or stack.first.rel_path, item.reason, message, item_id=volume_id, action=item.action)


def pseudonymizer_for(config: IngestConfig) -> Pseudonymizer:
    """The pseudonymizer the config describes (environment variable read now, not at import)."""
    return Pseudonymizer.from_config(config.pseudonym_key, config.pseudonym_key_env,
                                     strip_patient_zeros=config.patient_id_zeros == "strip")


def _native_and_resampled(stack: Stack, config: IngestConfig) -> tuple[Volume, Volume]:
    """The stack's native and resampled volumes; any failure is an :class:`IngestError` naming the
    stack's first file: a header no check foresaw, that makes SimpleITK or numpy fail, or a stack
    larger than the worker's memory (its study falls back to its next stack, where it failed after
    retries, losing its other stacks and report). A Ctrl-C or exit (no ``Exception``) passes."""
    try:
        native = assemble_volume(stack, config, simpleitk_buffer=True)
        return native, resample_volume(native, config)
    except IngestError:
        raise
    except Exception as exc:  # one stack's failure must not end its study
        hint = ("the series needs more memory than the worker has (run.memory_limit_per_worker), or its headers "
                "declare a bogus size" if isinstance(exc, MemoryError) else "check the series' geometry headers")
        raise IngestError(f"assembling or resampling the volume failed ({type(exc).__name__}: {exc}); {hint}",
                          reason=QuarantineReason.STAGE_FAILED, path=stack.first.rel_path) from exc


def ingest_stack(stack: Stack, config: IngestConfig | None = None, pseudonymizer: Pseudonymizer | None = None) -> IngestedVolume:
    """Assemble, check, repair and resample one stack; return its volume and table rows.

    Rejected stacks (by the policy, or because their pixels cannot be read) come back with
    ``volume=None``, a series row with ``accepted=False`` and the reason in ``quarantine``.

    >>> result = ingest_stack(stacks[0], cfg.ingest)          # doctest: +SKIP
    >>> result.volume.array.shape, len(result.slice_rows)     # doctest: +SKIP
    ((240, 256, 256), 120)
    """
    config = config or IngestConfig()
    p = pseudonymizer or pseudonymizer_for(config)
    volume_id = p.volume(stack.stack_key)
    entries = [finding_entry(stack, item, volume_id) for item in stack.findings]
    if not stack.rejected:
        try:
            native, resampled = _native_and_resampled(stack, config)
        except IngestError as error:
            entries.append(
                QuarantineEntry(STAGE, error.path or stack.first.rel_path, error.reason, f"{_describe(stack)}: {error}", item_id=volume_id)
            )
            log.warning("stack rejected volume_id=%s reason=%s", volume_id, error.reason.value)
        else:
            return IngestedVolume(
                volume_id=volume_id,
                volume=resampled,
                volume_row=volume_row(volume_id, stack, native, native.array.shape, resampled, p),
                slice_rows=tuple(slice_rows(volume_id, stack, native, resampled, p)),
                series_row=series_row(stack, p, accepted=True),
                quarantine=tuple(entries),
            )
    return IngestedVolume(
        volume_id=volume_id,
        volume=None,
        volume_row=None,
        slice_rows=(),
        series_row=series_row(stack, p, accepted=False),
        quarantine=tuple(entries),
    )
