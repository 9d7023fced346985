"""The TotalSegmentator backend: provisioned weights only, one long-lived model per process.

TotalSegmentator (``totalsegmentator.python_api.totalsegmentator``, v2.x) is configured through
environment variables and a ``config.json`` in its home folder, downloads missing weights from GitHub
at run time, posts usage statistics, and re-reads its checkpoint for every case. This module keeps it
offline and quiet: weights must already be provisioned (checked before any work, with a message that
says how to provision them), the environment is set for the call only, ``send_usage_stats`` is
false, loaded networks are kept across calls by the segmenter object, and a case that runs out of
memory is segmented again in three chunks along z.

nnU-Net looks a trainer class up by importing every module of its trainer folder, some of which
import timm -> torchvision, whose PyPI build does not match the CPU torch (the project removes it).
:func:`register_nnunet_trainers` puts the trainer classes TotalSegmentator's models name into
TotalSegmentator's own lookup table first, so that scan never happens.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import logging
import os
import shutil
import tempfile
import weakref
import zipfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from ctcorpus.anatomy.base import Segmentation, same_grid
from ctcorpus.config.anatomy import AnatomyConfig
from ctcorpus.enums import QuarantineReason
from ctcorpus.errors import AnatomyError
from ctcorpus.outputs.store import atomic_write_bytes
from ctcorpus.records import sha256_file, sha256_of_hashes

log = logging.getLogger(__name__)

#: Trainer class name -> module under ``nnunetv2.training.nnUNetTrainer`` that defines it: every nnU-Net
#: trainer TotalSegmentator's task table names (its own custom trainers it registers itself).
_TRAINER_MODULES: Mapping[str, str] = {
    "nnUNetTrainer": "nnUNetTrainer",
    "nnUNetTrainerNoMirroring": "variants.data_augmentation.nnUNetTrainerNoMirroring",
    "nnUNetTrainer_onlyMirror01": "variants.data_augmentation.nnUNetTrainerNoMirroring",
    "nnUNetTrainer_DASegOrd0": "variants.data_augmentation.nnUNetTrainerDAOrd0",
    "nnUNetTrainer_DASegOrd0_NoMirroring": "variants.data_augmentation.nnUNetTrainerDAOrd0",
    "nnUNetTrainer_2000epochs_NoMirroring": "variants.training_length.nnUNetTrainer_Xepochs_NoMirroring",
    "nnUNetTrainer_4000epochs_NoMirroring": "variants.training_length.nnUNetTrainer_Xepochs_NoMirroring",
}
#: The 6 mm model TotalSegmentator runs first to crop (``roi_subset``, tasks with ``crop``).
_CROP_TASK_ID = 298
#: Task -> the task whose model TotalSegmentator's python_api also runs for it, named in no task setting:
#: ``vertebrae_pp_refined`` refines its vertebrae with the vertebral-body model (task 305).
_EXTRA_TASKS: Mapping[str, str] = {"vertebrae_pp_refined": "vertebrae_body"}
#: Hex digits of :func:`weights_fingerprint` a segmenter's version carries (48 bits: enough to tell weights apart).
_WEIGHTS_DIGITS = 12


def register_nnunet_trainers() -> tuple[str, ...]:
    """Register the nnU-Net trainer classes TotalSegmentator needs in its own lookup table.

    TotalSegmentator's ``totalsegmentator.nnunet.custom_trainers`` dict is consulted before nnU-Net
    imports every module of its trainer folder (some import timm -> torchvision, which breaks with the
    CPU torch). Importing the few modules that define the needed classes directly avoids that scan.
    Idempotent.

    Returns
    -------
    tuple of str
        The trainer names now registered.

    Examples
    --------
    >>> "nnUNetTrainer_4000epochs_NoMirroring" in register_nnunet_trainers()   # doctest: +SKIP
    True
    """
    from totalsegmentator import nnunet

    base = "nnunetv2.training.nnUNetTrainer"
    for name, module in _TRAINER_MODULES.items():
        nnunet.custom_trainers.setdefault(name, getattr(importlib.import_module(f"{base}.{module}"), name))
    return tuple(sorted(nnunet.custom_trainers))


def totalsegmentator_version() -> str:
    """Installed TotalSegmentator version, or ``""`` when it is not installed."""
    try:
        return importlib.metadata.version("TotalSegmentator")
    except importlib.metadata.PackageNotFoundError:
        return ""


def _task_settings(config: AnatomyConfig) -> dict[str, Any]:
    """TotalSegmentator's own settings (task ids, trainer, resampling) for the configured task and mode."""
    from totalsegmentator.map_tasks_config import DEFAULT_CONFIG, TASK_CONFIGS

    if config.task not in TASK_CONFIGS:
        raise AnatomyError(
            f"unknown TotalSegmentator task {config.task!r}; set anatomy.task to one of {sorted(TASK_CONFIGS)}",
            reason=QuarantineReason.STAGE_FAILED,
        )
    raw = TASK_CONFIGS[config.task]
    settings = dict(DEFAULT_CONFIG)
    if "sub_modes" in raw:
        modes = raw["sub_modes"]
        # like TotalSegmentator: a task without 'fastest' runs 'fast' for it
        fallback = "fast" if config.mode != "default" and "fast" in modes else "default"
        mode = config.mode if config.mode in modes else fallback
        settings.update(modes[mode])
    else:
        if raw.get("disallow_fast") and config.mode == "fast":  # TotalSegmentator raises in every call
            raise AnatomyError(
                f"TotalSegmentator task {config.task!r} does not run in mode 'fast'; set anatomy.mode to 'default' "
                "(the task has one resolution)",
                reason=QuarantineReason.STAGE_FAILED,
            )
        settings.update(raw)
    return settings


