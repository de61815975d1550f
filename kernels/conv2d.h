// 2-D convolution kernels, as torch.nn.functional.conv2d (cross-correlation, zero padding).
//   x: [n, c, h, w]   weight: [oc, c / groups, kh, kw]   bias: [oc] or nullptr
//   y: [n, oc, oh, ow], oh = (h + 2*pad_h - dil_h*(kh-1) - 1) / stride_h + 1 (same for w)
// All tensors contiguous float32 NCHW.
//   reference::conv2d  the readable spec (direct loops, double accumulation)
//   cpu::conv2d        im2col + Eigen GEMM, for one-off calls with unpacked weights
//   cpu::conv2d_packed the fast path: weights packed once (pack_conv2d_weight), an AVX-512
//                      register-blocked GEMM microkernel that reads stride-1 inputs in place
//                      (no im2col), and a fused epilogue: + bias, + residual, ReLU.
#pragma once
#include <cstdint>
#include <memory>

namespace strata {

struct Conv2dParams {
    int64_t n, c, h, w;       // input
    int64_t oc, kh, kw;       // output channels, kernel size
    int64_t stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups;
    int64_t oh, ow;           // output size, from compute_output_size()

    // Fills oh/ow; false when the (padded, dilated) kernel does not fit in the input.
    bool compute_output_size();
};

// What happens to each output value after the sum: y = relu?(sum + bias[o] + residual[n,o,i,j]).
struct Conv2dEpilogue {
    const float* bias = nullptr;      // [oc] or nullptr
    const float* residual = nullptr;  // [n, oc, oh, ow] or nullptr
    bool relu = false;
};

namespace reference {
void conv2d(const Conv2dParams& p, const float* x, const float* weight, const float* bias, float* y);
}

namespace cpu {
void conv2d(const Conv2dParams& p, const float* x, const float* weight, const float* bias, float* y,
            int threads);

// Weights rearranged for the microkernel: per group, blocks of kPackRows output channels,
// each block [K][kPackRows] with K = (c/groups)*kh*kw (zero rows pad the last block).
// Without AVX-512 it holds the plain [oc][K] layout and conv2d_packed uses im2col + Eigen.
struct PackedConv2dWeight {
    int64_t oc = 0, K = 0, groups = 1, blocks_per_group = 0;
    std::shared_ptr<float> data;  // 64-byte aligned
};
constexpr int kPackRows = 8;

PackedConv2dWeight pack_conv2d_weight(int64_t oc, int64_t K, int64_t groups, const float* weight);
void conv2d_packed(const Conv2dParams& p, const float* x, const PackedConv2dWeight& w,
                   const Conv2dEpilogue& epilogue, float* y, int threads);
}  // namespace cpu

}  // namespace strata
