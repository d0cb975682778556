"""The agent loop with scripted models: calls, observations, limits, traces, guard hooks, memory."""

import json
import re
import time

import pytest

from llmkit.agents.builtin.calculator import calculator
from llmkit.agents.errors import AgentError
from llmkit.agents.llm import EngineChat, ScriptedChat
from llmkit.agents.loop import Agent, Limits
from llmkit.agents.memory import BufferMemory, SummaryMemory
from llmkit.agents.tools import tool
from llmkit.core.errors import LLMKitError
from llmkit.generate.tools import parse_tool_calls

CALL = '<tool_call>\n{"name": "calculator", "arguments": {"expression": "17 * 23"}}\n</tool_call>'


def test_native_call_then_answer():
    llm = ScriptedChat([CALL, "The answer is 391."])
    r = Agent(llm, [calculator], few_shot=False).run("What is 17 * 23?")
    assert r.answer == "The answer is 391." and r.stop_reason == "answer" and r.steps == 2
    assert [t.content for t in r.tool_results] == ["391"]
    second = llm.calls[1]["messages"]
    assert second[-1] == {"role": "tool", "name": "calculator", "content": "391"}
    assert second[-2]["tool_calls"][0]["name"] == "calculator"
    assert llm.calls[0]["tools"][0]["function"]["name"] == "calculator"


def test_first_step_is_constrained_to_a_call_then_free():
    llm = ScriptedChat([CALL, "391"])
    Agent(llm, [calculator], tool_choice="first").run("17*23?")
    assert llm.calls[0]["regex"] is not None and llm.calls[0]["regex"].startswith("<tool_call>")
    assert llm.calls[1]["regex"] is None
    llm = ScriptedChat([CALL, CALL, "391"])
    Agent(llm, [calculator], tool_choice="required", limits=Limits(max_steps=2)).run("17*23?")
    assert all(c["regex"] is not None for c in llm.calls)


def test_few_shot_demonstration_comes_from_the_tool_example():
    llm = ScriptedChat(["391"])
    Agent(llm, [calculator]).run("17*23?")
    msgs = llm.calls[0]["messages"]
    assert msgs[1]["content"] == "What is 12 times 12?" and msgs[3] == {"role": "tool", "name": "calculator",
                                                                         "content": "144"}


@pytest.mark.parametrize("bad, needle", [
    ('<tool_call>{"name": "calculator", "arguments": {"expression": 5}}</tool_call>', "valid string"),
    ('<tool_call>{"name": "calculator", "arguments": {}}</tool_call>', "Field required"),
    ('<tool_call>{"name": "calculator", "arguments": {"expression": "1/0"}}</tool_call>', "division by zero"),
    ('<tool_call>{"name": "calc", "arguments": {}}</tool_call>', "unknown tool 'calc'"),
    ('<tool_call>{"name": "calculator", "arguments": {"expr', "malformed tool call"),
    ("<tool_call>not json at all</tool_call>", "malformed tool call"),
])
def test_bad_calls_become_observations_and_the_run_goes_on(bad, needle):
    llm = ScriptedChat([bad, "sorry"])
    r = Agent(llm, [calculator], few_shot=False).run("q")
    assert r.stop_reason == "answer" and r.answer == "sorry"
    assert not r.tool_results[0].ok and needle in r.tool_results[0].content
    assert needle in llm.calls[1]["messages"][-1]["content"]


def test_raising_and_timing_out_tools_are_observations():
    @tool
    def explode(x: int) -> int:
        """Always fails."""
        raise ValueError("nope")

    @tool(timeout=0.1)
    def hang(x: int) -> int:
        """Never returns in time."""
        time.sleep(3)
        return x

    script = ['<tool_call>{"name": "explode", "arguments": {"x": 1}}</tool_call>',
              '<tool_call>{"name": "hang", "arguments": {"x": 1}}</tool_call>', "done"]
    r = Agent(ScriptedChat(script), [explode, hang]).run("q")
    assert r.answer == "done"
    assert [x.content for x in r.tool_results] == ["error: ValueError: nope", "error: timed out after 0.1 s"]