def _crop_model(config: AnatomyConfig, settings: Mapping[str, Any]) -> tuple[int, str] | None:
    """(task id, trainer) of the rough model TotalSegmentator runs first to crop, as its python_api picks it.

    Tasks with ``crop`` (lung_vessels, liver_vessels, ...), ``cascade`` or an ``roi_subset`` run it; a
    task naming its own ``crop_model`` runs that task instead (see :func:`_models`).
    """
    crop = settings.get("crop")
    if (crop is None and not config.roi_subset and not settings.get("cascade")) or settings.get("crop_model"):
        return None
    if crop is not None and {"body_trunc", "body_extremities"} & set(crop):
        return 300, "nnUNetTrainer"
    if config.task.endswith("_mr"):
        return 852, "nnUNetTrainer_2000epochs_NoMirroring"
    return (297 if settings.get("robust_crop") else _CROP_TASK_ID), "nnUNetTrainer_4000epochs_NoMirroring"


def _models(config: AnatomyConfig) -> tuple[tuple[int, str, tuple[str, ...]], ...]:
    """(task id, model folder name, fold folder names) of every nnU-Net model a run with ``config`` loads.

    No fold names: the task names none, and nnU-Net loads every ``fold_N`` it finds.
    """
    settings = _task_settings(config)
    task_ids = settings["task_id"] if isinstance(settings["task_id"], list) else [settings["task_id"]]
    folder = f"{settings['trainer']}__{settings['plans'] or 'nnUNetPlans'}__{settings['model']}"
    folds = tuple(f"fold_{f}" for f in settings["folds"] or ())
    models = [(int(i), folder, folds) for i in task_ids]
    if (crop := _crop_model(config, settings)) is not None:
        models.append((crop[0], f"{crop[1]}__nnUNetPlans__3d_fullres", ("fold_0",)))
    for task in (settings.get("crop_model"), _EXTRA_TASKS.get(config.task)):
        if task:
            models.extend(_models(config.model_copy(update={"task": task, "mode": "default", "roi_subset": None})))
    return tuple(dict.fromkeys(models))


def required_task_ids(config: AnatomyConfig) -> tuple[int, ...]:
    """The TotalSegmentator task ids whose weights a run with ``config`` loads (sorted), crop and refining models too.

    >>> required_task_ids(AnatomyConfig(mode="fastest"))
    (298,)
    """
    return tuple(sorted({task_id for task_id, _, _ in _models(config)}))


