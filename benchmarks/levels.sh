#!/usr/bin/env bash
# strata at every CPU level this machine has (STRATA_CPU / --cpu: avx512, avx2, baseline) against
# PyTorch eager and its best path, in one run: ResNet-18 fp32 224x224, batch 1 and 8, the same
# threads for all, each engine in its own process, rounds interleaved (level A, level B, torch
# eager, torch best, then the next round), medians of the rounds' medians. Prints a markdown
# table with the machine. Uses the strata binary given (default build/apps/strata) and the
# Python of .venv (made by benchmarks/run.sh) or python3 with torch.
#   benchmarks/levels.sh [--strata PATH] [--threads N] [--rounds R] [--iters I]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

strata=build/apps/strata threads=2 rounds=5 iters=20
while [ $# -gt 0 ]; do
  case "$1" in
    --strata) strata="$2"; shift 2 ;;
    --threads) threads="$2"; shift 2 ;;
    --rounds) rounds="$2"; shift 2 ;;
    --iters) iters="$2"; shift 2 ;;
    *) echo "usage: benchmarks/levels.sh [--strata PATH] [--threads N] [--rounds R] [--iters I]" >&2; exit 2 ;;
  esac
done
python=python3
[ -x .venv/bin/python ] && python=.venv/bin/python
"$python" -c "import torch, torchvision" 2>/dev/null || { echo "levels.sh: $python cannot import torch" >&2; exit 1; }

detected="$("$strata" --version | sed -n 's/.*detected: \([a-z0-9]*\).*/\1/p')"
case "$detected" in
  avx512) levels=(avx512 avx2 baseline) ;;
  avx2) levels=(avx2 baseline) ;;
  *) levels=(baseline) ;;
esac
# The same cores for every process: the first $threads CPUs of distinct physical cores.
cpus="$(lscpu -p=CPU,CORE | grep -v '^#' | sort -t, -k2,2n -u | head -n "$threads" | cut -d, -f1 | paste -sd,)"
export OMP_PROC_BIND=close OMP_PLACES=cores OMP_NUM_THREADS="$threads"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT

for ((r = 1; r <= rounds; r++)); do
  for batch in 1 8; do
    for level in "${levels[@]}"; do
      taskset -c "$cpus" "$strata" bench --batch "$batch" --threads "$threads" --iters "$iters" --cpu "$level" \
        2>/dev/null | sed "s/^/strata-$level $batch /" >>"$out/results"
    done
    for path in eager best; do
      taskset -c "$cpus" "$python" benchmarks/torch_bench.py --batch "$batch" --threads "$threads" --iters "$iters" \
        --path "$path" 2>/dev/null | sed "s/^/torch-$path $batch /" >>"$out/results"
    done
  done
  echo "round $r of $rounds done" >&2
done

echo "CPU: $(lscpu | sed -n 's/^Model name: *//p'); flags: $(grep -o -w 'avx512[a-z_0-9]*\|avx2\|fma\|amx[a-z_0-9]*' /proc/cpuinfo | sort -u | paste -sd' ')"
echo "strata $("$strata" --version | tr '\n' ' '); torch $("$python" -c 'import torch; print(torch.__version__)')"
echo "threads $threads (taskset -c $cpus), $rounds rounds x $iters timed calls, load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo
"$python" - "$out/results" "${levels[@]}" <<'EOF'
import json, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    engine, batch, js = line.split(" ", 2)
    rows.setdefault((engine, int(batch)), []).append(json.loads(js)["median_ms"])
engines = ["strata-" + l for l in sys.argv[2:]] + ["torch-eager", "torch-best"]
print("| batch | " + " | ".join(engines) + " |")
print("|---" * (len(engines) + 1) + "|")
for batch in (1, 8):
    base = statistics.median(rows[("torch-eager", batch)])
    cells = []
    for e in engines:
        m = statistics.median(rows[(e, batch)])
        cells.append("%.1f ms (%.2fx eager)" % (m, m / base))
    print("| %d | %s |" % (batch, " | ".join(cells)))
EOF
