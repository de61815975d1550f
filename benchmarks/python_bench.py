#!/usr/bin/env python3
"""strata's Python module against PyTorch in one process, on the same numpy batch.

    .venv-py/bin/python benchmarks/python_bench.py --threads 2 --batch 1 --size 224 \
        [--model resnet18] [--layers layer1:feat1,layer3:feat2] [--rounds 5] [--iters 10] [--json]

Both engines get the same weights (torchvision's init, copied into strata with
load_state_dict), the same float32 NCHW batch (uniform [0, 1), seed 0) and the same thread
count (torch.set_num_threads and strata's num_threads per call). After a warm-up of both, they
alternate: each round times --iters calls of strata, then --iters of PyTorch (eager, NCHW, under
torch.inference_mode(), through torchvision's IntermediateLayerGetter when --layers is given; the
whole model otherwise), so drifts in machine load hit both alike. It reports each engine's
median, min and mean over all timed calls, the ratio of medians, and the outputs' largest
relative difference (max|strata - torch| / max|torch| per output). What is timed is the Python
call: for strata that includes reading the numpy input in place and wrapping the outputs as numpy
arrays; for PyTorch, torch.from_numpy on the way in (no copy) and nothing on the way out.

Needs torch and torchvision (Debian: python3-torchvision, visible in a venv made with
--system-site-packages) and strata (`pip install ./python`).
"""
import argparse
import json
import os
import platform
import statistics
import sys
import time


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="resnet18")
    ap.add_argument("--layers", default="layer1:feat1,layer3:feat2",
                    help="child:new_name,...; empty for the whole model")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--iters", type=int, default=10, help="timed calls per engine per round")
    ap.add_argument("--json", action="store_true", help="one JSON line instead of a table")
    a = ap.parse_args()

    import numpy as np
    import torch
    import torchvision
    from torchvision.models._utils import IntermediateLayerGetter as TorchGetter

    import strata

    torch.set_num_threads(a.threads)
    tm = getattr(torchvision.models, a.model)().eval()
    sm = getattr(strata.models, a.model)(init="none")
    sm.load_state_dict(tm.state_dict())
    layers = dict(p.split(":") for p in a.layers.split(",")) if a.layers else {}
    x = np.random.RandomState(0).rand(a.batch, 3, a.size, a.size).astype(np.float32)

    if layers:
        tg = TorchGetter(tm, layers).eval()
        sg = strata.IntermediateLayerGetter(sm, layers)

        def run_torch():
            with torch.inference_mode():
                return {k: v.numpy() for k, v in tg(torch.from_numpy(x)).items()}

        def run_strata():
            return sg(x, num_threads=a.threads)
    else:
        def run_torch():
            with torch.inference_mode():
                return {"out": tm(torch.from_numpy(x)).numpy()}

        def run_strata():
            return {"out": sm(x, num_threads=a.threads)}

    want, got = run_torch(), run_strata()
    err = max(float(np.max(np.abs(got[k] - want[k]))) / float(np.max(np.abs(want[k]))) for k in want)
    for _ in range(a.warmup):
        run_strata()
        run_torch()

    times = {"strata": [], "torch": []}
    for _ in range(a.rounds):
        for name, fn in (("strata", run_strata), ("torch", run_torch)):
            for _ in range(a.iters):
                t0 = time.perf_counter()
                fn()
                times[name].append((time.perf_counter() - t0) * 1000.0)

    stats = {name: {"median_ms": statistics.median(t), "min_ms": min(t), "mean_ms": statistics.fmean(t),
                    "calls": len(t), "images_per_s": a.batch * 1000.0 / statistics.median(t)}
             for name, t in times.items()}
    result = {
        "model": a.model, "layers": a.layers, "batch": a.batch, "size": a.size, "threads": a.threads,
        "rounds": a.rounds, "iters": a.iters, "strata": stats["strata"], "torch": stats["torch"],
        "strata_over_torch": stats["strata"]["median_ms"] / stats["torch"]["median_ms"],
        "max_rel_diff": err, "strata_version": strata.__version__, "cpu": strata.cpu_info(),
        "torch_version": torch.__version__, "numpy_version": np.__version__,
        "python": platform.python_version(), "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
    }
    if a.json:
        print(json.dumps(result))
        return
    print("%s %s, batch %d, %dx%d, %d thread(s); %d rounds x %d calls each, alternating"
          % (a.model, ("getter " + a.layers) if a.layers else "full model", a.batch, a.size, a.size,
             a.threads, a.rounds, a.iters))
    print("strata %s (%s); torch %s" % (strata.__version__, strata.cpu_info(), torch.__version__))
    print("%-8s %10s %10s %10s %10s" % ("engine", "median ms", "min ms", "mean ms", "img/s"))
    for name in ("strata", "torch"):
        s = stats[name]
        print("%-8s %10.2f %10.2f %10.2f %10.1f" % (name, s["median_ms"], s["min_ms"], s["mean_ms"], s["images_per_s"]))
    print("strata / torch (medians): %.2fx; outputs: max rel diff %.2g" % (result["strata_over_torch"], err))


if __name__ == "__main__":
    sys.exit(main())
