"""Volume assembly: decode slices, apply rescale per slice to HU once, repair geometry per policy.

Uncompressed little-endian slices (and frames) are read as raw bytes at the PixelData offset
discovery found (``np.frombuffer``: ~10x faster than ``ds.pixel_array``); everything else (RLE,
JPEG Lossless, JPEG-LS, JPEG 2000, big endian, deflate) is decoded by pydicom with its
pylibjpeg/gdcm handlers, a frame of a multi-frame file alone.
Slices are read by a thread pool straight into one preallocated int16 array, so memory stays at
one volume plus a slice per thread. For ingest + resample that array is a SimpleITK image's
pixel buffer (``assemble_volume(..., simpleitk_buffer=True)``): :func:`volume_image` then hands
SimpleITK the buffer, not a copy, and the peak holds one native volume instead of two.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.pixels import pixel_array

from ctcorpus.config.ingest import IngestConfig
from ctcorpus.enums import Action, QuarantineReason
from ctcorpus.errors import IngestError
from ctcorpus.ingest.geometry import covering_grid, plane_axes
from ctcorpus.ingest.header import NATIVE_LE, file_warnings
from ctcorpus.ingest.records import InstanceRecord, SliceRecord, Stack, Vec3, Volume

#: Air: the value of voxels outside the scanned field of view after a geometric repair, and the
#: lowest HU a volume holds (:func:`rescale_to_hu` raises anything below it to it).
AIR_HU = -1024
_INT16 = np.iinfo(np.int16)
#: SimpleITK pixel type of each dtype assembly allocates (HU volumes, raw stored values).
_PIXEL_ID = {np.dtype(np.int16): sitk.sitkInt16, np.dtype(np.int32): sitk.sitkInt32}


class _ImageBuffer:
    """A SimpleITK image's pixel buffer, writable, as numpy's ``__array_interface__``.

    SimpleITK 2.5 has no image view of a numpy array, only a read-only array view of an image
    that does not keep the image alive; this is the other direction with a reference: arrays made
    from it hold it, hence the image. The pointer stays valid only while nothing else shares the
    image (SimpleITK moves a shared image to a new buffer on its first write or setter), so the
    image is given its geometry before :func:`volume_image` shares it and never written after.
    """

    __slots__ = ("__array_interface__", "image")

    def __init__(self, image: sitk.Image) -> None:
        interface = dict(sitk.GetArrayViewFromImage(image).__array_interface__)  # makes the image unique
        interface["data"] = (interface["data"][0], False)  # (pointer, read-only)
        self.image = image
        self.__array_interface__ = interface


def _image_array(image: sitk.Image) -> np.ndarray:
    """The pixels of ``image`` as a writable (z, y, x) array, no copy; it keeps ``image`` alive."""
    return np.asarray(_ImageBuffer(image))


def _empty(shape: tuple[int, ...], dtype: type[np.integer]) -> np.ndarray:
    """A zeroed (z, y, x) array allocated as a new SimpleITK image's buffer (like ``np.empty``)."""
    return _image_array(sitk.Image([int(v) for v in shape[::-1]], _PIXEL_ID[np.dtype(dtype)]))


#: ``np.empty`` or :func:`_empty`: where assembly allocates a volume.
_Allocator = Callable[[tuple[int, ...], type[np.integer]], np.ndarray]


def _owning_image(array: np.ndarray) -> sitk.Image | None:
    """The image whose whole buffer ``array`` is (C order, same shape and type), else None."""
    owner = array.base
    while isinstance(owner, np.ndarray):
        owner = owner.base
    if not isinstance(owner, _ImageBuffer):
        return None
    mine, whole = array.__array_interface__, owner.__array_interface__
    same = mine["strides"] is None and all(mine[k] == whole[k] for k in ("shape", "typestr")) and mine["data"][0] == whole["data"][0]
    return owner.image if same else None


