"""Held-out evaluation: text-to-volume retrieval, zero-shot label AUC, snippet localization error.

Localization is compared with the baseline that always answers "the middle of the volume", so a
model that learned nothing about position cannot look good by the spread of the data alone.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tokenizers import Tokenizer

from ctcorpus.config.train import TrainConfig
from ctcorpus.errors import TrainError
from ctcorpus.outputs.store import atomic_write_bytes
from ctcorpus.taxonomy import CT_RATE_LABELS
from ctcorpus.train.data import (
    Batch,
    VolumeGrid,
    axial_stride,
    dataset_identity,
    encode_texts,
    make_loader,
    probe_spacing,
    same_text,
)
from ctcorpus.train.losses import label_logits, step_scores
from ctcorpus.train.model import CtReportModel, autocast, load_checkpoint, resolve_device
from ctcorpus.train.tokenizer import load_tokenizer
from ctcorpus.version import __version__

logger = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"
SPLIT_METRICS_FILE = "metrics-{split}.json"  # evaluate_model's, beside the checkpoint it evaluated
RECALL_KS = (1, 5, 10)


@dataclass(frozen=True, slots=True)
class EvalMetrics:
    """What :func:`evaluate_model` measures on one split."""

    split: str
    n_volumes: int
    n_snippets: int
    recall_at: tuple[tuple[int, float], ...]  # (k, text-to-volume R@k; a volume of the same report is a hit)
    label_auc: tuple[tuple[str, float | None], ...]  # None: the split lacks positives or negatives
    mean_label_auc: float | None
    localization_mae_mm: float | None  # None without snippets
    baseline_mae_mm: float | None  # predict-the-middle baseline

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict (what ``metrics.json`` holds)."""
        return {
            "split": self.split,
            "n_volumes": self.n_volumes,
            "n_snippets": self.n_snippets,
            "recall_at": {str(k): v for k, v in self.recall_at},
            "label_auc": dict(self.label_auc),
            "mean_label_auc": self.mean_label_auc,
            "localization_mae_mm": self.localization_mae_mm,
            "baseline_mae_mm": self.baseline_mae_mm,
        }

    def summary(self) -> str:
        """One readable line for logs and the CLI."""
        recall = " ".join(f"R@{k}={v:.3f}" for k, v in self.recall_at)
        auc = "n/a" if self.mean_label_auc is None else f"{self.mean_label_auc:.3f}"
        loc = "n/a"
        if self.localization_mae_mm is not None:
            loc = f"{self.localization_mae_mm:.1f} mm (middle {self.baseline_mae_mm:.1f} mm)"
        return f"{self.split}: {self.n_volumes} volumes, {recall}, mean label AUC {auc}, localization MAE {loc}"


def rank_auc(scores: np.ndarray, positive: np.ndarray) -> float | None:
    """ROC AUC by the Mann-Whitney U statistic (ties get average ranks); None if a class is empty.

    >>> rank_auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([False, False, True, True]))
    0.75
    """
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    ranks = np.empty(len(scores), np.float64)
    start = 0
    while start < len(scores):
        end = start
        while end + 1 < len(scores) and sorted_scores[end + 1] == sorted_scores[start]:
            end += 1
        ranks[order[start : end + 1]] = (start + end) / 2.0 + 1.0
        start = end + 1
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def recall_at_k(similarity: np.ndarray, positive: np.ndarray, ks: Iterable[int]) -> tuple[tuple[int, float], ...]:
    """Text-to-volume R@k: row i (the report of volume i) ranks all volumes; a hit if a volume of its
    report (``positive[i]``: volume i and those whose report is the same text, :func:`same_text`) is in
    the top k. A study's volumes share its report, so the one of them ranked first is as right as any.

    Ties are broken at random, in expectation: when ``above`` volumes score higher than the best of
    the row's positives and ``tied`` score the same as it (``tied_positive`` of them positives), it is
    a hit unless the ``m = clip(k - above, 0, tied)`` places left all go to tied negatives:
    probability ``1 - C(tied - tied_positive, m) / C(tied, m)`` (``m / tied`` with one positive).
    Counting ties as hits would give a collapsed model (every volume embedded alike) R@1 = 1; this
    gives it chance. A row whose score of a positive is NaN is a miss.

    >>> recall_at_k(np.zeros((4, 4)), np.eye(4, dtype=bool), (1, 2))
    ((1, 0.25), (2, 0.5))
    """
    best = np.where(positive, similarity, -np.inf).max(axis=1, keepdims=True)  # NaN if a positive is NaN
    above = (similarity > best).sum(axis=1).tolist()
    tied = (similarity == best).sum(axis=1).tolist()
    tied_positive = ((similarity == best) & positive).sum(axis=1).tolist()

    def hit(k: int, above: int, tied: int, tied_positive: int) -> float:
        left = min(max(k - above, 0), tied)
        return 1.0 - math.comb(tied - tied_positive, left) / math.comb(tied, left) if tied else 0.0

    return tuple((k, float(np.mean([hit(k, *row) for row in zip(above, tied, tied_positive)]))) for k in ks)


