"""The offline fallback segmenter: body, lungs, airways and bones from HU thresholds.

Runs anywhere (numpy, cc3d, SimpleITK; no model weights, no GPU) so a corpus can still get weak
anatomy masks when TotalSegmentator is not provisioned. It only needs axial slices (array axis 0
runs head-foot); left and right are decided in patient coordinates from the image direction, so a
flipped array cannot swap the lungs.

Steps: body = largest component above ``body_hu`` with each axial slice's holes filled, plus lung-like
air the field of view cut open (a lung touching the image border is no hole); air = body
voxels below ``air_hu``; airways = the component of very low HU (``airway_hu``, lumen air is about
-1000 while lung parenchyma is about -850) seeded at a small, central air region in the most superior
slices (the trachea), with the threshold tightened if it leaks into the lungs; lungs = the remaining
large air components whose median HU is lung-like (``lung_median_hu``: not gas, not fat), split
left/right by the body's midline; bones = components above ``bone_hu`` with filled slice holes.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from types import MappingProxyType

import cc3d
import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ctcorpus.anatomy.base import Segmentation, label_map_image, patient_matrix
from ctcorpus.config.anatomy import AnatomyConfig
from ctcorpus.enums import QuarantineReason
from ctcorpus.errors import AnatomyError

log = logging.getLogger(__name__)

#: Fallback label values (the names are the keys of ``ctcorpus.taxonomy.FALLBACK_TO_ANATOMY``).
FALLBACK_LABELS: Mapping[int, str] = MappingProxyType(
    {1: "body", 2: "lung_left", 3: "lung_right", 4: "airways", 5: "bones"}
)
_LABEL = {name: value for value, name in FALLBACK_LABELS.items()}

#: Cross-section range (mm^2) of a trachea seed, and how far (share of the body's width) from the
#: midline its centre may lie: lung apices are larger and lateral, noise specks smaller.
_MIN_TRACHEA_AREA_MM2 = 30.0
_MAX_TRACHEA_AREA_MM2 = 1200.0
_MAX_TRACHEA_OFFSET = 0.2
#: Smallest airway tree kept (ml): a few voxels of gas near the midline are not a trachea.
_MIN_AIRWAY_ML = 1.0
#: Head-foot depth (mm) below the body's most superior slice searched for the trachea seed: a chest
#: CT shows the trachea in its top slices; a scan starting lower (abdomen) has none to find.
_SEED_SLAB_MM = 10.0
#: How much the airway threshold is tightened (HU) per retry when the tree leaked into the lungs.
_AIRWAY_STEPS = (0.0, -20.0, -35.0, -45.0)


def _fill_holes_2d(mask: np.ndarray) -> np.ndarray:
    """Fill the holes of every axial slice (background regions not touching the slice border)."""
    out = mask.copy()
    for z in np.flatnonzero(mask.any(axis=(1, 2))):
        background = cc3d.connected_components(~mask[z], connectivity=4)
        open_to_border = np.zeros(int(background.max()) + 1, dtype=bool)
        open_to_border[np.concatenate([background[0], background[-1], background[:, 0], background[:, -1]])] = True
        open_to_border[0] = True  # label 0 is the mask itself
        out[z] |= ~open_to_border[background]
    return out


def _border_walls(body: np.ndarray) -> np.ndarray:
    """The border pixels of a 2D slice between the body's contacts with the border, as a mask.

    The border is walked once around; each stretch of it between two body contacts is walled unless it
    holds a whole side without body (the open air around a patient who touches one or two sides). A
    stretch round a corner counts like one within a side: walling within each side only left a lung
    the field of view cut at a corner open, and lost.
    """
    rows, cols = body.shape
    walls = np.zeros(body.shape, dtype=bool)
    ring_y = np.concatenate(
        [np.zeros(cols - 1, int), np.arange(rows - 1), np.full(cols - 1, rows - 1), np.arange(rows - 1, 0, -1)]
    )
    ring_x = np.concatenate(
        [np.arange(cols - 1), np.full(rows - 1, cols - 1), np.arange(cols - 1, 0, -1), np.zeros(rows - 1, int)]
    )
    on = body[ring_y, ring_x]
    if not on.any():
        return walls
    ring = np.roll(np.arange(on.size), -int(np.argmax(on)))  # start at a contact: no stretch wraps round
    ys, xs, on = ring_y[ring], ring_x[ring], on[ring]
    # a side without body lies whole in one stretch: any pixel of it stands for it
    sides = (ys == 0, xs == cols - 1, ys == rows - 1, xs == 0)
    open_at = [int(np.argmax(side)) for side in sides if not on[side].any()]
    bounds = np.flatnonzero(np.diff(np.concatenate(([1], on.astype(np.int8), [1]))))
    for first, stop in bounds.reshape(-1, 2):
        if not any(first <= at < stop for at in open_at):
            walls[ys[first:stop], xs[first:stop]] = True
    return walls


def _cut_open_lungs(body: np.ndarray, hu: np.ndarray, voxel_ml: float, config: AnatomyConfig) -> np.ndarray:
    """Lung-like air the field of view cut open (a large patient, a small reconstruction FOV), outside ``body``.

    Such a lung touches the image border, so it is no hole of the body and was lost whole. Walling each
    slice's border between the body's contacts with it (:func:`_border_walls`, around a corner too: a
    lung the field of view cuts at a corner touches two sides) encloses it again; of what that encloses,
    only components of lung size and lung-like median HU count (gas between the body's contacts with
    the border, about -1000 HU, does not).
    """
    edges = body[:, 0] | body[:, -1]
    touching = np.flatnonzero(edges.any(axis=1) | body[:, :, 0].any(axis=1) | body[:, :, -1].any(axis=1))
    enclosed = np.zeros(body.shape, dtype=bool)
    for z in touching:
        walled = body[z] | _border_walls(body[z])
        enclosed[z] = _fill_holes_2d(walled[None])[0] & ~body[z] & (hu[z] < config.air_hu)
    if not enclosed.any():
        return enclosed
    components = cc3d.connected_components(enclosed, connectivity=6)
    voxels = np.bincount(components.ravel())
    low, high = config.lung_median_hu
    keep = [
        label
        for label in np.flatnonzero(voxels * voxel_ml >= config.min_lung_ml)
        if label and low <= float(np.median(hu[components == label])) <= high
    ]
    return np.isin(components, keep)


def _largest_component(mask: np.ndarray) -> np.ndarray:
    if not mask.any():
        return mask
    return cc3d.largest_k(mask, k=1, connectivity=26) > 0


def _bbox(mask: np.ndarray) -> tuple[slice, ...]:
    """Bounding box slices of a non-empty mask."""
    return tuple(
        slice(int(idx.min()), int(idx.max()) + 1)
        for idx in (np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != axis))) for axis in range(3))
    )


def _x_plane(z: int, shape: tuple[int, ...], offset: tuple[int, ...], matrix: np.ndarray) -> np.ndarray:
    """Patient x (LPS mm, + = patient left, origin dropped) of every pixel of slice ``z`` of a box."""
    j = np.arange(shape[1]) + offset[1]
    i = np.arange(shape[2]) + offset[2]
    return matrix[0, 0] * i[None, :] + matrix[0, 1] * j[:, None] + matrix[0, 2] * (z + offset[0])


def _left_of_midline(mask: np.ndarray, offset: tuple[int, ...], matrix: np.ndarray, midline: float) -> np.ndarray:
    """The voxels of ``mask`` on the patient's left of the plane x = ``midline`` (slice by slice, low memory)."""
    out = np.zeros(mask.shape, dtype=bool)
    for z in np.flatnonzero(mask.any(axis=(1, 2))):
        out[z] = mask[z] & (_x_plane(int(z), mask.shape, offset, matrix) > midline)
    return out


