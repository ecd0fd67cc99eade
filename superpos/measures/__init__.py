"""Image similarity and the interpretability measures (II, in-silico 2-AFC, MIS), and human psychophysics data."""
import lazy_loader as _lazy

__getattr__, __dir__, __all__ = _lazy.attach(__name__, submodules=['blockwise', 'bootstrap', 'borowski', 'extremes', 'human', 'index', 'mis', 'planted', 'selection', 'similarity', 'twoafc'])
