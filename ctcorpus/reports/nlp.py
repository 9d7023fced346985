"""Rule-based report NLP: sections, sentences, anatomy and ConText-style label states (the language: ``language``).

Why rules and a tokenizer-only spaCy pipeline: a blank ``en``/``de`` pipeline's ``make_doc`` is all
the tokenization the rules need, it loads no model, and it keeps throughput in the thousands of
reports per second per core. negspacy was considered: it needs an entity recognizer in front and
only knows English triggers, while these rules run over the whole report at once, in English and
German, with pseudo-triggers and scope terminators (ConText, Harkema et al. 2009).
"""

from __future__ import annotations

import bisect
import math
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from itertools import chain, islice, pairwise
from types import MappingProxyType

import ahocorasick
import numpy as np
import spacy
from spacy.attrs import FLAG63, IDX, LENGTH
from spacy.matcher import PhraseMatcher
from spacy.tokens import Span

from ctcorpus.enums import LabelState, QuarantineReason
from ctcorpus.errors import ReportError
from ctcorpus.reports import lexicon
from ctcorpus.reports.language import SUPPORTED_LANGUAGES, detect_language
from ctcorpus.reports.patterns import lower_same_length, trie_regex, with_ss
from ctcorpus.reports.phi import PhiHit, Scrubbed, find_phi, scrub_text
from ctcorpus.taxonomy import CT_RATE_LABELS, LABEL_ANATOMY, Anatomy

__all__ = [
    "AnalyzedReport",
    "ReportAnalyzer",
    "Section",
    "Sentence",
    "ReportText",
    "analyze_report",
    "analyze_reports",
    "build_analyzer",
]

#: Sentences a ReportAnalyzer.sentence_cache holds at most, per language (~400 bytes each on average).
_SENTENCE_CACHE_SIZE = 100_000
#: Characters of the longest sentence the cache keeps: a longer one (a run-on text without sentence
#: ends, a pasted blob) is rarely met twice, and kept it would break the cache's memory bound.
_LONGEST_CACHED_SENTENCE = 1_000
#: A sentence's anatomies (sorted) and label states.
_SentenceAnalysis = tuple[tuple[str, ...], Mapping[str, LabelState]]
#: A label mention in a sentence: its span, its label, and the state the phrase fixes (None: the triggers decide).
_Mention = tuple[int, int, str, LabelState | None]
_RANK = {LabelState.NEGATIVE: 0, LabelState.UNCERTAIN: 1, LabelState.POSITIVE: 2}
#: A label's region (LABEL_ANATOMY's values as strings: an enum's ``.value`` is a property call per read).
_LABEL_REGION: Mapping[str, str] = MappingProxyType({label: region.value for label, region in LABEL_ANATOMY.items()})


@dataclass(frozen=True, slots=True)
class Section:
    """A report section: its normalized name and the body's char span (heading excluded)."""

    name: str
    start: int
    end: int


@dataclass(slots=True)
class Sentence:
    """A sentence of the scrubbed text with its anatomies and label states.

    Not frozen: a report makes a few dozen, and a frozen dataclass's ``__init__`` (one
    ``object.__setattr__`` per field) costs four times as much, 5% of a report's analysis.
    """

    index: int
    section: str
    start: int
    end: int
    anatomies: tuple[str, ...]
    labels: Mapping[str, LabelState]


@dataclass(frozen=True, slots=True)
class AnalyzedReport:
    """Everything the rules found in one report (offsets refer to ``scrubbed.text``)."""

    language: str
    scrubbed: Scrubbed
    sections: tuple[Section, ...]
    sentences: tuple[Sentence, ...]
    labels: Mapping[str, LabelState]  # report level; absent labels are not in the mapping

    @property
    def text(self) -> str:
        return self.scrubbed.text

    @property
    def phi(self) -> tuple[PhiHit, ...]:
        return self.scrubbed.hits


@dataclass(frozen=True, slots=True)
class ReportAnalyzer:
    """Compiled rules: tokenizers, anatomy matchers and regular expressions (build once, reuse)."""

    nlp: Mapping[str, spacy.Language]
    no_break_before_period: Mapping[str, frozenset[str]]  # exact tokens after which "." ends nothing
    anatomy_matchers: Mapping[str, PhraseMatcher]
    anatomy_ids: Mapping[int, str]
    anatomy_stems: re.Pattern[str]  # German compounds' anatomy stems, at a word start
    stem_anatomy: Mapping[str, str]
    labels: re.Pattern[str]
    label_groups: Mapping[str, tuple[str, ...]]  # phrase -> its labels (none: a word that names no finding)
    statement_states: Mapping[str, LabelState]  # phrases in ``label_groups`` that fix the state themselves
    triggers: re.Pattern[str]
    first_words: ahocorasick.Automaton  # the first words of labels, triggers and anatomy stems (see _phrase_matches)
    trigger_kinds: Mapping[str, str]
    headings: re.Pattern[str]  # at a line start, matched in "\n" + text
    inline_headings: re.Pattern[str]  # after a sentence end on the same line, from the end mark on
    heading_names: Mapping[str, str]
    label_sections: frozenset[str]
    #: Per language, sentence text -> its anatomies and label states. Reports repeat their sentences
    #: ("No pleural effusion."): 63% of the sentences of OpenI's reports occur in an earlier one. A
    #: sentence's analysis depends on its text alone, so each distinct sentence is analyzed once per
    #: process (the cache empties itself at _SENTENCE_CACHE_SIZE entries, tens of MB, and keeps no
    #: sentence longer than _LONGEST_CACHED_SENTENCE characters).
    sentence_cache: Mapping[str, dict[str, _SentenceAnalysis]]


#: A run of punctuation that makes its whitespace-delimited chunk one token (see _tokenizer_pipeline).
_PUNCTUATION_RUN = re.compile(r"(?:[^\w\s]|_){33}")
#: Characters of a whitespace-delimited chunk longer than which it is one token (see _tokenizer_pipeline).
_LONGEST_SPLIT_CHUNK = 256


def _kept_whole(chunk: str) -> bool:
    """Whether spaCy keeps ``chunk`` as one token (its ``token_match``): too long, or holding a punctuation run."""
    return len(chunk) > _LONGEST_SPLIT_CHUNK or _PUNCTUATION_RUN.search(chunk) is not None


#: A lexeme flag (spaCy leaves FLAG19 to FLAG63 to users): whether the sentence rules read a
#: token inside a sentence (see _read_in_sentence).
_READ_IN_SENTENCE = FLAG63


def _read_in_sentence(text: str) -> bool:
    """Whether the sentence rules read a token ``text`` inside a sentence (see _sentence_spans):
    whitespace (a line break may end the sentence), or an end mark last."""
    return text.isspace() or text.endswith((".", "!", "?"))


