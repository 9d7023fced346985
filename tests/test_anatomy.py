"""Anatomy stage: threshold fallback vs phantom ground truth, TotalSegmentator offline, stats, regions."""

from __future__ import annotations

import builtins
import gc
import io
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from ctcorpus.anatomy import (
    FALLBACK_LABELS,
    Segmentation,
    Segmenter,
    ThresholdSegmenter,
    TotalSegmentatorSegmenter,
    anatomy_stats_table,
    dice,
    make_segmenter,
    missing_weights,
    required_task_ids,
    resample_mask,
    segment_volume,
    sentence_region,
    sentence_regions_table,
    structure_stats,
    weights_dir,
)
from ctcorpus.anatomy.base import same_grid
from ctcorpus.anatomy.totalseg import (
    _cached_predictor_class,
    _home_dir,
    label_map_from_nifti,
    write_nifti,
)
from ctcorpus.config.anatomy import AnatomyConfig
from ctcorpus.errors import AnatomyError
from ctcorpus.schemas import check_table
from ctcorpus.synth.phantom import make_phantom
from ctcorpus.taxonomy import Anatomy

PROJECT = Path(__file__).resolve().parents[1]
FLOORS = {"body": 0.90, "lung_left": 0.90, "lung_right": 0.90, "airways": 0.80, "bones": 0.80}


def _image(array: np.ndarray, spacing_zyx, origin, direction=(1, 0, 0, 0, 1, 0, 0, 0, 1)) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(tuple(float(s) for s in spacing_zyx[::-1]))
    image.SetOrigin(tuple(float(o) for o in origin))
    image.SetDirection(tuple(float(d) for d in direction))
    return image


@pytest.fixture(scope="module")
def phantom():
    return make_phantom((48, 128, 128), (6.25, 3.0, 3.0), np.random.default_rng(7))


@pytest.fixture(scope="module")
def phantom_ct(phantom) -> sitk.Image:
    return _image(phantom.hu, phantom.spacing_zyx, phantom.origin_mm)


@pytest.fixture(scope="module")
def fallback_seg(phantom_ct) -> Segmentation:
    return segment_volume(phantom_ct, AnatomyConfig(backend="threshold"))


def _truth(phantom, name: str) -> np.ndarray:
    return phantom.labels > 0 if name == "body" else phantom.labels == phantom.label_table[name]


def _predicted(seg: Segmentation, name: str) -> np.ndarray:
    return seg.array() > 0 if name == "body" else seg.mask(name)


# --- threshold fallback -------------------------------------------------------------------------


def test_fallback_dice_against_phantom_truth(phantom, fallback_seg):
    scores = {name: dice(_predicted(fallback_seg, name), _truth(phantom, name)) for name in FLOORS}
    assert all(scores[name] >= floor for name, floor in FLOORS.items()), scores
    assert fallback_seg.source == "threshold-1.2"
    assert dict(fallback_seg.label_table) == dict(FALLBACK_LABELS)
    assert same_grid(fallback_seg.labels, _image(phantom.hu, phantom.spacing_zyx, phantom.origin_mm))


def test_fallback_left_right_follows_the_image_direction(phantom, fallback_seg):
    """The same patient stored with the x axis reversed: the array flips, the patient's left does not."""
    nx = phantom.hu.shape[2]
    origin = list(phantom.origin_mm)
    origin[0] += (nx - 1) * phantom.spacing_zyx[2]  # voxel 0 now sits at the patient's far left
    flipped = _image(phantom.hu[:, :, ::-1], phantom.spacing_zyx, origin, direction=(-1, 0, 0, 0, 1, 0, 0, 0, 1))
    seg = ThresholdSegmenter(AnatomyConfig()).segment(flipped)
    for name in ("lung_left", "lung_right"):
        assert dice(seg.mask(name)[:, :, ::-1], _truth(phantom, name)) >= 0.9
    left = next(r for r in structure_stats(seg, flipped, "v") if r.structure == "lung_left")
    assert (left.bbox_mm_min[0] + left.bbox_mm_max[0]) / 2 > 0  # LPS: patient left is +x


def test_fallback_finds_no_airways_or_lungs_in_soft_tissue():
    """A water cylinder (no air inside the body): body only, no invented lungs or airways."""
    z, y, x = np.mgrid[:16, :64, :64]
    hu = np.where((y - 32) ** 2 + (x - 32) ** 2 < 25**2, 20, -1000).astype(np.int16)
    seg = ThresholdSegmenter(AnatomyConfig()).segment(_image(hu, (5.0, 3.0, 3.0), (0, 0, 0)))
    assert set(np.unique(seg.array())) == {0, 1}


def test_fallback_keeps_lungs_the_field_of_view_cut_open(phantom):
    """Both lungs cut by the field of view (a large patient, a small reconstruction FOV) touch the image border: they
    were no hole of the body and were lost whole (Dice 0). Gas enclosed the same way stays body (real CT test below)."""
    columns = {name: np.argwhere(_truth(phantom, name))[:, 2] for name in ("lung_left", "lung_right")}
    crop = slice(int(np.median(columns["lung_right"])), int(np.median(columns["lung_left"])))
    cut = _image(phantom.hu[:, :, crop], phantom.spacing_zyx, phantom.origin_mm)
    seg = ThresholdSegmenter(AnatomyConfig()).segment(cut)
    for name in ("body", "lung_left", "lung_right"):
        truth = phantom.labels[:, :, crop] > 0 if name == "body" else _truth(phantom, name)[:, :, crop]
        assert dice(seg.array() > 0 if name == "body" else seg.mask(name), truth) >= 0.95, name


@pytest.mark.parametrize(("side", "row_share"), [("lung_right", 0.3), ("lung_left", 0.9)])
def test_fallback_keeps_a_lung_the_field_of_view_cut_at_a_corner(phantom, side, row_share):
    """A field of view off the patient's centre cuts one lung at a corner: it touches two sides of the image, so
    walling each side between the body's contacts on it left it open, and it was lost (Dice under 0.1)."""
    voxels = np.argwhere(_truth(phantom, side))
    column, row = int(np.median(voxels[:, 2])), int(np.quantile(voxels[:, 1], row_share))
    crop = np.s_[:, row:, column:] if side == "lung_right" else np.s_[:, :row, :column]
    seg = ThresholdSegmenter(AnatomyConfig()).segment(_image(phantom.hu[crop], phantom.spacing_zyx, phantom.origin_mm))
    cut = _truth(phantom, side)[crop]
    assert sum(edge.any() for edge in (cut[:, 0], cut[:, -1], cut[:, :, 0], cut[:, :, -1])) == 2  # a corner
    for name in ("lung_left", "lung_right"):
        assert dice(seg.mask(name), _truth(phantom, name)[crop]) >= 0.95, name
    assert dice(seg.array() > 0, phantom.labels[crop] > 0) >= 0.95


