#include "fused_conv2d.h"

#include <cmath>
#include <vector>

#include "../kernels/elementwise.h"
#include "common.h"
#include "relu.h"

namespace strata {

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

FusedConv2d::FusedConv2d(const Conv2d& conv, const BatchNorm2d* bn, bool relu)
    : conv_(&conv), relu_(relu) {
    FoldedConv2d folded = fold_batch_norm(conv, bn, /*with_weight=*/false);
    scale_ = std::move(folded.scale);
    bias_ = folded.bias;
}

FusedConv2d::FusedConv2d(FusedConv2d&& o) noexcept
    : conv_(o.conv_), scale_(std::move(o.scale_)), bias_(std::move(o.bias_)), relu_(o.relu_),
      direct_(std::move(o.direct_)), winograd_{std::move(o.winograd_[0]), std::move(o.winograd_[1])} {}

Tensor FusedConv2d::forward(const Tensor& input, const Tensor* residual, const RunOptions& options) const {
    STRATA_CHECK(options.backend == Backend::Cpu, "fused convolution runs on the cpu backend, not ",
                 backend_name(options.backend));
    const Tensor x = expect_nchw(input, "Conv2d", options);
    expect_weights_on_backend_device({&conv_->weight()}, "Conv2d", options);  // packed from host memory
    const Conv2dParams p = conv_->params_for(x);
    check_activation_size({p.n, p.oc, p.oh, p.ow}, options, "Conv2d", "output");
    Tensor y = Tensor::empty({p.n, p.oc, p.oh, p.ow});
    Tensor r;
    Conv2dEpilogue e;
    e.bias = bias_.data<float>();
    e.relu = relu_;
    if (residual) {
        STRATA_CHECK(residual->shape() == y.shape(), "residual of shape ", shape_str(residual->shape()),
                     " for an output of shape ", shape_str(y.shape()));
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
    if (m) {
        std::shared_ptr<const cpu::WinogradConv2dWeight> packed;
        {
            std::lock_guard<std::mutex> lock(pack_mutex_);
            auto& slot = winograd_[m == 4 ? 1 : 0];
            if (!slot) {
                slot = std::make_shared<const cpu::WinogradConv2dWeight>(
                    cpu::pack_conv2d_winograd(m, p.oc, p.c, conv_->weight().data<float>(), row_scale()));
                release_packed_source(conv_->weight());
            }
            packed = slot;
        }
        cpu::conv2d_winograd(p, x.data<float>(), *packed, e, y.data<float>(), options.threads());
        return y;
    }
    std::shared_ptr<const cpu::PackedConv2dWeight> packed;
    {
        std::lock_guard<std::mutex> lock(pack_mutex_);
        if (!direct_) {
            const Tensor& w = conv_->weight();
            direct_ = std::make_shared<const cpu::PackedConv2dWeight>(
                cpu::pack_conv2d_weight(p.oc, w.numel() / p.oc, p.groups, w.data<float>(), row_scale()));
            release_packed_source(conv_->weight());
        }
        packed = direct_;
    }
    cpu::conv2d_packed(p, x.data<float>(), *packed, e, y.data<float>(), options.threads());
    return y;
}

SequenceRunner::SequenceRunner(std::vector<Step> steps) : steps_(std::move(steps)) {
    for (size_t i = 0; i < steps_.size();) {
        Group g;
        g.first = i;
        const auto* conv = dynamic_cast<const Conv2d*>(steps_[i].module.get());
        const bool next_is_bn = i + 1 < steps_.size() && !steps_[i + 1].adapter &&
                                dynamic_cast<const BatchNorm2d*>(steps_[i + 1].module.get());
        if (conv && next_is_bn && steps_[i].out_name.empty()) {
            g.count = 2;
            if (i + 2 < steps_.size() && !steps_[i + 2].adapter && steps_[i + 1].out_name.empty() &&
                dynamic_cast<const ReLU*>(steps_[i + 2].module.get()))
                g.count = 3;
            g.fused = std::make_unique<EpochCache<FusedConv2d>>();
            g.fused_cuda = std::make_unique<EpochCache<CudaFusedConv2d>>();
        }
        i += g.count;
        groups_.push_back(std::move(g));
    }
}

Tensor SequenceRunner::run(const Tensor& x, const RunOptions& options, OrderedDict<Tensor>* out) const {
    Tensor y = x;
    for (const Group& g : groups_) {
        if (g.fused && options.backend == Backend::Cuda) {
            y = run_fused_cuda(g, y, options, out);
            continue;
        }
        if (g.fused && options.backend == Backend::Cpu) {
            const Step& first = steps_[g.first];
            if (first.adapter) y = first.adapter(y);
            try {
                const auto fused = g.fused->get([&] {
                    return FusedConv2d(static_cast<const Conv2d&>(*first.module),
                                       &static_cast<const BatchNorm2d&>(*steps_[g.first + 1].module), g.count == 3);
                });
                y = fused->forward(y, nullptr, options);
            } catch (...) {
                rethrow_within(first.name);
            }
            const Step& last = steps_[g.first + g.count - 1];
            if (out && !last.out_name.empty()) out->insert(last.out_name, y);
            continue;
        }
        for (size_t i = g.first; i < g.first + g.count; ++i) {
            const Step& s = steps_[i];
            if (s.adapter) y = s.adapter(y);
            try {
                y = s.module->forward(y, options);
            } catch (...) {
                rethrow_within(s.name);
            }
            if (out && !s.out_name.empty()) out->insert(s.out_name, as_returned(y, options));
        }
    }
    return y;
}

}  // namespace strata
