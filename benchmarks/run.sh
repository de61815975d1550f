#!/usr/bin/env bash
# strata against the CPU engines a user would pick instead (PyTorch, ONNX Runtime, OpenVINO, ncnn),
# measured in one run; writes benchmarks/RESULTS.md and benchmarks/results.png (rendered by
# benchmarks/report.py from the raw JSON of this run).
#
#   benchmarks/run.sh            # full run (about 65 min on 2 AVX2 cores; run it on a quiet machine)
#   benchmarks/run.sh --quick    # batch 1, 5 calls, one round (about 5 min): checks the script end to
#                                # end; its report goes to the --out-dir, not to benchmarks/
#   options: --threads "1 2"  --batches "1 8 32"  --rounds R  --no-peers (strata vs PyTorch only)
#            --out-dir DIR (raw JSON and exported models; default $STRATA_BUILD_DIR/bench-run)
#
# What it does, in order:
#  1. builds strata in Release (scripts/setup.sh, into $STRATA_BUILD_DIR, default build-bench) with
#     the benchmark helpers, and installs benchmarks/requirements.txt (torch, torchvision, onnx,
#     onnxruntime, openvino, ncnn, pnnx, numpy, matplotlib; pinned, from PyPI) into .venv when an
#     import fails ($TORCH_INDEX_URL, if set, is the pip index for torch/torchvision, e.g.
#     https://download.pytorch.org/whl/cpu for the CPU-only wheels);
#  2. writes ResNet-18 weights once (torchvision's init, torch.manual_seed(0)) as .pth for PyTorch
#     and, through tools/export_torchvision.py, as .safetensors for strata, plus a 1x3x224x224 input;
#     benchmarks/peers.py exports the same module, full and as the seed getter (layer1 + layer3),
#     to ONNX (ONNX Runtime), OpenVINO IR (from the ONNX file, fp32 weights) and ncnn (TorchScript
#     through pnnx);
#  3. checks every engine's outputs against PyTorch fp32 eager on a 2x3x224x224 random input
#     (relative error = max |diff| / max |torch|); an fp32 engine off by more than 1e-4, or one that
#     cannot run, is not timed; OpenVINO at its default precision (bf16 on CPUs with native bf16)
#     is timed and labelled with its error;
#  4. measures the fp32 FMA peak (benchmarks/fma_probe) at each thread count;
#  5. for R rounds, for each thread count, batch (1, 8, 32) and model (full ResNet-18; the seed
#     getter layer1+layer3), runs in turn: strata, PyTorch eager NCHW, eager channels_last, best
#     (jit trace + freeze + optimize_for_inference), ONNX Runtime, OpenVINO f32, OpenVINO default
#     precision, ncnn fp32; every run is a fresh process with the same constant input (0.5),
#     threads, warm-up and iterations, and also reports its load and first-call times; results
#     are medians of the round medians and minima of the round minima;
#  6. strata's per-child profile (`strata bench --profile`) at batch 1 for each thread count and at
#     batch 8 for the largest;
#  7. peak resident memory of each side as a process (/usr/bin/time -f %M) for `strata features`
#     and its twin benchmarks/torch_features.py, full model and seed getter, batch 1;
#  8. benchmarks/report.py writes RESULTS.md (machine with lscpu's model name and flags, versions,
#     precision and check error per engine, command, date, tables, target checks) and results.png.
#
# Threads are pinned the same way for every engine: each process runs under `taskset` on the same
# T logical CPUs, one per physical core (the first T cores of `lscpu -p`), is told T threads
# (strata --threads, torch.set_num_threads, ONNX Runtime intra_op_num_threads, OpenVINO
# INFERENCE_NUM_THREADS with one stream, ncnn num_threads), and OMP_PROC_BIND=close
# OMP_PLACES=cores binds the OpenMP engines' threads (strata, PyTorch and ncnn use GNU OpenMP;
# ONNX Runtime has its own pool and OpenVINO uses TBB, both confined by taskset): unpinned threads
# on a 2-vCPU VM sometimes share one vCPU and halve a number.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$(pwd)
command_line="benchmarks/run.sh${*:+ $*}"

quick=0
peers=1
threads_list="1 2"
batches=""
rounds=""
out_dir=""
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1 ;;
    --threads) threads_list="$2"; shift ;;
    --batches) batches="$2"; shift ;;
    --no-peers) peers=0 ;;
    --rounds) rounds="$2"; shift ;;
    --out-dir) out_dir="$2"; shift ;;
    -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "run.sh: error: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done

# Iterations: (warm-up, timed) per batch size and round. Full: 30 timed calls at batch 1 in each
# round, 10 at batch 8 and 32, so every median is over at least 30 calls in 3 rounds.
if [ "$quick" = 1 ]; then
  rounds=${rounds:-1}
  batches=${batches:-1}
  warm_1=1 iters_1=5   warm_8=1 iters_8=2   warm_32=1 iters_32=1
  rss_reps=1
