"""The comparison statistics shared by the CNN and brain analyses (superpos.analyses.comparison)."""
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from scipy import stats
from scipy.optimize import linear_sum_assignment

from superpos.analyses.comparison import (bootstrap_mean_difference, compare_methods, unpaired_comparison,
                                          compare_to_reference, matched_pairs, paired_comparison,
                                          participation_ratio, score_responses)
from superpos.core import ConfigError, DataError


def test_bootstrap_and_comparison_detect_a_planted_difference():
    rng = np.random.default_rng(1)
    diff, low, high = bootstrap_mean_difference(rng.normal(0.5, 1, 400), rng.normal(0, 1, 400))
    assert low < diff < high and low > 0.2 and high < 0.8
    same = pd.DataFrame({"weights": "w", "layer": "l", "measure": "ii", "k_multiple": 1.0,
                         "method": ["units"] * 100 + ["kmeans"] * 100, "score": rng.normal(0, 1, 200)})
    row = compare_methods(same).iloc[0]
    assert row.ci_low < 0 < row.ci_high and row.p_value > 0.01


def test_compare_methods_columns_and_rows():
    rng = np.random.default_rng(0)
    scores = pd.DataFrame({"weights": "w", "layer": np.repeat(["a", "b"], 60), "measure": "ii",
                           "method": np.tile(["units"] * 20 + ["kmeans"] * 40, 2),
                           "k_multiple": np.tile([1.0] * 20 + [1.0] * 20 + [2.0] * 20, 2),
                           "score": rng.normal(size=120)})
    table = compare_methods(scores)
    assert list(table.columns) == ["weights", "layer", "method", "k_multiple", "measure", "mean", "reference_mean",
                                   "difference", "ci_low", "ci_high", "p_value", "n", "n_reference"]
    assert len(table) == 4 and set(table.n) == {20} and set(table.n_reference) == {20}
    assert compare_methods(scores, measure="mis").empty


def test_unpaired_comparison_is_the_unpaired_test():
    rng = np.random.default_rng(2)
    a, b = rng.normal(0.3, 1, 30), rng.normal(0, 1, 25)
    row = unpaired_comparison(a, b, n_boot=500, seed=3)
    assert row["p_value"] == pytest.approx(stats.mannwhitneyu(a, b, alternative="two-sided").pvalue)
    assert (row["difference"], row["ci_low"], row["ci_high"]) == pytest.approx(
        bootstrap_mean_difference(a, b, n_boot=500, seed=3))


def old_brain_matched_pairs(neurons, directions):
    """The brain notebook's own matching before the redesign (reference for the shared one)."""
    a = (neurons - neurons.mean(0)) / (neurons.std(0) + 1e-12)
    b = (directions - directions.mean(0)) / (directions.std(0) + 1e-12)
    return linear_sum_assignment(-np.abs(a.T @ b) / len(a))


@pytest.mark.parametrize("seed", range(5))
def test_matching_equals_the_brain_notebooks_former_matching(seed):
    rng = np.random.default_rng(seed)
    neurons = rng.normal(size=(50, 8))
    directions = neurons @ rng.normal(size=(8, 8)) + 0.5 * rng.normal(size=(50, 8))
    got = matched_pairs(xr.DataArray(neurons, dims=("stimulus", "neuron")),
                        xr.DataArray(directions, dims=("stimulus", "direction")))
    want = old_brain_matched_pairs(neurons, directions)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


def test_matching_uses_stimulus_ids_and_positions():
    rng = np.random.default_rng(0)
    ids = [f"s{i}" for i in range(30)]
    neurons = xr.DataArray(rng.normal(size=(30, 3)), dims=("stimulus", "neuron"),
                           coords={"stimulus": ids, "neuron": ["n7", "n8", "n9"]})
    directions = xr.DataArray(neurons.values[:, [1, 2, 0]], dims=("stimulus", "direction"),
                              coords={"stimulus": ids, "direction": [10, 20, 30]}).isel(stimulus=rng.permutation(30))
    pairs_n, pairs_d = matched_pairs(neurons, directions)
    np.testing.assert_array_equal(pairs_n, [0, 1, 2])
    np.testing.assert_array_equal(pairs_d, [2, 0, 1])
    with pytest.raises(DataError):
        matched_pairs(neurons, directions.isel(stimulus=slice(0, 20)))


def test_paired_comparison_is_the_wilcoxon_test():
    rng = np.random.default_rng(4)
    a, b = rng.normal(0.2, 1, 40), rng.normal(0, 1, 40)
    row = paired_comparison(a, b)
    assert row["paired_p_value"] == pytest.approx(stats.wilcoxon(a - b).pvalue)
    assert row["paired_median_difference"] == pytest.approx(np.median(a - b))
    assert paired_comparison(a, a)["paired_p_value"] == 1.0