def _midline_and_width(body: np.ndarray, offset: tuple[int, ...], matrix: np.ndarray) -> tuple[float, float]:
    """Patient x of the body's centroid, and the x extent of its bounding box (mm)."""
    centroid = [
        float(np.average(np.arange(n) + offset[axis], weights=body.sum(axis=tuple(a for a in range(3) if a != axis))))
        for axis, n in enumerate(body.shape)
    ]  # (k, j, i)
    row = matrix[0]
    midline = row[0] * centroid[2] + row[1] * centroid[1] + row[2] * centroid[0]
    corners = [
        row[0] * (offset[2] + ci * (body.shape[2] - 1))
        + row[1] * (offset[1] + cj * (body.shape[1] - 1))
        + row[2] * (offset[0] + ck * (body.shape[0] - 1))
        for ci in (0, 1)
        for cj in (0, 1)
        for ck in (0, 1)
    ]
    return float(midline), float(np.ptp(corners)) or 1.0


class ThresholdSegmenter:
    """HU-threshold fallback segmenter (``threshold-1.2``): body, lungs, airways, bones.

    Parameters
    ----------
    config:
        The anatomy config; only the fallback thresholds are read.

    Examples
    --------
    >>> import numpy as np
    >>> from ctcorpus.synth import make_phantom
    >>> p = make_phantom((16, 128, 128), (10.0, 3.0, 3.0), np.random.default_rng(0))
    >>> ct = sitk.GetImageFromArray(p.hu)
    >>> ct.SetSpacing((3.0, 3.0, 10.0))
    >>> seg = ThresholdSegmenter(AnatomyConfig()).segment(ct)
    >>> seg.source, sorted(seg.label_table.values())
    ('threshold-1.2', ['airways', 'body', 'bones', 'lung_left', 'lung_right'])
    """

    name = "threshold"
    version = "1.2"

    def __init__(self, config: AnatomyConfig) -> None:
        self._config = config

    def segment(self, image: sitk.Image) -> Segmentation:
        """Segment a CT volume in HU (any scalar pixel type) on its own grid."""
        if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
            raise AnatomyError(
                "the threshold segmenter needs a 3D scalar CT image",
                reason=QuarantineReason.SEGMENTATION_FAILED,
            )
        matrix = patient_matrix(image)
        if abs(matrix[2, 2]) < 0.5 * np.abs(matrix[2]).sum():
            raise AnatomyError(
                "the threshold segmenter needs axial slices (array axis 0 running head-foot); "
                f"direction is {image.GetDirection()}: reorient the volume first",
                reason=QuarantineReason.SEGMENTATION_FAILED,
            )
        labels = _segment_array(sitk.GetArrayViewFromImage(image), matrix, self._config)
        return Segmentation(
            labels=label_map_image(labels, image), label_table=FALLBACK_LABELS, backend=self.name, version=self.version
        )


