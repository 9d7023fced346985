"""The training stage: stream the corpus shards and train a small contrastive CT-report model.

Entry points: :func:`train_model` (tokenizer, model, timed training, resumable checkpoints,
held-out evaluation) and :func:`evaluate_model` (a saved checkpoint on any split). The package imports
only torch, numpy, pyarrow, webdataset, tokenizers and pydantic, so it runs on a bare GPU image.
"""

from ctcorpus.train.data import Batch, VolumeGrid, make_loader, probe_grid, shard_paths
from ctcorpus.train.evaluate import EvalMetrics, evaluate_model, rank_auc
from ctcorpus.train.loop import TrainResult, train_model
from ctcorpus.train.model import CtReportModel, ModelSpec
from ctcorpus.train.synthetic import write_synthetic_corpus
from ctcorpus.train.tokenizer import train_tokenizer

__all__ = [
    "Batch",
    "CtReportModel",
    "EvalMetrics",
    "ModelSpec",
    "TrainResult",
    "VolumeGrid",
    "evaluate_model",
    "make_loader",
    "probe_grid",
    "rank_auc",
    "shard_paths",
    "train_model",
    "train_tokenizer",
    "write_synthetic_corpus",
]
