// CPU elementwise ops: OpenMP over chunks, SIMD inside. `v < 0 ? 0 : v` keeps NaN like torch.
#include "../relu.h"

#include <cstring>

namespace strata {
namespace cpu {

void relu(const float* x, float* y, int64_t n, int threads) {
#pragma omp parallel for simd num_threads(threads) schedule(static)
    for (int64_t i = 0; i < n; ++i) y[i] = x[i] < 0.0f ? 0.0f : x[i];
}

void add(const float* a, const float* b, float* y, int64_t n, bool relu_after, int threads) {
    if (relu_after) {
#pragma omp parallel for simd num_threads(threads) schedule(static)
        for (int64_t i = 0; i < n; ++i) {
            const float s = a[i] + b[i];
            y[i] = s < 0.0f ? 0.0f : s;
        }
    } else {
#pragma omp parallel for simd num_threads(threads) schedule(static)
        for (int64_t i = 0; i < n; ++i) y[i] = a[i] + b[i];
    }
}

bool all_finite(const float* x, int64_t n) {
    // A float is NaN or Inf exactly when its exponent bits are all ones. Branch-free, so it
    // vectorises.
    int non_finite = 0;
#pragma omp simd reduction(| : non_finite)
    for (int64_t i = 0; i < n; ++i) {
        uint32_t bits;
        std::memcpy(&bits, x + i, sizeof bits);
        non_finite |= (bits & 0x7f800000u) == 0x7f800000u;
    }
    return non_finite == 0;
}

}  // namespace cpu
}  // namespace strata
