"""Geometry of direction sets (sphere, Grassmannian) and of representations, with Geomstats."""
import lazy_loader as _lazy

__getattr__, __dir__, __all__ = _lazy.attach(__name__, submodules=['comparison', 'manifolds', 'representations'])
