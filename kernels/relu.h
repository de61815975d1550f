// Elementwise kernels over n contiguous float32 values: relu (max(x, 0), NaN kept as torch does)
// and add (a + b, optionally followed by relu: the residual join of a ResNet block); and
// all_finite, which tells whether an input may take a kernel that mixes neighbouring values.
#pragma once
#include <cstdint>

namespace strata {

namespace reference {
void relu(const float* x, float* y, int64_t n);
void add(const float* a, const float* b, float* y, int64_t n, bool relu_after);
}
namespace cpu {
void relu(const float* x, float* y, int64_t n, int threads);
void add(const float* a, const float* b, float* y, int64_t n, bool relu_after, int threads);
// True when no value is NaN or +-Inf. One thread: it runs at memory speed (0.06 ms over all the
// 3x3 convolution inputs of a ResNet-18 forward at 224), less than waking a team would cost.
bool all_finite(const float* x, int64_t n);
}

class CudaContext;
namespace cuda {
// Device memory on ctx's stream; any layout, as long as a, b and y share it.
void relu(CudaContext& ctx, const float* x, float* y, int64_t n);
void add(CudaContext& ctx, const float* a, const float* b, float* y, int64_t n, bool relu_after);
}  // namespace cuda

}  // namespace strata
