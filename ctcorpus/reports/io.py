"""Reading RIS report exports (CSV, JSONL, Parquet, Excel, HL7 v2 ORU and MDM files) with a column mapping and
encoding detection; report texts stored as RTF or HTML are converted to plain text (:mod:`ctcorpus.reports.markup`).

Hospital exports arrive as UTF-8, Windows-1252 or Latin-1 depending on the RIS, and a UTF-8 export
may hold a row pasted from a cp1252 source; a wrong guess turns "Pleuraerguß" into mojibake or
fails outright, so each line is decoded by trying UTF-8 first (which rejects nearly all non-UTF-8
text) and falling back to cp1252, then Latin-1 (:func:`~ctcorpus.reports.markup.decode_text`); a
row's ``encoding`` says what its lines needed.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import logging
import math
import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import chain, islice
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from ctcorpus.config.reports import ReportColumns
from ctcorpus.enums import QuarantineReason
from ctcorpus.errors import ReportError
from ctcorpus.pseudonym import without_float_zeros
from ctcorpus.reports.markup import DecodedText, PlainText, decode_bytes, decode_text, to_plain_text, valid_unicode
from ctcorpus.reports.oru import MARKUP, PHI_VALUES, STATUS, UNREAD, oru_rows
from ctcorpus.reports.patterns import MONTH_NAMES
from ctcorpus.reports.records import RawReport, ReportExport, ResultStatus

__all__ = ["language_code", "normalize_date", "normalize_time", "read_report_export"]

logger = logging.getLogger(__name__)


#: A date with the year first: "20240105", "2024-01-05", "2024/01/05", "2024.01.05", and with a
#: separator a month or day of one digit: "2024-1-5".
_YEAR_FIRST = re.compile(r"(\d{4})(?:([-/.])(\d{1,2})\2(\d{1,2})|(\d{2})(\d{2}))")
#: Seconds or milliseconds since 1970-01-01 UTC, as pandas' ``to_json`` writes a date column
#: ("1704448953000"), maybe as a float ("1704448953000.0").
_EPOCH = re.compile(r"(\d{10}|\d{13})(?:\.0+)?")
#: A weekday (or any word) before a date that names its month: "Fri, ", "Freitag, ".
_WEEKDAY = r"(?:[^\W\d_]{2,}\.?,?\s+)?"
#: A date that names its month, the day first: "5 Jan 2024", "05-JAN-2024" and "05-JAN-24" (Oracle's
#: DD-MON-YYYY and DD-MON-RR), "5. Januar 2024", "05. Mär. 2024", "5th January 2024", "Fri, 05 Jan 2024"
#: (RFC 2822, as mail and HTTP write it). A year of two digits: :func:`_full_year`.
_DAY_MONTH_NAME = re.compile(_WEEKDAY + r"(?P<day>\d{1,2})(?:st|nd|rd|th)?\.?[\s/-]*(?P<month>[^\W\d_]{3,})\.?"
                             r"[\s/,-]*(?P<year>\d{4}|\d{2})(?![\d:]),?", re.IGNORECASE)
#: A date that names its month, the month first, as US exports write it: "Jan 5, 2024", "January 5th, 2024",
#: "Fri Jan 05 2024" (a year of two digits is not read: "Jan 24, 10:22" has none).
_MONTH_NAME_DAY = re.compile(_WEEKDAY + r"(?P<month>[^\W\d_]{3,})\.?[\s-]*(?P<day>\d{1,2})(?:st|nd|rd|th)?"
                             r"[\s,-]+(?P<year>\d{4})(?![\d:]),?", re.IGNORECASE)
#: A date with the day first, as German exports write it: "5.1.2024", "05.01.24" (a year of two
#: digits: :func:`_full_year`). A slash date with the year last ("01/05/2024") is not read:
#: US and European exports write it alike, and a wrong guess links a report to another month's study.
_DAY_FIRST = re.compile(r"(\d{1,2})\.(\d{1,2})\.(\d{4}|\d{2})(?!\d),?")
#: An Excel date serial (days since 1899-12-30) is below this; a YYYYMMDD number is above.
_EXCEL_MAX_SERIAL = 2958466
#: A time after a date: "T10:22:33", " 9:05", "102233" (HL7), " 10.22" (German) or " 10.22.33.000000 AM"
#: (Oracle's TIMESTAMP, as a DD-MON-RR date's time: read as midnight), a fraction (ignored), the 12-hour
#: clock's " PM" or German's " Uhr" ("10:22 Uhr": read as midnight, a German RIS's report versions
#: were ordered by export order alone), and a zone: "Z", "UT", "+01:00", "+0100", or the hours alone as
#: PostgreSQL writes a timestamptz ("+01"), maybe after a blank (" +01:00", " UTC"), and the zone's
#: name after an offset as Java writes it ("+01:00[Europe/Berlin]"); a zone that is not read loses
#: the whole time (midnight).
_TIME = re.compile(r"[T ]?(\d{1,2})[:.]?(\d{2})(?:[:.]?(\d{2}))?(?:[.,]\d+)?(?: ?([AaPp])\.?[Mm]\.?| ?(?i:uhr))?"
                   r"(?: ?((?i:z|utc?|gmt)|([+-])(\d{2})(?::?(\d{2}))?))?(?:\[[\w/+-]+\])?")
#: What may follow a date that holds no time: nothing, or a float's ".0" ("20240105.0", as pandas writes it).
_NO_TIME = re.compile(r"(?:\.0+)?")


def normalize_time(value: Any, *, utc: bool = False) -> str:
    """A date or date and time in any common spelling as ``YYYYMMDDHHMMSS`` ("" when absent or not
    a date; a time that cannot be read counts as midnight: :func:`_read_time` tells).

    A time zone is ignored, or with ``utc`` the time is converted to UTC by it: report times (two
    versions of a report written either side of a daylight-saving change order right); a study
    date keeps the day as written. A time without a zone is taken as written either way; one that
    UTC would move out of years 1-9999 (a sentinel: "9999-12-31T23:59:59-05:00") is none ("").

    >>> normalize_time("2024-01-05T10:22:33+01:00"), normalize_time("20240105102233.123+0100", utc=True)
    ('20240105102233', '20240105092233')
    >>> normalize_time("05.01.2024 10:22"), normalize_time(20240105.0), normalize_time("5.1.2024, 9:05")
    ('20240105102200', '20240105000000', '20240105090500')
    >>> normalize_time("2024/01/05 10:22"), normalize_time("05.01.24"), normalize_time("01/05/2024")
    ('20240105102200', '20240105000000', '')
    >>> normalize_time("2024-01-05 10:22:33.52+01", utc=True), normalize_time("2024-01-05 10:22:33 UTC", utc=True)
    ('20240105092233', '20240105102233')
    >>> normalize_time("2024-01-05 12:05:09 AM"), normalize_time("2024-01-05T22:22:33+01:00[Europe/Berlin]", utc=True)
    ('20240105000509', '20240105212233')
    >>> normalize_time("05.01.2024 10:22 Uhr"), normalize_time("2024-1-5 9:05")
    ('20240105102200', '20240105090500')
    >>> normalize_time(1704448953000), normalize_time("1704448953"), normalize_date("2024010510")
    ('20240105100233', '20240105100233', '20240105')
    >>> normalize_time("Fri, 05 Jan 2024 10:22:33 +0100"), normalize_time("5 Jan 2024 10:22 +0100", utc=True)
    ('20240105102233', '20240105092200')
    """
    return _read_time(value, utc=utc)[0]


def _epoch(text: str) -> datetime | None:
    """The moment of seconds or milliseconds since 1970 (UTC); ``None`` for other text. Ten digits
    that read as a year from 1900 with month, day and hour are that (HL7's YYYYMMDDHH), not seconds."""
    if not (m := _EPOCH.fullmatch(text)) or len(m[1]) == 10 and int(m[1][:4]) >= 1900 and _read_time(
            m[1][:8], utc=False)[0]:
        return None
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=int(m[1]) * (1 if len(m[1]) == 13 else 1000))


