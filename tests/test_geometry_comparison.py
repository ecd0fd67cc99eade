"""Tests of superpos.geometry.comparison: matching, random-rotation nulls, axis alignment, the estimator."""
import numpy as np
import pytest
import torch
import xarray as xr
from sklearn.base import clone

from superpos.core import ConfigError, DataError
from superpos.geometry import comparison as geo
from superpos.geometry.manifolds import (as_directions, geodesic_distance, pairwise_geodesic_distances, principal_angles,
                                         subspace_distance)

from geometry_helpers import torch_dtype_untouched, unit_rows  # noqa: F401 (the fixture is autouse)


# ---------------------------------------------------------------- known answers

def test_identical_sets_have_distance_zero_and_zero_angles():
    a = unit_rows(np.random.default_rng(0), 12, 40)
    comparison = geo.DirectionSetComparison(n_permutations=0).fit(a, a)
    np.testing.assert_allclose(comparison.matched_angles_, 0, atol=1e-6)
    np.testing.assert_allclose(comparison.principal_angles_, 0, atol=1e-6)
    assert comparison.subspace_distance_ == pytest.approx(0, abs=1e-6)
    assert comparison.mean_abs_cosine_ == pytest.approx(1)
    assert np.isnan(comparison.p_value_matching_) and np.isnan(comparison.p_value_subspace_)
    np.testing.assert_allclose(geodesic_distance(a, a), 0, atol=1e-12)


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
    explicit = [(geo.match_directions(a, b @ rot.T).abs_cosine.mean(), subspace_distance(a, b @ rot.T))
                for rot in (geo.random_rotation(9, random_state=i) for i in range(400))]
    match_null, dist_null = np.array(explicit).T
    assert comparison.null_mean_abs_cosine_.mean() == pytest.approx(match_null.mean(), abs=0.02)
    assert comparison.null_subspace_distance_.mean() == pytest.approx(dist_null.mean(), abs=0.03)
    assert comparison.null_subspace_distance_.std() == pytest.approx(dist_null.std(), rel=0.2)


def test_rotation_nulls_are_the_estimators_nulls():
    rng = np.random.default_rng(9)
    a, b = unit_rows(rng, 5, 12), unit_rows(rng, 4, 12)
    comparison = geo.DirectionSetComparison(n_permutations=30, random_state=4).fit(a, b)
    match_null, dist_null = geo.rotation_nulls(a, b, n_permutations=30, random_state=4)
    np.testing.assert_allclose(comparison.null_mean_abs_cosine_, match_null)
    np.testing.assert_allclose(comparison.null_subspace_distance_, dist_null)
    # each draw is the statistic of one explicit rotation of b, drawn from the same stream
    draws = np.random.RandomState(4)
    for i in range(3):
        rotated = geo.randomly_rotate(b, random_state=draws)
        assert match_null[i] == pytest.approx(float(geo.match_directions(a, rotated).abs_cosine.mean()))
        assert dist_null[i] == pytest.approx(subspace_distance(a, rotated), abs=1e-7)


@pytest.mark.parametrize("d,k", [(6, 2), (12, 4), (30, 3)])
def test_geomstats_backend_gives_the_same_comparison(d, k):
    rng = np.random.default_rng(d + k)
    a = rng.standard_normal((k, d))
    b = a + 0.5 * rng.standard_normal((k, d))
    fast = geo.DirectionSetComparison(n_permutations=0).fit(a, b)
    slow = geo.DirectionSetComparison(n_permutations=0, backend="geomstats").fit(a, b)
    assert slow.subspace_distance_ == pytest.approx(fast.subspace_distance_, abs=1e-6)
    np.testing.assert_allclose(slow.matched_angles_, fast.matched_angles_, atol=1e-6)
    stats = geo.compare_direction_sets(a, b, backend="geomstats")
    np.testing.assert_allclose(stats["matched_angles"], fast.matched_angles_, atol=1e-6)


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


def test_null_p_value():
    assert geo.null_p_value(5.0, np.arange(99)) == pytest.approx(95 / 100)
    assert geo.null_p_value(-1.0, np.arange(99), alternative="less") == pytest.approx(1 / 100)
    with pytest.raises(ConfigError, match="alternative"):
        geo.null_p_value(0.0, np.arange(3), alternative="two-sided")


def test_direction_labels_travel_into_the_matching():
    a = xr.DataArray(np.eye(3), dims=("direction", "unit"), coords={"direction": ["x", "y", "z"]})
    matching = geo.match_directions(a, np.eye(3)[[2, 0, 1]])
    assert list(matching.direction_a.values) == ["x", "y", "z"]
    assert list(matching.direction_b.values) == [1, 2, 0]
    as_torch = geo.match_directions(torch.eye(3), np.eye(3))
    np.testing.assert_allclose(as_torch.angle, 0)


def test_plot_matched_angles():
    import matplotlib
    matplotlib.use("Agg")
    a = as_directions(np.random.default_rng(0).standard_normal((6, 10)))
    ax = geo.plot_matched_angles({"same": geo.match_directions(a, a)}, null_angles=np.full(6, 1.0))
    assert ax.get_xlabel() == "matched angle (degrees)"


# ---------------------------------------------------------------- bad input

@pytest.mark.parametrize("call", [
    lambda a, b: principal_angles(a, b),
    lambda a, b: geodesic_distance(a, b),
    lambda a, b: pairwise_geodesic_distances(a, b),
    lambda a, b: geo.match_directions(a, b),
    lambda a, b: geo.DirectionSetComparison(n_permutations=0).fit(a, b),
    lambda a, b: geo.rotation_nulls(a, b, n_permutations=2),
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


def test_bad_params():
    with pytest.raises(ConfigError, match="backend"):
        geo.DirectionSetComparison(backend="torch").fit(np.eye(3), np.eye(3))
    with pytest.raises(ConfigError, match="n_permutations"):
        geo.DirectionSetComparison(n_permutations=-1).fit(np.eye(3), np.eye(3))
    with pytest.raises(ConfigError, match="n_permutations"):
        geo.rotation_nulls(np.eye(3), np.eye(3), n_permutations=1.5)
    fitted = geo.DirectionSetComparison(n_permutations=0).fit(np.eye(3), np.eye(3))
    with pytest.raises(DataError, match="fitted with 3"):
        fitted.score(np.eye(4), np.eye(4))


# ---------------------------------------------------------------- scikit-learn API

def test_estimators_store_params_and_clone():
    est = geo.DirectionSetComparison(n_permutations=5, random_state=3)
    assert clone(est).get_params() == est.get_params()
    a = unit_rows(np.random.default_rng(0), 6, 20)
    b = unit_rows(np.random.default_rng(1), 6, 20)
    first, second = clone(est).fit(a, b), clone(est).fit(a, b)
    np.testing.assert_array_equal(first.null_mean_abs_cosine_, second.null_mean_abs_cosine_)
    assert first.score(a, a) == pytest.approx(1.0)
