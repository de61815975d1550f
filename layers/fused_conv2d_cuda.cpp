// The CUDA fused convolution; SequenceRunner's Backend::Cuda path.
#include "fused_conv2d_cuda.h"

#include <cmath>

#include "../kernels/conv2d.h"
#include "../kernels/cuda_context.h"
#include "common.h"
#include "fused_conv2d.h"

namespace strata {

CudaFusedConv2d::CudaFusedConv2d(const Conv2d& conv, const BatchNorm2d* bn, bool relu) : conv_(&conv), relu_(relu) {
    const FoldedConv2d folded = fold_batch_norm(conv, bn);
    weight_ = folded.weight.to(Device::CUDA);
    weight_nhwc_ = cuda_weight_channels_last(folded.weight);
    bias_ = folded.bias.to(Device::CUDA);
}

Tensor CudaFusedConv2d::forward(const Tensor& input, const Tensor* residual, const RunOptions& options) const {
    STRATA_CHECK(options.backend == Backend::Cuda, "CudaFusedConv2d runs on the cuda backend, not ",
                 backend_name(options.backend));
    const Tensor x = expect_nchw(input, "Conv2d", options);
    expect_weights_on_backend_device({&conv_->weight()}, "Conv2d", options);
    const Conv2dParams p = conv_->params_for(x);
    check_activation_size({p.n, p.oc, p.oh, p.ow}, options, "Conv2d", "output");
    CudaContext& ctx = cuda_context(options, "Conv2d");
    const bool nhwc = ctx.channels_last();
    const Tensor xl = cuda_in_layout(x, options, nhwc);
    Tensor y = ctx.empty({p.n, p.oc, p.oh, p.ow}, nhwc);
    Tensor r;
    Conv2dEpilogue e;
    e.bias = bias_.data<float>();
    e.relu = relu_;
    if (residual) {
        STRATA_CHECK(residual->shape() == y.shape(), "residual of shape ", shape_str(residual->shape()),
                     " for an output of shape ", shape_str(y.shape()));
        expect_on_backend_device(*residual, "Conv2d (residual)", options);
        r = cuda_in_layout(*residual, options, nhwc);
        e.residual = r.data<float>();
    }
    cuda::conv2d(ctx, p, xl.data<float>(), (nhwc ? weight_nhwc_ : weight_).data<float>(), e, y.data<float>(), nhwc);
    return y;
}

// SequenceRunner (fused_conv2d.h) for Backend::Cuda: the group's Conv2d -> BatchNorm2d [-> ReLU]
// as one cuDNN call; the last step's output is returned NCHW if it was requested.
Tensor SequenceRunner::run_fused_cuda(const Group& g, const Tensor& x, const RunOptions& options,
                                      OrderedDict<Tensor>* out) const {
    const Step& first = steps_[g.first];
    Tensor y = first.adapter ? first.adapter(x) : x;
    try {
        expect_nchw(y, "Conv2d", options);  // before folding: a wrong input fails first
        const auto fused = g.fused_cuda->get([&] {
            return CudaFusedConv2d(static_cast<const Conv2d&>(*first.module),
                                   &static_cast<const BatchNorm2d&>(*steps_[g.first + 1].module), g.count == 3);
        });
        y = fused->forward(y, nullptr, options);
    } catch (...) {
        rethrow_within(first.name);
    }
    const Step& last = steps_[g.first + g.count - 1];
    if (out && !last.out_name.empty()) out->insert(last.out_name, as_returned(y, options));
    return y;
}

}  // namespace strata
