"""BPE training vs HF tokenizers, and encoding vs tiktoken, on the same stdlib corpus in one run.

    .venv/bin/python bench/tokenizer.py                      # 10 MB, vocab 32000, gpt4 split
    .venv/bin/python bench/tokenizer.py --mb 31 --repeat 1   # the 31 MB reference corpus

Training: HF ``tokenizers`` BpeTrainer with the same pre-split (built from our own
tokenizer.json converter, so both cut the text identically), the same vocab size,
the same special token and the full 256-byte alphabet. Both get the same list of
documents (one per stdlib file, test suites included to reach 31 MB). The learned
merges are compared too: our tie-breaking rule reproduces HF's exactly.

Encoding: our trained tokenizer (tiktoken backend) vs ``tiktoken.Encoding`` loaded
from our ``save_tiktoken`` export, single thread, ids checked identical; HF
``tokenizers`` loading our tokenizer.json is timed and checked as well. Targets:
training time <= HF's, encoding >= 0.9x tiktoken.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import tiktoken
import tokenizers
from tiktoken.load import load_tiktoken_bpe

from llmkit.tokenizer.bytelevel import token_to_bytes
from llmkit.tokenizer.hf_json import to_tokenizer_json
from llmkit.tokenizer.texts import stdlib_texts
from llmkit.tokenizer.train import build_tokenizer, train_bpe
from common import best_time  # bench/common.py (scripts run from bench/ or the repo root)

EOT = "<|endoftext|>"


def hf_trainer_tokenizer(pattern: str) -> tokenizers.Tokenizer:
    """An untrained HF BPE whose pre-tokenizer is the one our tokenizer.json export writes."""
    spec = to_tokenizer_json(build_tokenizer([], pattern, ()))
    spec["model"].update(vocab={}, merges=[])
    return tokenizers.Tokenizer.from_str(json.dumps(spec))


def train_hf(texts: list[str], vocab_size: int, pattern: str) -> tuple[float, list[tuple[bytes, bytes]]]:
    tok = hf_trainer_tokenizer(pattern)
    trainer = tokenizers.trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=[EOT], show_progress=False,
        initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet())
    t0 = time.perf_counter()
    tok.train_from_iterator(texts, trainer)
    seconds = time.perf_counter() - t0
    merges = [m if isinstance(m, list) else m.split(" ") for m in json.loads(tok.to_str())["model"]["merges"]]
    return seconds, [(token_to_bytes(a), token_to_bytes(b)) for a, b in merges]




def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mb", type=float, default=10, help="corpus size in MB of stdlib source (default 10)")
    ap.add_argument("--vocab-size", type=int, default=32000, help="vocab size for both trainers (default 32000)")
    ap.add_argument("--pattern", default="gpt4", help="pre-split: gpt4, gpt2, ... (default gpt4)")
    ap.add_argument("--repeat", type=int, default=2, help="training runs per trainer, interleaved; best counts")
    args = ap.parse_args()

    texts = list(stdlib_texts(int(args.mb * 1e6), include_tests=True))
    mb = sum(len(t.encode()) for t in texts) / 1e6
    print(f"corpus: {mb:.1f} MB of stdlib source in {len(texts)} documents, vocab {args.vocab_size}, "
          f"pattern {args.pattern}, {os.cpu_count()} CPUs")

    # -- training: interleave the peers so machine noise hits both alike
    t_hf, t_ours = [], []
    for _ in range(args.repeat):
        seconds, hf_merges = train_hf(texts, args.vocab_size, args.pattern)
        t_hf.append(seconds)
        t0 = time.perf_counter()
        tok = train_bpe(texts, args.vocab_size, args.pattern, (EOT,))
        t_ours.append(time.perf_counter() - t0)
    ours = [(tok.token_bytes(a), tok.token_bytes(b)) for a, b, _ in tok.merge_ids()]
    same = ours == hf_merges
    first_diff = next((i for i, (x, y) in enumerate(zip(ours, hf_merges)) if x != y), min(len(ours), len(hf_merges)))
    print(f"training (best of {args.repeat})")
    print(f"  HF tokenizers BpeTrainer   {min(t_hf):6.2f} s")
    print(f"  llmkit train_bpe           {min(t_ours):6.2f} s   speed ratio vs HF {min(t_hf) / min(t_ours):.2f}x")
    print(f"  merges identical to HF: {same} ({len(ours)} ours, {len(hf_merges)} HF"
          + ("" if same else f", first difference at merge {first_diff}") + ")")

    # -- encoding: our tokenizer vs tiktoken on our exported ranks (and HF on our tokenizer.json)
    with tempfile.TemporaryDirectory() as d:
        tok.save(d)
        tok.save_tiktoken(os.path.join(d, "tokenizer.tiktoken"))
        enc = tiktoken.Encoding("llmkit-trained", pat_str=tok.tiktoken_pattern, special_tokens=tok.special_tokens,
                                mergeable_ranks=load_tiktoken_bpe(os.path.join(d, "tokenizer.tiktoken")))
        hf = tokenizers.Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
    assert tok.backend == "tiktoken", tok.backend
    ids_ours = [tok.encode(t) for t in texts]
    ids_tik = [enc.encode(t) for t in texts]
    ids_hf = [e.ids for e in hf.encode_batch(texts, add_special_tokens=False)]
    print(f"encoding {mb:.1f} MB, single thread; "
          f"ids identical: tiktoken {ids_ours == ids_tik}, HF {ids_ours == ids_hf}")
    t_tik, t_enc = [], []
    for _ in range(3):
        t_tik.append(best_time(lambda: [enc.encode(t) for t in texts], 1))
        t_enc.append(best_time(lambda: [tok.encode(t) for t in texts], 1))
    t_hf_enc = best_time(lambda: [hf.encode(t, add_special_tokens=False) for t in texts], 1)
    print(f"  tiktoken (our ranks)       {mb / min(t_tik):6.2f} MB/s")
    print(f"  llmkit Tokenizer.encode    {mb / min(t_enc):6.2f} MB/s   "
          f"ratio vs tiktoken {min(t_tik) / min(t_enc):.2f}x")
    print(f"  HF tokenizers (our json)   {mb / t_hf_enc:6.2f} MB/s   ratio vs tiktoken {min(t_tik) / t_hf_enc:.2f}x")
    n_tokens = sum(map(len, ids_ours))
    print(f"  compression: {mb * 1e6 / n_tokens:.2f} bytes/token on the training text")


if __name__ == "__main__":
    main()
