// CPU adaptive average pooling: OpenMP over planes; float accumulation like torch's CPU kernel.
#include "../adaptive_avg_pool2d.h"

namespace strata {
namespace cpu {

void adaptive_avg_pool2d(const AdaptiveAvgPool2dParams& p, const float* x, float* y, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t plane = 0; plane < p.n * p.c; ++plane) {
        const float* in = x + plane * p.h * p.w;
        float* out = y + plane * p.oh * p.ow;
        for (int64_t oy = 0; oy < p.oh; ++oy) {
            const int64_t y0 = oy * p.h / p.oh, y1 = ((oy + 1) * p.h + p.oh - 1) / p.oh;
            for (int64_t ox = 0; ox < p.ow; ++ox) {
                const int64_t x0 = ox * p.w / p.ow, x1 = ((ox + 1) * p.w + p.ow - 1) / p.ow;
                float sum = 0.0f;
                for (int64_t iy = y0; iy < y1; ++iy)
                    for (int64_t ix = x0; ix < x1; ++ix) sum += in[iy * p.w + ix];
                out[oy * p.ow + ox] = sum / static_cast<float>((y1 - y0) * (x1 - x0));
            }
        }
    }
}

}  // namespace cpu
}  // namespace strata
