"""Benchmark DICOM ingestion against SimpleITK, dcm2niix and cat, all in one run.

A 512x512x300 int16 CT series (explicit VR little endian, shuffled file names, instance
numbers running against z) is written once into a temp dir; every figure is a ratio against a
reference measured on the same files in the same run (median of ``--repeats``), as
``../shared/BENCHMARKS.md`` asks. Peak RSS is measured in a fresh subprocess.

Run: ``.venv/bin/python bench/ingest.py`` (under 2 minutes on 2 cores). The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ctcorpus.config.ingest import IngestConfig  # noqa: E402
from ctcorpus.ingest import assemble_volume, index_export, ingest_stack, plan_stacks  # noqa: E402
from ctcorpus.ingest.filecache import DiscoveryCache  # noqa: E402

DCM2NIIX = ROOT / ".venv" / "bin" / "dcm2niix"


def write_series(out: Path, n: int, size: int, seed: int = 0) -> list[Path]:
    """A body-like phantom: an ellipse of soft tissue with noise, air around it, 0.75 x 0.75 x 1 mm."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    body = ((xx - size / 2) / (size * 0.42)) ** 2 + ((yy - size / 2) / (size * 0.32)) ** 2 < 1
    base = np.where(body, 1064, 24).astype(np.uint16)  # stored; intercept -1024 -> 40 / -1000 HU
    series_uid = generate_uid(entropy_srcs=["bench", str(seed)])
    names = rng.permutation(n)
    paths = []
    for k in range(n):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
        ds.SOPInstanceUID = generate_uid(entropy_srcs=[series_uid, str(k)])
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPClassUID, ds.Modality, ds.PatientID, ds.AccessionNumber = CTImageStorage, "CT", "BENCH", "A1"
        ds.StudyInstanceUID = generate_uid(entropy_srcs=["bench-study", str(seed)])
        ds.SeriesInstanceUID = series_uid
        ds.FrameOfReferenceUID = generate_uid(entropy_srcs=["bench-for", str(seed)])
        ds.SeriesNumber, ds.InstanceNumber, ds.AcquisitionNumber = 2, n - k, 1
        ds.ImageType = "ORIGINAL\\PRIMARY\\AXIAL"
        ds.ImagePositionPatient = [-191.625, -191.625, -150.0 + k]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing, ds.SliceThickness = [0.75, 0.75], 1.0
        ds.ConvolutionKernel, ds.Manufacturer = "B30f", "BENCH"
        ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.Rows = ds.Columns = size
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.PixelData = (base + rng.integers(0, 20, base.shape, dtype=np.uint16) * body).astype("<u2").tobytes()
        path = out / f"{names[k]:08x}"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def median_time(fn: Callable[[], object], repeats: int, before: Callable[[], object] = lambda: None) -> float:
    times = []
    for _ in range(repeats):
        before()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def evict(paths: list[Path]) -> None:
    """Drop the files from the page cache: a run then reads them from disk, as a nightly re-run does."""
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def bytes_read(fn: Callable[[], object]) -> int:
    """Bytes this process reads (read calls, page cache or disk) while ``fn`` runs (Linux /proc)."""
    def rchar() -> int:
        return int(next(line for line in Path("/proc/self/io").read_text().splitlines() if line.startswith("rchar:")).split()[1])
    start = rchar()
    fn()
    return rchar() - start


def ours(root: Path, config: IngestConfig, resample: bool) -> object:
    """Our full ingest; with ``resample`` the per-stack entry point the flows map (rows included)."""
    stacks = plan_stacks(index_export(root, config), config)
    return ingest_stack(stacks[0], config) if resample else assemble_volume(stacks[0], config)


