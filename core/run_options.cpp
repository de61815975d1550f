#include "run_options.h"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace strata {

const char* backend_name(Backend backend) {
    switch (backend) {
        case Backend::Reference: return "reference";
        case Backend::Cpu: return "cpu";
        case Backend::Cuda: return "cuda";
    }
    return "?";
}

int RunOptions::threads() const {
    if (num_threads > 0) return num_threads;
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

}  // namespace strata
