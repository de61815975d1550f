// The CUDA backend plugin's inside (libstrata_cuda.so.0, see kernels/cuda_plugin.h), shared by
// the kernels in kernels/cuda/: the context (stream, cuDNN and cuBLASLt handles, the memory pool,
// the per-shape caches), and the status checks. Every CUDA, cuDNN and cuBLAS call in strata goes
// through one of the CHECK macros below, which throw strata::Error naming the op, the call and
// the library's own message. Those exceptions stay inside the plugin: plugin.cu catches them at
// the boundary and hands the message to libstrata, which throws its own strata::Error.
#pragma once
#include <cublasLt.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "../../core/error.h"
#include "../adaptive_avg_pool2d.h"
#include "../batch_norm.h"
#include "../conv2d.h"
#include "../cuda_plugin.h"
#include "../linear.h"
#include "../max_pool2d.h"

namespace strata {
namespace cuda_detail {

[[noreturn]] void fail(const char* op, const char* call, const char* library, const std::string& status);
// "CUBLAS_STATUS_NOT_SUPPORTED" (cuBLASLt alone has no such function; libcublas is not linked).
const char* cublas_status_name(cublasStatus_t status);

}  // namespace cuda_detail
}  // namespace strata

// op: what strata was doing ("conv2d"); call: the library call, checked for success.
#define STRATA_CUDA_CHECK(op, call)                                                              \
    do {                                                                                        \
        const cudaError_t status_ = (call);                                                     \
        if (status_ != cudaSuccess)                                                             \
            ::strata::cuda_detail::fail(op, #call, "CUDA",                                      \
                                        std::string(cudaGetErrorName(status_)) + ": " +         \
                                            cudaGetErrorString(status_));                       \
    } while (0)
