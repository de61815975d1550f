#!/usr/bin/env bash
# Fuzzes the weight-file readers for a bounded time (not part of CI; see README "Fuzzing").
#   scripts/fuzz.sh [SECONDS] [safetensors|pth ...]     default: 600 seconds, both targets
# Builds fuzz/ with clang + libFuzzer + ASan + UBSan into build-fuzz/ (or $STRATA_FUZZ_BUILD_DIR),
# then runs each target for SECONDS, one after the other under `nice -n 19`, starting from the
# committed seeds (fuzz/corpus/<format>/, and tests/fixtures/pth/ for pth). New interesting
# inputs go to build-fuzz/corpus/<format>/. A finding (crash, sanitizer report, leak, timeout,
# allocation over 512 MB) is copied to fuzz/regressions/<format>/, which ctest replays: fix it,
# then commit the file with the fix. Exits 1 if any target found something.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
seconds="${1:-600}"
shift || true
formats=("$@")
[ ${#formats[@]} -gt 0 ] || formats=(safetensors pth)
build="${STRATA_FUZZ_BUILD_DIR:-build-fuzz}"

command -v clang++ >/dev/null || { echo "fuzz: needs clang++ with libFuzzer (apt-get install clang)" >&2; exit 2; }
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++ \
  -DSTRATA_FUZZ=ON -DSTRATA_BUILD_TESTS=OFF -DSTRATA_BUILD_APPS=OFF -DSTRATA_BUILD_BENCHMARKS=OFF \
  -DSTRATA_OPENMP=OFF -DSTRATA_CUDA=OFF >/dev/null
targets=()
for f in "${formats[@]}"; do targets+=("fuzz_$f"); done
cmake --build "$build" -j"${STRATA_JOBS:-2}" --target "${targets[@]}"

found=0
for f in "${formats[@]}"; do
  corpus="$build/corpus/$f"
  artifacts="$build/artifacts/$f"
  mkdir -p "$corpus" "$artifacts" "fuzz/regressions/$f"
  seeds=("fuzz/corpus/$f")
  [ "$f" = pth ] && seeds+=(tests/fixtures/pth)
  log="$build/fuzz_$f.log"
  echo "fuzz: $f for ${seconds}s (log: $log)"
  status=0
  # libFuzzer stops by itself after max_total_time; `timeout` is the backstop.
  timeout --kill-after=30 "$((seconds + 120))" nice -n 19 "$build/fuzz/fuzz_$f" "$corpus" "${seeds[@]}" \
    -max_total_time="$seconds" -max_len=65536 -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=512 \
    -print_final_stats=1 -artifact_prefix="$artifacts/" >"$log" 2>&1 || status=$?
  grep -aE "INITED|DONE|stat::number_of_executed_units|stat::average_exec_per_sec|stat::peak_rss_mb" "$log" | sed "s/^/  /" || true
  new=0
  for a in "$artifacts"/*; do
    [ -e "$a" ] || continue
    cp "$a" "fuzz/regressions/$f/$(basename "$a")"
    new=1
  done
  if [ "$status" -ne 0 ] || [ "$new" -ne 0 ]; then
    echo "fuzz: $f FOUND SOMETHING (exit $status); inputs copied to fuzz/regressions/$f/; see $log" >&2
    found=1
  else
    echo "fuzz: $f: no finding in ${seconds}s"
  fi
done
exit "$found"
