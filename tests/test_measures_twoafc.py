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
