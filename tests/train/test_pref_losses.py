"""Preference and RL losses on fixed log-probabilities: known values, the published formulas, TRL where exposed."""

import math
from types import SimpleNamespace

import pytest
import torch

import trl as trl  # a test extra: missing must fail, not skip

from llmkit.core.errors import ConfigError
from llmkit.train.losses import (dpo_loss, group_advantages, grpo_loss, k3_kl, kto_loss, log1mexp, orpo_loss,
                                 sequence_logprobs, token_logprobs)

PI_C = torch.tensor([-5.0, -12.0, -3.5, -20.0])
PI_R = torch.tensor([-7.0, -10.0, -3.0, -25.0])
REF_C = torch.tensor([-6.0, -11.0, -3.2, -21.0])
REF_R = torch.tensor([-6.5, -10.5, -3.1, -24.0])


def test_dpo_policy_equal_reference_is_log2():
    x = torch.randn(6)
    y = torch.randn(6)
    loss, rc, rr = dpo_loss(x, y, x, y, beta=0.3)
    assert loss.item() == pytest.approx(math.log(2), abs=1e-7)
    assert torch.all(rc == 0) and torch.all(rr == 0)


@pytest.mark.parametrize("beta", [0.1, 0.5])
def test_dpo_variants_match_the_published_formulas(beta):
    for b in range(4):  # one pair at a time, written out with math
        h = (PI_C[b] - REF_C[b]).item() - (PI_R[b] - REF_R[b]).item()
        sig = -math.log(1 / (1 + math.exp(-beta * h)))
        ipo = (h - 1 / (2 * beta)) ** 2
        hinge = max(0.0, 1 - beta * h)
        args = (PI_C[b:b + 1], PI_R[b:b + 1], REF_C[b:b + 1], REF_R[b:b + 1])
        assert dpo_loss(*args, beta=beta)[0].item() == pytest.approx(sig, rel=1e-6)
        assert dpo_loss(*args, beta=beta, loss_type="ipo")[0].item() == pytest.approx(ipo, rel=1e-6)
        assert dpo_loss(*args, beta=beta, loss_type="hinge")[0].item() == pytest.approx(hinge, rel=1e-6, abs=1e-7)
    _, rc, rr = dpo_loss(PI_C, PI_R, REF_C, REF_R, beta=beta)
    torch.testing.assert_close(rc, beta * (PI_C - REF_C))
    torch.testing.assert_close(rr, beta * (PI_R - REF_R))


def test_conservative_dpo_and_gradient_direction():
    eps = 0.1
    h = ((PI_C - REF_C) - (PI_R - REF_R))
    expected = (-(1 - eps) * torch.log(torch.sigmoid(0.1 * h)) - eps * torch.log(torch.sigmoid(-0.1 * h))).mean()
    got = dpo_loss(PI_C, PI_R, REF_C, REF_R, beta=0.1, label_smoothing=eps)[0]
    torch.testing.assert_close(got, expected)
    pc = PI_C.clone().requires_grad_(True)
    dpo_loss(pc, PI_R, REF_C, REF_R)[0].backward()
    assert torch.all(pc.grad < 0)  # raising the chosen log-prob lowers the loss


def test_unknown_dpo_type():
    with pytest.raises(ConfigError, match="'kto'"):
        dpo_loss(PI_C, PI_R, REF_C, REF_R, loss_type="kto")


def test_orpo_matches_trl_and_formula():
    pc, pr = torch.tensor([-0.3, -1.2, -0.05, -2.5]), torch.tensor([-0.9, -0.7, -0.4, -3.0])
    nll = torch.tensor(0.8)
    loss, log_odds, ratio = orpo_loss(pc, pr, nll, lam=0.25)
    for i in range(4):
        p, q = math.exp(pc[i]), math.exp(pr[i])
        lo = math.log(p / (1 - p)) - math.log(q / (1 - q))
        assert log_odds[i].item() == pytest.approx(lo, rel=1e-5)
    # TRL's ORPOTrainer.odds_ratio_loss only reads self.beta and self.accelerator.device
    from trl.experimental.orpo.orpo_trainer import ORPOTrainer

    fake = SimpleNamespace(beta=0.25, accelerator=SimpleNamespace(device="cpu"))
    losses, _, _, mean_ratio, mean_log_odds = ORPOTrainer.odds_ratio_loss(fake, pc, pr)
    torch.testing.assert_close(loss, nll - losses.mean())
    torch.testing.assert_close(log_odds.mean(), mean_log_odds)
    torch.testing.assert_close(ratio.mean(), mean_ratio)


def test_log1mexp_is_stable_on_both_branches():
    xs = [-1e-6, -0.1, -0.6931, -0.7, -5.0, -30.0]
    # float64 references, each written the way that is exact on its side
    ref = torch.tensor([math.log(-math.expm1(v)) if v > -1 else math.log1p(-math.exp(v)) for v in xs])
    got = log1mexp(torch.tensor(xs, dtype=torch.float32))  # the naive float32 form gives -inf / 0 at the ends
    torch.testing.assert_close(got, ref.float(), rtol=1e-5, atol=1e-12)


