"""LoRA parity with PEFT, through our production importer/exporter and adapter files.

Same base (a tiny HF Llama read by llmkit.formats.hf), same targets, same A/B:
PEFT's adapter loaded into llmkit, and llmkit's adapter loaded by PEFT onto our
HF export, give the same logits. The slow test does it on SmolLM2 itself.
"""

import json

import pytest
import torch

import peft as peft  # a test extra: missing must fail, not skip
import transformers as transformers

from llmkit.formats.hf import load_hf, save_hf
from llmkit.formats.loader import build_model
from llmkit.formats.peft import load_adapter, save_adapter
from llmkit.model.lora import AdapterError, LoRAConfig, LoRALinear, apply_lora, merge_lora

TARGETS = ["q_proj", "v_proj", "o_proj", "down_proj"]


def _hf_base(tmp_path, tie=False):
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=211, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                                   tie_word_embeddings=tie)
    model = transformers.AutoModelForCausalLM.from_config(cfg, attn_implementation="eager").eval()
    model.save_pretrained(tmp_path / "hf")
    return model


def _peft_adapter(hf, tmp_path, r=4, alpha=8):
    pcfg = peft.LoraConfig(r=r, lora_alpha=alpha, lora_dropout=0.0, target_modules=TARGETS, task_type="CAUSAL_LM")
    pm = peft.get_peft_model(hf, pcfg)
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():  # B = 0 at init would make every comparison trivially equal: randomise it
        for n, p in pm.named_parameters():
            if "lora_B" in n:
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    pm.save_pretrained(tmp_path / "peft")
    return pm.eval()


IDX = torch.randint(0, 211, (2, 20), generator=torch.Generator().manual_seed(1))


def _ours(tmp_path):
    cfg, sd, _ = load_hf(tmp_path / "hf")
    return build_model(cfg, sd, "test")


def test_peft_adapter_loads_into_llmkit(tmp_path):
    pm = _peft_adapter(_hf_base(tmp_path), tmp_path)
    ours = load_adapter(_ours(tmp_path), tmp_path / "peft")
    assert sum(isinstance(m, LoRALinear) for m in ours.modules()) == 2 * len(TARGETS)
    with torch.no_grad():
        torch.testing.assert_close(ours(IDX), pm(IDX).logits, atol=1e-4, rtol=1e-4)
        with pm.disable_adapter():
            base = pm(IDX).logits
        from llmkit.model.lora import adapters_disabled

        with adapters_disabled(ours):
            torch.testing.assert_close(ours(IDX), base, atol=1e-4, rtol=1e-4)


def test_llmkit_adapter_loads_in_peft_on_our_hf_export(tmp_path):
    _hf_base(tmp_path)
    ours = _ours(tmp_path)
    apply_lora(ours, LoRAConfig(r=4, alpha=16, targets=("q_proj", "v_proj", "w_up")))
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for n, p in ours.named_parameters():
            if n.endswith("lora_B"):
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)
        expected = ours(IDX)
    save_adapter(tmp_path / "adapter", ours, base="tiny")
    cfg = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert cfg["target_modules"] == ["q_proj", "up_proj", "v_proj"] and cfg["r"] == 4 and cfg["lora_alpha"] == 16
    # our HF export of the base (adapters unmerged, so it is the plain base)
    from llmkit.model.lora import merge_and_unload

    base = _ours(tmp_path)
    save_hf(tmp_path / "export", base.cfg, base.export_state_dict())
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "export", attn_implementation="eager").eval()
    pm = peft.PeftModel.from_pretrained(hf, tmp_path / "adapter").eval()
    with torch.no_grad():
        torch.testing.assert_close(pm(IDX).logits, expected, atol=1e-4, rtol=1e-4)
        merged_hf = pm.merge_and_unload()
        plain = merge_and_unload(ours)
        ours_sd = {k: v for k, v in plain.state_dict().items()}
        theirs = merged_hf.state_dict()
        torch.testing.assert_close(ours_sd["blocks.1.attn.wq.weight"], theirs["model.layers.1.self_attn.q_proj.weight"])
        torch.testing.assert_close(ours_sd["blocks.0.mlp.w_up.weight"], theirs["model.layers.0.mlp.up_proj.weight"])


def test_merged_weights_match_peft_and_formula(tmp_path):
    pm = _peft_adapter(_hf_base(tmp_path), tmp_path, r=2, alpha=6)
    ours = load_adapter(_ours(tmp_path), tmp_path / "peft")
    lin = ours.get_submodule("blocks.0.attn.wo")
    w0 = lin.base.weight.detach().clone()
    merge_lora(ours)
    merge_lora(ours)  # twice: no change
    torch.testing.assert_close(lin.base.weight, w0 + (6 / 2) * lin.lora_B @ lin.lora_A)
    merged = pm.merge_and_unload()
    torch.testing.assert_close(lin.base.weight, merged.state_dict()["model.layers.0.self_attn.o_proj.weight"])


def test_adapter_for_another_base_is_a_typed_error(tmp_path):
    _peft_adapter(_hf_base(tmp_path), tmp_path)
    torch.manual_seed(0)
    other = transformers.LlamaConfig(vocab_size=211, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                                     num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128)
    transformers.AutoModelForCausalLM.from_config(other).save_pretrained(tmp_path / "hf2")
    cfg, sd, _ = load_hf(tmp_path / "hf2")
    with pytest.raises(AdapterError, match="shape"):
        load_adapter(build_model(cfg, sd, "other"), tmp_path / "peft")
    deeper = transformers.LlamaConfig(vocab_size=211, hidden_size=64, intermediate_size=96, num_hidden_layers=1,
                                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128)
    transformers.AutoModelForCausalLM.from_config(deeper).save_pretrained(tmp_path / "hf3")
    cfg, sd, _ = load_hf(tmp_path / "hf3")
    with pytest.raises(AdapterError, match="names no module|matches no"):
        load_adapter(build_model(cfg, sd, "shallow"), tmp_path / "peft")
    with pytest.raises(AdapterError, match="not a PEFT adapter"):
        load_adapter(_ours(tmp_path), tmp_path / "hf")


@pytest.mark.slow
def test_smollm2_adapter_names_and_outputs_match_peft(tmp_path):
    from llmkit.formats.loader import load_model

    lm = load_model("smollm2", device="cpu", dtype="float32")
    save_hf(tmp_path / "export", lm.config, lm.model.export_state_dict(), lm.tokenizer)
    apply_lora(lm.model, LoRAConfig(r=4, alpha=8, targets=("all-linear",), init_seed=0))
    with torch.no_grad():
        for n, p in lm.model.named_parameters():
            if n.endswith("lora_B"):
                p.normal_(0, 0.02)
    save_adapter(tmp_path / "adapter", lm.model, base="smollm2")
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "export").eval()
    pm = peft.PeftModel.from_pretrained(hf, tmp_path / "adapter").eval()
    names = {n for n, _ in pm.named_parameters() if "lora_" in n}
    assert len(names) == 2 * 7 * 30  # every projection of all 30 layers found by PEFT under our names
    idx = torch.tensor([lm.tokenizer.encode("The capital of France is")])
    with torch.no_grad():
        torch.testing.assert_close(lm.model(idx), pm(idx).logits, atol=2e-3, rtol=1e-3)
