"""Property tests of superpos.slowvae: loss terms against independent computations, config errors,
checkpoints and exact resume, and a short training run."""
import math
import os
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from superpos import slowvae
from superpos.core import ConfigError, DataError, MissingFileError
from superpos.slowvae import (VAE, SlowVAEConfig, gaussian_entropy, laplace_cross_entropy, load_checkpoint,
                              load_model, normal_cross_entropy, slowvae_loss, train)

torch.set_num_threads(1)
FAST = dict(device="cpu", progress=False, eval_samples=0, log_every=1, checkpoint_every=2, channels_last=True)


# ---------------------------------------------------------------- loss terms
@pytest.mark.parametrize("mu,logvar,loc,rate", [(0.0, 0.0, 0.0, 6.0), (0.7, -3.0, 0.1, 6.0),
                                                (-2.0, 1.0, 0.5, 1.0), (3.0, -6.0, -1.0, 10.0)])
def test_laplace_cross_entropy_matches_monte_carlo(mu, logvar, loc, rate):
    gen = torch.Generator().manual_seed(1)
    z = mu + math.exp(0.5 * logvar) * torch.randn(1_000_000, generator=gen, dtype=torch.float64)
    mc = -torch.distributions.Laplace(torch.tensor(loc).double(), torch.tensor(1 / rate).double()).log_prob(z)
    closed = laplace_cross_entropy(torch.tensor(mu).double(), torch.tensor(logvar).double(), loc, rate)
    assert abs(closed.item() - mc.mean().item()) < 4 * mc.std().item() / 1000 + 1e-9


def test_laplace_cross_entropy_rejects_bad_rate():
    with pytest.raises(ConfigError, match="rate must be positive"):
        laplace_cross_entropy(torch.zeros(1), torch.zeros(1), 0.0, rate=-1.0)


def test_gaussian_terms_match_torch_distributions():
    gen = torch.Generator().manual_seed(0)
    mu, logvar = torch.randn(50, 10, generator=gen).double(), torch.randn(50, 10, generator=gen).double()
    q = torch.distributions.Normal(mu, torch.exp(0.5 * logvar))
    prior = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))
    torch.testing.assert_close(gaussian_entropy(logvar), q.entropy())
    torch.testing.assert_close(normal_cross_entropy(mu, logvar) - gaussian_entropy(logvar),
                               torch.distributions.kl_divergence(q, prior))


def _independent_loss(images, logits, mu, logvar, beta, gamma, rate):
    """The SlowVAE loss from torch.distributions and the folded-normal mean, written separately."""
    n = len(images)
    recon = -torch.distributions.Bernoulli(logits=logits).log_prob(images).sum() / n
    q = torch.distributions.Normal(mu, torch.exp(0.5 * logvar))
    h = q.entropy().sum(1).mean()
    kl_n = torch.distributions.kl_divergence(q, torch.distributions.Normal(0.0, 1.0)).sum(1).mean()
    std_normal = torch.distributions.Normal(0.0, 1.0)

    def ce_lap(a, b, s):     # E_{z ~ N(a, s^2)} -log Laplace(z; b, 1/rate)
        m = a - b
        e_abs = s * math.sqrt(2 / math.pi) * torch.exp(-m ** 2 / (2 * s ** 2)) + m * (1 - 2 * std_normal.cdf(-m / s))
        return rate * e_abs - math.log(rate / 2)

    s = torch.exp(0.5 * logvar)
    ce_l = (ce_lap(mu[0::2], mu[1::2], s[0::2]) + ce_lap(mu[1::2], mu[0::2], s[1::2])).sum(1).mean()
    return 2 * recon + beta * kl_n + gamma * (ce_l - h)


@pytest.mark.parametrize("beta,gamma,rate", [(1.0, 10.0, 6.0), (8.0, 0.0, 6.0), (2.5, 3.0, 1.5)])
def test_slowvae_loss_matches_independent_computation(beta, gamma, rate):
    gen = torch.Generator().manual_seed(3)
    images = (torch.rand(8, 1, 64, 64, generator=gen) > 0.8).double()
    logits = torch.randn(8, 1, 64, 64, generator=gen).double()
    mu, logvar = torch.randn(8, 10, generator=gen).double(), torch.randn(8, 10, generator=gen).double() - 2
    terms = slowvae_loss(images, logits, mu, logvar, beta=beta, gamma=gamma, rate=rate)
    expected = _independent_loss(images, logits, mu, logvar, beta, gamma, rate)
    assert abs(terms["loss"].item() - expected.item()) < 1e-3 * abs(expected.item())


def test_betavae_loss_ignores_pairing_and_slowvae_does_not():
    gen = torch.Generator().manual_seed(4)
    images = (torch.rand(8, 1, 64, 64, generator=gen) > 0.8).float()
    logits, mu, logvar = torch.randn(8, 1, 64, 64, generator=gen), torch.randn(8, 10, generator=gen), torch.randn(8, 10, generator=gen)
    perm = torch.tensor([0, 3, 2, 5, 4, 7, 6, 1])     # re-pair the frames
    args = (images[perm], logits[perm], mu[perm], logvar[perm])
    beta_vae = [slowvae_loss(*a, beta=8.0, gamma=0.0)["loss"].item() for a in [(images, logits, mu, logvar), args]]
    slow = [slowvae_loss(*a)["loss"].item() for a in [(images, logits, mu, logvar), args]]
    assert beta_vae[0] == pytest.approx(beta_vae[1], rel=1e-6)
    assert abs(slow[0] - slow[1]) > 1.0


