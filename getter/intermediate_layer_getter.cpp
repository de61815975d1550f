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

// The name to suggest for a bad key: among the names under the longest module path the key
// starts with (so "layer2.7.conv1" suggests "layer2.1.conv1", not "layer1"), the nearest.
std::string nearest_name(const std::string& key, const std::vector<std::string>& names) {
    std::string parent;
    for (const auto& n : names)
        if (n.size() > parent.size() && key.compare(0, n.size() + 1, n + ".") == 0) parent = n;
    std::string best;
    size_t best_distance = 0;
    for (const auto& n : names) {
        if (!parent.empty() && n.compare(0, parent.size() + 1, parent + ".") != 0) continue;
        const size_t d = edit_distance(key, n);
        if (best.empty() || d < best_distance) best = n, best_distance = d;
    }
    return best;
}

}  // namespace

std::vector<std::string> IntermediateLayerGetter::node_names(const Module& model) {
    Graph graph;
    model.trace(graph, "", graph.input());
    std::vector<std::string> names;
    for (const auto& n : graph.nodes()) names.push_back(n.name);
    return names;
}

IntermediateLayerGetter::IntermediateLayerGetter(const Module& model, const ReturnLayers& return_layers)
    : return_layers_(return_layers) {
    const auto& children = model.named_children();
    const std::vector<std::string> valid = children.keys();
    STRATA_CHECK(!valid.empty(), "IntermediateLayerGetter: ", model.type_name(), " has no children");

    // The model's graph: the nodes nested names refer to, and shape inference. A model that
    // cannot be traced still serves requests for its direct children (without output_info).
    Graph graph;
    bool traced = true;
    std::string trace_error;
    try {
        model.trace(graph, "", graph.input());
    } catch (const Error& e) {
        traced = false, trace_error = e.what();
    }
    // A name resolves to the graph node FX gives it, or to a module's last node ("layer1" is
    // layer1.1.relu_1, "layer2.0" layer2.0.relu_1), as create_feature_extractor resolves it.
    auto resolve = [&](const std::string& key) -> int {
        const int exact = graph.find(key);
        if (exact >= 0) return exact;
        int last = -1;
        for (size_t n = 0; n < graph.nodes().size(); ++n)
            if (graph.nodes()[n].name.compare(0, key.size() + 1, key + ".") == 0) last = static_cast<int>(n);
        return last;
    };

    // 1. Validation: every key a child (or, nested, a graph node or module inside one), each asked
    //    once, new names non-empty and unique.
    std::set<std::string> seen_layers, seen_names;
    bool nested = false;
    std::vector<std::pair<int, std::string>> requests;  // graph node -> new name
    for (const auto& [layer, new_name] : return_layers) {
        const bool child = children.contains(layer);
        const int node = traced ? resolve(layer) : -1;
        if (!child && node < 0) {
            // Direct names are suggested among direct names; a dotted one among the nodes and
            // modules under its longest valid parent.
            const bool dotted = layer.find('.') != std::string::npos;
            std::vector<std::string> names = valid;
            if (dotted) {
                for (const auto& n : graph.nodes()) names.push_back(n.name);
                for (const auto& [path, m] : model.named_modules())
                    if (!path.empty()) names.push_back(path);
            }
            if (!dotted)
                STRATA_FAIL("return_layers: '", layer, "' is not a child of ", model.type_name(), "; valid names: ",
                            join(valid), " (nearest: '", nearest_name(layer, names), "')");
            STRATA_FAIL("return_layers: '", layer, "' is not a module or graph node of ", model.type_name(),
                        traced ? "" : (" (nested names need a model that can be traced: " + trace_error + ")"),
                        " (nearest: '", nearest_name(layer, names), "'; `strata layers --nodes` lists every name)");
        }
        nested = nested || !child;
        STRATA_CHECK(seen_layers.insert(layer).second, "return_layers: '", layer,
                     "' is requested twice");
        STRATA_CHECK(!new_name.empty(), "return_layers: empty new name for '", layer, "'");
        STRATA_CHECK(seen_names.insert(new_name).second, "return_layers: new name '", new_name,
                     "' is given to more than one layer (torchvision would silently keep only "
                     "the later one)");
        if (traced) requests.emplace_back(node, new_name);
    }

    // 2. Truncation: keep children in model order up to the last one a request needs. With
    //    nothing requested, torchvision keeps the first child and returns nothing; so do we.
    std::set<std::string> remaining;
    for (const auto& [layer, new_name] : return_layers) {
        if (children.contains(layer)) {
            remaining.insert(layer);
            continue;
        }
        // A node's owner is the child its path starts with; a node of the model's own (the
        // flatten before fc) needs the children before it, i.e. the owner of its input.
        for (int n = resolve(layer); n > 0; n = graph.nodes()[n].inputs[0]) {
            const std::string& path = graph.nodes()[n].path;
            if (path.empty()) continue;
            remaining.insert(path.substr(0, path.find('.')));
            break;
        }
    }
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
    // 3. The executor: direct children run as a Sequential (torchvision's getter); nested
    //    requests run the graph's needed nodes (FX's create_feature_extractor). The node plan
    //    also infers shapes, which validates an input before any kernel runs.
    if (!nested) runner_ = std::make_unique<Sequential>(std::move(steps));
    if (traced) nodes_ = std::make_unique<NodePlan>(graph, requests);
}

std::vector<OutputInfo> IntermediateLayerGetter::output_info(const Shape& input_shape) const {
    STRATA_CHECK(nodes_ != nullptr, "output_info: this model cannot be traced into graph nodes");
    return nodes_->infer(input_shape);
}

OrderedDict<Tensor> IntermediateLayerGetter::operator()(const Tensor& x, const RunOptions& options) const {
    // Shape inference first: an input too small or with the wrong channels for a requested layer
    // fails here, naming the module, before the first kernel runs.
    if (nodes_ && x.defined()) nodes_->infer(x.shape(), /*partial=*/true);
    if (!runner_) return nodes_->run(x, options);
    // 4. Collection: each kept child on the previous output; requested ones in model order.
    OrderedDict<Tensor> out;
    runner_->run(x, options, &out);
    return out;
}

Tensor IntermediateLayerGetter::forward(const Tensor&, const RunOptions&) const {
    STRATA_FAIL("IntermediateLayerGetter returns a dict of tensors: call getter(x), not forward(x)");
}

}  // namespace strata
