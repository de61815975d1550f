// RunOptions: the explicit execution context of a forward call. Nothing about how a call runs
// is hidden in globals: the backend, the thread count and, for the CUDA backend, the context
// (stream, library handles, memory pool, algorithm cache) arrive here, per call.
#pragma once
#include <strata/export.h>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include "cpu_level.h"

namespace strata {

enum class Backend {
    Reference,  // kernels/reference: naive loops, the readable spec and the test oracle
    Cpu,        // kernels/cpu: Eigen GEMM + OpenMP
    Cuda,       // kernels/cuda: cuDNN, cuBLASLt and small CUDA kernels, on RunOptions::cuda
};

STRATA_API const char* backend_name(Backend backend);

// What the CPU backend keeps of a 3x3 stride-1 convolution's weights besides the direct
// kernel's packed copy (the size of the weights).
//   Fast: also Winograd's transformed weights where Winograd is faster: 1.8x (F(2,3)) to 4x
//         (F(4,3)) the size of that layer's weights, made on the first call of each size.
//   Lean: the direct kernel only. For one-shot runs, where transforming the weights costs more
//         than Winograd saves in one call, and where memory is tight (`strata features`).
enum class WeightPacking { Fast, Lean };

class CudaContext;  // kernels/cuda_context.h; opaque here, so core sees no CUDA header

struct STRATA_API RunOptions {
    RunOptions(Backend backend_ = Backend::Cpu, int num_threads_ = 0, std::shared_ptr<CudaContext> cuda_ = nullptr)
        : backend(backend_), num_threads(num_threads_), cuda(std::move(cuda_)) {}

    Backend backend = Backend::Cpu;
    int num_threads = 0;  // 0: OpenMP's default (OMP_NUM_THREADS or all cores); at most max_threads()
    // Required by Backend::Cuda (CudaContext::create()). A context is used by one thread at a
    // time: give each calling thread its own.
    std::shared_ptr<CudaContext> cuda;
    // The largest activation (one tensor: a layer's input or output) a call may create, in bytes.
    // A layer refuses a larger one with an Error naming it before anything is allocated, so an
    // absurd input (1x3x100000x100000) fails cleanly instead of exhausting memory. 0: no limit.
    int64_t max_activation_bytes = int64_t{16} << 30;  // 16 GiB
    WeightPacking packing = WeightPacking::Fast;  // CPU backend only
    // The CPU backend's instruction-set level (cpu_level.h): Auto runs the process default
    // (STRATA_CPU, else the best this CPU supports); another level forces that level's kernels,
    // for tests and benchmarks, and a level this CPU lacks makes the call throw Error.
    CpuLevel cpu = CpuLevel::Auto;

    // The thread count a kernel should use: num_threads, or OpenMP's default when 0. Throws
    // strata::Error when num_threads is negative or above max_threads() (libgomp crashes on
    // 100000 threads and exits the process on its own above its limit).
    int threads() const;
};

// The most threads a call may ask for: 16 per core (omp_get_num_procs()), and at most OpenMP's
// thread limit (omp_get_thread_limit(), OMP_THREAD_LIMIT).
STRATA_API int max_threads();
// How max_threads() was reached, for messages: "16 per core x 2 cores".
STRATA_API std::string max_threads_reason();

}  // namespace strata