#define STRATA_CUDNN_CHECK(op, call)                                                             \
    do {                                                                                        \
        const cudnnStatus_t status_ = (call);                                                   \
        if (status_ != CUDNN_STATUS_SUCCESS)                                                    \
            ::strata::cuda_detail::fail(op, #call, "cuDNN", cudnnGetErrorString(status_));      \
    } while (0)
#define STRATA_CUBLAS_CHECK(op, call)                                                            \
    do {                                                                                        \
        const cublasStatus_t status_ = (call);                                                  \
        if (status_ != CUBLAS_STATUS_SUCCESS)                                                   \
            ::strata::cuda_detail::fail(op, #call, "cuBLASLt",                                  \
                                        ::strata::cuda_detail::cublas_status_name(status_));    \
    } while (0)
// After every kernel launch: a bad launch configuration shows up here, not three ops later.
#define STRATA_CUDA_LAUNCH_CHECK(op) STRATA_CUDA_CHECK(op, cudaGetLastError())

namespace strata {
namespace cuda_detail {

// Device memory kept for reuse. Blocks are handed out as shared pointers whose deleter gives
// them back; a block is reused by later work on the same stream, so stream order keeps it safe.
// While a graph is being captured, the context routes requests to the graph's own pool, so the
// memory a graph replays into is never handed to anyone else.
class MemoryPool : public std::enable_shared_from_this<MemoryPool> {
public:
    MemoryPool() = default;
    MemoryPool(const MemoryPool&) = delete;
    MemoryPool& operator=(const MemoryPool&) = delete;
    ~MemoryPool();  // frees every block it owns (all are free by then: blocks hold the pool)
    // At least nbytes of device memory (nullptr for 0 bytes), from `capture` while it is set.
    std::shared_ptr<void> take(size_t nbytes);
    // cudaFree of the blocks nobody uses.
    void release_cached() noexcept;

    // While a graph captures: the graph's pool, which serves every request and takes over
    // free blocks of this one before it asks the device for more.
    std::shared_ptr<MemoryPool> capture;

private:
    std::shared_ptr<void> take_from_self(size_t nbytes, MemoryPool* lender);
    void give_back(void* ptr, size_t size) noexcept;
    std::multimap<size_t, void*> free_;         // size -> free block
    std::unordered_map<void*, size_t> owned_;   // every block this pool allocated or took over
};

// A cached cuDNN plan for one convolution shape: descriptors, the algorithm cuDNN's timed
// search picked, its workspace size, and whether the fused bias+activation call accepts it.
struct ConvPlan {
    cudnnTensorDescriptor_t x = nullptr, y = nullptr, bias = nullptr;
    cudnnFilterDescriptor_t w = nullptr;
    cudnnConvolutionDescriptor_t conv = nullptr;
    cudnnActivationDescriptor_t relu = nullptr;
    cudnnConvolutionFwdAlgo_t algo = CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM;
    size_t workspace = 0;
    bool fused_ok = true;      // cleared when cudnnConvolutionBiasActivationForward refuses
    std::string fused_refusal;  // its status then, for CudaContext::summary()
    bool fused_used = false;    // a fused call has succeeded with this plan
    ~ConvPlan();
};

struct LinearPlan {
    cublasLtMatmulDesc_t op = nullptr;
    cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
    cublasLtMatmulAlgo_t algo{};
    size_t workspace = 0;
    ~LinearPlan();
};

}  // namespace cuda_detail

}  // namespace strata

// A context of the plugin: what libstrata's CudaContext holds a handle to (kernels/cuda_plugin.h
// declares the type opaque; only the plugin sees inside).
struct StrataCudaContext {
    bool tf32 = false;
    int device = 0;
    std::string name;
    cudaStream_t stream = nullptr;
    cudnnHandle_t cudnn = nullptr;
    cublasLtHandle_t cublaslt = nullptr;
    std::shared_ptr<strata::cuda_detail::MemoryPool> pool;
    bool capturing = false;
    // While a graph is being captured (between graph_begin and graph_end): its memory pool.
    std::shared_ptr<strata::cuda_detail::MemoryPool> capture_pool;
    // Key: the convolution's geometry and layout (see conv2d.cu).
    std::map<std::array<int64_t, 15>, std::unique_ptr<strata::cuda_detail::ConvPlan>> conv_plans;
    std::map<std::array<int64_t, 4>, std::unique_ptr<strata::cuda_detail::LinearPlan>> linear_plans;  // batch, in, out, bias

    ~StrataCudaContext();
    // Makes the context's device current on this thread (cheap when it already is).
    void activate();
    // Scratch memory for one call (a workspace); given back to the pool when released.
    std::shared_ptr<void> scratch(size_t nbytes);
};

namespace strata {

namespace cuda_detail {
using Context = ::StrataCudaContext;
// The context, with its device made current: the first line of every cuda:: kernel.
Context& use(Context& ctx, const char* op);

// context.cu: what the plugin's table offers for contexts and graphs (plugin.cu wraps them).
std::unique_ptr<Context> create_context(int device, bool tf32);  // the caller checked `device`
std::string summary(const Context& ctx);
void synchronize(Context& ctx);
void begin_graph(Context& ctx);
StrataCudaGraph* end_graph(Context& ctx);
void abort_graph(Context& ctx) noexcept;
void replay(StrataCudaGraph& graph);
void destroy(StrataCudaGraph* graph) noexcept;
// Blocks of 256 threads, enough blocks to cover n (capped; kernels loop with a grid stride).
inline unsigned blocks_for(int64_t n, int threads = 256) {
    const int64_t b = (n + threads - 1) / threads;
    return static_cast<unsigned>(b < 1 ? 1 : (b > 65535 * 8 ? 65535 * 8 : b));
}
}  // namespace cuda_detail

// The kernels, as declared in kernels/*.h (namespace cuda) but on the plugin's context;
// plugin.cu puts them in the table libstrata calls.
namespace cuda {
using cuda_detail::Context;
void conv2d(Context& ctx, const Conv2dParams& p, const float* x, const float* weight,
            const Conv2dEpilogue& epilogue, float* y, bool channels_last);
void batch_norm(Context& ctx, const BatchNormParams& p, const float* x, const float* weight,
                const float* bias, const float* mean, const float* var, float* y, bool channels_last);
void relu(Context& ctx, const float* x, float* y, int64_t n);
void add(Context& ctx, const float* a, const float* b, float* y, int64_t n, bool relu_after);
void max_pool2d(Context& ctx, const MaxPool2dParams& p, const float* x, float* y, bool channels_last);
void adaptive_avg_pool2d(Context& ctx, const AdaptiveAvgPool2dParams& p, const float* x, float* y,
                         bool channels_last);
void linear(Context& ctx, const LinearParams& p, const float* x, const float* weight, const float* bias, float* y);
void convert_layout(Context& ctx, int64_t n, int64_t c, int64_t h, int64_t w, const float* x,
                    bool x_channels_last, float* y, bool y_channels_last);
}  // namespace cuda

}  // namespace strata
