#include "max_pool2d.h"

#include "../kernels/cuda_context.h"
#include "../kernels/max_pool2d.h"
#include "checks.h"
#include "placement.h"

namespace strata {

MaxPool2d::MaxPool2d(Size2 kernel_size, Size2 stride, Size2 padding, Size2 dilation, bool ceil_mode)
    : kernel_size_(kernel_size), stride_(stride.h == 0 && stride.w == 0 ? kernel_size : stride),
      padding_(padding), dilation_(dilation), ceil_mode_(ceil_mode) {
    STRATA_CHECK(kernel_size_.h > 0 && kernel_size_.w > 0 && stride_.h > 0 && stride_.w > 0 &&
                     dilation_.h > 0 && dilation_.w > 0,
                 "MaxPool2d: kernel_size, stride and dilation must be positive");
    // torch: "pad should be at most half of effective kernel size"
    STRATA_CHECK(padding_.h >= 0 && padding_.w >= 0 && padding_.h <= kernel_size_.h / 2 &&
                     padding_.w <= kernel_size_.w / 2,
                 "MaxPool2d: padding ", padding_.str(), " must be at most half of kernel_size ",
                 kernel_size_.str());
}

std::string MaxPool2d::extra_repr() const {
    auto one = [](const Size2& s) { return s.h == s.w ? std::to_string(s.h) : s.str(); };
    return "kernel_size=" + one(kernel_size_) + ", stride=" + one(stride_) + ", padding=" +
           one(padding_) + ", dilation=" + one(dilation_) +
           ", ceil_mode=" + (ceil_mode_ ? "True" : "False");
}

MaxPool2dParams MaxPool2d::params_for(const Shape& x) const {
    MaxPool2dParams p{};
    p.n = x[0]; p.c = x[1]; p.h = x[2]; p.w = x[3];
    p.kh = kernel_size_.h; p.kw = kernel_size_.w;
    p.stride_h = stride_.h; p.stride_w = stride_.w;
    p.pad_h = padding_.h; p.pad_w = padding_.w;
    p.dil_h = dilation_.h; p.dil_w = dilation_.w;
    p.ceil_mode = ceil_mode_;
    STRATA_CHECK(p.compute_output_size(), "input of spatial size ", p.h, "x", p.w,
                 " is too small for kernel_size ", kernel_size_.str(), " with padding ",
                 padding_.str());
    return p;
}

Shape MaxPool2d::output_shape(const Shape& input) const {
    expect_nchw_shape(input, "MaxPool2d");
    const MaxPool2dParams p = params_for(input);
    return {p.n, p.c, p.oh, p.ow};
}

Tensor MaxPool2d::forward(const Tensor& input, const RunOptions& options) const {
    const Tensor x = expect_nchw(input, "MaxPool2d", options);
    const MaxPool2dParams p = params_for(x.shape());
    Tensor y;
    switch (options.backend) {
        case Backend::Reference:
            y = Tensor::empty({p.n, p.c, p.oh, p.ow});
            reference::max_pool2d(p, x.data<float>(), y.data<float>());
            break;
        case Backend::Cpu:
            y = Tensor::empty({p.n, p.c, p.oh, p.ow});
            cpu::max_pool2d(p, x.data<float>(), y.data<float>(), options.threads());
            break;
        case Backend::Cuda: {  // the output keeps the input's layout
            CudaContext& ctx = cuda_context(options, "MaxPool2d");
            const bool nhwc = stored_channels_last(x);
            y = ctx.empty({p.n, p.c, p.oh, p.ow}, nhwc);
            cuda::max_pool2d(ctx, p, x.data<float>(), y.data<float>(), nhwc);
            break;
        }
    }
    return y;
}

}  // namespace strata
