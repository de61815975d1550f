#!/usr/bin/env python3
"""strata features for many images on a Ray cluster (Ray Data), written to Parquet.

    python examples/ray/extract_features.py photos/ --out features/ \
        --weights resnet18-f37072fd.pth --layers layer4 --actors 8 --threads 4 --batch-size 16

Inputs: folders (every .jpg/.jpeg/.png below them), image paths, or text files listing one path
(or file:// URI) per line. Every node must see the same paths (a shared file system): the driver
lists them, the actors open them.

The driver cuts the sorted paths into consecutive batches of `--batch-size` (the last one
shorter), one dataset row each, so which images share a strata call never depends on Ray's block
sizes, scheduling or retries: strata's features of one image can differ in the last float32 bits
with the batch it was computed in (and with the thread count), and this way a run is reproducible
and equal to `run_local`, the same batches in one process, bit for bit. Per batch an actor decodes each image (strata.image.load, as PIL decodes),
applies the transform (torchvision's Resize, CenterCrop, ToTensor, Normalize, bit for bit), stacks
them and runs one strata IntermediateLayerGetter call with `num_threads=--threads`. Each actor is a
Ray actor with `num_cpus=--threads`, so Ray places at most cores/threads actors per node: strata's
OpenMP threads never oversubscribe a node. The model is loaded once per actor (its constructor).

Fault tolerance: Ray Data restarts a dead actor (`max_restarts`) and resubmits the batch it was
running (`max_task_retries`); the output still has every id exactly once. examples/ray/
test_ray_recipe.py kills an actor mid-run and checks that.

Output (`--out` folder, Parquet files written by the workers, one row per image):
    id              string                          the image's path as given (absolute)
    <name>          fixed_size_list<float32>[C*H*W] the feature map of one image, C-order
    <name>_shape    list<int32>                     [C, H, W]
for each requested layer name (`--layers layer1,layer4` -> columns layer1, layer1_shape, ...).
Read back: `pyarrow.parquet.read_table(out)`; one feature map is
`np.asarray(t["layer4"][i].values).reshape(t["layer4_shape"][i].as_py())`.
"""
import argparse
import os
import sys
import time

import numpy as np

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def list_images(inputs):
    """Sorted absolute paths: folders walked for .jpg/.jpeg/.png, .txt files read as lists of
    paths or file:// URIs, anything else taken as an image path."""
    paths = []
    for item in inputs:
        if os.path.isdir(item):
            for root, _, files in os.walk(item):
                paths += [os.path.join(root, f) for f in files if f.lower().endswith(IMAGE_SUFFIXES)]
        elif item.endswith(".txt"):
            with open(item) as f:
                paths += [line.strip() for line in f if line.strip()]
        else:
            paths.append(item)
    paths = [p[len("file://"):] if p.startswith("file://") else p for p in paths]
    return sorted(set(os.path.abspath(p) for p in paths))


