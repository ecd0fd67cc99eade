"""Natural stimuli: deterministic by seed, distinct, correctly shaped and labelled, natural spectra."""
import numpy as np
import pytest
import torch

from superpos.core import ConfigError
from superpos.stimuli.natural import (bundled_photos, dead_leaves, gratings, natural_stimuli, photo_patches, photo_stimuli,
                                      power_spectrum, textures)

GENERATORS = [photo_patches, dead_leaves, gratings, textures]


@pytest.mark.parametrize("make", GENERATORS)
def test_generators_deterministic_and_distinct(make):
    a, b, c = make(40, 32, seed=5), make(40, 32, seed=5), make(40, 32, seed=6)
    assert torch.equal(a.images, b.images) and list(a.ids) == list(b.ids)
    assert not torch.equal(a.images, c.images)
    flat = a.images.flatten(1)
    assert len(torch.unique(flat, dim=0)) == 40, "every stimulus is a different image"
    assert a.images.shape == (40, 3, 32, 32) and a.images.dtype == torch.uint8


def test_default_set_mixes_sources_in_proportion():
    stimuli = natural_stimuli(1000, 32, seed=0)
    kinds, counts = np.unique([s.split(":")[0] for s in stimuli.sources], return_counts=True)
    assert dict(zip(kinds, counts)) == {"photo": 500, "dead_leaves": 200, "gratings": 150, "textures": 150}
    photos = {s for s in stimuli.sources if s.startswith("photo:")}
    assert len(photos) >= 10, "patches come from about a dozen photos"
    assert len(set(stimuli.ids)) == 1000


def test_large_sets_are_distinct():
    stimuli = natural_stimuli(5000, 16, seed=1)
    assert len(torch.unique(stimuli.images.flatten(1), dim=0)) == 5000


def test_grating_factors_match_images():
    stim = gratings(400, 48, seed=0)
    # the grating's orientation is the direction of the dominant spatial frequency
    grey = stim.tensor().mean(1)
    spectrum = torch.fft.fft2(grey - grey.mean((1, 2), keepdim=True)).abs()
    spectrum[:, 0, 0] = 0
    peak = spectrum.flatten(1).argmax(1)
    fy, fx = torch.fft.fftfreq(48)[peak // 48], torch.fft.fftfreq(48)[peak % 48]
    estimated = torch.atan2(fy, fx) % np.pi
    truth = torch.as_tensor(stim.factors.orientation.values, dtype=torch.float32)
    error = torch.minimum((estimated - truth).abs(), np.pi - (estimated - truth).abs())
    # FFT bins resolve orientation well only above a few cycles; isoluminant gratings have no grey contrast
    resolvable = torch.as_tensor(stim.factors.cycles.values > 4) & (grey.std((1, 2)) > 0.02)
    assert resolvable.sum() > 100
    assert (error[resolvable] < 0.1).float().mean() > 0.97


def test_photo_spectrum_is_natural():
    freq, power = power_spectrum(photo_patches(300, 64, seed=0))
    band = freq < 0.25  # above it the antialiased downsampling of large crops steepens the spectrum
    slope = np.polyfit(np.log(freq[band]), np.log(power[band]), 1)[0]
    assert -3.2 < slope < -1.5


def test_photo_stimuli_are_the_bundled_photos():
    photos = bundled_photos()
    stimuli = photo_stimuli(32)
    assert list(stimuli.ids) == list(photos) and stimuli.images.shape == (len(photos), 3, 32, 32)
    assert all(s == f"photo:{name}" for s, name in zip(stimuli.sources, photos))


def test_bad_inputs():
    with pytest.raises(ConfigError, match="positive integer"):
        natural_stimuli(0)
    with pytest.raises(ConfigError, match="mix must map"):
        natural_stimuli(10, 32, mix={"paintings": 1.0})
    with pytest.raises(ConfigError, match=">= 8 pixels"):
        dead_leaves(4, 4)
