"""Read one DICOM file's header into :class:`InstanceRecord` slices.

A classic CT file is one slice. An Enhanced CT (or Legacy Converted Enhanced CT) file is one
slice per frame: each frame's geometry, rescale and frame type come from its functional groups
(the per-frame group over the shared one), its image number is its frame number, and its pixels
are its part of PixelData, so stacking, checks, HU and the slice table treat frames as files.

pydicom parses a CT header in about 1.5 ms, which alone is slower than SimpleITK reading a whole
series, so the common case (Part 10 file, little-endian transfer syntax) goes through a small
scanner that walks the top-level elements with ``struct`` and decodes only the ~35 tags ingestion
needs, skipping sequences by length or delimiter (it reads into one: the accession numbers of the
RequestAttributesSequence). Anything else (no preamble, big endian,
deflate, an odd element) falls back to ``pydicom.dcmread``. A test checks both readers give the
same record on every real file available.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import logging
import math
import mmap
import os
import re
import struct
import threading
import unicodedata
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

import pydicom
from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.errors import InvalidDicomError
from pydicom.pixels import get_decoder
from pydicom.uid import UID

from ctcorpus.enums import QuarantineReason
from ctcorpus.errors import IngestError
from ctcorpus.ingest.geometry import orientation_clusters
from ctcorpus.ingest.records import InstanceRecord

log = logging.getLogger(__name__)

#: A file's bytes as read, or, for a large file, mapped into memory (sliced and searched alike).
FileBytes = bytes | mmap.mmap
#: ``read_at(offset, n)``: up to ``n`` bytes of a file from ``offset`` (fewer at its end).
ReadAt = Callable[[int, int], bytes]
#: Bytes of a file read for its header where the file is not hashed (an unchanged file of a re-run):
#: a CT slice's header is a few KB of its ~0.5 MB. A header that does not end in them (a long
#: private sequence, an Enhanced CT file's functional groups) or that pydicom reads is read whole.
HEADER_PREFIX = 64 * 1024

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
ENHANCED_CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2.1"
LEGACY_CONVERTED_ENHANCED_CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2.2"
#: CT SOP classes whose frames are slices, placed by functional groups.
MULTI_FRAME_CT = frozenset({ENHANCED_CT_IMAGE, LEGACY_CONVERTED_ENHANCED_CT_IMAGE})
#: CT SOP classes ctcorpus reads slices of: classic, and those whose frames are slices.
CT_IMAGES = frozenset({CT_IMAGE, *MULTI_FRAME_CT})
MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"
IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
#: Transfer syntaxes whose PixelData is native little-endian: read with np.frombuffer.
NATIVE_LE = frozenset({IMPLICIT_LE, EXPLICIT_LE})
BIG_ENDIAN = "1.2.840.10008.1.2.2"
_NOT_LE_DATASET = frozenset({BIG_ENDIAN, "1.2.840.10008.1.2.1.99"})  # big endian, deflate
#: Transfer syntaxes whose frames are JPEG, JPEG-LS or JPEG 2000 codestreams: each ends with the
#: marker FFD9 (EOI, EOC), then padding (a byte to even length; some encoders write more). A frame
#: cut short lacks it, and its decoder fills the rows it lacks with made-up values without raising
#: (libjpeg only prints a warning). Coded data never holds FFD9 (byte stuffing), so no cut frame's
#: end passes for one.
_MARKER_ENDED = frozenset("1.2.840.10008.1.2.4." + n for n in ("50", "51", "57", "70", "80", "81", "90", "91", "92", "93",
                                                                "201", "202", "203"))
_END_MARKER = b"\xff\xd9"
#: Bytes at the end of a frame searched for its end marker: the marker and its padding.
_MARKER_SEARCH = 16

_PIXEL_DATA = 0x7FE00010
#: The elements that hold a file's pixels, by tag; pydicom stops before any of them. Float pixels
#: are those of parametric maps: no CT image stores them, and nothing here reads them as HU.
_PIXEL_ELEMENTS = {_PIXEL_DATA: "PixelData", 0x7FE00008: "FloatPixelData", 0x7FE00009: "DoubleFloatPixelData"}
_ITEM, _ITEM_END, _SEQ_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_LONG_VRS = frozenset({b"OB", b"OW", b"OF", b"OD", b"OL", b"OV", b"SQ", b"UT", b"UN", b"UC", b"UR", b"SV", b"UV"})
_UNDEFINED = 0xFFFFFFFF

# keyword -> (tag, kind); kinds: str, strs (multi-valued string), date (DA, as YYYYMMDD), int (IS or US),
# float (DS), floats
_TAGS: dict[str, tuple[int, str]] = {
    "MediaStorageSOPClassUID": (0x00020002, "str"),  # fallbacks when the dataset's UIDs are empty
    "MediaStorageSOPInstanceUID": (0x00020003, "str"),
    "SpecificCharacterSet": (0x00080005, "str"),  # how names and descriptions are encoded
    "SOPClassUID": (0x00080016, "str"),
    "SOPInstanceUID": (0x00080018, "str"),
    "StudyDate": (0x00080020, "date"),
    "AccessionNumber": (0x00080050, "str"),
    # the accession numbers of the orders a study fulfils: "group case" studies (one scan for a chest
    # and an abdomen order) carry each there, and may leave AccessionNumber empty
    "RequestAttributesSequence": (0x00400275, "accessions"),
    "Modality": (0x00080060, "str"),
    "Manufacturer": (0x00080070, "str"),
    "ImageType": (0x00080008, "strs"),
    "SeriesDescription": (0x0008103E, "str"),
    "PatientName": (0x00100010, "str"),  # PHI: memory only, for the keyed person key
    "PatientID": (0x00100020, "str"),
    "PatientBirthDate": (0x00100030, "date"),  # PHI: memory only
    "ContrastBolusAgent": (0x00180010, "str"),
    "SliceThickness": (0x00180050, "float"),
    "ConvolutionKernel": (0x00181210, "strs"),
    "StudyInstanceUID": (0x0020000D, "str"),
    "SeriesInstanceUID": (0x0020000E, "str"),
    "SeriesNumber": (0x00200011, "int"),
    "AcquisitionNumber": (0x00200012, "int"),
    "InstanceNumber": (0x00200013, "int"),
    "ImagePositionPatient": (0x00200032, "floats"),
    "ImageOrientationPatient": (0x00200037, "floats"),
    "FrameOfReferenceUID": (0x00200052, "str"),
    "SamplesPerPixel": (0x00280002, "us"),
    "NumberOfFrames": (0x00280008, "int"),
    "Rows": (0x00280010, "us"),
    "Columns": (0x00280011, "us"),
    "PixelSpacing": (0x00280030, "floats"),
    "BitsAllocated": (0x00280100, "us"),
    "BitsStored": (0x00280101, "us"),
    "PixelRepresentation": (0x00280103, "us"),
    "RescaleIntercept": (0x00281052, "float"),
    "RescaleSlope": (0x00281053, "float"),
    "RescaleType": (0x00281054, "str"),  # CT images state it only when the rescaled values are not HU
    "PixelPaddingValue": (0x00280120, "us"),  # US or SS: read as 16 bits, signed as the pixels (see _padding)
    "PixelPaddingRangeLimit": (0x00280121, "us"),
}
_WANTED = {tag: (keyword, kind) for keyword, (tag, kind) in _TAGS.items()}
_ACCESSION_NUMBER, _REQUEST_ATTRIBUTES = _TAGS["AccessionNumber"][0], _TAGS["RequestAttributesSequence"][0]
_MAX_WANTED = max(_WANTED)
#: SpecificCharacterSet values the fast scanner decodes (as this codec); pydicom reads any other
#: (ISO 2022 code extensions, GB18030, ...). Absent, it is the default repertoire, which pydicom
#: also reads as Latin-1. Either reader then corrects text whose bytes are UTF-8 (see _decoded).
_FAST_CHARSETS = {"": "latin-1", "ISO_IR 6": "latin-1", "ISO_IR 100": "latin-1", "ISO_IR 192": "utf-8"}
#: SpecificCharacterSet values both readers decode as Latin-1, whose text may be UTF-8 instead.
_LATIN1_CHARSETS = frozenset(c for c, codec in _FAST_CHARSETS.items() if codec == "latin-1")
_UTF8_CHARSET = "ISO_IR 192"
#: A DA value: YYYYMMDD, or with "." (ACR-NEMA, which PS3.5 asks readers to accept), "-" or "/" between.
_DATE = re.compile(r"(\d{4})([-./]?)(\d{2})\2(\d{2})")
#: A DS or IS value: a decimal number, its decimal mark a point or (exports in German or French
#: locales) a comma, which is unambiguous: neither VR has a thousands separator or a list in a value.
_DECIMAL = re.compile(r"[+-]?(?:\d+(?:[.,]\d*)?|[.,]\d+)(?:[eE][+-]?\d+)?")
#: A comma that may group thousands instead (en-US digit grouping: "-1,024", "2,000"): one to three
#: digits, not a lone 0, before it and three after it. Read as a decimal, a RescaleIntercept of
#: "-1,024" made every HU value 1,023 too high, unwarned: such a value is not read.
_GROUPED_THOUSANDS = re.compile(r"[+-]?[1-9]\d{0,2},\d{3}")
#: Numbers no slice needs (stacks are ordered by position, split without them): one that cannot be
#: read is absent. Any other (geometry, rescale) is read as NaN, which its slice's check refuses.
_OPTIONAL_NUMBERS = frozenset({"SeriesNumber", "AcquisitionNumber", "InstanceNumber", "NumberOfFrames", "SliceThickness",
                               "FrameAcquisitionNumber"})

Getter = Callable[[str], Any]


#: pydicom's loggers that warn of a file's values and pixels ("Invalid value for VR DS: ...").
_PYDICOM_LOGGERS = ("pydicom", "pydicom.pixels.decoders.base", "pydicom.pixels.utils")
_reading = threading.local()  # .warnings: the messages taken while this thread reads a file, or None


class _TakeFileWarnings(logging.Filter):
    """Takes the warnings pydicom logs while this thread reads a file (:func:`file_warnings`), so
    they are logged naming it: a user of 100,000 files cannot find the one "Invalid value for VR
    DS" came from."""

    def filter(self, record: logging.LogRecord) -> bool:
        taken = getattr(_reading, "warnings", None)
        if taken is None or record.levelno < logging.WARNING:
            return True
        taken.append(record.getMessage())
        return False


