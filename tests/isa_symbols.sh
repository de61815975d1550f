#!/usr/bin/env bash
# The per-level kernel objects (kernels/cpu/isa_*.cpp, see kernels/cpu/isa.h) may define global
# symbols only inside their own namespace (strata::cpu::avx512 / avx2 / baseline). A global or
# weak symbol outside it -- a std:: template instance, an inline function of a shared header --
# is merged by the linker with the copies of other files, and the one kept may be the AVX-512
# copy: it would then run, and crash, on a CPU without AVX-512. This fails if there is one.
#   tests/isa_symbols.sh OBJECT_DIR   (the folder holding isa_*.o: CMakeFiles/strata.dir/kernels/cpu)
set -euo pipefail
dir="$1"
shopt -s nullglob
objects=("$dir"/isa_*.o)
[ "${#objects[@]}" -gt 0 ] || { echo "isa_symbols: no isa_*.o in $dir" >&2; exit 1; }
bad=0
for obj in "${objects[@]}"; do
  level="$(basename "$obj" | sed -E 's/^isa_([a-z0-9]+)\.cpp\.o$/\1/')"
  prefix="_ZN6strata3cpu${#level}${level}"
  before=$bad
  # nm: an upper-case type (and u, v, w) is a global or weak definition; lower case is local.
  while read -r _ type name; do
    case "$type" in
      [a-tx-z]) continue ;;
    esac
    case "$name" in
      "$prefix"*) ;;
      __odr_asan*) ;;  # AddressSanitizer's ODR indicator for one of our own globals (data, not code)
      *) echo "isa_symbols: $(basename "$obj") defines $type $(c++filt "$name") outside strata::cpu::$level" >&2
         bad=1 ;;
    esac
  done < <(nm --defined-only "$obj")
  [ "$bad" != "$before" ] || echo "isa_symbols: $(basename "$obj"): every global symbol is in strata::cpu::$level"
done
exit "$bad"
