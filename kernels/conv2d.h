// 2-D convolution kernels, as torch.nn.functional.conv2d (cross-correlation, zero padding).
//   x: [n, c, h, w]   weight: [oc, c / groups, kh, kw]   bias: [oc] or nullptr
//   y: [n, oc, oh, ow], oh = (h + 2*pad_h - dil_h*(kh-1) - 1) / stride_h + 1 (same for w)
// All tensors contiguous float32 NCHW (cuda::conv2d: NCHW or NHWC, device memory).
//   reference::conv2d  the readable spec (direct loops, double accumulation)
//   cpu::conv2d        im2col + Eigen GEMM, for one-off calls with unpacked weights
//                      (kernels/cpu/conv2d_im2col.cpp)
//   cpu::conv2d_packed the fast path: weights packed once (pack_conv2d_weight), a
//                      register-blocked GEMM microkernel (one per CPU level: AVX-512, AVX2,
//                      portable; kernels/cpu/isa.h) that reads stride-1 inputs in place (no
//                      im2col), and a fused epilogue: + bias, + residual, ReLU
//                      (kernels/cpu/conv2d_direct.cpp)
//   cpu::conv2d_winograd  3x3 stride-1 convolutions by Winograd's F(2,3)/F(4,3)
//                      (kernels/cpu/conv2d_winograd.cpp)
#pragma once
#include <cstdint>
#include <memory>

#include "../core/cpu_level.h"

namespace strata {

struct Conv2dParams {
    int64_t n, c, h, w;       // input
    int64_t oc, kh, kw;       // output channels, kernel size
    int64_t stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups;
    int64_t oh, ow;           // output size, from compute_output_size()

    // Fills oh/ow; false when the (padded, dilated) kernel does not fit in the input.
    bool compute_output_size() {
        const int64_t eff_kh = dil_h * (kh - 1) + 1, eff_kw = dil_w * (kw - 1) + 1;
        if (h + 2 * pad_h < eff_kh || w + 2 * pad_w < eff_kw) return false;
        oh = (h + 2 * pad_h - eff_kh) / stride_h + 1;
        ow = (w + 2 * pad_w - eff_kw) / stride_w + 1;
        return true;
    }
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
// each block [K][kPackRows] with K = (c/groups)*kh*kw (zero rows pad the last block). The
// layout is the same at every CPU level, so packed weights serve any level.
struct PackedConv2dWeight {
    int64_t oc = 0, K = 0, groups = 1, blocks_per_group = 0;
    std::shared_ptr<float> data;  // 64-byte aligned
};
constexpr int kPackRows = 8;

// row_scale (or nullptr): [oc] factors applied as the weights are packed, each packed value
// being float(weight * row_scale[o]) -- a BatchNorm folded in without a folded copy.
PackedConv2dWeight pack_conv2d_weight(int64_t oc, int64_t K, int64_t groups, const float* weight,
                                      const double* row_scale = nullptr);
// level: the CPU level whose microkernel runs (cpu_level.h; Auto: the process default).
void conv2d_packed(const Conv2dParams& p, const float* x, const PackedConv2dWeight& w,
                   const Conv2dEpilogue& epilogue, float* y, int threads, CpuLevel level = CpuLevel::Auto);

// Winograd F(m x m, 3 x 3) for 3x3, stride 1, dilation 1, ungrouped convolutions (m = 2 or 4;
// kernels/cpu/conv2d_winograd.cpp). Each m x m output tile costs (m+2)^2 multiplies per
// (input, output) channel pair instead of 9 m^2: 2.25x fewer for m = 2, 4x for m = 4, at the
// price of float32 rounding: about 1e-6 (m = 2) and 1e-5..1e-4 (m = 4) relative to max|y|.
// Weights are transformed once: U[(m+2)^2][oc blocks of 8][c][8].
struct WinogradConv2dWeight {
    int m = 0;
    int64_t oc = 0, c = 0, blocks = 0;
    std::shared_ptr<float> data;
};
bool winograd_applicable(const Conv2dParams& p);
// The tile size for n images of oh x ow outputs run on `threads` threads: the m with the fewest
// multiplies once border tiles and partly used vectors are counted (per image when the batch is
// split by image, see batch_split.h), or 0 when the direct kernel is cheaper.
int winograd_tile_for(int64_t n, int64_t oh, int64_t ow, int threads);  // 0: use the direct kernel
WinogradConv2dWeight pack_conv2d_winograd(int m, int64_t oc, int64_t c, const float* weight,
                                          const double* row_scale = nullptr);  // as pack_conv2d_weight
void conv2d_winograd(const Conv2dParams& p, const float* x, const WinogradConv2dWeight& w,
                     const Conv2dEpilogue& epilogue, float* y, int threads, CpuLevel level = CpuLevel::Auto);
}  // namespace cpu

class CudaContext;
namespace cuda {
// cuDNN convolution on ctx's stream, all pointers device memory. With channels_last, x, y and
// the residual are NHWC and weight is [oc, kh, kw, c/groups]; otherwise all NCHW as above.
// The algorithm is cuDNN's fastest for this shape, searched once and cached in ctx. With ReLU
// and a bias, bias + residual + ReLU run inside cudnnConvolutionBiasActivationForward.
void conv2d(CudaContext& ctx, const Conv2dParams& p, const float* x, const float* weight,
            const Conv2dEpilogue& epilogue, float* y, bool channels_last);
}  // namespace cuda

}  // namespace strata
