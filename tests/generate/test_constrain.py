"""Constrained decoding: the automaton agrees with `re`, masks are exact, outputs always validate."""

import json
import random
import re

import jsonschema
import pytest

from llmkit.generate import Engine, SamplingParams
from llmkit.generate.constrain import (ConstraintError, compile_choice, compile_json_schema, compile_regex,
                                       schema_regex)
from llmkit.generate.constrain.automaton import DFA
from llmkit.generate.constrain.regex import compile_nfa
from llmkit.generate.scheduler import Scheduler

PATTERNS = [r"ab?c*", r"(cat|dog)s?", r"\d{2,4}-[a-f]+", r"[^x]y", r"(a|b)*abb", r"\w+@\w+\.(com|org)",
            r"-?(0|[1-9][0-9]*)(\.[0-9]+)?", r'"([^"\\]|\\.)*"', r"x{0,3}y{2,}", r"[A-Z][a-z]{0,3}\s?!"]
ALPHABET = 'abcxy019-.@"\\ !ACZ'


@pytest.mark.parametrize("pattern", PATTERNS)
def test_nfa_and_dfa_agree_with_python_re(pattern):
    nfa = compile_nfa(pattern)
    dfa = DFA(nfa)
    rnd = random.Random(0)
    samples = ["".join(rnd.choice(ALPHABET) for _ in range(rnd.randint(0, 8))) for _ in range(400)]
    samples += ["abcc", "cats", "12-af", "ay", "abb", "me@x.com", "-0.5", '"a\\"b"', "xyy", "Abc !"]
    for s in samples:
        want = re.fullmatch(pattern, s) is not None
        assert nfa.matches(s.encode()) == want, (pattern, s)
        end = dfa.walk(dfa.start, s.encode())
        assert dfa.accepting[end] == want, (pattern, s)


@pytest.mark.parametrize("pattern", ["(ab", "a)", "*a", "a{3,1}", r"(?=a)b", r"(a)\1", "[z-a]", "[]"])
def test_invalid_regex_is_a_typed_error(pattern):
    with pytest.raises(ConstraintError):
        compile_nfa(pattern)


@pytest.mark.parametrize("schema", [
    {"type": "unicorn"}, {"type": "object", "required": ["a"]}, {"type": "integer", "minimum": 3},
    {"$ref": "#/$defs/missing"}, {"$defs": {"n": {"$ref": "#/$defs/n"}}, "$ref": "#/$defs/n"}, {"enum": []}, "{bad",
])
def test_invalid_or_unenforceable_schema_is_refused(schema):
    with pytest.raises(ConstraintError):
        schema_regex(schema)


def test_mask_is_exact_on_smollm2_vocabulary(smollm2):
    tok = smollm2.tokenizer
    g = compile_regex(r"[0-9]{3}", tok, [tok.eos_id])
    mask = g.start().allowed()
    for i in range(tok.vocab_size):
        text = tok.token_bytes(i)
        want = not tok.is_special(i) and re.fullmatch(rb"[0-9]{1,3}", text) is not None
        assert bool(mask[i]) == want, (i, text)
    c = g.start()
    c.advance(tok.encode("12")[0] if len(tok.encode("12")) == 1 else tok.encode("1")[0])
    assert not bool(c.allowed()[tok.eos_id]) or c.done


SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 6},
        "age": {"type": "integer"},
        "score": {"type": "number"},
        "ok": {"type": "boolean"},
        "color": {"enum": ["red", "green", 3, None]},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 3}, "minItems": 1, "maxItems": 3},
        "pet": {"type": "object", "properties": {"kind": {"const": "cat"}, "legs": {"type": ["integer", "null"]}},
                "required": ["kind"]},
        "note": {"anyOf": [{"type": "null"}, {"$ref": "#/$defs/short"}]},
    },
    "required": ["name", "age", "tags"],
    "$defs": {"short": {"type": "string", "pattern": "[a-z]{1,4}"}},
}


def test_random_model_output_always_validates(tiny_model, byte_tok):
    """A random model sampling at temperature 1 still writes schema-valid JSON: the mask decides."""
    engine = Engine(tiny_model, byte_tok)
    sched = Scheduler(engine, max_batch=8)
    g = compile_json_schema(SCHEMA, byte_tok, engine.default_stop_ids, tiny_model.cfg.vocab_size)
    reqs = [sched.submit([1, 2, 3], SamplingParams(max_tokens=120, temperature=1.0, seed=s), constraint=g.start())
            for s in range(8)]
    while not all(r.finished for r in reqs):
        sched.step()
    texts = [r.result()[0] for r in reqs]
    finished = [c.text for c in texts if c.finish_reason == "stop"]
    assert len(finished) >= 6, [c.text for c in texts]
    for text in finished:
        jsonschema.validate(json.loads(text), SCHEMA)


def test_choice_and_regex_with_smollm2(smollm2):
    tok = smollm2.tokenizer
    engine = Engine(smollm2.model, tok)
    sched = Scheduler(engine)
    ids = tok.encode("Q: Is the sky blue? Answer yes or no.\nA:")
    choice = compile_choice(["yes", "no", "maybe"], tok, engine.default_stop_ids)
    date = compile_regex(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", tok, engine.default_stop_ids)
    r1 = sched.submit(ids, SamplingParams(max_tokens=8, temperature=0), constraint=choice.start())
    r2 = sched.submit(tok.encode("The date today is"), SamplingParams(max_tokens=12, temperature=0),
                      constraint=date.start())
    while not (r1.finished and r2.finished):
        sched.step()
    assert r1.result()[0].text in ("yes", "no", "maybe")
    assert re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", r2.result()[0].text)


def test_numbers_have_bounded_digits():
    from llmkit.generate.constrain.schema import schema_regex

    rx = schema_regex({"type": "object", "properties": {"n": {"type": "integer"}, "x": {"type": "number"}},
                       "required": ["n", "x"]})
    assert re.fullmatch(rx, '{"n": 123456789012345, "x": -0.5}')
    assert re.fullmatch(rx, '{"n": -7, "x": 6.02e23}')
    assert not re.fullmatch(rx, '{"n": 1234567890123456, "x": 1}')  # 16 digits: a model looping on 9s must stop
    assert not re.fullmatch(rx, '{"n": 1, "x": 0.1234567890123456}')
    assert not re.fullmatch(rx, '{"n": 1, "x": 1e1234}')


def test_json_object_grammar_takes_four_levels_of_brackets():
    from llmkit.generate.constrain.schema import any_object

    rx = any_object()
    assert re.fullmatch(rx, '{"a": {"b": [{"c": 1}]}, "d": [[1, 2], []]}')
    assert not re.fullmatch(rx, '{"a": {"b": [{"c": [1]}]}}')  # a fifth level: beyond the unrolled depth
    assert not re.fullmatch(rx, '{"a": 1,}')
