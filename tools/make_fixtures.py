#!/usr/bin/env python3
"""Writes strata's committed test fixtures into tests/fixtures/ (run with a Python that has
torch and torchvision, e.g. `/usr/bin/python3 tools/make_fixtures.py`).

    ops.safetensors                 per-op cases computed by torch (conv2d, batch_norm2d, ...)
    pth/*.pth                       small torch.save files (zip, legacy, checkpoints; --only pth)
    nodes_<model>.safetensors       FX create_feature_extractor over every node (--only nodes)
    resnet18_<config>.safetensors   ResNet-18 (detgen weights, seed 2024) getter outputs
    detgen_check.safetensors        first values of detgen tensors, to check the C++ generator
    backbones/                      ResNeXt, Wide ResNet, dilated ResNet-50 outputs, state_dict
                                    structure, small segmentation/detection/getter checkpoints
                                    (--only backbones)
    images/                         photo crops (JPEG, PNG) and what PIL + torchvision make of
                                    them: preprocessing digests, logits, top-5, features (--only images)
    maps/expected.safetensors       a small [N, C, H, W] tensor and the pixels torchvision's
                                    save_image(make_grid(normalize=True, scale_each=True)) writes
                                    for it: `strata features --save-maps` (--only maps)

Reruns give identical files on the same machine (fixed seeds; torch.set_num_threads(2)).
See tests/fixtures/README.md for the schema.
"""
import argparse
import json
import os
import sys
from collections import OrderedDict

import numpy as np
import torch
import torch.nn as nn
import torchvision
from torchvision.models._utils import IntermediateLayerGetter

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from detgen import fill_deterministic, stream_state  # noqa: E402
from st_io import save_safetensors  # noqa: E402

GENERATOR = "tools/make_fixtures.py"
RESNET_SEED = 2024


def base_metadata():
    return OrderedDict([
        ("generator", GENERATOR),
        ("torch_version", torch.__version__),
        ("torchvision_version", torchvision.__version__),
        ("numpy_version", np.__version__),
    ])


def uniform01(rs, shape):
    """float32 uniform in [0, 1) on a 2^-24 grid (exact in float32, never 1.0)."""
    return (rs.randint(0, 1 << 24, size=shape).astype(np.float64) * 2.0 ** -24).astype(np.float32)


def normal(rs, shape, scale=1.0):
    return (rs.standard_normal(size=shape) * scale).astype(np.float32)


def t(a):
    return torch.from_numpy(np.ascontiguousarray(a))


def pair(v):
    return [int(v), int(v)] if isinstance(v, int) else [int(v[0]), int(v[1])]


