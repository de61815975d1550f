// Reference max pooling: every output scans its window, skipping padded positions.
#include "../max_pool2d.h"

#include <cmath>
#include <limits>

namespace strata {

namespace reference {

void max_pool2d(const MaxPool2dParams& p, const float* x, float* y) {
    for (int64_t plane = 0; plane < p.n * p.c; ++plane)
        for (int64_t oy = 0; oy < p.oh; ++oy)
            for (int64_t ox = 0; ox < p.ow; ++ox) {
                float best = -std::numeric_limits<float>::infinity();
                for (int64_t ky = 0; ky < p.kh; ++ky)
                    for (int64_t kx = 0; kx < p.kw; ++kx) {
                        const int64_t iy = oy * p.stride_h - p.pad_h + ky * p.dil_h;
                        const int64_t ix = ox * p.stride_w - p.pad_w + kx * p.dil_w;
                        if (iy < 0 || iy >= p.h || ix < 0 || ix >= p.w) continue;
                        const float v = x[(plane * p.h + iy) * p.w + ix];
                        if (v > best || std::isnan(v)) best = v;
                        if (std::isnan(best)) break;
                    }
                y[(plane * p.oh + oy) * p.ow + ox] = best;
            }
}

}  // namespace reference
}  // namespace strata
