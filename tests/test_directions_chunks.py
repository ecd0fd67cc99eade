"""Tests of the chunked direction finders (issue #19): k-means, spherical k-means and the sparse autoencoder
fitted on lazy (dask / zarr-backed) activations chunk by chunk, lazy transforms, `fit_subset`, `partial_fit`."""

import dask
import dask.array
import numpy as np
import pytest
import torch
import xarray as xr
from scipy.optimize import linear_sum_assignment

from superpos.core import ConfigError
from superpos.directions.base import RowChunks, is_lazy
from superpos.directions.kmeans import KMeansDirections
from superpos.directions.spherical import SphericalKMeans, spherical_objective
from superpos.directions.registry import DIRECTION_METHODS, make_direction_finder
from superpos.directions.sae import SparseAutoencoder

torch.set_num_threads(1)


def planted_sphere(n=6000, d=16, k=6, spread=0.15, seed=0):
    """Stimuli = positive scales x unit vectors scattered around `k` known unit centroids."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, d))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    rows = centres[rng.integers(k, size=n)] + spread * rng.normal(size=(n, d)) / np.sqrt(d)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    return (rows * rng.gamma(3.0, size=(n, 1))).astype(np.float32), centres


def matched_cosines(found, truth):
    """Cosines of the found directions to the true ones after the best one-to-one matching."""
    cos = found @ truth.T
    r, c = linear_sum_assignment(-cos)
    return cos[r, c]


def store(tmp_path, X, chunk, name="acts.zarr"):
    """`X` written to a zarr store in chunks of `chunk` stimuli, read back lazily (dask-backed)."""
    ids = np.array([f"s{i}" for i in range(len(X))], dtype=object)  # variable-length strings, as superpos stores them
    da = xr.DataArray(X, dims=("stimulus", "unit"), coords={"stimulus": ids},
                      name="activations", attrs={"model": "toy"})
    da.chunk({"stimulus": chunk}).to_dataset().to_zarr(tmp_path / name, mode="w", consolidated=False)
    return xr.open_zarr(tmp_path / name, consolidated=False)["activations"]


class CountingArray:
    """A numpy array that records the bytes of every read (what dask pulls from the 'store')."""

    def __init__(self, values):
        self.values, self.shape, self.dtype, self.ndim = values, values.shape, values.dtype, values.ndim
        self.reads = []

    def __getitem__(self, key):
        out = self.values[key]
        self.reads.append(out.nbytes)
        return out


@pytest.fixture(scope="module")
def planted():
    return planted_sphere()


# ---------------------------------------------------------------- recovery from a zarr store

@pytest.mark.parametrize("finder", [KMeansDirections(6, batch_size=256, random_state=0),
                                    SphericalKMeans(6, batch_size=256, random_state=0),
                                    SphericalKMeans(6, batch_size=256, max_iter=0, random_state=0),
                                    SphericalKMeans(6, batch_size=256, fit_subset=2000, random_state=0),
                                    KMeansDirections(6, batch_size=256, fit_subset=2000, random_state=0)],
                         ids=["kmeans", "spherical", "spherical-minibatch-only", "spherical-subset", "kmeans-subset"])
def test_chunked_fit_recovers_planted_directions(tmp_path, planted, finder):
    X, centres = planted
    lazy = store(tmp_path, X, 250)
    assert is_lazy(lazy) and len(lazy.chunks[0]) == 24
    finder.fit(lazy)
    assert matched_cosines(finder.components_, centres).min() > 0.99
    np.testing.assert_allclose(np.linalg.norm(finder.components_, axis=1), 1, atol=1e-6)
    rows = X if finder.subset_ is None else X[finder.subset_]
    assert len(finder.labels_) == len(rows)
    assert finder.objective_ == pytest.approx(spherical_objective(rows, finder.components_), abs=1e-5)


def test_lazy_transform_and_predict_equal_in_memory(tmp_path, planted):
    X, _ = planted
    lazy = store(tmp_path, X, 500)
    finder = SphericalKMeans(6, random_state=0).fit(lazy)
    codes = finder.transform(lazy)
    assert is_lazy(codes) and codes.dims == ("stimulus", "direction") and codes.chunks[0] == lazy.chunks[0]
    assert list(codes.stimulus.values[:2]) == ["s0", "s1"] and codes.attrs["method"] == "spherical_kmeans"
    np.testing.assert_allclose(codes.values, finder.transform(X), rtol=1e-6)
    np.testing.assert_allclose(finder.transform(lazy.T.rename(unit="neuron")).values, codes.values)  # any layout
    np.testing.assert_array_equal(finder.predict(lazy.data).compute(), finder.predict(X))
    np.testing.assert_array_equal(finder.predict(lazy.data).compute(), finder.labels_)
    fitted = SphericalKMeans(6, random_state=0)
    assert is_lazy(fitted.fit_transform(lazy))


FAST = {"sae": {"n_epochs": 2}, "ica": {"max_iter": 200}, "nmf": {"max_iter": 200}}


@pytest.mark.parametrize("method", sorted(DIRECTION_METHODS))
def test_every_finder_transforms_lazily(method):
    X = np.random.default_rng(0).exponential(size=(120, 6))
    da = xr.DataArray(X, dims=("stimulus", "unit"), coords={"stimulus": np.arange(120), "layer": "l1"})
    finder = make_direction_finder(method, 4 if method != "units" else None, **FAST.get(method, {})).fit(X)
    lazy = finder.transform(da.chunk({"stimulus": 50}))
    assert is_lazy(lazy)
    expected = finder.transform(da)
    np.testing.assert_allclose(lazy.values, expected.values, rtol=1e-6, atol=1e-9)
    assert lazy.layer.item() == "l1" and lazy.attrs == expected.attrs


# ---------------------------------------------------------------- the same algorithm on one chunk

def test_one_chunk_spherical_kmeans_is_the_in_memory_fit(planted):
    X, _ = planted
    for params in ({"batch_size": 512}, {"batch_size": 512, "n_batches": 7}, {"batch_size": None},
                   {"fit_subset": 3000, "batch_size": 256}, {"precision": "bfloat16"}):
        lazy = SphericalKMeans(6, random_state=3, **params).fit(dask.array.from_array(X, chunks=X.shape))
        memory = SphericalKMeans(6, random_state=3, **params).fit(X)
        np.testing.assert_allclose(lazy.components_, memory.components_, atol=1e-6)
        np.testing.assert_array_equal(lazy.labels_, memory.labels_)
        assert lazy.n_iter_ == memory.n_iter_ and lazy.objective_ == pytest.approx(memory.objective_, abs=1e-7)


def test_one_chunk_sae_is_the_in_memory_fit(planted):
    X, _ = planted
    X = X[:3000]
    for params in ({"init": "kmeans"}, {"init": "data", "kind": "l1", "tied": True}):
        lazy = SparseAutoencoder(8, k=2, n_epochs=4, random_state=0, **params).fit(dask.array.from_array(X, chunks=X.shape))
        memory = SparseAutoencoder(8, k=2, n_epochs=4, random_state=0, **params).fit(X)
        np.testing.assert_allclose(lazy.loss_curve_, memory.loss_curve_, rtol=1e-5)
        np.testing.assert_allclose(lazy.components_, memory.components_, atol=1e-5)


def test_kmeans_reference_differs_by_design_but_solves_the_same_problem(tmp_path, planted):
    """KMeansDirections in memory is MiniBatchKMeans.fit; over chunks it is passes of partial_fit (not the same
    steps), so only the quality is compared."""
    X, centres = planted
    lazy = KMeansDirections(6, batch_size=256, random_state=0).fit(dask.array.from_array(X, chunks=X.shape))
    memory = KMeansDirections(6, batch_size=256, random_state=0).fit(X)
    assert lazy.objective_ == pytest.approx(memory.objective_, abs=2e-3)
    assert np.abs(matched_cosines(lazy.components_, memory.components_)).min() > 0.999


# ---------------------------------------------------------------- bounded memory

@pytest.mark.parametrize("finder", [KMeansDirections(6, batch_size=256, random_state=0),
                                    SphericalKMeans(6, batch_size=256, random_state=0),
                                    SparseAutoencoder(6, k=2, n_epochs=2, batch_size=16, random_state=0)],
                         ids=["kmeans", "spherical", "sae"])
def test_chunked_fit_never_reads_the_whole_array(planted, finder):
    X, _ = planted
    source = CountingArray(X)
    lazy = dask.array.from_array(source, chunks=(200, X.shape[1]))
    finder.fit(lazy)
    chunk_bytes = 200 * X.shape[1] * X.itemsize
    assert max(source.reads) <= chunk_bytes < X.nbytes / 20
    assert sum(source.reads) >= 2 * X.nbytes  # several passes, each chunk by chunk
    source.reads.clear()
    codes = finder.transform(lazy)
    assert not source.reads  # lazy: nothing read yet (the checks read nothing either)
    codes.compute()
    assert max(source.reads) <= chunk_bytes


def test_chunks_are_read_one_at_a_time(planted):
    """Each chunk is computed on its own: no dask computation touches more than one chunk's bytes."""
    X, _ = planted
    lazy = dask.array.from_array(X, chunks=(300, X.shape[1]))
    sizes = []

    class Sizes(dask.callbacks.Callback):
        def _posttask(self, key, result, dsk, state, id):
            if isinstance(result, np.ndarray):
                sizes.append(result.nbytes)

    with Sizes():
        SphericalKMeans(6, batch_size=256, random_state=0).fit(lazy)
    assert sizes and max(sizes) <= 300 * X.shape[1] * X.itemsize


