"""Stimulus sets: validation, the torch Dataset protocol, selection, concatenation, tensor wrapping."""
import numpy as np
import pandas as pd
import pytest
import torch

from superpos.core import DataError
from superpos.stimuli.natural import natural_stimuli
from superpos.stimuli.sets import StimulusSet, as_stimulus_set, concat_stimuli


def test_bad_inputs():
    with pytest.raises(DataError, match="unique"):
        StimulusSet(torch.zeros(2, 3, 8, 8, dtype=torch.uint8), ["a", "a"], ["s", "s"])
    with pytest.raises(DataError, match="uint8"):
        StimulusSet(torch.zeros(2, 3, 8, 8), ["a", "b"], ["s", "s"])
    with pytest.raises(DataError, match="one of each per image"):
        StimulusSet(torch.zeros(2, 3, 8, 8, dtype=torch.uint8), ["a"], ["s", "s"])
    with pytest.raises(DataError, match="factors table has 1 rows"):
        StimulusSet(torch.zeros(2, 3, 8, 8, dtype=torch.uint8), ["a", "b"], ["s", "s"], pd.DataFrame({"f": [1]}))


def test_dataset_protocol():
    stimuli = natural_stimuli(10, 16, seed=0)
    image, stimulus_id = stimuli[3]
    assert image.dtype == torch.float32 and 0 <= image.min() and image.max() <= 1
    assert stimulus_id == stimuli.ids[3]
    loader = torch.utils.data.DataLoader(stimuli, batch_size=4)
    images, ids = next(iter(loader))
    assert images.shape == (4, 3, 16, 16) and list(ids) == list(stimuli.ids[:4])


def test_selection_keeps_everything_aligned():
    stimuli = natural_stimuli(40, 16, seed=2)
    order = list(stimuli.ids[::-3])
    picked = stimuli.select_ids(order)
    assert list(picked.ids) == order
    position = [list(stimuli.ids).index(s) for s in order]
    assert torch.equal(picked.images, stimuli.images[position])
    assert list(picked.sources) == list(stimuli.sources[position])
    mask = np.char.startswith(stimuli.sources, "gratings")
    gratings = stimuli.subset(mask)
    assert len(gratings) == mask.sum() and gratings.factors["orientation"].notna().all()
    assert list(gratings.coords()["stimulus"]) == list(stimuli.ids[mask])


def test_concat_round_trip():
    stimuli = natural_stimuli(20, 16, seed=3)
    halves = [stimuli.subset(range(10)), stimuli.subset(range(10, 20))]
    again = concat_stimuli(halves)
    assert torch.equal(again.images, stimuli.images) and list(again.ids) == list(stimuli.ids)
    with pytest.raises(DataError, match="unique"):
        concat_stimuli([halves[0], halves[0]])


def test_as_stimulus_set_accepts_uint8_float_and_numpy():
    uint8 = torch.randint(0, 256, (3, 3, 8, 8), dtype=torch.uint8)
    assert torch.equal(as_stimulus_set(uint8).images, uint8)
    assert torch.equal(as_stimulus_set(uint8.float() / 255).images, uint8)
    assert torch.equal(as_stimulus_set(uint8.numpy()).images, uint8)
    with pytest.raises(DataError, match="batch"):
        as_stimulus_set(torch.rand(3, 8, 8))
    with pytest.raises(DataError, match="uint8"):
        as_stimulus_set(torch.zeros(2, 3, 8, 8, dtype=torch.int64))
