#!/usr/bin/env python3
"""Deterministic weights, bit-exact with strata's models/init.cpp.

Element i of the stream named `key` under `seed` (all integer arithmetic mod 2^64):
    state = seed ^ fnv1a64(key)                      (key as UTF-8 bytes)
    z     = splitmix64(state + (i + 1) * 0x9E3779B97F4A7C15)
    u     = (z >> 40) * 2^-24                        (float64, exact, in [0, 1))
    uniform(i, lo, hi) = float32(lo + (hi - lo) * u)  (float64 ops, one rounding to float32)

fill_deterministic(state_dict, seed) fills every tensor from its key:
    int64 tensors (num_batches_tracked)         0
    BatchNorm (owner has owner.running_mean):   weight U(0.5, 1.5), bias U(-0.25, 0.25),
                                                running_mean U(-0.25, 0.25), running_var U(0.5, 2)
    *.weight rank 4 (conv)                      U(-b, b), b = sqrt(6 / fan_in)
    *.weight rank 2 (linear)                    U(-b, b), b = 1 / sqrt(fan_in)
    *.bias                                      U(-b, b), b = 1 / sqrt(fan_in of owner.weight)
where fan_in = product of a weight's dims 1..end. Anything else raises.

CLI (needs a Python with torch and torchvision):
    detgen.py --model resnet18 --seed 2024 --out resnet18_detgen2024.safetensors
"""
import argparse
import math
import os
import sys
from collections import OrderedDict

import numpy as np

MASK64 = (1 << 64) - 1
FNV_OFFSET = 0xCBF29CE484222325
FNV_PRIME = 0x100000001B3
GOLDEN = 0x9E3779B97F4A7C15
SM_M1 = 0xBF58476D1CE4E5B9
SM_M2 = 0x94D049BB133111EB


def fnv1a64(key):
    """FNV-1a 64 of the UTF-8 bytes of `key` (a str or bytes), as a Python int."""
    data = key.encode("utf-8") if isinstance(key, str) else bytes(key)
    h = FNV_OFFSET
    for byte in data:
        h ^= byte
        h = (h * FNV_PRIME) & MASK64
    return h


def splitmix64_int(z):
    """Scalar reference splitmix64 on Python ints."""
    z &= MASK64
    z = ((z ^ (z >> 30)) * SM_M1) & MASK64
    z = ((z ^ (z >> 27)) * SM_M2) & MASK64
    return z ^ (z >> 31)


