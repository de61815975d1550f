// CPU elementwise ops: OpenMP over chunks, SIMD inside. `v < 0 ? 0 : v` keeps NaN like torch.
#include "../elementwise.h"

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

}  // namespace cpu
}  // namespace strata
