"""The CNN analysis pipeline (superpos.analyses.cnn): reproducible, complete, honest about what it skips."""
import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr
from torch import nn

from superpos.analyses.cnn import cnn_analysis
from superpos.analyses.ranking import source_balanced_index, top_source_fraction
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


def reference_source_balanced_picks(values, codes, k):
    """The former implementation (full argsort + stimulus x unit x source one-hot), kept as the reference."""
    n_sources = codes.max() + 1
    order = np.argsort(-values, axis=0, kind="stable")
    onehot = np.eye(n_sources, dtype=np.int32)[codes[order]]
    first = (np.cumsum(onehot, axis=0) * onehot).sum(-1) == 1
    rank = np.cumsum(first, axis=0)
    pick = np.argmax(first & (rank == np.arange(1, k + 1)[:, None, None]), axis=1)
    return np.take_along_axis(order, pick, axis=0)


@pytest.mark.parametrize("kind", ["gaussian", "ties", "dominant_source"])
def test_first_k_sources_equals_the_one_hot_reference(kind):
    """The ranking walk picks exactly the stimuli of the one-hot implementation (ties, deep walks included)."""
    from superpos.analyses.ranking import first_k_sources
    rng = np.random.default_rng({"gaussian": 0, "ties": 1, "dominant_source": 2}[kind])
    for _ in range(60):
        n, units, n_sources = rng.integers(10, 120), rng.integers(1, 16), rng.integers(2, 9)
        k = int(rng.integers(1, n_sources + 1))
        codes = rng.permutation(np.r_[np.arange(n_sources), rng.integers(0, n_sources, n - n_sources)])
        values = rng.standard_normal((n, units)) if kind == "gaussian" else rng.integers(0, 3, (n, units)) * 1.0
        if kind == "dominant_source":
            values[codes == 0] += 10  # the top rows all come from one source: the walk must go deeper
        np.testing.assert_array_equal(first_k_sources(values, codes, k), reference_source_balanced_picks(values, codes, k))


def test_source_balanced_index_equals_reference_scores():
    rng = np.random.default_rng(3)
    n, units, k = 90, 7, 4
    ids = [f"s{i}" for i in range(n)]
    sources = rng.choice(list("abcdef"), n)
    x = rng.standard_normal((n, 5))
    gram = xr.DataArray(x @ x.T, dims=("stimulus", "stimulus_other"), coords={"stimulus": ids, "stimulus_other": ids})
    resp = xr.DataArray(np.maximum(rng.standard_normal((n, units)), 0), dims=("stimulus", "unit"),
                        coords={"stimulus": ids})
    top = reference_source_balanced_picks(resp.values, pd.factorize(sources)[0], k)
    block = gram.values[top[:, None, :], top[None, :, :]]
    expected = (block.sum((0, 1)) - np.trace(block)) / (k * (k - 1))
    np.testing.assert_allclose(source_balanced_index(resp, gram, sources, k), expected)


ANALYSIS = dict(weights=("pretrained",), layers=["1"], similarity="pixel", n_boot=5, input_size=None)


def test_misspelt_method_is_a_config_error_before_any_work(stimuli, monkeypatch):
    import superpos.analyses.cnn as cnn
    from superpos.core import ConfigError

    def no_work(*args, **kwargs):
        raise AssertionError("work started before the configuration was checked")
    monkeypatch.setattr(cnn, "load_model", no_work)
    monkeypatch.setattr(cnn, "extract", no_work)
    with pytest.raises(ConfigError, match=r"'kmean'.*choose from.*'kmeans'"):
        cnn_analysis(small_net(), stimuli=stimuli, methods=("units", "kmean"), **ANALYSIS)
    with pytest.raises(ConfigError, match=r"'iii'.*choose from"):
        cnn_analysis(small_net(), stimuli=stimuli, methods=("units",), measures=("iii",), **ANALYSIS)
    with pytest.raises(ConfigError, match="k_multiples"):
        cnn_analysis(small_net(), stimuli=stimuli, methods=("kmeans",), k_multiples=(0,), **ANALYSIS)


class _Failing:
    """A direction finder whose fit raises the given error."""

    def __init__(self, error):
        self.error = error

    def fit(self, X):
        raise self.error


