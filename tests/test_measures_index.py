"""superpos.measures.index (notebook 42): the interpretability index against a naive loop."""
import numpy as np
import pytest
from measures_data import labelled, random_gram

from superpos.core import ConfigError
from superpos.measures.index import interpretability_index


def test_ii_matches_naive_loop():
    gram = random_gram(60, seed=3)
    g = gram.values
    vals = np.random.default_rng(4).normal(size=(60, 7))
    res = interpretability_index(labelled(vals, gram.stimulus.values), None, gram, n_references=4, n_boot=0)
    for u in range(7):
        top = np.argsort(-vals[:, u])[:4]
        naive = np.mean([g[i, j] for i in top for j in top if i != j])
        assert res.score.values[u] == pytest.approx(naive, abs=1e-6)
        assert set(res.top_stimuli.values[u]) == set(gram.stimulus.values[top])
        assert res.distance.values[u] == pytest.approx(1 - naive, abs=1e-6)
    assert res.attrs["n_references"] == 4


def test_ii_rejects_too_few_references():
    gram = random_gram(10, seed=1)
    vals = np.random.default_rng(2).normal(size=(10, 2))
    with pytest.raises(ConfigError, match="n_references"):
        interpretability_index(labelled(vals, gram.stimulus.values), None, gram, n_references=1)
