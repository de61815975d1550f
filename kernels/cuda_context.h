// CudaContext: everything a CUDA forward call runs on, made explicit (RunOptions::cuda).
//   - one CUDA stream; every kernel, cuDNN and cuBLASLt call of the context is queued on it;
//   - a cuDNN handle and a cuBLASLt handle bound to that stream;
//   - a memory pool for activations and workspaces (freed blocks are kept for reuse, so a
//     repeated fixed-shape call allocates nothing after the first);
//   - the algorithm chosen for each convolution shape (cuDNN's timed search, run once per shape
//     and cached here) and each matrix product.
// Handles and the pool are not thread-safe: one context per calling thread. Returned tensors
// are ready once the stream has done its work; Tensor::to(Device::CPU) waits for that.
// This header has no CUDA include. The implementation is in libstrata (kernels/cuda_loader.cpp),
// calling the CUDA backend plugin libstrata_cuda.so.0 (kernels/cuda/, kernels/cuda_plugin.h),
// which it opens the first time a context is created; in a build without the CUDA backend
// every entry point throws "this build has no CUDA backend".
#pragma once
#include <strata/export.h>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "../core/tensor.h"

namespace strata {

struct STRATA_API CudaOptions {
    int device = 0;
    // TF32 tensor cores for convolutions and matrix products. Off by default: fp32 results then
    // match the CPU to about 1e-6 relative; with TF32 (10-bit mantissa products) expect ~1e-3.
    bool tf32 = false;
    // Keep activations in NHWC memory (channels_last) between layers; returned getter outputs
    // are NCHW either way. -1: automatic (NHWC with TF32, where tensor cores want it; NCHW in
    // plain fp32), 0: NCHW, 1: NHWC.
    int channels_last = -1;
};

class STRATA_API CudaContext {
public:
    // Picks options.device, creates the stream and handles. Throws Error naming the reason when
    // the build has no CUDA backend or the machine has no usable device.
    static std::shared_ptr<CudaContext> create(const CudaOptions& options = {});
    ~CudaContext();
    CudaContext(const CudaContext&) = delete;
    CudaContext& operator=(const CudaContext&) = delete;

    const CudaOptions& options() const;
    bool channels_last() const;      // the resolved layout for activations
    std::string device_name() const;  // "NVIDIA H200 (sm_90, 132 SMs), cuDNN 9.x, CUDA runtime 13.0"

    // An uninitialised float32 tensor from the pool, laid out NCHW or channels_last.
    Tensor empty(const Shape& shape, bool channels_last = false);
    // Blocks until the stream's work is done; reports any asynchronous CUDA error.
    void synchronize();
    // Gives cached pool blocks back to the device (blocks in use stay).
    void release_cached_memory();
    // What the caches hold, for benchmark notes: "11 convolution shapes (9 with cuDNN's fused
    // bias+ReLU), algorithms IMPLICIT_PRECOMP_GEMM x6, WINOGRAD_NONFUSED x5; 1 matrix product".
    std::string summary() const;

    struct Impl;  // kernels/cuda_loader.cpp: the plugin's handle and the resolved options
    Impl& impl() { return *impl_; }

private:
    explicit CudaContext(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

// A forward call recorded once and replayed as one CUDA graph launch (fixed shapes, fixed
// input and output memory): cuts the per-kernel launch cost that dominates small batches.
//   auto graph = CudaGraph::capture(*ctx, [&] { out = model->forward(x, options); });
//   graph->replay();   // recomputes `out` from the current contents of `x`, asynchronously
// Run the call once before capturing (algorithms are searched and weights folded outside the
// capture). Memory allocated during the capture belongs to the graph. Capture again after
// Module::to() or loading weights: the graph reads the weights' memory as it was.
class STRATA_API CudaGraph {
public:
    static std::unique_ptr<CudaGraph> capture(CudaContext& ctx, const std::function<void()>& call);
    ~CudaGraph();
    void replay();  // queued on the context's stream

    struct Impl;
    explicit CudaGraph(std::unique_ptr<Impl> impl);

private:
    std::unique_ptr<Impl> impl_;
};

}  // namespace strata
