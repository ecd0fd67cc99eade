"""IRS and the unsupervised scores: known answers and equality with disentanglement_lib's formulas.

The references are transcriptions of disentanglement_lib's `irs.scalable_disentanglement_score` /
`_drop_constant_dims` / `utils._histogram_discretize` and `unsupervised_metrics` (gaussian total
correlation, Wasserstein correlation with `scipy.linalg.sqrtm`, mutual information score with
`sklearn.metrics.mutual_info_score`), in the library's (codes x points) layout.
Known answers: IRS = 1 for the factors themselves and 0.5 for latents that add two grid factors;
total correlation -log(1 - rho^2) / 2 and Wasserstein correlation 4 - 2 (sqrt(1 + rho) + sqrt(1 - rho))
for two unit-variance latents with correlation rho; ~0 for independent latents.
"""
import numpy as np
import pytest
import scipy.linalg
from sklearn.metrics import mutual_info_score

from superpos.core import ConfigError, DataError
from superpos.disentangle import metrics as M
from superpos.disentangle import sampled_metrics as S


# --- references ------------------------------------------------------------------------------

def dlib_histogram_discretize(target, num_bins=20):
    discretized = np.zeros_like(target)
    for i in range(target.shape[0]):
        discretized[i, :] = np.digitize(target[i, :], np.histogram(target[i, :], num_bins)[1][:-1])
    return discretized


def dlib_irs(ys, mus, diff_quantile=0.99, num_bins=20):
    """compute_irs after sampling: ys (factors x points), mus (codes x points)."""
    ys_discrete = dlib_histogram_discretize(ys, num_bins)
    active_mus = mus[mus.var(axis=1) > 0., :]
    if not active_mus.any():
        return 0.0
    gen_factors, latents = ys_discrete.T, active_mus.T
    num_gen, num_lat = gen_factors.shape[1], latents.shape[1]
    max_deviations = np.max(np.abs(latents - latents.mean(axis=0)), axis=0)
    cum_deviations = np.zeros([num_lat, num_gen])
    for i in range(num_gen):
        unique_factors = np.unique(gen_factors[:, i], axis=0)
        for k in range(unique_factors.shape[0]):
            match = gen_factors[:, i] == unique_factors[k]
            e_loc = np.mean(latents[match, :], axis=0)
            diffs = np.abs(latents[match, :] - e_loc)
            cum_deviations[:, i] += np.percentile(diffs, q=diff_quantile * 100, axis=0)
        cum_deviations[:, i] /= unique_factors.shape[0]
    irs_matrix = 1.0 - cum_deviations / max_deviations[:, np.newaxis]
    disentanglement_scores = irs_matrix.max(axis=1)
    if np.sum(max_deviations) > 0.0:
        return np.average(disentanglement_scores, weights=max_deviations)
    return np.mean(disentanglement_scores)


def dlib_unsupervised(mus_train, num_bins=20):
    num_codes = mus_train.shape[0]
    cov_mus = np.cov(mus_train)
    scores = {"gaussian_total_correlation":
              0.5 * (np.sum(np.log(np.diag(cov_mus))) - np.linalg.slogdet(cov_mus)[1])}
    sqrtm = scipy.linalg.sqrtm(cov_mus * np.expand_dims(np.diag(cov_mus), axis=1))
    scores["gaussian_wasserstein_correlation"] = 2 * np.trace(cov_mus) - 2 * np.trace(sqrtm)
    scores["gaussian_wasserstein_correlation_norm"] = (
        scores["gaussian_wasserstein_correlation"] / np.sum(np.diag(cov_mus)))
    mus_discrete = dlib_histogram_discretize(mus_train, num_bins)
    m = np.array([[mutual_info_score(b, a) for b in mus_discrete] for a in mus_discrete])
    np.fill_diagonal(m, 0)
    scores["mutual_info_score"] = np.sum(m) / (num_codes ** 2 - num_codes)
    return scores


def grid(n_values=(5, 5)):
    return np.array(np.meshgrid(*[np.arange(float(k)) for k in n_values])).reshape(len(n_values), -1).T


# --- IRS -------------------------------------------------------------------------------------

def test_irs_planted_disentangled_and_entangled():
    g = grid((6, 4, 5))
    assert S.irs(g, g[:, [2, 0, 1]] * [1.0, -3.0, 0.5]) == pytest.approx(1.0, abs=1e-12)
    ds = S.irs_detailed(g, g[:, [2, 0, 1]])
    assert ds["parent_factor"].values.tolist() == [2, 0, 1]
    two = grid((5, 5))
    # z = y0 + y1: holding either factor fixed leaves the other's range (4 of the total 8): 1 - 2/4
    assert S.irs(two, two.sum(1), diff_quantile=1.0) == pytest.approx(0.5, abs=1e-12)
    rng = np.random.default_rng(0)
    noise = S.irs(two, rng.normal(size=(25, 2)))
    assert noise < 0.5
    # a rotation of the grid mixes the factors: lower than the factors themselves
    c = np.cos(np.pi / 4)
    assert S.irs(two, two @ np.array([[c, -c], [c, c]])) < 0.75


