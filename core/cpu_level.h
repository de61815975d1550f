// CpuLevel: which instruction-set level the CPU kernels run at. One strata binary carries the
// fast kernels compiled for every level (kernels/cpu/isa_*.cpp) and picks one at run time:
//   Avx512    AVX-512 F/BW/DQ/VL + FMA: 16-float vectors, 32 registers
//   Avx2      AVX2 + FMA (Haswell and later, every AMD Zen): 8-float vectors, 16 registers
//   Baseline  plain x86-64 (SSE2) or any other processor: portable C++ the compiler vectorises
// The level in use is, in order: RunOptions::cpu when it is not Auto; else the environment
// variable STRATA_CPU (avx512 | avx2 | baseline), read once; else the best level this CPU and
// its operating system support (cpuid, and XGETBV for the register state the OS saves).
// Asking for a level the CPU lacks is an Error naming the missing feature, never a SIGILL.
#pragma once
#include <strata/export.h>
#include <string>

namespace strata {

enum class CpuLevel { Auto, Baseline, Avx2, Avx512 };

// "auto", "baseline", "avx2", "avx512".
STRATA_API const char* cpu_level_name(CpuLevel level);
// The inverse of cpu_level_name; throws Error listing the accepted names.
STRATA_API CpuLevel parse_cpu_level(const std::string& name);
// The best level this CPU and OS support, and whether `level` is among them (Auto: always).
STRATA_API CpuLevel detected_cpu_level();
STRATA_API bool cpu_supports(CpuLevel level);
// STRATA_CPU when set (checked: an unknown name or an unsupported level throws Error), else
// detected_cpu_level(). Read once per process.
STRATA_API CpuLevel default_cpu_level();
// `requested` made concrete: Auto gives default_cpu_level(); any other level is checked against
// the CPU and returned, or an Error says which feature is missing.
STRATA_API CpuLevel resolve_cpu_level(CpuLevel requested);
// One line for --version and benchmark notes: "avx2 (detected: avx2; CPU: AMD EPYC ...)".
STRATA_API std::string cpu_level_summary();

}  // namespace strata
