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


def test_ii_diagonal_include_is_the_reference_convention_and_baselines_are_exact():
    import itertools
    gram = random_gram(9, seed=5)
    g = gram.values
    vals = np.random.default_rng(6).normal(size=(9, 4))
    resp = labelled(vals, gram.stimulus.values)
    ours = interpretability_index(resp, None, gram, n_references=5, n_boot=0)
    ref = interpretability_index(resp, None, gram, n_references=5, n_boot=0, diagonal="include")
    for u in range(4):
        top = np.argsort(-vals[:, u])[:5]
        full_distance = np.mean(1 - g[np.ix_(top, top)])               # the reference: mean of the full 5 x 5 matrix
        assert ref.distance.values[u] == pytest.approx(full_distance, abs=1e-6)
        assert ref.score.values[u] == pytest.approx(np.mean(g[np.ix_(top, top)]), abs=1e-6)
    np.testing.assert_allclose(ref.distance.values, 0.8 * ours.distance.values, rtol=1e-5)
    for diagonal, res in (("exclude", ours), ("include", ref)):       # baseline = mean over every 5-subset
        subsets = [np.array(c) for c in itertools.combinations(range(9), 5)]
        mean = np.mean([(g[np.ix_(c, c)].sum() - (np.trace(g[np.ix_(c, c)]) if diagonal == "exclude" else 0))
                        / (20 if diagonal == "exclude" else 25) for c in subsets])
        assert float(res.baseline) == pytest.approx(mean, abs=1e-6), diagonal
    assert ref.attrs["diagonal"] == "include"
    with pytest.raises(ConfigError, match="diagonal"):
        interpretability_index(resp, None, gram, diagonal="zero")


def test_ii_stimulus_interval_is_the_stimulus_bootstrap():
    """interval='stimuli' against a direct loop: resample the stimuli, take the top k of the distinct ones drawn."""
    gram = random_gram(80, seed=7)
    g = gram.values
    rng = np.random.default_rng(8)
    vals = rng.normal(size=(80, 3))
    resp = labelled(vals, gram.stimulus.values)
    res = interpretability_index(resp, None, gram, n_references=4, n_boot=3000, ci=0.9)
    assert res.attrs["interval"] == "stimuli"
    for u in range(3):
        order = np.argsort(-vals[:, u])
        draws = []
        for _ in range(3000):
            drawn = np.zeros(80, bool)
            drawn[rng.integers(80, size=80)] = True
            top = order[drawn[order]][:4]
            block = g[np.ix_(top, top)]
            draws.append((block.sum() - np.trace(block)) / 12)
        low, high = np.quantile(draws, [0.05, 0.95])
        assert res.ci_low.values[u] == pytest.approx(low, abs=0.02)
        assert res.ci_high.values[u] == pytest.approx(high, abs=0.02)
    refs = interpretability_index(resp, None, gram, n_references=4, n_boot=500, interval="references")
    assert refs.attrs["interval"] == "references" and not np.allclose(refs.ci_low, res.ci_low, atol=1e-3)
    with pytest.raises(ConfigError, match="interval must be 'stimuli'"):
        interpretability_index(resp, None, gram, interval="bootstrap")
    with pytest.raises(ConfigError, match="like 0.95"):
        interpretability_index(resp, None, gram, ci=95)


def test_ii_reference_interval_never_gives_nan_for_two_images():
    gram = random_gram(10, seed=9)
    resp = labelled(np.random.default_rng(10).normal(size=(10, 5)), gram.stimulus.values)
    res = interpretability_index(resp, None, gram, n_references=2, n_boot=3, interval="references")
    assert np.isfinite(res.ci_low).all() and np.isfinite(res.ci_high).all()   # draws of one image are redrawn