else
  rounds=${rounds:-3}
  batches=${batches:-1 8 32}
  warm_1=3 iters_1=30  warm_8=2 iters_8=10  warm_32=1 iters_32=10
  rss_reps=3
fi
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
imports="import torch, torchvision, numpy, matplotlib"
[ "$peers" = 1 ] && imports+=", onnx, onnxruntime, openvino, ncnn, pnnx"
if ! "$py" -c "$imports" 2>/dev/null; then
  [ -x "$py" ] || { log "creating .venv"; python3 -m venv .venv; }
  log "installing benchmarks/requirements.txt into .venv (PyPI; torch with its CUDA libraries is large)"
  "$py" -m pip install -q --upgrade pip
  if [ -n "${TORCH_INDEX_URL:-}" ] && ! "$py" -c "import torch, torchvision" 2>/dev/null; then
    mapfile -t torch_pins < <(grep -E '^torch(vision)?==' benchmarks/requirements.txt)
    "$py" -m pip install -q --index-url "$TORCH_INDEX_URL" "${torch_pins[@]}"
  fi
  "$py" -m pip install -q -r benchmarks/requirements.txt
fi

# taskset CPU list for T threads: the first logical CPU of each of the first T physical cores.
cpus_for() {
  lscpu -p=CPU,CORE,SOCKET | grep -v '^#' | sort -t, -k3,3n -k2,2n -k1,1n | awk -F, -v t="$1" '
    !seen[$3 "," $2]++ { cpus = cpus (n ? "," : "") $1; if (++n == t) exit }
    END { print cpus }'
}
for t in $threads_list; do
  cpus=$(cpus_for "$t")
  [ "$(echo "$cpus" | tr ',' '\n' | wc -l)" -eq "$t" ] || {
    echo "run.sh: error: $t threads asked, but lscpu lists fewer physical cores ($cpus)" >&2; exit 2; }
done
pin() {  # threads command...: the command under taskset on that many cores
  local t=$1
  shift
  taskset -c "$(cpus_for "$t")" "$@"
}

out_dir="${out_dir:-$build_dir/bench-run}"
mkdir -p "$out_dir"
out_dir=$(cd "$out_dir" && pwd)
rm -f "$out_dir"/timing.jsonl "$out_dir"/probe.jsonl "$out_dir"/profile.jsonl "$out_dir"/rss.jsonl \
  "$out_dir"/checks.jsonl "$out_dir"/versions.json "$out_dir"/lscpu.txt
lscpu >"$out_dir/lscpu.txt"

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

# ---- 3. the peers' models, and every engine checked against PyTorch fp32 --------------------
peer_dir="$out_dir/peers"
peer_engines=()
"$py" benchmarks/peers.py versions >"$out_dir/versions.json"
if [ "$peers" = 1 ]; then
  log "exporting ONNX, OpenVINO IR and ncnn (pnnx) models"
  "$py" tools/export_torchvision.py --npy-input "$out_dir/check_input.npy" --shape 2,3,224,224 \
    --input-seed 1 >/dev/null
  rm -rf "$peer_dir"
  "$py" benchmarks/peers.py export --model resnet18 --weights "$pth" --check-input "$out_dir/check_input.npy" \
    --dir "$peer_dir" 2> >(sed 's/^/  /' >&2)
