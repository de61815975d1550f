#!/usr/bin/env python3
"""Exports torchvision model weights to safetensors for strata (needs a Python with torch and
torchvision). Never downloads anything.

    export_torchvision.py --model resnet18 --weights IN.pth --out OUT.safetensors
    export_torchvision.py --model resnet18 --pretrained --out OUT.safetensors
        (torchvision's DEFAULT weights, only if already in the torch hub cache)
    export_torchvision.py --model resnet18 --out OUT.safetensors
        (torchvision's random initialisation; warns)
    export_torchvision.py --model resnet18 --detgen --seed 2024 --out OUT.safetensors
        (tools/detgen.py weights, identical to strata's fill_deterministic)
    export_torchvision.py --npy-input x.npy --shape 1,3,224,224 --input-seed 0
        (a float32 C-order input in [0, 1) as .npy; may be combined with --out)

Tensors keep their dtype (float32 -> F32, int64 -> I64) and state-dict order; __metadata__
records format "pt", the torch/torchvision versions and the source.
"""
import argparse
import os
import sys
from collections import OrderedDict

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from st_io import save_safetensors  # noqa: E402


def fail(msg):
    print("export_torchvision: error: " + msg, file=sys.stderr)
    sys.exit(1)


def warn(msg):
    print("export_torchvision: warning: " + msg, file=sys.stderr)


def extract_state_dict(obj, path):
    import torch
    if isinstance(obj, torch.nn.Module):
        obj = obj.state_dict()
    if isinstance(obj, dict):
        for k in ("state_dict", "model"):
            inner = obj.get(k)
            if isinstance(inner, torch.nn.Module):
                inner = inner.state_dict()
            if isinstance(inner, dict) and inner and \
                    all(isinstance(v, torch.Tensor) for v in inner.values()):
                obj = inner
                break
    if not isinstance(obj, dict) or not obj or \
            not all(isinstance(v, torch.Tensor) for v in obj.values()):
        fail("%s: expected a state_dict (or a dict holding one under 'state_dict' or 'model')"
             % path)
    out = OrderedDict()
    for k, v in obj.items():
        out[k[len("module."):] if k.startswith("module.") else k] = v
    return out


def default_weights(model_name):
    import torchvision
    try:
        from torchvision.models import get_model_weights
        return get_model_weights(model_name).DEFAULT
    except (ImportError, AttributeError, ValueError, KeyError):
        pass
    enum_name = {"resnet18": "ResNet18_Weights", "resnet34": "ResNet34_Weights",
                 "resnet50": "ResNet50_Weights"}.get(model_name)
    if enum_name is None or not hasattr(torchvision.models, enum_name):
        fail("no DEFAULT weights known for model '%s'" % model_name)
    return getattr(torchvision.models, enum_name).DEFAULT


def pretrained_state_dict(model_name):
    import torch
    w = default_weights(model_name)
    fname = os.path.basename(w.url)
    path = os.path.join(torch.hub.get_dir(), "checkpoints", fname)
    if not os.path.isfile(path):
        fail("--pretrained: %s (%s) is not in the torch hub cache (expected %s). This tool "
             "never downloads; place the file there, or pass it with --weights."
             % (w, fname, path))
    sd = torch.load(path, map_location="cpu")
    return extract_state_dict(sd, path), "torchvision %s (%s)" % (w, path)


def build_state_dict(args):
    import torch
    import torchvision
    builder = getattr(torchvision.models, args.model, None)
    if builder is None or not callable(builder):
        fail("unknown torchvision model '%s'" % args.model)
    model = builder(weights=None)
    ref = model.state_dict()
    if args.detgen:
        from detgen import fill_deterministic
        sd = fill_deterministic(ref, args.seed)
        source = "detgen seed %d (tools/detgen.py)" % args.seed
    elif args.weights:
        obj = torch.load(args.weights, map_location="cpu")
        sd = extract_state_dict(obj, args.weights)
        source = "file " + os.path.basename(args.weights)
    elif args.pretrained:
        sd, source = pretrained_state_dict(args.model)
    else:
        warn("no --weights/--pretrained/--detgen: exporting torchvision's RANDOM initialisation "
             "(torch.manual_seed(%d))" % args.seed)
        torch.manual_seed(args.seed)
        sd = builder(weights=None).state_dict()
        source = "torchvision random init, torch.manual_seed(%d)" % args.seed
    # Check the keys/shapes against the architecture (also catches a wrong --model).
    model.load_state_dict(sd, strict=True)
    return sd, source


def write_input(args):
    shape = tuple(int(s) for s in args.shape.split(",") if s.strip())
    if not shape or any(d <= 0 for d in shape):
        fail("--shape must be positive comma-separated dims, got '%s'" % args.shape)
    rs = np.random.RandomState(args.input_seed)
    x = (rs.randint(0, 1 << 24, size=shape).astype(np.float64) * 2.0 ** -24).astype(np.float32)
    np.save(args.npy_input, np.ascontiguousarray(x))
    print("wrote %s: float32 %s, RandomState(%d) uniform [0,1)"
          % (args.npy_input, list(shape), args.input_seed))


def main(argv=None):
    p = argparse.ArgumentParser(description="Export torchvision weights to safetensors.")
    p.add_argument("--model", default="resnet18")
    p.add_argument("--weights", help=".pth file (state_dict, or dict with 'state_dict'/'model')")
    p.add_argument("--pretrained", action="store_true",
                   help="torchvision DEFAULT weights, from the torch hub cache only")
    p.add_argument("--detgen", action="store_true", help="deterministic weights (needs --seed)")
    p.add_argument("--seed", type=int, default=0, help="seed for --detgen or random init")
    p.add_argument("--out", help="output .safetensors")
    p.add_argument("--npy-input", help="also write a random float32 input .npy here")
    p.add_argument("--shape", default="1,3,224,224", help="shape for --npy-input")
    p.add_argument("--input-seed", type=int, default=0, help="seed for --npy-input")
    args = p.parse_args(argv)

    if sum(bool(x) for x in (args.weights, args.pretrained, args.detgen)) > 1:
        fail("give at most one of --weights, --pretrained, --detgen")
    if not args.out and not args.npy_input:
        fail("nothing to do: give --out and/or --npy-input")

    if args.npy_input:
        write_input(args)
    if not args.out:
        return

    import torch
    import torchvision
    sd, source = build_state_dict(args)
    tensors = OrderedDict()
    for k, v in sd.items():
        if not isinstance(v, torch.Tensor):
            fail("'%s' is not a tensor" % k)
        if v.dtype not in (torch.float32, torch.int64):
            warn("'%s' has dtype %s (kept as is)" % (k, v.dtype))
        tensors[k] = v.detach().cpu().contiguous().numpy()
    meta = OrderedDict([
        ("format", "pt"), ("model", args.model), ("source", source),
        ("torch_version", torch.__version__), ("torchvision_version", torchvision.__version__),
        ("generator", "tools/export_torchvision.py")])
    save_safetensors(tensors, args.out, meta)
    print("wrote %s: %d tensors from %s" % (args.out, len(tensors), source))


if __name__ == "__main__":
    main()
