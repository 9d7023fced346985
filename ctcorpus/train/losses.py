"""The three training signals: SigLIP volume-report contrast, disease prompts, snippet localization.

Each function takes unit-length embeddings and returns a scalar loss (float32), so they can be
combined with weights and computed under bf16 autocast. The similarities are computed with
autocast off: under it a matmul casts even ``.float()`` inputs back to bf16, whose 8-bit mantissa
ties close logits (label AUC, the localization argmax).
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F


def _float32(like: torch.Tensor) -> contextlib.AbstractContextManager[object]:
    """Autocast off on ``like``'s device (autocast is per device type), so float32 stays float32."""
    return torch.autocast(like.device.type, enabled=False)


def siglip_loss(
    volume_emb: torch.Tensor, text_emb: torch.Tensor, log_scale: torch.Tensor, bias: torch.Tensor, positive: torch.Tensor
) -> torch.Tensor:
    """Sigmoid contrastive loss of SigLIP (Zhai et al. 2023): every pair is a binary problem.

    Unlike softmax CLIP it needs no all-gather normalisation and works with small batches. Pair
    ``(i, j)`` is a match where ``positive`` (B, B bool) says so: the diagonal, and the volumes of
    one report (``Batch.same_report``), which as negatives were pushed away from their own report.

    >>> v = torch.eye(2); siglip_loss(v, v, torch.tensor(2.3), torch.tensor(-1.0), torch.eye(2, dtype=torch.bool)) < 1
    tensor(True)
    """
    with _float32(volume_emb):
        logits = (volume_emb.float() @ text_emb.float().T) * log_scale.exp() + bias
    signs = 2.0 * positive.to(logits.dtype) - 1.0
    return -F.logsigmoid(signs * logits).sum() / len(logits)


def label_logits(
    volume_emb: torch.Tensor,
    positive_prompts: torch.Tensor,
    negative_prompts: torch.Tensor,
    log_scale: torch.Tensor,
    bias: torch.Tensor,
) -> torch.Tensor:
    """(B, 18) logits: scaled cosine to "<label>" minus cosine to "no <label>", plus a per-label bias.

    The difference of the two prompts (CT-CLIP's zero-shot recipe) is what evaluation ranks.
    """
    v = volume_emb.float()
    with _float32(v):
        return (v @ positive_prompts.float().T - v @ negative_prompts.float().T) * log_scale.exp() + bias


def label_loss(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Weighted BCE over the 18 labels (weight 0 masks uncertain labels), averaged over used entries."""
    losses = F.binary_cross_entropy_with_logits(logits, target, reduction="none") * weight
    return losses.sum() / weight.sum().clamp_min(1.0)


def step_scores(
    step_emb: torch.Tensor, snippet_emb: torch.Tensor, snippet_sample: torch.Tensor, log_scale: torch.Tensor
) -> torch.Tensor:
    """(S, Zb) scores of each snippet against every axial step of its own volume."""
    with _float32(step_emb):
        return torch.einsum("szd,sd->sz", step_emb[snippet_sample].float(), snippet_emb.float()) * log_scale.exp()


def localization_loss(scores: torch.Tensor, target_bin: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the snippet's mined bin over the volume's axial steps (0 without snippets)."""
    if len(target_bin) == 0:
        return scores.sum() * 0.0
    return F.cross_entropy(scores, target_bin)
