"""Speculative decoding gives exactly the target's greedy tokens, whatever the guesses."""

import pytest
import torch

from llmkit.generate import Engine, SamplingParams
from llmkit.generate.speculative import layer_skip_draft, ngram_proposal, speculative_greedy
from llmkit.model import Transformer

PROMPTS = [[5, 17, 99, 3, 5, 17, 99], [200, 1], list(range(40, 60)) * 2, [42]]


def plain(model, tok, prompt, n, stops=()):
    eng = Engine(model, tok, default_stop_ids=list(stops))
    return eng.generate([prompt], SamplingParams(max_tokens=n, temperature=0))[0].token_ids


def test_ngram_proposal_known_values():
    assert ngram_proposal([1, 2, 3, 9, 1, 2], k=2) == [3, 9]
    assert ngram_proposal([1, 2, 3, 1, 2, 4, 1, 2], k=3) == [4, 1, 2]  # the latest occurrence wins
    assert ngram_proposal([7, 8, 9], k=3) == []
    assert ngram_proposal([1, 5, 1], k=4) == [5, 1]


@pytest.mark.parametrize("prompt", PROMPTS)
def test_prompt_lookup_equals_plain_greedy(tiny_model, byte_tok, prompt):
    res = speculative_greedy(tiny_model, prompt, 30, k=4)
    assert res.token_ids == plain(tiny_model, byte_tok, prompt, 30)
    assert res.rounds <= 30


def test_draft_models_equal_plain_greedy(tiny_model, byte_tok):
    other = Transformer(tiny_model.cfg).init_weights(seed=7).eval()
    skip = layer_skip_draft(tiny_model, 1)
    for prompt in PROMPTS[:2]:
        want = plain(tiny_model, byte_tok, prompt, 15)
        same = speculative_greedy(tiny_model, prompt, 15, draft=tiny_model, k=3)
        assert same.token_ids == want and same.acceptance > 0.9  # a perfect draft is (almost) always right
        assert speculative_greedy(tiny_model, prompt, 15, draft=other, k=3).token_ids == want
        assert speculative_greedy(tiny_model, prompt, 15, draft=skip, k=2).token_ids == want


def test_stops_inside_accepted_guesses(tiny_model, byte_tok):
    free = plain(tiny_model, byte_tok, PROMPTS[2], 30)
    stop = free[7]
    res = speculative_greedy(tiny_model, PROMPTS[2], 30, stop_ids=[stop], draft=tiny_model, k=4)
    assert res.finish_reason == "stop" and res.token_ids == free[:free.index(stop)]


def test_layer_skip_draft_shares_weights(tiny_model):
    d = layer_skip_draft(tiny_model, 1)
    assert d.cfg.n_layer == 1 and d.blocks[0] is tiny_model.blocks[0] and d.lm_head is tiny_model.lm_head
    with torch.no_grad():
        assert d(torch.tensor([[1, 2, 3]])).shape == (1, 3, tiny_model.cfg.vocab_size)


@pytest.mark.slow
def test_smollm2_prompt_lookup_equals_plain(smollm2):
    tok = smollm2.tokenizer
    text = "def add(a, b):\n    return a + b\n\n\ndef add_three(a, b, c):\n    return"
    ids = tok.encode(text)
    eng = Engine(smollm2.model, tok)
    want = eng.generate([ids], SamplingParams(max_tokens=24, temperature=0))[0].token_ids
    res = speculative_greedy(smollm2.model, ids, 24, stop_ids=sorted(eng.default_stop_ids))
    assert res.token_ids == want and res.rounds < len(want)  # some guesses landed
