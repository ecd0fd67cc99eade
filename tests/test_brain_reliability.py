"""Tests of superpos.brain.reliability: split halves, split-half reliability, images as a stimulus set."""
from dataclasses import replace

import numpy as np
import pytest

from superpos.brain.nwb import LAYOUTS, load_nwb
from superpos.brain.reliability import attach_images, split_half_reliability, split_halves, to_stimulus_set
from superpos.brain.synthetic import write_synthetic_nwb
from superpos.core import DataError



def test_split_half_reliability_tracks_noise(tmp_path):
    quiet = load_nwb(write_synthetic_nwb(tmp_path / "quiet.nwb", noise=0.1, seed=4)["path"])
    loud = load_nwb(write_synthetic_nwb(tmp_path / "loud.nwb", noise=3.0, seed=4)["path"])
    r_quiet = split_half_reliability(quiet, n_splits=5)
    r_loud = split_half_reliability(loud, n_splits=5)
    assert r_quiet.dims == ("neuron",) and float(r_quiet.min()) > 0.9
    assert float(r_loud.mean()) < float(r_quiet.mean()) - 0.2
    rng = np.random.default_rng(0)
    shuffled = quiet.assign_coords(presentation_stimulus=("presentation", rng.permutation(quiet.presentation_stimulus.values)))
    assert abs(float(split_half_reliability(shuffled, n_splits=5).mean())) < 0.2
    # same reliability for a linear read-out, computed through transform
    weights = rng.standard_normal((quiet.sizes["neuron"], 3))
    read_out = split_half_reliability(quiet, n_splits=5, transform=lambda h: h.values @ weights)
    assert read_out.shape == (3,) and float(read_out.min()) > 0.9


def test_filters_fitted_to_the_noise_have_anticorrelated_halves(tmp_path):
    """ICA with as many sources as neurons whitens the noise dimensions too: its filters amplify the trial noise of
    the averages they were fitted to, so their split halves anti-correlate (halves are mean +- noise along a
    direction where the mean barely varies); at the planted rank, or read out along the mixing columns, they are
    reliable."""
    from superpos.directions.registry import make_direction_finder
    truth = write_synthetic_nwb(tmp_path / "s.nwb", noise=1.0, seed=0)
    ds = load_nwb(truth["path"])
    responses = ds.responses - ds.blank_responses
    rank = truth["mixing"].shape[1]

    def reliability(finder, read_out="encoding"):
        encode = finder.transform if read_out == "encoding" else (lambda x: np.asarray(x) @ np.asarray(finder.components_).T)
        return split_half_reliability(ds, n_splits=10, transform=lambda h: encode(h - ds.blank_responses)).values

    full = make_direction_finder("ica", ds.sizes["neuron"], random_state=0).fit(responses)
    planted_rank = make_direction_finder("ica", rank, random_state=0).fit(responses)
    assert np.median(reliability(full)) < 0
    assert np.median(reliability(planted_rank)) > 0.8 and reliability(planted_rank).min() > 0
    assert reliability(full, "mixing columns").mean() > 0.9


def test_split_halves_are_seeded_and_average_to_the_responses(sessions):
    ds = sessions["two_photon"]
    first, second = split_halves(ds, seed=5)
    np.testing.assert_allclose(((first + second) / 2).values, ds.responses.values)  # 10 repeats: 5 + 5
    np.testing.assert_array_equal(split_halves(ds, seed=5)[0].values, first.values)
    assert not np.array_equal(split_halves(ds, seed=6)[0].values, first.values)
    assert split_half_reliability(ds, n_splits=3, seed=1).equals(split_half_reliability(ds, n_splits=3, seed=1))
    with pytest.raises(TypeError):
        split_halves(ds, random_state=0)  # renamed to seed


def test_split_halves_need_two_presentations(sessions):
    ds = sessions["two_photon"]
    once = ds.isel(presentation=np.flatnonzero(ds.trial.values == 0))  # one trial of each image
    with pytest.raises(DataError, match="split halves need at least 2 per image"):
        split_halves(once)


def test_stimulus_set_from_colour_and_grey_images(tmp_path, sessions):
    grey = to_stimulus_set(sessions["two_photon"], size=16)
    assert tuple(grey.images.shape) == (47, 3, 16, 16) and grey.images.dtype.is_floating_point is False  # no scene 0
    assert (grey.images[:, 0] == grey.images[:, 1]).all()
    colour = load_nwb(write_synthetic_nwb(tmp_path / "rgb.nwb", "neuropixels", color=True)["path"])
    assert colour.images.dims == ("stimulus", "y", "x", "channel")
    stimuli = to_stimulus_set(colour)
    np.testing.assert_array_equal(stimuli.images.permute(0, 2, 3, 1).numpy(), colour.images.values)
    np.testing.assert_array_equal(stimuli.ids, colour.stimulus.values)


def test_attach_images_from_another_session(files, sessions):
    bare = load_nwb(files["neuropixels"]["path"], images=False)
    assert "images" not in bare
    with pytest.raises(DataError, match="no images"):
        to_stimulus_set(bare)
    with pytest.raises(DataError, match="shared_blank_index=None"):  # the two-photon session masks scene 0
        attach_images(bare, sessions["two_photon"])
    source = load_nwb(files["two_photon"]["path"], layout=replace(LAYOUTS["two_photon"], shared_blank_index=None))
    np.testing.assert_array_equal(attach_images(bare, source).images.values, files["two_photon"]["images"])
    with pytest.raises(DataError, match="no image in the other session"):
        attach_images(bare, sessions["two_photon"].isel(stimulus=slice(0, 5)))
