"""Recorded runs of analysis notebooks and sweeps of them on Dask distributed (local, any scheduler, SLURM/PBS)."""
import lazy_loader as _lazy

__getattr__, __dir__, __all__ = _lazy.attach(__name__, submodules=['grid', 'runs'])
