"""Brain recordings: NWB layouts, synthetic files with planted features, DANDI streaming, reliability."""
import lazy_loader as _lazy

__getattr__, __dir__, __all__ = _lazy.attach(__name__, submodules=['allen', 'dandi', 'nwb', 'reliability', 'synthetic'])
