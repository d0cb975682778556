"""Continuous batching: results under concurrency equal each request run alone."""

import threading
import time

import pytest
import torch

from llmkit.core.errors import ContextOverflowError
from llmkit.generate import Engine, SamplingParams
from llmkit.generate.scheduler import (Completion, QueueFullError, Scheduler, pack_rows,
                                       prompt_token_logprobs, row_segment)
from llmkit.model import KVCache, Transformer

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


# ---- speculative decoding inside the scheduler: the same tokens as plain decoding, fewer forwards ----
LOOPY = [list(range(40, 60)) * 2, [5, 17, 99, 3, 5, 17, 99, 3, 5, 17], PROMPTS[2]]


def alone_then_spec(engine, prompt, params, **spec):
    want = engine.generate([prompt], params)[0]
    sched = Scheduler(engine, **spec)
    got = drain(sched, [sched.submit(prompt, params)])[0]
    return want, got, sched


@pytest.mark.parametrize("prompt", LOOPY)
def test_speculative_greedy_equals_plain_in_fewer_steps(engine, prompt):
    want, got, sched = alone_then_spec(engine, prompt, greedy(40, logprobs=1), speculative=4)
    assert got.token_ids == want.token_ids and got.text == want.text
    # logprobs catch a cache that is off by one slot even where the tiny model's argmax does not move
    assert [a.logprob for a in got.logprobs] == pytest.approx([b.logprob for b in want.logprobs], abs=1e-4)
    assert sched.stats.spec_rounds > 0 and sched.stats.spec_accepted > 0
    assert sched.stats.steps < 40 - 1  # some steps yielded more than one token
    assert sched.running == 0 and sched._cache is None


@pytest.mark.parametrize("params", [
    SamplingParams(max_tokens=30, temperature=0.7, top_p=0.95, seed=11, ignore_eos=True),
    greedy(30, frequency_penalty=0.8, presence_penalty=0.3),
    greedy(30, repetition_penalty=1.2),
    greedy(30, logprobs=2),
])
def test_speculative_keeps_sampling_penalties_and_logprobs_exact(engine, params):
    # one-token n-gram matches, so sampled and penalised rows (which rarely repeat 2-grams) still get guesses
    want, got, sched = alone_then_spec(engine, LOOPY[0], params, speculative=3, min_ngram=1)
    assert got.token_ids == want.token_ids
    if params.logprobs is not None:
        for a, b in zip(got.logprobs, want.logprobs):
            assert a.token_id == b.token_id and a.logprob == pytest.approx(b.logprob, abs=1e-4)
    assert sched.stats.spec_rounds > 0


def test_speculative_stops_on_stop_strings_and_max_tokens(engine):
    free = engine.generate([LOOPY[1]], greedy(30))[0]
    for params in (greedy(30, stop=[free.text[9:11]]), greedy(7), greedy(1)):
        want, got, _ = alone_then_spec(engine, LOOPY[1], params, speculative=4)
        assert (got.token_ids, got.text, got.finish_reason) == (want.token_ids, want.text, want.finish_reason)


def test_speculative_with_a_draft_model(engine, tiny_model):
    from llmkit.generate.speculative import layer_skip_draft
    for draft in (tiny_model, layer_skip_draft(tiny_model, 1)):
        want, got, sched = alone_then_spec(engine, PROMPTS[0], greedy(25), speculative=3, draft=draft)
        assert got.token_ids == want.token_ids
    assert sched.stats.spec_proposed > 0


def test_speculative_pauses_while_others_run_and_resumes(engine):
    sched = Scheduler(engine, max_batch=4, speculative=4)
    a = sched.submit(LOOPY[0], greedy(40))
    sched.step(), sched.step()
    assert sched.stats.spec_rounds > 0
    b = sched.submit(PROMPTS[1], greedy(6))
    rounds = sched.stats.spec_rounds
    sched.step(), sched.step()
    assert sched.running == 2 and sched.stats.spec_rounds == rounds  # two rows: plain batched steps
    got = drain(sched, [a, b])
    assert got[0].token_ids == engine.generate([LOOPY[0]], greedy(40))[0].token_ids
    assert got[1].token_ids == engine.generate([PROMPTS[1]], greedy(6))[0].token_ids
    assert sched.stats.spec_rounds > rounds  # back to speculating once a ran alone again


def test_speculative_under_a_constraint(engine, byte_tok):
    from llmkit.generate.constrain import compile_regex
    g = compile_regex(r"(ab|cd){3,12}", byte_tok, [256])
    params = SamplingParams(max_tokens=30, temperature=0)
    plain = Scheduler(engine)
    want = drain(plain, [plain.submit(LOOPY[0], params, constraint=g.start())])[0]
    spec = Scheduler(engine, speculative=4)
    got = drain(spec, [spec.submit(LOOPY[0], params, constraint=g.start())])[0]
    assert got.token_ids == want.token_ids


def test_speculative_rejects_bad_settings(engine, tiny_model):
    with pytest.raises(Exception, match="speculative=-1"):
        Scheduler(engine, speculative=-1)
    other = Transformer(tiny_model.cfg.replace(vocab_size=400)).init_weights(seed=1)
    with pytest.raises(Exception, match="vocabulary"):
        Scheduler(engine, speculative=2, draft=other)


def test_call_runs_on_the_scheduler_thread_and_passes_errors_back(engine):
    sched = Scheduler(engine)
    with pytest.raises(Exception, match="not running"):
        sched.call(lambda: 1).result(1)
    sched.start()
    try:
        assert sched.call(lambda: threading.current_thread().name).result(10) == "llmkit-scheduler"
        with pytest.raises(ZeroDivisionError):
            sched.call(lambda: 1 / 0).result(10)
        assert sched.alive  # a failing call does not stop the loop
    finally:
        sched.stop()
    assert not sched.alive


def test_run_in_the_callers_thread_until_stopped(engine):
    sched = Scheduler(engine).hold()
    assert sched.start()._thread is None  # held: start() must not spawn a second loop
    out = {}

    def client():
        while not sched.alive:
            time.sleep(0.01)
        out["tokens"] = sched.submit(PROMPTS[0], greedy(6)).result()[0].token_ids
        out["thread"] = sched.call(lambda: threading.current_thread().name).result(10)
        sched.stop()

    helper = threading.Thread(target=client)
    helper.start()
    sched.run()
    helper.join(10)
    assert out["tokens"] == engine.generate([PROMPTS[0]], greedy(6))[0].token_ids
    assert out["thread"] == threading.current_thread().name and not sched.alive
