"""Streaming the corpus shards into training batches.

A :class:`~webdataset.DataPipeline` reads ``DIR/shards/<split>/shard-*.tar``, splits the shards
by DataLoader worker, decodes each sample without ctcorpus's heavy stages
(zstd ``.npy`` via pyarrow, JSON), crops/pads it to the configured shape, tokenizes texts and
collates :class:`Batch` objects. Volumes stay int16 HU until they reach the device: half the
bytes of float32 through shared memory and PCIe, and the scaling (with the intensity jitter) runs
there. No left-right flip is ever applied: it would silently break laterality ("right lower lobe").

Every random draw of a training sample (its crop, its jitter) comes from :func:`sample_rng`, a
function of the seed, the epoch and the sample's key only: no RNG lives in a worker, so the draws
are the same with any number of workers and in a resumed run. A resumed run's loader starts each
worker where the checkpoint left it (:class:`LoaderStart`): at its epoch, past the batches of it
already trained on.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import logging
import random
import tarfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import webdataset as wds
from tokenizers import Tokenizer

from ctcorpus.config.train import TrainConfig
from ctcorpus.errors import TrainError
from ctcorpus.outputs.dataset import count_tar_samples
from ctcorpus.outputs.sample import decode_array
from ctcorpus.outputs.store import moved_aside
from ctcorpus.taxonomy import CT_RATE_LABELS

logger = logging.getLogger(__name__)

#: HU used for padding (air) and the clip applied before scaling to [-1, 1].
PAD_HU = -1000
HU_SCALE = 1000.0
_REQUIRED = ("hu.npy.zst", "meta.json", "report.json", "snippets.json")


@dataclass(frozen=True, slots=True)
class VolumeGrid:
    """What every sample of a corpus must share for the model's axial bins to mean the same mm."""

    spacing_z_mm: float
    z_stride: int  # voxels per axial step (a power of two)

    @property
    def step_mm(self) -> float:
        """Length of one axial step (localization bin) in mm."""
        return self.spacing_z_mm * self.z_stride


@dataclass(frozen=True, slots=True)
class Example:
    """One decoded, cropped training example (before tokenization)."""

    volume_id: str
    epoch: int  # training: the epoch of the pass over the shards that read it; 0 in evaluation
    stream: int  # training: the worker stream (:class:`LoaderStart`) that read it; 0 in evaluation
    volume: torch.Tensor  # int16 HU (1, z, y, x)
    intensity: tuple[float, float]  # (scale, shift in HU) of the jitter; (1, 0) without augmentation
    report_text: str
    label_target: np.ndarray  # float32 (18,)
    label_weight: np.ndarray  # float32 (18,)
    label_known: np.ndarray  # bool (18,): positive/negative/absent (not uncertain), for evaluation
    snippet_texts: tuple[str, ...]
    snippet_z: tuple[int, ...]  # z voxel index inside the crop


@dataclass(frozen=True, slots=True)
class Batch:
    """A collated batch; tensors are pinned/moved together with :meth:`pin_memory` / :meth:`to`."""

    volume_ids: tuple[str, ...]
    volumes: torch.Tensor  # (B, 1, z, y, x) int16 HU
    intensity: torch.Tensor  # (B, 2) float32: jitter scale and shift (HU)
    report_ids: torch.Tensor  # (B, L) int64 token ids
    report_mask: torch.Tensor  # (B, L) bool, True on real tokens
    same_report: torch.Tensor  # (B, B) bool: the reports of volumes i and j are one text (:func:`same_text`)
    label_target: torch.Tensor  # (B, 18) float32
    label_weight: torch.Tensor  # (B, 18) float32
    label_known: torch.Tensor  # (B, 18) bool
    snippet_ids: torch.Tensor  # (S, L) int64
    snippet_mask: torch.Tensor  # (S, L) bool
    snippet_sample: torch.Tensor  # (S,) int64: row of the volume in this batch
    snippet_z: torch.Tensor  # (S,) int64: z voxel inside the crop
    epoch: int = 0  # training: the epoch of the worker's pass over its shards its examples came from
    stream: int = 0  # training: the worker stream (:class:`LoaderStart`) that made it

    def scaled_volumes(self) -> torch.Tensor:
        """Model input: float32 ``(clip(HU) * scale + shift) / 1000``, computed where the batch lives."""
        scale = self.intensity[:, 0].view(-1, 1, 1, 1, 1)
        shift = self.intensity[:, 1].view(-1, 1, 1, 1, 1)
        hu = self.volumes.float().clamp_(-HU_SCALE, HU_SCALE)
        return hu.mul_(scale).add_(shift).div_(HU_SCALE)

    def pin_memory(self) -> Batch:
        """Pinned copy (DataLoader calls this when ``pin_memory=True``) for async host-to-GPU copies."""
        return self._map(lambda t: t.pin_memory())

    def to(self, device: torch.device | str) -> Batch:
        """Copy to ``device`` without blocking the host (effective on pinned memory)."""
        return self._map(lambda t: t.to(device, non_blocking=True))

    def _map(self, fn: Any) -> Batch:
        changes = {
            f.name: fn(getattr(self, f.name))
            for f in dataclasses.fields(self)
            if isinstance(getattr(self, f.name), torch.Tensor)
        }
        return dataclasses.replace(self, **changes)


