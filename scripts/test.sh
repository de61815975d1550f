#!/usr/bin/env bash
# The tests on a fresh Debian 12 machine: set up, build, run ctest, then the package checks: the
# seed example and examples/package built as downstream projects against `cmake --install`, with
# find_package(strata) and with pkg-config, for the static build and for a shared one
# (BUILD_SHARED_LIBS=ON, libstrata.so.0, only the public API exported), and run; none of them,
# nor the installed CLI, may link a CUDA library (the CUDA backend is a plugin, opened on demand),
# and in a CUDA build find_package(strata COMPONENTS cuda) finds that plugin. Then the whole
# suite again at each lower CPU level this machine has (STRATA_CPU).
#   --sanitize  (CI, .ci/run) then a second stage: a CPU-only build at STRATA_CPU=baseline with AddressSanitizer +
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

# ---- the same binary at each lower CPU level this machine has (kernels/cpu/isa.h) -------------
# The run above used the best level (`strata --version` says which). Forced lower levels rerun
# the whole suite; the baseline one is left to the sanitizer stage when there is one.
detected="$("$build_dir/apps/strata" --version | sed -n 's/.*detected: \([a-z0-9]*\).*/\1/p')"
case "$detected" in
  avx512) lower=(avx2 baseline) ;;
  avx2) lower=(baseline) ;;
  *) lower=() ;;
esac
echo "CPU levels: ran the suite at $detected (detected); forced: ${lower[*]:-none}"
for level in "${lower[@]}"; do
  [ "$level" = baseline ] && [ "$sanitize" = 1 ] && continue
  echo "---- the whole suite with STRATA_CPU=$level"
  (cd "$build_dir" && STRATA_CPU="$level" ctest --output-on-failure -j"$(nproc)")
done

prefix="$(mktemp -d)"
trap 'rm -rf "$prefix"' EXIT

# ---- downstream: the installed package, static and shared, with CMake and with pkg-config ---------
# The CUDA backend is a plugin (libstrata_cuda.so.0) that libstrata opens when CUDA is asked for:
# nothing else may load a CUDA library. no_cuda_libs FILE...: fails if ldd lists one for a FILE.
no_cuda_libs() {
  local file found
  for file in "$@"; do
    found="$(ldd "$file" | grep -E 'lib(cudnn|cublas|cublasLt|cudart|cuda)[._]' || true)"
    if [ -n "$found" ]; then
      echo "$file needs CUDA libraries (only libstrata_cuda.so may):" >&2
      echo "$found" >&2
      exit 1
    fi
  done
}

# downstream INSTALL LABEL: builds examples/seed and examples/package against INSTALL with
# find_package(strata) and with `pkg-config --cflags --libs strata`, and runs them. CMake may not
# find CUDAToolkit or cuDNN there: a plain find_package(strata) must not need them (it does not
# even look, so CMake would call those two variables unused: --no-warn-unused-cli).
want="[('feat1', [1, 64, 56, 56]), ('feat2', [1, 256, 14, 14])]"
downstream() {
  local install="$1" label="$2" out="$prefix/$2" pcdir got
  mkdir -p "$out"
  for example in seed package; do
    cmake -S "examples/$example" -B "$out/cmake-$example" -DCMAKE_PREFIX_PATH="$install" \
      -DCMAKE_BUILD_TYPE=Release --no-warn-unused-cli -DCMAKE_DISABLE_FIND_PACKAGE_CUDAToolkit=ON \
      -DCMAKE_DISABLE_FIND_PACKAGE_CUDNN=ON >/dev/null
    cmake --build "$out/cmake-$example" -j"$(nproc)" >/dev/null
  done
  pcdir="$(dirname "$(find "$install" -name strata.pc)")"
  local pc_flags
  pc_flags="$(PKG_CONFIG_PATH="$pcdir" pkg-config --cflags --libs strata)"
  # shellcheck disable=SC2086  # pkg-config's flags are words
  c++ -std=c++17 -O1 examples/seed/seed.cpp -o "$out/pc-seed" $pc_flags \
    -Wl,-rpath,"$(PKG_CONFIG_PATH="$pcdir" pkg-config --variable=libdir strata)"
  # shellcheck disable=SC2086
  c++ -std=c++17 -O1 examples/package/package_check.cpp -o "$out/pc-package" $pc_flags \
    -Wl,-rpath,"$(PKG_CONFIG_PATH="$pcdir" pkg-config --variable=libdir strata)"
  for seed in "$out/cmake-seed/seed" "$out/pc-seed"; do
    got="$("$seed")"
    if [ "$got" != "$want" ]; then
      echo "downstream seed example ($label, $seed): expected $want, got $got" >&2
      exit 1
    fi
  done
  "$out/cmake-package/package_check" "$out" >"$out/package.log" || { cat "$out/package.log" >&2; exit 1; }
  "$out/pc-package" "$out" >"$out/package.log" || { cat "$out/package.log" >&2; exit 1; }
  no_cuda_libs "$out/cmake-seed/seed" "$out/pc-seed" "$out/cmake-package/package_check" "$out/pc-package"
  echo "downstream ($label): seed and package_check built with find_package(strata) and with pkg-config ($pc_flags): OK"
}

