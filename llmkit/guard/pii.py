"""PII and secret redaction: emails, phone numbers, payment cards, IBANs, API keys and tokens.

Regexes find candidates; checksums decide. A 16-digit order number is not a card unless it
passes Luhn, an IBAN-shaped string is not an IBAN unless mod-97 gives 1, and a long random
token counts as a secret only when its character entropy is high. That keeps near-misses
(invoice numbers, ISBNs, version strings, git-style words) readable.

    >>> redact("mail bob@example.com, card 4111 1111 1111 1111")
    'mail [EMAIL], card [CARD]'
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Iterable

KINDS = ("email", "card", "iban", "phone", "aws_key", "github_token", "openai_key", "jwt", "secret")


def luhn_ok(digits: str) -> bool:
    """Luhn checksum over a digit string: double every second digit from the right."""
    if not digits.isdigit() or len(digits) < 2:
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


# ISO 13616 lengths per country (a well-formed IBAN of the wrong length is a typo, not an IBAN)
IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AT": 20, "BE": 16, "BG": 22, "CH": 21, "CY": 28, "CZ": 24, "DE": 22, "DK": 18,
    "EE": 20, "ES": 24, "FI": 18, "FR": 27, "GB": 22, "GR": 27, "HR": 21, "HU": 28, "IE": 22, "IS": 26,
    "IT": 27, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MT": 31, "NL": 18, "NO": 15, "PL": 28,
    "PT": 25, "RO": 24, "SA": 24, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "TR": 26, "UA": 29,
}


def iban_ok(iban: str) -> bool:
    """ISO 7064 mod-97-10: move the first four characters to the end, letters -> 10..35, mod 97 == 1."""
    s = re.sub(r"[\s-]", "", iban).upper()
    if not re.fullmatch(r"[A-Z]{2}\d{2}[A-Z0-9]{10,30}", s):
        return False
    if IBAN_LENGTHS.get(s[:2], len(s)) != len(s):
        return False
    n = int("".join(str(int(c, 36)) for c in s[4:] + s[:4]))
    return n % 97 == 1


def shannon_entropy(s: str) -> float:
    """Bits per character of the string's own character distribution."""
    if not s:
        return 0.0
    counts = Counter(s)
    return -sum(c / len(s) * math.log2(c / len(s)) for c in counts.values())


def looks_random(token: str, min_len: int = 24, min_bits: float = 3.5) -> bool:
    """A high-entropy token mixing letter cases or letters and digits (a word or a hex digest is not)."""
    if len(token) < min_len or shannon_entropy(token) < min_bits:
        return False
    if re.fullmatch(r"[0-9a-f]+", token):  # lowercase hex: commit and content hashes fill logs, keep them
        return False
    classes = sum(bool(re.search(p, token)) for p in (r"[a-z]", r"[A-Z]", r"\d"))
    return classes >= 2 and bool(re.search(r"\d", token))


@dataclass(frozen=True)
class Finding:
    kind: str
    start: int
    end: int
    text: str


def _card(m: re.Match) -> bool:
    digits = re.sub(r"\D", "", m.group(0))
    return 13 <= len(digits) <= 19 and luhn_ok(digits)


def _phone(m: re.Match) -> bool:
    s = m.group(0)
    digits = re.sub(r"\D", "", s)
    if not 8 <= len(digits) <= 15:
        return False
    if re.fullmatch(r"\d{4}[-./]\d{1,2}[-./]\d{1,2}|\d{1,2}[-./]\d{1,2}[-./]\d{4}|\d{1,3}(\.\d{1,3}){3}", s.strip()):
        return False  # a date or an IPv4 address
    # a bare run of digits is an id, not a phone: a phone number shows its structure (+, (), separators)
    return s.lstrip().startswith("+") or "(" in s or len(re.findall(r"[\s.-]", s.strip())) >= 2


_JWT_PART = r"[A-Za-z0-9_-]{8,}"
# (kind, pattern, validator) in priority order: an earlier kind wins an overlap. A candidate of a
# CLAIMING kind that fails its checksum still owns its span: a mistyped IBAN is not a phone number.
CLAIMING = {"iban", "card"}
PATTERNS: list[tuple[str, re.Pattern, Callable[[re.Match], bool] | None]] = [
    ("jwt", re.compile(rf"\beyJ{_JWT_PART}\.eyJ{_JWT_PART}\.[A-Za-z0-9_-]{{8,}}"), None),
    ("aws_key", re.compile(r"\b(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}\b"), None),
    ("github_token", re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{60,255})\b"), None),
    ("openai_key", re.compile(r"\bsk-(?:proj-|svcacct-|ant-)?[A-Za-z0-9_-]{20,}\b"),
     lambda m: looks_random(m.group(0)[3:], min_len=20, min_bits=3.0)),
    ("email", re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b"), None),
    ("iban", re.compile(r"\b[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]{4}){2,7}(?:[ ]?[A-Z0-9]{1,3})?\b"),
     lambda m: iban_ok(m.group(0))),
    ("card", re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])"), _card),
    ("phone", re.compile(r"(?<![\w+])(?:\+\d{1,3}[\s.-]?)?(?:\(\d{1,4}\)[\s.-]?)?\d{2,4}(?:[\s.-]\d{2,4}){1,4}(?!\w)"),
     _phone),
    ("secret", re.compile(r"(?<![A-Za-z0-9_/+=-])[A-Za-z0-9_+/=-]{24,}(?![A-Za-z0-9_/+=-])"),
     lambda m: looks_random(m.group(0)) and m.group(0).count("/") <= 1),  # a/b/c is a path, not a key
]


def find_pii(text: str, kinds: Iterable[str] = KINDS) -> list[Finding]:
    """Non-overlapping findings, in text order; on overlap the kind listed first in PATTERNS wins."""
    wanted, taken, out = set(kinds), [], []
    for kind, pattern, valid in PATTERNS:
        if kind not in wanted:
            continue
        for m in pattern.finditer(text):
            start, end = m.start(), m.end()
            while start < end and text[start].isspace():
                start += 1
            if any(s < end and start < e for s, e in taken):
                continue
            ok = valid is None or valid(m)
            if ok or kind in CLAIMING:
                taken.append((start, end))
            if ok:
                out.append(Finding(kind, start, end, text[start:end]))
    return sorted(out, key=lambda f: f.start)


def redact(text: str, kinds: Iterable[str] = KINDS, placeholder: str = "[{KIND}]") -> str:
    """Replace each finding with its placeholder, e.g. [EMAIL] or [CARD]."""
    findings = find_pii(text, kinds)
    for f in reversed(findings):
        text = text[:f.start] + placeholder.format(KIND=f.kind.upper(), kind=f.kind) + text[f.end:]
    return text