for _name in _PYDICOM_LOGGERS:
    logging.getLogger(_name).addFilter(_TakeFileWarnings())

#: The modules whose Python warnings :func:`file_warnings` ignores.
_PYDICOM_MODULES = r"pydicom(\.|$)"


def _ignore_pydicom_warnings() -> None:
    """Ignore pydicom's Python warnings, where no filter does yet: pydicom logs each warning it
    warns of (``pydicom.misc.warn_and_log``), so they only repeat, without the file, what
    :func:`file_warnings` logs with it. A filter added where absent, not a catch_warnings per file:
    that is not thread-safe (the reading threads restored each other's filters, which could leave
    every warning ignored for the rest of the process)."""
    if not any(action == "ignore" and module is not None and module.pattern == _PYDICOM_MODULES
               for action, _, _, module, _ in warnings.filters):
        warnings.filterwarnings("ignore", module=_PYDICOM_MODULES)


@contextmanager
def file_warnings(where: str) -> Iterator[None]:
    """Log each distinct warning pydicom gives while this thread reads ``where`` (a file, or a file's
    frame), once, naming it; they are warnings, and the file is still read. Where reading fails, the
    file's quarantine row names it and why, and its warnings (a forced read of a file that is no
    DICOM) are dropped."""
    _ignore_pydicom_warnings()
    outer = getattr(_reading, "warnings", None)
    taken: list[str] = []
    _reading.warnings = taken
    try:
        yield
    finally:
        _reading.warnings = outer
    for message in dict.fromkeys(taken):
        log.warning("pydicom warning file=%s: %s", where, message)


class _Unparsable(Exception):
    """The fast scanner met something it does not handle; pydicom takes over."""


class _Truncated(Exception):
    """A Part 10 file ends inside an element."""


class _BeyondPrefix(Exception):
    """The header read from a file's first bytes depends on bytes after them: the file is read whole."""


def _read_sequence(data: FileBytes, pos: int, length: int, explicit: bool) -> tuple[int, list[bytes]]:
    """Position after the sequence whose value starts at ``pos``, and its items' AccessionNumber values.

    Items and the sequence itself may have a defined length or end at a delimiter; a sequence
    nested in an item is skipped the same way.
    """
    end = None if length == _UNDEFINED else pos + length
    accessions: list[bytes] = []
    while end is None or pos < end:
        group, elem, item_length = struct.unpack_from("<HHI", data, pos)
        tag = (group << 16) | elem
        pos += 8
        if tag == _SEQ_END and end is None:
            break
        if tag != _ITEM:
            raise _Unparsable(f"unexpected tag {tag:08X} in a sequence")
        item_end = None if item_length == _UNDEFINED else pos + item_length
        while item_end is None or pos < item_end:
            group, elem = struct.unpack_from("<HH", data, pos)
            tag = (group << 16) | elem
            if tag == _ITEM_END:
                pos += 8
                break
            start, value_length, vr = _element_header(data, pos, explicit)
            if value_length == _UNDEFINED:
                pos, _ = _read_sequence(data, start, value_length, explicit and vr != b"UN")
                continue
            if tag == _ACCESSION_NUMBER:
                accessions.append(data[start : start + value_length])
            pos = start + value_length
    return pos, accessions


def _fragments_end(read_at: ReadAt, size: int, pos: int, transfer_syntax: str) -> int:
    """Where encapsulated (compressed) PixelData whose items start at ``pos`` ends in a file of
    ``size`` bytes: after its sequence delimiter, or past ``size`` for a file cut before it (each
    item states its length, so a cut is found without decoding) or whose last JPEG-family frame was
    cut before its end marker (a damaged fragment that still has its item length and delimiter).
    Only the item headers and the last item's end are read: a file whose header came from its
    first bytes is not read whole for them."""
    last = (pos, 0)  # the last non-empty item's value: offset, length
    while pos + 8 <= size:
        item = read_at(pos, 8)
        if len(item) < 8:  # shorter than its size said (cut while read)
            break
        group, elem, length = struct.unpack("<HHI", item)
        pos += 8
        if (group << 16) | elem == _SEQ_END:
            if transfer_syntax not in _MARKER_ENDED:
                return pos
            start, n = last
            tail = read_at(start + max(n - _MARKER_SEARCH, 0), min(n, _MARKER_SEARCH))  # the marker and padding
            return pos if _END_MARKER in tail else size + 1
        if length:
            last = (pos, length)
        pos += length
    return size + 1


