import math

import pytest
import torch

from llmkit.core.errors import GenerationError
from llmkit.generate.sampling import (SamplingParams, apply_penalties, min_p_filter, process_logits, sample,
                                      top_k_filter, top_p_filter)

INF = float("-inf")


def test_top_k_keeps_k_largest():
    out = top_k_filter(torch.tensor([[1.0, 5.0, 3.0, 4.0]]), 2)
    assert out.tolist() == [[INF, 5.0, INF, 4.0]]


def test_top_p_keeps_smallest_nucleus():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    out = top_p_filter(probs.log(), 0.8)  # 0.5 + 0.3 reaches 0.8: two tokens
    assert torch.isfinite(out).tolist() == [[True, True, False, False]]
    out = top_p_filter(probs.log(), 0.81)  # needs the third
    assert torch.isfinite(out).tolist() == [[True, True, True, False]]
    out = top_p_filter(probs.log(), 0.1)  # always at least the top token
    assert torch.isfinite(out).tolist() == [[True, False, False, False]]


def test_top_p_unsorted_input():
    probs = torch.tensor([[0.05, 0.5, 0.15, 0.3]])
    assert torch.isfinite(top_p_filter(probs.log(), 0.8)).tolist() == [[False, True, False, True]]


def test_min_p_relative_to_top():
    probs = torch.tensor([[0.6, 0.3, 0.07, 0.03]])
    out = min_p_filter(probs.log(), 0.1)  # threshold 0.06
    assert torch.isfinite(out).tolist() == [[True, True, True, False]]


def test_penalties_known_values():
    logits = torch.tensor([[2.0, -2.0, 1.0, 0.5]])
    counts = torch.tensor([[2, 1, 0, 0]])
    assert apply_penalties(logits, counts, repetition=2.0).tolist() == [[1.0, -4.0, 1.0, 0.5]]
    assert apply_penalties(logits, counts, presence=0.5).tolist() == [[1.5, -2.5, 1.0, 0.5]]
    assert apply_penalties(logits, counts, frequency=0.5).tolist() == [[1.0, -2.5, 1.0, 0.5]]
    prompt = torch.tensor([[False, False, False, True]])
    assert apply_penalties(logits, counts, repetition=2.0, prompt_mask=prompt).tolist() == [[1.0, -4.0, 1.0, 0.25]]


def test_temperature_sharpens():
    logits = torch.tensor([[1.0, 2.0]])
    hot = process_logits(logits, SamplingParams(temperature=2.0)).softmax(-1)
    cold = process_logits(logits, SamplingParams(temperature=0.5)).softmax(-1)
    assert cold[0, 1] > logits.softmax(-1)[0, 1] > hot[0, 1]


def test_seeded_sampling_is_reproducible_and_follows_probs():
    logits = torch.tensor([[0.0, math.log(3.0)]])  # p = [0.25, 0.75]
    draws = [int(sample(logits, False, torch.Generator().manual_seed(s))[0]) for s in range(400)]
    assert 0.65 < sum(draws) / 400 < 0.85
    a = [int(sample(logits, False, torch.Generator().manual_seed(7))[0]) for _ in range(5)]
    assert len(set(a)) == 1


@pytest.mark.parametrize("bad", [dict(temperature=-1), dict(top_p=0), dict(top_p=1.5), dict(min_p=2),
                                 dict(max_tokens=-1), dict(presence_penalty=3), dict(repetition_penalty=0)])
def test_invalid_params(bad):
    with pytest.raises(GenerationError):
        SamplingParams(**bad)
