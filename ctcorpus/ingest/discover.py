"""Discovery: walk an export tree and index every file's DICOM header, in parallel.

File names, extensions and folder layout mean nothing in hospital exports, so every regular file
is read. Threads are used: reading and sha256 release the GIL (hashing is the largest cost of
indexing), while the fast header scanner (:mod:`ctcorpus.ingest.header`) holds it for ~0.3 ms a
file. ``bench/ingest.py`` reports the thread speedup (``threads_speedup``); across series, the
flows parallelise with Dask processes, so a process pool here would only add pickling. With a
``cache`` file (the pipeline keeps one in its work store), a file whose stamp is unchanged since
the last run is not hashed again, and only as much of it is read as its header takes
(:mod:`ctcorpus.ingest.filecache`, :data:`~ctcorpus.ingest.header.HEADER_PREFIX`).
"""

from __future__ import annotations

import logging
import os
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ctcorpus.config.ingest import IngestConfig
from ctcorpus.errors import IngestError
from ctcorpus.ingest.filecache import (
    CachedFile,
    DiscoveryCache,
    FileStamp,
    cache_key,
    cacheable,
    fresh_results,
    load_cache,
    save_cache,
    with_hash,
)
from ctcorpus.ingest.header import problem_message, read_instances
from ctcorpus.ingest.records import ExportIndex, InstanceRecord
from ctcorpus.enums import Action
from ctcorpus.pseudonym import patient_key
from ctcorpus.records import ErrorHandler, QuarantineEntry, raise_on_error

log = logging.getLogger(__name__)

STAGE = "ingest"


def iter_files(root: str | os.PathLike[str]) -> Iterator[str]:
    """Every regular file under ``root`` in a stable (sorted) order; hidden files included."""
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(folder, name)
            if os.path.isfile(path):
                yield path


def index_export(
    root: str | os.PathLike[str],
    config: IngestConfig | None = None,
    *,
    workers: int | None = None,
    on_error: ErrorHandler = raise_on_error,
    exclude: Iterable[str | os.PathLike[str]] = (),
    cache: DiscoveryCache | None = None,
) -> ExportIndex:
    """Read the header of every file under ``root`` into an :class:`ExportIndex` of slices (a
    file, or a frame of an Enhanced CT file: :func:`~ctcorpus.ingest.header.read_instances`).

    Files that cannot be read (not DICOM, truncated) go to ``on_error`` (the default raises);
    slices that are DICOM but cannot be slices of a volume (localizer, non-CT, ...) are kept as
    instances with a ``reason`` and also listed in ``ExportIndex.quarantine``. DICOMDIR files and ``exclude``
    (e.g. the RIS report exports lying in the export folder) are skipped, not quarantined.
    ``ExportIndex.quarantine`` is complete whatever ``on_error`` does; a recording handler
    (``QuarantineLog``) receives the unreadable-file errors as well.

    ``cache``: the file of :mod:`~ctcorpus.ingest.filecache` holding each file's sha256 of the last run;
    those whose stamp (size, mtime, ctime, inode) is unchanged are not hashed again (under
    ``rehash: changed``; their headers are read, as they hold PHI the cache must not, from their first
    bytes where the header ends in them), and the cache is rewritten for the files there are now.
    The index is the same with or without it.

    >>> from ctcorpus.records import QuarantineLog
    >>> index = index_export("export", workers=2, on_error=QuarantineLog())   # doctest: +SKIP
    """
    config = config or IngestConfig()
    root = os.fspath(root)
    if not os.path.isdir(root):
        raise IngestError("export root is not a folder", path=root)
    excluded = {os.path.realpath(p) for p in exclude}
    paths: list[str] = []
    skipped: list[str] = []
    for path in iter_files(root):
        (skipped if os.path.realpath(path) in excluded else paths).append(path)
    skipped = [os.path.relpath(p, root) for p in skipped]
    n_workers = workers if workers is not None else config.workers
    key = cache_key(root, config.hash_files)
    started_ns = time.time_ns()  # before the stamps: a file changed after it is never cached as unchanged
    cache = cache if config.hash_files else None  # without hashes there is nothing to keep
    ids = [cache.file_id(os.path.relpath(p, root)) for p in paths] if cache is not None else [""] * len(paths)
    stamps = _stamps(paths, ids) if cache is not None else {}
    cached = load_cache(cache.path, key) if cache is not None else {}
    fresh = fresh_results(stamps, cached, config.rehash)

    def read(path: str, file_id: str) -> tuple[InstanceRecord, ...] | IngestError:
        entry = fresh.get(file_id)
        try:
            if entry is not None:
                return with_hash(read_instances(path, root, hash_file=False), entry)
            return read_instances(path, root, hash_file=config.hash_files)
        except IngestError as error:
            return error

    if n_workers > 1 and len(paths) > 1:
        with ThreadPoolExecutor(n_workers) as pool:
            results = list(pool.map(read, paths, ids, chunksize=16))
    else:
        results = [read(p, file_id) for p, file_id in zip(paths, ids, strict=True)]
    if cache is not None:
        entries = _cache_entries(ids, results, stamps, fresh, started_ns)
        if entries != cached:
            save_cache(cache.path, key, entries)
        log.info("discovery cache files=%d hashed=%d path=%s", len(paths), len(paths) - len(fresh), cache.path)

    instances: list[InstanceRecord] = []
    quarantine: list[QuarantineEntry] = []
    for path, result in zip(paths, results, strict=True):
        if isinstance(result, IngestError):
            on_error(result, STAGE)
            quarantine.append(QuarantineEntry.from_error(result, STAGE))
        elif not result:
            skipped.append(os.path.relpath(path, root))
        else:
            instances.extend(result)
            quarantine.extend(
                QuarantineEntry(STAGE, record.rel_path, record.reason, problem_message(record), action=Action.REJECT)
                for record in result if record.reason is not None
            )
    log.info("indexed root=%s files=%d instances=%d quarantined=%d", root, len(paths), len(instances), len(quarantine))
    _warn_charset_notes(instances)
    _warn_patient_id_spellings(instances, config.patient_id_zeros)
    return ExportIndex(root=str(Path(root)), instances=tuple(instances), quarantine=tuple(quarantine), skipped=tuple(skipped))


