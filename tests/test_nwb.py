"""Tests of superpos.nwb on NWB files written here with planted structure (both layouts)."""
import shutil
import warnings

import h5py
import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

import superpos.nwb as nwb
from superpos.core import ConfigError, DataError, DownloadError, MissingFileError

LAYOUTS = ("two_photon", "neuropixels")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("nwb")
    return {layout: nwb.write_synthetic_nwb(root / f"{layout}.nwb", layout, seed=3) for layout in LAYOUTS}


@pytest.fixture(scope="module")
def sessions(files):
    return {layout: nwb.load_nwb(files[layout]["path"]) for layout in LAYOUTS}


def _unit(m):
    return m / np.linalg.norm(m, axis=1, keepdims=True)


def _matched(found, planted):
    cos = np.abs(_unit(found) @ _unit(planted).T)
    rows, cols = linear_sum_assignment(-cos)
    return cos[rows, cols]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_round_trip(files, sessions, layout):
    truth, ds = files[layout], sessions[layout]
    assert ds.attrs["layout"] == layout
    assert ds.responses.dims == ("stimulus", "neuron")
    assert ds.responses.shape == truth["rates"].shape
    np.testing.assert_array_equal(ds.images.values, truth["images"])
    np.testing.assert_array_equal(ds.n_trials.values, np.full(len(truth["rates"]), 10))
    expected = truth["rates"] if layout == "two_photon" else (2.0 + 20.0 * truth["rates"]) * 0.25
    # within 5 noise SDs of a 10-trial mean: Gaussian noise 0.3 on ~7 frames, or Poisson counts
    sd = np.full_like(expected, 0.3 / np.sqrt(70)) if layout == "two_photon" else np.sqrt(expected / 10)
    assert (np.abs(ds.responses.values - expected) / sd).max() < 5
    assert np.corrcoef(ds.responses.values.ravel(), expected.ravel())[0, 1] > 0.95
    # per-trial data average back to the responses
    means = ds.presentation_responses.groupby("presentation_stimulus").mean().sel(presentation_stimulus=ds.stimulus.values)
    np.testing.assert_allclose(means.values, ds.responses.values)
    assert ds.sizes["presentation"] == len(truth["order"])
    assert set(ds.trial.values[ds.presentation_stimulus.values != "blank"]) == set(range(10))
    assert ds.attrs["session_id"] == f"synthetic-{layout}-3"
    assert ds.attrs["species"] == "Mus musculus"
    np.testing.assert_array_equal(nwb.planted_truth(truth["path"])["mixing"], truth["mixing"])


def test_neuron_metadata(sessions):
    two_photon, spikes = sessions["two_photon"], sessions["neuropixels"]
    assert set(two_photon.area.values) == {"VISp"} and np.all(two_photon.depth.values == 175.0)
    np.testing.assert_array_equal(two_photon.cell_id.values, 500_000_000 + np.arange(24))
    # unit i sits on channel i, whose area cycles through AREAS and depth is 20 um per channel
    np.testing.assert_array_equal(spikes.area.values, [nwb.AREAS[i % 5] for i in range(24)])
    np.testing.assert_array_equal(spikes.depth.values, 20.0 * np.arange(24))
    only = nwb.load_nwb(sessions["neuropixels"].attrs["source"], areas=["VISp", "LGd"], images=False)
    assert set(only.area.values) == {"VISp", "LGd"} and only.sizes["neuron"] == 5 + 4
    with pytest.raises(DataError, match="no neurons in areas"):
        nwb.load_nwb(sessions["neuropixels"].attrs["source"], areas=["CA1"])


@pytest.mark.parametrize("window,baseline", [((0.0, 0.25), None), ((0.05, 0.3), None), ((0.0, 0.5), (-0.1, 0.0))])
def test_window_average_matches_direct_computation(files, window, baseline):
    path = files["two_photon"]["path"]
    ds = nwb.load_nwb(path, window=window, baseline=baseline)
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
    ds = nwb.load_nwb(path, window=(0.05, 0.2), images=False)
    with h5py.File(path, "r") as f:
        flat, ends = f["units/spike_times"][:], f["units/spike_times_index"][:]
    for unit in (0, 11, 23):
        spikes = flat[(0 if unit == 0 else ends[unit - 1]):ends[unit]]
        for p in (0, 100, len(ds.onset) - 1):
            onset = ds.onset.values[p]
            count = ((spikes >= onset + 0.05) & (spikes < onset + 0.2)).sum()
            assert ds.presentation_responses.values[p, unit] == count