def read_stored(record: InstanceRecord) -> np.ndarray:
    """The stored pixel values of one slice (a file, or a frame of one), (rows, columns), before rescale.

    Raises :class:`IngestError` (``unreadable_pixels``) naming the file when decoding fails.
    """
    shape = (record.rows, record.columns)
    raw_ok = (
        record.transfer_syntax in NATIVE_LE
        and record.bits_allocated in (8, 16)
        and record.pixel_length == record.rows * record.columns * record.bits_allocated // 8
    )
    try:
        if raw_ok:
            with open(record.path, "rb") as handle:
                handle.seek(record.pixel_offset)
                data = handle.read(record.pixel_length)
            if len(data) != record.pixel_length:
                raise IngestError("PixelData is shorter than declared: truncated file; re-export it", reason=QuarantineReason.TRUNCATED, path=record.rel_path)
            kind = "i" if record.pixel_representation else "u"
            array = np.frombuffer(data, dtype=f"<{kind}{record.bits_allocated // 8}").reshape(shape)
            return _mask_bits(array, record.bits_stored, record.bits_allocated, bool(record.pixel_representation))
        with file_warnings(record.rel_path if record.frame is None else f"{record.rel_path} frame {record.frame}"):
            if record.frame is None:
                array = pydicom.dcmread(record.path).pixel_array
            else:  # only that frame is read and decoded
                array = pixel_array(record.path, index=record.frame - 1)
    except (IngestError, KeyboardInterrupt, SystemExit, MemoryError):
        raise  # out of memory is the worker's, not the file's: its stack fails and is retried (stage_failed)
    except BaseException as exc:  # noqa: BLE001 - decoders raise many types, Rust ones (pylibjpeg-rle) a PanicException,
        # which is no Exception; a bad slice must name its file, not end the run
        raise IngestError(
            f"pixel data cannot be decoded ({type(exc).__name__}: {exc}); transfer syntax {record.transfer_syntax}",
            reason=QuarantineReason.UNREADABLE_PIXELS,
            path=record.rel_path,
        ) from None
    if array.shape != shape:
        raise IngestError(f"decoded pixels have shape {array.shape}, header says {shape}", reason=QuarantineReason.UNREADABLE_PIXELS, path=record.rel_path)
    return array


def _mask_bits(array: np.ndarray, stored: int, allocated: int, signed: bool) -> np.ndarray:
    """Drop bits above BitsStored (overlays, garbage) and sign-extend, as pydicom does."""
    if not stored or stored >= allocated:
        return array
    if signed:
        shift = allocated - stored
        return (array << shift) >> shift
    return array & ((1 << stored) - 1)


def rescale_to_hu(
    stored: np.ndarray, slope: float, intercept: float, out: np.ndarray | None = None, padding: tuple[int, int] | None = None
) -> np.ndarray:
    """HU = stored * slope + intercept, rounded, raised to air (:data:`AIR_HU`) where below it and
    saturated to int16 (one slice or a volume).

    Nothing scanned is below air: such values are the fill outside the reconstructed field of view
    (GE and Siemens store -2000, -3024 HU, often without a PixelPaddingValue naming it), which
    linear resampling and the spacing and tilt repairs blended into the tissue touching it (a dark
    rim, clipped to -1000). Stored values inside ``padding`` (PixelPaddingValue through
    PixelPaddingRangeLimit) lie outside the field of view too and become air: rescaled, an
    unsigned padding of 63536 is +32767 HU, bone in the corpus.
    """
    out = _rescale(stored, slope, intercept, np.empty(stored.shape, np.int16) if out is None else out)
    if padding is not None:
        out[(stored >= padding[0]) & (stored <= padding[1])] = AIR_HU
    return out


def _rescale(stored: np.ndarray, slope: float, intercept: float, out: np.ndarray) -> np.ndarray:
    """The common CT case (slope 1, integer intercept, result inside int16) is one int16 addition
    with no temporary (and a second pass only for a slice that holds values below air);
    everything else goes through float32 and rounds once."""
    if slope == 1.0 and float(intercept).is_integer() and stored.dtype.kind in "iu" and stored.dtype.itemsize <= 2:
        low, high, shift = int(stored.min()), int(stored.max()), int(intercept)
        if _INT16.min <= low + shift and high + shift <= _INT16.max and high <= _INT16.max:
            as_int16 = stored.view(np.int16) if stored.dtype == np.uint16 else stored.astype(np.int16, copy=False)
            np.add(as_int16, np.int16(shift), out=out)
            if low + shift < AIR_HU:  # against a row of air: numpy's loop for a scalar is ~6x slower
                np.maximum(out, np.full(out.shape[-1], AIR_HU, np.int16), out=out)
            return out
    values = np.rint(stored.astype(np.float32) * np.float32(slope) + np.float32(intercept))
    np.clip(values, AIR_HU, _INT16.max, out=values)
    out[...] = values
    return out


