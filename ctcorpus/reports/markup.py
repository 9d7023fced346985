"""Report text stored as RTF, HTML or with HL7 escapes, turned into the plain text the NLP reads.

Many RIS store a report as the word processor wrote it: RTF (``{\\rtf1\\ansi ... \\par}``, common in
German RIS) or HTML from a web front end (``<p>Befund:</p><br>``), and exports copy that into the
text column. Read as plain text, the control words and tags become sentences, split words
(``Pleura\\'dferguss``) hide findings from the lexicons, and a name split by markup escapes the PHI
scrubber. So the text column is converted once, when the export is read, and every later offset
refers to the plain text. RTF goes through striprtf (written for medical documents); HTML through
the standard library's parser, laid out the way a browser would show it (blocks and ``<br>`` are
line breaks, other white space collapses, entities are decoded). Text taken from HL7 v2 result
messages carries the standard's escapes (``\\.br\\`` line breaks, ``\\T\\`` for "&"), decoded from
the fixed table of HL7 v2 chapter 2 (python-hl7 decodes them only as part of a parsed message,
and an export column holds no message). Bytes (a file, a binary cell, HL7 hex data) are decoded
here too, line by line: UTF-8, else Windows-1252, else Latin-1.
"""

from __future__ import annotations

import codecs
import html
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from html.parser import HTMLParser
from itertools import islice

from striprtf.striprtf import rtf_to_text

__all__ = ["DecodedText", "PlainText", "decode_bytes", "decode_text", "to_plain_text", "unescape_hl7", "valid_unicode"]


@dataclass(frozen=True, slots=True)
class PlainText:
    """A report text without markup, and what it was converted from: "" (plain), "rtf", "html",
    "hl7", or HL7 escapes around either ("hl7+rtf")."""

    text: str
    markup: str


#: A tag that only HTML writes (``< 5 mm`` or ``p<0.05`` is no tag: a known name must follow "<");
#: two of them make a text HTML.
_HTML_TAG = re.compile(
    r"</?(?:p|br|div|span|b|i|u|em|strong|font|li|ul|ol|dl|dt|dd|table|thead|tbody|tr|td|th|h[1-6]|html|"
    r"head|body|pre|hr|sub|sup|blockquote|center|section|article|title|style|script)\b[^<>]*>",
    re.IGNORECASE,
)
#: A line break tag: one alone shows HTML (exports that flatten line breaks write ``<br>``).
_BR = re.compile(r"<br\s*/?>", re.IGNORECASE)
#: A named or numeric character reference with its semicolon (``&lt;`` ``&#252;`` ``&#xFC;``).
_ENTITY = re.compile(r"&(?:[a-zA-Z][a-zA-Z0-9]{1,30}|#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6});")
#: Characters that only steer line breaking: soft hyphen (RTF ``\\-``) and zero-width ones.
_INVISIBLE = re.compile("[\xad\u200b\u200c\u200d\u2060\ufeff]")
#: Non-breaking hyphen (RTF ``\\_``) is a hyphen to the lexicons.
_NB_HYPHEN = "\u2011"

#: Tags whose start and end break the line; the content of the skipped ones is not report text.
_BLOCKS = frozenset("p div li ul ol dl dt dd table thead tbody tr h1 h2 h3 h4 h5 h6 pre hr blockquote center "
                    "section article body html".split())
_CELLS = frozenset(("td", "th"))
_SKIPPED = frozenset(("head", "title", "style", "script"))


#: Stands for a block boundary while the text is collected: several in a row are one line break.
_BLOCK_BREAK = "\x00"


