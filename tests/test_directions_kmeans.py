"""Tests of superpos.directions.kmeans and .spherical: planted directions, the one spherical k-means (mean and Fréchet
centroids) and its Geomstats cross-checks (carried over from the geometry k-means tests)."""

import subprocess
import sys

import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_rand_score
from sklearn.utils.estimator_checks import parametrize_with_checks

from superpos.core import ConfigError, DataError
from superpos.directions.kmeans import KMeansDirections
from superpos.directions.spherical import (SphericalKMeans, _assign, _frechet_centroids, _kmeanspp, _mean_centroids,
                                           import_geomstats, keep_torch_dtype, spherical_objective)

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def torch_dtype_untouched():
    """Geomstats must leave torch's default dtype at float32."""
    assert torch.get_default_dtype() == torch.float32
    yield
    assert torch.get_default_dtype() == torch.float32


def _nonneg(n=60, d=6, seed=0):
    return np.random.default_rng(seed).exponential(size=(n, d))


def _clusters(n=3000, d=20, k=8, noise=0.1, seed=0):
    rng = np.random.default_rng(seed)
    D = rng.normal(size=(k, d))
    D /= np.linalg.norm(D, axis=1, keepdims=True)
    X = (D[rng.integers(k, size=n)] + noise * rng.normal(size=(n, d))) * rng.gamma(2.0, size=(n, 1))
    return X, D


def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _sphere_clusters(seed, centres, n, spread):
    """`n` unit vectors around each of the unit `centres` (tangent Gaussian noise of size `spread`)."""
    rng = np.random.default_rng(seed)
    return np.concatenate([_unit(c + spread * rng.standard_normal((n, len(c)))) for c in centres])


def _orthonormal(d, k, seed):
    return np.linalg.qr(np.random.default_rng(seed).standard_normal((d, d)))[0][:k]


# ---------------------------------------------------------------- the algorithm pieces

def test_kmeanspp_seeds_one_per_cluster():
    X, D = _clusters(n=400, k=5, noise=0.05)
    Xn = torch.nn.functional.normalize(torch.as_tensor(X, dtype=torch.float32), dim=1)
    seeds = _kmeanspp(Xn, 5, torch.Generator().manual_seed(0))
    nearest = (Xn[seeds].numpy() @ D.T).argmax(axis=1)
    assert sorted(nearest) == list(range(5))


def test_assign_is_the_nearest_centroid_in_chunks():
    Xn = torch.nn.functional.normalize(torch.randn(100, 4, generator=torch.Generator().manual_seed(0)), dim=1)
    C = Xn[:3]
    labels, best = _assign(Xn, C, 7, torch.float32)
    torch.testing.assert_close(labels, (Xn @ C.T).argmax(dim=1))
    torch.testing.assert_close(best, (Xn @ C.T).max(dim=1).values)


def test_centroid_updates_known_answers():
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]], dtype=torch.float64)
    labels = torch.tensor([0, 0, 1])
    previous = torch.tensor([[0.0, 1.0], [0.0, 1.0], [1.0, 0.0]], dtype=torch.float64)
    mean = _mean_centroids(x, labels, previous)
    np.testing.assert_allclose(mean.numpy(), [[2**-0.5, 2**-0.5], [1, 0], [1, 0]], atol=1e-12)
    frechet = _frechet_centroids(x, labels, previous)  # cluster 2 is empty: it keeps its centroid
    np.testing.assert_allclose(frechet.numpy(), mean.numpy(), atol=1e-12)


def test_frechet_centroid_is_the_geometry_frechet_mean():
    from superpos.geometry.manifolds import frechet_mean
    x = _sphere_clusters(1, _orthonormal(6, 1, 1), 40, 0.5)
    ours = _frechet_centroids(torch.as_tensor(x), torch.zeros(len(x), dtype=torch.long),
                              torch.zeros(1, 6, dtype=torch.float64))[0].numpy()
    np.testing.assert_allclose(ours, frechet_mean(x), atol=1e-10)


# ---------------------------------------------------------------- planted directions

@pytest.mark.parametrize("finder", [KMeansDirections(8, random_state=0), SphericalKMeans(8, random_state=0),
                                    SphericalKMeans(8, batch_size=256, random_state=0),
                                    SphericalKMeans(8, centroid="frechet", random_state=0)])
def test_kmeans_recovers_planted_directions(finder):
    X, D = _clusters()
    finder.fit(X)
    assert np.abs(finder.components_ @ D.T).max(axis=0).min() > 0.99
    assert finder.objective_ == pytest.approx(spherical_objective(X, finder.components_), abs=1e-5)


