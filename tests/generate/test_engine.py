import pytest
import torch

from llmkit.core.errors import ContextOverflowError, GenerationError
from llmkit.generate import Engine, SamplingParams, beam_search
from llmkit.generate.naive import naive_greedy
from llmkit.generate.prefix import PrefixCache

PROMPTS = [[5, 17, 99, 3], [200, 1], [7, 8, 9, 10, 11, 12, 13, 14, 15], [42]]


def _greedy(n=20, **kw):
    return SamplingParams(max_tokens=n, temperature=0, ignore_eos=True, **kw)


def test_engine_matches_naive_oracle(tiny_model, byte_tok):
    eng = Engine(tiny_model, byte_tok, default_stop_ids=[])
    for p in PROMPTS:
        assert eng.generate([p], _greedy())[0].token_ids == naive_greedy(tiny_model, p, 20)


def test_batched_equals_per_row(tiny_model, byte_tok):
    eng = Engine(tiny_model, byte_tok, default_stop_ids=[])
    batched = eng.generate(PROMPTS, _greedy())
    single = [eng.generate([p], _greedy())[0] for p in PROMPTS]
    assert [c.token_ids for c in batched] == [c.token_ids for c in single]


def test_rows_with_different_lengths_and_params(tiny_model, byte_tok):
    eng = Engine(tiny_model, byte_tok, default_stop_ids=[])
    params = [_greedy(3), _greedy(12), SamplingParams(max_tokens=5, temperature=1.0, seed=1, ignore_eos=True)]
    out = eng.generate(PROMPTS[:3], params)
    assert [len(c.token_ids) for c in out] == [3, 12, 5]
    assert all(c.finish_reason == "length" for c in out)
    assert out[1].token_ids == eng.generate([PROMPTS[1]], _greedy(12))[0].token_ids


def test_stop_token_and_stop_string(tiny_model, byte_tok):
    eng = Engine(tiny_model, byte_tok, default_stop_ids=[])
    free = eng.generate([PROMPTS[0]], _greedy())[0]
    stop_tok = free.token_ids[4]
    first = free.token_ids.index(stop_tok)
    out = eng.generate([PROMPTS[0]], _greedy(stop_token_ids=[stop_tok]))[0]
    assert out.finish_reason == "stop" and out.token_ids == free.token_ids[:first]
    stop_str = free.text[2:4]
    out = eng.generate([PROMPTS[0]], _greedy(stop=[stop_str]))[0]
    assert out.finish_reason == "stop" and out.text == free.text[:free.text.index(stop_str)]


def test_streaming_concatenates_to_full_text(tiny_model, byte_tok):
    eng = Engine(tiny_model, byte_tok, default_stop_ids=[])
    full = eng.generate([PROMPTS[2]], _greedy())[0].text
    deltas = list(eng.stream(PROMPTS[2], _greedy()))
    assert "".join(d.text for d in deltas) == full and deltas[-1].finish_reason == "length"


def test_seeded_sampling_reproducible(tiny_model, byte_tok):
    eng = Engine(tiny_model, byte_tok)
    p = SamplingParams(max_tokens=15, temperature=1.0, top_p=0.9, seed=123, ignore_eos=True)
    a = eng.generate([PROMPTS[0]], p)[0].token_ids
    assert a == eng.generate([PROMPTS[0]], p)[0].token_ids
    other = SamplingParams(max_tokens=15, temperature=1.0, top_p=0.9, seed=124, ignore_eos=True)
    assert a != eng.generate([PROMPTS[0]], other)[0].token_ids


def test_logprobs(tiny_model, byte_tok):
    eng = Engine(tiny_model, byte_tok)
    out = eng.generate([PROMPTS[0]], _greedy(5, logprobs=3))[0]
    assert len(out.logprobs) == 5
    for lp, tok in zip(out.logprobs, out.token_ids):
        assert lp.token_id == tok and lp.top[0][0] == tok and lp.logprob == pytest.approx(lp.top[0][1])


def test_repetition_penalty_changes_output(tiny_model, byte_tok):
    eng = Engine(tiny_model, byte_tok)
    plain = eng.generate([PROMPTS[0]], _greedy(30))[0].token_ids
    pen = eng.generate([PROMPTS[0]], _greedy(30, repetition_penalty=5.0))[0].token_ids
    assert len(set(pen)) >= len(set(plain)) and pen != plain


