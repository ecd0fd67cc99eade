"""Tests of superpos.geometry.representations: CKA, RSA, response matching, shuffle nulls, the responses contract."""
import numpy as np
import pytest
import torch
import xarray as xr
from sklearn.base import clone

from superpos.core import ConfigError, DataError
from superpos.geometry import representations as geo
from superpos.geometry.comparison import random_rotation
from superpos.geometry.manifolds import as_directions
from superpos.responses import as_responses

from geometry_helpers import torch_dtype_untouched  # noqa: F401 (the fixture is autouse)


def responses(rng, n_stimuli=120, n_units=6, dim="unit"):
    ids = [f"img{i}" for i in range(n_stimuli)]
    return xr.DataArray(rng.standard_normal((n_stimuli, n_units)), dims=("stimulus", dim), coords={"stimulus": ids})


# ---------------------------------------------------------------- known answers

def test_cka_and_rsa_known_answers():
    rng = np.random.default_rng(0)
    a = responses(rng)
    rotated = a.copy(data=2 * a.values @ random_rotation(6, random_state=0)).rename(unit="neuron")
    assert geo.linear_cka(a, rotated) == pytest.approx(1.0)
    assert geo.linear_cka(a, rotated.isel(stimulus=slice(None, None, -1))) == pytest.approx(1.0)  # aligned by id
    assert geo.rsa(a, rotated, metric="euclidean") == pytest.approx(1.0)
    assert geo.rsa(a, 3 * a[:, ::-1]) == pytest.approx(1.0)
    independent = responses(np.random.default_rng(1), n_stimuli=120, n_units=6)
    assert geo.linear_cka(a, independent) < 0.2
    assert abs(geo.rsa(a, independent)) < 0.1


def test_rdm_known_answers():
    np.testing.assert_allclose(geo.rdm(np.eye(3), metric="euclidean"), np.sqrt(2) * (1 - np.eye(3)))
    patterns = np.array([[1.0, 2.0, 3.0], [2.0, 4.0, 6.0], [3.0, 2.0, 1.0]])
    np.testing.assert_allclose(geo.rdm(patterns), [[0, 0, 2], [0, 0, 2], [2, 2, 0]], atol=1e-12)


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
    nulls = geo.response_nulls(a, b, n_permutations=5, random_state=7)
    perm_rng = np.random.RandomState(7)
    for i in range(5):
        shuffled = b.copy(data=b.values[perm_rng.permutation(40)])  # responses moved to other stimuli
        assert rc.null_["cka"][i] == pytest.approx(geo.linear_cka(a, shuffled))
        assert rc.null_["rsa"][i] == pytest.approx(geo.rsa(a, shuffled))
        matched = np.abs(geo.match_responses(a, shuffled).correlation).mean()
        assert rc.null_["mean_abs_correlation"][i] == pytest.approx(float(matched))
        for key in nulls:
            assert nulls[key][i] == pytest.approx(rc.null_[key][i])


def test_no_permutations_no_p_values():
    rng = np.random.default_rng(6)
    rc = geo.ResponseComparison(n_permutations=0).fit(responses(rng, 30, 3), responses(rng, 30, 3))
    assert all(np.isnan(p) for p in rc.p_values_.values())
    assert clone(rc).get_params() == rc.get_params()


def test_direction_responses_are_projections():
    rng = np.random.default_rng(4)
    acts = responses(rng, n_units=5).assign_attrs(layer="conv1")
    dirs = xr.DataArray(as_directions(rng.standard_normal((3, 5))), dims=("direction", "unit"),
                        coords={"direction": ["a", "b", "c"]})
    r = geo.direction_responses(acts, dirs)
    assert r.dims == ("stimulus", "direction")
    np.testing.assert_array_equal(r["direction"].values, ["a", "b", "c"])
    np.testing.assert_array_equal(r["stimulus"].values, acts["stimulus"].values)
    assert r.attrs["layer"] == "conv1"
    np.testing.assert_allclose(r.values, acts.values @ dirs.values.T)
    with pytest.raises(DataError, match="use directions found in this layer"):
        geo.direction_responses(acts, rng.standard_normal((3, 4)))


# ---------------------------------------------------------------- the responses contract

@pytest.mark.parametrize("dim", ["unit", "neuron", "direction", "latent"])
def test_every_response_dim_is_accepted(dim):
    rng = np.random.default_rng(7)
    a, b = responses(rng, 30, 3, dim=dim), responses(rng, 30, 4)
    assert geo.match_responses(a, b).sizes["match"] == 3
    assert np.isfinite(geo.linear_cka(a, b)) and np.isfinite(geo.rsa(a, b))
    assert geo.rdm(a).shape == (30, 30)


def test_numpy_and_torch_responses_are_read_as_stimulus_by_unit():
    rng = np.random.default_rng(8)
    x = rng.standard_normal((25, 4))
    assert geo.linear_cka(x, torch.as_tensor(x)) == pytest.approx(1.0)
    assert geo.match_responses(x, x).unit_a.size == 4


@pytest.mark.parametrize("call", [
    lambda r, ok: geo.match_responses(r, ok),
    lambda r, ok: geo.linear_cka(r, ok),
    lambda r, ok: geo.rsa(r, ok),
    lambda r, ok: geo.ResponseComparison(n_permutations=2).fit(r, ok),
    lambda r, ok: geo.rdm(r),
    lambda r, ok: geo.direction_responses(r, np.eye(6)),
])
@pytest.mark.parametrize("bad", ["channel", "nan", "3-D"])
def test_bad_responses_rejected_with_the_contracts_message(call, bad):
    rng = np.random.default_rng(0)
    ok = responses(rng)
    r = {"channel": ok.rename(unit="channel"), "nan": ok.where(ok > 2),
         "3-D": np.zeros((4, 3, 2))}[bad]
    with pytest.raises(DataError) as expected:
        as_responses(r, name="a")
    with pytest.raises(DataError) as got:
        call(r, ok)
    # the same rule, phrased by the contract (the name differs only in the argument it names)
    strip = lambda msg: msg.split(" ", 1)[1]  # noqa: E731
    assert strip(str(got.value)) == strip(str(expected.value))


def test_bad_responses_and_params():
    rng = np.random.default_rng(0)
    a = responses(rng)
    with pytest.raises(DataError, match="stimulus ids do not match"):
        geo.linear_cka(a, a.isel(stimulus=slice(0, 60)))
    other = a.assign_coords(stimulus=[f"other{i}" for i in range(120)])
    with pytest.raises(DataError, match="stimulus ids do not match"):
        geo.rsa(a, other)
    with pytest.raises(DataError, match="NaN"):
        geo.linear_cka(a, a.where(a > 2))
    with pytest.raises(DataError, match="must have dims"):
        geo.match_responses(a.rename(stimulus="image"), a)
    with pytest.raises(DataError, match="at least 3 stimuli"):
        geo.linear_cka(a[:2], a[:2])
    with pytest.raises(ConfigError, match="n_permutations"):
        geo.ResponseComparison(n_permutations=-1).fit(a, a)
    with pytest.raises(ConfigError, match="metric must be one of"):
        geo.ResponseComparison(rsa_metric="cosine").fit(a, a)
