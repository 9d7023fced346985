"""Fixed value sets shared across stages.

Accept ``str | Enum`` at the edges: ``QuarantineReason("gantry_tilt")`` works.
"""

from __future__ import annotations

from enum import Enum


class QuarantineReason(str, Enum):
    """Why a file, stack, report or reference was not used (the quarantine table's reason code)."""

    # files
    NOT_DICOM = "not_dicom"
    TRUNCATED = "truncated"
    UNREADABLE_PIXELS = "unreadable_pixels"
    UNSUPPORTED_TRANSFER_SYNTAX = "unsupported_transfer_syntax"
    NON_CT = "non_ct"
    NON_IMAGE = "non_image"
    LOCALIZER = "localizer"
    MISSING_GEOMETRY = "missing_geometry"
    MISSING_PATIENT_ID = "missing_patient_id"  # a study without PatientID: no patient-level split can hold it
    INVALID_GEOMETRY = "invalid_geometry"  # a position, orientation or spacing no slice can have
    INVALID_RESCALE = "invalid_rescale"  # a RescaleSlope of 0, a rescale that is not a number, a RescaleType other than HU, or no RescaleIntercept for unsigned pixels
    # stacks
    SINGLE_SLICE = "single_slice"
    TOO_FEW_SLICES = "too_few_slices"
    MISSING_SLICES = "missing_slices"
    NON_UNIFORM_SPACING = "non_uniform_spacing"
    GANTRY_TILT = "gantry_tilt"
    DUPLICATE_SLICE = "duplicate_slice"
    INCONSISTENT_RESCALE = "inconsistent_rescale"
    MIXED_STACKS = "mixed_stacks"
    FALLBACK_VOLUME = "fallback_volume"  # the study's volume stands in for a better-ranked stack assembly rejected
    # reports
    NO_REPORT = "no_report"
    ORPHAN_REPORT = "orphan_report"
    AMBIGUOUS_LINK = "ambiguous_link"  # a report as close in date to several studies of its patient: none is guessed
    EMPTY_REPORT = "empty_report"
    SUPERSEDED_REPORT = "superseded_report"  # an earlier version of a report under the same accession number
    PATIENT_MISMATCH = "patient_mismatch"  # a report of another patient's study, or a study UID two patients' images carry
    UNREADABLE_REPORT = "unreadable_report"
    UNSUPPORTED_LANGUAGE = "unsupported_language"
    # snippets
    SERIES_ABSENT = "series_absent"
    IMAGE_OUT_OF_RANGE = "image_out_of_range"
    OTHER_FRAME_OF_REFERENCE = "other_frame_of_reference"
    AMBIGUOUS_SERIES = "ambiguous_series"
    NON_AXIAL_SERIES = "non_axial_series"  # a coronal or sagittal reformat: its images are no axial positions
    AMBIGUOUS_IMAGE = "ambiguous_image"  # images at different positions share the InstanceNumber
    # anatomy / anything else
    SEGMENTATION_FAILED = "segmentation_failed"
    STAGE_FAILED = "stage_failed"
    UNSUPPORTED_MULTIFRAME = "unsupported_multiframe"
    NOT_SELECTED = "not_selected"
    OUT_OF_VOLUME = "out_of_volume"  # snippets: a referenced slice lies outside the corpus volume


class Action(str, Enum):
    """What a geometry policy does with a stack that has a given defect."""

    ACCEPT = "accept"
    REPAIR = "repair"
    REJECT = "reject"


class LabelState(str, Enum):
    """A label's value for a report or sentence (CheXpert-style)."""

    POSITIVE = "positive"
    NEGATIVE = "negative"
    UNCERTAIN = "uncertain"
    ABSENT = "absent"  # not mentioned


class Split(str, Enum):
    """Patient-level dataset splits."""

    TRAIN = "train"
    VALIDATION = "validation"
    TEST = "test"
