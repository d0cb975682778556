"""POST /v1/chat/completions: the model's own chat template, tools, logprobs, streaming."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse

from llmkit.core.errors import GenerationError
from llmkit.generate.engine import TokenLogprob
from llmkit.generate.text import held_suffix
from llmkit.generate.tools import OPEN_TAG, format_tool_call, parse_tool_calls, with_tools_preamble
from llmkit.serve.common import (Tally, check_n, collect, new_id, now, sampling_params, sse, stream_deltas,
                                 submit_choices, token_str, usage)
from llmkit.serve.constraints import constraint_factory
from llmkit.serve.schema import ERROR_RESPONSES, ChatMessage, ChatRequest, message_text
from llmkit.serve.state import ChatHooks, ServerState

router = APIRouter(responses=ERROR_RESPONSES)


def _guarded_text(m: ChatMessage, hooks: ChatHooks) -> str:
    """A message's text with the hooks applied: untrusted parts and tool results wrapped, user text checked."""
    parts = [(m.content or "", False, None)] if not isinstance(m.content, list) else \
        [(p.text or "", bool(p.untrusted), p.source) for p in m.content if p.type == "text"]
    if m.role == "user" and hooks.check_input:
        # the user's own words are checked together (a lone "Document:" part is no evidence either way)
        hooks.check_input("".join(text for text, untrusted, _ in parts if not untrusted))
    out = []
    for text, untrusted, source in parts:
        if (m.role == "tool" or untrusted) and hooks.wrap_untrusted:
            text = hooks.wrap_untrusted(text, source or (f"tool:{m.name or m.tool_call_id or 'result'}"
                                                         if m.role == "tool" else "client"))
        elif m.role == "user" and hooks.check_input and text:
            text = hooks.check_input(text)  # per part: redaction keeps the part boundaries
        out.append(text)
    return "".join(out)


def client_system(messages: list[ChatMessage]) -> str | None:
    first = messages[0] if messages else None
    return message_text(first.content) if first and first.role in ("system", "developer") else None


def chat_messages(messages: list[ChatMessage], tools: list[dict] | None, template_has_tools: bool,
                  hooks: ChatHooks | None = None) -> list[dict]:
    hooks = hooks or ChatHooks()
    out = []
    for m in messages:
        if isinstance(m.content, list) and any(p.type != "text" for p in m.content):
            raise GenerationError("only text content parts are supported", "send {'type': 'text', 'text': ...}")
        role = "system" if m.role == "developer" else m.role
        content = _guarded_text(m, hooks)
        if m.tool_calls:  # history: the assistant's earlier calls, in the model's own convention
            content = "\n".join([content] * bool(content) + [format_tool_call(c.function.name, c.function.arguments)
                                                             for c in m.tool_calls])
        out.append({"role": role, "content": content})
    if hooks.system_prompt:
        if out and out[0]["role"] == "system":
            out[0] = {"role": "system", "content": hooks.system_prompt(out[0]["content"])}
        else:
            out.insert(0, {"role": "system", "content": hooks.system_prompt(None)})
    return with_tools_preamble(out, tools) if tools and not template_has_tools else out


def _active_tools(body: ChatRequest) -> list[dict] | None:
    if not body.tools or body.tool_choice == "none":
        return None
    return [t.model_dump(exclude_none=True) for t in body.tools]


def chat_prompt(state: ServerState, body: ChatRequest) -> list[int]:
    tools = _active_tools(body)
    has_tools = "tools" in state.template.source
    text = state.template.render_text(chat_messages(body.messages, tools, has_tools, state.hooks),
                                      add_generation_prompt=True,
                                      tools=tools if has_tools else None)
    return state.tokenizer.encode(text, allowed_special="all")


def chat_logprobs(tokenizer, items: list[TokenLogprob]) -> dict:
    def entry(t: int, lp: float) -> dict:
        s = token_str(tokenizer, t)
        return {"token": s, "logprob": lp, "bytes": list(tokenizer.token_bytes(t))}

    return {"content": [{**entry(x.token_id, x.logprob), "top_logprobs": [entry(t, v) for t, v in x.top]}
                        for x in items]}


def _tool_calls(calls, choice: int) -> list[dict]:
    return [{"id": f"call_{choice}_{k}_{new_id('t')[-8:]}", "type": "function",
             "function": {"name": c.name, "arguments": c.arguments}} for k, c in enumerate(calls)]


