// CPU max pooling: OpenMP over (image, channel) planes; window bounds clipped once per output
// instead of testing every tap.
#include "../max_pool2d.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace strata {
namespace cpu {

void max_pool2d(const MaxPool2dParams& p, const float* x, float* y, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t plane = 0; plane < p.n * p.c; ++plane) {
        const float* in = x + plane * p.h * p.w;
        float* out = y + plane * p.oh * p.ow;
        for (int64_t oy = 0; oy < p.oh; ++oy) {
            const int64_t y0 = oy * p.stride_h - p.pad_h;
            // First and one-past-last tap index whose row lies inside the input.
            const int64_t ky0 = y0 >= 0 ? 0 : (-y0 + p.dil_h - 1) / p.dil_h;
            const int64_t ky1 = std::min(p.kh, (p.h - y0 + p.dil_h - 1) / p.dil_h);
            for (int64_t ox = 0; ox < p.ow; ++ox) {
                const int64_t x0 = ox * p.stride_w - p.pad_w;
                const int64_t kx0 = x0 >= 0 ? 0 : (-x0 + p.dil_w - 1) / p.dil_w;
                const int64_t kx1 = std::min(p.kw, (p.w - x0 + p.dil_w - 1) / p.dil_w);
                float best = -std::numeric_limits<float>::infinity();
                for (int64_t ky = ky0; ky < ky1; ++ky) {
                    const float* row = in + (y0 + ky * p.dil_h) * p.w + x0;
                    for (int64_t kx = kx0; kx < kx1; ++kx) {
                        const float v = row[kx * p.dil_w];
                        if (v > best || std::isnan(v)) best = v;  // NaN wins and stays, as in torch
                    }
                }
                out[oy * p.ow + ox] = best;
            }
        }
    }
}

}  // namespace cpu
}  // namespace strata
