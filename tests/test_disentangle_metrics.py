"""Known-answer, cross-check and bad-input tests for superpos.disentangle.metrics.

Expected values (documented here, derived in the comments next to each test):
- the factors themselves, or any permutation / sign flip of them: MCC = 1 (Spearman and Pearson),
  MIG >= 0.99 for factors with <= 20 equally spaced values (the shortfall is plug-in MI bias),
  DCI disentanglement = completeness ~ 1, informativeness = 1, modularity ~ 1, explicitness ~ 1;
- any monotone per-factor transform: Spearman MCC = 1, Pearson MCC < 1;
- independent noise: MCC < 0.03, MIG < 0.01, DCI disentanglement < 0.15 (GBT), explicitness ~ 0.5;
- a rotation by angle t of two independent unit-variance Gaussian factors: Pearson MCC = cos(t)
  (t <= 45 degrees); at 45 degrees MIG, DCI D/C, SAP and modularity all drop.
"""
import itertools

import numpy as np
import pytest
import torch
import xarray as xr
from disentangle_metrics_data import discrete_factors, gaussian_factors, rotation
from scipy.stats import spearmanr
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.metrics import mutual_info_score

from superpos.core import ConfigError, DataError
from superpos.disentangle import metrics as M


@pytest.fixture(scope="module")
def gauss():
    return gaussian_factors()


@pytest.fixture(scope="module")
def discrete():
    return discrete_factors()


# --- MCC -------------------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["spearman", "pearson"])
def test_mcc_factors_permutation_sign(gauss, method):
    assert M.mcc(gauss, gauss, method=method) == pytest.approx(1.0)
    perm = [2, 0, 3, 1]
    z = gauss[:, perm] * np.array([1, -1, -1, 1])
    ds = M.mcc_detailed(gauss, z, method=method)
    assert float(ds["mcc"]) == pytest.approx(1.0)
    # factor j is found in the latent that holds it
    assert ds["matched_latent"].values.tolist() == [perm.index(j) for j in range(4)]


def test_mcc_monotone_transforms(gauss):
    z = np.c_[np.exp(gauss[:, 0]), gauss[:, 1] ** 3, np.arctan(3 * gauss[:, 2]), -np.sinh(gauss[:, 3])]
    assert M.mcc(gauss, z, method="spearman") == pytest.approx(1.0)
    assert M.mcc(gauss, z, method="pearson") < 0.95


def test_mcc_noise_and_rotation(gauss):
    noise = np.random.default_rng(5).normal(size=gauss.shape)
    assert M.mcc(gauss, noise) < 0.03
    for deg in (10, 30, 45):
        t = np.radians(deg)
        # corr(y0, cos t y0 - sin t y1) = cos t for independent unit-variance factors
        assert M.mcc(gauss, gauss @ rotation(t), method="pearson") == pytest.approx(np.cos(t), abs=0.02)
    assert M.mcc(gauss, gauss @ rotation(np.pi / 4)) < M.mcc(gauss, gauss) - 0.25


def test_mcc_padding_when_fewer_latents(gauss):
    ds = M.mcc_detailed(gauss, gauss[:, :2])
    # two factors matched perfectly, two to noise columns: (1 + 1 + ~0 + ~0) / 4
    assert float(ds["mcc"]) == pytest.approx(0.5, abs=0.02)
    assert sorted(ds["matched_latent"].values.tolist()) == [-1, -1, 0, 1]
    assert ds.attrs["n_noise_latents"] == 2


def test_mcc_matches_bruteforce_reference():
    rng = np.random.default_rng(3)
    y = rng.normal(size=(3000, 4))
    z = y @ rng.normal(size=(4, 5)) + 0.5 * rng.normal(size=(3000, 5))
    corr = spearmanr(y, z).statistic[:4, 4:]  # independent: scipy, then every injective assignment
    best = max(np.mean([abs(corr[i, p[i]]) for i in range(4)])
               for p in itertools.permutations(range(5), 4))
    assert M.mcc(y, z) == pytest.approx(best, abs=1e-10)
    pearson = np.corrcoef(y.T, z.T)[:4, 4:]
    best = max(np.mean([abs(pearson[i, p[i]]) for i in range(4)])
               for p in itertools.permutations(range(5), 4))
    assert M.mcc(y, z, method="pearson") == pytest.approx(best, abs=1e-10)


# --- MIG -------------------------------------------------------------------------------------

def reference_mig(y, z, n_bins=20):
    """disentanglement_lib's recipe written out: np.histogram bins, sklearn mutual_info_score."""
    codes = [np.digitize(col, np.histogram(col, n_bins)[1][:-1]) for col in z.T]
    m = np.array([[mutual_info_score(f, c) for f in y.T] for c in codes])
    h = np.array([mutual_info_score(f, f) for f in y.T])
    s = np.sort(m, axis=0)[::-1]
    return np.mean((s[0] - s[1]) / h)