def _tokenizer_pipeline(lang: str) -> tuple[spacy.Language, frozenset[str]]:
    """A blank spaCy pipeline whose tokenizer has no exceptions, and the words they protected;
    its lexemes carry the ``_READ_IN_SENTENCE`` flag.

    One exception hit in a Doc ("\\n" is one, so is "Dr.") stops spaCy caching the tokenization
    of every later chunk of that Doc (spaCy issue #1250), and exceptions that hold an affix make it
    re-scan each Doc with a PhraseMatcher: together three quarters of the tokenizing time. The
    rules need none of what the exceptions do (contractions, emoticons) except keeping "Dr." from
    ending a sentence, so they are dropped and the tokens each period-bearing exception now splits
    into before a "." are returned for the sentence rules.

    spaCy strips prefixes and suffixes one character at a time, searching and copying the rest
    each time, so a run of punctuation costs quadratic time: a 64-character "=====" line takes
    1.5 ms (a whole report's budget), 3,000 "#" 3 s and 50,000 six minutes (spaCy issues #1768,
    #4362). A chunk holding a run of 33 or more is kept as one token instead (``token_match``);
    the sentence rules end a sentence at a line of punctuation or a token ending in "!!", however
    the run is split. Its URL pattern backtracks over a long chunk with many colons, quadratic too
    ("ab:ab:...": 40,000 characters took 7 s), so a chunk of more than ``_LONGEST_SPLIT_CHUNK``
    characters, which no report writes but a pasted blob or a broken export may, is one token too.
    """
    nlp = spacy.blank(lang)
    nlp.vocab.add_flag(_read_in_sentence, flag_id=_READ_IN_SENTENCE)  # set once per lexeme, read in bulk per Doc
    nlp.tokenizer.token_match = _kept_whole
    exceptions = [form for form in nlp.tokenizer.rules if "." in form]
    nlp.tokenizer.rules = {}
    no_break: set[str] = set()
    for form in exceptions:
        words = [t.text for t in nlp.tokenizer(form)]
        no_break.update(w for w, after in pairwise(words) if after == "." and w != ".")
    return nlp, frozenset(no_break)


#: Which pattern's phrases a first word may start (see _phrase_matches): indices of its result.
_LABEL, _TRIGGER, _STEM = range(3)


def _first_word_automaton(phrases: Mapping[int, Iterable[str]]) -> ahocorasick.Automaton:
    """An Aho-Corasick automaton that finds the first words of ``phrases`` (their spellings of
    "ß"/"ss" too), each mapped to its length and the keys of the groups whose phrases it starts."""
    groups: dict[str, set[int]] = {}
    for k, group in phrases.items():
        for phrase in with_ss(group):
            groups.setdefault(phrase.split()[0], set()).add(k)
    automaton = ahocorasick.Automaton()
    for word, ks in sorted(groups.items()):
        automaton.add_word(word, (len(word), tuple(sorted(ks))))
    automaton.make_automaton()
    return automaton


def _as_written_in_lexicon(phrase: str) -> str:
    """A configured phrase as the lexicon writes its own: lowercase, its words one space apart, a
    leading "~" (a label phrase matched inside a compound) kept. Written otherwise (" herdchen"), the
    rules read its blanks as part of it (the anatomy matcher as a token) and find it nowhere."""
    compound = phrase.lstrip().startswith("~")
    return "~" * compound + " ".join(phrase.lstrip().removeprefix("~").lower().split())


@cache
def _cached(extra_synonyms: tuple[tuple[str, tuple[str, ...]], ...],
            extra_anatomy: tuple[tuple[str, tuple[str, ...]], ...],
            label_sections: tuple[str, ...]) -> ReportAnalyzer:
    nlps: dict[str, spacy.Language] = {}
    matchers: dict[str, PhraseMatcher] = {}
    terms: dict[str, set[str]] = {a.value: set(ts) for a, ts in lexicon.ANATOMY_TERMS.items()}
    for anatomy, extra in extra_anatomy:
        terms.setdefault(Anatomy(anatomy).value, set()).update(map(_as_written_in_lexicon, extra))
    no_break: dict[str, frozenset[str]] = {}
    for lang in SUPPORTED_LANGUAGES:
        nlp, no_break[lang] = _tokenizer_pipeline(lang)
        matcher = PhraseMatcher(nlp.vocab, attr="LOWER")
        for anatomy, phrases in terms.items():
            matcher.add(anatomy, list(nlp.tokenizer.pipe(sorted(with_ss(phrases)))))
        nlps[lang], matchers[lang] = nlp, matcher
    ids = {nlps["en"].vocab.strings[a]: a for a in terms}
    stems = {s: a.value for a, ss in lexicon.ANATOMY_STEMS.items() for s in with_ss(ss)}
    stem_re = re.compile(r"\b(" + trie_regex(stems) + r")\w*")

    synonyms: dict[str, list[str]] = {label: list(lexicon.LABEL_SYNONYMS.get(label, ())) for label in CT_RATE_LABELS}
    for label, extra in extra_synonyms:
        synonyms.setdefault(label, []).extend(map(_as_written_in_lexicon, extra))
    # "~stem" phrases match inside a German compound, the others at a word start; both may carry
    # an inflection suffix. Group 1 or 2 is the phrase itself, looked up in ``groups``. Words that
    # hold a label's stem but name no finding win there as the longer phrase, and map to no label;
    # a joint mention ("pleural or pericardial effusion") maps to both of its labels.
    vocabulary: dict[str | None, list[str]] = {**synonyms, None: list(lexicon.NOT_LABELS)}
    groups = {" ".join(t.lstrip("~").split()): () if label is None else (label,)
              for label, ts in vocabulary.items() for t in with_ss(ts)}
    groups |= {t: labels for phrase, labels in lexicon.JOINT_MENTIONS.items() for t in with_ss([phrase])}
    statements: dict[str, LabelState] = {}
    statement_labels: dict[str, tuple[str, ...]] = {}  # a phrase listed under two labels names both
    for state, phrases in ((LabelState.NEGATIVE, lexicon.NORMAL_STATEMENTS),
                           (LabelState.UNCERTAIN, lexicon.UNCERTAIN_STATEMENTS)):
        for label, ts in phrases.items():
            for t in with_ss(ts):
                statements[t] = state
                statement_labels[t] = (*statement_labels.get(t, ()), label)
    groups |= statement_labels
    anchored = [t for ts in vocabulary.values() for t in ts if not t.startswith("~")] + [*lexicon.JOINT_MENTIONS,
                                                                                         *statements]
    anywhere = [t[1:] for ts in vocabulary.values() for t in ts if t.startswith("~")]
    word_start = r"\b(" + trie_regex(anchored) + r")\w*"
    label_re = re.compile(word_start + r"|(" + trie_regex(anywhere) + r")\w*")
    kinds: dict[str, str] = {}
    for kind, words in (("pseudo", lexicon.PSEUDO_TRIGGERS), ("term", lexicon.SCOPE_TERMINATORS),
                        ("neg_pre", lexicon.NEGATION_PRE), ("neg_post", lexicon.NEGATION_POST),
                        ("unc_pre", lexicon.UNCERTAIN_PRE), ("unc_post", lexicon.UNCERTAIN_POST),
                        ("unc_post_last", lexicon.UNCERTAIN_POST_LAST)):
        for w in with_ss(words):
            kinds[w] = kinds[w] + "+" + kind if w in kinds else kind
    # A trigger starts and ends where no word goes on across it: "effusion; nodule" holds the ";"
    # terminator, which (?<!\w) never found after a word.
    bound = r"(?!(?<=\w)\w)"
    trigger_re = re.compile(bound + "(" + trie_regex(kinds) + ")" + bound)
    heading_names = lexicon.SECTION_OF_HEADING
    # Matched in "\n" + text: a literal first character lets the engine jump from line to line. A
    # heading may be numbered ("2. Beurteilung") or bold in Markdown ("**Befund:**").
    heading_re = re.compile(
        r"(?im)\n[ \t]*(?:[-*#]+[ \t]*|\d{1,2}[.)][ \t]*)?(" + trie_regex(heading_names) + r")[ \t]*[*_]*[ \t]*(?::|$)"
        r"[ \t]*[*_]*[ \t]*"
    )
    # Exports that flatten line breaks put a heading after a sentence end: "... frei. Beurteilung: ..."
    inline_heading_re = re.compile(r"(?i)[.!?][ \t]+(" + trie_regex(heading_names) + r")[ \t]*[*_]*:[ \t]*[*_]*[ \t]*")
    return ReportAnalyzer(
        nlp=MappingProxyType(nlps),
        no_break_before_period=MappingProxyType(no_break),
        anatomy_matchers=MappingProxyType(matchers),
        anatomy_ids=MappingProxyType(ids),
        anatomy_stems=stem_re,
        stem_anatomy=MappingProxyType(stems),
        labels=label_re,
        label_groups=MappingProxyType(groups),
        statement_states=MappingProxyType(statements),
        triggers=trigger_re,
        first_words=_first_word_automaton({_LABEL: [*anchored, *anywhere], _TRIGGER: kinds, _STEM: stems}),
        trigger_kinds=MappingProxyType(kinds),
        headings=heading_re,
        inline_headings=inline_heading_re,
        heading_names=heading_names,
        label_sections=frozenset(label_sections),
        sentence_cache=MappingProxyType({lang: {} for lang in SUPPORTED_LANGUAGES}),
    )


