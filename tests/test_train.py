"""Tests of the training stage on fabricated shards (CPU, tiny configuration, fixed seeds)."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import itertools
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import webdataset as wds

from ctcorpus.config.train import TrainConfig
from ctcorpus.errors import OutputError, TrainError
from ctcorpus.outputs.sample import CorpusSample, decode_sample
from ctcorpus.outputs.store import exclusive_lock
from ctcorpus.taxonomy import CT_RATE_LABELS
from ctcorpus.train import evaluate_model, loop, make_loader, probe_grid, rank_auc, shard_paths, train_model, write_synthetic_corpus
from ctcorpus.train.data import (
    Collator,
    Decoder,
    LoaderStart,
    StreamPosition,
    VolumeGrid,
    crop_or_pad,
    encode_texts,
    label_targets,
    report_text,
    same_text,
)
from ctcorpus.train.evaluate import encode_prompts, prompt_tokens, recall_at_k
from ctcorpus.train.losses import label_logits, localization_loss, siglip_loss, step_scores
from ctcorpus.train.model import CtReportModel, ModelSpec
from ctcorpus.train.synthetic import make_sample
from ctcorpus.train.tokenizer import report_texts, train_tokenizer

ROOT = Path(__file__).resolve().parents[1]
SPACING_MM = 3.0  # 32 voxels = 96 mm; a 12 mm axial step is 4 voxels, 8 bins
TINY = {
    "input_shape_zyx": (32, 32, 32),
    "base_channels": 8,
    "embed_dim": 32,
    "text_heads": 2,
    "text_layers": 1,
    "max_tokens": 32,
    "vocab_size": 200,
    "batch_size": 8,
    "steps": 60,
    "learning_rate": 1.5e-3,
    "warmup_steps": 5,
    "num_workers": 0,
    "eval_batch_size": 16,
    "shuffle_buffer": 32,
    "timing_warmup_steps": 2,
    "seed": 0,
}
FINDINGS = ("cardiomegaly", "lung_nodule", "pleural_effusion")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    # z 40 > 32: training crops z at random, evaluation centres (snippet slices must follow)
    write_synthetic_corpus(root, {"train": 64, "test": 48}, (40, 32, 32), spacing_mm=SPACING_MM, per_shard=32, seed=0)
    return root


@pytest.fixture(scope="module")
def trained(corpus: Path, tmp_path_factory: pytest.TempPathFactory):
    return train_model(corpus, TrainConfig(**TINY), tmp_path_factory.mktemp("run"), device="cpu")


@pytest.mark.slow
def test_loss_falls(trained) -> None:
    losses = np.array(trained.losses)
    assert len(losses) == TINY["steps"] and np.isfinite(losses).all()
    assert losses[-5:].mean() < 0.8 * losses[:5].mean(), losses


@pytest.mark.slow
def test_metrics_are_computed_and_written(trained) -> None:
    written = json.loads(trained.metrics_path.read_text())
    print(trained.metrics.summary())
    assert written["n_volumes"] == trained.metrics.n_volumes == 48
    assert set(written["label_auc"]) == set(CT_RATE_LABELS)
    recall = [written["recall_at"][k] for k in ("1", "5", "10")]
    assert 0.0 <= recall[0] <= recall[1] <= recall[2] <= 1.0
    # labels the phantoms never carry have no AUC (no positives) rather than a made-up number
    assert written["label_auc"]["emphysema"] is None
    assert written["train"]["steps"] == TINY["steps"] and written["train"]["device"] == "cpu"
    assert 0.0 <= written["train"]["data_wait_share"] < 1.0 and written["train"]["volumes_per_s"] > 0
    assert written["n_snippets"] > 0 and written["pipeline_version"]
    assert trained.checkpoint.is_file() and trained.tokenizer.is_file()


@pytest.mark.slow
def test_synthetic_findings_are_learnable(trained) -> None:
    m = trained.metrics
    aucs = dict(m.label_auc)
    mean_auc = float(np.mean([aucs[name] for name in FINDINGS]))
    print(m.summary(), {name: aucs[name] for name in FINDINGS})
    assert mean_auc > 0.65, aucs
    assert m.localization_mae_mm < 0.6 * m.baseline_mae_mm, m


@pytest.mark.slow
def test_training_twice_gives_the_same_model(trained, corpus: Path, tmp_path: Path) -> None:
    """The tokenizers library's own WordPiece training numbered and merged tokens differently in
    every call (huggingface/tokenizers#1794), so two runs on one corpus trained two models."""
    texts = list(report_texts(shard_paths(corpus, "train")))
    assert train_tokenizer(texts, 200).get_vocab() == train_tokenizer(texts, 200).get_vocab()
    again = train_model(corpus, TrainConfig(**TINY), tmp_path, device="cpu")
    assert again.losses == trained.losses and again.metrics.label_auc == trained.metrics.label_auc


@pytest.mark.slow
@pytest.mark.parametrize("other", [{}, {"max_tokens": 64}, {"max_tokens": 16}, {"input_shape_zyx": (16, 48, 48)}])
def test_evaluate_model_reloads_the_checkpoint(trained, corpus: Path, other: dict) -> None:
    # texts follow the checkpoint's max_tokens: a longer config crashed in the position table, a shorter one
    # cut them; volumes are cropped as in training, whatever crop the evaluating config names
    config = TrainConfig(**{**TINY, **other})
    again = evaluate_model(corpus, trained.out_dir, config, split="test", device="cpu")
    assert again.recall_at == trained.metrics.recall_at
    assert again.localization_mae_mm == pytest.approx(trained.metrics.localization_mae_mm)
    assert again.mean_label_auc == pytest.approx(trained.metrics.mean_label_auc)
    assert (trained.out_dir / "metrics-test.json").is_file()


def test_workers_split_shards_without_duplicates(corpus: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a launcher's RANK and WORLD_SIZE (torchrun, a Kubeflow job) split nothing: training is one process
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    config = TrainConfig(**{**TINY, "num_workers": 2, "eval_batch_size": 5})
    grid = probe_grid(corpus, "train", config)
    tokenizer = train_tokenizer(["no pleural effusion", "nodule in the right lung"], 64)
    loader = make_loader(corpus, "train", config, grid, tokenizer, train=False)
    seen = [vid for batch in loader for vid in batch.volume_ids]
    assert len(shard_paths(corpus, "train")) == 2
    assert sorted(seen) == [f"train-{i:05d}" for i in range(64)]


def test_probe_grid_derives_the_axial_stride(corpus: Path) -> None:
    grid = probe_grid(corpus, "train", TrainConfig(**TINY))
    assert (grid.z_stride, grid.step_mm) == (4, 12.0)
    with pytest.raises(TrainError, match="not a power"):
        probe_grid(corpus, "train", TrainConfig(**{**TINY, "axial_step_mm": 9.0}))


def test_missing_split_names_the_folder(tmp_path: Path) -> None:
    with pytest.raises(TrainError) as info:
        shard_paths(tmp_path, "validation")
    assert str(tmp_path / "shards" / "validation") in str(info.value)
    assert "build the dataset version first (`ctcorpus build`)" in str(info.value)  # no split has shards


def test_eval_split_the_version_lacks_names_the_splits_it_has(tmp_path: Path) -> None:
    """A version without test patients is no missing build: the error names its splits and the setting."""
    for split in ("train", "validation"):
        (tmp_path / "shards" / split).mkdir(parents=True)
        (tmp_path / "shards" / split / "shard-000000.tar").touch()
    with pytest.raises(TrainError) as info:
        train_model(tmp_path, TrainConfig(**TINY), tmp_path / "run", device="cpu")  # eval_split: test
    message = str(info.value)
    assert "split 'test' is empty in this dataset version (it has shards of train, validation only)" in message
    assert "set train.eval_split to one of them" in message and "ctcorpus build" not in message


def test_sample_without_report_names_shard_and_entry(tmp_path: Path) -> None:
    sample = make_sample("v-1", "train", (32, 32, 32), SPACING_MM, np.random.default_rng(0)).encode()
    del sample["report.json"]
    folder = tmp_path / "shards" / "train"
    folder.mkdir(parents=True)
    shard = folder / "shard-000000.tar"
    with wds.TarWriter(str(shard)) as sink:
        sink.write(sample)
    with pytest.raises(TrainError) as info:
        probe_grid(tmp_path, "train", TrainConfig(**TINY))
    assert "report.json" in str(info.value) and str(shard) in str(info.value)


def test_label_targets_policies() -> None:
    labels = {"lung_nodule": "positive", "cardiomegaly": "uncertain", "emphysema": "negative"}
    nodule, cardio = CT_RATE_LABELS.index("lung_nodule"), CT_RATE_LABELS.index("cardiomegaly")
    target, weight, known = label_targets(labels, "mask")
    assert target.sum() == 1.0 and target[nodule] == 1.0
    assert weight[cardio] == 0.0 and weight.sum() == len(CT_RATE_LABELS) - 1 and not known[cardio]
    target, weight, known = label_targets(labels, "half")
    assert target[cardio] == 0.5 and weight.sum() == len(CT_RATE_LABELS) and not known[cardio]


def test_crop_or_pad_keeps_hu_and_reports_the_z_offset() -> None:
    hu = np.arange(40 * 20 * 36, dtype=np.int16).reshape(40, 20, 36) % 2000 - 1000
    out, z_offset = crop_or_pad(hu, (32, 32, 32))
    assert out.shape == (1, 32, 32, 32) and out.dtype == torch.int16 and z_offset == 4
    # y padded by 6 each side with air, x cropped by 2 each side
    assert torch.all(out[0, :, :6] == -1000) and torch.all(out[0, :, 26:] == -1000)
    assert torch.equal(out[0, 10, 6:26], torch.from_numpy(hu[10 + z_offset, :, 2:34]))


def test_augmentation_never_flips_left_right() -> None:
    sample = make_sample("v-1", "train", (32, 32, 32), SPACING_MM, np.random.default_rng(3))
    hu = sample.hu.copy()
    hu[:, :, :4] = 1000  # a bright band on one side only
    raw = CorpusSample(sample.volume_id, hu, sample.mask, sample.meta, sample.report, sample.snippets).encode()
    config = TrainConfig(**{**TINY, "intensity_scale_jitter": 0.2, "intensity_shift_hu": 100.0})
    decode = Decoder(config, VolumeGrid(SPACING_MM, 4), augment=True)
    tokenizer = train_tokenizer(["no pleural effusion", "nodule in the right lung"], 64)
    collate = Collator(tokenizer, config.max_tokens)
    reference = torch.from_numpy(hu / 1000.0).float()
    for epoch in range(5):
        example = decode({**raw, "__epoch__": epoch})
        assert torch.equal(example.volume[0], torch.from_numpy(hu))  # voxels untouched, never flipped
        scale, shift = example.intensity
        assert abs(scale - 1.0) <= 0.2 and abs(shift) <= 100.0 and (scale, shift) != (1.0, 0.0)
        scaled = collate([example]).scaled_volumes()[0, 0]
        assert torch.allclose(scaled, reference * scale + shift / 1000.0, atol=1e-5)
        assert scaled[:, :, :4].mean() > scaled[:, :, -4:].mean()


def test_decoded_snippets_follow_the_crop() -> None:
    rng = np.random.default_rng(1)
    sample = next(s for s in (make_sample(f"v-{i}", "train", (40, 32, 32), SPACING_MM, rng) for i in range(20)) if s.snippets)
    decode = Decoder(TrainConfig(**TINY), VolumeGrid(SPACING_MM, 4), augment=False)
    example = decode(sample.encode())
    z = sample.snippets[0]["slice_index"]
    if 4 <= z < 36:
        assert example.snippet_z == (z - 4,)
        # the nodule (300 HU, nothing else above 200 HU) is widest in the snippet's slice of the crop
        bright = (example.volume[0] > 200).sum(dim=(1, 2))
        assert int(bright.argmax()) == z - 4
    else:
        assert example.snippet_z == ()


def test_rank_auc_matches_pairwise_counting() -> None:
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 5, 60).astype(float)  # many ties
    positive = rng.random(60) < 0.4
    pairs = [(p, n) for p, n in itertools.product(scores[positive], scores[~positive])]
    expected = np.mean([1.0 if p > n else 0.5 if p == n else 0.0 for p, n in pairs])
    assert rank_auc(scores, positive) == pytest.approx(expected)
    assert rank_auc(scores, np.zeros(60, bool)) is None


def test_recall_at_k() -> None:
    similarity = np.array([[0.9, 0.1, 0.0], [0.8, 0.5, 0.1], [0.1, 0.2, 0.3]])
    assert recall_at_k(similarity, np.eye(3, dtype=bool), (1, 2)) == ((1, pytest.approx(2 / 3)), (2, 1.0))


def test_recall_at_k_breaks_ties_at_random() -> None:
    """A collapsed model (every volume embedded alike) scores chance, k / n, not a perfect recall."""
    collapsed = np.tile(np.arange(5.0)[:, None], (1, 5))  # report i scores every volume i
    assert recall_at_k(collapsed, np.eye(5, dtype=bool), (1, 2, 5)) == ((1, pytest.approx(0.2)), (2, pytest.approx(0.4)), (5, 1.0))
    # report 0 and 1: tied with one other volume at the top (half a hit at k=1); report 2: third
    tied = np.array([[0.9, 0.9, 0.0], [0.1, 0.8, 0.8], [0.5, 0.5, 0.2]])
    assert recall_at_k(tied, np.eye(3, dtype=bool), (1, 2, 3)) == ((1, pytest.approx(1 / 3)), (2, pytest.approx(2 / 3)), (3, 1.0))
    assert recall_at_k(np.array([[np.nan, 0.0], [0.0, 1.0]]), np.eye(2, dtype=bool), (1,)) == ((1, 0.5),)


def test_siglip_loss_matches_its_pairwise_definition() -> None:
    torch.manual_seed(0)
    v = torch.nn.functional.normalize(torch.randn(4, 8), dim=1)
    t = torch.nn.functional.normalize(torch.randn(4, 8), dim=1)
    log_scale, bias = torch.tensor(2.0), torch.tensor(-1.5)
    expected = 0.0
    for i in range(4):
        for j in range(4):
            z = 1.0 if i == j else -1.0
            logit = float(v[i] @ t[j]) * np.exp(2.0) - 1.5
            expected += np.log1p(np.exp(-z * logit))
    assert siglip_loss(v, t, log_scale, bias, torch.eye(4, dtype=torch.bool)).item() == pytest.approx(expected / 4, rel=1e-5)


def test_similarities_stay_float32_under_bf16_autocast() -> None:
    """CUDA training and evaluation run under bf16 autocast, which recast the losses' ``.float()``
    embeddings to bf16 for the matmul: logits kept an 8-bit mantissa (label AUC and the localization
    argmax met ties). CPU autocast applies the same matmul rule, so it stands in for CUDA here."""
    torch.manual_seed(0)

    def unit(*shape: int) -> torch.Tensor:
        return torch.nn.functional.normalize(torch.randn(*shape), dim=-1)

    v, t, prompts, steps, snippets = unit(8, 32), unit(8, 32), unit(2, 18, 32), unit(8, 8, 32), unit(5, 32)
    log_scale, bias, label_bias = torch.tensor(2.3), torch.tensor(-2.0), torch.zeros(18)
    rows = torch.tensor([0, 1, 2, 3, 3])

    def similarities() -> tuple[torch.Tensor, ...]:
        return (
            siglip_loss(v, t, log_scale, bias, torch.eye(8, dtype=torch.bool)),
            label_logits(v, prompts[0], prompts[1], log_scale, label_bias),
            step_scores(steps, snippets, rows, log_scale),
        )

    expected = similarities()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = similarities()
    for want, have in zip(expected, got):
        assert have.dtype == torch.float32
        torch.testing.assert_close(have, want, rtol=1e-6, atol=1e-6)


def test_localization_loss_is_zero_without_snippets() -> None:
    scores = torch.zeros((0, 8), requires_grad=True)
    loss = localization_loss(scores, torch.zeros(0, dtype=torch.int64))
    loss.backward()
    assert loss.item() == 0.0


def test_shard_samples_use_the_outputs_format(corpus: Path) -> None:
    first = next(iter(wds.DataPipeline(wds.SimpleShardList([str(shard_paths(corpus, "test")[0])]), wds.tarfile_to_samples())))
    sample = decode_sample(first)
    assert sample.hu.dtype == np.int16 and sample.mask.shape == sample.hu.shape
    assert set(sample.report["labels"]) == set(CT_RATE_LABELS)
    assert sample.meta["spacing_zyx"] == [SPACING_MM] * 3


def test_train_package_imports_no_heavy_stage() -> None:
    code = (
        "import sys, ctcorpus.train; "
        "print(sorted(m for m in ('SimpleITK', 'pydicom', 'spacy', 'prefect', 'totalsegmentator') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


def test_bench_script_parses() -> None:
    subprocess.run(["bash", "-n", str(ROOT / "bench" / "train_gpu.sh")], check=True)


def test_empty_text_still_embeds() -> None:
    tokenizer = train_tokenizer(["no pleural effusion", "nodule in the right lung"], 64)
    ids, mask = encode_texts(tokenizer, ["", "no pleural effusion"], 8)
    assert mask.sum(dim=1).tolist() == [2, 5]  # [CLS] [SEP] around every text
    model = CtReportModel(ModelSpec(tokenizer.get_vocab_size(), 8, 4, 16, 1, 2, 4, len(CT_RATE_LABELS), -2.0)).eval()
    with torch.no_grad():
        assert torch.isfinite(model.encode_text(ids, mask)).all()


def test_damaged_volume_names_shard_and_sample(tmp_path: Path) -> None:
    sample = make_sample("v-7", "train", (32, 32, 32), SPACING_MM, np.random.default_rng(0)).encode()
    sample["hu.npy.zst"] = sample["hu.npy.zst"][:100]  # truncated stream
    shard = tmp_path / "shard-000000.tar"
    with wds.TarWriter(str(shard)) as sink:
        sink.write(sample)
    raw = next(iter(wds.DataPipeline(wds.SimpleShardList([str(shard)]), wds.tarfile_to_samples())))
    with pytest.raises(TrainError) as info:
        Decoder(TrainConfig(**TINY), VolumeGrid(SPACING_MM, 4), augment=False)(raw)
    assert "v-7" in str(info.value) and str(shard) in str(info.value)


def test_too_small_split_is_a_clear_error(corpus: Path, tmp_path: Path) -> None:
    config = TrainConfig(**{**TINY, "batch_size": 65, "steps": 2})  # 64 training volumes
    with pytest.raises(TrainError, match="no full batch"):
        train_model(corpus, config, tmp_path / "run", device="cpu")


def test_a_failed_rerun_keeps_the_checkpoint_and_its_tokenizer_together(corpus: Path, tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A rerun into a run folder (the CLI's default is always train-run) wrote its new tokenizer
    before training: failed or killed, it left the old model.pt beside a tokenizer of other token
    ids, which evaluate_model then used without a word."""
    run = tmp_path / "run"
    train_model(corpus, TrainConfig(**{**TINY, "steps": 1}), run, device="cpu")
    tokenizer = (run / "tokenizer.json").read_bytes()
    with pytest.raises(TrainError, match="no full batch"):
        train_model(corpus, TrainConfig(**{**TINY, "vocab_size": 64, "batch_size": 65}), run, device="cpu")
    assert (run / "tokenizer.json").read_bytes() == tokenizer
    # a rerun whose evaluation fails leaves its new model without the last run's metrics beside it
    def failing(*args: object) -> None:
        raise RuntimeError("eval failed")

    monkeypatch.setattr(loop, "evaluate", failing)
    with pytest.raises(RuntimeError, match="eval failed"):
        train_model(corpus, TrainConfig(**{**TINY, "steps": 1, "seed": 1}), run, device="cpu")
    assert (run / "model.pt").is_file() and not (run / "metrics.json").exists()


def test_a_smaller_synthetic_corpus_replaces_the_shards_of_a_larger_one(tmp_path: Path) -> None:
    """bench/train_gpu.sh --workdir reuses a folder: a second, smaller corpus left the first one's
    later shards in place, and the loader streamed them with the new ones."""
    write_synthetic_corpus(tmp_path, {"train": 6}, (16, 16, 16), per_shard=2)
    written = write_synthetic_corpus(tmp_path, {"train": 2}, (16, 16, 16), per_shard=2)
    assert shard_paths(tmp_path, "train") == written["train"] and len(written["train"]) == 1


def test_report_text_keeps_every_findings_section() -> None:
    """report.json's ``sections`` maps a name to one text, the last: a report with a findings
    section per region trained on the abdomen's alone, while its labels came from both."""
    text = "FINDINGS: Nodule in the right upper lobe.\nIMPRESSION: Nodule.\nFINDINGS: Liver cyst.\nIMPRESSION: Cyst."
    spans = [("findings", "Nodule in the right upper lobe."), ("impression", "Nodule."), ("findings", "Liver cyst."),
             ("impression", "Cyst.")]
    sentences = [{"index": i, "section": name, "text": part, "start": text.index(part), "end": text.index(part) + len(part)}
                 for i, (name, part) in enumerate(spans)]
    report = {"text": text, "sections": {"findings": "Liver cyst.\n", "impression": "Cyst."}, "sentences": sentences}
    assert report_text(report) == "Nodule in the right upper lobe. Nodule. Liver cyst. Cyst."
    assert report_text({"text": "No effusion.", "sections": {}, "sentences": []}) == "No effusion."


def test_synthetic_training_text_is_findings_then_impression() -> None:
    sample = make_sample("v-1", "train", (16, 16, 16), SPACING_MM, np.random.default_rng(0))
    sections = sample.report["sections"]
    assert report_text(sample.report) == f"{sections['findings']} {sections['impression']}"
    assert all(sample.report["text"][s["start"]:s["end"]] == s["text"] for s in sample.report["sentences"])


def test_training_reshuffles_the_shards_every_epoch(tmp_path: Path) -> None:
    """SimpleShardList(seed=...) shuffled the shards with one fixed seed: every epoch read them in
    the same order (and each worker the same ones), so only the sample buffer mixed anything."""
    write_synthetic_corpus(tmp_path, {"train": 16}, (4, 16, 16), spacing_mm=SPACING_MM, per_shard=2)
    config = TrainConfig(**{**TINY, "batch_size": 2, "shuffle_buffer": 1})  # 1: samples in shard order
    loader = make_loader(tmp_path, "train", config, VolumeGrid(SPACING_MM, 4), train_tokenizer(["no nodule"], 64),
                         train=True)
    ids = [vid for batch in itertools.islice(loader, 24) for vid in batch.volume_ids]  # three epochs of 8 batches
    epochs = [ids[i : i + 16] for i in range(0, 48, 16)]
    assert all(sorted(epoch) == [f"train-{i:05d}" for i in range(16)] for epoch in epochs)
    assert len({tuple(epoch) for epoch in epochs}) == 3


def test_training_steps_read_nothing_back_from_the_device(corpus: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Every step read its loss to the host (``float``) and tokenized the label prompts and copied
    them to the device anew (a blocking copy): on CUDA each waits for the GPU, so the host could not
    queue the next step while the GPU ran this one. Only logging steps may read a value back."""
    from torch.overrides import TorchFunctionMode

    from ctcorpus.train import evaluate as evaluate_module

    produced: dict[int, int] = {}  # storage address of a step's loss tensors (kept alive: unique) -> step
    produced_steps: list[loop.StepLoss] = []
    read_steps: set[int] = set()
    prompt_tokenizations = 0

    def spied_loss(*args: object) -> loop.StepLoss:
        loss = loop_step_loss(*args)
        for tensor in (loss.total, loss.siglip, loss.label, loss.localization):
            produced[tensor.untyped_storage().data_ptr()] = len(produced_steps)
        produced_steps.append(loss)
        return loss

    def spied_encode(*args: object) -> tuple[torch.Tensor, torch.Tensor]:
        nonlocal prompt_tokenizations
        prompt_tokenizations += 1
        return evaluate_encode(*args)

    class Reads(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            if func in (torch.Tensor.__float__, torch.Tensor.item, torch.Tensor.tolist):
                step = produced.get(args[0].untyped_storage().data_ptr())
                if step is not None:
                    read_steps.add(step)
            return func(*args, **(kwargs or {}))

    loop_step_loss, evaluate_encode = loop.step_loss, evaluate_module.encode_texts
    monkeypatch.setattr(loop, "step_loss", spied_loss)
    monkeypatch.setattr(evaluate_module, "encode_texts", spied_encode)
    steps = 20  # logs steps 0, 2, ..., 18 and the last
    with Reads():
        result = train_model(corpus, TrainConfig(**{**TINY, "batch_size": 4, "steps": steps}), tmp_path, device="cpu")
    assert len(result.losses) == steps and np.isfinite(result.losses).all()
    assert read_steps and read_steps <= {*range(0, steps, 2), steps - 1}, sorted(read_steps)
    assert prompt_tokenizations == 2  # once for training, once for evaluation


def test_a_non_finite_loss_names_its_step(tmp_path: Path) -> None:
    """Losses are read back in groups (at logging steps), yet the error names the first bad step."""
    losses: list[float] = [2.0]
    with pytest.raises(TrainError, match="loss became nan at step 2"):
        loop._read_losses([torch.tensor(1.5), torch.tensor(float("nan")), torch.tensor(1.0)], losses, tmp_path)



def test_checkpoint_and_metrics_name_the_dataset_version_they_came_from(tmp_path: Path) -> None:
    """The checkpoint recorded the config and the pipeline version, not the corpus: two versions
    built from one export (or a rebuilt one) gave checkpoints nothing told apart."""
    root = tmp_path / "v7"
    write_synthetic_corpus(root, {"train": 8, "test": 4}, (16, 32, 32), spacing_mm=SPACING_MM)
    (root / "manifest.json").write_text(json.dumps({"dataset_version": "v7", "files": []}))
    expected = {"dataset_version": "v7", "manifest_sha256": hashlib.sha256((root / "manifest.json").read_bytes()).hexdigest()}
    result = train_model(root, TrainConfig(**{**TINY, "batch_size": 4, "steps": 1}), tmp_path / "run", device="cpu")
    assert torch.load(result.checkpoint, weights_only=True)["dataset"] == expected
    assert json.loads(result.metrics_path.read_text())["dataset"] == expected
    evaluate_model(root, result.out_dir, TrainConfig(**TINY), split="test", device="cpu")
    written = json.loads((result.out_dir / "metrics-test.json").read_text())
    assert written["dataset"] == written["trained_on"] == expected


def test_a_built_version_without_reports_is_not_sent_to_build_again(tmp_path: Path) -> None:
    """Shards hold the volumes that have a report: a version built from an export without reports
    has none, and the error told the user to build the version they had just built."""
    (tmp_path / "manifest.json").write_text(json.dumps({"dataset_version": "v1", "files": []}))
    with pytest.raises(TrainError) as info:
        shard_paths(tmp_path, "train")
    assert "no volume with a linked report" in str(info.value) and "ctcorpus build" not in str(info.value)


def test_training_a_version_a_killed_build_moved_aside_says_where_it_is(tmp_path: Path) -> None:
    (tmp_path / f".tmp-old-{'0' * 32}-v1" / "shards" / "train").mkdir(parents=True)  # killed between the renames
    with pytest.raises(TrainError, match="moving this version aside to .*ctcorpus build --out"):
        shard_paths(tmp_path / "v1", "train")


RESUMABLE = {**TINY, "input_shape_zyx": (16, 32, 32), "batch_size": 4, "steps": 8, "checkpoint_every": 4}


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """16 training volumes: 4 batches of 4 an epoch, so a checkpoint every 4 steps falls on an epoch's end."""
    root = tmp_path_factory.mktemp("small")
    write_synthetic_corpus(root, {"train": 16, "test": 8}, (16, 32, 32), spacing_mm=SPACING_MM, per_shard=8, seed=0)
    return root


class Killed(Exception):
    """Stands for the signal that kills a training run."""


def _killed_at_step(monkeypatch: pytest.MonkeyPatch, step: int) -> None:
    """Make training raise in the step after ``step`` steps, as a killed run stops."""
    calls = itertools.count()
    real = loop.step_loss

    def dying(*args: object) -> loop.StepLoss:
        if next(calls) == step:
            raise Killed
        return real(*args)

    monkeypatch.setattr(loop, "step_loss", dying)


@pytest.mark.parametrize(("every", "killed_at", "streams"), [(4, 6, [[0, 4]]), (3, 5, [[0, 3]])])
def test_a_resumed_run_equals_an_uninterrupted_one(small_corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   every: int, killed_at: int, streams: list[list[int]]) -> None:
    """model.pt held the weights only and was written at the end: a run killed after hours left
    nothing, and nothing could continue a run. A checkpoint inside an epoch (step 3 of 4 batches an
    epoch) resumed at the next epoch: the rest of the interrupted one was never trained on."""
    whole = train_model(small_corpus, TrainConfig(**RESUMABLE), tmp_path / "whole", device="cpu")
    with monkeypatch.context() as patch:
        _killed_at_step(patch, killed_at)
        with pytest.raises(Killed):
            train_model(small_corpus, TrainConfig(**{**RESUMABLE, "checkpoint_every": every}), tmp_path / "killed",
                        device="cpu")
    saved = torch.load(tmp_path / "killed" / "model.pt", weights_only=True)
    assert saved["step"] == every and saved["streams"] == streams and saved["losses"] == list(whole.losses[:every])
    # how often it saves may change on resuming; the loader goes on where the checkpoint's batch was
    resumed = train_model(small_corpus, TrainConfig(**{**RESUMABLE, "checkpoint_every": 0}), tmp_path / "killed",
                          device="cpu", resume=True)
    assert resumed.losses == whole.losses
    weights = torch.load(whole.checkpoint, weights_only=True)["state_dict"]
    for name, tensor in torch.load(resumed.checkpoint, weights_only=True)["state_dict"].items():
        assert torch.equal(tensor, weights[name]), name
    assert resumed.metrics.label_auc == whole.metrics.label_auc
    assert json.loads(resumed.metrics_path.read_text())["train"]["resumed_at_step"] == every


def test_resume_refuses_another_config_dataset_or_tokenizer(tmp_path: Path) -> None:
    root, run = tmp_path / "corpus", tmp_path / "run"
    write_synthetic_corpus(root, {"train": 8, "test": 4}, (16, 32, 32), spacing_mm=SPACING_MM, seed=0)
    config = TrainConfig(**{**RESUMABLE, "steps": 2})
    checkpoint = str(run / "model.pt")
    with pytest.raises(TrainError, match="no checkpoint to resume from") as info:
        train_model(root, config, run, device="cpu", resume=True)
    assert checkpoint in str(info.value)
    train_model(root, config, run, device="cpu")

    def refused(config: TrainConfig) -> str:
        with pytest.raises(TrainError) as info:
            train_model(root, config, run, device="cpu", resume=True)
        assert str(info.value).startswith(f"{checkpoint}: cannot resume: ")
        return str(info.value)

    assert "has 2 steps, more than train.steps=1" in refused(TrainConfig(**{**RESUMABLE, "steps": 1}))
    longer = {**RESUMABLE, "steps": 3}
    message = refused(TrainConfig(**{**longer, "learning_rate": 3e-3, "seed": 1}))
    assert "another config (learning_rate: 0.0015 there, 0.003 now; seed: 0 there, 1 now)" in message
    write_synthetic_corpus(root, {"train": 8, "test": 4}, (16, 32, 32), spacing_mm=SPACING_MM, seed=1)  # other reports
    assert "tokenizer differs" in refused(TrainConfig(**longer))
    write_synthetic_corpus(root, {"train": 8, "test": 4}, (16, 32, 32), spacing_mm=SPACING_MM, seed=0)
    (root / "manifest.json").write_text(json.dumps({"dataset_version": "v2", "files": []}))
    message = refused(TrainConfig(**longer))
    assert "another dataset" in message and "'v2'" in message


def test_a_kill_while_writing_a_checkpoint_keeps_the_last_one_and_its_tokenizer(
        small_corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A checkpoint written in place is half a file when the run is killed while writing it; and a
    run into the folder of a run with another vocabulary must leave model.pt beside its own tokenizer."""
    run = tmp_path / "run"
    train_model(small_corpus, TrainConfig(**{**RESUMABLE, "steps": 1}), run, device="cpu")
    real_save, saves = torch.save, itertools.count()

    def dying_save(obj: object, target: object, *args: object, **kwargs: object) -> None:
        if next(saves) < 1:
            return real_save(obj, target, *args, **kwargs)
        buffer = io.BytesIO()
        real_save(obj, buffer)
        half = buffer.getvalue()[: buffer.tell() // 2]
        if isinstance(target, (str, os.PathLike)):
            Path(target).write_bytes(half)
        else:
            target.write(half)
        raise Killed

    monkeypatch.setattr(torch, "save", dying_save)
    config = TrainConfig(**{**RESUMABLE, "vocab_size": 64, "checkpoint_every": 2})
    with pytest.raises(Killed):
        train_model(small_corpus, config, run, device="cpu")
    monkeypatch.undo()
    saved = torch.load(run / "model.pt", weights_only=True)
    assert saved["step"] == 2 and saved["config"]["vocab_size"] == 64
    assert (run / "tokenizer.json").read_text() == saved["tokenizer"]
    assert not (run / "metrics.json").exists()
    resumed = train_model(small_corpus, config, run, device="cpu", resume=True)
    assert len(resumed.losses) == 8 and np.isfinite(resumed.losses).all()


def test_a_loader_started_at_an_epoch_gives_that_epoch_of_a_whole_run(tmp_path: Path) -> None:
    """A resumed run's loader starts each worker stream where the checkpoint left it: each batch, made
    in a worker, says its epoch and stream, and the shard and sample order of epoch n does not depend
    on the start."""
    write_synthetic_corpus(tmp_path, {"train": 16}, (4, 16, 16), spacing_mm=SPACING_MM, per_shard=2)
    config = TrainConfig(**{**TINY, "batch_size": 2, "num_workers": 2})  # 4 batches per worker and epoch
    tokenizer = train_tokenizer(["no nodule"], 64)

    def batches(n: int, start: LoaderStart | None = None) -> list[tuple[int, tuple[str, ...]]]:
        loader = make_loader(tmp_path, "train", config, VolumeGrid(SPACING_MM, 4), tokenizer, train=True,
                             start=start or LoaderStart())
        return [(batch.epoch, batch.volume_ids) for batch in itertools.islice(loader, n)]

    whole = batches(24)
    assert [epoch for epoch, _ in whole] == [0] * 8 + [1] * 8 + [2] * 8
    assert batches(8, LoaderStart((StreamPosition(2),) * 2)) == whole[16:]
    # whole[k] is stream k % 2's; epoch 1 is whole[8:16]: stream 0's batches 8, 10, 12, 14, stream 1's 9, 11, 13, 15
    assert batches(10, LoaderStart((StreamPosition(1, 3), StreamPosition(1, 2)), first_stream=1)) == whole[13:23]
    # a stream whose batches of its epoch were all trained on starts at the next
    assert batches(9, LoaderStart((StreamPosition(1, 4), StreamPosition(1, 3)), first_stream=1)) == whole[15:24]


@pytest.fixture
def deterministic() -> object:
    """Deterministic kernels on one thread, so two runs that see the same batches give the same bits."""
    threads, enabled = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    yield
    torch.use_deterministic_algorithms(enabled)
    torch.set_num_threads(threads)


def _draws(loader: torch.utils.data.DataLoader, n: int) -> dict[tuple[int, str], tuple[list[float], torch.Tensor]]:
    """(epoch, volume id) -> (jitter, cropped volume) of the first ``n`` batches."""
    return {
        (batch.epoch, vid): (batch.intensity[row].tolist(), batch.volumes[row])
        for batch in itertools.islice(loader, n)
        for row, vid in enumerate(batch.volume_ids)
    }


def test_a_samples_crop_and_jitter_do_not_depend_on_the_workers(tmp_path: Path) -> None:
    """Each worker drew crops and jitter from its own RNG, seeded when the loader started: 0 and 2
    workers, or a loader restarted at a later epoch, gave one sample other draws. The order of the
    samples differs with the number of workers (each reads its own shards); a sample's draws do not."""
    write_synthetic_corpus(tmp_path, {"train": 16}, (24, 20, 20), spacing_mm=SPACING_MM, per_shard=2)
    config = TrainConfig(**{**TINY, "input_shape_zyx": (16, 16, 16), "batch_size": 2, "num_workers": 0})
    tokenizer = train_tokenizer(["no nodule"], 64)

    def draws(workers: int, first_epoch: int = 0) -> dict[tuple[int, str], tuple[list[float], torch.Tensor]]:
        loader = make_loader(tmp_path, "train", config.model_copy(update={"num_workers": workers}),
                             VolumeGrid(SPACING_MM, 4), tokenizer, train=True,
                             start=LoaderStart((StreamPosition(first_epoch),) * max(1, workers)))
        return _draws(loader, 16 - 8 * first_epoch)  # 8 batches an epoch, up to the end of epoch 1

    alone, two = draws(0), draws(2)
    assert sorted(alone) == sorted(two) == [(e, f"train-{i:05d}") for e in (0, 1) for i in range(16)]
    later = draws(2, first_epoch=1)
    for key, (jitter, volume) in alone.items():
        for other in (two, later) if key[0] == 1 else (two,):
            assert other[key][0] == jitter and torch.equal(other[key][1], volume), key
    # the draws still vary from sample to sample and from epoch to epoch
    assert len({tuple(jitter) for jitter, _ in alone.values()}) == len(alone)
    crops = {key: volume for key, (_, volume) in alone.items()}
    assert any(not torch.equal(crops[0, vid], crops[1, vid]) for _, vid in alone if (1, vid) in alone)


@pytest.mark.parametrize(("every", "killed_at", "streams"), [(4, 6, [[0, 2], [0, 2]]), (3, 5, [[0, 2], [0, 1]])])
def test_a_resumed_run_with_workers_equals_an_uninterrupted_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                deterministic: object, every: int, killed_at: int,
                                                                streams: list[list[int]]) -> None:
    """With workers a resumed run's crops and jitter were other than the uninterrupted run's (the
    workers' RNGs started afresh at the resumed epoch), so its losses and weights were too; and a
    checkpoint inside an epoch of a worker (step 3: worker 1 had made one of its two batches) skipped
    the rest of it. There the resumed loader's worker 0 plays stream 1 (step 3 is its batch), and
    stream 0, whose epoch was trained on whole, starts at the next one."""
    root = tmp_path / "corpus"  # volumes larger than the crop on every axis: crops are drawn
    write_synthetic_corpus(root, {"train": 16, "test": 8}, (20, 40, 40), spacing_mm=SPACING_MM, per_shard=8, seed=0)
    config = TrainConfig(**{**RESUMABLE, "num_workers": 2})  # a shard per worker: 2 batches each an epoch
    whole = train_model(root, config, tmp_path / "whole", device="cpu")
    with monkeypatch.context() as patch:
        _killed_at_step(patch, killed_at)
        with pytest.raises(Killed):
            train_model(root, config.model_copy(update={"checkpoint_every": every}), tmp_path / "killed", device="cpu")
    saved = torch.load(tmp_path / "killed" / "model.pt", weights_only=True)
    assert saved["step"] == every and saved["streams"] == streams
    resumed = train_model(root, config, tmp_path / "killed", device="cpu", resume=True)
    assert resumed.losses == whole.losses
    weights = torch.load(whole.checkpoint, weights_only=True)["state_dict"]
    for name, tensor in torch.load(resumed.checkpoint, weights_only=True)["state_dict"].items():
        assert torch.equal(tensor, weights[name]), name


def test_a_run_with_idle_workers_resumes_as_the_uninterrupted_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                  deterministic: object) -> None:
    """Three workers, two shards: worker 2 stays idle and the DataLoader takes turns between streams 0
    and 1, so step 3 is stream 1's. The resumed loader started at stream 3 % 3 = 0, and trained the
    streams' batches in swapped order from then on: other losses and weights than the run not killed."""
    root = tmp_path / "corpus"
    write_synthetic_corpus(root, {"train": 16, "test": 8}, (20, 40, 40), spacing_mm=SPACING_MM, per_shard=8, seed=0)
    config = TrainConfig(**{**RESUMABLE, "num_workers": 3})
    whole = train_model(root, config, tmp_path / "whole", device="cpu")
    with monkeypatch.context() as patch:
        _killed_at_step(patch, 5)
        with pytest.raises(Killed):
            train_model(root, config.model_copy(update={"checkpoint_every": 3}), tmp_path / "killed", device="cpu")
    assert torch.load(tmp_path / "killed" / "model.pt", weights_only=True)["streams"] == [[0, 2], [0, 1], [0, 0]]
    resumed = train_model(root, config, tmp_path / "killed", device="cpu", resume=True)
    assert resumed.losses == whole.losses
    weights = torch.load(whole.checkpoint, weights_only=True)["state_dict"]
    for name, tensor in torch.load(resumed.checkpoint, weights_only=True)["state_dict"].items():
        assert torch.equal(tensor, weights[name]), name


def test_a_run_removes_the_temporary_file_of_a_checkpoint_write_killed_before(
        small_corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """A kill between writing model.pt's temporary file and renaming it left the file in --out forever."""
    run = tmp_path / "run"
    config = TrainConfig(**{**RESUMABLE, "checkpoint_every": 2, "steps": 4})
    real_replace, renames = os.replace, itertools.count()

    def dying_replace(src: object, dst: object) -> None:
        if Path(dst).name == "model.pt" and next(renames) == 1:  # the second checkpoint
            raise Killed
        real_replace(src, dst)

    with monkeypatch.context() as patch:
        patch.setattr(os, "replace", dying_replace)
        with pytest.raises(Killed):
            train_model(small_corpus, config, run, device="cpu")
    left = sorted(p.name for p in run.glob(".tmp-*"))
    assert len(left) == 1 and left[0].endswith("-model.pt")
    with caplog.at_level(logging.WARNING, logger="ctcorpus.train.loop"):
        resumed = train_model(small_corpus, config, run, device="cpu", resume=True)
    assert resumed.losses and not list(run.glob(".tmp-*"))
    assert left[0] in caplog.text
    # a fresh run too; only what ctcorpus writes goes, other names stay
    fabricated = [run / f".tmp-{'a' * 32}-model.pt", run / f".tmp-{'b' * 32}-tokenizer.json",
                  run / f".tmp-{'f' * 32}-metrics.json", run / f".tmp-{'0' * 32}-metrics-test.json"]
    others = [run / f".tmp-{'c' * 32}-notes.txt", run / ".tmp-1234-model.pt", run / "model.pt.tmp-1",
              run / f".tmp-{'d' * 32}-model.pt.bak", run / f"tmp-{'e' * 32}-model.pt"]
    for path in fabricated + others:
        path.write_bytes(b"half")
    train_model(small_corpus, TrainConfig(**{**RESUMABLE, "steps": 1}), run, device="cpu")
    assert not any(p.exists() for p in fabricated) and all(p.exists() for p in others)


def test_a_second_run_into_a_folder_in_use_fails_at_once(small_corpus: Path, tmp_path: Path) -> None:
    """Two runs into one --out replaced each other's model.pt; and a starting run removing leftover
    temporary files must never take a live run's for one."""
    run = tmp_path / "run"
    run.mkdir()
    with exclusive_lock(run / ".train.lock", run), pytest.raises(OutputError, match="another process is writing it"):
        train_model(small_corpus, TrainConfig(**{**RESUMABLE, "steps": 1}), run, device="cpu")
    assert not (run / "model.pt").exists()


def test_a_new_checkpoint_removes_the_evaluations_of_the_last_one(small_corpus: Path, tmp_path: Path) -> None:
    """metrics-<split>.json of evaluate_model stayed beside a resumed (or rerun) model.pt that it no
    longer described."""
    run = tmp_path / "run"
    train_model(small_corpus, TrainConfig(**{**RESUMABLE, "steps": 2}), run, device="cpu")
    evaluate_model(small_corpus, run, TrainConfig(**RESUMABLE), split="test", device="cpu")
    assert (run / "metrics-test.json").is_file()
    train_model(small_corpus, TrainConfig(**{**RESUMABLE, "steps": 3}), run, device="cpu", resume=True)
    assert not (run / "metrics-test.json").exists() and (run / "metrics.json").is_file()


def test_resuming_a_checkpoint_of_the_former_draws_warns(small_corpus: Path, tmp_path: Path,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    """A checkpoint written while the workers' RNGs drew the crops continues with other draws: the
    run goes on, but nothing says it is not the run it would have been."""
    run = tmp_path / "run"
    train_model(small_corpus, TrainConfig(**{**RESUMABLE, "steps": 2}), run, device="cpu")
    state = torch.load(run / "model.pt", weights_only=True)
    assert state.pop("resume_format") == loop.RESUME_FORMAT
    torch.save(state, run / "model.pt")
    with caplog.at_level(logging.WARNING, logger="ctcorpus.train.loop"):
        train_model(small_corpus, TrainConfig(**{**RESUMABLE, "steps": 3}), run, device="cpu", resume=True)
    assert "equals no uninterrupted run" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="ctcorpus.train.loop"):
        train_model(small_corpus, TrainConfig(**{**RESUMABLE, "steps": 4}), run, device="cpu", resume=True)
    assert "equals no uninterrupted run" not in caplog.text


def test_resuming_a_run_killed_in_its_final_evaluation_evaluates_it(small_corpus: Path, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The final checkpoint comes before the evaluation: a run killed while evaluating left no
    metrics, and --resume refused its checkpoint (it had all the steps), so only a new run gave them."""
    run, config = tmp_path / "run", TrainConfig(**{**RESUMABLE, "steps": 2})

    def killed(*args: object) -> None:
        raise Killed

    with monkeypatch.context() as patch:
        patch.setattr(loop, "evaluate", killed)
        with pytest.raises(Killed):
            train_model(small_corpus, config, run, device="cpu")
    assert not (run / "metrics.json").exists()
    checkpoint = (run / "model.pt").read_bytes()
    resumed = train_model(small_corpus, config, run, device="cpu", resume=True)
    written = json.loads(resumed.metrics_path.read_text())
    assert written["train"]["resumed_at_step"] == 2 and len(written["train"]["loss_history"]) == 2
    assert written["train"]["volumes_per_s"] is None and written["n_volumes"] == 8
    assert (run / "model.pt").read_bytes() == checkpoint  # evaluated as it was, not trained on


def test_resuming_a_checkpoint_without_streams_goes_on_at_the_next_epoch_and_says_so(
        small_corpus: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A checkpoint of an older ctcorpus holds only the latest epoch a batch came from: the run goes on
    at the next epoch, and the warning says the rest of that one is skipped."""
    run = tmp_path / "run"
    train_model(small_corpus, TrainConfig(**{**RESUMABLE, "steps": 2}), run, device="cpu")
    state = torch.load(run / "model.pt", weights_only=True)
    del state["streams"]
    torch.save({**state, "resume_format": 2, "epoch": 0}, run / "model.pt")
    with caplog.at_level(logging.WARNING, logger="ctcorpus.train.loop"):
        train_model(small_corpus, TrainConfig(**{**RESUMABLE, "steps": 3}), run, device="cpu", resume=True)
    assert "skipping the rest of that one" in caplog.text and "equals no uninterrupted run" not in caplog.text
    assert torch.load(run / "model.pt", weights_only=True)["streams"] == [[1, 1]]


def test_evaluate_model_pools_z_as_the_checkpoint_was_trained(small_corpus: Path, tmp_path: Path) -> None:
    """The axial step came from the evaluating config: a checkpoint trained with 6 mm steps (2 voxels)
    was refused under a default 12 mm config, its split said to 'need' 4 voxels."""
    trained = train_model(small_corpus, TrainConfig(**{**RESUMABLE, "steps": 2, "axial_step_mm": 6.0}), tmp_path,
                          device="cpu")
    again = evaluate_model(small_corpus, tmp_path, TrainConfig(**RESUMABLE), split="test", device="cpu")
    assert again.localization_mae_mm == pytest.approx(trained.metrics.localization_mae_mm)
    assert again.recall_at == trained.metrics.recall_at


@pytest.mark.parametrize("split", ["train", "test"])
def test_a_truncated_shard_is_a_train_error_naming_it(tmp_path: Path, split: str) -> None:
    """A shard cut short (a copy interrupted, a full disk) raised tarfile's bare ReadError from the
    loader: a traceback instead of the command's message, and for the held-out split after training."""
    write_synthetic_corpus(tmp_path, {"train": 16, "test": 16}, (16, 32, 32), spacing_mm=SPACING_MM, per_shard=8)
    shard = tmp_path / "shards" / split / "shard-000001.tar"
    shard.write_bytes(shard.read_bytes()[:20_000])
    config = TrainConfig(**{**RESUMABLE, "batch_size": 2})
    grid = probe_grid(tmp_path, split, config)
    tokenizer = train_tokenizer(["no pleural effusion"], 64)
    loader = make_loader(tmp_path, split, config, grid, tokenizer, train=split == "train")
    with pytest.raises(TrainError) as info:
        list(itertools.islice(loader, 20))
    assert str(shard) in str(info.value) and "damaged" in str(info.value)


def test_a_run_resumed_after_the_last_full_batch_of_an_epoch_goes_on(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """18 volumes make 4 batches of 4 an epoch and 2 left over: a checkpoint after the 4th resumed its
    stream at the 2 left over, which make no batch, so the stream ended ('yields no full batch')."""
    write_synthetic_corpus(tmp_path, {"train": 18, "test": 8}, (16, 32, 32), spacing_mm=SPACING_MM, per_shard=9)
    whole = train_model(tmp_path, TrainConfig(**RESUMABLE), tmp_path / "whole", device="cpu")
    with monkeypatch.context() as patch:
        _killed_at_step(patch, 6)
        with pytest.raises(Killed):
            train_model(tmp_path, TrainConfig(**RESUMABLE), tmp_path / "killed", device="cpu")
    assert torch.load(tmp_path / "killed" / "model.pt", weights_only=True)["streams"] == [[0, 4]]
    resumed = train_model(tmp_path, TrainConfig(**RESUMABLE), tmp_path / "killed", device="cpu", resume=True)
    assert resumed.losses == whole.losses


def test_a_worker_whose_shards_of_an_epoch_make_no_batch_goes_on_at_the_next(tmp_path: Path) -> None:
    """Shards of 16, 16 and 3 volumes, two workers: an epoch that dealt worker 1 the 3 alone gave it no
    batch, which ended its stream for good; from then on every epoch's shards of worker 1 went unread."""
    write_synthetic_corpus(tmp_path, {"train": 35}, (16, 32, 32), spacing_mm=SPACING_MM, per_shard=16)
    config = TrainConfig(**{**RESUMABLE, "num_workers": 2})
    grid = probe_grid(tmp_path, "train", config)
    loader = make_loader(tmp_path, "train", config, grid, train_tokenizer(["no effusion"], 64), train=True)
    batches = list(itertools.islice(loader, 40))
    one = [b.epoch for b in batches if b.stream == 1]
    assert [b.stream for b in batches] == [0, 1] * 20
    assert sorted(set(one)) != list(range(len(set(one))))  # it skipped an epoch of the 3 alone


def test_a_first_sample_without_its_spacing_names_shard_and_sample(tmp_path: Path) -> None:
    """probe_grid read meta.json's spacing bare: a KeyError traceback, where a later sample's named its shard."""
    sample = make_sample("v-3", "train", (32, 32, 32), SPACING_MM, np.random.default_rng(0)).encode()
    sample["meta.json"] = b'{"volume_id": "v-3"}'
    folder = tmp_path / "shards" / "train"
    folder.mkdir(parents=True)
    with wds.TarWriter(str(folder / "shard-000000.tar")) as sink:
        sink.write(sample)
    with pytest.raises(TrainError) as info:
        probe_grid(tmp_path, "train", TrainConfig(**TINY))
    assert "v-3" in str(info.value) and str(folder / "shard-000000.tar") in str(info.value)


def test_a_truncated_held_out_shard_stops_the_run_before_training(small_corpus: Path, tmp_path: Path) -> None:
    """The held-out shards were first read after the last step: a run of hours ended in the error."""
    root = tmp_path / "corpus"
    shutil.copytree(small_corpus, root)
    shard = root / "shards" / "test" / "shard-000000.tar"
    shard.write_bytes(shard.read_bytes()[:20_000])
    with pytest.raises(TrainError, match="damaged") as info:
        train_model(root, TrainConfig(**RESUMABLE), tmp_path / "run", device="cpu")
    assert str(shard) in str(info.value) and not (tmp_path / "run" / "model.pt").exists()


def _sibling_split(root: Path, split: str, studies: int, volumes: int, spacing_mm: float = SPACING_MM) -> None:
    """``studies`` reports with ``volumes`` volumes each (reconstructions kept by ``ingest.volumes_per_study:
    all``): one report.json per study, a volume of its own (other noise) per sample."""
    folder = root / "shards" / split
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    with wds.TarWriter(str(folder / "shard-000000.tar")) as sink:
        for study in range(studies):
            base = make_sample(f"{split}-{study}", split, (16, 32, 32), spacing_mm, rng)
            for volume in range(volumes):
                hu = (base.hu + rng.integers(-30, 30, base.hu.shape)).astype(np.int16)
                sink.write(dataclasses.replace(base, volume_id=f"{split}-{study}-{volume}", hu=hu).encode())


def test_volumes_of_one_report_are_positives_of_the_contrast(tmp_path: Path) -> None:
    """Every off-diagonal pair was a negative: a study's volumes in one batch were pushed away from their
    own report (ingest.volumes_per_study: all keeps them all, with one report)."""
    _sibling_split(tmp_path, "train", studies=3, volumes=2)
    config = TrainConfig(**{**RESUMABLE, "eval_batch_size": 6})
    grid = probe_grid(tmp_path, "train", config)
    tokenizer = train_tokenizer(report_texts(shard_paths(tmp_path, "train")), config.vocab_size)
    batch = next(iter(make_loader(tmp_path, "train", config, grid, tokenizer, train=False)))
    torch.manual_seed(0)
    model = CtReportModel(ModelSpec(tokenizer.get_vocab_size(), 32, 8, 32, 1, 2, grid.z_stride, 18, -1.0))
    prompts = encode_prompts(model, prompt_tokens(tokenizer, config.max_tokens, torch.device("cpu")))
    got = loop.step_loss(model, batch, prompts, config).siglip
    volume_emb, _ = model.encode_volume(batch.scaled_volumes())
    logits = volume_emb @ model.encode_text(batch.report_ids, batch.report_mask).T * model.siglip_log_scale.exp()
    studies = [v.rsplit("-", 1)[0] for v in batch.volume_ids]
    signs = torch.tensor([[1.0 if a == b else -1.0 for b in studies] for a in studies])
    assert (signs > 0).sum() == 12  # 3 studies of 2 volumes: 6 own reports, 6 of a sibling
    expected = -torch.nn.functional.logsigmoid(signs * (logits + model.siglip_bias)).sum() / len(signs)
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)


def test_siglip_loss_without_duplicates_is_the_diagonal_one() -> None:
    """Without two volumes of one report in a batch, the loss is the one of every off-diagonal pair a negative."""
    torch.manual_seed(0)
    v = torch.nn.functional.normalize(torch.randn(6, 8), dim=1)
    t = torch.nn.functional.normalize(torch.randn(6, 8), dim=1)
    log_scale, bias = torch.tensor(2.0), torch.tensor(-1.5)
    ids = torch.arange(6 * 4).view(6, 4)  # six different texts
    logits = (v @ t.T) * log_scale.exp() + bias
    old = -torch.nn.functional.logsigmoid((2.0 * torch.eye(6) - 1.0) * logits).sum() / 6
    assert torch.equal(same_text(ids), torch.eye(6, dtype=torch.bool))
    assert torch.equal(siglip_loss(v, t, log_scale, bias, same_text(ids)), old)


def test_recall_counts_a_volume_of_the_same_report_as_a_hit() -> None:
    # volumes 0 and 1 share a report: report 0 ranking volume 1 first is right
    similarity = np.array([[0.5, 0.9, 0.1], [0.5, 0.9, 0.1], [0.9, 0.1, 0.3]])
    positive = np.array([[1, 1, 0], [1, 1, 0], [0, 0, 1]], bool)
    assert recall_at_k(similarity, positive, (1, 2)) == ((1, pytest.approx(2 / 3)), (2, 1.0))
    # three volumes tied at the top, two of them of the report: one place is a hit 2 times in 3
    tied = np.array([[0.9, 0.9, 0.9]])
    assert recall_at_k(tied, np.array([[1, 1, 0]], bool), (1, 2)) == ((1, pytest.approx(2 / 3)), (2, 1.0))


@pytest.fixture(scope="module")
def sibling_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A one-step run whose held-out split is one study of two volumes (and one report)."""
    root = tmp_path_factory.mktemp("siblings")
    write_synthetic_corpus(root, {"train": 8}, (16, 32, 32), spacing_mm=SPACING_MM, per_shard=8, seed=0)
    _sibling_split(root, "test", studies=1, volumes=2)
    run = tmp_path_factory.mktemp("sibling-run")
    train_model(root, TrainConfig(**{**RESUMABLE, "steps": 1}), run, device="cpu")
    return root, run


def test_evaluation_counts_the_sibling_volume_of_a_report_as_a_hit(sibling_run: tuple[Path, Path]) -> None:
    """Both reports are one text, so both rank the same volume first: one of the two rows missed (R@1 0.5)."""
    run = sibling_run[1]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["n_volumes"] == 2 and metrics["recall_at"]["1"] == 1.0


def test_evaluating_a_split_of_other_slices_says_to_resample_it(sibling_run: tuple[Path, Path]) -> None:
    """The error sent the user to train.axial_step_mm, which evaluate_model takes from the checkpoint."""
    root, run = sibling_run
    _sibling_split(root, "thin", studies=1, volumes=1, spacing_mm=2.5)
    with pytest.raises(TrainError) as info:
        evaluate_model(root, run, TrainConfig(**RESUMABLE), split="thin", device="cpu")
    message = str(info.value)
    assert "split 'thin' has 2.5 mm slices; resample it to the 3 mm the model was trained on" in message
    assert "train.axial_step_mm" not in message and str(root / "shards" / "thin") in message
