"""superpos.measures blockwise scoring (notebook 41): II, 2-AFC and MIS from embeddings, only the pairs they use,
give the full-matrix path's scores, baselines and intervals on the same sampled tasks; `method` chooses the path."""
import numpy as np
import pytest
import torch
import xarray as xr
from measures_data import labelled

import superpos.measures.blockwise as blockwise
import superpos.measures.extremes as extremes
from superpos.core import ConfigError, DataError
from superpos.measures.blockwise import EmbeddingSimilarity, is_dot_product, pair_block
from superpos.measures.extremes import prepare_inputs
from superpos.measures.index import interpretability_index
from superpos.measures.mis import mis
from superpos.measures.similarity import get_similarity
from superpos.measures.twoafc import psychophysics_2afc

N, D, UNITS = 5000, 64, 6


def _embeddings(n, d, seed, kind="one_minus", positive=False):
    rng = np.random.default_rng(seed)
    e = rng.normal(size=(n, d))
    e = np.abs(e) if positive else e
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    ids = np.array([f"x{i}" for i in range(n)])
    return xr.DataArray(e.astype(np.float32), dims=("stimulus", "embedding"), coords={"stimulus": ids},
                        attrs={"distance_kind": kind})


@pytest.fixture(scope="module")
def setup():
    emb = _embeddings(N, D, 0)
    rng = np.random.default_rng(1)
    # units reading out an embedding direction (structured: their top images are alike), plus noise units
    w = rng.normal(size=(D, UNITS))
    vals = emb.values @ w + rng.normal(size=(N, UNITS)) * np.linspace(0, 3, UNITS)
    return emb, labelled(vals, emb.stimulus.values)


CASES = {
    "II stimuli": (interpretability_index, dict(n_boot=200)),
    "II references, diagonal": (interpretability_index, dict(n_boot=200, interval="references", diagonal="include")),
    "2-AFC": (psychophysics_2afc, dict(n_boot=200, return_tasks=True)),
    "2-AFC no z-score": (psychophysics_2afc, dict(n_boot=200, return_tasks=True, zscore=False)),
    "MIS alpha": (mis, dict(n_boot=200, alpha=2.0, return_tasks=True)),
}


@pytest.mark.parametrize("case", CASES)
def test_blockwise_equals_matrix_at_5000(setup, case):
    emb, resp = setup
    fn, kw = CASES[case]
    full = fn(resp, None, emb, method="matrix", **kw)
    block = fn(resp, None, emb, method="blockwise", **kw)
    assert set(full.data_vars) == set(block.data_vars)
    for v in full.data_vars:
        a, b = full[v].values, block[v].values
        if a.dtype.kind in "fc":
            assert np.isfinite(a).all() and np.abs(a - b).max() < 1e-6, (v, np.abs(a - b).max())
        else:
            np.testing.assert_array_equal(a, b)                  # the same top images / queries
    assert full.score.std() > 0.01                               # the units differ: not a trivial agreement


def test_mis_fraction_correct_and_auto_choice(setup, monkeypatch):
    emb, resp = setup
    full = mis(resp, None, emb, method="matrix", n_boot=0, return_tasks=True)
    block = mis(resp, None, emb, method="blockwise", n_boot=0, return_tasks=True)
    assert np.abs(full.delta.values - block.delta.values).max() < 1e-6
    clear = np.abs(full.delta.values) > 1e-5                     # sign ties at float precision are the only freedom
    np.testing.assert_array_equal((full.delta.values > 0)[clear], (block.delta.values > 0)[clear])
    assert np.abs(full.score.values - block.score.values).max() <= (~clear).sum(-1).max() / 100 + 1e-9
    # auto: the matrix at N <= BLOCKWISE_ABOVE, blockwise above (the same numbers either way)
    assert isinstance(prepare_inputs(resp, None, emb).gram, torch.Tensor)
    monkeypatch.setattr(extremes, "BLOCKWISE_ABOVE", 1000)
    assert isinstance(prepare_inputs(resp, None, emb).gram, EmbeddingSimilarity)
    auto = mis(resp, None, emb, n_boot=0, return_tasks=True)
    np.testing.assert_array_equal(auto.delta.values, block.delta.values)


def test_baseline_exact_from_sums_and_estimated_for_hellinger():
    emb = _embeddings(3000, 16, 2, kind="hellinger", positive=True)
    resp = labelled(np.random.default_rng(3).normal(size=(3000, 3)), emb.stimulus.values)
    full = interpretability_index(resp, None, emb, method="matrix", n_boot=0)
    block = interpretability_index(resp, None, emb, method="blockwise", n_boot=0)
    e = emb.values.astype(np.float64)
    s = e.sum(0)
    exact = (s @ s - (e * e).sum()) / (3000 * 2999)               # mean over the off-diagonal pairs
    assert float(block.baseline) == pytest.approx(exact, abs=1e-9)
    assert abs(float(full.baseline) - float(block.baseline)) < 1e-6
    # hellinger is not affine in the similarity: blockwise estimates it from 2**20 random pairs
    assert abs(float(full.baseline_distance) - float(block.baseline_distance)) < 2e-3


def test_pair_block_and_bad_requests(setup):
    emb, resp = setup
    e = torch.as_tensor(emb.values[:200])
    rows = torch.randint(200, (4, 3, 7))
    cols = torch.randint(200, (4, 3, 2))
    sims = EmbeddingSimilarity(e, chunk_bytes=1000)                # many tiny chunks: the same answer
    torch.testing.assert_close(pair_block(sims, rows, cols), pair_block(e @ e.T, rows, cols), atol=1e-6, rtol=0)
    gram = xr.DataArray(emb.values[:300] @ emb.values[:300].T, dims=("stimulus", "stimulus_other"),
                        coords={"stimulus": emb.stimulus.values[:300], "stimulus_other": emb.stimulus.values[:300]})
    small = resp[:300]
    with pytest.raises(ConfigError, match="dot-product"):
        mis(small, None, gram, method="blockwise")
    with pytest.raises(ConfigError, match="method must be"):
        mis(small, None, gram, method="fast")
    assert is_dot_product(get_similarity("perceptual")) and is_dot_product(get_similarity("color_histogram"))
    assert not is_dot_product(get_similarity("pixel"))


def test_chunk_sizes_from_free_device_memory(monkeypatch):
    # on a CUDA device the chunks are an eighth of its free memory (torch.cuda.mem_get_info); CPU: a fixed size
    assert blockwise.chunk_bytes_for("cpu") == blockwise.CPU_CHUNK_BYTES
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (8 << 30, 80 << 30))
    assert blockwise.chunk_bytes_for(torch.device("cuda", 0)) == 1 << 30
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (1000, 80 << 30))
    assert blockwise.chunk_bytes_for("cuda") == 1 << 20                # never below 1 MB


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf"), None])
def test_all_finite_finds_one_bad_entry_in_any_block(bad, monkeypatch):
    monkeypatch.setattr(blockwise, "SUM_BYTES", 7 * 6 * 8)             # blocks of 7 rows, the last one short
    assert [len(b) for b in blockwise.float64_blocks(torch.zeros(50, 6))] == [7] * 7 + [1]
    x = torch.randn(50, 6)
    if bad is not None:
        x[45, 4] = bad
    assert blockwise.all_finite(x) is (bad is None)
    assert blockwise.all_finite(torch.zeros(0, 6))
    if bad is not None:
        with pytest.raises(DataError, match="finite"):
            EmbeddingSimilarity(x)
