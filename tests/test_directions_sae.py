"""Tests of superpos.directions.sae: sparse autoencoders (TopK and L1), training steps, save and load."""

import numpy as np
import pytest
import torch

from superpos.core import ConfigError
from superpos.directions.sae import SparseAutoencoder, _SAEModule, _sae_codes, _sae_step, _train_sae

torch.set_num_threads(1)


def _nonneg(n=60, d=6, seed=0):
    return np.random.default_rng(seed).exponential(size=(n, d))

def test_sae_save_load_weights_only(tmp_path):
    X = _nonneg(200, 6)
    sae = SparseAutoencoder(10, k=2, n_epochs=3, random_state=0).fit(X)
    path = sae.save(tmp_path / "sae.pt")
    payload = torch.load(path, weights_only=True)  # plain tensors and parameters: no pickled code
    assert set(payload["state"]) >= {"components_", "encoder_weight_"}
    loaded = SparseAutoencoder.load(path)
    np.testing.assert_allclose(loaded.transform(X), sae.transform(X))
    np.testing.assert_allclose(loaded.inverse_transform(loaded.transform(X)), sae.inverse_transform(sae.transform(X)))



def test_sae_topk_sparsity_and_no_dead_latents():
    rng = np.random.default_rng(0)
    D = rng.normal(size=(12, 8))
    D /= np.linalg.norm(D, axis=1, keepdims=True)
    Z = rng.exponential(size=(3000, 12)) * (rng.random((3000, 12)) < 0.15)
    X = Z[Z.sum(1) > 0] @ D
    sae = SparseAutoencoder(12, k=3, n_epochs=20, random_state=0).fit(X)
    codes = sae.transform(X)
    assert (codes > 0).sum(axis=1).max() <= 3
    assert (codes > 0).any(axis=0).all()
    assert np.abs(sae.components_ @ D.T).max(axis=0).mean() > 0.9
    assert sae.loss_curve_[-1] < sae.loss_curve_[0]



def test_sae_reproducible_and_seed_dependent():
    X = _nonneg(100, 5)
    a = SparseAutoencoder(6, k=2, n_epochs=2, random_state=3).fit(X).components_
    b = SparseAutoencoder(6, k=2, n_epochs=2, random_state=3).fit(X).components_
    c = SparseAutoencoder(6, k=2, n_epochs=2, random_state=4, init="random").fit(X).components_
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)



def test_sae_bad_parameters():
    with pytest.raises(ConfigError, match="kind"):
        SparseAutoencoder(kind="relu").fit(_nonneg())
    with pytest.raises(ConfigError, match="k must be"):
        SparseAutoencoder(4, k=5).fit(_nonneg())


def test_sae_step_keeps_decoder_on_the_sphere_and_lowers_the_loss():
    gen = torch.Generator().manual_seed(0)
    sae = _SAEModule(5, 8, kind="topk", k=2, tied=False, generator=gen)
    opt = torch.optim.Adam(sae.parameters(), lr=1e-2)
    x = torch.rand(64, 5, generator=gen)
    losses = [_sae_step(sae, opt, x, l1_coef=0.0)[0] for _ in range(30)]
    assert losses[-1] < losses[0]
    torch.testing.assert_close(sae.W_dec.norm(dim=0), torch.ones(8))


def test_train_sae_is_seeded_and_codes_match_the_module():
    X = _nonneg(100, 5)
    params = dict(kind="topk", k=2, l1_coef=0.0, tied=False, init="data", n_epochs=2, batch_size=32, lr=1e-3,
                  resample_dead=True, device="cpu", random_state=7)
    sae, scale, curve, _ = _train_sae(X, 6, **params)
    again = _train_sae(X, 6, **params)[0]
    torch.testing.assert_close(sae.W_dec, again.W_dec)
    assert len(curve) == 2
    with torch.no_grad():
        z = sae.encode(torch.as_tensor(X / scale, dtype=torch.float32)).double().numpy() * scale
    codes = _sae_codes(X, encoder_weight=sae.W_enc.detach().double().numpy(), encoder_bias=sae.b_enc.detach().double().numpy(),
                       decoder_bias=sae.b_dec.detach().double().numpy() * scale, scale=scale, kind="topk", k=2)
    np.testing.assert_allclose(codes, z, atol=1e-4)
