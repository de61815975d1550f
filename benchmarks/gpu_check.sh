#!/usr/bin/env bash
# strata's GPU check: one script for the GPU machine (one H200; CUDA 13, its own PyTorch),
# finishing in under 5 minutes, writing everything under $OUT:
#   env.txt       GPU, driver, nvcc, torch, where cuDNN and cuBLASLt were found
#   tests.log     the GPU tests (strata_tests "[cuda]": CUDA vs the reference kernels, vs
#                 torchvision's fixtures, vs the CPU backend, CUDA graphs, TF32)
#   parity.json   strata CUDA vs PyTorch CUDA (fp32, TF32 off), ResNet-18 with the same weights,
#                 several getter configurations, batch 1, 8 and 64, odd input sizes
#   bench.jsonl   strata (eager, CUDA graph; fp32 TF32 off and TF32 on) and PyTorch (eager NCHW,
#                 channels_last, CUDA graphs; same precisions) at batch 1, 32 and 256
#   summary.md    the results table and the issue's targets, met or not
#   run.log       this script's whole output
#
# 1. Here, on the machine without a GPU (has the CUDA toolkit, cuDNN and the Debian packages):
#        benchmarks/gpu_check.sh --prepare
#    builds strata with -DSTRATA_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 (in $STRATA_GPU_BUILD,
#    default /tmp/strata-gpu-build; host code for -march=x86-64-v4, AVX-512 without this
#    machine's newer extensions) and fills .gpu_carry/ (ignored by git, about 20 MB): the
#    `strata` and `strata_tests` binaries, libgomp, and the headers and CMake files of Eigen,
#    nlohmann-json, CLI11 and Catch2, so that the device can rebuild if the binaries don't run.
# 2. On the device, from the repo root, through the session's device tool:
#        run(command="bash benchmarks/gpu_check.sh", carry=[".gpu_carry"], timeout_s=480)
#    It uses the carried binaries if they start there, else builds (cmake + nvcc, 16 cores).
#
# cuDNN on the device: the CUDA image may not have cuDNN in the system paths; PyTorch's pip
# wheel nvidia-cudnn-cu13 does. The script looks in ldconfig, the toolkit and that wheel, puts
# the folder on LD_LIBRARY_PATH, records which in env.txt, and stops with a clear message when
# there is none (cuDNN is 1 GB: too big to carry).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo="$(pwd)"
carry="$repo/.gpu_carry"

# ---- --prepare: here, on the build machine ----------------------------------------------
if [ "${1:-}" = "--prepare" ]; then
  set -e
  build="${STRATA_GPU_BUILD:-/tmp/strata-gpu-build}"
  cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DSTRATA_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
    -DSTRATA_NATIVE=OFF -DCMAKE_CXX_FLAGS="-march=x86-64-v4" >/dev/null
  cmake --build "$build" -j"${STRATA_JOBS:-2}" --target strata_cli strata_tests
  rm -rf "$carry"
  mkdir -p "$carry/bin" "$carry/lib" "$carry/deps/include" "$carry/deps/share/cmake" "$carry/deps/lib/cmake"
  cp "$build/apps/strata" "$build/tests/strata_tests" "$carry/bin/"
  cp -L "$(gcc -print-file-name=libgomp.so.1)" "$carry/lib/"
  cp -r /usr/include/eigen3 /usr/include/nlohmann /usr/include/CLI /usr/include/catch2 "$carry/deps/include/"
  mkdir -p "$carry/deps/share/eigen3"
  cp -r /usr/share/eigen3/cmake "$carry/deps/share/eigen3/"
  cp -r /usr/share/cmake/nlohmann_json /usr/share/cmake/CLI11 "$carry/deps/share/cmake/"
  cp -r /usr/lib/cmake/Catch2 "$carry/deps/lib/cmake/"
  cp /usr/lib/libCatch2WithMain.a "$carry/deps/lib/"  # Catch2's CMake files insist on it
  git rev-parse HEAD > "$carry/commit" 2>/dev/null || true
  exclude="$(git rev-parse --git-common-dir)/info/exclude"
  mkdir -p "$(dirname "$exclude")"
  grep -qx '/.gpu_carry/' "$exclude" 2>/dev/null || echo '/.gpu_carry/' >> "$exclude"
  du -sh "$carry"
  echo "ready: run(command=\"bash benchmarks/gpu_check.sh\", carry=[\".gpu_carry\"], timeout_s=480)"
  exit 0
fi

# ---- on the device ------------------------------------------------------------------------
OUT="${OUT:-/tmp/strata-gpu-out}"
mkdir -p "$OUT"
exec > >(tee "$OUT/run.log") 2>&1
start=$(date +%s)
step() { echo; echo "== [$(( $(date +%s) - start ))s] $*"; }
work="$(mktemp -d)"
status=0