def _bytes_reader(data: FileBytes) -> ReadAt:
    """:data:`ReadAt` of bytes in memory (or mapped)."""
    return lambda offset, n: data[offset : offset + n]


def _file_reader(prefix: bytes, handle: io.BufferedReader) -> ReadAt:
    """:data:`ReadAt` of an open file whose first bytes ``prefix`` are read already."""
    def read_at(offset: int, n: int) -> bytes:
        if offset + n <= len(prefix):
            return prefix[offset : offset + n]
        handle.seek(offset)
        return handle.read(n)

    return read_at


def _element_header(data: FileBytes, pos: int, explicit: bool) -> tuple[int, int, bytes]:
    """(value position, value length, VR) of the element whose tag starts at ``pos``."""
    if explicit:
        vr = data[pos + 4 : pos + 6]
        if vr in _LONG_VRS:
            return pos + 12, struct.unpack_from("<I", data, pos + 8)[0], vr
        if not (vr.isalpha() and vr.isupper()):
            raise _Unparsable(f"bad VR {vr!r}")
        return pos + 8, struct.unpack_from("<H", data, pos + 6)[0], vr
    return pos + 8, struct.unpack_from("<I", data, pos + 4)[0], b""


def _scan(data: FileBytes) -> tuple[dict[int, bytes], str, int, int, int]:
    """Wanted raw values, transfer syntax, the pixel element's value offset and length (``_UNDEFINED``
    where encapsulated: :func:`_fragments_end`) and tag (:data:`_PIXEL_ELEMENTS`) of a Part 10 file;
    offset and length -1 (and the tag of PixelData) without one.

    Bytes from a file's start give the whole file's result wherever they give a pixel offset:
    every element before it was read within them (reading past their end raises :class:`_Truncated`
    or :class:`_Unparsable`)."""
    if len(data) < 132 or data[128:132] != b"DICM":
        raise _Unparsable("no preamble")
    try:
        return _scan_elements(data)
    except struct.error:  # only raised by reading past the end of the bytes
        raise _Truncated from None


def _scan_elements(data: FileBytes) -> tuple[dict[int, bytes], str, int, int, int]:
    pos, meta_end, transfer_syntax = 132, None, ""
    values: dict[int, bytes] = {}
    while meta_end is None or pos < meta_end:  # file meta: always explicit little endian
        group, elem = struct.unpack_from("<HH", data, pos)
        if group != 0x0002:
            break
        start, length, _ = _element_header(data, pos, True)
        value = data[start : start + length]
        if (0x00020000 | elem) in _WANTED:
            values[0x00020000 | elem] = value
        if elem == 0x0000:
            meta_end = start + length + struct.unpack_from("<I", value)[0]
        elif elem == 0x0010:
            transfer_syntax = value.rstrip(b"\x00 ").decode("ascii")
        pos = start + length
    if not transfer_syntax or transfer_syntax in _NOT_LE_DATASET:
        raise _Unparsable("transfer syntax needs pydicom")
    explicit = transfer_syntax != IMPLICIT_LE
    size = len(data)
    first_vr = data[pos + 4 : pos + 6]
    if len(first_vr) == 2 and (first_vr.isalpha() and first_vr.isupper()) != explicit:
        # meta rewritten with the wrong VR encoding (anonymisers, PACS): pydicom reads what it finds
        raise _Unparsable("the dataset's VR encoding is not the transfer syntax's")
    while pos + 8 <= size:
        group, elem = struct.unpack_from("<HH", data, pos)
        tag = (group << 16) | elem
        start, length, vr = _element_header(data, pos, explicit)
        if tag in _PIXEL_ELEMENTS:
            return values, transfer_syntax, start, length, tag
        if length == _UNDEFINED or (tag == _REQUEST_ATTRIBUTES and vr in (b"SQ", b"UN", b"")):
            # a sequence; UN holds implicit VR items
            pos, accessions = _read_sequence(data, start, length, explicit and vr != b"UN")
            if tag == _REQUEST_ATTRIBUTES:
                values[tag] = b"\\".join(accessions)
            continue
        if start + length > size:
            raise _Truncated
        if tag in _WANTED and vr != b"SQ" and tag != _REQUEST_ATTRIBUTES:
            values[tag] = data[start : start + length]
        pos = start + length
    if pos != size:
        raise _Truncated
    return values, transfer_syntax, -1, -1, _PIXEL_DATA


def _text(value: str, charset: str, keyword: str, notes: dict[str, str]) -> str:
    """A string value decoded in ``charset`` without its padding, corrected as :func:`_decoded`
    says, in Unicode NFC: a name written decomposed (u + combining diaeresis, as macOS tools write
    it) is the name written composed, so the person key and the names scrubbed from paths do not
    depend on the tool that wrote the file."""
    value = value.strip(" \x00")
    return value if value.isascii() else unicodedata.normalize("NFC", _decoded(value, charset, keyword, notes))


def _decoded(value: str, charset: str, keyword: str, notes: dict[str, str]) -> str:
    """Non-ASCII ``value`` of element ``keyword`` as its bytes say, where they contradict ``charset``
    (how each contradicts it goes to ``notes``).

    Exports often write UTF-8 under no SpecificCharacterSet (whose default repertoire is ASCII
    alone) or under ISO_IR 100: read as Latin-1, "Müller" is "MÃ¼ller", another patient id and
    person key that matches no report and is scrubbed nowhere. Latin-1 text is valid UTF-8 only
    where each accented letter is followed by one to three controls or signs (Ã¼), which no name or
    description holds, so such text is read as UTF-8 (as pynetdicom falls back to it). Bytes that
    are no UTF-8 under ISO_IR 192 stay replacement characters, as both readers decode them."""
    if charset in _LATIN1_CHARSETS:
        try:
            utf8 = value.encode("latin-1").decode("utf-8")
        except UnicodeDecodeError:
            return value
        declared = f"the declared {charset}" if charset else "the default repertoire (no SpecificCharacterSet)"
        notes[keyword] = f"read as UTF-8, which its bytes are, not as {declared}"
        return utf8
    if charset == _UTF8_CHARSET and "\ufffd" in value:
        notes[keyword] = "holds bytes that are no UTF-8 under ISO_IR 192: read with replacement characters"
    return value


def _date(value: str) -> str:
    """A DA value as ``YYYYMMDD`` (what linking and the person key compare), also when written with
    separators; anything else as it is (linking finds no day in "20210230" or "")."""
    match = _DATE.fullmatch(value)
    return value if match is None else match[1] + match[3] + match[4]


def _numbers(keyword: str, kind: str, text: str, malformed: dict[str, str]) -> Any:
    """The IS or DS value ``text`` of ``keyword`` as ``kind`` says (int, float: its first value;
    floats: each), read where its meaning is unambiguous: blanks around a value, a decimal comma
    (not one that may group thousands: :data:`_GROUPED_THOUSANDS`), an IS written as a whole number
    with a point ("12.0").

    A value that cannot be read ("3A", "1.0 x", "12.5" for an IS) goes to ``malformed`` and is read
    as absent where no slice needs it (:data:`_OPTIONAL_NUMBERS`), else as NaN, which its slice's
    check refuses naming it (:func:`_naming_malformed`): the ValueError of ``float("0,5")`` quarantined
    the whole file as ``missing_geometry``, though its geometry was there."""
    parts = [p.strip(" \x00") for p in text.split("\\")]
    values = [float(p.replace(",", ".")) if _DECIMAL.fullmatch(p) and not _GROUPED_THOUSANDS.fullmatch(p) else math.nan
              for p in parts[: 1 if kind != "floats" else None]]
    if any(math.isnan(v) for v in values) or (kind == "int" and not values[0].is_integer()):
        malformed[keyword] = text
        if keyword in _OPTIONAL_NUMBERS:
            return None
    if kind == "int":
        return int(values[0])
    return values[0] if kind == "float" else tuple(values)


