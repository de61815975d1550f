#include "sequential.h"

#include "placement.h"
#include "relu.h"
#include "placement.h"

namespace strata {

Sequential::Sequential(std::vector<std::shared_ptr<Module>> modules) {
    for (auto& m : modules) push_back(std::move(m));
}

Sequential::Sequential(std::vector<Step> steps) {
    for (auto& s : steps) append(std::move(s));
}

void Sequential::push_back(std::shared_ptr<Module> module) {
    append({std::to_string(named_children().size()), std::move(module), nullptr, ""});
}

void Sequential::append(Step step) {
    add_child(step.name, step.module);
    // A nested Sequential runs in place: its steps join this run under dotted names, so errors
    // still read "layer1.0.conv1: ..." and one loop runs the whole model.
    const auto* nested = dynamic_cast<const Sequential*>(step.module.get());
    bool flatten = nested && !nested->steps_.empty() && !(step.adapter && nested->steps_.front().adapter);
    if (flatten)
        for (const Step& s : nested->steps_) flatten = flatten && s.out_name.empty();
    if (!flatten) {
        steps_.push_back(std::move(step));
    } else {
        for (size_t i = 0; i < nested->steps_.size(); ++i) {
            Step s = nested->steps_[i];
            s.name = step.name + "." + s.name;
            if (i == 0 && step.adapter) s.adapter = step.adapter;
            if (i + 1 == nested->steps_.size()) s.out_name = step.out_name;
            steps_.push_back(std::move(s));
        }
    }
    plan();
}

void Sequential::plan() {
    groups_.clear();
    for (size_t i = 0; i < steps_.size();) {
        Group g;
        g.first = i;
        const auto conv = std::dynamic_pointer_cast<const Conv2d>(steps_[i].module);
        const auto bn = i + 1 < steps_.size() && !steps_[i + 1].adapter
                            ? std::dynamic_pointer_cast<const BatchNorm2d>(steps_[i + 1].module)
                            : nullptr;
        if (conv && bn && steps_[i].out_name.empty()) {
            g.count = 2;
            const bool relu = i + 2 < steps_.size() && !steps_[i + 2].adapter && steps_[i + 1].out_name.empty() &&
                              dynamic_cast<const ReLU*>(steps_[i + 2].module.get());
            if (relu) g.count = 3;
            g.fused = std::make_unique<FusedConv2d>(conv, bn, relu);
        }
        i += g.count;
        groups_.push_back(std::move(g));
    }
}

Tensor Sequential::forward(const Tensor& x, const RunOptions& options) const { return run(x, options, nullptr); }

Tensor Sequential::run(const Tensor& x, const RunOptions& options, OrderedDict<Tensor>* out) const {
    Tensor y = x;
    for (const Group& g : groups_) {
        const bool fused = g.fused && backend_fuses(options.backend);
        for (size_t i = g.first; i < g.first + g.count; ++i) {
            const Step& s = steps_[i];
            if (s.adapter) y = s.adapter(y);
            try {
                y = fused ? g.fused->forward(y, nullptr, options) : s.module->forward(y, options);
            } catch (...) {
                rethrow_within(s.name);
            }
            if (fused) i = g.first + g.count - 1;  // the group's last step: its output is y
            if (out && !steps_[i].out_name.empty()) out->insert(steps_[i].out_name, as_returned(y, options));
        }
    }
    return y;
}

}  // namespace strata