# ----------------------------------------------------------------------------------- ops
class OpsBuilder:
    def __init__(self, seed=1234):
        self.rs = np.random.RandomState(seed)
        self.tensors = OrderedDict()
        self.cases = []

    def _add(self, name, desc, info, tensors):
        assert not any(c["name"] == name for c in self.cases), name
        case = OrderedDict([("name", name)])
        case.update(info)
        case["description"] = desc
        self.cases.append(case)
        for k, v in tensors:
            arr = v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else v
            assert arr.dtype == np.float32 and arr.size <= 60000, (name, k, arr.shape)
            self.tensors["%s.%s" % (name, k)] = np.ascontiguousarray(arr)

    def conv2d(self, name, desc, n, cin, cout, hw, k, s=1, p=0, d=1, g=1, bias=True):
        k, s, p, d = pair(k), pair(s), pair(p), pair(d)
        x = normal(self.rs, (n, cin) + tuple(hw))
        m = nn.Conv2d(cin, cout, k, stride=s, padding=p, dilation=d, groups=g, bias=bias)
        fan_in = (cin // g) * k[0] * k[1]
        w = normal(self.rs, (cout, cin // g, k[0], k[1]), 1.0 / np.sqrt(fan_in))
        with torch.no_grad():
            m.weight.copy_(t(w))
            if bias:
                b = normal(self.rs, (cout,), 0.5)
                m.bias.copy_(t(b))
        m.eval()
        with torch.no_grad():
            y = m(t(x))
        info = OrderedDict([("op", "conv2d"), ("in_channels", cin), ("out_channels", cout),
                            ("kernel_size", k), ("stride", s), ("padding", p),
                            ("dilation", d), ("groups", g), ("bias", bool(bias))])
        ts = [("input", x), ("weight", m.weight)]
        if bias:
            ts.append(("bias", m.bias))
        ts.append(("output", y))
        self._add(name, desc, info, ts)

    def batch_norm2d(self, name, desc, n, c, hw, eps=1e-5, small_var=False):
        x = normal(self.rs, (n, c) + tuple(hw), 2.0)
        m = nn.BatchNorm2d(c, eps=eps)
        w = (0.5 + uniform01(self.rs, (c,))).astype(np.float32)
        b = normal(self.rs, (c,), 0.5)
        rm = normal(self.rs, (c,), 0.7)
        rv = (0.2 + 2.0 * uniform01(self.rs, (c,))).astype(np.float32)
        if small_var:  # variances comparable to eps, so eps matters
            rv[: c // 2] = np.float32(1e-3) * (1 + np.arange(c // 2, dtype=np.float32))
        with torch.no_grad():
            m.weight.copy_(t(w))
            m.bias.copy_(t(b))
            m.running_mean.copy_(t(rm))
            m.running_var.copy_(t(rv))
        m.eval()
        with torch.no_grad():
            y = m(t(x))
        info = OrderedDict([("op", "batch_norm2d"), ("num_features", c), ("eps", eps)])
        self._add(name, desc, info, [("input", x), ("weight", m.weight), ("bias", m.bias),
                                     ("running_mean", m.running_mean),
                                     ("running_var", m.running_var), ("output", y)])

    def relu(self, name, desc, shape):
        x = normal(self.rs, shape)
        with torch.no_grad():
            y = nn.ReLU(inplace=False)(t(x))
        self._add(name, desc, OrderedDict([("op", "relu")]), [("input", x), ("output", y)])

    def max_pool2d(self, name, desc, shape, k, s=None, p=0, d=1, ceil=False, negative=False):
        k = pair(k)
        s = k if s is None else pair(s)
        p, d = pair(p), pair(d)
        x = normal(self.rs, shape)
        if negative:
            x = (-1.0 - np.abs(x)).astype(np.float32)
        with torch.no_grad():
            y = nn.MaxPool2d(k, stride=s, padding=p, dilation=d, ceil_mode=ceil)(t(x))
        info = OrderedDict([("op", "max_pool2d"), ("kernel_size", k), ("stride", s),
                            ("padding", p), ("dilation", d), ("ceil_mode", bool(ceil))])
        self._add(name, desc, info, [("input", x), ("output", y)])

    def adaptive_avg_pool2d(self, name, desc, shape, out):
        out = pair(out)
        x = normal(self.rs, shape)
        with torch.no_grad():
            y = nn.AdaptiveAvgPool2d(tuple(out))(t(x))
        info = OrderedDict([("op", "adaptive_avg_pool2d"), ("output_size", out)])
        self._add(name, desc, info, [("input", x), ("output", y)])

    def linear(self, name, desc, n, fin, fout, bias=True):
        x = normal(self.rs, (n, fin))
        m = nn.Linear(fin, fout, bias=bias)
        with torch.no_grad():
            m.weight.copy_(t(normal(self.rs, (fout, fin), 1.0 / np.sqrt(fin))))
            if bias:
                m.bias.copy_(t(normal(self.rs, (fout,), 0.5)))
        m.eval()
        with torch.no_grad():
            y = m(t(x))
        info = OrderedDict([("op", "linear"), ("in_features", fin), ("out_features", fout),
                            ("bias", bool(bias))])
        ts = [("input", x), ("weight", m.weight)]
        if bias:
            ts.append(("bias", m.bias))
        ts.append(("output", y))
        self._add(name, desc, info, ts)

    def flatten(self, name, desc, shape, start=1, end=-1):
        x = normal(self.rs, shape)
        with torch.no_grad():
            y = nn.Flatten(start, end)(t(x))
        info = OrderedDict([("op", "flatten"), ("start_dim", start), ("end_dim", end)])
        self._add(name, desc, info, [("input", x), ("output", y)])


def make_ops(path):
    b = OpsBuilder(seed=1234)
    # conv2d
    b.conv2d("conv3x3_s1_p1_bias", "3x3 stride 1 pad 1, bias, odd spatial 9x11",
             1, 3, 8, (9, 11), 3, 1, 1)
    b.conv2d("conv3x3_s2_p1_nobias_b3", "3x3 stride 2 pad 1, no bias, batch 3, 13x10",
             3, 4, 6, (13, 10), 3, 2, 1, bias=False)
    b.conv2d("conv1x1_s1_nobias", "1x1 stride 1, no bias, batch 2", 2, 8, 5, (7, 7), 1,
             bias=False)
    b.conv2d("conv1x1_s2_nobias", "1x1 stride 2 (ResNet downsample), odd 9x9",
             1, 6, 12, (9, 9), 1, 2, 0, bias=False)
    b.conv2d("conv7x7_s2_p3", "7x7 stride 2 pad 3 (ResNet stem), no bias, odd 31x29",
             1, 3, 4, (31, 29), 7, 2, 3, bias=False)
    b.conv2d("conv3x3_s3_p0", "3x3 stride 3 pad 0, bias, 17x14 (rows/cols dropped)",
             1, 3, 5, (17, 14), 3, 3, 0)
    b.conv2d("conv3x3_dil2_p2", "3x3 dilation 2 pad 2, bias, 12x13", 1, 4, 4, (12, 13), 3, 1, 2,
             d=2)
    b.conv2d("conv3x3_groups2", "3x3 groups 2 pad 1, bias, 8x9", 1, 6, 4, (8, 9), 3, 1, 1, g=2)
    b.conv2d("conv3x3_depthwise_s2", "depthwise 3x3 stride 2 pad 1 (groups=C), bias, batch 2",
             2, 5, 5, (11, 10), 3, 2, 1, g=5)
    b.conv2d("conv3x3_depthwise_mult2", "depthwise multiplier 2 (groups 4, 4->8), no bias",
             1, 4, 8, (7, 6), 3, 1, 1, g=4, bias=False)
    b.conv2d("conv3x5_s21_p12", "non-square kernel 3x5, stride [2,1], pad [1,2], bias",
             1, 3, 4, (10, 15), (3, 5), (2, 1), (1, 2))
    b.conv2d("conv2x3_s13_p10_d21", "kernel 2x3, stride [1,3], pad [1,0], dilation [2,1]",
             2, 3, 3, (9, 14), (2, 3), (1, 3), (1, 0), d=(2, 1))
    b.conv2d("conv3x3_16ch_b3", "3x3 pad 1, 16->16 channels, batch 3, bias", 3, 16, 16, (6, 6),
             3, 1, 1)
    b.conv2d("conv3x3_s2_p2", "3x3 stride 2 pad 2 (more padding than kernel/2)",
             1, 2, 3, (7, 8), 3, 2, 2)
    # batch_norm2d
    b.batch_norm2d("bn_eps1e-5_b2", "eval BatchNorm, non-trivial running stats, eps 1e-5",
                   2, 6, (5, 7))
    b.batch_norm2d("bn_eps1e-3_smallvar", "eval BatchNorm eps 1e-3, half the variances ~eps",
                   1, 4, (9, 3), eps=1e-3, small_var=True)
    b.batch_norm2d("bn_b3_8ch", "eval BatchNorm batch 3, 8 channels", 3, 8, (4, 4))
    # relu
    b.relu("relu_mixed", "ReLU on standard normal values (half negative)", (2, 3, 5, 7))
    # max_pool2d
    b.max_pool2d("maxpool_resnet_even", "k3 s2 p1 (ResNet), 16x16", (1, 3, 16, 16), 3, 2, 1)
    b.max_pool2d("maxpool_resnet_odd_b2", "k3 s2 p1 (ResNet), odd 15x17, batch 2",
                 (2, 3, 15, 17), 3, 2, 1)
    b.max_pool2d("maxpool_resnet_negative", "k3 s2 p1 on all-negative input (pad is -inf)",
                 (1, 2, 9, 8), 3, 2, 1, negative=True)
    b.max_pool2d("maxpool_ceil_p0", "k3 s2 p0 ceil_mode, odd 10x13", (1, 2, 10, 13), 3, 2, 0,
                 ceil=True)
    b.max_pool2d("maxpool_ceil_p1", "k3 s2 p1 ceil_mode, 8x11 (last window clipped)",
                 (1, 2, 8, 11), 3, 2, 1, ceil=True)
    b.max_pool2d("maxpool_ceil_drop_last", "k2 s2 p1 ceil_mode, 5x7: ceil adds a window that "
                 "would start in the right padding, which torch drops", (1, 2, 5, 7), 2, 2, 1,
                 ceil=True)
    b.max_pool2d("maxpool_dil2_p1", "k3 s1 p1 dilation 2, 9x10", (1, 2, 9, 10), 3, 1, 1, d=2)
    b.max_pool2d("maxpool_k2x3_s21_p11", "non-square k [2,3] s [2,1] p [1,1], 7x8",
                 (1, 3, 7, 8), (2, 3), (2, 1), (1, 1))
    b.max_pool2d("maxpool_k2_default_stride", "k2 (stride defaults to kernel), odd 7x9",
                 (2, 2, 7, 9), 2)
    # adaptive_avg_pool2d
    b.adaptive_avg_pool2d("avgpool_1x1_resnet", "to 1x1 from 7x7 (ResNet head), batch 2",
                          (2, 8, 7, 7), 1)
    b.adaptive_avg_pool2d("avgpool_1x1_odd", "to 1x1 from 5x6", (1, 4, 5, 6), 1)
    b.adaptive_avg_pool2d("avgpool_3x5_from_7x11", "to 3x5 from 7x11 (non-divisible, overlap)",
                          (1, 3, 7, 11), (3, 5))
    b.adaptive_avg_pool2d("avgpool_5x5_identity", "to 5x5 from 5x5 (identity)", (1, 2, 5, 5), 5)
    b.adaptive_avg_pool2d("avgpool_4x6_from_3x3", "to 4x6 from 3x3 (output larger than input)",
                          (1, 2, 3, 3), (4, 6))
    # linear
    b.linear("linear_bias_b1", "512->10 with bias, batch 1 (ResNet fc shape)", 1, 512, 10)
    b.linear("linear_bias_b4", "37->13 with bias, batch 4", 4, 37, 13)
    b.linear("linear_nobias_b4", "20->7 without bias, batch 4", 4, 20, 7, bias=False)
    # flatten
    b.flatten("flatten_1x1", "flatten(1,-1) of 2x8x1x1 (ResNet avgpool output)", (2, 8, 1, 1))
    b.flatten("flatten_3d", "flatten(1,-1) of 3x2x3x4", (3, 2, 3, 4))

    meta = base_metadata()
    meta["description"] = ("Per-op reference cases computed by torch.nn modules in eval mode "
                           "(float32, CPU). Tensors '<case>.input', '<case>.output' and the "
                           "op's parameters '<case>.weight' / '.bias' / '.running_mean' / "
                           "'.running_var'. 'cases' lists the op and its torch arguments.")
    meta["cases"] = json.dumps(b.cases)
    save_safetensors(b.tensors, path, meta)
    return len(b.cases)


# ------------------------------------------------------------------------------- resnet18
CHILDREN = ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4",
            "avgpool", "fc"]

CONFIGS = [
    # name, input shape, input seed, return_layers (ordered pairs as given), description
    ("seed", (1, 3, 224, 224), 101, [("layer1", "feat1"), ("layer3", "feat2")],
     "the seed example: layer1 and layer3 of a 224x224 image"),
    ("full", (1, 3, 224, 224), 101, [("fc", "logits")],
     "fc only: equals the full model's logits (same input as resnet18_seed)"),
    ("odd_all", (2, 3, 61, 75), 102, [(c, c) for c in CHILDREN],
     "every direct child, odd input size, batch 2"),
    ("odd_b3", (3, 3, 97, 131), 103, [("layer4", "out"), ("layer2", "aux")],
     "two layers given out of model order, odd input size, batch 3"),
    ("bn1_relu", (1, 3, 64, 64), 104, [("bn1", "bn1"), ("relu", "relu")],
     "bn1 and relu both returned: bn1 must keep its negative values (no aliasing)"),
    ("small_layer2", (4, 3, 32, 32), 105, [("layer2", "x")],
     "layer2 of a batch of 4 small images"),
]


def make_resnet18(seed=RESNET_SEED, inplace=False):
    model = torchvision.models.resnet18(weights=None)
    model.load_state_dict(fill_deterministic(model.state_dict(), seed), strict=True)
    if not inplace:
        for m in model.modules():
            if isinstance(m, nn.ReLU):
                m.inplace = False
    model.eval()
    return model


def resnet_expected(model, x, return_layers):
    """Outputs in model order: {new_name: tensor}. 'fc' is the full model's logits."""
    wanted = dict(return_layers)
    out = OrderedDict()
    getter_layers = {k: v for k, v in wanted.items() if k != "fc"}
    got = {}
    if getter_layers:
        got = IntermediateLayerGetter(model, getter_layers)(x)
    for child in CHILDREN:
        if child not in wanted:
            continue
        new = wanted[child]
        out[new] = model(x) if child == "fc" else got[new]
    return out


def make_resnet_fixtures(outdir):
    model = make_resnet18()
    written = []
    for name, shape, in_seed, return_layers, desc in CONFIGS:
        x = uniform01(np.random.RandomState(in_seed), shape)
        xt = t(x)
        with torch.no_grad():
            outs = resnet_expected(model, xt, return_layers)
        tensors = OrderedDict([("input", x)])
        for k, v in outs.items():
            tensors["out." + k] = v.detach().contiguous().numpy()
        meta = base_metadata()
        meta["description"] = desc
        meta["model"] = "resnet18"
        meta["num_classes"] = "1000"
        meta["weights"] = ("detgen fill_deterministic(resnet18().state_dict(), seed) "
                           "(tools/detgen.py = strata models/init.cpp); not stored")
        meta["seed"] = str(RESNET_SEED)
        meta["return_layers"] = json.dumps([list(p) for p in return_layers])
        meta["outputs"] = json.dumps(list(outs.keys()))
        meta["input_shape"] = json.dumps(list(shape))
        meta["input_generator"] = ("numpy.random.RandomState(%d).randint(0, 2**24, size="
                                   "input_shape) * 2**-24 as float32" % in_seed)
        meta["input_seed"] = str(in_seed)
        meta["reference"] = ("torchvision IntermediateLayerGetter on resnet18 in eval mode with "
                             "every nn.ReLU set inplace=False; 'fc' = model(input) logits")
        if name == "bn1_relu":
            true_min = float(outs["bn1"].min())
            tv_model = make_resnet18(inplace=True)  # torchvision default: ReLU(inplace=True)
            with torch.no_grad():
                tv = IntermediateLayerGetter(tv_model, {"bn1": "bn1", "relu": "relu"})(xt)
            tv_min = float(tv["bn1"].min())
            meta["torchvision_bn1_min"] = repr(tv_min)
            meta["true_bn1_min"] = repr(true_min)
            meta["note"] = ("torchvision's getter with the default ReLU(inplace=True) returns "
                            "a bn1 tensor that relu overwrote in place (min %r, same storage "
                            "as relu: %s); the true bn1 min is %r. strata never aliases."
                            % (tv_min, tv["bn1"].data_ptr() == tv["relu"].data_ptr(),
                               true_min))
        path = os.path.join(outdir, "resnet18_%s.safetensors" % name)
        save_safetensors(tensors, path, meta)
        written.append(path)
    return written


# ----------------------------------------------------------------------------- FX nodes
# torchvision's create_feature_extractor over every node get_graph_node_names lists, for the
# getter's nested names (tests/test_nodes.cpp). Outputs are large in number, so each node keeps
# a strided sample of its values plus whole-tensor statistics; the node lists of every ResNet
# variant are stored too (names only, no forward).
NODE_MODELS = ["resnet18", "resnet50", "resnext50_32x4d"]
NODE_INPUT_SHAPE = (1, 3, 40, 48)
NODE_INPUT_SEED = 31
NODE_SAMPLES = 256
NODE_LIST_MODELS = ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnext50_32x4d",
                    "resnext101_32x8d", "resnext101_64x4d", "wide_resnet50_2", "wide_resnet101_2"]


def node_sample_indices(numel):
    step = max(1, -(-numel // NODE_SAMPLES))  # ceil
    return np.arange(0, numel, step)


def make_node_fixtures(outdir):
    from torchvision.models.feature_extraction import create_feature_extractor, get_graph_node_names
    written = []
    node_lists = OrderedDict()
    for name in NODE_LIST_MODELS:
        if hasattr(torchvision.models, name):
            node_lists[name] = get_graph_node_names(getattr(torchvision.models, name)(weights=None).eval())[1]
    x = uniform01(np.random.RandomState(NODE_INPUT_SEED), NODE_INPUT_SHAPE)
    for name in NODE_MODELS:
        model = getattr(torchvision.models, name)(weights=None)
        model.load_state_dict(fill_deterministic(model.state_dict(), RESNET_SEED), strict=True)
        for m in model.modules():
            if isinstance(m, nn.ReLU):
                m.inplace = False  # true values for every node (strata never aliases)
        model.eval()
        nodes = get_graph_node_names(model)[1]
        extractor = create_feature_extractor(model, return_nodes={n: n for n in nodes})
        with torch.no_grad():
            outs = extractor(t(x))
        tensors = OrderedDict([("input", x)])
        shapes = OrderedDict()
        stats = OrderedDict()
        for n in nodes:
            v = outs[n].detach().contiguous().numpy().astype(np.float32)
            flat = v.reshape(-1).astype(np.float64)
            tensors["sample." + n] = v.reshape(-1)[node_sample_indices(v.size)]
            stats[n] = [float(flat.sum()), float(np.abs(flat).sum()), float(np.abs(flat).max())]
            shapes[n] = list(v.shape)
        meta = base_metadata()
        meta["description"] = ("create_feature_extractor(%s, every eval node) on one input: per node a strided "
                               "sample (every ceil(numel/%d)-th value of the flattened output); metadata 'stats': "
                               "[sum, sum|.|, max|.|] of the whole output, in float64" % (name, NODE_SAMPLES))
        meta["model"] = name
        meta["weights"] = "detgen fill_deterministic(%s().state_dict(), %d); not stored" % (name, RESNET_SEED)
        meta["input_shape"] = json.dumps(list(NODE_INPUT_SHAPE))
        meta["input_seed"] = str(NODE_INPUT_SEED)
        meta["nodes"] = json.dumps(nodes)
        meta["shapes"] = json.dumps(shapes)
        meta["stats"] = json.dumps(stats)
        meta["samples"] = str(NODE_SAMPLES)
        meta["node_lists"] = json.dumps(node_lists)
        meta["reference"] = ("torchvision.models.feature_extraction.create_feature_extractor in eval mode, "
                             "every nn.ReLU set inplace=False")
        path = os.path.join(outdir, "nodes_%s.safetensors" % name)
        save_safetensors(tensors, path, meta)
        written.append(path)
    return written


# -------------------------------------------------------------------------------- detgen
DETGEN_KEYS = ["conv1.weight", "bn1.running_var", "layer2.0.downsample.0.weight",
               "layer4.1.bn2.bias", "fc.weight", "fc.bias"]
DETGEN_SEEDS = [2024, 7]


def make_detgen_check(path, count=16):
    sd = torchvision.models.resnet18(weights=None).state_dict()
    tensors = OrderedDict()
    states = OrderedDict()
    for seed in DETGEN_SEEDS:
        filled = fill_deterministic(sd, seed)
        for key in DETGEN_KEYS:
            tensors["%d/%s" % (seed, key)] = filled[key].numpy().reshape(-1)[:count].copy()
            states["%d/%s" % (seed, key)] = "0x%016x" % stream_state(seed, key)
    meta = base_metadata()
    meta["description"] = ("First %d values (flattened, C order) of fill_deterministic("
                           "resnet18().state_dict(), seed) for the listed keys, stored as "
                           "'<seed>/<key>'. stream_state = seed ^ fnv1a64(key)." % count)
    meta["seeds"] = json.dumps(DETGEN_SEEDS)
    meta["keys"] = json.dumps(DETGEN_KEYS)
    meta["stream_state"] = json.dumps(states)
    save_safetensors(tensors, path, meta)


# --------------------------------------------------------------------------- pth (torch.save)
# Small files written by torch.save itself, for io/pth.cpp: the zip and legacy formats, pickle
# protocols 2/4/5, views with storage offsets and strides, shared storages, the checkpoint
# layouts people save (bare state_dict; wrapped under 'state_dict', 'model' or
# 'model_state_dict'; DataParallel's 'module.' keys) and files strata must refuse. Expected
# values are stored next to them as safetensors, contiguous, under the same keys.
# `make_fixtures.py --only pth` writes only these (tests/fixtures/pth/, about 40 KB).
PTH_SEED = 31


def save_safetensors_torch(tensors, path, metadata):
    """safetensors of torch tensors, any of float32/float16/bfloat16/int64 (numpy, and so
    st_io, has no bfloat16). Each tensor is written contiguous, in the dict's order."""
    codes = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
             torch.int64: "I64"}
    header, blobs, offset = OrderedDict([("__metadata__", metadata)]), [], 0
    for name, tensor in tensors.items():
        c = tensor.detach().contiguous()
        raw = c.view(torch.int16) if c.dtype == torch.bfloat16 else c
        data = raw.numpy().astype(raw.numpy().dtype.newbyteorder("<")).tobytes(order="C")
        header[name] = OrderedDict([("dtype", codes[c.dtype]), ("shape", list(c.shape)),
                                    ("data_offsets", [offset, offset + len(data)])])
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(len(text).to_bytes(8, "little"))
        f.write(text)
        for b in blobs:
            f.write(b)


def pth_small_state_dict():
    """Every layout torch.save has to describe: offsets, strides, stride 0, shared storage."""
    g = torch.Generator().manual_seed(PTH_SEED)
    base = torch.randn(6, 8, generator=g)  # one storage behind five tensors below
    sd = OrderedDict()
    sd["conv.weight"] = torch.randn(4, 3, 3, 3, generator=g)
    sd["shared.base"] = base
    sd["view.rows"] = base[2:4]                 # storage offset 16, contiguous
    sd["view.transposed"] = base.t()            # strides (1, 8)
    sd["view.column"] = base[:, 5]              # offset 5, stride 8
    sd["view.strided"] = base[::2, 1::3]        # offset 1, strides (16, 3)
    sd["channels_last"] = torch.randn(2, 3, 4, 5, generator=g).contiguous(
        memory_format=torch.channels_last)      # strides (60, 1, 15, 3)
    sd["expand"] = torch.randn(3, generator=g).expand(4, 3)  # stride 0
    sd["half"] = torch.randn(5, generator=g).half()
    sd["bfloat16"] = torch.randn(2, 3, generator=g).bfloat16()
    sd["special"] = torch.tensor([float("nan"), float("inf"), float("-inf"), -0.0, 1e-45, 3.0])
    sd["bn.num_batches_tracked"] = torch.tensor(17)   # int64, 0-d
    sd["scalar"] = torch.tensor(3.5)                  # float32, 0-d
    sd["empty"] = torch.zeros(0, 4)
    sd["int64"] = torch.tensor([2 ** 62, -2 ** 62, -1, 0, 7])
    return sd


def pth_tiny_model():
    torch.manual_seed(PTH_SEED)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4), nn.ReLU(),
                          nn.Conv2d(4, 2, 1))
    with torch.no_grad():  # non-trivial running statistics
        model[1].running_mean.copy_(torch.randn(4))
        model[1].running_var.copy_(torch.rand(4) + 0.5)
        model[1].num_batches_tracked.fill_(5)
    return model


def make_pth_fixtures(outdir):
    import argparse as argparse_module  # an argparse.Namespace, as torchvision's references save
    os.makedirs(outdir, exist_ok=True)
    written = []

    def save(obj, name, **kwargs):
        torch.save(obj, os.path.join(outdir, name), **kwargs)
        written.append(name)

    sd = pth_small_state_dict()
    save(sd, "small_zip.pth")
    save(sd, "small_zip_proto4.pth", pickle_protocol=4)
    save(sd, "small_zip_proto5.pth", pickle_protocol=5)
    save(sd, "small_legacy.pth", _use_new_zipfile_serialization=False)
    save_safetensors_torch(sd, os.path.join(outdir, "small_expected.safetensors"), OrderedDict([
        ("generator", GENERATOR), ("torch_version", torch.__version__),
        ("description", "the state_dict of small_*.pth, each tensor made contiguous")]))
    written.append("small_expected.safetensors")

    model = pth_tiny_model()
    tiny = OrderedDict((k, v.clone()) for k, v in model.state_dict().items())  # not live views
    save(tiny, "tiny_model.pth")
    save(tiny, "tiny_model_legacy.pth", _use_new_zipfile_serialization=False)
    save(nn.DataParallel(model).state_dict(), "tiny_dataparallel.pth")
    save(OrderedDict(model.named_parameters()), "tiny_parameters.pth")  # nn.Parameter objects
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(2, 3, 6, 6)).sum().backward()
    optimizer.step()  # gives the optimizer state (momentum buffers) to save
    with torch.no_grad():  # the step changed the weights: save the ones tiny_expected holds
        model.load_state_dict(tiny)
    # pytorch/examples imagenet: DataParallel keys under 'state_dict', plus other entries.
    save({"epoch": 7, "arch": "tiny", "state_dict": nn.DataParallel(model).state_dict(),
          "best_acc1": torch.tensor(0.75), "optimizer": optimizer.state_dict(),
          "notes": [None, True, 2.5, (1, 2), {"nested": b"bytes"}]}, "ckpt_state_dict.pth")
    # torchvision's references/classification/train.py: 'model', 'args' is an argparse.Namespace.
    save({"model": tiny, "optimizer": optimizer.state_dict(), "epoch": 3,
          "args": argparse_module.Namespace(lr=0.1, model="tiny"), "best": np.float64(0.5)},
         "ckpt_model.pth")
    # The PyTorch tutorial's layout, saved by the legacy writer.
    save({"epoch": 5, "model_state_dict": tiny, "optimizer_state_dict": optimizer.state_dict(),
          "loss": 0.25}, "ckpt_model_state_dict_legacy.pth", _use_new_zipfile_serialization=False)
    save_safetensors_torch(tiny, os.path.join(outdir, "tiny_expected.safetensors"), OrderedDict([
        ("generator", GENERATOR), ("torch_version", torch.__version__),
        ("description", "the state_dict of tiny_*.pth and ckpt_*.pth: Sequential(Conv2d(3, 4, "
                        "3, bias=False), BatchNorm2d(4), ReLU(), Conv2d(4, 2, 1))")]))
    written.append("tiny_expected.safetensors")

    # Files strata must refuse, each with its own error.
    save(model, "refuse_whole_model.pth")                              # torch.save(model)
    save({"w": torch.zeros(3, dtype=torch.float64)}, "refuse_float64.pth")
    torch.jit.save(torch.jit.script(model), os.path.join(outdir, "refuse_torchscript.pt"))
    written.append("refuse_torchscript.pt")
    return written