def _month_number(name: str) -> int:
    """The month (1-12) a month's name or abbreviation (:data:`~ctcorpus.reports.patterns.MONTH_NAMES`) names, in any case; 0 for another word.

    >>> [_month_number(name) for name in ("JAN", "Sept", "Mär", "mrz", "Dezember", "Ju", "Juno")]
    [1, 9, 3, 3, 12, 0, 0]
    """
    key = name.casefold()
    return next((month for month, names in enumerate(MONTH_NAMES, start=1)
                 if len(key) >= 3 and any(full.startswith(key) for full in names)), 0)


def _full_year(digits: str) -> int:
    """A year of four digits, or of two as strptime's %y reads them: 00-68 is 20YY, 69-99 19YY."""
    year = int(digits)
    return year if len(digits) == 4 else year + (2000 if year < 69 else 1900)


def _read_time(value: Any, *, utc: bool) -> tuple[str, bool]:
    """:func:`normalize_time`, and whether all that follows the date was read: a time it does not
    read ("10:22 CET") counts as midnight, which orders a version of a report before the others of
    its day, so the caller names such values."""
    if isinstance(value, date):  # a datetime too
        stamp = value if isinstance(value, datetime) else datetime(value.year, value.month, value.day)
        if utc and stamp.tzinfo is not None:
            stamp = stamp.astimezone(timezone.utc)
        return f"{stamp.year:04d}{stamp:%m%d%H%M%S}", True
    # a number with a gap in its column is a float: "20240105.0"; a macOS tool decomposes "Mär"'s "ä"
    text = unicodedata.normalize("NFC", _cell_text(value).strip())
    if (moment := _epoch(text)) is not None:
        return _read_time(moment, utc=utc)
    if m := _YEAR_FIRST.match(text):
        year, month, day = int(m[1]), int(m[3] or m[5]), int(m[4] or m[6])
    elif m := _DAY_FIRST.match(text):
        year, month, day = _full_year(m[3]), int(m[2]), int(m[1])
    elif (m := _DAY_MONTH_NAME.match(text) or _MONTH_NAME_DAY.match(text)) and (month := _month_number(m["month"])):
        year, day = _full_year(m["year"]), int(m["day"])
    else:
        return "", False
    try:
        stamp = datetime(year, month, day)
        t = _TIME.fullmatch(text, m.end())
        hour = int(t[1]) if t else 0
        if t and t[4] and 0 < hour < 13:  # the 12-hour clock: 12 AM is midnight, 12 PM noon
            hour = hour % 12 + (12 if t[4] in "Pp" else 0)
        read = bool(_NO_TIME.fullmatch(text, m.end()) or t and hour < 24 and int(t[2]) < 60 and int(t[3] or 0) < 60)
        if t and read:
            stamp = stamp.replace(hour=hour, minute=int(t[2]), second=int(t[3] or 0))
            if utc and t[5]:  # "Z" (UTC, GMT) or an offset east (+) or west (-) of UTC
                offset = 0 if not t[6] else (int(t[7]) * 60 + int(t[8] or 0)) * (1 if t[6] == "+" else -1)
                stamp -= timedelta(minutes=offset)
    except (ValueError, OverflowError):  # no such day, or a sentinel that UTC moves out of years 1-9999
        return "", False
    return f"{stamp.year:04d}{stamp:%m%d%H%M%S}", read


