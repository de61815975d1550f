// CPU BatchNorm: one scale and shift per channel, then a vectorisable multiply-add per plane.
#include "../batch_norm.h"

#include <cmath>
#include <vector>

namespace strata {
namespace cpu {

void batch_norm(const BatchNormParams& p, const float* x, const float* weight, const float* bias,
                const float* mean, const float* var, float* y, int threads) {
    std::vector<float> scale(static_cast<size_t>(p.c)), shift(static_cast<size_t>(p.c));
    for (int64_t c = 0; c < p.c; ++c) {
        const double s = weight[c] / std::sqrt(static_cast<double>(var[c]) + p.eps);
        scale[c] = static_cast<float>(s);
        shift[c] = static_cast<float>(bias[c] - mean[c] * s);
    }
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t plane = 0; plane < p.n * p.c; ++plane) {
        const float s = scale[plane % p.c], t = shift[plane % p.c];
        const float* in = x + plane * p.hw;
        float* out = y + plane * p.hw;
#pragma omp simd
        for (int64_t i = 0; i < p.hw; ++i) out[i] = in[i] * s + t;
    }
}

}  // namespace cpu
}  // namespace strata
