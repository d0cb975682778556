"""Fine-tuning throughput and peak memory on SmolLM2-135M: full vs LoRA vs QLoRA, llmkit vs transformers+PEFT.

    python bench/finetune.py [--steps 8] [--batch 4] [--adapters full,lora,qlora]
    python bench/finetune.py --packing [--steps 8] [--batch 8]    # LoRA SFT, padded vs packed rows

Each configuration runs in its own process (peak RSS is per process). The
same SFT batches (3-digit addition conversations, right-padded) go through
llmkit's loop and through a plain PyTorch loop over transformers (+ PEFT for
LoRA) loaded from our HF export. tok/s counts processed tokens (batch × padded
length, prompt and answer) per second between the end of the first and of
the last step, so loading, warm-up and the final checkpoint are excluded.

``--packing`` times llmkit's LoRA SFT on a mixed-length set (7 short arithmetic chats to 1 long
explanation) with right-padded rows and with packed rows (segment-masked attention). Both see the
same conversations per step, so conversations/s compares them directly.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _data(path: Path, n: int = 256) -> Path:
    import random

    rng = random.Random(0)
    recs = []
    for _ in range(n):
        a, b = rng.randint(100, 999), rng.randint(100, 999)
        recs.append({"messages": [{"role": "user", "content": f"What is {a} + {b}? Reply with only the number."},
                                  {"role": "assistant", "content": str(a + b)}]})
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    return path


def _mixed_data(path: Path, n: int = 256) -> Path:
    """7 short chats to 1 long one (about 30 vs 300 tokens): where padding wastes most."""
    import random

    rng = random.Random(0)
    long_answer = ("Carrying works column by column from the right. Add the ones digits; if the sum is ten or "
                   "more, write its last digit and carry one to the tens column. ") * 6
    recs = []
    for i in range(n):
        a, b = rng.randint(100, 999), rng.randint(100, 999)
        q, ans = (f"Explain how to add {a} and {b} by hand.", long_answer + f"So {a} + {b} = {a + b}.") if i % 8 == 7 \
            else (f"What is {a} + {b}? Reply with only the number.", str(a + b))
        recs.append({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": ans}]})
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    return path


def _sft_cfg(tmp: Path, adapter: str, steps: int, batch: int, **kw):
    from llmkit.train.ft_config import FinetuneConfig

    base = dict(method="sft", init_from="smollm2", data=str(_data(tmp / "d.jsonl")), out_dir=str(tmp / "run"),
                adapter=adapter, lora_r=8, lora_alpha=16, batch_size=batch, max_len=96, max_steps=steps, lr=1e-4,
                warmup=1, log_every=1, eval_every=10**6, ckpt_every=10**6, progress=False, save_merged=False,
                device="cpu")
    return FinetuneConfig(**{**base, **kw})


def _rate(run_dir: Path, key: str = "tokens", per_step: float | None = None) -> float:
    """tokens/s (or per_step units/s) between the first and the last logged step."""
    recs = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    recs = [r for r in recs if "tokens" in r]
    span = recs[-1]["time"] - recs[0]["time"]
    return (per_step * (len(recs) - 1) if per_step else recs[-1][key] - recs[0][key]) / span


def run_llmkit(adapter: str, steps: int, batch: int, tmp: Path) -> dict:
    from llmkit.train.finetune import build_policy, finetune

    cfg = _sft_cfg(tmp, adapter, steps, batch)
    finetune(cfg)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # before the policy is rebuilt below
    return {"tok_s": _rate(tmp / "run"), "peak_rss_mb": peak, "weights_mb": round(_weight_mb(build_policy(cfg).model))}


def run_packing(steps: int, batch: int, tmp: Path) -> dict:
    from llmkit.train.finetune import finetune

    out = {}
    for packing in (False, True):
        cfg = _sft_cfg(tmp, "lora", steps, batch, data=str(_mixed_data(tmp / "mixed.jsonl")), max_len=512,
                       packing=packing, out_dir=str(tmp / f"run-{packing}"))
        finetune(cfg)
        out["packed" if packing else "padded"] = _rate(Path(cfg.out_dir), per_step=batch)
    return out


def _weight_mb(model) -> float:
    """Bytes of every parameter and buffer the training model holds (tied tensors once): what QLoRA shrinks."""
    seen = {t.data_ptr(): t.numel() * t.element_size() for t in model.state_dict().values()}
    return sum(seen.values()) / 2**20


def run_hf(adapter: str, steps: int, batch: int, tmp: Path) -> dict:
    import torch
    import transformers

    from llmkit.data.batching import ExampleLoader
    from llmkit.formats.hf import save_hf
    from llmkit.formats.loader import load_model
    from llmkit.train.finetune import datasets
    from llmkit.train.ft_config import FinetuneConfig

    lm = load_model("smollm2", device="cpu", dtype="float32")
    save_hf(tmp / "hf", lm.config, lm.model.export_state_dict(), lm.tokenizer)
    cfg = FinetuneConfig(method="sft", data=str(_data(tmp / "d.jsonl")), max_len=96, batch_size=batch)
    train, _, collate = datasets(cfg, lm.tokenizer)
    del lm
    model = transformers.AutoModelForCausalLM.from_pretrained(tmp / "hf", dtype=torch.float32)
    if adapter == "lora":
        import peft

        model = peft.get_peft_model(model, peft.LoraConfig(r=8, lora_alpha=16, target_modules="all-linear",
                                                           task_type="CAUSAL_LM"))
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    loader = ExampleLoader(train, batch, collate, seed=1337)
    times, tokens = [], 0
    for i in range(steps):
        x, y = next(loader)
        logits = model(input_ids=x).logits
        loss = torch.nn.functional.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1))
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter())
        tokens += int(x.numel()) if i > 0 else 0  # as llmkit counts: every position the forward processes
    return {"tok_s": tokens / (times[-1] - times[0])}


def child(args) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        fn = run_llmkit if args.impl == "llmkit" else run_hf
        res = fn(args.adapter, args.steps, args.batch, Path(tmp))
    res.setdefault("peak_rss_mb", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(json.dumps(res))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--adapters", default="full,lora,qlora", help="comma-separated: full, lora, qlora")
    p.add_argument("--impl", default=None, help=argparse.SUPPRESS)
    p.add_argument("--adapter", default=None, help=argparse.SUPPRESS)
    p.add_argument("--packing", action="store_true", help="LoRA SFT conversations/s: padded vs packed rows")
    args = p.parse_args()
    if args.impl:
        return child(args)
    if args.packing:
        with tempfile.TemporaryDirectory() as tmp:
            r = run_packing(args.steps, args.batch, Path(tmp))
        print(f"\n| rows | conversations/s |\n|---|---|\n| padded | {r['padded']:.2f} |\n"
              f"| packed | {r['packed']:.2f} ({r['packed'] / r['padded']:.2f}x) |")
        return
    rows = []
    for adapter in args.adapters.split(","):
        # QLoRA has no CPU peer: bitsandbytes' 4-bit layers target CUDA, so that row is llmkit only
        for impl in ("llmkit",) if adapter == "qlora" else ("llmkit", "hf"):
            cmd = [sys.executable, __file__, "--impl", impl, "--adapter", adapter, "--steps", str(args.steps),
                   "--batch", str(args.batch)]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
            rows.append({"adapter": adapter, "impl": impl, **json.loads(out)})
            print(rows[-1], flush=True)
    print("\n| method | impl | tok/s | peak RSS (MB) | model weights (MB) |\n|---|---|---|---|---|")
    for r in rows:
        peer = next((x for x in rows if x["adapter"] == r["adapter"] and x["impl"] == "hf"), None)
        ratio = f" ({r['tok_s'] / peer['tok_s']:.2f}x)" if r["impl"] == "llmkit" and peer else ""
        print(f"| {r['adapter']} | {'llmkit' if r['impl'] == 'llmkit' else 'transformers+PEFT'} | "
              f"{r['tok_s']:.0f}{ratio} | {r['peak_rss_mb']:.0f} | {r.get('weights_mb', 0) or '—'} |")


if __name__ == "__main__":
    main()
