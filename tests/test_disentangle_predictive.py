"""Known-answer and disentanglement_lib-equivalence tests for superpos.disentangle.predictive (DCI, SAP, explicitness).

The references are direct transcriptions of disentanglement_lib's `sap_score.compute_score_matrix`
and `modularity_explicitness.explicitness_per_factor`, run on the same train/test split
(`np.random.default_rng(random_state).permutation(n)`: the first n_train, then n_test samples).
"""
import numpy as np
import pytest
from disentangle_metrics_data import rotation
from sklearn import linear_model, metrics, preprocessing, svm
from sklearn.ensemble import GradientBoostingClassifier

from superpos.core import ConfigError, DataError
from superpos.disentangle import predictive as P


def split(n, n_train=None, n_test=None, random_state=0):
    n_test = n // 3 if n_train is None and n_test is None else n_test if n_test is not None else n - n_train
    n_train = n - n_test if n_train is None else n_train
    perm = np.random.default_rng(random_state).permutation(n)
    return perm[:n_train], perm[n_train:n_train + n_test]


# --- DCI -------------------------------------------------------------------------------------

def test_dci_informativeness_matches_reference_gbt():
    rng = np.random.default_rng(7)
    y = rng.integers(0, 3, size=(900, 2)).astype(float)
    z = y + 0.7 * rng.normal(size=y.shape)
    ds = P.dci_detailed(y, z, random_state=0)
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
    ds = P.dci_detailed(y, z, model="lasso", alpha=1e-8, n_train=2000, n_test=1000)
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
    res = P.dci(y, -y[:, [1, 2, 0]])
    assert res["disentanglement"] > 0.95 and res["completeness"] > 0.95
    assert res["informativeness"] == pytest.approx(1.0)
    noise = P.dci(y, rng.normal(size=(1500, 3)))
    assert noise["disentanglement"] < 0.15 and noise["informativeness"] < 0.35
    g = rng.normal(size=(3000, 4))
    fast = P.dci(g, g, model="lasso")
    assert fast["disentanglement"] > 0.99 and fast["completeness"] > 0.99
    mixed = P.dci(g, g @ rotation(np.pi / 4), model="lasso")
    # two equal importances per latent and per factor: 1 - log_4(2) = 0.5 and 1 - log_4(2) = 0.5
    assert mixed["disentanglement"] == pytest.approx(0.5, abs=0.02)
    assert mixed["completeness"] == pytest.approx(0.5, abs=0.02)
    assert mixed["informativeness"] > 0.99


def test_dci_custom_estimator():
    from sklearn.linear_model import LinearRegression
    rng = np.random.default_rng(10)
    g = rng.normal(size=(600, 2))
    assert P.dci(g, g, model=LinearRegression())["informativeness"] == pytest.approx(1.0)
    with pytest.raises(ConfigError, match="model must be"):
        P.dci(g, g, model="forest")


# --- SAP -------------------------------------------------------------------------------------

def dlib_sap_score_matrix(mus, ys, mus_test, ys_test, continuous_factors):
    """disentanglement_lib `sap_score.compute_score_matrix`, verbatim but for style (codes x points)."""
    num_latents, num_factors = mus.shape[0], ys.shape[0]
    score_matrix = np.zeros([num_latents, num_factors])
    for i in range(num_latents):
        for j in range(num_factors):
            mu_i, y_j = mus[i, :], ys[j, :]
            if continuous_factors:
                cov_mu_i_y_j = np.cov(mu_i, y_j, ddof=1)
                cov_mu_y = cov_mu_i_y_j[0, 1] ** 2
                var_mu, var_y = cov_mu_i_y_j[0, 0], cov_mu_i_y_j[1, 1]
                score_matrix[i, j] = cov_mu_y * 1. / (var_mu * var_y) if var_mu > 1e-12 else 0.
            else:
                classifier = svm.LinearSVC(C=0.01, class_weight="balanced")
                classifier.fit(mu_i[:, np.newaxis], y_j)
                pred = classifier.predict(mus_test[i, :][:, np.newaxis])
                score_matrix[i, j] = np.mean(pred == ys_test[j, :])
    return score_matrix


def dlib_sap(y, z, continuous_factors, **split_kw):
    tr, te = split(len(y), **split_kw)
    matrix = dlib_sap_score_matrix(z[tr].T, y[tr].T, z[te].T, y[te].T, continuous_factors)
    s = np.sort(matrix, axis=0)  # compute_avg_diff_top_two
    return np.mean(s[-1, :] - s[-2, :]), matrix


def two_factor_constant_latent_case():
    """Two discrete factors; latent 0 reads factor 0 noisily, latent 1 is exactly constant."""
    rng = np.random.default_rng(0)
    y = np.c_[rng.integers(0, 4, 900), rng.integers(0, 3, 900)].astype(float)
    return y, np.c_[y[:, 0] + 0.3 * rng.normal(size=900), np.zeros(900)]