# Only the public headers are installed: no io internals, kernels or caches.
install_check() {
  local include="$1/include/strata" h
  for h in io/pth.h io/pickle.h io/zip_reader.h kernels/relu.h kernels/cpu kernels/reference layers/placement.h; do
    [ ! -e "$include/$h" ] || { echo "install: private header $h is installed" >&2; exit 1; }
  done
  echo '#include <strata/strata.h>' | c++ -std=c++17 -fsyntax-only -I"$1/include" -x c++ - || exit 1
}

# cuda_component_check INSTALL: in a CUDA build, the plugin is installed beside libstrata, the
# installed CLI finds it there (bin/../lib: its error is about the device, not the plugin), and
# find_package(strata COMPONENTS cuda) gives strata::cuda, or fails clearly without cuDNN.
cuda_component_check() {
  local install="$1" plugin err out="$prefix/cuda-component"
  plugin="$(find "$install" -name 'libstrata_cuda.so.0' | head -n1)"
  if [ -z "$plugin" ]; then
    echo "CUDA plugin: not in this build (STRATA_CUDA off)"
    return
  fi
  err="$("$install/bin/strata" features --model resnet18 --layers layer1:f --device cuda 2>&1 >/dev/null || true)"
  case "$err" in
    *"CUDA backend unavailable"*) echo "installed CLI did not load $plugin: $err" >&2; exit 1 ;;
  esac
  mkdir -p "$out"
  cat >"$out/CMakeLists.txt" <<'CMAKE'
cmake_minimum_required(VERSION 3.18)
project(strata_cuda_component LANGUAGES CXX)
find_package(strata REQUIRED COMPONENTS cuda)
get_target_property(plugin strata::cuda LOCATION)
if(NOT EXISTS "${plugin}")
  message(FATAL_ERROR "strata::cuda names ${plugin}, which does not exist")
endif()
CMAKE
  cmake -S "$out" -B "$out/build" -DCMAKE_PREFIX_PATH="$install" >/dev/null
  if cmake -S "$out" -B "$out/build-nocudnn" -DCMAKE_PREFIX_PATH="$install" \
      -DCMAKE_DISABLE_FIND_PACKAGE_CUDNN=ON >"$out/nocudnn.log" 2>&1; then
    echo "find_package(strata COMPONENTS cuda) succeeded without cuDNN" >&2
    exit 1
  fi
  grep -q "strata component cuda: cuDNN was not found" "$out/nocudnn.log" ||
    { cat "$out/nocudnn.log" >&2; exit 1; }
  echo "CUDA plugin: $(basename "$plugin") installed, found by the installed CLI; COMPONENTS cuda: OK"
}