# ------------------------------------------------------------------------------- backbones
# tests/fixtures/backbones/ (`--only backbones`): the ResNeXt / Wide ResNet / dilated models
# (detgen weights, outputs subsampled to stay small), their state_dict structure, and small
# torch-written checkpoints with the key structure of segmentation, detection and getter files.
BACKBONE_SEED = 2024
BACKBONE_INPUT = (1, 3, 65, 97)
BACKBONE_RETURN = [("layer4", "out"), ("layer3", "aux"), ("layer2", "l2"), ("layer1", "l1")]
BACKBONE_CONFIGS = [
    # name, torchvision builder, replace_stride_with_dilation, input seed
    ("resnext50_32x4d", "resnext50_32x4d", [False, False, False], 201),
    ("wide_resnet50_2", "wide_resnet50_2", [False, False, False], 202),
    ("resnet50_dilation_011", "resnet50", [False, True, True], 203),
    ("resnet50_dilation_001", "resnet50", [False, False, True], 204),
]
STRUCTURE_MODELS = ["resnext50_32x4d", "resnext101_32x8d", "resnext101_64x4d", "wide_resnet50_2",
                    "wide_resnet101_2"]
SUBSAMPLE_VALUES = 4096  # at most this many values per stored output


def no_inplace(model):
    for m in model.modules():
        if isinstance(m, nn.ReLU):
            m.inplace = False
    return model.eval()


