"""Property tests of superpos.directions.toy: the toy model of superposition and the recovery score."""

import numpy as np
import pytest
import torch

from superpos.core import ConfigError, DataError
from superpos.directions.base import IdentityDirections, RandomRotation
from superpos.directions.kmeans import KMeansDirections
from superpos.directions.linear import PCADirections
from superpos.directions.sae import SparseAutoencoder
from superpos.directions.toy import ToyModel, recovery_score, sample_features, toy_recovery, train_toy_model

torch.set_num_threads(1)


def test_sample_features_sparsity_and_range():
    X = sample_features(20000, 10, 0.1, np.random.default_rng(0))
    assert X.shape == (20000, 10) and X.min() >= 0 and X.max() <= 1
    assert abs((X > 0).mean() - 0.1) < 0.01
    X1 = sample_features(2000, 10, 0.01, np.random.default_rng(0), min_active=1)
    assert ((X1 > 0).sum(axis=1) >= 1).all()


def test_sample_is_linear_in_W_and_reproducible():
    toy = ToyModel(np.arange(6.0).reshape(2, 3), np.zeros(3), feature_probability=0.5, importance=np.ones(3))
    X, H = toy.sample(50, 1)
    np.testing.assert_allclose(H, X @ toy.W.T)
    np.testing.assert_array_equal(toy.sample(50, 1)[0], X)
    np.testing.assert_allclose(np.linalg.norm(toy.directions, axis=1), 1.0)


def test_superposition_appears_with_sparsity():
    importance = 0.7 ** np.arange(8)
    dense = train_toy_model(8, 4, feature_probability=1.0, importance=importance, n_steps=800)
    sparse = train_toy_model(8, 4, feature_probability=0.03, importance=importance, n_steps=800)
    assert dense.represented().sum() == 4 and dense.represented()[:4].all()
    assert sparse.represented().sum() == 8
    assert sparse.losses[-1] < sparse.losses[0]


def test_train_toy_model_is_seeded():
    a = train_toy_model(6, 3, feature_probability=0.1, n_steps=50, seed=2)
    b = train_toy_model(6, 3, feature_probability=0.1, n_steps=50, seed=2)
    np.testing.assert_array_equal(a.W, b.W)


def test_train_toy_model_bad_parameters():
    with pytest.raises(ConfigError, match="feature_probability"):
        train_toy_model(6, 3, feature_probability=0.0)
    with pytest.raises(ConfigError, match="n_hidden"):
        train_toy_model(3, 6, feature_probability=0.1)
    with pytest.raises(ConfigError, match="importance"):
        train_toy_model(6, 3, feature_probability=0.1, importance=np.ones(5))


def test_recovery_score_known_answers():
    rng = np.random.default_rng(0)
    T = np.linalg.qr(rng.normal(size=(5, 5)))[0]
    perm = rng.permutation(5)
    score = recovery_score(-2 * T[perm], T)                    # order, sign, scale do not matter
    assert score["mean_abs_cos"] == pytest.approx(1.0) and score["fraction_recovered"] == 1.0
    np.testing.assert_array_equal(perm[score["match"]], np.arange(5))
    half = recovery_score(T[:2], T)                            # unmatched true features score 0
    assert half["mean_abs_cos"] == pytest.approx(2 / 5) and half["fraction_recovered"] == 2 / 5
    random = recovery_score(rng.normal(size=(5, 50)), rng.normal(size=(5, 50)))
    assert random["mean_abs_cos"] < 0.5 and random["fraction_recovered"] == 0
    with pytest.raises(DataError, match="dims"):
        recovery_score(np.ones((2, 3)), np.ones((2, 4)))


def test_recovery_score_is_one_to_one():
    T = np.eye(3)
    same = np.tile([1.0, 0.0, 0.0], (3, 1))                     # three copies of one direction
    assert recovery_score(same, T)["mean_abs_cos"] == pytest.approx(1 / 3)


@pytest.mark.parametrize("ratio, sparsity", [(2, 0.9), (4, 0.9), (4, 0.99)])
def test_sparse_methods_recover_planted_directions(ratio, sparsity):
    """Must show: k-means and a TopK SAE recover the features (>= 0.9), PCA and the units do not."""
    m = 6
    n = ratio * m
    toy = train_toy_model(n, m, feature_probability=1 - sparsity, n_steps=1500, seed=0)
    assert toy.represented().sum() >= n - 1                    # the model is in superposition
    finders = {"kmeans": KMeansDirections(n, random_state=0),
               "sae": SparseAutoencoder(n, k=max(1, round(n * (1 - sparsity))), n_epochs=30, lr=3e-3,
                                        random_state=0),
               "pca": PCADirections(random_state=0), "units": IdentityDirections(),
               "rotation": RandomRotation(random_state=0)}
    scores = {name: s["mean_abs_cos"] for name, s in toy_recovery(toy, finders).items()}
    assert scores["kmeans"] >= 0.9 and scores["sae"] >= 0.9, scores
    assert max(scores["pca"], scores["units"], scores["rotation"]) < 0.9, scores
