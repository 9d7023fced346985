"""The corpus configuration: one pydantic model per stage, nested under :class:`CorpusConfig`.

Loaded once (:func:`load_config`) and passed down; no stage reads the environment at import
time. Bad config raises :class:`~ctcorpus.errors.ConfigError` naming the field.

>>> cfg = load_config(None)          # the embedded default
>>> cfg.ingest.target_spacing_mm
(1.5, 1.5, 1.5)
"""

from __future__ import annotations

from collections.abc import Hashable
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError, model_validator

from ctcorpus.config.anatomy import AnatomyConfig
from ctcorpus.config.audit import AuditConfig
from ctcorpus.config.base import StageConfig
from ctcorpus.config.ingest import IngestConfig
from ctcorpus.config.outputs import OutputConfig
from ctcorpus.config.reports import ReportsConfig
from ctcorpus.config.run import RunConfig
from ctcorpus.config.snippets import SnippetsConfig
from ctcorpus.config.train import TrainConfig
from ctcorpus.errors import ConfigError


#: What a recorded config holds in place of a secret.
REDACTED = "<redacted>"


class CorpusConfig(StageConfig):
    """Everything a run needs; each stage reads only its own section."""

    run: RunConfig = Field(default_factory=RunConfig, description="Paths, parallelism and orchestration.")
    ingest: IngestConfig = Field(default_factory=IngestConfig, description="DICOM ingestion.")
    reports: ReportsConfig = Field(default_factory=ReportsConfig, description="Report ingestion and NLP.")
    snippets: SnippetsConfig = Field(default_factory=SnippetsConfig, description="Image-reference mining.")
    anatomy: AnatomyConfig = Field(default_factory=AnatomyConfig, description="Segmentation.")
    outputs: OutputConfig = Field(default_factory=OutputConfig, description="Tables, shards, splits, manifest.")
    audit: AuditConfig = Field(default_factory=AuditConfig, description="Audit report.")
    train: TrainConfig = Field(default_factory=TrainConfig, description="Training stage.")

    @model_validator(mode="after")
    def _anatomy_sees_air(self) -> CorpusConfig:
        """The volumes are segmented as stored, clipped to ``ingest.hu_clip``: a clip whose low end is not
        below ``anatomy.air_hu`` and ``anatomy.body_hu`` leaves no air to tell body from outside and lung from
        tissue (the fallback read the whole field of view as body, TotalSegmentator's lungs lost their contrast)."""
        low, needed = self.ingest.hu_clip[0], min(self.anatomy.air_hu, self.anatomy.body_hu)
        if low >= needed:
            raise ValueError(f"ingest.hu_clip starts at {low} HU, not below {needed:g} HU (anatomy.air_hu, body_hu): "
                             "the volumes are segmented as clipped and would hold no air; clip at -1000 and window "
                             "for training instead")
        return self

    def recorded(self) -> dict[str, Any]:
        """The config as a manifest or an audit records it: a literal pseudonym key is a secret
        (with it, every pseudonym can be recomputed from the hospital's ids), so it is replaced
        by ``REDACTED``."""
        data = self.model_dump(mode="json")
        if data["ingest"]["pseudonym_key"]:
            data["ingest"]["pseudonym_key"] = REDACTED
        return data


def _field_path(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc)


def config_from_dict(data: dict[str, Any], source: str = "<dict>") -> CorpusConfig:
    """Validate a mapping as a :class:`CorpusConfig`; errors name every bad field."""
    try:
        return CorpusConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{_field_path(e['loc'])}: {e['msg']}" if e["loc"] else e["msg"] for e in exc.errors())
        raise ConfigError(f"invalid configuration: {problems}", path=source) from None


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe loader that refuses a key given twice in one mapping: PyYAML keeps the last, so a
    second ``train:`` section (or a repeated field) would silently discard the first."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # keys a merge brings in may be overridden: that is what merges are for
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, Hashable):
                continue  # SafeLoader refuses it below
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key '{key}' is given twice in one mapping", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_config(path: str | Path | None) -> CorpusConfig:
    """Load a YAML (or JSON) config file; ``None`` gives the embedded default."""
    if path is None:
        return CorpusConfig()
    path = Path(path)
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader) or {}
    except FileNotFoundError:
        raise ConfigError("config file not found", path=path) from None
    except OSError as exc:  # a folder, no permission: a traceback named neither file nor reason for the CLI
        raise ConfigError(f"config file cannot be read: {exc.strerror}", path=path) from None
    except UnicodeDecodeError as exc:  # e.g. saved as cp1252 by an editor, with an umlaut in a column name
        raise ConfigError(f"config file is not UTF-8 text: byte {exc.start} ({exc.reason})", path=path) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file is not valid YAML: {exc}", path=path) from None
    if not isinstance(data, dict):
        raise ConfigError("config file must hold a mapping of sections", path=path)
    return config_from_dict(data, source=str(path))


__all__ = [
    "AnatomyConfig",
    "AuditConfig",
    "CorpusConfig",
    "IngestConfig",
    "OutputConfig",
    "REDACTED",
    "ReportsConfig",
    "RunConfig",
    "SnippetsConfig",
    "TrainConfig",
    "config_from_dict",
    "load_config",
]