def peak_rss_child(root: Path, hash_files: bool) -> tuple[float, float]:
    """(peak RSS after imports, peak RSS of the run) in bytes, in a fresh interpreter.

    Read from /proc/self/status VmHWM: unlike ``ru_maxrss`` it is not inherited from the forked
    parent across exec.
    """
    code = f"""
import sys
sys.path.insert(0, {str(ROOT)!r})
from pathlib import Path
from ctcorpus.config.ingest import IngestConfig
from bench.ingest import ours
def hwm():
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM"))
base = hwm()
ours(Path({str(root)!r}), IngestConfig(pseudonym_key="bench", hash_files={hash_files}), True)
print(base, hwm())
"""
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=ROOT).stdout.split()
    return float(out[-2]) * 1024, float(out[-1]) * 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ctcorpus-bench-ingest-"))
    try:
        root = tmp / "series"
        root.mkdir()
        paths = write_series(root, args.slices, args.size)
        hour_ago = time.time_ns() - 3600 * 10**9
        for path in paths:  # as an export copied in earlier: files written just now are never cached
            os.utime(path, ns=(hour_ago, hour_ago))
        os.sync()  # written to disk: evict() drops only clean pages
        volume_bytes = args.slices * args.size * args.size * 2
        total_bytes = sum(p.stat().st_size for p in paths)
        config = IngestConfig(pseudonym_key="bench", workers=args.workers)
        config_nohash = IngestConfig(pseudonym_key="bench", workers=args.workers, hash_files=False)
        serial = IngestConfig(pseudonym_key="bench", workers=1)
        ordered = [str(p) for p in sorted(paths, key=lambda p: p.name)]
        sorted_names = list(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(root)))

        def simpleitk_read() -> object:
            reader = sitk.ImageSeriesReader()
            reader.SetFileNames(sorted_names)
            reader.SetOutputPixelType(sitk.sitkInt16)
            return reader.Execute()

        def dcm2niix_resample() -> object:
            out = tmp / "nii"
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir()
            subprocess.run([str(DCM2NIIX), "-z", "n", "-b", "n", "-f", "x", "-o", str(out), str(root)], check=True, capture_output=True)
            image = sitk.ReadImage(str(next(out.glob("x*.nii"))))
            spacing = config.target_spacing_mm
            size = [int(round(sz * sp / t)) for sz, sp, t in zip(image.GetSize(), image.GetSpacing(), spacing, strict=True)]
            return sitk.Resample(image, size, sitk.Transform(), sitk.sitkLinear, image.GetOrigin(), spacing, image.GetDirection(), -1024.0)

        # warm the page cache and imports once
        subprocess.run(["cat", *ordered], stdout=subprocess.DEVNULL, check=True)
        ours(root, config, True)
        t_cat = median_time(lambda: subprocess.run(["cat", *ordered], stdout=subprocess.DEVNULL, check=True), args.repeats)
        t_sitk = median_time(simpleitk_read, args.repeats)
        t_ours = median_time(lambda: ours(root, config, False), args.repeats)
        t_ours_nohash = median_time(lambda: ours(root, config_nohash, False), args.repeats)
        t_ours_serial = median_time(lambda: ours(root, serial, False), args.repeats)
        t_index = median_time(lambda: index_export(root, config), args.repeats)
        cache = DiscoveryCache(tmp / "discovery-cache.json", b"bench")
        index_export(root, config, cache=cache)  # the first run, which fills it
        t_index_cached = median_time(lambda: index_export(root, config, cache=cache), args.repeats)
        t_index_cold = median_time(lambda: index_export(root, config), args.repeats, lambda: evict(paths))
        t_index_cached_cold = median_time(lambda: index_export(root, config, cache=cache), args.repeats, lambda: evict(paths))
        rerun_read = bytes_read(lambda: index_export(root, config, cache=cache))
        t_ours_resample = median_time(lambda: ours(root, config, True), args.repeats)
        t_dcm2niix = median_time(dcm2niix_resample, args.repeats) if DCM2NIIX.exists() else float("nan")
        base_rss, peak_rss = peak_rss_child(root, True)

        rows = [
            ("cat of the files", t_cat),
            ("SimpleITK ImageSeriesReader (Int16, names given)", t_sitk),
            ("ours: index + checks + HU volume + slice table", t_ours),
            ("  same, hash_files=False", t_ours_nohash),
            ("  same, workers=1", t_ours_serial),
            ("  header index alone", t_index),
            ("  header index, a re-run with its discovery cache", t_index_cached),
            ("  header index, files not in the page cache", t_index_cold),
            ("  same, a re-run with its discovery cache", t_index_cached_cold),
            ("ours + resample to 1.5 mm", t_ours_resample),
            ("dcm2niix + SimpleITK resample to 1.5 mm", t_dcm2niix),
        ]
        print(f"{args.slices} slices {args.size}x{args.size}, {total_bytes / 1e6:.0f} MB, workers={args.workers}, median of {args.repeats}")
        for name, seconds in rows:
            print(f"{name:<52} {seconds:7.3f} s  {args.slices / seconds:8.0f} slices/s")
        print(f"peak RSS {peak_rss / 1e6:.0f} MB (imports {base_rss / 1e6:.0f} MB), volume {volume_bytes / 1e6:.0f} MB")
        figures = {
            "ingest_vs_simpleitk": round(t_sitk / t_ours, 3),
            "speedup_vs_dcm2niix": round(t_dcm2niix / t_ours_resample, 3),
            "ingest_vs_cat": round(t_cat / t_ours, 3),
            "peak_rss_over_volume": round(peak_rss / volume_bytes, 3),
            "peak_rss_above_imports_over_volume": round((peak_rss - base_rss) / volume_bytes, 3),
            "ingest_vs_simpleitk_nohash": round(t_sitk / t_ours_nohash, 3),
            "threads_speedup": round(t_ours_serial / t_ours, 3),
            "index_rerun_cache_speedup": round(t_index / t_index_cached, 3),
            "index_rerun_cache_speedup_cold": round(t_index_cold / t_index_cached_cold, 3),
            "index_rerun_read_over_files": round(rerun_read / total_bytes, 4),
            "slices_per_s": round(args.slices / t_ours, 1),
        }
        print(json.dumps(figures))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
