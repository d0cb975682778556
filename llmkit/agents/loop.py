"""The agent loop: the model proposes, tools run, results go back, until an answer or a limit.

    agent = Agent(EngineChat.load(), [calculator], mode="native", tool_choice="first")
    result = agent.run("What is 17 * 23?")
    result.answer, result.stop_reason; result.trace.write_jsonl("run.jsonl")

Two modes share everything but the message format:
- native: the model's own `<tool_call>{json}</tool_call>` convention; results return as
  `tool` turns rendered by its chat template. With tool_choice "required" (every step) or
  "first" (the first step), constrained decoding admits only a well-formed call to an
  allowed tool, valid for that tool's schema.
- react: Thought / Action / Observation text in one assistant turn, for models without
  native calling; `constrained=True` makes every step a grammar-valid action or answer.

Nothing a tool or the model does ends the run with an exception: bad arguments, a raising
or timed-out tool, malformed call text and disallowed tools all become observations.
Limits (steps, wall time, completion tokens) end it with `stop_reason` saying which.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from llmkit.agents.errors import AgentError
from llmkit.agents.hooks import Guard, NoGuard
from llmkit.agents.llm import ChatModel, Reply
from llmkit.agents.memory import BufferMemory
from llmkit.agents.react import STOP, ReActStep, format_step, parse_react, react_system_prompt, step_regex
from llmkit.agents.tools import Tool, ToolRegistry, ToolResult, decoding_specs
from llmkit.agents.trace import Trace
from llmkit.core.errors import ContextOverflowError, LLMKitError
from llmkit.generate.tools import OPEN_TAG, parse_tool_calls, tool_call_regex

MODES = ("native", "react")
TOOL_CHOICES = ("auto", "required", "first", "none")
DEFAULT_SYSTEM = "You are a helpful assistant. Use a tool when it helps; answer briefly."


@dataclass
class Limits:
    max_steps: int = 6  # model calls in one run
    max_seconds: float = 300.0  # wall clock for the whole run, checked at every token
    max_tokens: int = 2048  # completion tokens over the whole run
    step_tokens: int = 256  # completion tokens per model call
    tool_timeout: float | None = 30.0  # seconds per tool call (None = no limit)

    def __post_init__(self) -> None:
        if self.max_steps < 1 or self.max_seconds <= 0 or self.max_tokens < 1 or self.step_tokens < 1:
            raise AgentError(f"invalid limits {self}", "max_steps, max_tokens, step_tokens >= 1 and max_seconds > 0")


@dataclass
class AgentResult:
    answer: str
    stop_reason: str  # answer | max_steps | time | tokens | context | refused_input | refused_output
    steps: int
    tool_results: list[ToolResult]
    trace: Trace
    prompt_tokens: int = 0
    completion_tokens: int = 0
    messages: list[dict] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return self.trace.events[-1]["t"] if self.trace.events else 0.0


def _parsed(arguments):
    """Arguments as an object in the trace when they are JSON, else the raw text the model wrote."""
    try:
        return json.loads(arguments) if isinstance(arguments, str) else arguments
    except json.JSONDecodeError:
        return arguments


class _Run:
    """Book-keeping of one run: limits, usage, trace."""

    def __init__(self, limits: Limits):
        self.limits = limits
        self.trace = Trace()
        self.deadline = time.monotonic() + limits.max_seconds
        self.steps = self.prompt_tokens = self.completion_tokens = 0
        self.results: list[ToolResult] = []

    def exhausted(self) -> str | None:
        if self.steps >= self.limits.max_steps:
            return "max_steps"
        if time.monotonic() >= self.deadline:
            return "time"
        if self.completion_tokens >= self.limits.max_tokens:
            return "tokens"
        return None

    def budget(self) -> int:
        return max(1, min(self.limits.step_tokens, self.limits.max_tokens - self.completion_tokens))

    def record(self, reply: Reply, seconds: float, constrained: bool) -> None:
        self.steps += 1
        self.prompt_tokens += reply.prompt_tokens
        self.completion_tokens += reply.completion_tokens
        self.trace.add("llm", step=self.steps, text=reply.text, prompt_tokens=reply.prompt_tokens,
                       completion_tokens=reply.completion_tokens, finish_reason=reply.finish_reason,
                       seconds=round(seconds, 4), constrained=constrained)


class Agent:
    def __init__(self, llm: ChatModel, tools: ToolRegistry | Iterable[Tool] = (), *, mode: str = "native",
                 system: str | None = None, tool_choice: str = "auto", constrained: bool = True,
                 guard: Guard | None = None, allowed_tools: Sequence[str] | None = None,
                 limits: Limits | None = None, memory=None, few_shot: bool = True):
        if mode not in MODES:
            raise AgentError(f"unknown agent mode {mode!r}", f"use one of {MODES}")
        if tool_choice not in TOOL_CHOICES:
            raise AgentError(f"unknown tool_choice {tool_choice!r}", f"use one of {TOOL_CHOICES}")
        self.llm = llm
        self.tools = tools if isinstance(tools, ToolRegistry) else ToolRegistry.of(tools)
        unknown = [n for n in allowed_tools or () if n not in self.tools]
        if unknown:
            raise AgentError(f"allowed_tools names unknown tools {unknown}", f"registered: {self.tools.names()}")
        self.mode, self.tool_choice, self.constrained = mode, tool_choice, constrained
        self.system = system
        self.guard = guard if guard is not None else NoGuard()
        self.allowed = list(allowed_tools) if allowed_tools is not None else None
        self.limits = limits or Limits()
        self.memory = memory if memory is not None else BufferMemory()
        self.few_shot = few_shot

    # ---- public ---------------------------------------------------------------------------------
    def visible_specs(self) -> list[dict]:
        """What the model is shown: the allow-list, when there is one."""
        return self.tools.specs(self.allowed) if self.tool_choice != "none" else []

    def example(self) -> dict | None:
        """The first visible tool's demonstration (few-shot), when it has one."""
        if not self.few_shot or self.tool_choice == "none":
            return None
        for t in self.tools.subset(self.allowed):
            if t.example:
                return {"name": t.name, **t.example}
        return None

    def _demo_messages(self) -> list[dict]:
        """One worked call as prior turns: a small model copies a shown format far better than a described one."""
        ex = self.example()
        if ex is None or self.mode != "native":
            return []
        # the demonstration's result is wrapped like a real one, so it shows the format the model will see
        result = self.guard.wrap_untrusted(str(ex["result"]), f"tool:{ex['name']}")
        return [{"role": "user", "content": ex["question"]},
                {"role": "assistant", "content": "", "tool_calls": [{"name": ex["name"], "arguments": ex["arguments"]}]},
                {"role": "tool", "name": ex["name"], "content": result},
                {"role": "assistant", "content": str(ex.get("answer", ex["result"]))}]

    def run(self, task: str) -> AgentResult:
        run = _Run(self.limits)
        try:
            task = self.guard.check_input(task)
        except LLMKitError as e:
            return self._finish(run, [], f"(refused: {e})", "refused_input")
        system = self.guard.system_prompt(self._base_system())
        messages = [{"role": "system", "content": system}] if system else []
        messages += self._demo_messages() + self.memory.messages() + [{"role": "user", "content": task}]
        for m in messages:
            calls = {"tool_calls": m["tool_calls"]} if m.get("tool_calls") else {}
            run.trace.add("message", role=m["role"], content=m["content"], **calls)
        try:
            answer, reason = (self._native if self.mode == "native" else self._react)(run, messages)
        except ContextOverflowError as e:  # the conversation outgrew the model: stop cleanly
            run.trace.add("error", message=str(e))
            answer, reason = "", "context"
        try:
            answer = self.guard.check_output(answer)
        except LLMKitError as e:
            answer, reason = f"(withheld: {e})", "refused_output"
        self.memory.add({"role": "user", "content": task})
        self.memory.add({"role": "assistant", "content": answer})
        return self._finish(run, messages, answer, reason)

    # ---- native tool calling --------------------------------------------------------------------
    def _native(self, run: _Run, messages: list[dict]) -> tuple[str, str]:
        specs = self.visible_specs()
        while (reason := run.exhausted()) is None:
            force = bool(specs) and (self.tool_choice == "required"
                                     or (self.tool_choice == "first" and not run.results))
            regex = tool_call_regex(decoding_specs(specs)) if force and self.constrained else None
            reply = self._chat(run, messages, specs, regex=regex)
            content, calls = parse_tool_calls(reply.text)
            if not calls and OPEN_TAG not in reply.text:
                return reply.text.strip(), "answer"
            messages.append({"role": "assistant", "content": content,
                             "tool_calls": [{"name": c.name, "arguments": c.arguments} for c in calls]})
            run.trace.add("message", role="assistant", content=reply.text)
            if not calls:  # it tried to call but the block is not a JSON {"name", "arguments"} object
                self._observe(run, messages, ToolResult("?", {}, False, "error: malformed tool call: write "
                              '<tool_call>{"name": "<tool>", "arguments": {...}}</tool_call> with valid JSON'))
            for c in calls:
                run.trace.add("tool_call", name=c.name, arguments=_parsed(c.arguments))
                self._observe(run, messages, self._call(c.name, c.arguments))
        return "", reason  # a limit ended it before an answer: no answer (the tool results are in the result)

    def _observe(self, run: _Run, messages: list[dict], result: ToolResult) -> str:
        run.results.append(result)
        run.trace.add("tool_result", **result.to_dict())
        content = self.guard.wrap_untrusted(result.content, f"tool:{result.name}")
        if self.mode == "native":
            messages.append({"role": "tool", "name": result.name, "content": content})
            run.trace.add("message", role="tool", content=content)
        return content

    def _call(self, name: str, arguments) -> ToolResult:
        return self.tools.call(name, arguments, self.allowed, self.limits.tool_timeout)

    # ---- ReAct ----------------------------------------------------------------------------------
    def _react(self, run: _Run, messages: list[dict]) -> tuple[str, str]:
        specs = self.visible_specs()
        scratch = ""
        while (reason := run.exhausted()) is None:
            first = not run.results
            must_act = bool(specs) and (self.tool_choice == "required" or (self.tool_choice == "first" and first))
            regex = None
            if self.constrained:
                regex = step_regex(decoding_specs(specs), allow_final=not must_act, allow_action=bool(specs))
            reply = self._chat(run, messages, None, regex=regex, prefix=scratch + "Thought:", stop=STOP)
            step = parse_react(reply.text)
            if step.final is not None:
                return step.final, "answer"
            if step.error is not None:
                observation = self._observe(run, messages, ToolResult(step.action or "?", {}, False,
                                                                      f"error: {step.error}"))
            else:
                run.trace.add("tool_call", name=step.action, arguments=_parsed(step.action_input))
                observation = self._observe(run, messages, self._call(step.action, step.action_input))
            scratch += format_step(step, observation)
            run.trace.add("message", role="assistant", content=format_step(step, observation))
        return "", reason

    def _base_system(self) -> str | None:
        if self.mode == "react":
            react = react_system_prompt(self.visible_specs(), self.example())
            return react if not self.system else self.system + "\n\n" + react
        return self.system if self.system is not None else DEFAULT_SYSTEM

    # ---- shared ---------------------------------------------------------------------------------
    def _chat(self, run: _Run, messages, specs, regex=None, prefix: str = "", stop=()) -> Reply:
        t0 = time.monotonic()
        reply = self.llm.chat(messages, tools=specs or None, max_tokens=run.budget(), stop=stop, regex=regex,
                              prefix=prefix, deadline=run.deadline)
        run.record(reply, time.monotonic() - t0, regex is not None)
        return reply

    def _finish(self, run: _Run, messages, answer: str, reason: str) -> AgentResult:
        run.trace.add("final", answer=answer, stop_reason=reason, steps=run.steps,
                      prompt_tokens=run.prompt_tokens, completion_tokens=run.completion_tokens)
        return AgentResult(answer, reason, run.steps, run.results, run.trace, run.prompt_tokens,
                           run.completion_tokens, messages)