def normalize_date(value: Any) -> str:
    """A study date in any common spelling as ``YYYYMMDD`` ("" when absent or unparseable): see
    :func:`normalize_time`.

    >>> normalize_date("05.01.2024"), normalize_date("2024-01-05"), normalize_date(20240105.0)
    ('20240105', '20240105', '20240105')
    """
    return normalize_time(value)[:8]


def _excel_date(value: Any) -> Any:
    """A number cell of an Excel workbook's date column as a date: below 2958466 it is a date
    serial (a date cell whose format was lost), above it a YYYYMMDD number; anything else as it is."""
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 < value < _EXCEL_MAX_SERIAL:
        from openpyxl.utils.datetime import from_excel

        return from_excel(value)
    return value


def _cell_text(value: Any) -> str:
    """A cell as text: bytes (a Parquet binary column) decoded like a file, a whole float as an
    integer ("12345", not "12345.0"), lone surrogates replaced by U+FFFD so that writing the text
    cannot fail, ``None`` and NaN as "", and a list (a JSON array, a Parquet list column: a report
    as its lines) as its items' lines, where Python's "['Kein Erguss.', ...]" became the report.

    >>> _cell_text(["Kein Erguss.", None, "Rundherd."]), _cell_text(12345.0)
    ('Kein Erguss.\\n\\nRundherd.', '12345')
    """
    if value is None or isinstance(value, float) and math.isnan(value):  # a gap in a float column
        return ""
    if isinstance(value, list | tuple):
        return "\n".join(map(_cell_text, value))
    if isinstance(value, float) and value.is_integer():  # an id column with a gap (pandas: float64)
        value = int(value)
    text = decode_bytes(value)[0] if isinstance(value, bytes) else str(value)
    return text if text.isascii() else valid_unicode(text)  # JSON may escape a lone "\ud800"


#: A CSV cell that tells Excel to keep its value as text, as an export meant for Excel writes an id
#: with leading zeros or a date: ="000123" (a quote inside it doubled).
_EXCEL_TEXT = re.compile(r'\s*="((?:[^"]|"")*)"\s*', re.DOTALL)


def _excel_text(value: Any) -> Any:
    """A cell without Excel's ="..." text wrapper: read as written, an accession number ="000123"
    matched no study's "000123", and every report of the export was an orphan.

    >>> _excel_text('="000123"'), _excel_text('="a ""b"" c"'), _excel_text("=1+1"), _excel_text(5)
    ('000123', 'a "b" c', '=1+1', 5)
    """
    m = _EXCEL_TEXT.fullmatch(value) if isinstance(value, str) else None
    return m[1].replace('""', '"') if m else value


#: The values of a table export's status column (reports.columns.result_status), in English or German
#: or as HL7's result status (OBR-25), compared by :func:`_status_key`. As HL7's document completion
#: status (TXA-17) has it, a report dictated, typed or not yet signed is preliminary; one signed,
#: verified or released is final.
_STATUS_VALUES: dict[str, ResultStatus] = {
    **dict.fromkeys(("p", "preliminary", "prelim", "draft", "vorläufig", "vorlaeufig", "vorl", "entwurf",
                     "preliminary report", "vorläufiger befund", "dictated", "diktiert", "transcribed", "geschrieben",
                     "unsigned", "pending", "in progress", "in bearbeitung"), "preliminary"),
    **dict.fromkeys(("f", "final", "signed", "endgültig", "endgueltig", "freigegeben", "vidiert", "final report",
                     "endgültiger befund", "finalized", "finalised", "verified", "approved", "authenticated",
                     "signiert", "unterschrieben", "validiert", "gegengezeichnet"), "final"),
    **dict.fromkeys(("c", "corrected", "correction", "amended", "korrigiert", "korrektur"), "corrected"),
    **dict.fromkeys(("addendum", "nachtrag"), "addendum"),
    **dict.fromkeys(("x", "cancelled", "canceled", "withdrawn", "storniert"), "cancelled"),
}


def _status_key(value: str) -> str:
    """A status value as :data:`_STATUS_VALUES` holds it: composed (a macOS tool decomposes "ä"), in
    lower case, blanks, "_" and "-" as one blank, without a closing dot.

    >>> _status_key("In_Progress"), _status_key("Prelim."), _status_key("VORLA\u0308UFIG")
    ('in progress', 'prelim', 'vorläufig')
    """
    return " ".join(re.split(r"[\s_-]+", unicodedata.normalize("NFC", value).casefold().strip().rstrip("."))).strip()


#: Language names an export may hold instead of an ISO 639-1 code.
_LANGUAGE_NAMES = {"english": "en", "englisch": "en", "eng": "en", "german": "de", "deutsch": "de", "deu": "de",
                   "ger": "de"}


def language_code(value: str) -> str:
    """The language column as a two-letter code: "DE", "de-DE", "de_CH", "German", "Deutsch" -> "de".

    >>> [language_code(v) for v in ("DE", "de-DE", "en_US", "Deutsch", "English", "nl", "")]
    ['de', 'de', 'en', 'de', 'en', 'nl', '']
    """
    code = value.strip().lower().replace("_", "-").split("-")[0]
    return _LANGUAGE_NAMES.get(code, code)


#: File suffixes of HL7 v2 message files (ORU^R01 and MDM report feeds).
_HL7_SUFFIXES = (".hl7", ".oru")
#: File suffixes of JSON Lines and JSON exports, and of delimited text ones.
_JSON_SUFFIXES = (".jsonl", ".ndjson", ".json")
_CSV_SUFFIXES = (".csv", ".tsv", ".txt")
#: Delimiters a CSV export may use (TSV: a tab; German Excel: a semicolon).
_CSV_DELIMITERS = (",", ";", "\t", "|")
#: How a JSON value that is no object is named in an error (numbers are the rest).
_JSON_KINDS = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}


