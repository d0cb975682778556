"""Glue shared by the generation endpoints: params, submission, waiting, streaming.

Every request becomes n scheduler Requests (one per choice). Waiting watches the
client: a disconnect cancels all n at once, which frees their batch slots at the
next token boundary.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import replace
from typing import AsyncIterator, Callable, Sequence

from starlette.requests import Request as HttpRequest

from llmkit.core.errors import GenerationError
from llmkit.generate.engine import Completion, Delta
from llmkit.generate.sampling import SamplingParams
from llmkit.generate.scheduler import PromptLogprobs, Request
from llmkit.serve.schema import SamplingFields
from llmkit.serve.state import ServerState

DISCONNECT_POLL_S = 0.25


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def now() -> int:
    return int(time.time())


def sampling_params(body: SamplingFields, max_tokens: int | None, logprobs: int | None) -> SamplingParams:
    """OpenAI fields -> SamplingParams; range errors come back as GenerationError (400)."""
    stop = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
    given = {k: v for k, v in dict(temperature=body.temperature, top_p=body.top_p, top_k=body.top_k,
                                   min_p=body.min_p, repetition_penalty=body.repetition_penalty,
                                   presence_penalty=body.presence_penalty,
                                   frequency_penalty=body.frequency_penalty).items() if v is not None}
    if max_tokens is not None and max_tokens < 0:
        raise GenerationError(f"invalid max_tokens={max_tokens}", "max_tokens must be a non-negative integer")
    return SamplingParams(max_tokens=max_tokens if max_tokens is not None else 16, seed=body.seed, stop=stop,
                          logprobs=logprobs, **given)


def check_n(state: ServerState, n: int) -> None:
    if not 1 <= n <= state.config.max_n:
        raise GenerationError(f"invalid n={n}", f"n must be between 1 and {state.config.max_n}")


def submit_choices(state: ServerState, prompts: Sequence[Sequence[int]], params: SamplingParams, n: int,
                   make_constraint: Callable[[], object] | None = None,
                   prompt_logprobs: int | None = None) -> list[Request]:
    """n requests per prompt (choice index = prompt * n + i); all or nothing."""
    reqs: list[Request] = []
    try:
        for prompt in prompts:
            for i in range(n):
                p = replace(params, seed=params.seed + i) if params.seed is not None and i else params
                reqs.append(state.scheduler.submit(prompt, p, prompt_logprobs=prompt_logprobs,
                                                   constraint=make_constraint() if make_constraint else None))
    except BaseException:
        for r in reqs:
            r.cancel()
        raise
    return reqs


async def _watch(http: HttpRequest, reqs: list[Request]) -> None:
    while not all(r.finished for r in reqs):
        if await http.is_disconnected():
            for r in reqs:
                r.cancel()
            return
        await asyncio.sleep(DISCONNECT_POLL_S)


def observe_ttft(state: ServerState, r: Request) -> None:
    if r.first_token_at is not None:
        state.metrics.observe("llmkit_time_to_first_token_seconds", r.first_token_at - r.submitted)


async def collect(state: ServerState, http: HttpRequest, reqs: list[Request]) -> list[tuple[Completion, PromptLogprobs | None]]:
    """Wait for every request's final Completion, cancelling all if the client goes away."""

    async def one(r: Request):
        done, plp = None, None
        async for ev in r.aiter():
            if isinstance(ev, PromptLogprobs):
                plp = ev
            elif isinstance(ev, Completion):
                done = ev
        observe_ttft(state, r)
        return done, plp

    watcher = asyncio.create_task(_watch(http, reqs))
    try:
        results = await asyncio.gather(*(one(r) for r in reqs))
    finally:
        watcher.cancel()
        for r in reqs:
            r.cancel()  # no-op when finished; frees the slot when this task was cancelled
    if any(done is None for done, _ in results):
        raise GenerationError("the request was cancelled", "retry")
    return list(results)


async def merged(state: ServerState, reqs: list[Request]) -> AsyncIterator[tuple[int, Delta | PromptLogprobs | Completion]]:
    """Events of all choices as they come, tagged with their choice index."""
    queue: asyncio.Queue = asyncio.Queue()
    end = object()

    async def pump(i: int, r: Request):
        try:
            async for ev in r.aiter():
                await queue.put((i, ev))
            observe_ttft(state, r)
        except BaseException as e:  # surface the scheduler's error to the stream
            await queue.put((i, e))
        finally:
            await queue.put((i, end))

    tasks = [asyncio.create_task(pump(i, r)) for i, r in enumerate(reqs)]
    left = len(reqs)
    try:
        while left:
            i, ev = await queue.get()
            if ev is end:
                left -= 1
            elif isinstance(ev, BaseException):
                raise ev
            else:
                yield i, ev
    finally:  # the client went away (the stream is closed) or we are done: free every slot
        for r in reqs:
            r.cancel()
        for t in tasks:
            t.cancel()


class Tally:
    completion_tokens = 0


async def stream_deltas(state: ServerState, reqs: list[Request], tally: Tally) -> AsyncIterator[tuple[int, Delta]]:
    """Only the token deltas of all choices; final Completions add to tally.completion_tokens."""
    async for i, ev in merged(state, reqs):
        if isinstance(ev, Completion):
            tally.completion_tokens += len(ev.token_ids)
        elif isinstance(ev, Delta):
            yield i, ev


def sse(obj: dict | str) -> str:
    data = obj if isinstance(obj, str) else json.dumps(obj, ensure_ascii=False)
    return f"data: {data}\n\n"


def usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def token_str(tokenizer, token_id: int) -> str:
    return tokenizer.token_bytes(token_id).decode("utf-8", "replace")
