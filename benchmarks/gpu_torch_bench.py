#!/usr/bin/env python3
"""PyTorch side of strata's GPU check (benchmarks/gpu_check.sh), on the GPU machine's own torch.

    gpu_torch_bench.py parity --strata BIN --workdir DIR --out parity.json [--device cpu --quick]
        ResNet-18 with the deterministic weights (tools/detgen.py, seed 2024) in strata
        (`strata features --device cuda`, NCHW and NHWC activations) and in torchvision on CUDA,
        fp32 with TF32 off on both sides, for several getter configurations at batch 1, 8 and 64
        and odd input sizes. Passes when max|strata - torch| <= 1e-4 * max|torch| for every
        returned tensor. `--device cpu --quick` runs the same plumbing on the CPU backend and
        small cases, to check this script on a machine without a GPU.
    gpu_torch_bench.py bench --precision fp32|tf32 --batches 1,32,256 --out bench.jsonl
        Times torchvision's ResNet-18 forward on CUDA: eager NCHW, eager channels_last, and CUDA
        graph replays of both; one JSON line per (path, batch), the fields of `strata bench`.

Timing, the same as strata's `bench --device cuda`: the input is on the device before timing
(no host-device copy is timed), warm-up calls first (cudnn.benchmark's autotuning happens
there), then each timed call is followed by torch.cuda.synchronize() and measured with
time.perf_counter(); median and min over the timed calls. TF32 is pinned on both sides:
fp32 = torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np
import torch
import torchvision
from torchvision.models._utils import IntermediateLayerGetter

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tools"))
from detgen import fill_deterministic  # noqa: E402
from st_io import load_safetensors, save_safetensors  # noqa: E402

TOLERANCE = 1e-4  # max|strata - torch| <= TOLERANCE * max|torch|, fp32 with TF32 off


def pin_precision(precision):
    tf32 = precision == "tf32"
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.benchmark = True


def detgen_resnet18(seed=2024):
    model = torchvision.models.resnet18(weights=None)
    model.load_state_dict(fill_deterministic(model.state_dict(), seed), strict=True)
    for m in model.modules():  # true outputs, as strata returns them (no in-place aliasing)
        if isinstance(m, torch.nn.ReLU):
            m.inplace = False
    return model.eval()


def torch_outputs(model, layers, x):
    """{new_name: tensor} as strata's getter returns them; `fc` is the full model's logits."""
    pairs = [p.split(":") for p in layers.split(",")]
    out = {}
    body = [(k, v) for k, v in pairs if k != "fc"]
    with torch.inference_mode():
        if body:
            getter = IntermediateLayerGetter(model, dict(body)).eval()
            out.update(getter(x))
        for k, v in pairs:
            if k == "fc":
                out[v] = model(x)
    return out


def parity(args):
    cuda = args.device == "cuda"
    if cuda:
        pin_precision("fp32")
    os.makedirs(args.workdir, exist_ok=True)
    model = detgen_resnet18()
    weights = os.path.join(args.workdir, "resnet18_detgen2024.safetensors")
    save_safetensors({k: v.numpy() for k, v in model.state_dict().items()}, weights, {"format": "pt"})
    if cuda:
        model = model.cuda()
    cases = [
        # (batch, height, width, layers)
        (1, 224, 224, "fc:logits"),
        (1, 224, 224, "layer1:feat1,layer3:feat2"),
        (8, 224, 224, "conv1:conv1,bn1:bn1,relu:relu,maxpool:pool,layer2:c3,fc:logits"),
        (8, 97, 131, "layer4:out,layer2:aux"),
        (64, 224, 224, "layer1:c2,layer2:c3,layer3:c4,layer4:c5,fc:logits"),
        (64, 61, 75, "avgpool:pooled,fc:logits"),
    ]
    if args.quick:
        cases = [(1, 64, 64, "layer1:feat1,layer3:feat2"), (2, 61, 75, "conv1:conv1,bn1:bn1,maxpool:pool,fc:logits")]
    results, ok = [], True
    rng = np.random.RandomState(7)
    for layout in ("nchw", "nhwc") if cuda else ("cpu",):
        for i, (n, h, w, layers) in enumerate(cases):
            x = rng.uniform(0.0, 1.0, size=(n, 3, h, w)).astype(np.float32)
            xin = os.path.join(args.workdir, "x%d.npy" % i)
            np.save(xin, x)
            out_path = os.path.join(args.workdir, "strata_%s_%d.safetensors" % (layout, i))
            cmd = [args.strata, "features", "--weights", weights, "--input", xin, "--layers", layers, "--out", out_path]
            if cuda:
                cmd += ["--device", "cuda", "--layout", layout]
            t0 = time.perf_counter()
            run = subprocess.run(cmd, capture_output=True, text=True)
            seconds = time.perf_counter() - t0
            case = {"batch": n, "size": [h, w], "layers": layers, "layout": layout, "seconds": round(seconds, 2)}
            if run.returncode != 0:
                case.update(ok=False, error=(run.stderr or run.stdout).strip()[-2000:])
                results.append(case)
                ok = False
                print(json.dumps(case), flush=True)
                continue
            mine, _ = load_safetensors(out_path)
            xt = torch.from_numpy(x)
            ref = torch_outputs(model, layers, xt.cuda() if cuda else xt)
            case["tensors"] = {}
            case_ok = True
            for name, r in ref.items():
                r = r.float().cpu().numpy()
                m = mine[name]
                if m.shape != r.shape:
                    case["tensors"][name] = {"ok": False, "error": "shape %s vs torch %s" % (m.shape, r.shape)}
                    case_ok = False
                    continue
                diff = float(np.max(np.abs(m.astype(np.float64) - r)))
                scale = float(np.max(np.abs(r)))
                rel = diff / scale if scale > 0 else diff
                good = rel <= TOLERANCE
                case_ok &= good
                case["tensors"][name] = {"ok": good, "max_abs_diff": diff, "max_abs_ref": scale, "rel": rel}
            case["ok"] = case_ok
            ok &= case_ok
            results.append(case)
            print(json.dumps(case), flush=True)
    summary = {"ok": ok, "tolerance": TOLERANCE, "torch": torch.__version__,
               "torchvision": torchvision.__version__, "cudnn": torch.backends.cudnn.version(),
               "device": torch.cuda.get_device_name(0) if cuda else "cpu", "cases": results}
    with open(args.out, "w") as f:
        json.dump(summary, f, indent=1)
    print("parity: %s (%d cases, tolerance %g * max|torch|)" % ("OK" if ok else "FAILED", len(results), TOLERANCE))
    return 0 if ok else 1


def time_calls(fn, warmup, iters):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    ms = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        ms.append((time.perf_counter() - t0) * 1000.0)
    return ms


def bench(args):
    pin_precision(args.precision)
    base = torchvision.models.resnet18(weights=None).eval().cuda()
    lines = []
    for batch in [int(b) for b in args.batches.split(",")]:
        warmup, iters = (10, 50) if batch <= 32 else (5, 20)
        for path in args.paths.split(","):
            channels_last = path.endswith("channels_last")
            fmt = torch.channels_last if channels_last else torch.contiguous_format
            model = base.to(memory_format=fmt)
            x = torch.full((batch, 3, args.size, args.size), 0.5, device="cuda").to(memory_format=fmt)
            with torch.inference_mode():
                if path.startswith("graph"):
                    static_x = x.clone()
                    stream = torch.cuda.Stream()
                    stream.wait_stream(torch.cuda.current_stream())
                    with torch.cuda.stream(stream):  # warm-up (autotuning) off the capture
                        for _ in range(3):
                            model(static_x)
                    torch.cuda.current_stream().wait_stream(stream)
                    graph = torch.cuda.CUDAGraph()
                    with torch.cuda.graph(graph):
                        static_y = model(static_x)  # noqa: F841 (kept alive by the graph's pool)
                    fn = graph.replay
                else:
                    def fn():
                        model(x)
                ms = time_calls(fn, warmup, iters)
            med = statistics.median(ms)
            line = {"side": "pytorch", "path": path, "precision": args.precision, "torch": torch.__version__,
                    "cudnn": torch.backends.cudnn.version(), "device": torch.cuda.get_device_name(0),
                    "model": "resnet18", "batch": batch, "size": args.size, "warmup": warmup, "iters": iters,
                    "median_ms": round(med, 4), "min_ms": round(min(ms), 4),
                    "mean_ms": round(statistics.mean(ms), 4), "images_per_s": round(1000.0 * batch / med, 2)}
            print(json.dumps(line), flush=True)
            lines.append(line)
            del model
            torch.cuda.empty_cache()
    with open(args.out, "a") as f:
        for line in lines:
            f.write(json.dumps(line) + "\n")
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("parity")
    p.add_argument("--strata", required=True, help="the strata CLI built with the CUDA backend")
    p.add_argument("--workdir", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda", help="cpu: check the plumbing without a GPU")
    p.add_argument("--quick", action="store_true", help="two small cases only")
    b = sub.add_parser("bench")
    b.add_argument("--precision", choices=["fp32", "tf32"], required=True)
    b.add_argument("--batches", default="1,32,256")
    b.add_argument("--size", type=int, default=224)
    b.add_argument("--paths", default="eager,eager_channels_last,graph,graph_channels_last")
    b.add_argument("--out", required=True)
    args = ap.parse_args()
    if not torch.cuda.is_available() and getattr(args, "device", "cuda") == "cuda":
        print("error: torch sees no CUDA device", file=sys.stderr)
        return 2
    return parity(args) if args.command == "parity" else bench(args)


if __name__ == "__main__":
    sys.exit(main())
