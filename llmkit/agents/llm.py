"""The model an agent talks to: chat messages in, one reply out, optionally under a regex constraint.

    llm = EngineChat.load("smollm2")
    reply = llm.chat(messages, tools=registry.specs(), max_tokens=128)
    reply = llm.chat(messages, regex=tool_call_regex(specs))   # a well-formed call, guaranteed

`EngineChat` renders with the model's own chat template (tools as a Hermes-style
system preamble when the template does not render `tools` itself; `tool` turns
fall back to a user turn for templates that refuse the role), then decodes
through the scheduler one token at a time in the calling thread, so the wall
clock deadline is checked at every token, and constrained masks apply exactly
as in the server. `ScriptedChat` replays canned replies: tests of the loop that
must not depend on what a 135M model happens to write.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Protocol, Sequence

from llmkit.core.errors import TemplateError
from llmkit.generate.tools import format_tool_call, with_tools_preamble


@dataclass
class Reply:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # stop | length | time


class ChatModel(Protocol):
    name: str

    def chat(self, messages: list[dict], *, tools: list[dict] | None = None, max_tokens: int = 256,
             stop: Sequence[str] = (), regex: str | None = None, prefix: str = "",
             deadline: float | None = None) -> Reply: ...

    def count_tokens(self, text: str) -> int: ...


def flatten_messages(messages: list[dict], tools: list[dict] | None, template_has_tools: bool,
                     tool_role: bool = True) -> list[dict]:
    """Agent messages -> plain {role, content} turns any chat template can render.

    Assistant tool calls go back into the model's own `<tool_call>` convention; without
    template support for `tools`, the tool list becomes part of the system prompt.
    """
    out = []
    for m in messages:
        content = m.get("content") or ""
        if m.get("tool_calls"):
            calls = [format_tool_call(c["name"], c["arguments"]) for c in m["tool_calls"]]
            content = "\n".join([content] * bool(content) + calls)
        role = m["role"]
        if role == "tool" and not tool_role:
            role, content = "user", f"<tool_response>\n{content}\n</tool_response>"
        out.append({"role": role, "content": content})
    return with_tools_preamble(out, tools) if tools and not template_has_tools else out


class EngineChat:
    """A loaded llmkit model behind the ChatModel protocol."""

    def __init__(self, lm, template: str | None = None, repetition_penalty: float = 1.1):
        from llmkit.generate.api import chat_template_for
        from llmkit.generate.engine import Engine
        from llmkit.generate.scheduler import Scheduler

        self.lm = lm
        self.name = lm.name
        self.tokenizer = lm.tokenizer
        self.template = chat_template_for(lm, template)
        self.engine = Engine(lm.model, lm.tokenizer)
        self.scheduler = Scheduler(self.engine, max_batch=1)
        self.context = lm.model.cfg.max_seq_len
        self.repetition_penalty = repetition_penalty
        self._tool_role = True

    @classmethod
    def load(cls, model: str = "smollm2", device: str = "auto", **kwargs) -> EngineChat:
        from llmkit.formats.loader import load_model

        return cls(load_model(model, device=device, keep_quantized="auto"), **kwargs)

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text, allowed_special="all"))

    def render(self, messages: list[dict], tools: list[dict] | None = None, prefix: str = "") -> str:
        has_tools = "tools" in self.template.source
        kwargs = {"tools": tools} if has_tools and tools else {}
        try:
            text = self.template.render_text(flatten_messages(messages, tools, has_tools, self._tool_role),
                                             add_generation_prompt=True, **kwargs)
        except TemplateError:
            if not self._tool_role or not any(m["role"] == "tool" for m in messages):
                raise
            self._tool_role = False  # this template has no `tool` role: results travel as user turns
            return self.render(messages, tools, prefix)
        return text + prefix

    def chat(self, messages: list[dict], *, tools: list[dict] | None = None, max_tokens: int = 256,
             stop: Sequence[str] = (), regex: str | None = None, prefix: str = "",
             deadline: float | None = None) -> Reply:
        from llmkit.generate.sampling import SamplingParams

        ids = self.tokenizer.encode(self.render(messages, tools, prefix), allowed_special="all")
        max_tokens = max(1, min(max_tokens, self.context - len(ids) - 1))
        constraint = None
        if regex is not None:
            from llmkit.generate.constrain import compile_regex

            grammar = compile_regex(regex, self.tokenizer, self.engine.default_stop_ids,
                                    self.lm.model.cfg.vocab_size)
            constraint = grammar.start()
        # a mild repetition penalty keeps greedy 135M-model text from looping; under a grammar the
        # mask already decides the shape, and penalising repeated quotes and braces would only hurt
        penalty = 1.0 if constraint is not None else self.repetition_penalty
        params = SamplingParams(max_tokens=max_tokens, temperature=0.0, stop=list(stop), repetition_penalty=penalty)
        return self._decode(ids, params, constraint, deadline)

    def _decode(self, ids, params, constraint, deadline: float | None) -> Reply:
        from llmkit.generate.engine import Completion, Delta

        req = self.scheduler.submit(ids, params, constraint=constraint)
        while not req.finished:
            if deadline is not None and time.monotonic() > deadline and not req.cancelled:
                req.cancel()  # the scheduler drops it at the next token boundary
            self.scheduler.step()
        pieces, n, done = [], 0, None
        for ev in req.iter():
            if isinstance(ev, Delta):
                pieces.append(ev.text)
                n += ev.token_id is not None
            elif isinstance(ev, Completion):
                done = ev
        if done is None:  # cancelled at the deadline: keep what was written
            return Reply("".join(pieces), len(ids), n, "time")
        return Reply(done.text, len(ids), len(done.token_ids), done.finish_reason)


@dataclass
class ScriptedChat:
    """Replays `replies` in order (a callable gets the messages and returns the text): a stand-in model."""

    replies: list[str | Callable[[list[dict]], str]]
    name: str = "scripted"
    calls: list[dict] = field(default_factory=list)

    def count_tokens(self, text: str) -> int:
        return max(1, len(text) // 4) if text else 0  # roughly a BPE token per four characters

    def chat(self, messages: list[dict], *, tools: list[dict] | None = None, max_tokens: int = 256,
             stop: Sequence[str] = (), regex: str | None = None, prefix: str = "",
             deadline: float | None = None) -> Reply:
        self.calls.append({"messages": [dict(m) for m in messages], "tools": tools, "regex": regex,
                           "prefix": prefix})
        if not self.replies:
            return Reply("", 0, 0, "stop")
        nxt = self.replies.pop(0)
        text = nxt(messages) if callable(nxt) else nxt
        for s in stop:
            if s in text:
                text = text[:text.index(s)]
        prompt = sum(self.count_tokens(m.get("content") or "") for m in messages)
        return Reply(text, prompt, self.count_tokens(text), "stop")