step "environment"
{
  echo "date: $(date -u +%FT%TZ)"
  echo "commit: $(git rev-parse HEAD 2>/dev/null || cat "$carry/commit" 2>/dev/null || echo unknown)"
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv 2>&1
  nvcc --version 2>&1 | tail -2
  python3 -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__, 'cuda', torch.version.cuda, 'cudnn', torch.backends.cudnn.version())" 2>&1
  echo "cpu: $(nproc) cores"
} | tee "$OUT/env.txt"

# cuDNN and cuBLASLt: system paths, the toolkit, then PyTorch's wheels.
find_lib() {  # find_lib libcudnn.so.9
  local name="$1" dir
  if ldconfig -p 2>/dev/null | grep -q "$name "; then ldconfig -p | grep "$name " | head -1 | sed 's/.*=> //;s|/[^/]*$||'; return; fi
  for dir in /usr/local/cuda/lib64 /usr/local/cuda/lib /usr/local/cuda/targets/x86_64-linux/lib; do
    [ -e "$dir/$name" ] && { echo "$dir"; return; }
  done
  python3 - "$name" <<'EOF' 2>/dev/null
import glob, os, site, sys
for base in site.getsitepackages():
    hits = sorted(glob.glob(os.path.join(base, "nvidia", "**", sys.argv[1]), recursive=True))
    if hits:
        print(os.path.dirname(hits[0]))
        break
EOF
}
libdirs=""
for lib in libcudnn.so.9 libcublasLt.so.13; do
  dir="$(find_lib "$lib")"
  echo "$lib: ${dir:-NOT FOUND}" | tee -a "$OUT/env.txt"
  if [ -z "$dir" ]; then
    echo "error: $lib is not on this machine (neither in ldconfig, /usr/local/cuda nor PyTorch's nvidia wheels);" \
         "strata's CUDA backend links it. Install it or carry it, then rerun." | tee -a "$OUT/env.txt"
    exit 3
  fi
  libdirs="$libdirs:$dir"
done
export LD_LIBRARY_PATH="${libdirs#:}:$carry/lib:${LD_LIBRARY_PATH:-}"

step "strata binaries"
bin="$carry/bin"
if ! { [ -x "$bin/strata" ] && "$bin/strata" --help >/dev/null 2>&1 && "$bin/strata_tests" --help >/dev/null 2>&1; }; then
  echo "carried binaries missing or not runnable here: $( [ -x "$bin/strata" ] && "$bin/strata" --help 2>&1 | head -2)"
  echo "building on this machine"
  gen=""; command -v ninja >/dev/null && gen="-G Ninja"
  cmake -S . -B "$work/build" $gen -DCMAKE_BUILD_TYPE=Release -DSTRATA_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
    -DCMAKE_PREFIX_PATH="$carry/deps" -DCUDNN_ROOT="$(find_lib libcudnn.so.9)/.." 2>&1 | tail -5
  if ! cmake --build "$work/build" -j"$(nproc)" --target strata_cli strata_tests 2>&1 | tail -20; then
    echo "error: the build failed"; exit 4
  fi
  bin="$work/build/bin-links"; mkdir -p "$bin"
  ln -sf "$work/build/apps/strata" "$bin/strata"; ln -sf "$work/build/tests/strata_tests" "$bin/strata_tests"
fi
"$bin/strata" --help | head -1

step "GPU tests: strata_tests [cuda]"
export STRATA_FIXTURES_DIR="$repo/tests/fixtures"
if ! timeout 150 "$bin/strata_tests" "[cuda]" --durations yes 2>&1 | tee "$OUT/tests.log" | tail -15; then
  echo "GPU TESTS FAILED (see tests.log)"; status=1
fi
grep -q "skipped:" "$OUT/tests.log" && { echo "GPU TESTS SKIPPED: no device seen"; status=1; }

step "parity vs PyTorch CUDA (fp32, TF32 off)"
if ! timeout 200 python3 benchmarks/gpu_torch_bench.py parity --strata "$bin/strata" --workdir "$work/parity" \
     --out "$OUT/parity.json" 2>&1 | tail -14; then
  echo "PARITY FAILED (see parity.json)"; status=1
fi

step "benchmarks (batch 1, 32, 256)"
bench="$OUT/bench.jsonl"; : > "$bench"
for precision in fp32 tf32; do
  tf=""; [ "$precision" = tf32 ] && tf="--tf32"
  for batch in 1 32 256; do
    if [ "$batch" -le 32 ]; then wi="--warmup 10 --iters 50"; else wi="--warmup 5 --iters 20"; fi
    layouts="auto"; [ "$batch" = 256 ] && layouts="nchw nhwc"
    for layout in $layouts; do
      for mode in eager graph; do
        g=""; [ "$mode" = graph ] && g="--graph"
        line=$(timeout 60 "$bin/strata" bench --device cuda --model resnet18 --batch $batch --size 224 $wi $tf $g \
               --layout $layout 2>"$work/err") || { echo "strata bench failed: $(tail -2 "$work/err")"; status=1; continue; }
        line=$(python3 -c "import json,sys; d=json.loads(sys.argv[1]); d.update(side='strata', path='$mode', \
precision='$precision', layout='$layout', note=open('$work/err').read().strip()); print(json.dumps(d))" "$line")
        echo "$line" | tee -a "$bench"
      done
    done
  done
  timeout 150 python3 benchmarks/gpu_torch_bench.py bench --precision $precision --batches 1,32,256 --out "$bench" \
    >/dev/null 2>"$work/torch_err" || { echo "pytorch bench failed: $(tail -3 "$work/torch_err")"; status=1; }