def test_sap_constant_latent_is_fitted_like_any_other():
    y, z = two_factor_constant_latent_case()
    ref, ref_matrix = dlib_sap(y, z, continuous_factors=False)
    ds = P.sap_detailed(y, z, allow_constant=True)
    np.testing.assert_allclose(ds["score"].values, ref_matrix, atol=1e-14, rtol=0)
    assert float(ds["sap"]) == pytest.approx(ref, abs=1e-14)
    # the constant latent scores the accuracy of the one class it predicts (chance), not 0
    tr, te = split(900)
    shares = [np.mean(y[te, j] == v) for j in range(2) for v in np.unique(y[:, j])]
    assert all(np.isclose(ds["score"].values[1, j], shares).any() for j in range(2))
    assert float(ds["sap"]) < 0.35  # scoring it 0 gave 0.46 here (0.760 vs 0.273 in the case)


def test_sap_matches_disentanglement_lib(discrete, gauss):
    rng = np.random.default_rng(16)
    y = discrete[:1200, :3]
    z = y @ rng.normal(size=(3, 4)) + rng.normal(size=(1200, 4))
    ref, ref_matrix = dlib_sap(y, z, continuous_factors=False)
    np.testing.assert_allclose(P.sap_detailed(y, z)["score"].values, ref_matrix, atol=1e-14, rtol=0)
    assert P.sap(y, z) == pytest.approx(ref, abs=1e-14)
    g = gauss[:1500, :3]
    zg = g @ rng.normal(size=(3, 3)) + 0.5 * rng.normal(size=(1500, 3))
    ref, ref_matrix = dlib_sap(g, zg, continuous_factors=True)
    np.testing.assert_allclose(P.sap_detailed(g, zg)["score"].values, ref_matrix, atol=1e-14, rtol=0)


def test_sap_known_answers(gauss):
    g = gauss[:3000]
    assert P.sap(g, g) == pytest.approx(1.0, abs=0.01)  # R^2 = 1 for its latent, ~0 for the rest
    assert P.sap(g, np.random.default_rng(11).normal(size=g.shape)) < 0.01
    assert P.sap(g, g @ rotation(np.pi / 4)) < 0.05  # both latents explain half: gap ~0
    b = np.random.default_rng(12).integers(0, 2, size=(2000, 2)).astype(float)
    assert P.sap(b, b) == pytest.approx(0.5, abs=0.05)  # accuracy 1 vs chance 1/2


# --- explicitness ----------------------------------------------------------------------------

def dlib_explicitness(y, z, **split_kw):
    """disentanglement_lib's explicitness: normalize_data with train statistics, explicitness_per_factor."""
    tr, te = split(len(y), **split_kw)
    mean, std = z[tr].mean(0), z[tr].std(0)
    x_train, x_test = (z[tr] - mean) / std, (z[te] - mean) / std
    out = []
    for j in range(y.shape[1]):
        clf = linear_model.LogisticRegression().fit(x_train, y[tr, j])
        mlb = preprocessing.MultiLabelBinarizer()
        out.append(metrics.roc_auc_score(mlb.fit_transform(np.expand_dims(y[te, j], 1)),
                                         clf.predict_proba(x_test)))
    return np.mean(out)


def test_explicitness_known_answers_and_reference(discrete):
    y = discrete[:4000]
    assert P.explicitness(y, y) > 0.95
    noise = np.random.default_rng(13).normal(size=y.shape)
    assert P.explicitness(y, noise) == pytest.approx(0.5, abs=0.05)
    z = y @ np.random.default_rng(17).normal(size=(4, 5)) + np.random.default_rng(18).normal(size=(4000, 5))
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # lbfgs convergence warnings, as in the library
        ref = dlib_explicitness(y[:, :2], z)
    assert P.explicitness(y[:, :2], z) == pytest.approx(ref, abs=1e-12)


# --- degenerate splits and parameters --------------------------------------------------------

def test_degenerate_splits_and_parameters_are_named():
    rng = np.random.default_rng(19)
    y = np.c_[np.ones(300), rng.normal(size=300)]
    y[split(300)[1][0], 0] = 0.0  # factor 0 varies only in one test sample
    z = rng.normal(size=(300, 2))
    for fn in (P.sap, P.explicitness, lambda a, b: P.dci(a, b, model="lasso")):
        with pytest.raises(DataError, match="factor 0 takes one value in all 200 train samples"):
            fn(y, z)
    g = rng.normal(size=(300, 2))
    with pytest.raises(DataError, match="cannot split"):
        P.dci(g, g, n_train=250, n_test=100)
    with pytest.raises(ConfigError, match="n_test must be an integer"):
        P.sap(g, g, n_test=2.5)
    with pytest.raises(ConfigError, match="random_state"):
        P.explicitness(g, g, random_state=-1)
    with pytest.raises(ConfigError, match="alpha"):
        P.dci(g, g, model="lasso", alpha=-1.0)
    with pytest.raises(DataError, match="importance"):
        P.dci_from_importance(np.array([[np.nan, 1.0]]))


def test_dci_parallel_equals_serial():
    rng = np.random.default_rng(15)
    y = rng.integers(0, 3, size=(600, 2)).astype(float)
    z = y + rng.normal(size=y.shape)
    from joblib import parallel_backend
    with parallel_backend("threading"):  # same code path, no process start-up in the test
        assert P.dci(y, z, n_jobs=2) == P.dci(y, z, n_jobs=1)


