"""Fabricated TotalSegmentator weights, so the whole TotalSegmentator code path runs offline.

A random-weights nnU-Net model folder with the layout, plans and label set of a real task lets tests
and benchmarks exercise everything real weights would (weight checks, trainer lookup, resampling to
the model's spacing, prediction, mapping back to the input grid) in seconds on a CPU. Only the
labels it predicts are meaningless.
"""

from __future__ import annotations

import json
from pathlib import Path

#: Trainer and plans of TotalSegmentator's fast (3 mm) and fastest (6 mm) ``total`` models.
_TRAINER = "nnUNetTrainer_4000epochs_NoMirroring"
_SPACING_MM = {297: 3.0, 298: 6.0}


def fabricate_totalseg_weights(weights_dir: str | Path, task_id: int = 298, seed: int = 0) -> Path:
    """Write a tiny random-weights nnU-Net model for TotalSegmentator task 297 or 298 under ``weights_dir``.

    The folder (``Dataset298_TotalSegmentator_total_6mm_1559subj/nnUNetTrainer_4000epochs_NoMirroring__
    nnUNetPlans__3d_fullres``) holds ``dataset.json`` (the ``total`` classes plus background),
    ``plans.json`` (a 3-stage ``PlainConvUNet`` at the task's spacing, CT normalization) and
    ``fold_0/checkpoint_final.pth``.

    Returns
    -------
    Path
        The model folder.

    Examples
    --------
    >>> folder = fabricate_totalseg_weights(tmp_path / "weights")   # doctest: +SKIP
    >>> AnatomyConfig(backend="totalsegmentator", weights_path=tmp_path / "weights")  # doctest: +SKIP
    """
    import torch
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
    from totalsegmentator.map_tasks_config import TASK_ID_WEIGHTS_CONFIGS
    from totalsegmentator.map_to_binary import class_map

    if task_id not in _SPACING_MM:
        raise ValueError(f"can fabricate tasks {sorted(_SPACING_MM)} only, not {task_id}")
    dataset = TASK_ID_WEIGHTS_CONFIGS[task_id]["foldername"]
    folder = Path(weights_dir) / dataset / f"{_TRAINER}__nnUNetPlans__3d_fullres"
    (folder / "fold_0").mkdir(parents=True, exist_ok=True)
    labels = {"background": 0} | {name: int(value) for value, name in sorted(class_map["total"].items())}
    (folder / "dataset.json").write_text(
        json.dumps({"channel_names": {"0": "CT"}, "labels": labels, "numTraining": 1, "file_ending": ".nii.gz"}),
        encoding="utf-8",
    )
    spacing = [_SPACING_MM[task_id]] * 3
    arch_kwargs = {
        "n_stages": 3,
        "features_per_stage": [4, 8, 16],
        "conv_op": "torch.nn.modules.conv.Conv3d",
        "kernel_sizes": [[3, 3, 3]] * 3,
        "strides": [[1, 1, 1], [2, 2, 2], [2, 2, 2]],
        "n_conv_per_stage": [1, 1, 1],
        "n_conv_per_stage_decoder": [1, 1],
        "conv_bias": True,
        "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
        "norm_op_kwargs": {"eps": 1e-05, "affine": True},
        "dropout_op": None,
        "dropout_op_kwargs": None,
        "nonlin": "torch.nn.LeakyReLU",
        "nonlin_kwargs": {"inplace": True},
    }
    resample = "resample_data_or_seg_to_shape"
    plans = {
        "dataset_name": dataset,
        "plans_name": "nnUNetPlans",
        "original_median_spacing_after_transp": spacing,
        "original_median_shape_after_transp": [64, 64, 64],
        "image_reader_writer": "SimpleITKIO",
        "transpose_forward": [0, 1, 2],
        "transpose_backward": [0, 1, 2],
        "experiment_planner_used": "ExperimentPlanner",
        "label_manager": "LabelManager",
        "foreground_intensity_properties_per_channel": {
            "0": {
                "max": 3071.0,
                "mean": 40.0,
                "median": 40.0,
                "min": -1024.0,
                "percentile_00_5": -1000.0,
                "percentile_99_5": 1500.0,
                "std": 300.0,
            }
        },
        "configurations": {
            "3d_fullres": {
                "data_identifier": "nnUNetPlans_3d_fullres",
                "preprocessor_name": "DefaultPreprocessor",
                "batch_size": 2,
                "patch_size": [32, 32, 32],
                "median_image_size_in_voxels": [64, 64, 64],
                "spacing": spacing,
                "normalization_schemes": ["CTNormalization"],
                "use_mask_for_norm": [False],
                "resampling_fn_data": resample,
                "resampling_fn_data_kwargs": {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None},
                "resampling_fn_seg": resample,
                "resampling_fn_seg_kwargs": {"is_seg": True, "order": 1, "order_z": 0, "force_separate_z": None},
                "resampling_fn_probabilities": resample,
                "resampling_fn_probabilities_kwargs": {
                    "is_seg": False,
                    "order": 1,
                    "order_z": 0,
                    "force_separate_z": None,
                },
                "architecture": {
                    "network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
                    "arch_kwargs": arch_kwargs,
                    "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
                },
                "batch_dice": False,
            }
        },
    }
    (folder / "plans.json").write_text(json.dumps(plans, indent=1), encoding="utf-8")
    torch.manual_seed(seed)
    architecture = plans["configurations"]["3d_fullres"]["architecture"]
    network = get_network_from_plans(
        architecture["network_class_name"],
        architecture["arch_kwargs"],
        architecture["_kw_requires_import"],
        input_channels=1,
        output_channels=len(labels),
        deep_supervision=False,
    )
    torch.save(
        {
            "network_weights": network.state_dict(),
            "trainer_name": _TRAINER,
            "init_args": {"configuration": "3d_fullres"},
            "inference_allowed_mirroring_axes": None,
        },
        folder / "fold_0" / "checkpoint_final.pth",
    )
    return folder
