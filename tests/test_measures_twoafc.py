"""superpos.measures.twoafc (notebook 43): in-silico 2-AFC against a naive trial loop (Klindt et al.'s procedure)."""
import math

import numpy as np
import pytest
from measures_data import labelled, random_gram

from superpos.core import ConfigError, DataError
from superpos.measures.twoafc import psychophysics_2afc


def test_2afc_matches_naive_trial_loop():
    n, n_references, n_tasks, qs = 200, 3, 4, (0.0, 0.25)
    gram = random_gram(n, seed=5)
    g = gram.values
    vals = np.random.default_rng(6).normal(size=(n, 3))
    res = psychophysics_2afc(labelled(vals, gram.stimulus.values), None, gram, n_references=n_references,
                             n_tasks=n_tasks, query_quantiles=qs, temperature=0.7, n_boot=0, return_tasks=True)
    pos = {s: i for i, s in enumerate(gram.stimulus.values)}
    for u in range(3):
        top = np.argsort(-vals[:, u])
        bottom = top[::-1]
        for qi, q in enumerate(qs):
            off = math.ceil(q * (n - 1) - 1e-9)
            for t in range(n_tasks):
                q_max, q_min = (pos[s] for s in res["query"].values[u, qi, t])
                assert q_max in top[off:off + n_tasks] and q_min in bottom[off:off + n_tasks]
                refs = [off + n_tasks + j * n_tasks + t for j in range(n_references)]
                r = np.r_[top[refs], bottom[refs]]
                sims = g[np.ix_(r, [q_max, q_min])]
                z = (sims - sims.mean()) / sims.std()
                correct = z[:n_references, 0].mean() + z[n_references:, 1].mean()
                swapped = z[:n_references, 1].mean() + z[n_references:, 0].mean()
                p = 1 / (1 + np.exp(-(correct - swapped) / 0.7))
                assert res.p_correct.values[u, qi, t] == pytest.approx(p, abs=1e-5)
    assert res.p_correct.dims == ("unit", "quantile", "task")
    assert res.attrs["n_references"] == n_references and res.attrs["n_tasks"] == n_tasks


def test_2afc_settings_are_checked():
    gram = random_gram(100, seed=1)
    resp = labelled(np.random.default_rng(2).normal(size=(100, 2)), gram.stimulus.values)
    with pytest.raises(DataError, match="too few"):
        psychophysics_2afc(resp, None, gram)                     # the defaults need >= 800 stimuli
    for bad in ({"query_quantiles": (0.5,)}, {"n_references": 0}, {"n_tasks": 0}, {"temperature": 0}):
        with pytest.raises(ConfigError):
            psychophysics_2afc(resp, None, gram, **bad)


def _query_ranks(res, vals, gram):
    """Rank (within its end of the unit's ranking) of every task's max and min query: U x Q x T x 2."""
    pos = {s: i for i, s in enumerate(gram.stimulus.values)}
    u, q, t = res.p_correct.shape
    ranks = np.empty((u, q, t, 2), int)
    for i in range(u):
        rank_top = np.argsort(np.argsort(-vals[:, i]))
        rank_bottom = np.argsort(np.argsort(vals[:, i]))
        for j in range(q):
            for k in range(t):
                q_max, q_min = (pos[s] for s in res["query"].values[i, j, k])
                ranks[i, j, k] = rank_top[q_max], rank_bottom[q_min]
    return ranks


def test_max_and_min_queries_are_shuffled_independently():
    """The reference draws two permutations (one per side); one shared shuffle paired rank r with rank r."""
    n = 200
    gram = random_gram(n, seed=11)
    vals = np.random.default_rng(12).normal(size=(n, 20))
    res = psychophysics_2afc(labelled(vals, gram.stimulus.values), None, gram, n_references=3, n_tasks=8,
                             n_boot=0, return_tasks=True)
    ranks = _query_ranks(res, vals, gram)
    same = (ranks[..., 0] == ranks[..., 1]).all(-1)                       # U x Q: identical task orders
    assert same.mean() < 0.1, same.mean()
    for qi, off in enumerate((0, math.ceil(0.25 * (n - 1) - 1e-9))):      # each side still a permutation of its block
        for side in range(2):
            assert (np.sort(ranks[:, qi, :, side], -1) == off + np.arange(8)).all()


def test_2afc_interval_is_stratified_by_quantile():
    """Known answer: the bootstrap sd of the equal-weight mean of two quantiles is sqrt(sum_q var_q / T) / 2; the
    pooled bootstrap (the former interval) adds the spread between the quantiles and is wider on planted units."""
    import torch
    import xarray as xr

    from superpos.measures.bootstrap import percentile_interval, resample_means
    rng = np.random.default_rng(3)
    n = 400
    cls = np.arange(n) % 4                                                 # four classes of images
    emb = np.eye(8)[cls] + 0.3 * rng.normal(size=(n, 8))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    ids = np.array([f"x{i}" for i in range(n)])
    gram = xr.DataArray(emb @ emb.T, dims=("stimulus", "stimulus_other"), coords={"stimulus": ids, "stimulus_other": ids})
    planted = (cls[:, None] == rng.integers(4, size=30)[None]) * rng.exponential(size=(n, 30))   # one class each
    res = psychophysics_2afc(labelled(planted, ids), None, gram, n_references=4, n_tasks=20, n_boot=4000,
                             return_tasks=True)
    p = res.p_correct.values                                              # U x Q x T
    se = np.sqrt(p.var(-1).sum(-1) / p.shape[-1]) / p.shape[1]
    width = res.ci_high.values - res.ci_low.values
    ok = se > 1e-3
    ratio = width[ok] / (2 * 1.96 * se[ok])
    assert abs(np.median(ratio) - 1) < 0.08, ratio
    low, high = percentile_interval(resample_means(torch.as_tensor(p.reshape(30, -1)), 4000,
                                                   torch.Generator().manual_seed(0)), 0.95)
    pooled_ratio = (high - low)[ok] / width[ok]
    assert np.median(pooled_ratio) > 1.2, np.median(pooled_ratio)
    covered = (res.ci_low <= res.score) & (res.score <= res.ci_high)
    assert bool(covered.all()) and res.attrs["interval"] == "tasks within each quantile"


def test_2afc_parameter_messages():
    gram = random_gram(100, seed=1)
    resp = labelled(np.random.default_rng(2).normal(size=(100, 2)), gram.stimulus.values)
    with pytest.raises(ConfigError, match=r"sequence of quantiles, like \(0.0, 0.25\), got 0.25"):
        psychophysics_2afc(resp, None, gram, query_quantiles=0.25)
    with pytest.raises(ConfigError, match="distinct"):
        psychophysics_2afc(resp, None, gram, query_quantiles=(0.1, 0.1), n_tasks=2, n_references=2)
    with pytest.raises(ConfigError, match="like 0.95"):
        psychophysics_2afc(resp, None, gram, ci=95, n_tasks=2, n_references=2)
    with pytest.raises(ConfigError, match="n_boot"):
        psychophysics_2afc(resp, None, gram, n_boot=-1, n_tasks=2, n_references=2)
    for bad in (np.nan, np.inf):
        with pytest.raises(ConfigError, match="temperature"):
            psychophysics_2afc(resp, None, gram, temperature=bad, n_tasks=2, n_references=2)