def test_context_overflow_is_an_error(tiny_model, byte_tok):
    eng = Engine(tiny_model, byte_tok)
    with pytest.raises(ContextOverflowError, match="context window of 128"):
        eng.generate([[1] * 120], _greedy(20))
    with pytest.raises(GenerationError):
        eng.generate([[]], _greedy())
    with pytest.raises(GenerationError, match="outside the vocabulary"):
        eng.generate([[100000]], _greedy())


def test_zero_max_tokens(tiny_model, byte_tok):
    out = Engine(tiny_model, byte_tok).generate([PROMPTS[0]], _greedy(0))[0]
    assert out.token_ids == [] and out.finish_reason == "length"


def test_beam_width_one_is_greedy(tiny_model):
    best = beam_search(tiny_model, PROMPTS[0], num_beams=1, max_tokens=10)[0]
    assert best.token_ids == naive_greedy(tiny_model, PROMPTS[0], 10)


def test_beam_search_finds_higher_likelihood_than_greedy(tiny_model):
    def seq_logprob(prompt, toks):
        ids = torch.tensor([prompt + toks])
        with torch.no_grad():
            lp = tiny_model(ids)[0].log_softmax(-1)
        return sum(float(lp[len(prompt) - 1 + i, t]) for i, t in enumerate(toks))

    for p in PROMPTS:
        greedy = naive_greedy(tiny_model, p, 8)
        beams = beam_search(tiny_model, p, num_beams=4, max_tokens=8)
        assert beams[0].logprob == pytest.approx(seq_logprob(p, beams[0].token_ids), abs=1e-3)
        assert beams[0].logprob >= seq_logprob(p, greedy) - 1e-4
        assert [b.score for b in beams] == sorted([b.score for b in beams], reverse=True)


def test_prefix_cache_gives_the_same_tokens_and_logprobs(tiny_model, byte_tok):
    g = torch.Generator().manual_seed(3)
    shared = torch.randint(0, 256, (64,), generator=g).tolist()
    tails = [[1], [9, 8, 7, 6, 5], torch.randint(0, 256, (30,), generator=g).tolist(),
             torch.randint(0, 256, (40,), generator=g).tolist()]
    prompts = [shared + t for t in tails]
    params = SamplingParams(max_tokens=12, temperature=0, ignore_eos=True, logprobs=0)
    plain = Engine(tiny_model, byte_tok, default_stop_ids=[]).generate(prompts, params)
    eng = Engine(tiny_model, byte_tok, default_stop_ids=[], prefix_cache=True)
    cached = eng.generate(prompts, params)
    assert eng.prefix._ids == tuple(shared)  # it was used, for exactly the shared part
    assert [c.token_ids for c in cached] == [c.token_ids for c in plain]
    for a, b in zip(cached, plain):
        assert [x.logprob for x in a.logprobs] == pytest.approx([x.logprob for x in b.logprobs], abs=1e-4)
    kv = eng.prefix._kv
    again = eng.generate(prompts[1:3], params)  # the same prefix: reused, not recomputed
    assert eng.prefix._kv is kv and [c.token_ids for c in again] == [c.token_ids for c in plain[1:3]]
    short = [[1, 2, 3], [1, 2, 4]]  # under min_len: not cached
    assert [c.token_ids for c in eng.generate(short, params)] == \
        [c.token_ids for c in Engine(tiny_model, byte_tok, default_stop_ids=[]).generate(short, params)]
    assert eng.prefix._kv is kv
    tiny = PrefixCache(tiny_model, min_len=4)  # more padding than the prefix is long: rows re-run part of it
    eng.prefix = tiny
    uneven = [[3, 1, 4, 1, 5], [3, 1, 4, 1, 9, 2, 6, 5, 3, 5, 8, 9, 7]]
    assert [c.token_ids for c in eng.generate(uneven, params)] == \
        [c.token_ids for c in Engine(tiny_model, byte_tok, default_stop_ids=[]).generate(uneven, params)]
    assert tiny._ids == (3, 1, 4, 1)