def test_a_segmenter_failure_is_a_segmentation_failed_error(phantom_ct, monkeypatch):
    """The fallback out of memory on a large volume raised a bare MemoryError, which the pipeline does not catch per
    volume: the whole study failed, report included. Now it is an AnatomyError: the volume is stored without a mask."""
    from ctcorpus.anatomy import fallback

    def out_of_memory(*args, **kwargs):
        raise MemoryError("Unable to allocate 1.00 GiB for an array")

    monkeypatch.setattr(fallback.cc3d, "connected_components", out_of_memory)
    with pytest.raises(AnatomyError, match="threshold failed: MemoryError: Unable to allocate") as raised:
        segment_volume(phantom_ct, AnatomyConfig(backend="threshold"))
    assert raised.value.reason.value == "segmentation_failed"


def test_fallback_rejects_non_axial_images(phantom):
    sagittal = _image(phantom.hu, phantom.spacing_zyx, phantom.origin_mm, direction=(0, 0, 1, 0, 1, 0, 1, 0, 0))
    with pytest.raises(AnatomyError, match="axial"):
        ThresholdSegmenter(AnatomyConfig()).segment(sagittal)


def test_config_refuses_a_reversed_lung_median_range():
    """A reversed range would find no lungs in any volume, silently."""
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="low < high"):
        AnatomyConfig(lung_median_hu=(-650.0, -930.0))


def test_fallback_on_real_ct_against_totalsegmentator_reference(shared_data):
    """Real abdominal CT with lung bases and bowel gas: lungs found, gas called neither lung nor airway."""
    folder = shared_data / "totalsegmentator_reference"
    if not folder.is_dir():
        pytest.skip("totalsegmentator_reference is not present")
    from totalsegmentator.map_to_binary import class_map

    ct = sitk.ReadImage(str(folder / "example_ct_sm.nii.gz"))
    reference = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "example_seg.nii.gz")))
    seg = segment_volume(ct, AnatomyConfig(backend="threshold"))
    for side in ("left", "right"):
        values = [v for v, n in class_map["total"].items() if n.startswith("lung_") and n.endswith(side)]
        assert dice(seg.mask(f"lung_{side}"), np.isin(reference, values)) >= 0.85
    colon = [v for v, n in class_map["total"].items() if n in ("colon", "stomach")]
    assert not np.any(seg.mask("lung_left", "lung_right", "airways") & np.isin(reference, colon))
    # the real 512x512 contrast CT series (upper abdomen, no lung in its reference): gas stays body
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder / "example_ct_dicom")))
    series = reader.Execute()
    seg = segment_volume(series, AnatomyConfig(backend="threshold"))
    assert not seg.mask("lung_left", "lung_right", "airways").any()
    assert seg.mask("bones").sum() > 10_000


# --- statistics, regions, resampling ------------------------------------------------------------


def test_structure_stats_match_the_phantom(phantom, phantom_ct, fallback_seg):
    rows = structure_stats(fallback_seg, phantom_ct, "vol-1")
    by_name = {r.structure: r for r in rows}
    assert set(by_name) == set(FALLBACK_LABELS.values())
    voxel_ml = 6.25 * 3.0 * 3.0 / 1000
    lung = by_name["lung_right"]
    truth = _truth(phantom, "lung_right")
    assert lung.voxels == int(fallback_seg.mask("lung_right").sum())
    assert lung.volume_ml == pytest.approx(truth.sum() * voxel_ml, rel=0.02)
    ks = np.flatnonzero(truth.any(axis=(1, 2)))
    assert lung.bbox_index_min[2] == ks.min() and lung.bbox_index_max[2] == ks.max()
    assert lung.z_min_mm == pytest.approx(phantom.origin_mm[2] + ks.min() * 6.25)
    assert lung.z_extent_mm == pytest.approx((ks.max() - ks.min() + 1) * 6.25)
    assert lung.bbox_mm_max[0] < 0 < by_name["lung_left"].bbox_mm_min[0] + 30  # right lung on LPS -x
    assert -870 < lung.mean_hu < -780  # parenchyma -850 with vessels
    assert by_name["bones"].anatomy is Anatomy.BONES and by_name["airways"].anatomy is Anatomy.AIRWAYS
    assert {r.mask_source for r in rows} == {"threshold-1.2"}
    table = anatomy_stats_table(rows, source_sha256="ab" * 32)
    check_table("anatomy_stats", table)
    assert table.num_rows == 5 and set(table.column("producer").to_pylist()) == {"threshold-1.2"}


@pytest.mark.parametrize(
    "direction",
    [
        (1, 0, 0, 0, 1, 0, 0, 0, 1),  # axial, LPS
        (-1, 0, 0, 0, -1, 0, 0, 0, 1),  # axial, RAS
        (1, 0, 0, 0, 1, 0, 0, 0, -1),  # axial, z index running feet-wards
        (1, 0, 0, 0, 0, 1, 0, 1, 0),  # coronal: index y runs head-foot
        (0, 0, 1, 0, 1, 0, 1, 0, 0),  # sagittal: index x runs head-foot
    ],
)
def test_structure_stats_are_physical_on_any_grid(direction):
    """Volume, head-foot range and extent in mm from the grid's geometry, whichever index axis runs head-foot and
    whichever way: the extent was the range plus the z index step's head-foot part, 0 on a sagittal grid."""
    labels = np.zeros((10, 8, 6), np.uint8)
    labels[3:5, 2:4, 1:2] = 1  # 2 x 2 x 1 voxels (z, y, x)
    ct = _image(np.full(labels.shape, 40, np.int16), (3.0, 0.7, 0.5), (10.0, 20.0, 30.0), direction)
    seg = Segmentation(labels=sitk.GetImageFromArray(labels), label_table={1: "lung_left"}, backend="t", version="1")
    seg.labels.CopyInformation(ct)
    (row,) = structure_stats(seg, ct, "v")
    centres = np.array([ct.TransformIndexToPhysicalPoint((int(i), int(j), int(k))) for k, j, i in np.argwhere(labels)])
    voxel_z = sum(abs(d * s) for d, s in zip(direction[6:], ct.GetSpacing(), strict=True))  # one voxel's head-foot size
    assert row.volume_ml == pytest.approx(4 * 3.0 * 0.7 * 0.5 / 1000)
    assert (row.z_min_mm, row.z_max_mm) == pytest.approx((centres[:, 2].min(), centres[:, 2].max()))
    assert row.z_extent_mm == pytest.approx(np.ptp(centres[:, 2]) + voxel_z)
    assert row.bbox_mm_min == pytest.approx(tuple(centres.min(axis=0)))
    assert row.bbox_mm_max == pytest.approx(tuple(centres.max(axis=0)))


def test_structure_stats_refuse_another_grid(phantom_ct, fallback_seg):
    other = sitk.Image(phantom_ct.GetSize(), sitk.sitkInt16)
    other.SetSpacing((1.0, 1.0, 1.0))
    with pytest.raises(AnatomyError, match="resample the mask"):
        structure_stats(fallback_seg, other, "vol-1")


