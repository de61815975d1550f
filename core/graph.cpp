#include "graph.h"

#include "error.h"

namespace strata {

std::string join_path(const std::string& a, const std::string& b) {
    if (a.empty()) return b;
    if (b.empty()) return a;
    return a + "." + b;
}

Graph::Graph() {
    GraphNode x;
    x.op = GraphNode::Op::Input;
    push(std::move(x), "x");
}

int Graph::push(GraphNode node, const std::string& base) {
    for (int i : node.inputs)
        STRATA_CHECK(i >= 0 && i < static_cast<int>(nodes_.size()), "graph node '", base, "' reads node ", i,
                     ", which does not exist yet");
    const int n = uses_[base]++;
    node.name = n == 0 ? base : base + "_" + std::to_string(n);
    STRATA_CHECK(by_name_.count(node.name) == 0, "graph node name '", node.name, "' is taken twice");
    by_name_[node.name] = static_cast<int>(nodes_.size());
    nodes_.push_back(std::move(node));
    return static_cast<int>(nodes_.size()) - 1;
}

int Graph::call(const Module& module, const std::string& path, int x) {
    GraphNode n;
    n.op = GraphNode::Op::Call;
    n.path = path;
    n.module = &module;
    n.inputs = {x};
    return push(std::move(n), path);
}

int Graph::add(const std::string& path, int a, int b) {
    GraphNode n;
    n.op = GraphNode::Op::Add;
    n.path = path;
    n.inputs = {a, b};
    return push(std::move(n), join_path(path, "add"));
}

int Graph::flatten(const std::string& path, int x) {
    GraphNode n;
    n.op = GraphNode::Op::Flatten;
    n.path = path;
    n.inputs = {x};
    return push(std::move(n), join_path(path, "flatten"));
}

int Graph::find(const std::string& name) const {
    const auto it = by_name_.find(name);
    return it == by_name_.end() ? -1 : it->second;
}

}  // namespace strata
