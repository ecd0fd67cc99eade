"""Small labelled inputs shared by the tests of superpos.measures (a random Gram matrix, responses on its ids)."""
import numpy as np
import xarray as xr


def random_gram(n, seed=0, d=16):
    """A precomputed similarity matrix (cosines of random embeddings) labelled with ids."""
    rng = np.random.default_rng(seed)
    e = rng.normal(size=(n, d))
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    ids = np.array([f"x{i}" for i in range(n)])
    return xr.DataArray(e @ e.T, dims=("stimulus", "stimulus_other"), coords={"stimulus": ids, "stimulus_other": ids},
                        attrs={"distance_kind": "one_minus"})


def labelled(values, ids, dim="unit"):
    """Responses (stimulus x dim) labelled with stimulus ids."""
    return xr.DataArray(values, dims=("stimulus", dim), coords={"stimulus": ids, dim: np.arange(values.shape[1])})
