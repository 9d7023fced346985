"""The training loop: tokenizer, model, optimizer, timed steps, checkpoint, held-out evaluation.

No step waits for the GPU: losses stay on the device until a logging step reads them, and the
step timing marks are CUDA events (host time on CPU), read after training. Each step's time is
split into the data wait, the GPU's idle time while the host blocked in ``next(loader)``, and the
compute time from the batch's arrival to the end of the optimizer step, so the GPU step time is
honest and the data-wait share tells whether the loader keeps the GPU busy.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ctcorpus.config.train import TrainConfig
from ctcorpus.errors import TrainError
from ctcorpus.taxonomy import CT_RATE_LABELS
from ctcorpus.train.data import Batch, dataset_identity, iterate_forever, make_loader, probe_grid, shard_paths
from ctcorpus.train.evaluate import METRICS_FILE, EvalMetrics, encode_prompts, evaluate, prompt_tokens, write_metrics
from ctcorpus.train.losses import label_logits, label_loss, localization_loss, siglip_loss, step_scores
from ctcorpus.train.model import CHECKPOINT_FILE, CtReportModel, ModelSpec, autocast, resolve_device, save_checkpoint
from ctcorpus.train.tokenizer import TOKENIZER_FILE, report_texts, train_tokenizer
from ctcorpus.version import __version__

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class StepLoss:
    """The total loss of one step and its three parts (detached tensors: read them only when
    logging, since each read of a CUDA scalar waits for the GPU)."""

    total: torch.Tensor
    siglip: torch.Tensor
    label: torch.Tensor
    localization: torch.Tensor


@dataclass(frozen=True, slots=True)
class TrainResult:
    """What :func:`train_model` produced and measured."""

    out_dir: Path
    checkpoint: Path
    tokenizer: Path
    metrics_path: Path
    device: str
    steps: int
    losses: tuple[float, ...]  # total loss per step
    metrics: EvalMetrics
    volumes_per_s: float  # end-to-end training throughput after the warm-up steps
    step_s: float  # mean compute time per step (GPU time on CUDA), data wait excluded
    data_wait_share: float  # time the device waited for next(loader) / total step time


def step_loss(model: CtReportModel, batch: Batch, prompts: tuple[torch.Tensor, torch.Tensor], config: TrainConfig) -> StepLoss:
    """SigLIP + weighted label-prompt BCE + weighted snippet localization for one batch."""
    global_emb, step_emb = model.encode_volume(batch.scaled_volumes())
    report_emb = model.encode_text(batch.report_ids, batch.report_mask)
    contrast = siglip_loss(global_emb, report_emb, model.siglip_log_scale, model.siglip_bias)
    logits = label_logits(global_emb, prompts[0], prompts[1], model.label_log_scale, model.label_bias)
    labels = label_loss(logits, batch.label_target, batch.label_weight)
    if len(batch.snippet_z):
        snippet_emb = model.encode_text(batch.snippet_ids, batch.snippet_mask)
        scores = step_scores(step_emb, snippet_emb, batch.snippet_sample, model.loc_log_scale)
        localization = localization_loss(scores, batch.snippet_z // model.spec.z_stride)
    else:
        localization = torch.zeros((), device=contrast.device)
    total = contrast + config.label_loss_weight * labels + config.localization_loss_weight * localization
    return StepLoss(total, contrast.detach(), labels.detach(), localization.detach())


@dataclass(slots=True)
class StepClock:
    """Timing marks of the training loop that never make the host wait for the GPU.

    On CUDA a mark is an event recorded on the device's stream: the interval between two marks is
    the GPU's time between reaching them, so the host's wait for a batch counts only while the GPU
    had nothing queued. Elsewhere a mark is the host's clock.
    """

    device: torch.device
    marks: list[Any] = field(default_factory=list)

    def mark(self) -> None:
        """Append a mark at this point of the host's (CPU) or the device's (CUDA) work."""
        if self.device.type != "cuda":
            self.marks.append(time.perf_counter())
            return
        event = torch.cuda.Event(enable_timing=True)
        event.record(torch.cuda.current_stream(self.device))  # the training device, not the current one
        self.marks.append(event)

    def seconds(self, start: int, stop: int) -> float:
        """Seconds from mark ``start`` to mark ``stop`` (on CUDA, waits until the GPU reached ``stop``)."""
        if self.device.type != "cuda":
            return self.marks[stop] - self.marks[start]
        self.marks[stop].synchronize()
        return self.marks[start].elapsed_time(self.marks[stop]) / 1000.0


def _read_losses(pending: list[torch.Tensor], losses: list[float], out_dir: Path) -> None:
    """Move the pending step losses to ``losses`` (one host read); raise at the first non-finite one."""
    first = len(losses)
    losses.extend(torch.stack(pending).tolist())
    pending.clear()
    for step, value in enumerate(losses[first:], first):
        if not math.isfinite(value):
            raise TrainError(f"loss became {value} at step {step}; lower train.learning_rate", path=out_dir)


def _optimizer(model: CtReportModel, config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW; weight decay only on matrices and kernels (not norms, biases, scales)."""
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=config.learning_rate, betas=(0.9, 0.98))