def test_compare_to_reference_pairs_matched_members():
    rng = np.random.default_rng(5)
    neurons = xr.DataArray(rng.normal(size=(40, 4)), dims=("stimulus", "neuron"))
    order = [3, 1, 0, 2]
    directions = xr.DataArray(neurons.values[:, order], dims=("stimulus", "direction"))
    neuron_scores = np.array([0.1, 0.2, 0.3, 0.4])
    direction_scores = neuron_scores[order] + 0.05  # every direction 0.05 above the neuron it copies
    row = compare_to_reference(direction_scores, neuron_scores, responses=directions, reference_responses=neurons)
    assert row["paired_median_difference"] == pytest.approx(0.05) and row["n_pairs"] == 4
    unpaired = compare_to_reference(direction_scores, neuron_scores)
    assert "paired_p_value" not in unpaired and unpaired["difference"] == pytest.approx(0.05)
    with pytest.raises(ConfigError, match="both"):
        compare_to_reference(direction_scores, neuron_scores, reference_responses=neurons)


def test_participation_ratio_known_answers():
    np.testing.assert_allclose(participation_ratio(np.array([[1.0, 1.0, 0, 0]]) / np.sqrt(2)), [2.0])
    np.testing.assert_allclose(participation_ratio(np.eye(4)), np.ones(4))


@pytest.mark.parametrize("dim", ["unit", "neuron", "direction"])
def test_score_responses_keeps_any_response_dim(dim):
    ids = [f"s{i}" for i in range(6)]
    group = np.repeat([0, 1], 3)
    gram = xr.DataArray(np.where(group[:, None] == group[None], 0.9, 0.1), dims=("stimulus", "stimulus_other"),
                        coords={"stimulus": ids, "stimulus_other": ids})
    responses = xr.DataArray(np.array([[6, 6], [5, 1], [4, 2], [3, 5], [2, 3], [1, 4.]]), dims=("stimulus", dim),
                             coords={"stimulus": ids, dim: ["x", "y"]})
    table = score_responses(responses, gram, ("ii",), n_references=2, n_boot=10)
    assert table["index"].tolist() == ["x", "y"]
    np.testing.assert_allclose(table.score, [0.9, 0.1])
    with pytest.raises(ConfigError, match="unknown measure"):
        score_responses(responses, gram, ("ii", "accuracy"))


def test_nan_and_degenerate_scores_are_errors_with_their_fix():
    with pytest.raises(DataError, match="NaN or infinite"):
        bootstrap_mean_difference([0.5, np.nan, 0.7], [0.4, 0.5])      # before: NaN difference and interval
    with pytest.raises(DataError, match="at least 1"):
        unpaired_comparison([], [0.4, 0.5])
    with pytest.raises(ConfigError, match=r"like 0.95; got 95 \(for a 95% interval pass ci=0.95\)"):
        bootstrap_mean_difference([0.5, 0.6], [0.4, 0.5], ci=95)
    with pytest.raises(ConfigError, match="n_boot"):
        bootstrap_mean_difference([0.5, 0.6], [0.4, 0.5], n_boot=-1)
    with pytest.raises(DataError, match="one reference per score"):
        paired_comparison([0.5, 0.6], [0.4])
    with pytest.raises(DataError, match="NaN"):
        paired_comparison([0.5, np.inf], [0.4, 0.4])
    row = unpaired_comparison(np.full(10, 0.5), np.full(8, 0.5))       # constant scores: a finite answer
    assert (row["difference"], row["ci_low"], row["ci_high"], row["p_value"]) == (0.0, 0.0, 0.0, 1.0)
    with pytest.raises(DataError, match="lacks the column"):
        compare_methods(pd.DataFrame({"method": ["units"], "score": [0.1]}))


def test_permutation_p_value_rejects_nan_statistics_and_empty_nulls():
    from superpos.geometry.comparison import null_p_value
    with pytest.raises(DataError, match="observed statistic is nan"):
        null_p_value(np.nan, np.arange(10.0))                           # before: the smallest p, 1/11
    with pytest.raises(DataError, match="n_permutations >= 1"):
        null_p_value(0.5, [])                                           # before: p = 1
    with pytest.raises(DataError, match="NaN"):
        null_p_value(0.5, [0.1, np.nan])
    assert null_p_value(0.5, [0.1, 0.9]) == pytest.approx(2 / 3)


def test_score_responses_uses_the_stimulus_interval_for_ii():
    from superpos.measures.index import interpretability_index
    rng = np.random.default_rng(6)
    ids = [f"s{i}" for i in range(40)]
    emb = rng.normal(size=(40, 5))
    gram = xr.DataArray(np.corrcoef(emb), dims=("stimulus", "stimulus_other"),
                        coords={"stimulus": ids, "stimulus_other": ids})
    responses = xr.DataArray(rng.normal(size=(40, 3)), dims=("stimulus", "unit"), coords={"stimulus": ids})
    table = score_responses(responses, gram, "ii", n_references=3, n_boot=50)
    want = interpretability_index(responses, None, gram, n_references=3, n_boot=50, interval="stimuli")
    np.testing.assert_allclose(table.ci_low, want.ci_low.values)
    refs = score_responses(responses, gram, "ii", n_references=3, n_boot=50, ii_interval="references")
    assert not np.allclose(refs.ci_low, table.ci_low)
