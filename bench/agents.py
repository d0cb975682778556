"""Scripted tool-use tasks for SmolLM2: success with and without tools, per prompt format.

    python bench/agents.py [--configs none,native,native-free,react,native-guard] [--limit N] [--out runs/bench-agents]

Every task has a checkable answer: arithmetic (calculator), questions over the bundled sample
shop database (sql; the expected value comes from a reference query run here), questions over
the bundled sample docs (rag; facts that exist only in those files) and small computations
(python sandbox). Every run goes through `agent_run`, the function behind `llmkit agent run`,
with one model loaded once. Configs:

    none         no tools: the model answers directly (the baseline)
    native       <tool_call> JSON, first call forced well-formed by the tool-schema grammar, one-shot example
    native-free  the same prompt, calls decoded freely and parsed (tool_choice=auto, no grammar)
    react        Thought/Action/Observation text, every step under the ReAct grammar, one-shot example

A task succeeds when the final answer contains the expected number (numbers compared as
numbers) or phrase (case-insensitive); a run that ends on a limit (max_steps) has no answer and
fails. Greedy decoding, so one run per task is the result. Each run's trace is kept in OUT/traces.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ARITHMETIC = [("What is 17 * 23?", 391), ("What is 1234 + 5678?", 6912), ("What is 981 - 457?", 524),
              ("What is 144 divided by 12?", 12), ("What is 37 times 41?", 1517), ("What is 2 to the power of 16?", 65536),
              ("What is the square root of 1764?", 42), ("What is 15% of 640?", 96),
              ("What is (125 + 75) * 3?", 600), ("What is 9876 divided by 4?", 2469)]
SQL = [("How many orders are in the database?", "SELECT COUNT(*) FROM orders"),
       ("How many customers are there?", "SELECT COUNT(*) FROM customers"),
       ("How many products are in the furniture category?", "SELECT COUNT(*) FROM products WHERE category = 'furniture'"),
       ("What is the price of the most expensive product?", "SELECT MAX(price) FROM products"),
       ("How many customers live in Portugal?", "SELECT COUNT(*) FROM customers WHERE country = 'Portugal'"),
       ("What is the total quantity of items ordered across all orders?", "SELECT SUM(quantity) FROM orders"),
       ("Which city does Keiko Sato live in?", "SELECT city FROM customers WHERE name = 'Keiko Sato'"),
       ("What is the name of the cheapest product?", "SELECT name FROM products ORDER BY price LIMIT 1")]
DOCS = [("How long is the Orbit Lamp warranty?", "30 months"), ("What is the battery capacity of the Orbit Lamp?", "4000"),
        ("How long must the Tidepool Router reset button be held?", "15"),
        ("What is the recommended tyre pressure for the Kestrel e-bike?", "3.5"),
        ("How many devices can the Tidepool Router connect at once?", "64"),
        ("How powerful is the Kestrel motor in watts?", "250"),
        ("What color does the Tidepool Router light turn after a reset?", "violet")]
PYTHON = [("Use Python to compute the sum of the squares of the integers from 1 to 20.", 2870),
          ("Use Python to count the prime numbers below 100.", 25),
          ("Use Python to compute the 15th Fibonacci number (F1 = F2 = 1).", 610),
          ("Use Python to compute how many days there are from 2024-01-01 to 2024-03-01.", 60),
          ("Use Python to compute the sum of the digits of 2 to the power of 50.", 76),
          ("Use Python to reverse the string 'llmkit'.", "tikmll")]

CONFIGS = {"none": dict(tools=[], tool_choice="none"),
           "native": dict(mode="native", tool_choice="first", constrained=True),
           "native-free": dict(mode="native", tool_choice="auto", constrained=False),
           "react": dict(mode="react", tool_choice="first", constrained=True),
           # native with llmkit.guard's defaults: tool outputs spotlighted and checked, hierarchy prompt, canary
           "native-guard": dict(mode="native", tool_choice="first", constrained=True, guard=True)}


def tasks(db_path) -> list[dict]:
    from llmkit.agents.builtin.sql import SQLDatabase

    db = SQLDatabase(db_path)
    out = [{"kind": "arithmetic", "q": q, "want": a, "tools": "calculator"} for q, a in ARITHMETIC]
    for q, ref in SQL:  # the truth comes from the database itself, not from a number typed here
        (value,) = db.con.execute(ref).fetchone()
        out.append({"kind": "sql", "q": q, "want": value, "tools": "sql", "ref": ref})
    out += [{"kind": "docs", "q": q, "want": a, "tools": "rag"} for q, a in DOCS]
    out += [{"kind": "python", "q": q, "want": a, "tools": "python"} for q, a in PYTHON]
    return out


def numbers(text: str) -> list[float]:
    return [float(x.replace(",", "")) for x in re.findall(r"-?\d[\d,]*(?:\.\d+)?", text)]


def correct(answer: str, want) -> bool:
    if isinstance(want, (int, float)):
        return any(abs(x - want) <= 1e-6 * max(1.0, abs(want)) for x in numbers(answer))
    return str(want).lower() in answer.lower()


def run_config(name: str, items: list[dict], llm, rag_db: str, step_tokens: int,
               trace_dir: Path | None = None) -> list[dict]:
    from llmkit.agents.api import agent_run

    cfg = CONFIGS[name]
    rows = []
    for t in items:
        kw = {k: v for k, v in cfg.items() if k != "tools"}
        if kw.get("guard"):
            from llmkit.guard import Guard

            kw["guard"] = Guard()
        tools = cfg.get("tools", t["tools"])
        t0 = time.monotonic()
        r = agent_run(t["q"], tools=tools, llm=llm, max_steps=4, step_tokens=step_tokens, rag_db=rag_db, **kw)
        ok = correct(r.answer, t["want"])
        if trace_dir is not None:
            r.trace.write_jsonl(trace_dir / f"{name}-{len(rows):02d}.jsonl")
        calls = r.tool_results
        rows.append({"config": name, "kind": t["kind"], "q": t["q"], "want": t["want"], "answer": r.answer,
                     "ok": ok, "stop_reason": r.stop_reason, "steps": r.steps, "tool_calls": len(calls),
                     "valid_call": any(c.ok for c in calls), "seconds": round(time.monotonic() - t0, 2),
                     "completion_tokens": r.completion_tokens})
        print(f"{name:12s} {t['kind']:10s} {'OK ' if ok else 'no '} {r.answer[:70]!r}", flush=True)
    return rows


def summary(rows: list[dict], configs: list[str]) -> str:
    kinds = ["arithmetic", "sql", "docs", "python"]
    head = "| config | " + " | ".join(kinds) + " | all | a tool call ran ok | s / task |"
    lines = [head, "|" + "---|" * (len(kinds) + 4)]
    for c in configs:
        rs = [r for r in rows if r["config"] == c]
        cells = []
        for k in kinds:
            ks = [r for r in rs if r["kind"] == k]
            cells.append(f"{sum(r['ok'] for r in ks)}/{len(ks)}")
        valid = f"{sum(r['valid_call'] for r in rs)}/{len(rs)}" if c != "none" else "–"
        secs = sum(r["seconds"] for r in rs) / max(1, len(rs))
        lines.append(f"| {c} | " + " | ".join(cells) +
                     f" | **{sum(r['ok'] for r in rs)}/{len(rs)}** ({100 * sum(r['ok'] for r in rs) / max(1, len(rs)):.0f}%)"
                     f" | {valid} | {secs:.1f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", default="none,native,native-free,react", help="comma-separated configs to run")
    ap.add_argument("--limit", type=int, default=None, help="only the first N tasks of each kind")
    ap.add_argument("--step-tokens", type=int, default=96, help="completion tokens per model call")
    ap.add_argument("--out", default="runs/bench-agents", help="directory for results.jsonl and summary.md")
    a = ap.parse_args()
    from llmkit.agents.builtin.retriever import sample_docs_collection
    from llmkit.agents.builtin.sql import sample_db_path
    from llmkit.agents.llm import EngineChat

    rag_db = str(Path(tempfile.mkdtemp(prefix="llmkit-bench-agents-")) / "rag.db")
    sample_docs_collection(rag_db)
    items = tasks(sample_db_path())
    if a.limit:
        items = [t for k in ("arithmetic", "sql", "docs", "python") for t in [x for x in items if x["kind"] == k][:a.limit]]
    llm = EngineChat.load("smollm2")
    configs = [c.strip() for c in a.configs.split(",") if c.strip()]
    t0 = time.monotonic()
    out = Path(a.out)
    (out / "traces").mkdir(parents=True, exist_ok=True)
    rows = [r for c in configs for r in run_config(c, items, llm, rag_db, a.step_tokens, out / "traces")]
    (out / "results.jsonl").write_text("".join(json.dumps(r, default=str) + "\n" for r in rows))
    table = summary(rows, configs)
    (out / "summary.md").write_text(table + "\n")
    print(f"\n{len(items)} tasks x {len(configs)} configs in {time.monotonic() - t0:.0f} s\n\n{table}")


if __name__ == "__main__":
    main()
