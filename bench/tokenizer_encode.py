"""Encode ~1 MB of stdlib source: llmkit (both engines) vs tiktoken vs HF tokenizers, same run.

    .venv/bin/python bench/tokenizer_encode.py
"""
import glob
import sysconfig
import time

import tiktoken
from tiktoken.load import load_tiktoken_bpe

from llmkit.core import assets
from llmkit.tokenizer import Tokenizer
from common import best_time  # bench/common.py (scripts run from bench/ or the repo root)

R50K = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""


def corpus(limit: int = 1_000_000) -> str:
    text = ""
    for path in sorted(glob.glob(sysconfig.get_paths()["stdlib"] + "/*.py")):
        text += open(path, encoding="utf-8", errors="replace").read()
        if len(text.encode()) >= limit:
            return text
    return text




def main() -> None:
    text = corpus()
    mb = len(text.encode()) / 1e6
    path = assets.gpt2_ranks_path()
    enc = tiktoken.Encoding("r50k", pat_str=R50K, mergeable_ranks=load_tiktoken_bpe(str(path)),
                            special_tokens={"<|endoftext|>": 50256})
    fast = Tokenizer.from_tiktoken_file(path)
    ref = Tokenizer.from_tiktoken_file(path, backend="python")
    assert fast.encode(text) == enc.encode(text) == ref.encode(text)
    # Interleave the peers so machine noise hits both alike.
    t_tik, t_fast = [], []
    for _ in range(5):
        t_tik.append(best_time(lambda: enc.encode(text), 3))
        t_fast.append(best_time(lambda: fast.encode(text), 3))
    t_tik, t_fast = min(t_tik), min(t_fast)
    cold = Tokenizer.from_tiktoken_file(path, backend="python")
    t0 = time.perf_counter(); cold.encode(text); t_cold = time.perf_counter() - t0
    t_ref = best_time(lambda: ref.encode(text), 3)
    print(f"GPT-2 vocab, {mb:.2f} MB stdlib source, single thread")
    print(f"  tiktoken.Encoding.encode     {mb / t_tik:6.2f} MB/s")
    print(f"  llmkit backend=tiktoken      {mb / t_fast:6.2f} MB/s   ratio vs tiktoken {t_tik / t_fast:.3f}")
    print(f"  llmkit backend=python (cold) {mb / t_cold:6.2f} MB/s   ratio vs tiktoken {t_tik / t_cold:.3f}")
    print(f"  llmkit backend=python (warm) {mb / t_ref:6.2f} MB/s   ratio vs tiktoken {t_tik / t_ref:.3f}")
    try:
        import tokenizers
        import tempfile
        with tempfile.TemporaryDirectory() as d:
            fast.save(d)
            hf = tokenizers.Tokenizer.from_file(d + "/tokenizer.json")
        assert hf.encode(text, add_special_tokens=False).ids == enc.encode(text)
        t_hf = best_time(lambda: hf.encode(text, add_special_tokens=False), 3)
        print(f"  HF tokenizers (same vocab)   {mb / t_hf:6.2f} MB/s   ratio vs tiktoken {t_tik / t_hf:.3f}")
    except ImportError:
        pass


if __name__ == "__main__":
    main()
