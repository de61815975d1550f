"""strata: torchvision's ResNet family and IntermediateLayerGetter, run by a C++ library.

    import numpy as np
    import strata

    m = strata.models.resnet18()
    new_m = strata.IntermediateLayerGetter(m, {"layer1": "feat1", "layer3": "feat2"})
    out = new_m(np.random.rand(1, 3, 224, 224).astype(np.float32))
    print([(k, v.shape) for k, v in out.items()])
    # [('feat1', (1, 64, 56, 56)), ('feat2', (1, 256, 14, 14))]

Inputs are float32 NCHW arrays (numpy, or anything with __array__ or __dlpack__, such as a torch
CPU tensor); outputs are numpy arrays over strata's own buffers. Calls release the GIL.
Errors: strata.Error (a ValueError) with strata's message; OSError subclasses for files.
"""
from . import _strata
from ._core import (DEFAULT_MAX_ACTIVATION_BYTES, IncompatibleKeys, IntermediateLayerGetter,
                    OutputInfo, load)
from . import models
from . import image

Error = _strata.Error
__version__ = _strata.version


def max_threads():
    """The most OpenMP threads one call may ask for (num_threads): 16 per core, and OpenMP's limit."""
    return _strata.max_threads()


def cpu_info():
    """The CPU kernels' level in use: 'avx2 (detected: avx2; CPU: ...)'."""
    return _strata.cpu_level_summary()


__all__ = ["DEFAULT_MAX_ACTIVATION_BYTES", "Error", "IncompatibleKeys", "IntermediateLayerGetter",
           "OutputInfo", "cpu_info", "image", "load", "max_threads", "models", "__version__"]
