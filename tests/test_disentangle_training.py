"""Property tests of superpos.disentangle.training and .runs: config errors, checkpoints and exact
resume, short training runs on every pair dataset, the comparison and the command line."""
import os
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from superpos.core import ConfigError, DataError, MissingFileError
from superpos.disentangle import runs, training
from superpos.disentangle.natural import write_kitti_fixture, write_natural_sprites_fixture
from superpos.disentangle.training import SlowVAEConfig, load_checkpoint, load_model, train

torch.set_num_threads(1)
FAST = dict(device="cpu", progress=False, eval_samples=0, log_every=1, checkpoint_every=2, channels_last=True)


# ---------------------------------------------------------------- config
@pytest.mark.parametrize("values,message", [
    ({"gama": 1.0}, "did you mean 'gamma'"), ({"not_a_key": 1}, "unknown SlowVAEConfig key"),
    ({"rate_data": -2.0}, "rate_data must be a number > 0"), ({"z_dim": 0}, "z_dim must be an integer >= 1"),
    ({"rate_prior": 0.0}, "rate_prior must be a number > 0"), ({"batch_size": 7}, "even"),
    ({"lr": "fast"}, "lr must be a number"), ({"k": 9}, "k must be an integer"),
    ({"transitions": "gauss"}, "'laplace' or 'uniform'"), ({"dataset": "mnist"}, "'dsprites' or"), ({"z_dim": 2.5}, "z_dim must be an integer"),
    ({"checkpoint_every": 150, "log_every": 100}, "multiple of log_every"), ({"amp": 1}, "amp must be True"),
    ({"beta": float("nan")}, "beta must be a number"), ({"n_iterations": -1}, "n_iterations"),
])
def test_config_errors(values, message):
    with pytest.raises(ConfigError, match=message):
        SlowVAEConfig.from_dict(values)


def test_config_roundtrip_and_train_rejects_unknown_keys(tmp_path):
    config = SlowVAEConfig.betavae(seed=2, rate_data=-1)
    assert SlowVAEConfig.from_dict(config.to_dict()) == config
    assert (config.beta, config.gamma) == (8.0, 0.0)
    with pytest.raises(ConfigError, match="unknown"):
        train(output_dir=tmp_path, n_iteration=3)
    with pytest.raises(ConfigError, match="did you mean 'n_iterations'"):
        train(config, n_iteration=3)                      # overrides of a config object are checked too
    with pytest.raises(ConfigError, match="did you mean 'gamma'"):
        SlowVAEConfig.betavae(gama=1.0)


def test_config_is_a_plain_dataclass():
    """The generated __init__ (keyword-only) and validation in __post_init__."""
    import dataclasses
    assert dataclasses.is_dataclass(SlowVAEConfig)
    assert SlowVAEConfig.__init__.__qualname__ == "SlowVAEConfig.__init__"
    with pytest.raises(TypeError):
        SlowVAEConfig(gama=1.0)                           # unknown keys: from_dict gives the hint
    with pytest.raises(ConfigError, match="z_dim"):
        dataclasses.replace(SlowVAEConfig(), z_dim=0)
    assert SlowVAEConfig(n_iterations=1e3).n_iterations == 1000


# ---------------------------------------------------------------- checkpoints and resume
def _state(folder):
    return load_checkpoint(folder)


def _assert_same_run(a, b):
    sa, sb = _state(a), _state(b)
    assert sa["step"] == sb["step"]
    for key in sa["model"]:
        assert torch.equal(sa["model"][key], sb["model"][key]), key
    for pa, pb in zip(sa["optimizer"]["state"].values(), sb["optimizer"]["state"].values()):
        assert all(torch.equal(pa[k], pb[k]) for k in pa)
    assert torch.equal(sa["data"], sb["data"])
    assert torch.equal(sa["noise"], sb["noise"])


def _losses(folder):
    logs = pd.read_csv(folder / training.LOG_NAME)
    return logs[logs.metric != "it_per_s"].reset_index(drop=True)


