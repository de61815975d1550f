// Adaptive average pooling on CUDA: one thread per output element, window bounds as torch
// computes them, summed in double like the reference.
#include "../adaptive_avg_pool2d.h"
#include "context.cuh"

namespace strata {
namespace cuda {

namespace {

// x: [n, c, h, w], y: [n, c, oh, ow]; NCHW, or NHWC with kChannelsLast
template <bool kChannelsLast>
__global__ void adaptive_avg_pool2d_kernel(AdaptiveAvgPool2dParams p, const float* x, float* y) {
    const int64_t count = p.n * p.c * p.oh * p.ow;
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count; i += int64_t(gridDim.x) * blockDim.x) {
        int64_t n, ch, oy, ox;
        if (kChannelsLast) {
            ch = i % p.c; ox = (i / p.c) % p.ow; oy = (i / (p.c * p.ow)) % p.oh; n = i / (p.c * p.ow * p.oh);
        } else {
            ox = i % p.ow; oy = (i / p.ow) % p.oh; ch = (i / (p.ow * p.oh)) % p.c; n = i / (p.ow * p.oh * p.c);
        }
        const int64_t y0 = oy * p.h / p.oh, y1 = ((oy + 1) * p.h + p.oh - 1) / p.oh;
        const int64_t x0 = ox * p.w / p.ow, x1 = ((ox + 1) * p.w + p.ow - 1) / p.ow;
        double sum = 0.0;
        for (int64_t iy = y0; iy < y1; ++iy)
            for (int64_t ix = x0; ix < x1; ++ix)
                sum += kChannelsLast ? x[((n * p.h + iy) * p.w + ix) * p.c + ch] : x[((n * p.c + ch) * p.h + iy) * p.w + ix];
        y[i] = static_cast<float>(sum / static_cast<double>((y1 - y0) * (x1 - x0)));
    }
}

}  // namespace

void adaptive_avg_pool2d(Context& ctx, const AdaptiveAvgPool2dParams& p, const float* x, float* y,
                         bool channels_last) {
    Context& im = cuda_detail::use(ctx, "adaptive_avg_pool2d");
    const int64_t count = p.n * p.c * p.oh * p.ow;
    if (count == 0) return;
    if (channels_last)
        adaptive_avg_pool2d_kernel<true><<<cuda_detail::blocks_for(count), 256, 0, im.stream>>>(p, x, y);
    else
        adaptive_avg_pool2d_kernel<false><<<cuda_detail::blocks_for(count), 256, 0, im.stream>>>(p, x, y);
    STRATA_CUDA_LAUNCH_CHECK("adaptive_avg_pool2d");
}

}  // namespace cuda
}  // namespace strata
