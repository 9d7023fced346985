"""Synthetic radiology report text with exact ground truth (sentences, labels, PHI, image references).

The imaging generator calls :func:`render_report` once per study; the reports NLP stage and the
snippet miner are tested against the :class:`~ctcorpus.synth.truth.ReportTruth` it returns. The
text imitates real chest-CT reports: English or German, with or without section headings,
normal-anatomy sentences, positive, negated and uncertain findings, image references in the many
forms radiologists type, and (``phi=True``) names, dates, ids, phone numbers, addresses and ages
placed where real reports carry them.

Ground-truth conventions (the NLP stage follows the same ones):

- a sentence's ``anatomies`` are the regions its words name plus, for every label it mentions
  (whatever the state), the label's region from :data:`ctcorpus.taxonomy.LABEL_ANATOMY`;
- report-level labels aggregate sentences: positive beats uncertain beats negative; labels never
  mentioned are absent from the dict;
- a normal statement that denies a finding ("The heart is normal in size") negates its label, and is
  not written beside that finding;
- a reference's offsets cover the whole expression including its parentheses, e.g. ``(se 3, im 45)``;
  a reference without a series number is only written for findings on the primary series;
- text beside a reference that no miner may place on this study has no truth: a prior exam's reference
  ("previously 4 mm (series 3, image 40)", "in der Voruntersuchung Serie 3 Bild 40"), a pair of segments
  ("segments (6/7)") and an image on a reformat ("(coronal image 45)", which resolution quarantines).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import numpy as np

from ctcorpus.synth.truth import FindingTruth, PhiSpan, ReferenceTruth, ReportTruth, SentenceTruth
from ctcorpus.taxonomy import CT_RATE_LABELS as LABELS
from ctcorpus.taxonomy import LABEL_ANATOMY

__all__ = ["as_rtf", "phi_overlap", "render_corpus", "render_report"]

# A template is "text" or "text|anatomy,anatomy" (the regions its words name). "{loc}" is replaced
# by a location phrase whose regions are added, "{side}" by the finding's side.

_POSITIVE: dict[str, dict[str, tuple[str, ...]]] = {
    "en": {
        "medical_material": (
            "Central venous catheter with its tip in the superior vena cava|aorta",
            "Pacemaker leads in the right atrium and right ventricle|heart",
            "Status post sternotomy with sternal wires|bones",
        ),
        "arterial_wall_calcification": (
            "Atherosclerotic calcifications of the thoracic aorta|aorta",
            "Calcified atherosclerotic plaques in the aortic arch|aorta",
            "Arterial wall calcifications",
        ),
        "cardiomegaly": ("Cardiomegaly", "The heart is enlarged|heart", "Mild cardiomegaly"),
        "pericardial_effusion": ("Small pericardial effusion", "There is a pericardial effusion of 8 mm"),
        "coronary_artery_wall_calcification": (
            "Coronary artery calcifications",
            "Calcifications of the coronary arteries",
            "Extensive coronary calcification",
        ),
        "hiatal_hernia": ("Small hiatal hernia", "There is a moderate hiatus hernia"),
        "lymphadenopathy": (
            "Enlarged mediastinal lymph nodes up to 14 mm|mediastinum",
            "Mediastinal lymphadenopathy|mediastinum",
            "Hilar lymphadenopathy on the {side}|mediastinum",
        ),
        "emphysema": ("Centrilobular emphysema {loc}", "Paraseptal emphysema", "Emphysema {loc}"),
        "atelectasis": ("Subsegmental atelectasis {loc}", "Linear atelectasis {loc}", "Atelectasis {loc}"),
        "lung_nodule": (
            "A 6 mm solid nodule {loc}",
            "Pulmonary nodule measuring 4.5 mm {loc}|lungs",
            "There is a 7 mm nodule {loc}",
        ),
        "lung_opacity": ("Ground-glass opacity {loc}", "Patchy opacities {loc}", "Ground glass opacities {loc}"),
        "pulmonary_fibrotic_sequela": (
            "Fibrotic sequelae {loc}",
            "Fibrotic changes {loc}",
            "Post-inflammatory fibrotic bands {loc}",
        ),
        "pleural_effusion": (
            "Small {side} pleural effusion|pleura",
            "Moderate pleural effusion on the {side}|pleura",
            "Pleural effusion on the {side}|pleura",
        ),
        "mosaic_attenuation_pattern": ("Mosaic attenuation {loc}", "Mosaic attenuation pattern of the lungs|lungs"),
        "peribronchial_thickening": (
            "Peribronchial thickening {loc}",
            "Peribronchial wall thickening {loc}",
        ),
        "consolidation": ("Consolidation {loc}", "Dense consolidation {loc}", "Airspace consolidation {loc}"),
        "bronchiectasis": ("Cylindrical bronchiectasis {loc}", "Bronchiectasis {loc}"),
        "interlobular_septal_thickening": (
            "Interlobular septal thickening {loc}",
            "Smooth interlobular septal thickening {loc}",
        ),
    },
    "de": {
        "medical_material": (
            "ZVK mit Spitze in der V. cava superior|aorta",
            "Herzschrittmacher mit Sonden im rechten Vorhof und rechten Ventrikel|heart",
            "Z. n. Sternotomie mit Drahtcerclagen|bones",
        ),
        "arterial_wall_calcification": (
            "Arteriosklerotische Wandverkalkungen der thorakalen Aorta|aorta",
            "Kalzifizierende Aortensklerose|aorta",
            "Arterielle Wandverkalkungen",
        ),
        "cardiomegaly": ("Kardiomegalie", "Das Herz ist vergrößert|heart", "Leichte Kardiomegalie"),
        "pericardial_effusion": ("Schmaler Perikarderguss", "Perikarderguss von 8 mm"),
        "coronary_artery_wall_calcification": (
            "Koronarverkalkungen",
            "Verkalkungen der Koronararterien",
            "Ausgeprägte Koronarsklerose",
        ),
        "hiatal_hernia": ("Kleine axiale Hiatushernie", "Hiatushernie"),
        "lymphadenopathy": (
            "Vergrößerte mediastinale Lymphknoten bis 14 mm|mediastinum",
            "Mediastinale Lymphadenopathie|mediastinum",
            "Hiläre Lymphadenopathie {side}|mediastinum",
        ),
        "emphysema": ("Zentrilobuläres Emphysem {loc}", "Paraseptales Lungenemphysem|lungs", "Emphysem {loc}"),
        "atelectasis": ("Subsegmentale Atelektase {loc}", "Streifige Atelektasen {loc}", "Atelektase {loc}"),
        "lung_nodule": (
            "Solider Rundherd von 6 mm {loc}",
            "Pulmonaler Nodulus von 4,5 mm {loc}",
            "7 mm messender Lungenrundherd {loc}|lungs",
        ),
        "lung_opacity": ("Milchglastrübung {loc}", "Fleckige Verdichtungen {loc}", "Milchglasverdichtung {loc}"),
        "pulmonary_fibrotic_sequela": (
            "Fibrotische Residuen {loc}",
            "Narbig-fibrotische Veränderungen {loc}",
            "Postentzündliche fibrotische Stränge {loc}",
        ),
        "pleural_effusion": (
            "Kleiner Pleuraerguss {side}|pleura",
            "Mäßiger Pleuraerguss {side}|pleura",
            "Pleuraerguss {side}|pleura",
        ),
        "mosaic_attenuation_pattern": ("Mosaikperfusion {loc}", "Mosaikmuster der Lunge|lungs"),
        "peribronchial_thickening": ("Peribronchiale Wandverdickung {loc}", "Peribronchiale Verdickungen {loc}"),
        "consolidation": ("Konsolidierung {loc}", "Dichte Konsolidierung {loc}", "Konsolidierungen {loc}"),
        "bronchiectasis": ("Zylindrische Bronchiektasen {loc}", "Bronchiektasen {loc}"),
        "interlobular_septal_thickening": (
            "Interlobuläre Septenverdickung {loc}",
            "Verdickte interlobuläre Septen {loc}",
        ),
    },
}

# Bare names of each label for negated / uncertain sentences ("No {x}.", "Kein {x}.").
_NAME: dict[str, dict[str, tuple[str, ...]]] = {
    "en": {
        "medical_material": ("indwelling lines or tubes",),
        "arterial_wall_calcification": ("atherosclerotic calcification of the aorta|aorta",),
        "cardiomegaly": ("cardiomegaly",),
        "pericardial_effusion": ("pericardial effusion",),
        "coronary_artery_wall_calcification": ("coronary artery calcification", "coronary calcification"),
        "hiatal_hernia": ("hiatal hernia", "hiatus hernia"),
        "lymphadenopathy": (
            "mediastinal lymphadenopathy|mediastinum", "lymphadenopathy", "enlarged lymph nodes|mediastinum",
        ),
        "emphysema": ("emphysema",),
        "atelectasis": ("atelectasis",),
        "lung_nodule": ("pulmonary nodule|lungs", "suspicious pulmonary nodules|lungs", "lung nodule|lungs"),
        "lung_opacity": ("ground-glass opacity", "pulmonary opacity|lungs"),
        "pulmonary_fibrotic_sequela": ("fibrotic changes",),
        "pleural_effusion": ("pleural effusion|pleura", "pleural effusions|pleura"),
        "mosaic_attenuation_pattern": ("mosaic attenuation",),
        "peribronchial_thickening": ("peribronchial thickening",),
        "consolidation": ("consolidation", "focal consolidation", "pneumonic consolidation"),
        "bronchiectasis": ("bronchiectasis",),
        "interlobular_septal_thickening": ("interlobular septal thickening",),
    },
    "de": {
        "medical_material": ("Fremdmaterial",),
        "arterial_wall_calcification": ("Aortensklerose|aorta",),
        "cardiomegaly": ("Kardiomegalie",),
        "pericardial_effusion": ("Perikarderguss",),
        "coronary_artery_wall_calcification": ("Koronarsklerose", "Koronarverkalkungen"),
        "hiatal_hernia": ("Hiatushernie",),
        "lymphadenopathy": ("Lymphadenopathie", "vergrößerten Lymphknoten|mediastinum"),
        "emphysema": ("Emphysem", "Lungenemphysem|lungs"),
        "atelectasis": ("Atelektase", "Atelektasen"),
        "lung_nodule": ("Rundherd", "suspekten Lungenrundherde|lungs", "pulmonalen Noduli"),
        "lung_opacity": ("Milchglastrübung", "Verdichtung"),
        "pulmonary_fibrotic_sequela": ("fibrotischen Veränderungen",),
        "pleural_effusion": ("Pleuraerguss|pleura", "Pleuraergüsse|pleura"),
        "mosaic_attenuation_pattern": ("Mosaikperfusion",),
        "peribronchial_thickening": ("peribronchiale Wandverdickung",),
        "consolidation": ("Konsolidierung", "pneumonische Konsolidierung", "Infiltrat"),
        "bronchiectasis": ("Bronchiektasen",),
        "interlobular_septal_thickening": ("interlobuläre Septenverdickung",),
    },
}

_NEGATED: dict[str, tuple[str, ...]] = {
    "en": (
        "No {x}",
        "There is no {x}",
        "No evidence of {x}",
        "Negative for {x}",
        "{X} is not seen",
        "Free of {x}",
        "No signs of {x}",
    ),
    "de": ("Kein Nachweis von {x}", "Kein Anhalt für {x}", "Keine {x}", "{X} nicht nachweisbar", "Ohne {x}"),
}
_UNCERTAIN: dict[str, tuple[str, ...]] = {
    "en": (
        "Possible {x}",
        "Probable {x}",
        "Findings may represent {x}",
        "{X} cannot be excluded",
        "Findings suspicious for {x}",
        "Questionable {x}",
    ),
    "de": ("Fraglich {x}", "V.a. {x}", "Verdacht auf {x}", "{X} nicht auszuschließen", "Befund suspekt auf {x}"),
}
# Two labels in one sentence: a negated one and, after a scope terminator, a positive one.
_NEG_BUT_POS: dict[str, tuple[str, ...]] = {
    "en": ("No {x}, but {y}", "No {x}; however, {y}"),
    "de": ("Kein Nachweis von {x}, jedoch {y}", "Kein Anhalt für {x}, aber {y}"),
}
# The same with a comma alone, for a positive finding placed in the lung or graded by its degree or
# size: the location or grade says it is no further item of the negated list ("Kein Pleuraerguss,
# Rundherd im rechten Unterlappen", "No pleural effusion, mild cardiomegaly").
_NEG_COMMA_POS: dict[str, tuple[str, ...]] = {
    "en": ("No {x}, {y}",),
    "de": ("Kein Nachweis von {x}, {y}", "Kein Anhalt für {x}, {y}"),
}
# How the graded findings of _POSITIVE start ("Small left pleural effusion", "Leichte Kardiomegalie").
_GRADED: dict[str, tuple[str, ...]] = {
    "en": ("Small ", "Mild ", "Moderate ", "Extensive "),
    "de": ("Kleine ", "Kleiner ", "Leichte ", "Schmaler ", "Ausgeprägte ", "Mäßiger "),
}

_NORMAL: dict[str, tuple[str, ...]] = {
    "en": (
        "The heart is normal in size|heart",
        "The thoracic aorta is normal in caliber|aorta",
        "The trachea and main bronchi are patent|airways",
        "The thyroid gland is unremarkable|thyroid",
        "The esophagus is unremarkable|esophagus",
        "No suspicious osseous lesions|bones",
        "The visualized upper abdomen is unremarkable|abdomen",
        "The liver and spleen are normal|abdomen",
        "The chest wall soft tissues are unremarkable|chest_wall",
        "Degenerative changes of the thoracic spine|bones",
        "No pneumothorax|pleura",
        "The lungs are well aerated|lungs",
        "The central airways are clear|airways",
        "Both adrenal glands are normal|abdomen",
        "The breast tissue is unremarkable|chest_wall",
        "No mediastinal or hilar mass is identified|mediastinum",
        "The pulmonary vasculature is within normal limits|lungs",
        "Mild degenerative changes of the thoracic spine without acute fracture|bones",
        "The central tracheobronchial tree is patent|airways",
        "There is no suspicious axillary lymph node|chest_wall,mediastinum",
        "The cardiac chambers are normal in size|heart",
    ),
    "de": (
        "Herz normal groß|heart",
        "Die thorakale Aorta ist normkalibrig|aorta",
        "Trachea und Hauptbronchien frei|airways",
        "Schilddrüse unauffällig|thyroid",
        "Ösophagus unauffällig|esophagus",
        "Keine suspekten ossären Läsionen|bones",
        "Miterfasste Oberbauchorgane unauffällig|abdomen",
        "Leber und Milz regelrecht|abdomen",
        "Thoraxwand unauffällig|chest_wall",
        "Degenerative Veränderungen der Brustwirbelsäule|bones",
        "Kein Pneumothorax|pleura",
        "Lunge regelrecht belüftet|lungs",
        "Zentrale Atemwege frei|airways",
        "Nebennieren beidseits schlank|abdomen",
        "Mammae unauffällig|chest_wall",
        "Keine mediastinale oder hiläre Raumforderung|mediastinum",
        "Die Lungengefäße sind regelrecht konfiguriert|lungs",
        "Degenerative Veränderungen der Brustwirbelsäule ohne Frakturnachweis|bones",
        "Das zentrale Tracheobronchialsystem ist frei|airways",
        "Keine suspekten axillären Lymphknoten|chest_wall,mediastinum",
        "Die Herzhöhlen sind normal weit|heart",
        "Regelrechte Darstellung der thorakalen Aorta und der supraaortalen Gefäße|aorta",
    ),
}

#: The normal statements above that deny a finding, with its label (the NLP stage reads a normal
#: heart size as no cardiomegaly).
_NORMAL_DENIES = {"The heart is normal in size": "cardiomegaly", "Herz normal groß": "cardiomegaly"}

_LUNG_LOC: dict[str, dict[str, tuple[str, ...]]] = {
    "en": {
        "right": ("in the right upper lobe", "in the right lower lobe", "in the middle lobe", "in the right lung"),
        "left": ("in the left upper lobe", "in the left lower lobe", "in the lingula", "in the left lung"),
        "": ("in both lungs", "in both lower lobes", "bilaterally in the lungs"),
    },
    "de": {
        "right": ("im rechten Oberlappen", "im rechten Unterlappen", "im Mittellappen", "der rechten Lunge"),
        "left": ("im linken Oberlappen", "im linken Unterlappen", "in der Lingula", "der linken Lunge"),
        "": ("in beiden Lungen", "beidseits basal in der Lunge", "in beiden Unterlappen"),
    },
}
_SIDE: dict[str, dict[str, str]] = {
    "en": {"right": "right", "left": "left", "": "both sides"},
    "de": {"right": "rechts", "left": "links", "": "beidseits"},
}

_HEADINGS: dict[str, dict[str, tuple[str, ...]]] = {
    "en": {
        "clinical_information": ("CLINICAL INFORMATION:", "Clinical information:", "Indication:", "History:"),
        "technique": ("TECHNIQUE:", "Technique:"),
        "comparison": ("COMPARISON:", "Comparison:"),
        "findings": ("FINDINGS:", "Findings:"),
        "impression": ("IMPRESSION:", "Impression:", "Conclusion:"),
    },
    "de": {
        "clinical_information": ("Klinische Angaben:", "Fragestellung:", "Indikation:"),
        "technique": ("Technik:", "TECHNIK:"),
        "comparison": ("Vergleich:", "Voruntersuchung:"),
        "findings": ("Befund:", "BEFUND:"),
        "impression": ("Beurteilung:", "BEURTEILUNG:", "Zusammenfassung:"),
    },
}
#: Indications; some say what the patient is after "Patient" or "Pat.", which is no name ("Pat. Raucher").
_CLINICAL: dict[str, tuple[str, ...]] = {
    "en": ("Chronic cough", "Dyspnea on exertion", "Staging examination", "Fever of unknown origin",
           "Patient smoker, 40 pack-years, chronic cough"),
    "de": ("Chronischer Husten", "Belastungsdyspnoe", "Staging", "Fieber unklarer Genese",
           "Pat. Raucher, 40 py, Belastungsdyspnoe", "Patientin Nichtraucherin, Diabetikerin, chronischer Husten",
           "Patient Dialysepatient, Fieber unklarer Genese"),
}
_TECHNIQUE: dict[str, tuple[str, ...]] = {
    "en": (
        "Non-contrast CT of the chest with thin-section reconstructions",
        "Low-dose CT of the chest without intravenous contrast",
        "Contrast-enhanced CT of the chest in the venous phase",
    ),
    "de": (
        "Native CT des Thorax mit Dünnschichtrekonstruktionen",
        "Low-Dose-CT des Thorax ohne Kontrastmittel",
        "CT des Thorax nach i.v. Kontrastmittelgabe in venöser Phase",
    ),
}
_NO_COMPARISON: dict[str, tuple[str, ...]] = {
    "en": ("None available", "No prior imaging available"),
    "de": ("Keine Voraufnahmen vorliegend", "Keine Voruntersuchung vorliegend"),
}
_NORMAL_IMPRESSION: dict[str, tuple[str, ...]] = {
    "en": ("No acute cardiopulmonary abnormality", "Otherwise unremarkable CT of the chest"),
    "de": ("Kein akuter kardiopulmonaler Befund", "Im Übrigen altersentsprechender Befund"),
}

_FIRST = ("John", "Mary", "Peter", "Anna", "Hans", "Maria", "Thomas", "Laura", "Klaus", "Sarah", "Jürgen")
#: Doctors' names, with the spellings a name pattern must take whole: hyphens, apostrophes, particles.
_LAST = ("Smith", "Meier", "Schmidt", "Johnson", "Müller", "Müller-Lüdenscheidt", "O'Brien", "Wagner", "Hoffmann",
         "von der Leyen")
_STREETS = ("Hauptstraße 12", "Lindenweg 3a", "Goethestraße 45", "12 Main Street", "48 Oak Avenue")
_CITIES = ("10115 Berlin", "80331 München", "Springfield, IL 62704", "Boston, MA 02115")
#: Whole addresses of the forms a street and a city above do not make: Swiss and Austrian postcodes of
#: four digits (also with the country's letter), the street word apart, a PO box, a US apartment or suite,
#: the postcode and town before the street, a UK house number with its letter and a UK postcode.
_ADDRESSES = ("Bahnhofstrasse 5, 8001 Zürich", "Mariahilfer Straße 12, 1060 Wien", "Lange Gasse 3, A-1080 Wien",
              "Postfach 1234, 8001 Zürich", "123 Main St., Apt 4B, Springfield, IL 62704",
              "48 Oak Avenue, Suite 210, Boston, MA 02115", "80331 München, Marienplatz 8",
              "8001 Zürich, Bahnhofstrasse 12", "221B Baker Street, London NW1 6XE")
#: Family names a referrer's name in capitals takes, family name first ("JONES, MARY", "VON DER LEYEN,
#: MARY"): no apostrophe, which the scrubber does not read there ("O'BRIEN, MARY").
_PLAIN_LAST = ("Smith", "Meier", "Schmidt", "Johnson", "Müller", "Müller-Lüdenscheidt", "Wagner", "Hoffmann",
               "von der Leyen")
#: Numbers a header gives besides the patient id, by language: the label and the number ("#" a digit).
#: UK NHS numbers in groups, hospital and unit numbers, US chart, case and account numbers, accession
#: numbers with leading zeros; Swiss AHV and Austrian SV numbers, report, examination and case numbers;
#: and a link to the study's images without its scheme, seeded as an address (as the scrubber reads a link).
_MORE_IDS: dict[str, tuple[tuple[str, str], ...]] = {
    "en": (("NHS number ", "### ### ####"), ("NHS No: ", "### ### ####"), ("Hospital No.: ", "#####"),
           ("Unit No: ", "######"), ("Chart #: ", "#####"), ("Case #: ", "####"), ("Acct: ", "#####"),
           ("Accession: ", "00######"), ("Images: ", "pacs.hospital.org/viewer/######")),
    "de": (("AHV-Nr. ", "756.####.####.##"), ("SV-Nummer: ", "#### ######"), ("Befundnummer: ", "#####"),
           ("Untersuchungsnummer ", "####-#"), ("Fall-Nummer: ", "00#####"),
           ("Bilder: ", "pacs.klinikum-x.de/viewer?id=#####")),
}
#: How a doctor was told, and where: phone numbers (German, also with the area code in brackets or
#: after "00", US, also with an extension, and Swiss ones in groups of two) and an e-mail address
#: written against spam.
_CONTACTS = (("phone", "0176 1234567"), ("phone", "+49 30 12345678"), ("phone", "(617) 555-0143"),
             ("phone", "089/4400-52311"), ("phone", "+41 44 123 45 67"), ("phone", "044 123 45 67"),
             ("phone", "(617) 555-0143 x123"), ("phone", "+49 (30) 123456"), ("phone", "(0 30) 12 34 56"),
             ("phone", "0049 30 123456"), ("address", "john(at)klinik.de"))
#: How each of ``_CONTACTS`` was used, by language.
_TOLD_BY = {"en": {"phone": " was informed by phone at ", "address": " was informed by e-mail at "},
            "de": {"phone": " wurde telefonisch informiert unter ", "address": " wurde per E-Mail informiert unter "}}
#: Zones after the time of day the doctor was told: an offset, or a zone's name.
_ZONES = ("+01:00", "MEZ", "UTC", "+0200", "CET")
#: Labels of the short number of a bleep, pager or DECT phone, by language.
_SHORT_LINES = {"en": ("bleep ", "pager "), "de": ("Pieper ", "DECT ", "Rufnummer ")}
#: Roles of a signature block's lines, by language (the name follows after a colon).
_SIGNATURE_ROLES = {
    "en": ("Reading physician", "Interpreting physician", "Supervising physician", "Tech", "Approved",
           "Dictating physician", "Signature", "Physician"),
    "de": ("Vidiert", "Validiert durch", "Freigegeben durch", "Elektronisch signiert", "Unterschrieben von"),
}
_MONTHS = {
    "en": ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December"),
    "de": ("Januar", "Februar", "März", "April", "Mai", "Juni", "Juli", "August", "September", "Oktober",
           "November", "Dezember"),
}
_AUSTRIAN_MONTHS = ("Jänner", "Feber")


@dataclass(slots=True)
class _Writer:
    """Accumulates text and the offsets of sentences, PHI spans and references while writing."""

    parts: list[str] = field(default_factory=list)
    length: int = 0
    sentence_start: int = 0
    sentences: list[SentenceTruth] = field(default_factory=list)
    phi: list[PhiSpan] = field(default_factory=list)
    references: list[ReferenceTruth] = field(default_factory=list)

    def add(self, text: str) -> None:
        self.parts.append(text)
        self.length += len(text)

    def add_phi(self, text: str, kind: str) -> None:
        self.phi.append(PhiSpan(start=self.length, end=self.length + len(text), kind=kind))
        self.add(text)

    def add_reference(self, text: str, series: int | None, images: tuple[int, ...], z: tuple[float, ...],
                      label: str) -> None:
        self.references.append(
            ReferenceTruth(start=self.length, end=self.length + len(text), text=text, series_number=series,
                           image_numbers=images, z_mm=z, label=label)
        )
        self.add(text)

    def begin(self) -> None:
        self.sentence_start = self.length

    def end(self, section: str, anatomies: set[str], labels: dict[str, str]) -> None:
        """Close the sentence written since :meth:`begin` (its text must end with the period, but for a
        signature block's last name)."""
        anatomies = anatomies | {LABEL_ANATOMY[label].value for label in labels}
        self.sentences.append(
            SentenceTruth(start=self.sentence_start, end=self.length, section=section,
                          anatomies=tuple(sorted(anatomies)), labels=dict(labels))
        )

    def text(self) -> str:
        return "".join(self.parts)


def _pick(rng: np.random.Generator, options: Sequence[str]) -> str:
    return options[int(rng.integers(len(options)))]


def _split(template: str) -> tuple[str, set[str]]:
    """Template "text|a,b" -> ("text", {"a", "b"})."""
    text, _, anatomies = template.partition("|")
    return text, set(filter(None, anatomies.split(",")))


def _fill(rng: np.random.Generator, template: str, language: str, side: str) -> tuple[str, set[str]]:
    text, anatomies = _split(template)
    if "{loc}" in text:
        text = text.replace("{loc}", _pick(rng, _LUNG_LOC[language][side]))
        anatomies.add("lungs")
    return text.replace("{side}", _SIDE[language][side]), anatomies


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def _digits(rng: np.random.Generator, pattern: str) -> str:
    """``pattern`` with each "#" a digit, the first not 0: leading zeros are the pattern's own ("00######")."""
    count = pattern.count("#")
    digits = iter(str(int(rng.integers(10 ** (count - 1), 10 ** count))))
    return "".join(next(digits) if ch == "#" else ch for ch in pattern)


def _month_name(rng: np.random.Generator, value: date, language: str) -> str:
    """The month's name; in German at times as Austrians write January and February ("Jänner", "Feber")."""
    if language == "de" and value.month <= len(_AUSTRIAN_MONTHS) and rng.random() < 0.3:
        return _AUSTRIAN_MONTHS[value.month - 1]
    return _MONTHS[language][value.month - 1]


def _format_date(rng: np.random.Generator, value: date, language: str) -> str:
    """One of the date spellings seen in reports (numeric US/German/ISO, year first with slashes,
    day-month-year with hyphens, or with the month name)."""
    month = _month_name(rng, value, language)
    forms = (
        f"{value.month:02d}/{value.day:02d}/{value.year}",
        f"{value.isoformat()}",
        f"{value.day:02d}.{value.month:02d}.{value.year}",
        f"{value.day}. {month} {value.year}" if language == "de" else f"{month} {value.day}, {value.year}",
        f"{value.year}/{value.month:02d}/{value.day:02d}",
        # on every other day as Oracle and legacy RIS exports write it, "05-JAN-24"
        f"{value.day:02d}-{month[:3].upper()}-{value.year % 100:02d}" if _every(2, value)
        else f"{value.day:02d}-{month[:3]}-{value.year}",
    )
    return _pick(rng, forms)


def _month_and_year(value: date) -> str:
    """The month with its year, as an English comparison writes the prior's date when it gives no
    day, or with its day and no year: "March, 2021", "Mar-2021", "Mar-21", "Dec '21", "12-Mar"
    (chosen by the date, as :func:`_every` is)."""
    month = _MONTHS["en"][value.month - 1]
    forms = (f"{month}, {value.year}", f"{month[:3]}-{value.year}", f"{month[:3]}-{value.year % 100:02d}",
             f"{month[:3]} '{value.year % 100:02d}", f"{value.day}-{month[:3]}")
    return forms[value.toordinal() % len(forms)]


def _every(n: int, value: date) -> bool:
    """Whether ``value`` is one of every ``n`` days. A spelling chosen by the date draws no random
    number, so each seed's reports stay as they were but for the dates respelled."""
    return value.toordinal() % n == 0


def _reference(
    rng: np.random.Generator, writer: _Writer, finding: FindingTruth, language: str, primary: int,
    z_of_instance: Callable[[int, int], float] | None,
) -> None:
    """Write an image reference for ``finding`` in one of many real-world forms."""
    s, i = finding.series_number, finding.instance_number
    if z_of_instance is not None and i > 2 and rng.random() < 0.2:
        a, b = i - 2, i + 2
        images = tuple(range(a, b + 1))
        z = tuple(z_of_instance(s, n) for n in images)
        form = _pick(rng, ("(series {s}, images {a}-{b})", "(se {s}, im {a}-{b})") if language == "en"
                     else ("(Serie {s}, Bilder {a}-{b})", "(Se. {s}/Bild {a}-{b})"))
        writer.add_reference(form.format(s=s, a=a, b=b), s, images, z, finding.label)
        return
    if s == primary and rng.random() < 0.1:
        form = "(image {i})" if language == "en" else "(Bild {i})"
        writer.add_reference(form.format(i=i), None, (i,), (finding.z_mm,), finding.label)
        return
    # [the reference] and the text around it that is none (see the module's conventions); j: the prior's image
    forms = (
        ("(series {s}, image {i})", "(se {s}, im {i})", "({s}:{i})", "on image {i} of series {s}",
         "(Se. {s}/Im. {i})", "(series {s} image {i})", "in [series {s} on image {i}]", "[series {s} (image {i})]",
         "[(series {s}, image {i})], previously 4 mm (series {s}, image {j})",
         "[(series {s}, image {i})], 4 mm on the prior CT (series {s}, image {j})",
         "[(series {s}, image {i})] near segments (6/7)", "[(series {s}, image {i})] (coronal image {i})")
        if language == "en"
        else ("(Serie {s}, Bild {i})", "(Se. {s}/Bild {i})", "({s}:{i})", "in Serie {s} Bild {i}", "(Se {s}, Bild {i})",
              "in [Serie {s} im Bild {i}]", "[(Serie {s}, Bild {i})], zuvor Serie {s} Bild {j}",
              "[(Serie {s}, Bild {i})], in der Voruntersuchung Serie {s} Bild {j}",
              "[(Serie {s}, Bild {i})] (koronar Bild {i})")
    )
    before, _, rest = _pick(rng, forms).format(s=s, i=i, j=i + 7).rpartition("[")
    reference, _, after = rest.partition("]")
    writer.add(before)
    writer.add_reference(reference, s, (i,), (finding.z_mm,), finding.label)
    writer.add(after)


def _age(birth_date: str, study_date: str) -> int | None:
    try:
        born = date(int(birth_date[:4]), int(birth_date[4:6]), int(birth_date[6:8]))
        seen = date(int(study_date[:4]), int(study_date[4:6]), int(study_date[6:8]))
    except ValueError:
        return None
    return seen.year - born.year - ((seen.month, seen.day) < (born.month, born.day))


def _study_day(study_date: str) -> date:
    return date(int(study_date[:4]), int(study_date[4:6]), int(study_date[6:8]))


def render_report(
    rng: np.random.Generator,
    *,
    accession_number: str,
    patient_id: str,
    patient_name: str,
    birth_date: str,
    study_date: str,
    language: str,
    findings: Sequence[FindingTruth],
    primary_series_number: int,
    secondary_series_number: int,
    phi: bool,
    study_uid: str,
    z_of_instance: Callable[[int, int], float] | None = None,
) -> ReportTruth:
    """Render one chest-CT report for a study's findings, with its exact ground truth.

    Every positive finding is described with an image reference to its series and slice; other
    labels are negated, called uncertain or left unmentioned at random, so label, negation-scope,
    sentence, section, PHI and reference extraction can all be scored against the returned truth.

    Parameters
    ----------
    rng:
        The only source of randomness (same seed, same text).
    accession_number, patient_id, study_uid:
        Linking keys recorded in the truth (``study_uid`` "" for an orphan report).
    patient_name, birth_date:
        DICOM-style ``Family^Given`` and ``YYYYMMDD``; written into the text only with ``phi``.
    study_date:
        ``YYYYMMDD``.
    language:
        ``"en"`` or ``"de"``.
    findings:
        The phantom's findings; each carries the series/instance/z its reference points at.
    primary_series_number, secondary_series_number:
        The study's axial and second-reconstruction series (named in the technique section).
    phi:
        Seed names, dates, ids, phone numbers, addresses and ages (recorded as PHI spans).
    z_of_instance:
        ``(series, instance) -> z`` in mm; when given, some references cite an image range.

    Returns
    -------
    ReportTruth

    Examples
    --------
    >>> truth = render_report(np.random.default_rng(0), accession_number="A1", patient_id="P1",
    ...     patient_name="Smith^John", birth_date="19500101", study_date="20240105", language="en",
    ...     findings=(), primary_series_number=2, secondary_series_number=3, phi=False, study_uid="1.2")
    >>> all(state != "positive" for state in truth.labels.values())  # no findings, nothing positive
    True
    """
    if language not in ("en", "de"):
        raise ValueError(f"language must be 'en' or 'de', not {language!r}")
    lang = language
    w = _Writer()
    headed = rng.random() < 0.8
    caps_body = headed and rng.random() < 0.3
    family, _, given = patient_name.partition("^")
    full_name = f"{given} {family}".strip() if given else family
    day = _study_day(study_date)

    def heading(section: str) -> None:
        if headed:
            if w.length:
                w.add("\n\n")
            w.add(_pick(rng, _HEADINGS[lang][section]))
            w.add("\n" if rng.random() < 0.6 else " ")
        elif w.length:
            w.add(" ")

    def sentence(section: str, text: str, anatomies: set[str], labels: dict[str, str]) -> None:
        if w.length and not w.text().endswith(("\n", " ")):
            w.add(" ")
        w.begin()
        w.add(text + ".")
        w.end(section, anatomies, labels)

    # PHI header line (real exports often start with it); before any heading it counts as
    # clinical information, in a report without headings as findings (as the NLP stage sees it)
    preamble = "clinical_information" if headed else "findings"
    if phi and rng.random() < 0.7:
        w.begin()
        form = rng.random()
        star = lang == "de" and bool(given) and 0.1 <= form < 0.2  # "Pat.: Hans Müller *01.02.1940"
        if form < 0.1:  # a letter's subject line: the name, then the birth date
            w.add("Re: " if lang == "en" else "Betrifft: ")
            w.add_phi(full_name, "name")
        elif star:
            w.add("Pat.: ")
            w.add_phi(full_name, "name")
        else:
            if lang == "en" and given and form < 0.2:  # with a middle initial: "Patient: Smith, John A."
                w.add("Patient: ")
                w.add_phi(f"{family}, {given} {_pick(rng, 'ABJKLMPRST')}.", "name")
            elif lang == "en":
                w.add("Patient ")
                w.add_phi(full_name, "name")
            else:
                w.add("Patient: ")
                w.add_phi(f"{family}, {given}" if given else family, "name")
            w.add(", MRN " if lang == "en" else ", Pat.-ID ")
            w.add_phi(patient_id, "id")
        w.add(" *" if star else ", DOB " if lang == "en" else ", geb. ")
        try:
            born = date(int(birth_date[:4]), int(birth_date[4:6]), int(birth_date[6:8]))
            w.add_phi(f"{born.day:02d}.{born.month:02d}.{born.year}" if star else _format_date(rng, born, lang), "date")
        except ValueError:
            w.add_phi(birth_date, "date")
        if rng.random() < 0.2:
            label, pattern = _MORE_IDS[lang][int(rng.integers(len(_MORE_IDS[lang])))]
            w.add(f", {label}")
            w.add_phi(_digits(rng, pattern), "address" if "/" in pattern else "id")
        w.add(".")
        w.end(preamble, set(), {})
        if rng.random() < 0.5:
            address = _pick(rng, _ADDRESSES) if rng.random() < 0.2 else f"{_pick(rng, _STREETS)}, {_pick(rng, _CITIES)}"
            if rng.random() < 0.2:  # a referral header: the referrer, on the next line the referrer's address
                w.add("\n")
                w.begin()
                w.add("Referring physician: " if lang == "en" else "Zuweiser: ")
                if lang == "en" and rng.random() < 0.5:  # in capitals, the family name first: "JONES, MARY"
                    w.add_phi(f"{_pick(rng, _PLAIN_LAST)}, {_pick(rng, _FIRST)}".upper(), "name")
                else:
                    w.add("Dr. ")
                    w.add_phi(_pick(rng, _LAST), "name")
                w.add("\n")
            else:
                w.add(" ")
                w.begin()
                w.add("Address: " if lang == "en" else "Anschrift: ")
            w.add_phi(address, "address")
            w.add(".")
            w.end(preamble, set(), {})

    if headed and rng.random() < 0.6:
        heading("clinical_information")
        text = _pick(rng, _CLINICAL[lang])
        age = _age(birth_date, study_date)
        if phi and age is not None and age > 89 and rng.random() < 0.7:
            w.add(" " if w.length and not w.text().endswith(("\n", " ")) else "")
            w.begin()
            w.add_phi(str(age), "age")
            w.add(f"-year-old patient. {text}." if lang == "en" else f"-jähriger Patient. {text}.")
            split = w.length - len(text) - 1
            # two sentences: the age sentence and the indication
            w.sentences.append(SentenceTruth(w.sentence_start, split - 1, "clinical_information", (), {}))
            w.sentences.append(SentenceTruth(split, w.length, "clinical_information", (), {}))
        else:
            sentence("clinical_information", text, set(), {})
    if headed and rng.random() < 0.5:
        heading("technique")
        sentence("technique", _pick(rng, _TECHNIQUE[lang]), set(), {})
    if headed and rng.random() < 0.6:
        heading("comparison")
        if phi and rng.random() < 0.7:
            w.begin()
            prior = date.fromordinal(day.toordinal() - int(rng.integers(60, 1500)))
            month_only = rng.random() < 0.3  # "March, 2021", "12-Mar", "im Jänner 2021"
            w.add("Compared with the prior study of " if lang == "en"
                  else f"Im Vergleich zur Voruntersuchung {'im' if month_only else 'vom'} ")
            if month_only:
                w.add_phi(_month_and_year(prior) if lang == "en" else f"{_month_name(rng, prior, lang)} {prior.year}",
                          "date")
            else:
                w.add_phi(_format_date(rng, prior, lang), "date")
            w.add(".")
            w.end("comparison", set(), {})
        else:
            sentence("comparison", _pick(rng, _NO_COMPARISON[lang]), set(), {})

    heading("findings")
    # sentences of the findings section, shuffled: positives, negatives, uncertain, normal anatomy
    items: list[tuple[str, set[str], dict[str, str], FindingTruth | None]] = []
    positive = {f.label for f in findings}
    for finding in findings:
        text, anatomies = _fill(rng, _pick(rng, _POSITIVE[lang][finding.label]), lang, finding.side)
        items.append((text, anatomies, {finding.label: "positive"}, finding))
    others = [label for label in LABEL_ANATOMY if label not in positive]
    order = rng.permutation(len(others))
    n_neg = int(rng.integers(3, 7))
    n_unc = int(rng.integers(0, 3))
    negated = [others[k] for k in order[:n_neg]]
    uncertain = [others[k] for k in order[n_neg:n_neg + n_unc]]
    k = 0
    while k < len(negated):
        label = negated[k]
        name, anatomies = _split(_pick(rng, _NAME[lang][label]))
        if k + 1 < len(negated) and rng.random() < 0.3:  # "No A or B." - one negation, two labels
            second = negated[k + 1]
            name2, anatomies2 = _split(_pick(rng, _NAME[lang][second]))
            joiner = " or " if lang == "en" else " oder "
            text = _pick(rng, _NEGATED[lang][:3]).replace("{x}", name + joiner + name2)
            items.append((text, anatomies | anatomies2, {label: "negative", second: "negative"}, None))
            k += 2
            continue
        template = _pick(rng, _NEGATED[lang])
        text = _capital(template.replace("{x}", name).replace("{X}", _capital(name)))
        items.append((text, anatomies, {label: "negative"}, None))
        k += 1
    for label in uncertain:
        name, anatomies = _split(_pick(rng, _NAME[lang][label]))
        template = _pick(rng, _UNCERTAIN[lang])
        text = _capital(template.replace("{x}", name).replace("{X}", _capital(name)))
        items.append((text, anatomies, {label: "uncertain"}, None))
    normal_idx = rng.permutation(len(_NORMAL[lang]))[: int(rng.integers(6, 13))]
    for j in normal_idx:
        text, anatomies = _split(_NORMAL[lang][int(j)])
        denied = _NORMAL_DENIES.get(text)
        if denied not in positive:
            items.append((text, anatomies, {denied: "negative"} if denied else {}, None))
    # fold one negated label into a positive sentence after a scope terminator ("No A, but B."), or
    # after a comma where the positive finding is placed in the lung or graded ("No A, B in the right
    # lower lobe.", "No A, mild B.")
    pos_items = [j for j, item in enumerate(items) if item[3] is not None]
    neg_items = [j for j, item in enumerate(items) if item[3] is None and len(item[2]) == 1
                 and next(iter(item[2].values())) == "negative"]
    if pos_items and neg_items and rng.random() < 0.4:
        pj, nj = pos_items[0], neg_items[0]
        ptext, panat, plabels, pfinding = items[pj]
        nlabel = next(iter(items[nj][2]))
        nname, nanat = _split(_pick(rng, _NAME[lang][nlabel]))
        second = ptext if lang == "de" else ptext[:1].lower() + ptext[1:]  # German nouns keep their capital
        own = ptext.endswith(_LUNG_LOC[lang][pfinding.side]) or ptext.startswith(_GRADED[lang])
        text = _pick(rng, _NEG_BUT_POS[lang] + (_NEG_COMMA_POS[lang] if own else ())).format(x=nname, y=second)
        items[pj] = (text, panat | nanat, {nlabel: "negative", **plabels}, pfinding)
        del items[nj]
    for j in rng.permutation(len(items)):
        text, anatomies, labels, finding = items[int(j)]
        if caps_body and finding is None and rng.random() < 0.2:
            text = text.upper()
        if w.length and not w.text().endswith(("\n", " ")):
            w.add(" ")
        w.begin()
        w.add(text)
        if finding is not None:
            w.add(" ")
            _reference(rng, w, finding, lang, primary_series_number, z_of_instance)
        w.add(".")
        w.end("findings", anatomies, labels)
        if headed and rng.random() < 0.15:
            w.add("\n")

    if phi and rng.random() < 0.5:
        w.add(" ")
        w.begin()
        doctor = _pick(rng, _LAST)
        w.add(_pick(rng, ("Dr. ", "Dr ") if lang == "en" else ("Dr. ", "Frau Dr. ", "Herr ")))
        w.add_phi(doctor, "name")
        if rng.random() < 0.15:  # the short number of a bleep, pager or DECT phone
            w.add(" was informed on " if lang == "en" else " wurde informiert über ")
            w.add(_pick(rng, _SHORT_LINES[lang]))
            w.add_phi(str(int(rng.integers(100, 10000))), "phone")
        else:
            channel, contact = _CONTACTS[int(rng.integers(len(_CONTACTS)))]
            w.add(_TOLD_BY[lang][channel])
            w.add_phi(contact, channel)
        w.add(" on " if lang == "en" else " am ")
        told = _format_date(rng, day, lang)
        if rng.random() < 0.3:  # the time and its zone, part of the date's span: "2021-03-04 14:35 +01:00"
            told += f" {int(rng.integers(8, 18)):02d}:{int(rng.integers(60)):02d} {_pick(rng, _ZONES)}"
        w.add_phi(told, "date")
        w.add(".")
        w.end("findings", set(), {})

    # impression: the positive findings again (no references), or a normal statement
    if headed or rng.random() < 0.5:
        heading("impression")
        if findings:
            numbered = headed and rng.random() < 0.5
            for n, finding in enumerate(findings, start=1):
                text, anatomies = _fill(rng, _pick(rng, _POSITIVE[lang][finding.label]), lang, finding.side)
                if w.length and not w.text().endswith(("\n", " ")):
                    w.add("\n" if numbered else " ")
                if numbered:
                    w.add(f"{n}. ")
                w.begin()
                w.add(text + ".")
                w.end("impression", anatomies, {finding.label: "positive"})
        else:
            sentence("impression", _pick(rng, _NORMAL_IMPRESSION[lang]), set(), {})

    # a signature block under the impression of a report with headings; its lines (roles and names)
    # are one sentence, as the NLP stage reads them: a line break alone ends none
    if phi and headed and rng.random() < 0.15:
        w.add("\n\n")
        w.begin()
        roles = _SIGNATURE_ROLES[lang]
        for n, k in enumerate(rng.permutation(len(roles))[: int(rng.integers(1, 3))]):
            if n:
                w.add("\n")
            w.add(f"{roles[int(k)]}: ")
            if lang == "en" and roles[int(k)] == "Physician":  # the family name first: "Physician: Smith, John"
                w.add_phi(f"{_pick(rng, _LAST)}, {_pick(rng, _FIRST)}", "name")
            elif lang == "en":
                w.add_phi(f"{_pick(rng, _FIRST)} {_pick(rng, _LAST)}", "name")
            else:
                w.add(_pick(rng, ("Dr. ", "")))
                w.add_phi(_pick(rng, _LAST), "name")
        w.end("impression", set(), {})

    labels: dict[str, str] = {}
    rank = {"negative": 0, "uncertain": 1, "positive": 2}
    for s in w.sentences:
        for label, state in s.labels.items():
            if label not in labels or rank[state] > rank[labels[label]]:
                labels[label] = state
    return ReportTruth(
        accession_number=accession_number,
        patient_id=patient_id,
        study_date=study_date,
        language=lang,
        text=w.text(),
        labels=labels,
        sentences=tuple(w.sentences),
        phi=tuple(w.phi),
        references=tuple(w.references),
        study_uid=study_uid,
    )


def render_corpus(
    seed: int, n: int, *, languages: Sequence[str] = ("en", "de"), phi_share: float = 0.8
) -> list[tuple[ReportTruth, tuple[str, str, str]]]:
    """``n`` reports without imaging, for NLP tests and benchmarks: every label positive in several.

    Languages alternate through ``languages``; findings cycle through all 18 labels; a share of
    reports carries PHI. Each item is the truth and the header values a RIS export would give
    (DICOM-style name, patient id, accession number), which the scrubber is allowed to use.

    >>> len(render_corpus(0, 4))
    4
    """
    rng = np.random.default_rng(seed)
    names = ("Smith^John", "Müller^Hans", "Becker^Anna", "Johnson^Mary")
    out = []
    for k in range(n):
        labels = [LABELS[(k + j * 7) % len(LABELS)] for j in range(int(rng.integers(0, 4)))]
        findings = [
            FindingTruth(label=label, anatomy=LABEL_ANATOMY[label].value, side=("left", "right", "")[j % 3],
                         center_mm=(0.0, 0.0, 0.0), radius_mm=5.0, series_number=(2, 3)[j % 2],
                         instance_number=int(rng.integers(5, 60)), z_mm=-100.0 + j)
            for j, label in enumerate(labels)
        ]
        name, patient, accession = names[k % len(names)], f"PID{k:06d}", f"ACC{k:05d}"
        truth = render_report(
            rng, accession_number=accession, patient_id=patient, patient_name=name,
            birth_date="19300101" if k % 4 == 0 else "19650315", study_date="20240105",
            language=languages[k % len(languages)], findings=findings, primary_series_number=2,
            secondary_series_number=3, phi=bool(rng.random() < phi_share), study_uid=f"1.2.{k}",
            z_of_instance=lambda s, i: float(i),
        )
        out.append((truth, (name, patient, accession)))
    return out


def as_rtf(text: str) -> str:
    r"""``text`` as a RIS word processor stores it: an RTF document (font and colour tables, bold
    headings, cp1252 ``\'xx`` and UTF-16 ``\uN?`` escapes, ``\par`` per line, CRLF line ends).

    >>> as_rtf("Befund:\nKein Erguß.").endswith(r"{\b Befund:}\par" "\r\n" r"Kein Ergu\'df.\par}")
    True
    """
    def escape(line: str) -> str:
        out = []
        for ch in line:
            if ch in "\\{}":
                out.append("\\" + ch)
            elif ch == "\t":
                out.append("\\tab ")
            elif ch.isascii():
                out.append(ch)
            else:
                try:
                    out.append(f"\\'{ch.encode('cp1252')[0]:02x}")
                except UnicodeEncodeError:
                    units = memoryview(ch.encode("utf-16-le")).cast("h")  # signed, as RTF writes them
                    out.extend(f"\\u{unit}?" for unit in units)
        return "".join(out)

    lines = [f"{{\\b {escape(line)}}}" if line.rstrip().endswith(":") else escape(line) for line in text.split("\n")]
    header = ("{\\rtf1\\ansi\\ansicpg1252\\deff0\\nouicompat{\\fonttbl{\\f0\\fnil\\fcharset0 Arial;}}\r\n"
              "{\\colortbl ;\\red0\\green0\\blue0;}\r\n{\\*\\generator Riched20 10.0.19041}\\viewkind4\\uc1\r\n"
              "\\pard\\sa200\\f0\\fs22 ")
    return header + "\\par\r\n".join(lines) + "\\par}"


def phi_overlap(truth: ReportTruth, hits: Iterable[Any]) -> tuple[int, int, int]:
    """How many characters of ``truth.text`` are seeded PHI, covered by ``hits`` (spans with
    ``start`` and ``end``, e.g. :class:`~ctcorpus.reports.PhiHit`), and both: PHI recall and
    precision are counted in characters, so a name scrubbed in part counts in part.

    >>> phi_overlap(truth, analyzed.phi)  # doctest: +SKIP
    (20, 18, 18)
    """
    seeded, found = np.zeros(len(truth.text), bool), np.zeros(len(truth.text), bool)
    for span in truth.phi:
        seeded[span.start:span.end] = True
    for hit in hits:
        found[hit.start:hit.end] = True
    return int(seeded.sum()), int(found.sum()), int((seeded & found).sum())
