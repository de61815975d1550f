// Elementwise CUDA kernels: relu and the residual add (+ relu). torch.relu keeps NaN.
#include "../relu.h"
#include "context.cuh"

namespace strata {
namespace cuda {

namespace {

__device__ inline float relu_value(float v) { return isnan(v) ? v : (v > 0.0f ? v : 0.0f); }

// x, y: [n]
__global__ void relu_kernel(const float* x, float* y, int64_t n) {
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
        y[i] = relu_value(x[i]);
}

// a, b, y: [n]
__global__ void add_kernel(const float* a, const float* b, float* y, int64_t n, bool relu_after) {
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
        const float s = a[i] + b[i];
        y[i] = relu_after ? relu_value(s) : s;
    }
}

}  // namespace

void relu(Context& ctx, const float* x, float* y, int64_t n) {
    Context& im = cuda_detail::use(ctx, "relu");
    if (n == 0) return;
    relu_kernel<<<cuda_detail::blocks_for(n), 256, 0, im.stream>>>(x, y, n);
    STRATA_CUDA_LAUNCH_CHECK("relu");
}

void add(Context& ctx, const float* a, const float* b, float* y, int64_t n, bool relu_after) {
    Context& im = cuda_detail::use(ctx, "add");
    if (n == 0) return;
    add_kernel<<<cuda_detail::blocks_for(n), 256, 0, im.stream>>>(a, b, y, n, relu_after);
    STRATA_CUDA_LAUNCH_CHECK("add");
}

}  // namespace cuda
}  // namespace strata
