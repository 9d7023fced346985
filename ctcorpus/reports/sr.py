"""Reports stored in the DICOM export itself: a structured report (SR) document in the study.

A PACS export often holds the report as a Basic Text or Enhanced SR object beside the images, and
for a study the RIS export lacks it is the only report there is. Its content items are read in
document order: text as written (then converted as an export's text is, with line ends as "\\n":
DICOM text ends its lines with CR LF or a bare CR, and a bare CR hid the headings after it), a
coded finding as a statement of its meaning ("Pulmonary nodule."), a measurement with its unit
("Diameter: 12 mm."), so the label rules read a report that codes its findings as they read one
that writes them. A container named by a section
heading ("Findings", "Impressions", "History", in the lexicon) opens that section, as does a text
item so named outside any section, so sectioning reads the SR's own structure back (TID 2000
names each item under "Impressions" an "Impression" and under "Findings" a "Finding": inside a
section the name opens nothing). Observation and acquisition context (observer names, dates) and
concept modifiers are not report text and are left out; the document's language item (TID 1204)
gives the report's language, as an export's language column does. An item's image references (an
IMAGE child, or the image a SCOORD child was drawn on) are cited as a radiologist cites them,
"(series 3, image 45)", with the numbers the export's images have, so the snippet miner pairs the
finding with its slice.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

import pydicom
from pydicom.multival import MultiValue

from ctcorpus.enums import QuarantineReason
from ctcorpus.errors import ReportError
from ctcorpus.reports.lexicon import SECTION_OF_HEADING
from ctcorpus.reports.io import language_code, normalize_date, normalize_time
from ctcorpus.reports.markup import to_plain_text
from ctcorpus.reports.records import RawReport

__all__ = ["SR_STORAGE", "read_sr_report"]

#: SR storage SOP classes whose documents may hold report text.
SR_STORAGE = frozenset({
    "1.2.840.10008.5.1.4.1.1.88.11",  # Basic Text SR
    "1.2.840.10008.5.1.4.1.1.88.22",  # Enhanced SR
    "1.2.840.10008.5.1.4.1.1.88.33",  # Comprehensive SR
    "1.2.840.10008.5.1.4.1.1.88.34",  # Comprehensive 3D SR
    "1.2.840.10008.5.1.4.1.1.88.35",  # Extensible SR
})


#: Relationships that hold report content; the others hold context (observer, acquisition) or modifiers.
_CONTENT = frozenset({"CONTAINS", "HAS PROPERTIES", "INFERRED FROM"})
#: The concept of the item that states the document's language: "Language of Content Item and
#: Descendants" (DCM 121049, TID 1204), its value an RFC 5646 code ("en-US", "de").
_LANGUAGE = "121049"


def _code(item: pydicom.Dataset, sequence: str, attribute: str = "CodeMeaning") -> str:
    """An attribute of the first code in one of ``item``'s code sequences ("" without one)."""
    codes = item.get(sequence) or []
    return str(codes[0].get(attribute, "")).strip() if codes else ""


def _cited_images(item: pydicom.Dataset, image_numbers: Mapping[str, tuple[int, int]]) -> str:
    """The export's images ``item`` refers to, as a report cites them ("series 3, images 45, 47";
    "" if none): its IMAGE children and the images its SCOORD children were drawn on."""
    images: list[pydicom.Dataset] = []
    for child in item.get("ContentSequence") or []:
        if child.get("ValueType") == "IMAGE" and child.get("RelationshipType") in _CONTENT:
            images.append(child)
        elif child.get("ValueType") == "SCOORD":
            images += [g for g in child.get("ContentSequence") or [] if g.get("ValueType") == "IMAGE"]
    cited: dict[int, set[int]] = {}
    for image in images:
        for reference in image.get("ReferencedSOPSequence") or []:
            uid = str(reference.get("ReferencedSOPInstanceUID", ""))
            frames = reference.get("ReferencedFrameNumber")  # of a multi-frame image: its frames are the slices
            keys = [uid] if frames in (None, "") else [f"{uid}#{int(f)}" for f in
                                                       (frames if isinstance(frames, MultiValue) else [frames])]
            for numbers in filter(None, map(image_numbers.get, keys)):
                cited.setdefault(numbers[0], set()).add(numbers[1])
    return "; ".join(f"series {series}, image{'s' * (len(numbers) > 1)} {', '.join(map(str, sorted(numbers)))}"
                     for series, numbers in cited.items())


