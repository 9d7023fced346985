"""Atomic writes and the content-addressed work store behind incremental, resumable runs.

Every stage result lives in ``<work>/<stage>/<key[:2]>/<key>/`` where ``key`` hashes the
stage's inputs and config. A result is written into a temporary folder and renamed into place
in one step, so a run killed at any point leaves either a complete result or none; the next run
removes the leftovers and recomputes only what is missing.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ctcorpus.errors import OutputError

log = logging.getLogger(__name__)

_TMP = ".tmp-"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file and ``os.replace`` (never a partial file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{_TMP}{uuid.uuid4().hex}-{path.name}")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def leftover_temp_files(folder: Path, names: str) -> list[Path]:
    """The temporary files :func:`atomic_write_bytes` left in ``folder`` when killed while writing a
    file whose name fully matches the regex ``names`` (``.tmp-<uuid hex>-<name>``); no other file."""
    pattern = re.compile(rf"{re.escape(_TMP)}[0-9a-f]{{32}}-(?:{names})")
    return sorted(p for p in folder.iterdir() if pattern.fullmatch(p.name) and p.is_file())


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """Yield a temporary folder that becomes ``final`` when the block succeeds.

    An existing ``final`` is replaced only after the new one is complete: its files and folders are
    flushed to disk before the rename, which the OS may otherwise persist first, so that a crash
    (power loss) left under ``final`` a complete-looking result of empty or cut files, trusted by
    the work store, and the old version deleted.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f"{_TMP}{uuid.uuid4().hex}-{final.name}")
    tmp.mkdir()
    try:
        yield tmp
        for path in [*tmp.rglob("*"), tmp]:
            _fsync(path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if final.exists():
        old = final.with_name(f"{_TMP}old-{uuid.uuid4().hex}-{final.name}")
        os.replace(final, old)
    os.replace(tmp, final)
    _fsync(final.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def leftover_temps(final: Path) -> list[Path]:
    """The siblings an :func:`atomic_dir` of ``final`` leaves when its process is killed: the new
    version it was writing, or the old one it had moved aside (``.tmp-[old-]<uuid>-<name>``)."""
    name = re.compile(rf"{re.escape(_TMP)}(old-)?[0-9a-f]{{32}}-{re.escape(final.name)}")
    found = (p for p in final.parent.glob(f"{_TMP}*") if name.fullmatch(p.name))
    return sorted(p for p in found if p.is_dir() and not p.is_symlink())


def moved_aside(final: Path) -> str | None:
    """Why ``final`` is missing when a build killed between :func:`atomic_dir`'s two renames left
    the old version aside, its only copy: where it is and how to get it back; else None. Every
    reader of a version says so, where 'not found' sent the user to rebuild or restore it."""
    aside = [p for p in leftover_temps(final) if p.name.startswith(f"{_TMP}old-")]
    if final.exists() or not aside:
        return None
    return (f"a build of it was killed after moving this version aside to {aside[0]}; building it again "
            f"(`ctcorpus build --out {final}`) first puts it back")


def remove_leftovers(final: Path) -> list[Path]:
    """Delete the :func:`leftover_temps` of ``final``; only its sole writer may call this.

    The old version moved aside by a process killed before it renamed the new one into place is
    the only copy left, so it is put back as ``final`` instead of deleted.
    """
    removed = []
    for path in leftover_temps(final):
        if path.name.startswith(f"{_TMP}old-") and not final.exists():
            os.replace(path, final)
            log.warning("put back the version an interrupted build had moved aside path=%s", final)
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    if removed:
        log.warning("removed what an interrupted build left paths=%s", [p.name for p in removed])
    return removed


@contextmanager
def exclusive_lock(lock_path: Path, target: Path) -> Iterator[None]:
    """Hold a ``flock`` on ``lock_path`` while one writer of ``target`` runs; a second fails at once
    instead of racing the first. The OS drops the lock when its process ends, killed or not, so it
    never goes stale."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OutputError("another process is writing it; wait for it to finish", path=target) from None
        yield


@contextmanager
def exclusive_atomic_dir(final: Path) -> Iterator[Path]:
    """:func:`atomic_dir` for one writer at a time, which first removes what killed writers left.

    The lock is an :func:`exclusive_lock` on ``.<name>.lock`` beside ``final``, so a temp folder
    of a live writer is never taken for a leftover.
    """
    with exclusive_lock(final.with_name(f".{final.name}.lock"), final):
        remove_leftovers(final)
        with atomic_dir(final) as tmp:
            yield tmp


def remove_partial(root: Path) -> int:
    """Delete temporary files and folders a killed run left under ``root``; return how many."""
    if not root.exists():
        return 0
    count = 0
    for path in sorted(root.rglob(f"{_TMP}*"), key=lambda p: len(p.parts), reverse=True):
        if not path.exists():
            continue
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        count += 1
    if count:
        log.info("removed partial outputs of an interrupted run count=%d root=%s", count, root)
    return count


def write_parquet(table: pa.Table, path: Path, row_group_rows: int = 65536) -> None:
    """Write a Parquet file deterministically (same table -> same bytes) and atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{_TMP}{uuid.uuid4().hex}-{path.name}")
    pq.write_table(
        table, tmp, row_group_size=row_group_rows, compression="zstd", write_statistics=True, use_dictionary=True
    )
    os.replace(tmp, path)


@dataclass(frozen=True, slots=True)
class WorkStore:
    """Stage results keyed by a hash of their inputs and config."""

    root: Path

    def path(self, stage: str, key: str) -> Path:
        return self.root / stage / key[:2] / key

    def has(self, stage: str, key: str) -> bool:
        return self.path(stage, key).is_dir()

    @contextmanager
    def writing(self, stage: str, key: str) -> Iterator[Path]:
        """Yield a folder for a new result; it appears under its key only when complete."""
        with atomic_dir(self.path(stage, key)) as tmp:
            yield tmp

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold the store for one ingest run (an :func:`exclusive_lock` on ``<root>/.lock``): a run
        first removes what killed runs left (:meth:`clean`), which in a store another run is
        writing are that run's results in progress, and each run writes the run index."""
        with exclusive_lock(self.root / ".lock", self.root):
            yield

    def clean(self) -> int:
        return remove_partial(self.root)
