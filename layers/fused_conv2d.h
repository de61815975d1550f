// FusedConv2d: Conv2d, then an optional BatchNorm2d, residual add and ReLU, as one operation for
// inference:
//     y = relu?(bn(conv(x)) + residual)
// The BatchNorm is folded into the convolution (in double):
//     scale[o] = gamma[o] / sqrt(var[o] + eps),  W'[o] = W[o] * scale[o],
//     b'[o] = beta[o] + (b[o] - mean[o]) * scale[o]
// and the residual and ReLU are applied as each output is written. This is the one place where
// a fused convolution picks its backend:
//     Cpu        weights packed once (BatchNorm folded while packing), then the direct kernel
//                or Winograd, whichever is faster for the input's size (kernels/cpu)
//     Cuda       the folded weights uploaded once, one cuDNN call with bias + residual + ReLU
//     Reference  not fused: Conv2d, BatchNorm2d, add and ReLU one after another, the spec the
//                fused forms are tested against
// The derived weights are built on first use and rebuilt when the convolution's or the
// BatchNorm's weights_version() moves. Models use it through backend_fuses(): where a backend
// does not fuse, they run torchvision's unfused lines.
#pragma once
#include <strata/export.h>
#include <memory>
#include <vector>

#include "../core/derived.h"
#include "batch_norm2d.h"
#include "conv2d.h"

namespace strata {

// Whether `backend` has fused convolution kernels (Cpu and Cuda: yes; Reference: no).
STRATA_API bool backend_fuses(Backend backend);

class STRATA_API FusedConv2d {
public:
    // bn may be null (the convolution's own bias, if any, is kept).
    FusedConv2d(std::shared_ptr<const Conv2d> conv, std::shared_ptr<const BatchNorm2d> bn, bool relu);
    // x: [N, C, H, W] on the backend's device; residual (or nullptr): the output's shape, added
    // before the ReLU. On CUDA the output is in the context's layout.
    Tensor forward(const Tensor& x, const Tensor* residual, const RunOptions& options) const;

private:
    struct CpuWeights;
    struct CudaWeights;
    uint64_t source_version() const;
    Tensor forward_reference(const Tensor& x, const Tensor* residual, const RunOptions& options) const;
    // x: checked, contiguous on the CPU; p: its geometry (forward() does both for the two).
    Tensor forward_cpu(const Tensor& x, const Conv2dParams& p, const Tensor* residual, const RunOptions& options) const;
    Tensor forward_cuda(const Tensor& x, const Conv2dParams& p, const Tensor* residual, const RunOptions& options) const;

    std::shared_ptr<const Conv2d> conv_;
    std::shared_ptr<const BatchNorm2d> bn_;
    bool relu_;
    Derived<CpuWeights> cpu_;
    Derived<CudaWeights> cuda_;
};

// The fold above, in double, from host copies of the parameters wherever they live: bias [oc]
// and scale [oc] (empty without bn), and with `with_weight` the folded weights [oc, c/groups,
// kh, kw] (the CPU path never makes them: it hands `scale` to the packing functions instead).
struct STRATA_API FoldedConv2d {
    Tensor weight, bias;
    std::vector<double> scale;
};
STRATA_API FoldedConv2d fold_batch_norm(const Conv2d& conv, const BatchNorm2d* bn, bool with_weight = true);

}  // namespace strata
