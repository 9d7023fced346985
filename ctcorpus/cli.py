"""The ``ctcorpus`` command line: mirrors the Prefect flows in ``flows/``.

Heavy imports happen inside the commands so ``ctcorpus --help`` stays fast.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer
from pydantic import BaseModel

if TYPE_CHECKING:
    from ctcorpus.config import CorpusConfig

app = typer.Typer(
    name="ctcorpus",
    help="Turn hospital CT exports (DICOM + reports) into audited training corpora.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,  # a traceback's locals may hold a literal pseudonym key
)

ConfigOption = Annotated[
    Optional[Path], typer.Option("--config", "-c", help="YAML config file (default: the embedded default, which `ctcorpus config` prints).")
]


class Language(str, Enum):
    en = "en"
    de = "de"
    mixed = "mixed"


@app.command()
def synth(
    out: Annotated[Path, typer.Argument(help="Folder to write the synthetic export into.")],
    patients: Annotated[int, typer.Option(help="Number of patients.")] = 3,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives byte-identical output.")] = 0,
    defects: Annotated[bool, typer.Option("--defects", help="Seed broken files, stacks and reports.")] = False,
    phi: Annotated[bool, typer.Option("--phi", help="Seed PHI in headers and report text.")] = False,
    lang: Annotated[Language, typer.Option("--lang", help="Report language.")] = Language.en,
    matrix: Annotated[int, typer.Option(help="Image matrix: 128 (tests) or 512 (benchmarks).")] = 128,
) -> None:
    """Generate a synthetic hospital export (DICOM series, RIS reports, ground truth)."""
    from ctcorpus.synth import generate_export

    if matrix not in (128, 512):
        raise typer.BadParameter("matrix must be 128 or 512", param_hint="--matrix")
    with _exit_on_error():
        truth = generate_export(
            out, patients=patients, seed=seed, defects=defects, phi=phi, language=lang.value, matrix=matrix
        )
    typer.echo(
        f"wrote {len(truth.series)} series and {len(truth.reports)} reports "
        f"({len(truth.defects)} seeded defects) to {out}"
    )


@contextmanager
def _exit_on_error() -> Iterator[None]:
    """A ctcorpus error (bad config, missing key, not a dataset) ends the command with its message, exit 2.

    An :class:`~ctcorpus.errors.IncompleteRunError` passes: its run did its work, which the command reports.
    """
    from ctcorpus.errors import CtCorpusError, IncompleteRunError

    try:
        yield
    except IncompleteRunError:
        raise
    except CtCorpusError as error:
        typer.secho(str(error), fg="red", err=True)
        raise typer.Exit(2) from None


#: The loggers through which Prefect reports a failed task or flow run, with its traceback.
PREFECT_RUN_LOGGERS = ("prefect.flow_runs", "prefect.task_runs")
#: What Prefect logs as a task or flow run ends failed: the state, which names the exception's type.
_FAILED_STATE = re.compile(r"Finished in state Failed\('(?:Task|Flow) run encountered an exception:? (\w+): ")


def _error_names(error: type[Exception]) -> set[str]:
    """The names of ``error`` and its subclasses (those of ``flows`` too, once imported)."""
    return {error.__name__}.union(*(_error_names(sub) for sub in error.__subclasses__()))


def _not_of_a_ctcorpus_error(record: logging.LogRecord) -> bool:
    """Console filter of a command's flow run: drop what Prefect's run loggers report of a ctcorpus error
    (its traceback, the run's 'Finished in state Failed'). The command ends with the error's message, which
    names file and reason; those 2-3 ERROR lines stood before it. Any other error (a bug) keeps its
    traceback, and a Prefect server's run logs (its API handler) keep everything."""
    from ctcorpus.errors import CtCorpusError

    if not record.name.startswith(PREFECT_RUN_LOGGERS):
        return True
    if record.exc_info:
        return not isinstance(record.exc_info[1], CtCorpusError)
    failed = _FAILED_STATE.match(record.getMessage())
    return not (failed and failed[1] in _error_names(CtCorpusError))


def _run_flow(flow: Callable[..., dict[str, Any]], **parameters: Any) -> dict[str, Any]:
    """Run a flow; a ctcorpus error it raises ends the command like any other (one line, exit 2), but
    an :class:`~ctcorpus.errors.IncompleteRunError`, which the command reports; a SIGTERM exits 143
    once the run is ended (:func:`_exit_on_sigterm`), a Ctrl-C as soon as the flow has ended: its
    ephemeral Prefect API server, started deaf to SIGINT (:func:`flows.runtime.start_prefect_server`),
    outlives the Ctrl-C to record the run's end.

    Prefect re-raises the error of a failed run as it was raised, so ``_exit_on_error`` catches it;
    what Prefect logs of it on the way would stand before that line, so the console leaves it out
    (:func:`_not_of_a_ctcorpus_error`).
    """
    from flows.runtime import start_prefect_server

    consoles = list(logging.getLogger().handlers)  # Prefect's console handler, where the run loggers' records end
    for handler in consoles:
        handler.addFilter(_not_of_a_ctcorpus_error)
    terminate = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        with _exit_on_error():
            start_prefect_server()
            return flow(**parameters)
    finally:
        signal.signal(signal.SIGTERM, terminate)
        for handler in consoles:
            handler.removeFilter(_not_of_a_ctcorpus_error)


def _exit_on_sigterm(signum: int, frame: object) -> None:
    """SIGTERM handler (``kill``, ``timeout``, a scheduler's stop): exit 128 + 15 by ``SystemExit``.

    Prefect ends a flow run on SIGTERM, then sends it again to the handler it found. The default one
    killed the process before its exit handlers ran, among them the one that stops Prefect's ephemeral
    API server: that server was left running, orphaned, after every such stop.
    """
    sys.exit(128 + signum)


@contextmanager
def _progress_logs(name: str) -> Iterator[None]:
    """Show logger ``name``'s INFO records on stderr while the block runs: a training run's step
    losses are its progress (hours on a GPU), and no handler shows them otherwise (Python prints
    only warnings of a logger without one, and Prefect's run logs hold only its own loggers')."""
    logger = logging.getLogger(name)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    level, propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False  # a handler of the root logger would print each record again
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate


def _prepare(config: Optional[Path]) -> CorpusConfig:
    """Load and validate the config (bad config: a clear message naming the field) and set Prefect's env."""
    from ctcorpus.config import load_config
    from flows.runtime import apply_prefect_settings

    with _exit_on_error():
        cfg = load_config(config)
        if "prefect" not in sys.modules:  # Prefect reads its settings once, at import
            apply_prefect_settings(cfg.run)  # an output folder that cannot be written: one line too
    # Dask reads its logging config at import: its per-worker INFO lines would bury the summary.
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "error")
    return cfg


