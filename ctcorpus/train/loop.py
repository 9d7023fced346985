"""The training loop: tokenizer, model, optimizer, timed steps, checkpoints, held-out evaluation.

No step waits for the GPU: losses stay on the device until a logging step reads them, and the
step timing marks are CUDA events (host time on CPU), read after training. Each step's time is
split into the data wait, the GPU's idle time while the host blocked in ``next(loader)``, and the
compute time from the batch's arrival to the end of the optimizer step, so the GPU step time is
honest and the data-wait share tells whether the loader keeps the GPU busy.

Every ``checkpoint_every`` steps and at the end, ``model.pt`` is replaced whole by one holding the
weights, the optimizer, the LR schedule, the step, the loss history, the RNG states and the
tokenizer, and where each worker stream of the loader stands (its epoch and the batches of it
trained on). A resumed run's loader starts every stream there, past the batches already trained on,
so an interrupted epoch is finished, not skipped nor replayed. The order of an epoch's shards and
samples and every sample's crop and jitter depend on the seed, the epoch and the sample only (with
or without workers), so a resumed run equals an uninterrupted one.

A run holds a lock on its folder and first removes the temporary files a run killed while writing
one of its files left there.
"""

from __future__ import annotations

import logging
import math
import random
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ctcorpus.config.train import TrainConfig
from ctcorpus.errors import TrainError
from ctcorpus.outputs.store import atomic_write_bytes, exclusive_lock, leftover_temp_files
from ctcorpus.taxonomy import CT_RATE_LABELS
from ctcorpus.train.data import (
    Batch,
    LoaderStart,
    StreamPosition,
    batch_streams,
    count_shard_samples,
    dataset_identity,
    iterate_forever,
    make_loader,
    probe_grid,
    shard_paths,
)
from ctcorpus.train.evaluate import METRICS_FILE, SPLIT_METRICS_FILE, EvalMetrics, encode_prompts, evaluate, prompt_tokens, write_metrics
from ctcorpus.train.losses import label_logits, label_loss, localization_loss, siglip_loss, step_scores
from ctcorpus.train.model import CHECKPOINT_FILE, CtReportModel, ModelSpec, autocast, resolve_device, save_checkpoint
from ctcorpus.train.tokenizer import TOKENIZER_FILE, report_texts, train_tokenizer
from ctcorpus.version import __version__

logger = logging.getLogger(__name__)

#: Config fields a resumed run may change: how long it trains and how often it saves.
RESUMABLE_CHANGES = frozenset({"steps", "checkpoint_every"})
#: What a checkpoint's training state means; 3: it says where each worker stream stands
#: (``streams``), where 2 held only the latest epoch a batch came from, and 1 (no ``resume_format``)
#: also drew the samples' crops and jitter from RNGs of the loader's workers.
RESUME_FORMAT = 3
#: The lock a run holds on its folder (no second run writes into it meanwhile).
LOCK_FILE = ".train.lock"
#: The files whose temporary files (:func:`~ctcorpus.outputs.store.leftover_temp_files`) a killed run
#: leaves: ``model.pt``, ``tokenizer.json``, ``metrics.json``, ``metrics-<split>.json``.
_WRITTEN = ("|".join(map(re.escape, (CHECKPOINT_FILE, TOKENIZER_FILE, METRICS_FILE)))
            + "|" + re.escape(SPLIT_METRICS_FILE).replace(re.escape("{split}"), r"\w+"))


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
    # timing of this process's steps; None when it trained none (a finished run resumed to evaluate it)
    volumes_per_s: float | None  # end-to-end training throughput after the warm-up steps
    step_s: float | None  # mean compute time per step (GPU time on CUDA), data wait excluded
    data_wait_share: float | None  # time the device waited for next(loader) / total step time