def test_sentence_region_is_the_union_z_range(phantom_ct, fallback_seg):
    rows = structure_stats(fallback_seg, phantom_ct, "vol-1")
    lungs = [r for r in rows if r.anatomy is Anatomy.LUNGS]
    region = sentence_region(["lungs"], rows, sentence_id="s1")
    assert region is not None and region.structures == ("lung_left", "lung_right")
    assert region.z_min_mm == min(r.z_min_mm for r in lungs) and region.z_max_mm == max(r.z_max_mm for r in lungs)
    assert region.slice_min == min(r.bbox_index_min[2] for r in lungs)
    # slice indices and mm agree through the volume's grid
    assert phantom_ct.TransformIndexToPhysicalPoint((0, 0, region.slice_max))[2] == pytest.approx(region.z_max_mm)
    both = sentence_region([Anatomy.LUNGS, Anatomy.AIRWAYS], rows, sentence_id="s2")
    assert both is not None and both.slice_max >= region.slice_max and "airways" in both.structures
    assert sentence_region([Anatomy.HEART], rows) is None  # the fallback has no heart
    assert sentence_region([Anatomy.OTHER], rows) is None  # "other" is never localized
    table = sentence_regions_table([region, both], source_sha256="cd" * 32)
    check_table("sentence_regions", table)
    assert table.column("anatomies").to_pylist() == [["lungs"], ["airways", "lungs"]]


