"""Tests of superpos.brain.nwb (layouts and reading) on synthetic NWB files with planted structure (both layouts)."""
import shutil

import h5py
import numpy as np
import pytest

from superpos.brain.nwb import LAYOUTS as KNOWN_LAYOUTS
from superpos.brain.nwb import NWBLayout, detect_layout, load_nwb, open_nwb
from superpos.brain.synthetic import AREAS, planted_truth, write_synthetic_nwb
from superpos.core import ConfigError, DataError, MissingFileError

from conftest import NWB_LAYOUTS as LAYOUTS


@pytest.mark.parametrize("layout", LAYOUTS)
def test_round_trip(files, sessions, layout):
    truth, ds = files[layout], sessions[layout]
    assert ds.attrs["layout"] == layout
    assert ds.responses.dims == ("stimulus", "neuron")
    # two-photon: blanks are stored as image 0 (as in 000728), so scene 0 is masked and left out
    shown = np.arange(1 if layout == "two_photon" else 0, len(truth["rates"]))
    assert ds.responses.shape == truth["rates"][shown].shape
    np.testing.assert_array_equal(ds.images.values, truth["images"][shown])
    np.testing.assert_array_equal(ds.n_trials.values, np.full(len(shown), 10))
    rates = truth["rates"][shown]
    expected = rates if layout == "two_photon" else (2.0 + 20.0 * rates) * 0.25
    # within 5 noise SDs of a 10-trial mean: Gaussian noise 0.3 on ~7 frames, or Poisson counts
    sd = np.full_like(expected, 0.3 / np.sqrt(70)) if layout == "two_photon" else np.sqrt(expected / 10)
    assert (np.abs(ds.responses.values - expected) / sd).max() < 5
    assert np.corrcoef(ds.responses.values.ravel(), expected.ravel())[0, 1] > 0.95
    # per-trial data average back to the responses
    means = ds.presentation_responses.groupby("presentation_stimulus").mean().sel(presentation_stimulus=ds.stimulus.values)
    np.testing.assert_allclose(means.values, ds.responses.values)
    assert ds.sizes["presentation"] == len(truth["order"])
    assert set(ds.trial.values[~np.isin(ds.presentation_stimulus.values, ["blank", "masked"])]) == set(range(10))
    assert ds.attrs["session_id"] == f"synthetic-{layout}-3"
    assert ds.attrs["species"] == "Mus musculus"
    np.testing.assert_array_equal(planted_truth(truth["path"])["mixing"], truth["mixing"])


def test_neuron_metadata(sessions):
    two_photon, spikes = sessions["two_photon"], sessions["neuropixels"]
    assert set(two_photon.area.values) == {"VISp"} and np.all(two_photon.depth.values == 175.0)
    np.testing.assert_array_equal(two_photon.cell_id.values, 500_000_000 + np.arange(24))
    # unit i sits on channel i, whose area cycles through AREAS and depth is 20 um per channel
    np.testing.assert_array_equal(spikes.area.values, [AREAS[i % 5] for i in range(24)])
    np.testing.assert_array_equal(spikes.depth.values, 20.0 * np.arange(24))
    only = load_nwb(sessions["neuropixels"].attrs["source"], areas=["VISp", "LGd"], images=False)
    assert set(only.area.values) == {"VISp", "LGd"} and only.sizes["neuron"] == 5 + 4
    with pytest.raises(DataError, match="no neurons in areas"):
        load_nwb(sessions["neuropixels"].attrs["source"], areas=["CA1"])


@pytest.mark.parametrize("window,baseline", [((0.0, 0.25), None), ((0.05, 0.3), None), ((0.0, 0.5), (-0.1, 0.0))])
def test_window_average_matches_direct_computation(files, window, baseline):
    path = files["two_photon"]["path"]
    ds = load_nwb(path, window=window, baseline=baseline)
    with h5py.File(path, "r") as f:
        trace = f["processing/ophys/DfOverF/DfOverF/data"][:]
        times = f["processing/ophys/DfOverF/DfOverF/timestamps"][:]
    for p in (0, 17, len(ds.onset) - 1):
        onset = ds.onset.values[p]
        inside = (times >= onset + window[0]) & (times < onset + window[1])
        expected = trace[inside].mean(0)
        if baseline is not None:
            expected = expected - trace[(times >= onset + baseline[0]) & (times < onset + baseline[1])].mean(0)
        np.testing.assert_allclose(ds.presentation_responses.values[p], expected, rtol=1e-5, atol=1e-6)


