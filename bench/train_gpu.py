"""Helper of bench/train_gpu.sh: fabricate shards, measure the loader alone, train, evaluate.

Figures (all measured in this run, on this machine):

- loader_volumes_per_s: the training DataLoader alone (decode, crop, jitter, tokenize, collate),
  after its workers started, no model attached;
- volumes_per_s: end-to-end training throughput (volumes per second of wall time per step);
- step_s: mean GPU time per step (host-to-device copy, forward, backward, optimizer), from CUDA
  events, data wait excluded;
- data_wait_share: the GPU's idle time while the host blocked in next(loader) / total step time
  (0 = the GPU never waits). No step synchronizes the GPU: the events are read after training.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

from ctcorpus.config.train import TrainConfig
from ctcorpus.train import make_loader, probe_grid, shard_paths, train_model, train_tokenizer, write_synthetic_corpus
from ctcorpus.train.tokenizer import report_texts


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cpu", action="store_true", help="tiny CPU configuration (smoke run)")
    parser.add_argument("--volumes", type=int, help="training volumes to fabricate")
    parser.add_argument("--test-volumes", type=int, help="held-out volumes to fabricate")
    parser.add_argument("--size", type=int, help="fabricated volumes are size^3 voxels at 1.5 mm")
    parser.add_argument("--steps", type=int, help="training steps")
    parser.add_argument("--batch-size", type=int, help="volumes per step")
    parser.add_argument("--workers", type=int, help="DataLoader workers")
    parser.add_argument("--channels", type=int, help="base channels of the 3D encoder")
    parser.add_argument("--loader-batches", type=int, help="batches timed for the loader-alone figure")
    parser.add_argument("--workdir", type=Path, help="where shards and the run go (default: a temp dir)")
    args = parser.parse_args()
    cpu = {"volumes": 48, "test_volumes": 16, "size": 32, "steps": 12, "batch_size": 4, "workers": 1, "channels": 8, "loader_batches": 4}
    gpu = {"volumes": 384, "test_volumes": 64, "size": 128, "steps": 300, "batch_size": 8, "workers": min(12, os.cpu_count() or 1), "channels": 32, "loader_batches": 24}
    for key, value in (cpu if args.cpu else gpu).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def fit_shared_memory(workers: int, prefetch: int, batch_bytes: int) -> tuple[int, int]:
    """Workers and prefetch whose batches in flight fit in /dev/shm (containers often give 64 MiB)."""
    try:
        free = shutil.disk_usage("/dev/shm").free
    except OSError:
        return workers, prefetch
    while workers > 0 and workers * prefetch * batch_bytes * 2 > free:
        if prefetch > 1:
            prefetch -= 1
        else:
            workers -= 1
    return workers, prefetch


def loader_rate(root: Path, config: TrainConfig, batches: int, pin: bool) -> float:
    """Volumes/s of the training loader alone, timed after the first batch (worker start-up)."""
    grid = probe_grid(root, "train", config)
    tokenizer = train_tokenizer(report_texts(shard_paths(root, "train")), config.vocab_size)
    loader = make_loader(root, "train", config, grid, tokenizer, train=True, pin_memory=pin)
    count, start = 0, 0.0
    while count <= batches:
        for batch in loader:
            if count == 0:
                start = time.perf_counter()
            else:
                batch.volumes.sum()  # touch the data
            count += 1
            if count > batches:
                break
    return batches * config.batch_size / (time.perf_counter() - start)


def main() -> int:
    args = parse()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    device = "cpu" if args.cpu else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        print("bench/train_gpu.sh: torch sees no CUDA device; run with --cpu for the CPU smoke run", file=sys.stderr)
        return 2
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="ctcorpus-train-bench-"))
    root = workdir / "corpus"
    size = args.size
    started = time.perf_counter()
    write_synthetic_corpus(
        root, {"train": args.volumes, "test": args.test_volumes}, (size, size, size),
        spacing_mm=1.5, per_shard=16, seed=0, processes=min(16, os.cpu_count() or 1),
    )
    fabricate_s = time.perf_counter() - started
    shard_mb = sum(p.stat().st_size for p in root.rglob("*.tar")) / 2**20
    workers, prefetch = fit_shared_memory(args.workers, 4, args.batch_size * size**3 * 2)
    if (workers, prefetch) != (args.workers, 4):
        print(f"/dev/shm is small: using {workers} workers, prefetch {prefetch}", file=sys.stderr)
    config = TrainConfig(
        input_shape_zyx=(size, size, size),
        axial_step_mm=12.0,
        base_channels=args.channels,
        embed_dim=32 if args.cpu else 256,
        text_heads=2 if args.cpu else 4,
        text_layers=1 if args.cpu else 2,
        max_tokens=32 if args.cpu else 64,
        vocab_size=200 if args.cpu else 2000,
        batch_size=args.batch_size,
        steps=args.steps,
        learning_rate=1e-3,
        warmup_steps=max(1, args.steps // 20),
        num_workers=workers,
        prefetch_factor=prefetch,
        eval_batch_size=16,
        timing_warmup_steps=min(10, args.steps // 4),
    )
    loader_vps = loader_rate(root, config, args.loader_batches, pin=device == "cuda")
    if device == "cuda":
        torch.cuda.init()
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    result = train_model(root, config, workdir / "run", device=device)
    train_s = time.perf_counter() - started
    peak_gb = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else 0.0
    m = result.metrics
    rows = [
        ("device", torch.cuda.get_device_name() if device == "cuda" else "cpu"),
        ("corpus", f"{args.volumes}+{args.test_volumes} volumes of {size}^3 int16, {shard_mb:.0f} MiB of shards, fabricated in {fabricate_s:.1f} s"),
        ("config", f"batch {config.batch_size}, {config.steps} steps, {config.num_workers} workers, bf16={device == 'cuda'}"),
        ("loader alone", f"{loader_vps:.1f} volumes/s"),
        ("training", f"{result.volumes_per_s:.1f} volumes/s end to end"),
        ("step time", f"{result.step_s * 1000:.1f} ms (device time, data wait excluded)"),
        ("data wait share", f"{result.data_wait_share:.3f}"),
        ("peak GPU memory", f"{peak_gb:.2f} GiB"),
        ("loss", f"{result.losses[0]:.3f} -> {result.losses[-1]:.3f}"),
        ("evaluation", m.summary()),
        ("train + eval wall", f"{train_s:.1f} s"),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    figures = {
        "volumes_per_s": round(result.volumes_per_s, 3),
        "step_s": round(result.step_s, 5),
        "data_wait_share": round(result.data_wait_share, 4),
        "loader_volumes_per_s": round(loader_vps, 3),
        "device": result.device,
        "batch_size": config.batch_size,
        "input_size": size,
        "steps": config.steps,
        "num_workers": config.num_workers,
        "peak_gpu_gib": round(peak_gb, 3),
        "first_loss": round(result.losses[0], 4),
        "final_loss": round(result.losses[-1], 4),
        "mean_label_auc": m.mean_label_auc,
        "localization_mae_mm": m.localization_mae_mm,
        "baseline_mae_mm": m.baseline_mae_mm,
    }
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
