"""Resampling onto the corpus grid: target spacing, fixed orientation, HU clip, optional shape.

The output grid is axis-aligned in the configured orientation (``LPS``: index x, y, z increase
towards patient Left, Posterior, Superior; ``RAS``: Right, Anterior, Superior) and covers the
input's physical extent, so obliques and tilted stacks come out orthogonal. Images are
interpolated linearly in float and rounded once to int16; label maps use nearest neighbour on the
image's own grid (:func:`resample_labels`), so masks and volumes always line up.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from ctcorpus.config.ingest import IngestConfig
from ctcorpus.ingest.assemble import AIR_HU, to_hu, volume_image
from ctcorpus.ingest.geometry import covering_grid
from ctcorpus.ingest.records import ResampledVolume, Volume

#: Direction matrices (columns = index axes in LPS world coordinates) per orientation.
ORIENTATIONS: dict[str, np.ndarray] = {"LPS": np.eye(3), "RAS": np.diag([-1.0, -1.0, 1.0])}


def _crop_pad(array: np.ndarray, origin: np.ndarray, direction: np.ndarray, spacing: np.ndarray, shape_xyz: tuple[int, int, int], fill: int) -> tuple[np.ndarray, np.ndarray]:
    """Centre-crop/pad ``array`` (z, y, x) to ``shape_xyz``; the origin moves with the crop."""
    target = np.array(shape_xyz[::-1])
    current = np.array(array.shape)
    start = (current - target) // 2  # negative = padding
    out = np.full(tuple(target), fill, dtype=array.dtype)
    src_lo = np.maximum(start, 0)
    src_hi = np.minimum(start + target, current)
    dst_lo = src_lo - start
    dst_hi = dst_lo + (src_hi - src_lo)
    out[dst_lo[0] : dst_hi[0], dst_lo[1] : dst_hi[1], dst_lo[2] : dst_hi[2]] = array[
        src_lo[0] : src_hi[0], src_lo[1] : src_hi[1], src_lo[2] : src_hi[2]
    ]
    shift_xyz = start[::-1].astype(float) * spacing
    return out, origin + direction @ shift_xyz


def resample_volume(volume: Volume, config: IngestConfig | None = None) -> ResampledVolume:
    """Resample a native volume onto the corpus grid (linear), clip HU, store int16.

    A volume of stored values (``is_hu`` false) is rescaled to HU first (:func:`to_hu`, a no-op on
    one in HU): clipped as HU, its rescale was skipped, air at +24 instead of -1000. An assembled
    HU volume is handed to SimpleITK without a copy (:func:`volume_image`), so the peak is the
    native volume plus the float32 resampled one plus its int16 result.

    >>> rv = resample_volume(volume, IngestConfig(target_spacing_mm=(1.5, 1.5, 1.5)))   # doctest: +SKIP
    >>> rv.spacing, rv.orientation                                                     # doctest: +SKIP
    ((1.5, 1.5, 1.5), 'LPS')
    """
    return resample_image(volume_image(to_hu(volume)), config)


def resample_image(image: sitk.Image, config: IngestConfig | None = None) -> ResampledVolume:
    """:func:`resample_volume` on a SimpleITK image (e.g. one read from disk)."""
    config = config or IngestConfig()
    direction = ORIENTATIONS[config.orientation]
    spacing = np.asarray(config.target_spacing_mm, float)
    size, origin = covering_grid(image, direction, spacing)
    resampled = sitk.Resample(
        image,
        [int(v) for v in size],
        sitk.Transform(),
        sitk.sitkLinear,
        origin.tolist(),
        spacing.tolist(),
        direction.flatten().tolist(),
        float(AIR_HU),
        sitk.sitkFloat32,
    )
    values = sitk.GetArrayViewFromImage(resampled)  # no float copy; ``resampled`` outlives it
    low, high = config.hu_clip
    array = np.empty(values.shape, np.int16)
    for k, plane in enumerate(values):  # round and clip a plane at a time: no volume-size temporary
        array[k] = np.clip(np.rint(plane), low, high)
    del values, resampled  # the float volume is not needed by crop/pad
    if config.crop_pad_shape is not None:
        array, origin = _crop_pad(array, origin, direction, spacing, config.crop_pad_shape, low)
    return ResampledVolume(
        array=array,
        spacing=tuple(float(v) for v in spacing),  # type: ignore[arg-type]
        origin=tuple(float(v) for v in origin),  # type: ignore[arg-type]
        direction=tuple(float(v) for v in direction.flatten()),
        orientation=config.orientation,
        hu_clip=(int(low), int(high)),
    )


def resampled_image(volume: ResampledVolume) -> sitk.Image:
    """A resampled volume as a SimpleITK image: the reference grid for :func:`resample_labels`."""
    image = sitk.GetImageFromArray(volume.array)
    image.SetSpacing(list(volume.spacing))
    image.SetOrigin(list(volume.origin))
    image.SetDirection(list(volume.direction))
    return image


def resample_labels(labels: sitk.Image, reference: sitk.Image) -> sitk.Image:
    """Resample a label map onto ``reference``'s grid with nearest neighbour (labels never blend).

    Voxels outside the label map become 0 (background); the pixel type is kept.

    >>> mask = resample_labels(segmentation, resampled_image(rv))   # doctest: +SKIP
    """
    return sitk.Resample(labels, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0, labels.GetPixelID())
