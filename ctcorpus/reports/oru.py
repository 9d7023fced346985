"""HL7 v2 result messages (ORU^R01) and document messages (MDM) as a report export: one report per
order (OBR) of a result message, one per document (TXA) of a document message.

Interface engines archive a RIS's report feed as files of ORU or MDM messages, and some sites hand
those over instead of a table. python-hl7 splits the files and messages; ctcorpus reads the fields
where IHE Radiology and common RIS put what linking needs: the patient id (PID-3, first id), name
(PID-5), study date (OBR-7; a document without an order: TXA-4, the activity date/time, when the
exam was done), report time (the document event's EVN-2, else the authentication time TXA-22.15,
else OBR-22, else MSH-7), the accession number (the first non-empty of
``reports.columns.hl7_accession_fields``: OBR-18 in IHE's v2.3.1 profile, the filler order number
OBR-3 in many RIS, TXA-15 or TXA-14 where a document message carries no OBR), the result status
(:data:`STATUS`), and the text: the OBX segments of value type TX, FT or ST after the OBR (a
document message: all of them), in order, each repetition a line, and a heading line where OBX-3
names a section ("^IMPRESSION"). A report sent as a document (value type ED, encapsulated data:
RTF, HTML or plain text, in Base64, hex or as text) is decoded and converted; one that only a
viewer reads (a PDF, an image) is named under :data:`UNREAD`, so that an order holding nothing else
is reported with the reason instead of as an empty report. Of the document messages those that
carry the document are read (MDM^T02 original, T04 status change, T06 addendum, T08 edit, T10
replacement) and the cancel T11, whose row withdraws the report; the notifications without content
(T01, T03, T05, T07, T09) and messages of other types (ADT, ACK) are passed over, and a file that
holds no message read is an error naming the types it holds; a message without a type (MSH-9),
and OBX segments of a result message before any OBR (of no order), are named as problems, not
passed over. The message's other identifiers and names (the patient's other ids, aliases and birth
name; the physicians who referred, ordered, attended, dictated, transcribed, signed or read) are
PHI that a report text may repeat: they are handed on under :data:`PHI_VALUES` and scrubbed as the
patient's name is.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections import Counter
from typing import Any

import hl7
import hl7.util

from ctcorpus.config.reports import ReportColumns
from ctcorpus.reports.lexicon import SECTION_OF_HEADING
from ctcorpus.reports.markup import PlainText, decode_bytes, to_plain_text, unescape_hl7
from ctcorpus.reports.records import ResultStatus

__all__ = ["MARKUP", "PHI_VALUES", "STATUS", "UNREAD", "oru_rows"]

#: The row key under which an order's other PHI values come (a tuple of strings, as find_phi takes them).
PHI_VALUES = "hl7 phi values"
#: The row key under which comes what the order's text was converted from ("hl7", "hl7+rtf"): the
#: text is plain already.
MARKUP = "hl7 markup"
#: The row key under which come the order's documents ctcorpus cannot read ("OBX 2: PDF"), as a tuple.
UNREAD = "hl7 unread"
#: The row key under which comes what the message says the report is (a :data:`ResultStatus`).
STATUS = "hl7 result status"
#: Result statuses (OBR-25) as the versions of a report are ordered: results not yet verified or
#: partial (P, A, R, and those before any result: O, I, S) are preliminary; Y and Z answer queries.
_RESULT_STATUS: dict[str, ResultStatus] = {"F": "final", "C": "corrected", "X": "cancelled", **dict.fromkeys(
    ("P", "A", "R", "O", "I", "S"), "preliminary")}
#: Document completion statuses (TXA-17): dictated, documented, incomplete, in progress or
#: pre-authenticated is preliminary; authenticated or legally authenticated is final.
_COMPLETION_STATUS: dict[str, ResultStatus] = {"AU": "final", "LA": "final", **dict.fromkeys(
    ("DI", "DO", "IN", "IP", "PA"), "preliminary")}
#: The document message events that carry the document (original, status change, addendum, edit,
#: replacement) or cancel it (T11); the others are notifications without it.
_DOCUMENT_EVENTS = frozenset({"T02", "T04", "T06", "T08", "T10", "T11"})
#: Where a report's study date and report time stand, the first non-empty wins (see the module doc).
_STUDY_DATES = ("OBR-7", "TXA-4")
_REPORT_TIMES = ("EVN-2", "TXA-22.15", "OBR-22", "MSH-7")
_TEXT_TYPES = frozenset({"TX", "FT", "ST"})
#: Data subtypes of an ED observation (OBX-5.3, maybe a MIME type: "text/rtf") whose text is read.
_TEXT_SUBTYPES = frozenset({"RTF", "HTML", "HTM", "XHTML", "PLAIN", "TEXT", "TXT"})
#: An HL7 escape sequence (between two escape characters): Base64 and hex data hold no backslash,
#: so in them each is formatting an export inserted (``\\.br\\`` where it wrapped the data).
_ESCAPE_SEQUENCE = re.compile(r"\\[^\\]*\\")
#: Fields that name a person: the patient's name, mother's maiden name and alias (XPN:
#: family^given^middle), the physicians who attended, referred, ordered or were copied and those
#: who did, dictated, were to sign, transcribed, signed or were sent a document (XCN:
#: id^family^given^middle), and those who read, assisted and performed (OBR-32 to OBR-35, NDL: the
#: same as subcomponents of the first component, id&family&given&middle).
_PATIENT_NAMES = ("PID-5", "PID-6", "PID-9")
_STAFF_NAMES = ("PV1-7", "PV1-8", "PV1-9", "PV1-17", "ORC-10", "ORC-11", "ORC-12", "OBR-16", "OBR-28",
                "TXA-5", "TXA-9", "TXA-10", "TXA-11", "TXA-22", "TXA-23")
_READER_NAMES = ("OBR-32", "OBR-33", "OBR-34", "OBR-35")
#: Fields that hold the patient's identifiers (CX: the id first): external, internal and alternate
#: ids, account number, social security and driver's licence numbers.
_ID_FIELDS = ("PID-2", "PID-3", "PID-4", "PID-18", "PID-19", "PID-20")
#: The start of a segment: its id and the field separator.
_SEGMENT_START = re.compile(r"[A-Z][A-Z0-9]{2}\|")
#: What ends a segment: a line end of any kind, or an MLLP frame byte (VT starts a message, FS ends it).
_SEGMENT_END = re.compile(r"\r\n|[\r\n\x0b\x1c]")


def _field(segment: Any, spec: str) -> str:
    """A field's first repetition's first component, or the one ``spec`` numbers ("TXA-22.15"), its
    escapes decoded ("" if the segment or field is shorter)."""
    number, _, component = spec.partition("-")[2].partition(".")
    if segment is None or int(number) >= len(segment):
        return ""
    field = segment[int(number)]
    if isinstance(field, list) and field:  # the first repetition: its components, or a plain value
        field = field[0]
    index = int(component or 1) - 1
    if isinstance(field, list):
        field = field[index] if index < len(field) else ""
    elif index:
        field = ""
    while isinstance(field, list) and field:  # component -> subcomponent
        field = field[0]
    return unescape_hl7(str(field)).strip()


def _first(segments: dict[str, Any], specs: tuple[str, ...]) -> str:
    """The first non-empty of the fields ``specs`` ("" if none is)."""
    return next((value for spec in specs if (value := _field(segments.get(spec[:3]), spec))), "")


def _status(segments: dict[str, Any], event: str) -> ResultStatus:
    """What the message says its report is: a document's completion status (TXA-17; an edit or
    replacement of a final document is a correction; a cancel, or a document made unavailable as
    cancelled, TXA-19 CA, is cancelled; an addendum, T06, carries the addendum alone and is one),
    else the order's result status (OBR-25); "" if neither says."""
    txa = segments.get("TXA")
    if txa is None:
        return _RESULT_STATUS.get(_field(segments.get("OBR"), "OBR-25").upper(), "")
    if event == "T11" or _field(txa, "TXA-19").upper() == "CA":
        return "cancelled"
    if event == "T06":
        return "addendum"
    status = _COMPLETION_STATUS.get(_field(txa, "TXA-17").upper(), "")
    return "corrected" if status == "final" and event in ("T08", "T10") else status


