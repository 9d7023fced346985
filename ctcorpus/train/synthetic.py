"""Fabricated corpus shards whose findings are visible, for tests and the GPU benchmark.

Unlike ``ctcorpus.synth`` (which writes DICOM exports for the whole pipeline), this writes shards
in the corpus sample format directly, so the training stage can be tested and benchmarked alone.
Each phantom has a body, two lungs and a heart; three findings are drawn independently and put
where a reader would see them:

- ``lung_nodule``: a bright sphere in one lung at a random z, with a snippet pointing at that slice;
- ``cardiomegaly``: a large heart (an uncertain report gets a medium one);
- ``pleural_effusion``: fluid in the dorsal lung bases.

Every other CT-RATE label is "absent".
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import webdataset as wds

from ctcorpus.outputs.sample import CorpusSample
from ctcorpus.taxonomy import CT_RATE_LABELS
from ctcorpus.version import __version__

LABEL_TABLE = {"1": "body", "2": "lung", "3": "heart", "4": "pleura"}
SNIPPET_BIN_MM = 12.0


def _phantom(
    rng: np.random.Generator, shape: tuple[int, int, int], findings: Mapping[str, str]
) -> tuple[np.ndarray, np.ndarray, int]:
    """(hu int16, mask uint8, nodule z or -1)."""
    nz, ny, nx = shape
    z, y, x = np.ogrid[:nz, :ny, :nx]
    zf, yf, xf = (z + 0.5) / nz, (y + 0.5) / ny, (x + 0.5) / nx
    hu = np.full(shape, -1000.0, np.float32)
    mask = np.zeros(shape, np.uint8)
    body = ((xf - 0.5) / 0.45) ** 2 + ((yf - 0.5) / 0.36) ** 2 <= 1.0
    body = np.broadcast_to(body, shape)
    hu[body], mask[body] = 40.0, 1
    lungs = np.zeros(shape, bool)
    for cx in (0.3, 0.7):
        lungs |= ((zf - 0.5) / 0.42) ** 2 + ((yf - 0.5) / 0.24) ** 2 + ((xf - cx) / 0.17) ** 2 <= 1.0
    hu[lungs], mask[lungs] = -850.0, 2
    if findings["pleural_effusion"] == "positive":
        fluid = lungs & (yf > 0.6) & (zf < 0.5)
        hu[fluid], mask[fluid] = 15.0, 4
    radius = {"positive": 0.22, "uncertain": 0.17}.get(findings["cardiomegaly"], 0.12)
    heart = ((zf - 0.42) / radius) ** 2 + ((yf - 0.42) / radius) ** 2 + ((xf - 0.52) / radius) ** 2 <= 1.0
    hu[heart], mask[heart] = 40.0, 3
    nodule_z = -1
    if findings["lung_nodule"] == "positive":
        nodule_z = int(rng.integers(int(0.15 * nz), int(0.85 * nz)))
        cx = (0.3 if rng.random() < 0.5 else 0.7) * nx
        r = max(2.5, 0.08 * nx)
        sphere = (z - nodule_z) ** 2 + (y - 0.5 * ny) ** 2 + (x - cx) ** 2 <= r**2
        hu[sphere] = 300.0
    hu += rng.normal(0.0, 20.0, shape).astype(np.float32)
    return np.clip(hu, -1000, 1000).astype(np.int16), mask, nodule_z


def _report(findings: Mapping[str, str], nodule_z: int, side: str) -> tuple[list[tuple[str, dict[str, str]]], str]:
    """Findings sentences with their labels, and the impression."""
    sentences: list[tuple[str, dict[str, str]]] = []
    if findings["lung_nodule"] == "positive":
        sentences.append((f"Solid nodule in the {side} lung (image {nodule_z + 1}).", {"lung_nodule": "positive"}))
    else:
        sentences.append(("No pulmonary nodule.", {"lung_nodule": "negative"}))
    cardio = {
        "positive": "The heart is enlarged.",
        "uncertain": "Possible mild cardiomegaly.",
        "negative": "Heart size is normal.",
    }
    sentences.append((cardio[findings["cardiomegaly"]], {"cardiomegaly": findings["cardiomegaly"]}))
    if findings["pleural_effusion"] == "positive":
        sentences.append(("Bilateral pleural effusion.", {"pleural_effusion": "positive"}))
    else:
        sentences.append(("No pleural effusion.", {"pleural_effusion": "negative"}))
    positives = [name.replace("_", " ") for name, state in findings.items() if state == "positive"]
    impression = ("Findings: " + ", ".join(positives) + ".") if positives else "No acute findings."
    return sentences, impression


def make_sample(
    volume_id: str, split: str, shape: tuple[int, int, int], spacing_mm: float, rng: np.random.Generator
) -> CorpusSample:
    """One phantom volume with its report, labels and snippets."""
    findings = {
        "lung_nodule": "positive" if rng.random() < 0.5 else "negative",
        "cardiomegaly": "positive" if rng.random() < 0.45 else ("uncertain" if rng.random() < 0.15 else "negative"),
        "pleural_effusion": "positive" if rng.random() < 0.5 else "negative",
    }
    hu, mask, nodule_z = _phantom(rng, shape, findings)
    side = "right" if rng.random() < 0.5 else "left"
    sentences, impression = _report(findings, nodule_z, side)
    findings_text = " ".join(text for text, _ in sentences)
    text = f"FINDINGS: {findings_text}\nIMPRESSION: {impression}"
    records, snippets, offset = [], [], len("FINDINGS: ")
    for index, (sentence, labels) in enumerate(sentences):
        anatomies = ["heart"] if "cardiomegaly" in labels else ["lung"]
        records.append({
            "index": index, "text": sentence, "section": "findings", "start": offset,
            "end": offset + len(sentence), "anatomies": anatomies, "labels": labels,
        })
        offset += len(sentence) + 1
        if labels.get("lung_nodule") == "positive":
            snippets.append({
                "snippet_id": f"{volume_id}-{index}", "sentence_index": index, "text": sentence,
                "z_mm": nodule_z * spacing_mm, "slice_index": nodule_z,
                "bin_index": int(nodule_z * spacing_mm // SNIPPET_BIN_MM), "bin_mm": SNIPPET_BIN_MM,
                "anatomies": anatomies, "labels": labels,
            })
    records.append({
        "index": len(records), "text": impression, "section": "impression", "start": len(text) - len(impression),
        "end": len(text), "anatomies": [], "labels": {},
    })
    report_labels = {name: findings.get(name, "absent") for name in CT_RATE_LABELS}
    meta = {
        "volume_id": volume_id, "patient_id": f"P-{volume_id}", "study_id": f"S-{volume_id}", "split": split,
        "spacing_zyx": [spacing_mm] * 3, "origin_xyz": [0.0, 0.0, 0.0], "direction": [1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0],
        "orientation": "LPS", "shape_zyx": list(shape), "hu_clip": [-1000, 1000], "mask_source": "synthetic",
        "label_table": LABEL_TABLE, "pipeline_version": __version__,
    }
    report = {
        "report_id": f"R-{volume_id}", "language": "en", "text": text,
        "sections": {"findings": findings_text, "impression": impression},
        "sentences": records, "labels": report_labels,
    }
    return CorpusSample(volume_id, hu, mask, meta, report, snippets)


def _write_shard(job: tuple[Path, str, int, int, tuple[int, int, int], float, int, int]) -> Path:
    path, split, first, stop, shape, spacing_mm, seed, split_index = job
    rng = np.random.default_rng([seed, split_index, first])  # per shard: same corpus for any process count
    with wds.TarWriter(str(path)) as sink:
        for i in range(first, stop):
            sink.write(make_sample(f"{split}-{i:05d}", split, shape, spacing_mm, rng).encode())
    return path


def write_synthetic_corpus(
    root: Path,
    counts: Mapping[str, int],
    shape_zyx: tuple[int, int, int],
    *,
    spacing_mm: float = 1.5,
    per_shard: int = 32,
    seed: int = 0,
    processes: int = 1,
) -> dict[str, list[Path]]:
    """Write ``root/shards/<split>/shard-NNNNNN.tar`` with ``counts[split]`` phantoms each.

    Shards are seeded independently, so ``processes`` (a process pool for big benchmark corpora)
    does not change the content. The shards a split's folder held before are removed: the loader
    streams every ``shard-*.tar`` there, so those of an earlier, larger corpus would join this one.

    >>> write_synthetic_corpus(Path("/tmp/c"), {"train": 8, "test": 4}, (32, 32, 32))  # doctest: +SKIP
    {'train': [PosixPath('/tmp/c/shards/train/shard-000000.tar')], 'test': [...]}
    """
    jobs = []
    for split_index, (split, count) in enumerate(counts.items()):
        folder = Path(root) / "shards" / split
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob("shard-*.tar"):
            stale.unlink()
        for shard, first in enumerate(range(0, count, per_shard)):
            stop = min(count, first + per_shard)
            jobs.append((folder / f"shard-{shard:06d}.tar", split, first, stop, tuple(shape_zyx), spacing_mm, seed, split_index))
    if processes > 1:
        with multiprocessing.get_context("fork").Pool(processes) as pool:
            paths = pool.map(_write_shard, jobs)
    else:
        paths = [_write_shard(job) for job in jobs]
    written: dict[str, list[Path]] = {split: [] for split in counts}
    for job, path in zip(jobs, paths):
        written[job[1]].append(path)
    return written