@pytest.mark.parametrize("layout", LAYOUTS)
def test_blanks_are_a_condition_of_their_own(files, sessions, layout):
    ds, order = sessions[layout], files[layout]["order"]
    assert ds.attrs["n_blank"] == (order < 0).sum() == 10
    assert (ds.presentation_stimulus.values == "blank").sum() == 10
    assert "blank" not in ds.stimulus.values
    blank = ds.presentation_responses.values[order < 0].mean(0)
    np.testing.assert_allclose(ds.blank_responses.values, blank)
    assert ds.attrs["overrepresented_images"] == []


def test_blanks_cast_to_image_zero_are_reported(tmp_path):
    truth = nwb.write_synthetic_nwb(tmp_path / "zero.nwb", blank_code=0, n_blank=10, seed=1)
    with pytest.warns(UserWarning, match="image 0 was presented 20 times"):
        ds = nwb.load_nwb(truth["path"])
    assert ds.attrs["overrepresented_images"] == [0]
    assert ds.attrs["n_blank"] == 0 and int(ds.n_trials.values[0]) == 20


def test_templates_ordered_by_numeric_suffix(tmp_path):
    truth = nwb.write_synthetic_nwb(tmp_path / "unordered.nwb", order_of_images=False, n_images=24, n_features=4,
                                    n_single=4, seed=2)
    with h5py.File(truth["path"], "r") as f:  # stored in text order: NaturalScene0, 1, 10, 11, ...
        assert list(f["stimulus/templates/natural_scenes_template"])[:3] == ["NaturalScene0", "NaturalScene1", "NaturalScene10"]
    ds = nwb.load_nwb(truth["path"])
    np.testing.assert_array_equal(ds.stimulus.values, [f"NaturalScene{i}" for i in range(24)])
    np.testing.assert_array_equal(ds.images.values, truth["images"])


@pytest.mark.parametrize("layout", LAYOUTS)
def test_pipeline_recovers_the_mixing(files, sessions, layout):
    from superpos.directions import make_direction_finder
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
    from superpos.directions import make_direction_finder
    from superpos.interpretability import interpretability_index
    ds = sessions[layout]
    stimuli = nwb.to_stimulus_set(ds)
    neurons = interpretability_index(ds.responses, stimuli, "pixel", k=5, n_boot=0)
    single = np.abs(files[layout]["mixing"]).max(1) == 1.0
    scores, distances = neurons.score.values, neurons.distance.values  # pixel similarity = 1 - MSE
    assert scores[single].mean() > scores[~single].mean()
    assert distances[single].mean() < 0.5 * distances[~single].mean()
    directions = make_direction_finder("kmeans", 6, random_state=0).fit(ds.responses - ds.blank_responses)
    projected = directions.transform(ds.responses - ds.blank_responses)
    assert projected.dims == ("stimulus", "direction")
    found = interpretability_index(projected, stimuli, "pixel", k=5, n_boot=0)
    assert found.score.values.mean() > scores[~single].mean()
    assert found.distance.values.mean() < 0.5 * distances[~single].mean()


def test_split_half_reliability_tracks_noise(tmp_path):
    quiet = nwb.load_nwb(nwb.write_synthetic_nwb(tmp_path / "quiet.nwb", noise=0.1, seed=4)["path"])
    loud = nwb.load_nwb(nwb.write_synthetic_nwb(tmp_path / "loud.nwb", noise=3.0, seed=4)["path"])
    r_quiet = nwb.split_half_reliability(quiet, n_splits=5)
    r_loud = nwb.split_half_reliability(loud, n_splits=5)
    assert r_quiet.dims == ("neuron",) and float(r_quiet.min()) > 0.9
    assert float(r_loud.mean()) < float(r_quiet.mean()) - 0.2
    rng = np.random.default_rng(0)
    shuffled = quiet.assign_coords(presentation_stimulus=("presentation", rng.permutation(quiet.presentation_stimulus.values)))
    assert abs(float(nwb.split_half_reliability(shuffled, n_splits=5).mean())) < 0.2
    # same reliability for a linear read-out, computed through transform
    weights = rng.standard_normal((quiet.sizes["neuron"], 3))
    read_out = nwb.split_half_reliability(quiet, n_splits=5, transform=lambda h: h.values @ weights)
    assert read_out.shape == (3,) and float(read_out.min()) > 0.9


