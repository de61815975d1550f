// Conv2d with torch.nn.Conv2d's arguments and defaults; parameters `weight` [out, in/groups,
// kh, kw] and `bias` [out].
#pragma once
#include "../core/epoch_cache.h"
#include "../core/module.h"
#include "../kernels/conv2d.h"
#include "common.h"

namespace strata {

class Conv2d : public Module {
public:
    Conv2d(int64_t in_channels, int64_t out_channels, Size2 kernel_size, Size2 stride = 1,
           Size2 padding = 0, Size2 dilation = 1, int64_t groups = 1, bool bias = true);

    std::string type_name() const override { return "Conv2d"; }
    std::string extra_repr() const override;
    Tensor forward(const Tensor& x, const RunOptions& options = {}) const override;

    int64_t in_channels() const { return in_channels_; }
    int64_t out_channels() const { return out_channels_; }
    const Tensor& weight() const { return weight_; }
    const Tensor& bias() const { return bias_; }  // undefined when bias=false
    int64_t groups() const { return groups_; }

    // Checks that `x` fits this convolution (errors as "expected 64 input channels, got 3")
    // and returns the kernel parameters for it.
    Conv2dParams params_for(const Tensor& x) const;

private:
    int64_t in_channels_, out_channels_;
    Size2 kernel_size_, stride_, padding_, dilation_;
    int64_t groups_;
    Tensor weight_, bias_;
    EpochCache<cpu::PackedConv2dWeight> packed_;  // the CPU backend's pre-packed weights
    EpochCache<Tensor> cuda_weight_nhwc_;         // the CUDA backend's weights for NHWC activations
};

}  // namespace strata