def test_resample_mask_is_nearest_neighbour_with_the_label_table(phantom_ct, fallback_seg):
    coarse = sitk.Image([s // 2 for s in phantom_ct.GetSize()], sitk.sitkInt16)
    coarse.SetSpacing([s * 2 for s in phantom_ct.GetSpacing()])
    coarse.SetOrigin(phantom_ct.GetOrigin())
    moved = resample_mask(fallback_seg, coarse)
    assert same_grid(moved.labels, coarse) and moved.labels.GetPixelID() == sitk.sitkUInt8
    assert set(np.unique(moved.array())) <= set(np.unique(fallback_seg.array()))
    assert moved.label_table == fallback_seg.label_table and moved.source == fallback_seg.source
    ratio = moved.mask("lung_left").sum() * 8 / fallback_seg.mask("lung_left").sum()
    assert 0.9 < ratio < 1.1
    same = resample_mask(fallback_seg, phantom_ct)
    assert np.array_equal(same.array(), fallback_seg.array())


# --- TotalSegmentator backend -------------------------------------------------------------------


def test_required_task_ids_per_mode():
    assert required_task_ids(AnatomyConfig(mode="fastest")) == (298,)
    assert required_task_ids(AnatomyConfig(mode="fast")) == (297,)
    assert required_task_ids(AnatomyConfig(mode="default")) == (291, 292, 293, 294, 295)
    assert required_task_ids(AnatomyConfig(mode="fast", roi_subset=("liver",))) == (297, 298)


def test_totalsegmentator_without_weights_fails_fast_with_provisioning_steps(tmp_path):
    config = AnatomyConfig(
        backend="totalsegmentator", mode="fast", weights_path=tmp_path / "weights", home_dir=tmp_path / "home"
    )
    assert missing_weights(config) == (297,)
    with pytest.raises(AnatomyError) as info:
        make_segmenter(config)
    message = str(info.value)
    for needed in ("Dataset297_TotalSegmentator_total_3mm_1559subj", "task 297", "totalseg_download_weights",
                   "totalseg_import_weights", "TOTALSEG_WEIGHTS_PATH", str(tmp_path / "weights")):
        assert needed in message
    assert not (tmp_path / "home").exists()  # failed before any work: no config, no download folder
    assert not (tmp_path / "weights").exists()


def _fake_weights(root: Path, dataset: str, model_folder: str, folds=("fold_0",)) -> Path:
    """The files nnU-Net loads from a model folder, complete but empty of content (file checks only):
    JSON files that parse, checkpoints in torch's zip format."""
    folder = root / dataset / model_folder
    for name in ("plans.json", "dataset.json", *(f"{fold}/checkpoint_final.pth" for fold in folds)):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        if name.endswith(".json"):
            (folder / name).write_text("{}")
        else:
            with zipfile.ZipFile(folder / name, "w") as checkpoint:
                checkpoint.writestr("archive/data.pkl", b"")
    return folder


_FASTEST = (
    "Dataset298_TotalSegmentator_total_6mm_1559subj",
    "nnUNetTrainer_4000epochs_NoMirroring__nnUNetPlans__3d_fullres",
)


def test_missing_weights_checks_the_model_folder_totalsegmentator_loads(tmp_path):
    """A partial copy, another trainer's folder or another fold is missing, not present."""
    config = AnatomyConfig(weights_path=tmp_path)
    folder = _fake_weights(tmp_path, *_FASTEST)
    assert missing_weights(config) == ()
    (folder / "plans.json").unlink()
    assert missing_weights(config) == (298,)
    folder.rename(folder.with_name("nnUNetTrainer__nnUNetPlans__3d_fullres"))
    _fake_weights(tmp_path, _FASTEST[0], "nnUNetTrainer__nnUNetPlans__3d_fullres")
    assert missing_weights(config) == (298,)
    _fake_weights(tmp_path, *_FASTEST, folds=("fold_1",))
    assert missing_weights(config) == (298,)
    _fake_weights(tmp_path, *_FASTEST)
    assert missing_weights(config) == ()


def _assert_refused_and_fallen_back(weights, caplog, problem: str) -> None:
    """The fastest model's weights at ``weights`` are unusable: backend totalsegmentator stops before any work,
    naming ``problem``; auto falls back to the threshold segmenter, warning of task 298."""
    config = AnatomyConfig(weights_path=weights, home_dir=weights.parent / "home")
    assert missing_weights(config) == (298,)
    with pytest.raises(AnatomyError, match="not provisioned") as info:
        make_segmenter(config.model_copy(update={"backend": "totalsegmentator"}))
    assert problem in str(info.value)
    with caplog.at_level(logging.WARNING, logger="ctcorpus.anatomy"):
        assert make_segmenter(config).name == "threshold"
    assert "298" in caplog.text


@pytest.mark.parametrize(
    ("broken", "content", "reason"),
    [
        ("fold_0/checkpoint_final.pth", b"", "not a complete torch checkpoint"),
        ("fold_0/checkpoint_final.pth", None, "not a complete torch checkpoint"),  # cut short: no end record
        ("plans.json", b'{"dataset_name": "Dataset298', "not valid JSON"),
        ("dataset.json", b"", "not valid JSON"),
    ],
)
def test_weights_cut_short_count_as_missing_and_name_the_file(tmp_path, caplog, broken, content, reason):
    """An interrupted copy (empty or truncated file) passed the presence check: backend totalsegmentator then
    failed on every volume, auto chose it over the fallback. Now it is refused before any work, naming the file."""
    folder = _fake_weights(tmp_path / "w", *_FASTEST)
    path = folder / broken
    path.write_bytes(path.read_bytes()[:-30] if content is None else content)
    _assert_refused_and_fallen_back(tmp_path / "w", caplog, f"{path} ({reason}")
    assert "incomplete" in caplog.text


@pytest.mark.parametrize("locked", ["", "fold_0/checkpoint_final.pth"])
def test_weights_this_process_may_not_read_are_named_with_the_reason(tmp_path, monkeypatch, caplog, locked):
    """Weights provisioned as root under /root, run as another user: a folder that cannot be looked into raised a
    bare PermissionError out of the backend choice (auto and totalsegmentator), a file that cannot be opened read
    as "a partial copy?". Now both are unusable weights named with the OS's reason (simulated: tests run as root)."""
    folder = _fake_weights(tmp_path / "w", *_FASTEST)
    refused = folder / locked

    def refuse(original):
        def call(path, *args, **kwargs):
            if isinstance(path, str | os.PathLike) and Path(path) == refused:
                raise PermissionError(13, "Permission denied", str(path))
            return original(path, *args, **kwargs)
        return call

    if locked:  # the checkpoint: opening it is refused
        monkeypatch.setattr(builtins, "open", refuse(builtins.open))
        monkeypatch.setattr(io, "open", refuse(io.open))
    else:  # the model folder: looking into it is refused
        monkeypatch.setattr(Path, "stat", refuse(Path.stat))
    _assert_refused_and_fallen_back(tmp_path / "w", caplog, f"{refused} (cannot be read: Permission denied)")


def test_crop_tasks_need_the_crop_model_weights(tmp_path):
    """Tasks that crop first run a second model: its weights are required, or TotalSegmentator downloads it."""
    assert required_task_ids(AnatomyConfig(task="lung_vessels")) == (117, 297)  # robust crop: 3 mm model
    assert required_task_ids(AnatomyConfig(task="liver_vessels")) == (8, 298)
    assert required_task_ids(AnatomyConfig(task="abdominal_muscles")) == (300, 952)  # cropped to the body trunc
    assert required_task_ids(AnatomyConfig(task="teeth")) == (113, 115, 298)  # crop_model craniofacial_structures
    assert required_task_ids(AnatomyConfig(task="vertebrae_pp_refined", mode="default")) == (305, 803)  # it refines by 305
    config = AnatomyConfig(backend="totalsegmentator", task="liver_vessels", weights_path=tmp_path / "w",
                           home_dir=tmp_path / "home")
    _fake_weights(tmp_path / "w", "Dataset008_HepaticVessel", "nnUNetTrainer__nnUNetPlans__3d_fullres")
    with pytest.raises(AnatomyError, match="Dataset298_TotalSegmentator_total_6mm_1559subj") as info:
        make_segmenter(config)
    assert "-t total_fast" in str(info.value) and "-t liver_vessels" not in str(info.value)  # only what is missing
    refined = config.model_copy(update={"task": "vertebrae_pp_refined", "mode": "default"})
    _fake_weights(tmp_path / "w", "Dataset803_TotalSegmentator_vertebrae_inner_1559subj",
                  "nnUNetTrainerNoMirroring__nnUNetPlans__3d_fullres")
    with pytest.raises(AnatomyError, match="Dataset305_vertebrae_discs_1559subj") as info:  # not per volume
        make_segmenter(refined)
    assert "-t vertebrae_body" in str(info.value)


@pytest.mark.parametrize(
    ("settings", "downloads"),
    [
        ({"mode": "fastest"}, ["total_fast"]),
        ({"mode": "default"}, ["total"]),
        ({"task": "body", "mode": "fast"}, ["body_fast"]),  # 'body' fetches the 1.5 mm model, 299
        ({"task": "total_mr", "mode": "fast"}, ["total_fast_mr"]),
        ({"task": "abdominal_muscles"}, ["abdominal_muscles", "body_fast"]),  # cropped by the body model, 300
        ({"task": "teeth"}, ["teeth", "craniofacial_structures", "total_fast"]),
    ],
)
def test_provisioning_message_downloads_every_missing_task(tmp_path, settings, downloads):
    """The download command it gives fetches each missing folder, crop models and fast variants included."""
    config = AnatomyConfig(backend="totalsegmentator", weights_path=tmp_path / "w", home_dir=tmp_path / "h", **settings)
    with pytest.raises(AnatomyError) as info:
        make_segmenter(config)
    command = re.search(r"run `([^`]*)`", str(info.value))
    assert command is not None and re.findall(r"-t (\w+)", command.group(1)) == downloads


def test_tasks_without_named_folds_need_any_trained_fold(tmp_path):
    """pleural_pericard_effusion names no folds (nnU-Net loads every fold_N it finds): checked, not a crash."""
    config = AnatomyConfig(backend="totalsegmentator", task="pleural_pericard_effusion", weights_path=tmp_path,
                           home_dir=tmp_path / "home")
    assert required_task_ids(config) == (298, 315)
    _fake_weights(tmp_path, *_FASTEST)
    folder = _fake_weights(tmp_path, "Dataset315_thoraxCT", "nnUNetTrainer__nnUNetPlans__3d_fullres", folds=("fold_all",))
    assert missing_weights(config) == (315,)  # nnU-Net's fold detection skips fold_all
    with pytest.raises(AnatomyError, match="Dataset315_thoraxCT"):
        make_segmenter(config)
    _fake_weights(tmp_path, "Dataset315_thoraxCT", "nnUNetTrainer__nnUNetPlans__3d_fullres", folds=("fold_3",))
    assert missing_weights(config) == ()
    (folder / "dataset.json").unlink()
    assert missing_weights(config) == (315,)


def test_two_weight_folders_of_one_task_fail_at_construction(tmp_path):
    """nnU-Net finds a model by its DatasetNNN prefix and refuses two (an older TotalSegmentator's _v204 copy
    beside the current one): every volume would fail, so the segmenter is refused before any work."""
    config = AnatomyConfig(backend="auto", mode="fast", weights_path=tmp_path / "w", home_dir=tmp_path / "home")
    _fake_weights(tmp_path / "w", "Dataset297_TotalSegmentator_total_3mm_1559subj",
                  "nnUNetTrainer_4000epochs_NoMirroring__nnUNetPlans__3d_fullres")
    old = tmp_path / "w" / "Dataset297_TotalSegmentator_total_3mm_1559subj_v204"
    old.mkdir()
    assert missing_weights(config) == ()
    with pytest.raises(AnatomyError, match="Dataset297_TotalSegmentator_total_3mm_1559subj_v204"):
        make_segmenter(config)
    assert old.is_dir()  # the operator's folder is named, not deleted
    old.rmdir()
    assert make_segmenter(config).name == "totalsegmentator"


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"task": "liver_vessels", "mode": "fast"}, "does not run in mode 'fast'"),
        ({"task": "lung_vessels", "roi_subset": ("lung_arteries",)}, "roi_subset only works"),
    ],
)
def test_settings_totalsegmentator_refuses_per_volume_fail_at_construction(tmp_path, settings, message):
    """TotalSegmentator raises inside every call for these: the segmenter is refused up front instead."""
    config = AnatomyConfig(backend="totalsegmentator", weights_path=tmp_path / "w", home_dir=tmp_path / "h", **settings)
    with pytest.raises(AnatomyError, match=message):
        make_segmenter(config)


