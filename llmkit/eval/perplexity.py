"""Perplexity and bits per byte of a model on any text: a file, a directory, or prepared shards.

Perplexity is exp(mean negative log-likelihood per token); it depends on the
tokenizer, so two models with different vocabularies cannot be compared by it.
Bits per byte divides the total negative log-likelihood (in bits) by the UTF-8
bytes of the text, which makes models with any tokenizer comparable::

    bits/byte = sum(-log2 p(token)) / n_bytes        ppl = exp(sum(-ln p) / n_tokens)

Long texts are scored in sliding windows: each window holds ``window`` tokens
and scores only the ones past its first ``window - stride``, so every token is
scored once, with at least ``window - stride`` tokens of context (except at the
very start). ``stride == window`` gives disjoint windows (lm-eval's rolling
loglikelihood); a smaller stride is slower and gives a lower, fairer number.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from llmkit.core.errors import ConfigError

SPEC = "ppl:"
DEFAULT_WINDOW = 1024  # tokens the model sees per span; half of them are fresh targets by default


def windows(n_tokens: int, window: int, stride: int) -> list[tuple[int, int, int]]:
    """Spans (begin, end, first) covering targets 1..n-1 once each.

    Tokens [begin, end) are fed (the model sees at most ``window`` of them) and
    the predictions from index ``first`` on are counted. The first span scores
    everything it sees; each later one scores ``stride`` new targets after
    ``window - stride`` tokens of context.

    >>> windows(10, 4, 2)
    [(0, 5, 0), (2, 7, 2), (4, 9, 2), (5, 10, 3)]
    """
    assert window >= 1 and 1 <= stride <= window
    out: list[tuple[int, int, int]] = []
    scored_to = 0  # targets 1..scored_to are done
    while scored_to < n_tokens - 1:
        end = min(n_tokens, (window + 1) if not out else scored_to + stride + 1)
        begin = max(0, end - window - 1)
        out.append((begin, end, scored_to - begin))
        scored_to = end - 1
    return out


@torch.inference_mode()
def token_nll(model, ids: list[int] | np.ndarray, window: int | None = None, stride: int | None = None,
              progress: bool = False) -> tuple[float, int]:
    """Total negative log-likelihood (nats) of ids[1:] given what precedes each, and how many were scored."""
    window = min(window or DEFAULT_WINDOW, model.cfg.max_seq_len)
    stride = min(stride or window // 2 or 1, window)
    ids_t = torch.as_tensor(np.asarray(ids, dtype=np.int64))
    dev = model.tok_emb.weight.device
    total, count = 0.0, 0
    spans = windows(len(ids_t), window, stride)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(spans), desc="perplexity", unit="window", dynamic_ncols=True)
    for begin, end, first in spans:
        x = ids_t[begin:end]
        logp = model(x[None, :-1].to(dev))[0, first:].float().log_softmax(-1).cpu()  # (n, V)
        target = x[first + 1:]
        total -= float(logp.gather(-1, target[:, None]).sum())
        count += len(target)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return total, count


def _text_ids(lm, path: Path) -> tuple[list[int], int]:
    from llmkit.data.sources import Directory, TextFile

    if not path.exists():
        raise ConfigError(f"perplexity input {str(path)!r} does not exist", "pass a text file, a directory or shards")
    # chunk_bytes=-1: whole files, so a document boundary token never lands mid-file
    source = Directory(path, chunk_bytes=-1) if path.is_dir() else TextFile(path, chunk_bytes=-1)
    tok = lm.tokenizer
    start = tok.eos_id if tok.bos_id is None else tok.bos_id
    ids: list[int] = []
    n_bytes = 0
    for doc in source:
        ids.append(start)  # each document starts fresh, like a pretraining document boundary
        ids.extend(tok.encode(doc, allowed_special="none"))
        n_bytes += len(doc.encode("utf-8"))
    return ids, n_bytes


def _shard_ids(lm, path: Path, split: str, max_tokens: int | None) -> tuple[np.ndarray, int]:
    from llmkit.data.loader import TokenStream
    from llmkit.data.shards import read_index, tokenizer_fingerprint

    index = read_index(path)
    if index.get("tokenizer", {}).get("sha256") != tokenizer_fingerprint(lm.tokenizer):
        raise ConfigError(f"shards in {str(path)!r} were tokenized with another tokenizer than this model's",
                          "prepare the data with this model's tokenizer (llmkit data prepare --tokenizer MODEL)")
    stream = TokenStream(path, split, index)
    n = len(stream) if max_tokens is None else min(len(stream), max_tokens)
    return stream.window(0, n), round(stream.bytes * n / max(len(stream), 1))


def perplexity(lm, path: str | Path, split: str = "val", max_tokens: int | None = None,
               window: int | None = None, stride: int | None = None, progress: bool = True) -> dict:
    """ppl, bits_per_byte and counts of a model on a text file, a directory of text, or a shard dir."""
    from llmkit.data.shards import INDEX

    path = Path(path[len(SPEC):] if str(path).startswith(SPEC) else path)
    if (path / INDEX).is_file():
        ids, n_bytes = _shard_ids(lm, path, split, max_tokens)
    else:
        ids, n_bytes = _text_ids(lm, path)
    if max_tokens is not None and len(ids) > max_tokens:  # bytes scale with the kept share of tokens
        n_bytes = round(n_bytes * max_tokens / len(ids))
        ids = ids[:max_tokens]
    if len(ids) < 2 or n_bytes == 0:
        raise ConfigError(f"{str(path)!r} holds too little text to score ({len(ids)} tokens)", "give more text")
    nll, count = token_nll(lm.model, ids, window, stride, progress)
    return {"perplexity": math.exp(nll / count), "bits_per_byte": nll / math.log(2) / n_bytes,
            "tokens": count, "bytes": n_bytes}
