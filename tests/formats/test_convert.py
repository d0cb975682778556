"""Round trips through every format, checked against transformers where it can read the file."""

import json

import pytest
import torch

from llmkit.core import checkpoint as ckpt
from llmkit.core.assets import gpt2_ranks_path
from llmkit.formats.convert import convert
from llmkit.formats.gguf_reader import read_gguf
from llmkit.formats.loader import load_model, save_model
from llmkit.model import Transformer, preset
from llmkit.tokenizer import ChatTemplate, Tokenizer

import transformers as transformers  # a test extra: missing must fail, not skip


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    """A tiny random Llama (GQA) with the real GPT-2 tokenizer, saved as an llmkit checkpoint."""
    tok = Tokenizer.from_tiktoken_file(gpt2_ranks_path())
    tok.chat_template = ChatTemplate.builtin("chatml").source
    cfg = preset("tiny-llama").replace(vocab_size=tok.vocab_size, n_layer=2, d_model=64, max_seq_len=256,
                                       tie_embeddings=False)
    model = Transformer(cfg).init_weights(seed=0).eval()
    path = tmp_path_factory.mktemp("ckpt") / "tiny"
    save_model(path, model, tok, {"stage": "test"})
    return path, model


IDS = torch.tensor([[464, 3139, 286, 4881, 318, 6342, 13, 50256, 198, 40]])


def logits(model):
    with torch.no_grad():
        return model(IDS)


def test_checkpoint_roundtrip(tiny_ckpt, tmp_path):
    path, model = tiny_ckpt
    lm = load_model(path)
    torch.testing.assert_close(logits(lm.model), logits(model))
    assert lm.tokenizer.encode("hello world") == [31373, 995]
    out = convert(str(path), tmp_path / "copy")
    meta = json.loads((out / "meta.json").read_text())
    assert meta["format"] == ckpt.FORMAT and meta["lineage"][-1]["op"] == "convert"


def test_hf_export_loads_in_transformers(tiny_ckpt, tmp_path):
    path, model = tiny_ckpt
    out = convert(str(path), tmp_path / "hf", to="hf")
    hf = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    with torch.no_grad():
        torch.testing.assert_close(hf(IDS).logits, logits(model), atol=1e-4, rtol=1e-4)
    hf_tok = transformers.AutoTokenizer.from_pretrained(out)
    assert hf_tok.encode("hello world <|endoftext|>") == [31373, 995, 220, 50256]
    back = load_model(out)  # and the HF directory imports again
    torch.testing.assert_close(logits(back.model), logits(model))


@pytest.mark.parametrize("outtype", ["f32", "f16", "q8_0"])
def test_gguf_export_roundtrip(tiny_ckpt, tmp_path, outtype):
    path, model = tiny_ckpt
    out = convert(str(path), tmp_path / f"tiny-{outtype}.gguf", to="gguf", outtype=outtype)
    gf = read_gguf(out)
    assert gf.architecture == "llama" and gf.metadata["tokenizer.ggml.pre"] == "gpt-2"  # llama.cpp's name
    assert gf.metadata["tokenizer.chat_template"].startswith("{%")
    lm = load_model(out)
    tol = {"f32": 1e-5, "f16": 5e-3, "q8_0": 5e-2}[outtype]
    torch.testing.assert_close(logits(lm.model), logits(model), atol=tol, rtol=0)
    assert lm.tokenizer.encode("hello world") == [31373, 995]


def test_gguf_export_loads_in_transformers(tiny_ckpt, tmp_path):
    path, model = tiny_ckpt
    out = convert(str(path), tmp_path / "tiny.gguf", to="gguf", outtype="f32")
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file=out.name, dtype=torch.float32)
    with torch.no_grad():
        torch.testing.assert_close(hf.eval()(IDS).logits, logits(model), atol=1e-4, rtol=1e-4)


def test_convert_refuses_to_overwrite_source(tiny_ckpt):
    from llmkit.core.errors import ConfigError

    path, _ = tiny_ckpt
    with pytest.raises(ConfigError, match="is the source"):
        convert(str(path), path)