def test_irs_matches_disentanglement_lib():
    rng = np.random.default_rng(1)
    y = np.c_[rng.integers(0, 32, 3000), rng.integers(0, 6, 3000), rng.integers(0, 3, 3000)].astype(float)
    z = np.c_[y @ rng.normal(size=(3, 4)) + rng.normal(size=(3000, 4)), rng.normal(size=3000)]
    assert S.irs(y, z) == pytest.approx(dlib_irs(y.T, z.T), abs=1e-12)
    assert S.irs(y, z, diff_quantile=1.0, n_bins=7) == pytest.approx(
        dlib_irs(y.T, z.T, diff_quantile=1.0, num_bins=7), abs=1e-12)
    # constant latents are dropped (weight 0), as _drop_constant_dims does
    zc = np.c_[z, np.full(3000, 2.0)]
    assert S.irs(y, zc, allow_constant=True) == pytest.approx(dlib_irs(y.T, zc.T), abs=1e-12)
    with pytest.raises(DataError, match="constant"):
        S.irs(y, zc)


def test_irs_degenerate_inputs():
    g = np.random.default_rng(2).normal(size=(40, 2))
    with pytest.raises(DataError, match="never repeats"):
        S.irs(g, g, n_bins=None)
    with pytest.raises(ConfigError, match="diff_quantile"):
        S.irs(g, g, diff_quantile=99)
    with pytest.raises(ConfigError, match="n_bins"):
        S.irs(g, g, n_bins=1)
    assert S.irs(g, np.zeros((40, 2)), allow_constant=True) == 0.0  # every latent collapsed


# --- unsupervised scores ---------------------------------------------------------------------

@pytest.mark.parametrize("rho", [0.0, 0.3, 0.8, -0.95])
def test_gaussian_scores_closed_form(rho):
    cov = np.array([[1.0, rho], [rho, 1.0]])
    assert M.gaussian_total_correlation(cov) == pytest.approx(-0.5 * np.log(1 - rho ** 2), abs=1e-12)
    expected = 4 - 2 * (np.sqrt(1 + rho) + np.sqrt(1 - rho))
    assert M.gaussian_wasserstein_correlation(cov) == pytest.approx(expected, abs=1e-12)
    # total correlation is scale-free; Wasserstein scales with the variances
    scaled = cov * np.outer([2.0, 0.5], [2.0, 0.5])
    assert M.gaussian_total_correlation(scaled) == pytest.approx(-0.5 * np.log(1 - rho ** 2), abs=1e-12)


def test_unsupervised_scores_known_answers():
    rng = np.random.default_rng(3)
    z = rng.normal(size=(20_000, 4))
    indep = M.unsupervised_scores(z)
    assert indep["gaussian_total_correlation"] < 1e-3 and indep["gaussian_wasserstein_correlation"] < 1e-3
    assert indep["mutual_info_score"] < 0.02  # plug-in bias of 20 x 20 bins on 20,000 samples
    # a known covariance: TC of the sample covariance matches the closed form of the true one
    chol = np.linalg.cholesky(np.array([[1.0, 0.6, 0.0], [0.6, 1.0, 0.3], [0.0, 0.3, 1.0]]))
    x = z[:, :3] @ chol.T
    true_cov = chol @ chol.T
    expected = 0.5 * (np.log(np.diag(true_cov)).sum() - np.linalg.slogdet(true_cov)[1])
    assert M.unsupervised_scores(x)["gaussian_total_correlation"] == pytest.approx(expected, abs=0.02)


def test_unsupervised_scores_match_disentanglement_lib():
    rng = np.random.default_rng(4)
    z = rng.normal(size=(5000, 5)) @ rng.normal(size=(5, 5)) + rng.uniform(size=(5000, 5))
    ours, ref = M.unsupervised_scores(z), dlib_unsupervised(z.T)
    assert set(ours) == set(ref)
    for key in ref:
        assert ours[key] == pytest.approx(float(np.real(ref[key])), abs=1e-9, rel=1e-9), key
    ours7, ref7 = M.unsupervised_scores(z, n_bins=7), dlib_unsupervised(z.T, 7)
    assert ours7["mutual_info_score"] == pytest.approx(ref7["mutual_info_score"], abs=1e-12)


def test_unsupervised_scores_degenerate_inputs():
    rng = np.random.default_rng(5)
    z = rng.normal(size=(500, 3))
    with pytest.raises(DataError, match="singular"):
        M.unsupervised_scores(np.c_[z, z[:, 0] + z[:, 1]])  # collinear: infinite total correlation
    with pytest.raises(DataError, match="at least two"):
        M.unsupervised_scores(z[:, :1])
    with pytest.raises(DataError, match="constant"):
        M.unsupervised_scores(np.c_[z, np.ones(500)])
    dropped = M.unsupervised_scores(np.c_[z, np.ones(500)], allow_constant=True)
    full = M.unsupervised_scores(z)
    for key in ("gaussian_total_correlation", "gaussian_wasserstein_correlation"):
        assert dropped[key] == pytest.approx(full[key], abs=1e-12)  # a constant latent adds nothing
    with pytest.raises(DataError, match="symmetric"):
        M.gaussian_total_correlation(np.array([[1.0, 0.5], [0.0, 1.0]]))
    with pytest.raises(DataError, match="NaN"):
        M.gaussian_wasserstein_correlation(np.array([[1.0, np.nan], [np.nan, 1.0]]))


def test_evaluate_reports_irs_and_unsupervised_scores():
    y = grid((8, 8, 8))
    with pytest.warns(UserWarning, match="all samples were used"):
        out = S.evaluate(y, y[:, ::-1], metrics=["irs", "unsupervised"])
    assert set(out) == {"irs", "gaussian_total_correlation", "gaussian_wasserstein_correlation",
                        "gaussian_wasserstein_correlation_norm", "mutual_info_score"}
    assert out["irs"] == pytest.approx(1.0) and out["gaussian_total_correlation"] < 1e-9
    with pytest.raises(ConfigError, match="unknown setting"):
        S.evaluate(y, y, metrics="irs", overrides={"irs": {"quantile": 0.5}})
