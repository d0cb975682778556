"""Multiple-choice eval speed: llmkit's batched scorer vs a plain transformers loop, same items, one run.

    python bench/eval.py [--task hellaswag] [--items 500] [--shots 0]

Both sides score the same HellaSwag slice with SmolLM2-135M-Instruct in fp32
from the packaged GGUF (transformers via ``gguf_file=``). The transformers side
is the straightforward loop: one forward of context + choice per choice, batch
1, the way a first evaluation script is written. llmkit runs ``score_items``
(what ``llmkit eval`` runs). Model loading is excluded on both sides. It also
checks that both pick the same answers (acc and acc_norm).
"""

from __future__ import annotations

import argparse
import time

import torch


def llmkit_side(lm, items, batch: int):
    from llmkit.eval.harness import score_items

    t = time.perf_counter()
    scored = score_items(lm, items, batch=batch)
    return time.perf_counter() - t, [[s.logprob for s in row] for row in scored]


def transformers_side(hf, tok, items):
    lls = []
    t = time.perf_counter()
    with torch.inference_mode():
        for item in items:
            row = []
            for ctx, cont in item.requests():
                c = tok(ctx, add_special_tokens=False)["input_ids"]
                whole = tok(ctx + cont, add_special_tokens=False)["input_ids"]
                logp = hf(torch.tensor([whole])).logits[0, :-1].float().log_softmax(-1)
                n = len(whole) - len(c)
                row.append(float(logp[-n:].gather(-1, torch.tensor(whole[-n:])[:, None]).sum()))
            lls.append(row)
    return time.perf_counter() - t, lls


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", default="hellaswag")
    ap.add_argument("--items", type=int, default=500)
    ap.add_argument("--shots", type=int, default=0)
    ap.add_argument("--batch", type=int, default=16, help="llmkit contexts per forward")
    a = ap.parse_args()

    import transformers

    from llmkit.core.assets import asset_path
    from llmkit.eval.metrics import acc_norm_choice, argmax
    from llmkit.eval.tasks import load_task
    from llmkit.formats.loader import load_model

    items = load_task(a.task).items(shots=a.shots, limit=a.items)
    lm = load_model("smollm2", device="cpu", dtype="float32")
    path = asset_path("smollm2")
    hf = transformers.AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32).eval()
    tok = transformers.AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)

    ours_s, ours = llmkit_side(lm, items, a.batch)
    ref_s, ref = transformers_side(hf, tok, items)
    same = sum(argmax(o) == argmax(r) for o, r in zip(ours, ref))
    same_norm = sum(acc_norm_choice(o, list(it.choices)) == acc_norm_choice(r, list(it.choices))
                    for o, r, it in zip(ours, ref, items))
    acc = lambda lls: sum(argmax(x) == it.gold for x, it in zip(lls, items)) / len(items)  # noqa: E731
    n = len(items)
    print(f"{a.task} {a.shots}-shot, {n} items, {torch.get_num_threads()} threads")
    print(f"  llmkit score_items     {n / ours_s:7.2f} items/s  ({ours_s:.1f} s)  acc {acc(ours):.4f}")
    print(f"  transformers loop      {n / ref_s:7.2f} items/s  ({ref_s:.1f} s)  acc {acc(ref):.4f}")
    print(f"  ratio                  {ref_s / ours_s:7.2f}x")
    print(f"  same choice            acc {same}/{n}, acc_norm {same_norm}/{n}")


if __name__ == "__main__":
    main()
