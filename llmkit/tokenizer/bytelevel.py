"""GPT-2's byte <-> printable-character map.

Byte-level BPE works on raw UTF-8 bytes, but vocab files (HF ``vocab.json``,
GGUF ``tokenizer.ggml.tokens``) store tokens as text. GPT-2 made every byte
printable by mapping the 188 "nice" bytes to themselves and shifting the other
68 (control chars, space, ...) up to U+0100.. — which is why a leading space
is spelled ``Ġ`` (U+0120) and a newline ``Ċ``::

    >>> token_to_bytes("Ġthe")
    b' the'
    >>> bytes_to_token(b"\\n")
    'Ċ'
"""

from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=1)
def byte_to_char() -> tuple[str, ...]:
    """Index by byte value -> its printable stand-in character."""
    nice = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = [""] * 256
    for b in nice:
        table[b] = chr(b)
    shift = 0
    for b in range(256):
        if not table[b]:  # not printable on its own: park it past Latin-1, in byte order
            table[b] = chr(256 + shift)
            shift += 1
    return tuple(table)


@lru_cache(maxsize=1)
def char_to_byte() -> dict[str, int]:
    return {c: b for b, c in enumerate(byte_to_char())}


def bytes_to_token(data: bytes) -> str:
    """Raw bytes -> the spelling a byte-level vocab stores."""
    table = byte_to_char()
    return "".join(table[b] for b in data)


def token_to_bytes(token: str) -> bytes | None:
    """A vocab spelling -> raw bytes; None if it uses characters outside the byte alphabet.

    Such tokens exist (added tokens written as plain text, e.g. ``<think>`` stored
    unescaped in some GGUFs); callers decide what they mean.
    """
    table = char_to_byte()
    try:
        return bytes(table[c] for c in token)
    except KeyError:
        return None