def to_hu(volume: Volume) -> Volume:
    """Apply each slice's rescale to a stored-value volume; a volume already in HU is returned as is.

    The ``is_hu`` flag makes this idempotent: applying HU conversion twice (a real corpus bug)
    is impossible through this function.

    >>> to_hu(to_hu(volume)) is to_hu(volume)   # doctest: +SKIP
    True
    """
    if volume.is_hu:
        return volume
    out = np.empty(volume.array.shape, np.int16)
    for k, piece in enumerate(volume.slices):
        rescale_to_hu(volume.array[k], piece.rescale_slope, piece.rescale_intercept, out=out[k], padding=piece.pixel_padding)
    return dataclasses.replace(volume, array=out, is_hu=True)


def _read_stack(records: Sequence[InstanceRecord], hu: bool, workers: int, allocate: _Allocator) -> np.ndarray:
    first = records[0]
    out = allocate((len(records), first.rows, first.columns), np.int16 if hu else np.int32)

    def fill(k: int) -> None:
        stored = read_stored(records[k])
        if hu:
            rescale_to_hu(stored, records[k].rescale_slope, records[k].rescale_intercept, out=out[k], padding=records[k].pixel_padding)
        else:
            out[k] = stored

    if workers > 1 and len(records) > 1:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(fill, range(len(records))))
    else:
        for k in range(len(records)):
            fill(k)
    return out


def _slice_hu(record: InstanceRecord) -> np.ndarray:
    return rescale_to_hu(read_stored(record), record.rescale_slope, record.rescale_intercept, padding=record.pixel_padding)


def _check_duplicates(stack: Stack) -> None:
    """Dropping a duplicate is only a repair when it holds the kept slice's HU (a slice re-sent
    as signed with intercept 0 stores other values for the same image)."""
    along = np.asarray(stack.positions_along_normal)
    for extra in stack.duplicates:
        assert extra.position is not None
        k = int(np.argmin(np.abs(along - float(np.dot(extra.position, stack.normal)))))
        kept = stack.instances[k]
        same = (
            extra.slice_id == kept.slice_id and extra.sha256 == kept.sha256 and extra.sha256 != ""
        ) or np.array_equal(_slice_hu(extra), _slice_hu(kept))
        if not same:
            raise IngestError(
                f"{extra.rel_path} and {kept.rel_path} lie at the same position but hold different pixels; "
                "the series mixes two stacks that no header separates: export them as separate series",
                reason=QuarantineReason.DUPLICATE_SLICE,
                path=extra.rel_path,
            )


def _resample_along(array: np.ndarray, t: np.ndarray, step: float, allocate: _Allocator) -> tuple[np.ndarray, np.ndarray]:
    """Linear interpolation of slices at positions ``t`` (ascending, mm) onto a uniform ``step``."""
    n_out = int(math.floor((t[-1] - t[0]) / step + 1e-6)) + 1
    targets = t[0] + step * np.arange(n_out)
    upper = np.clip(np.searchsorted(t, targets, side="right"), 1, len(t) - 1)
    lower = upper - 1
    weight = ((targets - t[lower]) / (t[upper] - t[lower])).astype(np.float32)
    out = allocate((n_out,) + array.shape[1:], array.dtype.type)
    for k in range(n_out):
        w = weight[k]
        blended = array[lower[k]] * (1 - w) + array[upper[k]] * w if w > 0 else array[lower[k]]
        out[k] = np.rint(blended)
    return out, targets


#: Output planes :func:`_untilt` interpolates in float32 at a time.
_UNTILT_SLAB = 16


