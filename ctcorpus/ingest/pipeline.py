"""Per-stack ingestion: assemble + checks + resample + rows, the unit the orchestrator maps.

:func:`ingest_stack` takes one :class:`Stack` and returns picklable records only, so a flow can
map it over stacks on Dask workers one series at a time; memory stays at about one native volume
plus its resampled copy (the native volume is assembled in SimpleITK's buffer, which is resampled
without a copy). A stack that fails never raises: its failure becomes a quarantine row.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

from ctcorpus.config.ingest import IngestConfig
from ctcorpus.enums import Action, QuarantineReason
from ctcorpus.errors import IngestError
from ctcorpus.ingest.assemble import assemble_volume
from ctcorpus.ingest.records import Finding, IngestedVolume, Stack
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


def stage_failed_entry(stack: Stack, volume_id: str, step: str, error: Exception) -> QuarantineEntry:
    """The ``stage_failed`` row of a stack whose ``step`` failed with an error no check foresaw, or for
    want of memory: no verdict on the stack (the pipeline's next runs try it again), so the row names
    the stack's first file, the step and the error's type."""
    hint = ("the series needs more memory than the worker has (run.memory_limit_per_worker), or its headers "
            "declare a bogus size" if isinstance(error, MemoryError) else "check the series' headers")
    return QuarantineEntry(STAGE, stack.first.rel_path, QuarantineReason.STAGE_FAILED,
                           f"{_describe(stack)}: {step} failed ({type(error).__name__}: {error}); {hint}", item_id=volume_id)


def without_volume(stack: Stack, volume_id: str, entries: Sequence[QuarantineEntry], p: Pseudonymizer) -> IngestedVolume:
    """The result of a stack that makes no volume (rejected, or failed): its series row and why."""
    return IngestedVolume(volume_id=volume_id, volume=None, volume_row=None, slice_rows=(),
                          series_row=series_row(stack, p, accepted=False), quarantine=tuple(entries))


def ingest_stack(stack: Stack, config: IngestConfig | None = None, pseudonymizer: Pseudonymizer | None = None) -> IngestedVolume:
    """Assemble, check, repair and resample one stack; return its volume and table rows.

    Rejected stacks (by the policy, or because their pixels cannot be read) come back with
    ``volume=None``, a series row with ``accepted=False`` and the reason in ``quarantine``; so does
    a stack whose assembly, resampling or rows fail otherwise (:func:`stage_failed_entry`), where its
    study failed after retries, losing its other stacks and report. A Ctrl-C or exit (no
    ``Exception``) passes.

    >>> result = ingest_stack(stacks[0], cfg.ingest)          # doctest: +SKIP
    >>> result.volume.array.shape, len(result.slice_rows)     # doctest: +SKIP
    ((240, 256, 256), 120)
    """
    config = config or IngestConfig()
    p = pseudonymizer or pseudonymizer_for(config)
    volume_id = p.volume(stack.stack_key)
    entries = [finding_entry(stack, item, volume_id) for item in stack.findings]
    if stack.rejected:
        return without_volume(stack, volume_id, entries, p)
    step = "assembling or resampling the volume"
    try:
        native = assemble_volume(stack, config, simpleitk_buffer=True)
        resampled = resample_volume(native, config)  # SimpleITK's buffer, resampled without a copy
        step = "making its table rows"
        return IngestedVolume(
            volume_id=volume_id,
            volume=resampled,
            volume_row=volume_row(volume_id, stack, native, native.array.shape, resampled, p),
            slice_rows=tuple(slice_rows(volume_id, stack, native, resampled, p)),
            series_row=series_row(stack, p, accepted=True),
            quarantine=tuple(entries),
        )
    except IngestError as error:
        entries.append(QuarantineEntry(STAGE, error.path or stack.first.rel_path, error.reason, f"{_describe(stack)}: {error}",
                                       item_id=volume_id))
    except Exception as error:  # noqa: BLE001 - one stack's failure must not end its study
        entries.append(stage_failed_entry(stack, volume_id, step, error))
    log.warning("stack rejected volume_id=%s reason=%s", volume_id, entries[-1].reason.value)
    return without_volume(stack, volume_id, entries, p)