def test_stimulus_set_from_colour_and_grey_images(tmp_path, sessions):
    grey = nwb.to_stimulus_set(sessions["two_photon"], size=16)
    assert tuple(grey.images.shape) == (48, 3, 16, 16) and grey.images.dtype.is_floating_point is False
    assert (grey.images[:, 0] == grey.images[:, 1]).all()
    colour = nwb.load_nwb(nwb.write_synthetic_nwb(tmp_path / "rgb.nwb", "neuropixels", color=True)["path"])
    assert colour.images.dims == ("stimulus", "y", "x", "channel")
    stimuli = nwb.to_stimulus_set(colour)
    np.testing.assert_array_equal(stimuli.images.permute(0, 2, 3, 1).numpy(), colour.images.values)
    np.testing.assert_array_equal(stimuli.ids, colour.stimulus.values)


def test_attach_images_from_another_session(files, sessions):
    bare = nwb.load_nwb(files["neuropixels"]["path"], images=False)
    assert "images" not in bare
    with pytest.raises(DataError, match="no images"):
        nwb.to_stimulus_set(bare)
    np.testing.assert_array_equal(nwb.attach_images(bare, sessions["two_photon"]).images.values, files["two_photon"]["images"])
    with pytest.raises(DataError, match="no image in the other session"):
        nwb.attach_images(bare, sessions["two_photon"].isel(stimulus=slice(0, 5)))


# ----- bad input -------------------------------------------------------------------------------------

def test_truncated_and_corrupt_files(files, tmp_path):
    blob = files["two_photon"]["path"].read_bytes()
    truncated = tmp_path / "truncated.nwb"
    truncated.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DataError, match="truncated or corrupt"):
        nwb.load_nwb(truncated)
    garbage = tmp_path / "garbage.nwb"
    garbage.write_bytes(b"not an hdf5 file" * 100)
    with pytest.raises(DataError, match="not a readable NWB"):
        nwb.load_nwb(garbage)
    with pytest.raises(MissingFileError, match="does not exist"):
        nwb.load_nwb(tmp_path / "absent.nwb")


def test_missing_tables_and_columns_are_named(files):
    path = files["two_photon"]["path"]
    with pytest.raises(DataError, match="natural_scenes_presentations"):
        nwb.load_nwb(path, layout="neuropixels")
    layout = nwb.NWBLayout("custom", responses="processing/ophys/Fluorescence/Corrected",
                           presentations="stimulus/presentation/natural_scenes_stimulus")
    with pytest.raises(DataError, match=r"'processing/ophys' holds \['DfOverF', 'ImageSegmentation'\]"):
        nwb.load_nwb(path, layout=layout)
    wrong_column = nwb.NWBLayout("custom", responses="units", presentations="intervals/natural_scenes_presentations",
                                 image_column="image")
    with pytest.raises(DataError, match="no column 'image'"):
        nwb.load_nwb(files["neuropixels"]["path"], layout=wrong_column)
    with pytest.raises(ConfigError, match="unknown layout"):
        nwb.load_nwb(path, layout="fmri")
    with pytest.raises(ConfigError, match="stop > start"):
        nwb.load_nwb(path, window=(0.3, 0.1))


def test_file_of_unknown_layout(files, tmp_path):
    odd = tmp_path / "odd.nwb"
    shutil.copy(files["two_photon"]["path"], odd)
    with h5py.File(odd, "r+") as f:
        f.move("stimulus/presentation/natural_scenes_stimulus", "stimulus/presentation/scenes")
    with pytest.raises(DataError, match="matches no known layout"):
        nwb.load_nwb(odd)
    layout = nwb.NWBLayout("renamed", responses="processing/ophys/DfOverF/DfOverF",
                           presentations="stimulus/presentation/scenes")
    ds = nwb.load_nwb(odd, layout=layout)
    assert ds.sizes["stimulus"] == 48