def _fast_getter(values: dict[int, bytes], notes: dict[str, str], malformed: dict[str, str]) -> Getter:
    """The scanned values' getter, decoding text as the file's SpecificCharacterSet says (a UTF-8
    name read as Latin-1, "MÃ¼ller", would match no report and be scrubbed nowhere), or as its
    bytes say where they contradict it (:func:`_decoded`), numbers as :func:`_numbers` reads them."""
    charset = values.get(_TAGS["SpecificCharacterSet"][0], b"").decode("latin-1").strip(" \x00")
    codec = _FAST_CHARSETS.get(charset)
    if codec is None:
        raise _Unparsable(f"character set {charset!r}")

    def get(keyword: str) -> Any:
        tag, kind = _TAGS[keyword]
        raw = values.get(tag)
        if raw is None or (not raw and kind != "str"):
            return None
        if kind == "us":
            return struct.unpack_from("<H", raw)[0]
        text = _text(raw.decode(codec, errors="replace"), charset, keyword, notes)
        if kind in ("str", "date"):
            return text if kind == "str" else _date(text)
        parts = [p.strip(" \x00") for p in text.split("\\")]
        if kind == "strs":
            return tuple(parts)
        if kind == "accessions":
            return tuple(p for p in parts if p)
        return _numbers(keyword, kind, text, malformed) if text else None

    return get


def _pydicom_getter(ds: pydicom.Dataset, notes: dict[str, str], malformed: dict[str, str]) -> Getter:
    """The getter of a dataset pydicom read, its text corrected and its numbers read as the fast
    scanner's (:func:`_decoded`, :func:`_numbers`: pydicom keeps a value it cannot convert as text)."""
    declared = ds.get("SpecificCharacterSet") or ""
    charset = "\\".join(declared) if isinstance(declared, pydicom.multival.MultiValue) else str(declared).strip()

    def get(keyword: str) -> Any:
        _, kind = _TAGS[keyword]
        source = (getattr(ds, "file_meta", None) or {}) if keyword.startswith("MediaStorage") else ds
        value = source.get(keyword)
        if value is None or (value == "" and kind != "str"):
            return None
        if kind in ("str", "date"):
            text = _text(str(value), charset, keyword, notes)
            return text if kind == "str" else _date(text)
        if kind == "strs":
            items = value if isinstance(value, pydicom.multival.MultiValue) else [value]
            return tuple(_text(str(v), charset, keyword, notes) for v in items)
        if kind == "accessions":
            if not isinstance(value, pydicom.Sequence):
                return ()
            numbers = (_text(str(item.get("AccessionNumber") or ""), charset, keyword, notes) for item in value)
            return tuple(n for n in numbers if n)
        if kind == "us":
            return int(value[0] if isinstance(value, pydicom.multival.MultiValue) else value)
        return _numbers(keyword, kind, _number_text(value), malformed)

    return get


def _number_text(value: Any) -> str:
    """A DS or IS value pydicom read, as text for :func:`_numbers`: pydicom keeps one it cannot convert as a str."""
    items = value if isinstance(value, pydicom.multival.MultiValue) else [value]
    return "\\".join(str(v) for v in items)


#: The VRs the pixel elements may have: their first letter is an odd byte, no even implicit length starts so.
_PIXEL_VRS = frozenset({b"OB", b"OW", b"UN", b"OF", b"OD"})


def _pixel_location(data: FileBytes, offset: int) -> tuple[int, int, int]:
    """The pixel element's value offset, length (``_UNDEFINED`` where encapsulated) and tag from the
    element that starts at ``offset`` (pydicom path), as :func:`_scan`'s.

    The element itself tells whether it is explicit VR: pydicom reads a dataset whose meta states
    the wrong VR encoding as it finds it, so the transfer syntax may not."""
    if offset < 0 or offset + 8 > len(data):
        return -1, -1, _PIXEL_DATA
    group, elem = struct.unpack_from("<HH", data, offset)
    tag = (group << 16) | elem
    if tag not in _PIXEL_ELEMENTS:
        return -1, -1, _PIXEL_DATA
    start, length, _ = _element_header(data, offset, data[offset + 4 : offset + 6] in _PIXEL_VRS)
    return start, length, tag


def _read_pydicom(data: FileBytes, path: str, notes: dict[str, str], malformed: dict[str, str]) -> tuple[Getter, str, int, int, int]:
    """Fallback reader; raises IngestError(not_dicom) unless the bytes really parse as DICOM."""
    preamble = len(data) >= 132 and data[128:132] == b"DICM"
    handle = _file_object(data)
    try:
        ds = pydicom.dcmread(handle, stop_before_pixels=True, force=not preamble)
    except InvalidDicomError:
        raise IngestError("not a DICOM file (no DICM preamble and no DICOM elements); remove it from the export", reason=QuarantineReason.NOT_DICOM, path=path) from None
    except Exception as exc:  # EOFError, struct.error, ValueError, ...: a bad file never stops the run
        raise _unparsable(exc, preamble, path) from None
    if not preamble and ("SOPClassUID" not in ds or "SOPInstanceUID" not in ds):
        raise IngestError(
            "not a DICOM file (no preamble and no SOP class/instance UID when forced); remove it from the export",
            reason=QuarantineReason.NOT_DICOM,
            path=path,
        )
    meta = getattr(ds, "file_meta", None)
    transfer_syntax = str(getattr(meta, "TransferSyntaxUID", "") or "")
    if not transfer_syntax:  # no file meta: take the encoding pydicom detected
        implicit, little = ds.original_encoding
        transfer_syntax = IMPLICIT_LE if implicit else (EXPLICIT_LE if little else BIG_ENDIAN)
    try:
        offset, length, tag = _pydicom_pixel_location(data, handle.tell(), transfer_syntax, preamble)
    except Exception as exc:  # noqa: BLE001 - a bad VR on PixelData, elements after it pydicom cannot parse
        raise _unparsable(exc, preamble, path) from None
    return _pydicom_getter(ds, notes, malformed), transfer_syntax, offset, length, tag


def _file_object(data: FileBytes) -> io.BytesIO | mmap.mmap:
    """``data`` as a file object at its start: a mapped file itself (a BytesIO would copy it whole)."""
    if isinstance(data, mmap.mmap):
        data.seek(0)
        return data
    return io.BytesIO(data)


def _unparsable(exc: Exception, preamble: bool, path: str) -> IngestError:
    reason = QuarantineReason.TRUNCATED if preamble else QuarantineReason.NOT_DICOM
    return IngestError(f"header cannot be parsed ({type(exc).__name__}: {exc}); re-export the file", reason=reason, path=path)


