"""The Natural Sprites ground truth of the BetaVAE and FactorVAE scores, on planted truth.

Expected values: an encoder that returns the true factors of the rendered images (or an invertible
linear map of them) scores 1 on both intervention scores; an encoder that returns noise scores near
chance (1 / 5 factors); the sampler draws observed (x, y, scale) rows and renders deterministically;
fixing every factor but x leaves each image's row profile unchanged (a horizontal translation).
"""
import numpy as np
import pytest
import torch

from superpos.core import ConfigError, DataError
from superpos.disentangle import sampled_metrics as S
from superpos.disentangle.natural import NaturalSprites, NaturalSpritesGroundTruth, write_natural_sprites_fixture

torch.set_num_threads(1)
SMALL = dict(batch_size=8, n_train=60, n_eval=40, random_state=0)


@pytest.fixture(scope="module")
def truth(tmp_path_factory):
    path = write_natural_sprites_fixture(tmp_path_factory.mktemp("ns") / "n.csv", n_objects=60, seed=0)
    return NaturalSpritesGroundTruth(NaturalSprites(path, device="cpu"))


class Oracle:
    """Renders through the ground truth and encodes the images it rendered last as `transform(factors)`."""

    def __init__(self, truth, transform=lambda f: f):
        self.truth, self.transform, self.last, self.calls = truth, transform, None, []

    def render(self, factors):
        images = self.truth(factors)
        self.last = (np.array(factors), images)
        self.calls.append(self.last)
        return images

    def __call__(self, images):
        factors, rendered = self.last
        assert images is rendered and images.shape == (len(factors), 3, 64, 64)
        return self.transform(factors)


def test_sample_factors_draw_observed_rows_and_the_discrete_factors(truth):
    f = truth.sample_factors(3000, np.random.default_rng(0))
    assert f.shape == (3000, 5) and f.dtype == np.float64
    observed = {tuple(r) for r in truth.values}
    assert all(tuple(r) in observed for r in f[:, :3])                      # (x, y, scale) of real frames
    assert set(np.unique(f[:, 3])) == set(NaturalSprites.angles.astype(float))  # all 40 angles
    assert set(np.unique(f[:, 4])) == {0.0, 1.0, 2.0, 3.0}
    again = truth.sample_factors(3000, np.random.default_rng(0))
    assert np.array_equal(f, again)                                          # seeded


def test_rendering_is_deterministic_and_a_fixed_factor_stays_fixed(truth):
    rng = np.random.default_rng(1)
    f = truth.sample_factors(8, rng)
    f[:, 1:] = f[0, 1:]                                  # everything but x fixed across the batch
    f[:, 0] = np.linspace(0.35, 0.65, 8)
    f[:, 2] = 0.15                                        # small enough to stay inside the frame
    images = truth(f)
    assert torch.equal(truth(f.copy()), images)          # same factors, identical images
    rows = images[:, 0].sum(2)                            # per-row coverage: blind to horizontal shifts
    assert torch.allclose(rows, rows[:1].expand_as(rows), atol=0.05)
    cols = images[:, 0].sum(1)
    assert (cols[1:] - cols[:1]).abs().amax(1).min() > 0.5  # ...but the images do move with x
    centre = (images[:, 0] * (torch.arange(64) + 0.5)).sum((1, 2)) / images[:, 0].sum((1, 2))
    assert torch.allclose(centre.double(), torch.from_numpy(64 * f[:, 0]), atol=0.6)


def test_factor_vae_batches_rendered_by_the_ground_truth_fix_one_factor(truth):
    oracle = Oracle(truth)
    S.factor_vae_score(oracle.render, oracle, truth.sample_factors, n_variance=200, **SMALL)
    batches = np.concatenate([f for f, _ in oracle.calls[1:]]).reshape(-1, SMALL["batch_size"], 5)
    constant = np.ptp(batches, axis=1) == 0                 # (batch, factor)
    assert len(batches) == SMALL["n_train"] + SMALL["n_eval"]
    assert constant.any(1).all()                            # every batch holds a factor fixed
    assert set(constant.argmax(1)) == set(range(5))         # ...and each of the five factors is fixed somewhere
    for f, images in oracle.calls[:3]:
        assert torch.equal(truth(f), images)


@pytest.mark.parametrize("mapping", ["identity", "linear"])
def test_true_factors_score_one(truth, mapping):
    spread = truth.sample_factors(5000, np.random.default_rng(9)).std(0)
    transform = {"identity": lambda f: f / spread,                       # the factors, in units of their spread
                 "linear": lambda f: (f / spread * [2.0, -1.0, 0.5, 3.0, -2.0] + 7.0)[:, [3, 0, 4, 1, 2]]}[mapping]
    oracle = Oracle(truth, transform)
    beta = S.beta_vae_score(oracle.render, oracle, truth.sample_factors, **SMALL)
    factor = S.factor_vae_score(oracle.render, oracle, truth.sample_factors, n_variance=200, **SMALL)
    assert beta >= 0.95 and factor == 1.0, (beta, factor)


def test_noise_scores_near_chance(truth):
    rng = np.random.default_rng(3)
    noise = lambda images: rng.normal(size=(len(images), 5))  # noqa: E731
    beta = S.beta_vae_score(truth, noise, truth.sample_factors, **SMALL)
    factor = S.factor_vae_score(truth, noise, truth.sample_factors, n_variance=200, **SMALL)
    assert beta < 0.45 and factor < 0.45, (beta, factor)     # chance is 0.2


def test_bad_input_is_a_clear_error(truth):
    f = truth.sample_factors(2, np.random.default_rng(0))
    with pytest.raises(DataError, match="shape factor"):
        truth(np.c_[f[:, :4], [0.5, 1.0]])
    with pytest.raises(DataError, match=r"\(n, 5\)"):
        truth(f[:, :4])
    with pytest.raises(ConfigError, match="NaturalSprites"):
        NaturalSpritesGroundTruth("not a dataset")
