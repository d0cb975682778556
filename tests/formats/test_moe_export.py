"""A mixture of experts leaves llmkit as HF Mixtral (transformers computes the same logits) and comes back."""

import pytest
import torch

from llmkit.core.errors import FormatError
from llmkit.formats.hf import load_hf, save_hf
from llmkit.model import Transformer, preset

IDS = torch.tensor([[5, 17, 99, 3, 42, 250, 7, 8, 11, 64, 2, 31]])


@pytest.fixture(scope="module")
def moe():
    cfg = preset("tiny-llama").replace(vocab_size=300, n_layer=2, d_model=64, n_head=4, n_kv_head=2, max_seq_len=64,
                                       tie_embeddings=False, n_expert=4, n_expert_active=2)
    return cfg, Transformer(cfg).init_weights(seed=3).eval()


def test_mixtral_export_matches_transformers(moe, tmp_path):
    transformers = pytest.importorskip("transformers")  # test extra: make test installs it
    cfg, model = moe
    out = save_hf(tmp_path / "hf", cfg, model.export_state_dict())
    ref = transformers.AutoModelForCausalLM.from_pretrained(out, torch_dtype=torch.float32).eval()
    assert type(ref).__name__ == "MixtralForCausalLM"
    with torch.no_grad():
        torch.testing.assert_close(ref(IDS).logits, model(IDS), rtol=1e-4, atol=1e-4)


def test_mixtral_import_round_trip(moe, tmp_path):
    cfg, model = moe
    out = save_hf(tmp_path / "hf", cfg, model.export_state_dict())
    back_cfg, sd, _ = load_hf(out)
    assert (back_cfg.n_expert, back_cfg.n_expert_active) == (4, 2)
    back = Transformer(back_cfg).eval()
    back.load_state_dict(sd, strict=False)  # lm_head etc.; strict names are checked by the equality below
    assert set(sd) == set(model.export_state_dict())
    with torch.no_grad():
        assert torch.equal(back(IDS), model(IDS))


def test_biased_moe_has_no_hf_form(tmp_path):
    cfg = preset("tiny-llama").replace(vocab_size=300, n_layer=1, d_model=64, n_head=4, max_seq_len=64,
                                       n_expert=2, n_expert_active=1, qkv_bias=True)
    model = Transformer(cfg).init_weights(seed=0)
    with pytest.raises(FormatError, match="no HF equivalent"):
        save_hf(tmp_path / "hf", cfg, model.export_state_dict())


@pytest.mark.slow
@pytest.mark.parametrize("outtype", ["f32", "q8_0"])
def test_gguf_moe_round_trip_and_llama_cpp_layout(moe, tmp_path, outtype):
    import gguf

    from llmkit.core.assets import gpt2_ranks_path
    from llmkit.formats.gguf_export import save_gguf
    from llmkit.formats.loader import load_model
    from llmkit.tokenizer import Tokenizer

    cfg, model = moe
    tok = Tokenizer.from_tiktoken_file(gpt2_ranks_path())
    big = cfg.replace(vocab_size=tok.vocab_size)
    m = Transformer(big).init_weights(seed=4).eval()
    out = save_gguf(tmp_path / f"moe-{outtype}.gguf", big, m.export_state_dict(), tok, outtype)
    r = gguf.GGUFReader(str(out))  # llama.cpp's own reader: its names, shapes and expert counts
    fields = {f.name: f for f in r.fields.values()}
    assert int(fields["llama.expert_count"].parts[-1][0]) == 4 and int(fields["llama.expert_used_count"].parts[-1][0]) == 2
    shapes = {t.name: tuple(int(x) for x in t.shape) for t in r.tensors}
    assert shapes["blk.0.ffn_gate_inp.weight"] == (64, 4)  # ggml order: (in, out)
    assert shapes["blk.1.ffn_up_exps.weight"] == (64, big.ff_dim, 4)
    assert shapes["blk.1.ffn_down_exps.weight"] == (big.ff_dim, 64, 4)
    back = load_model(out, use_cache=False)
    assert (back.config.n_expert, back.config.n_expert_active) == (4, 2)
    with torch.no_grad():
        want, got = m(IDS), back.model(IDS)
    if outtype == "f32":
        assert torch.equal(got, want)
    else:
        assert (got - want).norm() / want.norm() < 0.01