def _pydicom_pixel_location(data: FileBytes, offset: int, transfer_syntax: str, preamble: bool) -> tuple[int, int, int]:
    """The pixel element's value offset, length and tag (as :func:`_scan`'s) of a file the fast
    scanner left to pydicom, which stopped before that element at ``offset``."""
    if transfer_syntax not in _NOT_LE_DATASET:
        return _pixel_location(data, offset)
    # big endian / deflate (rare): pydicom decodes the pixels. It reads a big-endian file cut
    # inside PixelData without a word, so the value is located in the file for _is_truncated;
    # a deflated one is no file offset, but zlib already refused a cut stream
    full = pydicom.dcmread(io.BytesIO(data), force=not preamble)
    tag = next((t for t in _PIXEL_ELEMENTS if t in full), None)
    if tag is None:
        return -1, -1, _PIXEL_DATA
    element = full.get_item(tag)
    if transfer_syntax == BIG_ENDIAN and isinstance(element, RawDataElement) and element.length != _UNDEFINED:
        return element.value_tell, element.length, tag
    return 0, -1, tag


def _is_truncated(size: int, offset: int, length: int) -> bool:
    return offset >= 0 and length >= 0 and offset + length > size


def _short_native(record: InstanceRecord) -> bool:
    """Whether a file's uncompressed PixelData holds fewer bytes than the frames its header
    describes (empty, or cut with its length rewritten): its pixels fail to decode at assembly,
    which rejected its whole stack where a cut file loses only itself."""
    image_bytes = record.rows * record.columns * record.samples_per_pixel * record.bits_allocated // 8
    return (record.frame is None and record.transfer_syntax in NATIVE_LE and record.pixel_length >= 0
            and record.pixel_length < image_bytes * record.number_of_frames)


#: Bytes above which a file without the DICM preamble whose first element is no DICOM group is
#: refused before it is read whole (a video or archive in the export tree, read by each worker
#: thread, would take gigabytes of memory to be found not to be DICOM).
_LARGEST_UNCHECKED = 64 * 1024 * 1024
#: Groups a dataset without preamble starts with (file meta, identifying), in either byte order.
_FIRST_GROUPS = frozenset({b"\x02\x00", b"\x08\x00", b"\x00\x02", b"\x00\x08"})


def _large_and_not_dicom(head: bytes, size: int) -> bool:
    """Whether a file of ``size`` bytes starting with ``head`` (132 bytes) is too large to read whole
    only to find it is not DICOM: no DICM preamble and no DICOM group in its first element."""
    return size > _LARGEST_UNCHECKED and head[128:132] != b"DICM" and head[:2] not in _FIRST_GROUPS


def read_instance(path: str | os.PathLike[str], root: str | os.PathLike[str], *, hash_file: bool = True) -> InstanceRecord | None:
    """:func:`read_instances` of a file that holds one slice (or none: ``None``); a multi-frame file
    whose frames are slices raises ``ValueError``.

    >>> read_instance("export/CT1/I10", "export")   # doctest: +SKIP
    InstanceRecord(path='export/CT1/I10', ...)
    """
    records = read_instances(path, root, hash_file=hash_file)
    if len(records) > 1:
        raise ValueError(f"{path} holds {len(records)} frames; read its slices with read_instances")
    return records[0] if records else None


def read_instances(path: str | os.PathLike[str], root: str | os.PathLike[str], *, hash_file: bool = True) -> tuple[InstanceRecord, ...]:
    """Read one file's header into its slices: one record for a single-frame file, one per frame
    for an Enhanced CT file, none for a DICOMDIR (an index, neither used nor quarantined).

    Raises :class:`IngestError` with reason ``not_dicom``/``truncated`` for files that cannot be
    read. Problems that only exclude a slice from volumes (localizer, non-CT, no geometry, ...)
    are returned as ``InstanceRecord.reason``; a multi-frame file whose frames cannot be read as
    a CT volume's slices (a derived perfusion map, frames in several orientations, frames without
    a position) is one record, ``frame`` None, with the reason.

    Without ``hash_file`` (a re-run's unchanged file, whose sha256 the discovery cache holds) only
    the first :data:`HEADER_PREFIX` bytes are read, and of compressed PixelData its item headers,
    where the fast scanner finds the header's end in them; the records are those of a whole read.

    >>> [r.frame for r in read_instances("export/CT1/enhanced.dcm", "export")]   # doctest: +SKIP
    [1, 2, 3]
    """
    path = os.fspath(path)
    rel_path = os.path.relpath(path, os.fspath(root))
    try:
        with open(path, "rb") as handle, file_warnings(rel_path):
            size = os.fstat(handle.fileno()).st_size
            from_prefix = not hash_file and size > HEADER_PREFIX
            if from_prefix:
                _advise(handle, "POSIX_FADV_RANDOM")
            head = handle.read(132)
            if _large_and_not_dicom(head, size):
                raise IngestError(f"not a DICOM file (no DICM preamble, and its first bytes {head[:4]!r} start no "
                                  "DICOM element); remove it from the export", reason=QuarantineReason.NOT_DICOM, path=rel_path)
            if from_prefix:
                prefix = head + handle.read(HEADER_PREFIX - len(head))
                try:
                    return _read_header(prefix, size, _file_reader(prefix, handle), path, rel_path, hash_file=False)
                except _BeyondPrefix:
                    _advise(handle, "POSIX_FADV_NORMAL")
            handle.seek(0)
            data: FileBytes = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) if size > _LARGEST_UNCHECKED else handle.read()
            try:
                return _read_header(data, len(data), _bytes_reader(data), path, rel_path, hash_file=hash_file)
            finally:
                if isinstance(data, mmap.mmap):
                    data.close()
    except OSError as exc:
        raise IngestError(f"cannot read the file ({exc.strerror}); check permissions", reason=QuarantineReason.NOT_DICOM, path=rel_path) from None


def _advise(handle: io.BufferedReader, advice: str) -> None:
    """Tell the kernel how the file is read, where it takes advice: ``POSIX_FADV_RANDOM`` reads what
    is asked (its readahead otherwise fetches several times :data:`HEADER_PREFIX` from disk, up to
    a whole CT slice), ``POSIX_FADV_NORMAL`` reads ahead again for a file read whole."""
    fadvise = getattr(os, "posix_fadvise", None)  # not on macOS or Windows
    if fadvise is not None:
        with suppress(OSError):  # advice only: a file system that takes none is still read
            fadvise(handle.fileno(), 0, 0, getattr(os, advice))