def build_analyzer(
    *,
    extra_synonyms: Mapping[str, Sequence[str]] | None = None,
    extra_anatomy_terms: Mapping[str, Sequence[str]] | None = None,
    label_sections: Sequence[str] = ("findings", "impression"),
) -> ReportAnalyzer:
    """Compile the rules once (cached per vocabulary): tokenizers, matchers and regexes.

    >>> analyzer = build_analyzer(extra_synonyms={"lung_nodule": ["rundherdchen"]})
    """
    return _cached(
        tuple(sorted((k, tuple(v)) for k, v in (extra_synonyms or {}).items())),
        tuple(sorted((k, tuple(v)) for k, v in (extra_anatomy_terms or {}).items())),
        tuple(label_sections),
    )


#: Sections that hold no findings; in a report without a findings heading, their first paragraph
#: is all they hold.
_PREAMBLE_SECTIONS = frozenset({"clinical_information", "technique", "comparison"})
_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n\s*(?=\S)")


def _sections(analyzer: ReportAnalyzer, text: str) -> tuple[Section, ...]:
    """Split at headings; text before the first heading is clinical information.

    Many reports have no findings heading ("Indication: ... <findings> Impression: ..."), and the
    findings must not be lost to the section before them: in such a report, text before the first
    heading is findings, as is what follows the first paragraph of a clinical information,
    technique or comparison section. A report without headings is all findings.
    """
    names = analyzer.heading_names
    marks = []
    for m in analyzer.headings.finditer("\n" + text):  # offsets in text: match start is the line start
        body = m.end() - 1
        marks.append((m.start(), body + (text[body:body + 1] == "\n"), names[" ".join(m.group(1).lower().split())]))
    for m in analyzer.inline_headings.finditer(text):  # the section before keeps its end mark
        marks.append((m.start() + 1, m.end(), names[" ".join(m.group(1).lower().split())]))
    marks.sort()
    if not marks:
        return (Section("findings", 0, len(text)),) if text.strip() else ()
    has_findings_heading = any(name == "findings" for _, _, name in marks)
    out: list[Section] = []
    if text[: marks[0][0]].strip():
        out.append(Section("clinical_information" if has_findings_heading else "findings", 0, marks[0][0]))
    for k, (_, body, name) in enumerate(marks):
        end = marks[k + 1][0] if k + 1 < len(marks) else len(text)
        if not has_findings_heading and name in _PREAMBLE_SECTIONS:
            first = end - len(text[body:end].lstrip())  # the body's first non-space character
            if br := _PARAGRAPH_BREAK.search(text, first, end):
                out += [Section(name, body, br.start()), Section("findings", br.end(), end)]
                continue
        out.append(Section(name, body, end))
    return tuple(out)


_LIST_MARK = re.compile(r"^(?:\d{1,2}[.)]|[-*•])$")
#: A line of three or more punctuation characters and nothing else: "=====", "- - -", "#####".
_SEPARATOR_LINE = re.compile(r"(?:[^\S\n]*(?:[^\w\s]|_)){3,}[^\S\n]*")


