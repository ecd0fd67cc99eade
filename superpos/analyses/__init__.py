"""Comparison statistics shared by the CNN and brain analyses: are directions more interpretable than units?"""
import lazy_loader as _lazy

__getattr__, __dir__, __all__ = _lazy.attach(__name__, submodules=['cnn', 'comparison', 'ranking'])
