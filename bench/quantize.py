"""Quantized decode speed and perplexity on SmolLM2, against transformers fp32, in one run.

    python bench/quantize.py [--tokens 32] [--repeats 3] [--batches 1,8] [--ppl-tokens 4096] [--kernels]

Rows: llmkit fp32 (the packaged GGUF dequantized), llmkit int8 (per-channel
absmax), llmkit int4 (group 32, round-to-nearest, int8 head), llmkit GGUF-native Q4_1
(the packaged file's own blocks, `keep_quantized=True`), and transformers
fp32 `generate` on the same GGUF. Greedy, EOS ignored, decode tok/s =
rows x (tokens - 1) / (time for N tokens - time for 1 token). Perplexity is on
held-out stdlib text, scored through the same kernels decode uses (every
linear layer runs the quantized kernel, int8-rounded activations included).
--kernels also times each SmolLM2 layer shape alone for every candidate kernel.
--llama-python PY also times llama.cpp (llama-cpp-python, run by interpreter PY) on the
same GGUF file, same prompt, same thread count, EOS suppressed, batch 1.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import time
import warnings

import torch
from common import best_time, hf_chat_runner  # bench/common.py

from generate import PROMPTS  # bench/generate.py: the same prompts

SHAPES = [(576, 576), (1536, 576), (576, 1536), (49152, 576)]  # (out, in): q/o, gate/up, down, head


def llmkit_models():
    from llmkit.formats.loader import load_model
    from llmkit.quantize.apply import quantize_model

    models = {"llmkit fp32": load_model("smollm2", device="cpu", dtype="float32")}
    i8 = load_model("smollm2", device="cpu", dtype="float32")
    quantize_model(i8.model, "int8")
    models["llmkit int8"] = i8
    i4 = load_model("smollm2", device="cpu", dtype="float32")
    quantize_model(i4.model, "int4", bits=4, group_size=32)
    models["llmkit int4 g32"] = i4
    models["llmkit GGUF Q4_1 (packed)"] = load_model("smollm2", device="cpu", dtype="float32", keep_quantized=True)
    return models


def decode_speeds(models: dict, batch: int, tokens: int, repeats: int, hf_run=None) -> dict[str, float]:
    """Decode tok/s of every model, timed round-robin: on a shared machine a burst of load then
    hits every model alike, and the best of ``repeats`` rounds is kept for each."""
    from llmkit.generate import Engine, SamplingParams

    runs = {}
    for name, lm in models.items():
        from llmkit.generate.api import prompt_ids

        engine = Engine(lm.model, lm.tokenizer)
        prompts = [prompt_ids(lm, p, chat=True) for p in PROMPTS[:batch]]
        runs[name] = lambda n, e=engine, p=prompts: e.generate(p, SamplingParams(max_tokens=n, temperature=0,
                                                                                   ignore_eos=True))
    if hf_run is not None:
        runs["transformers fp32"] = hf_run
    for run in runs.values():
        run(4)  # warm-up
    best = {name: [float("inf"), float("inf")] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            best[name][0] = min(best[name][0], best_time(lambda: run(1), 1))
            best[name][1] = min(best[name][1], best_time(lambda: run(tokens), 1))
    return {name: batch * (tokens - 1) / (tn - t1) for name, (t1, tn) in best.items()}


def hf_runner(batch: int, cache: dict):
    """transformers `generate` on the packaged GGUF in fp32 (same prompts), as run(n)."""
    return hf_chat_runner(PROMPTS[:batch], cache)[0]


LLAMA_SCRIPT = """
import json, sys, time
from llama_cpp import Llama
path, prompt, tokens, repeats, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
llm = Llama(model_path=path, n_ctx=1024, n_threads=threads, n_threads_batch=threads, verbose=False)
bias = {llm.token_eos(): -1e9}
def run(n):
    t = time.perf_counter()
    llm.create_chat_completion([{"role": "user", "content": prompt}], max_tokens=n, temperature=0.0,
                               logit_bias=bias)
    return time.perf_counter() - t
