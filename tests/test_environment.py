"""The installed stack really works, not only resolves.

pip reports no conflict for ctcorpus's dependencies, yet three things break at run time
(../shared/ENVIRONMENT.md): an ``argparse`` backport shadows the standard library and Prefect's
local API cannot start; PyPI's torchvision does not match the CPU torch and every nnU-Net model
lookup fails; spaCy built for numpy 1 fails under numpy 2. The Makefile's install step fixes
them; each test here runs the piece that would break, so a fresh machine cannot regress silently.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from ctcorpus.config import RunConfig
from flows.runtime import apply_prefect_settings

SHARED_SYNTAXES = (
    Path(__file__).resolve().parents[2] / "shared" / "data" / "cornerstone_ct_transfer_syntaxes" / "testImages"
)
TRAINER_TASK_298 = "nnUNetTrainer_4000epochs_NoMirroring"


def _standard_library_file(path: str | None) -> bool:
    return path is not None and Path(path).resolve().is_relative_to(Path(sysconfig.get_paths()["stdlib"]).resolve())


# --- Prefect: the local API starts and records a flow run --------------------------------------


@pytest.fixture(scope="module")
def prefect_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Prefect's test harness (a real API server subprocess on a temporary SQLite database).

    The offline settings go into the environment first, so the server subprocess inherits them.
    """
    saved = dict(os.environ)
    apply_prefect_settings(RunConfig(prefect_home=tmp_path_factory.mktemp("prefect-home")))
    from prefect.testing.utilities import prefect_test_harness

    try:
        # None: wait PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS (120 s), not the harness's 30 s;
        # a cold start on a busy 2-core machine was measured at 20-27 s
        with prefect_test_harness(server_startup_timeout=None):
            yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@pytest.mark.slow
def test_prefect_flow_runs_on_the_local_api(prefect_api: None) -> None:
    from prefect import flow, task
    from prefect.client.orchestration import get_client
    from prefect.runtime import flow_run

    @task
    def double(value: int) -> int:
        return 2 * value

    @flow
    def tiny(count: int) -> tuple[list[int], str]:
        return [future.result() for future in double.map(range(count))], flow_run.id

    values, run_id = tiny(3)
    assert values == [0, 2, 4]
    with get_client(sync_client=True) as client:
        recorded = client.read_flow_run(run_id)
        task_runs = client.read_task_runs()
    assert recorded.state is not None and recorded.state.is_completed()
    assert sum(run.flow_run_id == recorded.id for run in task_runs) == 3


def worker_facts(value: int) -> tuple[int, int, bool]:
    """Runs on a Dask worker: the value squared, the worker's pid, whether Prefect is loaded there."""
    return value * value, os.getpid(), "prefect" in sys.modules


@pytest.mark.slow
def test_prefect_task_sends_work_to_dask_workers(prefect_api: None) -> None:
    """The runtime design: Prefect tasks in the flow process, per-item work on Dask processes
    that never import Prefect (so no worker starts its own ephemeral API)."""
    from prefect import flow, task

    from flows.runtime import dask_client, map_bounded, task_runner

    run = RunConfig(n_workers=2, memory_limit_per_worker="1GiB", prefect_task_threads=2)

    @task
    def fan_out(values: list[int]) -> list[tuple[int, int, bool]]:
        with dask_client(run) as client:
            return list(map_bounded(worker_facts, values, client, max_in_flight=2, ordered=True))

    @flow(task_runner=task_runner(run))
    def distributed_flow(values: list[int]) -> list[tuple[int, int, bool]]:
        return fan_out(values)

    facts = distributed_flow(list(range(6)))
    assert [square for square, _, _ in facts] == [v * v for v in range(6)]
    assert os.getpid() not in {pid for _, pid, _ in facts}
    assert not any(loaded for _, _, loaded in facts)


def test_argparse_is_the_standard_library() -> None:
    import argparse

    assert _standard_library_file(argparse.__file__), argparse.__file__
    with pytest.raises(importlib.metadata.PackageNotFoundError):
        importlib.metadata.distribution("argparse")


def test_torchvision_is_absent_or_matches_torch() -> None:
    spec = importlib.util.find_spec("torchvision")
    try:
        importlib.metadata.distribution("torchvision")
        installed = True
    except importlib.metadata.PackageNotFoundError:
        installed = False
    assert installed == (spec is not None), "torchvision metadata and module disagree"
    if spec is None:
        return
    # present: it must be the build for this torch (the registry's wheel fails right here)
    import torch
    from torchvision.ops import nms

    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]])
    kept = nms(boxes, torch.tensor([0.9, 0.8, 0.7]), iou_threshold=0.5)
    assert kept.tolist() == [0, 2]


