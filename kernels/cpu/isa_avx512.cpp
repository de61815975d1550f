// The avx512 copy of the per-level CPU kernels (isa.h, isa_kernels.inc), compiled with
// -mavx512f -mavx512bw -mavx512dq -mavx512vl -mavx2 -mfma (CMakeLists.txt).
#define STRATA_ISA_AVX512 1
#define STRATA_ISA avx512
#if !defined(__AVX512F__) || !defined(__AVX512BW__) || !defined(__AVX512DQ__) || !defined(__AVX512VL__) || !defined(__FMA__)
#error "isa_avx512.cpp must be compiled with -mavx512f -mavx512bw -mavx512dq -mavx512vl -mfma"
#endif
#include "isa_kernels.inc"