def step_loss(model: CtReportModel, batch: Batch, prompts: tuple[torch.Tensor, torch.Tensor], config: TrainConfig) -> StepLoss:
    """SigLIP (a volume matches every report of its text: its own, its study's) + weighted label-prompt
    BCE + weighted snippet localization for one batch."""
    global_emb, step_emb = model.encode_volume(batch.scaled_volumes())
    report_emb = model.encode_text(batch.report_ids, batch.report_mask)
    contrast = siglip_loss(global_emb, report_emb, model.siglip_log_scale, model.siglip_bias, batch.same_report)
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


def _rng_state(device: torch.device) -> dict[str, Any]:
    """Torch's CPU RNG (weights, the workers' seeds), the training GPU's and Python's; numpy's global
    RNG is not used in training, and the samples' draws are a function of seed, epoch and key."""
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        "python": random.getstate(),
    }


def _set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and state["cuda"] is not None:
        torch.cuda.set_rng_state(state["cuda"], device)
    random.setstate(state["python"])


def _resume_state(out_dir: Path, config: TrainConfig, dataset: dict[str, str | None], tokenizer: str) -> dict[str, Any]:
    """The checkpoint in ``out_dir`` to continue, refused when it was made with another config (but
    ``steps`` and ``checkpoint_every``), dataset or tokenizer: continuing it would train a model that
    none of them describes. One with all ``steps`` is only evaluated again (a run killed in its
    final evaluation has no metrics); one with more is refused."""
    path = out_dir / CHECKPOINT_FILE
    if not path.is_file():
        raise TrainError("no checkpoint to resume from; train without --resume", path=path)
    state = torch.load(path, map_location="cpu", weights_only=True)  # RNG states must stay on the CPU
    if "optimizer" not in state:
        raise TrainError("cannot resume: the checkpoint holds the weights only (written by an older ctcorpus)", path=path)
    saved, now = state["config"], config.model_dump(mode="json")
    changed = sorted(k for k in saved.keys() | now.keys() if k not in RESUMABLE_CHANGES and saved.get(k) != now.get(k))
    if changed:
        diff = "; ".join(f"{k}: {saved.get(k)!r} there, {now.get(k)!r} now" for k in changed)
        raise TrainError(
            f"cannot resume: the checkpoint was trained with another config ({diff}); only train.steps and "
            "train.checkpoint_every may change",
            path=path,
        )
    if state["dataset"] != dataset:
        raise TrainError(
            f"cannot resume: the checkpoint was trained on another dataset ({state['dataset']}, now {dataset})", path=path
        )
    if state["tokenizer"] != tokenizer:
        raise TrainError(
            "cannot resume: the checkpoint's tokenizer differs from the one the train split's reports give now", path=path
        )
    if state["step"] > config.steps:
        raise TrainError(
            f"cannot resume: the checkpoint has {state['step']} steps, more than train.steps={config.steps}", path=path
        )
    if state.get("resume_format", 1) == 1:
        logger.warning(
            "%s was written when the workers drew the samples' crops and jitter from their own RNGs: the run "
            "goes on with draws of the seed, the epoch and the sample, but it equals no uninterrupted run", path,
        )
    if "streams" not in state:
        logger.warning(
            "%s says only the latest epoch a batch came from (an older ctcorpus): the run goes on at the next "
            "epoch, skipping the rest of that one", path,
        )
    return state


def _loader_start(state: dict[str, Any], streams: int, batching: int) -> LoaderStart:
    """Where the resumed loader starts: each stream where the checkpoint's left it, its worker ``i``
    stream ``(i + step % batching) % streams``, ``batching`` the streams that make batches
    (:class:`~ctcorpus.train.data.LoaderStart`; with idle workers, ``step % streams`` handed the
    first batch to the wrong stream); for a checkpoint without ``streams``, every stream at the
    epoch after its ``epoch``."""
    if "streams" not in state:
        return LoaderStart((StreamPosition(state["epoch"] + 1),) * streams)
    return LoaderStart(tuple(StreamPosition(*p) for p in state["streams"]), state["step"] % max(1, batching))


