"""The batched, prefix-sharing scorer equals the obvious full-forward scorer."""

import pytest
import torch

from llmkit.eval.loglik import score_choices, score_reference, split_pair
from llmkit.model import Transformer, preset


@pytest.fixture(scope="module")
def model():
    cfg = preset("tiny-llama").replace(vocab_size=300, n_layer=2, d_model=64, max_seq_len=64)
    return Transformer(cfg).init_weights(seed=0).eval()


def test_prefix_shared_scoring_equals_reference(model):
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        ctx = torch.randint(0, 300, (int(torch.randint(1, 30, (1,), generator=g)),), generator=g).tolist()
        conts = [torch.randint(0, 300, (int(n),), generator=g).tolist()
                 for n in torch.randint(1, 8, (4,), generator=g)]
        got = score_choices(model, ctx, conts)
        for s, c in zip(got, conts):
            ref = score_reference(model, ctx, c)
            assert s.logprob == pytest.approx(ref.logprob, abs=1e-4) and s.greedy == ref.greedy


def test_long_context_is_left_truncated(model):
    ctx = list(range(1, 100))  # longer than the 64-token window
    s = score_choices(model, ctx, [[5, 6, 7]])[0]
    ref = score_reference(model, ctx, [5, 6, 7])
    assert s.logprob == pytest.approx(ref.logprob, abs=1e-4)


class Chars:
    """Character-level stand-in tokenizer."""

    bos_id, eos_id = None, 0

    def encode(self, text, allowed_special="none"):
        return [ord(c) % 300 for c in text]


def test_split_pair_moves_trailing_space():
    tok = Chars()
    ctx, cont = split_pair(tok, "Question: hi\nAnswer: ", "yes")
    assert ctx == tok.encode("Question: hi\nAnswer:") and cont == tok.encode(" yes")
    ctx, cont = split_pair(tok, "", "abc")
    assert ctx == [0] and cont == tok.encode("abc")
