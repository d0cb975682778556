"""Fine-tuning fixtures: the SmolLM2 tokenizer (with its ChatML template) and a tiny random model for it."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="session")
def smol_tok():
    from llmkit.core.assets import asset_path
    from llmkit.formats.gguf_import import tokenizer_from_metadata
    from llmkit.formats.gguf_reader import read_gguf

    return tokenizer_from_metadata(read_gguf(asset_path("smollm2")).metadata)


def tiny_model(vocab: int, seed: int = 0, tie: bool = True):
    from llmkit.model import Transformer, preset

    cfg = preset("tiny-llama").replace(vocab_size=vocab, n_layer=2, d_model=32, n_head=4, n_kv_head=2,
                                       max_seq_len=256, tie_embeddings=tie)
    torch.manual_seed(seed)
    return Transformer(cfg).init_weights(seed=seed)


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny matmuls: one thread is ~100x faster than two OpenMP threads on a busy 2-core machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