def _home_dir(config: AnatomyConfig) -> Path:
    """TotalSegmentator's home: ``anatomy.home_dir``, else ``$TOTALSEG_HOME_DIR``, else ``~/.totalsegmentator``.

    Where the home is ``/`` (a container run as a user without a passwd entry) TotalSegmentator's own tools
    (``totalseg_download_weights``, ``totalseg_set_license``) use ``/tmp/.totalsegmentator``: so must this,
    or provisioned weights read as missing and the license as absent.
    """
    if config.home_dir is not None:
        return Path(config.home_dir)
    if "TOTALSEG_HOME_DIR" in os.environ:
        return Path(os.environ["TOTALSEG_HOME_DIR"])
    home = Path.home()
    return (Path("/tmp") if str(home) == "/" else home) / ".totalsegmentator"


def weights_dir(config: AnatomyConfig) -> Path:
    """Folder that must hold the ``DatasetNNN_*`` weight folders (TotalSegmentator's resolution order).

    ``anatomy.weights_path``, else ``$TOTALSEG_WEIGHTS_PATH``, else ``<home>/nnunet/results`` where home
    is :func:`_home_dir`.
    """
    if config.weights_path is not None:
        return Path(config.weights_path)
    if "TOTALSEG_WEIGHTS_PATH" in os.environ:
        return Path(os.environ["TOTALSEG_WEIGHTS_PATH"])
    return _home_dir(config) / "nnunet" / "results"


def _weight_folder(task_id: int) -> str:
    from totalsegmentator.map_tasks_config import TASK_ID_WEIGHTS_CONFIGS

    info = TASK_ID_WEIGHTS_CONFIGS[task_id]
    return str(Path(info.get("rel_path") or "") / info["foldername"])


def _weight_url(task_id: int) -> str:
    """Where TotalSegmentator itself would download a task's weights zip from."""
    from totalsegmentator.map_tasks_config import TASK_ID_WEIGHTS_CONFIGS

    info = TASK_ID_WEIGHTS_CONFIGS[task_id]
    return f"https://github.com/wasserth/TotalSegmentator/releases/download/{info.get('version')}/{info['foldername']}.zip"


def _model_files(folder: Path, folds: tuple[str, ...]) -> tuple[Path, ...]:
    """The files nnU-Net loads from the model ``folder``, present or not.

    ``plans.json``, ``dataset.json`` and each fold's checkpoint; with no fold named, each ``fold_N``
    (not ``fold_all``) that has a checkpoint.
    """
    checkpoints = [folder / fold / "checkpoint_final.pth" for fold in folds] or [
        path for path in sorted(folder.glob("fold_*/checkpoint_final.pth")) if path.parent.name != "fold_all"
    ]
    return (folder / "plans.json", folder / "dataset.json", *checkpoints)


def _weight_problems(folder: Path, folds: tuple[str, ...]) -> tuple[str, ...]:
    """What keeps nnU-Net from loading the model in ``folder``, one ``<path> (<reason>)`` each; () if nothing.

    Every file of :func:`_model_files` must be there, with at least one checkpoint. A copy cut short
    (an empty file, a JSON file that does not parse, a checkpoint without the end record of torch's zip
    format) counts too: it would pass a presence check and then fail on every volume. So does a folder or
    file this process may not read (weights provisioned as root under ``/root``): its OS error is the reason,
    where it raised a bare ``PermissionError`` out of the backend choice. The checks read the JSON files and a
    checkpoint's last bytes only.
    """
    try:
        if not folder.is_dir():
            return (f"{folder} (absent)",)
        files = _model_files(folder, folds)
    except OSError as error:
        return (_unreadable(Path(error.filename or folder), error),)
    if not any(path.suffix == ".pth" for path in files):
        return (f"{folder}/fold_N/checkpoint_final.pth (absent)",)
    return tuple(problem for problem in map(_file_problem, files) if problem)