@pytest.mark.parametrize("finder", [KMeansDirections(3), SphericalKMeans(3)])
def test_zero_rows_cannot_be_normalised(finder):
    X = _nonneg(20, 5)
    X[7] = 0
    with pytest.raises(DataError, match="all zero"):
        finder.fit(X)


@pytest.mark.parametrize("centroid", ["mean", "frechet"])
def test_spherical_kmeans_lloyd_never_worsens_its_criterion(centroid):
    X, _ = _clusters(noise=0.8, k=30)
    fits = [SphericalKMeans(30, centroid=centroid, max_iter=i, tol=-1, random_state=1).fit(X) for i in range(6)]
    if centroid == "mean":
        values = [f.objective_ for f in fits]
    else:
        values = [-f.inertia_ for f in fits]
    assert all(b >= a - 1e-6 * abs(a) for a, b in zip(values, values[1:]))
    assert values[-1] > values[0]


def test_spherical_kmeans_matches_reference_objective():
    X, _ = _clusters(noise=0.8, k=30)
    ours = SphericalKMeans(30, random_state=0).fit(X).objective_
    reference = KMeansDirections(30, random_state=0).fit(X).objective_
    assert ours >= reference - 0.005


def test_transform_is_projection_and_predict_the_nearest_direction():
    X, _ = _clusters()
    finder = SphericalKMeans(8, random_state=0).fit(X)
    np.testing.assert_allclose(finder.transform(X), X @ finder.components_.T)
    np.testing.assert_array_equal(finder.predict(X), finder.labels_)
    np.testing.assert_allclose(finder.inertia_, (np.arccos(np.clip(
        (_unit(X) * finder.components_[finder.labels_]).sum(1), -1, 1)) ** 2).sum(), rtol=1e-5)


def test_spherical_kmeans_bfloat16_matches_float32():
    X, D = _clusters(noise=0.3)
    full = SphericalKMeans(8, random_state=0).fit(X)
    half = SphericalKMeans(8, precision="bfloat16", random_state=0).fit(X)
    assert half.objective_ == pytest.approx(full.objective_, abs=2e-3)
    assert np.abs(half.components_ @ D.T).max(axis=0).min() > 0.99
    with pytest.raises(ConfigError, match="precision"):
        SphericalKMeans(8, precision="float16").fit(X)


def test_mean_centroids_are_normalised_cluster_means():
    x = _sphere_clusters(6, np.eye(5)[:2], 20, 0.3)
    km = SphericalKMeans(2, random_state=0).fit(x)
    for k in range(2):
        mean = x[km.labels_ == k].mean(0)
        np.testing.assert_allclose(km.components_[k], mean / np.linalg.norm(mean), atol=1e-6)


# ---------------------------------------------------------------- Geomstats cross-checks

def test_frechet_kmeans_agrees_with_geomstats():
    """Torch Fréchet centroids = Geomstats's FrechetMean (backend) = Geomstats's RiemannianKMeans."""
    from superpos.geometry.manifolds import frechet_mean
    centres = _orthonormal(10, 3, 3)
    x = _sphere_clusters(3, centres, 30, 0.15)
    fast = SphericalKMeans(3, centroid="frechet", max_iter=100, tol=1e-12, random_state=0).fit(x)
    slow = SphericalKMeans(3, centroid="frechet", backend="geomstats", max_iter=100, tol=1e-12,
                           random_state=0).fit(x)
    np.testing.assert_allclose(fast.components_, slow.components_, atol=1e-6)
    np.testing.assert_array_equal(fast.labels_, slow.labels_)
    assert fast.inertia_ == pytest.approx(slow.inertia_, abs=1e-6)
    for k in range(3):  # each centre is the Fréchet mean of its cluster
        np.testing.assert_allclose(fast.components_[k], frechet_mean(x[fast.labels_ == k]), atol=1e-6)
    assert np.abs(fast.components_ @ centres.T).max(axis=1).min() > 0.99
    # Geomstats's own k-means loop, from the same seeded initial centres
    import_geomstats()
    from geomstats.geometry.hypersphere import Hypersphere
    from geomstats.learning.kmeans import RiemannianKMeans
    init = SphericalKMeans(3, centroid="frechet", max_iter=0, random_state=0).fit(x).components_
    with keep_torch_dtype():
        reference = RiemannianKMeans(Hypersphere(dim=9), n_clusters=3, init=init.copy(), tol=1e-8, max_iter=100)
        reference.mean_estimator.set(max_iter=500, epsilon=1e-20)
        reference.fit(x)
    np.testing.assert_allclose(fast.components_, reference.cluster_centers_, atol=1e-6)
    np.testing.assert_array_equal(fast.labels_, reference.labels_)
    assert fast.inertia_ == pytest.approx(float(reference.inertia_), abs=1e-6)