def test_totalsegmentator_never_downloads_during_a_call(tmp_path, monkeypatch):
    """Inside a call, a weight folder TotalSegmentator asks for that is absent raises; nothing is fetched."""
    import totalsegmentator.libs
    from totalsegmentator import python_api

    fetched = []
    monkeypatch.setattr(totalsegmentator.libs, "download_url_and_unpack", lambda url, folder: fetched.append(url))
    _fake_weights(tmp_path / "w", *_FASTEST)
    old_version = tmp_path / "w" / "Dataset297_TotalSegmentator_total_3mm_1559subj_v204"  # TotalSegmentator deletes it
    old_version.mkdir()
    segmenter = TotalSegmentatorSegmenter(
        AnatomyConfig(backend="totalsegmentator", weights_path=tmp_path / "w", home_dir=tmp_path / "home")
    )
    original = python_api.download_pretrained_weights
    with segmenter._environment():
        python_api.download_pretrained_weights(298)  # present: passes
        with pytest.raises(AnatomyError, match="Dataset297_TotalSegmentator_total_3mm_1559subj"):
            python_api.download_pretrained_weights(297)
    assert fetched == [] and python_api.download_pretrained_weights is original
    assert old_version.is_dir()  # the operator's folder is left as it is


def test_weights_relocated_by_the_environment_are_where_totalsegmentator_looks(tmp_path, monkeypatch):
    """TOTALSEG_HOME_DIR and TOTALSEG_WEIGHTS_PATH move the weights (the docker images set them): ctcorpus checks
    the folder TotalSegmentator itself resolves inside a call, config fields first, and writes config.json in the
    home."""
    from totalsegmentator.config import get_totalseg_dir, get_weights_dir

    monkeypatch.setenv("TOTALSEG_HOME_DIR", str(tmp_path / "home"))
    monkeypatch.delenv("TOTALSEG_WEIGHTS_PATH", raising=False)
    config = AnatomyConfig(backend="totalsegmentator")
    assert missing_weights(config) == (298,)
    _fake_weights(tmp_path / "home" / "nnunet" / "results", *_FASTEST)
    assert missing_weights(config) == ()
    monkeypatch.setenv("TOTALSEG_WEIGHTS_PATH", str(tmp_path / "elsewhere"))  # over the home's results folder
    assert missing_weights(config) == (298,)
    _fake_weights(tmp_path / "elsewhere", *_FASTEST)
    for settings, home, weights in (
        ({}, tmp_path / "home", tmp_path / "elsewhere"),
        ({"home_dir": tmp_path / "h2", "weights_path": tmp_path / "home" / "nnunet" / "results"},
         tmp_path / "h2", tmp_path / "home" / "nnunet" / "results"),
    ):
        segmenter = TotalSegmentatorSegmenter(config.model_copy(update=settings))
        assert (home / "config.json").is_file()
        with segmenter._environment():  # the home's settings, in the segmenter's private copy
            assert get_weights_dir() == weights
            assert json.loads((get_totalseg_dir() / "config.json").read_text()) == json.loads(
                (home / "config.json").read_text())
    assert os.environ["TOTALSEG_WEIGHTS_PATH"] == str(tmp_path / "elsewhere")  # the operator's value is restored


@pytest.mark.parametrize("home", ["/", "HOME"])
def test_the_default_weights_folder_is_totalsegmentators_even_with_home_at_the_root(tmp_path, monkeypatch, home):
    """A container run as a user without a passwd entry has HOME=/; TotalSegmentator then keeps its home (and the
    weights its download tool fetches) in /tmp/.totalsegmentator, where ctcorpus looked in /.totalsegmentator."""
    from totalsegmentator.config import get_totalseg_dir, get_weights_dir

    monkeypatch.setenv("HOME", home if home == "/" else str(tmp_path))
    monkeypatch.delenv("TOTALSEG_HOME_DIR", raising=False)
    monkeypatch.delenv("TOTALSEG_WEIGHTS_PATH", raising=False)
    config = AnatomyConfig()
    assert weights_dir(config) == get_weights_dir()
    assert _home_dir(config) == get_totalseg_dir()
    if home == "/":
        assert weights_dir(config) == Path("/tmp/.totalsegmentator/nnunet/results")


def test_weights_and_home_under_tilde_are_the_users_folders(tmp_path, monkeypatch):
    """A config's ``weights_path: ~/ts/weights`` was a folder named ``~`` in the working directory: provisioned
    weights read as missing (auto fell back to the threshold masks) and the home was made in the working directory."""
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    monkeypatch.chdir(tmp_path)
    _fake_weights(tmp_path / "user" / "ts" / "weights", *_FASTEST)
    config = AnatomyConfig(backend="auto", weights_path="~/ts/weights", home_dir="~/ts/home")
    assert weights_dir(config) == tmp_path / "user" / "ts" / "weights"
    assert missing_weights(config) == ()
    assert make_segmenter(config).name == "totalsegmentator"
    assert (tmp_path / "user" / "ts" / "home" / "config.json").is_file() and not (tmp_path / "~").exists()


@pytest.mark.parametrize(
    ("spoil", "named", "message"),
    [
        (lambda home: home.write_text("x"), "", "home .* is not usable"),  # a file where the home folder should be
        (lambda home: (home / "config.json").mkdir(parents=True), "config.json", "is not usable"),
        (lambda home: _write(home / "config.json", b"[]"), "config.json", "not a valid JSON object"),
        (lambda home: _write(home / "config.json", b"\xff\xfe{"), "config.json", "not a valid JSON object"),
    ],
)
def test_an_unusable_totalsegmentator_home_fails_at_construction_naming_it(tmp_path, spoil, named, message):
    """A wrong TOTALSEG home (a file, a config.json that is a folder, no JSON object, not UTF-8) raised a bare
    FileExistsError, IsADirectoryError, TypeError or UnicodeDecodeError: now an AnatomyError naming the path."""
    home = tmp_path / "home"
    spoil(home)
    _fake_weights(tmp_path / "w", *_FASTEST)
    config = AnatomyConfig(backend="totalsegmentator", weights_path=tmp_path / "w", home_dir=home)
    with pytest.raises(AnatomyError, match=message) as raised:
        TotalSegmentatorSegmenter(config)
    assert raised.value.path == str(home / named if named else home)


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def test_usage_statistics_are_off_even_where_the_config_had_them_on(tmp_path, monkeypatch):
    """TotalSegmentator posts usage statistics after every prediction unless its config.json says not to: an
    operator's config.json with them on is turned off (its other settings kept), and a call posts nothing."""
    import totalsegmentator.config as ts_config

    home = tmp_path / "home"
    home.mkdir()
    (home / "config.json").write_text(json.dumps({"totalseg_id": "totalseg_OPERATOR", "send_usage_stats": True,
                                                  "prediction_counter": 7, "license_number": "aca_123"}))
    _fake_weights(tmp_path / "w", *_FASTEST)
    segmenter = TotalSegmentatorSegmenter(AnatomyConfig(backend="totalsegmentator", weights_path=tmp_path / "w",
                                                        home_dir=home))
    settings = json.loads((home / "config.json").read_text())
    assert settings["send_usage_stats"] is False
    assert (settings["totalseg_id"], settings["prediction_counter"], settings["license_number"]) == (
        "totalseg_OPERATOR", 7, "aca_123")
    posted = []
    monkeypatch.setattr(ts_config.requests, "post", lambda url, **kwargs: posted.append(url))
    with segmenter._environment():  # what python_api.totalsegmentator does after predicting
        ts_config.setup_totalseg()
        ts_config.send_usage_stats(ts_config.increase_prediction_counter(), {
            "task": "total", "fast": False, "preview": False, "multilabel": True, "roi_subset": None,
            "statistics": False, "radiomics": False})
    assert posted == []


