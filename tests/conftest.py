"""Test configuration shared by all tests: offline, quiet, reproducible."""
import os

os.environ.setdefault("DANDI_NO_ET", "1")
os.environ.setdefault("GEOMSTATS_BACKEND", "numpy")
