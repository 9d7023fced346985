"""Benchmark of the anatomy stage: fallback speed and Dice on phantoms and real CT; TotalSegmentator timing.

Run from the project root: ``.venv/bin/python bench/anatomy.py``. Prints a table; the last line is
one JSON object (``fallback_s_per_volume``, ``dice_body``, ``dice_lung_left``, ``dice_lung_right``,
``dice_airways``, ``dice_bones`` and more). Speeds come with a reference measured in the same run on
the same volume (SimpleITK linear resampling to 1.5 mm). Dice keys are the minimum over the phantoms.
TotalSegmentator is timed only when its weights (``CTCORPUS_TOTALSEG_WEIGHTS`` or the default
location) and a GPU are present.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ctcorpus.anatomy import dice, make_segmenter, segment_volume  # noqa: E402
from ctcorpus.anatomy.totalseg import missing_weights  # noqa: E402
from ctcorpus.config.anatomy import AnatomyConfig  # noqa: E402
from ctcorpus.synth import FindingSpec, make_phantom  # noqa: E402

STRUCTURES = ("body", "lung_left", "lung_right", "airways", "bones")
REFERENCE = ROOT.parent / "shared" / "data" / "totalsegmentator_reference"


def _image(phantom) -> sitk.Image:
    image = sitk.GetImageFromArray(phantom.hu)
    image.SetSpacing(tuple(float(s) for s in phantom.spacing_zyx[::-1]))
    image.SetOrigin(phantom.origin_mm)
    return image


def _phantom_dice(phantom, seg) -> dict[str, float]:
    out = {}
    for name in STRUCTURES:
        truth = phantom.labels > 0 if name == "body" else phantom.labels == phantom.label_table[name]
        predicted = seg.array() > 0 if name == "body" else seg.mask(name)
        out[name] = dice(predicted, truth)
    return out


def _resample_reference_s(image: sitk.Image) -> float:
    size = [int(round(n * s / 1.5)) for n, s in zip(image.GetSize(), image.GetSpacing(), strict=True)]
    start = time.perf_counter()
    sitk.Resample(image, size, sitk.Transform(), sitk.sitkLinear, image.GetOrigin(), (1.5, 1.5, 1.5),
                  image.GetDirection(), -1024, image.GetPixelID())
    return time.perf_counter() - start


def _real_ct_dice(config: AnatomyConfig) -> list[dict[str, object]]:
    """Fallback vs TotalSegmentator's reference segmentations of its real test CTs."""
    if not REFERENCE.is_dir():
        return []
    from totalsegmentator.map_to_binary import class_map

    from ctcorpus.taxonomy import Anatomy, anatomy_of_structure

    names = class_map["total"]
    rows = []
    for ct_name, ref_name in (("example_ct_sm.nii.gz", "example_seg.nii.gz"),
                              ("example_ct.nii.gz", "example_seg_fast_force_split.nii.gz")):
        ct = sitk.ReadImage(str(REFERENCE / ct_name))
        reference = sitk.GetArrayFromImage(sitk.ReadImage(str(REFERENCE / ref_name)))
        seg = segment_volume(ct, config)

        def ref_mask(keep, reference=reference) -> np.ndarray:
            return np.isin(reference, [v for v, n in names.items() if keep(n)])

        row: dict[str, object] = {"case": ct_name}
        for side in ("left", "right"):
            row[f"lung_{side}"] = dice(seg.mask(f"lung_{side}"),
                                       ref_mask(lambda n, s=side: n.startswith("lung_") and n.endswith(s)))
        row["bones"] = dice(seg.mask("bones"),
                            ref_mask(lambda n: anatomy_of_structure(n) is Anatomy.BONES and n != "spinal_cord"))
        labelled = reference > 0
        row["body_covers_reference"] = float((seg.array() > 0)[labelled].mean())
        rows.append(row)
    return rows


