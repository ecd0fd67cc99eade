"""Disentanglement: dSprites and natural sprite transitions, SlowVAE, and the disentanglement metrics."""
import lazy_loader as _lazy

__getattr__, __dir__, __all__ = _lazy.attach(__name__, submodules=['dsprites', 'metrics', 'model', 'natural', 'pairs', 'predictive', 'runs', 'sampled_metrics', 'training'])
