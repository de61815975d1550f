#include "linear.h"

#include "../kernels/cuda_context.h"
#include "../kernels/linear.h"
#include "checks.h"
#include "placement.h"

namespace strata {

Linear::Linear(int64_t in_features, int64_t out_features, bool bias)
    : in_features_(in_features), out_features_(out_features) {
    STRATA_CHECK(in_features > 0 && out_features > 0, "Linear: features must be positive, got ",
                 in_features, " and ", out_features);
    weight_ = register_parameter("weight", Tensor::zeros({out_features, in_features}));
    if (bias) bias_ = register_parameter("bias", Tensor::zeros({out_features}));
}

std::string Linear::extra_repr() const {
    return "in_features=" + std::to_string(in_features_) + ", out_features=" +
           std::to_string(out_features_) + ", bias=" + (bias_.defined() ? "True" : "False");
}

Shape Linear::output_shape(const Shape& input) const {
    STRATA_CHECK(!input.empty(), "Linear expects a float32 tensor of shape [..., ", in_features_, "]");
    STRATA_CHECK(input.back() == in_features_, "expected input of shape [..., ", in_features_, "], got ",
                 shape_str(input), input.size() == 4 ? " (a 4-D input needs a flatten first)" : "");
    Shape out = input;
    out.back() = out_features_;
    return out;
}

Tensor Linear::forward(const Tensor& input, const RunOptions& options) const {
    STRATA_CHECK(input.defined() && input.dtype() == DType::Float32 && input.dim() >= 1,
                 "Linear expects a float32 tensor of shape [..., ", in_features_, "]");
    STRATA_CHECK(input.size(-1) == in_features_, "expected input of shape [..., ", in_features_,
                 "], got ", shape_str(input.shape()),
                 input.dim() == 4 ? " (a 4-D input needs a flatten first)" : "");
    expect_on_backend_device(input, "Linear", options);
    expect_weights_on_backend_device({&weight_, &bias_}, "Linear", options);
    Shape out_shape = input.shape();
    out_shape.back() = out_features_;
    check_activation_size(input.shape(), options, "Linear", "input");
    check_activation_size(out_shape, options, "Linear", "output");
    const Tensor x = input.contiguous();
    const LinearParams p{x.numel() / in_features_, in_features_, out_features_};
    const float* b = bias_.defined() ? bias_.data<float>() : nullptr;
    Tensor y;
    switch (options.backend) {
        case Backend::Reference:
            y = Tensor::empty(out_shape);
            reference::linear(p, x.data<float>(), weight_.data<float>(), b, y.data<float>());
            break;
        case Backend::Cpu:
            y = Tensor::empty(out_shape);
            cpu::linear(p, x.data<float>(), weight_.data<float>(), b, y.data<float>(),
                        options.threads());
            break;
        case Backend::Cuda: {
            CudaContext& ctx = cuda_context(options, "Linear");
            y = ctx.empty(out_shape);
            cuda::linear(ctx, p, x.data<float>(), weight_.data<float>(), b, y.data<float>());
            break;
        }
    }
    return y;
}

}  // namespace strata
