"""Export round trips: exact for F32 and fp16-representable F16, bounded for Q8_0/Q4; atomic on failure."""

import pytest
import torch

from llmkit.core.assets import gpt2_ranks_path
from llmkit.formats import gguf_export
from llmkit.formats.gguf_export import save_gguf
from llmkit.formats.loader import load_model
from llmkit.model import Transformer, preset
from llmkit.tokenizer import Tokenizer

IDS = torch.tensor([[464, 3139, 286, 4881, 318, 6342, 13, 198, 40, 716]])


@pytest.fixture(scope="module")
def tiny():
    tok = Tokenizer.from_tiktoken_file(gpt2_ranks_path())
    cfg = preset("tiny-llama").replace(vocab_size=tok.vocab_size, n_layer=2, d_model=64, max_seq_len=128,
                                       tie_embeddings=False)
    model = Transformer(cfg).init_weights(seed=0).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.half().float())  # fp16-representable: an F16 export must then be lossless
    return cfg, model, tok


def logits(model):
    with torch.no_grad():
        return model(IDS)


@pytest.mark.parametrize("outtype", ["f32", "f16"])
def test_gguf_round_trip_is_exact(tiny, tmp_path, outtype):
    cfg, model, tok = tiny
    out = save_gguf(tmp_path / f"m-{outtype}.gguf", cfg, model.export_state_dict(), tok, outtype)
    back = load_model(out, use_cache=False)
    assert torch.equal(logits(back.model), logits(model))


@pytest.mark.parametrize("outtype,tol", [("q8_0", 0.01), ("q4_0", 0.2), ("q4_1", 0.2)])
def test_gguf_block_quant_error_is_bounded(tiny, tmp_path, outtype, tol):
    cfg, model, tok = tiny
    out = save_gguf(tmp_path / f"m-{outtype}.gguf", cfg, model.export_state_dict(), tok, outtype)
    ref = logits(model)  # a random 64-wide model: 4-bit errors are large relative to its tiny logits
    deq = logits(load_model(out, use_cache=False).model)
    packed = logits(load_model(out, use_cache=False, keep_quantized=True).model)
    assert (deq - ref).norm() / ref.norm() < tol
    assert (packed - deq).norm() / deq.norm() < 0.05  # packed = same weights, int8-rounded activations


def test_interrupted_export_leaves_no_file(tiny, tmp_path, monkeypatch):
    cfg, model, tok = tiny
    calls = []

    def failing(t, qtype):
        calls.append(qtype)
        if len(calls) == 3:
            raise KeyboardInterrupt  # Ctrl-C halfway through the tensors
        return real(t, qtype)

    real = gguf_export.quantize
    monkeypatch.setattr(gguf_export, "quantize", failing)
    dst = tmp_path / "out.gguf"
    with pytest.raises(KeyboardInterrupt):
        save_gguf(dst, cfg, model.export_state_dict(), tok, "q8_0")
    assert list(tmp_path.iterdir()) == []  # neither the final name nor a temp file
