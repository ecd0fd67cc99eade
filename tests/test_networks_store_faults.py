"""SIGKILL during `extract(path=...zarr)` and during `save_activations`: nothing complete is lost, the partial
state is recognised (a DataError naming how far it got) and `resume=True` finishes it exactly."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
import xarray as xr

from superpos.core import DataError, stale_parts
from superpos.networks.extraction import extract
from superpos.networks.models import Preprocess, load_model
from superpos.networks.store import load_activations, save_activations
from superpos.stimuli.sets import as_stimulus_set

ROOT = Path(__file__).resolve().parent.parent
N = 12

class Slow(nn.Module):
    """A tiny network (fixed seed) that sleeps `delay` seconds per batch, so a kill lands mid-extraction."""

    def __init__(self, delay: float = 0.0):
        super().__init__()
        torch.manual_seed(0)
        self.delay = delay
        self.conv = nn.Conv2d(3, 4, 3)
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        if self.delay:
            time.sleep(self.delay)
        return self.head(self.conv(x).mean((2, 3)))


def model_and_stimuli(delay: float = 0.0):
    images = (torch.rand(N, 3, 8, 8, generator=torch.Generator().manual_seed(1)) * 255).round().to(torch.uint8)
    model = load_model(Slow(delay), input_size=None, preprocess=Preprocess((0.0,) * 3, (1.0,) * 3, None))
    return model, as_stimulus_set(images)


# the child extracts the same network and stimuli (imported from this file), slowly, into the store argv[1]
CHILD = """
import sys
from superpos.networks.extraction import extract
from test_networks_store_faults import model_and_stimuli
model, stimuli = model_and_stimuli(float(sys.argv[2]))
print("start", flush=True)
extract(model, ["conv", "head"], stimuli, batch_size=2, progress=False, path=sys.argv[1])
print("done", flush=True)
"""


def _env():
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")]), "OMP_NUM_THREADS": "1"}


def _written(partial: Path) -> int:
    import zarr
    try:
        return int(zarr.open_group(str(partial), mode="r").attrs.get("written", 0))
    except Exception:   # noqa: BLE001 - not created yet
        return 0


def test_sigkill_during_extract_keeps_the_old_store_and_resumes_exactly(tmp_path):
    model, stimuli = model_and_stimuli()
    memory = extract(model, ["conv", "head"], stimuli, batch_size=2, progress=False)
    store = tmp_path / "acts.zarr"
    old = {k: v * 0 + 7 for k, v in memory.items()}   # a complete earlier store, different values
    save_activations(old, store)
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(store), "0.3"], stdout=subprocess.PIPE,
                             cwd=ROOT, env=_env())
    assert child.stdout.readline().strip() == b"start"
    partial = store.with_name("acts.zarr.partial")
    deadline = time.time() + 240
    while _written(partial) < 4 and time.time() < deadline and child.poll() is None:
        time.sleep(0.05)
    child.send_signal(signal.SIGKILL)
    child.wait()
    held = _written(partial)
    assert 4 <= held < N, held                                  # killed half-way
    for layer, da in load_activations(store).items():           # the earlier complete store is intact
        xr.testing.assert_identical(da, old[layer].rename(layer))
    with pytest.raises(DataError, match=f"holds {held} of {N} stimuli"):
        load_activations(partial)
    resumed = extract(model, ["conv", "head"], stimuli, batch_size=2, progress=False, path=store, resume=True)
    for layer, da in memory.items():
        np.testing.assert_allclose(resumed[layer].values, da.values, rtol=1e-6, atol=1e-7)
        assert list(resumed[layer]["stimulus"].values) == list(stimuli.ids)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["acts.zarr"]


SAVER = """
import sys
import numpy as np, xarray as xr
from superpos.networks.store import save_activations
values = np.full((4000, 300), 2.0, dtype=np.float32)
da = xr.DataArray(values, dims=("stimulus", "unit"), coords={"stimulus": [str(i) for i in range(4000)],
                  "source": ("stimulus", ["x"] * 4000)})
print("start", flush=True)
while True:
    save_activations({"a": da, "b": da}, sys.argv[1])
"""


@pytest.mark.parametrize("suffix", [".nc", ".zarr"])
def test_sigkill_during_save_activations_never_leaves_a_broken_store(tmp_path, suffix):
    path = tmp_path / f"acts{suffix}"
    ones = xr.DataArray(np.ones((3, 2), np.float32), dims=("stimulus", "unit"),
                        coords={"stimulus": ["p", "q", "r"], "source": ("stimulus", ["x"] * 3)})
    save_activations({"a": ones, "b": ones}, path)
    child = subprocess.Popen([sys.executable, "-c", SAVER, str(path)], stdout=subprocess.PIPE, cwd=ROOT, env=_env())
    assert child.stdout.readline().strip() == b"start"
    rng = np.random.default_rng(0)
    time.sleep(0.5 + rng.random())
    child.send_signal(signal.SIGKILL)
    child.wait()
    back = load_activations(path)                              # old (3 stimuli) or new (4000), never broken
    assert set(back) == {"a", "b"}
    sizes = {da.sizes["stimulus"] for da in back.values()}
    assert sizes in ({3}, {4000})
    value = float(back["a"].values[0, 0])
    assert value == (1.0 if sizes == {3} else 2.0)
    left = stale_parts(path)                                   # what the killed writer left is recognised ...
    assert all(p.name.startswith(f".acts{suffix}.") for p in left)
    save_activations({"a": ones, "b": ones}, path)               # ... and removed by the next write
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"acts{suffix}"]
