"""Configuration of a run: where the export is, where outputs go, and how work is parallelised.

The library never reads these values itself; ``flows/runtime.py`` turns them into a Dask client
and the Prefect settings, and the flows pass the paths to the stages.

>>> RunConfig(dask_address="tcp://scheduler:8786").dask_address
'tcp://scheduler:8786'
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import Field, field_validator

from ctcorpus.config.base import StageConfig

#: A byte size as Dask reads it: a number and a unit (kB, MB, GiB, G, ...; case and blanks do not matter).
_BYTE_SIZE = re.compile(r"(?:\d+(?:\.\d*)?|\.\d+)(?:[kmgtp]i?b?|b)", re.IGNORECASE)


class RunConfig(StageConfig):
    """Paths, parallelism and orchestration settings of one pipeline run."""

    export_dir: Path | None = Field(
        None,
        description=(
            "Root folder of the hospital CT export (DICOM files in any layout, read-only). "
            "Required by the ingest flow; None for flows that only read built outputs."
        ),
    )
    report_files: tuple[Path, ...] = Field(
        (),
        description=(
            "Radiology report exports (CSV, TSV, JSON/JSONL, Parquet, Excel, text, HL7 .hl7/.oru; each maybe "
            "gzipped: .csv.gz) that belong to the export; reports are linked to studies by accession number, "
            "else by patient and study date within reports.link_window_days (a DICOM SR document by its study UID)."
        ),
    )
    exclude_globs: tuple[str, ...] = Field(
        (),
        description=(
            "Glob patterns (relative to export_dir) of files that are not part of the export and must "
            "be neither read nor quarantined, e.g. a synthetic export's 'ground_truth.json' and 'labels/*'."
        ),
    )
    output_dir: Path = Field(
        Path("out"),
        description="Folder that receives tables, shards, the manifest and the audit report.",
    )
    dask_address: str | None = Field(
        None,
        description=(
            "Address of an existing Dask scheduler (tcp://host:8786). None starts a "
            "distributed.LocalCluster sized to this machine for the duration of the run."
        ),
    )
    dask_connect_timeout_s: float = Field(
        20.0,
        gt=0,
        description=(
            "Seconds to keep trying to reach the scheduler at dask_address before the run fails "
            "with an error naming it (a scheduler container may still be starting)."
        ),
    )
    dask_no_worker_timeout_s: float = Field(
        600.0,
        gt=0,
        description=(
            "Seconds a study may wait while the cluster has no worker (all died or left) before the run "
            "stops with an error naming the cluster; what was done is kept and a re-run resumes."
        ),
    )
    n_workers: int | None = Field(
        None,
        ge=1,
        description=(
            "Worker processes of the local cluster; None uses the number of CPUs this process "
            "may run on. Ignored when dask_address is set."
        ),
    )
    threads_per_worker: int = Field(
        1,
        ge=1,
        description=(
            "Threads per local worker. 1 because per-series work (decode, resample, "
            "segmentation) is CPU-bound and holds the GIL in parts; parallelism comes from processes."
        ),
    )
    memory_limit_per_worker: str = Field(
        "auto",
        min_length=1,
        description=(
            "Memory limit of each local worker, as Dask accepts it ('4GiB', '0.5' of the "
            "machine, or 'auto' = system memory / n_workers). A worker over the limit is "
            "restarted by Dask instead of taking the machine down."
        ),
    )
    max_in_flight: int | None = Field(
        None,
        ge=1,
        description=(
            "Studies the ingest flow keeps in flight at a time (running, or waiting for a task thread), "
            "with Dask or --serial; bounds the studies held in memory on exports of any size. None uses "
            "2 x the Dask cluster's total threads, or prefect_task_threads with --serial."
        ),
    )
    prefect_task_threads: int = Field(
        4,
        ge=1,
        description=(
            "Threads of the flow process that run Prefect tasks, one study each: with --serial the "
            "studies processed at once; with Dask a task waits for its study on the cluster, so this also "
            "caps the studies the cluster works on at once (keep it at least the cluster's threads)."
        ),
    )
    prefect_home: Path | None = Field(
        None,
        description=(
            "PREFECT_HOME (Prefect's local database and profiles). None puts it in "
            "<output_dir>/.prefect so a run never writes to the user's home."
        ),
    )
    prefect_api_url: str | None = Field(
        None,
        description=(
            "URL of a Prefect server API (http://host:4200/api). None runs flows on Prefect's "
            "ephemeral local API (about 5-7 s to start); schedules need a server."
        ),
    )
    prefect_startup_timeout_s: int = Field(
        120,
        ge=1,
        description=(
            "Seconds to wait for the ephemeral Prefect API to start; a cold first start on a "
            "busy 2-core machine exceeds Prefect's default of 20 s."
        ),
    )
    prefect_logging_level: str = Field(
        "WARNING",
        pattern=r"^(DEBUG|INFO|WARNING|ERROR|CRITICAL)$",
        description="Level of Prefect's own loggers (PREFECT_LOGGING_LEVEL).",
    )

    @field_validator("report_files", "exclude_globs", mode="before")
    @classmethod
    def _one_or_more(cls, value: object) -> object:
        """One path or pattern where a list is meant (``report_files: /ris/reports.csv``) is a list of one:
        it was refused as 'Input should be a valid tuple', and a string is never a list of its characters.
        No entry under the key (each one commented out), YAML's null, is none, refused as no tuple too."""
        if value is None:
            return ()
        return (value,) if isinstance(value, (str, Path)) else value

    @field_validator("dask_address")
    @classmethod
    def _scheduler_url(cls, value: str | None) -> str | None:
        """Reject addresses Dask would misread (a bare host silently means a TCP default)."""
        if value is not None and "://" not in value:
            raise ValueError("must be a scheduler URL such as tcp://host:8786")
        return value

    @field_validator("prefect_api_url")
    @classmethod
    def _api_url(cls, value: str | None) -> str | None:
        """Prefect accepts only http(s) URLs; fail at load time rather than at first flow run."""
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http(s) URL such as http://prefect-server:4200/api")
        return value

    @field_validator("memory_limit_per_worker", mode="before")
    @classmethod
    def _memory_limit(cls, value: object) -> object:
        """Dask refuses a malformed limit only when the cluster starts, naming no field, and reads a bare
        number above 1 as bytes ('1.5': workers of one byte); accept only what it reads as meant. A number
        as YAML reads it unquoted (``0.5``, ``8000000000``) is the limit its text names: it was refused
        as 'Input should be a valid string'."""
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            return value  # pydantic refuses it, naming the field
        if value == "auto" or _BYTE_SIZE.fullmatch(value.replace(" ", "")):
            return value
        try:
            number = float(value)
        except ValueError:
            number = -1.0
        if 0 <= number <= 1 or (number > 1 and number.is_integer()):  # 0: no limit, as Dask reads it
            return value
        raise ValueError(
            f"{value!r} is no memory limit: use 'auto', a byte size such as '4GiB', a fraction of the "
            "machine such as '0.5', or a whole number of bytes"
        )
