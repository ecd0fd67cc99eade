"""superpos.measures.mis (notebook 44): MIS formula and task sampling, alpha calibration, and the three measures
side by side (chance, planted ground truth, invariances, id alignment, bad input)."""
import math

import numpy as np
import pytest
import torch
import xarray as xr
from measures_data import labelled, random_gram
from sklearn.metrics import roc_auc_score

from superpos.core import ConfigError, DataError
from superpos.measures.blockwise import EmbeddingSimilarity
from superpos.measures.selection import rank_order, ranked_stimuli
from superpos.measures.planted import feature_stimuli, planted_responses, random_responses
from superpos.measures.index import interpretability_index
from superpos.measures.mis import calibrate_alpha, mis, mis_from_tasks, sample_mis_tasks
from superpos.measures.similarity import similarity_matrix
from superpos.measures.twoafc import psychophysics_2afc

MEASURES = {"II": interpretability_index, "2-AFC": psychophysics_2afc, "MIS": mis}


@pytest.fixture(scope="module")
def planted_setup():
    stim = feature_stimuli(800, size=32, seed=1)
    return stim, similarity_matrix(stim, "perceptual")


def test_mis_matches_formula_and_sampling():
    gram = random_gram(100, seed=7)
    g = torch.as_tensor(gram.values, dtype=torch.float32)
    pos = sample_mis_tasks(5, 50, 20, 9, seed=0)
    assert pos.shape == (5, 50, 10)
    assert (pos.diff(dim=-1) > 0).all() and pos.min() >= 0 and pos.max() < 20   # distinct, sorted, in range
    vals = torch.as_tensor(np.random.default_rng(8).normal(size=(100, 5)))
    order = rank_order(vals)
    top, bottom = ranked_stimuli(order, pos), ranked_stimuli(order.flip(0), pos)
    score, delta = mis_from_tasks(g, top, bottom, alpha=0.3)
    for u in range(5):
        for t in range(0, 50, 7):
            ep, qp, em, qm = top[u, t, :9], top[u, t, 9], bottom[u, t, :9], bottom[u, t, 9]
            d = (g[qp, ep].mean() - g[qp, em].mean()) - (g[qm, ep].mean() - g[qm, em].mean())
            assert float(delta[u, t]) == pytest.approx(float(d), abs=1e-6)
            assert float(vals[qp, u]) <= float(vals[ep, u].min())   # query is the least extreme of its side
    torch.testing.assert_close(score, torch.sigmoid(0.3 * delta).mean(-1))
    # blockwise (only each task's queries against its explanations, from the embeddings) on the replayed tasks
    rng = np.random.default_rng(7)
    e = rng.normal(size=(100, 16))
    e = torch.as_tensor(e / np.linalg.norm(e, axis=1, keepdims=True), dtype=torch.float32)
    b_score, b_delta = mis_from_tasks(EmbeddingSimilarity(e, chunk_bytes=4096), top, bottom, alpha=0.3, chunk=2)
    assert float((b_delta - delta).abs().max()) < 1e-6 and float((b_score - score).abs().max()) < 1e-6
    # sampling is uniform over subsets: every position is drawn about equally often
    counts = torch.bincount(sample_mis_tasks(200, 100, 20, 4, seed=1).flatten(), minlength=20).double()
    assert (counts / counts.mean() - 1).abs().max() < 0.05


def test_mis_reports_its_settings_and_tasks():
    gram = random_gram(100, seed=3)
    resp = labelled(np.random.default_rng(4).normal(size=(100, 3)), gram.stimulus.values, "direction")
    res = mis(resp, None, gram, n_references=4, n_tasks=30, extreme_quantile=0.1, n_boot=0, return_tasks=True)
    assert res.delta.dims == ("direction", "task") and res.delta.shape == (3, 30)
    assert {k: res.attrs[k] for k in ("n_references", "n_tasks", "extreme_quantile")} == \
        {"n_references": 4, "n_tasks": 30, "extreme_quantile": 0.1}


def test_chance_levels():
    gram = random_gram(1000)
    ids = gram.stimulus.values
    resp = labelled(np.random.default_rng(1).normal(size=(1000, 400)), ids)
    assert abs(float(psychophysics_2afc(resp, None, gram, n_boot=0).score.mean()) - 0.5) < 0.03
    assert abs(float(mis(resp, None, gram, n_boot=0).score.mean()) - 0.5) < 0.03
    ii = interpretability_index(resp, None, gram, n_boot=0)
    assert abs(float(ii.score.mean()) - float(ii.baseline)) < 4 * float(ii.score.std()) / math.sqrt(400)
    assert abs(float(ii.distance.mean()) - float(ii.baseline_distance)) < 4 * float(ii.distance.std()) / math.sqrt(400)


