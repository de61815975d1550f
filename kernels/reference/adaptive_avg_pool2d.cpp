// Reference adaptive average pooling, window bounds exactly as torch computes them.
#include "../adaptive_avg_pool2d.h"

namespace strata {
namespace reference {

void adaptive_avg_pool2d(const AdaptiveAvgPool2dParams& p, const float* x, float* y) {
    for (int64_t plane = 0; plane < p.n * p.c; ++plane)
        for (int64_t oy = 0; oy < p.oh; ++oy) {
            const int64_t y0 = oy * p.h / p.oh, y1 = ((oy + 1) * p.h + p.oh - 1) / p.oh;
            for (int64_t ox = 0; ox < p.ow; ++ox) {
                const int64_t x0 = ox * p.w / p.ow, x1 = ((ox + 1) * p.w + p.ow - 1) / p.ow;
                double sum = 0.0;
                for (int64_t iy = y0; iy < y1; ++iy)
                    for (int64_t ix = x0; ix < x1; ++ix) sum += x[(plane * p.h + iy) * p.w + ix];
                y[(plane * p.oh + oy) * p.ow + ox] =
                    static_cast<float>(sum / static_cast<double>((y1 - y0) * (x1 - x0)));
            }
        }
}

}  // namespace reference
}  // namespace strata