def _sentence_spans(
    text: str,
    tokens: tuple[Sequence[int], Sequence[int], Sequence[int]],
    sections: Sequence[Section],
    no_break: frozenset[str],
) -> list[tuple[int, int, str]]:
    """Sentence char spans per section, by radiology rules over the token stream.

    ``tokens`` are the spaCy tokens' char starts and ends, and the indices of the tokens flagged
    ``_READ_IN_SENTENCE`` (whitespace, or an end mark last) followed by the number of tokens, all
    read in bulk from the Doc: a Token object, or even a string, per token costs more than the
    rules, so a token's text is only sliced where a rule reads it. Inside a sentence and off a line
    start, no rule reads an unflagged token (a word): the walk jumps over a run of them to the next
    flagged token, the run only moving the sentence's end and the previous non-space token. That
    skips about two thirds of a report's tokens.

    A period, "!" or "?" ends a sentence unless it follows an abbreviation, a token in
    ``no_break`` or a single letter ("V. cava", "Z. n."); a run of them ("effusion..", "?!")
    always does, as one end; numbers keep their decimals (one token); a list number at a line
    start ("1.") opens, not ends, a sentence; a blank line, a separator line ("=====", which
    belongs to no sentence), or a line break after ":" or before a list marker, ends one; a
    section start always does.
    """
    spans: list[tuple[int, int, str]] = []
    abbreviations = lexicon.ABBREVIATIONS
    starts, ends, read = tokens
    n = len(starts)
    i = k = 0  # read[k]: the first flagged token from i on
    for section in sections:
        i = bisect.bisect_left(starts, section.start, i)
        stop = bisect.bisect_left(starts, section.end, i)  # the section's tokens end before it
        start = last = -1
        p = -1  # the previous non-space token
        line_start = True
        list_number = False  # a "1" at a line start whose "." must not end anything
        while i < stop:
            while read[k] < i:
                k += 1
            if read[k] > i and start >= 0 and not line_start:  # words inside a sentence
                i = min(read[k], stop)
                last, p = ends[i - 1], i - 1
                continue
            s, e = starts[i], ends[i]
            i += 1
            c = text[e - 1]  # the token's last character
            if read[k] < i and c not in ".!?":  # flagged without an end mark: a whitespace token
                if text.find("\n", s, e) >= 0:
                    line_start = True
                    if start >= 0 and (text.find("\n\n", s, e) >= 0 or (p >= 0 and text[ends[p] - 1] == ":")):
                        spans.append((start, last, section.name))
                        start = -1
                continue
            marker = False
            if line_start:
                if not text[s].isalnum():
                    line_end = text.find("\n", s, section.end)
                    line_end = section.end if line_end < 0 else line_end
                    if _SEPARATOR_LINE.fullmatch(text, s, line_end):
                        if start >= 0:
                            spans.append((start, last, section.name))
                            start = -1
                        while i < n and starts[i] < line_end:
                            i += 1
                        p = i - 1
                        continue
                line_start = False
                t = text[s:e]
                marker = _LIST_MARK.match(t) is not None or (
                    t.isdigit() and i < n and text[starts[i]:ends[i]] in (".", ")"))
                if marker and start >= 0:
                    spans.append((start, last, section.name))
                    start = -1
            if start < 0:
                if marker or (list_number and e - s == 1 and c in ".)"):
                    list_number = marker and text[s:e].isdigit()
                    p = i - 1
                    continue
                if c in ".!?" and spans and spans[-1][1] == s and not text[s:e].strip(".!?"):
                    spans[-1] = (spans[-1][0], e, spans[-1][2])  # "effusion?!": the "!" is no sentence
                    p = i - 1
                    continue
                list_number = False
                start = s
            last = e
            if c in ".!?":
                if e - s == 1:
                    prev = text[starts[p]:ends[p]] if p >= 0 else ""
                    # a "?" between letters is a letter an export lost with its encoding ("Erg?sse")
                    lost_letter = c == "?" and text[s - 1:s].isalpha() and text[e:e + 1].isalpha()
                    if not (lost_letter or prev in no_break or prev.lower() in abbreviations
                            or (len(prev) == 1 and prev.isalpha())):
                        spans.append((start, last, section.name))
                        start = -1
                elif (c == "." and text[s:e - 1].isdigit()) or text[e - 2] in ".!?":
                    # German tokenizers keep "54." in one token; "effusion.." or "?!" ends a sentence too
                    spans.append((start, last, section.name))
                    start = -1
            p = i - 1
        if start >= 0:
            spans.append((start, last, section.name))
    return spans


def _phrase_matches(analyzer: ReportAnalyzer, lower: str) -> tuple[list[re.Match[str]], ...]:
    """What ``finditer`` finds of ``analyzer.labels``, ``triggers`` and ``anatomy_stems`` in the sentence
    ``lower``, in that order, in one pass.

    Each of their phrases starts with its first word as written (only its spaces match any
    whitespace), so a pattern can only match where one of its first words (``analyzer.first_words``)
    starts. One Aho-Corasick pass finds those positions for all three, and each pattern is matched
    there only, in text order, from where its last match ended on, as :func:`matches_at` does for one:
    the engine no longer tries each pattern at every position, which took twice the time.
    """
    patterns = (analyzer.labels, analyzer.triggers, analyzer.anatomy_stems)
    matches: tuple[list[re.Match[str]], ...] = ([], [], [])
    ends = [0, 0, 0]
    for start, kinds in sorted([(end - length + 1, kinds) for end, (length, kinds) in analyzer.first_words.iter(lower)]):
        for kind in kinds:
            if start >= ends[kind] and (m := patterns[kind].match(lower, start)) is not None:
                matches[kind].append(m)
                ends[kind] = max(m.end(), start + 1)
    return matches


def _label_mentions(analyzer: ReportAnalyzer, matches: Iterable[re.Match[str]]) -> list[_Mention]:
    """The label phrases ``matches`` of ``analyzer.labels`` as mentions: (start, end, label, the state
    the phrase fixes or None), one per label of a joint mention ("pleural or pericardial effusion").

    A matched phrase is looked up as written first: the lookup keys have their words one space
    apart, so only a phrase with a line break or a run of spaces inside needs joining.
    """
    groups, fixed = analyzer.label_groups, analyzer.statement_states
    found = []
    for m in matches:
        phrase = m[m.lastindex]
        if phrase not in groups:
            phrase = " ".join(phrase.split())
        found.extend((m.start(), m.end(), label, fixed.get(phrase)) for label in groups[phrase])
    return found


#: A coordinator (see lexicon.LIST_COORDINATORS): the items before it are a list.
_COORDINATOR = re.compile(r"\b(?:" + "|".join(lexicon.LIST_COORDINATORS) + r")\b")
#: An item that starts with a size or count ("8 mm nodule") or an assertion ("only atelectasis", see
#: lexicon.LIST_ITEM_ASSERTIONS) asserts a finding of its own.
_ASSERTION = "(?:" + trie_regex(lexicon.LIST_ITEM_ASSERTIONS) + r")\b"
_SIZE_FIRST = re.compile(rf"\s*(?:{_ASSERTION}|\d)")
#: After a negation, so does one that starts with a degree ("small nodule", see lexicon.LIST_ITEM_DEGREES),
#: maybe after its side ("links schmaler Erguss"): a report says "no nodule", not "no small nodule",
#: while a differential lists graded alternatives ("may represent atelectasis, small infiltrate, scarring").
_DEGREE = "(?:" + trie_regex(lexicon.LIST_ITEM_DEGREES) + r")\b"
_SIDE = "(?:" + trie_regex(lexicon.SIDES) + r")\b"
_GRADED_FIRST = re.compile(rf"\s*(?:{_ASSERTION}|(?:{_SIDE}\s+)?(?:\d|{_DEGREE}))")
#: An item that grades a finding it does not name where it lies, after a comma, a "but" or an "and": "no
#: effusion on the left, small on the right", "Kein Erguss rechts, aber links gering", "no effusion on the left
#: and small on the right": the finding of the mention before it.
_ELLIPTICAL_ITEM = re.compile(
    r"(?:[,;]\s*(?:(?:but|aber|jedoch|and|und)\s+)?| (?:but|aber|jedoch|and|und)\s+)"
    rf"(?P<item>{_DEGREE}\s+(?:(?:on|at|in)\s+the\s+)?{_SIDE}(?:\s+side)?|{_SIDE}\s+{_DEGREE})(?=\s*(?:[.,;]|$))"
)
#: What ``_ELLIPTICAL_ITEM`` starts with: most sentences hold none, and a substring test costs a
#: twentieth of the regex's scan.
_ELLIPSIS_OPENERS = (",", ";", " but", " aber", " jedoch", " and", " und")
#: An "and" or a "with" that joins an item, maybe with its article: the item may say something of its own
#: ("no effusion with mild atelectasis", not "no effusion with septation"; see _list_reaches).
_JOINED_ITEM = re.compile(r"\b(?:and|und|with|mit)\s+(?:(?:a|an|ein|eine|einem|einen|einer)\s+)?")
#: A coordinator that goes on with a list after a placed item (see lexicon.LIST_DISJUNCTIONS).
_DISJUNCTION = re.compile(r"\b(?:" + "|".join(lexicon.LIST_DISJUNCTIONS) + r")\b")
#: An item that measures, places or qualifies its finding (see lexicon.LIST_ITEM_QUALIFIERS), or ends, maybe
#: before a coordinator, in its place or predicate after its noun (lexicon.LIST_ITEM_PLACES and
#: LIST_ITEM_PREDICATES: "Atelektase links basal.", "Herz vergrößert,", "atelectasis left lower lobe or").
_QUALIFIED = re.compile(
    r"\d|\b(?:" + "|".join(lexicon.LIST_ITEM_QUALIFIERS) + r")\b"
    r"|(?<=\w)(?:\s+(?:" + trie_regex((*lexicon.LIST_ITEM_PLACES, *lexicon.LIST_ITEM_PREDICATES)) + r")\b)+"
    r"(?=\s*(?:[^\w\s]|$)|\s+(?:" + "|".join(lexicon.LIST_COORDINATORS) + r")\b)"
)


