#include "batch_norm2d.h"

#include <sstream>

#include "../kernels/batch_norm.h"
#include "../kernels/cuda_context.h"
#include "checks.h"
#include "placement.h"

namespace strata {

BatchNorm2d::BatchNorm2d(int64_t num_features, double eps, double momentum, bool affine,
                         bool track_running_stats)
    : num_features_(num_features), eps_(eps), momentum_(momentum) {
    STRATA_CHECK(num_features > 0, "BatchNorm2d: num_features must be positive, got ", num_features);
    STRATA_CHECK(eps > 0, "BatchNorm2d: eps must be positive, got ", eps);
    STRATA_CHECK(affine && track_running_stats,
                 "BatchNorm2d: strata runs inference only; it needs affine=true and "
                 "track_running_stats=true");
    weight_ = register_parameter("weight", Tensor::full({num_features}, 1.0f));
    bias_ = register_parameter("bias", Tensor::zeros({num_features}));
    running_mean_ = register_buffer("running_mean", Tensor::zeros({num_features}));
    running_var_ = register_buffer("running_var", Tensor::full({num_features}, 1.0f));
    register_buffer("num_batches_tracked", Tensor::zeros({}, DType::Int64));
}

std::string BatchNorm2d::extra_repr() const {
    std::ostringstream os;
    os << num_features_ << ", eps=" << eps_ << ", momentum=" << momentum_
       << ", affine=True, track_running_stats=True";
    return os.str();
}

Shape BatchNorm2d::output_shape(const Shape& input) const {
    expect_nchw_shape(input, "BatchNorm2d");
    STRATA_CHECK(input[1] == num_features_, "expected ", num_features_, " channels, got ", input[1], " (input shape ",
                 shape_str(input), ")");
    return input;
}

Tensor BatchNorm2d::forward(const Tensor& input, const RunOptions& options) const {
    const Tensor x = expect_nchw(input, "BatchNorm2d", options);
    expect_weights_on_backend_device({&weight_, &bias_, &running_mean_, &running_var_}, "BatchNorm2d", options);
    STRATA_CHECK(x.size(1) == num_features_, "expected ", num_features_, " channels, got ",
                 x.size(1), " (input shape ", shape_str(x.shape()), ")");
    const BatchNormParams p{x.size(0), x.size(1), x.size(2) * x.size(3), eps_};
    Tensor y;
    switch (options.backend) {
        case Backend::Reference:
            y = Tensor::empty(x.shape());
            reference::batch_norm(p, x.data<float>(), weight_.data<float>(), bias_.data<float>(),
                                  running_mean_.data<float>(), running_var_.data<float>(),
                                  y.data<float>());
            break;
        case Backend::Cpu:
            y = Tensor::empty(x.shape());
            cpu::batch_norm(p, x.data<float>(), weight_.data<float>(), bias_.data<float>(),
                            running_mean_.data<float>(), running_var_.data<float>(),
                            y.data<float>(), options.threads());
            break;
        case Backend::Cuda: {  // the output keeps the input's layout
            CudaContext& ctx = cuda_context(options, "BatchNorm2d");
            const bool nhwc = stored_channels_last(x);
            y = ctx.empty(x.shape(), nhwc);
            cuda::batch_norm(ctx, p, x.data<float>(), weight_.data<float>(), bias_.data<float>(),
                             running_mean_.data<float>(), running_var_.data<float>(), y.data<float>(), nhwc);
            break;
        }
    }
    return y;
}

}  // namespace strata
