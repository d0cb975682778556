"""Continuous batching: results under concurrency equal each request run alone."""

import threading

import pytest
import torch

from llmkit.core.errors import ContextOverflowError
from llmkit.generate import Engine, SamplingParams
from llmkit.generate.scheduler import (Completion, QueueFullError, Scheduler, pack_rows,
                                       prompt_token_logprobs, row_segment)
from llmkit.model import KVCache

PROMPTS = [[5, 17, 99, 3], [200, 1], [7, 8, 9, 10, 11, 12, 13, 14, 15], [42], list(range(30, 60))]


def greedy(n=12, **kw):
    return SamplingParams(max_tokens=n, temperature=0, ignore_eos=True, **kw)


@pytest.fixture()
def engine(tiny_model, byte_tok):
    return Engine(tiny_model, byte_tok, default_stop_ids=[])


def drain(sched, reqs, limit=500):
    for _ in range(limit):
        if all(r.finished for r in reqs):
            return [r.result()[0] for r in reqs]
        sched.step()
    raise AssertionError("scheduler did not finish")


def test_staggered_admission_equals_alone(engine):
    sched = Scheduler(engine, max_batch=8)
    params = [greedy(12), greedy(5), greedy(20), greedy(9), greedy(3)]
    first = sched.submit(PROMPTS[0], params[0])
    sched.step(), sched.step(), sched.step()  # the first request is mid-decode when the others join
    later = [sched.submit(p, q) for p, q in zip(PROMPTS[1:3], params[1:3])]
    sched.step()
    last = [sched.submit(p, q) for p, q in zip(PROMPTS[3:], params[3:])]
    got = drain(sched, [first, *later, *last])
    alone = [engine.generate([p], q)[0] for p, q in zip(PROMPTS, params)]
    assert [c.token_ids for c in got] == [c.token_ids for c in alone]
    assert [c.text for c in got] == [c.text for c in alone]
    assert sched.running == 0 and sched._cache is None  # no leaked slots


def test_sampling_params_per_row_match_alone(engine):
    params = [SamplingParams(max_tokens=10, temperature=0.9, top_p=0.9, seed=7, ignore_eos=True),
              greedy(10, frequency_penalty=1.5, presence_penalty=0.5),
              greedy(10, repetition_penalty=1.3),
              SamplingParams(max_tokens=10, temperature=1.2, top_k=20, min_p=0.05, seed=3, ignore_eos=True)]
    sched = Scheduler(engine, max_batch=8)
    reqs = []
    for p, q in zip(PROMPTS, params):
        reqs.append(sched.submit(p, q))
        sched.step()
    got = drain(sched, reqs)
    alone = [engine.generate([p], q)[0] for p, q in zip(PROMPTS, params)]
    assert [c.token_ids for c in got] == [c.token_ids for c in alone]


def test_logprobs_and_stop_strings_match_engine(engine):
    free = engine.generate([PROMPTS[2]], greedy(20))[0]
    params = [greedy(15, logprobs=3), greedy(20, stop=[free.text[5:7]])]
    sched = Scheduler(engine)
    got = drain(sched, [sched.submit(PROMPTS[0], params[0]), sched.submit(PROMPTS[2], params[1])])
    alone = [engine.generate([p], q)[0] for p, q in zip([PROMPTS[0], PROMPTS[2]], params)]
    assert got[1].text == alone[1].text and got[1].finish_reason == "stop"
    for a, b in zip(got[0].logprobs, alone[0].logprobs):
        assert a.token_id == b.token_id and a.logprob == pytest.approx(b.logprob, abs=1e-4)
        assert [t for t, _ in a.top] == [t for t, _ in b.top]


def test_cancel_frees_the_slot_at_once(engine):
    sched = Scheduler(engine, max_batch=2)
    a = sched.submit(PROMPTS[0], greedy(100))
    b = sched.submit(PROMPTS[1], greedy(4))
    sched.step()
    assert sched.running == 2
    a.cancel()
    sched.step()
    assert sched.running == 1 and a.finished and sched.stats.cancelled == 1
    out = drain(sched, [b])[0]
    assert out.token_ids == engine.generate([PROMPTS[1]], greedy(4))[0].token_ids
    events = list(a.iter())
    assert not any(isinstance(e, Completion) for e in events)  # a cancelled request has no final result


