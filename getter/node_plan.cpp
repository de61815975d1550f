#include "node_plan.h"

#include <algorithm>
#include <map>
#include <set>

#include "../layers/batch_norm2d.h"
#include "../layers/conv2d.h"
#include "../layers/flatten.h"
#include "../layers/placement.h"
#include "../layers/relu.h"

namespace strata {

namespace {

template <typename T>
const T* module_as(const GraphNode& n) {
    return n.op == GraphNode::Op::Call ? dynamic_cast<const T*>(n.module) : nullptr;
}

// The plan does not own the modules (see node_plan.h): a non-owning shared_ptr for FusedConv2d.
template <typename T>
std::shared_ptr<const T> unowned(const T* p) {
    return std::shared_ptr<const T>(std::shared_ptr<const T>(), p);
}

}  // namespace

NodePlan::NodePlan(const Graph& graph, const std::vector<std::pair<int, std::string>>& requests)
    : nodes_(graph.nodes()), requests_(requests) {
    std::stable_sort(requests_.begin(), requests_.end(),
                     [](const auto& a, const auto& b) { return a.first < b.first; });
    requested_.assign(nodes_.size(), false);
    for (const auto& r : requests_) requested_[r.first] = true;
    fused_ = schedule(true);
    plain_ = schedule(false);
}

std::vector<NodePlan::Step> NodePlan::schedule(bool fuse) const {
    const int count = static_cast<int>(nodes_.size());
    // Which nodes run: the requested ones and everything they read, transitively.
    std::vector<bool> needed = requested_;
    for (int i = count - 1; i >= 0; --i)
        if (needed[i])
            for (int in : nodes_[i].inputs) needed[in] = true;
    std::vector<std::vector<int>> readers(count);
    for (int i = 0; i < count; ++i)
        if (needed[i])
            for (int in : nodes_[i].inputs) readers[in].push_back(i);
    // The one node that reads v, if v is not requested and nothing else reads it (a value a fused
    // step may swallow); else -1.
    auto only_reader_of = [&](int v) { return !requested_[v] && readers[v].size() == 1 ? readers[v][0] : -1; };

    std::vector<Step> steps;
    std::vector<bool> done(count, false);
    std::set<int> must_produce, swallowed;  // values other steps read; values inside a fused step
    for (int i = 1; i < count; ++i) {
        if (!needed[i] || done[i]) continue;
        Step s;
        s.node = s.first = i;
        s.reads = nodes_[i].inputs;
        const auto* conv = module_as<Conv2d>(nodes_[i]);
        const int bn_node = conv && fuse ? only_reader_of(i) : -1;
        const auto* bn = bn_node >= 0 ? module_as<BatchNorm2d>(nodes_[bn_node]) : nullptr;
        if (bn) {
            // conv -> bn [-> relu], or conv -> bn -> add -> relu with the add's other input as the
            // residual. The step runs where the chain's last node was (after the residual).
            std::vector<int> chain = {i, bn_node};
            int residual = -1;
            // Past bn only through nodes no other step has taken, and never past a value another
            // step reads as its residual (that value must be produced, not swallowed).
            const int next = must_produce.count(bn_node) ? -1 : only_reader_of(bn_node);
            if (next >= 0 && !done[next] && module_as<ReLU>(nodes_[next])) {
                chain.push_back(next);
            } else if (next >= 0 && !done[next] && nodes_[next].op == GraphNode::Op::Add) {
                const auto& add_in = nodes_[next].inputs;
                const int other = add_in[0] == bn_node ? add_in[1] : add_in[0];
                const int after = only_reader_of(next);
                if (other != bn_node && !swallowed.count(other) && after >= 0 && !done[after] &&
                    module_as<ReLU>(nodes_[after])) {
                    chain.push_back(next), chain.push_back(after);
                    residual = other;
                    must_produce.insert(other);
                }
            }
            const bool relu = chain.size() > 2;
            s.node = chain.back();
            s.reads = {nodes_[i].inputs[0]};
            if (residual >= 0) s.reads.push_back(residual);
            s.fused = std::make_shared<FusedConv2d>(unowned(conv), unowned(bn), relu);
            for (int k : chain) done[k] = true;
            swallowed.insert(chain.begin(), chain.end() - 1);
        }
        done[s.node] = true;
        steps.push_back(std::move(s));
    }
    // In the order of the nodes they produce: a fused step runs where its chain ended.
    std::stable_sort(steps.begin(), steps.end(), [](const Step& a, const Step& b) { return a.node < b.node; });
    // Each value is dropped after the last step that reads it.
    std::map<int, size_t> last_read;
    for (size_t k = 0; k < steps.size(); ++k)
        for (int v : steps[k].reads) last_read[v] = k;
    for (const auto& [v, k] : last_read) steps[k].drop_after.push_back(v);
    return steps;
}

Tensor NodePlan::run_node(const GraphNode& n, const std::vector<Tensor>& values, const RunOptions& options) const {
    const Tensor& x = values[n.inputs[0]];
    switch (n.op) {
        case GraphNode::Op::Call: return n.module->forward(x, options);
        case GraphNode::Op::Add: return add(x, values[n.inputs[1]], options);
        case GraphNode::Op::Flatten: return flatten(x, 1);
        case GraphNode::Op::Input: break;
    }
    return x;
}

OrderedDict<Tensor> NodePlan::run(const Tensor& x, const RunOptions& options) const {
    const std::vector<Step>& steps = backend_fuses(options.backend) ? fused_ : plain_;
    std::vector<Tensor> values(nodes_.size());
    values[0] = x;
    std::map<int, Tensor> returned;
    for (const Step& s : steps) {
        const GraphNode& n = nodes_[s.node];
        try {
            if (s.fused) {
                const Tensor* residual = s.reads.size() > 1 ? &values[s.reads[1]] : nullptr;
                values[s.node] = s.fused->forward(values[s.reads[0]], residual, options);
            } else {
                values[s.node] = run_node(n, values, options);
            }
        } catch (...) {
            // A fused step's errors are its convolution's, as in an unfused run.
            rethrow_within(nodes_[s.first].path);
        }
        if (requested_[s.node]) returned[s.node] = as_returned(values[s.node], options);
        for (int v : s.drop_after) values[v] = Tensor();
    }
    OrderedDict<Tensor> out;
    for (const auto& [node, name] : requests_) out.insert(name, node == 0 ? x : returned.at(node));
    return out;
}

std::vector<OutputInfo> NodePlan::infer(const Shape& input, bool partial) const {
    std::vector<Shape> shape(nodes_.size());
    std::vector<int64_t> stride(nodes_.size(), 0);
    std::vector<bool> known(nodes_.size(), false);
    shape[0] = input;
    stride[0] = 1;
    known[0] = true;
    for (const Step& s : plain_) {
        const GraphNode& n = nodes_[s.node];
        const int in = n.inputs[0];
        bool inputs_known = true;
        for (int i : n.inputs) inputs_known = inputs_known && known[i];
        if (!inputs_known) continue;
        try {
            switch (n.op) {
                case GraphNode::Op::Call: {
                    shape[s.node] = n.module->output_shape(shape[in]);
                    const int64_t k = n.module->spatial_stride();
                    stride[s.node] = shape[s.node].size() == 4 ? stride[in] * k : 0;
                    break;
                }
                case GraphNode::Op::Add:
                    STRATA_CHECK(shape[in] == shape[n.inputs[1]], "residual add of shapes ", shape_str(shape[in]),
                                 " and ", shape_str(shape[n.inputs[1]]), " (strata does not broadcast)");
                    shape[s.node] = shape[in];
                    stride[s.node] = stride[in];
                    break;
                case GraphNode::Op::Flatten:
                    shape[s.node] = flatten_shape(shape[in], 1);
                    break;
                case GraphNode::Op::Input: break;
            }
            known[s.node] = true;
        } catch (const UnknownShape&) {
            if (!partial) rethrow_within(n.path);
        } catch (...) {
            rethrow_within(n.path);
        }
    }
    if (partial) return {};
    std::vector<OutputInfo> out;
    for (const auto& [node, name] : requests_) {
        OutputInfo info;
        info.name = name;
        info.shape = shape[node];
        info.channels = info.shape.size() >= 2 ? info.shape[1] : 0;
        info.stride = stride[node];
        out.push_back(info);
    }
    return out;
}

}  // namespace strata
