"""Tests of superpos.geometry.manifolds: known answers, agreement with Geomstats, bad input, backend hygiene."""
import numpy as np
import pytest

from superpos.core import ConfigError, DataError
from superpos.geometry import manifolds as geo

from geometry_helpers import torch_dtype_untouched, unit_rows  # noqa: F401 (the fixture is autouse)


def cluster(rng, centre, n, spread):
    return geo.as_directions(centre + spread * rng.standard_normal((n, len(centre))))


# ---------------------------------------------------------------- known answers

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


def test_direction_labels_and_same_space():
    import xarray as xr
    labelled = xr.DataArray(np.eye(3), dims=("direction", "unit"), coords={"direction": ["x", "y", "z"]})
    assert list(geo.direction_labels(labelled, 3)) == ["x", "y", "z"]
    np.testing.assert_array_equal(geo.direction_labels(np.eye(3), 3), [0, 1, 2])
    # a DataArray with the direction dim second is transposed to rows of directions
    np.testing.assert_allclose(geo.as_directions(labelled.T * 2), np.eye(3))
    with pytest.raises(DataError, match="different spaces"):
        geo.check_same_space(np.eye(3), np.eye(4))


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
    logs = geo.sphere_log(base, x)
    np.testing.assert_allclose(logs, sphere.metric.log(x, base), atol=1e-6)
    np.testing.assert_allclose(geo.sphere_exp(base, logs[3]), sphere.metric.exp(logs[3], base), atol=1e-6)


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
    assert geo.geomstats_subspace_distance(a, b) == pytest.approx(geo.subspace_distance(a, b), abs=1e-6)


def test_geomstats_subspace_distance_needs_spans_of_one_dimension():
    with pytest.raises(DataError, match="spans have different dimensions"):
        geo.geomstats_subspace_distance(np.eye(4)[:2], np.eye(4)[:3])


# ---------------------------------------------------------------- bad input

def test_bad_frechet_weights():
    with pytest.raises(DataError, match="weights must be 3 non-negative numbers"):
        geo.frechet_mean(np.eye(3), weights=[1.0, -1.0, 1.0])


# ---------------------------------------------------------------- backend and dtype hygiene

def test_geometry_runs_geomstats_on_its_numpy_backend():
    """The import rule itself (import_geomstats, keep_torch_dtype) is tested with superpos.directions.spherical."""
    assert bool(geo.hypersphere(3).belongs(np.array([1.0, 0.0, 0.0])))
    import geomstats.backend as gs
    assert gs.__name__ == "geomstats.numpy"
