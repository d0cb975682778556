"""Whole-model quantization: every method runs, saves, and loads back through load_model unchanged."""

import json

import pytest
import torch

from llmkit.core.assets import gpt2_ranks_path
from llmkit.formats.loader import load_model, save_model
from llmkit.model import Transformer, preset
from llmkit.model.qlinear import NF4Linear, QuantLinear
from llmkit.quantize import QuantizationError
from llmkit.quantize.api import calibration_ids, quantize
from llmkit.tokenizer import Tokenizer

TEXT = ("def add(a, b):\n    return a + b\n\nclass Point:\n    '''A point in the plane.'''\n" * 60)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    tok = Tokenizer.from_tiktoken_file(gpt2_ranks_path())
    cfg = preset("tiny-llama").replace(vocab_size=tok.vocab_size, n_layer=2, d_model=64, max_seq_len=128)
    model = Transformer(cfg).init_weights(seed=0).eval()
    path = tmp_path_factory.mktemp("q") / "fp32"
    save_model(path, model, tok, {"stage": "test"})
    return path, model


IDS = torch.tensor([[464, 3139, 286, 4881, 318, 6342, 13, 198, 40, 716]])


@pytest.mark.parametrize("method,kind", [("int8", QuantLinear), ("int8-zp", QuantLinear), ("int4", QuantLinear),
                                         ("nf4", NF4Linear), ("gptq", QuantLinear), ("awq", QuantLinear)])
def test_every_method_saves_and_loads(tiny, tmp_path, method, kind):
    path, fp = tiny
    out = quantize(path, method, bits=4, group_size=32, calib_text=TEXT, calib_samples=4, calib_len=32,
                   out=tmp_path / method)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["quantization"]["method"] == method and meta["lineage"][-1]["op"] == "quantize"
    lm = load_model(out)
    assert isinstance(lm.model.blocks[0].attn.wq, kind) and isinstance(lm.model.lm_head, kind)
    if kind is QuantLinear:  # 4-bit methods keep the head at int8
        assert lm.model.lm_head.bits == 8 and lm.model.blocks[0].attn.wq.bits == (8 if "int8" in method else 4)
    with torch.no_grad():
        got, ref = lm.model(IDS), fp(IDS)
    rel = (got - ref).norm() / ref.norm()
    assert rel < (0.02 if method.startswith("int8") else 0.3)
    again = load_model(out)  # loading is deterministic and the tok_emb stays tied to nothing else
    with torch.no_grad():
        torch.testing.assert_close(again.model(IDS), got)
    assert not any(n == "lm_head.weight" for n, _ in lm.model.named_parameters())


def test_old_checkpoints_still_load(tiny):
    path, fp = tiny
    lm = load_model(path)
    assert isinstance(lm.model.lm_head, torch.nn.Linear) and lm.model.lm_head.weight is lm.model.tok_emb.weight


def test_calibration_too_short_is_one_line_error():
    tok = Tokenizer.from_tiktoken_file(gpt2_ranks_path())
    with pytest.raises(QuantizationError, match=r"calibration text has \d+ tokens, fewer than the 4096 needed"):
        calibration_ids(tok, "def f(): pass", 16, 256)
    assert calibration_ids(tok, TEXT, 4, 32).shape == (4, 32)


def test_bad_settings_are_typed_errors(tiny, tmp_path):
    path, _ = tiny
    with pytest.raises(QuantizationError, match="group size 48 is not a multiple of 32"):
        quantize(path, "int4", group_size=48, out=tmp_path / "x")
    with pytest.raises(QuantizationError, match="group size 128 does not divide the 64 input features"):
        quantize(path, "int4", group_size=128, out=tmp_path / "x")
    with pytest.raises(QuantizationError, match="unknown quantization method 'int5'"):
        quantize(path, "int5", out=tmp_path / "x")
    with pytest.raises(QuantizationError, match="needs calibration text"):
        quantize(path, "gptq", out=tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_quantized_checkpoint_exports_through_its_dequantized_weights(tiny, tmp_path):
    from llmkit.formats.convert import convert

    path, _ = tiny
    q = quantize(path, "int4", group_size=32, out=tmp_path / "q")
    qlm = load_model(q)
    back = load_model(convert(str(q), tmp_path / "q.gguf", to="gguf", outtype="f32"), use_cache=False)
    ids = IDS.repeat(1, 2)  # 20 rows: the quantized model takes its exact dequantize path, not the kernel
    with torch.no_grad():  # the exported float weights are exactly the quantized model's dequantized ones
        torch.testing.assert_close(back.model(ids), qlm.model(ids), atol=1e-4, rtol=1e-4)