done

step "summary"
python3 - "$bench" "$OUT/parity.json" "$OUT/tests.log" > "$OUT/summary.md" <<'EOF'
import json, os, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def best(side, precision, batch, paths):
    c = [r for r in rows if r["side"] == side and r["precision"] == precision and r["batch"] == batch and r["path"] in paths]
    return min(c, key=lambda r: r["median_ms"]) if c else None
out = ["# strata vs PyTorch on %s" % next((r.get("device") for r in rows if r.get("device")), "the GPU"), "",
       "ResNet-18, 224x224, median ms per forward call (input already on the device; synchronized after each call).", "",
       "| precision | batch | strata eager | strata graph | torch eager NCHW | torch eager channels_last | torch graph NCHW | torch graph channels_last |",
       "|---|---|---|---|---|---|---|---|"]
targets = []
for precision in ("fp32", "tf32"):
    for batch in (1, 32, 256):
        s_e, s_g = best("strata", precision, batch, ["eager"]), best("strata", precision, batch, ["graph"])
        t = {p: best("pytorch", precision, batch, [p]) for p in ("eager", "eager_channels_last", "graph", "graph_channels_last")}
        f = lambda r: ("%.3f" % r["median_ms"] + (" (%s)" % r["layout"] if r and r.get("layout") not in (None, "auto") else "")) if r else "-"
        out.append("| %s | %d | %s | %s | %s | %s | %s | %s |" % (precision, batch, f(s_e), f(s_g), f(t["eager"]),
                   f(t["eager_channels_last"]), f(t["graph"]), f(t["graph_channels_last"])))
        if batch == 256:
            mine = best("strata", precision, 256, ["eager", "graph"])
            theirs = best("pytorch", precision, 256, ["eager", "eager_channels_last"])
            if mine and theirs:
                r = mine["images_per_s"] / theirs["images_per_s"]
                targets.append("- %s batch 256 throughput: strata %.0f img/s vs PyTorch best eager %.0f img/s = %.2fx (target >= 1.0x): %s"
                               % (precision, mine["images_per_s"], theirs["images_per_s"], r, "MET" if r >= 1.0 else "NOT MET"))
        if batch == 1:
            te, tg = t["eager"], best("pytorch", precision, 1, ["graph", "graph_channels_last"])
            if s_e and te:
                r = s_e["median_ms"] / te["median_ms"]
                targets.append("- %s batch 1 latency, strata eager / PyTorch eager NCHW = %.2f (target <= 0.5): %s" % (precision, r, "MET" if r <= 0.5 else "NOT MET"))
            if s_g and tg:
                r = s_g["median_ms"] / tg["median_ms"]
                targets.append("- %s batch 1 latency, strata graph / PyTorch best graph = %.2f (target <= 1.0): %s" % (precision, r, "MET" if r <= 1.0 else "NOT MET"))
out += ["", "## Targets", ""] + targets
if os.path.exists(sys.argv[2]):
    p = json.load(open(sys.argv[2]))
    worst = max((t.get("rel", 1e9) for c in p["cases"] for t in c.get("tensors", {}).values()), default=None)
    out += ["", "## Parity vs PyTorch CUDA (fp32, TF32 off)", "",
            "- %s: %d cases (batch 1, 8, 64; odd sizes; NCHW and NHWC), worst max|diff|/max|torch| = %s (target <= 1e-4); torch %s, cuDNN %s"
            % ("OK" if p["ok"] else "FAILED", len(p["cases"]), "%.2e" % worst if worst is not None else "-", p["torch"], p["cudnn"])]
tests = open(sys.argv[3]).read() if os.path.exists(sys.argv[3]) else ""
last = [l for l in tests.splitlines() if "test cases" in l or "All tests passed" in l]
out += ["", "## GPU tests", "", "- " + (last[-1].strip() if last else "no result")]
notes = sorted({r["note"].replace("\n", " ") for r in rows if r["side"] == "strata" and r.get("note")})
torch_info = next((r for r in rows if r["side"] == "pytorch"), None)
out += ["", "## Setup", ""] + ["- strata: " + n for n in notes[:4]]
if torch_info:
    out.append("- PyTorch %s, cuDNN %s, cudnn.benchmark=True, TF32 pinned per row" % (torch_info["torch"], torch_info["cudnn"]))
out.append("- command: bash benchmarks/gpu_check.sh (exact flags in bench.jsonl)")
print("\n".join(out))
EOF
cat "$OUT/summary.md"
step "done (status $status)"
rm -rf "$work"
exit $status