def _placed(item: str) -> bool:
    """Whether a list's ``item`` places or qualifies its finding (``_QUALIFIED``) where no coordinator before
    that word nor a disjunction after it makes it a word of the list: "consolidation in the right lower lobe",
    "Erguss links", not "or consolidation in the right lower lobe", "Atelektase links oder Erguss"."""
    qualifier = _QUALIFIED.search(item)
    return (qualifier is not None and not _COORDINATOR.search(item, 0, qualifier.start())
            and not _DISJUNCTION.search(item, qualifier.end()))


def _list_reaches(lower: str, t_end: int, m_start: int, right_bound: float, own_first: re.Pattern[str]) -> bool:
    """Whether a pre trigger ending at ``t_end`` reaches the mention at ``m_start`` across the commas
    between them: it does through a list ("no effusion, pneumothorax or consolidation"), as NegBio
    propagates a negation along the coordinated nouns, but not into an item that says something of
    its own ("no effusion, 8 mm nodule in the right lower lobe"): one whose start ``own_first``
    matches (_SIZE_FIRST, or after a negation _GRADED_FIRST: "no effusion, small nodule and mild
    atelectasis", "no effusion, only emphysema"), also after an "and" or a "with" ("no nodule in the right
    lung and a 4 mm nodule in the left", "no effusion with mild atelectasis"),
    or one that holds a number or a word that places or qualifies it ("in", "im", "der") where the
    list does not go on around it within the scope: no coordinator before that word ("or
    consolidation in the right lower lobe"), no disjunction after it ("consolidation in the right
    lower lobe or pneumothorax") and none after a further comma. An "and" after it joins the item's
    own statement ("no effusion, nodule in the right lower lobe and atelectasis").
    """
    for joined in _JOINED_ITEM.finditer(lower, t_end, m_start):
        if own_first.match(lower, joined.end()):
            return False
    right_bound = min(right_bound, len(lower))
    comma = lower.find(",", t_end, m_start)
    while comma >= 0:
        item_end = lower.find(",", comma + 1, right_bound)
        item = lower[comma + 1:right_bound if item_end < 0 else item_end]
        if own_first.match(item):
            return False
        if _placed(item) and (item_end < 0 or not _COORDINATOR.search(lower, item_end, right_bound)):
            return False
        comma = lower.find(",", comma + 1, m_start)
    return True


def _list_reaches_back(lower: str, left_bound: int, m_start: int, t_start: int, starts: Sequence[int]) -> bool:
    """Whether a post trigger at ``t_start`` reaches back to the mention at ``m_start`` across the commas
    between them: it does from an item that names no finding of its own (no mention starts in it; ``starts``
    the sentence's): "Erguss links, nicht mehr nachweisbar"; from one that does, only along a list, through
    no item from the mention's on that is placed or qualified (_placed): "Erguss oder Infiltrat möglich",
    "Erguss, Infiltrat möglich" hedge both, "Erguss links, Infiltrat möglich" and "Herz vergrößert, Erguss
    nicht nachweisbar" only the finding after the comma."""
    last_comma = lower.rfind(",", m_start, t_start)
    if last_comma < 0 or not any(last_comma < start < t_start for start in starts):
        return True
    item_start = max(left_bound, lower.rfind(",", left_bound, m_start) + 1)
    return not any(_placed(item) for item in lower[item_start:last_comma].split(","))


#: A comma or an "and" that may open a clause of its own (see _clause_opens), its definite article, and the
#: clause's verb.
_CLAUSE_OPENER = re.compile(r"(?:,|\b(?:and|und))\s+(?:(?P<article>" + trie_regex(lexicon.CLAUSE_ARTICLES) + r")\s+)?")
_CLAUSE_VERB = re.compile(r"\b(?:" + trie_regex(lexicon.CLAUSE_VERBS) + r")\b")
#: A clause opener with its definite article (``_CLAUSE_OPENER`` whose article is there).
_ARTICLE_OPENER = re.compile(r"(?:,|\b(?:and|und))\s+(?:" + trie_regex(lexicon.CLAUSE_ARTICLES) + r")\s+")


def _clause_opens(lower: str, t_end: int, m_start: int, m_end: int) -> bool:
    """Whether a comma or an "and" between a pre trigger ending at ``t_end`` and the mention at
    ``m_start:m_end`` opens a clause with its own subject and predicate, which the trigger does not reach:
    a verb in its clause (lexicon.CLAUSE_VERBS) before the mention's end ("no consolidation and the heart
    is enlarged", "no effusion, lymph nodes are enlarged"), or anywhere after a definite article ("no
    pneumothorax and the effusion has increased"). A verb after an item of the list is the list's: "no
    effusion and consolidation are seen", "no effusion, consolidation or atelectasis is seen" negate all.

    The first opener has the most text after it, so it alone decides the first case, and the first
    opener with an article the second: two searches per mention, where one per opener (each to the
    clause's end) made a long sentence of "no effusion and effusion and ..." cost cubic time.
    """
    first = _CLAUSE_OPENER.search(lower, t_end, m_start)
    if first is None:
        return False
    clause_end = (mark.start() if (mark := _CLAUSE_MARK.search(lower, m_end)) is not None else len(lower))
    if _CLAUSE_VERB.search(lower, first.end(), min(m_end, clause_end)) is not None:
        return True
    article = first if first["article"] is not None else _ARTICLE_OPENER.search(lower, first.end(), m_start)
    return article is not None and _CLAUSE_VERB.search(lower, article.end(), clause_end) is not None


#: A German finding's word that ends in a hedge (lexicon.HEDGE_COMPOUNDS): "Infiltratverdacht".
_HEDGED_COMPOUND = re.compile(r"\w(?:" + "|".join(lexicon.HEDGE_COMPOUNDS) + ")")


