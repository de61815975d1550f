// Fully connected layer, as torch.nn.functional.linear: y = x * weight^T + bias.
//   x: [batch, in]   weight: [out, in]   bias: [out] or nullptr   y: [batch, out]
#pragma once
#include <cstdint>

namespace strata {

struct LinearParams {
    int64_t batch, in, out;
};

namespace reference {
void linear(const LinearParams& p, const float* x, const float* weight, const float* bias, float* y);
}
namespace cpu {
void linear(const LinearParams& p, const float* x, const float* weight, const float* bias, float* y,
            int threads);
}

class CudaContext;
namespace cuda {
// cuBLASLt matrix product with the bias added in its epilogue; device memory on ctx's stream.
void linear(CudaContext& ctx, const LinearParams& p, const float* x, const float* weight, const float* bias,
            float* y);
}  // namespace cuda

}  // namespace strata