def prompt_texts() -> tuple[list[str], list[str]]:
    """("lung nodule", ...) and ("no lung nodule", ...) for the 18 CT-RATE labels."""
    positive = [name.replace("_", " ") for name in CT_RATE_LABELS]
    return positive, [f"no {p}" for p in positive]


def prompt_tokens(tokenizer: Tokenizer, max_tokens: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids and mask of the positive, then the negative label prompts, on ``device``.

    Made once per run: a copy of pageable host memory to the GPU blocks until the GPU is idle, so
    one per training step stalled every step.
    """
    positive, negative = prompt_texts()
    ids, mask = encode_texts(tokenizer, positive + negative, max_tokens)
    return ids.to(device), mask.to(device)


def encode_prompts(model: CtReportModel, tokens: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(18, D) embeddings of the positive and negative label prompts (``tokens`` of :func:`prompt_tokens`)."""
    emb = model.encode_text(*tokens)
    half = len(emb) // 2
    return emb[:half], emb[half:]


@torch.no_grad()
def evaluate(
    model: CtReportModel,
    tokenizer: Tokenizer,
    batches: Iterable[Batch],
    grid: VolumeGrid,
    config: TrainConfig,
    device: torch.device,
    split: str,
) -> EvalMetrics:
    """Embed every volume and report of ``batches`` and compute :class:`EvalMetrics`."""
    was_training = model.training
    model.eval()
    vol, txt, tokens, logits, targets, known = [], [], [], [], [], []
    errors, baseline = [], []
    middle_mm = config.input_shape_zyx[0] * grid.spacing_z_mm / 2.0
    with autocast(device, config.bf16):
        positive, negative = encode_prompts(model, prompt_tokens(tokenizer, config.max_tokens, device))
        for batch in batches:
            batch = batch.to(device)
            global_emb, step_emb = model.encode_volume(batch.scaled_volumes())
            vol.append(global_emb.float().cpu())
            txt.append(model.encode_text(batch.report_ids, batch.report_mask).float().cpu())
            tokens.append(batch.report_ids.cpu())
            logits.append(label_logits(global_emb, positive, negative, model.label_log_scale, model.label_bias).cpu())
            targets.append(batch.label_target.cpu())
            known.append(batch.label_known.cpu())
            if len(batch.snippet_z):
                snippet_emb = model.encode_text(batch.snippet_ids, batch.snippet_mask)
                scores = step_scores(step_emb, snippet_emb, batch.snippet_sample, model.loc_log_scale)
                predicted_mm = (scores.argmax(dim=1).float() + 0.5) * grid.step_mm
                true_mm = (batch.snippet_z.float() + 0.5) * grid.spacing_z_mm
                errors.append((predicted_mm - true_mm).abs().cpu())
                baseline.append((true_mm - middle_mm).abs().cpu())
    model.train(was_training)
    if not vol:
        raise TrainError(f"split '{split}' has no samples to evaluate")
    similarity = (torch.cat(txt) @ torch.cat(vol).T).numpy()
    all_logits, all_targets, all_known = torch.cat(logits).numpy(), torch.cat(targets).numpy(), torch.cat(known).numpy()
    aucs = tuple(
        (name, rank_auc(all_logits[all_known[:, i], i], all_targets[all_known[:, i], i] > 0.5))
        for i, name in enumerate(CT_RATE_LABELS)
    )
    defined = [a for _, a in aucs if a is not None]
    n_snippets = int(sum(len(e) for e in errors))
    return EvalMetrics(
        split=split,
        n_volumes=len(similarity),
        n_snippets=n_snippets,
        recall_at=recall_at_k(similarity, same_text(torch.cat(tokens)).numpy(), RECALL_KS),
        label_auc=aucs,
        mean_label_auc=float(np.mean(defined)) if defined else None,
        localization_mae_mm=float(torch.cat(errors).mean()) if n_snippets else None,
        baseline_mae_mm=float(torch.cat(baseline).mean()) if n_snippets else None,
    )


def write_metrics(path: Path, metrics: EvalMetrics, extra: dict[str, Any]) -> None:
    """Write ``metrics.json`` (evaluation, ``extra`` such as training figures, provenance) whole: a
    run killed while writing it leaves the last one or none, never half of one."""
    payload = {"pipeline_version": __version__, **metrics.as_dict(), **extra}
    atomic_write_bytes(Path(path), (json.dumps(payload, indent=2, sort_keys=True) + "\n").encode())


def evaluate_model(
    shard_root: Path, model_dir: Path, config: TrainConfig, *, split: str | None = None, device: str = "auto"
) -> EvalMetrics:
    """Evaluate the checkpoint in ``model_dir`` on a split and write ``model_dir/metrics-<split>.json``
    (with the dataset evaluated on and the one the checkpoint was trained on).

    >>> evaluate_model(Path("corpus"), Path("runs/1"), TrainConfig(), split="test")  # doctest: +SKIP
    EvalMetrics(split='test', n_volumes=..., ...)
    """
    split = split or config.eval_split
    torch_device = resolve_device(device)
    model, checkpoint = load_checkpoint(model_dir, torch_device)
    # texts are cut to the length the model was trained on: its position table has that many rows;
    # volumes are cropped to the shape it was trained on (a default config's crop measured another model)
    # and cut into its axial steps (another step is another z stride than the one its encoder pools by)
    trained = checkpoint.get("config")
    trained = trained if isinstance(trained, dict) else {}
    config = config.model_copy(update={
        "max_tokens": model.spec.max_tokens,
        "input_shape_zyx": tuple(trained.get("input_shape_zyx", config.input_shape_zyx)),
        "axial_step_mm": trained.get("axial_step_mm", config.axial_step_mm),
    })
    # the tokenizer it was trained with (older checkpoints lack it: the one saved beside them)
    tokenizer = Tokenizer.from_str(checkpoint["tokenizer"]) if "tokenizer" in checkpoint else load_tokenizer(model_dir)
    spacing_z = probe_spacing(shard_root, split)
    if axial_stride(config.axial_step_mm, spacing_z) != model.spec.z_stride:
        trained_mm = config.axial_step_mm / model.spec.z_stride
        raise TrainError(
            f"the checkpoint's {config.axial_step_mm} mm axial step pools {model.spec.z_stride} slices of {trained_mm:g} mm, "
            f"split '{split}' has {spacing_z} mm slices; resample it to the {trained_mm:g} mm the model was trained on",
            path=Path(shard_root) / "shards" / split,
        )
    grid = VolumeGrid(spacing_z_mm=spacing_z, z_stride=model.spec.z_stride)
    loader = make_loader(shard_root, split, config, grid, tokenizer, train=False, pin_memory=torch_device.type == "cuda")
    metrics = evaluate(model, tokenizer, loader, grid, config, torch_device, split)
    provenance = {"dataset": dataset_identity(shard_root), "trained_on": checkpoint.get("dataset")}
    write_metrics(Path(model_dir) / SPLIT_METRICS_FILE.format(split=split), metrics, provenance)
    logger.info("evaluation %s", metrics.summary())
    return metrics
