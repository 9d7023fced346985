"""Which language a report is in: English or German, which the rules read, or another one.

A report in another language (a Dutch or Turkish export) read with the English rules gets almost
no labels and nothing says why; it is named instead, so the stage can quarantine it. Only where
English and German function words are few is another language considered. A report mostly in
another script (Cyrillic, Greek, Chinese, ...) is named by py3langid's character n-gram classifier
(about 0.6 ms per 1,000 characters, its model shipped in the wheel). A report in Latin script takes
two checks that agree: a vote of distinct function words (spaCy's stop-word lists of other Latin-script
languages, minus every English or German stop word and every word of the rules' vocabularies),
which costs microseconds, and, only where the vote finds another language, py3langid. Alone,
py3langid reads 25 of 3,851 OpenI reports as Afrikaans and short telegraphic English as French;
together the checks read all 3,875 real English reports we have as English and all 24 Dutch ones as
Dutch.
"""

from __future__ import annotations

import importlib
import re
from collections import Counter
from collections.abc import Mapping
from functools import cache

from py3langid.langid import MODEL_FILE, LanguageIdentifier

from ctcorpus.reports import lexicon

__all__ = ["OTHER_LANGUAGES", "SUPPORTED_LANGUAGES", "detect_language"]

#: Languages the rules read.
SUPPORTED_LANGUAGES = ("en", "de")
#: Languages the function-word vote knows besides those: national languages in Latin script that have
#: a spaCy stop-word list and that py3langid knows (it calls Norwegian Bokmål "no"). Latin is not
#: one: its words are medical English ("status post", "in situ").
OTHER_LANGUAGES = ("nl", "fr", "es", "it", "pt", "ca", "ro", "da", "sv", "nb", "is", "pl", "cs", "sk", "sl", "hr",
                   "hu", "fi", "et", "lt", "lv", "tr", "az", "sq", "eu", "ga", "lb", "af", "id", "ms", "tl", "vi")

_EN_WORDS = frozenset("the and with of is are no without there in both seen normal left right".split())
_DE_WORDS = frozenset(
    "der die das und mit kein keine nicht ist im ohne bei von zur vom beidseits links rechts unauffällig regelrecht"
    .split())
#: The function words as _words() finds them, in UTF-8.
_EN_BYTES, _DE_BYTES = (frozenset(w.encode() for w in words) for words in (_EN_WORDS, _DE_WORDS))
_FUNCTION_BYTES = _EN_BYTES | _DE_BYTES
_UMLAUTS = "äöüß"
_DE_WORD_UMLAUTS = {w.encode(): sum(map(w.count, _UMLAUTS)) for w in _DE_WORDS}
#: A letter, and a letter of the Latin script (with its accented and extended forms).
_LETTER = re.compile(r"[^\W\d_]")
_LATIN_LETTER = re.compile(r"[A-Za-z\u00c0-\u024f\u1e00-\u1eff]")
_IMAGE_REFERENCE = r"(?:im|se)\.?\s*\d+"
#: Words; an image reference ("im 45", "Se. 3") is one token, so that English "im" is no German word.
_WORD = re.compile(rf"{_IMAGE_REFERENCE}|\w+")
#: The image references _WORD finds, in two searches for a literal ("im", "se"), each far cheaper
#: than one for a class of letters: one not inside a word (the lookbehind) and any right after it
#: ("im 3se 4").
_IMAGE_REFERENCES = tuple(re.compile(rf"{start}(?<!\w..)\.?\s*\d+(?:{_IMAGE_REFERENCE})*") for start in ("im", "se"))
#: A character that is neither ASCII nor a word character (a dash, a degree sign, a no-break space).
_NON_ASCII_SEPARATOR = re.compile(r"[^\x00-\x7f\w]")
#: A byte translation that keeps ASCII word characters and non-ASCII bytes, and makes every other byte a space.
_SEPARATORS = bytes(b if b > 127 or re.match(r"\w", chr(b)) else 32 for b in range(256))
#: A Roman numeral up to 39 (liver segments, ribs, cranial nerves).
_ROMAN_NUMERAL = re.compile(r"x{0,3}(?:ix|iv|v?i{0,3})")
#: Characters per window: the first decides English against German, the next catches a long header.
_WINDOW = 800
#: The vote needs this many distinct function words of another language, more than English or German ones.
_MIN_OTHER_WORDS = 3
#: A report with this many English (or German) function words, and this share of its words, is
#: English (or German) without a vote: shares are 0.12 and more in the synthetic reports, 0.07 at
#: most in DRAGON's Dutch ones.
_MIN_COUNT, _MIN_SHARE = 5, 0.1


