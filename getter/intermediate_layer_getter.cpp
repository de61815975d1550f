// IntermediateLayerGetter: validation, truncation and collection (docs/GETTER.md).
#include "intermediate_layer_getter.h"

#include <algorithm>
#include <set>

namespace strata {

namespace {

size_t edit_distance(const std::string& a, const std::string& b) {
    std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
    for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
    for (size_t i = 1; i <= a.size(); ++i) {
        cur[0] = i;
        for (size_t j = 1; j <= b.size(); ++j)
            cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] != b[j - 1])});
        std::swap(prev, cur);
    }
    return prev[b.size()];
}

std::string join(const std::vector<std::string>& names) {
    std::string s;
    for (const auto& n : names) s += (s.empty() ? "" : ", ") + n;
    return s;
}

}  // namespace

IntermediateLayerGetter::IntermediateLayerGetter(const Module& model, const ReturnLayers& return_layers)
    : return_layers_(return_layers) {
    const auto& children = model.named_children();
    const std::vector<std::string> valid = children.keys();
    STRATA_CHECK(!valid.empty(), "IntermediateLayerGetter: ", model.type_name(), " has no children");

    // 1. Validation: every key a direct child, each asked once, new names non-empty and unique.
    std::set<std::string> seen_layers, seen_names;
    for (const auto& [layer, new_name] : return_layers) {
        if (!children.contains(layer)) {
            std::string nearest = valid.front();
            for (const auto& v : valid)
                if (edit_distance(layer, v) < edit_distance(layer, nearest)) nearest = v;
            const bool nested = layer.find('.') != std::string::npos;
            STRATA_FAIL("return_layers: '", layer, "' is not ",
                        nested ? "a direct child (nested names are not supported)" : "a child",
                        " of ", model.type_name(), "; valid names: ", join(valid),
                        " (nearest: '", nearest, "')");
        }
        STRATA_CHECK(seen_layers.insert(layer).second, "return_layers: '", layer,
                     "' is requested twice");
        STRATA_CHECK(!new_name.empty(), "return_layers: empty new name for '", layer, "'");
        STRATA_CHECK(seen_names.insert(new_name).second, "return_layers: new name '", new_name,
                     "' is given to more than one layer (torchvision would silently keep only "
                     "the later one)");
    }

    // 2. Truncation: keep children in model order up to the last requested one. With nothing
    //    requested, torchvision keeps the first child and returns nothing; so do we.
    std::set<std::string> remaining = seen_layers;
    std::vector<Sequential::Step> steps;
    for (const auto& [name, child] : children) {
        std::string out_name;
        for (const auto& [layer, new_name] : return_layers)
            if (layer == name) out_name = new_name;
        add_child(name, child);
        steps.push_back({name, child, model.child_input_adapter(name), out_name});
        remaining.erase(name);
        if (remaining.empty()) break;
    }
    runner_ = std::make_unique<Sequential>(std::move(steps));
}

OrderedDict<Tensor> IntermediateLayerGetter::operator()(const Tensor& x,
                                                        const RunOptions& options) const {
    // 3. Collection: each kept child on the previous output; requested ones in model order.
    OrderedDict<Tensor> out;
    runner_->run(x, options, &out);
    return out;
}

Tensor IntermediateLayerGetter::forward(const Tensor&, const RunOptions&) const {
    STRATA_FAIL("IntermediateLayerGetter returns a dict of tensors: call getter(x), not forward(x)");
}

}  // namespace strata
