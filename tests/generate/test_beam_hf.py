"""Beam search and greedy decoding against transformers `generate` on the same tiny model."""

import pytest
import torch

import transformers as transformers  # a test extra: missing must fail, not skip

from llmkit.formats.hf import load_hf  # noqa: E402
from llmkit.formats.loader import build_model  # noqa: E402
from llmkit.generate import beam_search  # noqa: E402
from llmkit.generate.naive import naive_greedy  # noqa: E402


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=97, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                                   bos_token_id=None, eos_token_id=None, pad_token_id=0)
    hf = transformers.AutoModelForCausalLM.from_config(cfg).eval()
    path = tmp_path_factory.mktemp("hf")
    hf.save_pretrained(path)
    c, sd, _ = load_hf(path)
    return hf, build_model(c, sd, "test")


@pytest.mark.parametrize("prompt", [[3, 14, 15, 92, 65], [1], [50, 40, 30, 20, 10, 5, 6]])
def test_beam_search_matches_transformers(pair, prompt):
    hf, ours = pair
    with torch.no_grad():
        ref = hf.generate(torch.tensor([prompt]), num_beams=4, max_new_tokens=8, do_sample=False,
                          early_stopping=True, length_penalty=1.0, num_return_sequences=4)
    ref = [r[len(prompt):].tolist() for r in ref]
    got = [b.token_ids for b in beam_search(ours, prompt, num_beams=4, max_tokens=8)]
    assert got[0] == ref[0]
    assert sorted(map(tuple, got)) == sorted(map(tuple, ref))


def test_greedy_matches_transformers(pair):
    hf, ours = pair
    prompt = [3, 14, 15, 92, 65]
    with torch.no_grad():
        ref = hf.generate(torch.tensor([prompt]), max_new_tokens=20, do_sample=False)[0, len(prompt):].tolist()
    assert naive_greedy(ours, prompt, 20) == ref