@pytest.mark.filterwarnings("ignore:IndexSeries 'natural_scenes_stimulus'.*:UserWarning")  # pynwb's own warning
def test_mismatched_stimulus_and_response_counts(files, tmp_path):
    too_far = tmp_path / "too_far.nwb"
    shutil.copy(files["two_photon"]["path"], too_far)
    with h5py.File(too_far, "r+") as f:
        f["stimulus/presentation/natural_scenes_stimulus/data"][5] = 60  # only 48 templates
    with pytest.raises(DataError, match="refer to image 60 but the file has 48 stimulus templates"):
        nwb.load_nwb(too_far)
    short = tmp_path / "short_timestamps.nwb"
    shutil.copy(files["two_photon"]["path"], short)
    with h5py.File(short, "r+") as f:
        group = f["stimulus/presentation/natural_scenes_stimulus"]
        onsets = group["timestamps"][:-3]
        del group["timestamps"]
        group.create_dataset("timestamps", data=onsets)
    with pytest.raises(DataError, match="image indices but .* onsets"):
        nwb.load_nwb(short)
    late = tmp_path / "late.nwb"
    shutil.copy(files["two_photon"]["path"], late)
    with h5py.File(late, "r+") as f:
        f["stimulus/presentation/natural_scenes_stimulus/timestamps"][-1] = 1e6
    with pytest.raises(DataError, match="have no frames in the window"):
        nwb.load_nwb(late)


# ----- the DANDI path, offline -----------------------------------------------------------------------

class FakeAsset:
    def __init__(self, path, url):
        self.path, self.size, self.url = path, 1000, url

    def get_content_url(self, follow_redirects=1, strip_query=True):
        return self.url


class FakeClient:
    def __init__(self, assets, failures=0):
        self.assets, self.failures = assets, failures

    def get_dandiset(self, dandiset_id, version=None):
        if self.failures:
            self.failures -= 1
            raise ConnectionError("connection reset by peer")
        return self

    def get_assets(self):
        return self.assets

    def get_asset_by_path(self, path):
        return next(a for a in self.assets if a.path == path)


def test_dandi_streaming_path_offline(files, sessions, tmp_path, monkeypatch):
    monkeypatch.setenv("SUPERPOS_CACHE", str(tmp_path / "cache"))
    with nwb.serve_file_locally(files["neuropixels"]["path"]) as url:
        assets = [FakeAsset("sub-7/sub-7_ses-715093703.nwb", url),
                  FakeAsset("sub-7/sub-7_ses-715093703_probe-1_ecephys.nwb", url)]
        monkeypatch.setattr(nwb, "_dandi_client", lambda: FakeClient(assets))
        found = nwb.find_natural_scenes_sessions("21")
        assert list(found.session_id) == ["715093703"] and found.layout[0] == "neuropixels"
        ds = nwb.load_dandi_session("000021", 715093703, window=(0.0, 0.25))
        again = nwb.load_dandi_session("000021", "715093703", window=(0.0, 0.25))  # from the disk cache
    np.testing.assert_allclose(ds.responses.values, sessions["neuropixels"].responses.values)
    np.testing.assert_allclose(again.responses.values, ds.responses.values)
    assert ds.attrs["dandiset"] == "000021" and ds.attrs["source"] == url
    chunks = [p for p in (tmp_path / "cache" / "dandi").rglob("*") if p.is_file()]
    assert chunks and not [p for p in chunks if p.name.endswith(".part")]
    blob = files["neuropixels"]["path"].read_bytes()
    assert sum(p.stat().st_size for p in chunks) <= len(blob)  # whole chunks of the file, nothing extra
    for chunk in chunks:
        assert chunk.read_bytes() in blob


