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
    bool compute_output_size() {
        oh = pooled_size(h, kh, stride_h, pad_h, dil_h, ceil_mode);
        ow = pooled_size(w, kw, stride_w, pad_w, dil_w, ceil_mode);
        return oh > 0 && ow > 0;
    }
    // One dimension's output size; with ceil_mode the last window must start inside the input
    // or the left padding (torch's rule).
    static int64_t pooled_size(int64_t in, int64_t k, int64_t s, int64_t pad, int64_t dil, bool ceil_mode) {
        const int64_t span = in + 2 * pad - dil * (k - 1) - 1;
        if (span < 0) return 0;
        int64_t out = (ceil_mode ? (span + s - 1) / s : span / s) + 1;
        if (ceil_mode && (out - 1) * s >= in + pad) --out;
        return out;
    }
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
