"""Merge math against values worked out by hand."""

import math

import pytest
import torch

from llmkit.merge import methods as M

A = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
B = torch.tensor([[0.0, 3.0], [1.0, 1.0]])


def test_linear_one_model_is_identity():
    for w in (1.0, 0.3, 7.0):
        torch.testing.assert_close(M.linear([A], [w]), A)


def test_linear_weights_by_hand():
    # (1*A + 3*B) / 4
    want = torch.tensor([[0.25, 2.25], [0.75, 1.25]])
    torch.testing.assert_close(M.linear([A, B], [1, 3]), want)
    torch.testing.assert_close(M.linear([A, B], [1, 3], normalize=False), A + 3 * B)


def test_slerp_endpoints():
    torch.manual_seed(0)
    a, b = torch.randn(4, 6), torch.randn(4, 6)
    torch.testing.assert_close(M.slerp(0.0, a, b), a)
    torch.testing.assert_close(M.slerp(1.0, a, b), b)


def test_slerp_orthogonal_midpoint():
    # unit vectors 90 degrees apart: the midpoint of the arc is (1, 1)/sqrt(2), not the chord's (0.5, 0.5)
    a, b = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    r = 1 / math.sqrt(2)
    torch.testing.assert_close(M.slerp(0.5, a, b), torch.tensor([r, r]))
    # at t = 1/3 the point is at 30 degrees
    torch.testing.assert_close(M.slerp(1 / 3, a, b), torch.tensor([math.cos(math.pi / 6), math.sin(math.pi / 6)]))


def test_slerp_coefficients_by_hand():
    ca, cb = M.slerp_coefficients(0.5, torch.tensor(0.0))
    assert ca.item() == pytest.approx(math.sin(math.pi / 4)) and cb.item() == pytest.approx(math.sin(math.pi / 4))
    ca, cb = M.slerp_coefficients(0.25, torch.tensor(1.0))  # collinear: lerp
    assert (ca.item(), cb.item()) == (0.75, 0.25)


def test_slerp_near_collinear_falls_back_to_lerp():
    a = torch.tensor([1.0, 2.0, 3.0])
    b = 2 * a + 1e-4  # same direction, twice the norm: acos(1)/sin(0) would be 0/0
    out = M.slerp(0.3, a, b)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, 0.7 * a + 0.3 * b)


def test_slerp_keeps_the_angle_uniform():
    # equal-norm tensors: the result stays on the sphere, its angle to a is t * theta
    a = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    b = torch.tensor([[0.0, 0.0], [0.0, -1.0]])
    out = M.slerp(0.25, a, b)
    assert torch.linalg.vector_norm(out).item() == pytest.approx(1.0)
    assert (out * a).sum().item() == pytest.approx(math.cos(math.pi / 8))


def test_task_arithmetic_by_hand():
    base = torch.tensor([1.0, 1.0, 1.0])
    x = torch.tensor([2.0, 1.0, 0.0])  # tau = [1, 0, -1]
    y = torch.tensor([1.0, 3.0, 1.0])  # tau = [0, 2, 0]
    torch.testing.assert_close(M.task_arithmetic(base, [x, y], [1.0, 0.5]), torch.tensor([2.0, 2.0, 0.0]))
    torch.testing.assert_close(M.task_arithmetic(base, [x], [-1.0]), torch.tensor([0.0, 1.0, 2.0]))  # negation
    torch.testing.assert_close(M.task_arithmetic(base, [x, y], [1.0, 1.0], lam=0.5), torch.tensor([1.5, 2.0, 0.5]))


def test_trim_mask_keeps_largest_magnitudes():
    d = torch.tensor([0.1, -3.0, 2.0, -0.5])
    assert M.trim_mask(d, 0.5).tolist() == [0, 1, 1, 0]
    assert M.trim_mask(d, 0.01).tolist() == [0, 1, 0, 0]  # at least one entry survives
    assert M.trim_mask(d, 1.0).tolist() == [1, 1, 1, 1]