#: What may follow a post trigger that ends its clause (lexicon.UNCERTAIN_POST_LAST): a mark, the
#: sentence end, or, after a space, where the finding is ("atelectasis likely in the left base", "Erguss
#: wahrscheinlich links"). No letter right after a "?": an export that lost its encoding writes "?" for
#: an umlaut ("Verdickte Bronchialw?nde", "Mosaikperfusi?on" is no question).
_CLAUSE_END = re.compile(r"\s*(?:[.,;:!?)]|$)|\s+(?:" + "|".join((*lexicon.LIST_ITEM_QUALIFIERS, *lexicon.SIDES)) + r")\b")


#: What may stand between a finding and a post trigger of lexicon.UNCERTAIN_POST_LAST besides a space:
#: the finding's alternative ("atelectasis or consolidation?", "Atelektase oder Infiltrat wahrscheinlich"),
#: which the trigger hedges with it; not a comma's next item ("opacity, atelectasis?": the opacity is there).
_ALTERNATIVE = re.compile(r"\s+(?:or|oder|bzw\.?)\s+[^,;:.!?]+")


def _reaches_back(kind: str, lower: str, m_end: int, t_start: int, t_end: int) -> bool:
    """Whether a post trigger of ``kind`` at ``t_start:t_end`` reaches back to a mention ending at
    ``m_end``: any does, but one only of lexicon.UNCERTAIN_POST_LAST only from right after the mention
    (a space between them, none before a "?", or the mention's alternative: ``_ALTERNATIVE``) and
    where its clause ends after it (``_CLAUSE_END``)."""
    if "_last" not in kind or any(part in ("neg_post", "unc_post") for part in kind.split("+")):
        return True
    return ((not lower[m_end:t_start].strip() or _ALTERNATIVE.fullmatch(lower, m_end, t_start) is not None)
            and _CLAUSE_END.match(lower, t_end) is not None)


def _state(trig: Sequence[tuple[int, int, str]], lower: str, m_start: int, m_end: int,
           starts: Sequence[int]) -> LabelState:
    """ConText: a pre trigger reaches forward, a post trigger backward, both stop at a scope
    terminator or the sentence end (``trig`` are the sentence's triggers, offsets in the sentence
    ``lower``, like ``m_start``/``m_end``, the mention's); pseudo-triggers are no triggers. A pre
    trigger reaches across a comma only along a list (see _list_reaches), and so does a post trigger
    after a finding of its own item (see _list_reaches_back; ``starts``: the sentence's mentions' starts).
    Only the nearest pre trigger and the nearest post trigger count ("suggestive of A, without B": B is negated), and
    of the two, uncertainty beats negation, except a post trigger's after a comma over an item a negation
    states: "Kein Erguss, Infiltrat nicht auszuschließen" hedges the infiltrate, not the effusion. A finding
    no trigger reaches is uncertain where its own word hedges it ("Infiltratverdacht", _HEDGED_COMPOUND)."""
    left_bound, right_bound = 0, math.inf  # the sentence's ends: every trigger lies between them
    for t_start, t_end, kind in trig:
        if "term" in kind:
            if t_end <= m_start:
                left_bound = max(left_bound, t_end)
            elif t_start >= m_end:
                right_bound = min(right_bound, t_start)
    pre = post = ""
    pre_end = post_start = 0
    for t_start, t_end, kind in trig:  # in text order
        if "pseudo" in kind or kind == "term":
            continue
        if t_end <= m_start and t_start >= left_bound and "_pre" in kind:
            pre = kind
            pre_end = t_end
        elif (t_start >= m_end and t_end <= right_bound and "_post" in kind
              and _reaches_back(kind, lower, m_end, t_start, t_end)
              and _list_reaches_back(lower, left_bound, m_start, t_start, starts)):
            post = kind
            post_start = t_start
            break
    if pre and (not _list_reaches(lower, pre_end, m_start, right_bound,
                                  _SIZE_FIRST if "unc_pre" in pre else _GRADED_FIRST)
                or _clause_opens(lower, pre_end, m_start, m_end)):
        pre = ""
    if "neg_pre" in pre and lower.find(",", m_end, post_start) >= 0:
        post = ""
    if "unc_pre" in pre or "unc_post" in post:
        return LabelState.UNCERTAIN
    if "neg_pre" in pre or "neg_post" in post:
        return LabelState.NEGATIVE
    return LabelState.UNCERTAIN if _HEDGED_COMPOUND.search(lower, m_start, m_end) else LabelState.POSITIVE


def _elliptical_mentions(lower: str, found: Sequence[_Mention]) -> list[_Mention]:
    """Items that grade the finding of the mention before them without naming it (``_ELLIPTICAL_ITEM``),
    as mentions of its labels: "no effusion on the left, small on the right" states an effusion, read
    by the triggers as any mention is (the degree after the comma, "but" or "and" keeps the negation out).
    A side grades no finding of an organ that has none (lexicon.UNSIDED_LABELS): "no pleural or pericardial
    effusion on the left, small on the right" states a pleural effusion only."""
    ellipses = []
    for item in _ELLIPTICAL_ITEM.finditer(lower):
        before = [m for m in found if m[1] <= item.start()]
        if before:
            last_start = max(m[0] for m in before)
            ellipses.extend((item.start("item"), item.end(), label, None) for start, _, label, _ in before
                            if start == last_start and label not in lexicon.UNSIDED_LABELS)
    return ellipses


#: The short axis from which CT-RATE reads a lymph node as lymphadenopathy.
_ENLARGED_NODE_MM = 10.0
#: A size, maybe in two or three dimensions ("16 x 11 mm", "1,2 cm", "12-mm"), maybe bounded from above.
_SIZE = (r"(?P<below>(?:" + trie_regex(lexicon.SIZE_BELOW) + r")\s*)?"
         r"(?P<size>\d+(?:[.,]\d+)?(?:\s*[x×]\s*\d+(?:[.,]\d+)?)*)[\s-]*(?P<unit>mm|cm)\b")
_DIMENSION_SEPARATOR = re.compile(r"\s*[x×]\s*")
_NODE = "(?:" + trie_regex(lexicon.LYMPH_NODES) + r")\b"
#: A lymph node and its size: the size first ("a 15 mm subcarinal lymph node"), or after it in its clause
#: ("lymph nodes up to 12 mm in short axis", "Lymphknoten bis ca. 15 mm") or after a comma that the largest
#: of them follows ("lymph nodes, the largest 14 mm"); not a size in the long axis.
_NOT_LONG_AXIS = r"(?!\s+(?:in\s+)?(?:the\s+|der\s+)?(?:long|längs))"
_LARGEST = ",\\s*(?=(?:" + trie_regex(lexicon.LARGEST_OF_SEVERAL) + r")\b)"
_SIZED_NODES = (
    re.compile(rf"{_SIZE}{_NOT_LONG_AXIS}\s+(?:[^\W\d]+\s+){{0,2}}{_NODE}"),
    re.compile(rf"\b{_NODE}(?:[^,;:.]|(?<=\bca)\.|{_LARGEST}){{0,60}}?{_SIZE}{_NOT_LONG_AXIS}"),
)
#: A calcification (see lexicon.CALCIFICATION_STEMS) and where its clause begins: the last mark before it.
_CALCIFICATION = re.compile("|".join(lexicon.CALCIFICATION_STEMS))
_CLAUSE_MARK = re.compile(r"[,;:]")
#: The word after a size: the finding it measures when it names one ("lymph node next to a 12 mm nodule").
_NEXT_WORD = re.compile(r"\s*(?:[^\W\d]+\s+)?")


