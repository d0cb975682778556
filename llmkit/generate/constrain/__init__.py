"""Constrained decoding: a regex, a JSON schema or a choice list as a per-token mask.

    auto = compile_json_schema(schema, tokenizer, eos_ids)     # cached per (kind, source, vocabulary)
    c = auto.start()                                           # one per request
    logits[~c.allowed()] = -inf; tok = sample(logits); c.advance(tok)

The scheduler applies `allowed()` before sampling, so the text always matches:
JSON parses and validates, a regex fully matches, a choice is one of the list.
Pipeline: pattern -> byte NFA (regex.py) -> lazy DFA -> token masks over the
whole vocabulary (automaton.py); JSON schemas become a regex first (schema.py).
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from llmkit.generate.constrain.automaton import DFA, TokenAutomaton, TokenConstraint, VocabIndex
from llmkit.generate.constrain.regex import ConstraintError, compile_nfa
from llmkit.generate.constrain.schema import any_object, choice_regex, schema_regex

__all__ = ["ConstraintError", "Grammar", "TokenConstraint", "compile_choice", "compile_json_object",
           "compile_json_schema", "compile_regex", "schema_regex"]

_CACHE_SIZE = 64
_lock = threading.Lock()
_vocabs: dict[tuple, tuple[object, VocabIndex]] = {}
_grammars: OrderedDict[tuple, "Grammar"] = OrderedDict()


class Grammar:
    """A compiled constraint for one vocabulary; `start()` gives a fresh per-request cursor."""

    def __init__(self, regex: str, automaton: TokenAutomaton):
        self.regex = regex
        self.automaton = automaton

    def start(self) -> TokenConstraint:
        return TokenConstraint(self.automaton)


def _vocab(tokenizer, vocab_size: int, eos_ids) -> VocabIndex:
    key = (id(tokenizer), vocab_size, tuple(sorted(eos_ids)))
    hit = _vocabs.get(key)
    if hit is None or hit[0] is not tokenizer:
        hit = _vocabs[key] = (tokenizer, VocabIndex(tokenizer, vocab_size, eos_ids))
    return hit[1]


def compile_regex(pattern: str, tokenizer, eos_ids, vocab_size: int | None = None) -> Grammar:
    vocab_size = vocab_size or tokenizer.vocab_size
    key = (pattern, id(tokenizer), vocab_size, tuple(sorted(eos_ids)))
    with _lock:
        g = _grammars.get(key)
        if g is not None:
            _grammars.move_to_end(key)
            return g
        g = Grammar(pattern, TokenAutomaton(DFA(compile_nfa(pattern)), _vocab(tokenizer, vocab_size, eos_ids)))
        _grammars[key] = g
        if len(_grammars) > _CACHE_SIZE:
            _grammars.popitem(last=False)
        return g


def compile_json_schema(schema, tokenizer, eos_ids, vocab_size: int | None = None) -> Grammar:
    return compile_regex(schema_regex(schema), tokenizer, eos_ids, vocab_size)


def compile_json_object(tokenizer, eos_ids, vocab_size: int | None = None) -> Grammar:
    """Any JSON object (OpenAI's response_format json_object), nesting bounded by schema.ANY_DEPTH."""
    return compile_regex(any_object(), tokenizer, eos_ids, vocab_size)


def compile_choice(choices, tokenizer, eos_ids, vocab_size: int | None = None) -> Grammar:
    return compile_regex(choice_regex(choices), tokenizer, eos_ids, vocab_size)