def _lexicon_words() -> frozenset[str]:
    """Every word of the rules' vocabularies: "se"/"im" (series/image) or "non" are stop words
    elsewhere, but in a report they are words of ours."""
    phrases: list[str] = [*lexicon.ABBREVIATIONS]
    for vocabulary in (lexicon.ANATOMY_TERMS, lexicon.LABEL_SYNONYMS, lexicon.NORMAL_STATEMENTS,
                       lexicon.UNCERTAIN_STATEMENTS, lexicon.HEADINGS):
        phrases += (p for ps in vocabulary.values() for p in ps)
    for words in (lexicon.NEGATION_PRE, lexicon.NEGATION_POST, lexicon.UNCERTAIN_PRE, lexicon.UNCERTAIN_POST,
                  lexicon.UNCERTAIN_POST_LAST,
                  lexicon.PSEUDO_TRIGGERS, lexicon.SCOPE_TERMINATORS, lexicon.NOT_LABELS, lexicon.JOINT_MENTIONS):
        phrases += words
    return frozenset(w for p in phrases for w in _WORD.findall(p.lower()))


@cache
def _other_words() -> Mapping[bytes, tuple[str, ...]]:
    """Word (in UTF-8, as _words() finds it) -> the other languages whose stop word it is (never an
    English or German stop word, nor a Roman numeral: "vi" and "viii" are also liver segments and ribs)."""
    def stop_words(lang: str) -> frozenset[str]:
        return frozenset(importlib.import_module(f"spacy.lang.{lang}.stop_words").STOP_WORDS)

    ours = stop_words("en") | stop_words("de") | _EN_WORDS | _DE_WORDS | _lexicon_words()
    table: dict[str, list[str]] = {}
    for lang in OTHER_LANGUAGES:
        for word in stop_words(lang):
            if len(word) > 1 and word.isalpha() and word not in ours and not _ROMAN_NUMERAL.fullmatch(word):
                table.setdefault(word, []).append(lang)
    return {word.encode(): tuple(langs) for word, langs in table.items()}


@cache
def _identifier() -> LanguageIdentifier:
    """py3langid's classifier, choosing among the languages the vote knows only (unrestricted, it
    reads short English reports as Nigerian Pidgin or Afrikaans)."""
    identifier = LanguageIdentifier.from_model_file(MODEL_FILE)
    identifier.set_languages([*SUPPORTED_LANGUAGES, *(lang.replace("nb", "no") for lang in OTHER_LANGUAGES)])
    return identifier


@cache
def _any_language_identifier() -> LanguageIdentifier:
    """py3langid's classifier over all its languages but English and German, for text mostly in
    another script (where it is reliable, unlike on short Latin-script text)."""
    identifier = LanguageIdentifier.from_model_file(MODEL_FILE)
    identifier.set_languages([lang for lang in identifier.nb_classes if lang not in SUPPORTED_LANGUAGES])
    return identifier


def _ascii_or_umlauts(text: str) -> bool:
    """Whether every character is ASCII or an umlaut: checked on the UTF-8 bytes, whose umlauts are
    c3 a4, c3 b6, c3 bc and c3 9f, at a fraction of a regular expression's cost."""
    return text.isascii() or text.encode(errors="surrogatepass").translate(None, _UMLAUTS.encode()).isascii()


def _other_script_language(head: str) -> str | None:
    """The language of a report whose first lines are mostly letters of another script than Latin."""
    if _ascii_or_umlauts(head):  # every letter is Latin
        return None
    letters = len(_LETTER.findall(head))
    if not letters or 2 * len(_LATIN_LETTER.findall(head)) >= letters:
        return None
    identified, _ = _any_language_identifier().classify(head)
    return str(identified)


