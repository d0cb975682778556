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


def _random_groups(g, n_groups, shared_prefix=()):
    groups = []
    for _ in range(n_groups):
        ctx = list(shared_prefix) + torch.randint(1, 300, (int(torch.randint(1, 20, (1,), generator=g)),),
                                                  generator=g).tolist()
        k = int(torch.randint(1, 5, (1,), generator=g))
        conts = [torch.randint(1, 300, (int(n),), generator=g).tolist() for n in torch.randint(1, 6, (k,), generator=g)]
        groups.append([(ctx, c) for c in conts])
    return groups


@pytest.mark.parametrize("batch", [1, 3, 16])
def test_batch_scorer_equals_reference(model, batch):
    """Cross-item batching (sorted by length, left-padded) and shared prefixes give the oracle's numbers."""
    from llmkit.eval.batch_scorer import BatchScorer

    g = torch.Generator().manual_seed(1)
    prefix = torch.randint(1, 300, (20,), generator=g).tolist()
    groups = _random_groups(g, 6) + _random_groups(g, 4, prefix) + _random_groups(g, 3)
    groups.append([([7, 8, 9], [1]), ([7, 8, 10], [1])])  # Winogrande-like: one context per choice
    groups.append([(list(range(1, 70)), [3, 4])])  # over the 64-token window
    got = BatchScorer(model, batch=batch, min_prefix=8).score(groups)
    for reqs, res in zip(groups, got):
        assert len(res) == len(reqs)
        for (ctx, cont), s in zip(reqs, res):
            ref = score_reference(model, ctx, cont)
            assert s.logprob == pytest.approx(ref.logprob, abs=1e-4) and s.greedy == ref.greedy
            assert s.n_tokens == len(cont)


def test_prefix_runs_share_only_long_common_prefixes():
    from llmkit.eval.batch_scorer import _prefix_runs, _Unit

    u = lambda ctx: _Unit(ctx, [[1]], [(0, 0)])  # noqa: E731
    units = [u([1, 2, 3, 4, 5]), u([1, 2, 3, 4, 6]), u([1, 2, 3, 9, 9]), u([5, 5, 5]), u([1, 2])]
    assert _prefix_runs(units, 3) == [([0, 1, 2], 3), ([3], 0), ([4], 0)]
    assert _prefix_runs(units, 4) == [([0, 1], 4), ([2], 0), ([3], 0), ([4], 0)]
