"""Flow ``audit_dataset``: statistics, leakage, near-duplicates and diff; an HTML + JSON report."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from ctcorpus.audit import audit_corpus, load_corpus_tables, write_audit_report
from flows.common import load_flow_config
from flows.runtime import writable_folder


@task(name="audit-dataset", cache_policy=NO_CACHE)
def audit_task(dataset: Path, against: Path | None, out: Path, config_path: str | None) -> tuple[Path, Path, int]:
    config, _ = load_flow_config(config_path)
    tables = load_corpus_tables(dataset)
    other = load_corpus_tables(against) if against else None
    # after the reads, so that a mistyped dataset leaves no empty folder
    writable_folder(out, "out_dir (--out; default: <dataset>-audit beside the dataset)")
    result = audit_corpus(tables, against=other, config=config.audit)
    html, json_path = write_audit_report(result, out)
    return html, json_path, len(result.findings)


def default_audit_dir(dataset: Path) -> Path:
    """``<dataset>-audit`` beside the dataset, named from its absolute path (``..`` collapsed, links kept):
    ``ctcorpus audit .`` in a dataset folder wrote the report into the dataset as ``-audit`` (files its
    manifest does not list: ``verify`` then failed it), and ``ctcorpus audit ..`` into ``..-audit``."""
    absolute = Path(os.path.abspath(dataset))
    return absolute.parent / f"{absolute.name}-audit"


@flow(name="audit_dataset")
def audit_dataset(
    dataset_dir: str, against_dir: str | None = None, out_dir: str | None = None, config_path: str | None = None
) -> dict[str, Any]:
    """Audit a dataset version (optionally against another one) and write ``audit.html``/``audit.json``."""
    dataset = Path(dataset_dir)
    out = Path(out_dir) if out_dir else default_audit_dir(dataset)
    html, json_path, findings = audit_task(dataset, Path(against_dir) if against_dir else None, out, config_path)
    get_run_logger().info("audit written html=%s findings=%d", html, findings)
    return {"html": str(html), "json": str(json_path), "findings": findings}
