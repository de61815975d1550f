#include "run_options.h"

#include <algorithm>
#include <thread>

#include "error.h"

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

namespace {
constexpr int kThreadsPerCore = 16;

int cores() {
#ifdef _OPENMP
    return std::max(1, omp_get_num_procs());
#else
    return std::max(1u, std::thread::hardware_concurrency());
#endif
}
}  // namespace

int max_threads() {
    const int per_core = kThreadsPerCore * cores();
#ifdef _OPENMP
    return std::max(1, std::min(per_core, omp_get_thread_limit()));
#else
    return per_core;
#endif
}

std::string max_threads_reason() {
    const int per_core = kThreadsPerCore * cores();
    if (max_threads() < per_core) return "OpenMP's thread limit (OMP_THREAD_LIMIT)";
    return std::to_string(kThreadsPerCore) + " per core x " + std::to_string(cores()) + " cores";
}

int RunOptions::threads() const {
    if (num_threads != 0) {
        STRATA_CHECK(num_threads > 0, "RunOptions::num_threads is ", num_threads, "; expected 0 (OpenMP's default) or a "
                     "positive count");
        STRATA_CHECK(num_threads <= max_threads(), "RunOptions::num_threads is ", num_threads, ", over the maximum of ",
                     max_threads(), " (", max_threads_reason(), ")");
        return num_threads;
    }
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

}  // namespace strata