def _file_problem(path: Path) -> str | None:
    """Why nnU-Net could not load the weights file at ``path`` (``<path> (<reason>)``); None if nothing."""
    try:
        if not path.is_file():
            return f"{path} (absent)"
        with path.open("rb") as file:
            if path.suffix == ".json" and not _parses_as_json(file.read()):
                return f"{path} (not valid JSON: a partial copy?)"
            if path.suffix == ".pth" and not zipfile.is_zipfile(file):
                return f"{path} (not a complete torch checkpoint: a partial copy?)"
    except OSError as error:
        return _unreadable(path, error)
    return None


def _unreadable(path: Path, error: OSError) -> str:
    return f"{path} (cannot be read: {error.strerror or error})"


def _parses_as_json(data: bytes) -> bool:
    try:
        json.loads(data)
    except ValueError:
        return False
    return True


def _unusable_weights(config: AnatomyConfig) -> dict[int, tuple[str, ...]]:
    """Task id -> the problems of its model folder under :func:`weights_dir`, for the tasks that have any."""
    root = weights_dir(config)
    found: dict[int, tuple[str, ...]] = {}
    for task_id, folder, folds in _models(config):
        if problems := _weight_problems(root / _weight_folder(task_id) / folder, folds):
            found[task_id] = found.get(task_id, ()) + problems
    return dict(sorted(found.items()))


def missing_weights(config: AnatomyConfig) -> tuple[int, ...]:
    """Task ids whose model folder under :func:`weights_dir` lacks a file nnU-Net loads, or holds a broken one (sorted).

    The exact folder TotalSegmentator loads (``DatasetNNN_*/<trainer>__<plans>__<model>``) must hold
    ``plans.json``, ``dataset.json`` and ``fold_N/checkpoint_final.pth``, complete: a partial copy or
    another trainer's folder would pass a looser check and then fail on every volume.
    """
    return tuple(_unusable_weights(config))


#: sha256 of a weight file by (path, device, inode, size, mtime_ns, ctime_ns): each file is read once per
#: process, and one replaced or rewritten in place (a new inode, size or change time) is read again.
_FILE_DIGESTS: dict[tuple[str, int, int, int, int, int], str] = {}


def _file_digest(path: Path) -> str:
    """sha256 of a weight file, from :data:`_FILE_DIGESTS` while the file is unchanged; ``absent`` if none.

    A file that cannot be read raises :class:`~ctcorpus.errors.AnatomyError` naming it.
    """
    try:
        if not path.is_file():
            return "absent"
        stat = path.stat()
        key = (str(path.resolve()), stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)
        if key not in _FILE_DIGESTS:
            _FILE_DIGESTS[key] = sha256_file(path)
    except OSError as error:
        raise AnatomyError(
            f"TotalSegmentator weights file cannot be read ({error.strerror or error})", path=path
        ) from None
    return _FILE_DIGESTS[key]


def weights_fingerprint(config: AnatomyConfig) -> str:
    """sha256 over the bytes of every file nnU-Net loads for ``config`` (:func:`_model_files` of each model).

    TotalSegmentator records no weights version in the folders it unpacks, and a fine-tuned checkpoint
    or another release of a task keeps the folder's name: only the bytes tell the weights apart. Files
    are named relative to :func:`weights_dir` (the same weights in another folder or on another host
    give the same fingerprint); an absent one counts as absent. Each file is hashed once per process
    (:func:`_file_digest`).

    >>> weights_fingerprint(AnatomyConfig(weights_path="/opt/totalseg/weights"))   # doctest: +SKIP
    '3f9a0c1b2d4e...'
    """
    root = weights_dir(config)
    entries = []
    for task_id, folder, folds in _models(config):
        for path in _model_files(root / _weight_folder(task_id) / folder, folds):
            entries.append(f"{path.relative_to(root).as_posix()} {_file_digest(path)}")
    return sha256_of_hashes(entries)


