"""A regex subset -> a byte-level NFA (Thompson construction).

Tokens are byte strings, so the automaton reads UTF-8 bytes, not characters:
a literal 'é' is the two bytes C3 A9, and a negated class like [^"] accepts any
ASCII byte but '"' plus any multi-byte UTF-8 character.

Supported: literals, escapes (\\d \\w \\s \\D \\W \\S \\n \\t \\xHH \\uHHHH, escaped
metacharacters), '.', classes [a-z_] and [^...], groups (...), (?:...), (?P<n>...),
alternation |, quantifiers * + ? {n} {n,} {n,m} (lazy '?' suffix accepted). The
match is always a full match, so ^ and $ at the ends are accepted and ignored.
Anything else (backreferences, lookaround) is an error: it is not regular.

    >>> nfa = compile_nfa("ab?")
    >>> nfa.matches(b"a"), nfa.matches(b"ab"), nfa.matches(b"abb")
    (True, True, False)
"""

from __future__ import annotations

from dataclasses import dataclass, field

from llmkit.core.errors import LLMKitError

MAX_REPEAT = 1000


class ConstraintError(LLMKitError):
    """A regex, JSON schema or choice list that cannot be compiled (HTTP 400)."""


ASCII = frozenset(range(128))
DIGITS = frozenset(b"0123456789")
WORD = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
SPACE = frozenset(b" \t\n\r\f\v")

# Node kinds of the parsed tree: ("set", bytes) one byte; ("seq", [..]); ("alt", [..]);
# ("rep", node, lo, hi|None); ("nonascii",) any multi-byte UTF-8 character.
Node = tuple


def _rng(lo: int, hi: int) -> Node:
    return ("set", frozenset(range(lo, hi + 1)))


def _non_ascii() -> Node:
    """Any multi-byte UTF-8 character, exactly the well-formed sequences (RFC 3629 table):
    no overlong forms, no surrogates, nothing past U+10FFFF — so a length in bytes
    decodes to the same length in characters."""
    c = _rng(0x80, 0xBF)
    forms = [[_rng(0xC2, 0xDF), c],
             [_rng(0xE0, 0xE0), _rng(0xA0, 0xBF), c], [_rng(0xE1, 0xEC), c, c],
             [_rng(0xED, 0xED), _rng(0x80, 0x9F), c], [_rng(0xEE, 0xEF), c, c],
             [_rng(0xF0, 0xF0), _rng(0x90, 0xBF), c, c], [_rng(0xF1, 0xF3), c, c, c],
             [_rng(0xF4, 0xF4), _rng(0x80, 0x8F), c, c]]
    return ("alt", [("seq", f) for f in forms])


def _literal(ch: str) -> Node:
    data = ch.encode("utf-8")
    return ("set", frozenset(data)) if len(data) == 1 else ("seq", [("set", frozenset([b])) for b in data])


def _charset(ascii_bytes: frozenset[int], extra_chars: list[str], negated: bool) -> Node:
    if negated:
        if extra_chars:
            raise ConstraintError("negated classes with non-ASCII characters are not supported",
                                  "list ASCII characters only inside [^...]")
        return ("alt", [("set", ASCII - ascii_bytes), _non_ascii()])
    parts: list[Node] = [("set", ascii_bytes)] if ascii_bytes else []
    parts += [_literal(c) for c in extra_chars]
    if not parts:
        raise ConstraintError("empty character class", "put at least one character inside [...]")
    return parts[0] if len(parts) == 1 else ("alt", parts)