def _json_rows(text: str, path: Path) -> tuple[list[tuple[int, dict[str, Any]]], list[ReportError], str]:
    """Rows of JSON Lines, or of one JSON array of objects (a ``.json`` export, or one named
    ``.jsonl`` as many tools save "JSON"; read by line, its one line or each pretty-printed line
    was an error and no row was read), an error per line (array item) that is not a JSON object,
    and what the (0-based) row numbers count: "line" or "item". Raises ``ValueError`` if no line is JSON."""
    problems: list[tuple[int, ReportError]] = []

    def bad(unit: str, n: int, problem: str) -> None:
        problems.append((n, ReportError(f"{unit} {n + 1} {problem}; fix or remove it",
                                        reason=QuarantineReason.UNREADABLE_REPORT, path=path)))

    try:  # JSON Lines fail at the second line ("Extra data"), having parsed one line, not the file
        document: Any = json.loads(text)
    except json.JSONDecodeError:
        document = None
    entries: list[tuple[int, Any]] = []
    if isinstance(document, list | dict):
        unit = "item"
        entries = list(enumerate(document if isinstance(document, list) else [document]))
    else:
        unit = "line"
        for n, line in enumerate(io.StringIO(text, newline="")):  # lines as the file has them (not at U+2028)
            if line.strip():
                try:
                    # a byte order mark starts each file of JSON Lines files joined into one (cat a.jsonl b.jsonl)
                    entries.append((n, json.loads(line.removeprefix("\ufeff"))))
                except json.JSONDecodeError as exc:
                    bad(unit, n, f"is not JSON ({exc.msg})")
        if problems and not entries:  # a CSV or a binary file so named: one error, not one per line
            raise ValueError(f"not a JSON Lines export: none of its {len(problems)} line(s) is JSON")
    rows = [(n, value) for n, value in entries if isinstance(value, dict)]
    for n, value in entries:
        if not isinstance(value, dict):
            bad(unit, n, f"is {_JSON_KINDS.get(type(value), 'a number')}, not a JSON object")
    return rows, [error for _, error in sorted(problems, key=lambda item: item[0])], unit


def _header_names(line: str, delimiter: str) -> set[str]:
    """The column names a header line holds when split at ``delimiter`` (blanks and quotes around them removed)."""
    return {name.strip().strip('"').strip() for name in line.split(delimiter)}


#: What a column name's spelling may vary in besides case: blanks, "_", "-", "." and the like.
_NAME_SEPARATORS = re.compile(r"[\W_]+")


def _name_key(name: str) -> str:
    """A column name as mapping compares it: in any case and without separators, so that "Study
    Date", "STUDY_DATE" and "study-date" are "study_date".

    >>> _name_key("Study Date") == _name_key("STUDY_DATE") == _name_key("studydate")
    True
    """
    return _NAME_SEPARATORS.sub("", name.casefold())


def _names_any(names: Iterable[str], wanted: Iterable[str]) -> bool:
    """Whether ``names`` hold one of the ``wanted`` columns, spelled otherwise too (see :func:`_mapped_case`)."""
    return not {_name_key(name) for name in names}.isdisjoint(map(_name_key, wanted))


def _csv_delimiter(header: str, text_columns: tuple[str, ...], default: str) -> str:
    """The delimiter of a CSV export, read off its header line: the one that makes a text column
    a field of its own, else the most frequent one there.

    ``csv.Sniffer`` votes over a whole sample, and report texts full of commas, semicolons and line
    breaks outvote the header: a semicolon export (Excel's default in German) came out as one column.

    >>> _csv_delimiter("Accession;Befundtext;Datum", ("Befundtext",), ","), _csv_delimiter("a|b", ("text",), ",")
    (';', '|')
    """
    for delimiter in _CSV_DELIMITERS:
        if _names_any(_header_names(header, delimiter), text_columns):
            return delimiter
    counts = {delimiter: header.count(delimiter) for delimiter in _CSV_DELIMITERS}
    best = max(counts, key=counts.__getitem__)
    return best if counts[best] else default


#: How many lines may stand above a CSV export's header: blank lines, a report title, Excel's "sep=;".
_HEADER_SEARCH = 20
#: Excel's delimiter line, the first of a file ("sep=;"): Excel reads the file with that delimiter.
_SEP_LINE = re.compile(r'"?sep=(.)"?', re.IGNORECASE)


def _csv_header(top: Sequence[str], text_columns: tuple[str, ...], default: str) -> tuple[int, str]:
    """The 0-based line of a CSV export's header among its first lines ``top``, and its delimiter.

    The header is the first line that names a text column (spelled otherwise too), else the first
    line with a value; the lines above it are no rows. An Excel "sep=" line names the delimiter. Read as the
    header, such a line (or a title, or a blank line) hid every column: the export failed for want
    of a text column.

    >>> _csv_header(["sep=;\\r\\n", "\\r\\n", "id;Befundtext\\r\\n"], ("Befundtext",), ",")
    (2, ';')
    >>> _csv_header(["RIS-Export 05.01.2024\\n", "id,Befundtext\\n"], ("Befundtext",), ",")
    (1, ',')
    """
    sep = m[1] if top and (m := _SEP_LINE.fullmatch(top[0].strip())) else ""
    lines = list(enumerate(top))[bool(sep):]
    for k, line in lines:
        if any(_names_any(_header_names(line, d), text_columns) for d in ([sep] if sep else _CSV_DELIMITERS)):
            return k, sep or _csv_delimiter(line, text_columns, default)
    k, line = next(((k, line) for k, line in lines if line.strip()), (len(top), ""))
    return k, sep or _csv_delimiter(line, text_columns, default)


