// 2-D convolution kernels, as torch.nn.functional.conv2d (cross-correlation, zero padding).
//   x: [n, c, h, w]   weight: [oc, c / groups, kh, kw]   bias: [oc] or nullptr
//   y: [n, oc, oh, ow], oh = (h + 2*pad_h - dil_h*(kh-1) - 1) / stride_h + 1 (same for w)
// All tensors contiguous float32 NCHW. reference:: is the readable spec, cpu:: is im2col +
// Eigen GEMM with an explicit OpenMP split.
#pragma once
#include <cstdint>

namespace strata {

struct Conv2dParams {
    int64_t n, c, h, w;       // input
    int64_t oc, kh, kw;       // output channels, kernel size
    int64_t stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups;
    int64_t oh, ow;           // output size, from output_size()

    // Fills oh/ow; false when the (padded, dilated) kernel does not fit in the input.
    bool compute_output_size();
};

namespace reference {
void conv2d(const Conv2dParams& p, const float* x, const float* weight, const float* bias, float* y);
}
namespace cpu {
void conv2d(const Conv2dParams& p, const float* x, const float* weight, const float* bias, float* y,
            int threads);
}

}  // namespace strata
