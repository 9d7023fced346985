"""Flow ``train``: the small contrastive CT-report model on a dataset version's shards."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.common import load_flow_config


@task(name="train-model", cache_policy=NO_CACHE)
def train_task(dataset: Path, out: Path, config_path: str | None, device: str, resume: bool) -> dict[str, Any]:
    from ctcorpus.train import train_model

    config, _ = load_flow_config(config_path)
    result = train_model(dataset, config.train, out, device=device, resume=resume)
    return {"out": str(out), "metrics": result.metrics.summary()}


@flow(name="train")
def train(
    dataset_dir: str, out_dir: str, config_path: str | None = None, device: str = "auto", resume: bool = False
) -> dict[str, Any]:
    """Train and evaluate on ``dataset_dir``; checkpoint, tokenizer and metrics go to ``out_dir``.
    ``resume`` continues the run whose checkpoint is in ``out_dir``."""
    summary = train_task(Path(dataset_dir), Path(out_dir), config_path, device, resume)
    get_run_logger().info("trained %s", summary["metrics"])
    return summary
