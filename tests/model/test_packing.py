"""Packed sequences (segment ids): each gets exactly the logits it would get alone."""

import pytest
import torch

from llmkit.model import Transformer, preset


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gpt"])
def test_packed_forward_equals_separate_forwards(name):
    torch.manual_seed(0)
    cfg = preset(name).replace(vocab_size=97, n_layer=2, max_seq_len=64)
    model = Transformer(cfg).init_weights(seed=0).eval()
    seqs = [torch.randint(0, 97, (n,)) for n in (7, 12, 3, 20)]
    x = torch.stack([torch.cat(seqs[:3]), torch.cat([seqs[3], torch.zeros(2, dtype=torch.long)])])  # row 1: 2 pads
    seg = torch.tensor([[1] * 7 + [2] * 12 + [3] * 3, [1] * 20 + [0] * 2])
    with torch.no_grad():
        packed = model(x, segments=seg)
        alone = [model(s[None])[0] for s in seqs]
    assert torch.allclose(packed[0, :7], alone[0], atol=1e-5)
    assert torch.allclose(packed[0, 7:19], alone[1], atol=1e-5)
    assert torch.allclose(packed[0, 19:22], alone[2], atol=1e-5)
    assert torch.allclose(packed[1, :20], alone[3], atol=1e-5)
    assert torch.isfinite(packed).all()  # pad positions too (they attend to each other only)
    with pytest.raises(ValueError, match="segments"):
        model(x, segments=seg[:, :5])