def _report(title: str, rows: dict[str, object]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, show_header=False)
    for key, value in rows.items():
        table.add_row(key, str(value))
    Console().print(table)


def _scheduler_address(value: Optional[str]) -> Optional[str]:
    """``--dask-address`` checked as ``run.dask_address`` is, before Prefect starts: a bare host was refused
    only inside the flow, a minute later, as an error of the config file ('<default>: ... run.dask_address')."""
    from pydantic import ValidationError

    from ctcorpus.config import RunConfig

    try:
        RunConfig(dask_address=value)
    except ValidationError as exc:
        raise typer.BadParameter(exc.errors()[0]["msg"].removeprefix("Value error, ")) from None
    return value


@app.command()
def ingest(
    export: Annotated[Optional[Path], typer.Argument(help="Root folder of the DICOM export (default: run.export_dir).")] = None,
    # exists: the flow quarantines a missing export, so a mistyped path gave a corpus without reports and exit 0
    reports: Annotated[list[Path], typer.Option("--reports", "-r", exists=True, dir_okay=False, help="RIS report export, in place of run.report_files; repeat for several: .csv/.tsv/.txt (delimited), .jsonl/.ndjson, .json (an array), .parquet, .xlsx/.xlsm, HL7 v2 .hl7/.oru; any of them gzipped (.gz).")] = [],
    work: Annotated[Optional[Path], typer.Option(help="Work store (default: <run.output_dir>/work).")] = None,
    config: ConfigOption = None,
    dask_address: Annotated[Optional[str], typer.Option(help="Existing Dask scheduler, e.g. tcp://host:8786 (default: run.dask_address, else a local cluster).", callback=_scheduler_address)] = None,
    serial: Annotated[bool, typer.Option("--serial", help="Process studies in this process, run.prefect_task_threads at a time (no Dask).")] = False,
) -> None:
    """Ingest an export incrementally: volumes, masks, reports, snippets (Prefect flow ingest_export)."""
    cfg = _prepare(config)
    from ctcorpus.errors import IncompleteRunError
    from ctcorpus.ingest import pseudonymizer_for
    from ctcorpus.pipeline import export_root
    from flows.ingest import ingest_export

    with _exit_on_error():  # before any work and before Prefect starts (seconds to a minute)
        pseudonymizer_for(cfg.ingest)  # no pseudonym key set
        export_root(cfg.run.model_copy(update={"export_dir": export}) if export else cfg.run)  # a mistyped path

    incomplete = None
    try:
        summary = _run_flow(
            ingest_export, config_path=str(config) if config else None, export_dir=str(export) if export else None,
            work_dir=str(work) if work else None, report_files=[str(r) for r in reports],
            dask_address=dask_address or cfg.run.dask_address, parallel=not serial, show_progress=True,
        )
    except IncompleteRunError as error:  # studies lost or none found: the flow run failed, so does the command
        summary, incomplete = error.result, error.message
    _report("ingest", {"studies": summary["studies"], "volumes": summary["volumes"],
                       "processed": counts_line(summary["computed"]) or "nothing: every result was in the work store",
                       "skipped (cached)": counts_line(summary["cached"]) or "nothing", "quarantined": summary["quarantined"],
                       "failed": summary["failed"], "seconds": f"{summary['seconds']:.1f}"})
    if summary["quarantined"]:  # the corpus's table names them redacted; an operator finds the files by this
        typer.echo(f"quarantined files with their real paths (operators only): {summary['quarantine_private']}")
    if incomplete:
        typer.secho(incomplete, fg="red", err=True)
        raise typer.Exit(1)


