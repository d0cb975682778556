"""`llmkit agent run|chat|route`: argument parsing and printing; the work is llmkit.agents.api."""

from __future__ import annotations

import json


def _common(p) -> None:
    p.add_argument("--tools", default="calculator",
                   help="comma-separated: calculator, python, sql[:PATH.db], rag[:COLLECTION] "
                        "(plain sql / rag use the bundled samples; default %(default)s)")
    p.add_argument("--model", "-m", default="smollm2", help="model name, .gguf, checkpoint or HF dir (default %(default)s)")
    p.add_argument("--react", action="store_true",
                   help="Thought/Action/Observation text instead of native <tool_call> JSON")
    p.add_argument("--max-steps", type=int, default=6, help="most model calls per task (default %(default)s)")
    p.add_argument("--rag-db", default=None, help="SQLite file of the RAG store (default: the rag default store)")
    p.add_argument("--trace", default=None, help="write every message, tool call and timing here as JSONL")
    p.add_argument("--guard", action="store_true",
                   help="prompt-injection defences (llmkit.guard): tool outputs spotlighted, instruction-hierarchy "
                        "system prompt with a canary, PII redacted, outputs checked for leaks")
    p.add_argument("--allow", default=None,
                   help="comma-separated tool allow-list; a call to any other tool becomes an error observation")


def _guard(a):
    """Composed here: agents and guard are sibling layers, neither imports the other."""
    if not a.guard:
        return None
    from llmkit.guard import Guard

    return Guard()


def _allowed(a):
    return [t.strip() for t in a.allow.split(",") if t.strip()] if a.allow else None


def cmd_run(a) -> None:
    from llmkit.agents.api import agent_run

    r = agent_run(a.task, tools=a.tools, model=a.model, mode="react" if a.react else "native",
                  tool_choice=a.tool_choice, constrained=not a.no_constrain, max_steps=a.max_steps,
                  max_seconds=a.max_seconds, max_tokens=a.max_tokens, system=a.system, few_shot=not a.zero_shot,
                  trace=a.trace, transcript=a.transcript, rag_db=a.rag_db, guard=_guard(a),
                  allowed_tools=_allowed(a))
    if a.json:
        print(json.dumps({"answer": r.answer, "stop_reason": r.stop_reason, "steps": r.steps,
                          "tool_calls": [t.to_dict() for t in r.tool_results], "prompt_tokens": r.prompt_tokens,
                          "completion_tokens": r.completion_tokens, "seconds": r.seconds}, ensure_ascii=False))
        return
    if a.verbose:
        print(r.trace.transcript(), end="")
    else:
        for t in r.tool_results:
            print(t.line(300))
    print(r.answer + ("" if r.stop_reason == "answer" else f"  ({r.stop_reason})"))


def cmd_chat(a) -> None:
    from llmkit.agents.api import agent_chat

    agent_chat(tools=a.tools, model=a.model, mode="react" if a.react else "native", max_steps=a.max_steps,
               memory_tokens=a.memory_tokens, trace=a.trace, rag_db=a.rag_db, guard=_guard(a))


def cmd_route(a) -> None:
    from llmkit.agents.api import agent_route

    r = agent_route(a.question, sources=a.sources, model=a.model, k=a.k, max_tokens=a.max_tokens,
                    rag_db=a.rag_db, trace=a.trace, transcript=a.transcript)
    if a.json:
        print(json.dumps({"route": r.route, "answer": r.answer, "sql": r.sql, "table": r.table,
                          "passages": r.passages, "relevant": r.relevant, "fell_back": r.fell_back},
                         ensure_ascii=False))
        return
    if a.verbose:
        print(r.trace.transcript(), end="")
    note = " (no passage passed the relevance check: answered directly)" if r.fell_back else ""
    print(f"route: {r.route}{note}")
    if r.sql:
        print(f"sql: {r.sql}\n{r.table}")
    print(r.answer)


def register(sub) -> None:
    p = sub.add_parser("agent", help="tool-using agents: calculator, sandboxed Python, SQL, RAG",
                       description="Agents over llmkit's engine: tools from typed functions, native <tool_call> "
                                   "function calling with constrained decoding, or a ReAct loop; limits on steps, "
                                   "time and tokens; a full JSONL trace.")
    rs = p.add_subparsers(dest="agent_verb", metavar="ACTION", required=True)

    q = rs.add_parser("run", help="run one task to an answer")
    q.add_argument("task", help="what to do, e.g. \"What is 17 * 23?\"")
    _common(q)
    q.add_argument("--tool-choice", default="first", choices=["first", "auto", "required", "none"],
                   help="first: the first step must call a tool (constrained), then free; auto: the model "
                        "decides; required: every step calls (default %(default)s)")
    q.add_argument("--no-constrain", action="store_true", help="decode calls freely (parse and hope) instead of "
                                                               "under the tool-schema grammar")
    q.add_argument("--zero-shot", action="store_true", help="no worked tool example in the prompt")
    q.add_argument("--max-seconds", type=float, default=300.0, help="wall-clock limit (default %(default)s)")
    q.add_argument("--max-tokens", type=int, default=2048, help="completion-token limit (default %(default)s)")
    q.add_argument("--system", default=None, help="system prompt")
    q.add_argument("--transcript", default=None, help="write a readable transcript here")
    q.add_argument("--verbose", "-v", action="store_true", help="print the whole transcript")
    q.add_argument("--json", action="store_true", help="print the result as JSON")
    q.set_defaults(func=cmd_run)

    q = rs.add_parser("route", help="answer from the database, the documents or directly (router)",
                      description="One constrained choice picks the source: sql (text-to-SQL over the "
                                  "database, read-only), docs (retrieval, each passage graded for relevance "
                                  "first; with none relevant it answers directly) or direct.")
    q.add_argument("question", help="the question, e.g. \"How many orders are there?\"")
    q.add_argument("--sources", default="sql,rag",
                   help="comma-separated: sql[:PATH.db], rag[:COLLECTION]; plain sql / rag use the bundled "
                        "samples (default %(default)s)")
    q.add_argument("--model", "-m", default="smollm2", help="model name, .gguf, checkpoint or HF dir (default %(default)s)")
    q.add_argument("--k", type=int, default=3, help="passages retrieved and graded (default %(default)s)")
    q.add_argument("--max-tokens", type=int, default=96, help="longest answer (default %(default)s)")
    q.add_argument("--rag-db", default=None, help="SQLite file of the RAG store (default: the rag default store)")
    q.add_argument("--trace", default=None, help="write the route, SQL, grades and answer here as JSONL")
    q.add_argument("--transcript", default=None, help="write a readable transcript here")
    q.add_argument("--verbose", "-v", action="store_true", help="print the whole transcript")
    q.add_argument("--json", action="store_true", help="print the result as JSON")
    q.set_defaults(func=cmd_route)

    q = rs.add_parser("chat", help="interactive agent with memory (a summarizing buffer)")
    _common(q)
    q.add_argument("--memory-tokens", type=int, default=1024,
                   help="conversation memory budget; older turns are summarized (default %(default)s)")
    q.set_defaults(func=cmd_chat)