def test_disk_cache_never_holds_half_written_chunks(tmp_path):
    cache = nwb.AtomicDiskCache(str(tmp_path))
    cache.set("url|chunk0", b"complete")
    assert cache.get("url|chunk0") == b"complete"

    with pytest.raises(TypeError):  # the write fails after the file was opened
        cache.set("url|chunk1", "text, not bytes")
    assert cache.get("url|chunk1") is None
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == [nwb.hashlib.sha1(b"url|chunk0").hexdigest()]


def test_dandi_errors_retry_and_explain(files, monkeypatch):
    monkeypatch.setattr(nwb.time, "sleep", lambda s: None)
    asset = FakeAsset("sub-1/sub-1_ses-42-StimB_behavior+image+ophys.nwb", "http://unused")
    flaky = FakeClient([asset], failures=2)
    monkeypatch.setattr(nwb, "_dandi_client", lambda: flaky)
    assert list(nwb.find_natural_scenes_sessions("000728", retries=3).session_id) == ["42"]
    down = FakeClient([asset], failures=100)
    monkeypatch.setattr(nwb, "_dandi_client", lambda: down)
    with pytest.raises(DownloadError, match="failed after 3 attempts .*check the network"):
        nwb.find_natural_scenes_sessions("000728", retries=3)
    monkeypatch.setattr(nwb, "_dandi_client", lambda: FakeClient([asset]))
    with pytest.raises(MissingFileError, match="no natural-scenes session '99'"):
        nwb.load_dandi_session("000728", 99)
    with pytest.raises(ConfigError, match="pass pattern="):
        nwb.find_natural_scenes_sessions("000999")

    class NotFoundError(Exception):
        pass

    class Gone(FakeClient):
        def get_dandiset(self, dandiset_id, version=None):
            raise NotFoundError("No such dandiset")

    monkeypatch.setattr(nwb, "_dandi_client", lambda: Gone([asset]))
    with pytest.raises(MissingFileError, match="not found on DANDI"):
        nwb.find_natural_scenes_sessions("000728")


def test_unreachable_url_gives_download_error(files, monkeypatch):
    monkeypatch.setattr(nwb.time, "sleep", lambda s: None)
    asset = FakeAsset("sub-1/sub-1_ses-42-StimB_behavior+image+ophys.nwb", "http://127.0.0.1:9/none.nwb")
    monkeypatch.setattr(nwb, "_dandi_client", lambda: FakeClient([asset]))
    monkeypatch.setattr(nwb.remfile, "File", lambda *a, **k: (_ for _ in ()).throw(ConnectionError("refused")))
    with pytest.raises(DownloadError, match="streaming .*failed after 2 attempts"):
        nwb.load_dandi_session("000728", 42, retries=2)


def test_write_synthetic_rejects_bad_parameters(tmp_path):
    with pytest.raises(ConfigError, match="layout must be"):
        nwb.write_synthetic_nwb(tmp_path / "x.nwb", "fmri")
    with pytest.raises(ConfigError, match="images=False needs layout='neuropixels'"):
        nwb.write_synthetic_nwb(tmp_path / "x.nwb", "two_photon", images=False)
    assert not list(tmp_path.iterdir())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        nwb.write_synthetic_nwb(tmp_path / "ok.nwb", "neuropixels", n_images=12, n_features=4, n_single=2, n_neurons=6)
    assert [p.name for p in tmp_path.iterdir()] == ["ok.nwb"]


def test_unreadable_remote_file_is_retried_then_explained(tmp_path, monkeypatch):
    monkeypatch.setattr(nwb.time, "sleep", lambda s: None)
    monkeypatch.setenv("SUPERPOS_CACHE", str(tmp_path / "cache"))
    garbage = tmp_path / "garbage.nwb"
    garbage.write_bytes(b"not an hdf5 file" * 1000)
    with nwb.serve_file_locally(garbage) as url:
        asset = FakeAsset("sub-1/sub-1_ses-42-StimB_behavior+image+ophys.nwb", url)
        monkeypatch.setattr(nwb, "_dandi_client", lambda: FakeClient([asset]))
        with pytest.raises(DownloadError, match="failed after 2 attempts .*not a readable NWB"):
            nwb.load_dandi_session("000728", 42, retries=2)