def _segment_array(hu: np.ndarray, matrix: np.ndarray, config: AnatomyConfig) -> np.ndarray:
    """The label map (z, y, x) of a HU array whose index steps map to LPS mm through ``matrix``."""
    voxel_ml = abs(float(np.linalg.det(matrix))) / 1000.0
    labels = np.zeros(hu.shape, dtype=np.uint8)
    body = _fill_holes_2d(_largest_component(hu > config.body_hu))
    if not body.any():
        return labels
    body |= _cut_open_lungs(body, hu, voxel_ml, config)
    box = _bbox(body)
    offset = tuple(s.start for s in box)
    hu_box, body_box = hu[box], body[box]
    midline, width = _midline_and_width(body_box, offset, matrix)

    air = body_box & (hu_box < config.air_hu)
    airways = _airways(hu_box, air, offset, midline, width, matrix, voxel_ml, config)
    lung_left, lung_right, leftover = _lungs(hu_box, air & ~airways, offset, midline, matrix, voxel_ml, config)
    if airways.any():  # partial-volume rim of the lumen: small air bits touching the airways
        near = tuple(slice(max(0, b.start - 1), b.stop + 1) for b in _bbox(airways))
        airways[near] |= leftover[near] & ndimage.binary_dilation(airways[near], iterations=1)
    bones = body_box & (hu_box >= config.bone_hu)
    bones = _fill_holes_2d(cc3d.dust(bones, threshold=max(1, int(config.min_bone_ml / voxel_ml)), connectivity=26))

    out = labels[box]
    out[body_box] = _LABEL["body"]
    out[bones & body_box] = _LABEL["bones"]
    out[lung_left] = _LABEL["lung_left"]
    out[lung_right] = _LABEL["lung_right"]
    out[airways] = _LABEL["airways"]
    return labels