def shard_paths(shard_root: Path, split: str, setting: str | None = None) -> list[Path]:
    """The shards of one split, sorted; raises :class:`TrainError` if there are none.

    A dataset version may lack a split (a small export has no test patients): when other splits
    have shards, the error names them, and ``setting`` (the config field that chose ``split``), rather
    than sending the user to run ``ctcorpus build`` again; so does a built version (it has a
    manifest) without any shard, since only volumes with a linked report are sharded.

    >>> shard_paths(Path("corpus"), "train")  # doctest: +SKIP
    [PosixPath('corpus/shards/train/shard-000000.tar'), ...]
    """
    folder = Path(shard_root) / "shards" / split
    paths = sorted(folder.glob("shard-*.tar"))
    if paths:
        return paths
    present = sorted({p.parent.name for p in folder.parent.glob("*/shard-*.tar")})
    if not present and (Path(shard_root) / "manifest.json").is_file():
        raise TrainError(
            "this dataset version has no shards: they hold the volumes with a linked report, and it has "
            "no volume with a linked report; ingest the reports with the export (`ctcorpus ingest -r`)",
            path=folder,
        )
    if not present:
        raise TrainError(
            moved_aside(Path(shard_root)) or f"no shards of split '{split}' (expected shard-NNNNNN.tar files); "
            "build the dataset version first (`ctcorpus build`)",
            path=folder,
        )
    hint = f"; set {setting} to one of them" if setting else ""
    raise TrainError(
        f"split '{split}' is empty in this dataset version (it has shards of {', '.join(present)} only){hint}",
        path=folder,
    )


def dataset_identity(shard_root: Path) -> dict[str, str | None]:
    """The dataset version and the sha256 of its ``manifest.json`` (whose checksums pin every shard
    and table): what a checkpoint was trained on. Both None for shards without a manifest (synthetic).
    """
    path = Path(shard_root) / "manifest.json"
    if not path.is_file():
        return {"dataset_version": None, "manifest_sha256": None}
    raw = path.read_bytes()
    try:
        version = json.loads(raw).get("dataset_version")
    except (ValueError, AttributeError) as exc:
        raise TrainError(f"manifest.json is unreadable ({exc}); rebuild the dataset version", path=path) from exc
    return {"dataset_version": version, "manifest_sha256": hashlib.sha256(raw).hexdigest()}


def _check_keys(sample: Mapping[str, Any]) -> None:
    missing = [k for k in _REQUIRED if k not in sample]
    if missing:
        raise TrainError(
            f"sample '{sample.get('__key__')}' lacks {missing}; build the dataset version anew (`ctcorpus build`)",
            path=sample.get("__url__"),
        )


def shard_samples(sources: Iterator[dict[str, str]]) -> Iterator[dict[str, Any]]:
    """Pipeline stage: the samples of each shard URL in ``sources`` (webdataset's tar reading).

    A shard that cannot be read (cut short by a copy or a full disk, not a tar, gone) raises a
    :class:`TrainError` naming it: webdataset raises tarfile's bare error, which ended the command
    with a traceback instead of its message.
    """
    for source in sources:
        try:
            yield from wds.tarfile_samples([source])
        except (tarfile.TarError, OSError, ValueError) as exc:
            raise _damaged_shard(source["url"], exc) from exc


