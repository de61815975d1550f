// CPU max pooling: OpenMP over (image, channel) planes, separable (rows, then columns).
#include "../max_pool2d.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "parallel_errors.h"

namespace strata {
namespace cpu {

void max_pool2d(const MaxPool2dParams& p, const float* x, float* y, int threads) {
    // Separable: per output row, first the max over the window's rows (contiguous, vectorised),
    // then over the window's columns. `v > best || isnan(v)` keeps NaN as torch does; padded
    // positions are skipped (they count as -inf).
    // Output columns [lo, hi) have their whole window inside the row.
    const int64_t span = (p.kw - 1) * p.dil_w;
    const int64_t lo = std::min(p.ow, (p.pad_w + p.stride_w - 1) / p.stride_w);
    const int64_t last = p.w - 1 - span + p.pad_w;  // the window of ox fits while ox*stride_w <= last
    const int64_t hi = std::max(lo, std::min(p.ow, last >= 0 ? last / p.stride_w + 1 : 0));
    ParallelErrors errors;
#pragma omp parallel num_threads(threads)
    {
        std::vector<float> column_max;
        errors.run([&] { column_max.resize(static_cast<size_t>(p.w)); });
#pragma omp for schedule(static)
        for (int64_t plane = 0; plane < p.n * p.c; ++plane) {
            if (errors.failed()) continue;
            const float* in = x + plane * p.h * p.w;
            float* out = y + plane * p.oh * p.ow;
            for (int64_t oy = 0; oy < p.oh; ++oy) {
                const int64_t y0 = oy * p.stride_h - p.pad_h;
                float* cm = column_max.data();
                std::fill(cm, cm + p.w, -std::numeric_limits<float>::infinity());
                for (int64_t ky = 0; ky < p.kh; ++ky) {
                    const int64_t iy = y0 + ky * p.dil_h;
                    if (iy < 0 || iy >= p.h) continue;
                    const float* row = in + iy * p.w;
#pragma omp simd
                    for (int64_t i = 0; i < p.w; ++i) cm[i] = (row[i] > cm[i] || std::isnan(row[i])) ? row[i] : cm[i];
                }
                // Columns [lo, hi): one window tap at a time over all of them, a strided loop the
                // compiler vectorises. The border columns below.
                float* row_out = out + oy * p.ow;
                std::fill(row_out + lo, row_out + hi, -std::numeric_limits<float>::infinity());
                for (int64_t kx = 0; kx < p.kw; ++kx) {
                    const float* src = cm + lo * p.stride_w - p.pad_w + kx * p.dil_w;
                    const int64_t sw = p.stride_w;
#pragma omp simd
                    for (int64_t i = 0; i < hi - lo; ++i) {
                        const float v = src[i * sw];
                        row_out[lo + i] = (v > row_out[lo + i] || std::isnan(v)) ? v : row_out[lo + i];
                    }
                }
                for (int64_t ox = 0; ox < p.ow; ++ox) {
                    if (ox == lo) ox = hi;
                    if (ox >= p.ow) break;
                    const int64_t x0 = ox * p.stride_w - p.pad_w;
                    const int64_t kx0 = x0 >= 0 ? 0 : (-x0 + p.dil_w - 1) / p.dil_w;
                    const int64_t kx1 = std::min(p.kw, (p.w - x0 + p.dil_w - 1) / p.dil_w);
                    float best = -std::numeric_limits<float>::infinity();
                    for (int64_t kx = kx0; kx < kx1; ++kx) {
                        const float v = cm[x0 + kx * p.dil_w];
                        if (v > best || std::isnan(v)) best = v;
                    }
                    out[oy * p.ow + ox] = best;
                }
            }
        }
    }
    errors.rethrow();
}

}  // namespace cpu
}  // namespace strata
