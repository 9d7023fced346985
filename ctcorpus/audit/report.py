"""The audit's output: the same numbers as JSON and as a self-contained HTML page with plots.

The HTML embeds every plot as a base64 PNG and its CSS inline, so the one file can be mailed or
attached to a dataset card. Plots are drawn on :class:`matplotlib.figure.Figure` objects with the
Agg canvas (no pyplot state, safe in worker processes). Findings come first, most severe on top:
a person should see in five seconds whether the corpus may be trained on.
"""

from __future__ import annotations

import base64
import dataclasses
import fcntl
import html
import io
import json
import logging
import math
import os
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ctcorpus.audit.core import AuditResult
from ctcorpus.audit.diff import CorpusDiff
from ctcorpus.audit.findings import SEVERITY_ORDER, Finding, FindingKind, Severity, groups_text
from ctcorpus.audit.stats import CorpusStats
from ctcorpus.errors import AuditError

logger = logging.getLogger(__name__)

HTML_FILE = "audit.html"
JSON_FILE = "audit.json"
_COLOURS = {Severity.HIGH: "#c62828", Severity.MEDIUM: "#ef6c00", Severity.LOW: "#f9a825", Severity.INFO: "#546e7a"}
_SPLIT_COLOURS = {"train": "#1565c0", "validation": "#2e7d32", "test": "#6a1b9a"}
_NOT_DRAWN = "#9e9e9e"  # heatmap cells left off the colour scale
_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px 40px;color:#212121;max-width:1300px}
h1{margin-bottom:4px}h2{border-bottom:2px solid #e0e0e0;padding-bottom:4px;margin-top:36px}
.meta{color:#616161;margin-bottom:16px}
.badges{display:flex;gap:12px;margin:12px 0}
.badge{color:#fff;border-radius:6px;padding:10px 18px;font-size:18px;font-weight:600;min-width:120px;text-align:center}
.badge small{display:block;font-size:12px;font-weight:400;opacity:.9}
table{border-collapse:collapse;margin:8px 0 16px;font-size:13px}
th,td{border:1px solid #e0e0e0;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f5f5f5}td.num{text-align:right;font-variant-numeric:tabular-nums}
.sev{color:#fff;border-radius:4px;padding:1px 6px;font-size:12px;font-weight:600}
.ok{background:#e8f5e9;border-left:6px solid #2e7d32;padding:10px 14px;margin:8px 0}
.partial{background:#fff3e0;border-left:6px solid #ef6c00;padding:10px 14px;margin:8px 0}
img{max-width:100%;border:1px solid #eeeeee;margin:6px 0}
.grid{display:grid;grid-template-columns:1fr 1fr;gap:16px}
code{font-size:12px}
"""


# ---------------------------------------------------------------- JSON


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """A frame as JSON-safe records (numpy scalars and arrays to Python)."""
    return json.loads(frame.to_json(orient="records"))


def _finding_dict(finding: Finding) -> dict[str, Any]:
    data = dataclasses.asdict(finding)
    return {**data, "kind": finding.kind.value, "severity": finding.severity.value, "ids": list(finding.ids)}


def _diff_dict(diff: CorpusDiff) -> dict[str, Any]:
    def sample(part: Any) -> dict[str, Any]:
        return {
            "added": list(part.added),
            "removed": list(part.removed),
            "changed": _records(part.changed),
            "field_counts": _records(part.field_counts),
        }

    return {
        "old": diff.old_name,
        "new": diff.new_name,
        "volumes": sample(diff.volumes),
        "reports": sample(diff.reports),
        "label_shift": _records(diff.label_shift),
    }


def _finite(data: Any, where: str, replaced: list[str]) -> Any:
    """``data`` with each NaN or infinity written as its text ('nan', 'inf', '-inf'), its place
    (``manifest.counts.volumes``, ``findings[3].score``) added to ``replaced``.

    json.dumps writes them as the bare NaN and Infinity, which are not JSON: a hand-edited manifest
    (or a count written as a float) made an audit.json that no JSON parser but Python's reads.
    """
    if isinstance(data, float) and not math.isfinite(data):
        replaced.append(where)
        return str(data)
    if isinstance(data, dict):
        return {key: _finite(value, f"{where}.{key}" if where else str(key), replaced) for key, value in data.items()}
    if isinstance(data, list):
        return [_finite(value, f"{where}[{k}]", replaced) for k, value in enumerate(data)]
    return data


def result_to_dict(result: AuditResult) -> dict[str, Any]:
    """Everything in the audit as plain JSON-able data (what ``audit.json`` holds).

    A NaN or infinity (of a hand-edited manifest) is written as its text, and its place listed
    under ``non_finite`` (empty when there is none), with a warning.

    Examples
    --------
    >>> data = result_to_dict(audit_corpus(tables))   # doctest: +SKIP
    >>> data["summary"]["high"]                        # doctest: +SKIP
    0
    """
    stats = {f.name: _records(getattr(result.stats, f.name)) for f in dataclasses.fields(CorpusStats)}
    data = {
        "corpus": result.name,
        "against": result.against,
        "pipeline_version": result.pipeline_version,
        "manifest": json.loads(json.dumps(dict(result.manifest), default=str)),
        "config": result.config.model_dump(mode="json"),
        "summary": {s.value: result.count(s) for s in SEVERITY_ORDER},
        "findings": [_finding_dict(f) for f in result.findings],
        "coverage": _records(result.coverage),
        "stats": stats,
        "diff": _diff_dict(result.diff) if result.diff is not None else None,
    }
    replaced: list[str] = []
    data = _finite(data, "", replaced)
    if replaced:
        logger.warning(
            "audit of %s: %d values are NaN or infinite (%s), written to audit.json as text",
            result.name, len(replaced), ", ".join(replaced[:5]) + (", ..." if len(replaced) > 5 else ""),
        )
    return {**data, "non_finite": replaced}


# ---------------------------------------------------------------- plots


def _png(figure: Figure) -> str:
    """A figure as an ``<img>`` tag holding a base64 PNG."""
    buffer = io.BytesIO()
    FigureCanvasAgg(figure)
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return f'<img alt="plot" src="data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}">'


def _split_colour(split: str) -> str:
    return _SPLIT_COLOURS.get(split, "#757575")


def _split_name(split: str) -> str:
    """A split as a legend names it: matplotlib's legend leaves out a bar labelled '' (no known split)."""
    return split or "(no split)"


def _named_splits(frame: pd.DataFrame) -> pd.DataFrame:
    """A table's split column as the plots name it: an empty cell read as a lost value."""
    return frame.assign(split=frame["split"].map(_split_name))


def _split_order(splits: pd.Index) -> list[str]:
    """Splits in train, validation, test order (others after), so colours and legends line up."""
    splits = splits.unique()
    return [s for s in _SPLIT_COLOURS if s in splits] + [s for s in splits if s not in _SPLIT_COLOURS]


def _by_split(table: pd.DataFrame) -> pd.DataFrame:
    """Columns in :func:`_split_order`."""
    return table[_split_order(table.columns)]


def _prevalence_plot(prevalence: pd.DataFrame) -> str:
    """Horizontal grouped bars: positive share of every label per split (the first thing to compare)."""
    table = _by_split(prevalence.pivot_table(index="label", columns="split", values="prevalence", fill_value=0.0))
    table = table.loc[table.max(axis=1).sort_values().index]
    figure = Figure(figsize=(11, 0.42 * len(table) + 1.5))
    axes = figure.subplots()
    height = 0.8 / max(len(table.columns), 1)
    positions = np.arange(len(table))
    for k, split in enumerate(table.columns):  # first split on top of each group, as in the legend
        offset = (len(table.columns) - 1 - k) * height
        axes.barh(positions + offset, 100 * table[split], height, label=_split_name(split), color=_split_colour(split))
    axes.set_yticks(positions + height * (len(table.columns) - 1) / 2, [s.replace("_", " ") for s in table.index])
    axes.set_xlabel("reports positive for the label (%)")
    axes.set_title("Label prevalence per split")
    axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
    axes.grid(axis="x", alpha=0.3)
    return _png(figure)


def _cooccurrence_plot(pairs: pd.DataFrame) -> str:
    """Heatmap of reports positive for two labels at once; the diagonal (a label alone) is left out.

    The diagonal would swamp the pairs, so it is kept off the colour scale and drawn grey (the title
    says so): left blank (white), it read as the near-white cells of 0.
    """
    matrix = pairs.pivot_table(index="label_a", columns="label_b", values="reports", fill_value=0)
    labels = sorted(set(matrix.index) | set(matrix.columns))
    matrix = matrix.reindex(index=labels, columns=labels, fill_value=0).to_numpy().astype(float)
    np.fill_diagonal(matrix, np.nan)
    figure = Figure(figsize=(10, 8.5))
    axes = figure.subplots()
    image = axes.imshow(matrix, cmap=matplotlib.colormaps["Blues"].with_extremes(bad=_NOT_DRAWN))
    names = [s.replace("_", " ") for s in labels]
    axes.set_xticks(range(len(labels)), names, rotation=60, ha="right", fontsize=9)
    axes.set_yticks(range(len(labels)), names, fontsize=9)
    axes.set_title("Label co-occurrence: reports positive for both (grey diagonal: a label alone, not drawn)")
    figure.colorbar(image, ax=axes, shrink=0.7, label="reports")
    return _png(figure)


def _volume_plot(values: pd.DataFrame) -> str:
    """Stacked bars per split for kernel, manufacturer, contrast and mask source."""
    fields = list(dict.fromkeys(values["field"]))
    figure = Figure(figsize=(13, 3.2 * ((len(fields) + 1) // 2)))
    grid = figure.subplots((len(fields) + 1) // 2, 2, squeeze=False)
    for axes, field in zip(grid.ravel(), fields):
        table = _by_split(
            values[values["field"] == field].pivot_table(index="value", columns="split", values="volumes", fill_value=0)
        )
        left = np.zeros(len(table))
        for split in table.columns:
            axes.barh(
                table.index.astype(str), table[split], left=left, label=_split_name(split), color=_split_colour(split)
            )
            left += table[split].to_numpy()
        axes.set_title(f"volumes by {field.replace('_', ' ')}")
        axes.set_xlabel("volumes")
        axes.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    for axes in grid.ravel()[len(fields) :]:
        axes.set_visible(False)
    figure.tight_layout()
    return _png(figure)


def _bar_plot(frame: pd.DataFrame, label: str, value: str, title: str, colour: str = "#37474f") -> str:
    """One horizontal bar chart, largest on top."""
    frame = frame.sort_values(value)
    figure = Figure(figsize=(9, 0.35 * len(frame) + 1.4))
    axes = figure.subplots()
    axes.barh(frame[label].astype(str).str.replace("_", " "), frame[value], color=colour)
    axes.set_title(title)
    axes.set_xlabel(value)
    axes.grid(axis="x", alpha=0.3)
    return _png(figure)


def _shift_plot(shift: pd.DataFrame, old: str, new: str) -> str:
    """Prevalence of each label in the old and the new version, side by side."""
    shift = shift.sort_values("label", ascending=False)
    positions = np.arange(len(shift))
    figure = Figure(figsize=(10, 0.4 * len(shift) + 1.5))
    axes = figure.subplots()
    axes.barh(positions + 0.2, 100 * shift["old_prevalence"], 0.4, label=old, color="#90a4ae")
    axes.barh(positions - 0.2, 100 * shift["new_prevalence"], 0.4, label=new, color="#1565c0")
    axes.set_yticks(positions, shift["label"].str.replace("_", " "))
    axes.set_xlabel("reports positive (%)")
    axes.set_title("Label prevalence: old vs new version")
    axes.legend(loc="lower right")
    return _png(figure)


# ---------------------------------------------------------------- HTML


def _label_counts(prevalence: pd.DataFrame) -> pd.DataFrame:
    """Per label, reports positive for it and reports mentioning it (in any state), split by split.

    Positive counts alone showed a label no report names as a label only never found (both 0).
    """
    counts = prevalence.assign(mentioned=prevalence["positive"] + prevalence["negative"] + prevalence["uncertain"])
    wide = counts.pivot_table(index="label", columns="split", values=["positive", "mentioned"], fill_value=0)
    # by the split level: wide["positive"] of split '' alone (a corpus of no known split) is a Series
    splits = _split_order(wide.columns.get_level_values("split"))
    columns = [(value, split) for split in splits for value in ("positive", "mentioned")]
    return wide[columns].set_axis([f"{_split_name(split)} {value}" for value, split in columns], axis=1).reset_index()


def _number(value: float) -> str:
    """A float for a table cell: whole values as integers (1024, not 1.02e+03), others to 6 significant digits."""
    return str(int(value)) if value.is_integer() else f"{value:.6g}"


def _table(frame: pd.DataFrame, limit: int = 60) -> str:
    """A frame as an HTML table (numbers right-aligned and rounded), at most ``limit`` rows."""
    if frame.empty:
        return "<p><em>none</em></p>"
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    rows = []
    for record in frame.head(limit).itertuples(index=False):
        cells = []
        for value in record:
            if isinstance(value, float | np.floating):
                cells.append(f'<td class="num">{_number(float(value))}</td>')
            elif isinstance(value, int | np.integer):
                cells.append(f'<td class="num">{value}</td>')
            else:
                cells.append(f"<td>{html.escape(str(value))}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    more = f"<p><em>{len(frame) - limit} more rows in the JSON</em></p>" if len(frame) > limit else ""
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>{more}"


def _percent(frame: pd.DataFrame, columns: tuple[str, ...]) -> pd.DataFrame:
    """Fractions (0-1) as the percentages the plots show, to one decimal, the column named so
    (``share (%)``).

    audit.json keeps the fractions; on the page a table beside a plot in % spoke another unit.
    """
    return frame.assign(**{c: (100 * frame[c]).round(1) for c in columns}).rename(columns={c: f"{c} (%)" for c in columns})


def _severity(severity: Severity) -> str:
    return f'<span class="sev" style="background:{_COLOURS[severity]}">{severity.value}</span>'


def _clear(coverage: pd.DataFrame, verdict: str) -> str:
    """The all-clear ``verdict``, unless a leak check could not read every row: then what it covers, and what not.

    A check passes the rows it cannot read (no fingerprint, no array hash, no patient_key), so
    'no leak' of a corpus it only partly read, or of one with no row at all, would claim too much.
    """
    if not coverage["rows"].any():
        return '<div class="partial">Nothing was checked: no volume and no report.</div>'
    partial = coverage[coverage["checked"] < coverage["rows"]]
    if partial.empty:
        return f'<div class="ok">{verdict}.</div>'
    names = ", ".join(dict.fromkeys(partial["check"].str.replace("_", " ")))
    return (
        f'<div class="partial">{verdict} among the rows checked; not every row could be checked for '
        f"{html.escape(names)} (see What was checked).</div>"
    )


def _findings_section(result: AuditResult) -> str:
    """Badges per severity, then the findings (at most ``max_listed`` per kind; how many more, named)."""
    badges = "".join(
        f'<div class="badge" style="background:{_COLOURS[s]}">{result.count(s)}<small>{s.value}</small></div>'
        for s in SEVERITY_ORDER
    )
    if not result.findings:
        return f'<div class="badges">{badges}</div>{_clear(result.coverage, "No finding: no leak, no duplicate")}'
    high = result.count(Severity.HIGH)
    verdict = (
        f'<p style="color:{_COLOURS[Severity.HIGH]}"><b>{high} high-severity findings: leaks or copies across '
        "splits. Resolve them before training or evaluating.</b></p>"
        if high
        else _clear(result.coverage, "No leak between splits")
    )
    kinds = pd.Series([f.kind.value for f in result.findings]).value_counts()
    summary = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in kinds.items())
    rows, shown = [], pd.Series(0, index=kinds.index)
    for finding in result.findings:
        if shown[finding.kind.value] >= result.config.max_listed:
            continue
        shown[finding.kind.value] += 1
        ids = ", ".join(finding.ids[:8]) + (f" (+{len(finding.ids) - 8})" if len(finding.ids) > 8 else "")
        rows.append(
            f"<tr><td>{_severity(finding.severity)}</td><td>{finding.kind.value}</td>"
            f"<td><code>{html.escape(ids)}</code></td><td>{html.escape(groups_text(finding.groups))}</td>"
            f'<td class="num">{finding.score:.3f}</td><td>{html.escape(finding.detail)}</td></tr>'
        )
    unlisted = kinds - shown
    more = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in unlisted[unlisted > 0].items())
    note = (
        f"<p><em>Not listed (at most {result.config.max_listed} of a kind): {html.escape(more)}; "
        f"all are in {JSON_FILE}.</em></p>"
        if more
        else ""
    )
    return (
        f'<div class="badges">{badges}</div>{verdict}<p><b>Findings:</b> {html.escape(summary)}.</p>'
        "<table><tr><th>severity</th><th>kind</th><th>ids</th><th>splits / corpora</th><th>score</th>"
        f"<th>detail</th></tr>{''.join(rows)}</table>{note}"
    )


def _diff_section(diff: CorpusDiff) -> str:
    counts = pd.DataFrame(
        [
            {"table": name, "added": len(part.added), "removed": len(part.removed), "changed": len(part.changed)}
            for name, part in (("volumes", diff.volumes), ("reports", diff.reports))
        ]
    )
    fields = pd.concat(
        [diff.volumes.field_counts.assign(table="volumes"), diff.reports.field_counts.assign(table="reports")]
    )
    shift = diff.label_shift
    plot = _shift_plot(shift, diff.old_name, diff.new_name) if not shift.empty else ""
    not_compared = [f.detail for f in diff.findings if f.kind == FindingKind.LABELS_NOT_COMPARED]
    shifts = (
        f'<div class="partial">{html.escape(not_compared[0])}.</div>'
        if not_compared
        else _table(_percent(shift, ("old_prevalence", "new_prevalence", "delta")))
    )
    return (
        f"<h2>Changes from {html.escape(diff.old_name)} to {html.escape(diff.new_name)}</h2>"
        f"{_table(counts)}<h3>Changed fields</h3>{_table(fields)}<h3>Label shifts</h3>{plot}{shifts}"
    )


def _sections(result: AuditResult) -> list[str]:
    """The page's HTML pieces, in order."""
    stats = result.stats
    manifest = result.manifest
    version = html.escape(str(manifest.get("dataset_version", "")))
    built = html.escape(str(manifest.get("pipeline_version", "")))
    parts = [
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>Audit of {html.escape(result.name)}"
        f"</title><style>{_CSS}</style></head><body>",
        f"<h1>Corpus audit: {html.escape(result.name)}</h1>",
        f"<div class='meta'>dataset version {version or 'n/a'} &middot; built by ctcorpus {built or 'n/a'} "
        "&middot; audited by ctcorpus "
        f"{html.escape(result.pipeline_version)}"
        + (f" &middot; checked against <b>{html.escape(result.against)}</b>" if result.against else "")
        + "</div>",
        "<h2>Summary of findings</h2>",
        _findings_section(result),
        "<h2>What was checked</h2>",
        "<p>Rows each leak check could read, of all rows: a row without what the check needs is not checked.</p>",
        _table(result.coverage if result.against else result.coverage.drop(columns="corpus")),
        "<h2>Splits</h2>",
        # the dataset card counts every patient and study of a split, these only those with a volume
        "<p>Volumes, and the patients and studies they belong to; reports of the split's studies "
        "(the dataset card counts every patient and study of a split, also those without a volume).</p>",
        _table(_named_splits(stats.splits)),
        "<h2>Labels</h2>",
    ]
    pairs = stats.label_cooccurrence
    if not stats.label_prevalence.empty:
        parts.append(_prevalence_plot(stats.label_prevalence))
        # without a pair the heatmap is a blank square (an empty one, with no positive report)
        parts.append(
            _cooccurrence_plot(pairs)
            if (pairs["label_a"] != pairs["label_b"]).any()
            else "<p><em>No co-occurrence plot: no report is positive for two labels.</em></p>"
        )
        parts += ["<h3>Reports positive for, and mentioning, each label per split</h3>"]
        parts.append(_table(_label_counts(stats.label_prevalence)))
    else:
        parts.append("<p><em>No label to count: the labels table is missing or has no report-level row.</em></p>")
    parts += ["<h2>Reports</h2>", _table(_named_splits(stats.report_lengths)), "<h3>Missing sections</h3>"]
    missing = stats.missing_sections
    parts.append(_table(_percent(missing[missing["missing"] > 0], ("share",))))
    parts += [
        "<h2>Volumes</h2>",
        (
            "<p>Voxel spacing in mm (x, y in-plane, z between slices) and slices per volume, as exported "
            "(before resampling to the corpus grid): minimum, 5th percentile, median, 95th percentile, maximum.</p>"
        ),
        _table(_named_splits(stats.volume_numeric)),
    ]
    if not stats.volume_values.empty:
        parts.append(_volume_plot(stats.volume_values))
    parts.append("<h2>Snippets, quarantine</h2><div class='grid'>")
    for frame, label, title in (
        (stats.snippet_anatomies, "anatomy", "snippets per anatomy"),
        (stats.snippet_labels, "label", "snippets per label"),
    ):
        none = f"<p><em>No {title}: the snippets table is missing or empty.</em></p>"
        parts.append(f"<div>{_bar_plot(frame, label, 'snippets', title) if not frame.empty else none}</div>")
    parts.append("</div>")
    items = stats.quarantine["stage"] + ": " + stats.quarantine["reason"] + " (" + stats.quarantine["action"] + ")"
    if not stats.quarantine.empty:
        title = "quarantine table by reason (action: only reject leaves an item out)"
        parts.append(_bar_plot(stats.quarantine.assign(item=items), "item", "items", title, colour="#8d6e63"))
    else:
        parts.append("<p><em>Nothing quarantined: the quarantine table is missing or empty.</em></p>")
    if result.diff is not None:
        parts.append(_diff_section(result.diff))
    config = html.escape(json.dumps(result.config.model_dump(mode="json")))
    parts.append(f"<h2>Settings</h2><p><code>{config}</code></p></body></html>")
    return parts


def render_html(result: AuditResult) -> str:
    """The audit as one self-contained HTML page (inline CSS, base64 PNG plots).

    Plots are drawn with mathtext off: kernel, manufacturer and corpus names are free text (DICOM
    strings), and two ``$`` in a label would otherwise be parsed as math, a crash or a wrong label.

    Examples
    --------
    >>> page = render_html(audit_corpus(tables))   # doctest: +SKIP
    """
    with matplotlib.rc_context({"text.parse_math": False}):
        return "\n".join(_sections(result))


def _write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path`` and rename it: readers never see half a file."""
    partial = path.with_name(f".{path.name}.partial")
    try:
        partial.write_text(text, encoding="utf-8")
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)


def write_audit_report(result: AuditResult, out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``audit.html`` and ``audit.json`` into ``out_dir`` (created if needed).

    Both are rendered before either is written, so a page that cannot be drawn leaves the previous
    pair (or none) rather than a new JSON beside an old or missing page; each file replaces its old
    one by a rename, so neither is ever seen half-written. The pair is written under a lock on
    ``out_dir``: two audits into one folder (overlapping scheduled runs) write one after the other,
    never one's page beside the other's JSON.

    Examples
    --------
    >>> html_path, json_path = write_audit_report(audit_corpus(tables), "out/audit")   # doctest: +SKIP
    """
    out = Path(out_dir)
    html_path, json_path = out / HTML_FILE, out / JSON_FILE
    texts = {
        html_path: render_html(result),
        json_path: json.dumps(result_to_dict(result), indent=1, sort_keys=True, allow_nan=False),
    }
    try:
        out.mkdir(parents=True, exist_ok=True)
        folder = os.open(out, os.O_RDONLY)
        try:
            fcntl.flock(folder, fcntl.LOCK_EX)  # released when closed, also by a killed process
            for path, text in texts.items():
                _write_atomic(path, text)
        finally:
            os.close(folder)
    except OSError as exc:
        raise AuditError(f"cannot write the audit report: {exc.strerror}", path=out) from None
    return html_path, json_path