def count_shard_samples(url: str) -> int:
    """The samples of a shard, from its tar headers alone (no sample is read); a :class:`TrainError`
    naming it when it cannot be read, as :func:`shard_samples` raises."""
    try:
        return count_tar_samples(Path(url))
    except (tarfile.TarError, OSError) as exc:
        raise _damaged_shard(url, exc) from exc


def _damaged_shard(url: str, exc: Exception) -> TrainError:
    """The error of a shard that cannot be read, with the reader's reason."""
    reason = str(exc.args[0]).split(" @ <", 1)[0] if exc.args else ""  # webdataset appends its stream
    return TrainError(
        f"the shard cannot be read ({type(exc).__name__}: {reason}); it is damaged: check the dataset "
        "version (`ctcorpus verify`) and build it anew (`ctcorpus build`)",
        path=url,
    )


def _z_spacing(sample: Mapping[str, Any]) -> float:
    """The z spacing (mm) the sample's ``meta.json`` states; a :class:`TrainError` naming the shard and
    the sample when it states none."""
    try:
        return float(json.loads(sample["meta.json"])["spacing_zyx"][0])
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise TrainError(
            f"sample '{sample['__key__']}' states no z spacing in meta.json ({type(exc).__name__}: {exc}); "
            "build the dataset version anew (`ctcorpus build`)",
            path=sample.get("__url__"),
        ) from exc


def probe_spacing(shard_root: Path, split: str) -> float:
    """The z spacing (mm) of the split's first sample: every sample must share it (the decoder checks)."""
    urls = [str(p) for p in shard_paths(shard_root, split)]
    first = next(iter(wds.DataPipeline(wds.SimpleShardList(urls), shard_samples)), None)
    if first is None:
        raise TrainError(f"split '{split}' has no samples", path=Path(shard_root) / "shards" / split)
    _check_keys(first)
    return _z_spacing(first)


def axial_stride(step_mm: float, spacing_z_mm: float) -> int | None:
    """Voxels of ``spacing_z_mm`` in an axial step of ``step_mm``; None unless a power of two up to 16,
    since the encoder pools z by halving it in whole stages.

    >>> axial_stride(12.0, 3.0), axial_stride(12.0, 2.5)
    (4, None)
    """
    ratio = step_mm / spacing_z_mm
    stride = round(ratio)
    if abs(ratio - stride) > 1e-6 or stride < 1 or stride > 16 or stride & (stride - 1):
        return None
    return stride


def probe_grid(shard_root: Path, split: str, config: TrainConfig) -> VolumeGrid:
    """The grid a model trained on ``split`` with ``config`` has: the first sample's spacing and the
    axial stride ``config.axial_step_mm`` gives on it (a :class:`TrainError` naming the setting to
    change when it gives none)."""
    spacing_z = probe_spacing(shard_root, split)
    stride = axial_stride(config.axial_step_mm, spacing_z)
    folder = Path(shard_root) / "shards" / split
    if stride is None:
        raise TrainError(
            f"axial_step_mm={config.axial_step_mm} over z spacing {spacing_z} mm is {config.axial_step_mm / spacing_z:g}, "
            "not a power of two up to 16; change train.axial_step_mm",
            path=folder,
        )
    if config.input_shape_zyx[0] % stride:
        raise TrainError(
            f"input_shape_zyx z={config.input_shape_zyx[0]} is not a multiple of the axial stride {stride}; "
            "change train.input_shape_zyx",
            path=folder,
        )
    return VolumeGrid(spacing_z_mm=spacing_z, z_stride=stride)


