"""The OpenAI HTTP surface against a live server on loopback: shapes, logprobs/echo, streaming, errors."""

import json
import time

import httpx
import pytest
import torch

from llmkit.generate import Engine, SamplingParams
from llmkit.generate.api import prompt_ids

from .conftest import API_KEY


@pytest.fixture(scope="module")
def client(live):
    with httpx.Client(base_url=live.url, timeout=120) as c:
        yield c


def complete(client, **kw):
    body = {"model": "smollm2", "temperature": 0, "max_tokens": 6, **kw}
    r = client.post("/v1/completions", json=body)
    assert r.status_code == 200, r.text
    return r.json()


def sse_events(lines):
    out = []
    for line in lines:
        if not line:
            continue
        assert line.startswith("data: "), line
        out.append(line[6:])
    assert out[-1] == "[DONE]"
    return [json.loads(x) for x in out[:-1]]


def test_models_and_health(client):
    assert client.get("/v1/models").json()["data"][0]["id"] == "smollm2"
    assert client.get("/health").json()["status"] == "ok"


def test_greedy_completion_equals_engine(client, smollm2):
    out = complete(client, prompt="The capital of France is", max_tokens=8)
    ids = prompt_ids(smollm2, "The capital of France is")
    ref = Engine(smollm2.model, smollm2.tokenizer).generate([ids], SamplingParams(max_tokens=8, temperature=0))[0]
    assert out["choices"][0]["text"] == ref.text
    assert out["usage"] == {"prompt_tokens": len(ids), "completion_tokens": len(ref.token_ids),
                            "total_tokens": len(ids) + len(ref.token_ids)}
    assert out["object"] == "text_completion" and out["choices"][0]["finish_reason"] == "length"


def test_speculative_decoding_keeps_greedy_output(client, live, smollm2):
    """The server speculates by default (prompt lookup); a copying answer gets free tokens, same text."""
    ask = "Repeat this sentence three times: The quick brown fox jumps over the lazy dog."
    before = live.state.scheduler.stats.spec_accepted
    r = client.post("/v1/chat/completions", json={"model": "smollm2", "temperature": 0, "max_tokens": 40,
                                                  "logprobs": True, "messages": [{"role": "user", "content": ask}]})
    choice = r.json()["choices"][0]
    ids = prompt_ids(smollm2, ask, chat=True)
    params = SamplingParams(max_tokens=40, temperature=0, logprobs=0)
    ref = Engine(smollm2.model, smollm2.tokenizer).generate([ids], params)[0]
    assert choice["message"]["content"] == ref.text
    got_lp = [c["logprob"] for c in choice["logprobs"]["content"]]
    assert got_lp == pytest.approx([t.logprob for t in ref.logprobs], abs=1e-3)
    assert live.state.scheduler.stats.spec_accepted > before  # the copy was guessed, not decoded one by one
    assert "llmkit_spec_accepted_tokens_total" in client.get("/metrics").text


def test_prompt_shapes(client, smollm2):
    ids = smollm2.tokenizer.encode("Hello there")
    text = complete(client, prompt="Hello there")["choices"][0]["text"]
    assert complete(client, prompt=ids)["choices"][0]["text"] == text
    many = complete(client, prompt=["Hello there", "One two three"])["choices"]
    assert [c["index"] for c in many] == [0, 1] and many[0]["text"] == text
    assert complete(client, prompt=[ids, ids])["choices"][1]["text"] == text


def test_echo_logprobs_are_the_prompts_own(client, smollm2):
    """What lm-eval's local-completions reads: token_logprobs over the prompt, first null."""
    prompt = "Paris is the capital of France"
    out = complete(client, prompt=prompt, max_tokens=1, echo=True, logprobs=1)["choices"][0]
    ids = smollm2.tokenizer.encode(prompt)
    lp = out["logprobs"]
    assert out["text"].startswith(prompt)
    assert len(lp["tokens"]) == len(ids) + 1 and lp["token_logprobs"][0] is None
    with torch.no_grad():
        ref = smollm2.model(torch.tensor([ids]))[0].log_softmax(-1)
    want = [float(ref[t - 1, ids[t]]) for t in range(1, len(ids))]
    assert lp["token_logprobs"][1:len(ids)] == pytest.approx(want, abs=1e-3)
    assert "".join(lp["tokens"][:len(ids)]) == prompt
    assert all(len(t) == 1 for t in lp["top_logprobs"][1:])


