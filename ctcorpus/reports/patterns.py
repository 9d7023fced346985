"""Regex building blocks shared by the PHI and NLP rules."""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["lower_same_length", "trie_regex", "with_ss"]


def lower_same_length(text: str) -> str:
    """``text.lower()`` with every offset kept ("İ" lowercases to two characters; here to one),
    so matches found in the lowercased text index the original.

    >>> len(lower_same_length("İst")) == 3
    True
    """
    lower = text.lower()
    return lower if len(lower) == len(text) else "".join(c.lower()[0] for c in text)


def with_ss(terms: Iterable[str]) -> list[str]:
    """Terms plus their "ss" spelling: upper-case German ("GRÖSSE") lowercases to "grösse".

    >>> with_ss(["größe", "herz"])
    ['größe', 'herz', 'grösse']
    """
    terms = list(terms)
    return terms + [t.replace("ß", "ss") for t in terms if "ß" in t]


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
