"""Factors shared by the tests of superpos.disentangle.metrics and .sampled_metrics, and the rotation that mixes them."""
import numpy as np


def rotation(angle, n=4):
    """Rotate factor pairs (0, 1), (2, 3) by `angle`."""
    c, s = np.cos(angle), np.sin(angle)
    rot = np.eye(n)
    for i in range(0, n - 1, 2):
        rot[i:i + 2, i:i + 2] = [[c, -s], [s, c]]
    return rot


def gaussian_factors():
    """20,000 samples of four independent unit-variance Gaussian factors."""
    return np.random.default_rng(0).normal(size=(20_000, 4))


def discrete_factors():
    """20,000 samples of four independent uniform factors with eight values each."""
    return np.random.default_rng(1).integers(0, 8, size=(20_000, 4)).astype(float)