def test_mig_matches_reference(discrete):
    rng = np.random.default_rng(4)
    y = discrete[:5000]
    z = y @ rng.normal(size=(4, 6)) + rng.normal(size=(5000, 6))
    assert M.mig(y, z) == pytest.approx(reference_mig(y, z), abs=1e-10)
    assert M.mig(y, z, n_bins=7) == pytest.approx(reference_mig(y, z, 7), abs=1e-10)
    ds = M.mig_detailed(y, z)
    assert ds["entropy"].values == pytest.approx([mutual_info_score(f, f) for f in y.T])


def test_mig_known_answers(discrete):
    top = M.mig(discrete, discrete)
    assert top >= 0.99
    # sign flips and permutations map equal-width bins onto equal-width bins: same value
    assert M.mig(discrete, -discrete[:, [3, 1, 0, 2]]) == pytest.approx(top, abs=1e-10)
    noise = np.random.default_rng(6).normal(size=discrete.shape)
    assert M.mig(discrete, noise) < 0.01
    assert M.mig(discrete, discrete @ rotation(np.pi / 4)) < 0.3


def test_mig_continuous_factors_are_binned(gauss):
    # 20,000 distinct values per factor > max_categories: binned like the latents, so MIG(y, y) = 1
    assert M.mig(gauss, gauss) == pytest.approx(1.0, abs=0.01)
    assert M.mig(gauss, gauss @ rotation(np.pi / 4)) < 0.3


# --- DCI -------------------------------------------------------------------------------------

def test_dci_informativeness_matches_reference_gbt():
    rng = np.random.default_rng(7)
    y = rng.integers(0, 3, size=(900, 2)).astype(float)
    z = y + 0.7 * rng.normal(size=y.shape)
    ds = M.dci_detailed(y, z, random_state=0)
    tr_te = np.random.default_rng(0).permutation(900)  # the documented split
    tr, te = tr_te[:600], tr_te[600:]
    acc = []
    for j in range(2):
        clf = GradientBoostingClassifier(random_state=0).fit(z[tr], y[tr, j])
        acc.append(np.mean(clf.predict(z[te]) == y[te, j]))
    assert ds["informativeness_per_factor"].values == pytest.approx(acc, abs=1e-12)


def test_dci_informativeness_matches_reference_ols():
    rng = np.random.default_rng(8)
    y = rng.normal(size=(3000, 3))
    z = y @ rng.normal(size=(3, 4)) + rng.normal(size=(3000, 4))
    ds = M.dci_detailed(y, z, model="lasso", alpha=1e-8, n_train=2000, n_test=1000)
    perm = np.random.default_rng(0).permutation(3000)
    tr, te = perm[:2000], perm[2000:]
    x = np.c_[np.ones(3000), z]
    r2 = []
    for j in range(3):
        w = np.linalg.lstsq(x[tr], y[tr, j], rcond=None)[0]
        resid = y[te, j] - x[te] @ w
        r2.append(1 - (resid ** 2).sum() / ((y[te, j] - y[te, j].mean()) ** 2).sum())
    assert ds["informativeness_per_factor"].values == pytest.approx(r2, abs=1e-4)


def test_dci_known_answers():
    rng = np.random.default_rng(9)
    y = rng.integers(0, 4, size=(1500, 3)).astype(float)
    res = M.dci(y, -y[:, [1, 2, 0]])
    assert res["disentanglement"] > 0.95 and res["completeness"] > 0.95
    assert res["informativeness"] == pytest.approx(1.0)
    noise = M.dci(y, rng.normal(size=(1500, 3)))
    assert noise["disentanglement"] < 0.15 and noise["informativeness"] < 0.35
    g = rng.normal(size=(3000, 4))
    fast = M.dci(g, g, model="lasso")
    assert fast["disentanglement"] > 0.99 and fast["completeness"] > 0.99
    mixed = M.dci(g, g @ rotation(np.pi / 4), model="lasso")
    # two equal importances per latent and per factor: 1 - log_4(2) = 0.5 and 1 - log_4(2) = 0.5
    assert mixed["disentanglement"] == pytest.approx(0.5, abs=0.02)
    assert mixed["completeness"] == pytest.approx(0.5, abs=0.02)
    assert mixed["informativeness"] > 0.99


def test_dci_custom_estimator():
    from sklearn.linear_model import LinearRegression
    rng = np.random.default_rng(10)
    g = rng.normal(size=(600, 2))
    assert M.dci(g, g, model=LinearRegression())["informativeness"] == pytest.approx(1.0)
    with pytest.raises(ConfigError, match="model must be"):
        M.dci(g, g, model="forest")


# --- SAP, modularity, explicitness -----------------------------------------------------------

def test_sap_known_answers(gauss):
    g = gauss[:3000]
    assert M.sap(g, g) == pytest.approx(1.0, abs=0.01)  # R^2 = 1 for its latent, ~0 for the rest
    assert M.sap(g, np.random.default_rng(11).normal(size=g.shape)) < 0.01
    assert M.sap(g, g @ rotation(np.pi / 4)) < 0.05  # both latents explain half: gap ~0
    b = np.random.default_rng(12).integers(0, 2, size=(2000, 2)).astype(float)
    assert M.sap(b, b) == pytest.approx(0.5, abs=0.05)  # accuracy 1 vs chance 1/2


