// Reference BatchNorm: the formula per element, in double.
#include "../batch_norm.h"

#include <cmath>

namespace strata {
namespace reference {

void batch_norm(const BatchNormParams& p, const float* x, const float* weight, const float* bias,
                const float* mean, const float* var, float* y) {
    for (int64_t n = 0; n < p.n; ++n)
        for (int64_t c = 0; c < p.c; ++c)
            for (int64_t i = 0; i < p.hw; ++i) {
                const int64_t k = (n * p.c + c) * p.hw + i;
                const double norm = (x[k] - static_cast<double>(mean[c])) / std::sqrt(var[c] + p.eps);
                y[k] = static_cast<float>(norm * weight[c] + bias[c]);
            }
}

}  // namespace reference
}  // namespace strata
