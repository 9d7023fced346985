"""The discovery cache: each file's sha256 as discovery computed it, kept in the work store under the
file's stamp (size, mtime, ctime, inode), so a re-run over an unchanged export hashes no file again.

Only the hash is kept, under a keyed hash of the file's export-relative path: a file's header holds
PHI (the patient's name, id, birth date, accession number), which ingest keeps in memory only, and
its path often does too ("MUELLER_HANS/1234567/..."), so each file's header is still read on every
run, and the cache names no path. Hashing is the larger cost of discovery.

A file is hashed again when any part of its stamp changed. Rewriting a file changes its ctime, which no
copy tool sets back (``cp -p`` and ``rsync -t`` restore the mtime only, and rsync writes a new
inode), so a file rewritten with the same size and mtime is hashed again too, except where the file
system does not keep ctime (some network mounts report the mtime) or the clock is set back. A file
modified within :data:`RACY_NS` before the scan that read it is not cached: on a file system with
coarse timestamps, a second write in the same tick leaves its stamp as it was (git's "racily clean"
files). ``ingest.rehash: always`` hashes every file whatever the cache holds.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import pydicom

from ctcorpus.ingest.records import InstanceRecord
from ctcorpus.outputs.store import atomic_write_bytes
from ctcorpus.version import __version__, package_digest

log = logging.getLogger(__name__)

#: Files modified less than this before the scan are read but not cached (2 s: FAT's mtime step).
RACY_NS = 2_000_000_000
#: What the cached hashes depend on: the reading code (the ingest package) and pydicom.
READER = f"{__version__}/ingest-{package_digest(__file__)}/pydicom-{pydicom.__version__}"


@dataclass(frozen=True, slots=True)
class DiscoveryCache:
    """Where the cache is kept, and the secret (the pseudonym key) that names its files."""

    path: Path
    secret: bytes = field(repr=False)

    def file_id(self, rel: str) -> str:
        """A file's name in the cache: the HMAC of its export-relative path (an unkeyed hash of a path
        made of a patient id is undone by hashing every id of its format)."""
        return hmac.new(self.secret, rel.encode("utf-8", "surrogateescape"), hashlib.sha256).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class FileStamp:
    """What says a file is unchanged without reading it."""

    size: int
    mtime_ns: int
    ctime_ns: int
    inode: int

    @classmethod
    def of(cls, stat: os.stat_result) -> FileStamp:
        return cls(stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino)


@dataclass(frozen=True, slots=True)
class CachedFile:
    """One file's sha256, under the stamp it had when it was hashed."""

    stamp: FileStamp
    sha256: str


def cache_key(root: str, hash_files: bool) -> str:
    """What a cache must have been written under to be used: the export root, whether files were
    hashed (a run without hashes keeps none) and the reading code."""
    return json.dumps([os.path.realpath(root), hash_files, READER])


def fresh_results(stamps: Mapping[str, FileStamp], cache: Mapping[str, CachedFile], rehash: Literal["changed", "always"]) -> dict[str, CachedFile]:
    """The cache entries still true of the export: those of files (by :meth:`DiscoveryCache.file_id`)
    whose stamp is unchanged; none under ``rehash == "always"``."""
    if rehash == "always":
        return {}
    return {file_id: entry for file_id, entry in cache.items() if stamps.get(file_id) == entry.stamp}


def cacheable(stamp: FileStamp, scan_started_ns: int) -> bool:
    """Whether a file read in a scan that started at ``scan_started_ns`` may be cached (see :data:`RACY_NS`)."""
    return stamp.mtime_ns < scan_started_ns - RACY_NS


def load_cache(path: Path, key: str) -> dict[str, CachedFile]:
    """The cache at ``path`` (file id -> entry), or none: no file yet, one written under
    another :func:`cache_key`, or one that cannot be read (logged with its reason; it is rewritten)."""
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.warning("discovery cache ignored, every file is hashed path=%s: %s", path, exc)
        return {}
    try:
        if data.get("key") != key:
            log.info("discovery cache of another export, reading code or hash setting, every file is hashed path=%s", path)
            return {}
        return {file_id: _entry(stamp, sha256) for file_id, (stamp, sha256) in data["files"].items()}
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        log.warning("discovery cache ignored, every file is hashed path=%s: malformed entry (%s: %s)", path, type(exc).__name__, exc)
        return {}


def save_cache(path: Path, key: str, entries: Mapping[str, CachedFile]) -> None:
    """Replace the cache at ``path`` in one step (a killed run leaves the previous one whole)."""
    files = {file_id: [[entry.stamp.size, entry.stamp.mtime_ns, entry.stamp.ctime_ns, entry.stamp.inode], entry.sha256]
             for file_id, entry in sorted(entries.items())}
    text = json.dumps({"key": key, "files": files}, separators=(",", ":"))
    atomic_write_bytes(path, text.encode("utf-8"))


def with_hash(records: tuple[InstanceRecord, ...], entry: CachedFile) -> tuple[InstanceRecord, ...]:
    """A file's records, read without hashing, with the sha256 the cache holds for it."""
    return tuple(replace(r, sha256=entry.sha256) for r in records)


def _entry(stamp: list[int], sha256: str) -> CachedFile:
    if not (isinstance(sha256, str) and len(sha256) == 64 and len(stamp) == 4 and all(isinstance(v, int) for v in stamp)):
        raise ValueError(f"not a stamp and a sha256: {stamp!r} {sha256!r}")
    return CachedFile(FileStamp(*stamp), sha256)
