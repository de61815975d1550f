// Reference elementwise ops. torch.relu keeps NaN (NaN > 0 is false, but relu(NaN) is NaN).
#include "../relu.h"

#include <cmath>

namespace strata {
namespace reference {

static float relu_value(float v) { return std::isnan(v) ? v : (v > 0.0f ? v : 0.0f); }

void relu(const float* x, float* y, int64_t n) {
    for (int64_t i = 0; i < n; ++i) y[i] = relu_value(x[i]);
}

void add(const float* a, const float* b, float* y, int64_t n, bool relu_after) {
    for (int64_t i = 0; i < n; ++i) {
        const float s = a[i] + b[i];
        y[i] = relu_after ? relu_value(s) : s;
    }
}

}  // namespace reference
}  // namespace strata
