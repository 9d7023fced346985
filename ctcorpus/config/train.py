"""Configuration of the train stage: a small contrastive CT-report model with localization."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from ctcorpus.config.base import StageConfig


class TrainConfig(StageConfig):
    """Settings of the train stage (every field described).

    The defaults fit one modern GPU; tests use a tiny override (32^3 inputs, 16 channels).
    """

    input_shape_zyx: tuple[int, int, int] = Field(
        (128, 160, 160),
        description=(
            "Fixed training shape (z, y, x) in voxels: volumes are cropped (random in training, "
            "centred in evaluation) or padded with -1000 HU to it. z must be a multiple of the "
            "axial step in voxels, y and x a multiple of 2**4."
        ),
    )
    axial_step_mm: float = Field(
        12.0,
        gt=0,
        description=(
            "Resolution of the model's axial feature map in mm (one localization bin). Divided "
            "by the shards' z spacing it must give a power of two no larger than 16."
        ),
    )
    base_channels: int = Field(32, ge=4, description="Channels of the first 3D conv stage (doubled per stage).")
    embed_dim: int = Field(256, ge=8, description="Width of the shared volume-text embedding space.")
    text_layers: int = Field(2, ge=1, description="Transformer layers of the text encoder.")
    text_heads: int = Field(4, ge=1, description="Attention heads of the text encoder (must divide embed_dim).")
    max_tokens: int = Field(128, ge=8, description="Report and snippet texts are truncated to this many tokens.")
    vocab_size: int = Field(
        8000, ge=64,
        description="WordPiece vocabulary size: the characters and most frequent words of the train split's reports.",
    )
    batch_size: int = Field(8, ge=2, description="Volumes per step (SigLIP needs at least 2).")
    steps: int = Field(1000, ge=1, description="Optimizer steps.")
    learning_rate: float = Field(3e-4, gt=0, description="AdamW peak learning rate (linear warm-up, cosine decay).")
    weight_decay: float = Field(0.05, ge=0, description="AdamW weight decay on weight matrices.")
    warmup_steps: int = Field(50, ge=0, description="Linear learning-rate warm-up steps.")
    num_workers: int = Field(4, ge=0, description="DataLoader worker processes (0 decodes in the main process).")
    prefetch_factor: int = Field(4, ge=1, description="Batches each worker prepares ahead (ignored without workers).")
    shuffle_buffer: int = Field(64, ge=1, description="Samples held in each worker's shuffle buffer.")
    intensity_scale_jitter: float = Field(
        0.05, ge=0, lt=1, description="Training augmentation: HU multiplied by 1 + U(-j, j) (no flips: laterality)."
    )
    intensity_shift_hu: float = Field(20.0, ge=0, description="Training augmentation: HU shifted by U(-s, s).")
    uncertain_policy: Literal["mask", "half"] = Field(
        "mask",
        description=(
            "How 'uncertain' labels enter the label loss: 'mask' drops them (weight 0), 'half' uses "
            "a 0.5 target. Positive is 1; negative and absent are 0. Evaluation ignores uncertain."
        ),
    )
    label_loss_weight: float = Field(1.0, ge=0, description="Weight of the 18-label prompt BCE loss.")
    localization_loss_weight: float = Field(1.0, ge=0, description="Weight of the snippet localization loss.")
    bf16: bool = Field(True, description="bfloat16 autocast on CUDA (CPU always runs float32).")
    eval_split: Literal["train", "validation", "test"] = Field(
        "test", description="Held-out split train_model evaluates after training."
    )
    eval_batch_size: int = Field(16, ge=1, description="Volumes per evaluation batch.")
    checkpoint_every: int = Field(
        250,
        ge=0,
        description=(
            "Replace model.pt (weights, optimizer, LR schedule, step, RNG states, tokenizer) every this "
            "many steps, and at the end; 0: only at the end. `ctcorpus train --resume` continues from it."
        ),
    )
    timing_warmup_steps: int = Field(
        5, ge=0, description="First steps left out of the throughput figures (compilation, worker start)."
    )
    seed: int = Field(0, description="Seed of weights, shuffling and augmentation.")

    @field_validator("input_shape_zyx")
    @classmethod
    def _shape_fits_encoder(cls, shape: tuple[int, int, int]) -> tuple[int, int, int]:
        if any(s < 16 or s % 16 for s in shape[1:]):
            raise ValueError(f"y and x of input_shape_zyx must be multiples of 16, got {shape}")
        if shape[0] < 1:
            raise ValueError(f"z of input_shape_zyx must be positive, got {shape}")
        return shape

    @model_validator(mode="after")
    def _heads_divide_width(self) -> TrainConfig:
        """The text transformer splits embed_dim across its heads; refuse a remainder here, not at model build."""
        if self.embed_dim % self.text_heads:
            raise ValueError(f"text_heads ({self.text_heads}) must divide embed_dim ({self.embed_dim})")
        return self
