"""The Python side of strata's model, getter and weight loading (the C++ side is strata._strata).

Everything here is argument handling in torchvision's terms; the work is done in C++ with the
GIL released.
"""
import errno
import os
import stat
from collections import OrderedDict, namedtuple

import numpy as np

from . import _strata

# RunOptions::max_activation_bytes' default: the largest single activation a call may create.
DEFAULT_MAX_ACTIVATION_BYTES = 16 << 30

OutputInfo = namedtuple("OutputInfo", ["name", "shape", "channels", "stride"])
OutputInfo.__doc__ = ("One requested output for a given input shape: its new name, shape, channels and "
                      "stride relative to the input (0 where it is not a feature map, e.g. fc).")

# What torch's load_state_dict returns.
IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


def _as_array(x):
    """The forward input as a numpy array, without copying where the source allows it.

    numpy arrays are used as they are; objects with __array__ (a torch CPU tensor, a PIL image
    converted by the caller, ...) through numpy.asarray; objects with only __dlpack__ through
    numpy.from_dlpack. dtype and layout are checked in C++ (float32 only; any strides)."""
    if isinstance(x, np.ndarray):
        return x
    try:
        if hasattr(x, "__array__"):
            return np.asarray(x)
        if hasattr(x, "__dlpack__"):
            return np.from_dlpack(x)
    except Exception as e:  # e.g. a torch tensor that requires grad, or one on a GPU
        raise TypeError("input: cannot read a %s as a numpy array: %s" % (type(x).__name__, e)) from e
    raise TypeError("input: expected a float32 NCHW array (numpy, or an object with __array__ or "
                    "__dlpack__ such as a torch CPU tensor), got %s" % type(x).__name__)


def _run_args(num_threads, cpu, packing, backend, max_activation_bytes):
    if isinstance(num_threads, bool) or not isinstance(num_threads, (int, np.integer)):
        raise TypeError("num_threads: expected an int, got %s" % type(num_threads).__name__)
    return (int(num_threads), str(cpu), str(packing), str(backend), int(max_activation_bytes))


def _file_path(path):
    """`path` as bytes for C++, after the checks that give Python's own OSError subclasses:
    FileNotFoundError, PermissionError, IsADirectoryError, and OSError for a FIFO, socket or
    device (never opened: a FIFO would block). What the file holds is C++'s to judge."""
    path = os.fspath(path)
    st = os.stat(path)
    if stat.S_ISDIR(st.st_mode):
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
    if not stat.S_ISREG(st.st_mode):
        raise OSError(errno.EINVAL, "not a regular file", path)
    os.close(os.open(path, os.O_RDONLY | os.O_NONBLOCK))  # PermissionError
    return os.fsencode(path)


def _state_value(key, value):
    """A state_dict value as an array strata loads: float32, float16 and int64 as they are; other
    floats to float32 and integers to int64 (as torch's copy_ into the parameter would)."""
    a = _as_array(value) if not isinstance(value, np.ndarray) else value
    kind = a.dtype.kind
    if kind == "f":
        if a.dtype.itemsize == 2:
            return a if a.dtype.isnative else a.astype("=f2")
        return a if a.dtype == np.float32 else a.astype(np.float32)
    if kind in "iu":
        return a if a.dtype == np.int64 else a.astype(np.int64)
    raise ValueError("state_dict['%s']: dtype %s is not loadable (float32, float16, float64 or an "
                     "integer type)" % (key, a.dtype))


def _state_items(state_dict):
    if not hasattr(state_dict, "items"):
        raise TypeError("state_dict: expected a mapping of names to arrays, got %s" % type(state_dict).__name__)
    items = []
    for key, value in state_dict.items():
        if not isinstance(key, str):
            raise TypeError("state_dict: keys must be str, got %r" % (key,))
        items.append((key, _state_value(key, value)))
    return items


