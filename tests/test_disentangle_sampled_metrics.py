"""Known-answer tests for superpos.disentangle.sampled_metrics: BetaVAE, FactorVAE, presets, evaluate.

Expected values: the factors themselves (or a permutation of them) give BetaVAE = FactorVAE = 1 and
every representation metric at the top of its range; a 45-degree rotation of factor pairs drops both
intervention scores below 0.7.
"""
import warnings

import numpy as np
import pytest
import torch
from disentangle_metrics_data import rotation

from superpos.core import ConfigError, DataError
from superpos.disentangle import sampled_metrics as S


# --- BetaVAE and FactorVAE -------------------------------------------------------------------

def uniform_factors(n, rng):
    return rng.integers(0, 10, size=(n, 4)).astype(float)


def identity(x):
    return x


SMALL = dict(n_train=300, n_eval=150, random_state=0)


def test_intervention_scores_known_answers():
    assert S.beta_vae_score(identity, identity, uniform_factors, **SMALL) > 0.98
    assert S.factor_vae_score(identity, identity, uniform_factors, n_variance=1000, **SMALL) == 1.0
    rot = rotation(np.pi / 4)
    mixed = lambda obs: obs @ rot  # noqa: E731
    assert S.beta_vae_score(identity, mixed, uniform_factors, **SMALL) < 0.7
    assert S.factor_vae_score(identity, mixed, uniform_factors, n_variance=1000, **SMALL) < 0.7


def test_factor_vae_prunes_collapsed_latents_and_torch_encoder():
    def encoder(obs):  # a torch encoder with one collapsed (near-constant) latent
        x = torch.as_tensor(obs, dtype=torch.float32)
        return torch.cat([x, 1e-3 * x[:, :1]], dim=1)
    ds = S.factor_vae_score_detailed(identity, encoder, uniform_factors, n_variance=1000, **SMALL)
    assert int(ds["n_active"]) == 4 and not bool(ds["active"][-1])
    assert float(ds["eval_accuracy"]) == 1.0
    dead = S.factor_vae_score(identity, lambda o: 1e-3 * o, uniform_factors, n_variance=500, **SMALL)
    assert dead == 0.0


def test_intervention_scores_are_seeded():
    a = S.beta_vae_score(identity, identity, uniform_factors, n_train=50, n_eval=50, random_state=3)
    b = S.beta_vae_score(identity, identity, uniform_factors, n_train=50, n_eval=50, random_state=3)
    assert a == b
    with pytest.raises(DataError, match="sample_factors"):
        S.beta_vae_score(identity, identity, lambda n, rng: np.zeros(n), n_train=5, n_eval=5)


# --- evaluate and presets --------------------------------------------------------------------

def test_presets_follow_the_reference_configs():
    dlib, slow = S.PRESETS["disentanglement_lib"], S.PRESETS["slowvae"]
    assert dlib["mig"] == {"n_samples": 10_000, "n_bins": 20}
    assert slow["mig"] == {"n_samples": 100_000, "n_bins": 20}
    assert slow["explicitness"]["n_train"] == 100_000 and dlib["explicitness"]["n_train"] == 10_000
    assert dlib["factor_vae"]["threshold"] == 0.05 and dlib["beta_vae"]["batch_size"] == 64
    assert slow["mcc"] == {"n_samples": 10_000, "method": "spearman"}


def test_evaluate(discrete):
    y = discrete[:, :3]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # 20,000 samples are enough for the dlib preset: no warning
        out = S.evaluate(y, y, metrics=["mcc", "mig", "dci", "modularity"],
                         overrides={"dci": {"model": "lasso"}})
    assert set(out) == {"mcc", "mig", "dci_disentanglement", "dci_completeness",
                        "dci_informativeness", "modularity"}
    assert min(out.values()) > 0.98
    with pytest.warns(UserWarning, match="all samples were used"):
        S.evaluate(y, y, preset="slowvae", metrics="mig")
    with pytest.raises(ConfigError, match="unknown metric"):
        S.evaluate(y, y, metrics=["beta_vae"])
    with pytest.raises(ConfigError, match="unknown preset"):
        S.evaluate(y, y, preset="slow")


def test_evaluate_model():
    small = {"dci": {"model": "lasso", "n_train": 600, "n_test": 300},
             "beta_vae": {"n_train": 100, "n_eval": 50}, "factor_vae": {"n_train": 100, "n_eval": 50}}
    out = S.evaluate_model(identity, identity, uniform_factors,
                           metrics=["mcc", "dci", "beta_vae", "factor_vae"], overrides=small)
    assert set(out) == {"mcc", "dci_disentanglement", "dci_completeness", "dci_informativeness",
                        "beta_vae", "factor_vae"}
    assert min(out.values()) > 0.95


def test_evaluate_keeps_the_input_rules_of_the_metrics(discrete):
    import xarray as xr
    y = discrete[:3000, :2]
    labelled = xr.DataArray(y, dims=("sample", "factor"), coords={"factor": ["a", "b"]})
    latents = xr.DataArray(y[:, ::-1].T, dims=("latent", "sample"))
    with pytest.warns(UserWarning, match="all samples were used"):
        out = S.evaluate(labelled, latents, metrics=["mcc", "mig"])
    assert out["mcc"] == pytest.approx(1.0) and out["mig"] > 0.99
    with pytest.raises(DataError, match="rename"):
        S.evaluate(xr.DataArray(y, dims=("sample", "unit")), y, metrics="mcc")
    with pytest.raises(DataError, match="one row of latents"):
        S.evaluate_model(identity, lambda obs: np.zeros((len(obs), 2, 2)), uniform_factors,
                         metrics="mcc", overrides={"mcc": {"n_samples": 100}})


def test_a_last_chunk_of_one_observation_is_encoded():
    # 4097 samples in chunks of 4096 leave one observation for the last encoder call
    out = S.evaluate_model(identity, identity, uniform_factors, metrics="mcc",
                           overrides={"mcc": {"n_samples": 4097}})
    assert out["mcc"] == pytest.approx(1.0)