def make_backbone_outputs(outdir):
    written = []
    for name, builder, dilation, in_seed in BACKBONE_CONFIGS:
        model = getattr(torchvision.models, builder)(weights=None, replace_stride_with_dilation=dilation)
        model.load_state_dict(fill_deterministic(model.state_dict(), BACKBONE_SEED), strict=True)
        no_inplace(model)
        x = uniform01(np.random.RandomState(in_seed), BACKBONE_INPUT)
        outs = IntermediateLayerGetter(model, OrderedDict(BACKBONE_RETURN))(t(x))
        tensors = OrderedDict([("input", x)])
        steps, shapes = OrderedDict(), OrderedDict()
        for new, y in outs.items():
            y64 = y.double()
            c, hw = y.shape[1], y.shape[2] * y.shape[3]
            step = max(1, -(-c * hw // SUBSAMPLE_VALUES))  # ceil
            steps[new], shapes[new] = step, list(y.shape)
            tensors["sub." + new] = y[:, ::step].contiguous().numpy()
            tensors["stats." + new] = np.array([float(y64.sum()), float(y64.abs().sum()),
                                                float(y64.abs().max())], dtype=np.float32)
        meta = base_metadata()
        meta["description"] = ("torchvision.models.%s(replace_stride_with_dilation=%s), detgen weights "
                               "(seed %d, not stored), getter outputs subsampled" % (builder, dilation,
                                                                                  BACKBONE_SEED))
        meta["model"] = builder
        meta["replace_stride_with_dilation"] = json.dumps(dilation)
        meta["seed"] = str(BACKBONE_SEED)
        meta["return_layers"] = json.dumps([list(p) for p in BACKBONE_RETURN])
        meta["outputs"] = json.dumps(list(outs.keys()))
        meta["output_shapes"] = json.dumps(shapes)
        meta["channel_step"] = json.dumps(steps)
        meta["input_seed"] = str(in_seed)
        meta["reference"] = ("torchvision IntermediateLayerGetter, eval mode, ReLU inplace=False. "
                             "'sub.<name>' = out[:, ::channel_step]; 'stats.<name>' = [sum, sum|x|, "
                             "max|x|] of the full output, computed in float64")
        path = os.path.join(outdir, name + ".safetensors")
        save_safetensors(tensors, path, meta)
        written.append(path)
    return written


def make_backbone_structure(outdir):
    models = OrderedDict()
    for name in STRUCTURE_MODELS:
        sd = getattr(torchvision.models, name)(weights=None).state_dict()
        models[name] = [[k, list(v.shape), str(v.dtype).replace("torch.", "")] for k, v in sd.items()]
    doc = OrderedDict([("generator", GENERATOR), ("torch_version", torch.__version__),
                       ("torchvision_version", torchvision.__version__),
                       ("description", "torchvision.models.<name>().state_dict(): [key, shape, dtype] "
                                       "in order"), ("models", models)])
    path = os.path.join(outdir, "structure.json")
    with open(path, "w") as f:
        json.dump(doc, f, separators=(",", ":"))
        f.write("\n")
    return path


CKPT_SEED = 2025
CKPT_INPUT = (2, 3, 29, 37)


def rounded(sd, dtype):
    """The state_dict with every float tensor rounded to `dtype` and back (what the file holds)."""
    return OrderedDict((k, v.to(dtype).float() if v.is_floating_point() else v) for k, v in sd.items())


def small_resnet18(norm_layer=None):
    """torchvision's resnet18 (optionally with FrozenBatchNorm2d), detgen weights by its own keys."""
    kwargs = {} if norm_layer is None else {"norm_layer": norm_layer}
    m = torchvision.models.resnet18(weights=None, **kwargs)
    m.load_state_dict(fill_deterministic(m.state_dict(), CKPT_SEED), strict=True)
    return no_inplace(m)


def make_checkpoints(outdir):
    """Three torch.save files whose keys are laid out as the checkpoints people have, around a
    resnet18 truncated after layer1 (a full backbone's weights are too large to commit)."""
    from torchvision.models.segmentation.deeplabv3 import DeepLabV3
    from torchvision.models.segmentation.fcn import FCNHead
    from torchvision.models.detection.backbone_utils import BackboneWithFPN
    from torchvision.models.detection.faster_rcnn import FasterRCNN, TwoMLPHead, FastRCNNPredictor
    from torchvision.ops.misc import FrozenBatchNorm2d

    torch.manual_seed(CKPT_SEED)  # the heads' own initialisation
    x = t(uniform01(np.random.RandomState(205), CKPT_INPUT))
    expected = OrderedDict([("input", x.numpy())])
    written = []

    def save_ckpt(model, dtype, fname, body, kind, note):
        sd = model.state_dict()
        model.load_state_dict(rounded(sd, dtype))  # run with exactly what the file holds
        no_inplace(model)
        with torch.no_grad():
            outs = body(x)
        for k, v in outs.items():
            expected["%s.%s" % (kind, k)] = v.contiguous().numpy()
        torch.save(OrderedDict((k, v.to(dtype) if v.is_floating_point() else v)
                               for k, v in model.state_dict().items()), os.path.join(outdir, fname))
        written.append(fname)
        notes[kind] = note

    notes = OrderedDict()
    # (a) segmentation: DeepLabV3's layout (backbone = getter, classifier, aux_classifier).
    seg = DeepLabV3(IntermediateLayerGetter(small_resnet18(), {"layer1": "out", "maxpool": "aux"}),
                    FCNHead(64, 3), FCNHead(64, 3))
    save_ckpt(seg, torch.float16, "ckpt_segmentation.pth", seg.backbone, "segmentation",
              "DeepLabV3(IntermediateLayerGetter(resnet18, {layer1: out, maxpool: aux}), FCNHead(64, 3), "
              "FCNHead(64, 3)).state_dict() as float16: keys under backbone., classifier., aux_classifier.")
    # (b) detection: Faster R-CNN's layout with FrozenBatchNorm2d (no num_batches_tracked).
    fpn = BackboneWithFPN(small_resnet18(FrozenBatchNorm2d), {"layer1": "0"}, [64], 8)
    det = FasterRCNN(fpn, box_head=TwoMLPHead(8 * 7 * 7, 16),
                     box_predictor=FastRCNNPredictor(16, 2))
    save_ckpt(det, torch.bfloat16, "ckpt_detection.pth", det.backbone.body, "detection",
              "FasterRCNN(BackboneWithFPN(resnet18(norm_layer=FrozenBatchNorm2d), {layer1: 0}, [64], 8), "
              "box_head=TwoMLPHead(392, 16), box_predictor=FastRCNNPredictor(16, 2)).state_dict() as bfloat16: keys under backbone.body., "
              "backbone.fpn., rpn., roi_heads.; no num_batches_tracked, no fc")
    # (c) a getter's own state_dict: no prefix, truncated after layer1, no fc.
    getter = IntermediateLayerGetter(small_resnet18(), {"layer1": "feat"})
    save_ckpt(getter, torch.float16, "ckpt_getter.pth", getter, "getter",
              "IntermediateLayerGetter(resnet18, {layer1: feat}).state_dict() as float16: conv1 .. layer1")
    meta = base_metadata()
    meta["description"] = ("torch's outputs for the backbones of ckpt_*.pth on 'input': "
                           "'<kind>.<returned name>' (getter outputs, eval mode, the file's rounded weights)")
    meta["seed"] = str(CKPT_SEED)
    meta["files"] = json.dumps(notes)
    save_safetensors(expected, os.path.join(outdir, "ckpt_expected.safetensors"), meta)
    written.append("ckpt_expected.safetensors")
    return written


def make_backbone_fixtures(outdir):
    os.makedirs(outdir, exist_ok=True)
    written = [os.path.basename(p) for p in make_backbone_outputs(outdir)]
    written.append(os.path.basename(make_backbone_structure(outdir)))
    written += make_checkpoints(outdir)
    return written

# ----------------------------------------------------------------------------------- images
# tests/fixtures/images/ (`--only images`): small crops of scikit-image's public-domain photos
# as JPEG and PNG files (several sizes, portrait and landscape, grayscale, RGBA, palette), and
# what PIL + torchvision make of them: the pixels after Image.open(p).convert("RGB"), after
# Resize(256), after CenterCrop(224), the normalised tensor (as FNV-1a 64 digests of their
# bytes, plus a subsample and statistics of the tensor), and the logits, softmax top-5 and
# layer1/layer4 features of ResNet-18 with detgen weights (seed 2024, not stored) on it.
IMAGE_SEED = RESNET_SEED
IMAGE_SUBSAMPLE = 37  # every 37th value of each preprocessed tensor is stored
# name, skimage image, crop (top, left, height, width), how it is saved
IMAGE_PHOTOS = [
    ("astronaut_landscape.jpg", "astronaut", (20, 40, 301, 421), dict(quality=88)),  # 4:2:0, downscale
    ("rocket_portrait.jpg", "rocket", (10, 180, 413, 271), dict(quality=90, progressive=True)),
    ("coffee_444.jpg", "coffee", (60, 150, 283, 363), dict(quality=92, subsampling=0)),
    ("camera_gray.jpg", "camera", (40, 120, 335, 289), dict(quality=85)),  # grayscale JPEG
    ("chelsea_rgba.png", "chelsea", (60, 150, 121, 163), "rgba"),  # RGBA, upscale
    ("coins_gray.png", "coins", (50, 60, 153, 201), "gray"),  # 8-bit grayscale PNG
    ("coffee_palette.png", "coffee", (120, 200, 181, 239), "palette"),  # P with transparency
]
IMAGE_FEATURES = ["astronaut_landscape.jpg", "camera_gray.jpg"]  # layer1/layer4 stored for these


def image_digest(array):
    from detgen import fnv1a64
    return "%016x" % fnv1a64(np.ascontiguousarray(array).tobytes())


def make_image_fixtures(outdir):
    import PIL
    import skimage
    import skimage.data
    from PIL import Image
    import torchvision.transforms as T

    os.makedirs(outdir, exist_ok=True)
    written = []
    for fname, source, (top, left, h, w), how in IMAGE_PHOTOS:
        a = getattr(skimage.data, source)()[top:top + h, left:left + w]
        assert a.shape[:2] == (h, w), (fname, a.shape)
        path = os.path.join(outdir, fname)
        if isinstance(how, dict):
            Image.fromarray(a).save(path, **how)
        elif how == "rgba":  # alpha: a horizontal ramp (dropped by convert("RGB"))
            alpha = np.tile(np.linspace(0, 255, w).astype(np.uint8), (h, 1))
            Image.fromarray(np.dstack([a, alpha]), "RGBA").save(path)
        elif how == "gray":
            Image.fromarray(a, "L").save(path)
        elif how == "palette":
            Image.fromarray(a).quantize(48).save(path, transparency=0)
        written.append(fname)
    # Two tiny files strata refuses (by name in tests/test_images.cpp): a 16-bit grayscale PNG and
    # a CMYK JPEG.
    Image.fromarray((np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000)).save(os.path.join(outdir, "refuse_16bit.png"))
    Image.new("CMYK", (8, 8), (10, 20, 30, 40)).save(os.path.join(outdir, "refuse_cmyk.jpg"))
    written += ["refuse_16bit.png", "refuse_cmyk.jpg"]

    normalize = T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    model = torchvision.models.resnet18(weights=None)
    model.load_state_dict(fill_deterministic(model.state_dict(), IMAGE_SEED), strict=True)
    no_inplace(model)
    getter = IntermediateLayerGetter(model, OrderedDict([("layer1", "layer1"), ("layer4", "layer4")]))
    categories = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.meta["categories"]
    tensors, info = OrderedDict(), OrderedDict()
    for fname, _, _, _ in IMAGE_PHOTOS:
        pil = Image.open(os.path.join(outdir, fname))
        mode = pil.mode
        rgb = pil.convert("RGB")
        resized = T.Resize(256)(rgb)
        cropped = T.CenterCrop(224)(resized)
        x = normalize(T.ToTensor()(cropped))
        full = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(), normalize])(rgb)
        assert torch.equal(x, full)
        xb = x.unsqueeze(0)
        logits = model(xb)
        probs = logits.softmax(dim=1)
        top = probs.topk(6, dim=1)
        top_logits = logits[0, top.indices[0]]
        # top-5 must be unambiguous under the features' tolerance: the gaps between consecutive
        # logits are recorded and must exceed 1e-4 * max|logit|
        gaps = (top_logits[:-1] - top_logits[1:]).tolist()[:5]
        entry = OrderedDict([
            ("pil_mode", mode), ("size", [rgb.height, rgb.width]),
            ("resized_size", [resized.height, resized.width]),
            ("decoded_digest", image_digest(np.asarray(rgb))),
            ("resized_digest", image_digest(np.asarray(resized))),
            ("cropped_digest", image_digest(np.asarray(cropped))),
            ("input_digest", image_digest(x.numpy().astype("<f4"))),
            ("top5", top.indices[0, :5].tolist()),
            ("top5_labels", [categories[i] for i in top.indices[0, :5].tolist()]),
            ("top5_probabilities", top.values[0, :5].tolist()),
            ("top_logit_gaps", gaps),
        ])
        assert min(gaps) > 1e-4 * float(logits.abs().max()), (fname, gaps)
        info[fname] = entry
        flat = x.reshape(-1)
        tensors[fname + ".input_sub"] = flat[::IMAGE_SUBSAMPLE].numpy()
        x64 = x.double()
        tensors[fname + ".input_stats"] = np.array([float(x64.sum()), float(x64.abs().sum()),
                                                    float(x64.abs().max())], dtype=np.float32)
        tensors[fname + ".logits"] = logits.numpy()
        if fname in IMAGE_FEATURES:
            outs = getter(xb)
            for name, y in outs.items():
                y64 = y.double()
                step = max(1, -(-y.numel() // SUBSAMPLE_VALUES))
                entry["sub_step." + name] = step
                entry["shape." + name] = list(y.shape)
                tensors[fname + ".sub." + name] = y.reshape(-1)[::step].contiguous().numpy()
                tensors[fname + ".stats." + name] = np.array([float(y64.sum()), float(y64.abs().sum()),
                                                              float(y64.abs().max())], dtype=np.float32)
    meta = base_metadata()
    meta["pil_version"] = PIL.__version__
    meta["skimage_version"] = skimage.__version__
    from PIL import features as pil_features
    meta["libjpeg_turbo_version"] = str(pil_features.version("jpg"))
    meta["description"] = ("PIL + torchvision on the photos beside this file: Image.open(p).convert('RGB'), "
                           "T.Resize(256), T.CenterCrop(224), T.ToTensor(), T.Normalize(ImageNet mean, std); "
                           "resnet18 with detgen weights (seed %d, not stored), eval mode" % IMAGE_SEED)
    meta["seed"] = str(IMAGE_SEED)
    meta["subsample"] = str(IMAGE_SUBSAMPLE)
    meta["digest"] = "FNV-1a 64 of the C-order bytes (uint8 HWC images; float32 little-endian CHW tensor)"
    meta["photos"] = json.dumps(info)
    save_safetensors(tensors, os.path.join(outdir, "expected.safetensors"), meta)
    written.append("expected.safetensors")
    return written


# tests/fixtures/maps/ (`--only maps`): what torchvision draws for `strata features --save-maps`.
# `input` [2, 10, 5, 7] (float32) holds maps with negative values, a constant channel (3: black),
# a large offset (5), a range under make_grid's 1e-5 floor (7) and an exact 0..1 ramp (9). For
# each configuration (the CLI flags in the metadata) and image n, `grid.<config>.<n>` holds the
# pixels [H, W] (as float32 integers) of
#   save_image(make_grid(x[n, :K].repeat_interleave(s, 1).repeat_interleave(s, 2).unsqueeze(1),
#                        nrow=nrow, padding=2, normalize=True, scale_each=True), png)
# decoded by PIL (make_grid replicates a single channel to RGB: channel 0 is stored).
MAP_CONFIGS = OrderedDict([
    # name: (K channels, nrow, integer upscale factor s, the CLI flags that select them)
    ("all_1x", (10, 8, 1, "--maps-min-tile 1")),
    ("k3_nrow2_2x", (3, 2, 2, "--maps-channels 3 --maps-nrow 2 --maps-min-tile 10")),
    ("k1_3x", (1, 8, 3, "--maps-channels 1 --maps-min-tile 15")),
])


def make_map_fixtures(outdir):
    import io
    from PIL import Image
    from torchvision.utils import save_image

    os.makedirs(outdir, exist_ok=True)
    rs = np.random.RandomState(77)
    x = normal(rs, (2, 10, 5, 7), 1.5)
    x[:, 3] = 0.25                              # constant: black
    x[:, 5] += 1000.0                           # a large offset
    x[:, 7] = 2.0 + normal(rs, (2, 5, 7), 1e-7)  # range below 1e-5: scaled by 1/1e-5
    x[:, 9] = np.linspace(0, 1, 35, dtype=np.float32).reshape(5, 7)  # exact ramp: x * 255 + 0.5 ties
    tensors = OrderedDict([("input", x)])
    configs = OrderedDict()
    for name, (k, nrow, scale, flags) in MAP_CONFIGS.items():
        configs[name] = OrderedDict([("channels", k), ("nrow", nrow), ("scale", scale), ("flags", flags)])
        for n in range(x.shape[0]):
            maps = t(x[n, :k]).repeat_interleave(scale, 1).repeat_interleave(scale, 2).unsqueeze(1)
            buf = io.BytesIO()
            save_image(maps, buf, format="png", nrow=nrow, padding=2, normalize=True, scale_each=True)
            pixels = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))[:, :, 0]
            tensors["grid.%s.%d" % (name, n)] = pixels.astype(np.float32)
    meta = base_metadata()
    meta["description"] = ("torchvision.utils.save_image(make_grid(maps, nrow, padding=2, normalize=True, "
                           "scale_each=True)) of each image's first K channels of `input`, each upscaled "
                           "s times (nearest), decoded by PIL; grid.<config>.<n>: pixels [H, W]")
    meta["configs"] = json.dumps(configs)
    save_safetensors(tensors, os.path.join(outdir, "expected.safetensors"), meta)
    return ["expected.safetensors"]