class ResNet:
    """A strata ResNet (torchvision's ResNet family); made by strata.models.resnet18() etc.

    Calling it runs the whole model (logits). Inference only: it is always in eval mode."""

    def __init__(self, model):
        self._m = model

    @property
    def arch(self):
        """torchvision's name of this architecture: 'resnet18', 'resnext50_32x4d', ..."""
        return self._m.arch

    def __call__(self, x, *, num_threads=0, cpu="auto", packing="fast", backend="cpu",
                 max_activation_bytes=DEFAULT_MAX_ACTIVATION_BYTES):
        """The model's output for a float32 NCHW input (numpy, or anything with __array__ or
        __dlpack__): an [N, num_classes] float32 numpy array. See IntermediateLayerGetter.__call__
        for the options."""
        return self._m.forward(_as_array(x), *_run_args(num_threads, cpu, packing, backend,
                                                        max_activation_bytes))

    forward = __call__

    def eval(self):
        """No-op, for torchvision-style code: strata models only run inference."""
        return self

    def train(self, mode=True):
        if mode:
            raise ValueError("strata models run inference only (eval mode); train(True) is not supported")
        return self

    def children_names(self):
        """The model's direct children in forward order (what IntermediateLayerGetter keys name)."""
        return list(self._m.children())

    def node_names(self):
        """Every name a getter request may use, as torchvision's get_graph_node_names lists them."""
        return list(self._m.node_names())

    def output_shape(self, input_shape):
        """The output's shape for an input of `input_shape`, by shape inference (nothing runs)."""
        return tuple(self._m.output_shape([int(d) for d in input_shape]))

    def state_dict(self):
        """An OrderedDict of numpy arrays, torch's keys and order. Copies: a later load may move a
        parameter's memory (strata.load(path, into=model) maps the file)."""
        return OrderedDict(self._m.state_dict())

    def load_state_dict(self, state_dict, strict=True):
        """Copies the values of a mapping of names to arrays (numpy, torch tensors, ...) into the
        model, as torch does. strict (default): every missing key, unexpected key and shape
        mismatch is reported in one strata.Error and nothing changes. strict=False: only shape
        mismatches fail. Returns (missing_keys, unexpected_keys) like torch."""
        items = _state_items(state_dict)
        self._m.load_state_dict(items, bool(strict))
        model_keys = self._m.state_keys()
        given = {k for k, _ in items}
        known = set(model_keys)
        return IncompatibleKeys([k for k in model_keys if k not in given],
                                [k for k, _ in items if k not in known])

    def __repr__(self):
        return self._m.repr()


