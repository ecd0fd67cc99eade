"""superpos.measures.human (notebook 45): human-data loaders on schema-true synthetic files, and machine-human statistics."""
import ast
import warnings

import numpy as np
import pandas as pd
import pytest

from superpos.core import ConfigError, DataError, MissingFileError
from superpos.measures.borowski import (BOROWSKI_ANCHORS, BOROWSKI_COLUMNS, BOROWSKI_FILES, BOROWSKI_MAPPING_COLUMNS,
                                        BOROWSKI_MAPPING_COMMENT, borowski_accuracy, borowski_unit_scores,
                                        load_borowski, load_borowski_mapping, synthetic_borowski,
                                        synthetic_borowski_mapping)
from superpos.measures.human import (IMI_COLUMNS, IMI_DETAILS, bootstrap_mean, compare_scores, imi_model_scores,
                                     imi_unit_scores, load_imi, separation_auc, synthetic_imi, trial_agreement)

CODES = ["layer_number", "kernel_size_number", "channel_number"]
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


def test_imi_fixture_quirks(imi):
    """The real file: participant_id 'anonymized' on every row; each *_details column its own dictionary."""
    path, _ = imi
    raw = pd.read_csv(path)
    assert (raw.participant_id == "anonymized").all()
    details = {d: raw[f"{d}_details"].map(ast.literal_eval) for d in IMI_DETAILS}
    assert (details["instruction_time"].str["total_time"] == raw.instruction_time_details_extracted).all()
    assert (details["total_response_time"].str["total_time"] == raw.total_response_time_details_extracted).all()
    assert (details["row_variability"].str["n_upper_row"] == raw.row_variability_details_details_upper_extracted).all()
    assert (details["row_variability"].str["n_lower_row"] == raw.row_variability_details_details_lower_extracted).all()
    assert (details["demo_trials"].str["n_demo_trials_blocks"] == raw.demo_trials_details_extracted).all()
    assert (details["catch_trials"].str["ratio"] == raw.catch_trials_details_ratio_extracted).all()
    assert len({frozenset(v.iloc[0]) for v in details.values()}) == 4  # the two time checks share 'total_time'
    assert load_imi(path).participant_id.eq("anonymized").all()


def test_missing_responses_never_count(tmp_path, imi):
    """#17: a trial with NaN `correct` is neither right nor wrong: raise by default, or drop with a count."""
    path, _ = imi
    raw = pd.read_csv(path)
    raw["correct"] = raw["correct"].astype(object)
    main = raw.index[~raw.catch_trial & ~raw.is_demo & ~raw.multi_participation][:5]
    raw.loc[main, "correct"] = np.nan
    raw.to_csv(tmp_path / "nan.csv", index=False)
    with pytest.raises(DataError, match="5 trials have no response"):
        load_imi(tmp_path / "nan.csv")
    with pytest.warns(UserWarning, match="dropped 5"):
        trials = load_imi(tmp_path / "nan.csv", missing="drop")
    assert trials.attrs["n_missing_dropped"] == 5 and len(trials) == len(load_imi(path)) - 5
    with pytest.raises(ConfigError):
        load_imi(path, missing="ignore")
    good = load_imi(path)
    with pytest.raises(DataError, match="NaN"):
        imi_unit_scores(good.assign(correct=good.correct.astype(object).where(good.index > 0)))
    trials_path = tmp_path / BOROWSKI_FILES["I"]
    synthetic_borowski(trials_path, n_subjects=2)
    b = pd.read_csv(trials_path, index_col=0)
    b["correct"] = b["correct"].astype(object)
    b.loc[b.index[(b.trial_type == "main") & ~b.catch_trial][:3], "correct"] = np.nan
    b.to_csv(tmp_path / "b.csv")
    with pytest.raises(DataError, match="missing='drop'"):
        load_borowski(tmp_path / "b.csv")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dropped = load_borowski(tmp_path / "b.csv", missing="drop")
    assert dropped.attrs["n_missing_dropped"] == 3
    assert borowski_unit_scores(dropped).n_trials.sum() == borowski_unit_scores(load_borowski(trials_path)).n_trials.sum() - 3
    bad = load_borowski(trials_path)
    bad["correct"] = bad["correct"].astype(object)
    bad.loc[bad.index[(bad.trial_type == "main") & ~bad.catch_trial][0], "correct"] = np.nan
    with pytest.raises(DataError, match="NaN"):
        borowski_unit_scores(bad)


