"""`llmkit finetune sft|dpo|orpo|kto|grpo|demo` and `llmkit lora merge`: parsing and printing only."""

from __future__ import annotations

import argparse

METHODS = ("sft", "dpo", "orpo", "kto", "grpo")


def cmd_finetune(a: argparse.Namespace) -> None:
    from llmkit.cli.train import overrides_from_flags
    from llmkit.core.runtime import is_main_process
    from llmkit.train.finetune import finetune
    from llmkit.train.ft_config import load_finetune_config

    cfg = load_finetune_config(a.config, overrides_from_flags(a.overrides), method=a.method)
    res = finetune(cfg)
    if not is_main_process():
        return
    metrics = ", ".join(f"{k} {v:.4f}" for k, v in res.metrics.items() if isinstance(v, float))
    print(f"stopped ({res.stopped}) at step {res.step} after {res.seconds:.0f} s: loss {res.loss:.4f}"
          + (f"; eval: {metrics}" if metrics else ""))
    if res.checkpoint:
        print(f"checkpoint: {res.checkpoint}")
    out = res.out_dir
    for name in ("adapter", "final"):
        if (out / name).is_dir():
            print(f"{name}: {out / name}")
    print(f"metrics: {out / 'metrics.jsonl'}, plot: {out / 'loss.png'}")


def cmd_demo(a: argparse.Namespace) -> None:
    from llmkit.train.demo import run_demo

    report = run_demo(out=a.out, quick=a.quick, seed=a.seed)
    print(report.table)
    print(f"report: {report.markdown_path}, plot: {report.png_path}")


def cmd_lora_merge(a: argparse.Namespace) -> None:
    from llmkit.formats.peft import merge_adapter

    print(f"wrote {merge_adapter(a.base, a.adapter, a.out, a.to)}")


def _keys_help() -> str:
    import dataclasses

    from llmkit.train.ft_config import FinetuneConfig

    rows = [f"  --{f.name.replace('_', '-'):<20} (default {f.default if f.default is not dataclasses.MISSING else f.default_factory()!r})"
            for f in dataclasses.fields(FinetuneConfig)]
    return "overridable keys (see llmkit/train/ft_config.py):\n" + "\n".join(rows)


def register(sub) -> None:
    p = sub.add_parser("finetune", help="fine-tune and align a model: SFT, DPO/IPO/hinge, ORPO, KTO, GRPO; the demo",
                       description="Fine-tune a model (default: the packaged SmolLM2-135M-Instruct) with LoRA or "
                                   "full fine-tuning on the pretraining loop (progress, eval, checkpoints, exact "
                                   "resume). `llmkit finetune demo` runs LoRA-SFT -> DPO -> GRPO on a skill and "
                                   "reports held-out accuracy after each stage.")
    methods = p.add_subparsers(dest="method", metavar="METHOD", required=True)
    for m in METHODS:
        mp = methods.add_parser(m, help=f"{m.upper()} from a YAML config plus --key value overrides",
                                description=f"Run {m.upper()}. Config: a YAML path or a packaged name in "
                                            f"configs/finetune/ (e.g. {m}-lora); then --key value overrides.",
                                epilog=_keys_help(), formatter_class=argparse.RawDescriptionHelpFormatter)
        mp.add_argument("--config", default=f"{m}-lora", help="YAML config path or packaged name (default %(default)s)")
        mp.set_defaults(func=cmd_finetune, accepts_overrides=True, method=m)
    dp = methods.add_parser("demo", help="LoRA-SFT -> DPO -> GRPO on multi-digit addition, accuracy table + PNG",
                            description="Teach SmolLM2-135M-Instruct 3-digit addition with a strict answer format "
                                        "and report held-out accuracy after each stage.")
    dp.add_argument("--quick", action="store_true", help="a few steps per stage (CI smoke run, minutes)")
    dp.add_argument("--out", default="runs/finetune-demo", help="output directory (default %(default)s)")
    dp.add_argument("--seed", type=int, default=0, help="seed for data and training (default %(default)s)")
    dp.set_defaults(func=cmd_demo)

    p = sub.add_parser("lora", help="LoRA adapter tools: merge an adapter into its base model",
                       description="Work with PEFT-layout LoRA adapters (adapter_model.safetensors + "
                                   "adapter_config.json).")
    tools = p.add_subparsers(dest="lora_verb", metavar="ACTION", required=True)
    mp = tools.add_parser("merge", help="fold an adapter into the base weights and write one model",
                          description="Load BASE, apply ADAPTER, merge W + (alpha/r)·B·A, write OUT.")
    mp.add_argument("base", help="base model: packaged name, checkpoint, HF directory or GGUF")
    mp.add_argument("adapter", help="adapter directory (PEFT layout)")
    mp.add_argument("out", help="output directory")
    mp.add_argument("--to", choices=["llmkit", "hf"], default="llmkit", help="output format (default %(default)s)")
    mp.set_defaults(func=cmd_lora_merge)
