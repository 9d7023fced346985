"""PHI scrubbing of report text: names, dates, ids, phone numbers, addresses, ages over 89.

Rules, not a model: each kind is a regular expression anchored on the context real reports use
(titles before names, "MRN"/"Pat.-ID" before ids, street suffixes, "-year-old"/"-jährig" after
ages). Measurements ("3.5 mm"), image references ("series 3, image 45", "(3:45)") and list numbers
do not match any rule. The corpus only ever holds the scrubbed text; :class:`Scrubbed` keeps the
offset map back to the original so ground truth written against the original can be scored.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, timedelta

import ahocorasick

from ctcorpus.pseudonym import name_spellings
from ctcorpus.reports.lexicon import (
    ANATOMY_TERMS,
    LABEL_SYNONYMS,
    NORMAL_STATEMENTS,
)
from ctcorpus.reports.patterns import MONTH_NAMES, lower_same_length, matches_at, trie_regex, with_ss

__all__ = ["PLACEHOLDERS", "PhiHit", "Scrubbed", "find_phi", "scrub_text"]

#: Placeholder written for each PHI kind.
PLACEHOLDERS: dict[str, str] = {
    "name": "[NAME]",
    "date": "[DATE]",
    "id": "[ID]",
    "phone": "[PHONE]",
    "address": "[ADDRESS]",
    "age": "[AGE]",
}

_MONTHS_EN = tuple(names[0] for names in MONTH_NAMES)
_MONTHS_DE = tuple(names[1] if len(names) > 1 else names[0] for names in MONTH_NAMES)
_MONTH_NUM = {m: i + 1 for i, m in enumerate(_MONTHS_EN)} | {m: i + 1 for i, m in enumerate(_MONTHS_DE)}
_MONTH_NUM |= {m[:3]: i + 1 for i, m in enumerate(_MONTHS_EN)} | {"mär": 3, "maerz": 3, "okt": 10, "dez": 12}
_MONTH_NUM |= {"jänner": 1, "jaenner": 1, "jän": 1, "feber": 2}  # Austrian
_MONTH_NAME = r"(?:" + trie_regex([*_MONTH_NUM, "sept"]) + r")"
_MONTH = _MONTH_NAME + r"\.?"
#: ``_MONTH_NAME`` after its first letter was consumed (and checked by a lookbehind, case-insensitively).
_MONTH_LETTERS_AFTER_FIRST = r"(?:" + "|".join(
    "(?<=" + first + ")" + trie_regex(m[1:] for m in [*_MONTH_NUM, "sept"] if m[0] == first)
    for first in sorted({m[0] for m in _MONTH_NUM})
) + r")"
_MONTH_AFTER_FIRST = _MONTH_LETTERS_AFTER_FIRST + r"\.?"
#: A month name as a date without a year writes it: capitalized ("March 3", "3rd of March",
#: "Januar 2024"), so that "may" (the verb) is no month; a line (or a label's value) written in
#: capitals is capitalized first (_capitalized_where_shouting). No period: it may end the sentence.
_CAPITAL_MONTH = r"[ADFJMNOS](?<!\w[ADFJMNOS])(?i:" + _MONTH_LETTERS_AFTER_FIRST + r")(?!\w)"
#: German month names after "3." (not English ones: "2. May be atelectasis" is a list item).
_GERMAN_MONTH = (r"(?:" + "|".join([m.capitalize() for m in _MONTHS_DE]
                                   + ["Maerz", "Jänner", "Jaenner", "Feber", "Jan", "Jän", "Feb", "Mär", "Apr", "Jun",
                                      "Jul", "Aug", "Sept?", "Okt", "Nov", "Dez"])
                 + r")(?!\w)")
#: What a measurement, not a date or phone, has after its numbers ("12/10/15 mm", "400-1500 HU", "250-1200 mGy").
_NOT_A_UNIT = r"(?!\s*(?:mm|cm|ml|%|HU|mGy|mSv|mAs|kV|kg)(?!\w))"
#: Not after a word that makes the number before it a duration ("seit 90 Jahren", "for 92 years"):
#: a lookbehind from the end of a number of two or three digits.
_NOT_AFTER_A_DURATION_WORD = "".join(rf"(?<!\b{word}\s\d\d)(?<!\b{word}\s\d\d\d)" for word in (
    "seit", "über", "nach", "für", "since", "for", "over", "after", "within", "past", "last"))
#: A capitalized name word: "Smith", "Hans-Peter", "Müller-Lüdenscheidt", "O'Brien", "McDonald", "Smith's".
_CAP = r"(?:[A-ZÄÖÜ][a-zäöüß]+|[A-ZÄÖÜ](?=['’]))(?:[A-ZÄÖÜ][a-zäöüß]+|['’\-][A-ZÄÖÜ]?[a-zäöüß]+)*"
#: German prepositions before a date that may come without its year ("vom 03.04.").
_DATE_PREPOSITIONS = ("vom", "am", "seit", "bis", "zum", "von", "ab", "dem")
#: What joins a date to the one before it in a list, where it comes without its preposition: "vom
#: 03.04. und 12.05.", "am 3.4., 5.4. sowie 7.4.", "vom 03.04.2021 bzw. 12.05.".
_DATE_LIST_JOINERS = (",", "und", "sowie", "oder", "bzw.", "u.")
#: Lookbehinds from a number's first digit: it follows a date (its month and that month's period, or
#: its year) and a joiner; not an ordinal or a list item ("Rippe 3. und 4.5.").
_AFTER_A_DATE_IN_A_LIST = "|".join(
    "(?<=" + before + (joiner if joiner == "," else r"\s" + re.escape(joiner)) + r"\s\d)"
    for before in (r"\d\.\d\.", r"\d\.\d\d\.", r"\.\d{4}") for joiner in _DATE_LIST_JOINERS
)
#: Lookbehinds from a number's first digit: it follows a date's label, by how the label ends
#: ("Study Date:", "Untersuchungsdatum", "DOB", "geb."), and a separator.
_AFTER_A_DATE_LABEL = "|".join(rf"(?<={re.escape(label)}{separator}\d)" for label in ("date", "datum", "dob", "geb.", "born")
                               for separator in (":", ": ", ":\t", "=", " "))
_STREETS_DE = ("straße", "strasse", "str.", "str", "weg", "allee", "platz", "gasse", "ring", "damm")
#: English words that end like a street word and may stand before a number ("Measuring 12 mm").
_STREET_LOOKALIKES = {"ring": r"(?<![eiu])"}  # measuring, during, entering, requiring
_STREETS_US = ("Street", "St.", "St", "Avenue", "Ave.", "Ave", "Road", "Rd.", "Rd", "Lane", "Ln.", "Ln", "Drive",
               "Boulevard", "Blvd.", "Blvd", "Way", "Court", "Place")
#: German street words written apart from the street's name ("Berliner Straße 12", "Lange Gasse 3").
_STREETS_APART = ("Straße", "Strasse", "Str.", "Gasse", "Allee", "Platz", "Weg", "Ring", "Damm")


def _house_letter(space: str) -> str:
    """The letter after a house number, ``space`` (a regex) what may stand between: "5a", "5 a",
    "5A" (in capitals); not the "i" of "5 in"."""
    return r"(?:(?:" + space + r"?[a-z]|[A-Z])(?![\wäöüß]))?"


#: A German street's name after its first letter, with its street word in it, and the house number:
#: "auptstraße 5", "arl-Marx-Str. 12a" (the street word capitalized after a hyphen).
_STREET_FUSED_TAIL = (r"[\wäöüß\-]*(?:" + "|".join(_STREET_LOOKALIKES.get(w, "") + f"[{w[0]}{w[0].upper()}]"
                                                   + re.escape(w[1:]) for w in _STREETS_DE)
                      + r")\s+\d+" + _house_letter(r"\s"))
#: A German street with its street word apart, and the house number: "Berliner Straße 12", "Lange Gasse 3a".
_STREET_APART = (r"[A-ZÄÖÜ][\wäöüß\-]*(?:er|e)[ ]+(?:" + "|".join(map(re.escape, _STREETS_APART)) + r")[ ]+\d{1,4}"
                 + _house_letter("[ ]"))
#: A German, Austrian or Swiss postcode, maybe with its country's letters: "10115", "1010", "CH-8001".
_POSTCODE = r"(?:(?:[AD]|CH)-)?\d{4,5}"
#: Top-level domains of a link written without its scheme ("pacs.hospital.org/viewer/123456").
_LINK_DOMAINS = ("de", "at", "ch", "com", "org", "net", "edu", "gov", "nl", "uk", "eu", "info", "local", "lan",
                 "intern", "internal", "int", "health", "nhs.uk")
#: A UK postcode: "SW1A 1AA", "NW1 6XE".
_UK_POSTCODE = r"[A-Z]{1,2}\d[A-Z\d]?[ ]?\d[A-Z]{2}(?![\w])"


def _town(space: str) -> str:
    """The town after a street and its number, ``space`` (a regex) the whitespace before it: after a
    comma or a postcode (", Boston, MA 02115", " 80331 München", " in 80331 München", ", 8001 Zürich",
    a postcode opening the next line), with a US state and ZIP code or a UK postcode after it
    (", London SW1A 2AA"). From the postcode on it stays in its line: the line after an address is
    no town ("8001 Zürich\nBefund:" took the heading into the address, the findings out of their section)."""
    line = r"[ \t]"
    return (r"(?:(?:," + space + r"*|" + space + r"+(?:in" + space + r"+)?(?=" + _POSTCODE + line + r"))(?:"
            + _POSTCODE + line + r"+)?" + _CAP + r"(?:" + line + _CAP + r")?(?:(?:," + line + r"*|" + line
            + r"+)[A-Z][A-Za-z](?!\w))?(?:" + line + r"+\d{5}|,?" + line + r"+" + _UK_POSTCODE + r")?)?")


#: Capitalized words that are no name part: after a title they end the name ("Dr. Jones The ...",
#: and in a line written in capitals "DR. SMITH FOR FOLLOW-UP", "DR. MEIER TELEFONISCH BESPROCHEN").
#: Only words no one is named: a given or family name here ("Will", "Per", "To", "Klein") would
#: end, or as the first word drop, a name.
_NOT_NAMES = frozenset(
    {"Patient", "Patientin", "The", "Der", "Die", "Das", "Befund", "Findings", "No", "Kein", "Keine", "Status",
     "Was", "Wurde", "Informed", "Med", "Medical", "Radiology", "Radiologie", "A", "An", "And", "At", "In", "On",
     "This", "That", "There", "Den", "Dem", "Ein", "Eine", "Im", "Am", "Bei", "Mit", "Von", "Zur", "Zum", "Und",
     "Er", "Sie", "Es", "Wir", "Ich", "Dr", "Prof", "PD", "Herr", "Frau", "Mr", "Mrs", "Ms",
     "For", "Of", "By", "From", "Via", "Regarding", "Concerning", "About", "Or", "But", "Who", "Which", "Were",
     "Has", "Had", "Have", "After", "Before", "During", "Today", "Re", "Für", "Über", "Ueber", "Nach", "Vor", "Auf",
     "Aus", "Wegen", "Zwecks", "Bzgl", "Bezüglich", "Ist", "Sind", "Hat", "Oder", "Heute", "Gestern",
     "Telefonisch", "Persönlich", "Mündlich", "Radiologist", "Radiologe", "Radiologin", "Physician", "Arzt", "Ärztin",
     # headings ("KNOWN MS. TECHNIQUE: ..." in capitals reads as "Ms. Technique")
     "Technique", "Technik", "Comparison", "Vergleich", "History", "Indication", "Impression", "Conclusion",
     "Beurteilung", "Zusammenfassung", "Fragestellung", "Anamnese", "Clinical", "Klinik",
     # how a patient is doing ("PATIENT IMPROVED." in capitals reads as "Patient Improved.")
     "Improved", "Stable", "Unchanged", "Tolerated", "Refused", "Declined", "Denies", "Presents", "Presented",
     "Reports", "Reported", "Returned", "Underwent", "Admitted", "Discharged", "Deceased", "Verstorben", "Stabil",
     "Unverändert", "Gebessert", "Entlassen", "Aufgenommen",
     # who was told, in a line in capitals after a role ("REFERRING PHYSICIAN NOTIFIED", "SURGEON AWARE"),
     # and a role's notes ("Technologist Notes: ...")
     "Notified", "Aware", "Reviewed", "Contacted", "Paged", "Called", "Informiert", "Benachrichtigt", "Notes",
     "Comments", "Note", "Comment",
     # sides ("OA Right knee", "DR. SMITH RIGHT")
     "Right", "Left", "Bilateral", "Rechts", "Links", "Beidseits",
     # who signs a letter besides a person ("Mit freundlichen Grüßen\nIhr Radiologie-Team")
     "Ihr", "Ihre", "Your", "Team", "Praxis", "Institut", "Abteilung", "Department", "Klinikum",
     # roles under the names of a signature ("Oberärztin    Chefarzt")
     "Oberarzt", "Oberärztin", "Chefarzt", "Chefärztin", "Facharzt", "Fachärztin", "Assistenzarzt", "Assistenzärztin",
     # who is not a person after a role: a department, a ward, a team ("Einsender: Notaufnahme",
     # "Rücksprache mit der Kollegin der Inneren", "Referring physician: Emergency Department",
     # "Nurse Practitioner notified")
     "Notaufnahme", "Rettungsstelle", "Notfallambulanz", "Ambulanz", "Poliklinik", "Tagesklinik", "Station",
     "Intensivstation", "Innere", "Inneren", "Medizin", "Chirurgie", "Unfallchirurgie", "Kardiologie",
     "Pneumologie", "Onkologie", "Gastroenterologie", "Nephrologie", "Hämatologie", "Urologie", "Gynäkologie",
     "Neurologie", "Neurochirurgie", "Orthopädie", "Pädiatrie", "Anästhesie", "Strahlentherapie",
     "Nuklearmedizin", "Hausarzt", "Hausärztin", "Emergency", "Surgery", "Internal", "Medicine", "Intensive",
     "Cardiology", "Pulmonology", "Oncology", "Gastroenterology", "Nephrology", "Hematology", "Urology",
     "Neurology", "Neurosurgery", "Orthopedics", "Pediatrics", "Clinic", "Practitioner", "ICU", "IMC", "ZNA",
     # what follows a word that says what the patient is ("Pat. Diabetiker Typ 2", "PATIENT RAUCHER SEIT 1990")
     "Typ", "Type", "Seit", "Since",
     # a patient's state before what was done ("Zustand nach Lobektomie", as "Status post")
     "Zustand",
     # the next field's label in a header line ("Nachname: Müller Vorname: Hans")
     "Name", "Vorname", "Nachname", "Geburtsname", "Geburtsdatum", "Geschlecht", "Sex", "Gender", "Surname", "First",
     "Last", "Given", "Birth", "Datum", "Date",
     # a sex where a header writes it after the patient's label ("Patient: Female, 65", "Pat.: Männlich")
     "Male", "Female", "Männlich", "Weiblich",
     # a disease's first word where telegram style writes a diagnosis after "Pat." ("Patientin Morbus Crohn, Z.n. ...")
     "Morbus"}
)
#: A word that names a disease by its ending ("Mammakarzinom", "Non-Hodgkin-Lymphom", "Cushing-Syndrom",
#: "Leberzirrhose", "Mamma-Ca"): no one's name, though telegram style writes one where a name may stand
#: ("Pat. Lungenkarzinom, Z.n. Chemo.", "Patientin Hodgkin-Lymphom, Stadium II"). As a name's first
#: word it ends the hit; a family name ending so ("-itis": "Adomaitis") is left out. The word is read
#: to its end at once and its ending looked back at, so it is matched from a word's start (the rules
#: read it after whitespace): "[\w\-]*" before the endings as alternatives tried each of them after
#: each of its letters (~3 µs a name checked, ~5 µs of a report's PHI search).
_DISEASE_ENDINGS = ("karzinom", "carcinom", "carcinoma", "lymphom", "lymphoma", "sarkom", "sarcoma", "melanom",
                    "melanoma", "myelom", "myeloma", "gliom", "glioma", "blastom", "blastoma", "adenom", "adenoma",
                    "tumor", "tumour", "syndrom", "syndroma", "erkrankung", "krankheit", "hernia", "hernie", "zirrhose",
                    "fibrose", "insuffizienz", "stenose", "leukämie", "-ca")
_DISEASE_WORD = re.compile(r"(?i:[\w\-]*+(?:" + "|".join(f"(?<={re.escape(e)})" for e in _DISEASE_ENDINGS) + "))")
#: Lower-case particles of family names ("von der Leyen", "van Gogh", "de Vries").
_PARTICLES = ("von", "van", "vom", "zu", "zur", "de", "der", "den", "del", "della", "di", "da", "dos", "du", "le", "la",
              "ten", "ter")
#: Nor, after a name's first word, one joined to a number: a vertebra's level ("Dr. Meier Th12", "Meier, Lwk1").
_NOT_A_NAME_AHEAD = r"(?!(?:" + trie_regex(sorted(_NOT_NAMES)) + r")\b|[A-ZÄÖÜ][a-zäöüß]*\d)"
#: Family names that are words of the vocabularies below: names, not findings, after a signer's name.
_NAME_WORDS = frozenset({"glass", "groß", "gross", "wall", "walls", "herz", "lange", "klein", "kurz", "hals", "kopf",
                         "brust", "weiß", "weiss", "lang", "fuchs", "knoch"})
#: Words of the organs, findings and normal statements the labels read ("Leber", "Lungs", "Emphysema",
#: "Normal"), of four letters or more (the shorter are function words and given names: "An", "In"),
#: also before a hyphen ("Lung-RADS"), but not :data:`_NAME_WORDS` ("Meier, Groß und Wagner"), and
#: words that name a disease by their ending. A word that starts with an organ's stem is none
#: ("Nierenzyste"): "Herzog" starts with "herz".
_CLINICAL_WORDS = sorted({word for phrases in (*ANATOMY_TERMS.values(), *LABEL_SYNONYMS.values(),
                                               *NORMAL_STATEMENTS.values())
                          for phrase in phrases for word in re.findall(r"[^\W\d_]{4,}", phrase)} - _NAME_WORDS)
#: Not a clinical word: where a given name stands after a family name and a comma ("Befundet von
#: Meier, Leber unauffällig", "Radiologist: Smith, Lungs clear"), such a word is the findings going on.
#: Only there: a family name may be one ("Dr. Lunge", "Herr Leber").
_NOT_A_CLINICAL_WORD_AHEAD = (r"(?!(?i:(?:" + trie_regex(_CLINICAL_WORDS) + r")(?!\w)|"
                              + _DISEASE_WORD.pattern + r"(?![\w\-])))")
#: Frequent diagnoses and symptoms telegram style writes after "Pat." ("Pat. Sepsis.", "Pat.
#: Pneumonie, Fieber."), read as a word's ending ("Urosepsis", "Aspirationspneumonie"). Only those no
#: one is commonly named ("Sturz" is a family name), and no bare ending a family name ends in: "-ose"
#: ("Klose"), "-itis" ("Adomaitis", "Zalitis") only on an organ's stem, "fever" not at all ("Lefever").
_DIAGNOSES = ("sepsis", "pneumonie", "pneumonia", "fieber", "husten", "cough", "dyspnoe", "dyspnea",
              "dyspnoea", "atemnot", "schmerz", "schmerzen", "diabetes", "hypertonie", "hypertension", "adipositas",
              "obesity", "kachexie", "cachexia", "infekt", "infektion", "infection", "embolie", "embolism", "thrombose",
              "thrombosis", "infarkt", "infarction", "apoplex", "stroke", "blutung", "hemorrhage", "haemorrhage",
              "hämoptoe", "hämoptyse", "hemoptysis", "haemoptysis", "ikterus", "jaundice", "aszites", "ascites", "ileus",
              "trauma", "fraktur", "fracture", "synkope", "syncope", "dysphagie", "dysphagia", "demenz", "dementia",
              "epilepsie", "epilepsy", "asthma", "copd", "emphysem", "emphysema", "arthrose", "osteoporose",
              "osteoporosis", "skoliose", "tuberkulose", "tuberculosis", "sarkoidose", "sarcoidosis", "amyloidose",
              "amyloidosis", "nekrose", "sklerose", "cirrhosis", "abszess", "abscess", "empyem", "empyema", "aneurysma",
              "aneurysm", "phlegmone", "pneumothorax", "anemia", "anaemia", "ischemia", "ischaemia", "septicemia",
              "bacteremia", "hypoxemia", "kalemia", "natremia", "glycemia", "uremia",
              *(stem + "itis" for stem in ("pankreat", "pancreat", "appendiz", "appendic", "divertikul", "diverticul",
                                           "cholezyst", "cholecyst", "cholang", "bronch", "pleur", "kard", "card",
                                           "mening", "enzephal", "encephal", "sinus", "arthr", "spondyl", "disz",
                                           "disc", "myel", "vaskul", "vascul", "nephr", "zyst", "cyst", "periton",
                                           "gastr", "enter", "col", "kol", "hepat", "pneumon")))
#: A diagnosis or symptom: one of :data:`_DIAGNOSES`, a word ending in "-ämie" or "-algie" ("Hyperkaliämie",
#: "Lumbalgie"), or one :data:`_DISEASE_WORD` reads.
_DIAGNOSIS = (r"(?i:[\w\-]*(?:" + trie_regex(_DIAGNOSES) + r")|[\w\-]*\w\w(?:ämie|aemie|algie|algia)|"
              + _DISEASE_WORD.pattern + ")")
#: Words that say what the patient is, one or more, after "Patient", "Patientin" or "Pat." without a
#: colon: no name ("Pat. Raucher, 40 py.", "Patientin Nichtraucherin, Diabetikerin.", "Patient
#: Dialysepatient", "Patient Diabetic.", in a line in capitals "PATIENT INTUBIERT."), nor a diagnosis
#: ("Pat. Sepsis.", "Pat. Pneumonie, Fieber."). Compounds go by
#: their ending ("Ex-Raucherin", "Marcumarpatient", "Asthmatikerin"), "-iker" after six letters at least
#: ("Riker", "Heiniker" are names). Only there: after a title, a colon ("Patient: Raucher", "Patient:
#: Fieber, Hans": a header's field) or "Name" such a word is a family name, and so is any list of them
#: with a name in it ("Pat. Fieber, Hans", "Pat. Sepsis-Meier").
_PATIENT_DESCRIPTION = (r"(?i:" + _DIAGNOSIS + r"|[\w\-]*(?:raucher|smoker|patient)(?:in)?|(?:\w+-)?\w{6,}iker(?:in)?"
                        r"|(?:transplantiert|immunsupprimiert|dialysepflichtig|bettlägerig|schwanger|intubiert|beatmet"
                        r"|sediert)(?:e[rn]?)?|diabetic|asthmatic|allergic|epileptic|hypertensive|pregnant|intubated"
                        r"|ventilated|sedated|immunocompromised|immunosuppressed)")
_PATIENT_DESCRIPTIONS = re.compile(_PATIENT_DESCRIPTION + r"(?:,?[ \t]+" + _PATIENT_DESCRIPTION + r")*")
#: The label before them.
_PATIENT_WITHOUT_COLON = re.compile(r"(?i:pat(?:ient(?:in)?|\.))\s+")


def _name_lead(gap: str) -> str:
    """What may stand before a name word, ``gap`` (a regex) before it: initials ("J.", "H.-P.") and particles."""
    return r"(?:[A-ZÄÖÜ]\.(?:-?[A-ZÄÖÜ]\.)?" + gap + r"|(?:" + trie_regex(_PARTICLES) + r")" + gap + r")*"


def _name_words(gap: str, least: int = 1) -> str:
    """From ``least`` to three capitalized name words ``gap`` apart (with initials and particles),
    none after the first a ``_NOT_NAMES`` word."""
    return (_name_lead(gap) + _CAP + r"(?:" + gap + _name_lead(gap) + _NOT_A_NAME_AHEAD + _CAP + r"){"
            + str(least - 1) + ",2}")


_NAME_LEAD = _name_lead(r"[ \t]+")
#: A name after a title: its words on one line.
_NAME_PARTS = _name_words(r"[ \t]+")
#: A name as a signature writes it: its words one space apart (two or more, or a tab, part two names).
_SIGNED_NAME = _name_words(" ")
#: A name of two parts at least: two words ("John Smith"), or an initial or a particle and a word
#: ("J. Smith", "von Weber").
_FULL_NAME = (r"(?:" + _name_words(r"[ \t]+", least=2) + r"|(?:[A-ZÄÖÜ]\.(?:-?[A-ZÄÖÜ]\.)?|" + trie_regex(_PARTICLES)
              + r")[ \t]+" + _NAME_PARTS + r")")
_DEGREE = r"(?i:M\.?D|Ph\.?D)\b\.?"
#: A name word in capitals ("SMITH", "MÜLLER-LÜDENSCHEIDT"), taken only after a name label.
_UPPER_NAME = r"[A-ZÄÖÜ]{2,}(?:['’\-][A-ZÄÖÜ]{2,})*"
#: Particles in capitals before a name word ("VAN DER BERG").
_UPPER_LEAD = r"(?:(?:" + trie_regex(sorted(p.upper() for p in _PARTICLES)) + r")[ \t]+)*"
#: A name in capitals after a title or role in a line otherwise not in capitals ("Discussed with
#: DR. SMITH", "Radiologist: JANE DOE"): one or two words, each maybe after particles ("DR. VAN DER
#: BERG", "MARIA DE LA CRUZ"), none a ``_NOT_NAMES`` word in capitals.
_NOT_AN_UPPER_NAME_AHEAD = r"(?!(?:X+|" + trie_regex(sorted({w.upper() for w in _NOT_NAMES})) + r")\b)"  # "XXXX": redacted
_UPPER_NAME_PARTS = (_UPPER_LEAD + _NOT_AN_UPPER_NAME_AHEAD + _UPPER_NAME + r"(?!\w)(?:[ \t]+" + _UPPER_LEAD
                     + _NOT_AN_UPPER_NAME_AHEAD + _UPPER_NAME + r"(?!\w))?")  # whole words: "PPan" is no "PP"
#: A name after "Patient:" or "Name:": family and given name, in either order, maybe in capitals,
#: the second maybe after particles ("Patient Hans von der Leyen", "Name: MARIA DE LA CRUZ"), and a
#: middle initial with its period or ending the line ("Smith, John A."). The second word is no
#: ``_NOT_NAMES`` word ("Nachname: Müller Vorname: Hans").
_FAMILY_GIVEN = (r"(?:" + _CAP + "|" + _UPPER_NAME + r")(?:,?[ \t]+|\^)(?:[A-ZÄÖÜ]\.[ \t]+)?(?:" + _NAME_LEAD
                 + _NOT_A_NAME_AHEAD + _CAP + "|" + _UPPER_LEAD + _NOT_AN_UPPER_NAME_AHEAD + _UPPER_NAME + r")"
                 r"(?:[ \t]+[A-ZÄÖÜ](?:\.|(?=[ \t]*(?:\n|$))))?")
#: A labelled name, after the label's colon maybe with particles in front ("Patient: von der Leyen,
#: Ursula", "Name: DE LA CRUZ, MARIA"); without the colon a particle is a word ("Patientin zu Hause.").
_LABELLED_NAME = (r"(?:(?<=:[ \t])(?:(?:" + trie_regex(sorted({*_PARTICLES, *(p.upper() for p in _PARTICLES)}))
                  + r")[ \t]+)+)?(?:" + _FAMILY_GIVEN + "|" + _CAP + "|" + _UPPER_NAME + ")")
#: Labels of a name field of a report's header, each before a colon: "Patientenname:", "Vorname:", "Last name:".
_NAME_LABELS = ("patientenname", "patienten-name", "patient name", "patient's name", "name of patient",
                "name of the patient", "nachname", "vorname", "familienname", "geburtsname", "mädchenname",
                "maedchenname", "rufname", "surname", "first name", "firstname", "last name", "lastname", "given name",
                "family name", "full name", "maiden name", "middle name", "pt", "pt.", "pt. name", "pt name")
#: Roles after which a name follows without a title ("Referring physician: Smith, John").
_ROLES = ("referring physician", "referrer", "radiologist", "signed", "signed by", "dictated by", "reported by",
          "read by", "verified by", "transcribed by", "authorized by", "approved by", "attending", "attending radiologist",
          "attending physician", "pathologist",
          "pulmonologist", "oncologist", "cardiologist", "surgeon", "examiner", "technologist",
          "befundet von", "befundet durch", "befunder", "befunderin", "unterschrift", "zuweiser",
          "zuweiserin", "überweiser", "überweiserin", "zuweisender arzt", "überweisender arzt", "diktiert von",
          "vidiert von", "freigegeben von", "validiert von", "geschrieben von", "gez.", "gezeichnet", "oberarzt",
          "oberärztin", "facharzt", "fachärztin", "assistenzarzt", "assistenzärztin", "chefarzt", "chefärztin",
          "kollege", "kollegin", "ordering provider", "ordering physician", "requesting physician", "requesting clinician",
          "referring doctor", "referring clinician", "referring provider", "primary care physician", "ordered by",
          "requested by", "interpreted by", "reviewed by", "copy to", "behandelnder arzt", "behandelnde ärztin",
          "anfordernder arzt", "anfordernde ärztin", "stationsarzt", "stationsärztin", "angefordert von", "einsender", "einsenderin", "hausarzt",
          "hausärztin", "untersucher", "untersucherin", "verfasser", "verfasserin", "kopie an", "nurse",
          "reading physician", "interpreting physician", "supervising physician", "performing physician", "finalized by",
          "preliminary report by", "preliminary read by", "vidiert durch", "validiert durch", "freigegeben durch",
          "signiert", "signiert von", "elektronisch signiert", "unterschrieben von", "dictating physician",
          "nachrichtlich an")
#: Roles that are also words of a report ("100 cc Omnipaque", "performed by Siemens"): a name
#: follows them only after a colon.
_LABEL_ROLES = ("cc", "provider", "physician", "doctor", "resident", "consultant", "clinician", "technician", "fellow", "pcp",
                "performed by", "mtra", "mtr", "arzt", "ärztin", "auftraggeber", "tech", "approved", "finalized",
                "vidiert", "validiert", "freigegeben", "befundet", "signature", "signatur")
#: Not a degree after a name, in any case (a value in capitals was capitalized: "JANE DOE, MD" reads "Jane Doe, Md").
_NOT_A_DEGREE_AHEAD = r"(?!(?i:M\.?D|Ph\.?D|D\.?O|R\.?N|N\.?P|P\.?A(?:-C)?|MBBS|FRCR|APRN|CRNA|LPN)\b)"
#: An initial or two after a family name, its period maybe left off where the name ends ("cc: Smith J",
#: "Meier H.", "Smith, J. A."); not a degree ("Jane Doe, M.D.").
_TRAILING_INITIALS = (r"(?:,?[ \t]+" + _NOT_A_DEGREE_AHEAD + r"[A-ZÄÖÜ]"
                      r"(?:\.(?:[ \t]?-?[A-ZÄÖÜ]\.)?|(?=[ \t]*(?:[,;/\n]|$))))?")
_TITLES = r"(?:(?:Dr|Prof|med|PD)\.?[ \t]+)*"
#: A further name in a list after a role ("cc: Jane Doe, John Roe", "Kopie an: Dr. Meier, Schulz und
#: Wagner"): two capitalized words, or one that ends its item (before a comma, a joiner, the line's or
#: the sentence's end), so that a finding after the name ("Befundet von Meier, Leber unauffällig") stays.
_NEXT_ROLE_NAME = (r"(?:[ \t]*[,;]|[ \t]+(?:und|and|&))[ \t]+" + _NOT_A_DEGREE_AHEAD + _NOT_A_CLINICAL_WORD_AHEAD
                   + _TITLES + r"(?:" + _NAME_LEAD
                   + _NOT_A_NAME_AHEAD + _CAP + r"[ \t]+" + _NAME_LEAD + _NOT_A_NAME_AHEAD + _CAP + _TRAILING_INITIALS + "|" + _NAME_LEAD
                   + _NOT_A_NAME_AHEAD + _CAP + _TRAILING_INITIALS
                   + r"(?=[ \t]*(?:[,;/]|[ \t](?:und|and|&)[ \t]|\.?[ \t]*(?:\n|$)|\.\s)))")
#: What follows a role: maybe the practice and titles, then the name ("Smith, John", "Dr. med. Meier", "JANE DOE"),
#: with its initials and the names listed after it, a co-signer's after a slash ("Befundet von:
#: Müller/Schmidt"), and in capitals the given name after the family name and a comma ("JONES,
#: MARY"; not a degree: "JANE DOE, MD"). A clinical word after the comma is no given name ("Meier, Leber").
_ROLE_NAME = (r"[ \t]+(?:(?:Gemeinschafts)?[Pp]raxis,?[ \t]+)?" + _TITLES + r"(" + _NAME_LEAD + _CAP + r"(?:(?:,[ \t]+"
              + _NOT_A_CLINICAL_WORD_AHEAD + r"|[ \t]+)" + _NAME_LEAD + _NOT_A_NAME_AHEAD + _CAP + r")?" + _TRAILING_INITIALS + r"(?:/" + _NOT_A_NAME_AHEAD + _CAP + r")?(?:"
              + _NEXT_ROLE_NAME + r")*|" + _UPPER_NAME_PARTS
              + r"(?:/" + _NOT_AN_UPPER_NAME_AHEAD + _UPPER_NAME + r"(?!\w)"
              + r"|,[ \t]+" + _NOT_A_DEGREE_AHEAD + _NOT_AN_UPPER_NAME_AHEAD + _NOT_A_CLINICAL_WORD_AHEAD + _UPPER_NAME
              + r"(?!\w))?)")

#: The word before the name after a sign-off stamp.
_SIGNED_BY = r"(?i:by|von|durch)\b"
#: "am", "pm", "a.m.", "Uhr", "h" after a time. The last period of "a.m." goes with it where the
#: sentence goes on ("2:35 p.m. by Jane Doe", "at 2:35 p.m. and", "P.M. By" in a line in capitals: left
#: behind, "[DATE]. by" split the sentence); before the next sentence it stays to end this one.
_TIME_SUFFIX = (r"(?:[AaPp]\.?[Mm](?:\.(?=[ \t]+(?:[a-zäöüß]|" + _SIGNED_BY + r")))?(?![A-Za-z])|Uhr(?!\w)"
                r"|h(?!\w))")
#: The date and time a report was signed, between the role and the name ("Freigegeben: 03.04.2021
#: 14:35 Huber, Peter", "Signed 04/03/2021 2:35 PM by Jane Doe", "signiert am 03.04.2021 von Huber"):
#: the date rules scrub the stamp, and the name after it is read as after the role.
_SIGN_OFF_STAMP = (r"(?:(?:[ \t]+(?i:am|on|at|vom))?[ \t]+\d{1,4}[./-]\d{1,2}[./-]\d{2,4}(?:,?[ \t]+(?:(?i:um|at)[ \t]+)?"
                   r"\d{1,2}[:.]\d{2}(?::\d{2})?(?:[ \t]*" + _TIME_SUFFIX + r")?)?(?:[ \t]+" + _SIGNED_BY + r")?)?")
#: A name after a role and a comma ("referring clinician, Jane Doe", "the attending, Doe J."): two
#: capitalized words, the second no disease ("oncologist, Hodgkin Lymphoma"), as a single word there
#: is as often the sentence going on.
_ROLE_NAME_AFTER_A_COMMA = (r",[ \t]+" + _TITLES + r"(" + _NAME_LEAD + _NOT_A_CLINICAL_WORD_AHEAD + _CAP + r"[ \t]+" + _NAME_LEAD + _NOT_A_NAME_AHEAD
                            + r"(?!" + _DISEASE_WORD.pattern + r"(?![\w\-]))" + _CAP + _TRAILING_INITIALS + r"(?:"
                            + _NEXT_ROLE_NAME + r")*)")


def _first_words(phrases: Sequence[str]) -> tuple[str, ...]:
    """The first word of each of ``phrases``, none that another begins: needles where each match of
    their ``trie_regex`` starts, whatever whitespace stands between its words ("read  by")."""
    words = {phrase.split()[0] for phrase in with_ss(phrases)}
    return tuple(sorted(w for w in words if not any(w != v and w.startswith(v) for v in words)))


# Every pattern opens with one case-sensitive character class and checks the word boundary behind
# it ("\d(?<!\w\d)" rather than "\b\d"); where alternatives start with different characters, a
# lookbehind on that first character picks the branch ("(?<=D)r" for "Dr"). The regex engine then
# skips ahead to candidate characters instead of trying every position. Under IGNORECASE the class
# lists every character the letters fold from ("ſ" is an "s", "İ" and "ı" are an "i").
#
# Each scan of a report still costs the engine a pass over every character, so a rule also says
# where it can start (its anchor). Most PHI holds a number, and a report holds few numbers: they
# are found in one pass, and a rule anchored "number" is only tried at them, one anchored "word
# before number" at the word starts of the word before a number ("March 3, 2020", "Hauptstraße 5"),
# one anchored "near number" at both. Only "scan" rules pass over the whole text. A rule's needles,
# when it has any, are lower-case substrings one of which every match contains: a report without
# any skips that rule; a rule anchored "needle" is only tried where one of them occurs, since each
# of its matches starts with one (a label: "Pager 1234"), and one anchored "needle line" is
# scanned only over the lines where one occurs, since none of its matches, nor any lookahead of
# it, reaches across a line end (a needle may end its matches: "John Smith, MD"; a German report
# with "md" in "Fremdmaterial" paid ~100 µs for the full scan). The needles of all rules are found
# in one pass of an Aho-Corasick automaton (pyahocorasick).
#
# A rule anchored at numbers fails at most of them ("series 2, image 48", "1.", "14 mm"), and the
# engine pays for each alternative it tries there. Where every alternative goes on with one of a
# few characters after the first digit, a lookahead for them ends the attempt at once
# ("(?=[\d\s./snrt])": a digit, a space, a separator or "st"/"nd"/"rd"/"th"); and a digit that
# only a non-digit may follow is possessive ("\d?+"), as giving it back could not let the rest match.
#: From just after the "F" of "Fr": not the French (Charrière) size of a catheter or a drain, a number
#: of one or two digits or a decimal, alone, before it ("8 Fr.", "24-Fr", "8.5 Fr"), with the device
#: after it ("8 Fr. Pigtail", "24 Fr. Bülau-Drainage"); after a number with no device it is a title
#: still ("Station 4 Fr. Meier", "Zimmer 12 Fr. Meier").
_DEVICE = r"(?i:[\w\-]*(?:pigtail|drainage|drain|katheter|catheter|sonde|tube|stent|schleuse|sheath|bülau|port)(?:e?n|s)?(?!\w))"
_NOT_AFTER_A_FRENCH_SIZE = ("(?:(?!r\\.?[ \\t]*" + _DEVICE + ")|" + "".join(
    rf"(?<!(?<![\d.,:/]){size}[ \t\-]F)" for size in (r"\d", r"\d\d", r"\d[.,]\d")) + ")")
_SCAN, _NUMBER, _WORD_BEFORE_NUMBER, _NEAR_NUMBER = "scan", "number", "word before number", "near number"
_NEEDLE, _NEEDLE_LINE = "needle", "needle line"
_RULES: tuple[tuple[str, re.Pattern[str], tuple[str, ...], str], ...] = (
    # e-mail addresses and web links (a link may carry an accession number); an address's local
    # part is at most 64 characters (RFC 5321): unbounded, the engine scanned a long run of word
    # characters from each of its positions ("a.a.a...@": quadratic, 40,000 characters took 7 s). A link
    # without its scheme is known by a top-level domain before its path, query or port
    # ("portal.klinikum-x.de/patient?id=12345"), its host starting after no word character. An address
    # may write its "@" and dots as words against spam: "john(at)klinik.de", "john [at] klinik [dot] de"
    (
        "address",
        re.compile(r"(?i:https?://|www\.|(?<![\w.\-@])[\w\-]+(?:\.[\w\-]+)*\.(?:" + trie_regex(_LINK_DOMAINS)
                   + r")(?=[/?:]\w))[^\s<>\"]*[^\s<>\".,;:!?)]"
                   r"|[\w.+\-]{1,64}(?:@|[ ]?(?i:\(at\)|\[at\])[ ]?)[\w\-]+(?:(?:\.|[ ]?(?i:\(dot\)|\[dot\])[ ]?)[\w\-]+)+"),
        ("@", "(at)", "[at]", "http", "www.", *(f".{domain}{after}" for domain in _LINK_DOMAINS for after in "/?:")),
        _NEEDLE_LINE,
    ),
    (
        "address",
        re.compile(
            r"[A-ZÄÖÜ\d](?<!\w[A-ZÄÖÜ\d])"
            r"(?:(?<=[A-ZÄÖÜ])(?=[\wäöüß\-]*+\.?\s+\d)" + _STREET_FUSED_TAIL
            # "221B"; a measurement is no house number ("2 MM ST ELEVATION" in capitals reads "2 Mm St")
            + r"|(?<=\d)\d{0,4}[A-Z]?\s+(?![CM][lm]\s)(?:[A-Z][a-z]+\s+){1,3}(?:"
            + "|".join(map(re.escape, _STREETS_US))
            + r")(?![A-Za-z])(?:\s+[NS]?[EW]?(?<=[NSEW])(?!\w))?"  # "Ave NW"
            r"(?:,?\s+(?:Apt|Suite|Ste|Unit)\.?\s*#?\w+)?"  # "Apt 4B"
            # a street without a street word, known by the postcode after it: "Am Markt 3, 12345 Berlin"
            r"|(?<=[A-ZÄÖÜ])[a-zäöüß]+(?:-[A-ZÄÖÜ]?[a-zäöüß]+)*\s+\d{1,4}" + _house_letter(r"\s")
            + r"(?=,\s*\d{5}\s+[A-ZÄÖÜ])"
            # a postcode and town before the street, in one line or two: "12345 Berlin, Hauptstraße 5",
            # "D-80331 München, Marienplatz 8", "8001 Zürich\nBahnhofstrasse 12"
            r"|(?<=\d)\d{3,4}[ \t]+" + _CAP + r"(?:[ \t]" + _CAP + r")?(?:,\s*|\s+)(?:[A-ZÄÖÜ]" + _STREET_FUSED_TAIL
            + "|" + _STREET_APART + ")"
            # a postcode with its country's letters, and the town: "CH-8001 Zürich", "A-1010 Wien", "D-10115 Berlin"
            r"|(?:(?<=(?<![\w\-])[AD]-\d)|(?<=(?<![\w\-])CH-\d))\d{3,4}[ \t]+" + _CAP + r"(?:[ \t]" + _CAP + r")?)"
            + _town(r"\s")
        ),
        (),
        _NEAR_NUMBER,
    ),
    (  # the street word apart, after the street's name: "Berliner Straße 12", "Mariahilfer Straße 12, 1060 Wien";
        # not after an article ("Der Weg 3")
        "address",
        re.compile(r"(?<!\w)" + _NOT_A_NAME_AHEAD + _STREET_APART + _NOT_A_UNIT + _town(r"[ \t]")),
        tuple(f" {word.lower()} " for word in _STREETS_APART),
        _NEEDLE_LINE,
    ),
    (
        "date",
        re.compile(
            # each alternative goes on with a digit, a letter ("3rd", "12MAR2020"), a separator or a space
            r"\d(?<!\w\d)(?=[\w./\s\-])(?:\d{3}([-/.])\d{1,2}\1\d{1,2}(?=T\d|\b)"
            # day and month each at most 31 ("45/60/30 HU" are densities)
            r"|(?:(?<=[0-2])\d|(?<=3)[01])?[./-](?:[0-2]?\d|3[01])[./-](?:\d{4}|\d{2})(?![\d.]\d)\b" + _NOT_A_UNIT
            + r"|\d?+\.\s\d{1,2}\.\s?(?:19|20)\d{2}(?!\d)"  # "12. 3. 2020"
            r"|\d?+(?:st|nd|rd|th)?(?:\.?\s(?:of\s)?|[.-])" + _MONTH + r"(?:,?\s|-|(?<=\.))\d{4}\b"  # "03.März.2021"
            # a month name between the same separators, the year maybe in two digits as legacy RIS and Oracle
            # write it: "05-JAN-24", "05/Jan/2024", "05.Jan.24"
            r"|\d?+([-/.])" + _MONTH_NAME + r"\2\d{2}(?:\d{2})?(?![\d\-/]|\.\d)"
            r"|\d?+(?:jan|feb|m[aä]r|mrz|apr|ma[iy]|jun|jul|aug|sept?|o[ck]t|nov|de[cz])(?:19|20)?\d{2}\b)",  # "12MAR2020", "05JAN24"
            re.IGNORECASE,
        ),
        (),
        _NUMBER,
    ),
    (
        "date",
        re.compile(r"[ADFJMNOSadfjmnosſ](?<!\w[ADFJMNOSadfjmnosſ])(?i:" + _MONTH_AFTER_FIRST
                   + r"\s\d{1,2}(?:st|nd|rd|th)?,?\s\d{4}\b)"),
        (),
        _WORD_BEFORE_NUMBER,
    ),
    # a date without a day or a year: "March 3", "Thursday, April 3rd", "March 2020", "March, 2020", "im Januar 2024"
    (
        "date",
        re.compile(_CAPITAL_MONTH + r"(?:\.?\s|,\s(?=(?:19|20)\d{2}))"
                   r"(?:(?:19|20)\d{2}(?!\d)|\d{1,2}(?:st|nd|rd|th)?(?![\d.,:]\d|\w))" + _NOT_A_UNIT),
        (),
        _WORD_BEFORE_NUMBER,
    ),
    (  # a month and year joined by a hyphen or slash, or its two digits after an apostrophe: "Mar-2021",
        # "JAN/2024", "Mar-21", "Dec '21" (no word before the number for the rule above to start at)
        "date",
        re.compile(_CAPITAL_MONTH + r"(?:[-/](?:(?:19|20)\d{2}|\d{2})|[ ]?['’]\d{2})(?![\d\-/]|\.\d)"),
        tuple(month + separator for month in [*_MONTH_NUM, "sept"] for separator in ("-", "/", "'", "’", " '", " ’")),
        _NEEDLE,
    ),
    (  # "3rd of March", "3 March", "12-Mar", "3. März"; "03/2020", "03.2020"; and the year first, as ISO 8601 writes a
        # month ("2021-03", "2021/03"; not a date with its day, "2021-03-04", nor a range "2019-2021")
        "date",
        re.compile(r"\d(?<!\w\d)(?=[\d\s./snrt\-])(?:\d?+(?:(?:(?:st|nd|rd|th)?\s(?:of\s)?|-)" + _CAPITAL_MONTH
                   + r"|\.\s?" + _GERMAN_MONTH + r")"
                   r"|(?<=0)[1-9]/(?:19|20)\d{2}(?![\d/])|(?<=1)[0-2]?/(?:19|20)\d{2}(?![\d/])"
                   r"|(?<=[2-9])/(?:19|20)\d{2}(?![\d/])|(?:(?<=0)[1-9]|(?<=1)[0-2])\.(?:19|20)\d{2}(?!\d|\.\d)"
                   + _NOT_A_UNIT + r"|(?:(?<=1)9|(?<=2)0)\d{2}[-/](?:0[1-9]|1[0-2])(?![\d\-/]|\.\d)" + _NOT_A_UNIT + r")"),
        (),
        _NUMBER,
    ),
    # German day and month without a year after a preposition ("vom 03.04.", "seit 12. März", "vom
    # 12.03 zeigt": a two-digit month and no unit after it, since "von 2.5 auf 3.1 cm" and "von 1.05 cm"
    # are measurements), or after a date and a joiner in a list ("vom 03.04. und 12.05."); the closing
    # period stays in the text, where it may also end the sentence. The last letters of the
    # prepositions and joiners, in one lookbehind, turn away most numbers before their lookbehinds are tried.
    (
        "date",
        re.compile(
            r"\d(?<!\w\d)(?<=[" + "".join(sorted({w[-1] for w in (*_DATE_PREPOSITIONS, *_DATE_LIST_JOINERS)})) + r"]\s\d)(?:"
            + "|".join(rf"(?<=\b{w}\s\d)" for w in _DATE_PREPOSITIONS) + "|" + _AFTER_A_DATE_IN_A_LIST + r")"
            r"(?:\d?\.(?:0?[1-9]|1[0-2])(?=\.(?!\d))|\d?\.(?:0[1-9]|1[0-2])(?![\d.,])" + _NOT_A_UNIT
            + r"|\d?\.?\s" + _MONTH_NAME + r"(?!\w))",
            re.IGNORECASE,
        ),
        (),
        _NUMBER,
    ),
    # a date written as DICOM writes it, "20210403", after a date's label ("Study Date: 20210403", "StudyDate=20210403",
    # "Geburtsdatum 19400102"): a date, which the date policy shifts, not an id; elsewhere a long number stays an id
    (
        "date",
        re.compile(r"[12](?<!\w[12])(?:" + _AFTER_A_DATE_LABEL + r")(?:(?<=1)9|(?<=2)0)\d{2}(?:0[1-9]|1[0-2])"
                   r"(?:0[1-9]|[12]\d|3[01])(?!\d)", re.IGNORECASE),
        (),
        _NUMBER,
    ),
    # ids before phone numbers: the first rule to claim a span types it, and a labelled id may read as
    # a phone number ("MRN 00123456", "NHS number 043 476 5919")
    (
        "id",
        re.compile(
            r"[ABCEFHIMOPUVabcefhimopuvİı](?<!\w[ABCEFHIMOPUVabcefhimopuvİı])"
            r"(?i:(?<=m)(?:RN|R\#|itglieds-?(?:Nr\.?|nummer))"
            r"|(?<=p)(?:at\.?-?\s?ID|atienten-?ID|atient\s?ID|ID|at(?:ienten)?\.?-?\s?(?:Nr|nummer)\.?)"
            r"|(?<=i)D"
            r"|(?<=a)(?:cc(?:ession|t)?\.?-?(?:\s?(?:No|Nr|number)\.?)?|uftrags-?(?:Nr\.?|nummer)"
            r"|uf(?:nahme|n\.)-?(?:Nr\.?|nummer))"
            r"|(?<=f)all-?(?:Nr\.?|nummer)|(?<=c)ase\s?(?:\#|no|number)\.?|(?<=e)ncounter"
            r"|(?:(?<=b)efund|(?<=u)ntersuchungs)-?(?:Nr\.?|nummer)|(?<=h)osp(?:ital)?\.?[ ]?(?:\#|no\.?|number)"
            # "Exam #", "Visit No.", "Order number", "Chart #", "Unit No." (UK): alone, each is a word of a report's text
            r"|(?:(?<=e)xam|(?<=v)isit|(?<=o)rder|(?<=c)hart|(?<=u)nit|(?<=a)ccount)[ ]?(?:\#|no\.?|nr\.?|number))"
            # the id after a separator, or right after the label if it starts with a digit ("MRN1234567";
            # "IDH1-R132H" is a gene); its letters in front in either case ("MRN: ab12345")
            r"(?:[:#\s]+([A-Za-z]{0,3}-?\d[A-Z0-9\-]{3,}(?:/[A-Z0-9\-]+)*)|(\d[A-Z0-9\-]{3,}(?:/[A-Z0-9\-]+)*))"
        ),
        ("mrn", "mr#", "mitglied", "pat", "pid", "id", "acc", "auftrag", "aufn", "fall", "case", "encounter",
         "befundn", "befund-n", "untersuchungsn", "untersuchungs-n", "hosp",
         # with what follows them: "order" alone is in every "Vorderwand", "exam" in every "examination"
         *(word + gap + end for word in ("exam", "visit", "order", "chart", "unit") for gap in ("", " ")
           for end in ("#", "no", "nr", "nu"))),
        _NEEDLE,
    ),
    (  # insurance and social security numbers, also in groups or dotted: "SSN: 123 45 6789", "Versichertennummer:
        # A123456789", "Versicherungsnr. A123456789", "NHS number 943 476 5919", "AHV-Nr. 756.1234.5678.97" (Swiss),
        # "SV-Nummer: 1234 010180" (Austrian)
        "id",
        re.compile(r"(?<!\w)(?i:ssn|social[ ]security(?:[ ]n(?:o\.?|umber))?|sozialversicherungs-?(?:nummer|nr\.?)"
                   r"|sv-?(?:nummer|nr\.?)|(?:kranken)?versicher(?:ten|ungs)-?(?:nummer|nr\.?)|kv-?nr\.?"
                   r"|insurance(?:[ ](?:id|no\.?|number))?|policy[ ](?:no\.?|number)|member[ ]id"
                   r"|ahv(?:n13)?(?:-?(?:nummer|nr\.?))?|nhs(?:[ ](?:no\.?|number))?|chi[ ](?:no\.?|number))"
                   r"[:#\s]+([A-Za-z]{0,3}-?\d(?:[A-Z0-9\-]|[ .](?=\d)){3,})"),
        ("ssn", "social security", "sozialversicherung", "sv-n", "svn", "versicherten", "krankenversicherten",
         "versicherungs", "krankenversicherungs", "kv-nr", "kvnr", "insurance", "policy", "member id", "ahv", "nhs",
         "chi n"),
        _NEEDLE,
    ),
    (  # a US number's area and exchange codes start with 2-9 (NANP): "100-1000" is a range
        "phone",
        re.compile(
            r"[+(\d](?<![\w.][+(\d])"
            # the country code after "+" or "00", the area code after it maybe in brackets: "+49 (0) 30 123456",
            # "+49 (30) 123456", "0049 30 123456"
            r"(?:(?:(?:(?<=\+)|(?<=0)0(?=[1-9]))\d{1,3}[ -]?(?:(?:\(0\))?[ ]?\d{1,5}|\(\d{1,5}\))[ /-]?|(?<=\()\d{2,5}\)[ ]?|(?<=0)\d{2,5}[ /-]?"
            r"|(?<=[2-9])\d{2}-"
            r"|(?<=\d)\d{2}\.\d{3}\.(?=\d{4}(?!\d)))"  # "617.555.1234"
            r"\d{3,8}(?:[ -]\d{2,6}){0,2}"  # Swiss groups: "044 123 45 67"
            # a German area code of 3-5 digits, a slash or in brackets, and the number in groups: "0 89 / 12 34 56",
            # "(0 30) 12 34 56"
            r"|(?:(?<=0)[ ]?\d(?:[ ]?\d){1,3}[ ]?/|(?<=\()0[ ]?\d(?:[ ]?\d){1,3}\))[ ]?\d{2,4}(?:[ ]\d{2,4}){0,4})"
            r"(?:[ ]?[xX]\d{1,5}|,?[ ]?(?i:ext)\.?[ ]?\d{1,5})?(?!\w|\.\d)" + _NOT_A_UNIT  # an extension: "x123", "ext. 12"
        ),
        (),
        _NUMBER,
    ),
    (  # a number after a phone label, however short or spaced: "Pager 1234", "Bleep 4711", "App. -4711",
        # "call 555 123 4567", "Tel. intern 4711", "phone x1234", "Nebenstelle 2345", "Beeper 4567"
        "phone",
        re.compile(r"(?<!\w)(?i:(?:tel(?:efon|\.-?nr)?|phone|fax|pager|beeper|bleep|piepser|pieper|funk|dect|durchwahl"
                   r"|nebenstelle|rufnummer|mobil|handy|call|ext|apparat)"
                   r"\b\.?(?:[ \t]+intern)?|app\.):?[ \t]*(?:[-–#]|[xX](?=\d))?(\+?\(?\d(?:(?:[ ()/.\-]{0,2}|[ ][/\-–][ ])\d){2,15})"
                   r"(?!(?:[ ()/.\-]{0,2}|[ ][/\-–][ ])\d)" + _NOT_A_UNIT),  # all of the number, and no measurement
        ("tel", "phone", "fax", "pager", "beeper", "bleep", "piepser", "pieper", "funk", "dect", "durchwahl", "nebenstelle",
         "rufnummer", "mobil", "handy", "call", "ext", "app.", "apparat"),
        _NEEDLE,
    ),
    (  # a post office box, with the town after it: "PO Box 1234", "Postfach 10 12 34, 50667 Köln"
        "address",
        re.compile(r"(?<!\w)(?i:P\.?[ ]?O\.?[ ]?Box|Postfach)[ \t]+\d(?:[ ]?\d)*"
                   r"(?:,[ \t]*(?:" + _POSTCODE + r"[ \t]+)?" + _CAP + r"(?:[ \t]" + _CAP + r")?)?"),
        ("box", "postfach"),
        _NEEDLE_LINE,
    ),
    (  # a postcode after its label, with the town after it: "PLZ 12345 Berlin", "PLZ/Ort: 12345 Berlin", "ZIP 62704",
        # "Wohnort: CH-8001 Zürich", "Postcode: SW1A 1AA"
        "address",
        re.compile(r"(?<!\w)(?i:plz(?:/ort)?|postleitzahl|zip(?:[ ]?code)?|wohnort|post[ ]?code):?[ \t]*"
                   r"(?:" + _POSTCODE + r"(?:-\d{4})?(?!\d)(?:[ \t]+" + _CAP + r")?|" + _UK_POSTCODE + ")"),
        ("plz", "postleitzahl", "zip", "wohnort", "postcode", "post code"),
        _NEEDLE,
    ),
    # long numbers, US SSNs, Swiss AHV numbers ("756.1234.5678.97")
    ("id", re.compile(r"\d(?<!\w\d)(?:\d{6,}|\d{2}-\d{2}-\d{4}|(?<=7)56\.\d{4}\.\d{4}\.\d{2})\b"), (), _NUMBER),
    (  # an age over 89 before its unit; "years" alone ("Female, 92 years, ...") and the dative "Jahren"
        # ("mit 92 Jahren") not after a word that makes them a duration ("seit 90 Jahren", "for 92 years")
        "age",
        re.compile(
            r"[91](?<!\w[91])(?:(?<=9)\d|(?<=1)[01]\d)(?!\d)"
            r"(?=[\s-]*(?:years?[\s-]old|year-old|yrs?[\s-]old|years?\s+of\s+age|yo\b|y/o|y\.o\.|j(?:ä|ae)hr(?:ig|\.)|jahre\b|J\b|y(?:rs?)?\b)"
            r"|\.?\s*lebensjahr|(?-i:[MFW])(?!\w)|" + _NOT_AFTER_A_DURATION_WORD + r"\s*(?:years|jahren)\b)",
            re.IGNORECASE,
        ),
        (),
        _NUMBER,
    ),
    (  # an age in words: "ninety-two year old"
        "age",
        re.compile(r"(?<!\w)(?i:ninety(?:[\s-](?:one|two|three|four|five|six|seven|eight|nine))?)"
                   r"(?=[\s-]*(?i:years?[\s-]old|year-old|yrs?[\s-]old|years?\s+of\s+age|yo\b|y/o))"),
        ("ninety",),
        _NEEDLE,
    ),
    ("age", re.compile(r"[aA](?<!\w[aA])(?i:ged?[:]?\s|lter(?::|\s+von)?\s)(9\d|1[01]\d)\b"), ("age", "alter"), _NEEDLE),
    (
        "name",
        re.compile(
            r"[DFHMNOPS](?<!\w[DFHMNOPS])(?:"
            # "PD" only before "Dr." ("PD Dr. Weber"): alone it is progressive or Parkinson's disease ("Response: PD. New lesion");
            # "Fr." not after a catheter's size ("8 Fr. Pigtail", "8,5 Fr Drainage"), a date's or time's end
            # before it still ("03.04.21 Fr. Meier", "14:35 Fr. Meier")
            r"(?:(?:(?<=D)r|(?<=P)(?:rof|D(?=\.?\s*Dr\b))|(?<=M)(?:r|rs|s)|(?<=H)r|(?<=F)" + _NOT_AFTER_A_FRENCH_SIZE
            + r"r)(?:\.\s*|\s+)"
            # "Schwester" before a name, not before a relative's disease ("Mutter und Schwester Mamma-Ca")
            r"|(?:(?<=H)(?:err|errn)|(?<=F)rau|(?<=M)iss|(?<=S)chwester(?!\s+(?=[A-ZÄÖÜ])[\w\-]*(?i:om|ämie|itis|krebs"
            r"|tumor|diabetes|erkrankung|aneurysma|thrombose|embolie|[ \t\-]ca)(?!\w))|(?<=P)fleger(?:in)?)\s+"
            r"|(?<=O)[AÄ][ \t]+"  # "OA Meier", "OÄ Schulz" (Oberarzt, Oberärztin); "OA." is osteoarthritis
            r"|(?<=F)rl\.\s*|(?:(?<=D)R|(?<=P)ROF)\.\s*"  # "DR." in a mixed line
            r"|(?<=D)ipl\.-?[ \t]?[A-ZÄÖÜ][a-zäöü]+\.\s*)"  # "Dipl.-Ing.", "Dipl.-Med."
            # more titles, also in capitals ("Dr. MED. SMITH"), and degrees after "Dr." ("Dr. rer. nat.",
            # "Dr. h.c. mult.")
            r"(?:(?i:Dr|Prof|med|PD|Kollegin|Kollege)(?:\.\s*|\s+)|(?i:habil|univ|dent|vet|rer|nat|medic|phil|sc|hum"
            r"|h\.\s?c|mult)\.\s*)*"
            r"(" + _NAME_PARTS + "|" + _UPPER_NAME_PARTS + r")"
            # a name labelled as the patient's ("Patient:", "Pat.", "Pat:", "Name:"), also in capitals as RIS headers
            # write it ("SMITH^JOHN")
            r"|(?:(?<=P)(?i:at(?:ient(?:in)?|\.|(?=:)))|(?<=N)(?i:ame)):?\s+(?P<patient>" + _LABELLED_NAME + r")"
            # then a field, an id, a date, a sex, a bracket: "Patient: Hans Müller (m), 01.01.1940", "Name: Smith Date: ...",
            # "Pat.: Hans Müller *01.02.1940", "Name: Smith John Male 65", a state after ("Pat. Müller St.n.
            # Lobektomie"); a period not of an abbreviation ("Pat. St.n. Lobektomie", "PAT. ST.N.", "Patient: St. p.
            # OP": status nach, status post)
            r"(?=[,;\n]|[ \t]+(?:MRN|ID|Pat|geb|DOB|born|\d|\w+:|\*|(?:Fem|M)ale\b|Männlich|Weiblich"
            r"|(?i:st|z|s)\.[ \t]?[np]\.)|[ \t]*\("
            r"|\.(?![a-zäöüA-ZÄÖÜ]\.|[ \t][a-zäöü]\.)|$))"
        ),
        # how each title or label starts, lower case: tried there instead of at every capital of a report
        ("dr", "prof", "pd", "mr", "ms", "miss", "hr", "herr", "fr", "schwester", "pfleger", "oa", "oä", "dipl", "pat",
         "name"),
        _NEEDLE,
    ),
    (  # a name after a role, without a title: "Referring physician: Smith, John", "Befundet von Meier",
        # "referring clinician, Jane Doe"
        "name",
        re.compile(r"(?<!\w)(?i:" + trie_regex(_ROLES) + r")(?::?" + _SIGN_OFF_STAMP + _ROLE_NAME + "|" + _ROLE_NAME_AFTER_A_COMMA + ")"),
        _first_words(_ROLES),
        _NEEDLE,
    ),
    (  # the same after a role that is also a report's word, with a colon: "cc: Jane Doe", "Arzt: Meier"
        "name",
        re.compile(r"(?<!\w)(?i:" + trie_regex(_LABEL_ROLES) + r"):" + _SIGN_OFF_STAMP + _ROLE_NAME),
        # the role and its colon; "performed" alone, as any whitespace may part "performed by:"
        (*(role + ":" for role in _LABEL_ROLES if " " not in role), *_first_words([r for r in _LABEL_ROLES if " " in r])),
        _NEEDLE,
    ),
    (  # a name after a staff abbreviation that is no clinical one: "FÄ Weber" (Fachärztin), "Ass.-Ärztin
        # Weber", "i.A. Schulz" (im Auftrag; "i.a." is intra-arterial), "PA-C Smith". "FA" (fractional
        # anisotropy), "PA" (posteroanterior: "PA Chest") and "NP" ("NP swab") only after whom a finding was told
        "name",
        re.compile(r"(?<!\w)(?:(?i:fä(?=[ ])|pa-c|ass\.-?[ \t]?(?:arzt|ärztin))|i\.A\.)[ \t]+"
                   r"(?:(?i:Dr|Prof|med|PD)(?:\.[ \t]*|[ \t]+))*(" + _NAME_PARTS + "|" + _UPPER_NAME_PARTS + ")"),
        ("fä ", "pa-c", "ass.", "i.a."),  # "fä" alone is in every "Gefäß"
        _NEEDLE,
    ),
    (  # "i.V. Schulz" (in Vertretung) signing a report: at a line start or after a comma ("Grüßen, i.V.
        # Schulz"), the name ending its line or before a comma ("i.V. Schulz, Oberarzt"); elsewhere "i.V."
        # is intravenous ("nach i.V. Gabe von KM", "KM i.V. Gabe")
        "name",
        re.compile(r"(?:(?<![^\n])|(?<=[\n,][ \t]))i\.V\.[ \t]+(?:(?i:Dr|Prof|med|PD)(?:\.[ \t]*|[ \t]+))*(" + _NAME_PARTS + "|"
                   + _UPPER_NAME_PARTS + r")(?=[ \t]*(?:,|\n|$))"),
        ("i.v.",),
        _NEEDLE,
    ),
    (  # a name after a staff abbreviation after whom a finding was told: "called to PA Smith", "discussed
        # with NP Jones". A name without one stays ("discussed with Jane Doe"): two capitalized words
        # there are as often a team ("Body Imaging", "Neuro IR")
        "name",
        re.compile(r"(?<!\w)(?i:(?:discussed|reviewed|spoke|spoken|conferred)[ \t]+with|(?:called|communicated|relayed"
                   r"|conveyed|telephoned|reported)[ \t]+to|d/w)[ \t]+(?i:NP|PA(?:-C)?|RN|FA|FÄ|OA|OÄ)[ \t]+("
                   + _NAME_PARTS + "|" + _UPPER_NAME_PARTS + ")"),
        ("discussed", "reviewed", "spoke", "conferred", "called", "communicated", "relayed", "conveyed", "telephoned",
         "reported", "d/w"),
        _NEEDLE,
    ),
    (  # the dictating physician's and the typist's initials after a label: "Diktat: mue/sk", "Dictated by: JAS/mk"
        "name",
        re.compile(r"(?<!\w)(?i:diktat(?:zeichen)?|diktiert(?:[ \t]+von)?|dictated(?:[ \t]+by)?|transcribed(?:[ \t]+by)?"
                   r"|schreibkraft)[ \t]*:?[ \t]*([A-Za-zÄÖÜäöü]{1,4}(?:[/:][A-Za-zÄÖÜäöü]{1,4})+)(?![\w/:])"),
        ("diktat", "diktiert", "dictated", "transcribed", "schreibkraft"),
        _NEEDLE,
    ),
    (  # the same without a label, starting the line of the dictation date: "JAS:mk D: 03/04/2024 T: 03/05/2024".
        # Alone on a line ("MM/sk") they are not looked for: "/" is in every other line of a report
        "name",
        re.compile(r"(?<![^\n])[ \t]*([A-ZÄÖÜ]{2,4}[/:][a-zäöü]{2,4})(?=[ \t]+D:)"),
        (" d:",),
        _NEEDLE_LINE,
    ),
    (  # a name in a labelled field of a header: "Nachname: Müller", "Last name: SMITH", "Pt: Smith, John"
        "name",
        re.compile(r"(?<!\w)(?i:" + trie_regex(_NAME_LABELS) + r"):[ \t]*(" + _LABELLED_NAME + ")"),
        tuple(sorted({label.split()[0].rstrip(".") for label in _NAME_LABELS})),
        _NEEDLE,
    ),
    (  # a name of two words before the birth date in a letter's subject line: "Betrifft: Hans Peter Müller,
        # geb. 01.02.1940", "Re: John Smith, DOB 01/02/1940" (without the date, "Re: Chest Pain" is no name)
        "name",
        re.compile(r"(?<!\w)(?i:betrifft|betreff|re|subject):[ \t]*(" + _FAMILY_GIVEN + "|"
                   + _name_words(r"[ \t]+", least=2)
                   + r")(?=,?[ \t]*(?:\*[ \t]?\d|(?i:geb\.|geboren|DOB\b|D\.O\.B\.|born\b)))"),
        ("betr", "re:", "subject:"),
        _NEEDLE,
    ),
    (  # a name under a letter's closing: "Mit freundlichen Grüßen\nAnna Weber", "Best regards,\nJohn Smith"
        "name",
        re.compile(r"(?<!\w)(?i:mit[ \t]+(?:(?:freundlichen|kollegialen|besten|herzlichen)[ \t]+(?:und[ \t]+)?)+"
                   r"grü(?:ß|ss)en|(?:freundliche|kollegiale|beste)[ \t]+grü(?:ß|ss)e|mfg|(?:(?:best|kind|warm)[ \t]+)?"
                   r"regards|(?:yours[ \t]+)?(?:sincerely|truly))[ \t]*[,.]?[ \t]*\n\s*"
                   r"(?:(?:Dr|Prof|med|PD)\.?[ \t]+)*(" + _SIGNED_NAME + "(?:(?:[ \t]{2,}|\t|[ \t]*[,&/][ \t]*|[ \t]+(?:und|and)"
                   r"[ \t]+)(?:(?:Dr|Prof|med|PD)\.?[ \t]+)*" + _SIGNED_NAME + ")*|" + _UPPER_NAME_PARTS + ")"),
        ("grü", "mfg", "regards", "sincerely", "truly"),
        _SCAN,
    ),
    (  # a name signed with a degree: "John Smith, MD", "Jane Doe, M.D."; a nurse's or assistant's
        # after a comma ("communicated to Jane Doe, RN", "John Smith, PA-C"). Without the comma the
        # name has two parts ("John Smith MD"): one word before "MD" is a disease ("Duchenne MD",
        # "Becker MD": muscular dystrophy)
        "name",
        re.compile(r"(?<!\w)(?:(" + _NAME_PARTS + r"(?:,[ \t]+" + _NAME_PARTS + r")?)(?:,[ \t]*" + _DEGREE
                   + r"|,[ ]?(?:RN|NP|PA-C|APRN|CRNA|LPN)(?![\w\-]))"
                   r"|(" + _NAME_PARTS + r",[ \t]+" + _NAME_PARTS + "|" + _FULL_NAME + r")[ \t]*" + _DEGREE + ")"),
        ("md", "m.d", "phd", "ph.d", ",rn", ", rn", ",np", ", np", ",pa-c", ", pa-c", ",aprn", ", aprn", ",crna", ", crna",
         ",lpn", ", lpn"),
        _NEEDLE_LINE,
    ),
)


@dataclass(frozen=True, slots=True)
class PhiHit:
    """One PHI span found in the ORIGINAL text."""

    start: int
    end: int
    kind: str  # a key of PLACEHOLDERS


@dataclass(frozen=True, slots=True)
class Scrubbed:
    """Scrubbed text, the PHI hits (original offsets) and the map from scrubbed to original offsets."""

    text: str
    hits: tuple[PhiHit, ...]
    scrubbed_starts: tuple[int, ...]  # start of each replaced span in the scrubbed text
    shifts: tuple[int, ...]  # original - scrubbed offset after each replaced span

    def to_original(self, offset: int) -> int:
        """Map an offset in the scrubbed text to the original text (placeholders map to their span start)."""
        k = bisect.bisect_right(self.scrubbed_starts, offset) - 1
        if k < 0:
            return offset
        return offset + self.shifts[k] if offset > self.scrubbed_starts[k] else self.hits[k].start


#: A word, and whether a period follows it.
_WORD_AND_PERIOD = re.compile(r"\w+(?=(\.)?)")
_PARTICLE_SET = frozenset(_PARTICLES)
#: Abbreviations in capitals that read as a title once capitalized ("MR BRAIN" is magnetic
#: resonance, not "Mr Brain"; multiple sclerosis, high resolution), and the verb "miss" ("CT MAY
#: MISS SMALL LESIONS"): without a period after them they stay in capitals, where no title rule reads them.
_CLINICAL_NOT_TITLES = frozenset({"MR", "MS", "HR", "MISS"})


def _capitalized_where_shouting(text: str) -> str:
    """``text`` with each line written in capitals, or the value after a line's label written in
    capitals ("Address: 221B BAKER STREET, LONDON"), capitalized word by word, every offset kept.

    The name and street rules read a name as capitalized words after a title or role ("Dr. Smith",
    "Baker Street"), and legacy RIS write whole reports, their signature lines or their header
    values in capitals ("DISCUSSED WITH DR. SMITH"): read so, every name there would reach the
    corpus. The rules run over this text instead; the other rules match either case.

    >>> _capitalized_where_shouting("DISCUSSED WITH DR. O'BRIEN.\\nNo effusion.\\nAddress: 221B BAKER STREET")
    "Discussed With Dr. O'Brien.\\nNo effusion.\\nAddress: 221B Baker Street"
    """
    lines = text.split("\n")
    loud = [line.isupper() and " " in line.strip() for line in lines]  # a heading alone ("FINDINGS:") holds no name
    spans = [m.span(1) for m in _VALUE_WITHOUT_LOWER_CASE.finditer(text) if m[1].isupper() and " " in m[1].strip()]
    if not spans and not any(loud):
        return text
    at = 0
    for line, is_loud in zip(lines, loud, strict=True):
        if is_loud:
            spans.append((at, at + len(line)))
        at += len(line) + 1
    parts = []
    cursor = 0
    for start, end in sorted(spans):
        if start >= cursor:  # not a value in a line in capitals, capitalized with it
            parts += [text[cursor:start], _WORD_AND_PERIOD.sub(_capitalized, text[start:end])]
            cursor = end
    parts.append(text[cursor:])
    return "".join(parts)


#: A label's value without a lower-case letter, to the line's end ("Address: 221B BAKER STREET"); found
#: by one search for ": ", as testing each line of a report cost more than the rest of
#: ``_capitalized_where_shouting`` on a report not in capitals.
_VALUE_WITHOUT_LOWER_CASE = re.compile(r": ([^a-zäöüß\n]++)$", re.MULTILINE)


def _capitalized(word: re.Match[str]) -> str:
    """A word in capitals as a name part is written: a particle lower case ("von der Leyen"); "MR",
    "MS" and "HR" without a period after them are left as they are (``_CLINICAL_NOT_TITLES``), and
    so is a word with a digit, which is no name part but a house number, a postcode or an age read
    as written ("221B", "NW1 6XE", "95M")."""
    w = word[0]
    if word[1] is None and w in _CLINICAL_NOT_TITLES or not w.isalpha():
        return w
    lower = lower_same_length(w)
    return lower if lower in _PARTICLE_SET else w[0] + lower[1:]


#: Where a number starts: a digit, or a "+" or "(" before one, with no letter or digit before it.
#: The engine skips ahead to where the first character class matches, testing each character: a
#: class with "\d" costs a Unicode lookup per character, about three times as slow as "[+(0-9]"
#: (some 14 of the 20 µs the search took on a report of 1,000 characters). So the class takes the
#: ASCII digits and any character beyond ASCII, a quick range test, and the lookbehind keeps the
#: digits among the few of those a report holds ("٣" is a digit, "ä" is not).
_NUMBER_START = re.compile(r"[+(0-9\x80-\U0010ffff](?<=[+(\d])(?<!\w[+(\d])(?:(?<=\d)|(?=\d))")
#: Read in the reversed text from just before a number: whitespace, maybe one ".", ":" or ",", and the
#: word before them (letters, digits, "_" and "-"), reversed.
_WORD_BEFORE_REVERSED = re.compile(r"\s+[.:,]?([\w\-]*)")


def _anchor_starts(text: str) -> dict[str, list[int]]:
    """Where the anchored rules are tried, by anchor (sorted offsets).

    The word before a number is the (hyphenated) word across whitespace and one ".", ":" or ","
    ("March 3", "Hauptstr. 5", "Alter: 95", "March, 2020"); each of its word starts counts. It is read by
    matching backwards from the number, in the reversed text, where whitespace stands before it.
    """
    numbers = [m.start() for m in _NUMBER_START.finditer(text)]
    words: set[int] = set()
    if numbers:
        n = len(text)
        backwards = text[::-1]
        for p in numbers:
            if not (p and text[p - 1].isspace()):  # isspace is the regex's "\s"
                continue  # no word before it ("(3:45)", "03/04"): spares the match
            m = _WORD_BEFORE_REVERSED.match(backwards, n - p)
            word = m[1][::-1]
            if not word:
                continue
            start = n - m.end()
            if word[0] != "-":
                words.add(start)
            at = word.find("-")
            while at >= 0:  # "Hans-Böckler-Str. 5": each part after a hyphen starts a word
                if at + 1 < len(word) and word[at + 1] != "-":
                    words.add(start + at + 1)
                at = word.find("-", at + 1)
    return {_NUMBER: numbers, _WORD_BEFORE_NUMBER: sorted(words), _NEAR_NUMBER: sorted(words.union(numbers))}


#: Letters that a case-insensitive pattern reads as an ASCII letter but ``lower_same_length`` keeps
#: (``re.IGNORECASE``): "ı" is an "i", "ſ" an "s".
_CASE_FOLDS = (("ı", "i"), ("ſ", "s"))


def _one_for_one(lower: str, letters: Sequence[tuple[str, str]]) -> str:
    """``lower`` with each letter of ``letters`` replaced by its partner, every offset kept (``str.replace``
    where one occurs: ``str.translate`` costs ~80 µs on a report with any non-ASCII)."""
    if lower.isascii():
        return lower
    for letter, plain in letters:
        if letter in lower:
            lower = lower.replace(letter, plain)
    return lower


def _case_folded(lower: str) -> str:
    """``lower`` with ``_CASE_FOLDS`` applied, so that a needle finds "CAſE NO." as the rule does."""
    return _one_for_one(lower, _CASE_FOLDS)


def _needle_automaton(rules: Sequence[tuple[str, re.Pattern[str], tuple[str, ...], str]]) -> ahocorasick.Automaton:
    """One Aho-Corasick automaton over the needles of all ``rules``: each needle maps to its length
    less one and the indices of the rules it belongs to."""
    owners: dict[str, list[int]] = {}
    for k, (_, _, needles, _) in enumerate(rules):
        for needle in needles:
            owners.setdefault(needle, []).append(k)
    automaton = ahocorasick.Automaton()
    for needle, ks in owners.items():
        automaton.add_word(needle, (len(needle) - 1, tuple(ks)))
    automaton.make_automaton()
    return automaton


_NEEDLES = _needle_automaton(_RULES)


def _needle_starts(folded: str) -> dict[int, list[int]]:
    """Rule index -> where its needles occur in ``folded`` (sorted, distinct offsets; rules whose
    needles do not occur are absent).

    One pass of the automaton finds every needle of every rule: testing or finding each of the
    ~150 needles with ``str.find`` cost about 100 µs per report, a third of the PHI search.
    """
    found: dict[int, list[int]] = {}
    for end, (back, rules) in _NEEDLES.iter(folded):
        for k in rules:
            found.setdefault(k, []).append(end - back)
    return {k: sorted(set(starts)) for k, starts in found.items()}


def _matches_in_lines(pattern: re.Pattern[str], text: str, starts: Sequence[int]) -> Iterator[re.Match[str]]:
    """``pattern.finditer(text)`` for a pattern each of whose matches holds a needle found at one
    of ``starts`` (sorted) and, lookaheads included, stays within one line: only the lines where a
    needle was found are scanned.

    Each line is scanned up to its end (``endpos``), where the pattern reads the end of the text
    as it read the line end ("\\b", "(?![\\w\\-])"); a lookbehind still sees the lines before.
    """
    end = 0
    for start in starts:
        if start >= end:  # not in the line last scanned
            end = text.find("\n", start)
            end = len(text) if end < 0 else end
            yield from pattern.finditer(text, text.rfind("\n", 0, start) + 1, end)


#: A time of day after a date: "03.04.2021 14:35", "2021-03-04T14:35:00Z", "03/04/2021 at 2:35 PM",
#: "03.04.2021, um 14.35 Uhr". It dates the study to the minute, and left behind it read
#: "[DATE]T14:35:00". A zone after it, joined or after a space ("+01:00", " +0100", " UTC", " MEZ"),
#: goes with it. An hour of one digit, or a period before the minutes, only with its suffix:
#: "3:45" after a date may be an image reference, "12.50" a measurement; a clock-face position
#: ("10:30 o'clock") stays.
_TIME_AFTER_DATE = re.compile(
    r"(?:T|,?[ \t]+(?:(?i:at|um)[ \t]+)?)"
    r"(?:(?:[01]\d|2[0-3]):[0-5]\d(?::[0-5]\d(?:[.,]\d+)?)?(?![\d:]|[.,]\d)"
    r"(?:Z(?!\w)|[+-]\d{2}(?::?\d{2})?(?!\d)|[ \t]*" + _TIME_SUFFIX + r")?"  # a zone: "+01:00", "-05"
    r"|(?:[01]?\d|2[0-3])[:.][0-5]\d(?!\d)[ \t]*" + _TIME_SUFFIX + r")"
    # a zone after a space: its hours and minutes ("-05" alone may be a range's end), or its name
    # (in any case: a line in capitals was capitalized, "Mesz")
    r"(?:[ \t]+(?:[+-](?:0\d|1[0-4]):?[0-5]\d(?!\d)|(?i:UTC|GMT|[ECMP][SD]T|CES?T|MES?Z)(?:[+-]\d{1,2}(?::?\d{2})?)?"
    r"(?![\w:])))?"
    r"(?![ \t]*o['’]clock)"
)
#: The same ending a date's span, to parse the date before it (with the last period of its "p.m.").
_TIME_ENDING_DATE = re.compile(r"(?:" + _TIME_AFTER_DATE.pattern + r")\.?$")


#: Letters with a diacritic and the letter without it, one for one: a DICOM header in the default
#: character set drops them ("MULLER", "GARCIA") where the report writes "Müller", "García".
_DIACRITICS = (("ä", "a"), ("ö", "o"), ("ü", "u"), ("á", "a"), ("à", "a"), ("â", "a"), ("å", "a"), ("é", "e"),
               ("è", "e"), ("ê", "e"), ("ë", "e"), ("í", "i"), ("ì", "i"), ("î", "i"), ("ï", "i"), ("ó", "o"),
               ("ò", "o"), ("ô", "o"), ("ø", "o"), ("ú", "u"), ("ù", "u"), ("û", "u"), ("ñ", "n"), ("ç", "c"),
               ("š", "s"), ("č", "c"), ("ž", "z"), ("ł", "l"))


def _without_diacritics(lower: str) -> str:
    """``lower`` with each of ``_DIACRITICS`` replaced, every offset kept."""
    return _one_for_one(lower, _DIACRITICS)


def find_phi(text: str, *, header_values: Sequence[str] = ()) -> tuple[PhiHit, ...]:
    """Find PHI spans in ``text`` (sorted, non-overlapping; a span that reaches past earlier ones
    joins them into one, of the longest one's kind).

    ``header_values`` are strings known to be PHI for this report (DICOM header names, the MRN,
    the accession number): each name part of two or more letters is also scrubbed wherever it
    appears as a word, so "Smith" is caught without a title in front; with its umlauts spelled out
    or dropped and its accents dropped, on either side ("MUELLER" and "MULLER" find "Müller").

    >>> [h.kind for h in find_phi("Dr. Meier informed at 0176 1234567 on 03.04.2019.")]
    ['name', 'phone', 'date']
    """
    text = _capitalized_where_shouting(text)  # offsets unchanged: the hits index the text as given
    hits: list[PhiHit] = []
    taken = bytearray(len(text))

    def claim(start: int, end: int, kind: str) -> None:
        if start >= end or all(taken[start:end]):
            return
        new = PhiHit(start, end, kind)
        if any(taken[start:end]):  # "Müller" (a header value) inside "Dr. Müller-Lüdenscheidt": one span
            joined = [new, *(h for h in hits if h.start < end and start < h.end)]
            hits[:] = [h for h in hits if h not in joined]
            longest = max(joined, key=lambda h: h.end - h.start)
            new = PhiHit(min(h.start for h in joined), max(h.end for h in joined), longest.kind)
        taken[new.start:new.end] = b"\x01" * (new.end - new.start)
        hits.append(new)

    lower = lower_same_length(text)
    bare = _without_diacritics(lower) if header_values else lower
    for value in header_values:  # plain substring search: no regex compiled per report
        # "=" parts a DICOM name's groups ("Doe^Jane=ドウ^ジェーン": alphabetic, ideographic, phonetic)
        for part in re.split(r"[\^,\s=]+", value.lower()):
            if not (len(part) >= 2 and not part.isdigit() or len(part) >= 4) or part in _PARTICLES:
                continue  # too short to tell, or "von"/"de" (identifies no one, and is a word everywhere)
            kind = "id" if any(c.isdigit() for c in part) else "name"
            for spelling in {_without_diacritics(s) for s in name_spellings(part)}:
                at = bare.find(spelling)
                while at >= 0:
                    end = at + len(spelling)
                    if (at == 0 or not bare[at - 1].isalnum()) and (end == len(bare) or not bare[end].isalnum()):
                        claim(at, end, kind)
                    at = bare.find(spelling, at + 1)
    starts = _anchor_starts(text)
    needle_starts = _needle_starts(_case_folded(lower))
    for k, (kind, pattern, needles, anchor) in enumerate(_RULES):
        if needles and k not in needle_starts:
            continue  # cannot match: none of its needles occurs
        if anchor == _NEEDLE:
            matches = matches_at(pattern, text, needle_starts[k])
        elif anchor == _NEEDLE_LINE:
            matches = _matches_in_lines(pattern, text, needle_starts[k])
        else:
            matches = pattern.finditer(text) if anchor == _SCAN else matches_at(pattern, text, starts[anchor])
        for m in matches:
            if kind in ("id", "name", "age", "phone") and m.lastindex:
                group = 1
                while m.start(group) < 0:  # the first group that took part
                    group += 1
                start, end = m.span(group)
                if kind == "name" and ((first := next((w for w in text[start:end].replace("/", " ").split()
                                                        if w[0].isupper()), "").rstrip(",;.")) in _NOT_NAMES
                                       or _DISEASE_WORD.fullmatch(first)):
                    continue  # "Patient", also after a particle ("Die Schwester der Patientin"), or before a slash; a disease
                if (m.lastgroup == "patient" and _PATIENT_WITHOUT_COLON.fullmatch(text, m.start(), start)
                        and _PATIENT_DESCRIPTIONS.fullmatch(text, start, end)):
                    continue  # "Pat. Raucher, 40 py.": what the patient is
            else:
                start, end = m.span()
            if kind == "phone" and not m.lastindex and sum(c.isdigit() for c in text[start:end]) < 7:
                continue
            if kind == "date" and (time := _TIME_AFTER_DATE.match(text, end)):
                end = time.end()
            claim(start, end, kind)
    hits.sort(key=lambda h: h.start)
    merged: list[PhiHit] = []
    for hit in hits:  # "John" + "Smith" from the header -> one name span
        if merged and merged[-1].kind == hit.kind == "name" and not text[merged[-1].end:hit.start].strip(" ,"):
            merged[-1] = PhiHit(merged[-1].start, hit.end, "name")
        else:
            merged.append(hit)
    return tuple(merged)


def _parse_date(value: str) -> date | None:
    """Best-effort parse of the date spellings :data:`_RULES` finds (day-first for dotted dates), a
    time after the date ignored."""
    v = _TIME_ENDING_DATE.sub("", value.strip()).lower()
    try:
        if m := re.fullmatch(r"(\d{4})([-/.])(\d{1,2})\2(\d{1,2})", v):
            return date(int(m[1]), int(m[3]), int(m[4]))
        if m := re.fullmatch(r"(\d{1,2})([./-])(\d{1,2})[./-](\d{2,4})", v):
            year = int(m[4]) + (2000 if len(m[4]) == 2 else 0)
            first, second = int(m[1]), int(m[3])
            day, month = (second, first) if m[2] == "/" else (first, second)  # US slashes, else day first
            return date(year, month, day)
        if m := re.fullmatch(r"(\d{1,2})(?:st|nd|rd|th)?(?:\.?\s(?:of\s)?|[./-])?([a-zäöü]+)\.?"
                             r"(?:,?\s|[-/]|(?<=\.))?(\d{4}|\d{2})", v):  # "3 March 2021", "05-JAN-24", "12MAR2020"
            year = int(m[3]) + (2000 if len(m[3]) == 2 else 0)
            return date(year, _MONTH_NUM[m[2][:3] if m[2] not in _MONTH_NUM else m[2]], int(m[1]))
        if m := re.fullmatch(r"([a-zäöü]+)\.?\s(\d{1,2})(?:st|nd|rd|th)?,?\s(\d{4})", v):
            return date(int(m[3]), _MONTH_NUM[m[1][:3] if m[1] not in _MONTH_NUM else m[1]], int(m[2]))
        if m := re.fullmatch(r"(\d{4})(\d{2})(\d{2})", v):
            return date(int(m[1]), int(m[2]), int(m[3]))
    except (ValueError, KeyError):
        return None
    return None


def scrub_text(text: str, hits: Sequence[PhiHit], *, date_shift_days: int | None = None) -> Scrubbed:
    """Replace each hit by its placeholder; with ``date_shift_days`` dates become shifted ISO dates.

    Shifting keeps intervals between a patient's dates (the offset is per patient); a time after a
    date goes with it, and a date that cannot be parsed is still removed.

    >>> scrub_text("Seen 03.04.2019.", find_phi("Seen 03.04.2019."), date_shift_days=-2).text
    'Seen 2019-04-01.'
    """
    parts: list[str] = []
    starts: list[int] = []
    shifts: list[int] = []
    cursor = 0
    length = 0
    for hit in hits:
        parts.append(text[cursor:hit.start])
        length += hit.start - cursor
        replacement = PLACEHOLDERS[hit.kind]
        if hit.kind == "date" and date_shift_days is not None:
            parsed = _parse_date(text[hit.start:hit.end])
            if parsed is not None:
                replacement = (parsed + timedelta(days=date_shift_days)).isoformat()
        starts.append(length)
        parts.append(replacement)
        length += len(replacement)
        shifts.append(hit.end - length)
        cursor = hit.end
    parts.append(text[cursor:])
    return Scrubbed("".join(parts), tuple(hits), tuple(starts), tuple(shifts))
