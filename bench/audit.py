"""Benchmark of the audit on metadata-only synthetic corpora (no pixels): time and seeded-leak recall.

Run from the project root: ``.venv/bin/python bench/audit.py``. For 1,000 and 10,000 volumes it
builds a corpus with seeded leaks of every kind (``ctcorpus.synth.leaks``), audits it, and scores
the findings: seeded leaks found / total, and false leaks (leak findings matching no seeded case).
A clean corpus of each size is audited too (it must yield no leak finding). Time is wall-clock of
``audit_corpus`` alone (generation excluded); growth is reported as the 10k/1k time ratio against
the 10x growth a linear method would show (all-pairs would be 100x).
Last line: JSON with ``audit_s_1k``, ``audit_s_10k``, ``seeded_leaks_found``, ``seeded_leaks_total``,
``false_leaks``.
"""

from __future__ import annotations

import json
import time

from ctcorpus.audit import audit_corpus
from ctcorpus.synth.leaks import match_leaks, synthetic_corpus_tables

SIZES = (1_000, 10_000)
LEAKS = {1_000: 2, 10_000: 10}  # cases per kind (5 kinds)


def main() -> dict[str, float | int]:
    figures: dict[str, float | int] = {"seeded_leaks_found": 0, "seeded_leaks_total": 0, "false_leaks": 0}
    print(
        f"{'volumes':>8} {'leaks/kind':>10} {'audit s':>8} {'found':>6} {'total':>6} {'false':>6} {'clean false':>11}"
    )
    for n in SIZES:
        tables, seeded = synthetic_corpus_tables(n, seed=n, leaks=LEAKS[n])
        start = time.perf_counter()
        result = audit_corpus(tables)
        elapsed = time.perf_counter() - start
        score = match_leaks(result.findings, seeded)
        clean, _ = synthetic_corpus_tables(n, seed=n + 1)
        clean_false = match_leaks(audit_corpus(clean).findings, ()).false
        counts = f"{score.found:>6} {score.total:>6} {score.false:>6} {clean_false:>11}"
        print(f"{n:>8} {LEAKS[n]:>10} {elapsed:>8.2f} {counts}")
        figures[f"audit_s_{n // 1000}k"] = round(elapsed, 3)
        figures["seeded_leaks_found"] += score.found
        figures["seeded_leaks_total"] += score.total
        figures["false_leaks"] += score.false + clean_false
    figures["growth_10k_over_1k"] = round(figures["audit_s_10k"] / figures["audit_s_1k"], 2)
    print(f"time grows {figures['growth_10k_over_1k']}x for 10x the volumes (linear: 10x, all-pairs: 100x)")
    return figures


if __name__ == "__main__":
    print(json.dumps(main()))
