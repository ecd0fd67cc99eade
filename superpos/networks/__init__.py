"""Vision models and their activations (stimulus x unit per layer)."""
import lazy_loader as _lazy

__getattr__, __dir__, __all__ = _lazy.attach(__name__, submodules=['extraction', 'models', 'store'])
