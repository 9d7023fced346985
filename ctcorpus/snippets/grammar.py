"""The image-reference grammar: "series 3, image 45" and its many spellings -> :class:`ImageReference`.

Radiologists point at slices in a dozen ways ("se 3 im 45", "(3/45)", "Bild 45 der Serie 3",
"(IMA 8-34)", "images 12 and 45 of series 3"). One hand-written regex for all of them becomes
unreadable and lets false friends through, so the grammar is built from small named parts
(keywords per language, a number that is not a measurement, a list/range of numbers) composed
into eight forms, compiled once into a single alternation per language set. A few context rules
that a regex cannot express well (dates, blood pressure, ratios) are applied to the bare
parenthesised "(3/45)" form, the one form that has no keyword to vouch for it, and to an image
out of a total ("Se 3 Im 45/120"), which a month and year can look like. A reference
on a prior exam ("on the prior CT, series 3 image 45", "Bild 45 der Voruntersuchung") names that
study's images, not this one's, and is not mined. An image without a series that the text places on
a reformat or a scout ("coronal image 45", "scout image 2") is flagged ``on_reformat``: resolution quarantines it.

>>> [(r.series_number, r.image_numbers) for r in mine_image_references("Nodule (series 3, image 45).")]
[(3, (45,))]
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import Enum
from functools import cache
from itertools import pairwise

from ctcorpus.errors import SnippetError

__all__ = [
    "GRAMMAR_VERSION",
    "ImageReference",
    "ReferenceForm",
    "mine_image_references",
    "split_sentences",
]

#: Bumped whenever a change to the grammar can change what is mined (recorded as the producer).
GRAMMAR_VERSION = "31"

_LANGUAGES: tuple[str, ...] = ("en", "de", "nl")


class ReferenceForm(str, Enum):
    """Which grammar form matched (kept on each reference so errors can be traced to a rule)."""

    SERIES_IMAGE = "series_image"  # series 3, image 45 / se3/im45 / Serie 3 im Bild 40-44 / Se 3 Im 45/120 / Se 4 #45
    IMAGE_SERIES = "image_series"  # image 45 of series 3 / Bild 45 der Serie 3 / image 45 series 3
    IMA_DASH = "ima_dash"  # (IMA 8-34): Siemens-style series-image pair
    IMAGE_ONLY = "image_only"  # (image 45) / IMA 75 en 90 / Bildnummer 45 / Im 60 after "Se 3 Im 45 and 4,"
    PAREN_PAIR = "paren_pair"  # (3:45) / (3/45) / (4:45, 4:60)
    SLASH_PAIR = "slash_pair"  # (Se/Im 3/45) / series/image 4/112-114 / Serie/Bild 3/45
    LETTER_PAIR = "letter_pair"  # (S3/I45) / S3 I45-47 / S 3 I 45
    IMAGES_OF_SERIES = "images_of_series"  # images from series 3, 45-47 / Bilder aus Serie 3, 45


@dataclass(frozen=True, slots=True)
class ImageReference:
    """One image reference found in a report, with the sentence that carries it.

    ``image_numbers`` lists every referenced image; an ascending range longer than the configured cap is
    kept as its first and last image with ``truncated`` set, so a typo cannot flood the corpus (one that
    runs down or from the first image is none, see :func:`_numbers`).
    ``series_stated`` is False when the text names no series (resolution then infers it).
    ``on_reformat`` marks an image without a series that the text places on a reformat or a scout ("coronal
    image 45", "scout image 2"): its number is no axial position, and the inferred axial series would misplace it.
    ``year_after_list`` is a list's last number where a comma sets it after the list and it reads as a year
    ("(series 3, image 45, 2019)": 1990-2039): it stays in ``image_numbers``, and the resolver drops it where the
    series has no image that high; a caller of the grammar alone gets the year as an image.
    """

    start: int
    end: int
    text: str
    series_number: int | None
    image_numbers: tuple[int, ...]
    series_stated: bool
    is_range: bool
    truncated: bool
    form: ReferenceForm
    sentence_index: int
    sentence_start: int
    sentence_end: int
    on_reformat: bool = False
    year_after_list: int | None = None


# ---------------------------------------------------------------------------------------------
# Token patterns (small, named, composed below)
# ---------------------------------------------------------------------------------------------

_SERIES_WORDS: dict[str, tuple[str, ...]] = {
    "en": ("series", "ser", "se", "sr"),
    "de": ("serie", "ser", "se"),
    "nl": ("serie", "ser", "se"),
}
#: Image words that may stand alone ("(image 45)"); "im" and German "Bi." only count next to a series ("se 3 im
#: 45", "Se. 3, Bi. 45") because in German "im" is "in the", and "bi" begins "BI-RADS" and "bilateral".
_IMAGE_WORDS: dict[str, tuple[str, ...]] = {
    "en": ("images", "image", "imgs", "img", "ima", "slices", "slice"),
    "de": ("bildern", "bilder", "bild", "ima", "schichten", "schicht"),
    "nl": ("beelden", "beeld", "ima", "sneden", "snede"),
}
_WEAK_IMAGE_WORDS: dict[str, tuple[str, ...]] = {"en": ("im",), "de": ("bi",), "nl": ()}
#: Image words that a colon may end right after a parenthesis ("(Image: 45)", "(Bild: 45)"): a plural ("Images:
#: 245", "(Schichten: 320)") or a slice counts the images of a technique line.
_ONE_IMAGE_WORDS: dict[str, tuple[str, ...]] = {"en": ("image", "img", "ima"), "de": ("bild", "ima"), "nl": ("beeld", "ima")}
#: "image 45 <of> [the] series 3", "image 12 at series 601", "Bild 12 auf Serie 601" (without "at"/"auf" the
#: image was placed in the primary series)
_CONNECTORS: dict[str, tuple[str, ...]] = {
    "en": ("of", "in", "on", "from", "at"),
    "de": ("der", "in", "von", "aus", "auf"),
    "nl": ("van", "uit", "in", "op"),
}
_ARTICLES: dict[str, tuple[str, ...]] = {"en": ("the",), "de": ("der", "dem"), "nl": ("de", "het")}
_AND_WORDS: dict[str, tuple[str, ...]] = {"en": ("and",), "de": ("und", "u.", "sowie"), "nl": ("en",)}
#: "images 45 or 47": the radiologist leaves the choice between slices, both are mined; "Bild 45 resp. 47" names
#: one slice each for two findings.
_OR_WORDS: dict[str, tuple[str, ...]] = {
    "en": ("or", "and/or"), "de": ("oder", "bzw.", "resp.", "und/oder"), "nl": ("of", "resp.", "en/of")
}
#: Words that join two images of a list, or two references.
_JOIN_WORDS: dict[str, tuple[str, ...]] = {lang: _AND_WORDS[lang] + _OR_WORDS[lang] for lang in _LANGUAGES}
#: Words that begin another clause: no series reaches over them to an image.
_BUT_WORDS: dict[str, tuple[str, ...]] = {
    "en": ("but", "while", "whereas", "now"), "de": ("aber", "während", "jetzt"), "nl": ("maar", "terwijl", "nu")
}
#: Most words between a series and its image ("in series 3, best seen on image 45").
_MAX_GAP_WORDS = 4
#: Dutch "t/m" ("tot en met", up to and including) is how Dutch reports write a range ("beeld 45 t/m 47").
_TO_WORDS: dict[str, tuple[str, ...]] = {"en": ("to", "through"), "de": ("bis",), "nl": ("tot", "t/m", "tot en met")}
#: "series 3 on image 45", "Serie 3 im Bild 45", "serie 3 op beeld 45": where in the series the image is.
_AT_WORDS: dict[str, tuple[str, ...]] = {
    "en": ("on", "at", "in", "from"), "de": ("auf", "im", "in", "ab"), "nl": ("op", "in", "vanaf")
}

#: A keyword ends where letters end: "se3" is "se" + 3, "images" is not "image" + "s".
_END_WORD = r"(?![^\W\d_])"
#: After a number: no more digits, no decimal/time/fraction continuation, no unit, no time span ("images
#: 6 months ago": image 6 was placed), and no count ("image 45 and 2 more": 2 is no image).
_NOT_MEASUREMENT = (
    r"(?!\d|[.,:/]\d|\s*(?:mm|cm|ml|mmhg|hu|kv|mas|mgy|gy|kg|mg|ms|sec|min|jahre|jaar|years?|y/o|%|°|×|[xdh]"
    r"|months?|monate?n?|maanden|weeks?|wochen|weken|days?|tage?n?|dagen|more|others?|weitere|andere|meer)"
    + _END_WORD
    + r"|\s*%)"
)
#: A German ordinal after "im" ("im 6. Segment", "im 4. ICR": in the 6th segment), up to the ribs' 12: no image
#: after a weak "im" (an image that small, ending a sentence, is lost with it).
_ORDINAL = r"(?:[1-9]|1[0-2])\.[ \t]*[^\W\d_]"
#: An image number with a thousands separator ("image 1,045", "Bild 1.045"): a decimal has no three digits after its mark.
_GROUPED = r"[1-9][,.]\d{3}"
#: A number that begins a dashed date ("2019-03-12", "12-03-2021"), which no range is: after a list ("image 45,
#: 12-03-2021") its parts were read as images 3 to 12 and 2021.
_NOT_DATE = r"(?!-\d{1,4}-\d)"
_NUM = rf"(?:{_GROUPED}|\d{{1,4}})" + _NOT_MEASUREMENT + _NOT_DATE
#: A SeriesNumber after a series word: derived series count on past 9999 (10001); with four digits
#: only, "series 10001, image 45" became a bare "image 45", placed in the primary series.
_SERIES_NUM = r"\d{1,6}" + _NOT_MEASUREMENT
_SP = r"[ \t]*\n?[ \t]*"  # spaces, at most one line break (reports are often hard-wrapped)
#: How a series or image word ends before its number: with what may stand between them ("series #3", "image no. 45",
#: "image no 45", "image number 45", "Bild Nr 45"), or in a compound with its number's word ("Bildnummer 45",
#: "Seriennummer 3", "beeldnummer 45", "Bild-Nr. 45", "beeldnr. 45").
_KEYWORD_END = (rf"(?:n?-?(?:nummer|nr\.?){_END_WORD}"
                rf"|\.?{_END_WORD}(?:{_SP}(?:no\.?|nr\.?|number|nummer|#){_END_WORD})?)")


def _words(table: dict[str, tuple[str, ...]], languages: Sequence[str]) -> str:
    words = sorted({w for lang in languages for w in table[lang]}, key=lambda w: (-len(w), w))
    return "(?:" + "|".join(re.escape(w) for w in words) + ")" if words else "(?!)"


def _joining_words(table: dict[str, tuple[str, ...]], languages: Sequence[str]) -> str:
    """The words of ``table`` that join two images, less any that is a connector in one of ``languages``:
    Dutch "of" is "or", but English "image 45 of 120" is one image, so "of" joins only in a Dutch report."""
    connectors = {w for lang in languages for w in _CONNECTORS[lang]}
    return _words({lang: tuple(w for w in table[lang] if w not in connectors) for lang in languages}, languages)


def _number_list(languages: Sequence[str], repeated: str = "(?!)") -> str:
    """Numbers joined by commas, 'and'/'or' words or range marks: '45', '40-44', '12, 18 and 45', '45 + 47',
    '45 or 47'; a range's end may repeat the image word ('45 through image 47', '45 bis Bild 47'), and any
    other item the ``repeated`` one ('Se 4 Im 60 and Im 61'), unless an ordinal follows it ('und im 6. Segment').

    A list item that an image word (or the ``repeated`` one) follows may be the next reference's series, whose
    word is left out ('series 3, image 45 and 4, image 60', 'Se 3 Im 45 and 4, Im 60'), or the list's last
    image ('images 45 and 47, image 50'): it is left to :func:`_with_listed_images`, which can compare numbers.
    A range's end is no such item. A list cut short before a range's or an alternative's measured end is a
    measurement ("images 3-5 mm thick", "Bilder 1 bis 2 mm", "images 1 or 2 mm thick"), not image 3."""
    and_words = _joining_words(_JOIN_WORDS, languages)
    or_words = _joining_words(_OR_WORDS, languages)
    to_words = _words(_TO_WORDS, languages)
    image_word = rf"\b{_words(_IMAGE_WORDS, languages)}\.?{_END_WORD}"
    image = rf"(?:{image_word}{_SP})?"
    range_joint = rf"(?:{_SP}[-–—]{_SP}|\s+{to_words}\s+){image}"
    list_joint = (rf"(?:{_SP},{_SP}(?:{and_words}\s+)?|\s+{and_words}\s+|{_SP}[&+]{_SP})"
                  rf"(?:{repeated}{_SP}(?!{_ORDINAL}))?")
    series_of_next = rf"(?![ \t]*[,:/]{_SP}(?:{image_word}|{repeated}))"
    return (rf"{_NUM}(?:{range_joint}{_NUM}|{list_joint}{_NUM}{series_of_next})*"
            rf"(?![-–—]\d|\s+(?:{to_words}|{or_words})\s+\d)")


@cache
def _compiled(languages: tuple[str, ...]) -> tuple[re.Pattern[str], ...]:
    """(trigger, grammar, joint between two references, joint before a series without its word) for a
    language set.

    The trigger finds the few places a reference can start: a word that begins like a keyword
    and is followed by a number, or a parenthesis followed by a number. It begins with a literal,
    so the regex engine skips ahead quickly; the grammar is only tried where it fires. Scanning
    with the full alternation at every character is about 5x slower.
    """
    # a colon only where the other keyword vouches for the reference ("Se: 3 Im: 45", "Serie: 3, Bild 45"):
    # a lone "Images: 245" is a count in a technique line
    series = rf"\b{_words(_SERIES_WORDS, languages)}{_KEYWORD_END}:?"
    image_words, weak_image = _words(_IMAGE_WORDS, languages), _words(_WEAK_IMAGE_WORDS, languages)
    strong_image = rf"\b{image_words}{_KEYWORD_END}"
    any_image = rf"\b(?:{image_words}|{weak_image}){_KEYWORD_END}:?"
    # after its series number the image word may follow a digit ("Se3Im45"), and only a weak one ("im") may
    # repeat in its list ("Se 4 Im 60 and Im 61"), so "Serie 3 Bild 45 und im 6. Segment" stays image 45; a
    # preposition or a parenthesis may stand before it ("series 3 on image 45", "series 3 (image 45)"): read
    # alone, the image was placed in the primary series; a "#" alone may stand for the image word ("series 4 #45"),
    # repeated in its list ("series 3, #45 and #47"), but not before a word, nor cut short of one: "Serie 3 #2 Herde"
    # and "Series 3 #2, #3 and #4 lesions" count findings; no weak "im" before an ordinal ("Serie 3 im 6. Segment")
    series_image = rf"(?<![^\W\d_])(?:{image_words}|(?P<a_weak>{weak_image})){_KEYWORD_END}:?"
    series_numbers = _number_list(languages, rf"(?(a_weak){weak_image}\.?{_END_WORD}|(?(a_hash)#|(?!)))")
    weak_numbers = _number_list(languages, rf"(?(d_weak){weak_image}\.?{_END_WORD}|(?!))")
    # a few words may continue the clause from the series to its image ("in series 3, best seen on image 45"),
    # none that names another series or image, joins another clause, or puts the image on a prior exam or a
    # reformat; and no weak "im" after them ("Serie 3, Herd im 6. Segment")
    not_gap = (rf"(?:{_words(_SERIES_WORDS, languages)}|{image_words}|{_words(_JOIN_WORDS, languages)}"
               rf"|{_words(_BUT_WORDS, languages)}|{_PRIOR_WORD}|{_PRIOR_NOUN}|{_PAST}|{_PLANE}|{_NOT_AXIAL})")
    gap = (rf"(?:{_SP},)?(?:(?=\s){_SP}(?!{not_gap}{_END_WORD})[^\W\d_]+){{1,{_MAX_GAP_WORDS}}}(?=\s){_SP}"
           rf"(?!{weak_image}{_END_WORD})")
    connector = _words(_CONNECTORS, languages)
    article = _words(_ARTICLES, languages)
    numbers = _number_list(languages)
    # how many a series or image number is out of: "series 2 of 5", "image 45 of 120, series 3"
    total = rf"(?:\s+{connector}\s+(?:{_GROUPED}|\d{{1,6}}){_NOT_MEASUREMENT})?"
    forms = {
        ReferenceForm.SERIES_IMAGE: (
            rf"{series}{_SP}(?P<a_s>{_SERIES_NUM}){total}"
            rf"(?:(?:{_SP}[,;/:]{_SP}|{_SP}[-–—]{_SP}|\s+)?(?:{_words(_AT_WORDS, languages)}\s+|\({_SP})?|{gap})"
            rf"(?:{series_image}|(?P<a_hash>(?<=[\s,(])#)){_SP}(?(a_weak)(?!{_ORDINAL}))"
            rf"(?P<a_i>{series_numbers}"
            # image 45 of a series of 120, as a PACS overlay shows it ("Se: 3 Im: 45/120"); checked by _is_reference
            rf"|\d{{1,4}}(?=/\d{{1,6}}{_NOT_MEASUREMENT}))(?:/(?P<a_n>\d{{1,6}}))?"
            rf"(?(a_hash)(?![ \t]*[^\W\d_]|{_SP}[,&+]{_SP}#?\d))"
        ),
        # a bare space before the series word ("image 45 series 3") stays on one line: a line or list item
        # that begins with a series is a reference of its own; a parenthesis may hold the connector ("image 45
        # (of series 3)"); a "#" for the image word only where the series closes the parenthesis ("(#45, series
        # 3)"): in "(#2, series 3, image 45)" it numbers a target lesion; the series' plane may stand before it
        # ("image 45, coronal series 601": read alone, image 45 of the reformat was placed in the primary series);
        # the series after it vouches for an image out of a total ("(image 87/300, series 4)"), checked by _is_reference
        ReferenceForm.IMAGE_SERIES: (
            rf"(?:{any_image}|(?P<b_hash>(?<=\()#)){_SP}"
            rf"(?P<b_i>{numbers}|\d{{1,4}}(?=/\d{{1,6}}{_NOT_MEASUREMENT}))(?:/(?P<b_n>\d{{1,6}}))?{total}"
            rf"(?:{_SP}[,;/]{_SP}|\s+{connector}\s+(?:{article}\s+)?|{_SP}\({_SP}(?:{connector}\s+(?:{article}\s+)?)?"
            rf"|[ \t]+)(?:(?:{_PLANE}|axial|axiale[nr]?|axiaal)\.?\s+)?"
            rf"{series}{_SP}(?P<b_s>{_SERIES_NUM})(?(b_hash)(?=[ \t]*\)))"
        ),
        ReferenceForm.IMA_DASH: rf"\bima\.?{_SP}(?P<c_s>\d{{1,4}}){_SP}-{_SP}(?P<c_i>{_NUM})",
        # a weak "im" only after the series number of a reference with its word left out ("Se 3 Im 45 and 4,
        # Im 60"), which :func:`_elided_weak_images` checks; no total after the image ("image 45/120"), which
        # only a series vouches for: "image 3/45" is series 3, image 45 in some reports; the elided series
        # number does ("Se 3 Im 45/120 and 4, Im 60/200"); "key" vouches for an "im" as "image" ("key im 45"), and a
        # parenthesis for a colon after one image ("(Image: 45)"; a lone "Images: 245" counts a technique's images)
        ReferenceForm.IMAGE_ONLY: (
            rf"(?:{strong_image}|(?:(?<=\()|(?<=\([ \t])){_words(_ONE_IMAGE_WORDS, languages)}{_KEYWORD_END}:"
            rf"|(?<=\bkey[ \t])im\.?{_END_WORD}|(?P<d_weak>\b{weak_image})\.?{_END_WORD}:?){_SP}"
            rf"(?(d_weak)(?!{_ORDINAL}))(?P<d_i>{weak_numbers}"
            rf"|(?(d_weak)\d{{1,4}}(?=/\d{{1,6}}{_NOT_MEASUREMENT})|(?!)))(?:/(?P<d_n>\d{{1,6}}))?"
        ),
        # a list of pairs with one separator ("(4:45, 4:60)"): each pair is a reference (:func:`_parts`)
        ReferenceForm.PAREN_PAIR: (
            r"\(\s*(?P<e_s>\d{1,4})\s*(?P<e_sep>[:/])\s*(?P<e_i>\d{1,4})"
            rf"(?:(?:\s*[,;]\s*|\s+{_joining_words(_AND_WORDS, languages)}\s+)\d{{1,4}}\s*(?P=e_sep)\s*\d{{1,4}})*\s*\)"
        ),
        ReferenceForm.SLASH_PAIR: (
            rf"\b{_words(_SERIES_WORDS, languages)}\.?{_SP}/{_SP}{any_image}{_SP}(?P<f_s>\d{{1,6}}){_SP}/{_SP}"
            rf"(?P<f_i>{numbers})"
        ),
        # a letter each for series and image, the image's "I" always spelled out: "S3" alone is a liver segment,
        # a sacral vertebra or a guideline ("S3-Leitlinie"); a space after a letter only in capitals ("S 3 I 45",
        # "S3 I 45"), where the capital "I" vouches for the "S 3" that alone is a sacral vertebra
        ReferenceForm.LETTER_PAIR: (
            rf"\b(?:(?-i:S)(?P<g_space>[ \t]+)|s)(?P<g_s>\d{{1,4}})(?:{_SP}[/,:]{_SP}|[ \t]+)"
            rf"(?:(?-i:I)[ \t]*|(?(g_space)(?!)|i))(?P<g_i>{numbers})"
        ),
        # the image word before its series, the numbers after it ("images from series 3, 45-47"): one number or
        # range only, checked by _is_reference, since "images from series 3, 4 and 5" lists series; a colon only after
        # "from" ("Bilder aus Serie 3: 45"), as one after "in" or "of" counts the series' images ("Number of images
        # in series 3: 300", "Anzahl der Bilder in Serie 3: 320")
        ReferenceForm.IMAGES_OF_SERIES: (
            rf"{strong_image}\s+(?:(?P<h_from>from|aus|uit)|{connector})\s+(?:{article}\s+)?{series}{_SP}"
            rf"(?P<h_s>{_SERIES_NUM}){_SP}(?:,|(?(h_from):|(?!))){_SP}"
            rf"(?P<h_i>{numbers})"
        ),
    }
    alternation = "|".join(f"(?P<{form.name}>{pattern})" for form, pattern in forms.items())
    trigger = _trigger(
        {w[:2] for table in (_SERIES_WORDS, _IMAGE_WORDS, _WEAK_IMAGE_WORDS) for lang in languages for w in table[lang]}
        | {f"s{digit}" for digit in range(10)}
    )
    joint = rf"\s*(?:(?P<mark>[,;])\s*|[&+]\s*)?(?:(?P<word>{_joining_words(_JOIN_WORDS, languages)})\s+)?"
    # "series 3, image 45 and 4, image 60": the series number of "image 60" without its word
    elided = rf"{joint}(?P<series>\d{{1,6}})[ \t]*[,:/]{_SP}"
    return (re.compile(trigger), re.compile(alternation, re.IGNORECASE), re.compile(joint, re.IGNORECASE),
            re.compile(elided, re.IGNORECASE))


def _both_cases(letters: str) -> str:
    return "".join(sorted(set(letters.lower() + letters.upper())))


def _trigger(prefixes: set[str]) -> str:
    """A pattern that fires where a keyword starting with one of ``prefixes``, a capital 'S' before a spaced number
    ("S 3 I 45"), a '(' or a '(#' may begin.

    It starts with one character class (case spelled out, no IGNORECASE) and checks the second
    letter by look-behind branches, which keeps the regex engine on its fast skip-ahead path.
    """
    by_initial: dict[str, str] = {}
    for prefix in prefixes:
        by_initial[prefix[0]] = by_initial.get(prefix[0], "") + prefix[1:2]
    branches = [
        rf"(?<=[{_both_cases(first)}])[{_both_cases(seconds)}]" for first, seconds in sorted(by_initial.items())
    ]
    return rf"[{_both_cases(''.join(by_initial))}(#](?:{'|'.join(branches)}|(?<=S)[ \t]+\d|(?<=\()\s*\d|(?<=\(#)\s*\d)"


def _scan(text: str, trigger: re.Pattern[str], grammar: re.Pattern[str]) -> list[re.Match[str]]:
    """Non-overlapping grammar matches, leftmost first (``finditer`` semantics, tried at triggers only)."""
    matches: list[re.Match[str]] = []
    end = 0
    for candidate in trigger.finditer(text):
        start = candidate.start()
        if start < end or (start and text[start - 1].isalpha()):
            continue
        match = grammar.match(text, start)
        if match is not None:
            matches.append(match)
            end = match.end()
    return matches


#: Named groups (series, images) of each form in the compiled alternation.
_GROUPS: dict[ReferenceForm, tuple[str | None, str]] = {
    ReferenceForm.SERIES_IMAGE: ("a_s", "a_i"),
    ReferenceForm.IMAGE_SERIES: ("b_s", "b_i"),
    ReferenceForm.IMA_DASH: ("c_s", "c_i"),
    ReferenceForm.IMAGE_ONLY: (None, "d_i"),
    ReferenceForm.PAREN_PAIR: ("e_s", "e_i"),
    ReferenceForm.SLASH_PAIR: ("f_s", "f_i"),
    ReferenceForm.LETTER_PAIR: ("g_s", "g_i"),
    ReferenceForm.IMAGES_OF_SERIES: ("h_s", "h_i"),
}
#: A series-image pair of a parenthesised list ("(4:45, 4:60)").
_PAIR = re.compile(r"(\d+)\s*[:/]\s*(\d+)")
_THOUSANDS_MARK = re.compile(r"(?<=\d)[,.](?=\d)")  # in a mined list, only a grouped number has one
#: A number or range of a mined list; the end may follow an image word ("45 through image 47").
_ANY_TO = _words(_TO_WORDS, _LANGUAGES)
_LIST_PART = re.compile(rf"(\d+)(?:\s*(?:[-–—]|{_ANY_TO})\s*(?:[^\W\d_]+\.?\s*)?(\d+))?", re.IGNORECASE)
_RANGE_MARK = re.compile(rf"\d\s*(?:[-–—]|\b{_ANY_TO}\b)\s*(?:[^\W\d_]+\.?\s*)?\d", re.IGNORECASE)

#: Words that make an exam a prior one ("the prior CT"), and nouns that name a prior exam alone ("Voruntersuchung").
_PRIOR_WORD = (r"(?:prior|previous|earlier|preceding|baseline|outside|vorherigen?|früheren?|vorangegangenen?"
               r"|vorig(?:en?)?|eerdere?)")
_PRIOR_NOUN = (r"(?:vorunters\w*|voraufnahmen?|vorbefund\w*|vor-?ct|vu|vooronderzoek\w*"
               r"|vergleichs(?:untersuchung\w*|aufnahmen?|-?ct))")
#: Words in the 30 characters before "(3/45)" that make it a date (also after a prior exam: "zur VU (03/21)",
#: "gegenüber der Voruntersuchung (12/19)"), a time, a pressure, a ratio, a score or a pair of segments, ribs or
#: levels ("segments (6/7)": liver segments 6 and 7), also before a pair joined to it ("at (3:45) and (3:50)",
#: "segments (6/7) and (7/8)").
_PAREN_FALSE_CONTEXT = re.compile(
    rf"\b(?:on|at|dated?|since|from|{_PRIOR_WORD}|{_PRIOR_NOUN}|vom|am|seit|datum|um|uhr|op|sinds|d\.d\.|"
    r"bp|rr|blood\s+pressure|blutdruck|bloeddruk|ratio|verh[äa]ltnis|verhouding|score|grade|grad|"
    r"bi-?rads|li-?rads|lung-?rads|pi-?rads|o-?rads|ti-?rads|tnm|stage|stadium|gleason|"
    r"segments?|segmente?n?|segm|rib|ribs|rippen?|ribben?|level|levels|höhe|vertebra[el]?|wirbel(?:körper)?)\W*"
    r"(?:\d{1,4}\s*[:/]\s*\d{1,4}\W*(?:(?:and|und|en|or|oder|of)\b\W*)?)*$",
    re.IGNORECASE,
)
_PAREN_FALSE_AFTER = re.compile(r"^\s*(?:mm\s*hg|mmhg|uhr|h\b|am\b|pm\b|o'clock)", re.IGNORECASE)

_EXAM = (r"(?:exam(?:ination)?|study|scan|ct|cta|mri?|pet(?:[-/]ct)?|imaging|untersuchung|aufnahmen?|bildgebung"
         r"|onderzoek)")
_ARTICLE = r"(?:the|der|dem|den|het|de)"
#: An exam's date with its four-digit year ("1/1/2020", "01.03.2021", "2019", "2020-01-05"): a report names
#: this exam by no date.
_DATE = r"(?:(?:\d{1,2}[./-]){1,2}(?:19|20)\d{2}|(?:19|20)\d{2}(?:-\d{2}-\d{2})?)\b"
#: A prior exam: "prior CT", "previous chest CT", "the comparison study", "Voruntersuchung", an exam
#: with a date ("the 2019 CT", "the study of 1/1/2020"), a bare "prior" (``bare``).
_PRIOR_EXAM = (rf"(?:{_PRIOR_WORD}(?:\s+(?:[^\W\d_]+\s+)?{_EXAM}\b|(?P<bare>))|comparison\s+(?:[^\W\d_]+\s+)?{_EXAM}\b"
               rf"|{_PRIOR_NOUN}|{_DATE}\s+(?:[^\W\d_]+\s+)?{_EXAM}\b|{_EXAM}\s+(?:of|from|dated|vom|van)\s+{_DATE})")
#: An adverb that puts a reference in the past ("previously image 40", "zuvor Serie 3 Bild 40").
_PAST = r"(?:previously|formerly|vormals|zuvor|vorher|früher|damals|seinerzeit|voorheen|destijds)"
#: An exam of another modality ("on the PET/CT (series 3", "im MRT Serie 3"): not this CT's images.
_OTHER_EXAM = r"(?:pet(?:[-/]ct)?|mri?|mrt|ultrasound|sonogra\w*|x-?ray|radiograph\w*|spect|s[cz]intigra\w*)\b"
#: A reference on a date ("4 mm on 1/1/2020 (series 3, image 40)", "Serie 3 Bild 40 am 1.1.2020", "4 mm in 2021
#: (image 40)", "Bild 87 der Serie 4 vom 01.02.2021"): the exam of that day or year.
_ON_DATE = rf"(?:on|am|op|in|vom|van)\s+{_DATE}"
#: A reference from a date ("series 3, image 45 from 2019", "Bild 40 aus 2019", "beeld 40 uit 2019"): that exam's
#: too, only after the reference; before it the date is where a comparison runs from ("unchanged from 2019 (image 45)").
_FROM_DATE = rf"(?:from|aus|uit)\s+{_DATE}"
#: A size a past-tense adverb may carry before its reference ("previously 4 mm (series 3, image 40)").
_SIZE = r"\d+(?:[.,]\d+)?(?:\s*[x×]\s*\d+(?:[.,]\d+)?)*\s*(?:mm|cm)\b"
#: A clause labelled as a prior exam's by a year or date, or by "old" ("(2019: series 2, image 40)", "(old: se 2 im
#: 40)", "(alt: Se 2 Bild 40)", "; 12/2019: image 40"): a label stands at a parenthesis or a clause's start, so an
#: adjective ("old granuloma (series 2") is none. This exam's own date as a label ("(2024: series 3") reads as a
#: prior too: the grammar knows no study date, and a lost reference is better than one placed on a wrong slice.
_LABEL = rf"(?:^|(?<=[(;,]))\s*(?:old|alt|oud|{_DATE})\s*:"
#: Prior-exam wording just before a reference ("on the prior exam series 3", "in der Voruntersuchung
#: (Serie 3", "on the prior CT in series 3", "on 1/1/2020 (series 3"), with the word before it (``pre``),
#: an exam of another modality under a preposition ("on the PET/CT (series 3"),
#: or an adverb that puts it in the past ("previously image 40", "previously 4 mm (series 3", "previously
#: seen on image 45", "vormals Serie 3 Bild 40"), not one that only qualifies a finding ("the previously
#: described nodule (").
_PRIOR_BEFORE = re.compile(
    rf"(?:(?:\b(?P<pre>[^\W\d_]+)\s+(?:{_ARTICLE}\s+)?)?\b{_PRIOR_EXAM}(?:\s+(?:of|from|dated|vom|van)\s+[\d./-]+)?"
    rf"|\b(?:on|in|at|auf|im|op)\s+(?:{_ARTICLE}\s+)?{_OTHER_EXAM}"
    rf"|\b{_PAST}(?:\s+{_SIZE})?"
    rf"(?:(?:\s+(?:seen|noted|shown|visible|described|measured))?\s+(?:on|in|at)\b)?|\b{_ON_DATE}|{_LABEL})"
    rf"(?:\s+(?:on|in|at|auf|im|op)\b)?[\s,:;(]*$",
    re.IGNORECASE,
)
#: Prior-exam wording just after a reference, under a preposition, also in a parenthesis ("series 3 image 45 on
#: the prior study", "Bild 45 der VU", "image 40 on 1/1/2020", "image 40 from 2019", "image 45 on the MRI", "image 45
#: (of the prior CT series 3)"), or a prior exam that ends the clause ("(series 3, image 45, prior)", "... 45
#: (prior)", "(series 3, image 45, prior CT)", "(Serie 3, Bild 45, Voruntersuchung)"); a bare "prior" only there too
#: ("on prior)", not "... prior to contrast"), and a new clause ("; VU: Se 2") is none.
_PRIOR_AFTER = re.compile(
    rf"[\s,]*(?:\(\s*)?(?:(?:on|of|from|in|at|auf|aus|im|der|vom|op|uit|van)\s+(?:{_ARTICLE}\s+)?"
    rf"(?:{_PRIOR_EXAM}|{_OTHER_EXAM})"
    rf"(?(bare)\s*(?:[),;.]|$)|\b)"
    rf"|\(?(?:{_PRIOR_WORD}(?:\s+(?:[^\W\d_]+\s+)?{_EXAM}\b)?|{_PRIOR_NOUN})\s*(?:[),;]|$)|{_ON_DATE}|{_FROM_DATE})",
    re.IGNORECASE,
)
#: A word of every branch of :data:`_PRIOR_BEFORE`, lower case: the regex, ~30 us over its 80 characters,
#: runs only where one occurs (most references have none before them); a dated exam's year begins "19" or "20".
#: One alternation of literals finds them in one pass (~4 us; testing 26 substrings one by one took 7).
_PRIOR_NEEDLES = re.compile("|".join(re.escape(word) for word in (
    "prior", "previous", "earlier", "preceding", "baseline", "outside", "vorher", "früher", "vorangegangen", "vorig",
    "eerder", "vorunters", "voraufnahme", "vorbefund", "vor-ct", "vorct", "vu", "vooronderzoek", "comparison",
    "vergleichs", "formerly", "vormals", "zuvor", "damals", "seinerzeit", "voorheen", "destijds", "19", "20", "pet",
    "mr", "ultrasound", "sonogra", "x-ray", "xray", "radiograph", "spect", "scintigra", "szintigra", "old", "alt",
    "oud")))
#: A sentence that opens on a prior (or another) exam ("On the earlier study, nodule on series 3 image 45"):
#: its references up to a semicolon are that exam's, unless it turns to this exam ("..., now 6 mm on series 3
#: image 50"). Matched at the sentence's start, up to the reference (one anchored match per reference).
_PRIOR_SENTENCE = re.compile(
    rf"\s*(?:on|in|at|auf|im|op)\s+(?:{_ARTICLE}\s+)?(?:{_PRIOR_EXAM}|{_OTHER_EXAM})(?=[^;]*$)"
    rf"(?![\s\S]*\b(?:now|currently|today|(?:this|the\s+current)\s+(?:exam|study|scan|ct)|jetzt|nun|aktuell|heute"
    rf"|derzeit|nu|thans)\b)",
    re.IGNORECASE,
)
#: Words before a prior exam that compare with it ("unchanged compared to the prior CT (series 3"): the
#: reference is to this exam's images.
_COMPARING = frozenset({"to", "with", "than", "versus", "vs", "zur", "zum", "zu", "mit", "gegenüber", "met", "dan"})
#: Words before "from the prior CT" that compare with it ("unchanged from the prior CT (series 3").
_CHANGED = re.compile(
    r"\b(?:(?:un)?changed|different|increased|decreased|grown|enlarged|reduced|progressed|regressed|improved"
    r"|stable|up|down)\s+$",
    re.IGNORECASE,
)
#: A past size right before a reference ("was 4 mm (image 40)", "war 4 mm (Bild 40)"): the prior exam's measurement,
#: where this exam's reference came before it in the sentence ("Nodule 6 mm (image 45), was 4 mm (image 40)").
_PAST_SIZE = re.compile(rf"\b(?:was|were|war|waren)\s+{_SIZE}[\s,:;(]*$", re.IGNORECASE)
#: Words before a bare "prior" that place the reference on the prior exam ("on prior, series 3").
_LOCATIVE = frozenset({"on", "in", "at", "from", "of", "auf", "aus", "im", "op", "uit", "van"})


def _on_prior_exam(text: str, match: re.Match[str]) -> tuple[bool, bool]:
    """(on a prior exam, compared with one): whether the wording around a reference places it on a prior exam
    ("on the prior CT, series 3 image 45", "Serie 3 Bild 45 der Voruntersuchung"): its numbers name another
    study's images, which this study's slice tables would place on a wrong slice. A prior exam that the sentence
    compares with ("unchanged compared to the prior CT (series 3, image 45)", "unchanged from the prior CT
    (series 3") leaves the reference on this exam, unless this exam's reference came before
    (:func:`_on_this_exam`), and so does a past size ("was 4 mm (image 40)"). An exam of another modality ("on the PET/CT") is another exam too; a sentence that
    opens on one is checked once its span is known (:data:`_PRIOR_SENTENCE`)."""
    start = max(0, match.start() - 80)
    compares = False
    if _PRIOR_NEEDLES.search(text[start : match.start()].lower()) and (
            before := _PRIOR_BEFORE.search(text, start, match.start())) is not None:
        pre = (before["pre"] or "").lower()
        compares = bool(pre in _COMPARING or pre == "from" and _CHANGED.search(text, start, before.start("pre")))
        if not compares and (before["bare"] is None or not pre or pre in _LOCATIVE):
            return True, False
    compares = compares or _PAST_SIZE.search(text, start, match.start()) is not None
    return _PRIOR_AFTER.match(text, match.end()) is not None, compares


#: A reformat's plane: "coronal", "sagittal", "koronaren", "coronale", "sag", "cor", "kor.", "oblique" ("koronar"
#: alone: German has one word for coronal and coronary; "Cor" is the heart too, but the rules below read a plane
#: only next to the image or with its view, "(cor image 30)"), and what shows it ("coronal images", "koronare
#: Rekonstruktion", "sagittal view").
_PLANE = (r"(?:coronal|sagittal|coronaa?le?|sagittaa?le?|koronare?[nrs]?|sagittale?[nrs]?|cor|kor|sag|oblique"
          r"|obliek|schräg)")
#: What shows no axial position without a plane's word: a MIP, an MPR, a reformat, a 3D or volume rendering, a
#: scout ("(MIP image 80)", "(reformats, image 80)", "(VR image 80)", "(scout image 2)": each was placed axially).
_NOT_AXIAL = r"(?:mip|minip|mpr|reformat\w*|3d|vrt?|scout|topogram\w*|localizer|surview|scanogram)"
_VIEW = (r"(?:reformat\w*|reconstruct\w*|rekonstruktion\w*|reconstructie\w*|mpr|images?|bild(?:er|ern)?|beelden?"
         r"|views?|planes?|ebene|schnitt\w*|series|serie)")
#: An image on a reformat: a plane with its view before the image in its clause ("(coronal reformats, image 45",
#: "on the coronal images (image 45"), a plane right before it ("on coronal image 45", "(koronar Bild 45",
#: "kor. Bild 80", "Serie 601 (koronar) Bild 80"), a reformat series named by its plane and number ("(coronal 4,
#: image 30)", "on coronal 601 image 80", "(coronal: image 80)"), or a MIP (:data:`_NOT_AXIAL`); or one of them
#: right after it, also in a parenthesis ("image 45 coronal)", "Bild 45 der koronaren Rekonstruktion", "image 45
#: (coronal)"). A plane that names anatomy
#: ("superior sagittal sinus", "koronare Herzkrankheit", "oblique fissure") is none, and so is one that begins the
#: next image's reference ("axial image 45, coronal image 60": image 45 is axial).
_REFORMAT_BEFORE = re.compile(
    rf"(?:\b{_PLANE}\s+{_VIEW}\b[^.;:()\d]*|\b{_PLANE}\b\.?\)?(?:\s+\d{{1,6}}\b)?[\s,:]*"
    rf"|\b{_NOT_AXIAL}\b[^.;:()\d]*)\(?\s*$",
    re.IGNORECASE,
)
_REFORMAT_AFTER = re.compile(
    rf"[\s,]*(?:\(\s*)?(?:(?:of|on|in|der|auf|van|op)\s+(?:{_ARTICLE}\s+)?)?"
    rf"(?:{_PLANE}(?:\s+{_VIEW}\b(?!\s*(?:no\.|nr\.?|#)?\s*\d)|\s*[),;.])|{_NOT_AXIAL}\b)",
    re.IGNORECASE,
)


def _on_reformat(text: str, match: re.Match[str]) -> bool:
    """Whether the words around an image without a series place it on a reformat (:data:`_REFORMAT_BEFORE`)."""
    return bool(_REFORMAT_BEFORE.search(text, max(0, match.start() - 60), match.start())
                or _REFORMAT_AFTER.match(text, match.end()))


def _on_this_exam(text: str, matches: Sequence[re.Match[str]], joint: re.Pattern[str]) -> list[re.Match[str]]:
    """The matches that are not on a prior exam (:func:`_on_prior_exam`), nor joined by "and" or a
    comma to one that is ("on the prior CT, series 3 image 45 and image 50"). Wording after a reference
    reaches back only over "and"/"or" ("image 45 and image 50 of the prior CT"), not over a bare comma or
    semicolon, which begins another reference ("series 3 image 45; series 3 image 40 on prior"). A reference
    after a comparison with a prior exam or a past size is that exam's where this exam's came before it in the
    sentence ("Nodule (se 3, im 45) compared to prior (se 2, im 40)", "Nodule 6 mm (image 45), was 4 mm (image
    40)"): image 40 was placed on this exam."""
    wording = [_on_prior_exam(text, match) for match in matches]
    prior = [on_prior for on_prior, _ in wording]
    for k in range(1, len(matches)):  # compared after this exam's reference: "(se 3, im 45) compared to prior (se 2"
        between = text[matches[k - 1].end() : matches[k].start()]
        prior[k] = prior[k] or (wording[k][1] and not prior[k - 1] and ";" not in between
                                and _SENTENCE_END.search(between) is None)
    joints = [joint.fullmatch(text, a.end(), b.start()) for a, b in pairwise(matches)]
    for k in range(1, len(matches)):  # forwards: "on the prior CT, series 3 image 45 and image 50"
        prior[k] = prior[k] or prior[k - 1] and joints[k - 1] is not None
    for k in range(len(matches) - 2, -1, -1):  # backwards: "image 45 and image 50 of the prior CT"
        back = joints[k]
        prior[k] = prior[k] or prior[k + 1] and back is not None and not (back["mark"] and not back["word"])
    return [match for match, on_prior in zip(matches, prior, strict=True) if not on_prior]


def _elided_weak_images(text: str, matches: Sequence[re.Match[str]], elided: re.Pattern[str]) -> list[re.Match[str]]:
    """The matches less each image named by a weak word alone ("im 6"), unless it follows a reference written
    with that word and the series number of its own, whose word is left out ("Se 3 Im 45 and 4, Im 60", "Se 3
    Im 45, 4, Im 60 and 5, Im 12"): elsewhere "im" is German "in the" ("Herd im 6. Segment")."""
    kept: list[re.Match[str]] = []
    for match in matches:
        before = kept[-1] if kept else None
        if match["d_weak"] is None or (before is not None and (before["a_weak"] or before["d_weak"])
                                       and elided.fullmatch(text, before.end(), match.start())):
            kept.append(match)
    return kept


def _numbers(text: str, cap: int) -> tuple[tuple[int, ...], bool, bool]:
    """Expand a number list ('12, 18 and 40-44') into image numbers; (numbers, is_range, truncated).

    A range longer than ``cap`` gives nothing where it runs down ('images 98-2', '145-4': a typo or another
    notation, and its end may be a wrong slice) or from the series' first image ('Images 1-300 were
    reviewed': a technique statement, no finding's location)."""
    images: list[int] = []
    is_range = bool(_RANGE_MARK.search(text))
    truncated = False
    for match in _LIST_PART.finditer(_THOUSANDS_MARK.sub("", text)):
        first = int(match.group(1))
        if match.group(2) is None:
            images.append(first)
            continue
        last = _range_end(match.group(1), match.group(2))
        low, high = min(first, last), max(first, last)
        if high - low + 1 > cap:
            if last < first or first <= 1:
                continue
            images.extend((first, last))
            truncated = True
        else:
            images.extend(range(low, high + 1))
    return tuple(dict.fromkeys(images)), is_range, truncated


#: A list's last item, four digits that read as a year, after a comma ("45, 2019", "40-44, 2021"): not after a
#: range mark ("45-2019") or an "and" ("45 and 2019"), which join images.
_YEAR_AFTER_LIST = re.compile(r"\d\s*,\s*((?:199|20[0-3])\d)$")


def _year_after_list(images: str) -> int | None:
    """The year a list of images may end with (:data:`_YEAR_AFTER_LIST`), or None."""
    year = _YEAR_AFTER_LIST.search(images.rstrip())
    return None if year is None else int(year[1])


def _range_end(first: str, last: str) -> int:
    """A range's last image. An end with fewer digits than the start and below it abbreviates it
    ('images 45-7', '145-52': to 47, to 152), as page ranges do; read as written, images 7 to 45 were mined."""
    if len(last) < len(first) and int(last) < int(first):
        completed = int(first[: len(first) - len(last)] + last)
        if completed > int(first):
            return completed
    return int(last)


_WORD_NEXT = re.compile(r"\s*[^\W\d_]")


def _is_reference(text: str, match: re.Match[str]) -> bool:
    """The context rules a regex cannot express well: a bare '(3/45)' (:func:`_paren_pair_is_reference`), the
    numbers after a series that its image word came before ('images from series 3, 45-47'), which are one range or
    number that no word follows: 'images from series 3, 4 and 5', 'series 3, 4-6 were fused' list series; and
    an image out of a total ('Se 3 Im 45/120', '4, Im 60/200' after it, 'image 87/300, series 4'), which is none
    where the total is below the image or a year ('Serie 3 im 03/2021': German 'in March 2021')."""
    if match.lastgroup == ReferenceForm.PAREN_PAIR.name:
        return _paren_pair_is_reference(text, match)
    if match.lastgroup == ReferenceForm.IMAGES_OF_SERIES.name:
        return len(_LIST_PART.findall(match["h_i"])) == 1 and _WORD_NEXT.match(text, match.end()) is None
    total = match["a_n"] or match["b_n"] or match["d_n"]
    image = match["a_i"] or match["b_i"] or match["d_i"]
    return total is None or int(image) <= int(total) and not 1900 <= int(total) <= 2100


def _paren_pair_is_reference(text: str, match: re.Match[str]) -> bool:
    """'(3/45)' is a reference unless its context or the numbers of one of its pairs make it a date, time,
    pressure or ratio, or it lists clock times ('(8:30, 9:15)'; a list of references whose images all read as
    minutes, '(4:45, 4:50)', is given up with them: a time placed as a slice is worse than a lost reference)."""
    slash = match.group("e_sep") == "/"
    pairs = list(_PAIR.finditer(text, match.start(), match.end()))
    if not slash and len(pairs) > 1 and all(int(p[1]) <= 23 and len(p[2]) == 2 and int(p[2]) <= 59 for p in pairs):
        return False
    for pair in pairs:
        series, image = int(pair[1]), int(pair[2])
        if series == 0 or image == 0:
            return False
        if slash and series < 5 and image < 5:  # (1/2), (3/4): fractions
            return False
        if series <= 2 and image <= 2:  # (1:1), (1:2), (2:1): ratios (series 1-2 are scouts anyway)
            return False
        if slash and 1900 <= image <= 2100:  # (3/2019): month/year
            return False
        if series >= 40 and 30 <= image <= 140:  # (120/80): blood pressure shape
            return False
    before = text[max(0, match.start() - 30) : match.start()]
    after = text[match.end() : match.end() + 12]
    return not (_PAREN_FALSE_CONTEXT.search(before) or _PAREN_FALSE_AFTER.match(after))


#: Where a sentence ends: just after a stop that whitespace and a capital follow, at a blank line,
#: or before a bullet line. Each alternative starts with a literal, so the engine skips ahead fast.
_SENTENCE_END = re.compile(r"[.!?](?=\s+[^\s\d\-–a-zäöü])|\n[ \t]*\n|\n(?=[ \t]*[-•*][ \t])")


def split_sentences(text: str) -> list[tuple[int, int]]:
    """Split ``text`` into sentence spans ``(start, end)`` (the fallback when no spans are given).

    Deliberately simple: a stop followed by a capital (not a digit, so "Se. 3" stays whole), a blank
    line, or a line starting with a bullet. Spans are stripped of surrounding whitespace.

    >>> split_sentences("Nodule. Second one (se. 3 im 4).")
    [(0, 7), (8, 32)]
    """
    spans: list[tuple[int, int]] = []
    start = 0
    cuts = [m.end() for m in _SENTENCE_END.finditer(text)]
    cuts.append(len(text))
    for cut in cuts:
        piece = text[start:cut]
        stripped = piece.strip()
        if stripped:
            first = start + piece.index(stripped[0])
            spans.append((first, first + len(stripped)))
        start = cut
    return spans


def _sentence_of(position: int, spans: Sequence[tuple[int, int]], hint: int) -> int:
    """Index of the span holding ``position`` (spans are sorted; scan onwards from ``hint``)."""
    for index in range(max(hint, 0), len(spans)):
        start, end = spans[index]
        if start <= position < end:
            return index
        if start > position:
            break
    for index, (start, end) in enumerate(spans):  # unsorted or overlapping input spans
        if start <= position < end:
            return index
    return -1


def mine_image_references(
    text: str,
    sentence_spans: Sequence[tuple[int, int]] | None = None,
    language: str | None = None,
    *,
    languages: Sequence[str] = _LANGUAGES,
    max_range_images: int = 64,
) -> list[ImageReference]:
    """Find every image reference in a report text, in text order.

    Parameters
    ----------
    text:
        The report text (offsets refer to it).
    sentence_spans:
        Sentence spans ``(start, end)`` from the reports stage, so snippets line up with its
        sentence labels; ``None`` uses :func:`split_sentences`. A reference outside every given
        span gets ``sentence_index == -1`` and the fallback split's sentence as its snippet.
    language:
        The report's language ('en', 'de', 'nl'); ``None`` accepts the keywords of ``languages``.
        Knowing it avoids cross-language false friends (Dutch "en" is English "and").
    languages:
        Languages to accept when ``language`` is None (the config's ``languages``).
    max_range_images:
        Longest range expanded image by image (the config's ``max_range_images``).

    Examples
    --------
    >>> refs = mine_image_references("Herd (Serie 3 Bilder 40-42).", language="de")
    >>> refs[0].series_number, refs[0].image_numbers, refs[0].is_range
    (3, (40, 41, 42), True)
    """
    if language is not None and language not in _LANGUAGES:
        raise SnippetError(f"unknown report language {language!r}; use one of {list(_LANGUAGES)} or None")
    trigger, grammar, joint, elided = _compiled((language,) if language else tuple(sorted(set(languages))))
    scanned = [match for match in _scan(text, trigger, grammar) if _is_reference(text, match)]
    matches = _on_this_exam(text, _elided_weak_images(text, scanned, elided), joint)
    if not matches:  # most reports: no sentence split needed
        return []
    fallback = split_sentences(text) if sentence_spans is None else None
    spans = list(sentence_spans) if sentence_spans is not None else fallback
    assert spans is not None
    references: list[ImageReference] = []
    hint = 0
    for match, form, start, end, series_text, image_text in _parts(matches):
        images, is_range, truncated = _numbers(image_text, max_range_images)
        if not images:
            continue
        series = int(series_text) if series_text else None
        index = _sentence_of(start, spans, hint)
        if index >= 0:
            hint = index
            sentence_start, sentence_end = spans[index]
        else:
            fallback = fallback if fallback is not None else split_sentences(text)
            own = _sentence_of(start, fallback, 0)
            sentence_start, sentence_end = fallback[own] if own >= 0 else (start, end)
        if _PRIOR_SENTENCE.match(text, sentence_start, start):
            continue
        references.append(
            ImageReference(
                start=start,
                end=end,
                text=text[start:end],
                series_number=series,
                image_numbers=images,
                series_stated=series is not None,
                is_range=is_range,
                truncated=truncated,
                form=form,
                sentence_index=index,
                sentence_start=sentence_start,
                sentence_end=sentence_end,
                on_reformat=series is None and _on_reformat(text, match),
                year_after_list=_year_after_list(image_text),
            )
        )
    return _with_shared_series(text, _with_listed_images(text, references, elided), joint)


def _parts(
    matches: Sequence[re.Match[str]],
) -> list[tuple[re.Match[str], ReferenceForm, int, int, str | None, str]]:
    """(match, form, start, end, series, images) of each reference the matches hold: a match's one, or each pair of
    a parenthesised list ("(4:45, 4:60)"), which spans that pair alone."""
    parts: list[tuple[re.Match[str], ReferenceForm, int, int, str | None, str]] = []
    for match in matches:
        form = ReferenceForm[match.lastgroup or ""]
        paren = form is ReferenceForm.PAREN_PAIR
        pairs = list(_PAIR.finditer(match.string, match.start(), match.end())) if paren else []
        if len(pairs) > 1:
            parts.extend((match, form, pair.start(), pair.end(), pair[1], pair[2]) for pair in pairs)
            continue
        series_group, image_group = _GROUPS[form]
        parts.append((match, form, match.start(), match.end(), match[series_group] if series_group else None,
                      match[image_group]))
    return parts


#: Forms whose match ends with its image list, which a number after it may continue.
_LIST_FORMS = frozenset({ReferenceForm.SERIES_IMAGE, ReferenceForm.IMAGE_ONLY, ReferenceForm.SLASH_PAIR})


def _with_listed_images(text: str, references: list[ImageReference], elided: re.Pattern[str]) -> list[ImageReference]:
    """A number the grammar left between a reference's image list and the next reference ("images 45 and
    47, image 50", "series 3, image 45, 47, image 50") is that list's last image where the reference states
    no series or the number continues its list upwards, as image lists run; below the list's last image
    after a stated series it is the next reference's series without its word ("series 3, image 45 and 4,
    image 60"), which that reference takes here, so that the number after its own list is judged against
    it ("Serie 3 Bild 45 und 4, Bild 60 und 5, Bild 12": series 5, not image 5 of series 4). Read as a series,
    image 47 was lost, or image 50 placed in series 47; a number of five or more digits is only a series
    (:data:`_SERIES_NUM`). A series taken so is stated, and like any stated series it clears ``on_reformat`` ("4,
    image 60 coronal"): resolution judges series 4's plane. Only within one sentence: a line that begins with a
    series is a reference of its own."""
    out: list[ImageReference] = []
    for reference in references:
        before = out[-1] if out else None
        if (before is not None and before.sentence_start == reference.sentence_start
                and (own := elided.fullmatch(text, before.end, reference.start)) is not None):
            number = int(own["series"])
            if (before.form in _LIST_FORMS and number < 10_000
                    and (before.series_number is None or number > before.image_numbers[-1])):
                end = own.end("series")
                out[-1] = replace(before, end=end, text=text[before.start : end],
                                  image_numbers=tuple(dict.fromkeys((*before.image_numbers, number))))
            elif before.series_number is not None and reference.series_number is None:
                start = own.start("series")
                reference = replace(reference, start=start, text=text[start : reference.end], series_number=number,
                                    series_stated=True, on_reformat=False)
        out.append(reference)
    return out


def _with_shared_series(text: str, references: list[ImageReference], joint: re.Pattern[str]) -> list[ImageReference]:
    """An image-only reference joined by "and" or a comma to a neighbour that states its series
    takes that series: "series 3, image 45 and image 60", "image 45 and image 60 of series 3", also past the
    first one's size ("Serie 3, Bild 45, 4 mm, und Bild 60": image 60 was placed in the primary series); one whose
    series number stands after the joint without its word took it in :func:`_with_listed_images`. An image the
    text places on a reformat takes no series: its number is no image of the neighbour's (axial) series. Only
    within one sentence: a line that begins with a series ("Nodule image 45\nSeries 4 image 60: mass") is a
    reference of its own."""
    out = list(references)
    for k, reference in enumerate(references):
        if reference.series_number is not None or reference.on_reformat:
            continue
        before = out[k - 1] if k else None  # already given its series: "series 3 image 4, image 5 and image 6"
        after = references[k + 1] if k + 1 < len(references) else None
        for earlier, later, neighbour in ((before, reference, before), (reference, after, after)):
            if (neighbour is not None and neighbour.series_number is not None and earlier is not None
                    and later is not None and neighbour.sentence_start == reference.sentence_start
                    and joint.fullmatch(text, _after_size(text, earlier.end, later.start), later.start)):
                out[k] = replace(reference, series_number=neighbour.series_number, series_stated=True)
                break
    return out


#: A size right after a reference ("image 45, 4 mm"), which the joint to the next one may follow.
_SIZE_AFTER = re.compile(rf"[ \t]*,?[ \t]*{_SIZE}")


def _after_size(text: str, end: int, limit: int) -> int:
    """Where the text after a reference ending at ``end`` goes on past its size, if one follows (before ``limit``)."""
    size = _SIZE_AFTER.match(text, end, limit)
    return end if size is None else size.end()