def test_laplace_term_pulls_both_frames_together():
    mu = torch.tensor([[0.0], [1.0]], requires_grad=True)
    logvar = torch.full((2, 1), -4.0)
    terms = slowvae_loss(torch.zeros(2, 1, 64, 64), torch.zeros(2, 1, 64, 64), mu, logvar, beta=0.0, gamma=1.0)
    terms["loss"].backward()
    assert mu.grad[0, 0] < 0 < mu.grad[1, 0]     # gradient descent moves the means towards each other


# ---------------------------------------------------------------- model
def test_model_shapes_parameters_and_noise():
    model = VAE()
    assert sum(p.numel() for p in model.parameters()) == 763_285
    x = torch.rand(6, 1, 64, 64)
    logits, mu, logvar = model(x, torch.zeros(6, 10))
    torch.testing.assert_close(logits, model.decode(mu))
    assert slowvae.encode(model, x).shape == (6, 10)
    with pytest.raises(DataError, match="shape"):
        slowvae.encode(model, torch.rand(6, 64, 64))


# ---------------------------------------------------------------- config
@pytest.mark.parametrize("values,message", [
    ({"gama": 1.0}, "did you mean 'gamma'"), ({"not_a_key": 1}, "unknown SlowVAEConfig key"),
    ({"rate_data": -2.0}, "rate_data must be a number > 0"), ({"z_dim": 0}, "z_dim must be an integer >= 1"),
    ({"rate_prior": 0.0}, "rate_prior must be a number > 0"), ({"batch_size": 7}, "even"),
    ({"lr": "fast"}, "lr must be a number"), ({"k": 9}, "k must be an integer"),
    ({"transitions": "gauss"}, "'laplace' or 'uniform'"), ({"z_dim": 2.5}, "z_dim must be an integer"),
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
    assert torch.equal(sa["sampler"]["generator"], sb["sampler"]["generator"])
    assert torch.equal(sa["noise"], sb["noise"])


def _losses(folder):
    logs = pd.read_csv(folder / slowvae.LOG_NAME)
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
    real_step, calls = slowvae._train_step, []

    def crashing_step(*args):
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt("simulated crash")
        return real_step(*args)

    monkeypatch.setattr(slowvae, "_train_step", crashing_step)
    with pytest.raises(KeyboardInterrupt):
        train(output_dir=crashed, n_iterations=6, **FAST)
    assert _state(crashed)["step"] == 4            # the last checkpoint before the crash
    monkeypatch.setattr(slowvae, "_train_step", real_step)
    train(output_dir=crashed, n_iterations=6, **FAST)
    _assert_same_run(whole, crashed)
    pd.testing.assert_frame_equal(_losses(whole), _losses(crashed))


def test_bad_checkpoints_raise_clear_errors(tmp_path):
    folder = tmp_path / "run"
    train(output_dir=folder, n_iterations=2, **FAST)
    path = folder / slowvae.CHECKPOINT_NAME
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
    assert pd.read_csv(tmp_path / slowvae.LOG_NAME).step.max() == 2


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
    native = slowvae.native_bf16(torch.device("cpu"))
    assert record["amp"] is native and logs.attrs["amp"] is native
    assert record["compile"] is False and record["device"] == "cpu"
    assert _state(tmp_path)["config"]["amp"] is None        # the checkpoint keeps the setting, not its resolution


def test_compare_writes_a_table_a_record_and_logs(tmp_path):
    import yaml
    settings = dict(device="cpu", output_dir=tmp_path, progress=False, log_every=1, checkpoint_every=2,
                    eval_every=2, eval_samples=200)
    table = slowvae.compare("0,1", 2, **settings)
    assert table[["model", "seed"]].values.tolist() == [["SlowVAE", 0], ["SlowVAE", 1], ["beta-VAE", 0], ["beta-VAE", 1]]
    assert table.step.eq(2).all() and table.mcc.between(0, 1).all() and table.mig.between(0, 1).all()
    record = yaml.safe_load((tmp_path / "compare.yaml").read_text())
    assert record["seeds"] == [0, 1] and record["n_iterations"] == 2 and "git_commit" in record
    assert record["models"]["beta-VAE"] == {"beta": 8.0, "gamma": 0.0}
    loaded, curves = slowvae.load_comparison(tmp_path)
    pd.testing.assert_frame_equal(loaded, table)
    assert loaded.attrs["record"]["seeds"] == [0, 1]
    final = curves[(curves.step == 2) & (curves.metric == "mcc")].merge(table, on=["model", "seed"])
    assert len(final) == 4
    np.testing.assert_allclose(final.value.to_numpy(), final.mcc.to_numpy())
    again = slowvae.compare("0,1", 2, **settings)                  # finished runs resume at their end
    pd.testing.assert_frame_equal(again, table)


def test_command_line_train(tmp_path, capsys):
    assert slowvae.main(["train", "--n-iterations", "2", "--device", "cpu", "--eval-samples", "0",
                         "--progress", "false", "--log-every", "1", "--output-dir", str(tmp_path)]) == 0
    assert "loss" in capsys.readouterr().out
    assert _state(tmp_path)["step"] == 2
