"""Stack selection: which accepted stacks of a study become corpus volumes.

Every accepted stack is ingested (the snippet miner needs slice tables of second
reconstructions too); selection only decides corpus membership. ``volumes_per_study="all"``
keeps every accepted stack; ``"primary"`` keeps one per study, ranked by, in order:

1. axial (slice normal within ~25 degrees of patient z) before other planes;
2. slice thickness <= ``max_primary_thickness_mm`` before thicker stacks;
3. a soft-tissue kernel before a sharp (lung/bone) kernel;
4. more anatomical coverage along the normal (in whole centimetres, so recons of one scan tie);
5. thicker slices (less noise; CT-RATE-like 1.5-5 mm), then the lower series number.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence

from ctcorpus.config.ingest import IngestConfig
from ctcorpus.enums import Action, QuarantineReason
from ctcorpus.ingest.records import Stack
from ctcorpus.pseudonym import Pseudonymizer
from ctcorpus.records import QuarantineEntry

#: Reconstruction kernels that are sharp (lung/bone/edge) across vendors.
SHARP_KERNEL = re.compile(
    r"LUNG|BONE|EDGE|SHARP|DETAIL|^(?:B|BR|I|BL|HR|BV)(?:[5-9]\d)|^FC(?:[5-9]\d)|^Y[ABCD]|^L$|^D$|^E$",
    re.IGNORECASE,
)
_AXIAL_COSINE = 0.9


def is_sharp_kernel(kernel: str) -> bool:
    """True for lung/bone kernels (Siemens B/Br/I >= 50, GE LUNG/BONE, Toshiba FC5x+, Philips Y*/L/D/E).

    >>> is_sharp_kernel("B70f"), is_sharp_kernel("B31f"), is_sharp_kernel("STANDARD")
    (True, False, False)
    """
    return any(SHARP_KERNEL.search(part.strip()) for part in kernel.split("\\") if part.strip())


def _rank(stack: Stack, config: IngestConfig) -> tuple[object, ...]:
    first = stack.first
    thickness = first.slice_thickness or 0.0
    coverage = stack.positions_along_normal[-1] - stack.positions_along_normal[0]
    return (
        abs(stack.normal[2]) < _AXIAL_COSINE,
        thickness > config.max_primary_thickness_mm,
        is_sharp_kernel(first.kernel),
        -round(coverage / 10.0),
        -thickness,
        first.series_number if first.series_number is not None else 1 << 30,
        stack.stack_key,
    )


def select_stacks(stacks: Sequence[Stack], config: IngestConfig | None = None) -> list[Stack]:
    """The accepted stacks that become corpus volumes (all, or the primary one per study).

    >>> [s.first.series_number for s in select_stacks(stacks)]   # doctest: +SKIP
    [2]
    """
    config = config or IngestConfig()
    accepted = [s for s in stacks if not s.rejected]
    if config.volumes_per_study == "all":
        return accepted
    by_study: dict[str, list[Stack]] = defaultdict(list)
    for stack in accepted:
        by_study[stack.first.study_uid or stack.first.series_uid or stack.stack_key].append(stack)
    return [min(group, key=lambda s: _rank(s, config)) for _, group in sorted(by_study.items())]


def unselected_entries(stacks: Sequence[Stack], selected: Sequence[Stack], pseudonymizer: Pseudonymizer) -> list[QuarantineEntry]:
    """Quarantine rows (``not_selected``) for accepted stacks that are not corpus volumes.

    They are still ingested: their slice tables resolve image references of reports.
    """
    chosen = {s.stack_key for s in selected}
    entries = []
    for stack in stacks:
        if stack.rejected or stack.stack_key in chosen:
            continue
        first = stack.first
        message = (
            f"{first.rel_path}: series {first.series_number} '{first.series_description}' ({len(stack.instances)} slices) "
            "is ingested (slice table) but not a corpus volume: volumes_per_study='primary' chose another stack of "
            "the study; set ingest.volumes_per_study='all' to keep it"
        )
        entries.append(
            QuarantineEntry("ingest", first.rel_path, QuarantineReason.NOT_SELECTED, message, pseudonymizer.volume(stack.stack_key), Action.REJECT)
        )
    return entries
