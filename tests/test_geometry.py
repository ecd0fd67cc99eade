"""Tests of superpos.geometry: known answers, agreement with Geomstats, estimator API, bad input."""
import subprocess
import sys

import numpy as np
import pytest
import torch
import xarray as xr
from sklearn.base import clone
from sklearn.metrics import adjusted_rand_score
from sklearn.utils.estimator_checks import parametrize_with_checks

from superpos.core import ConfigError, DataError
from superpos import geometry as geo


@pytest.fixture(autouse=True)
def torch_dtype_untouched():
    """Every geometry call must leave torch's default dtype at float32."""
    assert torch.get_default_dtype() == torch.float32
    yield
    assert torch.get_default_dtype() == torch.float32


def unit_rows(rng, n, d):
    x = rng.standard_normal((n, d))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def cluster(rng, centre, n, spread):
    return geo.as_directions(centre + spread * rng.standard_normal((n, len(centre))))


# ---------------------------------------------------------------- known answers

def test_identical_sets_have_distance_zero_and_zero_angles():
    a = unit_rows(np.random.default_rng(0), 12, 40)
    comparison = geo.DirectionSetComparison(n_permutations=0).fit(a, a)
    np.testing.assert_allclose(comparison.matched_angles_, 0, atol=1e-6)
    np.testing.assert_allclose(comparison.principal_angles_, 0, atol=1e-6)
    assert comparison.subspace_distance_ == pytest.approx(0, abs=1e-6)
    assert comparison.mean_abs_cosine_ == pytest.approx(1)
    np.testing.assert_allclose(geo.geodesic_distance(a, a), 0, atol=1e-12)


def test_permuted_sign_flipped_set_matches_perfectly():
    rng = np.random.default_rng(1)
    a = unit_rows(rng, 20, 30)
    perm = rng.permutation(20)
    signs = rng.choice([-1.0, 1.0], size=(20, 1))
    matching = geo.match_directions(a, signs * a[perm])
    np.testing.assert_allclose(matching.angle, 0, atol=1e-6)
    np.testing.assert_array_equal(matching.direction_b.values, np.argsort(perm))
    np.testing.assert_allclose(matching.cosine, signs[np.argsort(perm), 0], atol=1e-12)
    comparison = geo.DirectionSetComparison(n_permutations=99, random_state=0).fit(a, signs * a[perm])
    assert comparison.p_value_matching_ == pytest.approx(1 / 100)
    assert comparison.p_value_subspace_ == pytest.approx(1 / 100)


def test_random_rotation_in_high_dimension_is_near_orthogonal():
    rng = np.random.default_rng(2)
    a = unit_rows(rng, 10, 2000)
    rotated = geo.randomly_rotate(a, random_state=3)
    np.testing.assert_allclose(rotated @ rotated.T, a @ a.T, atol=1e-10)  # the set's geometry is kept
    comparison = geo.DirectionSetComparison(n_permutations=20, random_state=0).fit(a, rotated)
    assert np.degrees(comparison.matched_angles_).min() > 80
    assert comparison.principal_angles_.min() > 1.3
    assert comparison.p_value_matching_ > 0.05
    # and the statistic sits inside its own null
    assert comparison.null_mean_abs_cosine_.min() < comparison.mean_abs_cosine_ * 1.5


def test_random_rotation_is_orthogonal_and_haar():
    rot = geo.random_rotation(50, random_state=0)
    np.testing.assert_allclose(rot @ rot.T, np.eye(50), atol=1e-10)
    # a fixed vector rotated by Haar rotations is uniform on the sphere: E[x_0^2] = 1/d, E[x_0] = 0
    e0 = np.eye(8)[:1]
    rng = np.random.default_rng(0)
    samples = np.array([geo.randomly_rotate(e0, random_state=rng)[0] for _ in range(4000)])
    assert abs(samples[:, 0].mean()) < 0.03
    assert (samples[:, 0] ** 2).mean() == pytest.approx(1 / 8, rel=0.1)
    # the O(d k^2) path agrees in law with the full rotation (k >= d path)
    full = np.array([geo.randomly_rotate(np.eye(8), random_state=rng)[0] for _ in range(4000)])
    assert (full[:, 0] ** 2).mean() == pytest.approx(1 / 8, rel=0.1)


