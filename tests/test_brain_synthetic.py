"""Tests of superpos.brain.synthetic: the files are valid NWB, and the planted mixing is recoverable."""
import warnings

import h5py
import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from superpos.brain.reliability import to_stimulus_set
from superpos.brain.synthetic import planted_truth, write_synthetic_nwb
from superpos.core import ConfigError, DataError

from conftest import NWB_LAYOUTS as LAYOUTS


def _unit(m):
    return m / np.linalg.norm(m, axis=1, keepdims=True)


def _matched(found, planted):
    cos = np.abs(_unit(found) @ _unit(planted).T)
    rows, cols = linear_sum_assignment(-cos)
    return cos[rows, cols]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_pipeline_recovers_the_mixing(files, sessions, layout):
    from superpos.directions.registry import make_direction_finder
    ds, mixing = sessions[layout], files[layout]["mixing"]
    above_blank = ds.responses - ds.blank_responses
    finder = make_direction_finder("kmeans", 6, random_state=0).fit(above_blank)
    cosines = _matched(np.asarray(finder.components_), mixing.T)
    assert cosines.min() > 0.95, cosines
    # a random orthogonal rotation of the neurons does not recover it
    rotation = make_direction_finder("rotation", 6, random_state=0).fit(above_blank)
    assert _matched(np.asarray(rotation.components_), mixing.T).mean() < 0.8


@pytest.mark.parametrize("layout", LAYOUTS)
def test_single_feature_neurons_and_directions_more_interpretable_than_mixed(files, sessions, layout):
    from superpos.directions.registry import make_direction_finder
    from superpos.measures.index import interpretability_index
    ds = sessions[layout]
    stimuli = to_stimulus_set(ds)
    neurons = interpretability_index(ds.responses, stimuli, "pixel", n_references=5, n_boot=0)
    single = np.abs(files[layout]["mixing"]).max(1) == 1.0
    scores, distances = neurons.score.values, neurons.distance.values  # pixel similarity = 1 - MSE
    assert scores[single].mean() > scores[~single].mean()
    assert distances[single].mean() < 0.5 * distances[~single].mean()
    directions = make_direction_finder("kmeans", 6, random_state=0).fit(ds.responses - ds.blank_responses)
    projected = directions.transform(ds.responses - ds.blank_responses)
    assert projected.dims == ("stimulus", "direction")
    found = interpretability_index(projected, stimuli, "pixel", n_references=5, n_boot=0)
    assert found.score.values.mean() > scores[~single].mean()
    assert found.distance.values.mean() < 0.5 * distances[~single].mean()


def test_write_synthetic_rejects_bad_parameters(tmp_path):
    with pytest.raises(ConfigError, match="layout must be"):
        write_synthetic_nwb(tmp_path / "x.nwb", "fmri")
    with pytest.raises(ConfigError, match="images=False needs layout='neuropixels'"):
        write_synthetic_nwb(tmp_path / "x.nwb", "two_photon", images=False)
    assert not list(tmp_path.iterdir())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        write_synthetic_nwb(tmp_path / "ok.nwb", "neuropixels", n_images=12, n_features=4, n_single=2, n_neurons=6)
    assert [p.name for p in tmp_path.iterdir()] == ["ok.nwb"]


def test_planted_truth_round_trip_and_foreign_files(files, tmp_path):
    truth = files["two_photon"]
    stored = planted_truth(truth["path"])
    np.testing.assert_array_equal(stored["features"], truth["features"])
    assert stored["feature_names"] == truth["feature_names"]
    foreign = tmp_path / "foreign.nwb"
    foreign.write_bytes(truth["path"].read_bytes())
    with h5py.File(foreign, "r+") as f:
        for name in ("planted_mixing", "planted_features", "planted_feature_names"):
            del f["scratch"][name]
    with pytest.raises(DataError, match="no planted ground truth"):
        planted_truth(foreign)