@pytest.mark.parametrize("experiment", ["I", "II"])
def test_borowski_loader(tmp_path, experiment):
    path = tmp_path / BOROWSKI_FILES[experiment]
    truth = synthetic_borowski(path, experiment, n_subjects=10 if experiment == "I" else 23, seed=1)
    header = path.read_text().splitlines()[0].split(",")
    assert header[0] == "" and header[1:] == BOROWSKI_COLUMNS[experiment]
    trials = load_borowski(path)
    assert trials.attrs["experiment"] == experiment
    assert len(trials) == (1860 if experiment == "I" else 4968)  # the real files' row counts
    units = borowski_unit_scores(trials, by=[])
    main = trials[(trials.trial_type == "main") & ~trials.catch_trial]
    assert units.n_trials.sum() == len(main)
    key = (["batch_block"] if experiment == "II" else []) + CODES
    merged = units.merge(truth, on=key)
    assert len(merged) == len(truth) == len(units)
    if experiment == "II":
        assert units.n_trials.eq(46).all() and set(units.batch_block) == set("abcd")
    assert np.corrcoef(merged.accuracy, merged.p)[0, 1] > 0.5
    split = borowski_unit_scores(trials)
    assert ("condition_name" if experiment == "II" else "instr_type") in split.columns


def test_borowski_letter_codes(tmp_path):
    """Experiment I: the 150 practice and 180 catch rows carry letter codes (layer_r, kernel_size 'r', channel_r)."""
    path = tmp_path / BOROWSKI_FILES["I"]
    synthetic_borowski(path)
    raw = pd.read_csv(path, index_col=0, dtype=str)
    letters = raw.kernel_size.str.fullmatch("[a-z]")
    assert letters.sum() == 330 and set(raw.kernel_size[letters]) <= set("ijklmnopqrstuvw")
    assert (raw.layer[letters] == "layer_" + raw.kernel_size[letters]).all()
    assert (raw.channel[letters] == "channel_" + raw.kernel_size[letters]).all()
    assert set(raw.trial_type[letters]) == {"practice", "main"}
    assert (raw.catch_trial[letters & (raw.trial_type == "main")] == "True").all()
    trials = load_borowski(path)
    assert trials.letter_code.notna().sum() == 330 and trials.loc[trials.letter_code.notna(), CODES].isna().all().all()
    assert trials.loc[trials.letter_code.isna(), CODES].notna().all().all()
    assert borowski_unit_scores(trials).n_trials.sum() == 1350
    raw.loc[raw.index[0], "layer"] = "layer_zz"
    raw.to_csv(tmp_path / "bad.csv")
    with pytest.raises(DataError, match="codes like"):
        load_borowski(tmp_path / "bad.csv")


def test_borowski_anchor(tmp_path):
    """Experiment I main, non-catch accuracy: natural 0.922, optimized 0.820 (on the real file: 415/450, 369/450)."""
    path = tmp_path / BOROWSKI_FILES["I"]
    synthetic_borowski(path, seed=4)
    trials = load_borowski(path)
    acc = borowski_accuracy(trials)
    for instr, value in BOROWSKI_ANCHORS["I"].items():
        assert acc[instr] == pytest.approx(value, abs=5e-4)
    # catch trials (near-perfect) must not enter: with them the numbers differ
    with_catch = trials[trials.trial_type == "main"].groupby("instr_type").correct.mean()
    assert with_catch["natural"] > acc["natural"] + 0.005
    assert synthetic_borowski(tmp_path / "other.csv", targets={"natural": 0.5}) is not None
    assert borowski_accuracy(load_borowski(tmp_path / "other.csv"))["natural"] == pytest.approx(0.5, abs=2e-3)