def _value(item: pydicom.Dataset, concept: str, image_numbers: Mapping[str, tuple[int, int]]) -> str:
    """A content item's value as report text: a TEXT item's text, a CODE item's meaning, a NUM
    item's number and unit; the concept name leads, unless it is a section's item name, and the
    images it refers to follow."""
    kind = item.get("ValueType")
    if kind == "TEXT":
        value = str(item.get("TextValue", "")).strip()
    elif kind == "CODE":
        value = _code(item, "ConceptCodeSequence")
    elif kind == "NUM" and (measured := item.get("MeasuredValueSequence")):
        unit = _code(measured[0], "MeasurementUnitsCodeSequence", "CodeValue")  # UCUM: "mm", "cm3"
        if not unit.isalnum():
            unit = _code(measured[0], "MeasurementUnitsCodeSequence")  # "[hnsf'U]": "Hounsfield unit"
        value = f"{measured[0].get('NumericValue', '')} {'' if unit == '1' else unit}".strip()  # "1": no unit
    else:
        return ""
    if not value:
        return ""
    if kind != "TEXT":
        value = (value if concept.lower() in SECTION_OF_HEADING or not concept else f"{concept}: {value}") + "."
    if cited := _cited_images(item, image_numbers):
        value = f"{value.removesuffix('.')} ({cited})" + "." * value.endswith(".")
    return value


def _paragraphs(items: pydicom.Sequence, section: str, image_numbers: Mapping[str, tuple[int, int]]) -> list[str]:
    """The report text of ``items`` and their children, in order; a heading opens a section that has text."""
    out: list[str] = []
    for item in items:
        if item.get("RelationshipType", "CONTAINS") not in _CONTENT:
            continue
        concept = _code(item, "ConceptNameCodeSequence")
        name = SECTION_OF_HEADING.get(" ".join(concept.lower().split()), "")
        opens = bool(name) and name != section and (item.get("ValueType") == "CONTAINER" or not section)
        inner = [value] if (value := _value(item, concept, image_numbers)) else []
        inner += _paragraphs(item.get("ContentSequence") or [], name if opens else section, image_numbers)
        out += [f"\n{concept}:", *inner] if opens and inner else inner
    return out


def _language(items: pydicom.Sequence) -> str:
    """The two-letter code the document's language item gives ("" without one)."""
    return next((language_code(_code(item, "ConceptCodeSequence", "CodeValue")) for item in items
                 if _code(item, "ConceptNameCodeSequence", "CodeValue") == _LANGUAGE), "")


def read_sr_report(
    path: str | Path, *, name: str = "", image_numbers: Mapping[str, tuple[int, int]] = MappingProxyType({})
) -> RawReport:
    """The report text of one SR document, with the ids that link it (its study UID first).

    ``name`` is the path recorded for it (default: ``path``): a DICOM export names folders after
    patients, so the pipeline passes the pseudonymized relative path. ``image_numbers`` maps the
    export's slices to their (series number, instance number), to cite the images a finding refers
    to: a file by its SOP Instance UID, a frame of a multi-frame file by ``"<uid>#<frame number>"``
    (:attr:`~ctcorpus.ingest.InstanceRecord.slice_id`); a reference to an image not in it, or to a
    multi-frame image without its frame, is left out.

    Raises
    ------
    ReportError
        (``unreadable_report``) if the file cannot be read (a document without text items gives
        an empty report, which the stage quarantines as such).
    """
    path = Path(path)
    try:
        data = path.read_bytes()  # read once: parsed and hashed
        ds = pydicom.dcmread(io.BytesIO(data))
        items = ds.get("ContentSequence") or []
        out, language = _paragraphs(items, "", image_numbers), _language(items)
    except Exception as exc:  # noqa: BLE001 - a broken SR fails in many ways; it costs this report only
        raise ReportError(f"the SR document cannot be read ({type(exc).__name__}: {exc})",
                          reason=QuarantineReason.UNREADABLE_REPORT, path=name or path) from None
    plain = to_plain_text("\n".join(out).strip())
    return RawReport(
        path=name or str(path), location="", accession_number=str(ds.get("AccessionNumber", "")).strip(),
        patient_id=str(ds.get("PatientID", "")).strip(), study_date=normalize_date(str(ds.get("StudyDate", ""))),
        report_time=normalize_time(f"{ds.get('ContentDate', '')}{ds.get('ContentTime', '')}"
                                   f"{ds.get('TimezoneOffsetFromUTC', '')}", utc=True), text=plain.text,
        language=language, patient_name=str(ds.get("PatientName", "")), encoding="dicom-sr", markup=plain.markup,
        source_sha256=hashlib.sha256(data).hexdigest(), study_uid=str(ds.get("StudyInstanceUID", "")).strip(),
    )
