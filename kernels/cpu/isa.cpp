// The dispatch table: which copy of the per-level kernels (isa.h) a call runs.
#include "isa.h"

namespace strata {
namespace cpu {

namespace baseline { extern const IsaKernels kernels; }
#if defined(STRATA_HAVE_X86_LEVELS)  // CMakeLists.txt: set where isa_avx2.cpp / isa_avx512.cpp are built
namespace avx2 { extern const IsaKernels kernels; }
namespace avx512 { extern const IsaKernels kernels; }
#endif

const IsaKernels& isa_kernels(CpuLevel level) {
    switch (resolve_cpu_level(level)) {
#if defined(STRATA_HAVE_X86_LEVELS)
        case CpuLevel::Avx512: return avx512::kernels;
        case CpuLevel::Avx2: return avx2::kernels;
#endif
        default: return baseline::kernels;
    }
}

}  // namespace cpu
}  // namespace strata