def test_borowski_mapping_comment_line(tmp_path):
    """Every real mapping file starts with a comment line above the header; letters code practice units."""
    written = synthetic_borowski_mapping(tmp_path / "exp_i", "I")
    first = (tmp_path / "exp_i" / "layer_folder_mapping_sampled_trials.csv").read_text().splitlines()[:2]
    assert first == [BOROWSKI_MAPPING_COMMENT, ",".join(BOROWSKI_MAPPING_COLUMNS)]
    one = load_borowski_mapping(tmp_path / "exp_i" / "layer_folder_mapping_sampled_trials.csv")
    assert len(one) == 45 and one.layer_number.dtype == "Int64"
    folder = load_borowski_mapping(tmp_path / "exp_i")
    assert len(folder) == len(written) == 45 + 20 + 3
    assert set(folder.letter_code.dropna()) == set("abcdefghijklmnopqrstuvw")
    trials_path = tmp_path / BOROWSKI_FILES["I"]
    synthetic_borowski(trials_path, n_subjects=2)
    units = borowski_unit_scores(load_borowski(trials_path), mapping=folder)
    assert units.feature_map_number.notna().all()
    row = units.merge(one, on=CODES, suffixes=("", "_one"))
    assert (row.feature_map_number == row.feature_map_number_one).all()
    (tmp_path / "nohead.csv").write_text("just a comment\n1,2,3\n")
    with pytest.raises(DataError, match="header"):
        load_borowski_mapping(tmp_path / "nohead.csv")
    with pytest.raises(MissingFileError):
        load_borowski_mapping(tmp_path / "absent")
    with pytest.raises(ConfigError):
        load_borowski(trials_path, experiment="III")


def test_borowski_ii_units_per_batch_block(tmp_path):
    """Experiment II: one folder code is a different feature map in each batch block: group and merge per block."""
    path = tmp_path / BOROWSKI_FILES["II"]
    truth = synthetic_borowski(path, "II", n_subjects=23, seed=2)
    written = synthetic_borowski_mapping(tmp_path / "exp_ii", "II", seed=2)
    assert sorted(p.name for p in (tmp_path / "exp_ii").iterdir() if p.is_dir()) == [f"batch_block_{b}" for b in "abcdefgh"]
    mapping = load_borowski_mapping(tmp_path / "exp_ii")
    assert len(mapping) == 8 * 20 and set(mapping.batch_block) == set("abcdefgh")
    trials = load_borowski(path)
    assert set(trials[(trials.trial_type == "main") & ~trials.catch_trial].batch_block) == set("abcd")
    units = borowski_unit_scores(trials, by=[], mapping=mapping)
    assert len(units) == 80 and units.n_trials.eq(46).all()
    expected = written.dropna(subset=["batch_block"]).astype({c: int for c in CODES})
    check = units.merge(expected, on=["batch_block", *CODES], suffixes=("", "_w"))
    assert len(check) == 80 and (check.feature_map_number == check.feature_map_number_w).all()
    # the same folder code differs between blocks, and so does its true accuracy
    assert units.groupby(CODES).feature_map_number.nunique().gt(1).all()
    merged = units.merge(truth, on=["batch_block", *CODES])
    pooled = trials[(trials.trial_type == "main") & ~trials.catch_trial].groupby(CODES).correct.mean()
    per_block_err = np.abs(merged.accuracy - merged.p).mean()
    pooled_err = np.abs(pooled.reindex(pd.MultiIndex.from_frame(merged[CODES])).to_numpy() - merged.p).mean()
    assert per_block_err < pooled_err
    one_block = load_borowski_mapping(tmp_path / "exp_ii" / "batch_block_a" / "layer_folder_mapping_sampled_trials.csv")
    assert set(one_block.batch_block) == {"a"}
    with pytest.raises(DataError, match="all blocks"):
        borowski_unit_scores(trials, mapping=one_block.drop(columns="batch_block"))


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