def test_n_seed_and_stop(client):
    a = complete(client, prompt="Once upon a time", temperature=1.0, seed=5, n=3, max_tokens=8)
    b = complete(client, prompt="Once upon a time", temperature=1.0, seed=5, n=3, max_tokens=8)
    assert [c["text"] for c in a["choices"]] == [c["text"] for c in b["choices"]] and len(a["choices"]) == 3
    free = complete(client, prompt="1, 2, 3, 4,", max_tokens=10)["choices"][0]["text"]
    stop = free.strip()[1:3] if len(free.strip()) > 3 else free[1:2]
    cut = complete(client, prompt="1, 2, 3, 4,", max_tokens=10, stop=[stop])["choices"][0]
    assert cut["finish_reason"] == "stop" and stop not in cut["text"] and free.startswith(cut["text"])


def test_completion_stream_format(client):
    body = {"model": "smollm2", "prompt": "The capital of France is", "max_tokens": 8, "temperature": 0}
    full = complete(client, **{k: v for k, v in body.items() if k != "model"})["choices"][0]["text"]
    with client.stream("POST", "/v1/completions", json={**body, "stream": True,
                                                       "stream_options": {"include_usage": True}}) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        events = sse_events(list(r.iter_lines()))
    assert all(e["object"] == "text_completion" for e in events)
    text = "".join(c["text"] for e in events for c in e["choices"])
    assert text == full
    assert events[-2]["choices"][0]["finish_reason"] == "length" and events[-1]["usage"]["completion_tokens"] == 8


def test_chat_equals_template_plus_engine(client, smollm2):
    messages = [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "Capital of France?"}]
    r = client.post("/v1/chat/completions", json={"model": "smollm2", "messages": messages, "temperature": 0,
                                                  "max_tokens": 12, "logprobs": True, "top_logprobs": 2})
    out = r.json()
    ids = prompt_ids(smollm2, "Capital of France?", chat=True, system="Answer briefly.")
    ref = Engine(smollm2.model, smollm2.tokenizer).generate([ids], SamplingParams(max_tokens=12, temperature=0))[0]
    choice = out["choices"][0]
    assert choice["message"] == {"role": "assistant", "content": ref.text}
    assert out["usage"]["prompt_tokens"] == len(ids)
    content = choice["logprobs"]["content"]
    assert len(content) == len(ref.token_ids) and all(len(c["top_logprobs"]) == 2 for c in content)
    assert "".join(c["token"] for c in content) == ref.text


def test_chat_stream_roles_and_tool_messages(client):
    messages = [{"role": "user", "content": "What is 2+2?"},
                {"role": "assistant", "content": None,
                 "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "add", "arguments": "{\"a\": 2}"}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "4"}]
    body = {"model": "smollm2", "messages": messages, "temperature": 0, "max_tokens": 6}
    full = client.post("/v1/chat/completions", json=body).json()["choices"][0]["message"]["content"]
    with client.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as r:
        events = sse_events(list(r.iter_lines()))
    assert events[0]["choices"][0]["delta"]["role"] == "assistant"
    assert all(e["object"] == "chat.completion.chunk" for e in events)
    assert "".join(e["choices"][0]["delta"].get("content", "") for e in events) == full
    assert events[-1]["choices"][0]["finish_reason"] in ("stop", "length")


def test_tokenizer_endpoints_match_lm_eval_remote_tokenizer(client, smollm2):
    info = client.get("/tokenizer_info").json()
    assert info["eos_token"] == smollm2.tokenizer.id_to_token(smollm2.tokenizer.eos_id)
    assert info["chat_template"]
    toks = client.post("/tokenize", json={"prompt": "Hello world", "add_special_tokens": False}).json()["tokens"]
    assert toks == smollm2.tokenizer.encode("Hello world")
    assert client.post("/detokenize", json={"tokens": toks}).json()["prompt"] == "Hello world"


@pytest.mark.parametrize("body, status, param", [
    ({"prompt": "a", "temperature": "hot"}, 400, "temperature"),
    ({"prompt": 5}, 400, "prompt"),
    ({"prompt": "a", "n": 99}, 400, None),
    ({"prompt": "a", "max_tokens": -1}, 400, None),
    ({"prompt": "a", "top_p": 0.0}, 400, None),
    ({"prompt": [1, "a"]}, 400, "prompt"),
    ({"prompt": [10 ** 9]}, 400, None),
    ({"model": "gpt-4", "prompt": "a"}, 404, None),
    ({"prompt": "a", "max_tokens": 9000}, 400, None),
])
def test_bad_input_is_openai_4xx(client, body, status, param):
    r = client.post("/v1/completions", json={"model": "smollm2", **body})
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["message"] and err["type"] == "invalid_request_error"
    if param:
        assert err["param"].startswith(param)