class _Parser:
    def __init__(self, pattern: str):
        self.p = pattern
        self.i = 0

    def error(self, what: str) -> ConstraintError:
        return ConstraintError(f"invalid regex {self.p!r} at position {self.i}: {what}",
                               "use a regular subset: literals, classes, groups, |, * + ? {m,n}")

    def peek(self) -> str | None:
        return self.p[self.i] if self.i < len(self.p) else None

    def take(self) -> str:
        ch = self.p[self.i]
        self.i += 1
        return ch

    def parse(self) -> Node:
        if self.p.startswith("^"):
            self.i = 1
        node = self.alternation()
        if self.peek() == "$" and self.i == len(self.p) - 1:
            self.i += 1
        if self.i != len(self.p):
            raise self.error(f"unexpected {self.peek()!r}")
        return node

    def alternation(self) -> Node:
        options = [self.sequence()]
        while self.peek() == "|":
            self.take()
            options.append(self.sequence())
        return options[0] if len(options) == 1 else ("alt", options)

    def sequence(self) -> Node:
        items: list[Node] = []
        while self.peek() is not None and self.peek() not in "|)":
            if self.peek() == "$" and self.i == len(self.p) - 1:
                break
            items.append(self.quantified(self.atom()))
        return ("seq", items)

    def quantified(self, node: Node) -> Node:
        while True:
            ch = self.peek()
            if ch in ("*", "+", "?"):
                self.take()
                lo, hi = {"*": (0, None), "+": (1, None), "?": (0, 1)}[ch]
            elif ch == "{" and self._looks_like_count():
                lo, hi = self.count()
            else:
                return node
            if self.peek() == "?":  # lazy: same language
                self.take()
            node = ("rep", node, lo, hi)

    def _looks_like_count(self) -> bool:
        j = self.p.find("}", self.i)
        body = self.p[self.i + 1:j] if j > 0 else ""
        return bool(body) and all(c.isdigit() or c == "," for c in body) and body[0].isdigit()

    def count(self) -> tuple[int, int | None]:
        j = self.p.index("}", self.i)
        body = self.p[self.i + 1:j]
        self.i = j + 1
        lo_s, _, hi_s = body.partition(",")
        lo = int(lo_s)
        hi = lo if "," not in body else (int(hi_s) if hi_s else None)
        if hi is not None and hi < lo or lo > MAX_REPEAT or (hi or 0) > MAX_REPEAT:
            raise self.error(f"bad repeat count {{{body}}}")
        return lo, hi

    def atom(self) -> Node:
        ch = self.take()
        if ch == "(":
            if self.p.startswith("?:", self.i):
                self.i += 2
            elif self.p.startswith("?P<", self.i):
                self.i = self.p.index(">", self.i) + 1
            elif self.peek() == "?":
                raise self.error("lookaround and inline flags are not supported")
            node = self.alternation()
            if self.peek() != ")":
                raise self.error("missing )")
            self.take()
            return node
        if ch == "[":
            return self.char_class()
        if ch == ".":
            return ("alt", [("set", ASCII - {10}), _non_ascii()])
        if ch == "\\":
            return self.escape(in_class=False)
        if ch in "*+?{" and ch != "{":
            raise self.error(f"nothing to repeat before {ch!r}")
        if ch == ")":
            raise self.error("unbalanced )")
        return _literal(ch)

    def escape(self, in_class: bool):
        if self.peek() is None:
            raise self.error("trailing backslash")
        ch = self.take()
        classes = {"d": DIGITS, "w": WORD, "s": SPACE}
        if ch in classes:
            return ("set", classes[ch]) if not in_class else classes[ch]
        if ch in "DWS":
            if in_class:
                raise self.error(f"\\{ch} inside a class is not supported")
            return _charset(classes[ch.lower()], [], negated=True)
        simple = {"n": "\n", "t": "\t", "r": "\r", "f": "\f", "v": "\v", "0": "\0"}
        if ch in simple:
            lit = simple[ch]
        elif ch in "xu":
            n = 2 if ch == "x" else 4
            digits = self.p[self.i:self.i + n]
            if len(digits) != n or any(c not in "0123456789abcdefABCDEF" for c in digits):
                raise self.error(f"bad \\{ch} escape")
            self.i += n
            lit = chr(int(digits, 16))
        elif ch.isalnum():
            raise self.error(f"unsupported escape \\{ch} (backreferences and anchors are not regular)")
        else:
            lit = ch
        return lit if in_class else _literal(lit)

    def char_class(self) -> Node:
        negated = self.peek() == "^"
        if negated:
            self.take()
        ascii_bytes: set[int] = set()
        extra: list[str] = []
        first = True
        while True:
            if self.peek() is None:
                raise self.error("missing ]")
            if self.peek() == "]" and not first:
                self.take()
                break
            first = False
            ch = self.take()
            item = self.escape(in_class=True) if ch == "\\" else ch
            if isinstance(item, frozenset):
                ascii_bytes |= item
                continue
            if self.peek() == "-" and self.p[self.i + 1:self.i + 2] not in ("]", ""):
                self.take()
                end = self.take()
                end = self.escape(in_class=True) if end == "\\" else end
                if isinstance(end, frozenset) or ord(end) < ord(item):
                    raise self.error(f"bad range {item}-{end}")
                chars = [chr(c) for c in range(ord(item), ord(end) + 1)]
                if len(chars) > 256 and ord(end) >= 128:
                    raise self.error("non-ASCII ranges wider than 256 characters are not supported")
            else:
                chars = [item]
            for c in chars:
                if ord(c) < 128:
                    ascii_bytes.add(ord(c))
                else:
                    extra.append(c)
        return _charset(frozenset(ascii_bytes), extra, negated)


