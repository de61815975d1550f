#!/usr/bin/env bash
# strata vs PyTorch on CPU, measured in one run; writes benchmarks/RESULTS.md and
# benchmarks/results.png (rendered by benchmarks/report.py from the raw JSON of this run).
#
#   benchmarks/run.sh            # full run (about 15-20 min on 2 cores; run it on a quiet machine)
#   benchmarks/run.sh --quick    # few iterations, one round: checks the script end to end
#   options: --threads "1 2"  --rounds R  --out-dir DIR (raw JSON; default $STRATA_BUILD_DIR/bench-run)
#
# What it does, in order:
#  1. builds strata in Release (scripts/setup.sh, into $STRATA_BUILD_DIR, default build-bench) with
#     the benchmark helpers, and creates .venv with torch, torchvision, numpy and matplotlib from
#     PyPI if they are missing ($TORCH_INDEX_URL, if set, is the pip index for torch/torchvision,
#     e.g. https://download.pytorch.org/whl/cpu for the CPU-only wheels);
#  2. writes ResNet-18 weights once (torchvision's init, torch.manual_seed(0)) as .pth for PyTorch
#     and, through tools/export_torchvision.py, as .safetensors for strata, plus a 1x3x224x224 input;
#  3. measures the fp32 FMA peak (benchmarks/fma_probe) at each thread count;
#  4. for R rounds, for each thread count, batch (1, 8, 32) and model (full ResNet-18; the seed
#     getter layer1+layer3), runs in turn: strata, PyTorch eager NCHW, eager channels_last, best
#     (jit trace + freeze + optimize_for_inference); every run is a fresh process with the same
#     constant input (0.5), threads, warm-up and iterations, and also reports its weight-load and
#     first-call times; results are medians of the round medians and minima of the round minima;
#  5. strata's per-child profile (`strata bench --profile`) at batch 1 for each thread count and at
#     batch 8 for the largest;
#  6. peak resident memory of each side as a process (/usr/bin/time -f %M) for `strata features`
#     and its twin benchmarks/torch_features.py, full model and seed getter, batch 1;
#  7. benchmarks/report.py writes RESULTS.md (machine, versions, command, date, tables, target
#     checks) and results.png.
#
# Both sides run with OMP_PROC_BIND=close and OMP_PLACES=cores (both use GNU OpenMP): threads are
# pinned to consecutive cores, because unpinned threads on this 2-vCPU VM sometimes share one
# vCPU and halve a number. Thread counts are passed explicitly to both
# (--threads; torch.set_num_threads).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$(pwd)
command_line="benchmarks/run.sh${*:+ $*}"

quick=0
threads_list="1 2"
rounds=""
out_dir=""
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1 ;;
    --threads) threads_list="$2"; shift ;;
    --rounds) rounds="$2"; shift ;;
    --out-dir) out_dir="$2"; shift ;;
    -h|--help) sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "run.sh: error: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done

# Iterations: (warm-up, timed) per batch size. Full: 30 timed calls at batch 1 in each round.
if [ "$quick" = 1 ]; then
  rounds=${rounds:-1}
  warm_1=1 iters_1=5   warm_8=1 iters_8=2   warm_32=1 iters_32=1
  rss_reps=1
else
  rounds=${rounds:-3}
  warm_1=3 iters_1=30  warm_8=2 iters_8=8   warm_32=1 iters_32=3
  rss_reps=3
fi
batches="1 8 32"
seed_layers="layer1:feat1,layer3:feat2"
max_threads=$(for t in $threads_list; do echo "$t"; done | sort -n | tail -1)

export OMP_PROC_BIND=close OMP_PLACES=cores
start_s=$(date +%s)
loadavg_start=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || true)
log() { echo "run.sh [$(( $(date +%s) - start_s ))s] $*" >&2; }

# ---- 1. build and Python environment ---------------------------------------------------------
build_dir="${STRATA_BUILD_DIR:-build-bench}"
log "building strata (Release) in $build_dir"
STRATA_BUILD_DIR="$build_dir" \
  STRATA_CMAKE_ARGS="-DSTRATA_BUILD_TESTS=OFF -DSTRATA_BUILD_BENCHMARKS=ON ${STRATA_CMAKE_ARGS:-}" \
  scripts/setup.sh >/dev/null
strata="$root/$build_dir/apps/strata"
probe="$root/$build_dir/benchmarks/fma_probe"