def test_only_numerical_failures_are_skipped_and_named(stimuli, monkeypatch):
    import superpos.analyses.cnn as cnn
    monkeypatch.setattr(cnn, "make_direction_finder",
                        lambda *a, **k: _Failing(np.linalg.LinAlgError("SVD did not converge")))
    scores, details = cnn_analysis(small_net(), stimuli=stimuli, methods=("units", "pca"), **ANALYSIS)
    assert set(scores.method) == {"units"}
    skipped = details["skipped"]
    assert list(skipped.method) == ["pca"] and list(skipped.error) == ["LinAlgError"]
    assert "SVD did not converge" in skipped.reason[0]
    # anything that is not a numerical failure (a bug, a device error) is raised, not skipped
    monkeypatch.setattr(cnn, "make_direction_finder", lambda *a, **k: _Failing(RuntimeError("CUDA out of memory")))
    with pytest.raises(RuntimeError, match="out of memory"):
        cnn_analysis(small_net(), stimuli=stimuli, methods=("units", "pca"), **ANALYSIS)


def test_every_method_failing_is_a_clear_error(stimuli):
    linear = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1))  # negative activations: NMF cannot factorise them
    with pytest.raises(DataError, match="nothing could be scored(.|\n)*nmf(.|\n)*DataError"):
        cnn_analysis(linear, stimuli=stimuli, methods=("nmf",), **{**ANALYSIS, "layers": ["0"]})


