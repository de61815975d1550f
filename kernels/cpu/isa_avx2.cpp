// The avx2 copy of the per-level CPU kernels (isa.h, isa_kernels.inc), compiled with
// -mavx2 -mfma (CMakeLists.txt).
#define STRATA_ISA_AVX2 1
#define STRATA_ISA avx2
#if !defined(__AVX2__) || !defined(__FMA__)
#error "isa_avx2.cpp must be compiled with -mavx2 -mfma"
#endif
#include "isa_kernels.inc"
