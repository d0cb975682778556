"""Guards off vs on: red-team attack success per probe family against llmkit's server with SmolLM2,
and RAG answer quality (SQuAD EM / F1) with and without the guard's prompt hooks.

    OMP_NUM_THREADS=1 python bench/guard.py --answers 100 --out runs/guard

The first part is `llmkit redteam --target smollm2 --compare`; the second is `rag_eval` twice over
one loaded model, once plain and once through `rag_hooks(Guard())`.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def rag_quality(n: int, db: str) -> dict:
    from llmkit.guard import Guard
    from llmkit.guard.wiring import rag_hooks
    from llmkit.rag.api import rag_eval
    from llmkit.rag.llm import load_llm

    llm = load_llm()
    out = {}
    for name, hooks in (("off", None), ("on", rag_hooks(Guard()))):
        t = time.perf_counter()
        res = rag_eval("squad", answers=n, db=db, hooks=hooks, llm=llm)
        out[name] = dict(res["answers"], seconds=round(time.perf_counter() - t, 1))
        print(f"RAG answers, guards {name}: {out[name]}", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--answers", type=int, default=100, help="SQuAD questions to answer per setting")
    ap.add_argument("--out", default="runs/guard", help="output directory")
    ap.add_argument("--db", default="/tmp/llmkit-guard-squad.sqlite", help="SQLite store for the SQuAD index")
    ap.add_argument("--skip-redteam", action="store_true", help="only the RAG quality part")
    a = ap.parse_args()
    out = Path(a.out)
    result = {}
    if not a.skip_redteam:
        from llmkit.formats.loader import load_model
        from llmkit.guard.redteam import markdown, redteam, write_reports

        lm = load_model("smollm2")
        reports = [redteam("smollm2", guard=g, lm=lm) for g in (False, True)]
        print(markdown(reports), flush=True)
        write_reports(reports, out)
        result["redteam"] = {("on" if r.guard else "off"): r.families for r in reports}
    if a.answers:
        result["rag"] = rag_quality(a.answers, a.db)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