def _write_checkpoint(out_dir: Path, model: CtReportModel, state: dict[str, Any]) -> None:
    """Replace ``model.pt`` (``state`` holds its tokenizer) and write that tokenizer beside it as
    ``tokenizer.json``.

    A run into the folder of another run must never leave that run's ``model.pt`` beside a tokenizer
    of other token ids, nor (its evaluation failing) the new model beside the metrics of another
    model (``metrics.json``, ``metrics-<split>.json`` of :func:`evaluate_model`): a ``tokenizer.json``
    of other ids goes before ``model.pt`` is replaced, and comes back after it.
    """
    tokenizer_path = out_dir / TOKENIZER_FILE
    tokenizer = state["tokenizer"].encode()
    current = tokenizer_path.is_file() and tokenizer_path.read_bytes() == tokenizer
    if not current:
        tokenizer_path.unlink(missing_ok=True)
    for metrics in (out_dir / METRICS_FILE, *out_dir.glob(SPLIT_METRICS_FILE.format(split="*"))):
        metrics.unlink(missing_ok=True)
    save_checkpoint(model, out_dir / CHECKPOINT_FILE, state)
    if not current:
        atomic_write_bytes(tokenizer_path, tokenizer)


def _remove_leftover_temps(out_dir: Path) -> None:
    """Delete the temporary files (``.tmp-<uuid hex>-model.pt``, ``-tokenizer.json``, ``-metrics*.json``)
    a run killed while writing them left in ``out_dir``; no other file. Only the holder of the
    folder's lock may call this: a live run's temporary file is no leftover."""
    leftovers = leftover_temp_files(out_dir, _WRITTEN)
    for path in leftovers:
        path.unlink()
    if leftovers:
        logger.warning("removed what a killed run left in %s: %s", out_dir, [p.name for p in leftovers])


