"""Property-based tests (hypothesis) of the foundations' public API: responses, stimulus sets, procedural images,
direction finders. Every call either returns a correct result or raises a SuperposError: never another
exception, never a silent NaN. `python -m pytest -s` prints how many inputs were tried and rejected cleanly."""
import warnings
from collections import Counter

import numpy as np
import pytest
import torch
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from superpos.core import SuperposError
from superpos.directions.registry import DIRECTION_METHODS, make_direction_finder
from superpos.responses import as_responses, check_varying
from superpos.stimuli.natural import dead_leaves, gratings, natural_stimuli, photo_patches, power_spectrum, textures
from superpos.stimuli.sets import StimulusSet, as_stimulus_set

torch.set_num_threads(1)
TRIED, REJECTED = Counter(), Counter()
FAST = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None)


def outcome(name, call):
    """Run `call`; count it; a SuperposError is a clean rejection (None), any other exception fails the test."""
    TRIED[name] += 1
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return call()
    except SuperposError:
        REJECTED[name] += 1
        return None


special = st.sampled_from([0.0, -0.0, 1.0, -1.0, np.nan, np.inf, -np.inf, 1e300, -1e300, 1e-300, 3.0e38])
floats = st.one_of(st.floats(-1e6, 1e6, allow_nan=False), special)
@st.composite
def matrices(draw, min_rows=0, max_rows=8, max_cols=5):
    """2-D float arrays with NaN/inf, huge, tiny, constant and integer-like values mixed in."""
    rows, cols = draw(st.integers(min_rows, max_rows)), draw(st.integers(0, max_cols))
    kind = draw(st.sampled_from(["random", "constant", "special", "nonnegative"]))
    if kind == "constant":
        return np.full((rows, cols), draw(floats))
    values = draw(hnp.arrays(np.float64, (rows, cols), elements=floats if kind == "special" else
                             st.floats(0 if kind == "nonnegative" else -10, 10, allow_nan=False)))
    return values


@st.composite
def response_inputs(draw):
    """Mostly 2-D matrices of several dtypes, some with other ranks."""
    X = draw(matrices())
    dtype = draw(st.sampled_from([np.float64, np.float32, np.int64, np.bool_, np.complex128, object]))
    shape = draw(st.sampled_from([None, None, None, (-1,), (1, -1, 1) if X.size else (0,)]))
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        X = X.astype(dtype) if dtype not in (np.int64, np.bool_) else np.nan_to_num(X).clip(-1e6, 1e6).astype(dtype)
    return X if shape is None else X.reshape(shape)


@FAST
@given(response_inputs())
def test_as_responses_returns_finite_floats_or_rejects(values):
    da = outcome("as_responses", lambda: as_responses(values))
    if da is not None:
        assert isinstance(da, xr.DataArray) and da.dims == ("stimulus", "unit") and da.shape == values.shape
        assert np.issubdtype(da.dtype, np.floating) and np.isfinite(da.values).all() and da.size > 0
        np.testing.assert_array_equal(da.values, values.astype(da.dtype))
    else:
        assert values.ndim != 2 or values.size == 0 or values.dtype.kind in "cO" or not np.isfinite(values).all()


@FAST
@given(matrices(min_rows=0))
def test_check_varying_accepts_only_ranked_columns(values):
    ok = outcome("check_varying", lambda: check_varying(values) or True)
    if ok:
        assert (values.max(0) > values.min(0)).all()


@FAST
@given(st.integers(0, 5), st.sampled_from([3, 3, 3, 1, 4]), st.integers(1, 5),
       st.sampled_from([torch.uint8, torch.float32, torch.float64, torch.uint8, torch.float32, torch.int64, torch.float16]),
       st.sampled_from(["uniform", "uniform", "uniform", "nan", "inf", "negative", "big"]), st.sampled_from([4, 4, 4, 3, 5]))
def test_as_stimulus_set_keeps_the_images_or_rejects(n, channels, side, dtype, fill, ndim):
    shape = (n, channels, side, side, 2)[:ndim]
    x = torch.rand(shape, generator=torch.Generator().manual_seed(n * 31 + side))
    x = {"uniform": x, "nan": x.masked_fill(x > 0.7, float("nan")), "inf": x.masked_fill(x > 0.7, float("inf")),
         "negative": x - 0.5, "big": x * 300}[fill]
    x = (x * 255).to(dtype) if dtype in (torch.uint8, torch.int64) and fill in ("uniform", "big") else x.to(dtype)
    stimuli = outcome("as_stimulus_set", lambda: as_stimulus_set(x))
    if stimuli is not None:
        assert isinstance(stimuli, StimulusSet) and stimuli.images.dtype == torch.uint8
        assert tuple(stimuli.images.shape) == tuple(x.shape) and len(stimuli.ids) == n
        if x.is_floating_point():
            assert torch.isfinite(x).all() and (stimuli.tensor() - x.float()).abs().max() <= 0.5 / 255 + 1e-6


@FAST
@given(st.one_of(st.lists(st.integers(-8, 8), max_size=6), st.lists(st.booleans(), max_size=7),
                 st.just(slice(1, None, 2)), st.just(np.array([], dtype=float)), st.just([[0, 1]]),
                 st.just(np.array([0.5]))))