@router.post("/v1/chat/completions")
async def chat_completions(body: ChatRequest, request: Request):
    state: ServerState = request.app.state.llmkit
    state.check_model(body.model)
    check_n(state, body.n)
    ids = chat_prompt(state, body)
    max_tokens = body.max_completion_tokens if body.max_completion_tokens is not None else body.max_tokens
    if max_tokens is None:
        max_tokens = max(state.context - len(ids), 0)
    top = (body.top_logprobs or 0) if body.logprobs else None
    params = sampling_params(body, max_tokens, top)
    make = constraint_factory(state, body, body.response_format)
    reqs = submit_choices(state, [ids], params, body.n, make)
    rid, created = new_id("chatcmpl"), now()
    tools = _active_tools(body) is not None
    if body.stream:
        return StreamingResponse(_stream(state, body, reqs, len(ids), rid, created, tools),
                                 media_type="text/event-stream")
    results = await collect(state, request, reqs)
    choices = []
    for i, (done, _) in enumerate(results):
        text = done.text
        if state.hooks.check_output:
            text = state.hooks.check_output(text, client_system(body.messages))
        message, finish = {"role": "assistant", "content": text}, done.finish_reason
        if tools:
            content, calls = parse_tool_calls(text)
            if calls:
                message = {"role": "assistant", "content": content or None, "tool_calls": _tool_calls(calls, i)}
                finish = "tool_calls"
        lp = chat_logprobs(state.tokenizer, done.logprobs) if body.logprobs else None
        choices.append({"index": i, "message": message, "logprobs": lp, "finish_reason": finish})
    completion_tokens = sum(len(d.token_ids) for d, _ in results)
    return JSONResponse({"id": rid, "object": "chat.completion", "created": created, "model": state.model_id,
                         "choices": choices, "usage": usage(len(ids), completion_tokens),
                         "system_fingerprint": None})


async def _stream(state, body, reqs, prompt_tokens, rid, created, tools: bool):
    def chunk(i, delta, finish=None, logprobs=None):
        return {"id": rid, "object": "chat.completion.chunk", "created": created, "model": state.model_id,
                "system_fingerprint": None,
                "choices": [{"index": i, "delta": delta, "logprobs": logprobs, "finish_reason": finish}]}

    stops = state.engine.default_stop_ids
    full = {i: "" for i in range(len(reqs))}  # all text so far, per choice
    shown = {i: 0 for i in range(len(reqs))}  # characters already streamed as content
    for i in range(len(reqs)):
        yield sse(chunk(i, {"role": "assistant", "content": ""}))
    tally = Tally()
    check = state.hooks.check_output
    try:
        async for i, ev in stream_deltas(state, reqs, tally):
            full[i] += ev.text
            if check:  # a checked reply is held back whole: what was streamed cannot be taken back
                if not ev.finish_reason:
                    continue
                full[i] = check(full[i], client_system(body.messages))
            # with tools, content stops where a <tool_call> may begin; the calls are sent whole at the end
            upto = len(full[i])
            if tools:
                tag = full[i].find(OPEN_TAG)
                upto = tag if tag >= 0 else upto - held_suffix(full[i], [OPEN_TAG])
            text = full[i][shown[i]:upto] if upto > shown[i] else ""
            shown[i] = max(shown[i], upto)
            lp = None
            if body.logprobs and ev.logprob is not None and ev.token_id not in stops:
                lp = chat_logprobs(state.tokenizer, [ev.logprob])
            if ev.finish_reason:
                finish = ev.finish_reason
                if text or lp:
                    yield sse(chunk(i, {"content": text}, logprobs=lp))
                if tools:
                    content, calls = parse_tool_calls(full[i])
                    if calls:
                        deltas = [{"index": k, **c} for k, c in enumerate(_tool_calls(calls, i))]
                        yield sse(chunk(i, {"tool_calls": deltas}))
                        finish = "tool_calls"
                    elif shown[i] < len(full[i]):
                        yield sse(chunk(i, {"content": full[i][shown[i]:]}))
                yield sse(chunk(i, {}, finish))
            elif text or lp:
                yield sse(chunk(i, {"content": text}, logprobs=lp))
    except Exception as e:  # headers are sent: the error goes into the stream, OpenAI-style
        from llmkit.serve.errors import error_body

        yield sse(error_body(e)[1])
    if (body.stream_options or {}).get("include_usage"):
        yield sse({"id": rid, "object": "chat.completion.chunk", "created": created, "model": state.model_id,
                   "choices": [], "usage": usage(prompt_tokens, tally.completion_tokens)})
    yield sse("[DONE]")

