"""Tests of superpos.directions.registry: finders by name, overcomplete and width-limited methods."""

import numpy as np
import pytest
import torch

from superpos.core import ConfigError
from superpos.directions.registry import DIRECTION_METHODS, make_direction_finder

torch.set_num_threads(1)

FAST = {"sae": {"n_epochs": 3}, "ica": {"max_iter": 200}, "nmf": {"max_iter": 200}}


def _nonneg(n=60, d=6, seed=0):
    return np.random.default_rng(seed).exponential(size=(n, d))


@pytest.mark.parametrize("method", ["kmeans", "spherical_kmeans", "sae", "nmf"])
def test_overcomplete_allowed(method):
    finder = make_direction_finder(method, 12, **FAST.get(method, {})).fit(_nonneg())
    assert finder.components_.shape == (12, 6)


@pytest.mark.parametrize("method", ["units", "pca", "ica", "rotation"])
def test_width_limited_methods_refuse_overcomplete(method):
    with pytest.raises(ConfigError, match="at most n_units=6"):
        make_direction_finder(method, 12).fit(_nonneg())


def test_unknown_method_lists_valid_names():
    with pytest.raises(ConfigError, match="spherical_kmeans"):
        make_direction_finder("k-means")


def test_common_parameters_go_where_they_are_taken():
    assert make_direction_finder("spherical_kmeans", 4, random_state=3, device="cpu").get_params()["device"] == "cpu"
    assert make_direction_finder("units").get_params() == {"n_directions": None}
    assert make_direction_finder("spherical_kmeans", 4, centroid="frechet").centroid == "frechet"
    with pytest.raises(ConfigError, match="does not take"):
        make_direction_finder("pca", 4, centroid="frechet")
    assert set(DIRECTION_METHODS) == {"units", "kmeans", "spherical_kmeans", "sae", "pca", "ica", "nmf", "rotation"}
