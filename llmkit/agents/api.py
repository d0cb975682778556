"""Typed functions behind `llmkit agent run|chat|route` (also the Python entry points).

    r = agent_run("What is 17 * 23?", tools="calculator")            # SmolLM2 by default
    r = agent_route("How many orders are there?", sources="sql,rag")  # r.route == "sql", r.sql, r.answer
    r = agent_run("How many orders are there?", tools="sql", trace="run.jsonl")
    r = agent_run("How long is the lamp warranty?", tools="rag", mode="react")

Tool specs, comma-separated: `calculator`, `python`, `sql` (the bundled sample shop
database) or `sql:PATH.db`, `rag` (the bundled sample docs) or `rag:COLLECTION`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable, Sequence

from llmkit.agents.errors import AgentError
from llmkit.agents.loop import Agent, AgentResult, Limits
from llmkit.agents.memory import SummaryMemory
from llmkit.agents.tools import Tool
from llmkit.core.fileio import atomic_write_file

TOOL_KINDS = ("calculator", "python", "sql", "rag")


def _spec_items(spec: str | Sequence[str]) -> list[str]:
    """`a,b:x` (or a list) -> ["a", "b:x"], blanks dropped."""
    return [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec) if s.strip()]


def build_tools(spec: str | Sequence[str], rag_db: str | None = None) -> list[Tool]:
    """`calculator,python,sql:shop.db,rag:docs` -> tools. `sql` / `rag` alone use the bundled samples."""
    items = _spec_items(spec)
    tools: list[Tool] = []
    for item in items:
        kind, _, arg = item.partition(":")
        if kind == "calculator":
            from llmkit.agents.builtin.calculator import calculator

            tools.append(calculator)
        elif kind == "python":
            from llmkit.agents.builtin.sandbox import python

            tools.append(python)
        elif kind == "sql":
            from llmkit.agents.builtin.sql import sample_db_path, sql_tool

            tools.append(sql_tool(arg or sample_db_path()))
        elif kind == "rag":
            from llmkit.agents.builtin.retriever import retriever_tool, sample_docs_collection

            tools.append(retriever_tool(arg or sample_docs_collection(rag_db), rag_db))
        else:
            raise AgentError(f"unknown tool {item!r}", f"use a comma-separated list of {', '.join(TOOL_KINDS)} "
                                                       "(sql:PATH.db, rag:COLLECTION)")
    names = [t.name for t in tools]
    if len(set(names)) != len(names):
        raise AgentError(f"tool list {items} names the same tool twice", "list each tool once")
    return tools


def make_agent(tools: str | Sequence[str | Tool] = "calculator", model="smollm2", mode: str = "native",
               tool_choice: str = "first", constrained: bool = True, system: str | None = None,
               limits: Limits | None = None, allowed_tools: Sequence[str] | None = None, guard=None,
               few_shot: bool = True, memory=None, rag_db: str | None = None, llm=None) -> Agent:
    """An Agent over a loaded model (`llm`, any ChatModel) or one loaded by name."""
    if isinstance(tools, str):
        resolved = build_tools(tools, rag_db)
    else:
        resolved = [t for t in tools if isinstance(t, Tool)] + build_tools([t for t in tools if isinstance(t, str)],
                                                                             rag_db)
    if llm is None:
        from llmkit.agents.llm import EngineChat

        llm = EngineChat.load(model) if isinstance(model, str) else EngineChat(model)
    return Agent(llm, resolved, mode=mode, system=system, tool_choice=tool_choice, constrained=constrained,
                 guard=guard, allowed_tools=allowed_tools, limits=limits, memory=memory, few_shot=few_shot)


def write_trace(result, trace: str | Path | None = None, transcript: str | Path | None = None) -> None:
    if trace:
        result.trace.write_jsonl(trace)
    if transcript:
        atomic_write_file(transcript, result.trace.transcript())


def agent_run(task: str, tools: str | Sequence[str | Tool] = "calculator", model="smollm2", mode: str = "native",
              tool_choice: str = "first", constrained: bool = True, max_steps: int = 6, max_seconds: float = 300.0,
              max_tokens: int = 2048, step_tokens: int = 256, system: str | None = None,
              allowed_tools: Sequence[str] | None = None, guard=None, few_shot: bool = True,
              trace: str | Path | None = None, transcript: str | Path | None = None, rag_db: str | None = None,
              llm=None) -> AgentResult:
    """Run one task to an answer or a limit; the trace (JSONL) and transcript (text) are written when asked."""
    limits = Limits(max_steps=max_steps, max_seconds=max_seconds, max_tokens=max_tokens, step_tokens=step_tokens)
    agent = make_agent(tools, model, mode, tool_choice, constrained, system, limits, allowed_tools, guard, few_shot,
                       rag_db=rag_db, llm=llm)
    result = agent.run(task)
    write_trace(result, trace, transcript)
    return result


def _route_sources(spec: str | Sequence[str], rag_db: str | None):
    """`sql,rag` / `sql:PATH.db,rag:COLLECTION` -> (SQLDatabase or None, retriever tool or None, docs topic)."""
    db = retriever = None
    topic = "the document collection"
    for item in _spec_items(spec):
        kind, _, arg = item.partition(":")
        if kind == "sql" and db is None:
            from llmkit.agents.builtin.sql import SQLDatabase, sample_db_path

            db = SQLDatabase(arg or sample_db_path())
        elif kind == "rag" and retriever is None:
            from llmkit.agents.builtin.retriever import retriever_tool, sample_docs_collection, sample_docs_dir

            retriever = retriever_tool(arg or sample_docs_collection(rag_db), rag_db)
            if arg:
                topic = f"the '{arg}' document collection"
            else:  # the bundled manuals: name the products, so the route prompt knows what the docs cover
                names = sorted(p.stem.replace("-", " ").title() for p in sample_docs_dir().glob("*.md"))
                topic = "the product manuals of " + ", ".join(names)
        else:
            raise AgentError(f"route source {item!r} is unknown or given twice",
                             "use sql[:PATH.db] and/or rag[:COLLECTION], each once")
    return db, retriever, topic


def agent_route(question: str, sources: str | Sequence[str] = "sql,rag", model="smollm2", k: int = 3,
                max_tokens: int = 96, rag_db: str | None = None, trace: str | Path | None = None,
                transcript: str | Path | None = None, llm=None):
    """Route one question to the database (text-to-SQL), the documents (self-checked RAG) or a direct answer.

    Returns a ``RouteResult`` (route, answer, sql, table, passages, relevance grades, fell_back).
    """
    from llmkit.agents.router import Router

    if k < 1 or max_tokens < 1:
        raise AgentError(f"k={k}, max_tokens={max_tokens}", "both must be at least 1")
    if not question.strip():
        raise AgentError("the question is empty", "pass the question to route")
    db, retriever, topic = _route_sources(sources, rag_db)
    if llm is None:
        from llmkit.agents.llm import EngineChat

        llm = EngineChat.load(model) if isinstance(model, str) else EngineChat(model)
    result = Router(llm, db, retriever, docs_topic=topic, k=k, max_tokens=max_tokens).ask(question)
    write_trace(result, trace, transcript)
    return result


HELP = "commands: /reset (forget the conversation), /trace (show the last run), /help, /exit"


def agent_chat(tools: str | Sequence[str | Tool] = "calculator", model="smollm2", mode: str = "native",
               tool_choice: str = "auto", memory_tokens: int = 1024, max_steps: int = 6, guard=None,
               trace: str | Path | None = None, read: Callable[[str], str] = input,
               write: Callable[[str], object] = sys.stdout.write, llm=None, rag_db: str | None = None) -> int:
    """A REPL over one agent whose memory summarizes to stay within `memory_tokens`; returns turns served.

    With `trace`, every turn's events are appended to one JSONL file (rewritten atomically each turn).
    """
    agent = make_agent(tools, model, mode, tool_choice, limits=Limits(max_steps=max_steps), guard=guard,
                       rag_db=rag_db, llm=llm)
    agent.memory = SummaryMemory(agent.llm, budget_tokens=memory_tokens)
    write(f"tools: {', '.join(agent.tools.names()) or 'none'}\n{HELP}\n")
    turns, log, last = 0, "", None
    while True:
        try:
            line = read(">>> ")
        except (EOFError, KeyboardInterrupt):
            write("\n")
            return turns
        cmd = line.strip()
        if not cmd:
            continue
        if cmd in ("/exit", "/quit"):
            return turns
        if cmd == "/help":
            write(HELP + "\n")
        elif cmd == "/reset":
            agent.memory.clear()
            write("(conversation forgotten)\n")
        elif cmd == "/trace":
            write(last.trace.transcript() if last else "(no run yet)\n")
        elif cmd.startswith("/"):
            write(f"unknown command {cmd.split()[0]!r}; {HELP}\n")
        else:
            last = agent.run(line)
            turns += 1
            for r in last.tool_results:
                write(f"  {r.line()}\n")
            note = "" if last.stop_reason == "answer" else f" ({last.stop_reason})"
            write(f"{last.answer}{note}\n")
            if trace:
                log += last.trace.to_jsonl()
                atomic_write_file(trace, log)
