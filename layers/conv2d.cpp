// Conv2d: validates the call and picks the kernel (the one backend switch for convolution).
#include "conv2d.h"

#include "../kernels/conv2d.h"
#include "../kernels/cuda_context.h"
#include "checks.h"
#include "placement.h"

namespace strata {

Conv2d::Conv2d(int64_t in_channels, int64_t out_channels, Size2 kernel_size, Size2 stride,
               Size2 padding, Size2 dilation, int64_t groups, bool bias)
    : in_channels_(in_channels), out_channels_(out_channels), kernel_size_(kernel_size),
      stride_(stride), padding_(padding), dilation_(dilation), groups_(groups) {
    STRATA_CHECK(in_channels > 0 && out_channels > 0, "Conv2d: channels must be positive, got ",
                 in_channels, " and ", out_channels);
    STRATA_CHECK(groups > 0 && in_channels % groups == 0 && out_channels % groups == 0,
                 "Conv2d: in_channels (", in_channels, ") and out_channels (", out_channels,
                 ") must be divisible by groups (", groups, ")");
    STRATA_CHECK(kernel_size.h > 0 && kernel_size.w > 0 && stride.h > 0 && stride.w > 0 &&
                     dilation.h > 0 && dilation.w > 0 && padding.h >= 0 && padding.w >= 0,
                 "Conv2d: kernel_size, stride and dilation must be positive and padding "
                 "non-negative, got kernel_size=", kernel_size.str(), " stride=", stride.str(),
                 " padding=", padding.str(), " dilation=", dilation.str());
    weight_ = register_parameter(
        "weight", Tensor::zeros({out_channels, in_channels / groups, kernel_size.h, kernel_size.w}));
    if (bias) bias_ = register_parameter("bias", Tensor::zeros({out_channels}));
}

std::string Conv2d::extra_repr() const {
    std::string s = std::to_string(in_channels_) + ", " + std::to_string(out_channels_) +
                    ", kernel_size=" + kernel_size_.str() + ", stride=" + stride_.str();
    if (!(padding_ == Size2(0))) s += ", padding=" + padding_.str();
    if (!(dilation_ == Size2(1))) s += ", dilation=" + dilation_.str();
    if (groups_ != 1) s += ", groups=" + std::to_string(groups_);
    if (!bias_.defined()) s += ", bias=False";
    return s;
}

Conv2dParams Conv2d::params_for(const Shape& x) const {
    STRATA_CHECK(x[1] == in_channels_, "expected ", in_channels_, " input channels, got ", x[1], " (input shape ",
                 shape_str(x), ")");
    Conv2dParams p{};
    p.n = x[0]; p.c = x[1]; p.h = x[2]; p.w = x[3];
    p.oc = out_channels_; p.kh = kernel_size_.h; p.kw = kernel_size_.w;
    p.stride_h = stride_.h; p.stride_w = stride_.w;
    p.pad_h = padding_.h; p.pad_w = padding_.w;
    p.dil_h = dilation_.h; p.dil_w = dilation_.w;
    p.groups = groups_;
    STRATA_CHECK(p.compute_output_size(), "input of spatial size ", p.h, "x", p.w, " (padded ",
                 p.h + 2 * p.pad_h, "x", p.w + 2 * p.pad_w, ") is smaller than the kernel ",
                 dilation_.h * (p.kh - 1) + 1, "x", dilation_.w * (p.kw - 1) + 1);
    return p;
}

Shape Conv2d::output_shape(const Shape& input) const {
    expect_nchw_shape(input, "Conv2d");
    const Conv2dParams p = params_for(input);
    return {p.n, p.oc, p.oh, p.ow};
}

Tensor Conv2d::forward(const Tensor& input, const RunOptions& options) const {
    const Tensor x = expect_nchw(input, "Conv2d", options);
    expect_weights_on_backend_device({&weight_, &bias_}, "Conv2d", options);
    const Conv2dParams p = params_for(x);
    check_activation_size({p.n, p.oc, p.oh, p.ow}, options, "Conv2d", "output");
    const float* b = bias_.defined() ? bias_.data<float>() : nullptr;
    Tensor y;
    switch (options.backend) {
        case Backend::Reference:
            y = Tensor::empty({p.n, p.oc, p.oh, p.ow});
            reference::conv2d(p, x.data<float>(), weight_.data<float>(), b, y.data<float>());
            break;
        case Backend::Cuda: {
            // Activations in the context's layout; the input is converted at the edge if needed.
            CudaContext& ctx = cuda_context(options, "Conv2d");
            const bool nhwc = ctx.channels_last();
            const Tensor xl = cuda_in_layout(x, options, nhwc);
            const Tensor w = nhwc ? *cuda_weight_nhwc_.get(weights_version(), [&] { return cuda_weight_channels_last(weight_); }) : weight_;
            y = ctx.empty({p.n, p.oc, p.oh, p.ow}, nhwc);
            Conv2dEpilogue epilogue;
            epilogue.bias = b;
            cuda::conv2d(ctx, p, xl.data<float>(), w.data<float>(), epilogue, y.data<float>(), nhwc);
            break;
        }
        case Backend::Cpu: {
            y = Tensor::empty({p.n, p.oc, p.oh, p.ow});
            const auto packed = packed_.get(weights_version(), [&] {
                auto w = cpu::pack_conv2d_weight(p.oc, weight_.numel() / p.oc, p.groups, weight_.data<float>());
                release_packed_source(weight_);
                return w;
            });
            Conv2dEpilogue epilogue;
            epilogue.bias = b;
            cpu::conv2d_packed(p, x.data<float>(), *packed, epilogue, y.data<float>(), options.threads(), options.cpu);
            break;
        }
    }
    return y;
}

}  // namespace strata