# --- spaCy / thinc / numpy ABI -----------------------------------------------------------------


def test_spacy_blank_pipeline_splits_sentences() -> None:
    import spacy

    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    doc = nlp("No pleural effusion. Mild centrilobular emphysema in both upper lobes.")
    assert [sent.text for sent in doc.sents] == [
        "No pleural effusion.",
        "Mild centrilobular emphysema in both upper lobes.",
    ]
    orth = doc.to_array(["ORTH"])  # Cython -> numpy: the call the 'dtype size changed' ABI bug breaks
    assert orth.dtype == np.uint64 and orth.shape == (len(doc),)


def test_thinc_numpy_ops_match_numpy() -> None:
    from thinc.api import NumpyOps

    rng = np.random.default_rng(0)
    a = rng.standard_normal((4, 3)).astype("float32")
    b = rng.standard_normal((3, 5)).astype("float32")
    np.testing.assert_allclose(NumpyOps().gemm(a, b), a @ b, rtol=1e-5)


# --- TotalSegmentator / nnU-Net without torchvision ---------------------------------------------


@pytest.mark.slow
def test_totalsegmentator_finds_its_trainer_without_torchvision() -> None:
    # the Python API import patches nnU-Net's trainer lookup, as it does before every prediction
    import nnunetv2.inference.predict_from_raw_data as nnunet_predict
    import totalsegmentator.python_api  # noqa: F401
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    from ctcorpus.anatomy.totalseg import register_nnunet_trainers

    assert TRAINER_TASK_298 in register_nnunet_trainers()
    trainer = nnunet_predict.recursive_find_trainer_class_by_name(TRAINER_TASK_298)
    assert trainer.__name__ == TRAINER_TASK_298
    assert issubclass(trainer, nnUNetTrainer)
    if importlib.util.find_spec("torchvision") is None:
        # what registration sidesteps: nnU-Net's own scan imports every trainer module
        from totalsegmentator.nnunet import recursive_find_trainer_class_by_name as nnunet_scan

        with pytest.raises(ImportError, match="torchvision"):
            nnunet_scan(TRAINER_TASK_298)


# --- pydicom decodes the compressed transfer syntaxes CT exports use -----------------------------

# (compressed file, uncompressed or independently compressed reference with the same pixels)
BUNDLED_PAIRS = [
    pytest.param("SC_rgb_jpeg_gdcm.dcm", "SC_rgb_rle.dcm", "1.2.840.10008.1.2.4.70", id="jpeg-lossless"),
    pytest.param("MR_small_jp2klossless.dcm", "MR_small.dcm", "1.2.840.10008.1.2.4.90", id="jpeg2000"),
    pytest.param("MR_small_RLE.dcm", "MR_small.dcm", "1.2.840.10008.1.2.5", id="rle"),
]


@pytest.mark.parametrize(("compressed", "reference", "syntax"), BUNDLED_PAIRS)
def test_pydicom_decodes_bundled_files(compressed: str, reference: str, syntax: str) -> None:
    dataset = pydicom.dcmread(get_testdata_file(compressed))
    assert dataset.file_meta.TransferSyntaxUID == syntax
    expected = pydicom.dcmread(get_testdata_file(reference)).pixel_array
    np.testing.assert_array_equal(dataset.pixel_array, expected)


@pytest.mark.parametrize(
    ("name", "syntax"),
    [
        ("JPEGProcess14TransferSyntax_1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.57"),
        ("JPEGProcess14SV1TransferSyntax_1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.4.70"),
        ("JPEG2000LosslessOnlyTransferSyntax_1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.90"),
        ("RLELosslessTransferSyntax_1.2.840.10008.1.2.5", "1.2.840.10008.1.2.5"),
        ("JPEGLSLosslessTransferSyntax_1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.80"),
    ],
)
def test_pydicom_decodes_real_ct_transcodes(name: str, syntax: str) -> None:
    if not SHARED_SYNTAXES.is_dir():
        pytest.skip(f"{SHARED_SYNTAXES} is absent")
    dataset = pydicom.dcmread(SHARED_SYNTAXES / f"CTImage.dcm_{name}.dcm")
    assert dataset.file_meta.TransferSyntaxUID == syntax
    reference = pydicom.dcmread(SHARED_SYNTAXES / "CTImage.dcm").pixel_array
    assert reference.shape == (512, 512)
    np.testing.assert_array_equal(dataset.pixel_array, reference)
