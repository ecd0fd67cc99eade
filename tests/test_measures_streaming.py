"""superpos.measures streaming selection (notebook 41): II, 2-AFC and MIS score lazy (dask-backed) responses read
from a zarr store chunk by chunk, with the in-memory path's results, and never read the whole array at once."""
import dask
import dask.array
import numpy as np
import pytest
import torch
import xarray as xr
from dask.callbacks import Callback

import superpos.measures.blockwise as blockwise
from superpos.core import ConfigError, DataError
from superpos.directions.base import is_lazy
from superpos.measures.extremes import (StreamedResponses, extreme_stimuli, prepare_inputs, stimulus_blocks,
                                        streaming_extremes)
from superpos.measures.selection import rank_order
from superpos.measures.index import interpretability_index
from superpos.measures.mis import mis
from superpos.measures.twoafc import psychophysics_2afc
from superpos.networks.store import ActivationWriter, load_activations

N, D, UNITS, BATCH = 2000, 32, 5, 250


class NoWholeReads:
    """An array that serves row slices and raises if any read covers every row (a full materialisation)."""

    def __init__(self, values):
        self.values, self.shape, self.dtype, self.ndim = values, values.shape, values.dtype, values.ndim
        self.rows_read = 0

    def __getitem__(self, key):
        out = self.values[key]
        if out.ndim == 2 and out.shape[0] == self.shape[0]:
            raise AssertionError(f"the whole array was read: {key}")
        self.rows_read += out.shape[0] if out.ndim == 2 else 0
        return out


class LargestResult(Callback):
    """Records the most rows of any 2-D array a dask task produced while active."""

    def __init__(self):
        super().__init__()
        self.rows = 0

    def _posttask(self, key, result, dsk, state, id):
        if isinstance(result, np.ndarray) and result.ndim == 2:
            self.rows = max(self.rows, result.shape[0])


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """Embeddings and planted responses (embedding read-outs + noise), the responses written batch by batch to a
    zarr store as `extract(path=...)` does (zarr chunks of BATCH < N stimuli) and read back lazily."""
    rng = np.random.default_rng(0)
    e = rng.normal(size=(N, D))
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    ids = np.array([f"x{i}" for i in range(N)])
    emb = xr.DataArray(e.astype(np.float32), dims=("stimulus", "embedding"), coords={"stimulus": ids},
                       attrs={"distance_kind": "one_minus"})
    vals = (e @ rng.normal(size=(D, UNITS)) + rng.normal(size=(N, UNITS)) * np.linspace(0.1, 3, UNITS)).astype(np.float32)
    resp = xr.DataArray(vals, dims=("stimulus", "unit"),
                        coords={"stimulus": ids, "unit": np.arange(UNITS), "source": ("stimulus", ["planted"] * N)})
    path = tmp_path_factory.mktemp("store") / "acts.zarr"
    writer = ActivationWriter(path, N)
    for s in range(0, N, BATCH):
        writer.append({"layer": resp.isel(stimulus=slice(s, s + BATCH))})
    lazy = writer.finish(lazy=True)["layer"].chunk({"stimulus": BATCH})
    return emb, resp, lazy


CASES = {
    "II": (interpretability_index, dict(n_boot=50)),
    "II references": (interpretability_index, dict(n_boot=50, interval="references")),
    "2-AFC": (psychophysics_2afc, dict(n_boot=50, return_tasks=True)),
    "MIS": (mis, dict(n_boot=50, alpha=2.0, return_tasks=True)),
}


@pytest.mark.parametrize("method", ["matrix", "blockwise"])
@pytest.mark.parametrize("case", CASES)
def test_lazy_scores_equal_in_memory(stored, case, method, monkeypatch):
    emb, resp, lazy = stored
    monkeypatch.setattr(blockwise, "CPU_CHUNK_BYTES", BATCH * UNITS * 8)   # a memory budget of one stored chunk
    assert is_lazy(lazy) and not is_lazy(resp) and lazy.chunks[0][0] == BATCH
    fn, kw = CASES[case]
    full = fn(resp, None, emb, method=method, **kw)
    with LargestResult() as seen:
        streamed = fn(lazy, None, emb, method=method, **kw)
    assert 0 < seen.rows < N                                     # read in blocks, never the whole array
    xr.testing.assert_identical(full.drop_vars("source", errors="ignore"), streamed.drop_vars("source", errors="ignore"))
    assert full.score.std() > 0.01                               # the units differ: not a trivial agreement


