// The baseline copy of the per-level CPU kernels (isa.h, isa_kernels.inc), compiled with
// no target flags: plain x86-64 (SSE2), or whatever the processor's baseline is.
#define STRATA_ISA_BASELINE 1
#define STRATA_ISA baseline
#include "isa_kernels.inc"