def _mapped_columns(columns: ReportColumns) -> frozenset[str]:
    """The export columns ``columns`` maps to something."""
    return frozenset(c for c in (columns.text, *columns.sections.values(), columns.accession_number,
                                 columns.patient_id, columns.study_date, columns.report_time, columns.result_status,
                                 columns.language, columns.patient_name, *columns.phi) if c)


def _mapped_case(rows: list[tuple[str, dict[Any, Any]]], mapped: frozenset[str]) -> list[tuple[str, dict[Any, Any]]]:
    """``rows`` with each column that names a mapped column in another case or with other
    separators ("BEFUNDTEXT" for "Befundtext", "Study Date" for "study_date", as a RIS update or
    another export tool writes it) under the mapped name, row by row (JSON Lines merged from two
    tools spell a row's keys each their way); a mapped column a row names exactly is left alone.
    Read by its exact name, the text column was missing and the whole export unread (a date or id
    column: every report an orphan). Raises ``ValueError`` if two columns of a row name one so."""
    names: set[str] = set().union(*(row for _, row in rows)) - {None}  # CSV surplus fields: None
    wanted = {_name_key(column): column for column in mapped}
    spelled = {name: wanted[key] for name in names - mapped if (key := _name_key(name)) in wanted}
    if not spelled:
        return rows
    renamed_rows = []
    for where, row in rows:
        renamed = {name: column for name, column in spelled.items() if name in row and column not in row}
        _check_unique(list(renamed.values()), mapped)
        renamed_rows.append((where, {renamed.get(name, name): value for name, value in row.items()} if renamed else row))
    return renamed_rows


def _check_unique(header: Sequence[str], mapped: frozenset[str]) -> None:
    """Raise ``ValueError`` if the header names a mapped column more than once: a row read as a
    dict keeps the last cell, so a second, empty "report_text" silently dropped every report text."""
    if twice := sorted(name for name, n in Counter(header).items() if n > 1 and name in mapped):
        raise ValueError(f"the header names the column{'s' * (len(twice) > 1)} {', '.join(map(repr, twice))} more "
                         "than once; rename or remove the copy")


def _xlsx_rows(data: bytes, text_columns: tuple[str, ...], mapped: frozenset[str]) -> list[tuple[str, dict[str, Any]]]:
    """The rows of an Excel workbook's first sheet under its header, as typed cells (numbers,
    datetimes, text), each with its row number as Excel shows it ("row 2" under a header in row 1).
    The header is the first row that names a text column (spelled otherwise too; a title may stand
    above it), else the first row with a value; rows without one are left out, as Excel keeps
    formatted empty rows. A header cell without a name is called "column <n>"."""
    from openpyxl import load_workbook

    try:
        workbook = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
        try:
            # read-only sheets yield every row from the first, empty ones too: k is Excel's row number
            lines = [(k, cells) for k, cells in enumerate(workbook.worksheets[0].iter_rows(values_only=True), start=1)
                     if any(v is not None and str(v).strip() for v in cells)]
        finally:
            workbook.close()
    except Exception as exc:  # noqa: BLE001 - a broken workbook fails in many ways (zip, XML, openpyxl's own)
        raise ValueError(f"not a readable Excel workbook ({type(exc).__name__}: {exc}); save it again as .xlsx "
                         "or CSV") from None
    if not lines:
        return []
    names = [[str(v).strip() if v is not None else f"column {k + 1}" for k, v in enumerate(cells)]
             for _, cells in lines]
    first = next((k for k, header in enumerate(names) if _names_any(header, text_columns)), 0)
    _check_unique(names[first], mapped)
    return [(f"row {n}", dict(zip(names[first], cells, strict=False))) for n, cells in lines[first + 1:]]


@dataclass(frozen=True, slots=True)
class _Rows:
    """An export's rows, each with where it stands in the file as a user finds it there
    (:attr:`RawReport.location`), an error per unreadable line (HL7: message), and how the rows
    were decoded."""

    rows: list[tuple[str, dict[str, Any]]]
    problems: list[ReportError] = field(default_factory=list)
    encoding: str = "utf-8"  # a row's, unless ``row_encodings`` has its own (by location)
    row_encodings: Mapping[str, str] = field(default_factory=dict)


def _repeats_header(cells: Sequence[str], text_columns: tuple[str, ...], mapped: frozenset[str]) -> bool:
    """Whether a CSV row's (short) cells are a header again: they name a text column and another
    mapped column. A text column's name alone is a value as often: a German RIS's document type
    "Befund" where the text column is "Befund", or a report reading "Report Text"; taken for a
    header, that row and every row after it lost its report.

    >>> _repeats_header(["A1", "Befund"], ("Befund",), frozenset({"Befund", "PID"}))
    False
    >>> _repeats_header(["pid", "BEFUND"], ("Befund",), frozenset({"Befund", "PID"}))
    True
    """
    keys = {_name_key(cell) for cell in cells}
    return len(keys & _column_keys(mapped)) > 1 and not keys.isdisjoint(_column_keys(text_columns))


@lru_cache(maxsize=16)
def _column_keys(columns: tuple[str, ...] | frozenset[str]) -> frozenset[str]:
    """:func:`_name_key` of the config's column names, once per export instead of per row (the
    regex substitution per name was a fifth of reading a CSV row)."""
    return frozenset(map(_name_key, columns))


#: A line read after a CSV export's last: a row of its own, unless a quoted field that no quote
#: closes took it in (no text holds NULs).
_END_OF_FILE = "\x00end of file\x00"


