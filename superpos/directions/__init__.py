"""Direction finders in activation space (scikit-learn estimators) and the toy model of superposition."""
import lazy_loader as _lazy

__getattr__, __dir__, __all__ = _lazy.attach(__name__, submodules=['base', 'kmeans', 'linear', 'registry', 'sae', 'spherical', 'toy'])
