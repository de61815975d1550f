// RunOptions: the explicit execution context of a forward call. Nothing about how a call runs
// is hidden in globals: the backend and the thread count arrive here, per call.
#pragma once

namespace strata {

enum class Backend {
    Reference,  // kernels/reference: naive loops, the readable spec and the test oracle
    Cpu,        // kernels/cpu: Eigen GEMM + OpenMP
};

const char* backend_name(Backend backend);

struct RunOptions {
    Backend backend = Backend::Cpu;
    int num_threads = 0;  // 0: OpenMP's default (OMP_NUM_THREADS or all cores)

    // The thread count a kernel should use: num_threads, or OpenMP's default when 0.
    int threads() const;
};

}  // namespace strata