def test_rotation_null_matches_explicit_rotations():
    rng = np.random.default_rng(8)
    a, b = unit_rows(rng, 4, 9), unit_rows(rng, 3, 9)
    comparison = geo.DirectionSetComparison(n_permutations=400, random_state=0).fit(a, b)
    explicit = [(geo.match_directions(a, b @ rot.T).abs_cosine.mean(), geo.subspace_distance(a, b @ rot.T))
                for rot in (geo.random_rotation(9, random_state=i) for i in range(400))]
    match_null, dist_null = np.array(explicit).T
    assert comparison.null_mean_abs_cosine_.mean() == pytest.approx(match_null.mean(), abs=0.02)
    assert comparison.null_subspace_distance_.mean() == pytest.approx(dist_null.mean(), abs=0.03)
    assert comparison.null_subspace_distance_.std() == pytest.approx(dist_null.std(), rel=0.2)


def test_axis_alignment_identity_and_random_rotation():
    assert geo.axis_alignment(np.eye(100)) == pytest.approx(1.0)
    assert geo.axis_alignment(-np.eye(100)[::-1]) == pytest.approx(1.0)
    null = geo.axis_alignment_null(100, n_directions=100, n_samples=300, random_state=0)
    value = geo.axis_alignment(geo.random_rotation(100, random_state=1))
    assert abs(value - null.mean()) < 4 * null.std()
    assert null.mean() == pytest.approx(np.sqrt(2 * np.log(2 * 100) / 100), rel=0.2)
    # the most oblique direction
    assert geo.axis_alignment(np.ones((1, 16))) == pytest.approx(0.25)
    per_direction = geo.axis_alignment(np.array([[1.0, 0.0], [1.0, 1.0]]), reduce=False)
    np.testing.assert_allclose(per_direction, [1.0, 1 / np.sqrt(2)])


def test_principal_angles_known():
    xy = np.eye(3)[[0, 1]]
    tilted = np.array([[1.0, 0.0, 0.0], [0.0, np.cos(0.4), np.sin(0.4)]])
    np.testing.assert_allclose(geo.principal_angles(xy, tilted), [0.0, 0.4], atol=1e-12)
    assert geo.subspace_distance(xy, tilted) == pytest.approx(0.4)
    assert geo.subspace_distance(xy, tilted, metric="chordal") == pytest.approx(np.sin(0.4))
    assert geo.subspace_distance(xy, tilted, metric="projection") == pytest.approx(np.sin(0.4))
    with pytest.raises(ConfigError, match="metric must be one of"):
        geo.subspace_distance(xy, tilted, metric="nope")


def test_frechet_mean_known_answers():
    np.testing.assert_allclose(geo.frechet_mean(np.eye(2)), np.ones(2) / np.sqrt(2), atol=1e-12)
    t = np.array([-0.5, 0.1, 0.4])  # angles on a great circle: the mean is their mean angle
    arc = np.stack([np.cos(t), np.sin(t), np.zeros(3)], axis=1)
    mean_angle = t.mean()
    np.testing.assert_allclose(geo.frechet_mean(arc), [np.cos(mean_angle), np.sin(mean_angle), 0], atol=1e-10)
    with pytest.raises(DataError, match="not unique"):
        geo.frechet_mean(np.array([[1.0, 0.0], [-1.0, 0.0]]))


def test_sphere_embedding_of_an_arc_is_its_angle():
    t = np.linspace(-1.2, 1.2, 9)
    arc = np.stack([np.cos(t), np.sin(t), np.zeros(9), np.zeros(9)], axis=1)
    emb = geo.sphere_embedding(arc, n_components=2)
    np.testing.assert_allclose(np.abs(emb[:, 0]), np.abs(t), atol=1e-8)
    np.testing.assert_allclose(emb[:, 1], 0, atol=1e-8)
    oriented = geo.orient(-arc, [1.0, 0, 0, 0])
    np.testing.assert_allclose(oriented, arc)


