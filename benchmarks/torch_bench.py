#!/usr/bin/env python3
"""PyTorch side of strata's benchmarks: prints one JSON line per run, same fields as
`strata bench` (median_ms, min_ms, mean_ms, images_per_s).

    python3 benchmarks/torch_bench.py --batch 1 --size 224 --threads 2 --path eager [--layers layer1:feat1,layer3:feat2]

--path: eager (NCHW), channels_last, or best (torch.jit.freeze + optimize_for_inference).
"""
import argparse
import json
import statistics
import time

import torch
import torchvision
from torchvision.models._utils import IntermediateLayerGetter


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="resnet18")
    ap.add_argument("--layers", default="")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("--path", choices=["eager", "channels_last", "best"], default="eager")
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    model = getattr(torchvision.models, a.model)().eval()
    if a.layers:
        pairs = dict(p.split(":") for p in a.layers.split(","))
        model = IntermediateLayerGetter(model, pairs).eval()
    x = torch.full((a.batch, 3, a.size, a.size), 0.5)
    with torch.inference_mode():
        if a.path == "channels_last":
            model = model.to(memory_format=torch.channels_last)
            x = x.to(memory_format=torch.channels_last)
        elif a.path == "best":
            model = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(model, x, strict=False)))
        for _ in range(a.warmup):
            model(x)
        ms = []
        for _ in range(a.iters):
            t0 = time.perf_counter()
            model(x)
            ms.append((time.perf_counter() - t0) * 1000.0)
    med = statistics.median(ms)
    print(json.dumps({"side": "pytorch", "path": a.path, "torch": torch.__version__, "model": a.model,
                      "layers": a.layers or "(full model)", "batch": a.batch, "size": a.size,
                      "threads": a.threads, "iters": a.iters, "median_ms": round(med, 3),
                      "min_ms": round(min(ms), 3), "mean_ms": round(statistics.mean(ms), 3),
                      "images_per_s": round(1000.0 * a.batch / med, 2)}))


if __name__ == "__main__":
    main()
