// Conv2d with torch.nn.Conv2d's arguments and defaults; parameters `weight` [out, in/groups,
// kh, kw] and `bias` [out].
//   Conv2d(Conv2dOptions(64, 128, 3).stride(2).padding(1).bias(false))   // as libtorch
//   Conv2d(64, 128, 3, 2, 1, 1, 1, false)                                // the same, positional
#pragma once
#include <strata/export.h>
#include "../core/derived.h"
#include "../core/module.h"
#include "../kernels/conv2d.h"
#include "size2.h"

namespace strata {

// torch.nn.Conv2d's arguments by name; in, out and kernel_size are required.
class STRATA_API Conv2dOptions {
public:
    Conv2dOptions(int64_t in_channels, int64_t out_channels, Size2 kernel_size)
        : in_channels_(in_channels), out_channels_(out_channels), kernel_size_(kernel_size) {}
    Conv2dOptions& stride(Size2 v) { stride_ = v; return *this; }
    Conv2dOptions& padding(Size2 v) { padding_ = v; return *this; }
    Conv2dOptions& dilation(Size2 v) { dilation_ = v; return *this; }
    Conv2dOptions& groups(int64_t v) { groups_ = v; return *this; }
    Conv2dOptions& bias(bool v) { bias_ = v; return *this; }

private:
    friend class Conv2d;
    int64_t in_channels_, out_channels_;
    Size2 kernel_size_, stride_ = 1, padding_ = 0, dilation_ = 1;
    int64_t groups_ = 1;
    bool bias_ = true;
};

class STRATA_API Conv2d : public Module {
public:
    explicit Conv2d(const Conv2dOptions& o)
        : Conv2d(o.in_channels_, o.out_channels_, o.kernel_size_, o.stride_, o.padding_, o.dilation_, o.groups_,
                 o.bias_) {}
    Conv2d(int64_t in_channels, int64_t out_channels, Size2 kernel_size, Size2 stride = 1,
           Size2 padding = 0, Size2 dilation = 1, int64_t groups = 1, bool bias = true);

    std::string type_name() const override { return "Conv2d"; }
    std::string extra_repr() const override;
    Tensor forward(const Tensor& x, const RunOptions& options = {}) const override;
    Shape output_shape(const Shape& input) const override;
    int64_t spatial_stride() const override { return stride_.h; }

    int64_t in_channels() const { return in_channels_; }
    int64_t out_channels() const { return out_channels_; }
    const Tensor& weight() const { return weight_; }
    const Tensor& bias() const { return bias_; }  // undefined when bias=false
    int64_t groups() const { return groups_; }

    // Checks that `x` fits this convolution (errors as "expected 64 input channels, got 3")
    // and returns the kernel parameters for it.
    Conv2dParams params_for(const Tensor& x) const { return params_for(x.shape()); }
    Conv2dParams params_for(const Shape& x) const;

private:
    int64_t in_channels_, out_channels_;
    Size2 kernel_size_, stride_, padding_, dilation_;
    int64_t groups_;
    Tensor weight_, bias_;
    Derived<cpu::PackedConv2dWeight> packed_;  // the CPU backend's pre-packed weights
    Derived<Tensor> cuda_weight_nhwc_;         // the CUDA backend's weights for NHWC activations
};

}  // namespace strata
