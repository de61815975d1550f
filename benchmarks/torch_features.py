#!/usr/bin/env python3
"""PyTorch twin of `strata features`, for process-level measurements (peak resident memory under
/usr/bin/time): load a torch.save(state_dict), build the model, run one forward on an .npy input,
print the returned names and shapes as `strata features` does.

    python3 benchmarks/torch_features.py --model resnet18 --weights W.pth --input x.npy --threads 2 \
        [--layers layer1:feat1,layer3:feat2]

Without --layers, or when the last requested layer is `fc`, the full model runs and its logits
are returned (torchvision's IntermediateLayerGetter cannot stop at fc: it skips the flatten).
"""
import argparse

import numpy as np
import torch
import torchvision
from torchvision.models._utils import IntermediateLayerGetter


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="resnet18")
    ap.add_argument("--weights", required=True)
    ap.add_argument("--input", required=True, help="float32 C-order NCHW .npy")
    ap.add_argument("--layers", default="")
    ap.add_argument("--threads", type=int, required=True)
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    model = getattr(torchvision.models, a.model)()
    model.load_state_dict(torch.load(a.weights, map_location="cpu"))
    model.eval()
    pairs = [p.split(":") if ":" in p else (p, p) for p in a.layers.split(",")] if a.layers else []
    x = torch.from_numpy(np.load(a.input))
    with torch.inference_mode():
        if not pairs or pairs[-1][0] == "fc":
            name = pairs[-1][1] if pairs else "out"
            out = {name: model(x)}
        else:
            out = IntermediateLayerGetter(model, dict(pairs))(x)
    print([(k, list(v.shape)) for k, v in out.items()])


if __name__ == "__main__":
    main()
