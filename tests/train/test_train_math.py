import math

import pytest
import torch

from llmkit.model import Transformer, preset
from llmkit.train.losses import bits_per_byte, lm_loss
from llmkit.train.optim import param_groups
from llmkit.train.schedule import lr_at


def test_uniform_logits_give_log_vocab():
    V = 50
    logits = torch.zeros(2, 7, V)
    targets = torch.randint(0, V, (2, 7))
    assert float(lm_loss(logits, targets)) == pytest.approx(math.log(V))


def test_ignore_index_skips_positions():
    logits = torch.zeros(1, 3, 4)
    logits[0, 0, 1] = 10.0
    targets = torch.tensor([[1, -100, -100]])
    assert float(lm_loss(logits, targets)) < 1e-3


def test_bits_per_byte_known_value():
    # ln(2) nats/token = 1 bit/token; at 4 bytes/token that is 0.25 bits/byte
    assert bits_per_byte(math.log(2), 4.0) == pytest.approx(0.25)


def test_schedule_shape():
    lrs = [lr_at(s, 1.0, 10, 100, 0.1) for s in range(101)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))  # monotone decay after warmup
    assert lrs[55] == pytest.approx(0.55, abs=1e-9)  # cosine midpoint = (max + min) / 2
    assert lrs[100] == pytest.approx(0.1)


def test_weight_decay_only_on_matrices():
    model = Transformer(preset("tiny-llama").replace(n_layer=1))
    decay, no_decay = param_groups(model, 0.1)
    assert all(p.dim() == 2 for p in decay["params"]) and all(p.dim() == 1 for p in no_decay["params"])
    n = sum(p.numel() for g in (decay, no_decay) for p in g["params"])
    assert n == model.num_params()  # the tied embedding is counted once
