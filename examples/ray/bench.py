#!/usr/bin/env python3
"""Images/s of the Ray recipe on this machine: 1 actor x N threads vs N actors x 1 thread (and
strata in one process with N threads, no Ray), same images, alternating rounds, medians.

    build-python/venv/bin/python examples/ray/bench.py --images 240 --rounds 2

Images are made from tests/fixtures/images (crops resized to 256-512 px, JPEG and PNG), with the
full ImageNet transform (Resize(256), CenterCrop(224)) and ResNet-18 (detgen weights) layer4.
Each Ray figure is the whole pipeline: actor start and model load, decode, transform, inference,
Parquet writing. Prints the load average before and after: on a shared machine the figures are
indicative only.
"""
import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(REPO, "tools"))


def make_images(folder, n):
    from PIL import Image
    src = os.path.join(REPO, "tests", "fixtures", "images")
    photos = [Image.open(os.path.join(src, f)).convert("RGB") for f in sorted(os.listdir(src))
              if f.endswith((".jpg", ".png")) and not f.startswith("refuse")]
    for i in range(n):
        im, k = photos[i % len(photos)], i // len(photos)
        w, h = im.size
        im = im.crop((k % 5 * w // 20, k % 3 * h // 20, w, h)).resize((256 + (k * 37) % 256, 256 + (k * 17) % 128))
        im.save(os.path.join(folder, "img%04d.%s" % (i, "png" if i % 3 == 0 else "jpg")), quality=90)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--images", type=int, default=240)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--cpus", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=8)
    args = p.parse_args()

    import ray
    import strata
    import detgen
    import extract_features as recipe

    tmp = tempfile.mkdtemp(prefix="strata_ray_bench")
    try:
        make_images(tmp, args.images)
        paths = recipe.list_images([tmp])
        sd = detgen.fill_deterministic(strata.models.resnet18(init="none").state_dict(), 2024)
        print("load average before: %s" % " ".join("%.2f" % v for v in os.getloadavg()))

        def single_process():
            getter = recipe.make_getter("resnet18", None, sd, ("layer4",))
            t = recipe.make_transform()
            start = time.perf_counter()
            for i in range(0, len(paths), args.batch_size):
                getter(np.stack([t.load(q) for q in paths[i:i + args.batch_size]]), num_threads=args.cpus)
            return time.perf_counter() - start

        ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
        configs = [("1 actor x %d threads" % args.cpus, 1, args.cpus),
                   ("%d actors x 1 thread" % args.cpus, args.cpus, 1)]
        times = {name: [] for name, _, _ in configs}
        times["one process, %d threads, no Ray" % args.cpus] = []
        for r in range(args.rounds):
            for name, actors, threads in configs:
                out = os.path.join(tmp, "out_%d_%d" % (r, actors))
                times[name].append(recipe.run(paths, out, state_dict=sd, layers=("layer4",), actors=actors,
                                              threads=threads, batch_size=args.batch_size))
            times["one process, %d threads, no Ray" % args.cpus].append(single_process())
        ray.shutdown()
        for name, ts in times.items():
            med = statistics.median(ts)
            print("%-32s %6.1f images/s  (median of %s s)" % (name, len(paths) / med,
                                                             ", ".join("%.1f" % t for t in ts)))
        print("load average after: %s" % " ".join("%.2f" % v for v in os.getloadavg()))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