class IntermediateLayerGetter:
    """torchvision's IntermediateLayerGetter over a strata model.

        getter = strata.IntermediateLayerGetter(model, {"layer1": "feat1", "layer3": "feat2"})
        out = getter(x)        # OrderedDict: feat1, feat2 (numpy arrays), in model order

    Keys are the model's children, or any nested node torchvision's create_feature_extractor
    takes ('layer2.0.conv1', 'layer1.0.add', 'flatten', ...); values are the new names. Only
    what the requests need runs. The getter shares the model's weights (loading either changes
    both)."""

    def __init__(self, model, return_layers):
        if not isinstance(model, ResNet):
            raise TypeError("IntermediateLayerGetter: expected a strata model (strata.models.resnet18(), ...), "
                            "got %s" % type(model).__name__)
        if hasattr(return_layers, "items"):
            pairs = list(return_layers.items())
        else:
            pairs = [tuple(p) for p in return_layers]
        for p in pairs:
            if len(p) != 2 or not all(isinstance(s, str) for s in p):
                raise TypeError("return_layers: expected {layer: new_name} with str keys and values, got %r" % (p,))
        self.model = model
        self._g = _strata.Getter(model._m, pairs)

    @property
    def return_layers(self):
        """The requests as given: OrderedDict {layer: new_name}."""
        return OrderedDict(self._g.return_layers())

    def children_names(self):
        """The model's children this getter keeps (up to the last one a request needs)."""
        return list(self._g.children())

    def __call__(self, x, *, num_threads=0, cpu="auto", packing="fast", backend="cpu",
                 max_activation_bytes=DEFAULT_MAX_ACTIVATION_BYTES):
        """Runs the model on `x` and returns OrderedDict {new_name: numpy array} in model order.

        x: float32 NCHW (numpy, or anything with __array__ or __dlpack__, e.g. a torch CPU
           tensor). A C-contiguous array is read in place; other layouts are copied once to C
           order; other dtypes raise ValueError. The outputs own strata's buffers (no copy).
        num_threads: OpenMP threads for this call (0: OMP_NUM_THREADS or every core). Calls from
           several Python threads run in parallel (the GIL is released): give each num_threads=1
           or split the cores.
        cpu: the CPU kernels' level: 'auto', 'avx512', 'avx2' or 'baseline'.
        packing: 'fast' (also keep Winograd weights; the default, for repeated calls) or 'lean'.
        backend: 'cpu' or 'reference' (strata's naive loops: slow; the readable spec).
        max_activation_bytes: the largest single activation the call may create (0: no limit)."""
        return OrderedDict(self._g.call(_as_array(x), *_run_args(num_threads, cpu, packing, backend,
                                                                  max_activation_bytes)))

    forward = __call__

    def output_info(self, input_shape):
        """[OutputInfo(name, shape, channels, stride)] of each output for an input of
        `input_shape` (N, C, H, W), by shape inference alone: nothing runs, nothing is allocated;
        an input the model cannot take raises strata.Error as a call would."""
        return [OutputInfo(n, tuple(s), c, st) for n, s, c, st in
                self._g.output_info([int(d) for d in input_shape])]

    def load_state_dict(self, state_dict):
        """Loads the weights of the children this getter keeps (strata's load_for_request):
        strict for those, while keys of children it does not keep (a checkpoint's fc, or no fc
        at all) are ignored; an absent num_batches_tracked is fine. Keys the model does not have
        are errors. The model sees the new weights too."""
        self._g.load_state_dict(_state_items(state_dict))

    def eval(self):
        return self

    def __repr__(self):
        return self._g.repr()


def load(path, *, strip_prefix=None, into=None, metadata=False):
    """Reads a weight file: a torch.save file (.pth/.pt; zip or legacy) or safetensors, chosen by
    its content.

    Without `into`: an OrderedDict {key: numpy array} (with metadata=True, a pair with the
    safetensors metadata dict). The arrays are read-only views of the memory-mapped file (no copy,
    like numpy.load(mmap_mode='r')); bfloat16 tensors, which numpy lacks, are converted to
    float32. `.copy()` one to change it.
    With `into=model` (a strata model): loads the file straight into it, strictly, its
    parameters sharing the mapped file (no copy at all); returns the model.
    With `into=getter` (an IntermediateLayerGetter): loads what the getter keeps, as
    getter.load_state_dict does; returns the getter.
    strip_prefix: keep only the keys that start with it, minus it ('backbone.' of a segmentation
    checkpoint, 'backbone.body.' of a detection one).

    Errors: FileNotFoundError, PermissionError, IsADirectoryError or OSError for the file itself;
    strata.Error (a ValueError) for what it holds, with strata's message."""
    p = _file_path(path)
    prefix = "" if strip_prefix is None else str(strip_prefix)
    if into is None:
        items, meta = _strata.load(p, prefix)
        state = OrderedDict(items)
        return (state, dict(meta)) if metadata else state
    if isinstance(into, ResNet):
        into._m.load_file(p, prefix)
        return into
    if isinstance(into, IntermediateLayerGetter):
        into._g.load_file(p, prefix)
        return into
    raise TypeError("load(into=...): expected a strata model or IntermediateLayerGetter, got %s"
                    % type(into).__name__)