def main(argv=None):
    p = argparse.ArgumentParser(description="Writes strata's test fixtures.")
    p.add_argument("--outdir", default=os.path.join(os.path.dirname(HERE), "tests", "fixtures"))
    p.add_argument("--only", choices=["pth", "nodes", "backbones", "images", "maps"],
                   help="write only this group (pth: the torch.save files in OUTDIR/pth; nodes: the FX "
                        "node fixtures nodes_*.safetensors; backbones: OUTDIR/backbones; images: photos "
                        "and torchvision's preprocessing and outputs in OUTDIR/images; maps: torchvision's "
                        "make_grid pictures for --save-maps in OUTDIR/maps)")
    args = p.parse_args(argv)
    torch.manual_seed(0)
    torch.set_num_threads(2)
    os.makedirs(args.outdir, exist_ok=True)
    if args.only == "pth" or args.only is None:
        for name in make_pth_fixtures(os.path.join(args.outdir, "pth")):
            print("pth/" + name)
    if args.only == "nodes" or args.only is None:
        with torch.no_grad():
            for path in make_node_fixtures(args.outdir):
                print(os.path.basename(path))
    if args.only == "backbones" or args.only is None:
        with torch.no_grad():
            for name in make_backbone_fixtures(os.path.join(args.outdir, "backbones")):
                print("backbones/" + name)
    if args.only == "images" or args.only is None:
        with torch.no_grad():
            for name in make_image_fixtures(os.path.join(args.outdir, "images")):
                print("images/" + name)
    if args.only == "maps" or args.only is None:
        for name in make_map_fixtures(os.path.join(args.outdir, "maps")):
            print("maps/" + name)
    if args.only is not None:
        return
    with torch.no_grad():
        n = make_ops(os.path.join(args.outdir, "ops.safetensors"))
        print("ops.safetensors: %d cases" % n)
        make_detgen_check(os.path.join(args.outdir, "detgen_check.safetensors"))
        print("detgen_check.safetensors")
        for path in make_resnet_fixtures(args.outdir):
            print(os.path.basename(path))


if __name__ == "__main__":
    main()
