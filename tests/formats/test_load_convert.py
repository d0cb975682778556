"""load_model(convert_linear=...): layers replaced as they are read, one float layer alive at a time."""

import gc
import weakref

import pytest
import torch

from llmkit.core import checkpoint as ckpt
from llmkit.core.assets import gpt2_ranks_path
from llmkit.core.errors import FormatError
from llmkit.formats.hf import save_hf
from llmkit.formats.loader import load_model, save_model
from llmkit.model import Transformer, preset
from llmkit.model.qlinear import NF4Linear
from llmkit.quantize.apply import nf4_base
from llmkit.tokenizer import Tokenizer

IDS = torch.tensor([[464, 3139, 286, 4881, 318, 6342, 13, 198, 40, 716]])
PICK = ("attn.wq", "attn.wv", "mlp.w_down")  # a mix: some Linears converted, the others kept


@pytest.fixture(scope="module")
def tok():
    return Tokenizer.from_tiktoken_file(gpt2_ranks_path())


def _config(arch, vocab):
    if arch == "gpt2":  # HF layout: fused, transposed c_attn (split on load), biases everywhere
        return preset("tiny-gpt").replace(vocab_size=vocab, n_layer=2, d_model=64, max_seq_len=64)
    return preset("tiny-llama").replace(arch="qwen2", vocab_size=vocab, n_layer=2, d_model=64, max_seq_len=64,
                                        qkv_bias=True, tie_embeddings=False)


@pytest.fixture(scope="module", params=[("qwen2", "llmkit"), ("qwen2", "hf"), ("gpt2", "llmkit"), ("gpt2", "hf")],
                ids=lambda p: "-".join(p))
def source(request, tmp_path_factory, tok):
    arch, kind = request.param
    model = Transformer(_config(arch, tok.vocab_size)).init_weights(seed=0)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n.endswith("bias"):
                p.normal_(0, 0.1)  # zero biases would hide a bias that is dropped on the way
    path = tmp_path_factory.mktemp(f"{arch}-{kind}") / "m"
    if kind == "llmkit":
        save_model(path, model, tok)
    else:
        save_hf(path, model.cfg, model.export_state_dict(), tok)
    return path


def _to_nf4(name, lin):
    return NF4Linear.from_linear(lin, 64) if name.endswith(PICK) else None


def _logits(model):
    with torch.no_grad():
        return model.eval()(IDS)


def test_converting_on_load_equals_converting_after(source):
    """Same layers, same codes, same logits as loading in full and then quantizing (nf4_base): the oracle."""
    ours = load_model(source, device="cpu", dtype="float32", convert_linear=_to_nf4).model
    ref = load_model(source, device="cpu", dtype="float32").model
    nf4_base(ref, [n for n, m in ref.named_modules() if n.startswith("blocks.") and n.endswith(PICK)], 64)
    a, b = ours.state_dict(), ref.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), k
    assert sum(isinstance(m, NF4Linear) for m in ours.modules()) == 2 * len(PICK)
    assert torch.equal(_logits(ours), _logits(ref))


def test_keeping_every_layer_equals_a_plain_load(source):
    """The lazy readers (safetensors, HF renames / GPT-2 split and transpose) give the eager load's weights."""
    ours = load_model(source, device="cpu", dtype="float32", convert_linear=lambda name, lin: None).model
    ref = load_model(source, device="cpu", dtype="float32").model
    a, b = ours.state_dict(), ref.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert ours.cfg.tie_embeddings == (ours.lm_head.weight is ours.tok_emb.weight)


def test_converted_layers_are_freed_before_the_next_is_read(source, monkeypatch):
    """When convert sees layer i, no float weight of a layer converted earlier is alive anywhere."""
    read = []  # weak references to every tensor the loader read from disk
    get = ckpt.LazyTensors.__getitem__

    def tracked(self, name):
        t = get(self, name)
        read.append((name, weakref.ref(t)))
        return t

    monkeypatch.setattr(ckpt.LazyTensors, "__getitem__", tracked)
    converted = []  # (module name, weak ref to the Linear, to its weight)

    def convert(name, lin):
        gc.collect()
        for done, lin_ref, w_ref in converted:
            assert lin_ref() is None and w_ref() is None, f"{done} still alive when {name} is read"
            alive = [n for n, r in read if n.startswith(done + ".") and r() is not None]
            assert not alive, alive
        if not name.endswith(PICK):
            return None
        assert lin.weight.dtype == torch.float32 and not lin.weight.is_meta
        converted.append((name, weakref.ref(lin), weakref.ref(lin.weight)))
        return NF4Linear.from_linear(lin, 64)

    model = load_model(source, device="cpu", dtype="float32", convert_linear=convert).model
    assert len(converted) == 2 * len(PICK) and read  # the lazy path was taken
    assert not any(isinstance(m, torch.nn.Linear) for n, m in model.named_modules() if n.endswith(PICK))


def test_a_missing_tensor_is_a_format_error(tmp_path, tok):
    model = Transformer(_config("qwen2", tok.vocab_size)).init_weights(seed=0)
    sd = model.export_state_dict()
    del sd["blocks.1.mlp.w_up.weight"]
    ckpt.save_checkpoint(tmp_path / "m", sd, model.cfg.to_dict(), files={})
    tok.save(tmp_path / "m")
    with pytest.raises(FormatError, match="w_up"):
        load_model(tmp_path / "m", device="cpu", convert_linear=_to_nf4)
