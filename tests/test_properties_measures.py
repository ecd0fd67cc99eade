"""Property-based tests (hypothesis) of the measures (II, 2-AFC, MIS, their shared pieces) and the comparison
statistics: on any input (shapes, dtypes, NaN / inf, empty, constant, extreme sizes and parameter values) each
call returns a finite, correct-looking result or raises a SuperposError; never another exception, a hang or a
silent NaN. The counts of inputs tried and rejected are printed by the last test (run with -s)."""
import collections
import warnings

import numpy as np
import pytest
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from measures_data import labelled

from superpos.analyses.comparison import (bootstrap_mean_difference, paired_comparison, score_responses,
                                          unpaired_comparison)
from superpos.core import SuperposError
from superpos.geometry.comparison import null_p_value
from superpos.measures.bootstrap import check_bootstrap, seed_streams
from superpos.measures.index import interpretability_index
from superpos.measures.mis import calibrate_alpha, mis
from superpos.measures.twoafc import psychophysics_2afc

COUNTS = collections.defaultdict(lambda: {"tried": 0, "ok": 0, "rejected": 0})
SETTINGS = settings(max_examples=40, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

special = st.sampled_from([np.nan, np.inf, -np.inf, 0.0, 1e300, -1e-300])
BAD = {"whole": [-1, 0, 2.5, np.nan, "3", None, 1e9], "n_boot": [-1, 2.5, np.nan, "10", None],
       "fraction": [95, 0, 1, -0.1, np.nan, np.inf, "0.95", None], "seed": [-1, 1.5, "0", None]}


@st.composite
def parameters(draw, valid: dict, kinds: dict):
    """Valid parameter values, with (a third of the time) one of them replaced by a bad value of its kind."""
    values = {name: draw(strategy) for name, strategy in valid.items()}
    if draw(st.integers(0, 2)) == 0:
        name = draw(st.sampled_from(sorted(kinds)))
        values[name] = draw(st.sampled_from(kinds[name]))
    return values


def run(name, call, check):
    """Call; a result must pass `check`, an error must be a SuperposError (anything else fails the test)."""
    COUNTS[name]["tried"] += 1
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)      # MIS's alpha advice is a warning, not an error
            warnings.simplefilter("error", RuntimeWarning)    # numpy's "invalid value" means a silent NaN
            result = call()
    except SuperposError:
        COUNTS[name]["rejected"] += 1
        return
    check(result)
    COUNTS[name]["ok"] += 1


@st.composite
def responses_and_gram(draw):
    """Responses and a gram: clean (enough stimuli, finite) 3 times in 4, else anything: no units or stimuli,
    NaN / inf in the responses or the gram, constant or integer responses."""
    clean = draw(st.integers(0, 3)) > 0
    n = draw(st.integers(8, 80)) if clean else draw(st.integers(0, 12))
    u = draw(st.integers(1, 4)) if clean else draw(st.integers(0, 3))
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 16)))
    emb = rng.normal(size=(n, 4))
    emb /= np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    gram = emb @ emb.T
    kinds = ["normal", "float32", "ties"] if clean else ["normal", "integer", "constant", "special", "nan_gram"]
    kind = draw(st.sampled_from(kinds))
    values = rng.normal(size=(n, u))
    if kind == "integer":
        values = rng.integers(0, 3, size=(n, u))
    elif kind == "constant":
        values = np.ones((n, u))
    elif kind == "ties":
        values = np.round(values) + np.arange(n)[:, None] * 1e-3 * (rng.random() < 0.5)
    elif kind == "special" and n and u:
        values[rng.integers(n), rng.integers(u)] = draw(special)
    elif kind == "float32":
        values = values.astype(np.float32)
    elif kind == "nan_gram" and n:
        gram[rng.integers(n), rng.integers(n)] = draw(special)
    ids = np.array([f"x{i}" for i in range(n)])
    gram = xr.DataArray(gram, dims=("stimulus", "stimulus_other"), coords={"stimulus": ids, "stimulus_other": ids})
    return labelled(values, ids), gram