def test_calls_never_write_the_shared_config_json(tmp_path):
    """TotalSegmentator rewrites config.json in place on every call (its prediction counter): worker processes
    sharing a home read each other's half-written file and the volume failed (JSONDecodeError). Each segmenter's
    calls use a private copy (license kept); a home already quiet is not written at all, not even on construction."""
    from totalsegmentator.config import (
        get_totalseg_dir,
        has_valid_license_offline,
        increase_prediction_counter,
    )

    home = tmp_path / "home"
    home.mkdir()
    config_json = home / "config.json"
    config_json.write_text(json.dumps({"totalseg_id": "totalseg_OPERATOR", "prediction_counter": 7,
                                       "license_number": "aca_" + "0" * 14, "send_usage_stats": False,
                                       "statistics_disclaimer_shown": True}))
    os.utime(config_json, ns=(10**9, 10**9))
    _fake_weights(tmp_path / "w", *_FASTEST)
    config = AnatomyConfig(backend="totalsegmentator", weights_path=tmp_path / "w", home_dir=home)
    first, second = TotalSegmentatorSegmenter(config), TotalSegmentatorSegmenter(config)
    homes = []
    for segmenter in (first, second):
        with segmenter._environment():  # what each call of python_api.totalsegmentator does
            assert increase_prediction_counter()["prediction_counter"] == 8
            assert has_valid_license_offline()[0] == "yes"
            homes.append(get_totalseg_dir())
    assert homes[0] != homes[1] and home not in homes
    assert config_json.stat().st_mtime_ns == 10**9 and json.loads(config_json.read_text())["prediction_counter"] == 7
    del first, second, segmenter
    gc.collect()
    assert not any(path.exists() for path in homes)  # the private copies go with their segmenters


def test_licensed_task_without_a_license_fails_at_construction_not_with_sys_exit(tmp_path, monkeypatch):
    """TotalSegmentator ends the process (sys.exit) on a licensed task without a license: refused up front."""
    from totalsegmentator import python_api

    config = AnatomyConfig(backend="totalsegmentator", task="face", weights_path=tmp_path / "w", home_dir=tmp_path / "h")
    _fake_weights(tmp_path / "w", "Dataset303_face_1559subj", "nnUNetTrainerNoMirroring__nnUNetPlans__3d_fullres")
    with pytest.raises(AnatomyError, match="needs a license.*totalseg_set_license"):
        make_segmenter(config)
    settings = json.loads((tmp_path / "h" / "config.json").read_text())
    (tmp_path / "h" / "config.json").write_text(json.dumps(settings | {"license_number": "aca_" + "0" * 14}))
    segmenter = make_segmenter(config)

    def exits(*args, **kwargs):
        raise SystemExit(1)

    monkeypatch.setattr(python_api, "totalsegmentator", exits)
    with pytest.raises(AnatomyError, match="SystemExit"):
        segmenter.segment(sitk.GetImageFromArray(np.zeros((4, 8, 8), np.int16)))