@dataclass
class NFA:
    """States 0..n-1; edges[s] = [(byteset or None for epsilon, target)]; one start, one accept."""

    edges: list[list[tuple[frozenset[int] | None, int]]] = field(default_factory=list)
    start: int = 0
    accept: int = 0

    def new(self) -> int:
        self.edges.append([])
        return len(self.edges) - 1

    def closure(self, states) -> frozenset[int]:
        seen, stack = set(states), list(states)
        while stack:
            for label, t in self.edges[stack.pop()]:
                if label is None and t not in seen:
                    seen.add(t)
                    stack.append(t)
        return frozenset(seen)

    def step(self, states: frozenset[int], byte: int) -> frozenset[int]:
        return self.closure({t for s in states for label, t in self.edges[s] if label is not None and byte in label})

    def matches(self, data: bytes) -> bool:
        """The slow, obvious matcher: kept as the oracle for the DFA."""
        cur = self.closure({self.start})
        for b in data:
            cur = self.step(cur, b)
        return self.accept in cur


def _build(nfa: NFA, node: Node) -> tuple[int, int]:
    """Thompson fragment for node: (entry, exit)."""
    kind = node[0]
    if kind == "set":
        a, b = nfa.new(), nfa.new()
        nfa.edges[a].append((node[1], b))
        return a, b
    if kind == "nonascii":
        return _build(nfa, _non_ascii())
    if kind == "seq":
        a = b = nfa.new()
        for item in node[1]:
            x, y = _build(nfa, item)
            nfa.edges[b].append((None, x))
            b = y
        return a, b
    if kind == "alt":
        a, b = nfa.new(), nfa.new()
        for item in node[1]:
            x, y = _build(nfa, item)
            nfa.edges[a].append((None, x))
            nfa.edges[y].append((None, b))
        return a, b
    assert kind == "rep"
    _, inner, lo, hi = node
    a = b = nfa.new()
    for _ in range(lo):  # the mandatory copies
        x, y = _build(nfa, inner)
        nfa.edges[b].append((None, x))
        b = y
    if hi is None:  # then a loop
        x, y = _build(nfa, inner)
        nfa.edges[b].append((None, x))
        nfa.edges[y].append((None, x))
        end = nfa.new()
        nfa.edges[b].append((None, end))
        nfa.edges[y].append((None, end))
        return a, end
    end = nfa.new()
    nfa.edges[b].append((None, end))
    for _ in range(hi - lo):  # optional copies, each may stop early
        x, y = _build(nfa, inner)
        nfa.edges[b].append((None, x))
        nfa.edges[y].append((None, end))
        b = y
    return a, end


def compile_nfa(pattern: str) -> NFA:
    if not isinstance(pattern, str):
        raise ConstraintError(f"regex must be a string, got {type(pattern).__name__}", "pass the pattern as text")
    tree = _Parser(pattern).parse()
    nfa = NFA()
    nfa.start, nfa.accept = _build(nfa, tree)
    return nfa