def test_queue_full_is_429(engine):
    sched = Scheduler(engine, max_batch=1, max_queue=1)
    sched.submit(PROMPTS[0], greedy(5))
    with pytest.raises(QueueFullError) as e:
        sched.submit(PROMPTS[1], greedy(5))
    assert e.value.status == 429 and sched.stats.rejected == 1


def test_too_long_prompt_is_rejected_in_submit(engine, tiny_model):
    sched = Scheduler(engine)
    with pytest.raises(ContextOverflowError):
        sched.submit([1] * tiny_model.cfg.max_seq_len, greedy(1))
    assert sched.waiting == 0


def test_prompt_logprobs_equal_a_full_forward(engine, tiny_model):
    sched = Scheduler(engine)
    req = sched.submit(PROMPTS[4], greedy(0), prompt_logprobs=2)
    sched.step()
    out, plp = req.result()
    assert out.token_ids == [] and out.finish_reason == "length"
    with torch.no_grad():
        ref = tiny_model(torch.tensor([PROMPTS[4]]))[0].log_softmax(-1)
    assert plp.tokens[0] is None and len(plp.tokens) == len(PROMPTS[4])
    for t in range(1, len(PROMPTS[4])):
        assert plp.tokens[t].logprob == pytest.approx(float(ref[t - 1, PROMPTS[4][t]]), abs=1e-4)
        assert plp.tokens[t].top[0][0] == int(ref[t - 1].argmax())


def test_prompt_token_logprobs_known_values():
    logits = torch.log(torch.tensor([[0.5, 0.25, 0.25], [0.1, 0.1, 0.8], [1 / 3, 1 / 3, 1 / 3]]))
    out = prompt_token_logprobs(logits, [0, 1, 2], top_n=1)
    assert out[0] is None
    assert out[1].logprob == pytest.approx(torch.log(torch.tensor(0.25)).item())
    assert out[1].top == [(0, pytest.approx(torch.log(torch.tensor(0.5)).item()))]
    assert out[2].logprob == pytest.approx(torch.log(torch.tensor(0.8)).item())


def test_pack_rows_right_aligns_and_round_trips(tiny_model):
    cfg = tiny_model.cfg
    cache = KVCache.allocate(cfg, 2, 10, start=torch.tensor([3, 0]))
    cache.k.normal_(), cache.v.normal_()
    cache.pos = 7
    segs = [row_segment(cache, 0), row_segment(cache, 1)]
    assert segs[0][0].shape[2] == 4 and segs[1][0].shape[2] == 7
    packed = pack_rows(segs, capacity=9)
    assert packed.pos == 7 and packed.start.tolist() == [3, 0] and packed.max_len == 9
    torch.testing.assert_close(packed.k[:, :, :, :7][:, 1], cache.k[:, 1, :, :7])
    torch.testing.assert_close(row_segment(packed, 0)[1], segs[0][1])


def test_threaded_concurrent_clients_equal_alone(engine):
    sched = Scheduler(engine, max_batch=3, max_queue=8).start()
    try:
        results = {}

        def client(i):
            results[i] = sched.submit(PROMPTS[i], greedy(8 + i)).result()[0].token_ids

        threads = [threading.Thread(target=client, args=(i,)) for i in range(len(PROMPTS))]
        [t.start() for t in threads]
        [t.join(60) for t in threads]
    finally:
        sched.stop()
    assert [results[i] for i in range(len(PROMPTS))] == \
        [engine.generate([p], greedy(8 + i))[0].token_ids for i, p in enumerate(PROMPTS)]


def test_prefill_budget_spreads_admissions_over_steps(engine):
    sched = Scheduler(engine, max_batch=8, prefill_budget=40)
    reqs = [sched.submit(PROMPTS[4], greedy(6)) for _ in range(3)]  # 30-token prompts
    sched.step()
    assert sched.running == 1 and sched.waiting == 2  # a second prompt would exceed the budget
    sched.step()
    assert sched.running == 2
    got = drain(sched, reqs)
    assert all(c.token_ids == engine.generate([PROMPTS[4]], greedy(6))[0].token_ids for c in got)