def _repetitions(segments: dict[str, Any], spec: str, separators: str) -> list[list[str]]:
    """A field's repetitions, each split into its components."""
    segment, number = segments.get(spec[:3]), int(spec.partition("-")[2])
    if segment is None or number >= len(segment):
        return []
    return [value.split(separators[3]) for value in str(segment[number]).split(separators[2]) if value.strip()]


def _phi_values(segments: dict[str, Any], separators: str) -> tuple[str, ...]:
    """The order's other identifiers and names, each a string find_phi splits into its parts, their
    escapes decoded once split (a name sent as "M\\XDC\\LLER" is found where the text writes "Müller")."""
    values = [unescape_hl7(parts[0]) for spec in _ID_FIELDS for parts in _repetitions(segments, spec, separators)]
    names = [parts for spec in _PATIENT_NAMES for parts in _repetitions(segments, spec, separators)]
    names += [parts[1:] for spec in _STAFF_NAMES for parts in _repetitions(segments, spec, separators)]
    names += [parts[0].split(separators[4])[1:] for spec in _READER_NAMES
              for parts in _repetitions(segments, spec, separators)]
    values += ["^".join(map(unescape_hl7, parts[:3])) for parts in names]
    return tuple(dict.fromkeys(v.strip("^ ") for v in values if v.strip("^ ")))