def test_spike_counts_match_direct_computation(files):
    path = files["neuropixels"]["path"]
    ds = load_nwb(path, window=(0.05, 0.2), images=False)
    with h5py.File(path, "r") as f:
        flat, ends = f["units/spike_times"][:], f["units/spike_times_index"][:]
    for unit in (0, 11, 23):
        spikes = flat[(0 if unit == 0 else ends[unit - 1]):ends[unit]]
        for p in (0, 100, len(ds.onset) - 1):
            onset = ds.onset.values[p]
            count = ((spikes >= onset + 0.05) & (spikes < onset + 0.2)).sum()
            assert ds.presentation_responses.values[p, unit] == count


def test_blanks_are_a_condition_of_their_own(files, sessions):
    ds, order = sessions["neuropixels"], files["neuropixels"]["order"]
    assert ds.attrs["n_blank"] == (order < 0).sum() == 10 and ds.attrs["blank_source"] == "presentations"
    assert (ds.presentation_stimulus.values == "blank").sum() == 10
    assert "blank" not in ds.stimulus.values
    blank = ds.presentation_responses.values[order < 0].mean(0)
    np.testing.assert_allclose(ds.blank_responses.values, blank)
    assert ds.attrs["overrepresented_images"] == []


def test_explicit_blank_code_keeps_image_zero(tmp_path):
    """A file whose blanks are -1 stored as 2**32 - 1 (not 0): nothing is masked, blanks come from presentations."""
    truth = write_synthetic_nwb(tmp_path / "max.nwb", blank_code=2**32 - 1, seed=1)
    ds = load_nwb(truth["path"])
    assert ds.sizes["stimulus"] == 48 and ds.attrs["n_masked_shared_blank"] == 0
    assert ds.attrs["n_blank"] == 10 and ds.attrs["blank_source"] == "presentations"
    np.testing.assert_allclose(ds.blank_responses.values, ds.presentation_responses.values[truth["order"] < 0].mean(0))


def test_templates_ordered_by_numeric_suffix(tmp_path):
    truth = write_synthetic_nwb(tmp_path / "unordered.nwb", order_of_images=False, n_images=24, n_features=4,
                                n_single=4, blank_code=2**32 - 1, seed=2)
    with h5py.File(truth["path"], "r") as f:  # stored in text order: NaturalScene0, 1, 10, 11, ...
        assert list(f["stimulus/templates/natural_scenes_template"])[:3] == ["NaturalScene0", "NaturalScene1", "NaturalScene10"]
    ds = load_nwb(truth["path"])
    np.testing.assert_array_equal(ds.stimulus.values, [f"NaturalScene{i}" for i in range(24)])
    np.testing.assert_array_equal(ds.images.values, truth["images"])


# ----- layouts -----------------------------------------------------------------------------------------

def test_layout_is_a_dataclass_validated_after_init():
    layout = NWBLayout("custom", responses="units", presentations="intervals/scenes", window=[0, 0.3])
    assert layout.window == (0.0, 0.3) and layout.templates is None
    assert KNOWN_LAYOUTS["two_photon"].window == (0.0, 0.25)
    with pytest.raises(ConfigError, match="does not start with"):
        NWBLayout("bad", responses="DfOverF/DfOverF", presentations="intervals/scenes")
    with pytest.raises(ConfigError, match="stimulus templates .*does not start with"):
        NWBLayout("bad", responses="units", presentations="intervals/scenes", templates="templates/scenes")
    with pytest.raises(ConfigError, match="stop > start"):
        NWBLayout("bad", responses="units", presentations="intervals/scenes", window=(0.3, 0.1))
    with pytest.raises(ConfigError, match="two numbers"):
        NWBLayout("bad", responses="units", presentations="intervals/scenes", window=0.25)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_detect_layout(files, layout):
    with open_nwb(files[layout]["path"]) as nwbfile:
        assert detect_layout(nwbfile) is KNOWN_LAYOUTS[layout]
        ds = load_nwb(nwbfile)  # an open NWBFile is read in place
    assert ds.attrs["source"] == f"superpos-synthetic-synthetic-{layout}-3"


