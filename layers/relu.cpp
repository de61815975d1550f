#include "relu.h"

#include "../kernels/cuda_context.h"
#include "../kernels/relu.h"
#include "checks.h"
#include "placement.h"

namespace strata {

Shape ReLU::output_shape(const Shape& input) const { return input; }

Tensor ReLU::forward(const Tensor& input, const RunOptions& options) const { return relu(input, options); }

Tensor relu(const Tensor& input, const RunOptions& options) {
    STRATA_CHECK(input.defined() && input.dtype() == DType::Float32,
                 "ReLU expects a float32 tensor");
    expect_on_backend_device(input, "ReLU", options);
    Tensor x, y;
    switch (options.backend) {
        case Backend::Reference:
            x = input.contiguous();
            y = Tensor::empty(x.shape());
            reference::relu(x.data<float>(), y.data<float>(), x.numel());
            break;
        case Backend::Cpu:
            x = input.contiguous();
            y = Tensor::empty(x.shape());
            cpu::relu(x.data<float>(), y.data<float>(), x.numel(), options.threads());
            break;
        case Backend::Cuda: {  // elementwise: any dense layout, kept
            CudaContext& ctx = cuda_context(options, "ReLU");
            const bool nhwc = stored_channels_last(input);
            x = nhwc ? input : input.contiguous();
            y = ctx.empty(x.shape(), nhwc);
            cuda::relu(ctx, x.data<float>(), y.data<float>(), x.numel());
            break;
        }
    }
    return y;
}

}  // namespace strata

namespace strata {

namespace {
Tensor add_then(const Tensor& a_in, const Tensor& b_in, bool relu_after, const RunOptions& options) {
    STRATA_CHECK(a_in.shape() == b_in.shape(), "residual add of shapes ", shape_str(a_in.shape()),
                 " and ", shape_str(b_in.shape()), " (strata does not broadcast)");
    expect_on_backend_device(a_in, "residual add", options);
    expect_on_backend_device(b_in, "residual add", options);
    Tensor a, b, y;
    switch (options.backend) {
        case Backend::Reference:
            a = a_in.contiguous(), b = b_in.contiguous();
            y = Tensor::empty(a.shape());
            reference::add(a.data<float>(), b.data<float>(), y.data<float>(), a.numel(), relu_after);
            break;
        case Backend::Cpu:
            a = a_in.contiguous(), b = b_in.contiguous();
            y = Tensor::empty(a.shape());
            cpu::add(a.data<float>(), b.data<float>(), y.data<float>(), a.numel(), relu_after, options.threads());
            break;
        case Backend::Cuda: {  // both in a's layout
            CudaContext& ctx = cuda_context(options, "residual add");
            const bool nhwc = stored_channels_last(a_in);
            a = nhwc ? a_in : a_in.contiguous();
            b = nhwc ? cuda_in_layout(b_in, options, true) : cuda_in_layout(b_in, options, false).contiguous();
            y = ctx.empty(a.shape(), nhwc);
            cuda::add(ctx, a.data<float>(), b.data<float>(), y.data<float>(), a.numel(), relu_after);
            break;
        }
    }
    return y;
}

}  // namespace

Tensor add_relu(const Tensor& a, const Tensor& b, const RunOptions& options) { return add_then(a, b, true, options); }
Tensor add(const Tensor& a, const Tensor& b, const RunOptions& options) { return add_then(a, b, false, options); }

}  // namespace strata