def make_transform(resize=256, crop=224):
    """torchvision's Compose([Resize(resize), CenterCrop(crop), ToTensor(), Normalize(ImageNet)])."""
    import strata
    if resize == 256 and crop == 224:
        return strata.image.imagenet_classification()
    T = strata.image
    return T.Compose([T.Resize(resize), T.CenterCrop(crop), T.ToTensor(),
                      T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


def make_getter(model="resnet18", weights=None, state_dict=None, layers=("layer4",)):
    """A strata getter over `model` with weights from a file path or a state dict of arrays."""
    import strata
    if weights is not None:
        m = getattr(strata.models, model)(weights=weights)
    else:
        m = getattr(strata.models, model)(init="none")
        m.load_state_dict(state_dict)
    return strata.IntermediateLayerGetter(m, {name: name for name in layers})


def features_table(ids, out):
    """The Parquet schema above, from ids and the getter's OrderedDict of [N, C, H, W] arrays."""
    import pyarrow as pa
    cols = {"id": pa.array(ids, pa.string())}
    for name, arr in out.items():
        n = arr.shape[0]
        flat = np.ascontiguousarray(arr, dtype=np.float32).reshape(-1)
        cols[name] = pa.FixedSizeListArray.from_arrays(pa.array(flat, pa.float32()), int(np.prod(arr.shape[1:])))
        cols[name + "_shape"] = pa.array([list(arr.shape[1:])] * n, pa.list_(pa.int32()))
    return pa.table(cols)


class StrataExtractor:
    """The map_batches callable: one model per actor, one getter call per batch."""

    def __init__(self, model, weights, state_dict, layers, resize, crop, threads, crash_once_on=None):
        if state_dict is not None and not isinstance(state_dict, dict):
            import ray
            state_dict = ray.get(state_dict)  # the driver's ray.put: one copy per node, not per actor
        self.getter = make_getter(model, weights, state_dict, layers)
        self.transform = make_transform(resize, crop)
        self.threads = threads
        # Tests only: (id, marker file). The first actor to get a batch holding `id` exits the
        # process abruptly (a crashed node or OOM kill, as Ray sees it), once per marker file.
        self.crash_once_on = crash_once_on

    def __call__(self, rows):
        import pyarrow as pa
        tables = []
        for chunk in rows["ids"]:  # one row: one of the driver's batches of paths
            ids = [str(p) for p in chunk]
            if self.crash_once_on is not None and self.crash_once_on[0] in ids:
                try:
                    os.close(os.open(self.crash_once_on[1], os.O_CREAT | os.O_EXCL | os.O_WRONLY))
                    os._exit(1)
                except FileExistsError:
                    pass
            tables.append(extract(self.getter, self.transform, ids, self.threads))
        return pa.concat_tables(tables)


def batches(paths, batch_size):
    """The batch composition rule: consecutive runs of `batch_size` paths in the given order."""
    return [paths[i:i + batch_size] for i in range(0, len(paths), batch_size)]


def extract(getter, transform, ids, threads):
    """One strata call on one batch of paths: the Parquet rows of those images."""
    x = np.stack([transform.load(p) for p in ids])
    return features_table(ids, getter(x, num_threads=threads))


def run_local(paths, *, model="resnet18", weights=None, state_dict=None, layers=("layer4",), resize=256,
              crop=224, threads=1, batch_size=16):
    """The same work in this process, no Ray: a pyarrow Table with run()'s schema, in path order."""
    import pyarrow as pa
    getter, transform = make_getter(model, weights, state_dict, layers), make_transform(resize, crop)
    return pa.concat_tables([extract(getter, transform, b, threads) for b in batches(paths, batch_size)])


def run(paths, out_dir, *, model="resnet18", weights=None, state_dict=None, layers=("layer4",),
        resize=256, crop=224, actors=2, threads=1, batch_size=16, max_restarts=None, max_task_retries=None,
        crash_once_on=None):
    """Extracts features of `paths` on the connected Ray cluster (ray.init first) into Parquet
    files under `out_dir`. Returns the seconds the pipeline took (listing excluded)."""
    import ray
    if StrataExtractor.__module__ != "__main__":
        # Ship this file's code with the tasks, so worker nodes need strata but not this file.
        import ray.cloudpickle
        ray.cloudpickle.register_pickle_by_value(sys.modules[StrataExtractor.__module__])
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    start = time.perf_counter()
    state_ref = ray.put(state_dict) if state_dict is not None else None
    chunks = batches(paths, batch_size)
    # One row per batch of paths, one block per row: a retry redoes one batch.
    ds = ray.data.from_items([{"ids": b} for b in chunks], override_num_blocks=len(chunks))
    ds = ds.map_batches(
        StrataExtractor,
        fn_constructor_kwargs=dict(model=model, weights=weights, state_dict=state_ref, layers=tuple(layers),
                                   resize=resize, crop=crop, threads=threads, crash_once_on=crash_once_on),
        batch_size=1,                # one row = one batch of `batch_size` images
        batch_format="numpy",
        num_cpus=threads,            # = strata's threads per call: no oversubscription
        compute=ray.data.ActorPoolStrategy(size=actors),  # a fixed pool of `actors` actors
        # Ray Data 2.60's actor pools default to max_restarts=-1 (restart a dead actor as often as
        # needed) and max_task_retries=-1 (resubmit its batch until it succeeds); pass numbers to
        # bound them (Ray 2.60 warns that these keywords are deprecated, removed in 2.64).
        **{k: v for k, v in [("max_restarts", max_restarts), ("max_task_retries", max_task_retries)]
           if v is not None},
    )
    # Writing is I/O: the write tasks ask for no CPU, so they never wait behind the actors.
    ds.write_parquet(out_dir, ray_remote_args={"num_cpus": 0})
    return time.perf_counter() - start


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("inputs", nargs="+", help="folders, image paths, or .txt lists of paths")
    p.add_argument("--out", required=True, help="output folder for the Parquet files")
    p.add_argument("--address", default=None, help="Ray cluster address (default: a local Ray on this machine)")
    p.add_argument("--model", default="resnet18")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--weights", help="a .pth or safetensors checkpoint every node can read")
    g.add_argument("--detgen", type=int, metavar="SEED",
                   help="tools/detgen.py's deterministic weights (tests, benchmarks)")
    p.add_argument("--layers", default="layer4", help="comma-separated layer names (default layer4)")
    p.add_argument("--resize", type=int, default=256)
    p.add_argument("--crop", type=int, default=224)
    p.add_argument("--actors", type=int, default=2)
    p.add_argument("--threads", type=int, default=1, help="strata threads per call = CPUs per actor")
    p.add_argument("--batch-size", type=int, default=16)
    args = p.parse_args()

    import ray
    paths = list_images(args.inputs)
    state_dict = None
    if args.detgen is not None:
        import strata
        sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools"))
        import detgen
        state_dict = detgen.fill_deterministic(getattr(strata.models, args.model)(init="none").state_dict(),
                                               args.detgen)
    ray.init(address=args.address, include_dashboard=False, log_to_driver=False)
    seconds = run(paths, args.out, model=args.model, weights=args.weights, state_dict=state_dict,
                  layers=args.layers.split(","), resize=args.resize, crop=args.crop, actors=args.actors,
                  threads=args.threads, batch_size=args.batch_size)
    print("%d images in %.2f s: %.1f images/s (%d actors x %d threads, batch %d)"
          % (len(paths), seconds, len(paths) / seconds, args.actors, args.threads, args.batch_size))


if __name__ == "__main__":
    main()