def _ambiguous_weights(config: AnatomyConfig) -> dict[int, tuple[str, ...]]:
    """Task id -> its folders under :func:`weights_dir`, for the tasks ``config`` needs that have several.

    nnU-Net finds a task's folder by its ``DatasetNNN`` prefix and refuses to choose between two (an
    older TotalSegmentator's ``Dataset297_..._v204`` beside the current one, a second copy), on every
    volume. TotalSegmentator's own download deletes known old versions; ctcorpus never calls it.
    """
    root = weights_dir(config)
    found = {
        task_id: tuple(sorted(path.name for path in root.glob(f"Dataset{task_id:03d}*") if path.is_dir()))
        for task_id in required_task_ids(config)
    }
    return {task_id: names for task_id, names in found.items() if len(names) > 1}


def _download_tasks(config: AnatomyConfig, missing: tuple[int, ...]) -> list[str]:
    """``totalseg_download_weights -t`` tasks that fetch ``missing``, the configured task first.

    Per task id the download task with the fewest ids that holds it: a task's name there need not
    fetch its fast model (``body`` is 299, ``body_fast`` 300) or its crop model.
    """
    from totalsegmentator.bin.totalseg_download_weights import TASK_TO_ID

    tasks: set[str] = set()
    for task_id in missing:
        holders = [task for task, ids in TASK_TO_ID.items() if task_id in ids]
        if holders and not tasks & set(holders):
            tasks.add(min(holders, key=lambda task: (len(TASK_TO_ID[task]), task != config.task, task)))
    return sorted(tasks, key=lambda task: (task != config.task, task))


def provisioning_message(config: AnatomyConfig, missing: tuple[int, ...]) -> str:
    """What an operator must do to provision the weights of ``missing`` tasks, exactly."""
    root = weights_dir(config)
    folders = ", ".join(f"{_weight_folder(i)}/{folder} (task {i})" for i, folder, _ in _models(config) if i in missing)
    problems = "; ".join(p for i, found in _unusable_weights(config).items() if i in missing for p in found)
    detail = f" ({problems})" if problems else ""
    tasks = _download_tasks(config, missing)
    download = " && ".join(f"TOTALSEG_HOME_DIR=/tmp/ts totalseg_download_weights -t {task}" for task in tasks)
    fetch = f"on a machine with internet run `{download}` (the folders appear in /tmp/ts/nnunet/results), or " if tasks else ""
    return (
        f"TotalSegmentator weights for task {config.task!r} (mode {config.mode!r}) are not provisioned: "
        f"missing or incomplete {folders} under {root}{detail}. To provision them offline: (1) {fetch}"
        f"download {' and '.join(_weight_url(i) for i in missing)}; (2) copy the folders "
        f"into {root}, or run `TOTALSEG_WEIGHTS_PATH={root} totalseg_import_weights -i <folder>.zip` per zip, "
        f"or set anatomy.weights_path (or TOTALSEG_WEIGHTS_PATH) to the folder that holds them. Run-time "
        f"download is off (anatomy.allow_download: false); anatomy.backend 'threshold' runs without weights."
    )


def totalsegmentator_ready(config: AnatomyConfig) -> bool:
    """True when TotalSegmentator is installed and every weight folder ``config`` needs is present."""
    return bool(totalsegmentator_version()) and not missing_weights(config)


#: What ``config.json`` must say for TotalSegmentator to stay quiet (no usage statistics, no disclaimer).
_QUIET = {"send_usage_stats": False, "statistics_disclaimer_shown": True}


def _quiet_config(home: Path) -> dict[str, Any]:
    """``<home>/config.json`` with :data:`_QUIET` set, written only where it said otherwise.

    Worker processes build their segmenters at once: the file is replaced whole (a concurrent reader
    never sees it half-written) and an already quiet one is not written at all (a read-only home works).
    A home that cannot be made, read or written, or a config.json that is no JSON object, raises
    :class:`~ctcorpus.errors.AnatomyError` naming it before any work, not a bare ``OSError`` or ``TypeError``.
    """
    path = home / "config.json"
    try:
        home.mkdir(parents=True, exist_ok=True)
        data = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
        if not isinstance(data, dict):
            raise TypeError(f"a JSON {type(data).__name__}, not an object")
        quiet = {"totalseg_id": "totalseg_ctcorpus", "prediction_counter": 0} | data | _QUIET
        if quiet != data:
            atomic_write_bytes(path, json.dumps(quiet, indent=4).encode("utf-8"))
    except (ValueError, TypeError) as error:  # JSONDecodeError, UnicodeDecodeError, no object
        raise AnatomyError(
            f"TotalSegmentator config.json is not a valid JSON object ({error}); fix or delete it", path=path
        ) from None
    except OSError as error:
        raise AnatomyError(
            f"TotalSegmentator home {home} is not usable ({error.strerror or error}): fix it, or set "
            "anatomy.home_dir (or TOTALSEG_HOME_DIR) to a folder ctcorpus can write",
            path=error.filename or home,
        ) from None
    return quiet