def test_modularity_and_explicitness(discrete):
    y = discrete[:4000]
    assert M.modularity(y, y) > 0.99
    assert M.modularity(y, y @ rotation(np.pi / 4)) < 0.8
    assert M.explicitness(y, y) > 0.95
    assert M.explicitness(y, np.random.default_rng(13).normal(size=y.shape)) == pytest.approx(0.5, abs=0.05)


# --- inputs ----------------------------------------------------------------------------------

def test_xarray_and_torch_inputs(gauss):
    g = gauss[:500]
    y = xr.DataArray(g, dims=("sample", "factor"), coords={"factor": list("abcd")})
    z = xr.DataArray(g[:, [1, 0, 3, 2]].T, dims=("latent", "sample"),
                     coords={"latent": ["z0", "z1", "z2", "z3"]})
    ds = M.mcc_detailed(y, z)
    assert float(ds["mcc"]) == pytest.approx(1.0)
    assert ds["factor"].values.tolist() == list("abcd")
    assert ds["latent"].values[ds["matched_latent"].values].tolist() == ["z1", "z0", "z3", "z2"]
    assert M.mig(torch.as_tensor(g), torch.as_tensor(g)) == pytest.approx(M.mig(g, g))


def test_bad_inputs(gauss):
    g = gauss[:300]
    with pytest.raises(DataError, match="same samples"):
        M.mcc(g, g[:299])
    with pytest.raises(DataError, match="constant"):
        M.mig(g, np.c_[g, np.zeros(300)])
    with pytest.raises(DataError, match="factor.*constant"):
        M.mcc(np.c_[g, np.ones(300)], g)
    bad = g.copy()
    bad[3, 1] = np.nan
    with pytest.raises(DataError, match="NaN"):
        M.mcc(g, bad)
    bad[3, 1] = np.inf
    with pytest.raises(DataError, match="NaN or infinite"):
        M.dci(bad, g, model="lasso")
    with pytest.raises(DataError, match="2-D"):
        M.mcc(g, np.zeros((300, 2, 2)))
    with pytest.raises(DataError, match="rename"):
        M.mcc(xr.DataArray(g, dims=("sample", "unit")), g)
    y = xr.DataArray(g, dims=("sample", "factor"), coords={"sample": np.arange(300)})
    z = xr.DataArray(g, dims=("sample", "latent"), coords={"sample": np.arange(300) + 1})
    with pytest.raises(DataError, match="coordinates"):
        M.mcc(y, z)
    with pytest.raises(ConfigError, match="method"):
        M.mcc(g, g, method="kendall")
    with pytest.raises(ConfigError, match="n_bins"):
        M.mig(g, g, n_bins=1)
    with pytest.raises(DataError, match="cannot split"):
        M.dci(g, g, n_train=250, n_test=100)


def test_allow_constant_scores_collapsed_latent_as_empty(gauss):
    g = gauss[:2000]
    z = np.c_[g, np.zeros(2000)]
    assert M.mcc(g, z, allow_constant=True) == pytest.approx(M.mcc(g, g))
    assert M.mig(g, z, allow_constant=True) == pytest.approx(M.mig(g, g))
    assert M.modularity(g, z, allow_constant=True) < M.modularity(g, g)  # the empty latent scores 0


def test_rank_columns_matches_scipy():
    from scipy.stats import rankdata
    rng = np.random.default_rng(14)
    x = np.c_[rng.integers(0, 5, 1000), rng.normal(size=1000), np.repeat([2.0, 1.0], 500)]
    assert np.array_equal(M.rank_columns(x), rankdata(x, axis=0))


def test_dci_parallel_equals_serial():
    rng = np.random.default_rng(15)
    y = rng.integers(0, 3, size=(600, 2)).astype(float)
    z = y + rng.normal(size=y.shape)
    from joblib import parallel_backend
    with parallel_backend("threading"):  # same code path, no process start-up in the test
        assert M.dci(y, z, n_jobs=2) == M.dci(y, z, n_jobs=1)


def test_as_sample_matrix_and_check_factors_latents_are_the_one_input_rule(gauss):
    g = gauss[:100]
    da = xr.DataArray(g.T, dims=("latent", "sample"),
                      coords={"latent": list("wxyz"), "sample": np.arange(100)})
    values, labels, samples = M.as_sample_matrix(da)
    assert values.shape == (100, 4) and values.flags.f_contiguous
    assert labels.tolist() == list("wxyz") and samples.tolist() == list(range(100))
    values, labels, samples = M.as_sample_matrix(torch.as_tensor(g[:, 0]), name="factors", dim="factor")
    assert values.shape == (100, 1) and labels is None and samples is None
    with pytest.raises(DataError, match="factors has dims"):
        M.as_sample_matrix(da, name="factors", dim="factor")
    data = M.check_factors_latents(g, np.c_[g, np.zeros(100)], allow_constant=True)
    assert data["constant"].tolist() == [4] and data["latent"].tolist() == [0, 1, 2, 3, 4]
