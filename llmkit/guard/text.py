"""Undo the Unicode tricks attackers use to slip text past filters: zero-width characters,
fullwidth and other compatibility forms, and Cyrillic/Greek look-alikes of Latin letters.

    >>> normalize("ign\u200bore prevіous")   # a zero-width space and a Cyrillic і
    'ignore previous'
"""

from __future__ import annotations

import re
import unicodedata

# zero-width and invisible format characters (ZWSP, ZWNJ, ZWJ, word joiner, BOM, soft hyphen, tag chars)
_INVISIBLE = re.compile("[\u00ad\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff\U000e0000-\U000e007f]")

# the common confusables that NFKC leaves alone (Cyrillic and Greek letters drawn like Latin ones)
HOMOGLYPHS = str.maketrans({
    "а": "a", "е": "e", "о": "o", "р": "p", "с": "c", "у": "y", "х": "x", "і": "i", "ј": "j", "ѕ": "s",
    "ԁ": "d", "һ": "h", "ӏ": "l", "ո": "n", "А": "A", "В": "B", "Е": "E", "К": "K", "М": "M", "Н": "H",
    "О": "O", "Р": "P", "С": "C", "Т": "T", "Х": "X", "У": "Y", "І": "I", "Ј": "J", "Ѕ": "S",
    "α": "a", "ο": "o", "ν": "v", "ρ": "p", "τ": "t", "ι": "i", "κ": "k", "Α": "A", "Β": "B", "Ε": "E",
    "Ζ": "Z", "Η": "H", "Ι": "I", "Κ": "K", "Μ": "M", "Ν": "N", "Ο": "O", "Ρ": "P", "Τ": "T", "Υ": "Y",
    "Χ": "X",
})


def normalize(text: str) -> str:
    """NFKC, invisible characters removed, look-alike letters mapped to Latin."""
    return _INVISIBLE.sub("", unicodedata.normalize("NFKC", text)).translate(HOMOGLYPHS)


def has_obfuscation(text: str) -> bool:
    """True if the text uses invisible characters or mixes look-alike letters into Latin words."""
    if _INVISIBLE.search(text):
        return True
    return any(re.search(r"[A-Za-z]", w) and w != w.translate(HOMOGLYPHS) for w in text.split())
