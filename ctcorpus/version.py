"""The pipeline version recorded in every output row (provenance)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ctcorpus")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+source"