def _csv_rows(path: Path, decoded: DecodedText, suffix: str, text_columns: tuple[str, ...],
              mapped: frozenset[str]) -> _Rows:
    """The rows of a CSV/TSV export, each at the line of the file where it starts ("line 2" under a
    header in line 1; a quoted field's line breaks make rows and lines differ) and with the encoding
    of the lines it spans. Column names are
    read without the blanks around them, as a padded export (SQL*Plus, "a; b") writes them, and so
    is a quoted field after the delimiter's blank.

    A row whose quoted field no quote closes is an error: the csv module reads such a field to
    the end of the file, and that row's report took in the texts and ids of every row after it. So
    is a last row short of fields in a file that ends inside it, without a line break (a cut-off
    export): read, it was a report without text or ids. A line that names a text column and
    another mapped column again is a header, not a row (:func:`_repeats_header`): exports joined
    into one file (a scheduled job appending each day's export) have it, the rows after it in its
    column order."""
    text = decoded.text
    # the csv module refuses a field over 128 KiB (a long report history) unless told; no field
    # is longer than the file (the limit is process-wide, so it is only ever raised)
    csv.field_size_limit(max(csv.field_size_limit(), len(text) + 1))
    lines = io.StringIO(text, newline="")
    top = list(islice(lines, _HEADER_SEARCH))
    skipped, delimiter = _csv_header(top, text_columns, "\t" if suffix == ".tsv" else ",")
    blank: set[int] = set()  # lines (from the header's, 0-based) that are empty: the reader skips them between rows

    def body() -> Iterator[str]:
        for k, line in enumerate(chain(top[skipped:], lines, [_END_OF_FILE])):
            if not line.strip("\r\n"):
                blank.add(k)
            yield line

    reader = csv.DictReader(body(), delimiter=delimiter, skipinitialspace=True)
    # reading the header first (there is a line: the end-of-file one), the first row's lines follow it
    reader.fieldnames = [name.strip() for name in reader.fieldnames or ()]
    _check_unique(reader.fieldnames, mapped)
    rows: list[tuple[str, dict[str, Any]]] = []
    encodings: dict[str, str] = {}
    name_length = 2 * max(map(len, mapped), default=0)
    start = end = reader.line_num
    for row in reader:
        start, end = end, reader.line_num
        while start in blank:
            start += 1
        where = f"line {skipped + start + 1}"
        cells = [*(row[name] for name in reader.fieldnames), *(row.get(None) or ())]
        # exports joined: a header again (a cell twice a mapped name's length is no name: a report's text is not compared)
        if _repeats_header([cell.strip() for cell in cells if cell and len(cell) <= name_length], text_columns, mapped):
            logger.info("%s: %s repeats the header (exports joined into one file?); the rows after it are read "
                        "under its columns", path, where)
            reader.fieldnames = [(cell or "").strip() for cell in cells]
            _check_unique(reader.fieldnames, mapped)
            continue
        rows.append((where, row))
        if decoded.fallback:
            encodings[where] = decoded.lines_encoding(skipped + start, skipped + end)
    problems: list[ReportError] = []
    where, last = rows.pop() if rows else ("", {})  # the end-of-file line's row, or the row that took it in
    # the last row's named fields: one it lacks is None (a header's unnamed last field, a delimiter ending it, is not)
    named = {name: value for name, value in rows[-1][1].items() if name} if rows else {}
    if [value for value in last.values() if value is not None] not in ([], [_END_OF_FILE]):
        problems.append(ReportError(f"{where} opens a quoted field that no quote closes, "
                                    f"so it ran to the end of the file and took in the {end - start - 2} line(s) "
                                    "after it; close the quote (or double it) and read the export again",
                                    reason=QuarantineReason.UNREADABLE_REPORT, path=path))
    elif None in named.values() and not text.endswith(("\n", "\r")):
        where, _ = rows.pop()
        problems.append(ReportError(f"{where}, the last row, has {sum(v is not None for v in named.values())} of the "
                                    f"header's {len(named)} fields and the file ends inside it, without a "
                                    "line break: the export was cut off (copied while it was written?); export it "
                                    "again", reason=QuarantineReason.UNREADABLE_REPORT, path=path))
    return _Rows(rows, problems, decoded.encoding, encodings)


def _format(path: Path) -> str:
    """The suffix that names an export's format, a gzipped one's inner suffix ("ris.csv.gz": ".csv")."""
    suffix = path.suffix.lower()
    return Path(path.stem).suffix.lower() if suffix == ".gz" else suffix


def _rows(path: Path, data: bytes, columns: ReportColumns, text_columns: tuple[str, ...]) -> _Rows:
    """The rows of the export ``path`` (its bytes: ``data``); a gzip-compressed one ("ris.csv.gz",
    as exports are often shipped) is read as the format its inner suffix names."""
    suffix = _format(path)
    if path.suffix.lower() == ".gz":
        data = gzip.decompress(data)
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(io.BytesIO(data)).to_pylist()
        return _Rows([(f"row {n}", row) for n, row in enumerate(table, start=1)], encoding="parquet")
    if suffix in (".xlsx", ".xlsm"):
        return _Rows(_xlsx_rows(data, text_columns, _mapped_columns(columns)), encoding="xlsx")
    if suffix == ".xls":
        raise ValueError("an Excel 97-2003 workbook (.xls) is not read; save it as .xlsx or CSV")
    if suffix not in (*_JSON_SUFFIXES, *_HL7_SUFFIXES, *_CSV_SUFFIXES):
        raise ReportError(f"unknown report export format {suffix!r}; use .csv, .tsv, .jsonl, .json, .parquet, .xlsx "
                          "or .hl7, maybe gzipped (.csv.gz)",
                          reason=QuarantineReason.UNREADABLE_REPORT, path=path)
    decoded = decode_text(data)
    if not decoded.text.strip():  # read as no rows, every study of the run lost its report unnamed
        raise ReportError("the export is empty (not even a header): the export job failed or the file was copied "
                          "before it was written; export it again", reason=QuarantineReason.UNREADABLE_REPORT,
                          path=path)
    if suffix in _JSON_SUFFIXES:
        rows, problems, unit = _json_rows(decoded.text, path)
        fallback = decoded.fallback if unit == "line" else {}
        return _Rows([(f"{unit} {n + 1}", row) for n, row in rows], problems, decoded.encoding,
                     {f"line {n + 1}": fallback.get(n, "utf-8") for n, _ in rows} if fallback else {})
    if suffix in _HL7_SUFFIXES:  # a message spans lines: its rows take the file's encoding
        rows, broken = oru_rows(decoded.text, columns)
        return _Rows(rows, [ReportError(f"message {n + 1} {reason}; fix or remove it",
                                        reason=QuarantineReason.UNREADABLE_REPORT, path=path) for n, reason in broken],
                     decoded.encoding)
    return _csv_rows(path, decoded, suffix, text_columns, _mapped_columns(columns))