# ---------------------------------------------------------------- agreement with Geomstats

@pytest.mark.parametrize("seed", [0, 1, 2])
def test_distances_agree_with_geomstats(seed):
    rng = np.random.default_rng(seed)
    a, b = unit_rows(rng, 30, 7), unit_rows(rng, 30, 7)
    b[:3] = a[:3] + 1e-5 * rng.standard_normal((3, 7))  # nearly equal pairs too
    b = geo.as_directions(b)
    sphere = geo.hypersphere(7)
    np.testing.assert_allclose(geo.geodesic_distance(a, b), sphere.metric.dist(a, b), atol=1e-6)
    np.testing.assert_allclose(geo.pairwise_geodesic_distances(a, b), np.stack([sphere.metric.dist(row, b) for row in a]),
                               atol=1e-6)


@pytest.mark.parametrize("spread", [0.05, 0.3, 0.8])
def test_frechet_mean_agrees_with_geomstats(spread):
    rng = np.random.default_rng(int(spread * 100))
    x = cluster(rng, np.eye(6)[0], 40, spread)
    np.testing.assert_allclose(geo.frechet_mean(x), geo.geomstats_frechet_mean(x), atol=1e-6)
    weights = rng.random(40)
    ours = geo.frechet_mean(x, weights=weights)
    from geomstats.learning.frechet_mean import FrechetMean
    reference = FrechetMean(geo.hypersphere(6)).set(max_iter=1000, epsilon=1e-20).fit(x, weights=weights).estimate_
    np.testing.assert_allclose(ours, reference, atol=1e-6)


def test_log_exp_agree_with_geomstats():
    rng = np.random.default_rng(5)
    x = unit_rows(rng, 10, 5)
    base = x[0]
    sphere = geo.hypersphere(5)
    from superpos.geometry import _sphere_exp, _sphere_log
    logs = _sphere_log(base, x)
    np.testing.assert_allclose(logs, sphere.metric.log(x, base), atol=1e-6)
    np.testing.assert_allclose(_sphere_exp(base, logs[3]), sphere.metric.exp(logs[3], base), atol=1e-6)


@pytest.mark.parametrize("d,k", [(6, 2), (12, 4), (30, 3)])
def test_subspace_distance_agrees_with_geomstats_grassmannian(d, k):
    rng = np.random.default_rng(d + k)
    a = rng.standard_normal((k, d))
    b = a + 0.5 * rng.standard_normal((k, d))
    space = geo.grassmannian(d, k)
    pa, pb = geo.grassmannian_point(a), geo.grassmannian_point(b)
    assert bool(space.belongs(pa)) and bool(space.belongs(pb))
    assert bool(geo.stiefel(d, k).belongs(geo.stiefel_frame(a)))
    # Geomstats's Frobenius metric on projection matrices = sqrt(2) |principal angles|
    np.testing.assert_allclose(space.metric.dist(pa, pb), np.sqrt(2) * geo.subspace_distance(a, b), atol=1e-6)
    fast = geo.DirectionSetComparison(n_permutations=0).fit(a, b)
    slow = geo.DirectionSetComparison(n_permutations=0, backend="geomstats").fit(a, b)
    assert slow.subspace_distance_ == pytest.approx(fast.subspace_distance_, abs=1e-6)
    np.testing.assert_allclose(slow.matched_angles_, fast.matched_angles_, atol=1e-6)


def test_frechet_kmeans_agrees_with_geomstats_riemannian_kmeans():
    rng = np.random.default_rng(3)
    centres = geo.random_rotation(10, random_state=3)[:3]
    x = np.concatenate([cluster(rng, c, 30, 0.15) for c in centres])
    fast = geo.FrechetKMeans(3, random_state=0).fit(x)
    slow = geo.SphericalKMeansGeomstats(3, random_state=0).fit(x)
    np.testing.assert_allclose(fast.cluster_centers_, slow.cluster_centers_, atol=1e-6)
    np.testing.assert_array_equal(fast.labels_, slow.labels_)
    assert fast.inertia_ == pytest.approx(slow.inertia_, abs=1e-6)
    # each centre is the Fréchet mean of its cluster
    for k in range(3):
        np.testing.assert_allclose(fast.cluster_centers_[k], geo.frechet_mean(x[fast.labels_ == k]), atol=1e-6)
    assert geo.match_directions(fast.cluster_centers_, centres).abs_cosine.min() > 0.99