def test_row_chunks_subset_and_blocks():
    values = np.arange(40.0).reshape(20, 2)
    chunks = RowChunks(dask.array.from_array(values, chunks=(6, 1)), rows=[1, 5, 6, 13, 19])
    assert chunks.shape == (5, 2) and chunks.sizes.tolist() == [2, 1, 1, 1]
    np.testing.assert_array_equal(np.concatenate(list(chunks.blocks()))[:, 0], [2, 10, 12, 26, 38])
    np.testing.assert_array_equal([len(b) for b in chunks.blocks([3, 2, 1, 0], min_rows=2)], [2, 3])
    np.testing.assert_array_equal(chunks.take([4, 1, 0])[:, 0], [38, 10, 2])


# ---------------------------------------------------------------- SAE over chunks, partial_fit

def test_sae_over_chunks_reaches_the_in_memory_loss(tmp_path):
    rng = np.random.default_rng(0)
    D = rng.normal(size=(12, 8))
    D /= np.linalg.norm(D, axis=1, keepdims=True)
    Z = rng.exponential(size=(6000, 12)) * (rng.random((6000, 12)) < 0.15)
    X = (Z[Z.sum(1) > 0] @ D).astype(np.float32)
    lazy = store(tmp_path, X, 256)
    chunked = SparseAutoencoder(12, k=3, n_epochs=15, random_state=0).fit(lazy)
    memory = SparseAutoencoder(12, k=3, n_epochs=15, random_state=0).fit(X)
    assert chunked.loss_curve_[-1] <= 1.15 * memory.loss_curve_[-1]
    assert np.abs(chunked.components_ @ D.T).max(axis=0).mean() > 0.9
    codes = chunked.transform(lazy)
    assert is_lazy(codes)
    np.testing.assert_allclose(codes.values, chunked.transform(X), atol=1e-6)
    assert (codes.values > 0).sum(axis=1).max() <= 3