@pytest.mark.parametrize("amp", [False, True])
def test_resume_reproduces_uninterrupted_run_exactly(tmp_path, amp):
    whole, split = tmp_path / "whole", tmp_path / "split"
    train(output_dir=whole, n_iterations=6, amp=amp, **FAST)
    train(output_dir=split, n_iterations=3, amp=amp, **{**FAST, "checkpoint_every": 3, "log_every": 1})
    assert _state(split)["step"] == 3
    train(output_dir=split, n_iterations=6, amp=amp, **FAST)
    _assert_same_run(whole, split)
    pd.testing.assert_frame_equal(_losses(whole), _losses(split))


def test_crash_loses_at_most_one_checkpoint_interval(tmp_path, monkeypatch):
    whole, crashed = tmp_path / "whole", tmp_path / "crashed"
    train(output_dir=whole, n_iterations=6, **FAST)
    real_step, calls = training._train_step, []

    def crashing_step(*args):
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt("simulated crash")
        return real_step(*args)

    monkeypatch.setattr(training, "_train_step", crashing_step)
    with pytest.raises(KeyboardInterrupt):
        train(output_dir=crashed, n_iterations=6, **FAST)
    assert _state(crashed)["step"] == 4            # the last checkpoint before the crash
    monkeypatch.setattr(training, "_train_step", real_step)
    train(output_dir=crashed, n_iterations=6, **FAST)
    _assert_same_run(whole, crashed)
    pd.testing.assert_frame_equal(_losses(whole), _losses(crashed))


def test_bad_checkpoints_raise_clear_errors(tmp_path):
    folder = tmp_path / "run"
    train(output_dir=folder, n_iterations=2, **FAST)
    path = folder / training.CHECKPOINT_NAME
    with pytest.raises(ConfigError, match="gamma: checkpoint 10.0 vs now 0.0"):
        train(output_dir=folder, n_iterations=4, gamma=0.0, **FAST)
    with pytest.raises(ConfigError, match="raise n_iterations"):
        train(output_dir=folder, n_iterations=1, **FAST)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="corrupt or truncated"):
        train(output_dir=folder, n_iterations=4, **FAST)
    torch.save({"weights": torch.zeros(3)}, path)
    with pytest.raises(DataError, match="is not a"):
        load_model(path)
    with pytest.raises(MissingFileError, match="no checkpoint"):
        load_checkpoint(tmp_path / "elsewhere")


def test_resume_false_starts_afresh(tmp_path):
    train(output_dir=tmp_path, n_iterations=2, **FAST)
    train(output_dir=tmp_path, n_iterations=2, **{**FAST, "gamma": 0.0, "resume": False})
    assert _state(tmp_path)["config"]["gamma"] == 0.0
    assert pd.read_csv(tmp_path / training.LOG_NAME).step.max() == 2


# ---------------------------------------------------------------- training
def test_short_training_reduces_the_loss_and_logs_metrics(tmp_path):
    logs = train(output_dir=tmp_path, n_iterations=40, lr=5e-4, device="cpu", progress=False, log_every=10,
                 eval_every=20, eval_samples=300, checkpoint_every=20)
    loss = logs[logs.metric == "loss"].value.to_numpy()
    assert loss[-1] < 0.8 * loss[0], loss
    scores = logs[logs.metric == "mcc"]
    assert scores.step.tolist() == [0, 20, 40] and scores.value.between(0, 1).all()
    model = load_model(logs.attrs["checkpoint"])
    saved = load_checkpoint(tmp_path)["model"]
    assert all(torch.equal(v, saved[k]) for k, v in model.state_dict().items())


def test_bfloat16_autocast_computes_the_same_loss(tmp_path):
    fp32 = train(output_dir=tmp_path / "fp32", n_iterations=3, amp=False, **FAST)
    bf16 = train(output_dir=tmp_path / "bf16", n_iterations=3, amp=True, **FAST)
    a, b = (logs[logs.metric != "it_per_s"].value.to_numpy() for logs in (fp32, bf16))
    np.testing.assert_allclose(b, a, rtol=0.02, atol=0.05)     # same data, init and noise; bf16 rounding only
    assert not np.array_equal(a, b)


@pytest.mark.skipif(shutil.which(os.environ.get("CXX", "g++")) is None,
                    reason="torch.compile on the CPU needs a C++ compiler (g++ or $CXX)")
