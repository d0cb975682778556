"""agent_run / agent_chat / build_tools: the functions behind `llmkit agent`, and one real SmolLM2 run."""

import json
import subprocess
import sys

import pytest

from llmkit.agents.api import agent_chat, agent_run, build_tools
from llmkit.agents.errors import AgentError
from llmkit.agents.llm import EngineChat, ScriptedChat

CALL = '<tool_call>{"name": "calculator", "arguments": {"expression": "6 * 7"}}</tool_call>'


def test_build_tools_from_specs(tmp_path):
    names = [t.name for t in build_tools("calculator, python,sql")]
    assert names == ["calculator", "python", "sql"]
    with pytest.raises(AgentError, match="unknown tool 'web'"):
        build_tools("calculator,web")
    with pytest.raises(AgentError, match="twice"):
        build_tools("calculator,calculator")
    with pytest.raises(AgentError, match="not found"):
        build_tools(f"sql:{tmp_path / 'missing.db'}")


def test_agent_run_writes_trace_and_transcript(tmp_path):
    trace, transcript = tmp_path / "t.jsonl", tmp_path / "t.txt"
    r = agent_run("6 times 7?", tools="calculator", llm=ScriptedChat([CALL, "42"]), trace=trace,
                  transcript=transcript)
    assert r.answer == "42" and r.stop_reason == "answer"
    events = [json.loads(x) for x in trace.read_text().splitlines()]
    assert events[-1]["type"] == "final" and any(e["type"] == "tool_result" and e["content"] == "42" for e in events)
    assert "FINAL (answer): 42" in transcript.read_text()


def test_agent_chat_repl_remembers_and_survives_bad_turns(tmp_path):
    lines = iter(["/help", "6 times 7?", "/bogus", "and again?", "/trace", "/reset", "/exit"])
    out = []
    llm = ScriptedChat([CALL, "42", "<tool_call>{broken</tool_call>", "still 42"])
    turns = agent_chat(tools="calculator", llm=llm, read=lambda _: next(lines), write=out.append,
                       trace=tmp_path / "chat.jsonl")
    text = "".join(out)
    assert turns == 2 and "42\n" in text and "unknown command '/bogus'" in text and "still 42" in text
    assert "[?] error: malformed tool call" in text and "[calculator] 42" in text and "(conversation forgotten)" in text
    assert any(m["content"] == "42" for m in llm.calls[2]["messages"])  # turn 1's answer is remembered
    assert sum(json.loads(x)["type"] == "final" for x in (tmp_path / "chat.jsonl").read_text().splitlines()) == 2


def test_cli_agent_errors_are_one_line():
    proc = subprocess.run([sys.executable, "-m", "llmkit", "agent", "run", "x", "--tools", "nope"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and proc.stderr.startswith("error: unknown tool 'nope'")
    assert len(proc.stderr.strip().splitlines()) == 1


def test_smollm2_calls_the_calculator_and_answers(smollm2):
    """The real model, the production path: a forced well-formed call, then the answer from the result."""
    r = agent_run("What is 17 * 23?", tools="calculator", llm=EngineChat(smollm2), step_tokens=64)
    assert r.tool_results and r.tool_results[0].ok and r.tool_results[0].content == "391"
    assert "391" in r.answer


def test_cli_agent_run_json_and_chat_exit(tmp_path):
    trace = tmp_path / "run.jsonl"
    proc = subprocess.run([sys.executable, "-m", "llmkit", "agent", "run", "What is 17 * 23?", "--json",
                           "--trace", str(trace)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["tool_calls"][0]["name"] == "calculator" and out["tool_calls"][0]["content"] == "391"
    assert trace.read_text().strip().splitlines()[-1].startswith('{"t"')
    proc = subprocess.run([sys.executable, "-m", "llmkit", "agent", "chat", "--tools", "calculator,python"],
                          input="/help\n/exit\n", capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "tools: calculator, python" in proc.stdout and "/reset" in proc.stdout


def test_cli_guard_and_allow_reach_the_agent(monkeypatch, capsys):
    """`llmkit agent run --guard --allow` composes llmkit.guard's Guard into the loop (cli is above both layers)."""
    import llmkit.agents.api as api
    from llmkit.cli.main import main
    from llmkit.guard import Guard

    seen = {}

    class Result:
        answer, stop_reason, tool_results = "391", "answer", []

    def fake_run(task, **kw):
        seen.update(kw, task=task)
        return Result()

    monkeypatch.setattr(api, "agent_run", fake_run)
    main(["agent", "run", "What is 17 * 23?", "--guard", "--allow", "calculator, python"])
    assert isinstance(seen["guard"], Guard) and seen["allowed_tools"] == ["calculator", "python"]
    assert capsys.readouterr().out.strip().endswith("391")
    main(["agent", "run", "What is 17 * 23?"])
    assert seen["guard"] is None and seen["allowed_tools"] is None