def test_planted_ground_truth(planted_setup):
    stim, gram = planted_setup
    mixings = (0.0, 0.25, 0.5, 1.0)
    for name, fn in MEASURES.items():
        scores = [fn(planted_responses(stim, n_units=30, mixing=m, seed=5), stim, gram, n_boot=0).score.values
                  for m in mixings]
        auc = roc_auc_score(np.r_[np.ones(30), np.zeros(30)], np.r_[scores[0], scores[-1]])
        assert auc >= 0.95, (name, auc)
        means = [s.mean() for s in scores]
        assert all(a >= b - 1e-6 for a, b in zip(means, means[1:])) and means[0] > means[-1] + 0.05, (name, means)


def test_scaling_and_shift_invariance_and_sign_flip(planted_setup):
    stim, gram = planted_setup
    resp = planted_responses(stim, n_units=12, seed=2)
    for fn in MEASURES.values():
        base = fn(resp, stim, gram, n_boot=50)
        moved = fn(0.01 * resp + 5.0, stim, gram, n_boot=50)
        np.testing.assert_array_equal(base.score.values, moved.score.values)
        np.testing.assert_array_equal(base.ci_low.values, moved.ci_low.values)
    # sign flip: 2-AFC and MIS are symmetric in the two ends, II scores the other end
    for name in ("2-AFC", "MIS"):
        a = MEASURES[name](resp, stim, gram, n_boot=0).score.values
        b = MEASURES[name](-resp, stim, gram, n_boot=0).score.values
        assert abs(a.mean() - b.mean()) < 0.05, name
    ii_up = interpretability_index(resp, stim, gram, n_boot=0).score.values
    ii_down = interpretability_index(-resp, stim, gram, n_boot=0).score.values
    assert ii_up.mean() > ii_down.mean() + 0.05


def test_ids_are_aligned_and_dims_kept():
    gram = random_gram(120, seed=9)
    ids = gram.stimulus.values
    vals = np.random.default_rng(10).normal(size=(120, 4))
    resp = labelled(vals, ids, dim="neuron")
    perm = np.random.default_rng(11).permutation(120)
    for fn in (interpretability_index, mis):
        a = fn(resp, None, gram, n_boot=0)
        b = fn(resp.isel(stimulus=perm), None, gram, n_boot=0)
        assert a.score.dims == ("neuron",)
        np.testing.assert_array_equal(a.score.values, b.score.values)


def test_bad_input():
    gram = random_gram(100, seed=12)
    ids = gram.stimulus.values
    vals = np.random.default_rng(13).normal(size=(100, 3))
    nan = vals.copy()
    nan[5, 1] = np.nan
    for fn in MEASURES.values():
        with pytest.raises(DataError, match="NaN"):
            fn(labelled(nan, ids), None, gram)
        with pytest.raises(DataError, match="respond identically"):
            fn(labelled(np.c_[vals[:, :2], np.ones(100)], ids), None, gram)
        with pytest.raises(DataError, match="do not match"):
            fn(labelled(vals, np.array([f"y{i}" for i in range(100)])), None, gram)
        with pytest.raises(DataError, match="do not match"):
            fn(labelled(vals[:90], ids[:90]), None, gram)
        with pytest.raises(DataError, match="have 90 rows but the stimulus set has 100"):
            fn(vals[:90], None, gram)                                  # a bare array is matched by position
    with pytest.raises(DataError, match="too few|cannot draw"):
        mis(labelled(vals[:30], ids[:30]), None, gram.isel(stimulus=slice(0, 30), stimulus_other=slice(0, 30)))
    with pytest.raises(DataError, match="stimulus"):
        mis(xr.DataArray(vals, dims=("image", "unit")), None, gram)
    with pytest.raises(ConfigError, match="stimuli are needed"):
        mis(labelled(vals, ids), None, "pixel")
    with pytest.raises(ConfigError, match="extreme_quantile"):
        mis(labelled(vals, ids), None, gram, extreme_quantile=0.7)
    with pytest.raises(ConfigError, match="n_references and n_tasks"):
        mis(labelled(vals, ids), None, gram, n_tasks=0)


def test_calibrate_alpha_recovers_slope():
    rng = np.random.default_rng(14)
    d = rng.normal(0, 2, 30000)
    correct = rng.random(30000) < 1 / (1 + np.exp(-1.3 * d))
    assert calibrate_alpha(d, correct) == pytest.approx(1.3, abs=0.06)
    with pytest.raises(DataError):
        calibrate_alpha(d, correct[:10])


def test_random_responses_are_chance_for_planted_stimuli(planted_setup):
    stim, gram = planted_setup
    res = mis(random_responses(stim, n_units=200, seed=3), stim, gram, n_boot=100)
    assert abs(float(res.score.mean()) - 0.5) < 0.03
    assert ((res.ci_low <= res.score) & (res.score <= res.ci_high)).all()


