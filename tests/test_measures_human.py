"""superpos.measures.human (notebook 45): human-data loaders on schema-true synthetic files, and machine-human statistics."""
import numpy as np
import pandas as pd
import pytest

from superpos.core import ConfigError, DataError, MissingFileError
from superpos.measures.human import (BOROWSKI_COLUMNS, BOROWSKI_FILES, BOROWSKI_MAPPING_COLUMNS, IMI_COLUMNS,
                                     borowski_unit_scores, bootstrap_mean, compare_scores, imi_model_scores,
                                     imi_unit_scores, load_borowski, load_borowski_mapping, load_imi,
                                     separation_auc, synthetic_borowski, synthetic_imi, trial_agreement)

KEYS = ["experiment", "model", "mode", "layer", "channel"]


@pytest.fixture(scope="module")
def imi(tmp_path_factory):
    path = tmp_path_factory.mktemp("imi") / "responses_main.csv"
    truth = synthetic_imi(path, n_units=15, trials_per_unit=60, seed=3)
    return path, truth


def test_imi_schema_and_filters(imi):
    path, truth = imi
    raw = pd.read_csv(path)
    assert list(raw.columns) == IMI_COLUMNS and len(IMI_COLUMNS) == 45
    assert raw.catch_trial.any() and raw.is_demo.any() and raw.multi_participation.any()
    trials = load_imi(path)
    expected = raw[~raw.catch_trial & ~raw.is_demo & ~raw.multi_participation]
    assert len(trials) == len(expected)
    assert trials.channel.dtype.kind == "i"
    assert set(trials.experiment) == set(truth.experiment)
    assert (trials.choice.eq("b") == trials.correct).all()  # 'b' is the max query
    assert len(load_imi(path, keep_demo_catch=True)) == (~raw.multi_participation).sum()


def test_imi_unit_scores_recover_truth(imi):
    path, truth = imi
    units = imi_unit_scores(load_imi(path))
    merged = units.merge(truth, on=KEYS)
    assert len(merged) == len(truth) == len(units)
    assert units.n_trials.between(50, 60).all()
    assert np.abs(merged.accuracy - merged.p).mean() < 0.08
    models = imi_model_scores(units, n_boot=200)
    for _, row in models.iterrows():
        assert row.ci_low <= row.accuracy <= row.ci_high
        assert row.accuracy == pytest.approx(units[units.experiment == row.experiment].accuracy.mean())


def test_imi_experiment_keeps_difficulty(tmp_path):
    """(model, mode) is ambiguous: resnet50 rows may hold resnet50_hard95 tasks; the task_id decides."""
    path = tmp_path / "responses_main.csv"
    synthetic_imi(path, models=("resnet50",), n_units=4, trials_per_unit=5)
    raw = pd.read_csv(path)
    hard = raw.task_id.str.startswith("resnet50_natural-0")
    raw.loc[hard, "task_id"] = "resnet50_hard95_natural-0"
    raw.to_csv(path, index=False)
    trials = load_imi(path)
    assert "resnet50_hard95_natural" in set(trials.experiment)
    assert "resnet50_natural" in set(trials.experiment)


def test_imi_errors(tmp_path, imi):
    path, _ = imi
    with pytest.raises(MissingFileError, match="download_imi"):
        load_imi(tmp_path / "missing.csv")
    raw = pd.read_csv(path)
    raw.drop(columns=["correct"]).to_csv(tmp_path / "a.csv", index=False)
    with pytest.raises(DataError, match="missing columns"):
        load_imi(tmp_path / "a.csv")
    raw[list(reversed(raw.columns))].to_csv(tmp_path / "b.csv", index=False)
    with pytest.raises(DataError, match="order"):
        load_imi(tmp_path / "b.csv")
    bad = raw.copy()
    bad["correct"] = "maybe"
    bad.to_csv(tmp_path / "c.csv", index=False)
    with pytest.raises(DataError, match="boolean"):
        load_imi(tmp_path / "c.csv")


@pytest.mark.parametrize("experiment", ["I", "II"])
def test_borowski_loader(tmp_path, experiment):
    path = tmp_path / BOROWSKI_FILES[experiment]
    truth = synthetic_borowski(path, experiment, n_subjects=8, seed=1)
    header = path.read_text().splitlines()[0].split(",")
    assert header[0] == "" and header[1:] == BOROWSKI_COLUMNS[experiment]
    trials = load_borowski(path)
    assert trials.attrs["experiment"] == experiment
    units = borowski_unit_scores(trials)
    split = "condition_name" if experiment == "II" else "instr_type"
    assert split in units.columns
    main = trials[(trials.trial_type == "main") & ~trials.catch_trial]
    assert units.n_trials.sum() == len(main)
    assert set(units.hand_picked) == {True, False}
    # pooled over the split, accuracies follow the truth
    pooled = main.groupby(["layer_number", "kernel_size_number", "channel_number"]).correct.mean().reset_index()
    merged = pooled.merge(truth, on=["layer_number", "kernel_size_number", "channel_number"])
    assert np.corrcoef(merged.correct, merged.p)[0, 1] > 0.2


def test_borowski_mapping(tmp_path):
    path = tmp_path / "map.csv"
    pd.DataFrame([[0, 3, 1, "mixed3a", "pre_relu", "pool", 230]], columns=BOROWSKI_MAPPING_COLUMNS).to_csv(path, index=False)
    mapping = load_borowski_mapping(path)
    trials_path = tmp_path / BOROWSKI_FILES["I"]
    synthetic_borowski(trials_path, "I", n_subjects=2)
    units = borowski_unit_scores(load_borowski(trials_path), mapping=mapping)
    row = units[(units.layer_number == 0) & (units.kernel_size_number == 3) & (units.channel_number == 1)]
    assert (row.feature_map_number == 230).all() and (row.layer_name == "mixed3a").all()
    with pytest.raises(ConfigError):
        load_borowski(trials_path, experiment="III")


def test_compare_scores_known_answers():
    rng = np.random.default_rng(0)
    human = rng.uniform(0.5, 1, 200)
    res = compare_scores(human * 3 + 1, human, n_boot=300)
    assert res.spearman == pytest.approx(1.0) and res.pearson == pytest.approx(1.0)
    res = compare_scores(rng.normal(size=200), human, n_boot=300)
    assert res.spearman_low < 0 < res.spearman_high
    noisy = human + rng.normal(0, 0.1, 200)
    res = compare_scores(noisy, human, n_boot=300)
    assert res.spearman_low < res.spearman < res.spearman_high and res.spearman > 0.6
    with pytest.raises(DataError):
        compare_scores([1, 2, np.nan], [1, 2, 3])


def test_auc_and_trial_agreement():
    labels = np.r_[np.ones(50, bool), np.zeros(50, bool)]
    assert separation_auc(labels + 0.0, labels, n_boot=100).auc == 1.0
    rng = np.random.default_rng(1)
    res = separation_auc(rng.normal(size=100), labels, n_boot=200)
    assert res.auc_low < 0.5 < res.auc_high
    p = rng.uniform(0, 1, 5000)
    same = trial_agreement(p, p > 0.5)
    assert same.agreement == 1.0 and same.kappa == pytest.approx(1.0)
    indep = trial_agreement(p, rng.random(5000) < 0.7)
    assert abs(indep.kappa) < 0.05 and abs(indep.agreement - indep.chance_agreement) < 0.02
    assert bootstrap_mean([1.0, 1.0, 1.0])[1:] == (1.0, 1.0)