# ----- bad input -------------------------------------------------------------------------------------

def test_truncated_and_corrupt_files(files, tmp_path):
    blob = files["two_photon"]["path"].read_bytes()
    truncated = tmp_path / "truncated.nwb"
    truncated.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DataError, match="truncated or corrupt"):
        load_nwb(truncated)
    garbage = tmp_path / "garbage.nwb"
    garbage.write_bytes(b"not an hdf5 file" * 100)
    with pytest.raises(DataError, match="not a readable NWB"):
        load_nwb(garbage)
    with pytest.raises(MissingFileError, match="does not exist"):
        load_nwb(tmp_path / "absent.nwb")


def test_missing_tables_and_columns_are_named(files):
    path = files["two_photon"]["path"]
    with pytest.raises(DataError, match="natural_scenes_presentations"):
        load_nwb(path, layout="neuropixels")
    layout = NWBLayout("custom", responses="processing/ophys/Fluorescence/Corrected",
                           presentations="stimulus/presentation/natural_scenes_stimulus")
    with pytest.raises(DataError, match=r"'processing/ophys' holds \['DfOverF', 'ImageSegmentation'\]"):
        load_nwb(path, layout=layout)
    wrong_column = NWBLayout("custom", responses="units", presentations="intervals/natural_scenes_presentations",
                                 image_column="image")
    with pytest.raises(DataError, match="no column 'image'"):
        load_nwb(files["neuropixels"]["path"], layout=wrong_column)
    with pytest.raises(ConfigError, match="unknown layout"):
        load_nwb(path, layout="fmri")
    with pytest.raises(ConfigError, match="stop > start"):
        load_nwb(path, window=(0.3, 0.1))


def test_file_of_unknown_layout(files, tmp_path):
    odd = tmp_path / "odd.nwb"
    shutil.copy(files["two_photon"]["path"], odd)
    with h5py.File(odd, "r+") as f:
        f.move("stimulus/presentation/natural_scenes_stimulus", "stimulus/presentation/scenes")
    with pytest.raises(DataError, match="matches no known layout"):
        load_nwb(odd)
    layout = NWBLayout("renamed", responses="processing/ophys/DfOverF/DfOverF",
                           presentations="stimulus/presentation/scenes")
    ds = load_nwb(odd, layout=layout)
    assert ds.sizes["stimulus"] == 48


@pytest.mark.filterwarnings("ignore:IndexSeries 'natural_scenes_stimulus'.*:UserWarning")  # pynwb's own warning
def test_mismatched_stimulus_and_response_counts(files, tmp_path):
    too_far = tmp_path / "too_far.nwb"
    shutil.copy(files["two_photon"]["path"], too_far)
    with h5py.File(too_far, "r+") as f:
        f["stimulus/presentation/natural_scenes_stimulus/data"][5] = 60  # only 48 templates
    with pytest.raises(DataError, match="refer to image 60 but the file has 48 stimulus templates"):
        load_nwb(too_far)
    short = tmp_path / "short_timestamps.nwb"
    shutil.copy(files["two_photon"]["path"], short)
    with h5py.File(short, "r+") as f:
        group = f["stimulus/presentation/natural_scenes_stimulus"]
        onsets = group["timestamps"][:-3]
        del group["timestamps"]
        group.create_dataset("timestamps", data=onsets)
    with pytest.raises(DataError, match="image indices but .* onsets"):
        load_nwb(short)
    late = tmp_path / "late.nwb"
    shutil.copy(files["two_photon"]["path"], late)
    with h5py.File(late, "r+") as f:
        f["stimulus/presentation/natural_scenes_stimulus/timestamps"][-1] = 1e6
    with pytest.raises(DataError, match="have no frames in the window"):
        load_nwb(late)
