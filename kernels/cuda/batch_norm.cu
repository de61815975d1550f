// Inference BatchNorm on CUDA, for a BatchNorm2d whose input is a requested output (elsewhere
// it is folded into the convolution). Same formula as the reference, per element.
#include "../batch_norm.h"
#include "context.cuh"

namespace strata {
namespace cuda {

namespace {

// x, y: [n, c, hw] (NCHW) or [n, hw, c] (kChannelsLast); weight, bias, mean, var: [c]
template <bool kChannelsLast>
__global__ void batch_norm_kernel(const float* x, const float* weight, const float* bias, const float* mean,
                                  const float* var, float* y, int64_t count, int64_t c, int64_t hw, double eps) {
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count; i += int64_t(gridDim.x) * blockDim.x) {
        const int64_t ch = kChannelsLast ? i % c : (i / hw) % c;
        const double norm = (x[i] - static_cast<double>(mean[ch])) / sqrt(var[ch] + eps);
        y[i] = static_cast<float>(norm * weight[ch] + bias[ch]);
    }
}

}  // namespace

void batch_norm(Context& ctx, const BatchNormParams& p, const float* x, const float* weight,
                const float* bias, const float* mean, const float* var, float* y, bool channels_last) {
    Context& im = cuda_detail::use(ctx, "batch_norm");
    const int64_t count = p.n * p.c * p.hw;
    if (count == 0) return;
    if (channels_last)
        batch_norm_kernel<true><<<cuda_detail::blocks_for(count), 256, 0, im.stream>>>(x, weight, bias, mean, var, y,
                                                                                     count, p.c, p.hw, p.eps);
    else
        batch_norm_kernel<false><<<cuda_detail::blocks_for(count), 256, 0, im.stream>>>(x, weight, bias, mean, var, y,
                                                                                      count, p.c, p.hw, p.eps);
    STRATA_CUDA_LAUNCH_CHECK("batch_norm");
}

}  // namespace cuda
}  // namespace strata