# Static (the default build above).
cmake --install "$build_dir" --prefix "$prefix/install" >/dev/null
install_check "$prefix/install"
version="$(sed -n 's/^#define STRATA_VERSION_STRING "\(.*\)"$/\1/p' "$prefix/install/include/strata/version.h")"
if [ -x "$prefix/install/bin/strata" ] && [ "$("$prefix/install/bin/strata" --version | head -n1)" != "strata $version" ]; then
  echo "strata --version: expected 'strata $version' first, got '$("$prefix/install/bin/strata" --version)'" >&2
  exit 1
fi
no_cuda_libs "$prefix/install/bin/strata"
downstream "$prefix/install" static
cuda_component_check "$prefix/install"

# Shared: libstrata.so.0 with only STRATA_API exported; the CLI is linked to it too, so a public
# function the CLI uses without STRATA_API fails here. No tests (they use internals).
shared_dir="${STRATA_SHARED_BUILD_DIR:-build-shared}"
cmake -S . -B "$shared_dir" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=ON -DSTRATA_CUDA=OFF \
  -DSTRATA_BUILD_TESTS=OFF -DSTRATA_BUILD_BENCHMARKS=OFF -DSTRATA_BUILD_APPS=ON >/dev/null
cmake --build "$shared_dir" -j"$(nproc)" >/dev/null
cmake --install "$shared_dir" --prefix "$prefix/shared" >/dev/null
install_check "$prefix/shared"
so="$(find "$prefix/shared" -name 'libstrata.so.0')"
soname="$(readelf -d "$so" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')"
[ "$soname" = libstrata.so.0 ] || { echo "shared library: SONAME '$soname', expected libstrata.so.0" >&2; exit 1; }
"$prefix/shared/bin/strata" --version >/dev/null
no_cuda_libs "$prefix/shared/bin/strata" "$so"
echo "shared library: SONAME $soname, $(nm -D --defined-only "$so" | wc -l) exported symbols"
downstream "$prefix/shared" shared
echo "release stage: $((SECONDS - stage_start)) s"
[ "$sanitize" = 1 ] || exit 0

# ---- sanitizers -------------------------------------------------------------------------------
# -O2 -g without NDEBUG: asserts on, tests fast enough. STRATA_CPU=baseline: this stage runs the
# portable kernels, the release stage above the best level and the ones between. Any UBSan
# report aborts (-fno-sanitize-recover=all), any ASan report fails its test, and a leak makes
# the process fail.
stage_start=$SECONDS
san_dir="${STRATA_SANITIZE_BUILD_DIR:-build-sanitize}"
cmake -S . -B "$san_dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O2 -g" \
  -DSTRATA_SANITIZE=ON -DSTRATA_WERROR=ON -DSTRATA_CUDA=OFF -DSTRATA_BUILD_BENCHMARKS=OFF \
  -DSTRATA_NATIVE=OFF >/dev/null
cmake --build "$san_dir" -j"$(nproc)"
export ASAN_OPTIONS="detect_leaks=1:check_initialization_order=1:strict_init_order=1"
export UBSAN_OPTIONS="print_stacktrace=1"
export STRATA_CPU=baseline
(cd "$san_dir" && ctest --output-on-failure -j"$(nproc)")

# The leak check of a full CLI run, on the weights and input the test suite wrote
# (tests/test_cli_catalog.cpp): LeakSanitizer makes a leaking process exit 23.
files="$san_dir/tests/leak_check"
"$san_dir/apps/strata" features --weights "$files/weights.safetensors" --input "$files/input.npy" \
  --layers layer1:feat1,layer4:feat4,fc:logits --out "$prefix/features.safetensors" --threads 2 >/dev/null
[ -s "$prefix/features.safetensors" ] || { echo "leak check: no output file written" >&2; exit 1; }
echo "LeakSanitizer: strata features --weights --input --out: no leak"
echo "sanitizer stage (ASan + UBSan + LSan, -Werror): $((SECONDS - stage_start)) s"
