// The CUDA form of FusedConv2d (fused_conv2d.h), used by SequenceRunner and the ResNet blocks
// for Backend::Cuda: Conv2d with a following BatchNorm2d folded into its weights and bias at
// load (on the host, in double, the same fold as the CPU path), uploaded once in NCHW and NHWC
// order, and bias + residual + ReLU applied inside cuDNN's fused convolution call. As on the CPU,
// only runs whose intermediate outputs nobody asked for are fused.
#pragma once
#include "../core/run_options.h"
#include "batch_norm2d.h"
#include "conv2d.h"

namespace strata {

// fold_batch_norm: fused_conv2d.h
class CudaFusedConv2d {
public:
    CudaFusedConv2d(const Conv2d& conv, const BatchNorm2d* bn, bool relu);
    // x: [N, C, H, W] on the device; residual (or nullptr): the output's shape, added before
    // the ReLU. The output is in the context's layout (CudaContext::channels_last()).
    Tensor forward(const Tensor& x, const Tensor* residual, const RunOptions& options) const;

private:
    const Conv2d* conv_;  // for input checks and geometry; the weights used are the folded ones
    Tensor weight_, weight_nhwc_, bias_;  // folded, on the device
    bool relu_;
};

}  // namespace strata
