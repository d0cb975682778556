"""POST /v1/completions: raw text completion, with logprobs and `echo` of prompt logprobs.

`echo` + `logprobs` is what lm-evaluation-harness scores multiple choice with: it
sends context + continuation, max_tokens=1, and sums token_logprobs over the
continuation. So prompt tokens carry real logprobs here (the first one is null).

With guard hooks (``llmkit serve --guard``) each prompt is checked like a chat user message
(an injection is refused with 400, PII is redacted before the model sees it) and each reply is
leak-checked and redacted; a streamed reply is then held back and sent as one chunk.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse

from llmkit.core.errors import GenerationError
from llmkit.generate.engine import Completion, TokenLogprob
from llmkit.generate.scheduler import PromptLogprobs
from llmkit.serve.common import (Tally, check_n, collect, new_id, now, sampling_params, sse, stream_deltas,
                                 submit_choices, token_str, usage)
from llmkit.serve.constraints import constraint_factory
from llmkit.serve.schema import ERROR_RESPONSES, CompletionRequest
from llmkit.serve.state import ServerState

router = APIRouter(responses=ERROR_RESPONSES)


def prompt_list(state: ServerState, prompt) -> tuple[list[list[int]], list[str]]:
    """The four prompt shapes OpenAI allows -> (token ids per prompt, text per prompt)."""
    tok = state.tokenizer
    if isinstance(prompt, str):
        prompt = [prompt]
    if not prompt:
        raise GenerationError("prompt is empty", "pass a string, a list of strings or token ids")
    if isinstance(prompt[0], str):
        ids = [tok.encode(p, allowed_special="all") for p in prompt]
        texts = list(prompt)
    elif isinstance(prompt[0], int):
        ids, texts = [list(prompt)], None
    else:
        ids, texts = [list(p) for p in prompt], None
    for p in ids:
        if not p:
            raise GenerationError("a prompt encodes to no tokens", "send at least one character or token id")
        bad = [t for t in p if not 0 <= t < state.lm.model.cfg.vocab_size]
        if bad:
            raise GenerationError(f"token id {bad[0]} is outside the vocabulary (size {state.lm.model.cfg.vocab_size})",
                                  "send ids from GET /tokenize")
    if texts is None:
        texts = [tok.decode(p) for p in ids]
    return ids, texts


class LogprobsBuilder:
    """The legacy completions logprobs object: parallel lists plus character offsets."""

    def __init__(self, tokenizer, offset: int = 0):
        self.tok = tokenizer
        self.offset = offset
        self.out = {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}

    def add(self, token_id: int, lp: TokenLogprob | None) -> None:
        s = token_str(self.tok, token_id)
        self.out["tokens"].append(s)
        self.out["text_offset"].append(self.offset)
        self.offset += len(s)
        self.out["token_logprobs"].append(lp.logprob if lp is not None else None)
        self.out["top_logprobs"].append({token_str(self.tok, t): v for t, v in lp.top} if lp is not None else None)


def guarded_prompts(state: ServerState, ids: list[list[int]], texts: list[str]) -> None:
    """With a guard, each prompt is checked (an injection is refused) and re-encoded if PII was redacted."""
    check = state.hooks.check_input
    if check is None:
        return
    for k, text in enumerate(texts):
        clean = check(text)
        if clean != text:
            ids[k], texts[k] = state.tokenizer.encode(clean, allowed_special="all"), clean


def _choice(state, body, index, prompt_ids, prompt_text, done: Completion, plp: PromptLogprobs | None) -> dict:
    reply = done.text
    if state.hooks.check_output:
        reply = state.hooks.check_output(reply, None)
    text = (prompt_text if body.echo else "") + reply
    logprobs = None
    if body.logprobs is not None:
        b = LogprobsBuilder(state.tokenizer)
        if body.echo:
            for t, lp in zip(prompt_ids, plp.tokens):
                b.add(t, lp)
        if reply != done.text:  # redacted or withheld: the generated tokens no longer match the text
            return {"index": index, "text": text, "logprobs": b.out, "finish_reason": done.finish_reason}
        for t, lp in zip(done.token_ids, done.logprobs or []):
            b.add(t, lp)
        if body.echo and done.stop_logprob is not None:  # scorers expect the generated token, even EOS
            b.add(done.stop_logprob.token_id, done.stop_logprob)
        logprobs = b.out
    return {"index": index, "text": text, "logprobs": logprobs, "finish_reason": done.finish_reason}


@router.post("/v1/completions")
async def completions(body: CompletionRequest, request: Request):
    state: ServerState = request.app.state.llmkit
    state.check_model(body.model)
    check_n(state, body.n)
    if body.best_of is not None and body.best_of != body.n:
        raise GenerationError(f"best_of={body.best_of} differs from n={body.n}", "best_of is not supported; use n")
    if body.suffix:
        raise GenerationError("suffix is not supported", "leave suffix out")
    if body.echo and body.stream and body.logprobs is not None:
        raise GenerationError("echo with logprobs is not available when streaming", "set stream=false")
    ids, texts = prompt_list(state, body.prompt)
    guarded_prompts(state, ids, texts)
    params = sampling_params(body, body.max_tokens, body.logprobs)
    make = constraint_factory(state, body, None)
    prompt_lp = body.logprobs if body.echo and body.logprobs is not None else None
    reqs = submit_choices(state, ids, params, body.n, make, prompt_lp)
    rid, created = new_id("cmpl"), now()
    if body.stream:
        return StreamingResponse(_stream(state, body, reqs, ids, texts, rid, created),
                                 media_type="text/event-stream")
    results = await collect(state, request, reqs)
    choices = [_choice(state, body, i, ids[i // body.n], texts[i // body.n], done, plp)
               for i, (done, plp) in enumerate(results)]
    completion_tokens = sum(len(done.token_ids) for done, _ in results)
    prompt_tokens = sum(len(p) for p in ids)
    return JSONResponse({"id": rid, "object": "text_completion", "created": created, "model": state.model_id,
                         "choices": choices, "usage": usage(prompt_tokens, completion_tokens),
                         "system_fingerprint": None})


async def _stream(state, body, reqs, ids, texts, rid, created):
    def chunk(i, text, logprobs=None, finish=None):
        return {"id": rid, "object": "text_completion", "created": created, "model": state.model_id,
                "choices": [{"index": i, "text": text, "logprobs": logprobs, "finish_reason": finish}]}

    stops = state.engine.default_stop_ids
    builders = {}
    if body.echo:
        for i in range(len(reqs)):
            yield sse(chunk(i, texts[i // body.n]))
    tally = Tally()
    check, held = state.hooks.check_output, {}
    try:
        async for i, ev in stream_deltas(state, reqs, tally):
            if check:  # a checked reply is held back and sent whole, without per-token logprobs
                held[i] = held.get(i, "") + ev.text
                if ev.finish_reason:
                    yield sse(chunk(i, check(held[i], None), None, ev.finish_reason))
                continue
            lp = None
            if body.logprobs is not None and ev.token_id is not None and ev.token_id not in stops:
                b = builders[i] = LogprobsBuilder(state.tokenizer, builders[i].offset if i in builders else 0)
                b.add(ev.token_id, ev.logprob)
                lp = b.out
            if ev.text or lp or ev.finish_reason:
                yield sse(chunk(i, ev.text, lp, ev.finish_reason))
    except Exception as e:  # headers are sent: the error goes into the stream, OpenAI-style
        from llmkit.serve.errors import error_body

        yield sse(error_body(e)[1])
    if (body.stream_options or {}).get("include_usage"):
        yield sse({"id": rid, "object": "text_completion", "created": created, "model": state.model_id,
                   "choices": [], "usage": usage(sum(len(p) for p in ids), tally.completion_tokens)})
    yield sse("[DONE]")
