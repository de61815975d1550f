#!/usr/bin/env python3
"""The peers of strata's CPU benchmark: ONNX Runtime, OpenVINO and ncnn, fed from the same
torchvision ResNet-18 weights as strata and PyTorch. benchmarks/run.sh drives it in four steps:

    peers.py versions                           # JSON: the version of every package used
    peers.py export --weights W.pth --dir D     # ONNX, OpenVINO IR and ncnn (pnnx) files + torch reference
    peers.py check  --engine E --dir D --threads T [--outputs strata.safetensors]
    peers.py bench  --engine E --dir D --batch N --threads T --warmup W --iters K [--layers ...]

Engines: ort (ONNX Runtime, CPU execution provider, fp32), ov-f32 (OpenVINO CPU with
INFERENCE_PRECISION_HINT=f32), ov-default (OpenVINO CPU with its default precision: bf16 where the
CPU has native bf16, else f32; the precision it used is reported), ncnn (fp32: fp16/bf16 storage
and arithmetic off), torch-eager / torch-channels_last / torch-best (checked only; timed by
benchmarks/torch_bench.py), strata (checked only, from `strata features --out`; timed by
`strata bench`).

Two models per engine, exported from the same module: the full ResNet-18 (logits) and the seed
getter, torchvision's IntermediateLayerGetter returning layer1 and layer3 (run.sh's
"layer1:feat1,layer3:feat2"), exported as its own truncated model: nothing after layer3 is in the
file, so no engine computes it.

bench prints one JSON line with the fields of `strata bench` and benchmarks/torch_bench.py:
constant input 0.5 of shape [batch, 3, size, size]; the first call is timed alone (first_ms) and
is the first of --warmup untimed calls; then --iters timed calls. load_ms is reading the model
file and building the engine's runnable form (ORT session, OpenVINO compile_model, ncnn
load_param + load_model). Every call is synchronous and includes what a user's call includes:
ORT's run() returns numpy arrays; OpenVINO's infer() fills its output tensors; ncnn has no batch
axis, so a batch of N is N extractions (one Extractor each), each input wrapped as an ncnn.Mat.

check runs the engine on the check input (D/check_input.npy, 2 images) and compares each output
with torch fp32 eager (D/reference.npz): relative error = max |engine - torch| / max |torch| per
output, the largest over outputs. It prints one JSON line and exits 1 when an fp32 engine is off
by more than --tolerance (default 1e-4); a reduced-precision engine (ov-default at bf16) is only
labelled with its error.
"""
import argparse
import importlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
import warnings

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
SEED_LAYERS = "layer1:feat1,layer3:feat2"
FULL = "(full model)"
ENGINES = ["ort", "ov-f32", "ov-default", "ncnn"]
CHECK_ONLY = ["torch-eager", "torch-channels_last", "torch-best", "strata"]

warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch\.jit")
warnings.filterwarnings("ignore", category=DeprecationWarning)


def fail(msg):
    print("peers.py: error: " + msg, file=sys.stderr)
    sys.exit(2)


def parse_layers(text):
    """'layer1:feat1,layer3:feat2' -> {'layer1': 'feat1', 'layer3': 'feat2'} (ordered)."""
    out = {}
    for part in text.split(","):
        child, _, name = part.partition(":")
        out[child] = name or child
    return out


# ---- versions ----------------------------------------------------------------------------------
def package_version(name):
    try:
        from importlib.metadata import version
        return version(name)
    except Exception:  # noqa: BLE001 (not installed, or no metadata)
        return None