def splitmix64(z):
    """Vectorised splitmix64 on a numpy uint64 array (wraps mod 2^64)."""
    z = np.asarray(z, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(SM_M1)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(SM_M2)
        return z ^ (z >> np.uint64(31))


def stream_state(seed, key):
    return (int(seed) & MASK64) ^ fnv1a64(key)


def stream_u(seed, key, n, start=0):
    """u_i for i = start .. start+n-1 as float64 in [0, 1)."""
    state = np.uint64(stream_state(seed, key))
    i = np.arange(start, start + n, dtype=np.uint64)
    with np.errstate(over="ignore"):
        x = state + (i + np.uint64(1)) * np.uint64(GOLDEN)
    z = splitmix64(x)
    return (z >> np.uint64(40)).astype(np.float64) * (2.0 ** -24)


def stream_uniform(seed, key, n, lo, hi, start=0):
    """float32(lo + (hi - lo) * u_i), computed in float64 and rounded once."""
    lo = np.float64(lo)
    hi = np.float64(hi)
    u = stream_u(seed, key, n, start)
    span = hi - lo  # float64 scalar, one rounding (exact for lo = -b, hi = b)
    return (lo + span * u).astype(np.float32)


def _split_key(key):
    dot = key.rfind(".")
    if dot < 0:
        return "", key
    return key[:dot], key[dot + 1:]


def _join(owner, leaf):
    return leaf if owner == "" else owner + "." + leaf


def _shape(t):
    return tuple(int(d) for d in t.shape)


def _fan_in(shape):
    f = 1
    for d in shape[1:]:
        f *= int(d)
    return f


def _is_int64(t):
    dt = getattr(t, "dtype", None)
    if isinstance(t, np.ndarray):
        return t.dtype == np.int64
    return str(dt) == "torch.int64"


def fill_deterministic_numpy(shapes, seed):
    """`shapes`: ordered mapping key -> (shape tuple, is_int64). Returns OrderedDict of arrays."""
    bn_owners = set()
    for key in shapes:
        owner, leaf = _split_key(key)
        if leaf == "running_mean":
            bn_owners.add(owner)
    out = OrderedDict()
    for key, (shape, is_i64) in shapes.items():
        owner, leaf = _split_key(key)
        n = 1
        for d in shape:
            n *= int(d)
        if is_i64:
            out[key] = np.zeros(shape, dtype=np.int64)
            continue
        if owner in bn_owners:
            ranges = {"weight": (0.5, 1.5), "bias": (-0.25, 0.25),
                      "running_mean": (-0.25, 0.25), "running_var": (0.5, 2.0)}
            if leaf not in ranges:
                raise ValueError("fill_deterministic: no rule for BatchNorm tensor '%s'" % key)
            lo, hi = ranges[leaf]
        elif leaf == "weight" and len(shape) == 4:
            b = math.sqrt(6.0 / float(_fan_in(shape)))
            lo, hi = -b, b
        elif leaf == "weight" and len(shape) == 2:
            b = 1.0 / math.sqrt(float(_fan_in(shape)))
            lo, hi = -b, b
        elif leaf == "bias":
            wkey = _join(owner, "weight")
            if wkey not in shapes:
                raise ValueError("fill_deterministic: bias '%s' without a weight" % key)
            b = 1.0 / math.sqrt(float(_fan_in(shapes[wkey][0])))
            lo, hi = -b, b
        else:
            raise ValueError("fill_deterministic: no rule for '%s'" % key)
        out[key] = stream_uniform(seed, key, n, lo, hi).reshape(shape)
    return out


def fill_deterministic(state_dict, seed):
    """Returns a new state dict (same keys, order, shapes, dtypes) filled deterministically.

    Values are torch tensors if the input holds torch tensors, numpy arrays otherwise."""
    shapes = OrderedDict((k, (_shape(v), _is_int64(v))) for k, v in state_dict.items())
    for k, v in state_dict.items():
        if not _is_int64(v) and str(v.dtype) not in ("torch.float32", "float32"):
            raise ValueError("fill_deterministic: '%s' has dtype %s (float32/int64 only)"
                             % (k, v.dtype))
    arrays = fill_deterministic_numpy(shapes, seed)
    if any(not isinstance(v, np.ndarray) for v in state_dict.values()):
        import torch
        return OrderedDict((k, torch.from_numpy(a)) for k, a in arrays.items())
    return arrays


def build_model(name):
    import torchvision
    return getattr(torchvision.models, name)(weights=None)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="resnet18")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--out", required=True, help="output .safetensors")
    args = p.parse_args(argv)

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import torch
    import torchvision
    from st_io import save_safetensors

    model = build_model(args.model)
    sd = fill_deterministic(model.state_dict(), args.seed)
    model.load_state_dict(sd, strict=True)
    meta = OrderedDict([
        ("format", "pt"), ("model", args.model), ("source", "detgen"),
        ("seed", str(args.seed)), ("generator", "tools/detgen.py"),
        ("torch_version", torch.__version__), ("torchvision_version", torchvision.__version__),
        ("numpy_version", np.__version__)])
    save_safetensors(OrderedDict((k, v.numpy()) for k, v in sd.items()), args.out, meta)
    print("wrote %s: %d tensors, seed %d" % (args.out, len(sd), args.seed))


if __name__ == "__main__":
    main()