def _document(value: str, separators: str) -> PlainText | str:
    """The text of an ED observation's value (source^type^subtype^encoding^data), or, where it is
    no text ctcorpus reads, what it is ("PDF", "JPEG", "RTF not decodable as Base64").

    A document is text where its subtype says so (RTF, HTML, plain text), or, where the subtype is
    left empty, as often, where its type is text or its content shows RTF or HTML; a PDF is known
    by its content, whatever the subtype says.
    """
    _, kind, subtype, encoding, data, *_ = [*value.split(separators[2])[0].split(separators[3]), "", "", "", "", ""]
    kind, encoding = kind.strip().upper(), encoding.strip().upper()
    subtype = subtype.strip().upper().rpartition("/")[2].removeprefix("X-")  # "text/rtf", "application/x-rtf"
    if subtype and subtype not in _TEXT_SUBTYPES:
        return subtype
    if encoding in ("BASE64", "HEX"):
        packed = _ESCAPE_SEQUENCE.sub("", data).strip()
        try:
            raw = base64.b64decode(packed) if encoding == "BASE64" else bytes.fromhex(packed)
        except (binascii.Error, ValueError):
            return f"{subtype or kind or 'data'} not decodable as {encoding.title()}"
        if raw.startswith(b"%PDF"):
            return "PDF"
        plain = to_plain_text(decode_bytes(raw)[0])
    else:  # "A" (or none): the data is text, with HL7 escapes
        plain = to_plain_text(data, hl7=True)
    if subtype or kind == "TEXT" or "rtf" in plain.markup or "html" in plain.markup:
        return plain
    return kind or "data of no type"


def _report(segments: dict[str, Any], observations: list[Any], columns: ReportColumns, separators: str,
            event: str) -> dict[str, Any]:
    """One order's row; ``segments`` are the message's MSH, EVN, PID, PV1 and TXA and the order's
    ORC and OBR, ``event`` the message's trigger event ("T02")."""
    pid = segments.get("PID")
    lines: list[str] = []
    markups: set[str] = set()
    unread: list[str] = []
    section = ""
    for obx in observations:
        value_type = _field(obx, "OBX-2").upper()
        if value_type not in _TEXT_TYPES and value_type != "ED" or len(obx) <= 5:
            continue
        if value_type == "ED":
            plain = _document(str(obx[5]), separators)
            if isinstance(plain, str):
                unread.append(f"OBX {_field(obx, 'OBX-1') or '?'}: {plain}")
                continue
        else:
            # each observation converted alone: RTF or HTML is known by how its own text starts, and
            # after a heading line the whole text no longer started so (its control words stayed)
            plain = to_plain_text("\n".join(str(repetition) for repetition in obx[5]), hl7=True)
        heading = next((n for n in (c.strip() for c in str(obx[3]).split("^")) if n.lower() in SECTION_OF_HEADING), "")
        if heading and SECTION_OF_HEADING[heading.lower()] != section:
            lines.append(("\n" if lines else "") + heading + ":")
            section = SECTION_OF_HEADING[heading.lower()]
        lines.append(plain.text)
        markups.update(m for m in plain.markup.split("+") if m)
    family, _, given = (str(pid[5][0]) if pid is not None and len(pid) > 5 else "").partition("^")
    values = {
        columns.accession_number: _first(segments, columns.hl7_accession_fields),
        columns.patient_id: _field(pid, "PID-3"),
        columns.patient_name: f"{unescape_hl7(family)}^{unescape_hl7(given.partition('^')[0])}".strip("^"),
        columns.study_date: _first(segments, _STUDY_DATES),
        columns.report_time: _first(segments, _REPORT_TIMES),
        columns.text: "\n".join(lines).strip("\n"),  # an empty OBX is a blank line, except at either end
    }
    return {**{column: value for column, value in values.items() if column},
            PHI_VALUES: _phi_values(segments, separators), MARKUP: "+".join(sorted(markups)), UNREAD: tuple(unread),
            STATUS: _status(segments, event)}


def _segments(text: str) -> str:
    """The file's segments joined by CR: line ends of any kind are segment ends, as are the MLLP
    frame bytes an interface engine's archive keeps around each message (VT before, FS after;
    read as text, the next message's MSH continued the last OBX, and every order after it took
    the first message's patient), blank lines go, and a line that starts no segment continues the
    one before (an export that let report text line breaks into OBX-5 unescaped) as an HL7 line break."""
    lines: list[str] = []
    for line in _SEGMENT_END.split(text):
        if not line.strip():
            continue
        if lines and not _SEGMENT_START.match(line):
            lines[-1] += "\\.br\\" + line
        else:
            lines.append(line)
    return "\r".join(lines)


