// Adaptive average pooling, as torch.nn.functional.adaptive_avg_pool2d.
//   x: [n, c, h, w] contiguous float32; y: [n, c, oh, ow]
// Output cell (i, j) averages rows [floor(i*h/oh), ceil((i+1)*h/oh)) and the same for columns.
#pragma once
#include <cstdint>

namespace strata {

struct AdaptiveAvgPool2dParams {
    int64_t n, c, h, w, oh, ow;
};

namespace reference {
void adaptive_avg_pool2d(const AdaptiveAvgPool2dParams& p, const float* x, float* y);
}
namespace cpu {
void adaptive_avg_pool2d(const AdaptiveAvgPool2dParams& p, const float* x, float* y, int threads);
}

class CudaContext;
namespace cuda {
// Device memory on ctx's stream; x, y NCHW, or NHWC with channels_last.
void adaptive_avg_pool2d(CudaContext& ctx, const AdaptiveAvgPool2dParams& p, const float* x, float* y,
                         bool channels_last);
}  // namespace cuda

}  // namespace strata
