#!/usr/bin/env python3
"""Minimal safetensors reader/writer on numpy arrays (no `safetensors` package needed).

File layout (https://github.com/huggingface/safetensors):
    u64 little-endian N | N bytes of UTF-8 JSON header | raw little-endian tensor bytes
The header maps each tensor name to {"dtype", "shape", "data_offsets": [begin, end]} with
offsets relative to the start of the byte buffer, plus an optional "__metadata__" object whose
values are strings. This writer keeps the dict's order for both the header and the data, and
pads the header with spaces to a multiple of 8 bytes (as the reference implementation does).
"""
import json
import struct
from collections import OrderedDict

import numpy as np

_NP_TO_ST = {
    np.dtype("float64"): "F64",
    np.dtype("float32"): "F32",
    np.dtype("float16"): "F16",
    np.dtype("int64"): "I64",
    np.dtype("int32"): "I32",
    np.dtype("int16"): "I16",
    np.dtype("int8"): "I8",
    np.dtype("uint64"): "U64",
    np.dtype("uint32"): "U32",
    np.dtype("uint16"): "U16",
    np.dtype("uint8"): "U8",
    np.dtype("bool"): "BOOL",
}
_ST_TO_NP = {v: k for k, v in _NP_TO_ST.items()}


def save_safetensors(tensors, path, metadata=None):
    """Writes `tensors` (name -> numpy array, in the order given) to `path`.

    `metadata` is a dict of str -> str stored as "__metadata__"."""
    header = OrderedDict()
    if metadata:
        for k, v in metadata.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise TypeError("safetensors metadata must map str to str: %r -> %r" % (k, v))
        header["__metadata__"] = OrderedDict(metadata)
    blobs = []
    offset = 0
    for name, arr in tensors.items():
        if name == "__metadata__":
            raise ValueError("tensor name '__metadata__' is reserved")
        arr = np.asarray(arr)
        if arr.dtype not in _NP_TO_ST:
            raise TypeError("unsupported dtype %s for tensor '%s'" % (arr.dtype, name))
        le = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<"))
        data = le.tobytes(order="C")
        header[name] = OrderedDict(
            [("dtype", _NP_TO_ST[arr.dtype]), ("shape", [int(d) for d in arr.shape]),
             ("data_offsets", [offset, offset + len(data)])])
        blobs.append(data)
        offset += len(data)
    hbytes = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    hbytes += b" " * ((8 - len(hbytes) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hbytes)))
        f.write(hbytes)
        for b in blobs:
            f.write(b)


def load_safetensors(path):
    """Returns (OrderedDict name -> numpy array in data order, metadata dict)."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n].decode("utf-8"), object_pairs_hook=OrderedDict)
    metadata = header.pop("__metadata__", {}) or {}
    base = 8 + n
    items = sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0])
    out = OrderedDict()
    for name, info in items:
        dt = _ST_TO_NP[info["dtype"]].newbyteorder("<")
        b, e = info["data_offsets"]
        shape = tuple(info["shape"])
        count = int(np.prod(shape, dtype=np.int64)) if shape else 1
        if e - b != count * dt.itemsize:
            raise ValueError("tensor '%s': %d bytes for shape %s" % (name, e - b, shape))
        out[name] = np.frombuffer(raw, dtype=dt, count=count, offset=base + b).reshape(shape) \
            .astype(dt.newbyteorder("="))
    return out, dict(metadata)
