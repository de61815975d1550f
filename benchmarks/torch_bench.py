#!/usr/bin/env python3
"""PyTorch side of strata's benchmarks: prints one JSON line per run, same fields as
`strata bench` (median_ms, min_ms, mean_ms, images_per_s, first_ms, load_ms).

    python3 benchmarks/torch_bench.py --batch 1 --size 224 --threads 2 --path eager \
        [--layers layer1:feat1,layer3:feat2] [--weights resnet18.pth]

--path: eager (NCHW), channels_last, or best (torch.jit.trace + freeze + optimize_for_inference).
Same protocol as `strata bench`: constant input 0.5 of shape [batch, 3, size, size], model.eval()
under torch.inference_mode(), torch.set_num_threads(--threads); the first forward call is timed
alone (first_ms) and is the first of --warmup untimed calls; then --iters timed calls.
--weights: a torch.save(state_dict) file; load_ms times torch.load + load_state_dict (the model
is constructed before, untimed, as strata's is). prepare_ms times the path's conversion
(channels_last copy, or trace + freeze + optimize_for_inference). peak_rss_mb is this process's
ru_maxrss at the end.
"""
import argparse
import json
import resource
import statistics
import time
import warnings

import torch
import torchvision
from torchvision.models._utils import IntermediateLayerGetter

# torch 2.x marks torch.jit deprecated; it is still the documented freeze/optimize_for_inference path.
warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch\.jit")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="resnet18")
    ap.add_argument("--layers", default="")
    ap.add_argument("--weights", default="", help="torch.save(state_dict) file to load (timed as load_ms)")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("--path", choices=["eager", "channels_last", "best"], default="eager")
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    model = getattr(torchvision.models, a.model)()
    load_ms = None
    if a.weights:
        t0 = time.perf_counter()
        model.load_state_dict(torch.load(a.weights, map_location="cpu"))
        load_ms = (time.perf_counter() - t0) * 1000.0
    model.eval()
    if a.layers:
        pairs = dict(p.split(":") for p in a.layers.split(","))
        model = IntermediateLayerGetter(model, pairs).eval()
    x = torch.full((a.batch, 3, a.size, a.size), 0.5)
    with torch.inference_mode():
        t0 = time.perf_counter()
        if a.path == "channels_last":
            model = model.to(memory_format=torch.channels_last)
            x = x.to(memory_format=torch.channels_last)
        elif a.path == "best":
            model = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(model, x, strict=False)))
        prepare_ms = (time.perf_counter() - t0) * 1000.0
        t0 = time.perf_counter()
        model(x)
        first_ms = (time.perf_counter() - t0) * 1000.0
        for _ in range(a.warmup - 1):
            model(x)
        ms = []
        for _ in range(a.iters):
            t0 = time.perf_counter()
            model(x)
            ms.append((time.perf_counter() - t0) * 1000.0)
    med = statistics.median(ms)
    print(json.dumps({"side": "pytorch", "path": a.path, "torch": torch.__version__, "model": a.model,
                      "layers": a.layers or "(full model)", "batch": a.batch, "size": a.size,
                      "threads": a.threads, "warmup": max(a.warmup, 1), "iters": a.iters,
                      "median_ms": round(med, 3), "min_ms": round(min(ms), 3),
                      "mean_ms": round(statistics.mean(ms), 3),
                      "images_per_s": round(1000.0 * a.batch / med, 2),
                      "first_ms": round(first_ms, 3),
                      "load_ms": None if load_ms is None else round(load_ms, 3),
                      "prepare_ms": round(prepare_ms, 3),
                      "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)}))


if __name__ == "__main__":
    main()
