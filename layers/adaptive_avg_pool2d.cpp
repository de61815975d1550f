#include "adaptive_avg_pool2d.h"

#include "../kernels/adaptive_avg_pool2d.h"
#include "../kernels/cuda_context.h"
#include "checks.h"
#include "placement.h"

namespace strata {

AdaptiveAvgPool2d::AdaptiveAvgPool2d(Size2 output_size) : output_size_(output_size) {
    STRATA_CHECK(output_size.h > 0 && output_size.w > 0,
                 "AdaptiveAvgPool2d: output_size must be positive, got ", output_size.str());
}

std::string AdaptiveAvgPool2d::extra_repr() const {
    return "output_size=" + output_size_.str();
}

Shape AdaptiveAvgPool2d::output_shape(const Shape& input) const {
    expect_nchw_shape(input, "AdaptiveAvgPool2d");
    STRATA_CHECK(input[2] > 0 && input[3] > 0, "input has an empty spatial size ", shape_str(input));
    return {input[0], input[1], output_size_.h, output_size_.w};
}

Tensor AdaptiveAvgPool2d::forward(const Tensor& input, const RunOptions& options) const {
    const Tensor x = expect_nchw(input, "AdaptiveAvgPool2d", options);
    STRATA_CHECK(x.size(2) > 0 && x.size(3) > 0, "input has an empty spatial size ",
                 shape_str(x.shape()));
    const AdaptiveAvgPool2dParams p{x.size(0), x.size(1), x.size(2), x.size(3), output_size_.h,
                                    output_size_.w};
    Tensor y;
    switch (options.backend) {
        case Backend::Reference:
            y = Tensor::empty({p.n, p.c, p.oh, p.ow});
            reference::adaptive_avg_pool2d(p, x.data<float>(), y.data<float>());
            break;
        case Backend::Cpu:
            y = Tensor::empty({p.n, p.c, p.oh, p.ow});
            cpu::adaptive_avg_pool2d(p, x.data<float>(), y.data<float>(), options.threads());
            break;
        case Backend::Cuda: {  // the output keeps the input's layout
            CudaContext& ctx = cuda_context(options, "AdaptiveAvgPool2d");
            const bool nhwc = stored_channels_last(x);
            y = ctx.empty({p.n, p.c, p.oh, p.ow}, nhwc);
            cuda::adaptive_avg_pool2d(ctx, p, x.data<float>(), y.data<float>(), nhwc);
            break;
        }
    }
    return y;
}

}  // namespace strata
