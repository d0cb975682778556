"""Logit parity with transformers for tiny random GPT-2, Llama (GQA) and Qwen2 (q/k/v bias).

The HF model is saved to disk and read back through our production importer
(llmkit.formats.hf), then the other direction through our exporter.
"""

import pytest
import torch

import transformers as transformers  # a test extra: missing must fail, not skip

from llmkit.formats.hf import load_hf, save_hf  # noqa: E402
from llmkit.formats.loader import build_model  # noqa: E402
from llmkit.model import KVCache  # noqa: E402


def _llama(**kw):
    base = dict(vocab_size=211, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                rms_norm_eps=1e-6, tie_word_embeddings=False)
    base.update(kw)
    return transformers.LlamaConfig(**base)


CONFIGS = {
    "gpt2": lambda: transformers.GPT2Config(vocab_size=211, n_positions=128, n_embd=64, n_layer=2, n_head=4),
    "llama-gqa": lambda: _llama(),
    "llama-mqa-tied": lambda: _llama(num_key_value_heads=1, tie_word_embeddings=True),
    "qwen2-bias": lambda: transformers.Qwen2Config(vocab_size=211, hidden_size=64, intermediate_size=96,
                                                   num_hidden_layers=2, num_attention_heads=4,
                                                   num_key_value_heads=2, max_position_embeddings=256,
                                                   tie_word_embeddings=True),
    "llama-rope-linear": lambda: _llama(rope_scaling={"rope_type": "linear", "factor": 2.0}),
    "llama-rope-yarn": lambda: _llama(rope_scaling={"rope_type": "yarn", "factor": 4.0,
                                                    "original_max_position_embeddings": 64}),
    "llama3-rope": lambda: _llama(rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                                "high_freq_factor": 4.0, "original_max_position_embeddings": 32}),
}


def _hf_model(name, tmp_path):
    torch.manual_seed(0)
    cfg = CONFIGS[name]()
    model = transformers.AutoModelForCausalLM.from_config(cfg, attn_implementation="eager").eval()
    with torch.no_grad():  # HF inits biases to zero: randomise so q/k/v bias paths are exercised
        for n, p in model.named_parameters():
            if n.endswith("bias"):
                p.normal_(0, 0.1)
    model.save_pretrained(tmp_path / "hf")
    return model


@pytest.mark.parametrize("name", list(CONFIGS))
def test_import_matches_transformers(name, tmp_path):
    hf = _hf_model(name, tmp_path)
    cfg, sd, _ = load_hf(tmp_path / "hf")
    ours = build_model(cfg, sd, "test")
    idx = torch.randint(0, 211, (2, 100), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = hf(idx).logits
        got = ours(idx)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", ["gpt2", "llama-gqa", "qwen2-bias", "llama-rope-yarn"])
def test_export_loads_in_transformers(name, tmp_path):
    _hf_model(name, tmp_path)
    cfg, sd, _ = load_hf(tmp_path / "hf")
    ours = build_model(cfg, sd, "test")
    save_hf(tmp_path / "out", cfg, ours.export_state_dict(), shard_bytes=200_000)  # force sharding
    assert (tmp_path / "out" / "model.safetensors.index.json").is_file()
    back = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "out").eval()
    idx = torch.randint(0, 211, (1, 50), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(back(idx).logits, ours(idx), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", ["gpt2", "llama-gqa"])
def test_cached_decoding_equals_full_forward(name, tmp_path):
    _hf_model(name, tmp_path)
    cfg, sd, _ = load_hf(tmp_path / "hf")
    model = build_model(cfg, sd, "test")
    idx = torch.randint(0, 211, (1, 40), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        full = model(idx)
        cache = KVCache.allocate(cfg, 1, 64)
        steps = [model(idx[:, :10], kv_cache=cache)]
        steps += [model(idx[:, t:t + 1], kv_cache=cache) for t in range(10, 40)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-4, rtol=1e-4)
