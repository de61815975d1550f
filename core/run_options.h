// RunOptions: the explicit execution context of a forward call. Nothing about how a call runs
// is hidden in globals: the backend, the thread count and, for the CUDA backend, the context
// (stream, library handles, memory pool, algorithm cache) arrive here, per call.
#pragma once
#include <cstdint>
#include <memory>
#include <utility>

namespace strata {

enum class Backend {
    Reference,  // kernels/reference: naive loops, the readable spec and the test oracle
    Cpu,        // kernels/cpu: Eigen GEMM + OpenMP
    Cuda,       // kernels/cuda: cuDNN, cuBLASLt and small CUDA kernels, on RunOptions::cuda
};

const char* backend_name(Backend backend);

class CudaContext;  // kernels/cuda_context.h; opaque here, so core sees no CUDA header

struct RunOptions {
    RunOptions(Backend backend_ = Backend::Cpu, int num_threads_ = 0, std::shared_ptr<CudaContext> cuda_ = nullptr)
        : backend(backend_), num_threads(num_threads_), cuda(std::move(cuda_)) {}

    Backend backend = Backend::Cpu;
    int num_threads = 0;  // 0: OpenMP's default (OMP_NUM_THREADS or all cores)
    // Required by Backend::Cuda (CudaContext::create()). A context is used by one thread at a
    // time: give each calling thread its own.
    std::shared_ptr<CudaContext> cuda;
    // The largest activation (one tensor: a layer's input or output) a call may create, in bytes.
    // A layer refuses a larger one with an Error naming it before anything is allocated, so an
    // absurd input (1x3x100000x100000) fails cleanly instead of exhausting memory. 0: no limit.
    int64_t max_activation_bytes = int64_t{16} << 30;  // 16 GiB

    // The thread count a kernel should use: num_threads, or OpenMP's default when 0.
    int threads() const;
};

}  // namespace strata