#: The heading a section column's text is written under (one that sectioning reads back as that
#: section; no function word of either language, so language detection does not see it), in the
#: order the sections are composed.
_SECTION_HEADINGS: dict[str, str] = {"clinical_information": "Clinical information", "comparison": "Comparison",
                                     "technique": "Technique", "findings": "Findings", "impression": "Impression"}


def _report_text(row: dict[str, Any], columns: ReportColumns) -> PlainText:
    """The row's report as plain text: the text column, then each section column under its heading
    (an HL7 message's row is plain already: each observation was converted alone).

    >>> columns = ReportColumns(text="", sections={"impression": "I", "findings": "F"})
    >>> _report_text({"F": "No effusion. ", "I": "Normal."}, columns).text
    'Findings:\\nNo effusion.\\n\\nImpression:\\nNormal.'
    """
    if MARKUP in row:
        return PlainText(row.get(columns.text, ""), row[MARKUP])
    cells = [("", columns.text)] + [(name, columns.sections[name]) for name in _SECTION_HEADINGS
                                    if name in columns.sections]
    parts, markups = [], set()
    for name, column in cells:
        plain = to_plain_text(_cell_text(_excel_text(row.get(column) if column else None)))
        markups.update(m for m in plain.markup.split("+") if m)
        if plain.text.strip():
            parts.append(f"{_SECTION_HEADINGS[name]}:\n{plain.text.strip()}" if name else plain.text)
    return PlainText("\n\n".join(parts), "+".join(sorted(markups)))


def _warn_unlinkable(path: Path, rows: Sequence[tuple[int, Mapping[Any, Any]]], columns: ReportColumns) -> None:
    """Log the columns that link reports (accession number, patient id, study date) which no row of
    the export has: each of its reports' orphan rows says only that its cell is empty, while a
    mapping that names no column of the export (a renamed column) is what to fix."""
    names = {name for _, row in rows for name in row if isinstance(name, str)}  # CSV surplus fields: None
    absent = [c for c in (columns.accession_number, columns.patient_id, columns.study_date) if c and c not in names]
    if not rows or not absent:
        return
    by_date = columns.patient_id in names and columns.study_date in names
    if columns.accession_number in names:
        effect = "its reports link by accession number only"
    else:
        effect = "its reports link by patient and date only" if by_date else "none of its reports can link to a study"
    logger.warning("%s: no row of the export has the column%s %s (its columns: %s), so %s; name the export's "
                   "columns in reports.columns", path, "s" * (len(absent) > 1), ", ".join(map(repr, absent)),
                   sorted(names), effect)


def read_report_export(path: str | Path, columns: ReportColumns) -> ReportExport:
    """Read one export into :class:`RawReport` rows, mapping columns through ``columns``.

    A JSONL line (or item of a JSON array) that is not a JSON object, a CSV row with more
    fields than the header or a quoted field that no quote closes, a last one cut off short of its
    fields, a row whose RTF cannot be read, or an HL7 order whose report is only a document
    ctcorpus does not read (a PDF), is left out and named in ``problems``; the other rows are
    read. An export whose sections stand in columns of their own (``columns.sections``) has them
    composed into one text under their headings.

    Raises
    ------
    ReportError
        (``unreadable_report``) if the file is missing, empty, malformed, or lacks the text column (and
        every section column); any other failure reading it too, so that one export costs itself,
        never the run.

    Examples
    --------
    >>> export = read_report_export("ris.csv", ReportColumns(text="Befundtext"))  # doctest: +SKIP
    """
    path = Path(path)
    if not path.is_file():
        raise ReportError("report export not found", reason=QuarantineReason.UNREADABLE_REPORT, path=path)
    try:
        return _read_export(path, columns)
    except ReportError:
        raise
    except Exception as exc:  # noqa: BLE001 - an export can hold anything; it costs that export, not the run
        detail = str(exc) if isinstance(exc, OSError | ValueError | csv.Error) else f"{type(exc).__name__}: {exc}"
        raise ReportError(f"cannot parse report export: {detail}", reason=QuarantineReason.UNREADABLE_REPORT,
                          path=path) from exc


