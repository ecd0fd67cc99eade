"""Tests of superpos.networks.extraction: hooks against direct computation, pooling, storage, errors."""
import numpy as np
import pytest
import torch
import torch.nn as nn
import xarray as xr

from superpos.core import ConfigError, DataError
from superpos.networks.extraction import extract
from superpos.networks.store import load_activations, save_activations
from superpos.networks.models import Preprocess, load_model
from superpos.stimuli.sets import as_stimulus_set

torch.set_num_threads(1)
IDENTITY = Preprocess((0.0,) * 3, (1.0,) * 3, None)


class Shared(nn.Module):
    """A conv net whose ReLU module is called twice (the hook must keep the last call)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 6, 3, stride=2, padding=1)
        self.relu = nn.ReLU()
        self.head = nn.Linear(6, 3)

    def forward(self, x):
        a = self.relu(self.conv1(x))
        b = self.relu(self.conv2(a))
        return self.head(b.mean((2, 3)))


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return load_model(Shared(), input_size=None, preprocess=IDENTITY)


@pytest.fixture(scope="module")
def stim():
    return as_stimulus_set((torch.rand(7, 3, 10, 10, generator=torch.Generator().manual_seed(1)) * 255).round().to(torch.uint8))


@pytest.fixture(scope="module")
def lite():
    return load_model("efficientnet_lite0")


@pytest.mark.parametrize("batch_size", [1, 3, 64])
def test_hand_built_model_matches_direct_computation(tiny, stim, batch_size):
    m = tiny.module
    x = stim.tensor()
    with torch.no_grad():
        conv1 = m.conv1(x)
        conv2 = m.conv2(conv1.relu())
        logits = m(x)
    acts = extract(tiny, ["conv1", "conv2", "relu", "head"], stim, batch_size=batch_size, progress=False)
    np.testing.assert_allclose(acts["conv1"].values, conv1.mean((2, 3)).numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(acts["conv2"].values, conv2.mean((2, 3)).numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(acts["relu"].values, conv2.relu().mean((2, 3)).numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(acts["head"].values, logits.numpy(), rtol=1e-5, atol=1e-6)
    # early layers alone: the forward pass stops early from the second batch on, same numbers
    early = extract(tiny, "conv1", stim, batch_size=batch_size, progress=False, pooling="centre")
    np.testing.assert_allclose(early.values, conv1[:, :, 5, 5].numpy(), rtol=1e-5, atol=1e-6)
    full = extract(tiny, "conv2", stim, batch_size=batch_size, progress=False, pooling="none")
    np.testing.assert_allclose(full.values, conv2.flatten(1).numpy(), rtol=1e-5, atol=1e-6)
    pick = (full.channel == 4) & (full.y == 2) & (full.x == 3)
    np.testing.assert_allclose(full.values[:, pick.values][:, 0], conv2[:, 4, 2, 3].numpy(), rtol=1e-5, atol=1e-6)


def test_labels_and_attrs(tiny, stim):
    da = extract(tiny, "conv2", stim, progress=False)
    assert da.dims == ("stimulus", "unit")
    assert list(da.stimulus.values) == list(stim.ids)
    assert list(da.source.values) == list(stim.sources)
    assert da.attrs["layer"] == "conv2" and da.attrs["pooling"] == "mean" and da.attrs["model"] == "Shared"
    assert da.dtype == np.float32 and da.shape == (7, 6)


def test_token_pooling_matches_direct():
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(8, 2, 16, batch_first=True, dropout=0.0)

    class Tokens(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Conv2d(3, 8, 4, stride=4)
            self.block = layer

        def forward(self, x):
            return self.block(self.embed(x).flatten(2).transpose(1, 2))

    model = load_model(Tokens(), input_size=None, preprocess=IDENTITY)
    stim = as_stimulus_set(torch.rand(3, 3, 8, 8))
    with torch.no_grad():
        tokens = model.module(stim.tensor())
    cls = extract(model, "block", stim, pooling="cls", progress=False)
    mean = extract(model, "block", stim, pooling="tokens_mean", progress=False)
    np.testing.assert_allclose(cls.values, tokens[:, 0].numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(mean.values, tokens.mean(1).numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("suffix", [".nc", ".zarr"])
def test_round_trip_is_exact(tiny, stim, tmp_path, suffix):
    acts = extract(tiny, ["conv1", "conv2"], stim, progress=False)
    acts["spatial"] = extract(tiny, "conv2", stim, pooling="none", progress=False).rename("spatial")
    path = save_activations(acts, tmp_path / f"acts{suffix}")
    back = load_activations(path)
    assert sorted(back) == sorted(acts)
    for layer, da in acts.items():
        xr.testing.assert_identical(back[layer], da)
        assert back[layer].dtype == da.dtype and back[layer].attrs == da.attrs
    save_activations(acts, path)  # overwriting an existing store works
    tree = load_activations(path, as_tree=True)
    xr.testing.assert_identical(tree["conv2"]["activations"], acts["conv2"].rename("activations"))


def test_zarr_streaming_equals_memory(tiny, stim, tmp_path):
    memory = extract(tiny, ["conv1", "head"], stim, batch_size=2, progress=False)
    streamed = extract(tiny, ["conv1", "head"], stim, batch_size=2, progress=False, path=tmp_path / "s.zarr")
    for layer in memory:
        xr.testing.assert_identical(streamed[layer].load(), memory[layer])
    netcdf = extract(tiny, ["conv1", "head"], stim, progress=False, path=tmp_path / "s.nc")
    xr.testing.assert_identical(load_activations(tmp_path / "s.nc")["head"], netcdf["head"])


def test_bad_layer_lists_valid_names(tiny, stim, lite):
    with pytest.raises(ConfigError, match="valid layer names: conv1, conv2, relu, head"):
        extract(tiny, "conv3", stim)
    with pytest.raises(ConfigError, match="_blocks.1"):
        extract(lite, ["_blocks.1", "_block.2"], stim)
    with pytest.raises(ConfigError, match="pooling must be one of"):
        extract(tiny, "conv1", stim, pooling="max")


def test_bad_images_get_clear_errors(tiny):
    with pytest.raises(DataError, match="permute"):
        extract(tiny, "conv1", torch.rand(2, 10, 10, 3))
    with pytest.raises(DataError, match="3 channels"):
        extract(tiny, "conv1", torch.rand(2, 1, 10, 10))
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        extract(tiny, "conv1", torch.rand(2, 3, 10, 10) * 255)
    with pytest.raises(DataError, match="batch"):
        extract(tiny, "conv1", torch.rand(3, 10, 10))
    with pytest.raises(DataError, match="uint8"):
        extract(tiny, "conv1", torch.zeros(2, 3, 10, 10, dtype=torch.int64))


def test_amp_close_to_float32(tiny, stim):
    exact = extract(tiny, "conv2", stim, progress=False, amp=False).values
    mixed = extract(tiny, "conv2", stim, progress=False, amp="bf16").values
    np.testing.assert_allclose(mixed, exact, atol=0.05, rtol=0.05)
    assert extract(tiny, "conv2", stim, progress=False, amp="bf16").attrs["precision"] == "bfloat16"


def test_precision_defaults_to_float32_and_is_recorded(tiny, stim, tmp_path):
    assert extract(tiny, "conv2", stim, progress=False).attrs["precision"] == "float32"
    stored = extract(tiny, "conv2", stim, progress=False, precision="bfloat16", path=tmp_path / "a.zarr")
    assert stored.attrs["precision"] == "bfloat16"
    assert load_activations(tmp_path / "a.zarr")["conv2"].attrs["precision"] == "bfloat16"
    with pytest.raises(ConfigError, match="precision must be one of"):
        extract(tiny, "conv2", stim, precision="fp8")


def test_bfloat16_correlates_with_float32_per_unit(lite):
    """bfloat16 autocast on a real network: every unit's responses correlate > 0.98 with float32."""
    from superpos.stimuli.natural import natural_stimuli
    stimuli = natural_stimuli(24, 64, seed=3)
    small = load_model(lite.module, input_size=None, preprocess=lite.preprocess.__class__(lite.preprocess.mean, lite.preprocess.std, None))
    layers = ["_blocks.4", "_blocks.15"]
    exact = extract(small, layers, stimuli, progress=False, device="cpu")
    fast = extract(small, layers, stimuli, progress=False, device="cpu", precision="bfloat16")
    for layer in layers:
        a, b = exact[layer].values, fast[layer].values
        keep = a.std(0) > 1e-6 * np.abs(a).max()
        a, b = a[:, keep] - a[:, keep].mean(0), b[:, keep] - b[:, keep].mean(0)
        r = (a * b).sum(0) / np.sqrt((a * a).sum(0) * (b * b).sum(0))
        assert np.median(r) > 0.995 and r.min() > 0.98, (layer, np.median(r), r.min())
        assert fast[layer].attrs["precision"] == "bfloat16"
