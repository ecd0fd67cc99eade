"""superpos.brain.allen (notebook 64): the Allen files' quirks, reproduced by the synthetic files, handled by load_nwb."""
from dataclasses import replace

import h5py
import numpy as np
import pytest

from superpos.brain.allen import ALLEN_UNIT_FILTER, shared_blank_mask, unit_quality_mask
from superpos.brain.nwb import LAYOUTS, load_nwb, open_nwb
from superpos.brain.synthetic import AREAS, write_synthetic_nwb
from superpos.core import ConfigError, DataError


def test_000728_blanks_are_stored_as_image_zero(files):
    """The fixture stores blanks as the real converter did (uint32 0), and has a spontaneous grey block."""
    truth = files["two_photon"]
    with h5py.File(truth["path"], "r") as f:
        index = f["stimulus/presentation/natural_scenes_stimulus/data"][:]
        assert index.dtype == np.uint32 and (index == 0).sum() == 20 and index.max() == 47
        assert "spontaneous_stimulus" in f["stimulus/presentation"]
    np.testing.assert_array_equal(index, np.where(truth["order"] < 0, 0, truth["order"]))


def test_000728_scene_zero_masked_and_blank_from_spontaneous_block(files, sessions):
    truth, ds = files["two_photon"], sessions["two_photon"]
    assert "NaturalScene0" not in ds.stimulus.values and ds.sizes["stimulus"] == 47
    assert (ds.presentation_stimulus.values == "masked").sum() == 20 == ds.attrs["n_masked_shared_blank"]
    assert ds.attrs["blank_source"] == "spontaneous" and ds.attrs["n_blank"] == 120
    assert np.abs(ds.blank_responses.values).max() < 0.05  # the grey screen: 0 + noise, averaged over 120 trials
    assert ds.attrs["overrepresented_images"] == []
    # without the convention, scene 0 mixes 10 blanks (response 0) into its 20 "trials": half its planted response
    naive = load_nwb(truth["path"], layout=replace(LAYOUTS["two_photon"], shared_blank_index=None))
    assert int(naive.n_trials.sel(stimulus="NaturalScene0")) == 20
    planted = truth["rates"][0]
    np.testing.assert_allclose(naive.responses.sel(stimulus="NaturalScene0").values, planted / 2, atol=0.06)


def test_shared_blank_mask_rules():
    index = np.r_[np.zeros(20, int), np.repeat(np.arange(1, 6), 10)]
    assert shared_blank_mask(index, 0).sum() == 20
    assert shared_blank_mask(np.r_[index[10:], -1], 0).sum() == 0  # an explicit blank code: nothing shared
    assert shared_blank_mask(index[10:], 0).sum() == 0  # image 0 not over-represented
    assert shared_blank_mask(index, None).sum() == 0


def test_000728_imaging_depth_is_not_recorded(files, tmp_path):
    path = tmp_path / "placeholder.nwb"
    path.write_bytes(files["two_photon"]["path"].read_bytes())
    with h5py.File(path, "r+") as f:  # as in 000728: the description keeps the converter's placeholder
        plane = f["general/optophysiology/ImagingPlane"]
        del plane["description"]
        plane["description"] = "(none) imaging at {depth} microns"
    assert np.isnan(load_nwb(path, images=False).depth.values).all()


def test_000021_allensdk_unit_filter(files, sessions):
    truth, ds = files["neuropixels"], sessions["neuropixels"]
    np.testing.assert_array_equal(ds.cell_id.values, truth["good_units"])
    assert ds.attrs["n_units_filtered_out"] == 4
    everything = load_nwb(truth["path"], layout=replace(LAYOUTS["neuropixels"], unit_filter=False), images=False)
    assert everything.sizes["neuron"] == 28 and everything.attrs["n_units_filtered_out"] == 0
    with open_nwb(truth["path"]) as nwbfile:
        units = nwbfile.units
        keep = unit_quality_mask(units)
        assert keep.tolist() == [True] * 24 + [False] * 4  # noise cluster, amplitude, presence, ISI: one each
        assert unit_quality_mask(units, {"quality": "good"}).sum() == 27
        assert unit_quality_mask(units, {"presence_ratio": 0.95}).sum() == 27
        with pytest.raises(ConfigError, match="unknown unit criteria"):
            unit_quality_mask(units, {"snr": 3})
    assert ALLEN_UNIT_FILTER == {"quality": "good", "amplitude_cutoff": 0.1, "presence_ratio": 0.95,
                                 "isi_violations": 0.5}


def test_000021_invalid_times_are_masked(tmp_path):
    truth = write_synthetic_nwb(tmp_path / "invalid.nwb", "neuropixels", n_invalid=15, seed=5, images=False)
    ds = load_nwb(truth["path"], images=False)
    masked = ds.presentation_stimulus.values == "masked"
    np.testing.assert_array_equal(np.flatnonzero(masked), truth["invalid"])
    assert ds.attrs["n_masked_invalid"] == 15 and ds.n_trials.sum() == (truth["order"] >= 0).sum() - \
        (truth["order"][truth["invalid"]] >= 0).sum()
    valid = ~masked & (truth["order"] >= 0)
    expected = np.stack([ds.presentation_responses.values[valid & (truth["order"] == i)].mean(0)
                         for i in range(48)])
    np.testing.assert_allclose(ds.responses.values, expected)
    kept = load_nwb(truth["path"], images=False, layout=replace(LAYOUTS["neuropixels"], mask_invalid_times=False))
    assert kept.attrs["n_masked_invalid"] == 0 and kept.responses.values.max() > ds.responses.values.max() + 2


def test_000021_units_referencing_an_electrodes_region(files, sessions, tmp_path):
    truth = write_synthetic_nwb(tmp_path / "region.nwb", "neuropixels", electrodes="region", seed=3, images=False)
    with h5py.File(truth["path"], "r") as f:
        assert "peak_channel_id" not in f["units"] and "electrodes" in f["units"]
    ds = load_nwb(truth["path"], images=False)
    np.testing.assert_array_equal(ds.area.values, [AREAS[i % 5] for i in range(24)])
    np.testing.assert_array_equal(ds.depth.values, sessions["neuropixels"].depth.values)  # probe position, um
    with pytest.raises(ConfigError, match="electrodes must be"):
        write_synthetic_nwb(tmp_path / "x.nwb", "neuropixels", electrodes="nearest")


def test_nwb_1x_is_reported_as_unsupported(tmp_path):
    path = tmp_path / "allen_v1.nwb"
    with h5py.File(path, "w") as f:  # the NWB 1.x layout: version and identifiers as root datasets
        f["nwb_version"] = "NWB-1.0.6"
        f["identifier"] = "ophys_experiment_501940850"
        f["session_description"] = ""
        for group in ("acquisition", "analysis", "epochs", "general", "processing", "stimulus"):
            f.create_group(group)
    with pytest.raises(DataError, match=r"NWB 1\.x is not supported") as info:
        load_nwb(path)
    assert "corrupt" not in str(info.value) and "NWB-1.0.6" in str(info.value)