def cmd_versions(_args):
    info = {"python": platform.python_version()}
    for pkg in ["torch", "torchvision", "numpy", "onnx", "onnxruntime", "openvino", "ncnn", "pnnx",
                "onnxscript", "matplotlib"]:
        info[pkg] = package_version(pkg)
    try:
        import onnxruntime as ort
        info["onnxruntime_providers"] = ort.get_available_providers()
    except ImportError:
        pass
    try:
        import openvino as ov
        core = ov.Core()
        info["openvino_build"] = ov.get_version()
        info["openvino_cpu"] = core.get_property("CPU", "FULL_DEVICE_NAME")
        info["openvino_cpu_capabilities"] = list(core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
        info["openvino_default_precision"] = ov_type(core.get_property("CPU", "INFERENCE_PRECISION_HINT"))
    except Exception as e:  # noqa: BLE001
        info["openvino_error"] = str(e)
    print(json.dumps(info))


def ov_type(t):
    """An OpenVINO element type as its short name: f32, bf16, f16."""
    return t.to_string() if hasattr(t, "to_string") else str(t)


# ---- export ------------------------------------------------------------------------------------
def build_torch(model_name, weights, layers):
    """The torchvision model with the weights, eval(); for layers, a module returning a tuple of
    the IntermediateLayerGetter's outputs in request order (exporters want tuples, not dicts)."""
    import torch
    import torchvision
    from torchvision.models._utils import IntermediateLayerGetter

    model = getattr(torchvision.models, model_name)()
    model.load_state_dict(torch.load(weights, map_location="cpu"))
    model.eval()
    if not layers:
        return model, ["logits"]
    pairs = parse_layers(layers)

    class TupleGetter(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.body = IntermediateLayerGetter(model, pairs)

        def forward(self, x):
            out = self.body(x)
            return tuple(out[n] for n in pairs.values())

    return TupleGetter().eval(), list(pairs.values())


def export_onnx(module, names, path, size):
    import torch
    x = torch.full((1, 3, size, size), 0.5)
    axes = {"x": {0: "batch"}}
    axes.update({n: {0: "batch"} for n in names})
    # The TorchScript-based exporter: a plain opset-17 graph with a dynamic batch axis.
    torch.onnx.export(module, (x,), path, input_names=["x"], output_names=names, dynamic_axes=axes,
                      opset_version=17, do_constant_folding=True, dynamo=False)


def export_openvino(onnx_path, xml_path):
    import openvino as ov
    model = ov.convert_model(onnx_path)
    # compress_to_fp16 defaults to True, which would store the weights as fp16: keep fp32.
    ov.save_model(model, xml_path, compress_to_fp16=False)


def export_ncnn(module, names, stem, size, log):
    """TorchScript (torch.jit.trace) -> pnnx -> stem.ncnn.param / stem.ncnn.bin. Returns an error
    string or None. pnnx names the blobs in0 and out0, out1, ... in the traced order."""
    import torch
    import pnnx
    stem = os.path.abspath(stem)
    pt = stem + ".pt"
    x = torch.full((1, 3, size, size), 0.5)
    with torch.no_grad():
        traced = torch.jit.trace(module, x, strict=False)
    traced.save(pt)
    exe = pnnx_executable(pnnx)
    cmd = [exe, pt, "inputshape=[1,3,%d,%d]f32" % (size, size), "fp16=0", "optlevel=2"]
    # pnnx writes its files next to the .pt; it has no quiet flag, so its log goes to a file.
    with open(log, "w") as f:
        r = subprocess.run(cmd, cwd=os.path.dirname(pt), stdout=f, stderr=subprocess.STDOUT)
    if r.returncode != 0:
        return "pnnx exited with %d (command: %s; log: %s)" % (r.returncode, " ".join(cmd), log)
    for ext in (".ncnn.param", ".ncnn.bin"):
        if not os.path.exists(stem + ext):
            return "pnnx wrote no %s (log: %s)" % (stem + ext, log)
    return None


def pnnx_executable(pnnx_module):
    """The pnnx binary of the pip package (next to its __init__.py), else one on PATH."""
    d = os.path.dirname(pnnx_module.__file__)
    for name in ("pnnx", "pnnx.exe"):
        p = os.path.join(d, name)
        if os.path.exists(p):
            return p
    return "pnnx"


def cmd_export(args):
    import torch
    os.makedirs(args.dir, exist_ok=True)
    torch.manual_seed(0)
    check_x = np.load(args.check_input)
    np.save(os.path.join(args.dir, "check_input.npy"), check_x)
    manifest = {"model": args.model, "size": args.size, "weights": os.path.abspath(args.weights), "models": {}}
    refs = {}
    for tag, layers in (("full", ""), ("getter", SEED_LAYERS)):
        module, names = build_torch(args.model, args.weights, layers)
        stem = os.path.abspath(os.path.join(args.dir, "%s_%s" % (args.model, tag)))
        entry = {"layers": layers or FULL, "outputs": names, "errors": {}}
        with torch.no_grad():
            out = module(torch.from_numpy(check_x))
        out = (out,) if isinstance(out, torch.Tensor) else out
        for n, t in zip(names, out):
            refs["%s/%s" % (tag, n)] = t.numpy()

        t0 = time.time()
        export_onnx(module, names, stem + ".onnx", args.size)
        entry["onnx"] = stem + ".onnx"
        print("peers.py: %s: ONNX in %.1f s" % (tag, time.time() - t0), file=sys.stderr)
        try:
            t0 = time.time()
            export_openvino(stem + ".onnx", stem + ".xml")
            entry["openvino"] = stem + ".xml"
            print("peers.py: %s: OpenVINO IR in %.1f s" % (tag, time.time() - t0), file=sys.stderr)
        except Exception as e:  # noqa: BLE001 (reported, the other engines go on)
            entry["errors"]["openvino"] = "%s: %s" % (type(e).__name__, e)
        try:
            t0 = time.time()
            err = export_ncnn(module, names, stem, args.size, stem + ".pnnx.log")
            if err:
                entry["errors"]["ncnn"] = err
            else:
                entry["ncnn"] = [stem + ".ncnn.param", stem + ".ncnn.bin"]
                entry["ncnn_blobs"] = {"input": "in0", "outputs": ["out%d" % i for i in range(len(names))]}
                print("peers.py: %s: ncnn (pnnx) in %.1f s" % (tag, time.time() - t0), file=sys.stderr)
        except Exception as e:  # noqa: BLE001
            entry["errors"]["ncnn"] = "%s: %s" % (type(e).__name__, e)
        for k, v in entry["errors"].items():
            print("peers.py: %s: %s export failed: %s" % (tag, k, v), file=sys.stderr)
        manifest["models"][tag] = entry
    np.savez(os.path.join(args.dir, "reference.npz"), **refs)
    with open(os.path.join(args.dir, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)


# ---- engines -----------------------------------------------------------------------------------
class Engine:
    """build(entry, batch) makes a runnable; call(x) runs one synchronous forward and returns the
    outputs as numpy arrays (for check) or None (for timing, when fetch is False)."""
    precision = "f32"

    def __init__(self, threads):
        self.threads = threads


class OrtEngine(Engine):
    name = "ONNX Runtime"

    def build(self, entry, batch):
        import onnxruntime as ort
        so = ort.SessionOptions()
        so.intra_op_num_threads = self.threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.sess = ort.InferenceSession(entry["onnx"], so, providers=["CPUExecutionProvider"])
        self.version = ort.__version__
        self.engine_threads = so.intra_op_num_threads

    def call(self, x, fetch):
        out = self.sess.run(None, {"x": x})
        return out if fetch else None


class OvEngine(Engine):
    name = "OpenVINO"

    def __init__(self, threads, f32):
        super().__init__(threads)
        self.f32 = f32

    def build(self, entry, batch):
        import openvino as ov
        core = ov.Core()
        model = core.read_model(entry["openvino"])
        model.reshape([batch, 3, self.size, self.size])  # static shapes: what a user compiles for
        config = {"INFERENCE_NUM_THREADS": self.threads, "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY"}
        if self.f32:
            config["INFERENCE_PRECISION_HINT"] = "f32"
        self.compiled = core.compile_model(model, "CPU", config)
        self.request = self.compiled.create_infer_request()
        self.precision = ov_type(self.compiled.get_property("INFERENCE_PRECISION_HINT"))
        self.engine_threads = int(self.compiled.get_property("INFERENCE_NUM_THREADS"))
        self.version = package_version("openvino")

    def call(self, x, fetch):
        self.request.infer({0: x})
        if fetch:
            return [self.request.get_output_tensor(i).data.copy() for i in range(len(self.compiled.outputs))]
        return None


class NcnnEngine(Engine):
    name = "ncnn"

    def build(self, entry, batch):
        import ncnn
        self.ncnn = ncnn
        net = ncnn.Net()
        opt = net.opt
        opt.num_threads = self.threads
        opt.use_vulkan_compute = False
        # fp32 throughout: no fp16 / bf16 storage or arithmetic, no int8.
        for flag in ("use_fp16_packed", "use_fp16_storage", "use_fp16_arithmetic", "use_bf16_storage",
                     "use_bf16_packed", "use_int8_inference"):
            if hasattr(opt, flag):
                setattr(opt, flag, False)
        param, binf = entry["ncnn"]
        if net.load_param(param) != 0 or net.load_model(binf) != 0:
            raise RuntimeError("ncnn could not load %s / %s" % (param, binf))
        self.net = net
        self.engine_threads = net.opt.num_threads
        self.blobs = entry["ncnn_blobs"]
        self.version = package_version("ncnn")

    def call(self, x, fetch):
        outs = [[] for _ in self.blobs["outputs"]]
        for img in x:  # no batch axis in ncnn: one extraction per image
            ex = self.net.create_extractor()
            ex.input(self.blobs["input"], self.ncnn.Mat(img))
            for i, b in enumerate(self.blobs["outputs"]):
                ret, m = ex.extract(b)
                if ret != 0:
                    raise RuntimeError("ncnn extract %s returned %d" % (b, ret))
                if fetch:
                    outs[i].append(np.array(m))
        if fetch:
            return [np.stack(o) for o in outs]
        return None


class TorchEngine(Engine):
    """PyTorch's three paths, for check only (benchmarks/torch_bench.py times them)."""

    def __init__(self, threads, path):
        super().__init__(threads)
        self.path = path
        self.name = "PyTorch " + path

    def build(self, entry, batch):
        import torch
        torch.set_num_threads(self.threads)
        self.torch = torch
        self.module, _ = build_torch(self.manifest["model"], self.manifest["weights"],
                                     "" if entry["layers"] == FULL else entry["layers"])
        self.version = torch.__version__

    def call(self, x, fetch):
        torch = self.torch
        with torch.inference_mode():
            t = torch.from_numpy(x)
            m = self.module
            if self.path == "channels_last":
                m = m.to(memory_format=torch.channels_last)
                t = t.to(memory_format=torch.channels_last)
            elif self.path == "best":
                m = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(m, t, strict=False)))
                m(t)  # the first call of a frozen graph profiles; the second runs the optimized graph
            out = m(t)
        out = (out,) if isinstance(out, torch.Tensor) else out
        return [o.contiguous().numpy() for o in out]


def make_engine(name, threads, manifest):
    if name == "ort":
        e = OrtEngine(threads)
    elif name in ("ov-f32", "ov-default"):
        e = OvEngine(threads, f32=(name == "ov-f32"))
    elif name == "ncnn":
        e = NcnnEngine(threads)
    elif name.startswith("torch-"):
        e = TorchEngine(threads, name[len("torch-"):])
    else:
        fail("unknown engine '%s' (%s)" % (name, ", ".join(ENGINES + CHECK_ONLY)))
    e.size = manifest["size"]
    e.manifest = manifest
    return e


def model_entry(manifest, layers, engine):
    want = layers or FULL
    for tag, entry in manifest["models"].items():
        if entry["layers"] == want:
            key = {"ort": "onnx", "ov-f32": "openvino", "ov-default": "openvino", "ncnn": "ncnn"}.get(engine)
            if key and key not in entry:
                fail("no %s model for %s: %s" % (key, want, entry["errors"].get(key, "not exported")))
            return tag, entry
    fail("no exported model for layers '%s' (exported: %s)" % (
        want, ", ".join(e["layers"] for e in manifest["models"].values())))


def load_manifest(d):
    path = os.path.join(d, "manifest.json")
    if not os.path.exists(path):
        fail("%s missing: run `peers.py export` first" % path)
    with open(path) as f:
        return json.load(f)


# ---- check -------------------------------------------------------------------------------------
def rel_err(got, ref):
    got = np.asarray(got, dtype=np.float64).reshape(ref.shape)
    scale = float(np.max(np.abs(ref)))
    return float(np.max(np.abs(got - ref))) / (scale if scale > 0 else 1.0)


def cmd_check(args):
    manifest = load_manifest(args.dir)
    refs = np.load(os.path.join(args.dir, "reference.npz"))
    x = np.load(os.path.join(args.dir, "check_input.npy"))
    results = {"engine": args.engine, "threads": args.threads, "models": {}}
    ok = True
    precision = "f32"
    for tag, entry in manifest["models"].items():
        names = entry["outputs"]
        try:
            if args.engine == "strata":
                outs = strata_outputs(args, entry, tag)
                version = None
            else:
                _, entry = model_entry(manifest, "" if entry["layers"] == FULL else entry["layers"], args.engine)
                e = make_engine(args.engine, args.threads, manifest)
                e.build(entry, x.shape[0])
                outs = e.call(x, fetch=True)
                precision, version = e.precision, e.version
            errs = {n: rel_err(o, refs["%s/%s" % (tag, n)]) for n, o in zip(names, outs)}
            results["models"][tag] = {"layers": entry["layers"], "rel_err": errs, "max_rel_err": max(errs.values())}
        except SystemExit:
            raise
        except Exception as e:  # noqa: BLE001 (an engine that cannot run is a failed check)
            results["models"][tag] = {"layers": entry["layers"], "error": "%s: %s" % (type(e).__name__, e)}
            ok = False
    results["precision"] = precision
    results["version"] = version if args.engine != "strata" else None
    worst = max((m.get("max_rel_err", float("inf")) for m in results["models"].values()), default=float("inf"))
    results["max_rel_err"] = worst
    results["tolerance"] = args.tolerance
    reduced = precision.lower() not in ("f32", "fp32", "float32")
    results["fp32"] = not reduced
    if not reduced and not worst <= args.tolerance:
        ok = False
    results["ok"] = ok
    print(json.dumps(results))
    sys.exit(0 if ok else 1)


def strata_outputs(args, entry, tag):
    """strata's outputs for the check input: `strata features --out` files given as
    --outputs full=F.safetensors,getter=G.safetensors."""
    sys.path.insert(0, os.path.join(HERE, "..", "tools"))
    from st_io import load_safetensors
    files = dict(p.split("=", 1) for p in args.outputs.split(",")) if args.outputs else {}
    if tag not in files:
        raise RuntimeError("no strata output file for %s (--outputs)" % tag)
    tensors, _ = load_safetensors(files[tag])
    return [np.asarray(tensors[n]) for n in entry["outputs"]]


# ---- bench -------------------------------------------------------------------------------------
def cmd_bench(args):
    manifest = load_manifest(args.dir)
    if args.engine not in ENGINES:
        fail("bench times %s; PyTorch is timed by torch_bench.py, strata by `strata bench`" % ", ".join(ENGINES))
    _, entry = model_entry(manifest, args.layers, args.engine)
    e = make_engine(args.engine, args.threads, manifest)
    x = np.full((args.batch, 3, args.size, args.size), 0.5, dtype=np.float32)
    # The engine's Python module is imported before load_ms starts (as torch is in torch_bench.py).
    importlib.import_module({"ort": "onnxruntime", "ncnn": "ncnn"}.get(args.engine, "openvino"))
    t0 = time.perf_counter()
    e.build(entry, args.batch)
    load_ms = (time.perf_counter() - t0) * 1000.0
    t0 = time.perf_counter()
    e.call(x, fetch=False)
    first_ms = (time.perf_counter() - t0) * 1000.0
    for _ in range(args.warmup - 1):
        e.call(x, fetch=False)
    ms = []
    for _ in range(args.iters):
        t0 = time.perf_counter()
        e.call(x, fetch=False)
        ms.append((time.perf_counter() - t0) * 1000.0)
    med = statistics.median(ms)
    print(json.dumps({"side": args.engine, "path": args.engine, "engine": e.name, "version": e.version,
                      "precision": e.precision, "engine_threads": e.engine_threads,
                      "model": manifest["model"], "layers": args.layers or FULL,
                      "batch": args.batch, "size": args.size, "threads": args.threads,
                      "warmup": max(args.warmup, 1), "iters": args.iters, "median_ms": round(med, 3),
                      "min_ms": round(min(ms), 3), "mean_ms": round(statistics.mean(ms), 3),
                      "images_per_s": round(1000.0 * args.batch / med, 2), "first_ms": round(first_ms, 3),
                      "load_ms": round(load_ms, 3), "prepare_ms": None,
                      "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)}))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("versions")
    p = sub.add_parser("export")
    p.add_argument("--model", default="resnet18")
    p.add_argument("--weights", required=True, help="torch.save(state_dict) file")
    p.add_argument("--check-input", required=True, help="float32 NCHW .npy the checks run on")
    p.add_argument("--dir", required=True)
    p.add_argument("--size", type=int, default=224)
    p = sub.add_parser("check")
    p.add_argument("--engine", required=True)
    p.add_argument("--dir", required=True)
    p.add_argument("--threads", type=int, required=True)
    p.add_argument("--tolerance", type=float, default=1e-4)
    p.add_argument("--outputs", default="", help="strata only: full=F.safetensors,getter=G.safetensors")
    p = sub.add_parser("bench")
    p.add_argument("--engine", required=True)
    p.add_argument("--dir", required=True)
    p.add_argument("--layers", default="")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--threads", type=int, required=True)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--iters", type=int, default=30)
    args = ap.parse_args()
    {"versions": cmd_versions, "export": cmd_export, "check": cmd_check, "bench": cmd_bench}[args.cmd](args)


if __name__ == "__main__":
    main()