def test_gpu_spherical_kmeans_agrees_with_geomstats_on_tight_clusters():
    from superpos.directions import SphericalKMeans
    rng = np.random.default_rng(4)
    centres = geo.random_rotation(12, random_state=4)[:4]
    x = np.concatenate([cluster(rng, c, 40, 0.03) for c in centres])
    gpu = SphericalKMeans(4, random_state=0).fit(x)
    reference = geo.SphericalKMeansGeomstats(4, random_state=0).fit(x)
    assert geo.match_directions(gpu.components_, reference.cluster_centers_).abs_cosine.min() > 0.9999
    assert adjusted_rand_score(gpu.labels_, reference.labels_) == 1.0


def test_extrinsic_centroids_are_normalised_means():
    rng = np.random.default_rng(6)
    x = np.concatenate([cluster(rng, c, 20, 0.3) for c in np.eye(5)[:2]])
    km = geo.FrechetKMeans(2, centroid="extrinsic", random_state=0).fit(x)
    for k in range(2):
        mean = x[km.labels_ == k].mean(0)
        np.testing.assert_allclose(km.cluster_centers_[k], mean / np.linalg.norm(mean), atol=1e-10)


# ---------------------------------------------------------------- across spaces

def responses(rng, n_stimuli=120, n_units=6, dim="unit"):
    ids = [f"img{i}" for i in range(n_stimuli)]
    return xr.DataArray(rng.standard_normal((n_stimuli, n_units)), dims=("stimulus", dim), coords={"stimulus": ids})


def test_cka_and_rsa_known_answers():
    rng = np.random.default_rng(0)
    a = responses(rng)
    rotated = a.copy(data=2 * a.values @ geo.random_rotation(6, random_state=0)).rename(unit="neuron")
    assert geo.linear_cka(a, rotated) == pytest.approx(1.0)
    assert geo.linear_cka(a, rotated.isel(stimulus=slice(None, None, -1))) == pytest.approx(1.0)  # aligned by id
    assert geo.rsa(a, rotated, metric="euclidean") == pytest.approx(1.0)
    assert geo.rsa(a, 3 * a[:, ::-1]) == pytest.approx(1.0)
    independent = responses(np.random.default_rng(1), n_stimuli=120, n_units=6)
    assert geo.linear_cka(a, independent) < 0.2
    assert abs(geo.rsa(a, independent)) < 0.1


def test_match_responses_finds_planted_pairs():
    rng = np.random.default_rng(2)
    a = responses(rng, n_units=8)
    perm = rng.permutation(8)
    b = a.copy(data=-a.values[:, perm] + 0.1 * rng.standard_normal((120, 8))).rename(unit="direction")
    matching = geo.match_responses(a, b)
    np.testing.assert_array_equal(matching.direction_b.values, np.argsort(perm))
    assert (matching.correlation < -0.95).all()
    comparison = geo.ResponseComparison(n_permutations=30, random_state=0).fit(a, b)
    assert comparison.p_values_["mean_abs_correlation"] == pytest.approx(1 / 31)
    assert comparison.p_values_["cka"] == pytest.approx(1 / 31)
    assert comparison.cka_ > 0.95


def test_response_comparison_null_is_calibrated_for_unrelated_sets():
    rng = np.random.default_rng(3)
    p_values = [geo.ResponseComparison(n_permutations=19, random_state=i).fit(
        responses(rng, 60, 4), responses(rng, 60, 5)).p_values_["cka"] for i in range(20)]
    assert 0.25 < np.mean(p_values) < 0.75