def test_partial_fit_over_chunks(planted):
    X, centres = planted
    for finder in (KMeansDirections(6, batch_size=256, random_state=0), SphericalKMeans(6, batch_size=256, random_state=0)):
        for start in range(0, len(X), 1000):
            finder.partial_fit(X[start:start + 1000])
        assert matched_cosines(finder.components_, centres).min() > 0.99
    sae = SparseAutoencoder(8, k=2, batch_size=64, random_state=0)
    for start in range(0, 3000, 500):
        sae.partial_fit(X[start:start + 500])
    assert len(sae.loss_curve_) == 6 and sae.loss_curve_[-1] < sae.loss_curve_[0]
    with pytest.raises(ValueError, match="features"):
        sae.partial_fit(X[:100, :5])


def test_partial_fit_continues_a_fit(planted):
    X, centres = planted
    finder = SphericalKMeans(6, random_state=0).fit(X[:3000])
    assert finder.counts_.sum() == 3000
    finder.partial_fit(X[3000:])
    assert finder.counts_.sum() == 6000 and matched_cosines(finder.components_, centres).min() > 0.99


# ---------------------------------------------------------------- bad input

@pytest.mark.parametrize("cls", [KMeansDirections, SphericalKMeans, SparseAutoencoder])
@pytest.mark.parametrize("size, message", [(6001, "fit_subset <= 6000"), (0, "positive number"), (-5, "positive number"),
                                           (2.5, "positive number"), (True, "positive number")])
def test_bad_fit_subset(planted, cls, size, message):
    X, _ = planted
    for data in (X, dask.array.from_array(X, chunks=(1000, 16))):
        with pytest.raises(ConfigError, match=message):
            cls(4, fit_subset=size).fit(data)


def test_subset_smaller_than_directions(planted):
    X, _ = planted
    with pytest.raises(ValueError, match="n_samples=3 is smaller than n_directions=6"):
        SphericalKMeans(6, fit_subset=3).fit(dask.array.from_array(X, chunks=(1000, 16)))


def test_lazy_bad_input(planted):
    X, _ = planted
    lazy = dask.array.from_array(X, chunks=(1000, 16))
    with pytest.raises(ConfigError, match="centroid='mean'"):
        SphericalKMeans(6, centroid="frechet").fit(lazy)
    bad = X.copy()
    bad[4500, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        SphericalKMeans(6).fit(dask.array.from_array(bad, chunks=(1000, 16)))
    zero = X.copy()
    zero[2500] = 0
    with pytest.raises(ValueError, match="all zero"):
        SphericalKMeans(6).fit(dask.array.from_array(zero, chunks=(1000, 16)))
    fitted = SphericalKMeans(6, random_state=0).fit(lazy)
    with pytest.raises(ValueError, match="X has 8 features, but SphericalKMeans is expecting 16"):
        fitted.transform(lazy[:, :8])
    with pytest.raises(ValueError, match="must have dims"):
        fitted.fit(xr.DataArray(lazy, dims=("stimulus", "pixel")))


# ---------------------------------------------------------------- GPU

@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_chunked_fit_on_the_gpu(planted):
    X, centres = planted
    lazy = dask.array.from_array(X, chunks=(500, 16))
    cpu = SphericalKMeans(6, device="cpu", random_state=0).fit(lazy)
    gpu = SphericalKMeans(6, device="cuda", random_state=0).fit(lazy)
    assert np.abs(matched_cosines(gpu.components_, cpu.components_)).min() > 0.9999
    sae = SparseAutoencoder(8, k=2, n_epochs=3, device="cuda", random_state=0).fit(lazy)
    assert matched_cosines(gpu.components_, centres).min() > 0.99 and sae.loss_curve_[-1] < sae.loss_curve_[0]