def _sized_node_mentions(lower: str, found: Sequence[_Mention]) -> list[_Mention]:
    """Lymph nodes measured at ``_ENLARGED_NODE_MM`` or more (the smaller of "15 x 8 mm", the short axis)
    as lymphadenopathy mentions, read by the triggers ("no lymph node larger than 10 mm" is negative); a
    smaller one, or one bounded from above (lexicon.SIZE_BELOW), names none. A size that measures another
    finding mentioned in the span or right after it is not the node's, nor is one in a clause that names a
    calcification (a calcified granuloma's), and a node the words already label ("lymph nodes are not
    enlarged, the largest 11 mm") keeps what they say."""
    mentions = []
    for m in chain.from_iterable(pattern.finditer(lower) for pattern in _SIZED_NODES):
        if m["below"]:
            continue
        scale = 10.0 if m["unit"] == "cm" else 1.0
        if min(float(v.replace(",", ".")) for v in _DIMENSION_SEPARATOR.split(m["size"])) * scale < _ENLARGED_NODE_MM:
            continue
        start, end = m.start(), m.end()
        after_size = _NEXT_WORD.match(lower, m.end("unit")).end()
        if any(label == "lymphadenopathy" and f_start < end and f_end > start
               or label != "lymphadenopathy" and start < f_start <= max(end, after_size)
               for f_start, f_end, label, _ in found):
            continue
        clause_start = max((c.end() for c in _CLAUSE_MARK.finditer(lower, 0, start)), default=0)
        if _CALCIFICATION.search(lower, clause_start, end):
            continue
        mentions.append((start, end, "lymphadenopathy", None))
    return mentions


#: An artery named first, its own predicate, then its deposits in the same clause or after a comma, maybe graded,
#: hedged or denied by one word before them: "the aorta is normal in diameter with no calcification", "... with
#: possible calcification", "Aorta normkalibrig, mit deutlichen Wandverkalkungen", "the aorta is ectatic, with
#: atheromatous plaques"; or, after a comma or "and", the artery
#: said calcified, maybe graded or denied: "Aorta normkalibrig, verkalkt", "Aorta ektatisch und nicht verkalkt".
#: The artery's label by its words (lexicon.ARTERIES_NAMED_FIRST).
_ARTERY_OF = {artery: label for label, arteries in lexicon.ARTERIES_NAMED_FIRST.items() for artery in arteries}
_ARTERY_DEPOSITS = re.compile(
    r"\b(?P<artery>" + trie_regex(_ARTERY_OF) + r")\b[^,;:.]{0,60}?(?:(?:,\s*)?\b(?:(?P<without>without|ohne)|with|mit|"
    + "|".join(lexicon.DEPOSIT_VERBS) + r")\s+(?:(?P<no>no|kein\w*)\s+(?:significant\s+|evidence\s+of\s+)?)?"
    r"(?:(?P<word>[^\W\d]+)\s+)?(?:" + trie_regex(lexicon.DEPOSIT_NOUNS) + r")\w*"
    rf"|(?:,\s*|\s+(?:and|und)\s+)(?:(?P<not>not|nicht)\s+)?(?:{_DEGREE}\s+)?(?:calcified|verkalkt)\b)"
)
#: A word before the deposits that hedges them ("with possible calcification", "mit fraglichen Verkalkungen"):
#: a one-word trigger of lexicon.UNCERTAIN_PRE, maybe inflected.
_HEDGE_WORD = re.compile("(?:" + trie_regex(t for t in lexicon.UNCERTAIN_PRE if " " not in t) + r")\w*")
#: What the gate of ``_ARTERY_DEPOSITS`` looks for first: most sentences name no deposit.
_DEPOSIT_STEMS = ("calcif", "plaque", "verkalk", "atherom")


def _artery_deposit_mentions(lower: str, found: Sequence[_Mention]) -> list[_Mention]:
    """Deposits an artery named first has, lacks or may have after a predicate of its own (``_ARTERY_DEPOSITS``),
    as mentions of its label that fix their state: the predicate's triggers are the artery's, not the
    deposits' ("the aorta is not dilated and shows calcified plaques" names them); only a word right before
    the deposits hedges them (``_HEDGE_WORD``). One the words already label keeps what they say."""
    mentions = []
    for m in _ARTERY_DEPOSITS.finditer(lower):
        label = _ARTERY_OF[" ".join(m["artery"].split())]
        if any(f_label == label and f_start < m.end() and f_end > m.start() for f_start, f_end, f_label, _ in found):
            continue
        if m["without"] is not None or m["no"] is not None or m["not"] is not None:
            state = LabelState.NEGATIVE
        elif m["word"] is not None and _HEDGE_WORD.fullmatch(m["word"]) is not None:
            state = LabelState.UNCERTAIN
        else:
            state = LabelState.POSITIVE
        mentions.append((m.start(), m.end(), label, state))
    return mentions


def _analyze_sentence(analyzer: ReportAnalyzer, lang: str, span: Span, lower: str) -> _SentenceAnalysis:
    """The anatomies and label states of one sentence: ``span`` its tokens, ``lower`` its text lowercased.

    Only the sentence's own text is read: label triggers never reach past a sentence end, and
    this is what lets :attr:`ReportAnalyzer.sentence_cache` keep the result by the text.
    """
    anatomies = {analyzer.anatomy_ids[match_id] for match_id, _, _ in analyzer.anatomy_matchers[lang](span)}
    label_matches, trigger_matches, stem_matches = _phrase_matches(analyzer, lower)
    anatomies.update(analyzer.stem_anatomy[m.group(1)] for m in stem_matches)
    labels: dict[str, LabelState] = {}
    found = _label_mentions(analyzer, label_matches)
    if found and any(opener in lower for opener in _ELLIPSIS_OPENERS):
        found.extend(_elliptical_mentions(lower, found))
    if ("mm" in lower or "cm" in lower) and ("node" in lower or "lymph" in lower or "lk" in lower):
        found.extend(_sized_node_mentions(lower, found))
    if any(stem in lower for stem in _DEPOSIT_STEMS) and ("aort" in lower or "oronar" in lower):
        found.extend(_artery_deposit_mentions(lower, found))
    if found:  # triggers only matter in a sentence with a mention
        triggers = [(m.start(), m.end(), analyzer.trigger_kinds[" ".join(m.group(1).split())])
                    for m in trigger_matches]
        statements = [(f_start, f_end) for f_start, f_end, _, fixed in found if fixed is not None]
        if statements:  # a statement's own negation ("heart is not enlarged, coronary sclerosis") is read with it
            triggers = [t for t in triggers if not any(s <= t[0] and t[1] <= e for s, e in statements)]
        starts = [f_start for f_start, _, _, _ in found]
        for m_start, m_end, label, fixed in found:
            state = fixed if fixed is not None else _state(triggers, lower, m_start, m_end, starts)
            previous = labels.get(label)
            if previous is None or _RANK[state] > _RANK[previous]:
                labels[label] = state
            region = _LABEL_REGION.get(label)  # labels added by config have no region: their words do
            if region is not None:
                anatomies.add(region)
    return tuple(sorted(anatomies)), MappingProxyType(labels)