class _HtmlText(HTMLParser):
    """Collects the text of an HTML fragment as a browser lays it out (``<pre>`` keeps its lines)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping = 0
        self.pre = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIPPED:
            self.skipping += 1
        elif tag == "br":
            self.parts.append("\n")
        elif tag in _BLOCKS:
            self.parts.append(_BLOCK_BREAK)
            if tag == "pre":
                self.pre += 1
            elif tag == "li":
                self.parts.append("- ")
        elif tag in _CELLS:
            self.parts.append(" ")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "br":
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIPPED:
            self.skipping = max(self.skipping - 1, 0)
        elif tag in _BLOCKS:
            self.parts.append(_BLOCK_BREAK)
            if tag == "pre":
                self.pre = max(self.pre - 1, 0)
        elif tag in _CELLS:
            self.parts.append(" ")

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            data = data.replace(_BLOCK_BREAK, "")
            self.parts.append(data if self.pre else re.sub(r"\s+", " ", data))


def _html_to_text(text: str) -> str:
    parser = _HtmlText()
    parser.feed(text)
    parser.close()
    laid_out = "".join(parser.parts).replace("\xa0", " ")
    # block boundaries in a row, or next to a <br>, make one line break
    laid_out = re.sub(f"[ {_BLOCK_BREAK}]*{_BLOCK_BREAK}[ {_BLOCK_BREAK}]*", _BLOCK_BREAK, laid_out)
    laid_out = re.sub(f"\n?{_BLOCK_BREAK}\n?", "\n", laid_out)
    lines = (re.sub(" {2,}", " ", line).strip(" ") for line in laid_out.split("\n"))
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip("\n")


#: A UTF-16 surrogate code point: no UTF-8 (Parquet, tar) can hold one.
_SURROGATE = re.compile("[\ud800-\udfff]")


def valid_unicode(text: str) -> str:
    """``text`` with its surrogate pairs joined into one character and lone surrogates as U+FFFD,
    so that it can be written as UTF-8 (RTF writes a character beyond the BMP as two ``\\uN``).

    >>> valid_unicode("a\\ud83d\\ude00b\\ud800") == "a\\U0001f600b\\ufffd"
    True
    """
    if not _SURROGATE.search(text):
        return text
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


@dataclass(frozen=True, slots=True)
class DecodedText:
    """Export bytes as text, and how its lines (split at ``\\n``, ``\\r\\n`` or ``\\r``, as
    ``io.StringIO(text, newline="")`` reads them) were decoded."""

    text: str
    #: "utf-8" if every line is UTF-8, else the fallback the others needed ("cp1252", or "latin-1"
    #: if a line holds a byte cp1252 leaves undefined); "utf-16" for a file with its byte order mark
    #: or without one (a quarter of its bytes NUL)
    encoding: str
    #: 0-based line -> its encoding, for each line that is not UTF-8
    fallback: Mapping[int, str] = field(default_factory=dict)

    def lines_encoding(self, start: int, end: int) -> str:
        """How lines ``start`` to ``end - 1`` (one CSV row, say) were decoded: UTF-8 unless one fell back."""
        used = {self.fallback[n] for n in range(start, end) if n in self.fallback}
        return "latin-1" if "latin-1" in used else "cp1252" if used else "utf-8"


#: UTF-8 of a Latin-1 letter or sign (C2 or C3 and a continuation byte: "ü", "°") or of typographic
#: punctuation and "€" (E2 80-84 and one): read as cp1252 it is mojibake ("Ã¼", "â€“") that no text
#: holds, so a line with one that is not all UTF-8 is UTF-8 with a stray byte, not cp1252.
_UTF8_SIGN = re.compile(rb"[\xc2\xc3][\x80-\xbf]|\xe2[\x80-\x84][\x80-\xbf]")
#: The bytes cp1252 leaves undefined, read as Latin-1 (C1 controls).
_CP1252_UNDEFINED = frozenset(b"\x81\x8d\x8f\x90\x9d")
_STRAY_BYTES = "ctcorpus-stray-bytes"


def _stray_bytes(error: UnicodeError) -> tuple[str, int]:
    """A decoding error handler: the bytes that are no UTF-8 as cp1252, or Latin-1 where cp1252 has no character."""
    if not isinstance(error, UnicodeDecodeError):
        raise error
    bad = error.object[error.start:error.end]
    return "".join(chr(b) if b in _CP1252_UNDEFINED else bytes((b,)).decode("cp1252") for b in bad), error.end


codecs.register_error(_STRAY_BYTES, _stray_bytes)


def _decode_line(line: bytes) -> tuple[str, str]:
    """A line as UTF-8, else cp1252, else Latin-1; a UTF-8 line with stray bytes (one byte of a
    cp1252 dash pasted into it) keeps its UTF-8 characters: decoded whole as cp1252, "Jürgens" on
    that line became "JÃ¼rgens", a name the scrubber no longer matched."""
    try:
        return line.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    if _UTF8_SIGN.search(line):
        text = line.decode("utf-8", _STRAY_BYTES)
        return text, "latin-1" if any(ord(c) in _CP1252_UNDEFINED for c in text) else "cp1252"
    try:
        return line.decode("cp1252"), "cp1252"
    except UnicodeDecodeError:
        return line.decode("latin-1"), "latin-1"


#: How many leading bytes tell UTF-16 without a byte order mark by its NULs.
_UTF16_SAMPLE = 4096


def decode_text(data: bytes) -> DecodedText:
    """Decode export bytes line by line: UTF-8 where a line is valid UTF-8 (which nearly no text
    in another encoding is), else cp1252, else Latin-1 (a UTF-8 line with a stray byte: that byte
    alone); a UTF-8 byte order mark is dropped, and
    bytes after a UTF-16 one are UTF-16 (read as single bytes, its NULs split no line and every
    column name came out garbled), as are bytes a quarter of which are NUL (UTF-16 without the
    mark: the high byte of each ASCII character; no 8-bit text holds NULs so). Never fails.

    Why by line: a UTF-8 export with one row pasted from a cp1252 source, decoded whole as cp1252,
    turned every UTF-8 "ü" into "Ã¼": names no longer matched the DICOM names (and leaked), clinical
    words no longer matched the lexicons. The bytes ``\\n`` and ``\\r`` are never part of a UTF-8
    or cp1252 character, so lines split the same before and after decoding.

    >>> decoded = decode_text("Jürgens\\n".encode() + "Pleuraerguß\\n".encode("cp1252"))
    >>> decoded.text, decoded.encoding, dict(decoded.fallback)
    ('Jürgens\\nPleuraerguß\\n', 'cp1252', {1: 'cp1252'})
    """
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):  # Excel's "Unicode text", SQL Server's bcp -w
        return DecodedText(data.decode("utf-16", "replace"), "utf-16")  # an odd last byte (a cut file): U+FFFD
    if (head := data[:_UTF16_SAMPLE]).count(0) * 4 > len(head):  # its NULs: high bytes (LE: odd, BE: even offsets)
        codec = "utf-16-le" if head[1::2].count(0) > head[::2].count(0) else "utf-16-be"
        return DecodedText(data.decode(codec, "replace"), "utf-16")
    data = data.removeprefix(codecs.BOM_UTF8)
    try:
        return DecodedText(data.decode("utf-8"), "utf-8")
    except UnicodeDecodeError:
        pass
    parts: list[str] = []
    fallback: dict[int, str] = {}
    for n, line in enumerate(data.splitlines(keepends=True)):
        text, encoding = _decode_line(line)
        parts.append(text)
        if encoding != "utf-8":
            fallback[n] = encoding
    return DecodedText("".join(parts), "latin-1" if "latin-1" in fallback.values() else "cp1252", fallback)


def decode_bytes(data: bytes) -> tuple[str, str]:
    """Decode bytes (a cell, HL7 hex data) as :func:`decode_text` does, returning ``(text, encoding)``.

    >>> decode_bytes("Pleuraerguss, Ösophagus".encode("latin-1"))
    ('Pleuraerguss, Ösophagus', 'cp1252')
    """
    decoded = decode_text(data)
    return decoded.text, decoded.encoding


def _rtf_to_text(text: str) -> str:
    plain = valid_unicode(rtf_to_text(text, errors="replace"))
    return "\n".join(line.rstrip() for line in plain.split("\n")).strip("\n")


#: An HL7 v2 escape sequence (v2.x chapter 2): a delimiter, highlighting, hex data or a formatting command.
_HL7_ESCAPE = re.compile(
    r"\\(?:([FSTRE])|([HN])|X((?:[0-9A-Fa-f]{2})+)|\.(br|sp|in|ti|sk|ce|fi|nf)([+-]?[0-9]{0,3}))\\"
)
#: A formatting command shows HL7 alone; other escapes need a second (``C:\Daten\F\`` is a path).
_HL7_COMMAND = re.compile(r"\\\.(?:br|sp|in|ti|sk|ce|fi|nf)[+-]?[0-9]{0,3}\\")
_HL7_DELIMITERS = {"F": "|", "S": "^", "T": "&", "R": "~", "E": "\\"}


def _hl7_escape(match: re.Match[str]) -> str:
    delimiter, highlight, hex_data, command, count = match.groups()
    if highlight:  # start or end of highlighted text
        return ""
    if delimiter:
        return _HL7_DELIMITERS[delimiter]
    if hex_data:
        return decode_bytes(bytes.fromhex(hex_data))[0]
    if command == "br":
        return "\n"
    n = min(max(int(count.lstrip("+-") or 1), 1), 10)  # a skip or space of n (bounded: layout only)
    return "\n" * n if command == "sp" else " " * n if command == "sk" else ""  # indent, centre, fill: none


def unescape_hl7(text: str) -> str:
    """``text`` with its HL7 v2 escapes decoded: a field of a message (a name "M\\XDC\\LLER", an id
    with "\\T\\" for "&") reads as the report text that repeats it.

    >>> unescape_hl7("M\\\\XDC\\\\LLER"), unescape_hl7("O\\\\T\\\\BRIEN")
    ('MÜLLER', 'O&BRIEN')
    """
    return _HL7_ESCAPE.sub(_hl7_escape, text) if "\\" in text else text


def to_plain_text(text: str, *, hl7: bool = False) -> PlainText:
    """The report's plain text, converted from RTF or HTML where the export holds either.

    A text from an HL7 v2 message (ORU OBX segments) has its escapes decoded first
    (``\\.br\\`` is a line break, ``\\T\\`` "&"; it may hold RTF: ``{\\E\\rtf1...``), and the
    markup names each step ("hl7+rtf"). In a column, a formatting command or two escapes show
    such a text; ``hl7`` says it is one (an ORU file), so a single escape is decoded too. Line
    ends become ``\\n`` (HL7 and old Mac text end lines with a bare carriage return, which would
    hide headings). Soft hyphens and other invisible line-breaking characters are removed: they
    would split words for the lexicons.

    >>> to_plain_text(r"{\\rtf1\\ansi{\\fonttbl\\f0 Arial;}\\f0 Kein Pleura\\'dferguss.\\par}")
    PlainText(text='Kein Pleura\u00dferguss.', markup='rtf')
    >>> to_plain_text("<p>Findings:</p><p>No effusion &amp; no nodule.</p>")
    PlainText(text='Findings:\\nNo effusion & no nodule.', markup='html')
    >>> to_plain_text(r"Befund:\\.br\\Kein Erguss \\T\\ keine Infiltrate.")
    PlainText(text='Befund:\\nKein Erguss & keine Infiltrate.', markup='hl7')
    >>> to_plain_text("Nodule < 5 mm.\\r\\nStable.")
    PlainText(text='Nodule < 5 mm.\\nStable.', markup='')
    """
    steps = []
    shown_by = 0 if hl7 else 1  # the escape (counted from 0) that shows an HL7 text
    if "\\" in text and (_HL7_COMMAND.search(text) or next(islice(_HL7_ESCAPE.finditer(text), shown_by, None), None)):
        text = unescape_hl7(text)
        steps.append("hl7")
    if "\r" in text:  # after the escapes: hex data may hold line ends ("\X0D0A\", "\X0D\")
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if text.lstrip()[:5].lower() == "{\\rtf":
        text = _rtf_to_text(text)
        steps.append("rtf")
    elif "<" in text and (_BR.search(text) or next(islice(_HTML_TAG.finditer(text), 1, None), None)):
        text = _html_to_text(text)
        steps.append("html")
    elif "&" in text and _ENTITY.search(text):
        text = _ENTITY.sub(lambda m: html.unescape(m[0]), text)
        steps.append("html")
    if _NB_HYPHEN in text:
        text = text.replace(_NB_HYPHEN, "-")
    return PlainText(_INVISIBLE.sub("", text), "+".join(steps))
