"""Volume fingerprints: a low-resolution HU thumbnail on a fixed physical grid, and near-duplicate search.

Hashing the HU array finds identical copies only. A copy that was resampled, re-windowed by a
rounding step or cropped has other bytes but the same coarse anatomy, so the fingerprint samples
the band-passed volume on a fixed grid of :data:`CELL_MM` cells: the same physical points whatever
the voxel spacing. The grid is centred on the lungs' widest slab, which a re-export that cuts the
neck or the upper abdomen keeps; on the body's centre of mass, which a 50 mm crop moves by 25 mm (a
cell), only where there is too little lung (head, abdomen). Fingerprints are z-scored, so the dot
product of two divided by their length is their Pearson correlation.

Measured on synthetic phantoms (``tests/test_audit.py``, seeds 0-7): a 350 mm chest cropped by 50
or 60 mm at either end of z correlates 0.995-1.0 with its original (0.93-0.97 on the centre of
mass; 0.982-0.997 when the cut takes a neck narrower than the chest, as the 240 mm grid reaches
into it), a resampled copy 0.999, a copy cropped by a few slices and columns 0.95-0.996, phantoms
of different bodies at most 0.95 (default threshold 0.98). A real abdominal CT (TotalSegmentator's
example: lung bases only) keeps the centre of mass, so a 50 mm crop of it, 0.955, is missed.
Phantoms that differ only by small lesions (one body for every patient) cannot be told apart at
this resolution: that is a property of the phantom.
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
#: Voxels above this HU count as body; below it, inside the body's outline, as lung.
BODY_HU: float = -500.0
#: The lungs anchor the grid when, at their widest, they fill this share of the slice's body outline
#: (the chest phantoms 0.33-0.39; lung bases and bowel gas of TotalSegmentator's abdominal CT 0.08).
LUNG_SHARE: float = 0.2
#: Stored beside every fingerprint: two versions are not comparable (1: grid on the centre of mass).
FINGERPRINT_VERSION: int = 2
FINGERPRINT_SIZE: int = GRID[0] * GRID[1] * GRID[2]


def _block_mean(volume: np.ndarray, factors: tuple[int, ...]) -> np.ndarray:
    """Average non-overlapping blocks (cheap anti-aliasing before smoothing a large volume)."""
    shape = tuple(max(1, s // f) for s, f in zip(volume.shape, factors))
    cropped = volume[tuple(slice(0, n * f) for n, f in zip(shape, factors))]
    view = cropped.reshape(shape[0], factors[0], shape[1], factors[1], shape[2], factors[2])
    return view.mean(axis=(1, 3, 5))


def _grid_centre(body: np.ndarray) -> np.ndarray:
    """Centre of the grid (voxel coordinates): the body's centre of mass within the slab where the
    lungs are at least half as wide as at their widest, or within the whole volume without lungs.

    A crop that leaves the lungs' widest part whole does not move that slab, while it moves the
    centre of mass of the whole body by half the crop. Lungs are air inside the body's outline,
    filled slice by slice: in 3-D the trachea opens them to the volume's top.
    """
    if not body.any():
        return (np.asarray(body.shape) - 1) / 2.0
    outline = np.stack([ndimage.binary_fill_holes(axial) for axial in body])
    area = (outline & ~body).sum(axis=(1, 2))
    widest = int(np.argmax(area))
    if area[widest] < LUNG_SHARE * outline[widest].sum():
        return np.array(ndimage.center_of_mass(body))
    wide = np.flatnonzero(area >= area[widest] / 2.0)
    centre = np.array(ndimage.center_of_mass(body[wide[0] : wide[-1] + 1]))
    centre[0] += wide[0]
    return centre


def volume_fingerprint(hu: np.ndarray, spacing_zyx: tuple[float, float, float]) -> np.ndarray:
    """Fingerprint of a CT volume that survives resampling, rescaling and crops (:data:`FINGERPRINT_VERSION`).

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
    # block-average down to about 4 mm voxels first: smoothing 512x512x300 directly would be slow;
    # a block is at most the volume's extent (a stack of 1-3 thin slices is one block deep)
    factors = tuple(int(max(1, min(n, np.floor(4.0 / s)))) for s, n in zip(spacing, volume.shape))
    if any(f > 1 for f in factors):
        volume = _block_mean(volume, factors)
        spacing = spacing * np.asarray(factors)
    centre = _grid_centre(volume > BODY_HU)
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


def fingerprint_matrix(
    fingerprints: pd.Series, versions: pd.Series | None, corpora: pd.Series | None = None
) -> np.ndarray:
    """Stack a column of fingerprints (lists or arrays) into an ``(n, d)`` float32 matrix of unit rows.

    ``versions`` is their ``fingerprint_version`` column (``None`` or null where a corpus stored
    none: version 1, the only one then). Two versions sample other anatomy, so a copy would be
    missed: mixing them is an error, not a weaker check. ``corpora`` (each row's corpus) lets the
    error say which corpus holds which version: 'rebuild the older corpus' of two folders named
    neither.
    """
    numbers = pd.Series(1, index=fingerprints.index) if versions is None else versions.fillna(1).astype(int)
    found = sorted(set(numbers))
    if len(found) > 1:
        held = (
            ""
            if corpora is None
            else " ("
            + "; ".join(
                f"{name} has version {', '.join(map(str, sorted(set(group))))}"
                for name, group in numbers.groupby(corpora.astype(str).to_numpy())
            )
            + ")"
        )
        raise AuditError(
            f"fingerprints of versions {found} cannot be compared{held} (this ctcorpus computes version "
            f"{FINGERPRINT_VERSION}): rebuild the older corpus, which recomputes them from its work store"
        )
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


def _pair_scores(matrix: np.ndarray, pairs: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """Dot product of the two rows of every pair, ``chunk`` pairs at a time.

    Gathering both rows of every candidate at once held 2 x pairs x d floats: the 14,000 candidates
    of 10,000 synthetic volumes took 270 MB, and candidates grow with the square of the corpus.
    """
    scores = [
        np.einsum("ij,ij->i", matrix[pairs[start : start + chunk, 0]], matrix[pairs[start : start + chunk, 1]])
        for start in range(0, len(pairs), chunk)
    ]
    return np.concatenate(scores) if scores else np.zeros(0, dtype=matrix.dtype)


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
    scores = _pair_scores(matrix, pairs)
    keep = scores >= threshold
    return pd.DataFrame({"i": pairs[keep, 0], "j": pairs[keep, 1], "similarity": scores[keep].astype(np.float64)})