run(4)
t1 = min(run(1) for _ in range(repeats))
tn = min(run(tokens) for _ in range(repeats))
print(json.dumps({"tok_s": (tokens - 1) / (tn - t1)}))
"""


def llama_cpp_speed(python: str, tokens: int, repeats: int) -> float | None:
    """llama.cpp decode tok/s at batch 1 on the packaged GGUF, or None when it cannot run."""
    from llmkit.core.assets import asset_path

    cmd = [python, "-c", LLAMA_SCRIPT, str(asset_path("smollm2")), PROMPTS[0], str(tokens), str(repeats),
           str(torch.get_num_threads())]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        print(f"llama.cpp did not run (rc {r.returncode}): {r.stderr.strip()[-300:]}", file=sys.stderr)
        return None
    return json.loads(r.stdout.strip().splitlines()[-1])["tok_s"]


def perplexity_as_decoded(lm, ids: list[int], max_tokens: int) -> float:
    import llmkit.model.qlinear as ql
    from llmkit.eval.quant_report import heldout_scores

    old, ql.KERNEL_MAX_ROWS = ql.KERNEL_MAX_ROWS, 1 << 30  # force the decode kernel for every row
    try:
        return heldout_scores(lm.model, ids, window=256, max_tokens=max_tokens)["perplexity"]
    finally:
        ql.KERNEL_MAX_ROWS = old


def kernel_table(repeats: int = 30) -> None:
    """Median ms per call of each candidate, cycling through enough weight copies to defeat the caches."""
    from llmkit.model.linear import Linear
    from llmkit.model.qlinear import QuantLinear

    warnings.filterwarnings("ignore")
    print("\n| shape (out x in) | batch | fp32 oneDNN | fp32 F.linear | fbgemm int8 dyn | aten int8pack | "
          "aten int4pack g32 | ours q8 | ours q4 g32 |\n|---|---|---|---|---|---|---|---|---|")
    for N, K in SHAPES:
        copies = max(2, int(160e6 // (N * K * 4)))
        ws = [torch.randn(N, K) * 0.02 for _ in range(copies)]
        cands = {"fp32 oneDNN": [], "fp32 F.linear": [], "fbgemm": [], "int8pack": [], "int4pack": [], "q8": [],
                 "q4": []}
        for w in ws:
            lin = Linear(K, N, bias=False)
            lin.weight.data.copy_(w)
            s = w.abs().amax(1) / 127
            qw = torch.quantize_per_channel(w, s.double(), torch.zeros(N, dtype=torch.long), 0, torch.qint8)
            packed = torch.ops.quantized.linear_prepack(qw, None)
            wi8 = torch.round(w / s[:, None]).to(torch.int8)
            p4 = torch.ops.aten._convert_weight_to_int4pack_for_cpu(torch.randint(0, 16, (N, K), dtype=torch.int32), 1)
            sz = torch.rand(K // 32, N, 2)
            q8 = QuantLinear.from_quantized(wi8, s[:, None], None, 8, scale_dtype=torch.float32)
            q4 = QuantLinear.from_quantized(torch.randint(0, 16, (N, K)), torch.rand(N, K // 32) * 0.01,
                                            torch.rand(N, K // 32) * 0.01, 4)
            cands["fp32 oneDNN"].append(lambda x, m=lin: m(x))
            cands["fp32 F.linear"].append(lambda x, w=w: torch.nn.functional.linear(x, w))
            cands["fbgemm"].append(lambda x, p=packed: torch.ops.quantized.linear_dynamic(x, p))
            cands["int8pack"].append(lambda x, w=wi8, s=s: torch.ops.aten._weight_int8pack_mm(x, w, s))
            cands["int4pack"].append(lambda x, p=p4, z=sz: torch.ops.aten._weight_int4pack_mm_for_cpu(x, p, 32, z))
            cands["q8"].append(lambda x, m=q8: m(x))
            cands["q4"].append(lambda x, m=q4: m(x))
        for B in (1, 8):
            x = torch.randn(B, K)
            cells = []
            with torch.no_grad():
                for fns in cands.values():
                    it = itertools.cycle(fns)
                    for _ in range(3):
                        next(it)(x)
                    ts = []
                    for _ in range(repeats):
                        f = next(it)
                        t = time.perf_counter()
                        f(x)
                        ts.append(time.perf_counter() - t)
                    cells.append(sorted(ts)[len(ts) // 2] * 1e3)
            print(f"| {N}x{K} | {B} | " + " | ".join(f"{c:.3f}" for c in cells) + " |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batches", default="1")
    ap.add_argument("--ppl-tokens", type=int, default=4096)
    ap.add_argument("--kernels", action="store_true", help="also time each layer shape for every kernel candidate")
    ap.add_argument("--no-hf", action="store_true", help="skip the transformers side")
    ap.add_argument("--llama-python", default=None,
                    help="a Python with llama-cpp-python installed: also time llama.cpp on the same GGUF (batch 1)")
    a = ap.parse_args()
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, cpus {os.cpu_count()}, "
          f"load average {os.getloadavg()[0]:.1f}")
    from llmkit.cli.quantize import corpus_texts

    _, held = corpus_texts(None, 400_000)
    models = llmkit_models()
    ids = models["llmkit fp32"].tokenizer.encode(held, disallowed_special=())
    ppl = {name: perplexity_as_decoded(lm, ids, a.ppl_tokens) for name, lm in models.items()}
    for name, p in ppl.items():
        print(f"{name}: perplexity {p:.3f}", flush=True)
    cache: dict = {}
    for b in [int(x) for x in a.batches.split(",")]:
        speeds = decode_speeds(models, b, a.tokens, a.repeats, None if a.no_hf else hf_runner(b, cache))
        hf = speeds.get("transformers fp32")
        llama = llama_cpp_speed(a.llama_python, a.tokens, a.repeats) if a.llama_python and b == 1 else None
        base = ppl["llmkit fp32"]
        print(f"\nbatch {b}\n\n| model | decode tok/s | vs transformers fp32 | perplexity | vs fp32 |\n"
              "|---|---|---|---|---|")
        if hf:
            print(f"| transformers fp32 | {hf:.1f} | 1.00x | — | — |")
        for name in models:
            tps = speeds[name]
            ratio = f"{tps / hf:.2f}x" if hf else "—"
            print(f"| {name} | {tps:.1f} | {ratio} | {ppl[name]:.3f} | {100 * (ppl[name] / base - 1):+.2f}% |",
                  flush=True)
        if llama:
            ratio = f"{llama / hf:.2f}x" if hf else "—"
            print(f"| llama.cpp, same GGUF (Q4_1) | {llama:.1f} | {ratio} | — | — |")
            print(f"\nllmkit GGUF Q4_1 (packed) / llama.cpp: {speeds['llmkit GGUF Q4_1 (packed)'] / llama:.2f}x")
    if a.kernels:
        kernel_table()


if __name__ == "__main__":
    main()
