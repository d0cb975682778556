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

    cfg = load_train_config(a.config, overrides_from_flags(a.overrides))
    res = pretrain(cfg)
    bpb = f", val {res.val_bpb:.4f} bits/byte" if res.val_bpb is not None else ""
    val = f", val loss {res.val_loss:.4f}" if res.val_loss is not None else ""
    print(f"stopped ({res.stopped}) at step {res.step} after {res.seconds:.0f} s: loss {res.loss:.4f}{val}{bpb}")
    if res.checkpoint:
        print(f"checkpoint: {res.checkpoint}")
    print(f"metrics: {res.out_dir / 'metrics.jsonl'}, plot: {res.out_dir / 'loss.png'}")


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