def check_measure(bounded, with_interval):
    def check(res):
        score = res.score.values
        assert score.size and np.isfinite(score).all(), score
        if bounded:
            assert ((0 <= score) & (score <= 1)).all(), score
        if with_interval:
            low, high = res.ci_low.values, res.ci_high.values
            assert np.isfinite(low).all() and np.isfinite(high).all(), (low, high)
            assert (low <= high + 1e-6).all()
    return check


def bootstrapped(p):
    return isinstance(p["n_boot"], int) and p["n_boot"] > 0


@SETTINGS
@given(responses_and_gram(), parameters(
    {"n_references": st.integers(2, 6), "n_boot": st.integers(0, 20), "ci": st.floats(0.5, 0.99),
     "interval": st.sampled_from(["stimuli", "references"]), "diagonal": st.sampled_from(["exclude", "include"]),
     "seed": st.integers(0, 5)},
    {"n_references": BAD["whole"] + [1], "n_boot": BAD["n_boot"], "ci": BAD["fraction"], "seed": BAD["seed"],
     "interval": ["stimulus", None], "diagonal": ["zero", True]}))
def test_interpretability_index_is_finite_or_rejected(data, p):
    resp, gram = data
    run("interpretability_index", lambda: interpretability_index(resp, None, gram, **p),
        check_measure(False, bootstrapped(p)))


@SETTINGS
@given(responses_and_gram(), parameters(
    {"n_references": st.integers(1, 3), "n_tasks": st.integers(1, 4),
     "query_quantiles": st.sampled_from([(0.0,), (0.0, 0.25), (0.1,), [0.0, 0.2]]),
     "temperature": st.sampled_from([1.0, 0.1, 1e-6, 100.0]), "n_boot": st.integers(0, 20),
     "ci": st.floats(0.5, 0.99), "zscore": st.booleans()},
    {"n_references": BAD["whole"], "n_tasks": BAD["whole"], "n_boot": BAD["n_boot"], "ci": BAD["fraction"],
     "query_quantiles": [0.25, (), (0.6,), (0.1, 0.1), "0.1", (np.nan,), [[0.0]], None],
     "temperature": [0.0, -1.0, np.nan, np.inf, "1"], "zscore": ["yes", None]}))
def test_psychophysics_2afc_is_finite_or_rejected(data, p):
    resp, gram = data
    run("psychophysics_2afc", lambda: psychophysics_2afc(resp, None, gram, **p), check_measure(True, bootstrapped(p)))


@SETTINGS
@given(responses_and_gram(), parameters(
    {"n_references": st.integers(1, 4), "n_tasks": st.integers(1, 30),
     "extreme_quantile": st.sampled_from([0.2, 0.5, 0.35]), "alpha": st.sampled_from([None, 0.16, 5.0, 50.0]),
     "n_boot": st.integers(0, 20), "ci": st.floats(0.5, 0.99)},
    {"n_references": BAD["whole"], "n_tasks": BAD["whole"], "n_boot": BAD["n_boot"], "ci": BAD["fraction"],
     "extreme_quantile": [0.0, 0.7, np.nan, "0.2", None], "alpha": [np.nan, np.inf, "0.16"]}))
def test_mis_is_finite_or_rejected(data, p):
    resp, gram = data
    run("mis", lambda: mis(resp, None, gram, **p), check_measure(True, bootstrapped(p)))


@SETTINGS
@given(responses_and_gram(), st.sampled_from([("ii",), ("mis",), "ii", ("ii", "2afc"), "ii,mis", (), ("x",)]),
       st.integers(-1, 5))
def test_score_responses_is_finite_or_rejected(data, measures, n_boot):
    resp, gram = data

    def check(table):
        assert len(table) and np.isfinite(table.score).all()
        if n_boot > 0:
            assert np.isfinite(table.ci_low).all() and np.isfinite(table.ci_high).all()
    run("score_responses", lambda: score_responses(resp, gram, measures, n_references=2, n_tasks=2, n_boot=n_boot),
        check)


scores = st.one_of(st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=30),
                   st.lists(st.floats(0, 1), min_size=0, max_size=30),
                   st.lists(st.one_of(st.floats(0, 1), special), min_size=1, max_size=10),
                   st.integers(1, 20).map(lambda n: [0.5] * n))