def test_subset_is_the_indexed_stimuli_or_rejects(index):
    images = torch.arange(5 * 3 * 8 * 8, dtype=torch.int64).reshape(5, 3, 8, 8).remainder(251).to(torch.uint8)
    stimuli = StimulusSet(images, [f"s{i}" for i in range(5)], ["x"] * 5)
    chosen = outcome("StimulusSet.subset", lambda: stimuli.subset(index))
    if chosen is not None:
        ids = np.asarray(stimuli.ids)
        expected = ids[index] if isinstance(index, slice) else ids[np.asarray(index)] if len(index) else []
        assert list(chosen.ids) == list(expected)
        assert torch.equal(chosen.images, images[torch.as_tensor([int(s[1:]) for s in chosen.ids], dtype=torch.long)])


count = st.one_of(st.integers(1, 4), st.integers(1, 4), st.integers(-2, 4), st.sampled_from([0.5, 2.0, np.nan, True, "3"]))
size = st.one_of(st.sampled_from([8, 12, 16]), st.sampled_from([8, 12]), st.integers(-1, 20), st.sampled_from([8.5, np.inf, 16.0]))
good_float = st.floats(0.05, 30, allow_nan=False)


def _check_images(stimuli, n, size):
    assert tuple(stimuli.images.shape) == (int(n), 3, int(size), int(size)) and stimuli.images.dtype == torch.uint8
    assert len(set(stimuli.ids)) == int(n)


@FAST
@given(count, size, st.sampled_from([None, None, (0.1, 0.5), (0.5, 0.1), (0.0, 0.3), (np.nan, 0.2)]),
       st.one_of(st.floats(0, 20), st.floats(0, 20), floats, st.just(1.0)), st.sampled_from([1, 20, 20, 0, -3]))
def test_dead_leaves_or_rejects(n, side, radii, alpha, n_disks):
    kwargs = {} if radii is None else {"r_min": radii[0], "r_max": radii[1]}
    out = outcome("dead_leaves", lambda: dead_leaves(n, side, alpha=alpha, n_disks=n_disks, **kwargs))
    if out is not None:
        _check_images(out, n, side)


@FAST
@given(count, size, st.one_of(good_float, floats), st.one_of(good_float, good_float, floats))
def test_gratings_or_rejects(n, side, low, high):
    out = outcome("gratings", lambda: gratings(n, side, min_cycles=low, max_cycles=high))
    if out is not None:
        _check_images(out, n, side)
        assert out.factors.cycles.between(low * (1 - 1e-5), high * (1 + 1e-5)).all()


@FAST
@given(count, size, st.one_of(st.tuples(good_float, good_float).map(sorted), st.tuples(floats, floats)))
def test_textures_or_rejects(n, side, slopes):
    out = outcome("textures", lambda: textures(n, side, slope_range=slopes))
    if out is not None:
        _check_images(out, n, side)


@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None)
@given(st.integers(0, 3), st.sampled_from([8, 12]), st.sampled_from([0.0, 0.02, 0.3, 0.49, 2.0, -1.0, np.nan]),
       st.sampled_from([(1.0, 4.0), (4.0, 1.0), (0.0, 1.0), (1.0, 1.0)]))
def test_photo_patches_end_or_reject(n, side, min_std, scales):
    out = outcome("photo_patches", lambda: photo_patches(n, side, min_std=min_std, scale_range=scales))
    if out is not None:
        _check_images(out, n, side)
        assert (out.images.float().flatten(1).std(1) / 255 >= min_std - 1e-6).all()


@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None)
@given(st.integers(-1, 12), st.sampled_from([8, 16]),
       st.sampled_from([None, None, None, {"gratings": 1.0}, {"gratings": 1.0, "textures": 2}, {"gratings": 0.0}, {"nope": 1.0}, {"textures": np.nan}, [1, 2]]))
def test_natural_stimuli_or_rejects(n, side, mix):
    out = outcome("natural_stimuli", lambda: natural_stimuli(n, side, mix=mix))
    if out is not None:
        _check_images(out, n, side)
        spectrum = outcome("power_spectrum", lambda: power_spectrum(out))
        assert spectrum is not None and np.isfinite(spectrum[1]).all()


@pytest.mark.parametrize("method", sorted(DIRECTION_METHODS))
def test_direction_finders_fit_and_transform_or_reject(method):
    extra = {"n_epochs": 2, "batch_size": 4} if method == "sae" else {}

    @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None)
    @given(matrices(), st.one_of(st.none(), st.integers(-1, 6)))
    def check(X, k):
        finder = outcome(f"{method}.fit", lambda: make_direction_finder(method, k, **extra).fit(X))
        if finder is None:
            return
        C = finder.components_
        assert C.shape[1] == X.shape[1] and np.isfinite(C).all()
        np.testing.assert_allclose(np.linalg.norm(C, axis=1), 1.0, atol=1e-6)
        Z = outcome(f"{method}.transform", lambda: finder.transform(X))
        assert Z is not None and Z.shape == (X.shape[0], C.shape[0]) and np.isfinite(Z).all()
        assert outcome(f"{method}.transform", lambda: finder.transform(X[:, :0] if X.shape[1] > 1 else X[:, :0])) is None

    check()


def test_report_counts():
    """The counts for the reliability note (shown with -s)."""
    print("\ninputs tried / rejected cleanly (SuperposError) per function:")
    for name in sorted(TRIED):
        print(f"  {name:<28}{TRIED[name]:>5} tried {REJECTED[name]:>5} rejected cleanly")
    print(f"  {'total':<28}{sum(TRIED.values()):>5} tried {sum(REJECTED.values()):>5} rejected cleanly")
    assert sum(TRIED.values()) > 0
