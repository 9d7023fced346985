"""Stack selection: which accepted stacks of a study become corpus volumes.

Selection decides corpus membership: the chosen stacks (and those standing in for them, see
``candidate_groups``) are ingested; every accepted stack's slice map (image number -> z, from
its headers) still places the image references of reports, second reconstructions' too.
``volumes_per_study="all"`` keeps every accepted stack; ``"primary"`` keeps one per study, ranked by, in order:

1. axial (slice normal within ~25 degrees of patient z) before other planes;
2. slice thickness <= ``max_primary_thickness_mm`` before thicker stacks;
3. a soft-tissue kernel before a sharp (lung/bone) kernel;
4. more anatomical coverage along the normal (in whole centimetres, so recons of one scan tie);
5. thicker slices (less noise; CT-RATE-like 1.5-5 mm), then the lower series number.

Selection reads headers only, and assembly can still reject the chosen stack (a corrupt slice, a
gap or geometry only the pixels show): the study then falls back to its next stack in this order
(:func:`candidate_groups`), so a second reconstruction stands in instead of the study losing its
volume. With ``"all"`` there is nothing to fall back to.
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


def candidate_groups(stacks: Sequence[Stack], config: IngestConfig | None = None) -> list[tuple[Stack, ...]]:
    """Per corpus volume, the accepted stacks that may make it, best first: the first is selected,
    the others stand in, in turn, for a stack rejected at assembly (each accepted stack alone for
    ``volumes_per_study="all"``, every accepted stack of a study ranked for ``"primary"``).

    >>> [[s.first.series_number for s in group] for group in candidate_groups(stacks)]   # doctest: +SKIP
    [[2, 4]]
    """
    config = config or IngestConfig()
    accepted = [s for s in stacks if not s.rejected]
    if config.volumes_per_study == "all":
        return [(stack,) for stack in accepted]
    by_study: dict[str, list[Stack]] = defaultdict(list)
    for stack in accepted:
        by_study[stack.first.study_uid or stack.first.series_uid or stack.stack_key].append(stack)
    return [tuple(sorted(group, key=lambda s: _rank(s, config))) for _, group in sorted(by_study.items())]


def select_stacks(stacks: Sequence[Stack], config: IngestConfig | None = None) -> list[Stack]:
    """The accepted stacks that become corpus volumes when they assemble (all, or the primary one per study).

    >>> [s.first.series_number for s in select_stacks(stacks)]   # doctest: +SKIP
    [2]
    """
    return [group[0] for group in candidate_groups(stacks, config)]


def unselected_entries(stacks: Sequence[Stack], chosen: Sequence[Stack], pseudonymizer: Pseudonymizer) -> list[QuarantineEntry]:
    """Quarantine rows (``not_selected``) for accepted stacks that are not corpus volumes, ``chosen``
    holding those that are and those rejected at assembly (their ingest results give their reason).

    They are not ingested (no volume, no ``slices`` rows), but their headers' slice maps still place
    the image references of reports to them.
    """
    tried = {s.stack_key for s in chosen}
    entries = []
    for stack in stacks:
        if stack.rejected or stack.stack_key in tried:
            continue
        first = stack.first
        message = (
            f"{first.rel_path}: series {first.series_number} '{first.series_description}' ({len(stack.instances)} slices) "
            "is not a corpus volume (reports' references to its images are still placed): volumes_per_study='primary' "
            "chose another stack of the study; set ingest.volumes_per_study='all' to keep it"
        )
        entries.append(
            QuarantineEntry("ingest", first.rel_path, QuarantineReason.NOT_SELECTED, message, pseudonymizer.volume(stack.stack_key), Action.REJECT)
        )
    return entries


def fallback_entry(stack: Stack, replaced: Sequence[Stack], pseudonymizer: Pseudonymizer) -> QuarantineEntry:
    """The quarantine row (``fallback_volume``, accepted) of a stack that became the corpus volume in
    place of the better-ranked ``replaced``, which assembly rejected: the row says which stack stands in."""
    first = stack.first
    others = ", ".join(f"series {s.first.series_number} '{s.first.series_description}'" for s in replaced)
    message = (
        f"{first.rel_path}: series {first.series_number} '{first.series_description}' ({len(stack.instances)} slices) "
        f"is the study's corpus volume in place of {others}, rejected at assembly (see its quarantine row); "
        "repair that series' files to have it chosen again"
    )
    return QuarantineEntry("ingest", first.rel_path, QuarantineReason.FALLBACK_VOLUME, message,
                           pseudonymizer.volume(stack.stack_key), Action.ACCEPT)
