"""`llmkit redteam`: argument parsing and printing; the work is llmkit.guard.redteam and llmkit.guard.train."""

from __future__ import annotations

import argparse
import json


def cmd_redteam(a: argparse.Namespace) -> None:
    from llmkit.guard.probes import FAMILIES
    from llmkit.guard.redteam import markdown, redteam, write_reports

    families = [f.strip() for f in a.families.split(",") if f.strip()] if a.families else list(FAMILIES)
    modes = [False, True] if a.compare else [a.guard]
    reports = [redteam(a.target, guard=g, families=families, max_tokens=a.max_tokens, concurrency=a.concurrency,
                       api_key=a.api_key, model_name=a.model_name, seed=a.seed, limit=a.limit) for g in modes]
    print(markdown(reports), end="")
    if a.out:
        for kind, path in write_reports(reports, a.out).items():
            print(f"wrote {kind}: {path}")


def cmd_train_detector(a: argparse.Namespace) -> None:
    from llmkit.guard.train import train_detector

    report = train_detector(out=a.out, n=a.n, seed=a.seed, steps=a.steps)
    print(json.dumps(report, indent=2))


def register(sub) -> None:
    p = sub.add_parser("redteam", help="probe an OpenAI-compatible endpoint for prompt injection, leaks, jailbreaks",
                       description="Run probe families (direct, indirect_rag, indirect_tool, leak, encoding, "
                                   "jailbreak) against --target and report the attack success rate per family.")
    p.add_argument("--target", default="smollm2",
                   help="http(s) URL of an OpenAI-compatible server, or a model spec served here on a loopback "
                        "port (default %(default)s)")
    p.add_argument("--guard", action="store_true", help="serve the model target with llmkit.guard's defences on")
    p.add_argument("--compare", action="store_true", help="run the model target twice, guards off and on")
    p.add_argument("--families", default=None, help="comma-separated probe families (default: all)")
    p.add_argument("--max-tokens", type=int, default=48, help="longest reply per probe (default %(default)s)")
    p.add_argument("--concurrency", type=int, default=4, help="requests in flight (default %(default)s)")
    p.add_argument("--api-key", default=None, help="bearer key for a URL target")
    p.add_argument("--model-name", default=None, help="model id to send (default: the first of GET /v1/models)")
    p.add_argument("--seed", type=int, default=0, help="seed for the planted tokens and secrets (default %(default)s)")
    p.add_argument("--limit", type=int, default=None, help="at most N probes per family (default: all)")
    p.add_argument("--out", default=None, help="directory for redteam.json, redteam.md and redteam.png")
    p.set_defaults(func=cmd_redteam)
    rs = p.add_subparsers(dest="redteam_verb", metavar="ACTION")
    q = rs.add_parser("train-detector", help="retrain the injection detector (deterministic) and print its metrics")
    q.add_argument("--out", default=None, help="where to write the weights (default: do not write; the shipped "
                                               "file is llmkit/guard/detector.npz)")
    q.add_argument("--n", type=int, default=12000, help="synthetic examples to generate (default %(default)s)")
    q.add_argument("--seed", type=int, default=0, help="generator seed (default %(default)s)")
    q.add_argument("--steps", type=int, default=300, help="full-batch Adam steps (default %(default)s)")
    q.set_defaults(func=cmd_train_detector)
