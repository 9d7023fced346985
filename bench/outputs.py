"""Benchmark of dataset versions as an export grows: how many shards a few added patients rewrite.

Run from the project root: ``.venv/bin/python bench/outputs.py`` (about a minute). A synthetic
export of ``--patients`` one-volume patients, sample sizes drawn log-normal around a quarter of
``--shard-kb`` (as ~60 MB CT volumes in 256 MB shards), is built as v1; ``--grow`` more patients
(5 %) are added and v2 is built. A shard of v2 counts as changed when its sha256 is not among v1's:
what a sync or dedupe by checksum transfers again (also as a share of v2's bytes). The floor no layout sorted by
volume id can beat is the share of shards that received a new sample. Also reported: shard sizes
against ``shard_max_bytes`` (tar headers and padding included), shards over it, and whether a
second build of v2 is byte-identical and ``verify`` passes.
All of it is measured without and with ``shard_shuffle_seed`` (keys suffixed ``_shuffled``).
Last line: JSON with ``shards_v1``, ``shards_v2``, ``changed_shards``, ``changed_share``, ``changed_bytes_share``,
``touched_share_floor``, ``mean_shard_over_max``, ``shards_over_max``, ``identical_rebuild``,
``verify_problems`` and the same with ``_shuffled``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ctcorpus.config.outputs import OutputConfig
from ctcorpus.outputs import BuildUnit, StoredSample, build_dataset, verify_dataset
from ctcorpus.schemas import table_from_rows

PROV = {"pipeline_version": "bench", "source_sha256": "0" * 64, "producer": "bench-1"}


def export(store: Path, n: int, mean_bytes: int, seed: int) -> list[BuildUnit]:
    """``n`` one-volume patients with pseudonym-like ids (so new ones fall anywhere in volume-id order)."""
    rng = np.random.default_rng(seed)
    units = []
    for _ in range(n):
        vid = rng.bytes(8).hex()
        folder = store / vid
        folder.mkdir(parents=True)
        sizes = {"hu.npy.zst": int(rng.lognormal(np.log(mean_bytes), 0.4)), "mask.npy.zst": mean_bytes // 20,
                 "report.json": int(rng.integers(500, 3000)), "snippets.json": int(rng.integers(2, 800))}
        for name, size in sizes.items():
            (folder / name).write_bytes(rng.bytes(size))
        row = {"volume_id": f"vol-{vid}", "study_id": f"stu-{vid}", "patient_id": f"pat-{vid}", "report_id": f"rep-{vid}",
               "in_shards": True, "hu_sha256": "0" * 64, "fingerprint": [0.0], "fingerprint_version": 1,
               "shape_zyx": [1, 1, 1], "mask_source": "none", "n_snippets": 0, "patient_key": vid}
        sample = StoredSample(f"vol-{vid}", {name: folder / name for name in sizes}, {"volume_id": f"vol-{vid}"})
        units.append(BuildUnit(f"stu-{vid}", f"pat-{vid}", {"samples": table_from_rows("samples", [row], **PROV)}, (sample,)))
    return units


def members(path: Path) -> list[str]:
    with tarfile.open(path) as tar:
        return tar.getnames()


def shards(manifest: dict) -> dict[str, dict]:
    return {f["sha256"]: f for f in manifest["files"] if f["kind"] == "shard"}


def grow(root: Path, old: list[BuildUnit], new: list[BuildUnit], config: OutputConfig) -> dict[str, float | int | bool]:
    """Build v1 of ``old``, v2 of ``old + new`` (and v2 again from the units reversed) under ``root``; compare."""

    def build(units: list[BuildUnit], name: str) -> dict:
        return build_dataset(units, root / name, config, run_config={"outputs": config.model_dump()},
                             geometry={"orientation": "LPS"}).manifest

    s1, s2 = shards(build(old, "v1")), shards(build(old + new, "v2"))
    build(list(reversed(old + new)), "again/v2")
    added = {u.samples[0].volume_id for u in new}
    touched = [f for f in s2.values() if added & {m.split(".", 1)[0] for m in members(root / "v2" / f["path"])}]
    over = [f for f in [*s1.values(), *s2.values()] if f["bytes"] > config.shard_max_bytes and f["count"] > 1]
    changed = set(s2) - set(s1)
    return {
        "shards_v1": len(s1), "shards_v2": len(s2), "changed_shards": len(changed),
        "changed_share": round(len(changed) / len(s2), 3),
        "changed_bytes_share": round(sum(s2[sha]["bytes"] for sha in changed) / sum(f["bytes"] for f in s2.values()), 3), "touched_share_floor": round(len(touched) / len(s2), 3),
        "mean_shard_over_max": round(float(np.mean([f["bytes"] for f in s1.values()])) / config.shard_max_bytes, 3),
        "shards_over_max": len(over),
        "identical_rebuild": (root / "v2" / "manifest.json").read_bytes() == (root / "again" / "v2" / "manifest.json").read_bytes(),
        "verify_problems": len(verify_dataset(root / "v2")),
    }


def main() -> dict[str, float | int | bool]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--patients", type=int, default=800)
    parser.add_argument("--grow", type=int, default=40)
    parser.add_argument("--shard-kb", type=int, default=256)
    args = parser.parse_args()
    max_bytes = args.shard_kb * 1024
    print(f"{args.patients} patients + {args.grow}, shard_max_bytes {max_bytes:,}, median sample ~{max_bytes // 4:,} B")
    figures: dict[str, float | int | bool] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        old = export(root / "store", args.patients, max_bytes // 4, seed=0)
        new = export(root / "store-new", args.grow, max_bytes // 4, seed=1)
        for seed, suffix in ((None, ""), (0, "_shuffled")):
            found = grow(root / f"seed-{seed}", old, new, OutputConfig(shard_max_bytes=max_bytes, shard_shuffle_seed=seed))
            print(f"shard_shuffle_seed={seed}")
            for key, value in found.items():
                print(f"  {key:<22} {value}")
            figures |= {f"{key}{suffix}": value for key, value in found.items()}
    return figures


if __name__ == "__main__":
    print(json.dumps(main()))
