"""Volume fingerprints: a low-resolution HU thumbnail on a fixed physical grid, and near-duplicate search.

Hashing the HU array finds identical copies only. A copy that was resampled, re-windowed by a
rounding step or cropped by a few slices has other bytes but the same coarse anatomy, so the
fingerprint samples the band-passed volume on a fixed grid of :data:`CELL_MM` cells centred on the
body's centre of mass: the same physical points whatever the voxel spacing, and a crop shifts the
grid only by the crop's share of the centroid. Fingerprints are z-scored, so the dot product of two
divided by their length is their Pearson correlation.

Measured on synthetic phantoms (``tests/test_audit.py``): a resampled copy correlates 0.9997 with
its original, a copy cropped by a few slices and columns 0.993, phantoms of different bodies at
most 0.934 (default threshold 0.98). Phantoms that differ only by small lesions (one body for
every patient) cannot be told apart at this resolution: that is a property of the phantom.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import ndimage

from ctcorpus.errors import AuditError

#: Cells of the fingerprint grid (z, y, x).
GRID: tuple[int, int, int] = (10, 16, 16)
#: Edge of one grid cell in mm: 10 x 24 mm = 240 mm in z, 16 x 24 mm = 384 mm in-plane.
CELL_MM: float = 24.0
#: HU window of the fingerprint: air to dense bone; metal and noise beyond do not dominate.
HU_WINDOW: tuple[float, float] = (-1000.0, 1000.0)
#: Voxels above this HU count as body for the centre of mass.
BODY_HU: float = -500.0
FINGERPRINT_SIZE: int = GRID[0] * GRID[1] * GRID[2]


def _block_mean(volume: np.ndarray, factors: tuple[int, ...]) -> np.ndarray:
    """Average non-overlapping blocks (cheap anti-aliasing before smoothing a large volume)."""
    shape = tuple(max(1, s // f) for s, f in zip(volume.shape, factors))
    cropped = volume[tuple(slice(0, n * f) for n, f in zip(shape, factors))]
    view = cropped.reshape(shape[0], factors[0], shape[1], factors[1], shape[2], factors[2])
    return view.mean(axis=(1, 3, 5))


def volume_fingerprint(hu: np.ndarray, spacing_zyx: tuple[float, float, float]) -> np.ndarray:
    """Fingerprint of a CT volume that survives resampling and small crops.

    Parameters
    ----------
    hu:
        Volume in Hounsfield units, axes (z, y, x).
    spacing_zyx:
        Voxel spacing in mm along (z, y, x).

    Returns
    -------
    numpy.ndarray
        ``float32`` vector of :data:`FINGERPRINT_SIZE` values, z-scored (mean 0, variance 1); the
        correlation of two volumes is ``a @ b / a.size``.

    Examples
    --------
    >>> fp = volume_fingerprint(np.full((20, 32, 32), -1000, np.int16), (5.0, 10.0, 10.0))
    >>> fp.shape, fp.dtype
    ((2560,), dtype('float32'))
    """
    if hu.ndim != 3 or min(hu.shape) < 1:
        raise AuditError(f"a fingerprint needs a 3-D (z, y, x) volume, got shape {hu.shape}")
    spacing = np.asarray(spacing_zyx, dtype=np.float64)
    if spacing.shape != (3,) or not np.all(spacing > 0):
        raise AuditError(f"spacing must be three positive mm values (z, y, x), got {spacing_zyx}")
    volume = np.clip(hu.astype(np.float32), *HU_WINDOW)
    # block-average down to about 4 mm voxels first: smoothing 512x512x300 directly would be slow
    factors = tuple(int(max(1, np.floor(4.0 / s))) for s in spacing)
    if any(f > 1 for f in factors):
        volume = _block_mean(volume, factors)
        spacing = spacing * np.asarray(factors)
    body = volume > BODY_HU
    if body.any():
        centre = np.array(ndimage.center_of_mass(body))
    else:
        centre = (np.asarray(volume.shape) - 1) / 2.0
    # band-pass (difference of Gaussians): a Gaussian of half a cell so each grid point sees its
    # cell, minus one of two cells so the body-versus-air outline every chest CT shares does not
    # dominate the correlation; "nearest" edges make a cropped copy look like its original
    fine = ndimage.gaussian_filter(volume, sigma=CELL_MM / 2.0 / spacing, mode="nearest", truncate=2.0)
    coarse = ndimage.gaussian_filter(volume, sigma=2.0 * CELL_MM / spacing, mode="nearest", truncate=2.0)
    smooth = fine - coarse
    axes = [
        centre[axis] + (np.arange(GRID[axis]) - (GRID[axis] - 1) / 2.0) * CELL_MM / spacing[axis] for axis in range(3)
    ]
    grid = np.meshgrid(*axes, indexing="ij")
    samples = ndimage.map_coordinates(smooth, grid, order=1, mode="nearest")
    vector = samples.ravel().astype(np.float64)
    spread = vector.std()
    if spread == 0:
        return np.zeros(FINGERPRINT_SIZE, dtype=np.float32)
    return ((vector - vector.mean()) / spread).astype(np.float32)


def fingerprint_matrix(fingerprints: pd.Series) -> np.ndarray:
    """Stack a column of fingerprints (lists or arrays) into an ``(n, d)`` float32 matrix of unit rows."""
    if len(fingerprints) == 0:
        return np.zeros((0, FINGERPRINT_SIZE), dtype=np.float32)
    lengths = fingerprints.map(len)
    if lengths.nunique() != 1:
        raise AuditError(f"fingerprints have different lengths {sorted(lengths.unique())[:5]}; recompute them")
    matrix = np.stack(fingerprints.map(np.asarray).to_list()).astype(np.float32)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms == 0, 1.0, norms)


def _pairs_above(left: np.ndarray, right: np.ndarray, threshold: float, upper: bool, block: int = 1024) -> np.ndarray:
    """Index pairs (i, j) with ``left[i] @ right[j] >= threshold``, computed block by block."""
    found: list[np.ndarray] = []
    for start in range(0, len(left), block):
        scores = left[start : start + block] @ right.T
        rows, cols = np.nonzero(scores >= threshold)
        rows = rows + start
        if upper:
            keep = cols > rows
            rows, cols = rows[keep], cols[keep]
        found.append(np.stack([rows, cols], axis=1))
    return np.concatenate(found) if found else np.zeros((0, 2), dtype=np.int64)


def similar_pairs(
    matrix: np.ndarray,
    threshold: float,
    *,
    exact_limit: int,
    candidate_threshold: float,
    dims: int,
    seed: int,
) -> pd.DataFrame:
    """Pairs of rows of a unit-row ``matrix`` whose cosine similarity is at least ``threshold``.

    Up to ``exact_limit`` rows every pair is scored. Above it, rows are centred on the corpus mean
    (what all chest CTs share stops counting), projected to ``dims`` random directions, and only
    pairs whose projected cosine reaches ``candidate_threshold`` are scored exactly: the cost grows
    with ``n^2 * dims`` instead of ``n^2 * d``.

    Returns
    -------
    pandas.DataFrame
        Columns ``i``, ``j`` (row indices, ``i < j``) and ``similarity``.
    """
    n = len(matrix)
    if n < 2:
        return pd.DataFrame({"i": [], "j": [], "similarity": []})
    if n <= exact_limit:
        pairs = _pairs_above(matrix, matrix, threshold, upper=True)
    else:
        rng = np.random.default_rng(seed)
        centred = matrix - matrix.mean(axis=0, keepdims=True)
        projected = centred @ rng.standard_normal((matrix.shape[1], dims)).astype(np.float32)
        projected /= np.maximum(np.linalg.norm(projected, axis=1, keepdims=True), 1e-12)
        pairs = _pairs_above(projected, projected, candidate_threshold, upper=True)
    scores = np.einsum("ij,ij->i", matrix[pairs[:, 0]], matrix[pairs[:, 1]]) if len(pairs) else np.zeros(0)
    keep = scores >= threshold
    return pd.DataFrame({"i": pairs[keep, 0], "j": pairs[keep, 1], "similarity": scores[keep].astype(np.float64)})