@pytest.mark.parametrize("amp,tolerance", [(False, 1e-3), (True, 2e-2)])
def test_compiled_training_matches_eager(tmp_path, amp, tolerance):
    """torch.compile with autocast (the CUDA default) computes what the eager step does; checked on the CPU."""
    eager = train(output_dir=tmp_path / "eager", n_iterations=3, amp=amp, compile=False, **FAST)
    compiled = train(output_dir=tmp_path / "compiled", n_iterations=3, amp=amp, compile=True, **FAST)
    a, b = (logs[logs.metric != "it_per_s"].value.to_numpy() for logs in (eager, compiled))
    np.testing.assert_allclose(b, a, rtol=tolerance, atol=tolerance)


def test_run_records_the_resolved_precision(tmp_path):
    import yaml
    logs = train(output_dir=tmp_path, n_iterations=1, **FAST)
    record = yaml.safe_load((tmp_path / "config.yaml").read_text())
    native = training.native_bf16(torch.device("cpu"))
    assert record["amp"] is native and logs.attrs["amp"] is native
    assert record["compile"] is False and record["device"] == "cpu"
    assert _state(tmp_path)["config"]["amp"] is None        # the checkpoint keeps the setting, not its resolution


def test_compare_writes_a_table_a_record_and_logs(tmp_path):
    import yaml
    settings = dict(device="cpu", output_dir=tmp_path, progress=False, log_every=1, checkpoint_every=2,
                    eval_every=2, eval_samples=200)
    table = runs.compare("0,1", 2, **settings)
    assert table[["model", "seed"]].values.tolist() == [["SlowVAE", 0], ["SlowVAE", 1], ["beta-VAE", 0], ["beta-VAE", 1]]
    assert table.step.eq(2).all() and table.mcc.between(0, 1).all() and table.mig.between(0, 1).all()
    record = yaml.safe_load((tmp_path / "compare.yaml").read_text())
    assert record["seeds"] == [0, 1] and record["n_iterations"] == 2 and "git_commit" in record
    assert record["models"]["beta-VAE"] == {"beta": 8.0, "gamma": 0.0}
    loaded, curves = runs.load_comparison(tmp_path)
    pd.testing.assert_frame_equal(loaded, table)
    assert loaded.attrs["record"]["seeds"] == [0, 1]
    final = curves[(curves.step == 2) & (curves.metric == "mcc")].merge(table, on=["model", "seed"])
    assert len(final) == 4
    np.testing.assert_allclose(final.value.to_numpy(), final.mcc.to_numpy())
    again = runs.compare("0,1", 2, **settings)                  # finished runs resume at their end
    pd.testing.assert_frame_equal(again, table)


def test_command_line_train(tmp_path, capsys):
    assert runs.main(["train", "--n-iterations", "2", "--device", "cpu", "--eval-samples", "0",
                         "--progress", "false", "--log-every", "1", "--output-dir", str(tmp_path)]) == 0
    assert "loss" in capsys.readouterr().out
    assert _state(tmp_path)["step"] == 2


@pytest.mark.parametrize("dataset", ["natural_sprites", "kitti_masks"])
def test_training_on_natural_datasets_resumes_exactly(tmp_path, dataset):
    if dataset == "natural_sprites":
        path = write_natural_sprites_fixture(tmp_path / "n.csv", n_objects=30, seed=0)
    else:
        path = write_kitti_fixture(tmp_path / "k.pickle", n_sequences=6, seed=0)
    settings = dict(dataset=dataset, data_path=str(path), batch_size=8, **FAST)
    whole, split = tmp_path / "whole", tmp_path / "split"
    logs = train(output_dir=whole, n_iterations=4, **{**settings, "eval_samples": 40, "eval_every": 2,
                                                      "eval_metrics": "mcc"})
    assert logs[logs.metric == "mcc"].step.tolist() == [0, 2, 4]
    train(output_dir=split, n_iterations=2, **settings)
    train(output_dir=split, n_iterations=4, **settings)
    sa, sb = _state(whole), _state(split)
    assert all(torch.equal(sa["model"][k], sb["model"][k]) for k in sa["model"])
    assert torch.equal(sa["data"], sb["data"])
    model = load_model(whole)
    assert model.n_channels == (3 if dataset == "natural_sprites" else 1)


