"""The real packaged SmolLM2 GGUF, loaded by us and by transformers (`gguf_file=`)."""

import pytest
import torch

from llmkit.generate import Engine, SamplingParams
from llmkit.generate.api import prompt_ids
from llmkit.model import KVCache

pytestmark = pytest.mark.slow

QUESTIONS = ["What is the capital of France?", "Write a Python function that adds two numbers.",
             "Tell me a fun fact about octopuses 🐙.", "Quelle est la couleur du ciel ?"]


def test_logits_match_transformers(smollm2, hf_smollm2):
    ids = torch.tensor([prompt_ids(smollm2, QUESTIONS[0], chat=True)])
    with torch.no_grad():
        ours, ref = smollm2.model(ids), hf_smollm2(ids).logits
    torch.testing.assert_close(ours, ref, atol=2e-3, rtol=1e-4)


def hf_greedy(model, ids, n):
    """transformers' own KV-cached forward, greedy, running past end-of-turn like ignore_eos."""
    out = []
    with torch.no_grad():
        res = model(torch.tensor([ids]), use_cache=True)
        for _ in range(n):
            tok = res.logits[0, -1].argmax().view(1, 1)
            out.append(int(tok))
            res = model(tok, past_key_values=res.past_key_values, use_cache=True)
    return out


def test_first_32_greedy_tokens_identical(smollm2, hf_smollm2):
    """Both sides run past end-of-turn, so all 32 tokens count."""
    engine = Engine(smollm2.model, smollm2.tokenizer)
    for q in QUESTIONS:
        ids = prompt_ids(smollm2, q, chat=True)
        ours = engine.generate([ids], SamplingParams(max_tokens=32, temperature=0, ignore_eos=True))[0].token_ids
        assert ours == hf_greedy(hf_smollm2, ids, 32), q


def test_cached_equals_uncached(smollm2):
    model = smollm2.model
    ids = prompt_ids(smollm2, QUESTIONS[1], chat=True)
    toks_cached = Engine(model, smollm2.tokenizer).generate(
        [ids], SamplingParams(max_tokens=24, temperature=0, ignore_eos=True))[0].token_ids
    seq = list(ids)
    with torch.no_grad():
        for _ in range(24):
            seq.append(int(model(torch.tensor([seq]))[0, -1].argmax()))
    assert toks_cached == seq[len(ids):]


def test_batched_equals_per_row(smollm2):
    engine = Engine(smollm2.model, smollm2.tokenizer)
    prompts = [prompt_ids(smollm2, q, chat=True) for q in QUESTIONS]
    params = SamplingParams(max_tokens=24, temperature=0)
    batched = engine.generate(prompts, params)
    for p, b in zip(prompts, batched):
        assert engine.generate([p], params)[0].token_ids == b.token_ids


def test_answers_paris(smollm2):
    ids = prompt_ids(smollm2, QUESTIONS[0], chat=True)
    out = Engine(smollm2.model, smollm2.tokenizer).generate([ids], SamplingParams(max_tokens=20, temperature=0))[0]
    assert "Paris" in out.text and out.finish_reason == "stop"


def test_prefill_in_chunks_equals_one_prefill(smollm2):
    model = smollm2.model
    ids = torch.tensor([prompt_ids(smollm2, QUESTIONS[2], chat=True)])
    with torch.no_grad():
        full = model(ids)[:, -1]
        cache = KVCache.allocate(model.cfg, 1, ids.shape[1])
        model(ids[:, :10], kv_cache=cache)
        chunked = model(ids[:, 10:], kv_cache=cache)[:, -1]
    torch.testing.assert_close(chunked, full, atol=1e-4, rtol=1e-4)