def _stamps(paths: Sequence[str], ids: Sequence[str]) -> dict[str, FileStamp]:
    """Each file's stamp by its cache id (a file gone since the walk has none: it is read, and its
    error quarantined, as without the cache)."""
    stamps = {}
    for path, file_id in zip(paths, ids, strict=True):
        try:
            stamps[file_id] = FileStamp.of(os.stat(path))
        except OSError:
            continue
    return stamps


def _cache_entries(ids: Sequence[str], results: Sequence[tuple[InstanceRecord, ...] | IngestError],
                   stamps: Mapping[str, FileStamp], fresh: Mapping[str, CachedFile], started_ns: int) -> dict[str, CachedFile]:
    """The cache after this run: the entries still true, and the files hashed now that may be cached
    (read as DICOM, stamped, not modified just before the scan); a file no longer there has none."""
    entries = dict(fresh)
    for file_id, result in zip(ids, results, strict=True):
        stamp = stamps.get(file_id)
        if (file_id not in fresh and stamp is not None and not isinstance(result, IngestError) and result
                and cacheable(stamp, started_ns)):
            entries[file_id] = CachedFile(stamp, result[0].sha256)  # a multi-frame file's frames share it
    return entries


def _warn_charset_notes(instances: Iterable[InstanceRecord]) -> None:
    """One warning per series whose header text was read against its SpecificCharacterSet (UTF-8
    under none or Latin-1, invalid UTF-8): the export tool writes it wrongly, and the operator may
    check the names or fix the export. The instances table has no column for it."""
    noted: dict[tuple[str, str], list[InstanceRecord]] = defaultdict(list)
    for record in instances:
        if record.charset_note:
            noted[(record.series_uid, record.charset_note)].append(record)
    for (_, note), records in sorted(noted.items()):
        log.warning("header text read against its character set first=%s files=%d: %s", records[0].rel_path,
                    len({r.rel_path for r in records}), note)


def _warn_patient_id_spellings(instances: Iterable[InstanceRecord], zeros: str) -> None:
    """One warning per patient id the export spells with and without leading zeros ("0012345",
    "12345"), naming a file of each spelling (not the id: logs are no place for it): under
    ``ingest.patient_id_zeros: keep`` each spelling is a patient, whom a patient-level split may part
    from the others (the default, which keeps the pseudonyms and splits of earlier versions)."""
    spellings: dict[str, dict[str, str]] = defaultdict(dict)  # patient key -> spelling -> its first file
    for record in instances:
        if record.patient_id:
            spellings[patient_key(record.patient_id)].setdefault(record.patient_id, record.rel_path)
    for files in spellings.values():
        if len(files) > 1:
            verdict = ("keyed as one patient (ingest.patient_id_zeros: strip)" if zeros == "strip" else
                       f"keyed as {len(files)} patients (ingest.patient_id_zeros: keep, the default): a "
                       "patient-level split may put them apart; for a new corpus set ingest.patient_id_zeros: strip")
            log.warning("patient id spelled with and without leading zeros files=%s: %s",
                        ", ".join(sorted(files.values())), verdict)