STORE_ANALYSIS = dict(weights=("pretrained",), layers=["1", "3"], methods=("units", "kmeans", "pca", "nmf", "rotation"),
                      k_multiples=(0.5, 2.0), similarity="color_histogram", measures=("ii", "2afc", "mis"), n_tasks=2,
                      n_boot=20, input_size=None)


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks of a few stimuli, so that every by-block pass (ranking, dead units, sources) crosses many blocks."""
    import superpos.analyses.cnn as cnn
    import superpos.analyses.ranking as ranking
    for module in (cnn, ranking):
        monkeypatch.setattr(module, "ROW_BYTES", 12 * 4 * 7)   # 7 stimuli of the 12-unit layer per block


def test_store_gives_the_in_memory_scores(stimuli, tmp_path, small_blocks):
    """Activations and embeddings on disk, read by blocks: the same table as the in-memory run (to float rounding)."""
    memory, memory_details = cnn_analysis(small_net(), stimuli=stimuli, **STORE_ANALYSIS)
    stored, details = cnn_analysis(small_net(), stimuli=stimuli, store=tmp_path / "store", **STORE_ANALYSIS)
    pd.testing.assert_frame_equal(stored, memory, check_exact=False, rtol=0, atol=1e-6)
    assert len(memory) > 0 and set(stored.method) == set(STORE_ANALYSIS["methods"])
    # nothing of size stimuli x units is held: the activations are dask arrays on disk, no similarity matrix
    for act in details["activations"]["pretrained"].values():
        assert act.chunks is not None
    assert details["grams"] == {} and details["embeddings"].chunks is not None
    assert (tmp_path / "store" / "activations" / "pretrained.zarr").is_dir()
    assert details["embeddings"].attrs["dtype"] == "float32"
    np.testing.assert_array_equal(details["held"][0], memory_details["grams"][0].stimulus.values)


def test_store_beyond_memory_uses_the_finders_lazy_paths(stimuli, tmp_path, small_blocks, monkeypatch):
    """Activations above IN_MEMORY_BYTES reach the finders lazily: row-wise encodings (units, PCA, rotation) still
    give the in-memory scores; k-means, fitted by mini-batches over chunks, still scores every direction."""
    import superpos.analyses.cnn as cnn
    args = {**STORE_ANALYSIS, "methods": ("units", "pca", "rotation", "kmeans"), "k_multiples": (1.0,)}
    memory, _ = cnn_analysis(small_net(), stimuli=stimuli, **args)
    monkeypatch.setattr(cnn, "IN_MEMORY_BYTES", 0)
    stored, details = cnn_analysis(small_net(), stimuli=stimuli, store=tmp_path, **args)
    keys = ["layer", "method", "k_multiple", "measure", "index"]
    exact = memory.method.isin(["units", "pca", "rotation"])
    pd.testing.assert_frame_equal(stored[exact].reset_index(drop=True), memory[exact].reset_index(drop=True),
                                  check_exact=False, rtol=0, atol=1e-6)
    kmeans = stored[stored.method == "kmeans"]
    assert len(kmeans) == len(memory[memory.method == "kmeans"]) and np.isfinite(kmeans.score).all()
    for key, comp in details["components"].items():
        np.testing.assert_allclose(np.linalg.norm(comp, axis=1), 1, atol=1e-5)


def test_store_is_reused_and_never_overwritten(stimuli, tmp_path, monkeypatch):
    import superpos.analyses.cnn as cnn
    from superpos.core import ConfigError
    args = {**STORE_ANALYSIS, "methods": ("units", "pca"), "measures": ("ii",)}
    first, _ = cnn_analysis(small_net(), stimuli=stimuli, store=tmp_path, **args)

    def no_work(*a, **k):
        raise AssertionError("a complete store was computed again")
    monkeypatch.setattr(cnn, "extract", no_work)
    monkeypatch.setattr(cnn, "similarity_embeddings", no_work)
    again, _ = cnn_analysis(small_net(), stimuli=stimuli, store=tmp_path, **args)
    pd.testing.assert_frame_equal(again, first)
    # another configuration (other layers, other stimuli) is refused, not silently overwritten
    with pytest.raises(ConfigError, match="another configuration"):
        cnn_analysis(small_net(), stimuli=stimuli, store=tmp_path, **{**args, "layers": ["1"]})
    with pytest.raises(ConfigError, match="another configuration"):
        cnn_analysis(small_net(), stimuli=stimuli.subset(slice(0, 100)), store=tmp_path, **args)


def test_store_needs_a_dot_product_similarity_before_any_work(stimuli, tmp_path, monkeypatch):
    import superpos.analyses.cnn as cnn
    from superpos.core import ConfigError

    def no_work(*args, **kwargs):
        raise AssertionError("work started before the configuration was checked")
    monkeypatch.setattr(cnn, "load_model", no_work)
    with pytest.raises(ConfigError, match="'pixel' similarity is not a dot product"):
        cnn_analysis(small_net(), stimuli=stimuli, store=tmp_path, **{**ANALYSIS, "methods": ("units",)})
    with pytest.raises(ConfigError, match="embedding_dtype"):
        cnn_analysis(small_net(), stimuli=stimuli, store=tmp_path, embedding_dtype="int8",
                     **{**ANALYSIS, "similarity": "color_histogram", "methods": ("units",)})


def test_float16_embeddings_are_recorded_and_score_close(stimuli, tmp_path):
    args = {**STORE_ANALYSIS, "methods": ("units",), "measures": ("ii",), "layers": ["3"]}
    memory, _ = cnn_analysis(small_net(), stimuli=stimuli, **args)
    half, details = cnn_analysis(small_net(), stimuli=stimuli, store=tmp_path, embedding_dtype="float16", **args)
    assert details["embeddings"].dtype == np.float16 and details["embeddings"].attrs["dtype"] == "float16"
    np.testing.assert_allclose(half.score, memory.score, atol=2e-3)


def test_by_block_helpers_equal_the_whole_array(tmp_path):
    """Ranking, dead units and source confound from a zarr-backed array in blocks of 3 stimuli = from memory."""
    from superpos.analyses.cnn import _live
    from superpos.analyses.ranking import row_blocks, top_rows
    rng = np.random.default_rng(5)
    values = rng.integers(0, 5, (40, 6)).astype(np.float32)   # ties everywhere
    values[:, 2] = 1.5                                         # a dead unit
    ids = np.array([f"s{i}" for i in range(40)], dtype=object)
    resp = xr.DataArray(values, dims=("stimulus", "unit"), coords={"stimulus": ids}, name="r")
    resp.to_dataset().to_zarr(tmp_path / "r.zarr", consolidated=False)
    lazy = xr.open_zarr(tmp_path / "r.zarr", consolidated=False)["r"].chunk({"stimulus": 4})
    assert lazy.chunks is not None
    np.testing.assert_array_equal(top_rows(lazy, 9, block_bytes=6 * 4 * 3), np.argsort(-values, 0, kind="stable")[:9])
    assert sum(1 for _ in row_blocks(lazy, block_bytes=6 * 4 * 3)) == 14
    np.testing.assert_array_equal(_live(lazy).values, values[:, [0, 1, 3, 4, 5]])
    sources = rng.choice(list("abcd"), 40)
    np.testing.assert_allclose(top_source_fraction(lazy, sources, 5), top_source_fraction(values, sources, 5))
    x = rng.standard_normal((40, 3)).astype(np.float32)
    emb = xr.DataArray(x, dims=("stimulus", "embedding"), coords={"stimulus": ids})
    gram = xr.DataArray(x @ x.T, dims=("stimulus", "stimulus_other"), coords={"stimulus": ids, "stimulus_other": ids})
    live = _live(lazy)
    np.testing.assert_allclose(source_balanced_index(live, emb, sources, 3),
                               source_balanced_index(live.compute(), gram, sources, 3), atol=1e-6)