def test_response_null_equals_explicit_shuffles():
    rng = np.random.default_rng(5)
    a, b = responses(rng, 40, 3), responses(rng, 40, 4, dim="neuron")
    rc = geo.ResponseComparison(n_permutations=5, random_state=7).fit(a, b)
    perm_rng = np.random.RandomState(7)
    for i in range(5):
        shuffled = b.copy(data=b.values[perm_rng.permutation(40)])  # responses moved to other stimuli
        assert rc.null_["cka"][i] == pytest.approx(geo.linear_cka(a, shuffled))
        assert rc.null_["rsa"][i] == pytest.approx(geo.rsa(a, shuffled))
        matched = np.abs(geo.match_responses(a, shuffled).correlation).mean()
        assert rc.null_["mean_abs_correlation"][i] == pytest.approx(float(matched))


def test_direction_responses_are_projections():
    rng = np.random.default_rng(4)
    acts = responses(rng, n_units=5)
    dirs = xr.DataArray(geo.as_directions(rng.standard_normal((3, 5))), dims=("direction", "unit"),
                        coords={"direction": ["a", "b", "c"]})
    r = geo.direction_responses(acts, dirs)
    assert r.dims == ("stimulus", "direction")
    np.testing.assert_array_equal(r["direction"].values, ["a", "b", "c"])
    np.testing.assert_allclose(r.values, acts.values @ dirs.values.T)
    with pytest.raises(DataError, match="use directions found in this layer"):
        geo.direction_responses(acts, rng.standard_normal((3, 4)))


def test_direction_labels_travel_into_the_matching():
    a = xr.DataArray(np.eye(3), dims=("direction", "unit"), coords={"direction": ["x", "y", "z"]})
    matching = geo.match_directions(a, np.eye(3)[[2, 0, 1]])
    assert list(matching.direction_a.values) == ["x", "y", "z"]
    assert list(matching.direction_b.values) == [1, 2, 0]
    as_torch = geo.match_directions(torch.eye(3), np.eye(3))
    np.testing.assert_allclose(as_torch.angle, 0)


# ---------------------------------------------------------------- bad input

@pytest.mark.parametrize("call", [
    lambda a, b: geo.match_directions(a, b),
    lambda a, b: geo.principal_angles(a, b),
    lambda a, b: geo.geodesic_distance(a, b),
    lambda a, b: geo.DirectionSetComparison(n_permutations=0).fit(a, b),
])
def test_bad_direction_sets(call):
    good = np.eye(4)
    with pytest.raises(DataError, match="different spaces"):
        call(good, np.eye(5))
    zero = good.copy()
    zero[2] = 0
    with pytest.raises(DataError, match=r"zero vectors in rows \[2\]"):
        call(good, zero)
    nan = good.copy()
    nan[1, 3] = np.nan
    with pytest.raises(DataError, match="NaN"):
        call(nan, good)
    with pytest.raises(DataError, match="2-D"):
        call(np.zeros((2, 2, 2)), good)


