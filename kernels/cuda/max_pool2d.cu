// Max pooling on CUDA: one thread per output element scans its window, as the reference does
// (padding never wins, NaN propagates). torch's ceil_mode and dilation rules are in
// MaxPool2dParams::compute_output_size (kernels/max_pool2d.h), shared with the CPU.
#include <cfloat>

#include "../max_pool2d.h"
#include "context.cuh"

namespace strata {
namespace cuda {

namespace {

// x: [n, c, h, w], y: [n, c, oh, ow]; NCHW, or NHWC with kChannelsLast
template <bool kChannelsLast>
__global__ void max_pool2d_kernel(MaxPool2dParams p, const float* x, float* y) {
    const int64_t count = p.n * p.c * p.oh * p.ow;
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count; i += int64_t(gridDim.x) * blockDim.x) {
        int64_t n, ch, oy, ox;
        if (kChannelsLast) {
            ch = i % p.c; ox = (i / p.c) % p.ow; oy = (i / (p.c * p.ow)) % p.oh; n = i / (p.c * p.ow * p.oh);
        } else {
            ox = i % p.ow; oy = (i / p.ow) % p.oh; ch = (i / (p.ow * p.oh)) % p.c; n = i / (p.ow * p.oh * p.c);
        }
        float best = -INFINITY;
        for (int64_t ky = 0; ky < p.kh && !isnan(best); ++ky) {
            const int64_t iy = oy * p.stride_h - p.pad_h + ky * p.dil_h;
            if (iy < 0 || iy >= p.h) continue;
            for (int64_t kx = 0; kx < p.kw; ++kx) {
                const int64_t ix = ox * p.stride_w - p.pad_w + kx * p.dil_w;
                if (ix < 0 || ix >= p.w) continue;
                const float v = kChannelsLast ? x[((n * p.h + iy) * p.w + ix) * p.c + ch]
                                              : x[((n * p.c + ch) * p.h + iy) * p.w + ix];
                if (v > best || isnan(v)) best = v;
                if (isnan(best)) break;
            }
        }
        y[i] = best;
    }
}

}  // namespace

void max_pool2d(Context& ctx, const MaxPool2dParams& p, const float* x, float* y, bool channels_last) {
    Context& im = cuda_detail::use(ctx, "max_pool2d");
    const int64_t count = p.n * p.c * p.oh * p.ow;
    if (count == 0) return;
    if (channels_last)
        max_pool2d_kernel<true><<<cuda_detail::blocks_for(count), 256, 0, im.stream>>>(p, x, y);
    else
        max_pool2d_kernel<false><<<cuda_detail::blocks_for(count), 256, 0, im.stream>>>(p, x, y);
    STRATA_CUDA_LAUNCH_CHECK("max_pool2d");
}

}  // namespace cuda
}  // namespace strata
