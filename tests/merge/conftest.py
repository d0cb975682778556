"""Tiny parents for merge tests: a random base and two 'fine-tunes' (base + small noise)."""

from __future__ import annotations

import pytest
import torch

from llmkit.formats.loader import save_model
from llmkit.model import Transformer, preset
from llmkit.tokenizer.train import train_bpe

TEXT = ("def merge(models):\n    return sum(models) / len(models)\n" * 20
        + "Model merging averages weights of fine-tuned models. " * 20)


def tiny_cfg(vocab_size: int, **kw):
    return preset("tiny-llama").replace(vocab_size=vocab_size, n_layer=3, n_head=4, n_kv_head=2, d_model=32,
                                        d_ff=64, max_seq_len=64, **kw)


def perturbed(model: Transformer, seed: int, scale: float = 0.01) -> Transformer:
    g = torch.Generator().manual_seed(seed)
    other = Transformer(model.cfg)
    sd = {k: v + scale * torch.randn(v.shape, generator=g) for k, v in model.export_state_dict().items()}
    other.load_weights(sd)
    return other.eval()


@pytest.fixture(scope="session")
def tok():
    return train_bpe([TEXT], 300)


@pytest.fixture(scope="session")
def parents(tmp_path_factory, tok):
    """{'base', 'a', 'b'}: llmkit checkpoints sharing one architecture and tokenizer."""
    root = tmp_path_factory.mktemp("parents")
    base = Transformer(tiny_cfg(tok.vocab_size)).init_weights(seed=0).eval()
    paths = {"base": save_model(root / "base", base, tok, {"stage": "test", "name": "base"})}
    for name, seed in (("a", 1), ("b", 2)):
        paths[name] = save_model(root / name, perturbed(base, seed), tok, {"stage": "finetune", "name": name,
                                                                        "parent": str(paths["base"])})
    return paths