def test_malformed_json_long_prompt_and_body_limit(client, live):
    r = client.post("/v1/chat/completions", content=b'{"model": "smollm2", "messages": [',
                    headers={"content-type": "application/json"})
    assert r.status_code == 400 and "JSON" in r.json()["error"]["message"]
    r = client.post("/v1/chat/completions", json={"model": "smollm2", "messages": []})
    assert r.status_code == 400
    r = client.post("/v1/completions", json={"model": "smollm2", "prompt": [1] * live.state.context})
    assert r.status_code == 400 and "context" in r.json()["error"]["message"]
    r = client.post("/v1/completions", json={"model": "smollm2", "prompt": "x" * (100 << 10)})
    assert r.status_code == 413 and r.json()["error"]["code"] == "body_too_large"
    assert client.get("/health").status_code == 200  # none of it took the server down


def test_queue_full_is_429_with_retry_after(client, live):
    sched = live.state.scheduler
    hog = SamplingParams(max_tokens=2000, temperature=0, ignore_eos=True)
    hogs = [sched.submit([1, 2, 3], hog) for _ in range(sched.max_batch)]
    deadline = time.time() + 30
    while sched.running < sched.max_batch:  # every slot busy ...
        assert time.time() < deadline
        time.sleep(0.05)
    hogs += [sched.submit([1, 2, 3], hog) for _ in range(sched.max_queue)]  # ... and the queue full
    r = client.post("/v1/completions", json={"model": "smollm2", "prompt": "a"})
    assert r.status_code == 429 and r.headers["retry-after"] == "1"
    assert r.json()["error"]["type"] == "rate_limit_error"
    for h in hogs:
        h.cancel()
    wait_idle(live)


def wait_idle(live, timeout=30):
    deadline = time.time() + timeout
    while live.state.scheduler.running or live.state.scheduler.waiting:
        assert time.time() < deadline, "slots leaked"
        time.sleep(0.05)


def test_client_disconnect_cancels_and_frees_the_slot(client, live):
    before = live.state.scheduler.stats.cancelled
    body = {"model": "smollm2", "prompt": "Tell me a long story", "max_tokens": 2000, "stream": True}
    with client.stream("POST", "/v1/completions", json=body) as r:
        lines = r.iter_lines()
        next(lines), next(lines), next(lines)
    wait_idle(live)
    assert live.state.scheduler.stats.cancelled == before + 1


def test_metrics_are_prometheus_text(client, live):
    complete(client, prompt="Hi")
    wait_idle(live)  # the slot is freed just after the last byte is sent
    text = client.get("/metrics").text
    assert '# TYPE llmkit_requests_total counter' in text
    assert 'llmkit_requests_total{endpoint="/v1/completions",status="200"}' in text
    assert "llmkit_time_to_first_token_seconds_bucket{le=\"+Inf\"}" in text
    assert "llmkit_requests_running 0" in text


def test_cors_preflight(client):
    r = client.options("/v1/chat/completions", headers={"Origin": "http://example.test",
                                                        "Access-Control-Request-Method": "POST"})
    assert r.headers["access-control-allow-origin"] == "http://example.test"


def test_api_key(live_keyed):
    with httpx.Client(base_url=live_keyed.url, timeout=60) as c:
        r = c.get("/v1/models")
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
        r = c.get("/v1/models", headers={"Authorization": "Bearer wrong"})
        assert r.status_code == 401 and "Incorrect API key" in r.json()["error"]["message"]
        assert c.get("/v1/models", headers={"Authorization": f"Bearer {API_KEY}"}).status_code == 200
        assert c.get("/health").status_code == 200 and c.get("/").status_code == 200


def test_tokenize_chat_messages_and_bad_ids(client, smollm2):
    msgs = [{"role": "user", "content": "Hi"}]
    out = client.post("/tokenize", json={"messages": msgs}).json()
    assert out["tokens"] == prompt_ids(smollm2, "Hi", chat=True) and out["count"] == len(out["tokens"])
    assert client.post("/tokenize", json={"messages": []}).status_code == 200  # found by schemathesis: was a 500
    r = client.post("/detokenize", json={"tokens": [1, -5]})
    assert r.status_code == 400 and r.json()["error"]["param"] == "tokens.1"
    r = client.request("TRACE", "/v1/completions")
    assert r.status_code == 405 and "POST" in r.headers["allow"]