def _read_header(data: FileBytes, size: int, read_at: ReadAt, path: str, rel_path: str, *, hash_file: bool) -> tuple[InstanceRecord, ...]:
    """:func:`read_instances` of a file of ``size`` bytes from ``data``: its bytes, a large file
    mapped into memory (an Enhanced CT file of a gigabyte, read whole by each worker thread, took
    its size in memory in each; mapped, its header comes from the page cache and its hash streams
    through it), or only its first bytes, which raises :class:`_BeyondPrefix` where they do not give
    the whole file's records (only the fast scanner's result is known to be the same)."""
    if os.path.basename(path).upper() == "DICOMDIR":
        return ()
    whole = len(data) == size
    notes: dict[str, str] = {}  # element keyword -> how its text was read against the declared character set
    malformed: dict[str, str] = {}  # element keyword -> its number that could not be read (_numbers)
    try:
        values, transfer_syntax, offset, length, pixel_tag = _scan(data)
        get, reader = _fast_getter(values, notes, malformed), "fast"
        if offset < 0 and not whole:  # no PixelData in the first bytes: it may come after them
            raise _BeyondPrefix
    except _Truncated:
        if not whole:
            raise _BeyondPrefix from None
        raise IngestError(
            "the file ends inside its header: truncated (interrupted copy?); re-export it",
            reason=QuarantineReason.TRUNCATED,
            path=rel_path,
        ) from None
    except (_Unparsable, UnicodeDecodeError, ValueError):
        if not whole:
            raise _BeyondPrefix from None
        get, transfer_syntax, offset, length, pixel_tag = _read_pydicom(data, rel_path, notes, malformed)
        reader = "pydicom"
    if length == _UNDEFINED:
        length = _fragments_end(read_at, size, offset, transfer_syntax) - offset
    try:
        if (get("SOPClassUID") or get("MediaStorageSOPClassUID")) == MEDIA_STORAGE_DIRECTORY:
            return ()
        sha256 = hashlib.sha256(data).hexdigest() if hash_file else ""  # hash_file: data is the whole file
        record = _build(get, path, rel_path, size, sha256, transfer_syntax, offset, length, reader)
        if notes:  # the getter noted them as _build read the text
            record = dataclasses.replace(record, charset_note="; ".join(f"{k} {how}" for k, how in sorted(notes.items())))
        slices = (_float_pixels(record, pixel_tag),) if pixel_tag != _PIXEL_DATA else _slices(record, data, malformed)
    except Exception as exc:  # noqa: BLE001 - pydicom decodes values as they are read: a bad VR or byte count fails here
        raise IngestError(f"a header value is malformed ({type(exc).__name__}: {exc}); re-export the file",
                          reason=QuarantineReason.MISSING_GEOMETRY, path=rel_path) from None
    absent = [_described(k, text) + ": read as absent" for k, text in malformed.items() if k in _OPTIONAL_NUMBERS]
    if absent:
        log.warning("header value is no number file=%s: %s", rel_path, "; ".join(absent))
    return slices


def _described(keyword: str, text: str) -> str:
    """An element's keyword, tag and value, as a user finds it in a DICOM viewer."""
    tag = tag_for_keyword(keyword)
    return f"{keyword} ({tag >> 16:04X},{tag & 0xFFFF:04X}) {text!r}"


#: The numbers each reason's check reads: NaN where :func:`_numbers` could not read them.
_CHECKED_NUMBERS = {
    QuarantineReason.INVALID_GEOMETRY: ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing"),
    QuarantineReason.INVALID_RESCALE: ("RescaleSlope", "RescaleIntercept"),
}


def _naming_malformed(record: InstanceRecord, malformed: dict[str, str]) -> InstanceRecord:
    """``record``, its detail naming the values its reason's check refused because they could not be
    read: "not a number" alone does not say which of the file's values to look at."""
    named = [_described(k, malformed[k]) + " is no number" for k in _CHECKED_NUMBERS.get(record.reason, ()) if k in malformed]
    if not named:
        return record
    return dataclasses.replace(record, detail="; ".join(filter(None, (record.detail, *named))))


def _build(
    get: Getter, path: str, rel_path: str, size: int, sha256: str, transfer_syntax: str, offset: int, length: int, reader: str
) -> InstanceRecord:
    position = get("ImagePositionPatient")
    orientation = get("ImageOrientationPatient")
    spacing = get("PixelSpacing")
    kernel = get("ConvolutionKernel") or ()
    slope = get("RescaleSlope")
    intercept = get("RescaleIntercept")
    return InstanceRecord(
        path=path,
        rel_path=rel_path,
        size_bytes=size,
        sha256=sha256,
        study_uid=get("StudyInstanceUID") or "",
        series_uid=get("SeriesInstanceUID") or "",
        sop_uid=get("SOPInstanceUID") or get("MediaStorageSOPInstanceUID") or "",
        frame_of_reference_uid=get("FrameOfReferenceUID") or "",
        sop_class_uid=get("SOPClassUID") or get("MediaStorageSOPClassUID") or "",
        modality=(get("Modality") or "").upper(),
        image_type=tuple(v.upper() for v in (get("ImageType") or ())),
        series_number=get("SeriesNumber"),
        instance_number=get("InstanceNumber"),
        acquisition_number=get("AcquisitionNumber"),
        position=tuple(position[:3]) if position and len(position) >= 3 else None,
        orientation=tuple(orientation[:6]) if orientation and len(orientation) >= 6 else None,
        pixel_spacing=tuple(spacing[:2]) if spacing and len(spacing) >= 2 else None,
        slice_thickness=_thickness(get("SliceThickness")),
        rows=get("Rows") or 0,
        columns=get("Columns") or 0,
        number_of_frames=get("NumberOfFrames") or 1,
        bits_allocated=get("BitsAllocated") or 0,
        bits_stored=get("BitsStored") or 0,
        pixel_representation=get("PixelRepresentation") or 0,
        samples_per_pixel=get("SamplesPerPixel") or 1,
        rescale_slope=1.0 if slope is None else slope,
        rescale_intercept=0.0 if intercept is None else intercept,
        rescale_type=(get("RescaleType") or "").upper(),
        has_intercept=intercept is not None,
        transfer_syntax=transfer_syntax,
        kernel="\\".join(kernel),
        manufacturer=get("Manufacturer") or "",
        contrast=bool(get("ContrastBolusAgent")),
        series_description=get("SeriesDescription") or "",
        study_date=get("StudyDate") or "",
        accession_number=get("AccessionNumber") or "",
        requested_accession_numbers=get("RequestAttributesSequence") or (),
        patient_id=get("PatientID") or "",
        pixel_offset=offset,
        pixel_length=length,
        reader=reader,
        patient_name=get("PatientName") or "",
        patient_birth_date=get("PatientBirthDate") or "",
        pixel_padding=_padding(get("PixelPaddingValue"), get("PixelPaddingRangeLimit"), bool(get("PixelRepresentation"))),
    )


def _thickness(value: float | None) -> float | None:
    """SliceThickness, or None where no slice has it (0, negative, not a number: some exporters write
    "0" for the Type 2 value they do not know). As a thickness of its own such a slice was a stack
    of its own, a NaN (equal to nothing) each slice one, and the series it left had gaps: read as
    absent, it joins its series as an empty one does (:func:`~ctcorpus.ingest.stacks.plan_stacks`)."""
    return value if value is not None and math.isfinite(value) and value > 0 else None


def _float_pixels(record: InstanceRecord, tag: int) -> InstanceRecord:
    """The file ``record`` read, whose pixels are the float element ``tag`` (located as PixelData
    would be) and which has no PixelData: it was quarantined as truncated ("re-export it"). A file
    cut inside them is truncated, one of another modality or SOP class (a parametric map) non-CT,
    any other holds pixels no CT image holds (``unreadable_pixels``, naming the element)."""
    problem = instance_problem(record)
    unlocated = dataclasses.replace(record, pixel_offset=-1, pixel_length=-1)  # no PixelData: nothing reads them
    if problem in (QuarantineReason.TRUNCATED, QuarantineReason.NON_CT):
        return dataclasses.replace(unlocated, reason=problem)
    return dataclasses.replace(unlocated, reason=QuarantineReason.UNREADABLE_PIXELS,
                               detail=f"its pixels are {_PIXEL_ELEMENTS[tag]} ({tag >> 16:04X},{tag & 0xFFFF:04X}), not PixelData")


def _checked(record: InstanceRecord, malformed: dict[str, str]) -> InstanceRecord:
    """``record`` with the reason :func:`instance_problem` finds, if any, naming the numbers in
    ``malformed`` its check refused (:func:`_naming_malformed`)."""
    problem = instance_problem(record)
    return record if problem is None else _naming_malformed(dataclasses.replace(record, reason=problem), malformed)


