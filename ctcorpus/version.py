"""The pipeline version recorded in every output row (provenance), and digests of stage sources."""

import hashlib
from collections.abc import Iterable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

try:
    __version__ = version("ctcorpus")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+source"


def source_digest(files: Iterable[str | Path]) -> str:
    """A digest of the source ``files`` of a stage, for its producer and cache key: a changed rule
    or assembly step is a new producer, so results cached under the old code are never reused
    (``__version__`` stays the same in a source install, and a version number is easy to forget
    to bump)."""
    digest = hashlib.sha256()
    for path in files:
        digest.update(Path(path).read_bytes())
    return digest.hexdigest()[:12]


def package_digest(module_file: str, *shared: str) -> str:
    """:func:`source_digest` of every module of the package ``module_file`` (a ``__file__``) is in,
    and of the ``shared`` modules outside it whose rules its results hold (the pseudonyms)."""
    return source_digest([*sorted(Path(module_file).parent.glob("*.py")), *shared])
