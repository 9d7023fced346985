"""Render an audit HTML report to a PNG screenshot with headless Chromium (a person's view of the report).

Usage (from the project root)::

    .venv/bin/python bench/render_audit.py [--html out/audit/audit.html] [--png audit.png]

Without ``--html`` it audits a seeded synthetic corpus (600 volumes, 2 leaks of each kind,
checked against its clean version) in a temporary folder and renders that. Needs Debian's ``chromium``
(``apt-get install -y chromium``); it runs offline with networking features switched off.
Prints the paths and, as its last line, JSON with the screenshot's size.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def render(html: Path, png: Path, width: int = 1400, height: int = 3000, timeout_s: float = 120.0) -> Path:
    """Screenshot ``html`` into ``png`` with headless Chromium; raises if Chromium is absent or fails."""
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        raise FileNotFoundError("chromium not found: apt-get install -y chromium")
    with tempfile.TemporaryDirectory() as profile:
        command = [
            binary,
            *FLAGS,
            f"--user-data-dir={profile}",
            f"--screenshot={png.resolve()}",
            f"--window-size={width},{height}",
            html.resolve().as_uri(),
        ]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, check=False)
    if done.returncode != 0 or not png.is_file():
        raise RuntimeError(f"chromium failed ({done.returncode}) on {html}: {done.stderr[-2000:]}")
    return png


def _demo_report(out: Path) -> Path:
    """Audit a seeded synthetic corpus against its clean version and write the report under ``out``."""
    from ctcorpus.audit import audit_corpus, write_audit_report
    from ctcorpus.synth.leaks import synthetic_corpus_tables

    clean, _ = synthetic_corpus_tables(600, seed=7)
    seeded, _ = synthetic_corpus_tables(600, seed=7, leaks=2)
    result = audit_corpus(
        dataclasses.replace(seeded, name="demo-v2"), against=dataclasses.replace(clean, name="demo-v1")
    )
    html_path, _ = write_audit_report(result, out)
    return html_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--html", type=Path, help="audit.html to render (default: a synthetic demo)")
    parser.add_argument("--png", type=Path, default=Path("audit_screenshot.png"), help="screenshot path")
    parser.add_argument("--height", type=int, default=3000, help="window height in pixels")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="audit-demo-") as scratch:
        html = args.html or _demo_report(Path(scratch))
        png = render(html, args.png, height=args.height)
    source = str(html) if args.html else "synthetic demo (temporary)"
    print(f"html: {source}\nscreenshot: {png}")
    print(json.dumps({"html": source, "png": str(png), "png_bytes": png.stat().st_size}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
