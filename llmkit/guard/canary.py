"""Canary tokens: a random word in the system prompt that must never appear in a reply.

If the model quotes its instructions, the canary comes along. Leaks are looked for in forms a
model (or an attacker asking for an encoded answer) produces: verbatim, case-folded, with
separators between characters ("c-a-n-a-r-y", "C A N"), reversed, rot13, base64 / base32 /
hex of the canary, and a long enough fragment of it (a partial quote). Each check is a pure
function of (canary, text).
"""

from __future__ import annotations

import base64
import binascii
import codecs
import re
import secrets
import unicodedata

from llmkit.guard.text import normalize

PREFIX = "cnry"


def new_canary(nbytes: int = 6) -> str:
    """e.g. 'cnry-3f9a1c0b7d2e': a prefix for readability, 12 random hex digits for uniqueness."""
    return f"{PREFIX}-{secrets.token_hex(nbytes)}"


def _squash(s: str) -> str:
    """Lowercase alphanumerics only: 'C-N-R-Y 3f9a' -> 'cnry3f9a'."""
    return re.sub(r"[^0-9a-z]", "", normalize(s).lower())


def _decoded_blobs(text: str) -> list[str]:
    """Decode every base64 / base32 / hex-looking run in the text (what an encoding attack returns)."""
    out = []
    for run in re.findall(r"[A-Za-z0-9+/=_-]{12,}", text):
        urlsafe = b"-_" if "-" in run or "_" in run else None
        for decode in (lambda r: base64.b64decode(r + "=" * (-len(r) % 4), altchars=urlsafe),
                       lambda r: base64.b32decode(r.upper() + "=" * (-len(r) % 8)),
                       bytes.fromhex):
            try:
                out.append(decode(run).decode("utf-8", "ignore"))
            except (binascii.Error, ValueError):
                pass
    return out


def leak_forms(canary: str) -> dict[str, str]:
    """The squashed forms of the canary that count as a leak, by name."""
    core = _squash(canary)
    return {"verbatim": core, "reversed": core[::-1], "rot13": _squash(codecs.encode(canary, "rot13"))}


def canary_leaked(canary: str, text: str, min_fragment: int = 8) -> str | None:
    """How the canary leaked into ``text`` ('verbatim', 'reversed', 'rot13', 'base64', 'fragment'), or None.

    A fragment is ``min_fragment`` consecutive characters of the random part: 8 hex digits match
    by chance with probability about len(text) / 16**8.
    """
    squashed = _squash(text)
    for name, form in leak_forms(canary).items():
        if form in squashed:
            return name
    for blob in _decoded_blobs(unicodedata.normalize("NFKC", text)):
        if _squash(canary) in _squash(blob):
            return "base64"
    rand = _squash(canary.split("-", 1)[-1])
    if len(rand) >= min_fragment:
        frags = {rand[i:i + min_fragment] for i in range(len(rand) - min_fragment + 1)}
        if any(f in squashed or f[::-1] in squashed for f in frags):
            return "fragment"
    return None


def quotes_prompt(prompt: str, text: str, n_words: int = 12) -> bool:
    """True when ``text`` repeats ``n_words`` consecutive words of ``prompt`` (a verbatim leak without the canary)."""
    words = re.findall(r"\w+", normalize(prompt).lower())
    if len(words) < n_words:
        return False
    have = " ".join(re.findall(r"\w+", normalize(text).lower()))
    return any(" ".join(words[i:i + n_words]) in have for i in range(len(words) - n_words + 1))
