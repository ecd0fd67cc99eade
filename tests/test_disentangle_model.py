"""Property tests of superpos.disentangle.model: the loss terms against independent computations
(torch.distributions, Monte Carlo, the folded-normal mean written separately) and the model."""
import math

import pytest
import torch

from superpos.core import ConfigError, DataError
from superpos.disentangle.model import (VAE, encode, gaussian_entropy, laplace_cross_entropy, normal_cross_entropy,
                                        slowvae_loss)

torch.set_num_threads(1)


# ---------------------------------------------------------------- loss terms
@pytest.mark.parametrize("mu,logvar,loc,rate", [(0.0, 0.0, 0.0, 6.0), (0.7, -3.0, 0.1, 6.0),
                                                (-2.0, 1.0, 0.5, 1.0), (3.0, -6.0, -1.0, 10.0)])
def test_laplace_cross_entropy_matches_monte_carlo(mu, logvar, loc, rate):
    gen = torch.Generator().manual_seed(1)
    z = mu + math.exp(0.5 * logvar) * torch.randn(1_000_000, generator=gen, dtype=torch.float64)
    mc = -torch.distributions.Laplace(torch.tensor(loc).double(), torch.tensor(1 / rate).double()).log_prob(z)
    closed = laplace_cross_entropy(torch.tensor(mu).double(), torch.tensor(logvar).double(), loc, rate)
    assert abs(closed.item() - mc.mean().item()) < 4 * mc.std().item() / 1000 + 1e-9


def test_laplace_cross_entropy_rejects_bad_rate():
    with pytest.raises(ConfigError, match="rate must be positive"):
        laplace_cross_entropy(torch.zeros(1), torch.zeros(1), 0.0, rate=-1.0)


def test_gaussian_terms_match_torch_distributions():
    gen = torch.Generator().manual_seed(0)
    mu, logvar = torch.randn(50, 10, generator=gen).double(), torch.randn(50, 10, generator=gen).double()
    q = torch.distributions.Normal(mu, torch.exp(0.5 * logvar))
    prior = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))
    torch.testing.assert_close(gaussian_entropy(logvar), q.entropy())
    torch.testing.assert_close(normal_cross_entropy(mu, logvar) - gaussian_entropy(logvar),
                               torch.distributions.kl_divergence(q, prior))


def _independent_loss(images, logits, mu, logvar, beta, gamma, rate):
    """The SlowVAE loss from torch.distributions and the folded-normal mean, written separately."""
    n = len(images)
    recon = -torch.distributions.Bernoulli(logits=logits).log_prob(images).sum() / n
    q = torch.distributions.Normal(mu, torch.exp(0.5 * logvar))
    h = q.entropy().sum(1).mean()
    kl_n = torch.distributions.kl_divergence(q, torch.distributions.Normal(0.0, 1.0)).sum(1).mean()
    std_normal = torch.distributions.Normal(0.0, 1.0)

    def ce_lap(a, b, s):     # E_{z ~ N(a, s^2)} -log Laplace(z; b, 1/rate)
        m = a - b
        e_abs = s * math.sqrt(2 / math.pi) * torch.exp(-m ** 2 / (2 * s ** 2)) + m * (1 - 2 * std_normal.cdf(-m / s))
        return rate * e_abs - math.log(rate / 2)

    s = torch.exp(0.5 * logvar)
    ce_l = (ce_lap(mu[0::2], mu[1::2], s[0::2]) + ce_lap(mu[1::2], mu[0::2], s[1::2])).sum(1).mean()
    return 2 * recon + beta * kl_n + gamma * (ce_l - h)


@pytest.mark.parametrize("beta,gamma,rate", [(1.0, 10.0, 6.0), (8.0, 0.0, 6.0), (2.5, 3.0, 1.5)])
def test_slowvae_loss_matches_independent_computation(beta, gamma, rate):
    gen = torch.Generator().manual_seed(3)
    images = (torch.rand(8, 1, 64, 64, generator=gen) > 0.8).double()
    logits = torch.randn(8, 1, 64, 64, generator=gen).double()
    mu, logvar = torch.randn(8, 10, generator=gen).double(), torch.randn(8, 10, generator=gen).double() - 2
    terms = slowvae_loss(images, logits, mu, logvar, beta=beta, gamma=gamma, rate=rate)
    expected = _independent_loss(images, logits, mu, logvar, beta, gamma, rate)
    assert abs(terms["loss"].item() - expected.item()) < 1e-3 * abs(expected.item())


def test_betavae_loss_ignores_pairing_and_slowvae_does_not():
    gen = torch.Generator().manual_seed(4)
    images = (torch.rand(8, 1, 64, 64, generator=gen) > 0.8).float()
    logits, mu, logvar = torch.randn(8, 1, 64, 64, generator=gen), torch.randn(8, 10, generator=gen), torch.randn(8, 10, generator=gen)
    perm = torch.tensor([0, 3, 2, 5, 4, 7, 6, 1])     # re-pair the frames
    args = (images[perm], logits[perm], mu[perm], logvar[perm])
    beta_vae = [slowvae_loss(*a, beta=8.0, gamma=0.0)["loss"].item() for a in [(images, logits, mu, logvar), args]]
    slow = [slowvae_loss(*a)["loss"].item() for a in [(images, logits, mu, logvar), args]]
    assert beta_vae[0] == pytest.approx(beta_vae[1], rel=1e-6)
    assert abs(slow[0] - slow[1]) > 1.0


def test_laplace_term_pulls_both_frames_together():
    mu = torch.tensor([[0.0], [1.0]], requires_grad=True)
    logvar = torch.full((2, 1), -4.0)
    terms = slowvae_loss(torch.zeros(2, 1, 64, 64), torch.zeros(2, 1, 64, 64), mu, logvar, beta=0.0, gamma=1.0)
    terms["loss"].backward()
    assert mu.grad[0, 0] < 0 < mu.grad[1, 0]     # gradient descent moves the means towards each other


# ---------------------------------------------------------------- model
def test_model_shapes_parameters_and_noise():
    model = VAE()
    assert sum(p.numel() for p in model.parameters()) == 763_285
    x = torch.rand(6, 1, 64, 64)
    logits, mu, logvar = model(x, torch.zeros(6, 10))
    torch.testing.assert_close(logits, model.decode(mu))
    assert encode(model, x).shape == (6, 10)
    with pytest.raises(DataError, match="shape"):
        encode(model, torch.rand(6, 64, 64))
