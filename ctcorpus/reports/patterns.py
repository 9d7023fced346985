"""Regex building blocks shared by the PHI and NLP rules."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence

__all__ = ["MONTH_NAMES", "lower_same_length", "matches_at", "trie_regex", "with_ss"]

#: Month names by month, English first, then German (Austrian "Jänner", "Feber"): what the export
#: dates and the PHI rules read. A date may abbreviate one to its first three letters or more ("Sep",
#: "Sept", "Mär", "Dez"); "Mrz" is German's other abbreviation of März, "Maerz" its spelling without umlauts.
MONTH_NAMES: tuple[tuple[str, ...], ...] = (
    ("january", "januar", "jänner", "jaenner"), ("february", "februar", "feber"), ("march", "märz", "maerz", "mrz"),
    ("april",), ("may", "mai"), ("june", "juni"), ("july", "juli"), ("august",), ("september",),
    ("october", "oktober"), ("november",), ("december", "dezember"),
)

#: An "ss" that ends a syllable (no vowel follows): the pre-1996 spelling wrote "ß" there.
_FINAL_SS = re.compile("ss(?![aeiouyäöü])")


def lower_same_length(text: str) -> str:
    """``text.lower()`` with every offset kept ("İ" lowercases to two characters; here to one),
    so matches found in the lowercased text index the original.

    >>> len(lower_same_length("İst")) == 3
    True
    """
    lower = text.lower()
    return lower if len(lower) == len(text) else "".join(c.lower()[0] for c in text)


def with_ss(terms: Iterable[str]) -> list[str]:
    """Terms plus their other spelling of "ß"/"ss": upper case and Swiss German write "ss" for
    "ß" ("GRÖSSE" lowercases to "grösse"), the spelling before 1996 (still in older reports)
    "ß" for an "ss" that ends a syllable ("Erguß" for "Erguss", but "Ergüsse").

    >>> with_ss(["größe", "herz", "pleuraerguss", "ergüsse"])
    ['größe', 'herz', 'pleuraerguss', 'ergüsse', 'grösse', 'pleuraerguß']
    """
    terms = list(dict.fromkeys(terms))
    variants = [t.replace("ß", "ss") if "ß" in t else _FINAL_SS.sub("ß", t) for t in terms]
    return list(dict.fromkeys(terms + [v for v in variants if v not in terms]))


def trie_regex(terms: Iterable[str]) -> str:
    """One regex for many literal phrases, factored as a trie.

    Python's engine tries alternatives one by one at every position; a trie makes it test one
    branch per first character instead of every phrase, which is what keeps label, trigger and
    date matching fast. Longer phrases win (greedy); a space matches any run of whitespace.

    >>> re.fullmatch(trie_regex(["no", "not", "no evidence of"]), "no  evidence of") is not None
    True
    """
    trie: dict[str, dict] = {}
    for term in with_ss(terms):
        node = trie
        for char in term:
            node = node.setdefault(char, {})
        node[""] = {}

    def emit(node: dict[str, dict]) -> str:
        ends = "" in node
        branches = [(r"\s+" if c == " " else re.escape(c)) + emit(child) for c, child in sorted(node.items()) if c]
        if not branches:
            return ""
        body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
        return f"(?:{body})?" if ends else body

    return emit(trie)


def matches_at(pattern: re.Pattern[str], text: str, starts: Sequence[int]) -> Iterator[re.Match[str]]:
    """``pattern.finditer(text)`` for a pattern that can only start at one of ``starts`` (sorted,
    distinct): where the starts are few (a rule's needles, a trigger's first words), matching only
    there spares the engine's attempt at every position.

    >>> [m.group() for m in matches_at(re.compile(r"no\\w*"), "no nodule, none", [0, 3, 11])]
    ['no', 'nodule', 'none']
    """
    end = 0
    for start in starts:
        if start >= end and (m := pattern.match(text, start)) is not None:
            yield m
            end = max(m.end(), start + 1)