def _airways(
    hu: np.ndarray,
    air: np.ndarray,
    offset: tuple[int, ...],
    midline: float,
    width: float,
    matrix: np.ndarray,
    voxel_ml: float,
    config: AnatomyConfig,
) -> np.ndarray:
    """Trachea and main bronchi: very low HU air connected to a central seed in the top slices."""
    empty = np.zeros(hu.shape, dtype=bool)
    if not air.any():
        return empty
    superior_last = matrix[2, 2] > 0  # a larger slice index is more superior (the box starts at the body)
    n_seed = max(1, int(np.ceil(_SEED_SLAB_MM / abs(matrix[2, 2]))))
    ordered = np.arange(hu.shape[0])[::-1] if superior_last else np.arange(hu.shape[0])
    pixel_mm2 = float(np.linalg.norm(np.cross(matrix[:, 0], matrix[:, 1])))
    for threshold in (config.airway_hu + step for step in _AIRWAY_STEPS):
        lumen = air & (hu < threshold)
        seed = _trachea_seed(lumen, ordered[:n_seed], offset, matrix, midline, width, pixel_mm2)
        if seed is None:
            return empty
        components = cc3d.connected_components(lumen, connectivity=6)
        tree = components == components[seed]
        volume_ml = float(tree.sum()) * voxel_ml
        if volume_ml < _MIN_AIRWAY_ML:
            return empty
        if volume_ml <= config.max_airway_ml:
            return tree
        log.debug("airway tree leaked threshold=%s volume_ml=%.1f", threshold, volume_ml)
    log.warning("airways not segmented: the lumen leaks into the lungs at every threshold")
    return empty


def _trachea_seed(
    lumen: np.ndarray,
    slices: np.ndarray,
    offset: tuple[int, ...],
    matrix: np.ndarray,
    midline: float,
    width: float,
    pixel_mm2: float,
) -> tuple[int, int, int] | None:
    """A voxel of the most superior small, central lumen region among ``slices`` (None if there is none)."""
    for z in slices:
        regions = cc3d.connected_components(lumen[z], connectivity=8)
        count = int(regions.max())
        if count == 0:
            continue
        index = np.arange(1, count + 1)
        area_mm2 = np.bincount(regions.ravel(), minlength=count + 1)[1:] * pixel_mm2
        centre_x = ndimage.mean(_x_plane(int(z), lumen.shape, offset, matrix), labels=regions, index=index)
        distance = np.abs(np.asarray(centre_x) - midline) / width
        ok = (_MIN_TRACHEA_AREA_MM2 <= area_mm2) & (area_mm2 <= _MAX_TRACHEA_AREA_MM2)
        ok &= distance <= _MAX_TRACHEA_OFFSET
        if ok.any():
            best = index[ok][np.argmin(distance[ok])]
            j, i = np.argwhere(regions == best)[0]
            return int(z), int(j), int(i)
    return None


def _lungs(
    hu: np.ndarray,
    air: np.ndarray,
    offset: tuple[int, ...],
    midline: float,
    matrix: np.ndarray,
    voxel_ml: float,
    config: AnatomyConfig,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Left lung, right lung and the air that is neither (small bits, gas), with slice holes filled."""
    components = cc3d.connected_components(air, connectivity=6)
    count = int(components.max())
    left = np.zeros(air.shape, dtype=bool)
    right = np.zeros(air.shape, dtype=bool)
    if count == 0:
        return left, right, air
    voxels = np.bincount(components[air], minlength=count + 1)
    low, high = config.lung_median_hu
    for label in np.flatnonzero(voxels * voxel_ml >= config.min_lung_ml):
        if label == 0:
            continue
        component = components == label
        if not low <= float(np.median(hu[component])) <= high:
            continue
        component_left = _left_of_midline(component, offset, matrix, midline)
        share_left = float(np.count_nonzero(component_left)) / float(voxels[label])
        if 0.2 < share_left < 0.8:  # lungs touching across the midline: split there
            left |= component_left
            right |= component & ~component_left
        elif share_left >= 0.8:
            left |= component
        else:
            right |= component
    left = _fill_holes_2d(left) & ~right
    right = _fill_holes_2d(right) & ~left
    return left, right, air & ~left & ~right