def _untilt(image: sitk.Image, row: np.ndarray, normal: np.ndarray, allocate: _Allocator) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Resample a tilted (sheared) int16 stack onto the orthogonal grid of its own slice planes:
    the (z, y, x) array and the grid's spacing, origin and direction.

    As dcm2niix's tilt correction: axes row, normal x row, normal; spacing along the normal is
    the distance between slice planes, so every output plane is an input slice shifted in-plane
    (no interpolation across slices) and the grid widens along y to hold the shear. Planes are
    interpolated in float32 and rounded a slab at a time: resampled to int16, SimpleITK casts
    toward zero (tissue lost and air gained up to 1 HU), and a float32 volume would double memory.
    """
    row = row - np.dot(row, normal) * normal
    row /= np.linalg.norm(row)
    direction = np.column_stack([row, np.cross(normal, row), normal])
    step = np.asarray(image.GetDirection()).reshape(3, 3)[:, 2] * image.GetSpacing()[2]
    spacing = np.array([image.GetSpacing()[0], image.GetSpacing()[1], abs(float(np.dot(step, normal)))])
    out_size, origin = covering_grid(image, direction, spacing)
    out = allocate((int(out_size[2]), int(out_size[1]), int(out_size[0])), np.int16)
    for k in range(0, len(out), _UNTILT_SLAB):
        slab = out[k : k + _UNTILT_SLAB]
        resampled = sitk.Resample(image, [int(out_size[0]), int(out_size[1]), len(slab)], sitk.Transform(), sitk.sitkLinear,
                                  (origin + direction[:, 2] * spacing[2] * k).tolist(), spacing.tolist(), direction.flatten().tolist(),
                                  float(AIR_HU), sitk.sitkFloat32)
        np.rint(sitk.GetArrayViewFromImage(resampled), out=slab, casting="unsafe")
    return out, spacing, origin, direction


#: Repairs that resample the stack's pixels (see assemble_volume).
_RESAMPLING_REPAIRS = frozenset({QuarantineReason.NON_UNIFORM_SPACING, QuarantineReason.MISSING_SLICES,
                                 QuarantineReason.GANTRY_TILT})


def assemble_volume(stack: Stack, config: IngestConfig | None = None, *, hu: bool = True, simpleitk_buffer: bool = False) -> Volume:
    """Read a stack's pixels into a native-resolution int16 HU volume with LPS geometry.

    Repairs chosen by the policy are applied here: exact duplicates are dropped (different pixels
    at one position raise), non-uniform spacing and missing slices (when set to repair) are
    interpolated onto the median step, gantry tilt is resampled onto an orthogonal grid. Rejected
    stacks raise :class:`IngestError` with the first rejecting reason. Stored values (``hu=False``)
    are only read for a stack no repair resamples: rows resampled from slices of different rescale
    are no slices :func:`to_hu` could rescale.

    ``simpleitk_buffer`` allocates the (then read-only) array as a SimpleITK image's buffer, so
    :func:`volume_image` and resampling use it without a copy: ingest + resample then peaks at one
    native volume instead of two (a spacing repair or untilting still holds the stack it read and
    the one it interpolates, about two native volumes, before resampling). It is off by default
    because SimpleITK zero-fills its buffer in 4 KiB pages (~0.1 s per 150 MB) where numpy's large
    arrays get transparent huge pages.

    >>> volume = assemble_volume(stacks[0])   # doctest: +SKIP
    >>> volume.array.dtype, volume.is_hu      # doctest: +SKIP
    (dtype('int16'), True)
    """
    config = config or IngestConfig()
    rejecting = [f for f in stack.findings if f.action is Action.REJECT]
    if rejecting:
        first = rejecting[0]
        raise IngestError(f"stack rejected: {first.detail}", reason=first.reason, path=stack.first.rel_path)
    repairs = {f.reason for f in stack.findings if f.action is Action.REPAIR}
    if not hu and repairs & _RESAMPLING_REPAIRS:
        raise ValueError(f"stored values of a stack that {sorted(r.value for r in repairs & _RESAMPLING_REPAIRS)} "
                         "repairs resample cannot be converted to HU afterwards; assemble it with hu=True")
    if stack.duplicates and QuarantineReason.DUPLICATE_SLICE in repairs:
        _check_duplicates(stack)
    records = stack.instances
    allocate: _Allocator = _empty if simpleitk_buffer else np.empty
    array = _read_stack(records, hu, config.workers, allocate)
    first = records[0]
    assert first.orientation is not None and first.pixel_spacing is not None
    row, col, _ = plane_axes(first.orientation).T
    positions = np.array([r.position for r in records], float)
    slices = tuple(
        SliceRecord(
            slice_index=k,
            sop_uid=r.sop_uid,
            instance_number=r.instance_number,
            position=tuple(positions[k]),  # type: ignore[arg-type]
            z_mm=float(positions[k][2]),
            rel_path=r.rel_path,
            sha256=r.sha256,
            rescale_slope=r.rescale_slope,
            rescale_intercept=r.rescale_intercept,
            pixel_padding=r.pixel_padding,
            frame=r.frame,
        )
        for k, r in enumerate(records)
    )
    if len(records) > 1:
        mean_step = (positions[-1] - positions[0]) / (len(records) - 1)
        stack_dir = mean_step / np.linalg.norm(mean_step)
    else:
        stack_dir = np.asarray(stack.normal)
    t = (positions - positions[0]) @ stack_dir
    step = float(np.linalg.norm(mean_step)) if len(records) > 1 else float(first.slice_thickness or 1.0)
    if repairs & {QuarantineReason.NON_UNIFORM_SPACING, QuarantineReason.MISSING_SLICES} and len(records) > 2:
        step = float(np.median(np.diff(t)))
        array, _ = _resample_along(array, t, step, allocate)
    spacing: Vec3 = (float(first.pixel_spacing[1]), float(first.pixel_spacing[0]), step)
    tilt = max((f.value for f in stack.findings if f.reason is QuarantineReason.GANTRY_TILT), default=0.0)
    direction = np.column_stack([row, col, stack_dir])
    origin: Sequence[float] = tuple(positions[0])
    if QuarantineReason.GANTRY_TILT in repairs:
        array, spacing, origin, direction = _untilt(_assembled_image(array, spacing, origin, direction), row, np.asarray(stack.normal), allocate)
    if simpleitk_buffer:
        _assembled_image(array, spacing, origin, direction)  # the geometry volume_image checks
        array.flags.writeable = False  # volume_image shares the buffer with SimpleITK
    return Volume(
        stack_key=stack.stack_key,
        array=array,
        spacing=tuple(float(v) for v in spacing),  # type: ignore[arg-type]
        origin=tuple(float(v) for v in origin),  # type: ignore[arg-type]
        direction=tuple(float(v) for v in direction.flatten()),
        is_hu=hu,
        slices=slices,
        findings=stack.findings,
        tilt_deg=tilt,
    )


def _with_geometry(image: sitk.Image, spacing: Sequence[float], origin: Sequence[float], direction: Sequence[float] | np.ndarray) -> sitk.Image:
    image.SetSpacing([float(v) for v in spacing])
    image.SetOrigin([float(v) for v in origin])
    image.SetDirection([float(v) for v in np.asarray(direction).flatten()])
    return image


def _assembled_image(array: np.ndarray, spacing: Sequence[float], origin: Sequence[float], direction: np.ndarray) -> sitk.Image:
    """A freshly assembled array as an image: its own image, given the geometry in place, if
    :func:`_empty` allocated it (nothing shares that image yet), else a copy."""
    image = _owning_image(array)
    return _with_geometry(sitk.GetImageFromArray(array) if image is None else image, spacing, origin, direction)


def volume_image(volume: Volume) -> sitk.Image:
    """The volume as a SimpleITK image with its LPS origin, spacing and direction.

    A volume assembled with ``simpleitk_buffer=True`` shares its (read-only) array's buffer
    instead of copying it; SimpleITK copies the buffer if the image is ever written to. Any other
    volume, or one whose array or geometry was replaced since, is copied.

    >>> resampled = sitk.Resample(volume_image(volume), reference)   # doctest: +SKIP
    """
    image = _owning_image(volume.array)
    geometry = (volume.spacing, volume.origin, volume.direction)
    if image is not None and (image.GetSpacing(), image.GetOrigin(), image.GetDirection()) == geometry:
        return sitk.Image(image)  # a reference to the same buffer, copied on write
    return _with_geometry(sitk.GetImageFromArray(volume.array), volume.spacing, volume.origin, volume.direction)

