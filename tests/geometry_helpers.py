"""Shared pieces of the geometry tests: torch's dtype guard and random direction sets."""
import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def torch_dtype_untouched():
    """Every geometry call must leave torch's default dtype at float32."""
    assert torch.get_default_dtype() == torch.float32
    yield
    assert torch.get_default_dtype() == torch.float32


def unit_rows(rng, n, d):
    """`n` uniformly random unit vectors in R^d."""
    x = rng.standard_normal((n, d))
    return x / np.linalg.norm(x, axis=1, keepdims=True)
