"""One responses contract: every stage accepts the same responses, and rejects the same bad ones with one message."""
import numpy as np
import pytest
import xarray as xr

import superpos as sp
from superpos.core import DataError

S, U = 60, 6
rng = np.random.default_rng(0)
VALUES = rng.standard_normal((S, U))
IDS = [f"s{i}" for i in range(S)]
GRAM = xr.DataArray(np.corrcoef(rng.standard_normal((S, 10))), dims=("stimulus", "stimulus_other"),
                    coords={"stimulus": IDS, "stimulus_other": IDS})

STAGES = {   # one entry point per stage of the pipeline, each given the responses as they come
    "directions": lambda X: sp.KMeansDirections(2, random_state=0).fit(X).transform(X),
    "measures": lambda X: sp.interpretability_index(X, None, GRAM, n_references=3, n_boot=0),
    "geometry": lambda X: sp.linear_cka(X, X),
    "analyses": lambda X: sp.score_responses(X, GRAM, ("ii",), n_references=3, n_boot=0),
    "contract": lambda X: sp.as_responses(X),
}


def labelled(values, dim):
    return xr.DataArray(values, dims=("stimulus", dim), coords={"stimulus": IDS})


ACCEPTED = {"numpy array": VALUES, "torch tensor": None, "unit": labelled(VALUES, "unit"),
            "neuron": labelled(VALUES, "neuron"), "direction": labelled(VALUES, "direction"),
            "latent": labelled(VALUES, "latent"), "float32": labelled(VALUES.astype(np.float32), "neuron")}
REJECTED = {"unknown dim": labelled(VALUES, "channel"),
            "NaN": labelled(np.where(np.arange(U) == 2, np.nan, VALUES), "neuron"),
            "infinite": labelled(np.where(np.arange(U) == 4, np.inf, VALUES), "direction"),
            "three dims": xr.DataArray(VALUES.reshape(S, 2, 3), dims=("stimulus", "unit", "x")),
            "no stimulus dim": xr.DataArray(VALUES, dims=("image", "unit"))}


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize("form", ACCEPTED)
def test_every_stage_accepts_the_same_responses(stage, form):
    X = ACCEPTED[form]
    if form == "torch tensor":
        import torch
        X = torch.as_tensor(VALUES)
    out = STAGES[stage](X)
    assert out is not None


@pytest.mark.parametrize("form", REJECTED)
def test_every_stage_rejects_bad_responses_with_the_contracts_message(form):
    messages = {}
    for stage, run in STAGES.items():
        with pytest.raises(DataError) as err:
            run(REJECTED[form])
        text = str(err.value)
        messages[stage] = text.split(" ", 1)[1]   # the message after the argument's name ("responses", "a")
    assert len(set(messages.values())) == 1, f"{form}: the stages disagree: {messages}"


def test_scores_keep_the_response_dim_name():
    for dim in ("unit", "neuron", "direction"):
        scores = sp.interpretability_index(labelled(VALUES, dim), None, GRAM, n_references=3, n_boot=0)
        assert dim in scores.dims
