#!/usr/bin/env bash
# The tests on a fresh Debian 12 machine: set up, build, run ctest, then build the seed example
# as a downstream project against `cmake --install` (find_package(strata)) and run it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
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
