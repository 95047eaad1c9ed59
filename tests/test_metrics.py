"""Tests of utils/metrics.py against hand computations in float64 (math / numpy)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from utils.metrics import bce_sum, elbo_loss, gaussian_kld_sum, mse_sum


def bce_reference(logits, x) -> float:
    """-sum[x log sigmoid(l) + (1 - x) log(1 - sigmoid(l))], term by term with math."""
    total = 0.0
    for l, t in zip(np.ravel(logits).tolist(), np.ravel(x).tolist()):
        s = 1.0 / (1.0 + math.exp(-l))
        total -= t * math.log(s) + (1 - t) * math.log(1 - s)
    return total


def kld_reference(mu, logvar) -> float:
    """KL(N(mu, s^2) || N(0, 1)) = log(1/s) + (s^2 + mu^2) / 2 - 1/2, per coordinate."""
    total = 0.0
    for m, lv in zip(np.ravel(mu).tolist(), np.ravel(logvar).tolist()):
        s2 = math.exp(lv)
        total += -0.5 * lv + 0.5 * (s2 + m * m) - 0.5
    return total


@pytest.fixture
def small():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 1, 28, 28, generator=g) * 3
    x = torch.rand(2, 1, 28, 28, generator=g)
    x[0, 0, :5] = 0.0
    x[1, 0, :5] = 1.0  # binary pixels as well as grey ones
    mu = torch.randn(2, 4, generator=g)
    logvar = torch.randn(2, 4, generator=g)
    return logits, x, mu, logvar


def test_bce_matches_the_formula(small):
    logits, x, _, _ = small
    assert bce_sum(logits, x).item() == pytest.approx(bce_reference(logits, x), rel=1e-5)


def test_bce_on_a_hand_computed_example():
    # logits 0 -> p = 1/2: each pixel costs log 2 whatever x is
    assert bce_sum(torch.zeros(3, 1, 28, 28), torch.rand(3, 1, 28, 28)).item() == \
        pytest.approx(3 * 784 * math.log(2), rel=1e-6)
    # logit log(3) -> p = 3/4; x = 1 costs -log(3/4), x = 0 costs -log(1/4)
    l = torch.full((1, 2), math.log(3.0))
    assert bce_sum(l, torch.tensor([[1.0, 0.0]])).item() == pytest.approx(
        -math.log(0.75) - math.log(0.25), rel=1e-6)


def test_kld_matches_the_closed_form(small):
    _, _, mu, logvar = small
    assert gaussian_kld_sum(mu, logvar).item() == pytest.approx(kld_reference(mu, logvar), rel=1e-5)


def test_kld_is_zero_at_the_prior_and_positive_elsewhere():
    assert gaussian_kld_sum(torch.zeros(5, 3), torch.zeros(5, 3)).item() == 0.0
    assert gaussian_kld_sum(torch.full((1, 1), 0.1), torch.zeros(1, 1)).item() > 0
    assert gaussian_kld_sum(torch.zeros(1, 1), torch.full((1, 1), -0.1)).item() > 0
    # mu = 2, sigma = 1: KL = mu^2 / 2 = 2 per coordinate
    assert gaussian_kld_sum(torch.full((2, 3), 2.0), torch.zeros(2, 3)).item() == pytest.approx(12.0)


def test_kld_agrees_with_a_monte_carlo_estimate():
    """E_q[log q(z) - log p(z)] over many samples of q."""
    mu = torch.tensor([[0.5, -1.0, 2.0]], dtype=torch.float64)
    logvar = torch.tensor([[-1.0, 0.7, 0.0]], dtype=torch.float64)
    std = torch.exp(0.5 * logvar)
    g = torch.Generator().manual_seed(0)
    z = mu + std * torch.randn(400_000, 3, generator=g, dtype=torch.float64)
    q = torch.distributions.Normal(mu, std)
    p = torch.distributions.Normal(torch.zeros(()), torch.ones(()))
    mc = (q.log_prob(z) - p.log_prob(z)).sum(1).mean().item()
    assert gaussian_kld_sum(mu, logvar).item() == pytest.approx(mc, rel=0.01)


@pytest.mark.parametrize("logit", [100.0, -100.0])
def test_large_logits_are_stable(logit):
    """sigmoid(+-100) rounds to 1/0 in float32; the loss must stay finite and equal
    softplus(l) - x*l, which is |l| for the wrong binary label and ~0 for the right one."""
    x = torch.tensor([[0.0, 1.0, 0.5]])
    l = torch.full((1, 3), logit)
    expected = sum(max(logit, 0) - t * logit + math.log1p(math.exp(-abs(logit)))
                   for t in x.ravel().tolist())
    got = bce_sum(l, x)
    assert torch.isfinite(got) and got.item() == pytest.approx(expected, rel=1e-6)
    total, bce, _ = elbo_loss(l, x, torch.zeros(1, 2), torch.zeros(1, 2))
    assert torch.isfinite(total) and total.item() == pytest.approx(expected, rel=1e-6)


def test_large_logits_give_finite_gradients():
    l = torch.tensor([[100.0, -100.0]], requires_grad=True)
    bce_sum(l, torch.tensor([[0.0, 1.0]])).backward()
    # d/dl [softplus(l) - x l] = sigmoid(l) - x  ->  (1, -1)
    assert torch.allclose(l.grad, torch.tensor([[1.0, -1.0]]))


def test_elbo_total_is_bce_plus_kld(small):
    logits, x, mu, logvar = small
    total, bce, kld = elbo_loss(logits, x, mu, logvar)
    assert all(t.dim() == 0 for t in (total, bce, kld))
    assert bce.item() == pytest.approx(bce_reference(logits, x), rel=1e-5)
    assert kld.item() == pytest.approx(kld_reference(mu, logvar), rel=1e-5)
    assert total.item() == pytest.approx(bce.item() + kld.item(), rel=1e-6)


@pytest.mark.parametrize("beta", [0.0, 0.1, 2.5])
def test_kl_weight_scales_only_the_kl_term(small, beta):
    """The beta-VAE objective: bce + beta * kld, with both terms unweighted."""
    logits, x, mu, logvar = small
    total, bce, kld = elbo_loss(logits, x, mu, logvar, kl_weight=beta)
    assert bce.item() == pytest.approx(bce_reference(logits, x), rel=1e-5)
    assert kld.item() == pytest.approx(kld_reference(mu, logvar), rel=1e-5)
    assert total.item() == pytest.approx(bce_reference(logits, x) + beta * kld_reference(mu, logvar),
                                         rel=1e-5)


def test_elbo_sums_over_the_batch(small):
    logits, x, mu, logvar = small
    one = elbo_loss(logits, x, mu, logvar)
    two = elbo_loss(torch.cat([logits, logits]), torch.cat([x, x]),
                    torch.cat([mu, mu]), torch.cat([logvar, logvar]))
    for a, b in zip(one, two):
        assert b.item() == pytest.approx(2 * a.item(), rel=1e-5)
    # and the per-sample terms add up: the loss of the batch = sum of single-sample losses
    singles = [elbo_loss(logits[i:i + 1], x[i:i + 1], mu[i:i + 1], logvar[i:i + 1])[0].item()
               for i in range(2)]
    assert one[0].item() == pytest.approx(sum(singles), rel=1e-5)


def test_mse_sum():
    a = torch.tensor([[0.0, 0.5, 1.0]])
    b = torch.tensor([[1.0, 0.5, 0.0]])
    assert mse_sum(a, b).item() == pytest.approx(2.0)
    assert mse_sum(torch.cat([a, a]), torch.cat([b, a])).item() == pytest.approx(2.0)
