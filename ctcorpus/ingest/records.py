"""Records of the ingest stage: frozen, slotted and picklable (they travel to Dask workers).

In-memory records (:class:`InstanceRecord`, :class:`Stack`, :class:`SliceRecord`) hold original
identifiers because linking needs them; the ``*Row`` records are what tables get, with every
identifier pseudonymized (see :mod:`ctcorpus.ingest.tables`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ctcorpus.enums import Action, QuarantineReason
from ctcorpus.records import QuarantineEntry

Vec3 = tuple[float, float, float]


@dataclass(frozen=True, slots=True)
class InstanceRecord:
    """The header of one slice as discovery read it (no pixels): a single-frame DICOM file, or one
    frame of a multi-frame (Enhanced CT) file, with that frame's functional groups applied.

    ``reason`` is set when the slice cannot be part of a volume (localizer, non-CT, ...); such
    slices are also in the index's quarantine (a multi-frame file whose frames are no volume's
    slices is one record, ``frame`` None, its ``detail`` saying why). ``pixel_offset``/
    ``pixel_length`` locate the PixelData value (an uncompressed frame's part of it) so
    uncompressed slices are read without parsing the header again.
    """

    path: str  # absolute
    rel_path: str  # relative to the export root
    size_bytes: int
    sha256: str
    study_uid: str
    series_uid: str
    sop_uid: str
    frame_of_reference_uid: str
    sop_class_uid: str
    modality: str
    image_type: tuple[str, ...]
    series_number: int | None
    instance_number: int | None
    acquisition_number: int | None
    position: Vec3 | None  # ImagePositionPatient
    orientation: tuple[float, ...] | None  # ImageOrientationPatient (6)
    pixel_spacing: tuple[float, float] | None  # (row spacing, column spacing)
    slice_thickness: float | None
    rows: int
    columns: int
    number_of_frames: int
    bits_allocated: int
    bits_stored: int
    pixel_representation: int
    samples_per_pixel: int
    rescale_slope: float
    rescale_intercept: float
    transfer_syntax: str
    kernel: str
    manufacturer: str
    contrast: bool
    series_description: str
    study_date: str  # YYYYMMDD; kept in memory only
    accession_number: str  # PHI: memory only
    patient_id: str  # PHI: memory only
    pixel_offset: int  # byte offset of the PixelData value, -1 if none
    pixel_length: int  # declared length; encapsulated: through its delimiter (-1: read by pydicom, not located)
    reader: str  # "fast" or "pydicom": which header parser read it
    reason: QuarantineReason | None = None
    patient_name: str = ""  # PHI: memory only (the keyed person key of the audit)
    patient_birth_date: str = ""  # PHI: memory only
    requested_accession_numbers: tuple[str, ...] = ()  # PHI: memory only; RequestAttributesSequence
    pixel_padding: tuple[int, int] | None = None  # stored values (low, high) outside the image (PixelPaddingValue)
    frame: int | None = None  # frame number (1-based) in a multi-frame file; None: the file is the slice
    detail: str = ""  # why, where ``reason`` alone does not say (a multi-frame file's frames)
    rescale_type: str = ""  # RescaleType, upper case; "" when absent (a CT image's values are then HU)
    # False where neither the header nor the frame's functional groups state RescaleIntercept (read as 0)
    has_intercept: bool = True
    # how header text was read where its bytes contradict SpecificCharacterSet ("PatientName read as
    # UTF-8, not as undeclared ..."); "" when all of it is as declared
    charset_note: str = ""

    @property
    def slice_id(self) -> str:
        """What names the slice: its SOPInstanceUID (its path when empty), and its frame number in a
        multi-frame file, whose frames share the UID."""
        name = self.sop_uid or self.rel_path
        return name if self.frame is None else f"{name}#{self.frame}"


@dataclass(frozen=True, slots=True)
class ExportIndex:
    """Everything discovery found under one export root."""

    root: str
    instances: tuple[InstanceRecord, ...]
    quarantine: tuple[QuarantineEntry, ...]
    skipped: tuple[str, ...]  # DICOMDIR and other index files: neither used nor quarantined

    @property
    def usable(self) -> tuple[InstanceRecord, ...]:
        """Instances that may become slices of a volume."""
        return tuple(r for r in self.instances if r.reason is None)


@dataclass(frozen=True, slots=True)
class Finding:
    """A geometry defect found in a stack and the action the policy chose for it."""

    reason: QuarantineReason
    detail: str
    action: Action
    value: float = 0.0  # e.g. the tilt angle in degrees, the largest gap in mm
    path: str = ""  # the file most concerned (a dropped duplicate, the slice before a gap); "" = the stack


@dataclass(frozen=True, slots=True)
class Stack:
    """One stack of parallel slices (a series may hold several), sorted along the slice normal.

    ``instances`` are sorted by the projection of ImagePositionPatient on the normal;
    ``duplicates`` holds extra instances at an already-occupied position (resolved at assembly).
    """

    stack_key: str  # stable: hash input of the volume id
    instances: tuple[InstanceRecord, ...]
    duplicates: tuple[InstanceRecord, ...]
    normal: Vec3
    positions_along_normal: tuple[float, ...]
    findings: tuple[Finding, ...]
    rejected: bool

    @property
    def first(self) -> InstanceRecord:
        return self.instances[0]


@dataclass(frozen=True, slots=True)
class SliceRecord:
    """One source slice of a volume (the slice table: dcm2niix users' missing DICOM <-> NIfTI map)."""

    # index among the stack's source slices (ascending along the stacking direction): the native volume's
    # row unless a spacing repair resampled the stack along z
    slice_index: int
    sop_uid: str
    instance_number: int | None
    position: Vec3
    z_mm: float  # ImagePositionPatient z (LPS)
    rel_path: str
    sha256: str
    rescale_slope: float
    rescale_intercept: float
    pixel_padding: tuple[int, int] | None = None  # stored values that are no image: air in HU
    frame: int | None = None  # frame number (1-based) in a multi-frame file; None for a single-frame file


@dataclass(frozen=True, slots=True)
class Volume:
    """A native-resolution HU volume: int16 array (z, y, x) and its LPS geometry.

    ``is_hu`` records that rescale was applied, so :func:`~ctcorpus.ingest.assemble.to_hu` is a
    no-op on it (HU applied twice is a known corpus bug). ``array`` is read-only when it is a
    SimpleITK image's buffer (``assemble_volume(..., simpleitk_buffer=True)``, used by ingest).
    """

    stack_key: str
    array: np.ndarray  # int16, (z, y, x)
    spacing: Vec3  # (x, y, z) mm
    origin: Vec3  # LPS of voxel (0, 0, 0)
    direction: tuple[float, ...]  # 9, row-major, columns = index axes (SimpleITK convention)
    is_hu: bool
    slices: tuple[SliceRecord, ...]
    findings: tuple[Finding, ...]
    tilt_deg: float


@dataclass(frozen=True, slots=True)
class ResampledVolume:
    """A volume on the corpus grid: target spacing, orientation, HU clip, optional fixed shape."""

    array: np.ndarray  # int16, (z, y, x)
    spacing: Vec3
    origin: Vec3
    direction: tuple[float, ...]
    orientation: str  # "LPS" or "RAS"
    hu_clip: tuple[int, int]


@dataclass(frozen=True, slots=True)
class SeriesRow:
    """A row of the ``series`` table: one stack (accepted or not)."""

    stack_id: str
    study_id: str
    series_id: str
    patient_id: str
    accession_id: str
    frame_of_reference_id: str
    series_number: int | None
    series_description: str
    n_instances: int
    n_duplicates: int
    rows: int
    columns: int
    orientation: list[float]
    normal: list[float]
    kernel: str
    manufacturer: str
    contrast: bool
    slice_thickness_mm: float | None
    median_step_mm: float
    coverage_mm: float
    reasons: list[str]
    accepted: bool
    pipeline_version: str
    source_sha256: str
    producer: str


@dataclass(frozen=True, slots=True)
class VolumeRow:
    """A row of the ``volumes`` table: one ingested volume."""

    volume_id: str  # equals the stack_id of its series row
    study_id: str
    series_id: str
    patient_id: str
    accession_id: str
    series_number: int | None
    kernel: str
    contrast: bool
    slice_thickness_mm: float | None
    native_shape: list[int]
    native_spacing_mm: list[float]
    native_origin_mm: list[float]
    native_direction: list[float]
    shape: list[int]
    spacing_mm: list[float]
    origin_mm: list[float]
    direction: list[float]
    orientation: str
    hu_clip: list[int]
    is_hu: bool
    tilt_deg: float
    repairs: list[str]
    n_slices: int
    pipeline_version: str
    source_sha256: str
    producer: str


@dataclass(frozen=True, slots=True)
class SliceRow:
    """A row of the ``slices`` table."""

    volume_id: str
    slice_index: int
    sop_id: str
    series_number: int | None
    instance_number: int | None
    position_mm: list[float]
    z_mm: float
    resampled_z_index: float
    path: str
    frame: int | None
    rescale_slope: float
    rescale_intercept: float
    pipeline_version: str
    source_sha256: str
    producer: str


@dataclass(frozen=True, slots=True)
class InstanceRow:
    """A row of the ``instances`` table (identifiers pseudonymized)."""

    path: str
    frame: int | None
    size_bytes: int
    study_id: str
    series_id: str
    sop_id: str
    frame_of_reference_id: str
    patient_id: str
    accession_id: str
    modality: str
    sop_class_uid: str
    image_type: list[str]
    series_number: int | None
    instance_number: int | None
    acquisition_number: int | None
    position: list[float] | None
    orientation: list[float] | None
    pixel_spacing: list[float] | None
    slice_thickness_mm: float | None
    rows: int
    columns: int
    transfer_syntax: str
    kernel: str
    manufacturer: str
    contrast: bool
    usable: bool
    reason: str
    pipeline_version: str
    source_sha256: str
    producer: str


@dataclass(frozen=True, slots=True)
class IngestedVolume:
    """What :func:`~ctcorpus.ingest.pipeline.ingest_stack` returns for one stack."""

    volume_id: str
    volume: ResampledVolume | None  # None when the stack was rejected
    volume_row: VolumeRow | None
    slice_rows: tuple[SliceRow, ...]
    series_row: SeriesRow
    quarantine: tuple[QuarantineEntry, ...]