def _read_export(path: Path, columns: ReportColumns) -> ReportExport:
    """:func:`read_report_export` of an existing file, raising whatever reading it raises."""
    if _format(path) in _HL7_SUFFIXES:  # its fields are fixed: the mapping names a table's columns ("" where the
        # table lacks one), and an HL7 file read under it lost its patient ids or dates, or its text to section columns
        columns = ReportColumns(hl7_accession_fields=columns.hl7_accession_fields)
    text_columns = tuple(c for c in (columns.text, *columns.sections.values()) if c)
    data = path.read_bytes()  # read once: parsed and hashed
    parsed = _rows(path, data, columns, text_columns)
    rows, problems = _mapped_case(parsed.rows, _mapped_columns(columns)), parsed.problems
    # any row's keys: a JSON Lines writer leaves out a row's null fields (that row's text is empty)
    if rows and not any(set(text_columns).intersection(row) for _, row in rows):
        names = sorted({k for _, row in rows for k in row if isinstance(k, str)})  # CSV surplus fields: None
        raise ReportError(
            f"no text column {' or '.join(map(repr, text_columns)) or '(none set)'} (columns: {names}); "
            "set reports.columns.text or reports.columns.sections",
            reason=QuarantineReason.UNREADABLE_REPORT, path=path,
        )
    _warn_unlinkable(path, rows, columns)
    digest = hashlib.sha256(data).hexdigest()

    def get(row: dict[str, Any], column: str) -> str:
        return _cell_text(_excel_text(row.get(column) if column else None)).strip()

    # (column, whether its values are no date or have a time not read) -> how many, and the first few
    unread: Counter[tuple[str, bool]] = Counter()
    examples: dict[tuple[str, bool], list[str]] = defaultdict(list)  # "line 5: 'value'"

    def moment(row: dict[str, Any], where: str, column: str, *, utc: bool) -> str:
        value = _excel_text(row.get(column) if column else None)
        stamp, read = _read_time(_excel_date(value) if parsed.encoding == "xlsx" else value, utc=utc)
        # a study date's time is not used; a report time's orders the versions of a report
        if (not stamp or utc and not read) and (text := _cell_text(value).strip()):
            unread[column, bool(stamp)] += 1
            if len(examples[column, bool(stamp)]) < 5:
                examples[column, bool(stamp)].append(f"{where}: {text!r}")
        return stamp

    odd_statuses: Counter[str] = Counter()  # status column values that say nothing ctcorpus reads

    def status(row: dict[str, Any]) -> ResultStatus:
        if STATUS in row:  # an HL7 message's
            return row[STATUS]
        value = get(row, columns.result_status)
        if value and _status_key(value) not in _STATUS_VALUES:
            odd_statuses[value] += 1
        return _STATUS_VALUES.get(_status_key(value), "")

    reports: list[RawReport] = []
    for where, row in rows:
        if any(str(value).strip() for value in row.get(None) or ()):  # csv.DictReader's surplus fields
            problems.append(ReportError(f"{where} has more fields than the header (a delimiter in an unquoted "
                                        "field?); quote the field or remove the row",
                                        reason=QuarantineReason.UNREADABLE_REPORT, path=path))
            continue
        try:
            plain = _report_text(row, columns)
        except Exception as exc:  # noqa: BLE001 - striprtf fails in many ways on broken RTF (an escape
            # beyond Unicode, a font charset Python has no codec for); that costs the row, not the export
            problems.append(ReportError(f"{where}: report text is markup that cannot be read ({type(exc).__name__}: "
                                        f"{exc}); fix or remove the row", reason=QuarantineReason.UNREADABLE_REPORT,
                                        path=path))
            continue
        if row.get(UNREAD) and not plain.text.strip():  # an HL7 order whose report only a viewer reads
            problems.append(ReportError(f"{where}: the report is a document ctcorpus does not read "
                                        f"({', '.join(row[UNREAD])}), and no text; have the RIS send it as text "
                                        "(OBX of value type TX or FT) or RTF", reason=QuarantineReason.UNREADABLE_REPORT,
                                        path=path))
            continue
        reports.append(RawReport(
            path=str(path),
            location=where,
            # "4711.0" from a float column is the id other exports write: scrubbed as cited, one report id
            accession_number=without_float_zeros(get(row, columns.accession_number)),
            patient_id=without_float_zeros(get(row, columns.patient_id)),
            study_date=moment(row, where, columns.study_date, utc=False)[:8],
            report_time=moment(row, where, columns.report_time, utc=True),
            text=plain.text,
            language=language_code(get(row, columns.language)),
            patient_name=get(row, columns.patient_name),
            encoding=parsed.row_encodings.get(where, parsed.encoding),
            markup=plain.markup,
            source_sha256=digest,
            phi_values=(*(without_float_zeros(value) for column in columns.phi if (value := get(row, column))),
                        *row.get(PHI_VALUES, ())),
            result_status=status(row),
        ))
    for (column, dated), count in unread.items():
        shown = ", ".join(examples[column, dated]) + (", ..." if count > len(examples[column, dated]) else "")
        if dated:
            logger.warning("%s: %d value(s) of column %r have a time ctcorpus does not read (%s); each counts as "
                           "midnight of its day when versions of a report are ordered. Write HH:MM[:SS] after the "
                           "date, with a zone offset (+01:00) or Z if any", path, count, column, shown)
        else:
            logger.warning("%s: %d value(s) of column %r are no date ctcorpus reads (%s); a study date's report "
                           "links by accession number only, a report time's counts as undated. Write YYYY-MM-DD or "
                           "DD.MM.YYYY (a slash date with the year last is ambiguous: MM/DD or DD/MM)", path, count,
                           column, shown)
    if odd_statuses:
        logger.warning("%s: %d value(s) of column %r are no report status ctcorpus reads (%s); such a row says nothing "
                       "of which version of its report it is (see reports.columns.result_status)", path,
                       odd_statuses.total(), columns.result_status,
                       ", ".join(f"{value!r} x{count}" for value, count in sorted(odd_statuses.items())))
    return ReportExport(tuple(reports), tuple(problems))