def _lr_factor(step: int, config: TrainConfig) -> float:
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def train_model(shard_root: Path, config: TrainConfig, out_dir: Path, device: str = "auto") -> TrainResult:
    """Train the CT-report model on ``shard_root/shards/train`` and evaluate it on ``config.eval_split``.

    Writes ``tokenizer.json``, ``model.pt`` and ``metrics.json`` (evaluation, training figures,
    provenance: the dataset version and its manifest's sha256 too) into ``out_dir``.

    >>> result = train_model(Path("corpus"), TrainConfig(steps=200), Path("runs/1"))  # doctest: +SKIP
    >>> result.metrics.summary()  # doctest: +SKIP
    'test: 120 volumes, R@1=0.050 ...'
    """
    torch_device = resolve_device(device)
    torch.manual_seed(config.seed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    train_shards = shard_paths(shard_root, "train")
    eval_shards = shard_paths(shard_root, config.eval_split, setting="train.eval_split")
    grid = probe_grid(shard_root, "train", config)
    dataset = dataset_identity(shard_root)
    tokenizer = train_tokenizer(report_texts(train_shards), config.vocab_size)
    spec = ModelSpec(
        vocab_size=tokenizer.get_vocab_size(),
        max_tokens=config.max_tokens,
        base_channels=config.base_channels,
        embed_dim=config.embed_dim,
        text_layers=config.text_layers,
        text_heads=config.text_heads,
        z_stride=grid.z_stride,
        n_labels=len(CT_RATE_LABELS),
        siglip_bias_init=-math.log(config.batch_size - 1),
    )
    model = CtReportModel(spec).to(torch_device).train()
    optimizer = _optimizer(model, config)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: _lr_factor(s, config))
    cuda = torch_device.type == "cuda"
    torch.backends.cudnn.benchmark = cuda  # fixed input shape: pick the fastest conv algorithms once
    loader = make_loader(shard_root, "train", config, grid, tokenizer, train=True, pin_memory=cuda)
    stream = iterate_forever(loader, "train")
    prompt_ids = prompt_tokens(tokenizer, config.max_tokens, torch_device)
    clock = StepClock(torch_device)  # marks 3 * step + (0 before next(loader), 1 after it, 2 after the step)
    losses: list[float] = []
    pending: list[torch.Tensor] = []
    log_every = max(1, config.steps // 10)
    for step in range(config.steps):
        clock.mark()
        batch = next(stream)
        clock.mark()
        batch = batch.to(torch_device)
        with autocast(torch_device, config.bf16):
            loss = step_loss(model, batch, encode_prompts(model, prompt_ids), config)
        optimizer.zero_grad(set_to_none=True)
        loss.total.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        clock.mark()
        pending.append(loss.total.detach())
        if step % log_every == 0 or step == config.steps - 1:
            _read_losses(pending, losses, out_dir)
            wait = clock.seconds(3 * step, 3 * step + 1)
            logger.info(
                "step=%d loss=%.4f siglip=%.4f label=%.4f loc=%.4f wait_s=%.4f step_s=%.4f",
                step, losses[-1], float(loss.siglip), float(loss.label), float(loss.localization), wait,
                clock.seconds(3 * step, 3 * step + 2) - wait,
            )
    stream.close()
    del loader
    first_timed = config.timing_warmup_steps if config.steps > config.timing_warmup_steps else 0
    timed = range(first_timed, config.steps)
    total_s = sum(clock.seconds(3 * step, 3 * step + 2) for step in timed)
    wait_s = sum(clock.seconds(3 * step, 3 * step + 1) for step in timed)
    n_timed = len(timed)
    # the tokenizer is written with the weights, not before training: a failed or killed rerun into
    # this folder must not leave the last run's model.pt beside a tokenizer of other token ids, nor
    # (evaluation failing) the new model beside the last run's metrics
    (out_dir / METRICS_FILE).unlink(missing_ok=True)
    tokenizer.save(str(out_dir / TOKENIZER_FILE))
    checkpoint = out_dir / CHECKPOINT_FILE
    save_checkpoint(
        model, checkpoint, {"config": config.model_dump(mode="json"), "pipeline_version": __version__, "dataset": dataset}
    )
    eval_loader = make_loader(shard_root, config.eval_split, config, grid, tokenizer, train=False, pin_memory=cuda)
    metrics = evaluate(model, tokenizer, eval_loader, grid, config, torch_device, config.eval_split)
    result = TrainResult(
        out_dir=out_dir,
        checkpoint=checkpoint,
        tokenizer=out_dir / TOKENIZER_FILE,
        metrics_path=out_dir / METRICS_FILE,
        device=str(torch_device),
        steps=config.steps,
        losses=tuple(losses),
        metrics=metrics,
        volumes_per_s=config.batch_size * n_timed / total_s,
        step_s=(total_s - wait_s) / n_timed,
        data_wait_share=wait_s / total_s,
    )
    training = {
        "device": result.device,
        "steps": result.steps,
        "first_loss": losses[0],
        "final_loss": losses[-1],
        "loss_history": losses,
        "volumes_per_s": result.volumes_per_s,
        "step_s": result.step_s,
        "data_wait_share": result.data_wait_share,
        "z_step_mm": grid.step_mm,
    }
    shards = {"train": [p.name for p in train_shards], config.eval_split: [p.name for p in eval_shards]}
    extra = {"train": training, "shards": shards, "config": config.model_dump(mode="json"), "dataset": dataset}
    write_metrics(result.metrics_path, metrics, extra)
    logger.info("evaluation %s", metrics.summary())
    return result