def test_kto_matches_the_paper_formula():
    pi, ref = torch.tensor([-4.0, -6.0, -2.0]), torch.tensor([-5.0, -5.5, -2.5])
    desirable = torch.tensor([1, 0, 1])
    kl, beta = 0.2, 0.5
    loss, rewards = kto_loss(pi, ref, desirable, kl, beta=beta, desirable_weight=1.0, undesirable_weight=1.5)
    sig = lambda z: 1 / (1 + math.exp(-z))  # noqa: E731
    r = [1.0, -0.5, 0.5]
    expected = [(1 - sig(beta * (r[0] - kl))), 1.5 * (1 - sig(beta * (kl - r[1]))), (1 - sig(beta * (r[2] - kl)))]
    assert loss.item() == pytest.approx(sum(expected) / 3, rel=1e-6)
    torch.testing.assert_close(rewards, beta * (pi - ref))
    # policy == reference and KL 0: every term is 1 - σ(0) = 0.5
    assert kto_loss(pi, pi, desirable, 0.0)[0].item() == pytest.approx(0.5)
    # a negative KL estimate is clamped to 0
    assert kto_loss(pi, ref, desirable, -3.0)[0].item() == pytest.approx(kto_loss(pi, ref, desirable, 0.0)[0].item())


def test_group_advantages_match_trl_normalisation():
    from trl.trainer.utils import nanstd

    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.5, 0.5, 0.5, 0.5, 2.0, 0.0, 1.0, 3.0])
    adv = group_advantages(rewards, 4)
    g = rewards.view(-1, 4)
    expected = (g - g.mean(1, keepdim=True)) / (nanstd(g, dim=1).unsqueeze(1) + 1e-4)
    torch.testing.assert_close(adv, expected.reshape(-1))
    assert torch.all(adv[4:8] == 0)  # a group with equal rewards teaches nothing
    assert group_advantages(rewards, 4)[:4].sum().abs() < 1e-6
    torch.testing.assert_close(group_advantages(rewards, 4, scale=False), (g - g.mean(1, keepdim=True)).reshape(-1))


def test_k3_is_nonnegative_and_zero_at_equality():
    a, b = torch.randn(50), torch.randn(50)
    assert torch.all(k3_kl(a, b) >= 0)
    assert torch.all(k3_kl(a, a) == 0)
    # k3 is an unbiased estimator of KL(p || q) under samples from p
    p, q = torch.tensor([0.7, 0.2, 0.1]), torch.tensor([0.5, 0.3, 0.2])
    exact = (p * (p / q).log()).sum()
    estimate = (p * k3_kl(p.log(), q.log())).sum()
    torch.testing.assert_close(estimate, exact)


def test_grpo_clipped_objective_by_hand():
    logp = torch.tensor([[-1.0, -2.0, -0.5], [-0.3, -0.2, -4.0]])
    old = torch.tensor([[-1.5, -2.0, -0.4], [-0.3, -0.9, -4.0]])
    ref = torch.tensor([[-1.2, -1.8, -0.5], [-0.4, -0.2, -3.0]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    adv = torch.tensor([1.0, -2.0])
    eps, beta = 0.2, 0.1
    loss, kl, clip_frac = grpo_loss(logp, old, ref, adv, mask, eps, beta)
    rows = []
    for i in range(2):
        toks = []
        for t in range(3):
            if not mask[i, t]:
                continue
            r = math.exp(logp[i, t] - old[i, t])
            a = adv[i].item()
            obj = min(r * a, min(max(r, 1 - eps), 1 + eps) * a)
            d = (ref[i, t] - logp[i, t]).item()
            toks.append(-obj + beta * (math.exp(d) - d - 1))
        rows.append(sum(toks) / len(toks))
    assert loss.item() == pytest.approx(sum(rows) / 2, rel=1e-6)
    assert 0 < clip_frac < 1 and kl > 0


def test_grpo_on_policy_gradient_is_advantage_weighted():
    """ratio = 1 on the first update, so the gradient is -A · ∇logp / T per token (no clipping active)."""
    logp = torch.tensor([[-1.0, -2.0]], requires_grad=True)
    loss, _, _ = grpo_loss(logp, logp.detach(), None, torch.tensor([3.0]), torch.ones(1, 2), beta=0.0)
    loss.backward()
    torch.testing.assert_close(logp.grad, torch.tensor([[-1.5, -1.5]]))


def test_sequence_logprobs_sum_and_mean():
    logits = torch.randn(2, 4, 7)
    targets = torch.tensor([[1, 2, -100, -100], [3, -100, 4, 5]])
    lp = logits.log_softmax(-1)
    s0 = lp[0, 0, 1] + lp[0, 1, 2]
    s1 = lp[1, 0, 3] + lp[1, 2, 4] + lp[1, 3, 5]
    torch.testing.assert_close(sequence_logprobs(logits, targets), torch.stack([s0, s1]))
    torch.testing.assert_close(sequence_logprobs(logits, targets, average=True), torch.stack([s0 / 2, s1 / 3]))
    assert token_logprobs(logits, targets)[0, 2] == 0
