#!/usr/bin/env bash
# The full-size .pth check (not in CI: it needs torch, and the files are 45 MB each).
#   tools/check_pth_equivalence.sh [STRATA_CLI] [WORKDIR]     (default: build/apps/strata, a temp dir)
# 1. torch writes torchvision.models.resnet18()'s state_dict with torch.save (zip), with the legacy
#    writer, as a DataParallel checkpoint dict, and under a name without extension; if torchvision's
#    own resnet18-f37072fd.pth is in the torch hub cache, it is checked too;
# 2. tools/export_torchvision.py (torch, not strata) writes the same weights as safetensors;
# 3. strata computes layer1, layer3 and fc from each file (and from `strata convert`'s output);
#    every output file must be byte-identical to the one from safetensors;
# 4. the features are also compared with torchvision's IntermediateLayerGetter in Python
#    (max |strata - torch| <= 1e-4 * max |torch|, the project's tolerance).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
strata="$(realpath "${1:-build/apps/strata}")"
work="${2:-$(mktemp -d)}"
py="${PYTHON:-/usr/bin/python3}"
mkdir -p "$work"
cd "$work"

"$py" - <<'PY'
import os, shutil, torch, torchvision
torch.manual_seed(0)
model = torchvision.models.resnet18()
sd = model.state_dict()
torch.save(sd, "resnet18.pth")
torch.save(sd, "resnet18_legacy.pth", _use_new_zipfile_serialization=False)
torch.save({"epoch": 90, "arch": "resnet18", "state_dict": torch.nn.DataParallel(model).state_dict()},
           "resnet18_checkpoint.pth")
shutil.copy("resnet18.pth", "resnet18_no_extension")
hub = os.path.join(torch.hub.get_dir(), "checkpoints", "resnet18-f37072fd.pth")
if os.path.exists(hub):
    shutil.copy(hub, "resnet18-f37072fd.pth")
PY
"$py" "$here/export_torchvision.py" --model resnet18 --weights resnet18.pth --out resnet18.safetensors \
  --npy-input input.npy --shape 1,3,224,224 --input-seed 0 >/dev/null
"$strata" convert resnet18.pth converted.safetensors >/dev/null

layers="layer1:feat1,layer3:feat2,fc:logits"
run() { "$strata" features --weights "$1" --input input.npy --layers "$layers" --threads 2 --out "$2" >/dev/null; }
run resnet18.safetensors ref.safetensors
status=0
for w in resnet18.pth resnet18_legacy.pth resnet18_checkpoint.pth resnet18_no_extension converted.safetensors; do
  run "$w" "out_$w.safetensors"
  if cmp -s ref.safetensors "out_$w.safetensors"; then
    echo "OK    $w: features bit-identical to resnet18.safetensors ($(stat -c %s "$w") bytes)"
  else
    echo "FAIL  $w: features differ from resnet18.safetensors"; status=1
  fi
done

"$py" - "$here" <<'PY' || status=1
import sys, torch, torchvision
sys.path.insert(0, sys.argv[1])
from st_io import load_safetensors
from torchvision.models._utils import IntermediateLayerGetter
import numpy as np
model = torchvision.models.resnet18()
model.load_state_dict(torch.load("resnet18.pth"))
model.eval()
x = torch.from_numpy(np.load("input.npy"))
with torch.no_grad():
    got = IntermediateLayerGetter(model, {"layer1": "feat1", "layer3": "feat2"})(x)
    got["logits"] = model(x)
out, _ = load_safetensors("ref.safetensors")
worst = 0.0
for k, v in got.items():
    ref = v.numpy()
    worst = max(worst, float(np.abs(out[k] - ref).max() / np.abs(ref).max()))
print(("OK   " if worst <= 1e-4 else "FAIL ") + " vs torchvision: max |strata - torch| / max |torch| = %.2e" % worst)
sys.exit(0 if worst <= 1e-4 else 1)
PY

if [ -f resnet18-f37072fd.pth ]; then
  "$py" "$here/export_torchvision.py" --model resnet18 --weights resnet18-f37072fd.pth --out pretrained.safetensors >/dev/null
  run pretrained.safetensors ref_pretrained.safetensors
  run resnet18-f37072fd.pth out_pretrained.safetensors
  if cmp -s ref_pretrained.safetensors out_pretrained.safetensors; then
    echo "OK    resnet18-f37072fd.pth (torch hub cache): features bit-identical to its safetensors"
  else
    echo "FAIL  resnet18-f37072fd.pth"; status=1
  fi
else
  echo "note: no resnet18-f37072fd.pth in the torch hub cache; checked torch.save'd resnet18() weights only"
fi
echo "files in $work"
exit "$status"