@pytest.mark.parametrize(("error", "fits_in_chunks", "calls"), [
    (RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"), True, [False, True]),
    (RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory"), True, [False, True]),
    (MemoryError(), False, [False, True]),  # no smaller try left: the volume fails
    (RuntimeError("Background workers died"), True, [False]),  # no memory error: no second try
])
def test_a_case_out_of_memory_is_segmented_again_in_chunks(tmp_path, monkeypatch, caplog, error, fits_in_chunks, calls):
    """TotalSegmentator runs out of memory on 512x512x800+ volumes (its #240, #62, #89), and the volume lost its
    mask: the case is segmented once more in 3 chunks along z (force_split); other failures fail at once."""
    from totalsegmentator import python_api

    seen = []

    def predict(ct_path, output, **kwargs):
        seen.append(kwargs["force_split"])
        if not (kwargs["force_split"] and fits_in_chunks):
            raise error
        ct = nib.load(ct_path)
        return nib.Nifti1Image(np.ones(ct.shape, np.uint8), ct.affine)

    monkeypatch.setattr(python_api, "totalsegmentator", predict)
    _fake_weights(tmp_path / "w", *_FASTEST)
    segmenter = TotalSegmentatorSegmenter(
        AnatomyConfig(backend="totalsegmentator", weights_path=tmp_path / "w", home_dir=tmp_path / "home")
    )
    image = _image(np.zeros((6, 8, 10), np.int16), (2.0, 1.0, 1.0), (0.0, 0.0, 0.0))
    with caplog.at_level(logging.WARNING, logger="ctcorpus.anatomy"):
        if calls == [False, True] and fits_in_chunks:
            assert (segmenter.segment(image).array() == 1).all()
        else:
            with pytest.raises(AnatomyError, match=type(error).__name__) as info:
                segmenter.segment(image)
            assert ("in 3 chunks" in str(info.value)) == (len(calls) == 2)
    assert seen == calls
    assert ("3 chunks along z" in caplog.text) == (len(calls) == 2)


def test_auto_backend_falls_back_with_a_warning(tmp_path, caplog):
    config = AnatomyConfig(backend="auto", weights_path=tmp_path / "none", home_dir=tmp_path / "home")
    with caplog.at_level(logging.WARNING, logger="ctcorpus.anatomy"):
        segmenter = make_segmenter(config)
    assert segmenter.name == "threshold"
    assert "298" in caplog.text and "threshold fallback" in caplog.text


def test_pipeline_checks_the_segmenter_before_work_and_keys_masks_by_the_resolved_backend(tmp_path, monkeypatch):
    """No weights with backend totalsegmentator stops the run before any work (not an empty mask per
    volume, stored and reused); with backend auto, provisioning the weights later redoes the masks."""
    from ctcorpus import pipeline
    from ctcorpus.cli import demo_config
    from ctcorpus.config import config_from_dict

    monkeypatch.setattr(pipeline, "_SEGMENTERS", {})
    data = demo_config(tmp_path) | {"anatomy": {"weights_path": str(tmp_path / "w"), "home_dir": str(tmp_path / "h")}}
    data["run"]["export_dir"] = str(tmp_path)
    strict = config_from_dict(data | {"anatomy": data["anatomy"] | {"backend": "totalsegmentator"}})
    with pytest.raises(AnatomyError, match="not provisioned"):
        pipeline.plan_export(strict, tmp_path / "work")
    assert not (tmp_path / "work").exists()
    auto = config_from_dict(data)
    without_weights = pipeline._anatomy_key("ingest-key", auto)
    _fake_weights(tmp_path / "w", *_FASTEST)
    pipeline._SEGMENTERS.clear()  # a new run
    assert pipeline._anatomy_key("ingest-key", auto) != without_weights


def _write_checkpoint(path: Path, content: bytes) -> Path:
    """A fake checkpoint (torch's zip format) holding ``content``: other weights, e.g. a fine-tuned one."""
    with zipfile.ZipFile(path, "w") as checkpoint:
        checkpoint.writestr(zipfile.ZipInfo("archive/data.pkl"), content)
    return path


def test_the_segmenter_version_names_the_weights_bytes(tmp_path, monkeypatch):
    """Weights swapped in place under the same folder names (a fine-tuned checkpoint, a newer release of the
    task) made the same source, so cached masks of the old weights were reused and a dataset could not tell
    which weights made its masks. The version carries a fingerprint of the files nnU-Net loads."""
    from ctcorpus import pipeline
    from ctcorpus.anatomy import totalseg, weights_fingerprint
    from ctcorpus.cli import demo_config
    from ctcorpus.config import config_from_dict

    def version(root: Path) -> str:
        config = AnatomyConfig(backend="totalsegmentator", weights_path=root, home_dir=tmp_path / "home")
        return TotalSegmentatorSegmenter(config).version

    folder = _fake_weights(tmp_path / "w", *_FASTEST)
    first = version(tmp_path / "w")
    assert re.fullmatch(r"\d+\.\d+\.\d+.*-task298-weights[0-9a-f]{12}", first), first
    assert first.endswith(weights_fingerprint(AnatomyConfig(weights_path=tmp_path / "w"))[:12])
    assert version(tmp_path / "w") == first  # the same weights: the same source
    shutil.copytree(tmp_path / "w", tmp_path / "elsewhere")
    assert version(tmp_path / "elsewhere") == first  # in another folder (or host) too
    data = demo_config(tmp_path) | {"anatomy": {"weights_path": str(tmp_path / "w"), "home_dir": str(tmp_path / "h")}}
    monkeypatch.setattr(pipeline, "_SEGMENTERS", {})
    key = pipeline._anatomy_key("ingest-key", config_from_dict(data))

    checkpoint = _write_checkpoint(folder / "fold_0" / "checkpoint_final.pth", b"fine-tuned")  # in place
    second = version(tmp_path / "w")
    assert second != first and second.startswith(first[: -len("weights") - 12])
    pipeline._SEGMENTERS.clear()  # the next run: its masks are made again, not reused
    assert pipeline._anatomy_key("ingest-key", config_from_dict(data)) != key
    replacement = _write_checkpoint(tmp_path / "new.pth", b"fine-tunes")
    assert replacement.stat().st_size == checkpoint.stat().st_size
    os.replace(replacement, checkpoint)  # another file of the same size, moved in
    assert version(tmp_path / "w") not in (first, second)
    (folder / "plans.json").write_text('{"plans_name": "nnUNetPlans"}')  # the plans are part of the weights
    assert version(tmp_path / "w") not in (first, second)

    hashed = []
    monkeypatch.setattr(totalseg, "sha256_file", lambda path: hashed.append(path) or "digest")
    version(tmp_path / "w")
    assert hashed == []  # each file is read once per process: a segmenter per worker re-hashes no GBs
    (folder / "dataset.json").write_text('{"labels": {}}')
    version(tmp_path / "w")
    assert hashed == [folder / "dataset.json"]


def test_missing_weights_fail_before_any_file_is_hashed(tmp_path, monkeypatch):
    """No weights still fails fast with the provisioning steps, reading no checkpoint first."""
    from ctcorpus.anatomy import totalseg

    folder = _fake_weights(tmp_path / "w", *_FASTEST)
    (folder / "dataset.json").unlink()
    monkeypatch.setattr(totalseg, "sha256_file", lambda path: pytest.fail(f"hashed {path}"))
    config = AnatomyConfig(backend="totalsegmentator", weights_path=tmp_path / "w", home_dir=tmp_path / "home")
    with pytest.raises(AnatomyError, match="not provisioned"):
        make_segmenter(config)


def test_an_unreadable_weights_file_fails_at_construction_naming_it(tmp_path, monkeypatch):
    """Fingerprinting reads every checkpoint whole: a read error is an AnatomyError naming the file."""
    from ctcorpus.anatomy import totalseg

    def refuse(path):
        raise PermissionError(13, "Permission denied", str(path))

    folder = _fake_weights(tmp_path / "w", *_FASTEST)
    monkeypatch.setattr(totalseg, "sha256_file", refuse)
    with pytest.raises(AnatomyError, match="weights file cannot be read") as info:
        TotalSegmentatorSegmenter(AnatomyConfig(backend="totalsegmentator", weights_path=tmp_path / "w",
                                                home_dir=tmp_path / "home"))
    assert Path(info.value.path).parent in (folder, folder / "fold_0")


def test_nifti_geometry_round_trip(tmp_path):
    """The input/output conversion of the TotalSegmentator backend keeps an oblique, flipped grid."""
    rng = np.random.default_rng(3)
    array = rng.integers(0, 118, size=(7, 9, 11)).astype(np.uint8)
    angle = np.deg2rad(10)
    direction = (-np.cos(angle), -np.sin(angle), 0, np.sin(angle), -np.cos(angle), 0, 0, 0, 1)
    image = _image(array, (2.5, 0.8, 0.7), (12.5, -40.0, 300.0), direction)
    path = write_nifti(image, tmp_path / "in.nii")
    back = label_map_from_nifti(nib.load(path), image, tmp_path / "out.nii")
    assert same_grid(back, image, tolerance=1e-4)
    assert np.array_equal(sitk.GetArrayFromImage(back), array)


def _fake_predictor_class(loads: list) -> type:
    """An nnU-Net predictor that records each model folder it reads."""

    class FakePredictor:
        def __init__(self, device: str = "cpu") -> None:
            self.device = device

        def initialize_from_trained_model_folder(self, folder, use_folds, checkpoint_name="checkpoint_final.pth"):
            loads.append(folder)
            for name in ("plans_manager", "configuration_manager", "list_of_parameters", "network",
                         "dataset_json", "trainer_name", "allowed_mirroring_axes", "label_manager"):
                setattr(self, name, f"{name}-{len(loads)}")

    return FakePredictor


def test_loaded_models_are_kept_across_cases():
    """The predictor subclass installed per call reads a model folder once per segmenter, not per case."""
    loads = []
    cache: dict = {}
    cached = _cached_predictor_class(_fake_predictor_class(loads), cache)
    first, second = cached(), cached()
    first.initialize_from_trained_model_folder("/w/Dataset298", [0])
    second.initialize_from_trained_model_folder("/w/Dataset298", [0])
    assert loads == ["/w/Dataset298"] and second.network == first.network == "network-1"
    cached().initialize_from_trained_model_folder("/w/Dataset297", [0])
    assert len(loads) == 2 and len(cache) == 2
    assert isinstance(make_segmenter(AnatomyConfig(backend="threshold")), Segmenter)


def test_a_segmenter_loads_each_model_once_across_its_calls(tmp_path, monkeypatch):
    """TotalSegmentator builds a new ``totalsegmentator.nnunet.nnUNetPredictor`` per case (its #383, #523, #581):
    every call of one segmenter must find the cached subclass there, all calls sharing one cache."""
    from totalsegmentator import nnunet

    loads = []
    original = _fake_predictor_class(loads)
    monkeypatch.setattr(nnunet, "nnUNetPredictor", original)
    _fake_weights(tmp_path / "w", *_FASTEST)
    segmenter = TotalSegmentatorSegmenter(
        AnatomyConfig(backend="totalsegmentator", weights_path=tmp_path / "w", home_dir=tmp_path / "home")
    )
    for _ in range(3):  # three cases, as TotalSegmentator's nnunet.nnUNet_predict builds them
        with segmenter._environment():
            assert issubclass(nnunet.nnUNetPredictor, original)
            nnunet.nnUNetPredictor(device="cpu").initialize_from_trained_model_folder("/w/Dataset298", [0])
        assert nnunet.nnUNetPredictor is original
    assert loads == ["/w/Dataset298"]


_E2E_SCRIPT = """
import json, sys
sys.modules["torchvision"] = None  # PyPI's torchvision does not match the CPU torch: it must not be needed
if __name__ == "__main__":
    from pathlib import Path
    import numpy as np, SimpleITK as sitk
    from ctcorpus.anatomy import make_segmenter, segment_volume
    from ctcorpus.anatomy.testing import fabricate_totalseg_weights
    from ctcorpus.config.anatomy import AnatomyConfig

    tmp = Path(sys.argv[1])
    fabricate_totalseg_weights(tmp / "weights", 298)
    config = AnatomyConfig(backend="auto", mode="fastest", device="cpu",
                           weights_path=tmp / "weights", home_dir=tmp / "home")
    segmenter = make_segmenter(config)
    from nnunetv2.inference import predict_from_raw_data  # how nnU-Net's predictor looks trainers up
    trainer = predict_from_raw_data.recursive_find_trainer_class_by_name("nnUNetTrainer_4000epochs_NoMirroring")
    z, y, x = np.mgrid[:10, :24, :20]
    hu = np.where((y - 12) ** 2 + (x - 9) ** 2 < 64, 40, -1000).astype(np.int16)
    image = sitk.GetImageFromArray(hu)
    image.SetSpacing((7.0, 6.5, 9.0)); image.SetOrigin((100.0, -50.0, 20.0))
    c, s = np.cos(np.deg2rad(10)), np.sin(np.deg2rad(10))
    image.SetDirection((-c, -s, 0, -s, c, 0, 0, 0, 1))  # x flipped and tilted 10 degrees in plane
    seg = segment_volume(image, config, segmenter)
    print(json.dumps({
        "source": seg.source, "backend": segmenter.name,
        "size": seg.labels.GetSize(), "spacing": seg.labels.GetSpacing(), "origin": seg.labels.GetOrigin(),
        "direction": seg.labels.GetDirection(), "pixel": seg.labels.GetPixelIDTypeAsString(),
        "values": sorted(int(v) for v in np.unique(seg.array())), "table": sorted(seg.label_table),
        "trainer": trainer.__name__, "timm": "timm" in sys.modules,
        "config": json.loads((tmp / "home" / "config.json").read_text()),
        "env_restored": not {"TOTALSEG_WEIGHTS_PATH", "nnUNet_results"} & set(__import__("os").environ),
    }))
"""


@pytest.mark.slow
def test_totalsegmentator_end_to_end_with_fabricated_weights(tmp_path):
    """The whole TotalSegmentator path offline, without torchvision, on random weights (labels meaningless)."""
    script = tmp_path / "run_totalseg.py"
    script.write_text(textwrap.dedent(_E2E_SCRIPT), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TOTALSEG_", "nnUNet_"))}
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path)], capture_output=True, text=True, timeout=300, cwd=PROJECT, env=env
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["backend"] == "totalsegmentator" and re.search(r"-task298-weights[0-9a-f]{12}$", out["source"])
    assert out["size"] == [20, 24, 10] and out["spacing"] == [7.0, 6.5, 9.0]
    c, s = np.cos(np.deg2rad(10)), np.sin(np.deg2rad(10))
    assert out["origin"] == [100.0, -50.0, 20.0] and np.allclose(out["direction"], [-c, -s, 0, -s, c, 0, 0, 0, 1])
    assert "grid differs" not in done.stderr  # TotalSegmentator returned the input's grid itself
    assert out["pixel"] == "8-bit unsigned integer"
    assert set(out["values"]) - {0} <= set(out["table"]) and len(out["table"]) == 117
    assert out["trainer"] == "nnUNetTrainer_4000epochs_NoMirroring" and out["timm"] is False
    assert out["config"]["send_usage_stats"] is False
    assert out["env_restored"]


@pytest.mark.skipif(
    not os.environ.get("CTCORPUS_TOTALSEG_WEIGHTS"), reason="set CTCORPUS_TOTALSEG_WEIGHTS to a real weights folder"
)
def test_totalsegmentator_real_weights_against_reference(shared_data, tmp_path):
    """Real model (weights folder from CTCORPUS_TOTALSEG_WEIGHTS) vs TotalSegmentator's own reference."""
    folder = shared_data / "totalsegmentator_reference"
    config = AnatomyConfig(
        backend="totalsegmentator", mode="fast", weights_path=Path(os.environ["CTCORPUS_TOTALSEG_WEIGHTS"]),
        home_dir=tmp_path / "home",
    )
    segmenter = TotalSegmentatorSegmenter(config)
    ct = sitk.ReadImage(str(folder / "example_ct_sm.nii.gz"))
    seg = segment_volume(ct, config, segmenter)
    reference = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "example_seg_fast.nii.gz")))
    assert same_grid(seg.labels, ct)
    for value in (5, 14):  # liver and the right lower lobe: present in the reference
        assert dice(seg.array() == value, reference == value) >= 0.8
