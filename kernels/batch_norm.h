// BatchNorm2d in inference mode (running statistics), as torch.nn.functional.batch_norm:
//   y = (x - mean[c]) / sqrt(var[c] + eps) * weight[c] + bias[c]
//   x, y: [n, c, hw] contiguous float32 (hw = h*w); weight, bias, mean, var: [c]
#pragma once
#include <cstdint>

namespace strata {

struct BatchNormParams {
    int64_t n, c, hw;
    double eps;
};

namespace reference {
void batch_norm(const BatchNormParams& p, const float* x, const float* weight, const float* bias,
                const float* mean, const float* var, float* y);
}
namespace cpu {
void batch_norm(const BatchNormParams& p, const float* x, const float* weight, const float* bias,
                const float* mean, const float* var, float* y, int threads);
}

class CudaContext;
namespace cuda {
// Device memory on ctx's stream; x, y NCHW, or NHWC ([n, hw, c]) with channels_last.
void batch_norm(CudaContext& ctx, const BatchNormParams& p, const float* x, const float* weight,
                const float* bias, const float* mean, const float* var, float* y, bool channels_last);
}  // namespace cuda

}  // namespace strata