def test_each_dataset_is_scored_with_its_published_metrics(tmp_path):
    from superpos.disentangle.sampled_metrics import INTERVENTION_METRICS, REPRESENTATION_METRICS
    assert training.EVAL_METRICS["kitti_masks"] == ("mcc",)
    assert training.EVAL_METRICS["natural_sprites"] == REPRESENTATION_METRICS + INTERVENTION_METRICS  # the full set
    kitti = write_kitti_fixture(tmp_path / "k.pickle", n_sequences=6, seed=0)
    logs = train(output_dir=tmp_path / "k", n_iterations=1, dataset="kitti_masks", data_path=str(kitti),
                 batch_size=8, **{**FAST, "eval_samples": 40})
    assert set(logs.metric) - set(training.LOSS_TERMS) == {"mcc", "it_per_s"}          # MCC only
    # Natural Sprites: every metric; a subset here (DCI's boosted trees take minutes on a CPU)
    csv = write_natural_sprites_fixture(tmp_path / "n.csv", n_objects=60, seed=0)
    logs = train(output_dir=tmp_path / "n", n_iterations=1, dataset="natural_sprites", data_path=str(csv),
                 batch_size=8, **{**FAST, "eval_samples": 300, "eval_metrics": "mcc,mig,sap,modularity,irs,unsupervised"})
    scores = logs[logs.step == 1].set_index("metric").value
    assert {"mcc", "mig", "sap", "modularity", "irs", "gaussian_total_correlation", "mutual_info_score"} <= set(scores.index)
    assert scores[["mcc", "mig", "sap", "modularity", "irs"]].between(0, 1).all()
    with pytest.raises(ConfigError, match="eval_metrics: unknown"):
        SlowVAEConfig(eval_metrics="mcc,migg")


def test_natural_sprites_evaluation_intervenes_through_the_ground_truth(tmp_path, monkeypatch):
    from superpos.disentangle.model import VAE
    from superpos.disentangle.natural import NaturalSprites, NaturalSpritesGroundTruth
    # the real settings are small already; smaller still here (a few hundred rendered images)
    monkeypatch.setattr(training, "INTERVENTION_SETTINGS", {
        "beta_vae": dict(batch_size=4, n_train=30, n_eval=20),
        "factor_vae": dict(batch_size=4, n_train=30, n_eval=20, n_variance=60, threshold=0.0)})
    csv = write_natural_sprites_fixture(tmp_path / "n.csv", n_objects=40, seed=0)
    logs = train(output_dir=tmp_path / "n", n_iterations=1, dataset="natural_sprites", data_path=str(csv),
                 batch_size=8, **{**FAST, "eval_samples": 100, "eval_metrics": "mcc,beta_vae,factor_vae"})
    scores = logs[logs.step == 1].set_index("metric").value
    assert {"mcc", "beta_vae", "factor_vae"} <= set(scores.index)
    assert scores[["beta_vae", "factor_vae"]].between(0, 1).all()
    # evaluate: seeded through the ground truth, and refused without one
    data = NaturalSprites(csv, device="cpu")
    images, factors = training.eval_set(50, dataset=data)
    model, truth = VAE(n_channels=3), NaturalSpritesGroundTruth(data)
    a = training.evaluate(model, images, factors, metrics="beta_vae,factor_vae", ground_truth=truth)
    b = training.evaluate(model, images, factors, metrics="beta_vae,factor_vae", ground_truth=truth)
    assert a == b and set(a) == {"beta_vae", "factor_vae"}
    with pytest.raises(ConfigError, match="ground_truth"):
        training.evaluate(model, images, factors, metrics="factor_vae")
    with pytest.raises(ConfigError, match="ground-truth sampler"):
        SlowVAEConfig(dataset="dsprites", eval_metrics="mcc,beta_vae")


@pytest.mark.parametrize("dataset", ["natural_sprites", "kitti_masks"])
def test_command_line_trains_natural_datasets(tmp_path, capsys, dataset):
    path = (write_natural_sprites_fixture(tmp_path / "n.csv", n_objects=30) if dataset == "natural_sprites"
            else write_kitti_fixture(tmp_path / "k.pickle", n_sequences=6))
    assert runs.main(["train", "--dataset", dataset, "--data-path", str(path), "--n-iterations", "2",
                      "--batch-size", "8", "--device", "cpu", "--eval-samples", "40", "--eval-metrics", "mcc",
                      "--progress", "false", "--log-every", "1", "--output-dir", str(tmp_path / "run")]) == 0
    assert "mcc" in capsys.readouterr().out
    state = _state(tmp_path / "run")
    assert state["step"] == 2 and state["config"]["dataset"] == dataset