def _query_positions(res, vals, ids):
    """Rank of each task's max query among the unit's top, and of its min query among its bottom: U x T x 2."""
    pos = {s: i for i, s in enumerate(ids)}
    out = np.empty(res["query"].shape, int)
    for u in range(vals.shape[1]):
        rank_top, rank_bottom = np.argsort(np.argsort(-vals[:, u])), np.argsort(np.argsort(vals[:, u]))
        for t in range(res.sizes["task"]):
            q_max, q_min = (pos[s] for s in res["query"].values[u, t])
            out[u, t] = rank_top[q_max], rank_bottom[q_min]
    return out


def test_mis_top_and_bottom_draws_have_their_own_streams():
    """Seeds s and s + 1 shared a stream (bottom draws of seed s = top draws of seed s + 1); no longer."""
    gram = random_gram(200, seed=15)
    ids = gram.stimulus.values
    vals = np.random.default_rng(16).normal(size=(200, 6))
    resp = labelled(vals, ids)
    a = _query_positions(mis(resp, None, gram, n_tasks=40, n_boot=0, return_tasks=True), vals, ids)
    b = _query_positions(mis(resp, None, gram, n_tasks=40, n_boot=0, seed=1, return_tasks=True), vals, ids)
    assert (a[..., 1] == b[..., 0]).mean() < 0.3                 # before: 1.0
    assert (a[..., 0] == a[..., 1]).mean() < 0.3
    again = mis(resp, None, gram, n_tasks=40, n_boot=20, return_tasks=True)
    np.testing.assert_array_equal(_query_positions(again, vals, ids), a)   # same seed, same tasks


def test_mis_still_scores_its_tasks_by_the_formula():
    """The scores equal the MIS formula applied to the tasks the measure reports (what MachInterp computes)."""
    gram = random_gram(150, seed=17)
    g, ids = gram.values, gram.stimulus.values
    vals = np.random.default_rng(18).normal(size=(150, 4))
    res = mis(labelled(vals, ids), None, gram, n_references=5, n_tasks=30, alpha=2.0, n_boot=0, return_tasks=True)
    np.testing.assert_allclose(res.score.values, (1 / (1 + np.exp(-2.0 * res.delta.values))).mean(-1), atol=1e-6)


def test_published_alpha_on_another_backend_warns():
    gram = random_gram(100, seed=19)
    resp = labelled(np.random.default_rng(20).normal(size=(100, 3)), gram.stimulus.values)
    with pytest.warns(UserWarning, match="published for DreamSim.*calibrate_alpha.*alpha=None"):
        mis(resp, None, gram, alpha=0.16, n_boot=0)
    with pytest.warns(UserWarning, match="0.45..0.55"):
        mis(resp, None, gram.assign_attrs(backend="dreamsim(batch_size=32)"), alpha=1e-3, n_boot=0)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mis(resp, None, gram.assign_attrs(backend="dreamsim(batch_size=32)"), alpha=0.16 * 100, n_boot=0)
        mis(resp, None, gram, alpha=None, n_boot=0)
    with pytest.raises(ConfigError, match="alpha"):
        mis(resp, None, gram, alpha=float("nan"))


def test_mis_parameter_and_calibration_messages():
    gram = random_gram(100, seed=21)
    resp = labelled(np.random.default_rng(22).normal(size=(100, 3)), gram.stimulus.values)
    with pytest.raises(ConfigError, match="like 0.95"):
        mis(resp, None, gram, ci=95)
    with pytest.raises(ConfigError, match="n_boot"):
        mis(resp, None, gram, n_boot=-1)
    with pytest.raises(ConfigError, match="n_references and n_tasks"):
        mis(resp, None, gram, n_references=2.5)
    with pytest.raises(DataError, match="unbounded"):
        calibrate_alpha([1.0, 2.0, -1.0], [1, 1, 0])                 # the sign of delta predicts every answer
    with pytest.raises(DataError, match="every delta is 0"):
        calibrate_alpha([0.0, 0.0], [1, 0])


def test_similarity_beyond_float32_range_is_rejected():
    """A similarity of 1e300 would overflow the float32 Gram tensor: a DataError, not a warning or inf scores."""
    import numpy as np
    import xarray as xr
    from superpos.core import DataError
    from superpos.measures.mis import mis
    ids = [f"s{i}" for i in range(20)]
    gram = xr.DataArray(np.full((20, 20), 1e300), dims=("stimulus", "stimulus_other"),
                        coords={"stimulus": ids, "stimulus_other": ids})
    resp = xr.DataArray(np.arange(40.0).reshape(20, 2), dims=("stimulus", "unit"), coords={"stimulus": ids})
    with pytest.raises(DataError, match="float32's range"):
        mis(resp, None, gram, n_references=1, n_tasks=1)
