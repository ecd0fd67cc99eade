"""Known-answer, cross-check and bad-input tests for superpos.disentangle.metrics.

Expected values (documented here, derived in the comments next to each test):
- the factors themselves, or any permutation / sign flip of them: MCC = 1 (Spearman and Pearson),
  MIG >= 0.99 for factors with <= 20 equally spaced values (the shortfall is plug-in MI bias),
  DCI disentanglement = completeness ~ 1, informativeness = 1, modularity ~ 1, explicitness ~ 1;
- any monotone per-factor transform: Spearman MCC = 1, Pearson MCC < 1;
- independent noise: MCC < 0.03, MIG < 0.01;
- a rotation by angle t of two independent unit-variance Gaussian factors: Pearson MCC = cos(t)
  (t <= 45 degrees); at 45 degrees MIG and modularity drop;
- fewer latents than factors: the unmatched factors score exactly 0 in MCC.
DCI, SAP and explicitness are tested in test_disentangle_predictive.py; IRS and the unsupervised
scores in test_disentangle_irs_unsupervised.py.
"""
import itertools

import numpy as np
import pytest
import torch
import xarray as xr
from disentangle_metrics_data import rotation
from scipy.stats import spearmanr
from sklearn.metrics import mutual_info_score

from superpos.core import ConfigError, DataError
from superpos.disentangle import metrics as M


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


def test_mcc_fewer_latents_scores_unmatched_factors_zero(gauss):
    ds = M.mcc_detailed(gauss, gauss[:, :2])
    # two factors matched perfectly, two left without a latent: (1 + 1 + 0 + 0) / 4, no noise padding
    assert float(ds["mcc"]) == pytest.approx(0.5, abs=1e-12)
    assert ds["matched_latent"].values.tolist() == [0, 1, -1, -1]
    assert ds["matched_corr"].values[2:].tolist() == [0.0, 0.0] and ds.attrs["n_unmatched_factors"] == 2
    # the old noise padding gave a seed-dependent positive bias: mean |corr| with noise ~ 0.7 / sqrt(n)
    small = gauss[:50]
    assert M.mcc(small, small[:, :1]) == pytest.approx(0.25, abs=1e-12)


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


# --- SAP, modularity, explicitness -----------------------------------------------------------

# --- modularity -----------------------------------------------------------------------------

def reference_modularity(y, z, n_bins=20):
    """disentanglement_lib's `modularity` on its histogram codes and sklearn mutual_info_score."""
    codes = [np.digitize(col, np.histogram(col, n_bins)[1][:-1]) for col in z.T]
    m = np.array([[mutual_info_score(f, c) for f in y.T] for c in codes])
    sq = np.square(m)
    top = sq.max(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        score = 1.0 - (sq.sum(1) - top) / (top * (sq.shape[1] - 1.0))
    score[top == 0.0] = 0.0
    return np.mean(score)


def test_modularity_known_answers_and_reference(discrete):
    y = discrete[:4000]
    assert M.modularity(y, y) > 0.99
    assert M.modularity(y, y @ rotation(np.pi / 4)) < 0.8
    z = y @ np.random.default_rng(13).normal(size=(4, 5)) + np.random.default_rng(14).normal(size=(4000, 5))
    assert M.modularity(y, z) == pytest.approx(reference_modularity(y, z), abs=1e-12)


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
        M.mig(bad, g)
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
