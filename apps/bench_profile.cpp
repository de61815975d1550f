// `strata bench --profile`: where the time of a forward call goes, child by child.
//
// Cost of a child = median(model truncated after it) - median(truncated after the one before):
// this includes what truncation changes (a BatchNorm or ReLU that is fused into the convolution
// before it when the model continues costs its own pass when the model stops there), so small
// children can come out near zero or slightly negative; the last row is the full model.
// Multiply-adds come from a shape pass at batch 1 (they scale with the batch): Conv2d =
// output elements x in_channels/groups x kh x kw; Linear = output elements x in_features.
#include "bench_profile.h"

#include <algorithm>
#include <chrono>
#include <memory>
#include <sstream>

namespace strata_cli {

TimingStats summarize(const std::vector<double>& ms) {
    STRATA_CHECK(!ms.empty(), "summarize: no timings");
    std::vector<double> sorted = ms;
    std::sort(sorted.begin(), sorted.end());
    const size_t n = sorted.size();
    TimingStats s;
    s.median_ms = n % 2 ? sorted[n / 2] : 0.5 * (sorted[n / 2 - 1] + sorted[n / 2]);
    s.min_ms = sorted.front();
    for (double v : ms) s.mean_ms += v / static_cast<double>(n);
    return s;
}

namespace {

// Runs `m` on `x` leaf by leaf and adds the multiply-adds of its Conv2d and Linear leaves to
// `macs`; returns m's output. Children run in order on the previous child's output (through the
// parent's input adapter, e.g. ResNet's flatten before fc), except a child named `downsample`,
// which torchvision's ResNet blocks apply to the block's input.
strata::Tensor count_macs(const strata::Module& m, const strata::Tensor& x, const strata::RunOptions& options,
                          double& macs) {
    if (m.named_children().size() == 0) {
        strata::Tensor y = m.forward(x, options);
        if (m.type_name() == "Conv2d" || m.type_name() == "Linear") {
            for (const auto& [name, w] : m.named_parameters())
                if (name == "weight")  // [out, in/groups, kh, kw] or [out, in]: MACs per output element
                    macs += static_cast<double>(y.numel()) * static_cast<double>(w.numel() / w.size(0));
        }
        return y;
    }
    strata::Tensor current = x;
    for (const auto& [name, child] : m.named_children()) {
        if (name == "downsample") {
            count_macs(*child, x, options, macs);
            continue;
        }
        const auto adapter = m.child_input_adapter(name);
        current = count_macs(*child, adapter ? adapter(current) : current, options, macs);
    }
    return current;
}

}  // namespace

nlohmann::json profile_children_json(const strata::Module& model, const strata::Tensor& x,
                                  const strata::RunOptions& options, int warmup, int iters, double peak_gflops) {
    // Shape pass at batch 1: each child's MACs and output shape.
    strata::Shape one = x.shape();
    one[0] = 1;
    strata::Tensor current = strata::Tensor::zeros(one);
    std::vector<double> child_macs;
    std::vector<strata::Shape> child_shapes;
    std::vector<std::string> names, types;
    for (const auto& [name, child] : model.named_children()) {
        const auto adapter = model.child_input_adapter(name);
        double macs = 0;
        current = count_macs(*child, adapter ? adapter(current) : current, options, macs);
        strata::Shape shape = current.shape();
        shape[0] = x.size(0);
        names.push_back(name);
        types.push_back(child->type_name());
        child_macs.push_back(macs * static_cast<double>(x.size(0)));
        child_shapes.push_back(shape);
    }

    // Timing, round-robin: call k of every truncated model runs before call k+1 of any, so drift
    // on a shared machine spreads over all of them instead of landing on one child. The
    // truncated models share the blocks (and their packed weights); only the stem is their own.
    std::vector<std::unique_ptr<strata::IntermediateLayerGetter>> getters;
    for (const std::string& name : names)
        getters.push_back(std::make_unique<strata::IntermediateLayerGetter>(model, strata::ReturnLayers{{name, name}}));
    for (int i = 0; i < warmup; ++i)
        for (const auto& getter : getters) (*getter)(x, options);
    std::vector<std::vector<double>> ms(getters.size());
    for (int i = 0; i < iters; ++i) {
        for (size_t k = 0; k < getters.size(); ++k) {
            const auto t0 = std::chrono::steady_clock::now();
            (*getters[k])(x, options);
            ms[k].push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
        }
    }
    std::vector<TimingStats> truncated;
    for (const auto& samples : ms) truncated.push_back(summarize(samples));

    const double whole_ms = truncated.back().median_ms;
    nlohmann::json out = nlohmann::json::array();
    for (size_t i = 0; i < names.size(); ++i) {
        const double cost_ms = truncated[i].median_ms - (i ? truncated[i - 1].median_ms : 0.0);
        const double gflop = 2.0 * child_macs[i] * 1e-9;
        const bool has_rate = gflop > 0 && cost_ms > 0;
        const double gflops = has_rate ? gflop / (cost_ms * 1e-3) : 0;
        nlohmann::json row = {{"child", names[i]}, {"type", types[i]}, {"out_shape", child_shapes[i]},
                              {"truncated_median_ms", truncated[i].median_ms}, {"truncated_min_ms", truncated[i].min_ms},
                              {"ms", cost_ms}, {"share", whole_ms > 0 ? cost_ms / whole_ms : 0.0}, {"gflop", gflop},
                              {"gflops", nullptr}, {"peak_share", nullptr}};
        if (has_rate) row["gflops"] = gflops;
        if (has_rate && peak_gflops > 0) row["peak_share"] = gflops / peak_gflops;
        out.push_back(std::move(row));
    }
    return out;
}

}  // namespace strata_cli