def _slices(record: InstanceRecord, data: FileBytes, malformed: dict[str, str]) -> tuple[InstanceRecord, ...]:
    """The slices of the file ``record`` read: itself, or one record per frame of a multi-frame CT
    file (the file alone, with the reason, when its frames cannot be a volume's slices). The numbers
    of the file that could not be read are in ``malformed``; the frames' are added to it."""
    checked = _checked(record, malformed)
    if checked.reason is not QuarantineReason.UNSUPPORTED_MULTIFRAME:
        return (checked,)
    if record.sop_class_uid not in MULTI_FRAME_CT:
        return (dataclasses.replace(checked, detail=f"{record.number_of_frames} frames in a {record.sop_class_uid} "
                                                    "object, which places no frame"),)
    ds = pydicom.dcmread(_file_object(data), stop_before_pixels=True, force=True)
    try:
        return _frames(record, ds, malformed)
    except _NotSlices as refused:
        return (dataclasses.replace(record, reason=refused.reason, detail=str(refused)),)


class _NotSlices(Exception):
    """The frames of a multi-frame file cannot be read as slices of one CT volume."""

    def __init__(self, reason: QuarantineReason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


#: The last FrameType value (derived pixel contrast) of a DERIVED frame that still holds CT numbers
#: of anatomy: averaged, filtered, reformatted or resampled slices, MIP/MinIP slabs. Any other
#: (RCBF, RCBV, MTT, TTP of perfusion maps, SUBTRACTION, DIVISION, ...) is a derived map, no HU volume.
_HU_CONTRASTS = frozenset({"NONE", "MEAN", "FILTERED", "REFORMATTED", "RESAMPLED", "MAXIMUM", "MINIMUM"})


def _group_value(groups: tuple[pydicom.Dataset, ...], macro: str, keyword: str) -> Any:
    """``keyword`` from the ``macro`` sequence of the first of ``groups`` (per-frame, then shared) holding it."""
    for group in groups:
        items = group.get(macro)
        if items and keyword in items[0] and items[0][keyword].value not in (None, ""):
            return items[0][keyword].value
    return None


def _group_number(groups: tuple[pydicom.Dataset, ...], macro: str, keyword: str, kind: str, malformed: dict[str, str]) -> Any:
    """``keyword`` of ``groups`` (:func:`_group_value`) read as :func:`_numbers` reads the file's numbers."""
    value = _group_value(groups, macro, keyword)
    return None if value is None else _numbers(keyword, kind, _number_text(value), malformed)


def _first(values: tuple[float, ...] | None, n: int) -> tuple[float, ...] | None:
    return values[:n] if values is not None and len(values) >= n else None


def _frames(record: InstanceRecord, ds: pydicom.Dataset, malformed: dict[str, str]) -> tuple[InstanceRecord, ...]:
    """One checked record per frame of an Enhanced CT file: geometry, rescale, frame type and acquisition
    number from its functional groups, image number its frame number (in a concatenation, a series
    split into several files, counted on from the files before it, as viewers number it), an
    uncompressed frame's pixels located in PixelData; raises :class:`_NotSlices` for frames no volume is made of.
    A frame's numbers that cannot be read are named in its own quarantine message, and added to
    ``malformed`` (the file's) once the frames are read."""
    shared = tuple(ds.get("SharedFunctionalGroupsSequence") or ())[:1]
    per_frame = ds.get("PerFrameFunctionalGroupsSequence") or ()
    n = record.number_of_frames
    if len(per_frame) != n:
        raise _NotSlices(QuarantineReason.MISSING_GEOMETRY, f"PerFrameFunctionalGroupsSequence holds {len(per_frame)} "
                                                            f"items for {n} frames")
    frame_bytes = record.rows * record.columns * record.samples_per_pixel * record.bits_allocated // 8
    first = int(ds.get("ConcatenationFrameOffsetNumber") or 0)  # frames in the concatenation's files before this one
    split = (record.transfer_syntax in NATIVE_LE and record.bits_allocated % 8 == 0
             and record.pixel_length >= n * frame_bytes)
    frames: list[InstanceRecord] = []
    unread: dict[str, str] = {}  # the frames' numbers that could not be read
    for k, group in enumerate(per_frame):
        groups = (group, *shared)
        own: dict[str, str] = {}  # this frame's
        position = _first(_group_number(groups, "PlanePositionSequence", "ImagePositionPatient", "floats", own), 3)
        orientation = _first(_group_number(groups, "PlaneOrientationSequence", "ImageOrientationPatient", "floats", own), 6)
        spacing = _first(_group_number(groups, "PixelMeasuresSequence", "PixelSpacing", "floats", own), 2)
        if position is None or orientation is None or spacing is None:
            raise _NotSlices(QuarantineReason.MISSING_GEOMETRY, f"frame {k + 1} has no PlanePositionSequence, "
                             "PlaneOrientationSequence or PixelMeasuresSequence in its functional groups")
        values = _group_value(groups, "CTImageFrameTypeSequence", "FrameType") or ()
        frame_type = tuple(str(v).upper() for v in ([values] if isinstance(values, str) else values))
        if frame_type[:1] == ("DERIVED",) and frame_type[3:4] and frame_type[3] not in _HU_CONTRASTS:
            raise _NotSlices(QuarantineReason.UNSUPPORTED_MULTIFRAME, "frame type " + "\\".join(frame_type) + ": a derived "
                             f"{frame_type[3]} map, not CT numbers of anatomy")
        thickness = _group_number(groups, "PixelMeasuresSequence", "SliceThickness", "float", own)
        slope = _group_number(groups, "PixelValueTransformationSequence", "RescaleSlope", "float", own)
        intercept = _group_number(groups, "PixelValueTransformationSequence", "RescaleIntercept", "float", own)
        rescale_type = _group_value(groups, "PixelValueTransformationSequence", "RescaleType")
        acquisition = _group_number(groups, "FrameContentSequence", "FrameAcquisitionNumber", "int", own)
        frames.append(_checked(dataclasses.replace(
            record,
            frame=k + 1,
            instance_number=first + k + 1,
            position=position,
            orientation=orientation,
            pixel_spacing=spacing,
            slice_thickness=record.slice_thickness if thickness is None else _thickness(thickness),
            rescale_slope=record.rescale_slope if slope is None else slope,
            rescale_intercept=record.rescale_intercept if intercept is None else intercept,
            rescale_type=record.rescale_type if rescale_type is None else str(rescale_type).strip().upper(),
            has_intercept=record.has_intercept or intercept is not None,
            image_type=frame_type or record.image_type,
            acquisition_number=record.acquisition_number if acquisition is None else acquisition,
            pixel_offset=record.pixel_offset + k * frame_bytes if split else record.pixel_offset,
            pixel_length=frame_bytes if split else record.pixel_length,
        ), malformed | own))
        unread |= {key: text for key, text in own.items() if key not in unread}
    if len(set(orientation_clusters([f.orientation or () for f in frames]))) > 1:
        raise _NotSlices(QuarantineReason.UNSUPPORTED_MULTIFRAME, "its frames lie in several orientations (a radial "
                         "or mixed reformat)")
    malformed.update({key: text for key, text in unread.items() if key not in malformed})
    return tuple(frames)


def _padding(value: int | None, limit: int | None, signed: bool) -> tuple[int, int] | None:
    """The stored values (low, high) PixelPaddingValue (through PixelPaddingRangeLimit) marks as
    outside the image. Their VR is US or SS by PixelRepresentation and files disagree with it (an
    SS -2000 written as US reads 63536), so both are read as 16 bits with the pixels' sign."""
    if value is None:
        return None
    ends = [v & 0xFFFF for v in (value, value if limit is None else limit)]
    if signed:
        ends = [v - 0x10000 if v >= 0x8000 else v for v in ends]
    return min(ends), max(ends)


def instance_problem(record: InstanceRecord) -> QuarantineReason | None:
    """Why this instance cannot be a slice of a CT volume, or ``None`` if it can."""
    if record.pixel_offset < 0:  # a CT image must have PixelData: one without was cut or damaged before it
        return QuarantineReason.TRUNCATED if record.sop_class_uid in CT_IMAGES else QuarantineReason.NON_IMAGE
    if _is_truncated(record.size_bytes, record.pixel_offset, record.pixel_length) or _short_native(record):
        return QuarantineReason.TRUNCATED
    if record.modality != "CT" or record.sop_class_uid not in CT_IMAGES:
        return QuarantineReason.NON_CT
    if record.frame is None and (record.sop_class_uid in MULTI_FRAME_CT or record.number_of_frames > 1):
        return QuarantineReason.UNSUPPORTED_MULTIFRAME  # a file of frames: read_instances reads them as slices, or says why not
    if "LOCALIZER" in record.image_type:
        return QuarantineReason.LOCALIZER
    if missing_decoder(record.transfer_syntax):
        return QuarantineReason.UNSUPPORTED_TRANSFER_SYNTAX
    if record.position is None or record.orientation is None or record.pixel_spacing is None:
        return QuarantineReason.MISSING_GEOMETRY
    if not _placeable(record.position, record.orientation, record.pixel_spacing):
        return QuarantineReason.INVALID_GEOMETRY
    if not (math.isfinite(record.rescale_slope) and math.isfinite(record.rescale_intercept)) or record.rescale_slope == 0:
        return QuarantineReason.INVALID_RESCALE  # every pixel would be one value, or not a number, unseen
    if record.rescale_type not in ("", "HU"):
        return QuarantineReason.INVALID_RESCALE  # "US" (unspecified), "MGML" (an iodine map): no CT numbers
    if not record.has_intercept and not record.pixel_representation:
        # unsigned values read as HU hold no air (-1000) and no lung: the volume would be shifted by an
        # unknown intercept (most often -1024), unseen; signed values without one are read as HU
        return QuarantineReason.INVALID_RESCALE
    if record.rows <= 0 or record.columns <= 0 or record.samples_per_pixel != 1:
        return QuarantineReason.NON_IMAGE
    return None


def missing_decoder(transfer_syntax: str) -> str:
    """Why no pixel decoder here reads ``transfer_syntax`` ("" when one does): a JPEG 2000 export
    without pylibjpeg-openjpeg or gdcm installed failed each of its stacks at assembly, after every
    file was indexed, as pixels that "cannot be decoded"."""
    if transfer_syntax in NATIVE_LE:
        return ""
    try:
        decoder = get_decoder(transfer_syntax)
    except NotImplementedError:
        return "pydicom has no decoder for it"
    if decoder.is_available:
        return ""
    return "no decoder for it is installed: " + "; ".join(decoder.missing_dependencies)


#: How far the orientation's cosines may be from unit length, and from orthogonal (their dot product).
_ORIENTATION_TOLERANCE = 0.01


def _placeable(position: tuple[float, ...], orientation: tuple[float, ...], spacing: tuple[float, ...]) -> bool:
    """Whether the geometry can place a slice: three finite coordinates, two orthogonal unit
    cosines, two positive spacings. SimpleITK raises on a zero or negative spacing, "nan" fails
    every spacing check unseen, and cosines of length 2 silently scale the volume."""
    if len(position) != 3 or len(orientation) != 6 or len(spacing) != 2:
        return False
    if not all(math.isfinite(v) for v in (*position, *orientation, *spacing)) or min(spacing) <= 0:
        return False
    row, col = orientation[:3], orientation[3:]
    return (abs(math.fsum(v * v for v in row) - 1) <= _ORIENTATION_TOLERANCE
            and abs(math.fsum(v * v for v in col) - 1) <= _ORIENTATION_TOLERANCE
            and abs(math.fsum(a * b for a, b in zip(row, col, strict=True))) <= _ORIENTATION_TOLERANCE)


#: What each per-file reason tells the user to do.
PROBLEM_MESSAGES: dict[QuarantineReason, str] = {
    QuarantineReason.NON_IMAGE: "has no pixel data (structured report, dose report, presentation state, ...); not a CT slice",
    QuarantineReason.TRUNCATED: (
        "PixelData is missing, shorter than its declared length or than the image its header describes, or a "
        "compressed frame ends before its end marker: the file was truncated or damaged; re-export it"
    ),
    QuarantineReason.UNSUPPORTED_MULTIFRAME: (
        "is a multi-frame object whose frames are no slices of a CT volume; export the series' axial "
        "images (classic or Enhanced CT)"
    ),
    QuarantineReason.NON_CT: "is not a CT image (modality/SOP class: {modality} {sop_class}); e.g. a secondary capture dose page",
    QuarantineReason.LOCALIZER: "is a localizer/scout (ImageType LOCALIZER); not part of a volume",
    QuarantineReason.UNREADABLE_PIXELS: (
        "has pixels of a kind no CT image holds (floating point, as parametric maps store them), which cannot be "
        "read as CT numbers; export the series' CT images"
    ),
    QuarantineReason.UNSUPPORTED_TRANSFER_SYNTAX: (
        "has pixel data in transfer syntax {transfer_syntax_name} ({transfer_syntax}), which cannot be decoded here "
        "({missing_decoder}); install what it names and run again, or re-export the series uncompressed"
    ),
    QuarantineReason.MISSING_GEOMETRY: "lacks ImagePositionPatient, ImageOrientationPatient or PixelSpacing; cannot be placed in space",
    QuarantineReason.INVALID_GEOMETRY: (
        "has an ImagePositionPatient, ImageOrientationPatient or PixelSpacing no slice can have (not a number, "
        "a spacing not above 0, or orientation cosines not two orthogonal unit vectors); cannot be placed in space"
    ),
    QuarantineReason.INVALID_RESCALE: (
        "has a RescaleSlope of 0, a RescaleSlope/RescaleIntercept that is not a number, a RescaleType other than HU "
        "(RescaleType: {rescale_type}) or unsigned pixels and no RescaleIntercept (read with 0, they hold no air, "
        "no negative HU: the offset is unknown); its pixels cannot be read as HU"
    ),
}


def problem_message(record: InstanceRecord) -> str:
    """The human message for an instance's ``reason``, naming the file (and frame) and the detail."""
    assert record.reason is not None
    text = PROBLEM_MESSAGES[record.reason].format(
        modality=record.modality or "?", sop_class=record.sop_class_uid or "?", rescale_type=record.rescale_type or "absent",
        transfer_syntax=record.transfer_syntax, transfer_syntax_name=UID(record.transfer_syntax).name,
        missing_decoder=missing_decoder(record.transfer_syntax) if record.reason is QuarantineReason.UNSUPPORTED_TRANSFER_SYNTAX else "")
    where = record.rel_path if record.frame is None else f"{record.rel_path} frame {record.frame}"
    return f"{where} {text}" + (f" ({record.detail})" if record.detail else "")