def _orders(message: Any, document: bool) -> tuple[list[tuple[dict[str, Any], list[Any]]], int]:
    """The message's orders, each its segments (the message's MSH, EVN, PID, PV1 and TXA, the order's
    ORC and OBR) and its observations: of a result message one per OBR with the OBX after it, of a
    document message (``document``) one, with its OBR if it has one and every OBX; and how many
    OBX of a result message stand before any OBR (of no order, so not read)."""
    shared: dict[str, Any] = {}
    orders: list[tuple[dict[str, Any], list[Any]]] = [({}, [])] if document else []
    order: dict[str, Any] = {}
    stray = 0
    for segment in message:
        kind = str(segment[0])
        if kind in ("MSH", "EVN", "PID", "PV1", "TXA") or document and kind in ("ORC", "OBR"):
            shared.setdefault(kind, segment)
        elif kind == "ORC":
            order = {"ORC": segment}
        elif kind == "OBR":
            orders.append(({**order, "OBR": segment}, []))
            order = {}
        elif kind == "OBX" and orders:
            orders[-1][1].append(segment)
        elif kind == "OBX":
            stray += 1
    return [({**shared, **segments}, observations) for segments, observations in orders], stray


def oru_rows(text: str, columns: ReportColumns) -> tuple[list[tuple[str, dict[str, Any]]], list[tuple[int, str]]]:
    """One row per order (OBR) of each ORU message and per document of each MDM message that
    carries or cancels one, keyed by the configured column names so that it is read like a table's
    row, each with where it stands ("message 3", counted from 1; "message 3, order 2" of a message
    with several orders); and (0-based message number, what is wrong with it: "cannot be parsed (...)")
    for each message that cannot be parsed, names no message type (MSH-9), or holds OBX segments
    before any OBR (an order's text lost silently otherwise).

    Raises ``ValueError`` if the file's messages parse but none is of a type read (a feed of
    notifications or ADT messages): each study would silently have no report.

    >>> rows, _ = oru_rows("MSH|^~\\\\&|RIS||||20240105||ORU^R01|1|P|2.3\\rPID|||P1||DOE^JANE\\r"
    ...                    "OBR|1||A1|||20240105\\rOBX|1|TX|^IMPRESSION||No effusion.", ReportColumns())
    >>> rows[0][0], rows[0][1]["accession_number"], rows[0][1]["report_text"]
    ('message 1', 'A1', 'IMPRESSION:\\nNo effusion.')
    """
    rows: list[tuple[str, dict[str, Any]]] = []
    problems: list[tuple[int, str]] = []
    passed: Counter[str] = Counter()  # message types passed over, "MDM^T01"
    messages = hl7.util.split_file(_segments(text))
    if not messages and text.strip():
        problems.append((0, "cannot be parsed (no MSH segment: the file holds no HL7 message)"))
    for n, raw in enumerate(messages):
        try:
            message = hl7.parse(raw)
            msh = message.segment("MSH")
            kind, event = _field(msh, "MSH-9").upper(), _field(msh, "MSH-9.2").upper()
            if not kind:
                problems.append((n, "names no message type (MSH-9 is empty), so it is not read as a report"))
                continue
            if not (kind == "ORU" or kind == "MDM" and event in _DOCUMENT_EVENTS):
                passed[f"{kind}^{event}".strip("^")] += 1
                continue
            orders, stray = _orders(message, kind == "MDM")
            if stray:
                lost = f"has {stray} OBX segment(s) before any OBR, which belong to no order: their text is not read"
                problems.append((n, lost))
            rows += [(f"message {n + 1}" + (f", order {k}" if len(orders) > 1 else ""),
                      _report(segments, observations, columns, message.separators, event))
                     for k, (segments, observations) in enumerate(orders, start=1)]
        except Exception as exc:  # noqa: BLE001 - a malformed message fails in many ways; it costs itself only
            problems.append((n, f"cannot be parsed ({type(exc).__name__}: {exc})"))
    if passed and sum(passed.values()) == len(messages):
        raise ValueError(f"none of its {len(messages)} HL7 message(s) is a report ctcorpus reads (it holds "
                         f"{', '.join(f'{t} x{c}' for t, c in sorted(passed.items()))}); reports come as ORU^R01 "
                         "or MDM^T02/T04/T06/T08/T10 (T11 cancels)")
    return rows, problems
