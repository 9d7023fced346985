"""A deterministic thoracic CT phantom in Hounsfield units, with organ label maps and findings.

The phantom is the ground truth every imaging test of ctcorpus measures against, so its anatomy is
analytic (ellipses, tubes, spheres) and placed in patient LPS millimetres: patient LEFT is +x,
POSTERIOR is +y, HEAD is +z. Arrays are indexed ``(z, y, x)`` with z ascending (index 0 is the most
inferior slice), which is the order of :attr:`ctcorpus.synth.truth.SeriesTruth.files`.

It is deliberately asymmetric (heart and spleen on the patient's left, liver on the patient's right,
the aortic arch and descending aorta left of the spine) so a left/right or head/feet flip anywhere
in a pipeline changes measurable Dice scores.

>>> import numpy as np
>>> p = make_phantom((40, 128, 128), (5.0, 3.0, 3.0), np.random.default_rng(0))
>>> p.hu.dtype, p.labels.shape
(dtype('int16'), (40, 128, 128))
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping

import numpy as np

from ctcorpus.errors import SynthError

__all__ = ["FINDING_LABELS", "LABEL_TABLE", "FindingSpec", "Phantom", "PlacedFinding", "make_phantom"]

#: Organ label values of :attr:`Phantom.labels` (0 is outside the body).
LABEL_TABLE: Mapping[str, int] = MappingProxyType(
    {
        "body": 1,
        "lung_left": 2,
        "lung_right": 3,
        "airways": 4,
        "bones": 5,
        "heart": 6,
        "aorta": 7,
        "liver": 8,
        "spleen": 9,
    }
)

#: CT-RATE labels the phantom can place (``ctcorpus.taxonomy.CT_RATE_LABELS`` names).
FINDING_LABELS: tuple[str, ...] = (
    "cardiomegaly",
    "consolidation",
    "emphysema",
    "hiatal_hernia",
    "lung_nodule",
    "lymphadenopathy",
    "pericardial_effusion",
    "pleural_effusion",
)

_LATERAL = frozenset({"lung_nodule", "pleural_effusion", "consolidation"})

# Body half-axes (mm) and tissue values (HU).
_BODY_A, _BODY_B, _WALL = 165.0, 118.0, 12.0
_HU = MappingProxyType(
    {
        "air": -1000,
        "fat": -100,
        "muscle": 40,
        "mediastinum": -60,
        "lung": -850,
        "emphysema": -965,
        "vessel": 40,
        "heart": 40,
        "aorta": 40,
        "aorta_contrast": 200,
        "vertebra": 550,
        "disc": 80,
        "rib": 700,
        "cord": 20,
        "liver": 60,
        "spleen": 50,
        "nodule": 40,
        "fluid": 12,
        "consolidation": 30,
        "node": 45,
    }
)


@dataclass(frozen=True, slots=True)
class FindingSpec:
    """A finding to place: a CT-RATE label and, for lateral findings, ``"left"`` or ``"right"``."""

    label: str
    side: str = ""


@dataclass(frozen=True, slots=True)
class PlacedFinding:
    """Where a finding ended up: the centroid of its voxels in LPS mm and its equivalent radius."""

    label: str
    side: str
    center_mm: tuple[float, float, float]
    radius_mm: float
    n_voxels: int


@dataclass(frozen=True, slots=True)
class Phantom:
    """HU volume, organ labels (same grid) and the placed findings.

    ``origin_mm`` is the LPS position of voxel ``(0, 0, 0)``; the grid is axis-aligned (direction
    identity), so voxel ``(k, j, i)`` lies at ``origin + (i*sx, j*sy, k*sz)``.
    """

    hu: np.ndarray  # int16 (z, y, x)
    labels: np.ndarray  # uint8 (z, y, x)
    label_table: Mapping[str, int]
    findings: tuple[PlacedFinding, ...]
    origin_mm: tuple[float, float, float]
    spacing_zyx: tuple[float, float, float]


@dataclass(frozen=True, slots=True)
class _Sphere:
    """A planned spherical finding (nodule, consolidation, lymph node, hernia)."""

    center: tuple[float, float, float]  # x, y, z mm
    radius: float


def _ellipse(xs: np.ndarray, ys: np.ndarray, cx: float, cy: float, a: float, b: float) -> np.ndarray:
    """Mask (ny, nx) of an axis-aligned ellipse, evaluated only in its bounding window.

    ``xs``/``ys`` are the 1-D LPS coordinates of the columns/rows; working in the window keeps a
    512x512x300 phantom to seconds (most structures cover a few percent of a slice).
    """
    out = np.zeros((ys.size, xs.size), dtype=bool)
    if a <= 0 or b <= 0:
        return out
    i0, i1 = np.searchsorted(xs, cx - a, side="left"), np.searchsorted(xs, cx + a, side="right")
    j0, j1 = np.searchsorted(ys, cy - b, side="left"), np.searchsorted(ys, cy + b, side="right")
    wx, wy = (xs[i0:i1] - cx) / a, (ys[j0:j1] - cy) / b
    out[j0:j1, i0:i1] = wx[None, :] ** 2 + wy[:, None] ** 2 <= 1.0
    return out


def _segment_dist(x: np.ndarray, y: np.ndarray, p: tuple[float, float], q: tuple[float, float]) -> np.ndarray:
    """Distance of every pixel to the 2-D segment p-q (the aortic arch cross-section)."""
    dx, dy = q[0] - p[0], q[1] - p[1]
    t = np.clip(((x - p[0]) * dx + (y - p[1]) * dy) / (dx * dx + dy * dy), 0.0, 1.0)
    return np.hypot(x - p[0] - t * dx, y - p[1] - t * dy)


def _taper(t: float, base: float, apex: float = 0.97) -> float:
    """Lung width factor along z: zero below the base and above the apex, rounded at both ends."""
    w = min((apex - t) / 0.2, (t - base) / 0.08, 1.0)
    return float(np.sqrt(w)) if w > 0 else 0.0


def _lung_ellipse(side: str, t: float) -> tuple[float, float, float, float]:
    """Cross-section (cx, cy, a, b) in mm of one lung at relative height t (0 feet, 1 head)."""
    if side == "right":
        w = _taper(t, 0.30)
        return -72.0, 5.0, 52.0 * w, 82.0 * w
    w = _taper(t, 0.26)
    return 72.0, 5.0, 48.0 * w, 80.0 * w


def _plan_sphere(spec: FindingSpec, rng: np.random.Generator, z0: float, length: float) -> _Sphere:
    """Pick a centre and radius for a spherical finding inside the right compartment."""

    def z_at(t: float) -> float:
        return z0 + t * length

    if spec.label == "lung_nodule":
        t = rng.uniform(0.55, 0.85)
        cx, cy, a, b = _lung_ellipse(spec.side, t)
        r, ang = 0.45 * np.sqrt(rng.uniform()), rng.uniform(0, 2 * np.pi)
        return _Sphere((cx + r * a * np.cos(ang), cy + r * b * np.sin(ang), z_at(t)), rng.uniform(6.0, 9.0))
    if spec.label == "consolidation":
        t = rng.uniform(0.42, 0.55)
        cx, cy, a, b = _lung_ellipse(spec.side, t)
        return _Sphere((cx, cy + 0.3 * b, z_at(t)), rng.uniform(18.0, 26.0))
    if spec.label == "lymphadenopathy":
        x, y, t = (0.0, 5.0, 0.55) if rng.uniform() < 0.5 else (-20.0, 0.0, 0.68)
        return _Sphere((x, y, z_at(t)), rng.uniform(9.0, 13.0))
    if spec.label == "hiatal_hernia":
        return _Sphere((-4.0, 28.0, z_at(0.33)), rng.uniform(16.0, 22.0))
    raise SynthError(f"no spherical placement for finding {spec.label!r}")


def make_phantom(
    shape_zyx: tuple[int, int, int],
    spacing_zyx: tuple[float, float, float],
    rng: np.random.Generator,
    findings: Sequence[FindingSpec] = (),
    *,
    contrast: bool = False,
    noise_hu: float = 12.0,
    origin_mm: tuple[float, float, float] | None = None,
    body_scale: tuple[float, float] = (1.0, 1.0),
    chest_offset: float = 0.0,
) -> Phantom:
    """Build a thoracic phantom on an axis-aligned grid in patient LPS.

    The chest spans the whole z range whatever the slice count (structures are placed at relative
    heights), while in-plane anatomy has fixed millimetre sizes, so a 128-matrix 3 mm grid and a
    512-matrix 0.75 mm grid show the same patient. Work is done slice by slice so a 512x512x300
    volume stays within a few hundred MB.

    Parameters
    ----------
    shape_zyx, spacing_zyx
        Grid size (voxels) and spacing (mm); the in-plane field of view should be >= 340 mm so the
        body (330 x 236 mm) fits.
    rng
        Source of all randomness (anatomical jitter, vessels, finding sizes, noise): same seed, same
        phantom.
    findings
        Findings to place; ``side`` must be ``"left"``/``"right"`` for lung nodule, consolidation
        and pleural effusion and is ignored otherwise.
    contrast
        Contrast-enhanced aorta (200 HU) instead of 40 HU blood.
    noise_hu
        Standard deviation of the Gaussian noise added to the HU image (labels are noise-free).
    origin_mm
        LPS position of voxel (0, 0, 0); default centres x and y on 0 and puts the first slice at
        z = 0.
    body_scale
        In-plane (x, y) size of this patient relative to the reference body: patients differ in
        habitus, so two patients' scans are not near-duplicates of each other.
    chest_offset
        Shift of the anatomy along the scan as a fraction of its length (where the scan starts
        relative to the diaphragm differs between patients).

    Returns
    -------
    Phantom
        ``hu`` int16 and ``labels`` uint8 arrays ``(z, y, x)``, :data:`LABEL_TABLE`, and every
        finding's measured centroid (LPS mm) and equivalent-sphere radius.

    Examples
    --------
    >>> p = make_phantom((40, 128, 128), (5.0, 3.0, 3.0), np.random.default_rng(1),
    ...                  [FindingSpec("lung_nodule", "left")])
    >>> p.findings[0].center_mm[0] > 0   # patient left is +x
    True
    """
    nz, ny, nx = (int(v) for v in shape_zyx)
    sz, sy, sx = (float(v) for v in spacing_zyx)
    if nz < 8 or ny < 32 or nx < 32:
        raise SynthError(f"phantom grid {shape_zyx} too small: need at least 8 x 32 x 32 voxels")
    for spec in findings:
        if spec.label not in FINDING_LABELS:
            raise SynthError(f"unknown finding {spec.label!r}; the phantom places {FINDING_LABELS}")
        if spec.label in _LATERAL and spec.side not in ("left", "right"):
            raise SynthError(f"finding {spec.label!r} needs side 'left' or 'right', got {spec.side!r}")
    if origin_mm is None:
        origin_mm = (-(nx - 1) / 2 * sx, -(ny - 1) / 2 * sy, 0.0)
    ox, oy, oz = (float(v) for v in origin_mm)
    length = (nz - 1) * sz
    xs_mm = ox + np.arange(nx, dtype=np.float64) * sx
    ys_mm = oy + np.arange(ny, dtype=np.float64) * sy
    # Anatomy is drawn in the reference body's frame; the patient's habitus scales it in-plane.
    xs1, ys1 = xs_mm / float(body_scale[0]), ys_mm / float(body_scale[1])
    x, y = np.meshgrid(xs1.astype(np.float32), ys1.astype(np.float32))

    by_label = {spec.label: spec for spec in findings}
    spheres = {label: _plan_sphere(spec, rng, oz - chest_offset * length, length) for label, spec in by_label.items()
               if label in ("lung_nodule", "consolidation", "lymphadenopathy", "hiatal_hernia")}
    heart_scale = 1.3 if "cardiomegaly" in by_label else 1.0
    heart_c = (20.0 + rng.uniform(-4, 4), -35.0 + rng.uniform(-4, 4), 0.40)
    effusion = by_label.get("pleural_effusion")
    effusion_fill = rng.uniform(0.25, 0.4)
    # Lung vessels: tubes drifting linearly with z, (x0, y0, dx/dz, dy/dz, radius).
    n_vessels = 24
    vessels = np.column_stack(
        [
            rng.choice([-72.0, 72.0], n_vessels) + rng.uniform(-35, 35, n_vessels),
            rng.uniform(-50, 60, n_vessels),
            rng.uniform(-0.25, 0.25, n_vessels),
            rng.uniform(-0.25, 0.25, n_vessels),
            rng.uniform(1.5, 3.0, n_vessels),
        ]
    )
    emph_phase = rng.uniform(0, 2 * np.pi, 3)
    rib_phase = rng.uniform(0, 2 * np.pi)
    rib_angles = np.deg2rad(np.concatenate([np.arange(-60, 61, 20), np.arange(120, 241, 20)]))
    aorta_hu = _HU["aorta_contrast"] if contrast else _HU["aorta"]

    # Structures that do not change along z, computed once.
    body = _ellipse(xs1, ys1, 0.0, 0.0, _BODY_A, _BODY_B)
    inner = _ellipse(xs1, ys1, 0.0, 0.0, _BODY_A - _WALL, _BODY_B - _WALL)
    medi_xy = _ellipse(xs1, ys1, 0.0, -10.0, 28.0, 72.0)
    vert = _ellipse(xs1, ys1, 0.0, 72.0, 19.0, 16.0)
    cord = _ellipse(xs1, ys1, 0.0, 96.0, 7.0, 7.0)
    spinous = _ellipse(xs1, ys1, 0.0, 108.0, 5.0, 7.0) | (_ellipse(xs1, ys1, 0.0, 96.0, 13.0, 12.0) & ~cord)
    sternum = _ellipse(xs1, ys1, 0.0, -_BODY_B + 16.0, 16.0, 6.0)
    descending = _ellipse(xs1, ys1, 24.0, 45.0, 12.0, 12.0) & inner
    ascending = _ellipse(xs1, ys1, -8.0, -30.0, 15.0, 15.0) & inner
    arch = ((_segment_dist(x, y, (-8.0, -30.0), (22.0, -5.0)) <= 12.0)
            | (_segment_dist(x, y, (22.0, -5.0), (24.0, 45.0)) <= 12.0)) & inner
    trachea = _ellipse(xs1, ys1, 0.0, 20.0, 9.0, 9.0) & inner
    n_body = int(body.sum())

    hu = np.empty((nz, ny, nx), dtype=np.int16)
    labels = np.zeros((nz, ny, nx), dtype=np.uint8)
    sums = {label: np.zeros(4) for label in by_label}  # sum x, y, z, count
    L = LABEL_TABLE
    for k in range(nz):
        z = oz + k * sz
        t = ((k / (nz - 1)) if nz > 1 else 0.5) + chest_offset
        img = np.full((ny, nx), _HU["air"], dtype=np.float32)
        lab = np.zeros((ny, nx), dtype=np.uint8)
        found: dict[str, np.ndarray] = {}

        img[body] = _HU["fat"]
        img[inner] = _HU["muscle"]
        lab[body] = L["body"]

        # Mediastinum (fat) then heart; the lungs are carved around both.
        medi = medi_xy if t > 0.3 else np.zeros_like(body)
        img[medi] = _HU["mediastinum"]
        dzh = (t - heart_c[2]) / (0.13 * heart_scale)
        shrink = np.sqrt(max(0.0, 1.0 - dzh * dzh))
        ha, hb = 60.0 * heart_scale * shrink, 45.0 * heart_scale * shrink
        heart = _ellipse(xs1, ys1, heart_c[0], heart_c[1], ha, hb)
        peri = np.zeros_like(heart)
        if "pericardial_effusion" in by_label and shrink > 0:
            peri = _ellipse(xs1, ys1, heart_c[0], heart_c[1], ha + 9.0, hb + 9.0) & ~heart
            found["pericardial_effusion"] = peri

        lungs = {}
        for side in ("left", "right"):
            cx, cy, a, b = _lung_ellipse(side, t)
            lungs[side] = _ellipse(xs1, ys1, cx, cy, a, b) & inner & ~medi & ~heart & ~peri
        # Liver dome and spleen push up under the lungs.
        fl = np.sqrt(max(0.0, 1 - ((t - 0.12) / 0.21) ** 2))
        liver = _ellipse(xs1, ys1, -45.0, 0.0, 95.0 * fl, 92.0 * fl) & inner
        fs = np.sqrt(max(0.0, 1 - ((t - 0.15) / 0.1) ** 2))
        spleen = _ellipse(xs1, ys1, 82.0, 55.0, 30.0 * fs, 42.0 * fs) & inner
        for side in lungs:
            lungs[side] &= ~liver & ~spleen
            img[lungs[side]] = _HU["lung"]
            lab[lungs[side]] = L[f"lung_{side}"]
        lung_any = lungs["left"] | lungs["right"]
        vz = z - oz - length / 2
        for x0, y0, dx, dy, r in vessels:
            img[_ellipse(xs1, ys1, x0 + dx * vz, y0 + dy * vz, r, r) & lung_any] = _HU["vessel"]

        if "emphysema" in by_label and t > 0.55:
            field = (np.sin(ys1 / 11.0 + emph_phase[1])[:, None] * np.sin(xs1 / 9.0 + emph_phase[0])[None, :]
                     * np.sin(z / 13.0 + emph_phase[2]))
            emph = lung_any & (field > 0.35)
            img[emph] = _HU["emphysema"]
            found["emphysema"] = emph
        if effusion is not None and t < 0.5:
            cx, cy, a, b = _lung_ellipse(effusion.side, t)
            eff = lungs[effusion.side] & (ys1 > cy + b * (1 - 2 * effusion_fill))[:, None]
            img[eff] = _HU["fluid"]
            lab[eff] = L["body"]
            found["pleural_effusion"] = eff

        img[heart] = _HU["heart"]
        lab[heart] = L["heart"]
        img[peri] = _HU["fluid"]
        img[liver] = _HU["liver"]
        lab[liver] = L["liver"]
        img[spleen] = _HU["spleen"]
        lab[spleen] = L["spleen"]

        # Aorta: ascending (right-anterior), arch passing left of the trachea, descending left of spine.
        aorta = np.zeros_like(body)
        if t <= 0.78:
            aorta |= descending
        if 0.5 <= t <= 0.78:
            aorta |= ascending
        if 0.73 <= t <= 0.8:
            aorta |= arch
        img[aorta] = aorta_hu
        lab[aorta] = L["aorta"]

        # Spine (vertebral bodies with discs), cord, spinous process; ribs as oblique hoops; sternum.
        disc = np.cos(2 * np.pi * z / 26.0) > 0.85
        img[vert] = _HU["disc"] if disc else _HU["vertebra"]
        if not disc:
            lab[vert] = L["bones"]
        img[cord] = _HU["cord"]
        img[spinous] = _HU["vertebra"]
        lab[spinous] = L["bones"]
        bone = np.zeros_like(body)
        if 0.22 <= t <= 0.96:
            for ang in rib_angles:
                if np.sin(2 * np.pi * z / 28.0 + rib_phase + 1.5 * np.sin(ang)) > 0.3:
                    rx, ry = 0.9 * _BODY_A * np.cos(ang), 0.86 * _BODY_B * np.sin(ang)
                    bone |= _ellipse(xs1, ys1, rx, ry, 6.0, 6.0)
        if 0.45 <= t <= 0.9:
            bone |= sternum
        img[bone] = _HU["rib"]
        lab[bone] = L["bones"]

        # Airways last: trachea down to the carina, then main bronchi running out into the lungs.
        airway = trachea.copy() if t >= 0.6 else np.zeros_like(body)
        if 0.48 <= t < 0.6:
            f = (0.6 - t) / 0.12
            for sgn in (-1.0, 1.0):
                airway |= _ellipse(xs1, ys1, sgn * 48.0 * f, 20.0 - 8.0 * f, 6.5, 6.5) & inner
        img[airway] = _HU["air"]
        lab[airway] = L["airways"]

        for label, sph in spheres.items():
            (fx, fy, fz), r = sph.center, sph.radius
            rz = np.sqrt(max(0.0, r * r - (z - fz) ** 2))
            ball = _ellipse(xs1, ys1, fx, fy, rz, rz) & inner
            if label in ("lung_nodule", "consolidation"):
                ball &= lungs[by_label[label].side]
                img[ball] = _HU["nodule" if label == "lung_nodule" else "consolidation"]
            elif label == "lymphadenopathy":
                ball &= ~airway & ~aorta
                img[ball] = _HU["node"]
            else:  # hiatal hernia: fluid with an air cap anteriorly
                ball &= ~vert & ~aorta
                img[ball] = np.where(y[ball] < fy - 0.4 * r, _HU["air"], _HU["fluid"])
                lab[ball & (lab == L["heart"])] = L["body"]
            found[label] = ball
        if "cardiomegaly" in by_label:
            found["cardiomegaly"] = heart

        for label, mask in found.items():
            rows, cols = np.nonzero(mask)
            if rows.size:
                sums[label] += (float(xs_mm[cols].sum()), float(ys_mm[rows].sum()), z * rows.size, rows.size)
        if noise_hu > 0:
            img[body] += rng.normal(0.0, noise_hu, n_body).astype(np.float32)
        hu[k] = np.clip(np.rint(img), -1024, 3071).astype(np.int16)
        labels[k] = lab

    voxel_mm3 = sx * sy * sz
    placed = []
    for spec in findings:
        sx_, sy_, sz_, n = sums[spec.label]
        if n == 0:
            raise SynthError(f"finding {spec.label!r} has no voxels on grid {shape_zyx}; use more slices")
        radius = spheres[spec.label].radius if spec.label in spheres else (3 * n * voxel_mm3 / (4 * np.pi)) ** (1 / 3)
        side = spec.side if spec.label in _LATERAL else ""
        center = (float(sx_ / n), float(sy_ / n), float(sz_ / n))
        placed.append(PlacedFinding(spec.label, side, center, float(radius), int(n)))
    return Phantom(hu, labels, LABEL_TABLE, tuple(placed), (ox, oy, oz), (sz, sy, sx))
