"""`llmkit pretrain`: argument parsing and printing only; the work is llmkit.train.loop.pretrain."""

from __future__ import annotations

import argparse


def overrides_from_flags(extra: list[str]) -> list[str]:
    """['--max-steps', '100', '--model.n_layer=4'] -> ['max_steps=100', 'model.n_layer=4']."""
    from llmkit.core.errors import ConfigError

    out, i = [], 0
    while i < len(extra):
        flag = extra[i]
        if not flag.startswith("--"):
            raise ConfigError(f"unexpected argument {flag!r}", "overrides are written --key value or --key=value")
        key, sep, value = flag[2:].partition("=")
        if not sep:
            if i + 1 >= len(extra):
                raise ConfigError(f"override {flag} has no value", f"write {flag} VALUE")
            value, i = extra[i + 1], i + 1
        prefix, dot, rest = key.rpartition(".")
        key = f"{prefix}{dot}{rest.replace('-', '_')}"
        out.append(f"{key}={value}")
        i += 1
    return out


def cmd_pretrain(a: argparse.Namespace) -> None:
    from llmkit.train.config import load_train_config
    from llmkit.train.loop import pretrain

    from llmkit.core.runtime import is_main_process

    cfg = load_train_config(a.config, overrides_from_flags(a.overrides))
    res = pretrain(cfg)
    if not is_main_process():  # under torchrun only rank 0 reports
        return
    bpb = f", val {res.val_bpb:.4f} bits/byte" if res.val_bpb is not None else ""
    val = f", val loss {res.val_loss:.4f}" if res.val_loss is not None else ""
    print(f"stopped ({res.stopped}) at step {res.step} after {res.seconds:.0f} s: loss {res.loss:.4f}{val}{bpb}")
    if res.checkpoint:
        print(f"checkpoint: {res.checkpoint}")
    print(f"metrics: {res.out_dir / 'metrics.jsonl'}, plot: {res.out_dir / 'loss.png'}")


def _human(x: float) -> str:
    for unit, div in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(x) >= div:
            return f"{x / div:.3g}{unit}"
    return f"{x:.3g}"


def cmd_plan(a: argparse.Namespace) -> None:
    import json

    from llmkit.model import PRESETS, Transformer
    from llmkit.train.plan import plan

    p = plan(a.params, a.tokens, a.flops, device=a.device, mfu=a.mfu, tflops=a.tflops)
    sizes = {name: Transformer(cfg, device="meta").num_params() for name, cfg in PRESETS.items()}
    nearest = min(sizes, key=lambda k: abs(sizes[k] - p.params) / p.params)
    if a.json:
        print(json.dumps({**p.to_dict(), "nearest_preset": nearest}, indent=2))
        return
    print("compute-optimal (Chinchilla, ~20 tokens/parameter):")
    print(f"  parameters      {_human(p.params)}   (nearest preset: {nearest}, {_human(sizes[nearest])})")
    print(f"  tokens          {_human(p.tokens)}")
    print(f"  training FLOPs  {p.flops:.3g}   (6 x params x tokens)")
    print(f"  memory          {p.train_memory_gb:.2f} GB for fp32 weights + grads + AdamW state, plus activations")
    print(f"  device          {p.device}: {p.sustained_tflops:.3g} TFLOP/s sustained (measured matmul x mfu {a.mfu})")
    days = p.hours / 24
    print(f"  time            {p.hours:.3g} h" + (f" ({days:.3g} days)" if days >= 1 else ""))


def cmd_quickstart(a: argparse.Namespace) -> None:
    from llmkit.train.quickstart import quickstart

    evaluate = None
    if a.eval_limit > 0:
        from llmkit.eval.harness import small_eval

        def evaluate(checkpoint: str) -> list[dict]:
            return small_eval(checkpoint, limit=a.eval_limit)

    quickstart(name=a.name, runs=a.runs, train_seconds=a.train_seconds, corpus_mb=a.corpus_mb,
               vocab_size=a.vocab_size, ask_smollm=not a.no_smollm, evaluate=evaluate)


def _keys_help() -> str:
    import dataclasses

    from llmkit.train.config import TrainConfig

    rows = []
    for f in dataclasses.fields(TrainConfig):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        rows.append(f"  --{f.name.replace('_', '-'):<18} (default {default!r})")
    return "overridable keys (see llmkit/train/config.py for what each does):\n" + "\n".join(rows) + \
        "\n  --model.KEY          any ModelConfig field of the model preset, e.g. --model.n_layer 4"


def register(sub) -> None:
    p = sub.add_parser(
        "pretrain", help="train a language model from scratch on prepared token shards",
        description="Pretrain a model. Settings come from a YAML config (a path, or a packaged name such as "
                    "'tiny'), then any --key value overrides of TrainConfig fields (e.g. --max-steps 200, "
                    "--lr 1e-3, --model.n_layer 4). Runs under torchrun for DDP: "
                    "torchrun --nproc_per_node=2 -m llmkit pretrain --config tiny. "
                    "Ctrl-C saves a checkpoint; rerunning the same command resumes exactly.",
        epilog=_keys_help(), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="tiny", help="YAML config path or packaged name (default %(default)s)")
    p.set_defaults(func=cmd_pretrain, accepts_overrides=True)

    p = sub.add_parser("quickstart", help="train a tokenizer and a small model from scratch in ~5 minutes, with a report",
                       description="The whole small-model lifecycle on the embedded corpus (the Python stdlib): "
                                   "tokenizer -> data -> pretraining -> samples -> bits/byte -> SmolLM2 explains; "
                                   "writes runs/NAME/report.md with the commands to run each step yourself.")
    p.add_argument("--name", default="quickstart", help="run name: output goes to RUNS/NAME (default %(default)s)")
    p.add_argument("--runs", default="runs", help="parent directory for runs (default %(default)s)")
    p.add_argument("--train-seconds", type=float, default=150.0,
                   help="time budget for pretraining; steps are sized to fit (default %(default)s)")
    p.add_argument("--corpus-mb", type=float, default=6.0, help="MB of stdlib text to use (default %(default)s)")
    p.add_argument("--vocab-size", type=int, default=4096, help="tokenizer vocabulary size (default %(default)s)")
    p.add_argument("--no-smollm", action="store_true", help="skip the SmolLM2 explanation step")
    p.add_argument("--eval-limit", type=int, default=50,
                   help="items per task of the small benchmark eval on the trained model; 0 = skip (default %(default)s)")
    p.set_defaults(func=cmd_quickstart)

    p = sub.add_parser("plan", help="compute-optimal model/data size, FLOPs, memory and time for a budget",
                       description="Chinchilla-style sizing: give one of --params, --tokens or --flops "
                                   "(or --params with --tokens) and get the rest, plus time on a device.")
    p.add_argument("--params", default=None, help="model size, e.g. 135M")
    p.add_argument("--tokens", default=None, help="training tokens, e.g. 2.7B")
    p.add_argument("--flops", default=None, help="compute budget in FLOPs, e.g. 1e18")
    p.add_argument("--device", default="auto", help="device to measure and plan for (default %(default)s)")
    p.add_argument("--mfu", type=float, default=0.4,
                   help="model FLOPs utilisation: the fraction of measured matmul speed training reaches (default %(default)s)")
    p.add_argument("--tflops", type=float, default=None, help="use this device TFLOP/s instead of measuring")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_plan)