def test_elect_sign_by_mass_and_by_count():
    deltas = torch.tensor([[3.0, -1.0], [-1.0, -1.0], [-1.0, 3.0]])
    assert M.elect_sign(deltas, "sum").tolist() == [1, 1]  # 3 - 1 - 1 > 0; -1 - 1 + 3 > 0
    assert M.elect_sign(deltas, "count").tolist() == [-1, -1]  # two of three are negative


def test_ties_keeps_sign_consensus_values():
    base = torch.zeros(4)
    # task vectors (base is 0): the elected signs are [+, -, +, +] (sum of mass)
    x = torch.tensor([2.0, -1.0, 0.5, 0.0])
    y = torch.tensor([1.0, 3.0, -1.0, 0.0])
    z = torch.tensor([-0.5, -4.0, 2.0, 1.0])
    out = M.ties(base, [x, y, z], [1, 1, 1], [1, 1, 1])
    # entry 0: + wins (2.5), agreeing values 2 and 1 -> mean 1.5 (the -0.5 is dropped, not averaged in)
    # entry 1: - wins (-2), agreeing -1 and -4 -> -2.5; entry 2: + wins, 0.5 and 2 -> 1.25; entry 3: only z -> 1
    torch.testing.assert_close(out, torch.tensor([1.5, -2.5, 1.25, 1.0]))


def test_ties_trim_then_elect():
    base = torch.ones(4)
    x = base + torch.tensor([4.0, 0.1, -0.2, 3.0])  # density 0.5 keeps 4 and 3
    y = base + torch.tensor([-1.0, 0.0, -2.0, 0.3])  # density 0.5 keeps -1 and -2
    out = M.ties(base, [x, y], [1, 1], [0.5, 0.5])
    # entry 0: 4 vs -1 -> + wins, keeps 4; entry 2: only -2; entry 3: only 3; entry 1: nothing kept
    torch.testing.assert_close(out, base + torch.tensor([4.0, 0.0, -2.0, 3.0]))
    # without normalize the kept values are summed with their weights
    out = M.ties(base, [x, y], [0.5, 0.5], [0.5, 0.5], normalize=False)
    torch.testing.assert_close(out, base + torch.tensor([2.0, 0.0, -1.0, 1.5]))


def test_dare_rescale_preserves_expectation():
    delta = torch.linspace(-1, 1, 64)
    g = torch.Generator().manual_seed(0)
    mean = torch.stack([M.dare(delta, 0.3, g) for _ in range(4000)]).mean(0)
    torch.testing.assert_close(mean, delta, atol=0.08, rtol=0)  # each entry: delta/p with prob p, else 0
    one = M.dare(delta, 0.3, torch.Generator().manual_seed(1))
    kept = one != 0
    torch.testing.assert_close(one[kept], delta[kept] / 0.3)  # survivors scaled by exactly 1/p
    assert 0.15 < kept.float().mean() < 0.45


def test_dare_is_seeded_and_density_edges():
    delta = torch.randn(100)
    a = M.dare(delta, 0.5, torch.Generator().manual_seed(7))
    b = M.dare(delta, 0.5, torch.Generator().manual_seed(7))
    assert torch.equal(a, b)
    assert torch.equal(M.dare(delta, 1.0), delta)
    assert torch.equal(M.dare(delta, 0.0), torch.zeros_like(delta))
    assert torch.equal(M.dare(delta, 0.5, torch.Generator().manual_seed(7), rescale=False) * 2, a)


def test_dare_ties_with_density_one_is_ties():
    torch.manual_seed(0)
    base, x, y = torch.randn(3, 10)
    got = M.dare_merge(base, [x, y], [0.7, 0.3], [1.0, 1.0], consensus="sum", normalize=True)
    torch.testing.assert_close(got, M.ties(base, [x, y], [0.7, 0.3], [1.0, 1.0]))