def test_allowed_tools_hide_and_refuse_others():
    @tool
    def delete_everything(confirm: bool) -> str:
        """Dangerous."""
        raise AssertionError("must never run")

    llm = ScriptedChat(['<tool_call>{"name": "delete_everything", "arguments": {"confirm": true}}</tool_call>',
                        "ok"])
    r = Agent(llm, [calculator, delete_everything], allowed_tools=["calculator"], few_shot=False).run("q")
    assert [t["function"]["name"] for t in llm.calls[0]["tools"]] == ["calculator"]
    assert "not allowed" in r.tool_results[0].content
    with pytest.raises(AgentError, match="unknown tools"):
        Agent(llm, [calculator], allowed_tools=["nope"])


def test_limits_end_the_run_with_a_reason():
    r = Agent(ScriptedChat([CALL] * 10), [calculator], limits=Limits(max_steps=3)).run("q")
    assert r.stop_reason == "max_steps" and r.steps == 3 and r.answer == ""
    long = CALL + " " * 400  # ~100 scripted "tokens" per reply
    r = Agent(ScriptedChat([long] * 10), [calculator], limits=Limits(max_steps=10, max_tokens=150)).run("q")
    assert r.stop_reason == "tokens" and r.steps == 2

    def slow(messages):
        time.sleep(0.3)
        return CALL

    r = Agent(ScriptedChat([slow] * 10), [calculator], limits=Limits(max_steps=10, max_seconds=0.5)).run("q")
    assert r.stop_reason == "time" and r.steps <= 2
    with pytest.raises(AgentError):
        Limits(max_steps=0)


def test_context_overflow_ends_the_run_instead_of_crashing():
    from llmkit.core.errors import ContextOverflowError

    def full(messages):
        raise ContextOverflowError("prompt of 9000 tokens exceeds the context window of 8192", "shorten it")

    r = Agent(ScriptedChat([CALL, full]), [calculator], few_shot=False).run("q")
    assert r.stop_reason == "context" and r.answer == "" and r.tool_results[0].content == "391"
    assert r.trace.of("error")


def test_trace_jsonl_and_transcript(tmp_path):
    r = Agent(ScriptedChat([CALL, "391"]), [calculator], few_shot=False).run("What is 17 * 23?")
    path = tmp_path / "run.jsonl"
    r.trace.write_jsonl(path)
    events = [json.loads(line) for line in path.read_text().splitlines()]
    kinds = [e["type"] for e in events]
    assert kinds[0] == "message" and kinds[-1] == "final"
    assert kinds.count("llm") == 2 and kinds.count("tool_call") == 1 and kinds.count("tool_result") == 1
    assert all(e["t"] >= 0 for e in events) and events[-1]["answer"] == "391"
    text = r.trace.transcript()
    assert 'CALL calculator({"expression": "17 * 23"})' in text and "RESULT calculator [ok" in text
    assert "FINAL (answer): 391" in text


class FakeGuard:
    def __init__(self):
        self.seen = []

    def system_prompt(self, base):
        return "GUARDED. " + (base or "")

    def wrap_untrusted(self, text, source):
        self.seen.append(source)
        return f"<<{source}>>{text}<</{source}>>"

    def check_input(self, text):
        if "forbidden" in text:
            raise LLMKitError("input refused", "ask something else")
        return text.replace("secret@example.com", "[EMAIL]")

    def check_output(self, text):
        return text.replace("391", "[REDACTED]")


def test_guard_hooks_wrap_every_tool_output():
    guard = FakeGuard()
    llm = ScriptedChat([CALL, '<tool_call>{"name": "nope", "arguments": {}}</tool_call>', "It is 391"])
    r = Agent(llm, [calculator], guard=guard, few_shot=False).run("mail secret@example.com: 17*23?")
    msgs = llm.calls[-1]["messages"]
    assert msgs[0]["content"].startswith("GUARDED. ")
    assert "[EMAIL]" in msgs[1]["content"] and "secret@" not in json.dumps(llm.calls)
    assert [m["content"] for m in msgs if m["role"] == "tool"][0] == "<<tool:calculator>>391<</tool:calculator>>"
    assert guard.seen == ["tool:calculator", "tool:nope"]  # error observations are wrapped too
    assert r.answer == "It is [REDACTED]"
    refused = Agent(ScriptedChat(["x"]), [calculator], guard=guard).run("a forbidden question")
    assert refused.stop_reason == "refused_input" and refused.steps == 0


