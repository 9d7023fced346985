"""Configuration of the reports stage: export columns, linking, PHI policy, label vocabulary."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator

from ctcorpus.config.base import StageConfig
from ctcorpus.taxonomy import Anatomy

#: The sections a report is split into (each one's headings: ``ctcorpus.reports.lexicon.HEADINGS``).
SectionName = Literal["clinical_information", "comparison", "technique", "findings", "impression"]


class ReportColumns(StageConfig):
    """Which column of a RIS export (CSV, JSONL, Parquet, Excel) holds what; "" = the export lacks it. A
    name the export lacks is matched in any case and with other separators ("BEFUNDTEXT" for
    "Befundtext", "Study Date" for "study_date"). An HL7 file's fields are fixed: of these, only
    ``hl7_accession_fields`` applies to it."""

    text: str = Field("report_text", description="Column holding the free report text ('' if the export has "
                      "only section columns).")
    sections: dict[SectionName, str] = Field(
        default_factory=dict,
        description="Optional columns that each hold one section, by section name, as CT-RATE's reports do "
        "({findings: Findings_EN, impression: Impressions_EN, ...}): the report text is composed of the text "
        "column's value, then each section's under its heading (in the order clinical_information, comparison, "
        "technique, findings, impression); empty: the report is the text column alone.",
    )
    accession_number: str = Field("accession_number", description="Column with the accession number.")
    patient_id: str = Field("patient_id", description="Column with the patient id (MRN).")
    study_date: str = Field(
        "study_date", description="Column with the study date (YYYYMMDD, YYYY-MM-DD, YYYY/MM/DD, YYYY.MM.DD, "
        "DD.MM.YYYY, DD.MM.YY or an Excel date; MM/DD/YYYY is not guessed)."
    )
    language: str = Field("language", description="Optional column with the language ('en'/'de'); '' if absent.")
    report_time: str = Field(
        "report_time",
        description="Optional column with when the report was written or signed (ISO 8601, HL7 YYYYMMDDHHMMSS or "
        "DD.MM.YYYY HH:MM, or with AM/PM or Uhr; a time with a zone offset compares in UTC, one not read counts as "
        "midnight and is logged); orders versions of one report (reports.same_accession); '' if absent.",
    )
    result_status: str = Field(
        "report_status",
        description="Optional column with the report's status, which orders the versions of one report as an HL7 "
        "feed's result status does (reports.same_accession): preliminary (P, preliminary, draft, vorläufig), final "
        "(F, final, signed, endgültig, freigegeben), corrected (C, corrected, amended, korrigiert), addendum "
        "(addendum, Nachtrag) or cancelled (X, cancelled, withdrawn, storniert: no version before it is used), in any "
        "case; another value says nothing and is logged; '' if absent.",
    )
    patient_name: str = Field(
        "patient_name",
        description="Optional column with the patient name (DICOM Family^Given), scrubbed from the text; '' if absent.",
    )
    phi: tuple[str, ...] = Field(
        (),
        description="Optional columns holding other PHI of a report (the referring physician, the radiologist, a "
        "birth name, an insurance number): each value is scrubbed wherever it stands in the report text, as the "
        "patient's name and id are. An HL7 v2 ORU or MDM file (.hl7) gives its own: the patient's other ids, aliases "
        "and birth name (PID) and the physicians who referred, ordered, attended, read, dictated, transcribed or "
        "signed (PV1, ORC, OBR, TXA).",
    )
    hl7_accession_fields: tuple[str, ...] = Field(
        ("OBR-18", "OBR-3", "TXA-15", "TXA-14"),
        description="HL7 v2 ORU and MDM files (.hl7): the fields (of MSH, EVN, PID, PV1, ORC, OBR or TXA) that hold "
        "the accession number, the first non-empty one wins (OBR-18 in IHE Radiology's v2.3.1 profile; many RIS "
        "send it as the filler order number OBR-3; a document message without an OBR as the filler or placer "
        "order number of its TXA, TXA-15 or TXA-14).",
    )

    @field_validator("hl7_accession_fields")
    @classmethod
    def _segment_fields(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = [v for v in value if not re.fullmatch(r"(?:MSH|EVN|PID|PV1|ORC|OBR|TXA)-[1-9][0-9]*", v)]
        if bad:
            raise ValueError(f"{bad}: write a field of MSH, EVN, PID, PV1, ORC, OBR or TXA as segment-number, "
                             "e.g. 'OBR-18'")
        return value


class ReportsConfig(StageConfig):
    """Settings of the reports stage (every field described)."""

    columns: ReportColumns = Field(default_factory=ReportColumns, description="Column mapping of the exports.")
    link_window_days: int = Field(
        3,
        ge=0,
        description="A report or study without an accession number links to the same patient's study (report) "
        "at most this many days away (closest wins); two different accession numbers never link.",
    )
    same_accession: Literal["latest", "join"] = Field(
        "latest",
        description="Rows with one accession number and different texts are versions of one report "
        "(preliminary, final, corrected) or addenda: 'latest' keeps the last by columns.report_time, then in "
        "export order (exports in the order given, rows in file order; a row without a time counts as older), "
        "and quarantines the others (superseded_report); 'join' joins their texts in that order (a RIS that "
        "exports each addendum as its own row). Where an HL7 feed or columns.result_status states the result "
        "status, a preliminary version comes before any other whatever its time, a correction after a final of the "
        "same time, a cancelled one (OBR-25 X, MDM T11) withdraws the versions before it (none of them is used), and "
        "'latest' keeps an addendum (MDM T06) after the version it adds to.",
    )
    dicom_sr: bool = Field(
        True,
        description="A study without a report (with text) in the exports takes the report of its DICOM SR "
        "document, if the DICOM export holds one (Basic Text, Enhanced or Comprehensive SR; the latest one).",
    )
    language: Literal["auto", "en", "de"] = Field(
        "auto", description="Report language; 'auto' detects it per report unless the export has a column, "
        "and quarantines a report in another language (unsupported_language); 'en'/'de' reads every report so."
    )
    date_policy: Literal["remove", "shift"] = Field(
        "remove",
        description="Dates in report text: 'remove' writes [DATE]; 'shift' moves them by a per-patient keyed "
        "offset (derived from the pseudonymized patient id) so intervals survive.",
    )
    date_shift_max_days: int = Field(
        365, ge=1, description="With date_policy 'shift': offsets are drawn from [-max, +max] days, never 0."
    )
    label_sections: tuple[SectionName, ...] = Field(
        ("findings", "impression"),
        min_length=1,
        description="Sections whose sentences make the report-level labels (indications must not count); a "
        "name the sectioner never gives would leave every report without labels, so only section names are accepted.",
    )
    extra_synonyms: dict[str, tuple[str, ...]] = Field(
        default_factory=dict,
        description="Extra label synonyms, label -> phrases (lowercase; a phrase matches at a word start and "
        "may carry an inflection suffix). A label not among the 18 CT-RATE labels adds a new label.",
    )
    extra_anatomy_terms: dict[str, tuple[str, ...]] = Field(
        default_factory=dict,
        description="Extra anatomy lexicon entries, Anatomy value -> phrases (matched on lowercased tokens).",
    )

    @field_validator("extra_synonyms", "extra_anatomy_terms")
    @classmethod
    def _phrases_with_words(cls, value: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        """An empty phrase ("", "  ", "~") would match at every word: refused at load time."""
        for key, phrases in value.items():
            if empty := [p for p in phrases if not p.strip().removeprefix("~").strip()]:
                raise ValueError(f"{key}: {empty} holds no word; every phrase needs one")
        return value

    @field_validator("extra_anatomy_terms")
    @classmethod
    def _known_anatomies(cls, value: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        """An unknown key would stop the reports stage mid-run; name the accepted ones at load time."""
        known = [a.value for a in Anatomy]
        unknown = sorted(set(value) - set(known))
        if unknown:
            raise ValueError(f"{unknown} are not anatomy values; use {known}")
        return value