@dataclass(frozen=True, slots=True)
class ReportText:
    """One report to analyze: its text and what :func:`analyze_report` takes besides (see there)."""

    text: str
    language: str | None = None
    header_values: Sequence[str] = ()
    date_shift_days: int | None = None


def _scrubbed(report: ReportText) -> Scrubbed:
    return scrub_text(report.text, find_phi(report.text, header_values=report.header_values),
                      date_shift_days=report.date_shift_days)


def _language(clean: str, given: str | None) -> str:
    """``given`` if the rules read it, else the detected language; raises for one they do not read."""
    lang = given if given in SUPPORTED_LANGUAGES else detect_language(clean)
    if lang not in SUPPORTED_LANGUAGES:
        raise ReportError(f"the report is in {lang!r}, not English or German, the languages the rules read; "
                          "set reports.language (or the export's language column) to read it as one of them",
                          reason=QuarantineReason.UNSUPPORTED_LANGUAGE)
    return lang


@dataclass(frozen=True, slots=True)
class _Split:
    """A scrubbed report cut into sections and sentences: what the sentence analysis reads."""

    language: str
    scrubbed: Scrubbed
    sections: tuple[Section, ...]
    doc: spacy.tokens.Doc
    token_starts: list[int]
    spans: list[tuple[int, int, str]]


def _split(analyzer: ReportAnalyzer, scrubbed: Scrubbed, lang: str) -> _Split:
    """Sections, tokens and sentence spans of a scrubbed report."""
    clean = scrubbed.text
    sections = _sections(analyzer, clean)
    doc = analyzer.nlp[lang].make_doc(clean)
    bounds = doc.to_array([IDX, LENGTH, _READ_IN_SENTENCE])  # in bulk: no Token object per token
    token_starts = bounds[:, 0].tolist()
    read = [*np.flatnonzero(bounds[:, 2]).tolist(), len(doc)]
    tokens = (token_starts, (bounds[:, 0] + bounds[:, 1]).tolist(), read)
    spans = _sentence_spans(clean, tokens, sections, analyzer.no_break_before_period[lang])
    return _Split(lang, scrubbed, sections, doc, token_starts, spans)


def _analyzed(analyzer: ReportAnalyzer, split: _Split) -> AnalyzedReport:
    """The anatomies and labels of each sentence of a split report (cached by sentence text), and the
    report's labels: each label's highest state over the sentences of ``analyzer.label_sections``."""
    clean, lang, doc, token_starts = split.scrubbed.text, split.language, split.doc, split.token_starts
    cache = analyzer.sentence_cache[lang]
    if len(cache) > _SENTENCE_CACHE_SIZE:
        cache.clear()
    report_labels: dict[str, LabelState] = {}
    sentences: list[Sentence] = []
    lower: str | None = None  # the report lowercased, at the first sentence not in the cache
    for k, (s_start, s_end, section) in enumerate(split.spans):
        found = cache.get(key := clean[s_start:s_end])
        if found is None:
            if lower is None:
                lower = lower_same_length(clean)
            first = bisect.bisect_left(token_starts, s_start)
            # Span(), not doc[a:b]: slicing normalizes its bounds in Python first, a third of the cost
            span = Span(doc, first, bisect.bisect_left(token_starts, s_end, first))
            found = _analyze_sentence(analyzer, lang, span, lower[s_start:s_end])
            if len(key) <= _LONGEST_CACHED_SENTENCE:
                cache[key] = found
        anatomies, labels = found
        sentences.append(Sentence(k, section, s_start, s_end, anatomies, labels))
        if section in analyzer.label_sections:
            for label, state in labels.items():
                if label not in report_labels or _RANK[state] > _RANK[report_labels[label]]:
                    report_labels[label] = state
    return AnalyzedReport(lang, split.scrubbed, split.sections, tuple(sentences), MappingProxyType(report_labels))


def analyze_report(
    analyzer: ReportAnalyzer,
    text: str,
    *,
    language: str | None = None,
    header_values: Sequence[str] = (),
    date_shift_days: int | None = None,
) -> AnalyzedReport:
    """Scrub PHI, then find sections, sentences, anatomies and label states of one report
    (:func:`analyze_reports` does the same for many, faster).

    Parameters
    ----------
    analyzer:
        From :func:`build_analyzer` (compiled once per run).
    text:
        The original report text.
    language:
        ``"en"``/``"de"``; ``None`` detects it, and a report in another language raises
        :class:`~ctcorpus.errors.ReportError` (reason ``unsupported_language``).
    header_values:
        Known PHI of this report (DICOM names, MRN, accession number), scrubbed wherever it appears.
    date_shift_days:
        ``None`` removes dates; an int shifts them (per-patient keyed offset).

    Examples
    --------
    >>> report = analyze_report(build_analyzer(), "FINDINGS: No pleural effusion. Small nodule (se 3, im 45).")
    >>> dict(report.labels)["pleural_effusion"].value, dict(report.labels)["lung_nodule"].value
    ('negative', 'positive')
    """
    scrubbed = _scrubbed(ReportText(text, language, header_values, date_shift_days))
    return _analyzed(analyzer, _split(analyzer, scrubbed, _language(scrubbed.text, language)))


#: Reports :func:`analyze_reports` takes through each step together.
_BATCH_SIZE = 64


def analyze_reports(analyzer: ReportAnalyzer, reports: Iterable[ReportText]) -> Iterator[AnalyzedReport | ReportError]:
    """:func:`analyze_report` of each report, in order, with the error of one in a language the rules do
    not read in its place (not raised: the others go on).

    Why not one report after the other: each step (PHI search, language, sentences, their analysis)
    reads large tables of its own (regexes of thousands of phrases, automata, spaCy's vocabulary),
    and one report's steps evict each other's from the CPU caches. Taking a batch of reports through
    one step before the next keeps each step's tables cached: about a fifth faster, same results.
    It reads up to a batch (64 reports) ahead of what it yields; an error other than a report's
    language, a defect, ends it as it would a loop over :func:`analyze_report`.

    >>> [r.language for r in analyze_reports(build_analyzer(), [ReportText("No effusion."), ReportText("Kein Erguss.")])]
    ['en', 'de']
    """
    pending = iter(reports)
    while batch := list(islice(pending, _BATCH_SIZE)):
        scrubbed = [_scrubbed(report) for report in batch]
        languages: list[str | ReportError] = []
        for report, clean in zip(batch, scrubbed, strict=True):
            try:
                languages.append(_language(clean.text, report.language))
            except ReportError as error:
                languages.append(error)
        splits = [lang if isinstance(lang, ReportError) else _split(analyzer, clean, lang)
                  for clean, lang in zip(scrubbed, languages, strict=True)]
        # all of the batch before the caller's work on the first evicts the analysis' tables
        yield from [split if isinstance(split, ReportError) else _analyzed(analyzer, split) for split in splits]
