#!/usr/bin/env python3
"""Checks strata's photo pipeline against torchvision's on real files, with a real checkpoint:
`strata classify --json` top-k vs `model(T(img)).softmax(1).topk(k)`, and `strata features
--out` (layer1, layer4) vs torchvision's IntermediateLayerGetter, both after
T.Compose([Resize(256), CenterCrop(224), ToTensor(), Normalize(ImageNet)]) on
PIL.Image.open(p).convert("RGB").

    /usr/bin/python3 tools/check_classify.py --strata build/apps/strata \\
        --weights ~/.cache/torch/hub/checkpoints/resnet18-f37072fd.pth photo1.jpg photo2.png ...
    /usr/bin/python3 tools/check_classify.py --strata build/apps/strata --detgen 2024 photos...
        (--detgen SEED: writes a torch.save checkpoint of resnet18 with detgen weights to a
        temporary folder and uses it: no download needed)

Prints per photo the top-k of both and the max |difference| of probabilities and features; exits
1 when a top-k differs or a feature exceeds 1e-4 * max|torch|.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections import OrderedDict

import numpy as np
import torch
import torchvision
import torchvision.transforms as T
from PIL import Image
from torchvision.models._utils import IntermediateLayerGetter

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from detgen import fill_deterministic  # noqa: E402
from st_io import load_safetensors  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--strata", required=True, help="the strata CLI")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--weights", help="a resnet18 .pth or .safetensors with an ImageNet fc")
    g.add_argument("--detgen", type=int, help="use detgen weights with this seed (torch.save'd to a temp file)")
    p.add_argument("--top", type=int, default=5)
    p.add_argument("photos", nargs="+")
    args = p.parse_args()
    torch.set_num_threads(2)
    tmp = tempfile.mkdtemp()
    model = torchvision.models.resnet18(weights=None)
    if args.detgen is not None:
        model.load_state_dict(fill_deterministic(model.state_dict(), args.detgen))
        weights = os.path.join(tmp, "resnet18_detgen%d.pth" % args.detgen)
        torch.save(model.state_dict(), weights)
    else:
        weights = args.weights
        model.load_state_dict(torch.load(weights, map_location="cpu"))
    model.eval()
    for m in model.modules():
        if isinstance(m, torch.nn.ReLU):
            m.inplace = False
    getter = IntermediateLayerGetter(model, OrderedDict([("layer1", "layer1"), ("layer4", "layer4")]))
    transform = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(),
                           T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    ok = True
    for photo in args.photos:
        x = transform(Image.open(photo).convert("RGB")).unsqueeze(0)
        with torch.no_grad():
            probs = model(x).softmax(dim=1)
            feats = getter(x)
        top = probs.topk(args.top, dim=1)
        ref = list(zip(top.indices[0].tolist(), top.values[0].tolist()))
        out = subprocess.run([args.strata, "classify", "--input", photo, "--weights", weights, "--json",
                              "--top", str(args.top)], capture_output=True, text=True, check=True)
        got = [(t["index"], t["probability"]) for t in json.loads(out.stdout)["results"][0]["top"]]
        same = [i for i, _ in got] == [i for i, _ in ref]
        dprob = max(abs(a[1] - b[1]) for a, b in zip(got, ref))
        fpath = os.path.join(tmp, "f.safetensors")
        subprocess.run([args.strata, "features", "--input", photo, "--weights", weights, "--layers", "layer1,layer4",
                        "--out", fpath], capture_output=True, text=True, check=True)
        sf, _ = load_safetensors(fpath)
        report = []
        for name, y in feats.items():
            d = float(np.abs(sf[name] - y.numpy()).max())
            rel = d / float(y.abs().max())
            report.append("%s max|diff| %.3g (%.3g of max|torch|)" % (name, d, rel))
            ok = ok and rel <= 1e-4
        ok = ok and same
        print("%s: top-%d %s (torchvision %s), max|prob diff| %.3g; %s" % (
            photo, args.top, "equal" if same else "DIFFERENT", [i for i, _ in ref], dprob, "; ".join(report)))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
