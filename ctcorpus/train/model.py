"""A small CT-report model: a strided 3D CNN that keeps an axial feature map, a small text
transformer, and projections into one shared, L2-normalised embedding space.

The vision encoder halves y and x in each of its four stages and z only until one z step spans
``z_stride`` voxels (12 mm by default), so its output keeps one feature vector per axial step:
what snippet localization scores against a sentence.
"""

from __future__ import annotations

import contextlib
import io
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ctcorpus.errors import TrainError
from ctcorpus.outputs.store import atomic_write_bytes

N_STAGES = 4


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """Architecture hyper-parameters (saved in the checkpoint to rebuild the model)."""

    vocab_size: int
    max_tokens: int
    base_channels: int
    embed_dim: int
    text_layers: int
    text_heads: int
    z_stride: int
    n_labels: int
    siglip_bias_init: float  # prior log-odds that a volume-report pair matches: -log(batch_size - 1)

    def as_dict(self) -> dict[str, int]:
        """Plain dict for ``torch.save``."""
        return asdict(self)


def _groups(channels: int) -> int:
    return math.gcd(channels, 8)


class _Stage(nn.Module):
    """Strided conv + residual conv, GroupNorm (batch-size independent) and GELU."""

    def __init__(self, c_in: int, c_out: int, stride: tuple[int, int, int]) -> None:
        super().__init__()
        self.down = nn.Sequential(
            nn.Conv3d(c_in, c_out, 3, stride=stride, padding=1, bias=False), nn.GroupNorm(_groups(c_out), c_out), nn.GELU()
        )
        self.body = nn.Sequential(nn.Conv3d(c_out, c_out, 3, padding=1, bias=False), nn.GroupNorm(_groups(c_out), c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.down(x)
        return F.gelu(x + self.body(x))


class VolumeEncoder(nn.Module):
    """3D CNN -> (global embedding, one embedding per axial step)."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        z_halvings = spec.z_stride.bit_length() - 1
        if z_halvings > N_STAGES:
            raise ValueError(f"z_stride {spec.z_stride} needs more than {N_STAGES} stages")
        channels = [1] + [spec.base_channels * 2**i for i in range(N_STAGES)]
        self.stages = nn.Sequential(
            *(
                _Stage(channels[i], channels[i + 1], (2 if i < z_halvings else 1, 2, 2))
                for i in range(N_STAGES)
            )
        )
        width = channels[-1]
        # mean + max over (y, x): a small bright finding survives the max, context the mean
        self.step_proj = nn.Sequential(nn.LayerNorm(2 * width), nn.Linear(2 * width, spec.embed_dim))
        self.global_proj = nn.Sequential(nn.LayerNorm(4 * width), nn.Linear(4 * width, spec.embed_dim))

    def forward(self, volumes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.stages(volumes)  # (B, C, Zb, Y', X')
        steps = torch.cat([features.mean(dim=(3, 4)), features.amax(dim=(3, 4))], dim=1).transpose(1, 2)  # (B, Zb, 2C)
        pooled = torch.cat([steps.mean(dim=1), steps.amax(dim=1)], dim=1)  # (B, 4C)
        return F.normalize(self.global_proj(pooled), dim=-1), F.normalize(self.step_proj(steps), dim=-1)


class TextEncoder(nn.Module):
    """Token + position embeddings, a pre-norm transformer, masked mean pooling, projection."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.tokens = nn.Embedding(spec.vocab_size, spec.embed_dim, padding_idx=0)
        self.positions = nn.Parameter(torch.randn(spec.max_tokens, spec.embed_dim) * 0.02)
        layer = nn.TransformerEncoderLayer(
            spec.embed_dim, spec.text_heads, 4 * spec.embed_dim, dropout=0.0, batch_first=True, norm_first=True
        )
        self.transformer = nn.TransformerEncoder(layer, spec.text_layers, enable_nested_tensor=False)
        self.proj = nn.Sequential(nn.LayerNorm(spec.embed_dim), nn.Linear(spec.embed_dim, spec.embed_dim))

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.tokens(ids) + self.positions[: ids.shape[1]]
        x = self.transformer(x, src_key_padding_mask=~mask)
        weights = mask.unsqueeze(-1).to(x.dtype)
        pooled = (x * weights).sum(1) / weights.sum(1).clamp_min(1.0)
        return F.normalize(self.proj(pooled), dim=-1)


class CtReportModel(nn.Module):
    """Vision and text towers plus the learnable temperatures and biases of the three losses.

    >>> spec = ModelSpec(64, 16, 4, 16, 1, 2, 4, 18, -2.0)
    >>> model = CtReportModel(spec)
    >>> g, s = model.encode_volume(torch.zeros(2, 1, 16, 32, 32))
    >>> tuple(g.shape), tuple(s.shape)
    ((2, 16), (2, 4, 16))
    """

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.spec = spec
        self.vision = VolumeEncoder(spec)
        self.text = TextEncoder(spec)
        # SigLIP initialisation: t' = log 10 and b at the prior log-odds of a match (the paper's
        # b = -10 suits 32k batches; with 8 volumes it would drown the other losses at the start)
        self.siglip_log_scale = nn.Parameter(torch.tensor(math.log(10.0)))
        self.siglip_bias = nn.Parameter(torch.tensor(spec.siglip_bias_init))
        self.label_log_scale = nn.Parameter(torch.tensor(math.log(10.0)))
        self.label_bias = nn.Parameter(torch.zeros(spec.n_labels))
        self.loc_log_scale = nn.Parameter(torch.tensor(math.log(10.0)))

    def encode_volume(self, volumes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, D) volume embeddings and (B, Zb, D) axial-step embeddings, unit length."""
        return self.vision(volumes)

    def encode_text(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(N, D) unit-length text embeddings."""
        return self.text(ids, mask)


CHECKPOINT_FILE = "model.pt"


def resolve_device(device: str) -> torch.device:
    """``"auto"`` picks CUDA when present, else CPU; an unavailable CUDA request is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise TrainError(f"device '{device}' requested but torch sees no CUDA device; use device='cpu'")
    return resolved


def autocast(device: torch.device, bf16: bool) -> contextlib.AbstractContextManager[object]:
    """bfloat16 autocast on CUDA when enabled; float32 elsewhere (CPU bf16 conv3d is slow)."""
    if device.type == "cuda" and bf16:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def save_checkpoint(model: CtReportModel, path: Path, extra: dict[str, object]) -> None:
    """Weights, the :class:`ModelSpec` and ``extra`` (config, provenance, training state) in one
    file, replaced in one step: a run killed while writing keeps the previous checkpoint whole."""
    buffer = io.BytesIO()
    torch.save({"spec": model.spec.as_dict(), "state_dict": model.state_dict(), **extra}, buffer)
    atomic_write_bytes(Path(path), buffer.getvalue())


def load_checkpoint(model_dir: Path, device: torch.device) -> tuple[CtReportModel, dict[str, object]]:
    """Rebuild the model saved by :func:`save_checkpoint`; returns it (eval mode) and the checkpoint."""
    path = Path(model_dir) / CHECKPOINT_FILE
    if not path.is_file():
        raise TrainError("no checkpoint; train the model first", path=path)
    checkpoint = torch.load(path, map_location=device, weights_only=True)
    model = CtReportModel(ModelSpec(**checkpoint["spec"])).to(device)
    model.load_state_dict(checkpoint["state_dict"])
    return model.eval(), checkpoint