def _totalseg_timing() -> dict[str, object]:
    import torch

    weights = os.environ.get("CTCORPUS_TOTALSEG_WEIGHTS")
    config = AnatomyConfig(backend="totalsegmentator", mode="fast", device="gpu",
                           weights_path=Path(weights) if weights else None)
    if missing_weights(config) or not torch.cuda.is_available() or not REFERENCE.is_dir():
        return {"skipped": "needs TotalSegmentator weights (task 297), a GPU and the reference CT"}
    ct = sitk.ReadImage(str(REFERENCE / "example_ct.nii.gz"))
    start = time.perf_counter()
    segmenter = make_segmenter(config)
    setup_s = time.perf_counter() - start
    times = []
    for _ in range(2):
        start = time.perf_counter()
        seg = segment_volume(ct, config, segmenter)
        times.append(time.perf_counter() - start)
    reference = sitk.GetArrayFromImage(sitk.ReadImage(str(REFERENCE / "example_seg_fast_force_split.nii.gz")))
    return {"setup_s": setup_s, "first_s": times[0], "second_s": times[1],
            "dice_liver_vs_reference": dice(seg.array() == 5, reference == 5)}


def main() -> None:
    config = AnatomyConfig(backend="threshold")
    segmenter = make_segmenter(config)

    print("fallback Dice on 128x128 phantoms (3 mm x 3 mm x 6.25 mm)")
    print(f"{'phantom':<34}" + "".join(f"{n:>11}" for n in STRUCTURES))
    cases = (
        ("seed 0", {}, ()),
        ("seed 1, contrast", {"contrast": True}, ()),
        ("seed 2, effusion + nodule", {},
         (FindingSpec("pleural_effusion", "left"), FindingSpec("lung_nodule", "right"))),
        ("seed 3, emphysema", {}, (FindingSpec("emphysema"),)),
    )
    scores = []
    for seed, (label, kwargs, findings) in enumerate(cases):
        phantom = make_phantom((48, 128, 128), (6.25, 3.0, 3.0), np.random.default_rng(seed), findings, **kwargs)
        score = _phantom_dice(phantom, segment_volume(_image(phantom), config, segmenter))
        scores.append(score)
        print(f"{label:<34}" + "".join(f"{score[n]:>11.3f}" for n in STRUCTURES))

    phantom = make_phantom((300, 512, 512), (1.0, 0.75, 0.75), np.random.default_rng(10))
    image = _image(phantom)
    reference_s = _resample_reference_s(image)
    start = time.perf_counter()
    seg = segment_volume(image, config, segmenter)
    fallback_s = time.perf_counter() - start
    big = _phantom_dice(phantom, seg)
    scores.append(big)
    print(f"{'512x512x300 (0.75 x 0.75 x 1 mm)':<34}" + "".join(f"{big[n]:>11.3f}" for n in STRUCTURES))
    print(f"\nfallback on 512x512x300: {fallback_s:.2f} s; SimpleITK linear resample to 1.5 mm of the same volume: "
          f"{reference_s:.2f} s (ratio {fallback_s / reference_s:.1f})")

    real = _real_ct_dice(config)
    print("\nfallback vs TotalSegmentator reference on its real test CTs")
    for row in real:
        print("  " + ", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
    if not real:
        print("  skipped: ../shared/data/totalsegmentator_reference is absent")

    totalseg = _totalseg_timing()
    print("\nTotalSegmentator (fast, GPU):", totalseg)

    figures: dict[str, object] = {"fallback_s_per_volume": round(fallback_s, 3),
                                  "fallback_vs_resample": round(fallback_s / reference_s, 2)}
    figures |= {f"dice_{n}": round(min(s[n] for s in scores), 4) for n in STRUCTURES}
    for row in real:
        case = str(row["case"]).split(".")[0]
        figures |= {f"real_{case}_{k}": round(float(v), 4) for k, v in row.items() if k != "case"}
    figures["totalseg"] = totalseg
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
