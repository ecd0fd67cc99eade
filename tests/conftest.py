"""Test configuration shared by all tests: offline, quiet, reproducible."""
import os

import pytest

os.environ.setdefault("DANDI_NO_ET", "1")
os.environ.setdefault("GEOMSTATS_BACKEND", "numpy")

NWB_LAYOUTS = ("two_photon", "neuropixels")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """One synthetic NWB file per layout (planted features, seed 3), written once per test module."""
    from superpos.brain.synthetic import write_synthetic_nwb
    root = tmp_path_factory.mktemp("nwb")
    return {layout: write_synthetic_nwb(root / f"{layout}.nwb", layout, seed=3) for layout in NWB_LAYOUTS}


@pytest.fixture(scope="module")
def sessions(files):
    """The synthetic files read with load_nwb, per layout."""
    from superpos.brain.nwb import load_nwb
    return {layout: load_nwb(files[layout]["path"]) for layout in NWB_LAYOUTS}


# the factor sets of the disentanglement-metric tests (one draw per test session)
@pytest.fixture(scope="session")
def gauss():
    from disentangle_metrics_data import gaussian_factors
    return gaussian_factors()


@pytest.fixture(scope="session")
def discrete():
    from disentangle_metrics_data import discrete_factors
    return discrete_factors()