def _vote(text: str, head_words: list[bytes]) -> str | None:
    """The Latin-script language of a report that is neither English nor German, or None.

    Distinct words are counted, so a repeated abbreviation is one vote. The vote reads up to
    4,000 characters, so that a short English header (a disclaimer, a letterhead) in the first
    lines does not hide a body in another language.
    """
    other = _other_words()
    words = {*head_words, *_words(text[_WINDOW:4000].lower())}
    hits = other.keys() & words
    if len(hits) < _MIN_OTHER_WORDS:
        return None
    ours = max(len(words & _EN_BYTES), len(words & _DE_BYTES))
    if max(Counter(lang for word in hits for lang in other[word]).values()) <= ours:
        return None
    identified, _ = _identifier().classify(text[:4000])
    return None if identified in SUPPORTED_LANGUAGES else str(identified)


def _image_placeholders(match: re.Match[str]) -> str:
    """A placeholder word for each image reference of a run (each has one "i" or "s"); no digit, so
    that no new image reference ("se x") arises."""
    return " x" * (match[0].count("i") + match[0].count("s")) + " "


def _words(lower: str) -> list[bytes]:
    """_WORD's words of a lowercased text, in UTF-8, with "x" for an image reference (no function word).

    They are found at a fraction of _WORD.findall's cost, as every report needs them: the image
    references are replaced, then every character but a word character becomes a space (a byte
    translation, where the text is ASCII and umlauts) and bytes.split does the rest.
    """
    for references in _IMAGE_REFERENCES:
        lower = references.sub(_image_placeholders, lower)
    if not _ascii_or_umlauts(lower):
        lower = _NON_ASCII_SEPARATOR.sub(" ", lower)
    return lower.encode().translate(_SEPARATORS).split()


def _function_words(words: list[bytes]) -> tuple[int, list[bytes]]:
    """The number of English function words among words, and the German function words."""
    hits = list(filter(_FUNCTION_BYTES.__contains__, words))
    german = list(filter(_DE_BYTES.__contains__, hits))
    return len(hits) - len(german), german


def _few(words: list[bytes], english: int, german: list[bytes]) -> bool:
    """Whether English and German function words are few: under five, or under a tenth of the words."""
    return max(english, len(german)) < max(_MIN_COUNT, _MIN_SHARE * len(words))


def _other_language_after_header(text: str) -> str | None:
    """The language of the body of a report whose first window is English or German, where the
    next window has few English and German function words: a long disclaimer or letterhead over a
    body in another language."""
    window = text[_WINDOW:2 * _WINDOW].lower()
    words = _words(window)
    if not words or not _few(words, *_function_words(words)):
        return None
    return _other_script_language(window) or _vote(text[_WINDOW:], words)


def detect_language(text: str) -> str:
    """``"en"``, ``"de"`` or the ISO 639-1 code of another language the report is written in.

    English against German counts function words in the first 800 characters (the first lines
    decide, and detection stays O(1) per report); German umlauts count for German, every umlaut
    outside a counted German word once, like the word itself. Where English and German function
    words are few, in the first window or the next one, a report mostly in another script is named
    by its script and n-grams, and one in Latin script by the other languages' vote.

    >>> detect_language("Kein Pleuraerguss. Herz normal groß.")
    'de'
    >>> detect_language("Geen pleuravocht. Het hart is normaal van grootte, zonder afwijkingen.")
    'nl'
    >>> detect_language("Плевральный выпот отсутствует. Сердце не расширено.")
    'ru'
    """
    lower = text[:_WINDOW].lower()
    words = _words(lower)
    english, german_words = _function_words(words)
    if _few(words, english, german_words):
        other = _other_script_language(lower) or _vote(text, words)
    else:
        other = _other_language_after_header(text)
    if other is not None:
        return other
    german = len(german_words)
    if not lower.isascii():
        german += sum(map(lower.count, _UMLAUTS)) - sum(map(_DE_WORD_UMLAUTS.__getitem__, german_words))
    return "de" if german > english else "en"
