// Max pooling, as torch.nn.functional.max_pool2d.
//   x: [n, c, h, w] contiguous float32; y: [n, c, oh, ow]
// Padding never wins (it is -inf); NaN propagates; with ceil_mode the last window must start
// inside the input or its left/top padding (torch's rule).
#pragma once
#include <cstdint>

namespace strata {

struct MaxPool2dParams {
    int64_t n, c, h, w;
    int64_t kh, kw, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w;
    bool ceil_mode;
    int64_t oh, ow;

    // Fills oh/ow as torch does; false when the output would be empty.
    bool compute_output_size();
};

namespace reference {
void max_pool2d(const MaxPool2dParams& p, const float* x, float* y);
}
namespace cpu {
void max_pool2d(const MaxPool2dParams& p, const float* x, float* y, int threads);
}

class CudaContext;
namespace cuda {
// Device memory on ctx's stream; x, y NCHW, or NHWC with channels_last.
void max_pool2d(CudaContext& ctx, const MaxPool2dParams& p, const float* x, float* y, bool channels_last);
}  // namespace cuda

}  // namespace strata