fi
check() {  # engine [peers.py check options]: appends its line to checks.jsonl; fails when it does
  local engine=$1 out rc=0
  shift
  out=$(pin "$max_threads" "$py" benchmarks/peers.py check --engine "$engine" --dir "$peer_dir" \
    --threads "$max_threads" "$@" 2>"$out_dir/last_stderr.txt") || rc=$?
  if [ -z "$out" ]; then
    out=$(printf '{"engine": "%s", "ok": false, "error": "%s"}' "$engine" \
      "$(tail -3 "$out_dir/last_stderr.txt" | tr '\n"\134' '   ')")
  fi
  echo "$out" >>"$out_dir/checks.jsonl"
  log "check $engine: $("$py" -c '
import json, sys
r = json.loads(sys.argv[1])
print("%s, precision %s, max relative error %s" % ("ok" if r["ok"] else "FAILED", r.get("precision", "?"),
      "%.2e" % r["max_rel_err"] if isinstance(r.get("max_rel_err"), float) else r.get("error", "?")))' "$out")"
  return "$rc"
}
if [ "$peers" = 1 ]; then
  log "checking every engine against PyTorch fp32 eager ($max_threads threads)"
  for layers in fc:logits "$seed_layers"; do
    tag=full
    [ "$layers" = "$seed_layers" ] && tag=getter
    pin "$max_threads" "$strata" features --model resnet18 --weights "$st" --input "$out_dir/check_input.npy" \
      --layers "$layers" --threads "$max_threads" --out "$peer_dir/strata_$tag.safetensors" >/dev/null ||
      log "strata features failed for the check ($layers)"
  done
  check strata --outputs "full=$peer_dir/strata_full.safetensors,getter=$peer_dir/strata_getter.safetensors" || true
  for path in eager channels_last best; do check "torch-$path" || true; done
  for engine in ort ov-f32 ov-default ncnn; do
    if check "$engine"; then
      peer_engines+=("$engine")
    else
      log "$engine is not timed: its check failed (see checks.jsonl)"
    fi
  done
fi

# ---- 4. FMA peak -----------------------------------------------------------------------------
for t in $threads_list; do
  pin "$t" "$probe" --threads "$t" >>"$out_dir/probe.jsonl"
done
log "fma peak: $(tr '\n' ' ' <"$out_dir/probe.jsonl")"

# ---- 5. timing, the engines alternating ------------------------------------------------------
# Appends {"round", "side", "path", "result" | "error"} to timing.jsonl.
record() {  # round side path threads command...
  local round=$1 side=$2 path=$3 t=$4 out
  shift 4
  if out=$(pin "$t" "$@" 2>"$out_dir/last_stderr.txt"); then
    printf '{"round": %d, "side": "%s", "path": "%s", "result": %s}\n' "$round" "$side" "$path" \
      "$(echo "$out" | tail -1)" >>"$out_dir/timing.jsonl"
  else
    local err
    err=$(tail -3 "$out_dir/last_stderr.txt" | tr '\n"\134' '   ')
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
        record "$round" strata strata "$t" "$strata" bench --model resnet18 --weights "$st" "${common[@]}"
        for path in eager channels_last best; do
          record "$round" pytorch "$path" "$t" "$py" benchmarks/torch_bench.py --model resnet18 --weights "$pth" \
            --path "$path" "${common[@]}"
        done
        for engine in "${peer_engines[@]}"; do
          record "$round" "$engine" "$engine" "$t" "$py" benchmarks/peers.py bench --engine "$engine" \
            --dir "$peer_dir" "${common[@]}"
        done
      done
    done
  done
done

# ---- 6. strata's per-child profile -----------------------------------------------------------
peak_of() { "$py" -c "
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r['threads'] == int(sys.argv[2]): print(r['gflops'])" "$out_dir/probe.jsonl" "$1"; }
profile() {  # threads batch warmup iters
  log "profile: threads $1, batch $2"
  pin "$1" "$strata" bench --model resnet18 --weights "$st" --batch "$2" --size 224 --threads "$1" --warmup "$3" \
    --iters "$4" --profile --peak-gflops "$(peak_of "$1")" 2>/dev/null >>"$out_dir/profile.jsonl"
}
for t in $threads_list; do profile "$t" 1 "$warm_1" "$iters_1"; done
case " $batches " in *" 8 "*) profile "$max_threads" 8 "$warm_8" "$iters_8" ;; esac

# ---- 7. peak resident memory of each side as a process ---------------------------------------
rss() {  # side layers command...
  local side=$1 layers=$2 kb
  shift 2
  kb=null
  if /usr/bin/time -f '%M' -o "$out_dir/time.txt" taskset -c "$(cpus_for "$max_threads")" "$@" >/dev/null 2>"$out_dir/last_stderr.txt"; then
    kb=$(tail -1 "$out_dir/time.txt")
  else
    log "FAILED: peak memory of $side ($layers): $(tail -1 "$out_dir/last_stderr.txt")"
  fi
  printf '{"side": "%s", "layers": "%s", "threads": %d, "peak_rss_kb": %s}\n' "$side" "$layers" \
    "$max_threads" "$kb" >>"$out_dir/rss.jsonl"
}
log "peak resident memory ($rss_reps reps each)"
for _ in $(seq 1 "$rss_reps"); do
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

# ---- 8. report --------------------------------------------------------------------------------
# A quick run's report goes next to its raw JSON, so that it never replaces the committed one.
report_dir=benchmarks
[ "$quick" = 1 ] && report_dir="$out_dir"
elapsed=$(( $(date +%s) - start_s ))
log "writing $report_dir/RESULTS.md and $report_dir/results.png"
"$py" benchmarks/report.py --dir "$out_dir" --command "$command_line" --quick "$quick" \
  --rounds "$rounds" --build-dir "$build_dir" --elapsed-s "$elapsed" \
  --iters "1:$warm_1:$iters_1,8:$warm_8:$iters_8,32:$warm_32:$iters_32" --rss-reps "$rss_reps" \
  --loadavg-start "$loadavg_start" --md "$report_dir/RESULTS.md" --png "$report_dir/results.png"
log "done in $(( $(date +%s) - start_s ))s"
