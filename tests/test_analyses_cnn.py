"""The CNN analysis pipeline (superpos.analyses.cnn): reproducible, complete, honest about what it skips."""
import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr
from torch import nn

from superpos.analyses.cnn import cnn_analysis, source_balanced_index, top_source_fraction
from superpos.core import DataError
from superpos.stimuli.natural import natural_stimuli


def small_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 12, 3, stride=2, padding=1), nn.ReLU())


@pytest.fixture(scope="module")
def stimuli():
    return natural_stimuli(160, 24, seed=0)


def run(stimuli, seed=0):
    return cnn_analysis(small_net(), stimuli=stimuli, weights=("pretrained",), layers=["1", "3"],
                        methods=("units", "kmeans", "pca", "nmf", "rotation"), k_multiples=(0.5, 2.0),
                        similarity="pixel", measures=("ii", "2afc", "mis"), n_tasks=2, seeds=(seed,), n_boot=20,
                        input_size=None)


def test_same_seed_same_scores(stimuli):
    a, _ = run(stimuli)
    b, _ = run(stimuli)
    pd.testing.assert_frame_equal(a, b)
    c, _ = run(stimuli, seed=1)
    assert not np.allclose(a.score.values[: len(c)], c.score.values[: len(a)])


def test_every_method_layer_and_measure_is_scored(stimuli):
    scores, details = run(stimuli)
    assert set(scores.layer) == {"1", "3"}
    assert set(scores.measure) == {"ii", "2afc", "mis"}
    assert set(scores.method) == {"units", "kmeans", "pca", "nmf", "rotation"}
    kmeans = scores[(scores.method == "kmeans") & (scores.layer == "3") & (scores.measure == "ii")]
    assert set(kmeans.n_directions) == {6, 24}  # 0.5x and 2x the 12 units
    pca = scores[(scores.method == "pca") & (scores.layer == "3") & (scores.measure == "ii")]
    assert set(pca.n_directions) == {12}  # PCA stops at the layer's width
    units = scores[(scores.method == "units") & (scores.measure == "ii")]
    assert np.allclose(units.participation_ratio, 1)
    held = details["grams"][0].sizes["stimulus"]
    assert held == 80


def test_source_helpers_known_answers():
    resp = xr.DataArray(np.array([[3.0, 0.0], [2.0, 1.0], [1.0, 2.0], [0.0, 3.0]]), dims=("stimulus", "direction"),
                        coords={"stimulus": list("abcd")})
    assert top_source_fraction(resp, ["x", "x", "y", "y"], k=2).dims == ("direction",)
    np.testing.assert_allclose(top_source_fraction(resp, ["x", "x", "y", "y"], k=2), [1, 1])
    gram = xr.DataArray(np.arange(16.0).reshape(4, 4), dims=("stimulus", "stimulus_other"),
                        coords={"stimulus": list("abcd"), "stimulus_other": list("abcd")})
    gram = (gram + gram.T.values) / 2
    # unit 0: best of source x is a, best of source y is c -> similarity of (a, c)
    np.testing.assert_allclose(source_balanced_index(resp, gram, ["x", "x", "y", "y"], k=2)[0], gram.values[0, 2])
    assert np.isnan(source_balanced_index(resp, gram, ["x"] * 4, k=2)).all()
    # the responses are put in the order of the similarity matrix's stimuli
    shuffled = resp.isel(stimulus=[2, 0, 3, 1])
    np.testing.assert_allclose(source_balanced_index(shuffled, gram, ["x", "x", "y", "y"], k=2),
                               source_balanced_index(resp, gram, ["x", "x", "y", "y"], k=2))


@pytest.mark.parametrize("dim", ["unit", "neuron", "direction"])
def test_source_helpers_follow_the_responses_contract(dim):
    """Any response dim is accepted and kept; numpy input is wrapped; NaN responses get the contract's error."""
    values = np.array([[3.0, 0.0], [2.0, 1.0], [1.0, 2.0], [0.0, 3.0]])
    resp = xr.DataArray(values, dims=("stimulus", dim))
    assert top_source_fraction(resp, list("xxyy"), k=2).dims == (dim,)
    np.testing.assert_allclose(top_source_fraction(values, list("xxyy"), k=2), [1, 1])
    values[0, 0] = np.nan
    with pytest.raises(DataError, match="NaN or infinite"):
        top_source_fraction(values, list("xxyy"), k=2)