def test_streaming_never_materialises_and_matches_extreme_stimuli(stored, monkeypatch):
    _, resp, _ = stored
    values = resp.values
    guard = NoWholeReads(values)
    lazy = xr.DataArray(dask.array.from_array(guard, chunks=(BATCH, -1), asarray=False), dims=("stimulus", "unit"),
                        coords={"stimulus": resp.stimulus.values, "unit": np.arange(UNITS)})
    for depth in (1, 7, 400, N - 1):                                 # depth above a block: blocks grow to hold it
        top, bottom = streaming_extremes(lazy, depth, seed=4)
        want = extreme_stimuli(torch.as_tensor(values), depth, seed=4)
        assert torch.equal(top, want[0]) and torch.equal(bottom, want[1])
    guard.rows_read = 0
    monkeypatch.setattr(blockwise, "CPU_CHUNK_BYTES", BATCH * UNITS * 8)
    res = mis(lazy, None, xr.DataArray(np.eye(N, dtype=np.float32)[:, :64], dims=("stimulus", "embedding"),
                                       coords={"stimulus": resp.stimulus.values}), n_boot=0, method="blockwise")
    assert guard.rows_read == N and res.score.shape == (UNITS,)  # one pass, each stimulus read once


def test_block_sizes_and_ties_do_not_change_the_selection():
    rng = np.random.default_rng(1)
    vals = rng.integers(0, 5, size=(900, 4)).astype(np.float64)     # heavy ties, as in rectified activations
    vals[:, 3] = np.maximum(rng.normal(size=900), 0)                 # half zeros
    order, flipped = rank_order(torch.as_tensor(vals), seed=2), rank_order(-torch.as_tensor(vals), seed=2)
    for chunks in (1, 37, 900):
        lazy = xr.DataArray(dask.array.from_array(vals, chunks=(chunks, -1)), dims=("stimulus", "unit"))
        for rows in (1, 100, None):
            top, bottom = streaming_extremes(lazy, 250, seed=2, chunk=rows)
            assert torch.equal(top, order[:250].T) and torch.equal(bottom, flipped[:250].T)
    lazy = xr.DataArray(dask.array.from_array(vals, chunks=(37, -1)), dims=("stimulus", "unit"))
    assert [s for s, _ in stimulus_blocks(lazy, 100)] == [0, 111, 222, 333, 444, 555, 666, 777, 888]
    assert sum(len(b) for _, b in stimulus_blocks(lazy, 100)) == 900


def test_lazy_inputs_are_aligned_and_checked(stored):
    emb, resp, lazy = stored
    shuffled = lazy.isel(stimulus=np.random.default_rng(2).permutation(N)).transpose("unit", "stimulus")
    inputs = prepare_inputs(shuffled, None, emb)
    assert isinstance(inputs.values, StreamedResponses) and inputs.values.shape == (N, UNITS)
    np.testing.assert_array_equal(inputs.values.data.stimulus.values, emb.stimulus.values)   # aligned lazily
    assert is_lazy(inputs.values.data)
    np.testing.assert_array_equal(mis(shuffled, None, emb, n_boot=0).score.values, mis(resp, None, emb, n_boot=0).score.values)
    bad = lazy.where(lazy.stimulus != "x1500")                        # NaN in one row of a late chunk
    with pytest.raises(DataError, match="NaN"):
        mis(bad, None, emb, n_boot=0)
    flat = lazy.where(lazy.unit != 2, 1.0)
    with pytest.raises(DataError, match="respond identically"):
        psychophysics_2afc(flat, None, emb, n_boot=0)
    with pytest.raises(DataError, match="do not match"):
        interpretability_index(lazy.assign_coords(stimulus=[f"y{i}" for i in range(N)]), None, emb, n_boot=0)
    with pytest.raises(DataError, match="most extreme"):
        streaming_extremes(lazy, N + 1)
    with pytest.raises(ConfigError, match="chunk"):
        streaming_extremes(lazy, 3, chunk=0)
