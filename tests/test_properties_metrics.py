"""Property-based tests (hypothesis) of the disentanglement metrics (superpos.disentangle.metrics, .predictive,
.sampled_metrics): on any input (shapes, dtypes, containers, NaN / inf, empty, constant, extreme magnitudes and
sizes, bad parameter values) each call returns a finite result in the metric's range or raises a SuperposError;
never another exception, a numpy RuntimeWarning (a silent NaN / overflow) or a number for a degenerate input
(a FactorVAE batch of 1, a constant factor, too few samples). When a call succeeds on latents that are the
factors themselves, the score is at the top of its range. The counts of inputs tried and rejected are
printed by the last test (run with -s)."""
import collections
import warnings

import numpy as np
import pytest
import torch
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from superpos.core import SuperposError
from superpos.disentangle import metrics as M
from superpos.disentangle import predictive as P
from superpos.disentangle import sampled_metrics as S

COUNTS = collections.defaultdict(lambda: {"tried": 0, "ok": 0, "rejected": 0})
FAST = settings(max_examples=120, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
FITTED = settings(max_examples=35, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
SPECIAL = [np.nan, np.inf, -np.inf, 1e300, -1e300, 1e-310, 5e-324]
BAD_INT = [-1, 0, 1, 2.5, np.nan, "3", None, True]


def run(name, call, check=lambda result: None):
    """Call; a result must be finite and pass `check`; an error must be a SuperposError."""
    COUNTS[name]["tried"] += 1
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)    # "all samples were used", convergence advice
            warnings.simplefilter("error", RuntimeWarning)  # numpy's overflow / invalid value: a silent NaN
            result = call()
    except SuperposError:
        COUNTS[name]["rejected"] += 1
        return None
    values = result.values() if isinstance(result, dict) else [result]
    for value in values:
        arr = value.values if isinstance(value, xr.Dataset) else np.asarray(value, dtype=float)
        assert np.isfinite(arr).all(), (name, result)
    check(result)
    COUNTS[name]["ok"] += 1
    return result


def in_unit_interval(result):
    for value in (result.values() if isinstance(result, dict) else [result]):
        assert -1e-9 <= value <= 1 + 1e-9, value


@st.composite
def matrices(draw, n=None, max_rows=40, max_cols=4):
    """A (sample x column) input: Gaussian, few-valued or binary, maybe with a constant column, a special
    value, an extreme scale, another dtype, another container or another number of dimensions."""
    clean = draw(st.booleans())  # half of the inputs are valid, so the scoring paths are exercised too
    n = (draw(st.integers(0, 3)) if draw(st.integers(0, 4)) == 0 and not clean
         else draw(st.integers(4 if clean else 0, max_rows))) if n is None else n
    k = draw(st.integers(1, max_cols)) if clean or draw(st.integers(0, 7)) else 0
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    kind = draw(st.sampled_from(["gauss", "discrete", "binary"]))
    x = {"gauss": lambda: rng.normal(size=(n, k)), "discrete": lambda: rng.integers(0, 5, (n, k)) * 1.0,
         "binary": lambda: rng.integers(0, 2, (n, k)) * 1.0}[kind]()
    if clean:
        return x
    if n and k and draw(st.integers(0, 5)) == 0:
        x[:, draw(st.integers(0, k - 1))] = draw(st.sampled_from([0.0, 1.0, -3.5]))
    if n and k and draw(st.integers(0, 5)) == 0:
        x[draw(st.integers(0, n - 1)), draw(st.integers(0, k - 1))] = draw(st.sampled_from(SPECIAL))
    if draw(st.integers(0, 7)) == 0:
        with np.errstate(over="ignore", under="ignore"):
            x = x * draw(st.sampled_from([1e-200, 1e-8, 1e8, 1e200]))
    if np.isfinite(x).all() and np.abs(x).max(initial=0) < 1e4 and draw(st.integers(0, 3)) == 0:
        x = x.astype(draw(st.sampled_from(["float32", "float16", "int64", "bool"])))
    shape = draw(st.integers(0, 15))
    if shape == 0:
        x = x.reshape(-1)  # 1-D: one column
    elif shape == 1:
        x = x[None]  # 3-D
    container = draw(st.sampled_from(["numpy"] * 12 + ["list", "torch", "xarray", "complex", "text"]))
    if container == "list":
        return x.tolist()
    if container == "torch":
        return torch.as_tensor(x)
    if container == "complex":
        return x + 1j
    if container == "text":
        return x.astype(str)
    if container == "xarray" and x.ndim == 2:
        return xr.DataArray(x, dims=("sample", draw(st.sampled_from(["latent", "factor", "unit"]))))
    return x


@st.composite
def pairs(draw):
    """(factors, latents, identical): latents are sometimes the factors themselves or a different length."""
    y = draw(matrices())
    choice = draw(st.integers(0, 3))
    if choice == 0:
        return y, y, True
    n = len(np.asarray(y)) if not isinstance(y, (list, xr.DataArray)) else len(y)
    return y, draw(matrices(n=n if choice < 3 else None)), False


# --- metrics from (factors, latents) -------------------------------------------------------------

@FAST
@given(pairs(), st.sampled_from(["spearman", "pearson", "kendall"]), st.booleans())
def test_mcc(data, method, allow_constant):
    y, z, identical = data
    score = run("mcc", lambda: M.mcc(y, z, method=method, allow_constant=allow_constant), in_unit_interval)
    if identical and score is not None:
        assert score == pytest.approx(1.0)


@FAST
@given(pairs(), st.sampled_from([20, 2, 7, 1, 0, 2.5, None]), st.booleans())
def test_mig_and_modularity(data, n_bins, allow_constant):
    y, z, _ = data
    run("mig", lambda: M.mig(y, z, n_bins=n_bins, allow_constant=allow_constant), in_unit_interval)
    run("modularity", lambda: M.modularity(y, z, n_bins=n_bins, allow_constant=allow_constant),
        in_unit_interval)


@FAST
@given(pairs(), st.sampled_from([20, None, 3, 1, -2]), st.sampled_from([0.99, 1.0, 0.0, 1.5, np.nan]),
       st.booleans())
def test_irs(data, n_bins, diff_quantile, allow_constant):
    y, z, identical = data
    score = run("irs", lambda: S.irs(y, z, n_bins=n_bins, diff_quantile=diff_quantile,
                                     allow_constant=allow_constant),
                lambda s: -1 - 1e-9 <= s <= 1 + 1e-9)
    if identical and score is not None and n_bins is None:
        assert score == pytest.approx(1.0)


@FAST
@given(matrices(), st.sampled_from([20, 3, 1, "20"]), st.booleans())
def test_unsupervised_scores(z, n_bins, allow_constant):
    def check(scores):
        assert scores["gaussian_total_correlation"] >= -1e-9 and scores["mutual_info_score"] >= 0
        assert scores["gaussian_wasserstein_correlation"] >= -1e-9
    run("unsupervised_scores", lambda: M.unsupervised_scores(z, n_bins=n_bins, allow_constant=allow_constant),
        check)


@FITTED
@given(pairs(), st.sampled_from([None] * 6 + [1, 2, 0, -3, 2.5, 10_000]), st.sampled_from([0] * 6 + [1, -1, 1.5]),
       st.booleans())
def test_predictive_metrics(data, n_test, random_state, allow_constant):
    y, z, _ = data
    common = dict(n_test=n_test, random_state=random_state, allow_constant=allow_constant)
    run("sap", lambda: P.sap(y, z, **common), in_unit_interval)
    run("explicitness", lambda: P.explicitness(y, z, **common), in_unit_interval)

    def dci_check(scores):
        assert 0 <= scores["disentanglement"] <= 1 + 1e-9 and 0 <= scores["completeness"] <= 1 + 1e-9
        assert scores["informativeness"] <= 1 + 1e-9
    run("dci (lasso)", lambda: P.dci(y, z, model="lasso", **common), dci_check)


@settings(max_examples=6, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(pairs())
def test_dci_gbt(data):
    y, z, _ = data
    run("dci (gbt)", lambda: P.dci(y, z), lambda s: in_unit_interval(
        {k: v for k, v in s.items() if k != "informativeness"}))


@FITTED
@given(pairs(), st.lists(st.sampled_from(S.REPRESENTATION_METRICS + ("beta_vae",)), min_size=1, max_size=3),
       st.sampled_from([None, {"mig": {"n_samples": 5}}, {"mig": {"n_samples": -1}}, {"irs": {"bins": 3}},
                        {"dci": "lasso"}, {"sap": {"n_train": 0, "n_test": 5}}]))
def test_evaluate(data, metrics, overrides):
    y, z, _ = data
    overrides = {"dci": {"model": "lasso"}, **(overrides or {})}
    run("evaluate", lambda: S.evaluate(y, z, metrics=metrics, overrides=overrides))


# --- matrix-level helpers -----------------------------------------------------------------------

@FAST
@given(matrices(), matrices(), st.sampled_from([20, 2, 0, -1, 1.5]))
def test_helpers(a, b, n_bins):
    run("correlation_matrix", lambda: M.correlation_matrix(a, b), lambda c: np.abs(c).max() <= 1)
    run("rank_columns", lambda: M.rank_columns(a), lambda r: (r >= 1).all() and (r <= len(r)).all())
    run("histogram_discretize", lambda: M.histogram_discretize(a, n_bins))
    run("dci_from_importance", lambda: P.dci_from_importance(a)[2:])
    run("modularity_from_mi", lambda: M.modularity_from_mi(a))
    run("gaussian_total_correlation", lambda: M.gaussian_total_correlation(a), lambda tc: tc >= -1e-9)


@st.composite
def covariances(draw):
    """Sample covariances of 1-4 latents from 2-30 samples, sometimes asymmetric, NaN or indefinite."""
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    k, n = draw(st.integers(1, 4)), draw(st.integers(2, 30))
    z = rng.normal(size=(n, k)) @ rng.normal(size=(k, k)) if draw(st.booleans()) else rng.normal(size=(n, k))
    cov = np.atleast_2d(np.cov(z.T))
    change = draw(st.sampled_from(["none"] * 4 + ["asymmetric", "nan", "negative", "duplicate", "scale"]))
    if change == "asymmetric" and k > 1:
        cov[0, 1] += 1.0
    elif change == "nan":
        cov[0, 0] = np.nan
    elif change == "negative":
        cov = -cov
    elif change == "duplicate":
        cov = np.cov(np.c_[z, z[:, :1]].T)
    elif change == "scale":
        cov = cov * draw(st.sampled_from([1e-120, 1e-30, 1e30]))
    return cov


@FAST
@given(covariances())
def test_gaussian_scores(cov):
    run("gaussian_total_correlation", lambda: M.gaussian_total_correlation(cov), lambda tc: tc >= -1e-9)
    run("gaussian_wasserstein_correlation", lambda: M.gaussian_wasserstein_correlation(cov),
        lambda w: w >= -1e-9 * max(np.trace(cov), 1e-300))


@st.composite
def codes(draw):
    """Integer codes with their sizes, sometimes negative, too large, float or mis-shaped."""
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    n, k, size = draw(st.integers(1, 30)), draw(st.integers(1, 3)), draw(st.integers(1, 5))
    c, sizes = rng.integers(0, size, (n, k)), np.full(k, size)
    change = draw(st.sampled_from(["none"] * 4 + ["negative", "large", "float", "sizes", "1-D", "empty"]))
    if change == "negative":
        c[0, 0] = -1
    elif change == "large":
        c[0, 0] = size
    elif change == "float":
        c = c + 0.5
    elif change == "sizes":
        sizes = sizes[:-1]
    elif change == "1-D":
        c = c[:, 0]
    elif change == "empty":
        c = c[:0]
    return c, sizes


@FAST
@given(codes(), st.booleans())
def test_information_of_codes(data, same_rows):
    c, sizes = data
    other = c if same_rows else c[:-1]
    run("entropy_codes", lambda: M.entropy_codes(c, sizes), lambda h: (h >= 0).all() and (h <= np.log(sizes) + 1e-12).all())
    run("mutual_info_codes", lambda: M.mutual_info_codes(c, sizes, other, sizes),
        lambda mi: (mi >= 0).all() and np.allclose(np.diag(mi), M.entropy_codes(c, sizes)) if same_rows else None)


@FAST
@given(st.integers(0, 5), st.integers(1, 6), st.integers(0, 2**16))
def test_cov_of_dependent_latents(k_extra, n_latents, seed):
    """Covariances of latents with exact duplicates or fewer samples than latents are singular."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n_latents + k_extra + 2, n_latents))
    z = np.c_[z, z[:, :1]]
    run("gaussian_total_correlation", lambda: M.gaussian_total_correlation(np.cov(z.T)))
    run("unsupervised_scores", lambda: M.unsupervised_scores(z))
    assert COUNTS["unsupervised_scores"]["rejected"] > 0


# --- intervention scores -------------------------------------------------------------------------

def factor_sampler(kind, n_factors):
    def sample(n, rng):
        f = rng.integers(0, 4, size=(n, n_factors)).astype(float)
        if kind == "constant" and n_factors:
            f[:, 0] = 1.0
        if kind == "nan" and n_factors and n:
            f[0, 0] = np.nan
        if kind == "flat":
            return f.reshape(-1)
        return f
    return sample


ENCODERS = {"identity": lambda x: x, "collapsed": lambda x: 1e-3 * x, "constant": lambda x: np.zeros_like(x),
            "nan": lambda x: np.where(x > 2, np.nan, x), "wrong rows": lambda x: x[:1],
            "torch": lambda x: torch.as_tensor(x, dtype=torch.float32), "3-D": lambda x: x[:, :, None]}


@FITTED
@given(st.sampled_from([8] * 4 + [4, 2, 1, 0, -1, 2.5]), st.sampled_from([20] * 4 + [5, 1, 0, -1]),
       st.sampled_from([20] * 4 + [2, 1, 0, 50]), st.sampled_from([0.05] * 4 + [0.0, -1.0, np.nan, np.inf]),
       st.sampled_from(["ok"] * 6 + ["constant", "nan", "flat"]), st.sampled_from([2, 3, 3, 0, 1]),
       st.sampled_from(["identity"] * 6 + sorted(ENCODERS)))
def test_intervention_scores(batch_size, n_train, n_variance, threshold, kind, n_factors, encoder):
    sample, encode = factor_sampler(kind, n_factors), ENCODERS[encoder]
    small = dict(batch_size=batch_size, n_train=n_train, n_eval=5, chunk_size=64)
    run("beta_vae_score", lambda: S.beta_vae_score(lambda f: f, encode, sample, **small), in_unit_interval)
    run("factor_vae_score", lambda: S.factor_vae_score(lambda f: f, encode, sample, n_variance=n_variance,
                                                       threshold=threshold, **small), in_unit_interval)


@settings(max_examples=20, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(["ok"] * 3 + ["constant", "nan", "flat"]), st.sampled_from([2, 3, 0, 1]),
       st.sampled_from(["identity"] * 3 + sorted(ENCODERS)), st.sampled_from([0, 0, -1, 64, 0.5]),
       st.sampled_from([["mcc", "irs", "unsupervised"], ["mig", "factor_vae"], ["sap", "beta_vae"], "dci"]))
def test_evaluate_model(kind, n_factors, encoder, chunk_or_seed, metrics):
    small = {m: {"n_samples": 60} for m in ("mcc", "mig", "irs", "unsupervised")}
    small.update(sap={"n_train": 40, "n_test": 20}, dci={"model": "lasso", "n_train": 40, "n_test": 20},
                 beta_vae={"n_train": 20, "n_eval": 5, "batch_size": 4},
                 factor_vae={"n_train": 20, "n_eval": 5, "batch_size": 4, "n_variance": 30})
    chosen = [metrics] if isinstance(metrics, str) else metrics
    run("evaluate_model", lambda: S.evaluate_model(
        lambda f: f, ENCODERS[encoder], factor_sampler(kind, n_factors), metrics=metrics,
        overrides={m: small[m] for m in chosen}, random_state=chunk_or_seed if chunk_or_seed != 64 else 0,
        chunk_size=64 if chunk_or_seed != 0.5 else 0))


def test_a_factor_vae_batch_of_one_is_an_error():
    with pytest.raises(SuperposError, match="batch_size must be an integer >= 2"):
        S.factor_vae_score(lambda f: f, lambda x: x, factor_sampler("ok", 2), batch_size=1, n_train=5, n_eval=5,
                           n_variance=20)


def test_zz_report_counts():
    """Print how many inputs each function was given and how many it rejected with a SuperposError."""
    total = {key: sum(c[key] for c in COUNTS.values()) for key in ("tried", "ok", "rejected")}
    for name, c in sorted(COUNTS.items()):
        print(f"{name:34s} tried {c['tried']:4d}  scored {c['ok']:4d}  rejected cleanly {c['rejected']:4d}")
    print(f"{'all':34s} tried {total['tried']:4d}  scored {total['ok']:4d}  rejected cleanly {total['rejected']:4d}")
    if COUNTS:
        assert total["ok"] > 0 and total["rejected"] > 0