# ---------------------------------------------------------------- precision on resume
def test_resume_keeps_the_checkpoint_precision_on_another_device(tmp_path, monkeypatch):
    import yaml
    train(output_dir=tmp_path, n_iterations=2, amp=False, **FAST)
    assert _state(tmp_path)["amp"] is False
    # a device that computes bfloat16 natively: amp=None would pick bf16 for a fresh run, not for this one
    monkeypatch.setattr(training, "native_bf16", lambda device: True)
    config = {k: v for k, v in FAST.items()}
    logs = train(output_dir=tmp_path, n_iterations=4, **config)
    assert logs.attrs["amp"] is False and yaml.safe_load((tmp_path / "config.yaml").read_text())["amp"] is False
    assert _state(tmp_path)["amp"] is False and _state(tmp_path)["step"] == 4
    with pytest.raises(ConfigError, match="trained in float32 but amp=True"):
        train(output_dir=tmp_path, n_iterations=6, amp=True, **FAST)
    fresh = train(output_dir=tmp_path / "fresh", n_iterations=1, **FAST)
    assert fresh.attrs["amp"] is True                       # a new run follows the device


def test_checkpoint_without_recorded_precision_is_refused_unless_amp_is_given(tmp_path):
    train(output_dir=tmp_path, n_iterations=2, amp=False, **FAST)
    state = _state(tmp_path)
    del state["amp"]                                        # an older checkpoint
    torch.save(state, tmp_path / training.CHECKPOINT_NAME)
    with pytest.raises(ConfigError, match="does not record its precision"):
        train(output_dir=tmp_path, n_iterations=3, **FAST)
    assert train(output_dir=tmp_path, n_iterations=3, amp=False, **FAST).attrs["amp"] is False


# ---------------------------------------------------------------- SIGKILL during a checkpoint write
_KILLED_WRITER = """
import sys, time, torch
from pathlib import Path
from superpos.disentangle import training
folder, marker = Path(sys.argv[1]), Path(sys.argv[2])
real_save = torch.save
def slow_save(state, f):
    f.write(b"PK partial checkpoint bytes")          # half a checkpoint on disk ...
    f.flush()
    marker.write_text("writing")
    time.sleep(120)                                   # ... when the SIGKILL arrives
training.torch.save = slow_save
training.train(output_dir=folder, n_iterations=4, device="cpu", progress=False, eval_samples=0, log_every=1,
               checkpoint_every=2, amp=False)
"""


def test_sigkill_during_a_checkpoint_write_keeps_the_previous_checkpoint(tmp_path):
    import signal
    import subprocess
    import sys
    import time
    from superpos.core import stale_parts
    folder, marker = tmp_path / "run", tmp_path / "writing"
    settings = dict(device="cpu", progress=False, eval_samples=0, log_every=1, checkpoint_every=2, amp=False)
    train(output_dir=folder, n_iterations=2, **settings)
    before = (folder / training.CHECKPOINT_NAME).read_bytes()
    mode = (folder / training.CHECKPOINT_NAME).stat().st_mode & 0o777
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, str(folder), str(marker)])
    try:
        deadline = time.time() + 120
        while not marker.exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        assert marker.exists(), "the writer never reached the checkpoint write"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    # the complete checkpoint is intact; the partial write is a recognisable stale .part file
    assert (folder / training.CHECKPOINT_NAME).read_bytes() == before and _state(folder)["step"] == 2
    parts = stale_parts(folder / training.CHECKPOINT_NAME)
    assert len(parts) == 1 and parts[0].name.endswith(".part")
    # resuming removes it, finishes the run exactly as an uninterrupted one, and keeps the file mode
    train(output_dir=folder, n_iterations=4, **settings)
    assert not list(folder.glob("*.part")) and _state(folder)["step"] == 4
    assert (folder / training.CHECKPOINT_NAME).stat().st_mode & 0o777 == mode
    train(output_dir=tmp_path / "whole", n_iterations=4, **settings)
    _assert_same_run(tmp_path / "whole", folder)