def train_model(
    shard_root: Path, config: TrainConfig, out_dir: Path, device: str = "auto", *, resume: bool = False
) -> TrainResult:
    """Train the CT-report model on ``shard_root/shards/train`` and evaluate it on ``config.eval_split``.

    Writes ``model.pt`` (every ``config.checkpoint_every`` steps and at the end), ``tokenizer.json``
    and ``metrics.json`` (evaluation, training figures, provenance: the dataset version and its
    manifest's sha256 too) into ``out_dir``. With ``resume``, continues the run whose checkpoint is
    in ``out_dir`` (same config but ``steps`` and ``checkpoint_every``, dataset and tokenizer; a
    finished run is evaluated again). A second run into ``out_dir`` while this one holds its lock (``.train.lock``) fails at once.

    >>> result = train_model(Path("corpus"), TrainConfig(steps=200), Path("runs/1"))  # doctest: +SKIP
    >>> result.metrics.summary()  # doctest: +SKIP
    'test: 120 volumes, R@1=0.050 ...'
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(out_dir / LOCK_FILE, out_dir):
        _remove_leftover_temps(out_dir)
        return _train(shard_root, config, out_dir, device, resume)


def _train(shard_root: Path, config: TrainConfig, out_dir: Path, device: str, resume: bool) -> TrainResult:
    """:func:`train_model` in the locked ``out_dir``."""
    torch_device = resolve_device(device)
    torch.manual_seed(config.seed)
    train_shards = shard_paths(shard_root, "train")
    eval_shards = shard_paths(shard_root, config.eval_split, setting="train.eval_split")
    for shard in eval_shards:  # one cut short fails now, not after the last step (the tokenizer reads train's)
        count_shard_samples(str(shard))
    grid = probe_grid(shard_root, "train", config)
    dataset = dataset_identity(shard_root)
    tokenizer = train_tokenizer(report_texts(train_shards), config.vocab_size)
    tokenizer_json = tokenizer.to_str()
    resumed = _resume_state(out_dir, config, dataset, tokenizer_json) if resume else None
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
    start, losses, loader_start = 0, [], LoaderStart()
    if resumed is not None:
        model.load_state_dict(resumed["state_dict"])
        optimizer.load_state_dict(resumed["optimizer"])
        scheduler.load_state_dict(resumed["scheduler"])
        start, losses = resumed["step"], list(resumed["losses"])
        workers = max(1, config.num_workers)
        counts = [count_shard_samples(str(p)) for p in train_shards]
        loader_start = _loader_start(resumed, workers, batch_streams(counts, workers, config.batch_size))
        logger.info("resuming %s at step %d; the loader's streams start at %s", out_dir / CHECKPOINT_FILE, start,
                    [(p.epoch, p.batches) for p in loader_start.positions])
    streams = [loader_start.position(i) for i in range(max(1, config.num_workers))]  # (epoch, batches) trained on
    cuda = torch_device.type == "cuda"
    torch.backends.cudnn.benchmark = cuda  # fixed input shape: pick the fastest conv algorithms once
    loader = make_loader(shard_root, "train", config, grid, tokenizer, train=True, pin_memory=cuda, start=loader_start)
    stream = iterate_forever(loader, "train")
    if resumed is not None:  # after the loader drew its seed, as the interrupted run had before its first step
        _set_rng_state(resumed["rng"], torch_device)
    provenance = {
        "config": config.model_dump(mode="json"), "pipeline_version": __version__, "dataset": dataset,
        "tokenizer": tokenizer_json, "resume_format": RESUME_FORMAT,
    }
    prompt_ids = prompt_tokens(tokenizer, config.max_tokens, torch_device)
    clock = StepClock(torch_device)  # marks 3 * (step - start) + (0 before next(loader), 1 after it, 2 after the step)
    pending: list[torch.Tensor] = []
    log_every = max(1, config.steps // 10)
    for step in range(start, config.steps):
        clock.mark()
        batch = next(stream)
        clock.mark()
        trained = streams[batch.stream]
        streams[batch.stream] = StreamPosition(batch.epoch, trained.batches + 1 if trained.epoch == batch.epoch else 1)
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
        done, i = step + 1, step - start
        save = done == config.steps or (config.checkpoint_every > 0 and done % config.checkpoint_every == 0)
        if step % log_every == 0 or save:
            _read_losses(pending, losses, out_dir)
            wait = clock.seconds(3 * i, 3 * i + 1)
            logger.info(
                "step=%d loss=%.4f siglip=%.4f label=%.4f loc=%.4f wait_s=%.4f step_s=%.4f",
                step, losses[-1], float(loss.siglip), float(loss.label), float(loss.localization), wait,
                clock.seconds(3 * i, 3 * i + 2) - wait,
            )
        if save:  # between the marks of two steps: the step times leave the writing out
            state = {
                **provenance, "step": done, "streams": [[p.epoch, p.batches] for p in streams], "losses": losses,
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "rng": _rng_state(torch_device),
            }
            _write_checkpoint(out_dir, model, state)
    stream.close()
    del loader
    ran = config.steps - start
    first_timed = config.timing_warmup_steps if ran > config.timing_warmup_steps else 0
    timed = range(first_timed, ran)  # steps of this process, counted from start
    total_s = sum(clock.seconds(3 * i, 3 * i + 2) for i in timed)
    wait_s = sum(clock.seconds(3 * i, 3 * i + 1) for i in timed)
    n_timed = len(timed)  # 0: a finished run resumed to evaluate it
    eval_loader = make_loader(shard_root, config.eval_split, config, grid, tokenizer, train=False, pin_memory=cuda)
    metrics = evaluate(model, tokenizer, eval_loader, grid, config, torch_device, config.eval_split)
    result = TrainResult(
        out_dir=out_dir,
        checkpoint=out_dir / CHECKPOINT_FILE,
        tokenizer=out_dir / TOKENIZER_FILE,
        metrics_path=out_dir / METRICS_FILE,
        device=str(torch_device),
        steps=config.steps,
        losses=tuple(losses),
        metrics=metrics,
        volumes_per_s=config.batch_size * n_timed / total_s if n_timed else None,
        step_s=(total_s - wait_s) / n_timed if n_timed else None,
        data_wait_share=wait_s / total_s if n_timed else None,
    )
    training = {
        "device": result.device,
        "steps": result.steps,
        "resumed_at_step": start,
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