def test_mean_centroids_agree_with_geomstats_on_tight_clusters():
    x = _sphere_clusters(4, _orthonormal(12, 4, 4), 40, 0.03)
    fast = SphericalKMeans(4, random_state=0).fit(x)
    reference = SphericalKMeans(4, centroid="frechet", backend="geomstats", random_state=0).fit(x)
    assert np.abs(fast.components_ @ reference.components_.T).max(axis=1).min() > 0.9999
    assert adjusted_rand_score(fast.labels_, reference.labels_) == 1.0


def test_geomstats_backend_pinning_in_fresh_processes():
    """Fitting with backend="geomstats" imports Geomstats on numpy; a foreign backend is a clear error."""
    first = ("import os; os.environ['GEOMSTATS_BACKEND'] = 'pytorch'\n"
             "import torch\n"
             "from superpos.directions.spherical import SphericalKMeans\n"
             "SphericalKMeans(2, centroid='frechet', backend='geomstats', random_state=0).fit(torch.eye(3).numpy())\n"
             "import geomstats.backend as gs\n"
             "print(gs.__name__, torch.get_default_dtype(), os.environ['GEOMSTATS_BACKEND'])\n")
    foreign = ("import os; os.environ['GEOMSTATS_BACKEND'] = 'pytorch'\n"
               "import torch, geomstats.backend\n"
               "torch.set_default_dtype(torch.float32)\n"
               "from superpos.core import ConfigError\n"
               "from superpos.directions.spherical import import_geomstats\n"
               "try:\n    import_geomstats()\nexcept ConfigError as err:\n    print('ERR', err)\n")
    out = subprocess.run([sys.executable, "-c", first], capture_output=True, text=True, timeout=300)
    assert "geomstats.numpy torch.float32 pytorch" in out.stdout, out.stdout + out.stderr
    out = subprocess.run([sys.executable, "-c", foreign], capture_output=True, text=True, timeout=300)
    assert "ERR" in out.stdout and "GEOMSTATS_BACKEND=numpy" in out.stdout, out.stdout + out.stderr


# ---------------------------------------------------------------- parameters, devices, conformance

def test_bad_kmeans_input_and_params():
    with pytest.raises(DataError, match="NaN"):
        SphericalKMeans(2, centroid="frechet").fit(np.array([[1.0, np.nan], [0.0, 1.0], [1.0, 1.0]]))
    with pytest.raises(DataError, match="all zero"):
        SphericalKMeans(2, centroid="frechet", backend="geomstats").fit(np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
    with pytest.raises(DataError, match="n_samples=3 is smaller than n_directions=5"):
        SphericalKMeans(5).fit(np.eye(3))
    with pytest.raises(ConfigError, match="centroid"):
        SphericalKMeans(2, centroid="median").fit(np.eye(3))
    with pytest.raises(ConfigError, match="backend"):
        SphericalKMeans(2, backend="numpy").fit(np.eye(3))
    fitted = SphericalKMeans(2, random_state=0).fit(np.eye(3))
    with pytest.raises(DataError, match="expecting 3 features"):
        fitted.predict(np.eye(4))


def test_device_parameter():
    x = np.eye(4)
    assert SphericalKMeans(2, device="cpu", random_state=0).fit(x).components_.shape == (2, 4)
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA"):
            SphericalKMeans(2, device="cuda").fit(x)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("centroid", ["mean", "frechet"])
def test_gpu_matches_cpu(centroid):
    X, D = _clusters()
    cpu = SphericalKMeans(8, centroid=centroid, device="cpu", random_state=0).fit(X)
    gpu = SphericalKMeans(8, centroid=centroid, device="cuda", random_state=0).fit(X)
    assert adjusted_rand_score(cpu.labels_, gpu.labels_) > 0.999
    assert np.abs(gpu.components_ @ cpu.components_.T).max(axis=1).min() > 0.9999
    assert np.abs(gpu.components_ @ D.T).max(axis=0).min() > 0.99


_GEOMSTATS_FAILURES = {
    "check_estimators_dtypes": "integer data with an all-zero row: a zero vector has no direction",
    "check_fit2d_1feature": "on S^0 a sample is +-1; Geomstats's Hypersphere(0) is degenerate",
}


@parametrize_with_checks([SphericalKMeans(2, centroid="frechet", backend="geomstats", max_iter=5, random_state=0)],
                         expected_failed_checks=lambda estimator: _GEOMSTATS_FAILURES)
def test_sklearn_compatible_geomstats_backend(estimator, check):
    check(estimator)
