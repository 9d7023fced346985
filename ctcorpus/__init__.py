"""ctcorpus: hospital CT exports -> audited training corpora for 3D CT vision-language models."""

from ctcorpus.version import __version__

__all__ = ["__version__"]