def counts_line(counts: dict[str, int]) -> str:
    """Counts as a summary shows them (``anatomy 2, ingest 2``; empty: none), where a dict's repr showed
    a run that did no work as ``{}`` and a split as ``{'patients': 7, 'reports': 16, ...}``."""
    return ", ".join(f"{stage} {count}" for stage, count in sorted(counts.items()))


@app.command()
def build(
    work: Annotated[Optional[Path], typer.Option(help="Work store of the ingest run (default: <run.output_dir>/work).")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Dataset folder (default: <run.output_dir>/dataset/<outputs.dataset_version>).")] = None,
    config: ConfigOption = None,
) -> None:
    """Build a dataset version: splits, Parquet tables, shards, manifest, card (Prefect flow build_dataset)."""
    _prepare(config)
    from flows.build import build_dataset

    with _progress_logs("ctcorpus.outputs"):  # the writing's progress, and what the build changed of the version it replaced
        result = _run_flow(build_dataset, config_path=str(config) if config else None,
                           work_dir=str(work) if work else None, out_dir=str(out) if out else None, show_progress=True)
    _report("build", {"dataset": result["path"], "files": result["files"], "changes": result["changes"], **{f"split {k}": counts_line(v) or "empty" for k, v in result["splits"].items()}})


@app.command()
def audit(
    dataset: Annotated[Path, typer.Argument(help="Dataset folder to audit.")],
    against: Annotated[Optional[Path], typer.Option(help="Another dataset version or corpus to compare with.")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Folder for audit.html and audit.json (default: <dataset>-audit beside it).")] = None,
    config: ConfigOption = None,
) -> None:
    """Audit a dataset: label statistics, leakage, near-duplicates, diff (Prefect flow audit_dataset)."""
    _prepare(config)
    from flows.audit import audit_dataset

    result = _run_flow(audit_dataset, dataset_dir=str(dataset), against_dir=str(against) if against else None,
                       out_dir=str(out) if out else None, config_path=str(config) if config else None)
    _report("audit", result)


@app.command()
def verify(dataset: Annotated[Path, typer.Argument(help="Dataset folder with manifest.json.")]) -> None:
    """Check every checksum, schema and count of a dataset against its manifest."""
    from ctcorpus.outputs import verify_dataset

    with _exit_on_error():
        problems = verify_dataset(dataset)
    for problem in problems:
        typer.secho(f"{problem.path}: {problem.problem}", fg="red")
    if problems:
        raise typer.Exit(1)
    typer.echo(f"{dataset}: every file matches the manifest")


@app.command()
def train(
    dataset: Annotated[Path, typer.Argument(help="Dataset folder (its shards/ are streamed).")],
    out: Annotated[Path, typer.Option(help="Folder for checkpoint, tokenizer and metrics.")] = Path("train-run"),
    config: ConfigOption = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    resume: Annotated[bool, typer.Option("--resume", help=(
        "Continue the run whose checkpoint (model.pt) is in --out (a finished one: evaluate it again); refused "
        "if it was made with another config (train.steps and train.checkpoint_every may change), dataset or "
        "tokenizer."))] = False,
) -> None:
    """Train the small contrastive CT-report model and evaluate it (Prefect flow train)."""
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", device):  # torch names a bad one only after the flow started
        raise typer.BadParameter("must be auto, cpu, cuda or cuda:N", param_hint="--device")
    _prepare(config)
    from flows.train import train as train_flow

    with _progress_logs("ctcorpus.train"):
        result = _run_flow(train_flow, dataset_dir=str(dataset), out_dir=str(out),
                           config_path=str(config) if config else None, device=device, resume=resume)
    _report("train", result)


@app.command("config")
def show_config() -> None:
    """Print the embedded default config as YAML, every field with its description as a comment."""
    from ctcorpus.config import CorpusConfig

    typer.echo("\n".join(commented_yaml(CorpusConfig())))


def commented_yaml(model: BaseModel, indent: int = 0) -> list[str]:
    """A config as YAML lines, each field preceded by its description (loadable with ``-c``)."""
    import yaml

    lines = []
    pad = " " * indent
    plain = model.model_dump(mode="json")
    for name, field in type(model).model_fields.items():
        value = getattr(model, name)
        if field.description:
            lines.append(f"{pad}# {field.description}")
        if isinstance(value, BaseModel):
            lines.append(f"{pad}{name}:")
            lines.extend(commented_yaml(value, indent + 2))
        else:
            dumped = yaml.safe_dump({name: plain[name]}, default_flow_style=True, width=10**6).strip()
            lines.append(f"{pad}{dumped[1:-1]}" if dumped.startswith("{") else f"{pad}{dumped}")
    return lines


@app.command()
def demo(
    folder: Annotated[Path, typer.Argument(help="Folder for the demo export and outputs.")] = Path("demo"),
    patients: Annotated[int, typer.Option(help="Patients in the synthetic export.")] = 8,
    serial: Annotated[bool, typer.Option("--serial", help="No Dask cluster.")] = False,
) -> None:
    """Synthetic export -> ingest -> build -> audit -> verify, on the embedded default, offline."""
    import yaml

    from ctcorpus.synth import generate_export

    export = folder / "export"
    if not (export / "ground_truth.json").is_file():
        with _exit_on_error():  # a folder an interrupted demo left behind
            generate_export(export, patients=patients, seed=0, defects=True, phi=True, language="mixed", matrix=128)
    config_path = folder / "config.yaml"
    config_path.write_text(yaml.safe_dump(demo_config(folder)), encoding="utf-8")
    typer.echo(f"synthetic export: {export} (ground truth: {export / 'ground_truth.json'})")
    ingest(export, reports=[], work=None, config=config_path, dask_address=None, serial=serial)
    dataset = folder / "out" / "dataset" / "v1"
    build(work=None, out=dataset, config=config_path)
    audit(dataset, against=None, out=folder / "out" / "audit", config=config_path)
    verify(dataset)
    typer.echo(f"corpus: {dataset} (card: {dataset / 'dataset_card.md'})")
    typer.echo(f"audit:  {folder / 'out' / 'audit' / 'audit.html'}")


def demo_config(folder: Path) -> dict[str, object]:
    """The demo's config: the embedded default plus the synthetic export's paths and a demo-only key."""
    export = folder / "export"
    return {
        "run": {
            "export_dir": str(export),
            "report_files": [str(p) for p in (export / "reports.csv", export / "reports_latin1.csv") if p.is_file()],
            "exclude_globs": ["ground_truth.json", "labels/*", "reports.jsonl", "leaks.json"],
            "output_dir": str(folder / "out"),
        },
        "ingest": {"pseudonym_key": "demo-only-key-not-secret"},
    }


if __name__ == "__main__":  # python -m ctcorpus.cli, where the console script is not on PATH
    app()
