#include "fused_conv2d.h"

#include <algorithm>
#include <cmath>
#include <mutex>

#include "../kernels/cuda_context.h"
#include "../kernels/relu.h"
#include "relu.h"
#include "checks.h"
#include "placement.h"

namespace strata {

bool backend_fuses(Backend backend) { return backend != Backend::Reference; }

namespace {
void expect_residual_shape(const Tensor& residual, const Shape& output) {
    STRATA_CHECK(residual.shape() == output, "residual of shape ", shape_str(residual.shape()),
                 " for an output of shape ", shape_str(output));
}
}  // namespace

FoldedConv2d fold_batch_norm(const Conv2d& conv, const BatchNorm2d* bn, bool with_weight) {
    const auto host = [](const Tensor& t) { return t.to(Device::CPU); };
    FoldedConv2d f;
    const int64_t oc = conv.weight().size(0), K = conv.weight().numel() / oc;
    if (with_weight) f.weight = host(conv.weight()).clone();
    f.bias = conv.bias().defined() ? host(conv.bias()).clone() : Tensor::zeros({oc});
    if (!bn) return f;
    STRATA_CHECK(bn->num_features() == oc, "cannot fold BatchNorm2d(", bn->num_features(),
                 ") into a convolution with ", oc, " output channels");
    const Tensor gamma = host(bn->weight()), beta = host(bn->bias());
    const Tensor mean = host(bn->running_mean()), var = host(bn->running_var());
    float* w = with_weight ? f.weight.data<float>() : nullptr;
    float* b = f.bias.data<float>();
    for (int64_t o = 0; o < oc; ++o) {
        const double scale = gamma.data<float>()[o] / std::sqrt(static_cast<double>(var.data<float>()[o]) + bn->eps());
        f.scale.push_back(scale);
        if (w)
            for (int64_t k = 0; k < K; ++k) w[o * K + k] = static_cast<float>(w[o * K + k] * scale);
        b[o] = static_cast<float>(beta.data<float>()[o] + (static_cast<double>(b[o]) - mean.data<float>()[o]) * scale);
    }
    return f;
}

// The CPU's derived weights: the fold's scale and bias at once; the packed forms on first use of
// each, since which one runs depends on the input's size and RunOptions::packing: the direct
// kernel's, and Winograd's for m = 2 and 4 (cpu::winograd_tile_for). Once packed, the layer's own
// weights are released (release_packed_source).
struct FusedConv2d::CpuWeights {
    std::vector<double> scale;  // BatchNorm's per-channel scale, applied as weights are packed
    Tensor bias;                // folded
    struct Packed {
        std::mutex mutex;
        std::shared_ptr<const cpu::PackedConv2dWeight> direct;
        std::shared_ptr<const cpu::WinogradConv2dWeight> winograd[2];
    };
    std::unique_ptr<Packed> packed = std::make_unique<Packed>();  // filled on first use
    const double* row_scale() const { return scale.empty() ? nullptr : scale.data(); }
};

// The CUDA's derived weights: folded on the host, uploaded in NCHW and NHWC order.
struct FusedConv2d::CudaWeights {
    Tensor weight, weight_nhwc, bias;
};

FusedConv2d::FusedConv2d(std::shared_ptr<const Conv2d> conv, std::shared_ptr<const BatchNorm2d> bn, bool relu)
    : conv_(std::move(conv)), bn_(std::move(bn)), relu_(relu) {
    STRATA_CHECK(conv_ != nullptr, "FusedConv2d needs a convolution");
}

// A new version is greater than all earlier ones, so the largest of the two moves whenever
// either module's weights change (core/derived.h).
uint64_t FusedConv2d::source_version() const {
    return std::max(conv_->weights_version(), bn_ ? bn_->weights_version() : 0);
}

Tensor FusedConv2d::forward(const Tensor& input, const Tensor* residual, const RunOptions& options) const {
    if (!backend_fuses(options.backend)) return forward_reference(input, residual, options);
    // The checks of both fused paths, before any weights are folded: a wrong input fails first.
    const Tensor x = expect_nchw(input, "Conv2d", options);
    expect_weights_on_backend_device({&conv_->weight()}, "Conv2d", options);  // folded from these
    const Conv2dParams p = conv_->params_for(x);
    check_activation_size({p.n, p.oc, p.oh, p.ow}, options, "Conv2d", "output");
    return options.backend == Backend::Cuda ? forward_cuda(x, p, residual, options) : forward_cpu(x, p, residual, options);
}

Tensor FusedConv2d::forward_reference(const Tensor& x, const Tensor* residual, const RunOptions& options) const {
    Tensor y = conv_->forward(x, options);
    if (bn_) y = bn_->forward(y, options);
    if (!residual) return relu_ ? relu(y, options) : y;
    expect_residual_shape(*residual, y.shape());
    return relu_ ? add_relu(y, *residual, options) : add(y, *residual, options);
}

Tensor FusedConv2d::forward_cpu(const Tensor& x, const Conv2dParams& p, const Tensor* residual,
                                const RunOptions& options) const {
    const auto w = cpu_.get(source_version(), [&] {
        FoldedConv2d folded = fold_batch_norm(*conv_, bn_.get(), /*with_weight=*/false);
        CpuWeights c;
        c.scale = std::move(folded.scale);
        c.bias = folded.bias;
        return c;
    });
    Tensor y = Tensor::empty({p.n, p.oc, p.oh, p.ow});
    Tensor r;
    Conv2dEpilogue e;
    e.bias = w->bias.data<float>();
    e.relu = relu_;
    if (residual) {
        expect_residual_shape(*residual, y.shape());
        r = residual->contiguous();
        e.residual = r.data<float>();
    }
    // Winograd mixes a whole tile of inputs into every output of the tile: one NaN or Inf would
    // spread past its receptive field (and Inf - Inf makes NaN where a direct sum keeps Inf).
    // Non-finite inputs take the direct kernel, so NaN and Inf land where PyTorch puts them.
    const bool winograd = cpu::winograd_applicable(p) && cpu::all_finite(x.data<float>(), x.numel());
    const int m = winograd && options.packing == WeightPacking::Fast
                      ? cpu::winograd_tile_for(p.n, p.oh, p.ow, options.threads())
                      : 0;
    const Tensor& source = conv_->weight();
    if (m) {
        std::shared_ptr<const cpu::WinogradConv2dWeight> packed;
        {
            std::lock_guard<std::mutex> lock(w->packed->mutex);
            auto& slot = w->packed->winograd[m == 4 ? 1 : 0];
            if (!slot) {
                slot = std::make_shared<const cpu::WinogradConv2dWeight>(
                    cpu::pack_conv2d_winograd(m, p.oc, p.c, source.data<float>(), w->row_scale()));
                release_packed_source(source);
                count_derived_build();
            }
            packed = slot;
        }
        cpu::conv2d_winograd(p, x.data<float>(), *packed, e, y.data<float>(), options.threads(), options.cpu);
        return y;
    }
    std::shared_ptr<const cpu::PackedConv2dWeight> packed;
    {
        std::lock_guard<std::mutex> lock(w->packed->mutex);
        auto& slot = w->packed->direct;
        if (!slot) {
            slot = std::make_shared<const cpu::PackedConv2dWeight>(
                cpu::pack_conv2d_weight(p.oc, source.numel() / p.oc, p.groups, source.data<float>(), w->row_scale()));
            release_packed_source(source);
            count_derived_build();
        }
        packed = slot;
    }
    cpu::conv2d_packed(p, x.data<float>(), *packed, e, y.data<float>(), options.threads(), options.cpu);
    return y;
}

Tensor FusedConv2d::forward_cuda(const Tensor& x, const Conv2dParams& p, const Tensor* residual,
                                 const RunOptions& options) const {
    const auto w = cuda_.get(source_version(), [&] {
        const FoldedConv2d folded = fold_batch_norm(*conv_, bn_.get());
        return CudaWeights{folded.weight.to(Device::CUDA), cuda_weight_channels_last(folded.weight),
                           folded.bias.to(Device::CUDA)};
    });
    CudaContext& ctx = cuda_context(options, "Conv2d");
    const bool nhwc = ctx.channels_last();
    const Tensor xl = cuda_in_layout(x, options, nhwc);
    Tensor y = ctx.empty({p.n, p.oc, p.oh, p.ow}, nhwc);
    Tensor r;
    Conv2dEpilogue e;
    e.bias = w->bias.data<float>();
    e.relu = relu_;
    if (residual) {
        expect_residual_shape(*residual, y.shape());
        expect_on_backend_device(*residual, "Conv2d (residual)", options);
        r = cuda_in_layout(*residual, options, nhwc);
        e.residual = r.data<float>();
    }
    cuda::conv2d(ctx, p, xl.data<float>(), (nhwc ? w->weight_nhwc : w->weight).data<float>(), e, y.data<float>(), nhwc);
    return y;
}

}  // namespace strata