def write_nifti(image: sitk.Image, path: Path) -> Path:
    """Write ``image`` as NIfTI for TotalSegmentator (SimpleITK converts LPS to the NIfTI RAS affine)."""
    pixel = image if image.GetPixelID() != sitk.sitkFloat64 else sitk.Cast(image, sitk.sitkFloat32)
    sitk.WriteImage(pixel, str(path))
    return path


def label_map_from_nifti(nifti: Any, reference: sitk.Image, scratch: Path) -> sitk.Image:
    """A nibabel label image as a uint8 SimpleITK image on ``reference``'s exact grid.

    The image goes through a NIfTI file so nibabel's RAS affine and SimpleITK's LPS geometry are
    converted by the two libraries' own readers and writers; a grid that differs beyond
    rounding is resampled (nearest neighbour) rather than relabelled.
    """
    import nibabel as nib

    nib.save(nib.Nifti1Image(np.asanyarray(nifti.dataobj).astype(np.uint8), nifti.affine), scratch)
    labels = sitk.ReadImage(str(scratch), sitk.sitkUInt8)
    if not same_grid(labels, reference):
        log.warning("TotalSegmentator output grid differs from the input's: resampling (nearest neighbour)")
        labels = sitk.Resample(labels, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    labels.CopyInformation(reference)
    return labels


class TotalSegmentatorSegmenter:
    """TotalSegmentator through its Python API, set up once and reused for every volume.

    Construction checks the settings and the weights (raising :class:`~ctcorpus.errors.AnatomyError`
    with the provisioning steps when any is missing and ``allow_download`` is false, or when a task's
    folder is there twice), fingerprints the weights (:func:`weights_fingerprint`: the version names the
    weights, so masks made with others are told apart and made again), makes the home's ``config.json``
    quiet and registers the nnU-Net trainers; :meth:`segment` then only runs the model. Calls run in a
    private copy of the home's ``config.json`` (license included): TotalSegmentator rewrites it in place
    on every call, and worker processes sharing one file read each other's half-written copies and fail.
    Loaded networks are cached on the object, so a worker that keeps one segmenter reads each
    checkpoint once. Scripts that use it need an ``if __name__ == "__main__":`` guard (nnU-Net
    starts worker processes).

    Examples
    --------
    >>> seg = TotalSegmentatorSegmenter(AnatomyConfig(backend="totalsegmentator")).segment(ct)  # doctest: +SKIP
    >>> seg.source                                                                            # doctest: +SKIP
    'totalsegmentator-2.18.0-task298-weights3f9a0c1b2d4e'
    """

    name = "totalsegmentator"

    def __init__(self, config: AnatomyConfig) -> None:
        installed = totalsegmentator_version()
        if not installed:
            raise AnatomyError("TotalSegmentator is not installed; use anatomy.backend 'threshold'")
        from totalsegmentator.map_to_binary import class_map

        self._config = config
        task_ids = required_task_ids(config)
        table = {int(k): v for k, v in class_map[config.task].items()}
        if config.roi_subset:
            if not config.task.startswith("total"):  # TotalSegmentator raises in every call
                raise AnatomyError(f"anatomy.roi_subset only works with the 'total' tasks, not {config.task!r}")
            unknown = sorted(set(config.roi_subset) - set(table.values()))
            if unknown:
                raise AnatomyError(f"anatomy.roi_subset names classes task {config.task!r} lacks: {unknown}")
            table = {k: v for k, v in table.items() if v in config.roi_subset}
        missing = missing_weights(config)
        if missing and not config.allow_download:
            raise AnatomyError(provisioning_message(config, missing), path=weights_dir(config))
        if ambiguous := _ambiguous_weights(config):
            found = "; ".join(f"task {i}: {', '.join(names)}" for i, names in ambiguous.items())
            raise AnatomyError(
                f"the TotalSegmentator weights folder holds several folders of one task ({found}); nnU-Net "
                f"refuses to choose, so every volume would fail: move all but "
                f"{', '.join(_weight_folder(i) for i in ambiguous)} out of it",
                path=weights_dir(config),
            )
        self._label_table = table
        self._home = _home_dir(config)
        self._weights = weights_dir(config)
        self._call_home = Path(tempfile.mkdtemp(prefix="ctcorpus-totalseg-home-"))
        weakref.finalize(self, shutil.rmtree, self._call_home, ignore_errors=True)
        (self._call_home / "config.json").write_text(json.dumps(_quiet_config(self._home), indent=4), encoding="utf-8")
        register_nnunet_trainers()
        self._device = self._resolve_device(config.device)
        self._networks: dict[tuple[Any, ...], dict[str, Any]] = {}
        self._check_license()
        fingerprint = weights_fingerprint(config)  # last: a refused segmenter reads no GBs
        log.info("TotalSegmentator weights under %s: fingerprint %s", self._weights, fingerprint)
        self.version = f"{installed}-task{'-'.join(str(i) for i in task_ids)}-weights{fingerprint[:_WEIGHTS_DIGITS]}"

    def _check_license(self) -> None:
        """Refuse a licensed task without a license number in ``config.json`` now, not per volume.

        TotalSegmentator checks the license inside each call and ends the process (``sys.exit``).
        """
        from totalsegmentator.config import has_valid_license_offline
        from totalsegmentator.registry import requires_license

        if not requires_license(self._config.task):
            return
        with self._environment():
            status, message = has_valid_license_offline()
        if status != "yes":
            raise AnatomyError(
                f"TotalSegmentator task {self._config.task!r} needs a license: {message} Set it once with "
                f"`TOTALSEG_HOME_DIR={self._home} totalseg_set_license -l <number>`, or choose another anatomy.task",
                path=self._home / "config.json",
            )

    @staticmethod
    def _resolve_device(device: str) -> str:
        if device != "auto":
            return device
        import torch

        return "gpu" if torch.cuda.is_available() else "cpu"

    @contextmanager
    def _environment(self) -> Iterator[None]:
        """TotalSegmentator's environment for one call (restored after): the private home, the weights, the
        cached predictor, no downloads."""
        from totalsegmentator import nnunet, python_api

        keys = ("TOTALSEG_HOME_DIR", "TOTALSEG_WEIGHTS_PATH", "nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")
        saved = {key: os.environ.get(key) for key in keys}
        predictor_class = nnunet.nnUNetPredictor
        download = python_api.download_pretrained_weights
        os.environ["TOTALSEG_HOME_DIR"] = str(self._call_home)
        os.environ["TOTALSEG_WEIGHTS_PATH"] = str(self._weights)
        nnunet.nnUNetPredictor = _cached_predictor_class(predictor_class, self._networks)
        if not self._config.allow_download:
            python_api.download_pretrained_weights = self._refuse_download
        try:
            yield
        finally:
            nnunet.nnUNetPredictor = predictor_class
            python_api.download_pretrained_weights = download
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value

    def _refuse_download(self, task_id: int) -> None:
        """Stands in for TotalSegmentator's weight "download" inside a call: an absent folder raises.

        It downloads any task folder that is absent, including models chosen inside a call (crop
        models, cascades) that :func:`required_task_ids` may not foresee, and, even for a present
        one, deletes the folders of older weight versions in the operator's weights folder: so it
        is not called at all.
        """
        if not (self._weights / _weight_folder(task_id)).exists():
            raise AnatomyError(provisioning_message(self._config, (task_id,)), path=self._weights)

    def segment(self, image: sitk.Image) -> Segmentation:
        """Segment a CT volume in HU; the label map is mapped back onto ``image``'s exact grid.

        A case that runs out of (GPU or host) memory is segmented once more in three overlapping
        chunks along z, each predicted alone (TotalSegmentator's ``force_split``): its users' fix for
        512x512x800+ volumes (its #240, #62, #89), where the failure cost the volume its mask.
        """
        with tempfile.TemporaryDirectory(prefix="ctcorpus-totalseg-") as tmp, self._environment():
            ct_path = write_nifti(image, Path(tmp) / "ct.nii")
            for force_split in (False, True):
                try:
                    result = self._predict(ct_path, force_split=force_split)
                    break
                except (Exception, SystemExit) as exc:  # bare exceptions of many kinds; sys.exit on some errors
                    if force_split or not _out_of_memory(exc):
                        raise AnatomyError(
                            f"TotalSegmentator failed{' in 3 chunks' if force_split else ''}: {type(exc).__name__}: {exc}",
                            reason=QuarantineReason.SEGMENTATION_FAILED,
                        ) from exc
                    log.warning("TotalSegmentator ran out of memory (%s: %s); segmenting in 3 chunks along z",
                                type(exc).__name__, exc)
            labels = label_map_from_nifti(result, image, Path(tmp) / "seg.nii")
        return Segmentation(labels=labels, label_table=self._label_table, backend=self.name, version=self.version)

    def _predict(self, ct_path: Path, *, force_split: bool) -> Any:
        """One TotalSegmentator call on the NIfTI at ``ct_path`` (``force_split``: in 3 chunks along z)."""
        from totalsegmentator.python_api import totalsegmentator

        config = self._config
        return totalsegmentator(
            ct_path,
            None,
            ml=True,
            task=config.task,
            fast=config.mode == "fast",
            fastest=config.mode == "fastest",
            roi_subset=list(config.roi_subset) if config.roi_subset else None,
            device=self._device,
            quiet=True,
            nr_thr_resamp=config.nr_thr_resamp,
            nr_thr_saving=config.nr_thr_saving,
            force_split=force_split,
        )


#: How errors out of memory read: CUDA's ("CUDA out of memory"), torch's CPU allocator's
#: ("DefaultCPUAllocator: can't allocate memory"); numpy raises MemoryError.
_OUT_OF_MEMORY = ("out of memory", "can't allocate memory")


def _out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` says a case did not fit in memory (worth a smaller try, unlike other failures)."""
    return isinstance(error, MemoryError) or any(text in str(error) for text in _OUT_OF_MEMORY)


def _cached_predictor_class(base: type, cache: dict[tuple[Any, ...], dict[str, Any]]) -> type:
    """A subclass of nnU-Net's predictor that loads each model folder once into ``cache``.

    TotalSegmentator builds a new predictor per case and reads the checkpoint each time (its issues
    #383, #523, #581); the predictor's state after ``initialize_from_trained_model_folder`` is kept
    and restored instead.
    """
    state = (
        "plans_manager",
        "configuration_manager",
        "list_of_parameters",
        "network",
        "dataset_json",
        "trainer_name",
        "allowed_mirroring_axes",
        "label_manager",
    )

    class CachedPredictor(base):  # type: ignore[misc, valid-type]
        def initialize_from_trained_model_folder(
            self, model_training_output_dir: str, use_folds: Any, checkpoint_name: str = "checkpoint_final.pth"
        ) -> None:
            folds = tuple(use_folds) if isinstance(use_folds, list | tuple) else use_folds
            key = (str(model_training_output_dir), folds, checkpoint_name, str(self.device))
            if key not in cache:
                super().initialize_from_trained_model_folder(model_training_output_dir, use_folds, checkpoint_name)
                cache[key] = {name: getattr(self, name) for name in state}
                log.info("loaded nnU-Net model folder=%s", model_training_output_dir)
            else:
                for name, value in cache[key].items():
                    setattr(self, name, value)

    CachedPredictor.__name__ = CachedPredictor.__qualname__ = base.__name__
    return CachedPredictor