def test_react_loop_parses_actions_and_writes_observations():
    llm = ScriptedChat([' multiply\nAction: calculator\nAction Input: {"expression": "17 * 23"}\nObservation: 5',
                        " done\nAction: calculator\nAction Input: {broken",
                        " I know it\nFinal Answer: 391"])
    r = Agent(llm, [calculator], mode="react", constrained=False).run("17*23?")
    assert r.answer == "391" and r.steps == 3
    assert r.tool_results[0].content == "391"  # the model's invented "Observation: 5" was cut at the stop
    assert "not valid JSON" in r.tool_results[1].content
    third = llm.calls[2]["prefix"]
    assert "Observation: 391\n" in third and third.endswith("Thought:")
    assert "Final Answer" in llm.calls[0]["messages"][0]["content"]  # the ReAct instructions


def test_buffer_and_summary_memory_stay_in_budget():
    buf = BufferMemory(max_messages=3)
    for i in range(5):
        buf.add({"role": "user", "content": f"m{i}"})
    assert [m["content"] for m in buf.messages()] == ["m2", "m3", "m4"]
    summarizer = ScriptedChat([lambda msgs: "The user is Ana; she likes 7." * 3] * 20)
    mem = SummaryMemory(summarizer, budget_tokens=60, keep_last=2)
    for i in range(12):
        mem.add({"role": "user" if i % 2 == 0 else "assistant", "content": f"turn {i} " + "word " * 10})
        assert mem.tokens() <= 60
    assert mem.summaries_written >= 1 and mem.messages()[0]["content"].startswith("Summary of the earlier")
    assert mem.messages()[-1]["content"].startswith("turn 11")


def test_agent_remembers_previous_turns():
    llm = ScriptedChat(["Hi Ana.", "Your name is Ana."])
    agent = Agent(llm, [], few_shot=False)
    agent.run("My name is Ana.")
    agent.run("What is my name?")
    assert {"role": "assistant", "content": "Hi Ana."} in llm.calls[1]["messages"]


def test_constrained_call_from_a_random_model_is_always_well_formed(random_lm):
    """Noise in, a valid call out: the grammar alone makes a random model call a registered tool correctly."""
    @tool
    def lookup(city: str, days: int) -> str:
        """Look up a city."""
        return f"{city}:{days}"

    llm = EngineChat(random_lm, repetition_penalty=1.0)
    agent = Agent(llm, [lookup, calculator], tool_choice="required", few_shot=False,
                  limits=Limits(max_steps=1, step_tokens=300))
    r = agent.run("anything")
    call_text = r.trace.of("llm")[0]["text"]
    _, calls = parse_tool_calls(call_text)
    assert len(calls) == 1 and calls[0].name in ("lookup", "calculator"), call_text
    assert r.tool_results[0].ok or "error: unsupported" in r.tool_results[0].content \
        or "cannot parse" in r.tool_results[0].content  # valid arguments; a random expression may not compute


def test_constrained_react_step_from_a_random_model_parses(random_lm):
    llm = EngineChat(random_lm, repetition_penalty=1.0)
    r = Agent(llm, [calculator], mode="react", tool_choice="required", few_shot=False,
              limits=Limits(max_steps=1, step_tokens=700)).run("anything")  # thought + call fit
    text = r.trace.of("llm")[0]["text"]
    assert r.trace.of("tool_call"), text  # an action, parsed, whose input validated as JSON
    assert "invalid arguments" not in r.tool_results[0].content and "not valid JSON" not in r.tool_results[0].content


def test_wall_clock_deadline_stops_decoding_mid_reply(random_lm, monkeypatch):
    """The deadline is checked at every token: a 2000-token constrained reply is cut, not waited for.

    The clock is a counter that ticks once per check, so the cut lands mid-reply however loaded the machine is.
    """
    import itertools

    import llmkit.agents.llm as llm_mod

    ticks = itertools.count()
    monkeypatch.setattr(llm_mod, "time", type("Clock", (), {"monotonic": staticmethod(lambda: float(next(ticks)))}))
    llm = EngineChat(random_lm, repetition_penalty=1.0)
    reply = llm.chat([{"role": "user", "content": "go"}], max_tokens=3000, regex="([a-z]{1000}){2}",
                     deadline=50.0)
    assert reply.finish_reason == "time" and 0 < reply.completion_tokens < 2000
    assert re.fullmatch("[a-z]+", reply.text)
    assert llm.scheduler.running == 0  # the cancelled request left the scheduler
