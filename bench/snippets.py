"""Benchmark of snippet mining: accuracy on synthetic ground truth, and mining speed.

Run from the project root: ``.venv/bin/python bench/snippets.py [--reports N]``.

Accuracy: reports rendered by ``ctcorpus.synth.report_text`` (the same synthetic studies the tests
use, from ``tests/test_snippets.py``: a 2.5 mm primary series and a 1 mm recon, English and
German, every positive finding referenced in one of the radiologists' forms, some beside a prior
exam's reference, a pair of segments or an image on a reformat) are mined and resolved; precision
and recall count references (overlapping the true expression with equal series and images; an
image on a reformat, which resolution quarantines, is none), the z error is the resolved z against the true z over half the referenced
slice thickness; the placement error is the chosen corpus slice's centre against the true z over
half the corpus spacing.

Speed (ratios and per-core counts, see ../shared/BENCHMARKS.md): references mined per CPU second
of this single-threaded process (with the sentence spans given, as in the pipeline, and with the
grammar's own sentence split), and report throughput of a blank spaCy sentencizer (what the
reports stage runs anyway) with and without mining + resolution on top.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ctcorpus.config import SnippetsConfig  # noqa: E402
from ctcorpus.enums import QuarantineReason  # noqa: E402
from ctcorpus.snippets import SentenceContext, mine_image_references, resolve_references  # noqa: E402
from tests.test_snippets import score, synthetic_study  # noqa: E402


def _cpu(fn) -> float:
    start = time.process_time()
    fn()
    return time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reports", type=int, default=1000, help="synthetic reports (default 1000)")
    parser.add_argument("--repeat", type=int, default=5, help="passes over the texts for the speed figures")
    args = parser.parse_args()

    rng = np.random.default_rng(7)
    studies = [synthetic_study(rng, i, "en" if i % 2 else "de") for i in range(args.reports)]
    config = SnippetsConfig(primary_series_number=2)

    tp = n_found = n_truth = n_pairs = n_reformat = 0
    z_err = place_err = 0.0
    for report, series, volume in studies:
        spans = [(s.start, s.end) for s in report.sentences]
        refs = mine_image_references(report.text, spans)
        found_tp, found, truth = score(refs, report.references)
        tp, n_found, n_truth = tp + found_tp, n_found + found, n_truth + truth
        pairs, quarantine = resolve_references(refs, series, volume, config, report_id=report.accession_number,
                                               text=report.text, sentences=[SentenceContext(a, b) for a, b in spans])
        n_reformat += sum(q.reason is QuarantineReason.NON_AXIAL_SERIES for q in quarantine)
        thickness = {s.series_number: s.slice_thickness_mm for s in series}
        for pair in pairs:
            true = next(t for t in report.references if t.start < pair.reference_end and pair.reference_start < t.end)
            true_z = true.z_mm[true.image_numbers.index(pair.image_number)]
            z_err = max(z_err, abs(pair.z_mm - true_z) / (thickness[pair.series_number] / 2))
            centre = volume.origin_mm[2] + volume.direction[8] * volume.spacing_mm[2] * pair.slice_index
            place_err = max(place_err, abs(centre - true_z) / (volume.spacing_mm[2] / 2))
            n_pairs += 1
    precision = tp / n_found if n_found else 0.0
    recall = tp / n_truth if n_truth else 0.0

    texts = [report.text for report, _, _ in studies]
    spans = [[(s.start, s.end) for s in report.sentences] for report, _, _ in studies]
    n_refs = sum(len(mine_image_references(t)) for t in texts)
    # as the pipeline runs it: sentence spans come from the reports stage
    mine_s = _cpu(lambda: [mine_image_references(t, p) for _ in range(args.repeat) for t, p in zip(texts, spans)])
    # standalone: the grammar's own sentence split as well
    own_split_s = _cpu(lambda: [mine_image_references(t) for _ in range(args.repeat) for t in texts])
    refs_per_s = n_refs * args.repeat / mine_s
    refs_per_s_own_split = n_refs * args.repeat / own_split_s
    chars_per_s = sum(map(len, texts)) * args.repeat / mine_s

    import spacy  # the reports stage's sentence splitter: the reference for report throughput

    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")

    def reports_off() -> None:
        for doc in nlp.pipe(texts):
            _ = [(s.start_char, s.end_char) for s in doc.sents]

    def reports_on() -> None:
        for doc, (report, series, volume) in zip(nlp.pipe(texts), studies):
            spans = [(s.start_char, s.end_char) for s in doc.sents]
            refs = mine_image_references(doc.text, spans)
            resolve_references(refs, series, volume, config, report_id=report.accession_number, text=doc.text)

    off_s = min(_cpu(reports_off) for _ in range(3))
    on_s = min(_cpu(reports_on) for _ in range(3))

    rows = [
        ("synthetic reports", f"{len(studies)}"),
        ("true references", f"{n_truth}"),
        ("found references", f"{n_found}"),
        ("snippet-slice pairs", f"{n_pairs}"),
        ("images on a reformat quarantined", f"{n_reformat}"),
        ("precision", f"{precision:.4f}"),
        ("recall", f"{recall:.4f}"),
        ("max |z error| / (thickness/2)", f"{z_err:.4f}"),
        ("max |slice centre - true z| / (corpus spacing/2)", f"{place_err:.4f}"),
        ("references mined / CPU s (sentence spans given)", f"{refs_per_s:,.0f}"),
        ("references mined / CPU s (own sentence split)", f"{refs_per_s_own_split:,.0f}"),
        ("characters scanned / CPU s", f"{chars_per_s:,.0f}"),
        ("reports / CPU s, sentencizer only", f"{len(texts) / off_s:,.0f}"),
        ("reports / CPU s, sentencizer + mining", f"{len(texts) / on_s:,.0f}"),
        ("throughput with mining / without", f"{off_s / on_s:.3f}"),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    print(
        json.dumps(
            {
                "precision": round(precision, 5),
                "recall": round(recall, 5),
                "z_err_max_over_half_thickness": round(z_err, 5),
                "placement_err_max_over_half_voxel": round(place_err, 5),
                "refs_per_s_per_core": round(refs_per_s, 1),
                "refs_per_s_per_core_own_split": round(refs_per_s_own_split, 1),
                "reports_per_s_per_core_mining_on": round(len(texts) / on_s, 1),
                "reports_per_s_per_core_mining_off": round(len(texts) / off_s, 1),
                "throughput_on_over_off": round(off_s / on_s, 4),
                "n_references": n_truth,
                "n_reformat_quarantined": n_reformat,
            }
        )
    )


if __name__ == "__main__":
    main()