apt_missing=()
[ -x /usr/bin/time ] || apt_missing+=(time)
[ -x .venv/bin/python ] || python3 -c "import ensurepip, venv" 2>/dev/null || apt_missing+=(python3-venv)
if [ ${#apt_missing[@]} -gt 0 ]; then
  log "installing ${apt_missing[*]}"
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${apt_missing[@]}" >/dev/null
fi

py="$root/.venv/bin/python"
if ! "$py" -c "import torch, torchvision, numpy, matplotlib" 2>/dev/null; then
  [ -x "$py" ] || { log "creating .venv"; python3 -m venv .venv; }
  log "installing torch, torchvision, numpy, matplotlib into .venv (PyPI)"
  "$py" -m pip install -q --upgrade pip
  if ! "$py" -c "import torch, torchvision" 2>/dev/null; then
    "$py" -m pip install -q ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} torch torchvision
  fi
  "$py" -m pip install -q numpy matplotlib
fi

out_dir="${out_dir:-$build_dir/bench-run}"
mkdir -p "$out_dir"
out_dir=$(cd "$out_dir" && pwd)
rm -f "$out_dir"/timing.jsonl "$out_dir"/probe.jsonl "$out_dir"/profile.jsonl "$out_dir"/rss.jsonl

# ---- 2. weights and input --------------------------------------------------------------------
pth="$out_dir/resnet18.pth" st="$out_dir/resnet18.safetensors" npy="$out_dir/x.npy"
if [ ! -s "$pth" ] || [ ! -s "$st" ] || [ ! -s "$npy" ]; then
  log "writing weights (torchvision init, seed 0) and input"
  "$py" -c "
import sys, torch, torchvision
torch.manual_seed(0)
torch.save(torchvision.models.resnet18().state_dict(), sys.argv[1])" "$pth"
  "$py" tools/export_torchvision.py --model resnet18 --weights "$pth" --out "$st" \
    --npy-input "$npy" --shape 1,3,224,224 --input-seed 0 >/dev/null
fi

# ---- 3. FMA peak -----------------------------------------------------------------------------
for t in $threads_list; do
  "$probe" --threads "$t" >>"$out_dir/probe.jsonl"
done
log "fma peak: $(tr '\n' ' ' <"$out_dir/probe.jsonl")"

# ---- 4. timing, the sides alternating --------------------------------------------------------
# Appends {"round", "side", "path", "result" | "error"} to timing.jsonl.
record() {  # round side path command...
  local round=$1 side=$2 path=$3 out
  shift 3
  if out=$("$@" 2>"$out_dir/last_stderr.txt"); then
    printf '{"round": %d, "side": "%s", "path": "%s", "result": %s}\n' "$round" "$side" "$path" \
      "$(echo "$out" | tail -1)" >>"$out_dir/timing.jsonl"
  else
    local err
    err=$(tail -3 "$out_dir/last_stderr.txt" | tr '\n"\\' '   ')
    log "FAILED: $side $path: $err"
    printf '{"round": %d, "side": "%s", "path": "%s", "error": "%s"}\n' "$round" "$side" "$path" \
      "$err" >>"$out_dir/timing.jsonl"
  fi
}
for round in $(seq 1 "$rounds"); do
  for t in $threads_list; do
    for b in $batches; do
      w_var=warm_$b it_var=iters_$b
      w=${!w_var} it=${!it_var}
      for layers in "" "$seed_layers"; do
        log "round $round/$rounds: threads $t, batch $b, ${layers:-full model}"
        layer_args=()
        [ -n "$layers" ] && layer_args=(--layers "$layers")
        common=(--batch "$b" --size 224 --threads "$t" --warmup "$w" --iters "$it" "${layer_args[@]}")
        record "$round" strata strata "$strata" bench --model resnet18 --weights "$st" "${common[@]}"
        for path in eager channels_last best; do
          record "$round" pytorch "$path" "$py" benchmarks/torch_bench.py --model resnet18 --weights "$pth" \
            --path "$path" "${common[@]}"
        done
      done
    done
  done
done

# ---- 5. strata's per-child profile -----------------------------------------------------------
peak_of() { "$py" -c "
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r['threads'] == int(sys.argv[2]): print(r['gflops'])" "$out_dir/probe.jsonl" "$1"; }
profile() {  # threads batch warmup iters
  log "profile: threads $1, batch $2"
  "$strata" bench --model resnet18 --weights "$st" --batch "$2" --size 224 --threads "$1" --warmup "$3" \
    --iters "$4" --profile --peak-gflops "$(peak_of "$1")" 2>/dev/null >>"$out_dir/profile.jsonl"
}
for t in $threads_list; do profile "$t" 1 "$warm_1" "$iters_1"; done
profile "$max_threads" 8 "$warm_8" "$iters_8"

# ---- 6. peak resident memory of each side as a process ---------------------------------------
rss() {  # side layers command...
  local side=$1 layers=$2 kb
  shift 2
  kb=null
  if /usr/bin/time -f '%M' -o "$out_dir/time.txt" "$@" >/dev/null 2>"$out_dir/last_stderr.txt"; then
    kb=$(tail -1 "$out_dir/time.txt")
  else
    log "FAILED: peak memory of $side ($layers): $(tail -1 "$out_dir/last_stderr.txt")"
  fi
  printf '{"side": "%s", "layers": "%s", "threads": %d, "peak_rss_kb": %s}\n' "$side" "$layers" \
    "$max_threads" "$kb" >>"$out_dir/rss.jsonl"
}
log "peak resident memory ($rss_reps reps each)"
for rep in $(seq 1 "$rss_reps"); do
  for layers in fc:logits "$seed_layers"; do
    rss strata "$layers" "$strata" features --model resnet18 --weights "$st" --input "$npy" \
      --layers "$layers" --threads "$max_threads"
    # the same with Winograd's transformed weights kept (what a long-running process holds)
    rss strata-fast "$layers" "$strata" features --model resnet18 --weights "$st" --input "$npy" \
      --layers "$layers" --threads "$max_threads" --packing fast
    rss pytorch "$layers" "$py" benchmarks/torch_features.py --model resnet18 --weights "$pth" \
      --input "$npy" --layers "$layers" --threads "$max_threads"
  done
  rss pytorch "import only" "$py" -c "import torch, torchvision"  # the interpreter and libraries alone
done

# ---- 7. report --------------------------------------------------------------------------------
elapsed=$(( $(date +%s) - start_s ))
log "writing benchmarks/RESULTS.md and benchmarks/results.png"
"$py" benchmarks/report.py --dir "$out_dir" --command "$command_line" --quick "$quick" \
  --rounds "$rounds" --build-dir "$build_dir" --elapsed-s "$elapsed" \
  --iters "1:$warm_1:$iters_1,8:$warm_8:$iters_8,32:$warm_32:$iters_32" --rss-reps "$rss_reps" \
  --loadavg-start "$loadavg_start" --md benchmarks/RESULTS.md --png benchmarks/results.png
log "done in $(( $(date +%s) - start_s ))s"
