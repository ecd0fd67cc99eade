"""Stimulus sets: natural-image patches, procedural images and image datasets, labelled by stimulus id."""
import lazy_loader as _lazy

__getattr__, __dir__, __all__ = _lazy.attach(__name__, submodules=['natural', 'sets'])
