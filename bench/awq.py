"""AWQ's two steps on SmolLM2, measured by held-out perplexity: RTN vs AWQ scales vs AWQ scales + clipping.

    OMP_NUM_THREADS=1 python bench/awq.py [--bits 3] [--group 64]

Calibration: 16 x 256 tokens of stdlib text; held out: 8192 other stdlib tokens, windows of 512.
At 4 bits / group 32 nothing moves: the packaged weights already sit on that Q4_1 grid.
"""

from __future__ import annotations

import argparse
import copy
import math
import time

import torch

from llmkit.data.sources import StdlibSource
from llmkit.eval.perplexity import token_nll
from llmkit.formats.loader import load_model
from llmkit.quantize import apply


def ppl(model, held) -> float:
    with torch.no_grad():
        total, n = token_nll(model, held, window=512, stride=512)
    return math.exp(total / n)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--bits", type=int, default=3)
    p.add_argument("--group", type=int, default=64)
    a = p.parse_args()
    lm = load_model("smollm2", device="cpu")
    docs = [d for _, d in zip(range(40), StdlibSource())]
    calib = torch.tensor(lm.tokenizer.encode("".join(docs[:8]))[: 16 * 256]).reshape(16, 256)
    held = lm.tokenizer.encode("".join(docs[20:40]))[:8192]
    rows = [("packaged", ppl(lm.model, held), 0.0)]
    m = copy.deepcopy(lm.model)
    apply.quantize_model(m, "int4", a.bits, a.group, False)
    rows.append((f"RTN {a.bits}-bit g{a.group}", ppl(m, held), 0.0))
    for clip in (False, True):
        m, t = copy.deepcopy(lm.model), time.perf_counter()
        with torch.no_grad():
            apply.awq_scale_model(m, calib, a.bits, a.group, False, clip=clip)
        apply.quantize_model(m, "int4", a.bits, a.group, False)  # RTN on the scaled (and clipped) weights
        rows.append((f"AWQ{' + clip' if clip else ''}", ppl(m, held), time.perf_counter() - t))
    print("| weights | held-out perplexity | search s |\n|---|---|---|")
    for name, v, s in rows:
        print(f"| {name} | {v:.2f} | {s:.0f} |")


if __name__ == "__main__":
    main()
