#!/usr/bin/env bash
# The tests on a fresh Debian 12 machine: set up, build, run ctest, then build the seed example
# as a downstream project against `cmake --install` (find_package(strata)) and run it.
#   --sanitize  (CI, .ci/run) then a second stage: a CPU-only, non-AVX-512 build with AddressSanitizer +
#               UndefinedBehaviorSanitizer and warnings as errors (STRATA_SANITIZE, STRATA_WERROR),
#               the whole test suite in it, and a LeakSanitizer check of a full CLI run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

sanitize=0
for arg in "$@"; do
  case "$arg" in
    --sanitize) sanitize=1 ;;
    *) echo "usage: scripts/test.sh [--sanitize]" >&2; exit 2 ;;
  esac
done

stage_start=$SECONDS
scripts/setup.sh
build_dir="${STRATA_BUILD_DIR:-build}"
(cd "$build_dir" && ctest --output-on-failure -j"$(nproc)")

prefix="$(mktemp -d)"
trap 'rm -rf "$prefix"' EXIT
cmake --install "$build_dir" --prefix "$prefix/install" >/dev/null
cmake -S examples/seed -B "$prefix/seed" -DCMAKE_PREFIX_PATH="$prefix/install" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$prefix/seed" -j"$(nproc)" >/dev/null
got="$("$prefix/seed/seed")"
want="[('feat1', [1, 64, 56, 56]), ('feat2', [1, 256, 14, 14])]"
if [ "$got" != "$want" ]; then
  echo "downstream seed example: expected $want, got $got" >&2
  exit 1
fi
echo "downstream seed example (find_package(strata) against the install): OK"
echo "release stage: $((SECONDS - stage_start)) s"
[ "$sanitize" = 1 ] || exit 0

# ---- sanitizers -------------------------------------------------------------------------------
# -O2 -g without NDEBUG: asserts on, tests fast enough. STRATA_NATIVE=OFF: this stage also
# covers a CPU without AVX-512 (the im2col + Eigen fallback of the fast path and of Winograd),
# while the release stage above covers the AVX-512 kernels. Any UBSan report aborts
# (-fno-sanitize-recover=all), any ASan report fails its test, and a leak makes the process fail.
stage_start=$SECONDS
san_dir="${STRATA_SANITIZE_BUILD_DIR:-build-sanitize}"
cmake -S . -B "$san_dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O2 -g" \
  -DSTRATA_SANITIZE=ON -DSTRATA_WERROR=ON -DSTRATA_CUDA=OFF -DSTRATA_BUILD_BENCHMARKS=OFF \
  -DSTRATA_NATIVE=OFF >/dev/null
cmake --build "$san_dir" -j"$(nproc)"
export ASAN_OPTIONS="detect_leaks=1:check_initialization_order=1:strict_init_order=1"
export UBSAN_OPTIONS="print_stacktrace=1"
(cd "$san_dir" && ctest --output-on-failure -j"$(nproc)")

# The leak check of a full CLI run, on the weights and input the test suite wrote
# (tests/test_cli_catalog.cpp): LeakSanitizer makes a leaking process exit 23.
files="$san_dir/tests/leak_check"
"$san_dir/apps/strata" features --weights "$files/weights.safetensors" --input "$files/input.npy" \
  --layers layer1:feat1,layer4:feat4,fc:logits --out "$prefix/features.safetensors" --threads 2 >/dev/null
[ -s "$prefix/features.safetensors" ] || { echo "leak check: no output file written" >&2; exit 1; }
echo "LeakSanitizer: strata features --weights --input --out: no leak"
echo "sanitizer stage (ASan + UBSan + LSan, -Werror): $((SECONDS - stage_start)) s"