def label_targets(labels: Mapping[str, str], policy: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Targets, loss weights and an evaluation mask for the 18 CT-RATE labels.

    Positive is 1 and negative/absent 0; uncertain is masked (weight 0) or 0.5 by ``policy``. A
    label missing from the report counts as absent.

    >>> t, w, k = label_targets({"lung_nodule": "uncertain", "cardiomegaly": "positive"}, "mask")
    >>> float(t[2]), float(w[9]), bool(k[9])
    (1.0, 0.0, False)
    """
    target = np.zeros(len(CT_RATE_LABELS), np.float32)
    weight = np.ones(len(CT_RATE_LABELS), np.float32)
    known = np.ones(len(CT_RATE_LABELS), bool)
    for i, name in enumerate(CT_RATE_LABELS):
        state = labels.get(name, "absent")
        if state == "positive":
            target[i] = 1.0
        elif state == "uncertain":
            known[i] = False
            if policy == "mask":
                weight[i] = 0.0
            else:
                target[i] = 0.5
    return target, weight, known


def sample_rng(seed: int, epoch: int, key: str) -> np.random.Generator:
    """The generator of every random draw of sample ``key`` in ``epoch``: seeded by a stable hash of
    the three (Python's ``hash`` of a str differs per process), so a sample's crop and jitter do not
    depend on which worker decodes it, in which order, nor on whether the run was resumed.

    >>> int(sample_rng(0, 1, "v-1").integers(1000)) == int(sample_rng(0, 1, "v-1").integers(1000))
    True
    """
    digest = hashlib.sha256(f"{seed}/{epoch}/{key}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest, "little"))


def _window(size: int, target: int, rng: np.random.Generator | None) -> tuple[int, int]:
    """(start in the source, start in the output) of a crop or pad along one axis."""
    if size >= target:
        start = int(rng.integers(0, size - target + 1)) if rng is not None else (size - target) // 2
        return start, 0
    return 0, (target - size) // 2


def crop_or_pad(hu: np.ndarray, shape: Sequence[int], rng: np.random.Generator | None = None) -> tuple[torch.Tensor, int]:
    """Cut ``hu`` (int16, z y x) to ``shape``, padding with air, in one copy: a random crop drawn from
    ``rng``, or the centred one without it.

    Returns the int16 tensor (1, z, y, x) and the z offset (source z = output z + offset) that
    maps snippet slice indices into the crop.
    """
    src = torch.from_numpy(hu)  # zero-copy view of the decoded array
    out = torch.full((1, *shape), PAD_HU, dtype=torch.int16)
    src_slices, dst_slices, z_offset = [], [], 0
    for axis, (size, target) in enumerate(zip(hu.shape, shape)):
        s0, d0 = _window(size, target, rng)
        n = min(size, target)
        src_slices.append(slice(s0, s0 + n))
        dst_slices.append(slice(d0, d0 + n))
        if axis == 0:
            z_offset = s0 - d0
    out[(0, *dst_slices)] = src[tuple(src_slices)]
    return out, z_offset


def report_text(report: Mapping[str, Any]) -> str:
    """Findings and impression when the report has them (what CT-CLIP trains on), else the text.

    They are its findings and impression sentences in report order: ``sections`` holds one text
    per name, the last, so of "FINDINGS: Chest ... FINDINGS: Abdomen ..." it lost the chest.
    """
    parts = [s.get("text", "") for s in report.get("sentences") or () if s.get("section") in ("findings", "impression")]
    joined = " ".join(p.strip() for p in parts if p and p.strip())
    return joined or str(report.get("text", ""))


@dataclass(frozen=True, slots=True)
class Decoder:
    """Picklable sample decoder (runs inside DataLoader workers); with ``augment`` its crop and
    jitter come from :func:`sample_rng` of the seed, the sample's ``__epoch__`` (:class:`EpochSamples`)
    and its key.

    A sample that cannot be decoded raises :class:`TrainError` naming the shard and the sample:
    the outputs stage verified the corpus, so a bad sample here means a damaged or foreign file,
    and training on silently fewer samples would not be reproducible.
    """

    config: TrainConfig
    grid: VolumeGrid
    augment: bool

    def __call__(self, sample: Mapping[str, Any]) -> Example:
        _check_keys(sample)
        try:
            return self._decode(sample)
        except (ValueError, KeyError, TypeError, OSError) as exc:  # JSON, zstd/npy (pyarrow), fields
            raise TrainError(
                f"sample '{sample['__key__']}' cannot be decoded ({type(exc).__name__}: {exc}); "
                "build the dataset version anew (`ctcorpus build`)",
                path=sample.get("__url__"),
            ) from exc

    def _decode(self, sample: Mapping[str, Any]) -> Example:
        url = sample.get("__url__")
        key = sample["__key__"]
        spacing_z = _z_spacing(sample)
        if abs(spacing_z - self.grid.spacing_z_mm) > 1e-3:
            raise TrainError(
                f"sample '{key}' has z spacing {spacing_z} mm, the corpus {self.grid.spacing_z_mm} mm; "
                "resample the corpus to one spacing",
                path=url,
            )
        hu = decode_array(sample["hu.npy.zst"])
        if hu.ndim != 3 or hu.dtype != np.int16:
            raise TrainError(f"sample '{key}' volume is {hu.dtype}{hu.shape}, expected int16 (z, y, x)", path=url)
        epoch = int(sample.get("__epoch__", 0))
        rng = sample_rng(self.config.seed, epoch, key) if self.augment else None
        volume, z_offset = crop_or_pad(hu, self.config.input_shape_zyx, rng)
        intensity = (1.0, 0.0)
        if rng is not None:
            intensity = (
                1.0 + self.config.intensity_scale_jitter * float(rng.uniform(-1.0, 1.0)),
                self.config.intensity_shift_hu * float(rng.uniform(-1.0, 1.0)),
            )
        report = json.loads(sample["report.json"])
        target, weight, known = label_targets(report.get("labels", {}), self.config.uncertain_policy)
        texts, zs = [], []
        for snip in json.loads(sample["snippets.json"]):
            z = int(snip["slice_index"]) - z_offset  # slice_index: z index on the sample's volume grid
            if 0 <= z < self.config.input_shape_zyx[0]:
                texts.append(str(snip["text"]))
                zs.append(z)
        stream = int(sample.get("__stream__", 0))
        return Example(key, epoch, stream, volume, intensity, report_text(report), target, weight, known, tuple(texts), tuple(zs))


def encode_texts(tokenizer: Tokenizer, texts: Sequence[str], max_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids (N, max_tokens), zero-padded and truncated, and the mask of real tokens."""
    ids = torch.zeros((len(texts), max_tokens), dtype=torch.int64)
    for row, text in enumerate(texts):
        tokens = tokenizer.encode(text).ids[:max_tokens]
        ids[row, : len(tokens)] = torch.tensor(tokens, dtype=torch.int64)
    return ids, ids != 0


def same_text(ids: torch.Tensor) -> torch.Tensor:
    """(N, N) bool: rows ``i`` and ``j`` of ``ids`` hold the same token ids, one text as the model reads it.

    The volumes of one study (``ingest.volumes_per_study: all``) share its report, so their rows match;
    so do two reports of one text (up to ``max_tokens``). The model cannot tell such texts apart,
    so each one matches the other's volume: in the contrast and in retrieval.

    >>> same_text(torch.tensor([[5, 6], [7, 0], [5, 6]])).int().tolist()
    [[1, 0, 1], [0, 1, 0], [1, 0, 1]]
    """
    _, group = torch.unique(ids, dim=0, return_inverse=True)
    return group[:, None] == group[None, :]


@dataclass(frozen=True, slots=True)
class Collator:
    """Picklable collation: stacks volumes and tokenizes reports and snippets (pad id 0); a batch
    never spans two epochs nor two workers (each worker runs the pipeline anew each epoch), so the
    first example's epoch and stream are the batch's."""

    tokenizer: Tokenizer
    max_tokens: int

    def __call__(self, examples: Sequence[Example]) -> Batch:
        report_ids, report_mask = encode_texts(self.tokenizer, [e.report_text for e in examples], self.max_tokens)
        snippet_texts = [t for e in examples for t in e.snippet_texts]
        snippet_ids, snippet_mask = encode_texts(self.tokenizer, snippet_texts, self.max_tokens)
        return Batch(
            volume_ids=tuple(e.volume_id for e in examples),
            volumes=torch.stack([e.volume for e in examples]),
            intensity=torch.tensor([e.intensity for e in examples], dtype=torch.float32),
            report_ids=report_ids,
            report_mask=report_mask,
            same_report=same_text(report_ids),  # here, on the host: torch.unique on a GPU waits for it
            label_target=torch.from_numpy(np.stack([e.label_target for e in examples])),
            label_weight=torch.from_numpy(np.stack([e.label_weight for e in examples])),
            label_known=torch.from_numpy(np.stack([e.label_known for e in examples])),
            snippet_ids=snippet_ids,
            snippet_mask=snippet_mask,
            snippet_sample=torch.tensor([i for i, e in enumerate(examples) for _ in e.snippet_texts], dtype=torch.int64),
            snippet_z=torch.tensor([z for e in examples for z in e.snippet_z], dtype=torch.int64),
            epoch=examples[0].epoch,
            stream=examples[0].stream,
        )


@dataclass(frozen=True, slots=True)
class StreamPosition:
    """Where one worker stream stands: the epoch of its latest batch and how many of its batches of
    that epoch were trained on (a new run: epoch 0, none)."""

    epoch: int = 0
    batches: int = 0


@dataclass(frozen=True, slots=True)
class LoaderStart:
    """Where a training loader starts.

    A stream is one worker's share of each epoch's shards and the batches it makes of them (with
    ``num_workers`` 0, the one process). The DataLoader takes batches in turn from the workers whose
    stream makes any (:func:`batch_streams`: ``n`` of them, the first), so step ``s`` of a run trains
    on a batch of stream ``s % n``: a loader resumed at step ``s`` gives its worker ``i`` stream
    ``(i + s % n) % streams`` (``first_stream = s % n``), and each stream starts at its ``positions``
    entry, past the batches of that epoch already trained on.
    """

    positions: tuple[StreamPosition, ...] = ()
    first_stream: int = 0

    def position(self, stream: int) -> StreamPosition:
        return self.positions[stream] if stream < len(self.positions) else StreamPosition()


def batch_streams(counts: Sequence[int], streams: int, batch_size: int) -> int:
    """How many of ``streams`` worker streams over shards of ``counts`` samples make a batch in some
    epoch: streams ``0 .. n - 1``. Stream ``i`` holds every ``streams``-th shard of an epoch's order from
    ``i`` on, at best the largest ones, so a later stream never holds more shards than an earlier one.
    The others (idle workers: more of them than shards) end at once, and the DataLoader takes
    batches from these ``n`` in turn: step ``s`` of a run trains on stream ``s % n``.

    >>> batch_streams([4, 4], 3, 2), batch_streams([3, 1, 1], 2, 4), batch_streams([1], 1, 2)
    (2, 1, 0)
    """
    largest = sorted(counts, reverse=True)
    return sum(sum(largest[: len(range(i, len(counts), streams))]) >= batch_size for i in range(streams))


class EpochShardList(torch.utils.data.IterableDataset):
    """One worker stream's shard URLs of each epoch (:class:`LoaderStart`): all URLs in a new seeded
    order each epoch (webdataset's ``SimpleShardList(seed=)`` reused one order for every epoch),
    then every ``streams``-th from the stream's index on.

    Every worker holds a copy that draws the same order for the same epoch, so the streams
    partition each epoch's shards. A stream starts at its start's epoch; ``skip`` is the number of
    samples of the current epoch already trained on (the start's batches; none after its first
    epoch). An epoch whose shards of the stream hold no full batch (past ``skip``) is passed over: the
    pipeline stops repeating at an epoch of no batch, so the stream would end, and every later epoch's
    shards of it go unread. Only a stream that no epoch gives a batch (its share of the largest shards
    holds fewer samples than one) ends there.
    """

    def __init__(self, urls: Sequence[str], seed: int, batch_size: int, start: LoaderStart) -> None:
        super().__init__()
        self.urls, self.seed, self.batch_size, self.start = list(urls), seed, batch_size, start
        self.stream, self.epoch, self.skip = 0, -1, 0
        self.streams = 0  # 0: not yet iterated in this process
        self.counts: dict[str, int] = {}  # samples of each shard, read when first needed

    def _epoch_urls(self, epoch: int) -> list[str]:
        urls = self.urls.copy()
        random.Random(f"{self.seed}/{epoch}").shuffle(urls)
        return urls[self.stream :: self.streams]

    def _count(self, url: str) -> int:
        if url not in self.counts:
            self.counts[url] = count_shard_samples(url)
        return self.counts[url]

    def _never_a_batch(self) -> bool:
        return self.stream >= batch_streams(list(map(self._count, self.urls)), self.streams, self.batch_size)

    def __iter__(self) -> Iterator[dict[str, str]]:
        if self.streams:
            epoch, skip = self.epoch + 1, 0
        else:
            info = torch.utils.data.get_worker_info()
            worker, self.streams = (info.id, info.num_workers) if info is not None else (0, 1)
            self.stream = (worker + self.start.first_stream) % self.streams
            position = self.start.position(self.stream)
            epoch, skip = position.epoch, position.batches * self.batch_size
        while skip + self.batch_size > sum(map(self._count, self._epoch_urls(epoch))) and not self._never_a_batch():
            epoch, skip = epoch + 1, 0
        self.epoch, self.skip = epoch, skip
        return iter([{"url": url} for url in self._epoch_urls(self.epoch)])


@dataclass(frozen=True, slots=True)
class EpochSamples:
    """Picklable stage over one worker's samples of an epoch: shuffles them in a buffer seeded by the
    seed and the epoch (as ``wds.detshuffle``), drops the ``skip`` first (trained on before a resume)
    and marks each with its epoch and stream (``__epoch__``, ``__stream__``): the epoch seeds the
    sample's draws, and its batch carries both, so a checkpoint can say where each stream stands.
    Inside a worker ``shards`` is that worker's own copy."""

    shards: EpochShardList
    bufsize: int
    initial: int

    def __call__(self, samples: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        shards = self.shards
        rng = random.Random()
        rng.seed(shards.seed + shards.epoch)
        shuffled = wds.shuffle(self.bufsize, self.initial, rng=rng)(samples)
        for sample in itertools.islice(shuffled, shards.skip, None):
            yield {**sample, "__epoch__": shards.epoch, "__stream__": shards.stream}


def make_loader(
    shard_root: Path,
    split: str,
    config: TrainConfig,
    grid: VolumeGrid,
    tokenizer: Tokenizer,
    *,
    train: bool,
    pin_memory: bool = False,
    start: LoaderStart = LoaderStart(),
) -> torch.utils.data.DataLoader:
    """A DataLoader of :class:`Batch` over one split's shards.

    Training shuffles shards and samples (seeded, anew each epoch), crops at random and jitters
    intensity (draws of :func:`sample_rng`: the same for a sample in an epoch whichever worker reads
    it), drops each epoch's last partial batch and repeats epochs inside every worker, so the
    prefetch queue never drains at an epoch boundary; evaluation reads every sample once, centred.
    A training loader starts each worker stream where ``start`` says (a resumed run: the batches an
    uninterrupted run would make from there on) and tags each batch with its epoch and stream.
    Shards are split by worker, so a worker never duplicates another's samples; with fewer shards
    than workers the extra workers stay idle (a warning says so). Not by distributed rank: training
    is one process, and a launcher's ``RANK``/``WORLD_SIZE`` made it train and evaluate on a part.

    >>> loader = make_loader(Path("corpus"), "train", cfg, grid, tok, train=True)  # doctest: +SKIP
    >>> next(iter(loader)).volumes.shape  # doctest: +SKIP
    torch.Size([8, 1, 128, 160, 160])
    """
    urls = [str(p) for p in shard_paths(shard_root, split)]
    workers = config.num_workers
    if workers > len(urls):
        logger.warning("split=%s shards=%d num_workers=%d: extra workers stay idle", split, len(urls), workers)
    batch_size = config.batch_size if train else config.eval_batch_size
    if train:
        shards = EpochShardList(urls, config.seed, batch_size, start)
        stages: list[Any] = [shards, shard_samples,
                             EpochSamples(shards, config.shuffle_buffer, min(config.shuffle_buffer, 16))]
    else:
        stages = [wds.SimpleShardList(urls), wds.split_by_worker, shard_samples]
    stages += [
        wds.map(Decoder(config, grid, augment=train)),
        wds.batched(batch_size, collation_fn=Collator(tokenizer, config.max_tokens), partial=not train),
    ]
    pipeline = wds.DataPipeline(*stages)
    if train:
        pipeline = pipeline.repeat()  # stops at an epoch of no batch: one of a stream that no epoch gives one
    return torch.utils.data.DataLoader(
        pipeline,
        batch_size=None,
        num_workers=workers,
        pin_memory=pin_memory,
        persistent_workers=workers > 0,
        prefetch_factor=config.prefetch_factor if workers > 0 else None,
    )


def iterate_forever(loader: torch.utils.data.DataLoader, split: str) -> Iterator[Batch]:
    """Batches of a training loader (endless: its pipeline repeats epochs); raises if it ends.

    The loader's iterator is made now, not at the first batch: making it draws the workers' base
    seed from torch's RNG (the samples' draws do not use it), so a resumed run can restore the
    interrupted run's RNG state after this call. It ends only when no worker's share of the shards
    can make a full batch in any epoch.
    """
    return _endless(iter(loader), split)


def _endless(batches: Iterator[Batch], split: str) -> Iterator[Batch]:
    yield from batches
    raise TrainError(
        f"split '{split}' yields no full batch: fewer samples per worker than batch_size; "
        "lower train.batch_size or train.num_workers"
    )
