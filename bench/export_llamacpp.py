"""Does llama.cpp load what `llmkit convert --to gguf` writes, and decode the same greedy tokens?

    python bench/export_llamacpp.py --llama-python /tmp/llamavenv/bin/python [--tokens 32] [--outtypes f32,f16,q8_0,q4_0,q4_1]

Two models go through the production converter (`llmkit.formats.convert.convert`):
SmolLM2-135M-Instruct (llama architecture, from the packaged GGUF, expanded to float32
first) and a small randomly initialised GPT-2 (gpt2 architecture, the packaged GPT-2 BPE).
Each exported file is then read by llama.cpp (llama-cpp-python, run by the interpreter given
with --llama-python, as it is not importable next to llmkit) and by llmkit, on the same prompt:

- token ids: llama.cpp's tokenizer on the prompt text against ours;
- logits at the last prompt position: max |difference| and the top-1 token;
- greedy decoding of --tokens tokens with EOS ignored: how many leading tokens agree.

llmkit runs F32/F16 files on float weights and Q8_0/Q4 files on their packed blocks, as
`--weights auto` does on a CPU; llama.cpp computes on the blocks as well.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

PROMPT = "The capital of France is Paris. The capital of Italy is"

LLAMA_SCRIPT = """
import json, sys
import numpy as np
from llama_cpp import Llama
path, prompt, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
llm = Llama(model_path=path, n_ctx=512, logits_all=True, verbose=False)
ids = llm.tokenize(prompt.encode(), add_bos=False, special=False)
llm.eval(ids)
first = np.asarray(llm.scores[llm.n_tokens - 1], dtype=np.float32)
out = []
for _ in range(n):
    tok = int(np.argmax(llm.scores[llm.n_tokens - 1]))
    out.append(tok)
    llm.eval([tok])
print(json.dumps({"ids": ids, "logits": first.tolist(), "greedy": out}))
"""


def llama_side(python: str, path: Path, tokens: int) -> dict:
    r = subprocess.run([python, "-c", LLAMA_SCRIPT, str(path), PROMPT, str(tokens)], capture_output=True, text=True)
    if r.returncode != 0:
        return {"error": f"rc {r.returncode}: {r.stderr.strip()[-400:]}"}
    return json.loads(r.stdout.strip().splitlines()[-1])


def llmkit_side(path: Path, tokens: int) -> dict:
    from llmkit.formats.loader import load_model
    from llmkit.generate import Engine, SamplingParams

    lm = load_model(path, device="cpu", dtype="float32", keep_quantized="auto", use_cache=False)
    ids = lm.tokenizer.encode(PROMPT)
    with torch.no_grad():
        logits = lm.model(torch.tensor([ids]))[0, -1]
    done = Engine(lm.model, lm.tokenizer).generate(
        [ids], SamplingParams(max_tokens=tokens, temperature=0.0, ignore_eos=True))[0]
    return {"ids": ids, "logits": logits, "greedy": done.token_ids}


def gpt2_source(tmp: Path) -> Path:
    """A small random GPT-2 checkpoint with the packaged GPT-2 tokenizer, saved as an llmkit checkpoint."""
    from llmkit.core.assets import gpt2_ranks_path
    from llmkit.formats.loader import save_model
    from llmkit.model import Transformer, preset
    from llmkit.tokenizer import Tokenizer

    tok = Tokenizer.from_tiktoken_file(gpt2_ranks_path())
    cfg = preset("gpt2").replace(n_layer=4, d_model=256, n_head=4, max_seq_len=256)
    model = Transformer(cfg).init_weights(seed=0).eval()
    return save_model(tmp / "gpt2-random", model, tok, {"stage": "init", "name": "gpt2-random"})


def compare(ours: dict, theirs: dict) -> dict:
    if "error" in theirs:
        return {"error": theirs["error"]}
    a, b = ours["logits"], torch.tensor(theirs["logits"])
    agree = next((i for i, (x, y) in enumerate(zip(ours["greedy"], theirs["greedy"])) if x != y), len(ours["greedy"]))
    return {"ids_equal": ours["ids"] == theirs["ids"], "max_logit_diff": float((a - b).abs().max()),
            "logit_range": float(a.max() - a.min()), "top1_equal": int(a.argmax()) == int(b.argmax()),
            "greedy_agree": agree, "greedy_n": len(ours["greedy"])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--llama-python", required=True, help="a Python interpreter that can import llama_cpp")
    ap.add_argument("--tokens", type=int, default=32, help="greedy tokens to compare (EOS ignored)")
    ap.add_argument("--outtypes", default="f32,f16,q8_0,q4_0,q4_1", help="comma-separated GGUF outtypes")
    ap.add_argument("--models", default="smollm2,gpt2", help="smollm2 (llama arch) and/or gpt2 (random, gpt2 arch)")
    a = ap.parse_args()
    from llmkit.formats.convert import convert

    print("| model | outtype | token ids equal | max logit diff (logit range) | top-1 equal | greedy tokens agreeing |")
    print("|---|---|---|---|---|---|")
    failed = False
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for name in a.models.split(","):
            if name not in ("smollm2", "gpt2"):
                ap.error(f"unknown model {name!r}: choose smollm2 and/or gpt2")
            src = "smollm2" if name == "smollm2" else str(gpt2_source(tmp))
            for outtype in a.outtypes.split(","):
                path = convert(src, tmp / f"{name}-{outtype}.gguf", to="gguf", outtype=outtype)
                c = compare(llmkit_side(path, a.tokens), llama_side(a.llama_python, path, a.tokens))
                if "error" in c:
                    failed = True
                    print(f"| {name} | {outtype} | llama.cpp failed: {c['error']} |||||")
                    continue
                failed |= not c["ids_equal"]
                print(f"| {name} | {outtype} | {c['ids_equal']} | {c['max_logit_diff']:.4f} ({c['logit_range']:.1f}) | "
                      f"{c['top1_equal']} | {c['greedy_agree']}/{c['greedy_n']} |", flush=True)
                path.unlink()
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