def test_bad_kmeans_input_and_params():
    with pytest.raises(DataError, match="NaN"):
        geo.FrechetKMeans(2).fit(np.array([[1.0, np.nan], [0.0, 1.0], [1.0, 1.0]]))
    with pytest.raises(DataError, match="zero vectors"):
        geo.SphericalKMeansGeomstats(2).fit(np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
    with pytest.raises(ConfigError, match="n_clusters"):
        geo.FrechetKMeans(5).fit(np.eye(3))
    with pytest.raises(ConfigError, match="centroid"):
        geo.FrechetKMeans(2, centroid="median").fit(np.eye(3))
    fitted = geo.FrechetKMeans(2, random_state=0).fit(np.eye(3))
    with pytest.raises(DataError, match="expecting 3 features"):
        fitted.predict(np.eye(4))


def test_bad_responses_and_params():
    rng = np.random.default_rng(0)
    a = responses(rng)
    with pytest.raises(DataError, match="different stimuli"):
        geo.linear_cka(a, a.isel(stimulus=slice(0, 60)))
    other = a.assign_coords(stimulus=[f"other{i}" for i in range(120)])
    with pytest.raises(DataError, match="different stimuli"):
        geo.rsa(a, other)
    with pytest.raises(DataError, match="NaN"):
        geo.linear_cka(a, a.where(a > 2))
    with pytest.raises(DataError, match="'stimulus' dim"):
        geo.match_responses(a.rename(stimulus="image"), a)
    with pytest.raises(ConfigError, match="backend"):
        geo.DirectionSetComparison(backend="torch").fit(np.eye(3), np.eye(3))
    with pytest.raises(ConfigError, match="n_permutations"):
        geo.ResponseComparison(n_permutations=-1).fit(a, a)


def test_device_parameter():
    x = np.eye(4)
    assert geo.FrechetKMeans(2, device="cpu", random_state=0).fit(x).cluster_centers_.shape == (2, 4)
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA"):
            geo.FrechetKMeans(2, device="cuda").fit(x)


# ---------------------------------------------------------------- backend and dtype hygiene

def test_geomstats_runs_on_numpy_backend():
    gs = geo.import_geomstats()
    assert gs.__name__ == "geomstats.numpy"
    assert torch.get_default_dtype() == torch.float32


def test_keep_torch_dtype_restores():
    with geo.keep_torch_dtype():
        torch.set_default_dtype(torch.float64)
    assert torch.get_default_dtype() == torch.float32


def test_backend_pinning_in_fresh_processes():
    """Importing superpos.geometry first pins numpy; a foreign backend already loaded is a clear error."""
    first = ("import os; os.environ['GEOMSTATS_BACKEND'] = 'pytorch'\n"
             "import torch\n"
             "import superpos.geometry as g\n"
             "g.hypersphere(3); g.SphericalKMeansGeomstats(2, random_state=0).fit(torch.eye(3).numpy())\n"
             "import geomstats.backend as gs\n"
             "print(gs.__name__, torch.get_default_dtype(), os.environ['GEOMSTATS_BACKEND'])\n")
    foreign = ("import os; os.environ['GEOMSTATS_BACKEND'] = 'pytorch'\n"
               "import torch, geomstats.backend\n"
               "torch.set_default_dtype(torch.float32)\n"
               "from superpos.core import ConfigError\n"
               "import superpos.geometry as g\n"
               "try:\n    g.hypersphere(3)\nexcept ConfigError as err:\n    print('ERR', err)\n")
    out = subprocess.run([sys.executable, "-c", first], capture_output=True, text=True, timeout=300)
    assert "geomstats.numpy torch.float32 pytorch" in out.stdout, out.stdout + out.stderr
    out = subprocess.run([sys.executable, "-c", foreign], capture_output=True, text=True, timeout=300)
    assert "ERR" in out.stdout and "GEOMSTATS_BACKEND=numpy" in out.stdout, out.stdout + out.stderr


# ---------------------------------------------------------------- scikit-learn API

def test_estimators_store_params_and_clone():
    est = geo.DirectionSetComparison(n_permutations=5, random_state=3)
    assert clone(est).get_params() == est.get_params()
    a = unit_rows(np.random.default_rng(0), 6, 20)
    b = unit_rows(np.random.default_rng(1), 6, 20)
    first, second = clone(est).fit(a, b), clone(est).fit(a, b)
    np.testing.assert_array_equal(first.null_mean_abs_cosine_, second.null_mean_abs_cosine_)
    assert first.score(a, a) == pytest.approx(1.0)


EXPECTED_FAILED = {
    # sklearn feeds integer data whose rows can be all zero: a zero vector has no direction on the sphere
    "check_estimators_dtypes": "zero rows have no direction",
}
EXPECTED_FAILED_GEOMSTATS = {
    **EXPECTED_FAILED,
    "check_fit2d_1feature": "on S^0 a sample is +-1; Geomstats's Hypersphere(0) is degenerate",
    "check_transformer_n_iter": "Geomstats's RiemannianKMeans does not report its number of iterations",
}


def expected_failed(estimator):
    return EXPECTED_FAILED_GEOMSTATS if isinstance(estimator, geo.SphericalKMeansGeomstats) else EXPECTED_FAILED


@parametrize_with_checks([geo.FrechetKMeans(2, random_state=0), geo.SphericalKMeansGeomstats(2, max_iter=20, random_state=0)],
                         expected_failed_checks=expected_failed)
def test_sklearn_compatible(estimator, check):
    check(estimator)