@SETTINGS
@given(scores, scores, parameters({"n_boot": st.integers(1, 50), "ci": st.floats(0.5, 0.99), "seed": st.integers(0, 3)},
                                  {"n_boot": BAD["n_boot"] + [0], "ci": BAD["fraction"], "seed": BAD["seed"]}))
def test_comparisons_are_finite_or_rejected(a, b, p):
    n_boot, ci, seed = p["n_boot"], p["ci"], p["seed"]
    def finite(values):
        assert all(np.isfinite(v) for v in values), values

    run("bootstrap_mean_difference", lambda: bootstrap_mean_difference(a, b, n_boot=n_boot, ci=ci, seed=seed), finite)
    run("unpaired_comparison", lambda: unpaired_comparison(a, b, n_boot=n_boot, seed=seed),
        lambda row: finite([row["difference"], row["ci_low"], row["ci_high"], row["p_value"]]))
    run("paired_comparison", lambda: paired_comparison(a, b),
        lambda row: finite([row["paired_median_difference"], row["paired_p_value"]]))


@SETTINGS
@given(st.one_of(st.floats(-10, 10), st.floats(-10, 10), special),
       st.one_of(st.lists(st.floats(-10, 10), max_size=20), st.lists(st.one_of(st.floats(-10, 10), special), max_size=20)),
       st.sampled_from(["greater", "less", "two"]))
def test_null_p_value_is_a_probability_or_rejected(observed, null, alternative):
    run("null_p_value", lambda: null_p_value(observed, null, alternative=alternative),
        lambda p: (0 < p <= 1) or pytest.fail(p))


@st.composite
def human_trials(draw):
    """delta and correct of (mostly) the same length; correct mostly 0/1, delta mostly finite."""
    n = draw(st.integers(0, 40))
    delta = draw(st.lists(st.floats(-5, 5), min_size=n, max_size=n) if draw(st.booleans()) else
                 st.lists(st.one_of(st.floats(-5, 5), special), min_size=n, max_size=n))
    correct = draw(st.lists(st.integers(0, 1), min_size=n, max_size=n) if draw(st.integers(0, 3)) else
                   st.lists(st.integers(-1, 2), max_size=40))
    return delta, correct


@SETTINGS
@given(human_trials())
def test_calibrate_alpha_is_finite_or_rejected(trials):
    run("calibrate_alpha", lambda: calibrate_alpha(*trials), lambda alpha: np.isfinite(alpha) or pytest.fail(alpha))


@SETTINGS
@given(st.one_of(st.integers(0, 100), st.sampled_from(BAD["n_boot"])),
       st.one_of(st.floats(0.01, 0.99), st.sampled_from(BAD["fraction"])),
       st.one_of(st.integers(0, 2 ** 40), st.sampled_from(BAD["seed"])))
def test_shared_checks_accept_or_reject(n_boot, ci, seed):
    run("check_bootstrap", lambda: check_bootstrap(n_boot, ci), lambda n: n >= 0 or pytest.fail(n))
    run("seed_streams", lambda: seed_streams(seed, 3), lambda s: len(set(s)) == 3 or pytest.fail(s))


def test_constant_machine_scores_have_no_correlation():
    """Before: spearman NaN next to a finite bootstrap interval (ties ranked by argsort)."""
    from superpos.measures.human import compare_scores
    with pytest.raises(SuperposError, match="same for every unit"):
        compare_scores(np.full(10, 0.5), np.linspace(0, 1, 10))
    row = compare_scores(np.linspace(0, 1, 10) ** 2, np.linspace(0, 1, 10), n_boot=50)
    assert row["spearman"] == pytest.approx(1.0) and np.isfinite(row[["spearman_low", "pearson_low"]]).all()


def test_report_counts():
    """The note's numbers: inputs tried and rejected cleanly per function (print with -s)."""
    total = {key: sum(c[key] for c in COUNTS.values()) for key in ("tried", "ok", "rejected")}
    for name, c in sorted(COUNTS.items()):
        print(f"{name:28s} tried {c['tried']:4d}  ok {c['ok']:4d}  rejected {c['rejected']:4d}")
    print(f"{'total':28s} tried {total['tried']:4d}  ok {total['ok']:4d}  rejected {total['rejected']:4d}")
    if COUNTS:                                   # run together with the property tests above
        assert total["ok"] > 0 and total["rejected"] > 0
