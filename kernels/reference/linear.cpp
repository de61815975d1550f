// Reference linear layer: a dot product per output, accumulated in double.
#include "../linear.h"

namespace strata {
namespace reference {

void linear(const LinearParams& p, const float* x, const float* weight, const float* bias, float* y) {
    for (int64_t b = 0; b < p.batch; ++b)
        for (int64_t o = 0; o < p.out; ++o) {
            double acc = bias ? bias[o] : 0.0;
            for (int64_t i = 0; i < p.in; ++i)
                acc += static_cast<double>(x[b * p.in + i]) * weight[o * p.in + i];
            y[b * p.out + o] = static_cast<float>(acc);
        }
}

}  // namespace reference
}  // namespace strata
